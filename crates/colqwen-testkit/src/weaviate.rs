//! Weaviate nodes that a test starts, kills and restarts itself (restart and cluster tests), on loopback.
//!
//! The server under test is named by environment variables that `.ci/run` sets after
//! `scripts/weaviate.sh start`: `COLQWEN_TEST_WEAVIATE=HOST:PORT` (the shared node) and
//! `COLQWEN_TEST_WEAVIATE_SERVER` (the binary, for nodes of a test's own). Unset, a test fails with that
//! instruction, so CI cannot pass without a server; `COLQWEN_TEST_WEAVIATE=skip` is the documented opt-out for
//! a developer without Go (the tests then return early).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared server's `HOST:PORT`, or `None` when the developer opted out with `skip`.
pub fn server() -> Option<String> {
    match std::env::var("COLQWEN_TEST_WEAVIATE") {
        Ok(v) if v == "skip" => {
            eprintln!("COLQWEN_TEST_WEAVIATE=skip: Weaviate test not run");
            None
        }
        Ok(v) if !v.is_empty() => Some(v),
        _ => panic!(
            "this test needs a Weaviate server: run `scripts/weaviate.sh start` and set \
             COLQWEN_TEST_WEAVIATE=127.0.0.1:8080 and COLQWEN_TEST_WEAVIATE_SERVER=$(scripts/weaviate.sh path) \
             (or COLQWEN_TEST_WEAVIATE=skip to skip the Weaviate tests)"
        ),
    }
}

/// The server binary for nodes of a test's own, or `None` when the developer opted out.
pub fn server_binary() -> Option<PathBuf> {
    server()?;
    match std::env::var_os("COLQWEN_TEST_WEAVIATE_SERVER") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => panic!("set COLQWEN_TEST_WEAVIATE_SERVER to the weaviate-server binary (`scripts/weaviate.sh path`)"),
    }
}

/// One Weaviate process of a test. Ports of slot `i`: HTTP 8080+i, gRPC 50051+i, gossip 7100+2i, data
/// 7101+2i, raft 8300+2i and 8301+2i (as `scripts/weaviate.sh` numbers them; tests use slots from 10 up so
/// that they never meet the shared node of slot 0). Killed when dropped.
pub struct Node {
    bin: PathBuf,
    /// Node name (`CLUSTER_HOSTNAME`).
    pub name: String,
    slot: u16,
    data: PathBuf,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// Starts a node in `data` (kept across restarts). `cluster`: the (name, slot) of every member, for a
    /// multi-node cluster joined through the first member's gossip port; empty for a single node.
    pub fn start(
        bin: &Path,
        name: &str,
        slot: u16,
        data: &Path,
        cluster: &[(&str, u16)],
        extra_env: &[(&str, &str)],
    ) -> Node {
        let mut env: Vec<(String, String)> = extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if cluster.is_empty() {
            env.push(("RAFT_BOOTSTRAP_EXPECT".into(), "1".into()));
        } else {
            let join: Vec<String> = cluster.iter().map(|(n, s)| format!("{n}:{}", 8300 + 2 * s)).collect();
            env.push(("RAFT_JOIN".into(), join.join(",")));
            env.push(("RAFT_BOOTSTRAP_EXPECT".into(), cluster.len().to_string()));
            if cluster[0].0 != name {
                env.push(("CLUSTER_JOIN".into(), format!("127.0.0.1:{}", 7100 + 2 * cluster[0].1)));
            }
        }
        let mut node = Node {
            bin: bin.to_path_buf(),
            name: name.to_string(),
            slot,
            data: data.to_path_buf(),
            extra_env: env,
            child: None,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).expect("node data folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("node.log"))
            .expect("node log file");
        let s = self.slot;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--host", "127.0.0.1", "--port", &(8080 + s).to_string(), "--scheme", "http"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED", "true")
            .env("PERSISTENCE_DATA_PATH", self.data.join("data"))
            .env("DEFAULT_VECTORIZER_MODULE", "none")
            .env("ENABLE_MODULES", "")
            .env("DISABLE_TELEMETRY", "true")
            .env("CLUSTER_HOSTNAME", &self.name)
            .env("CLUSTER_IN_LOCALHOST", "true")
            .env("CLUSTER_GOSSIP_BIND_PORT", (7100 + 2 * s).to_string())
            .env("CLUSTER_DATA_BIND_PORT", (7101 + 2 * s).to_string())
            .env("GRPC_PORT", (50051 + s).to_string())
            .env("RAFT_PORT", (8300 + 2 * s).to_string())
            .env("RAFT_INTERNAL_RPC_PORT", (8301 + 2 * s).to_string())
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start weaviate-server"));
    }

    /// `HOST:PORT` of its HTTP API.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", 8080 + self.slot)
    }

    /// Waits until `/v1/.well-known/ready` answers 200 (panics after `timeout`, naming the log).
    pub fn wait_ready(&self, timeout: Duration) {
        let started = Instant::now();
        let url = format!("http://{}/v1/.well-known/ready", self.addr());
        while started.elapsed() < timeout {
            if http_status(&url) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{} not ready after {timeout:?}; see {}", self.name, self.data.join("node.log").display());
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Status of a plain GET on loopback (std only: this crate carries no HTTP client).
fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
