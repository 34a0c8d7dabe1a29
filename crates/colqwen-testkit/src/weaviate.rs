//! Weaviate nodes for the tests: the node the Weaviate tests of one test binary share, and nodes that a test
//! starts, kills and restarts itself (restart and cluster tests), all on loopback.
//!
//! `cargo test --release --workspace` needs nothing set: the first test that asks for a server ([`server`])
//! starts one node for its test binary (installing the pinned server first if needed, through
//! `scripts/weaviate.sh path`: `go install`, 10–25 minutes once, then cached), on free ports and in a fresh
//! data folder; the tests of that binary share it, and it is stopped when the binary exits, whether its tests
//! pass or fail: at exit, and on Linux also by the kernel if the test process dies any other way
//! (`PR_SET_PDEATHSIG`), so no node outlives the run. Nodes of a test's own ([`Node`]) die with their test.
//!
//! Environment: `COLQWEN_TEST_WEAVIATE=HOST:PORT` uses a node already running there instead (e.g. after
//! `scripts/weaviate.sh start`); `COLQWEN_TEST_WEAVIATE=skip` skips the Weaviate tests, saying so on the
//! terminal (not only in the captured test output); `COLQWEN_TEST_WEAVIATE_SERVER` names the server binary
//! (default: `scripts/weaviate.sh path`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a fresh node may take to answer ready.
const READY: Duration = Duration::from_secs(180);

/// Whether the developer opted out with `COLQWEN_TEST_WEAVIATE=skip`; says so once per test binary, on
/// stderr itself (the test harness captures `eprintln!`, which would make the skip silent).
fn skipped() -> bool {
    static SAID: OnceLock<()> = OnceLock::new();
    if std::env::var("COLQWEN_TEST_WEAVIATE").is_ok_and(|v| v == "skip") {
        SAID.get_or_init(|| {
            let _ = writeln!(
                std::io::stderr(),
                "\n*** COLQWEN_TEST_WEAVIATE=skip: the Weaviate tests of {} are SKIPPED (they pass without \
                 running) ***\n",
                std::env::args().next().unwrap_or_default()
            );
        });
        return true;
    }
    false
}

/// `HOST:PORT` of the server the Weaviate tests use: `COLQWEN_TEST_WEAVIATE`, else this test binary's own
/// node (started at the first call); `None` when the developer opted out with `skip`. Panics, naming the log,
/// if the node cannot be installed or started.
pub fn server() -> Option<String> {
    if skipped() {
        return None;
    }
    if let Ok(v) = std::env::var("COLQWEN_TEST_WEAVIATE")
        && !v.is_empty()
    {
        return Some(v);
    }
    static SHARED: OnceLock<Result<String, String>> = OnceLock::new();
    match SHARED.get_or_init(start_shared) {
        Ok(addr) => Some(addr.clone()),
        Err(e) => panic!("{e}"),
    }
}

/// The server binary for nodes of a test's own: `COLQWEN_TEST_WEAVIATE_SERVER`, else the pinned one that
/// `scripts/weaviate.sh path` installs (once); `None` when the developer opted out with `skip`.
pub fn server_binary() -> Option<PathBuf> {
    if skipped() {
        return None;
    }
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(find_binary) {
        Ok(p) => Some(p.clone()),
        Err(e) => panic!("{e}"),
    }
}

fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("COLQWEN_TEST_WEAVIATE_SERVER").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/weaviate.sh");
    let _ = writeln!(
        std::io::stderr(),
        "the Weaviate tests need the pinned server: `scripts/weaviate.sh path` (installs it with Go the first \
         time: 10-25 min)"
    );
    // The script's own messages (the install's progress) go to the terminal; the path comes on stdout.
    let out = Command::new("bash")
        .arg(&script)
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_file() {
        return Err(format!(
            "`{} path` failed ({}): the Weaviate tests need Go 1.26+ to install the server (or set \
             COLQWEN_TEST_WEAVIATE=skip to skip them, or COLQWEN_TEST_WEAVIATE_SERVER to a weaviate-server binary)",
            script.display(),
            out.status
        ));
    }
    Ok(path)
}

/// The node this test binary shares: started once, from a thread that lives as long as the process (the
/// kernel's parent-death signal follows the thread that started the child), stopped at exit.
struct Shared {
    child: Child,
    data: PathBuf,
}

static SHARED_NODE: Mutex<Option<Shared>> = Mutex::new(None);

fn start_shared() -> Result<String, String> {
    let bin = server_binary().ok_or("COLQWEN_TEST_WEAVIATE=skip")?;
    let slot = free_slots(1).ok_or("no free ports for a Weaviate node (slots 100-199 are all taken)")?;
    remove_stale_data();
    let data = std::env::temp_dir().join(format!("colqwen-test-weaviate-{}-{slot}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let node_data = data.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("weaviate-node".into())
        .spawn(move || {
            let spawned = spawn_process(&bin, "shared", slot, &node_data, &[("RAFT_BOOTSTRAP_EXPECT", "1")]);
            let _ = tx.send(spawned);
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let child = rx.recv().map_err(|e| e.to_string())??;
    if let Ok(mut shared) = SHARED_NODE.lock() {
        *shared = Some(Shared { child, data: data.clone() });
    }
    on_exit_stop_shared();
    let addr = format!("127.0.0.1:{}", 8080 + slot);
    let url = format!("http://{addr}/v1/.well-known/ready");
    let started = Instant::now();
    while http_status(&url) != Some(200) {
        if started.elapsed() > READY {
            return Err(format!(
                "the test Weaviate node is not ready after {READY:?}; see {}/node.log",
                data.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = writeln!(
        std::io::stderr(),
        "started a Weaviate node for these tests at {addr} in {:.1} s (stopped when they end)",
        started.elapsed().as_secs_f64()
    );
    Ok(addr)
}

/// Removes the data folders of shared nodes whose test process is gone (killed: no exit handler ran).
fn remove_stale_data() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("colqwen-test-weaviate-").and_then(|r| r.split('-').next());
        if let Some(pid) = pid
            && !Path::new("/proc").join(pid).exists()
            && Path::new("/proc/self").exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Stops the shared node (and removes its data) when the process exits: `atexit`, which the test harness
/// reaches after passing and after failing tests alike.
fn on_exit_stop_shared() {
    extern "C" fn stop_shared() {
        if let Ok(mut shared) = SHARED_NODE.lock()
            && let Some(mut s) = shared.take()
        {
            let _ = s.child.kill();
            let _ = s.child.wait();
            let _ = std::fs::remove_dir_all(&s.data);
        }
    }
    // SAFETY: registers a plain function without arguments; it only locks a static and kills a child.
    unsafe {
        libc::atexit(stop_shared);
    }
}

/// The first of `n` consecutive slots (see [`Node`]) whose ports are all free now, between 100 and 199 (the
/// tests' own nodes use lower slots), starting from a point that depends on the process id, so that test
/// binaries running at the same time rarely try the same slots.
pub fn free_slots(n: u16) -> Option<u16> {
    let free = |s: u16| {
        [8080 + s, 50051 + s, 7100 + 2 * s, 7101 + 2 * s, 8300 + 2 * s, 8301 + 2 * s, 6060 + s, 2112 + s]
            .iter()
            .all(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
    };
    let start = (std::process::id() % 100) as u16;
    (0..100u16).map(|i| 100 + (start + i) % 100).find(|&s| s + n <= 200 && (s..s + n).all(free))
}

/// One Weaviate process of a test. Ports of slot `i`: HTTP 8080+i, gRPC 50051+i, gossip 7100+2i, data
/// 7101+2i, raft 8300+2i and 8301+2i, profiling 6060+i (as `scripts/weaviate.sh` numbers them; tests use
/// slots from 10 to 99, so that they never meet a developer's node of slot 0 nor the shared test nodes of
/// slots 100-199). Killed when dropped, and when its test's thread ends.
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
        let env: Vec<(&str, &str)> = self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.child =
            Some(spawn_process(&self.bin, &self.name, self.slot, &self.data, &env).expect("start weaviate-server"));
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

/// Starts `weaviate-server` for node `name` on the ports of `slot`, its data and log (`node.log`) in `data`. On
/// Linux the process gets SIGKILL when the thread that started it ends (`PR_SET_PDEATHSIG`): a test killed or
/// crashed leaves no node behind.
fn spawn_process(bin: &Path, name: &str, slot: u16, data: &Path, extra_env: &[(&str, &str)]) -> Result<Child, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("node.log"))
        .map_err(|e| format!("cannot open the node log: {e}"))?;
    let err_log = log.try_clone().map_err(|e| format!("cannot open the node log: {e}"))?;
    let s = slot;
    let mut cmd = Command::new(bin);
    cmd.args(["--host", "127.0.0.1", "--port", &(8080 + s).to_string(), "--scheme", "http"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED", "true")
        .env("PERSISTENCE_DATA_PATH", data.join("data"))
        .env("DEFAULT_VECTORIZER_MODULE", "none")
        .env("ENABLE_MODULES", "")
        .env("DISABLE_TELEMETRY", "true")
        .env("QUERY_MAXIMUM_RESULTS", "10000")
        .env("CLUSTER_HOSTNAME", name)
        .env("CLUSTER_IN_LOCALHOST", "true")
        .env("CLUSTER_GOSSIP_BIND_PORT", (7100 + 2 * s).to_string())
        .env("CLUSTER_DATA_BIND_PORT", (7101 + 2 * s).to_string())
        .env("GRPC_PORT", (50051 + s).to_string())
        .env("RAFT_PORT", (8300 + 2 * s).to_string())
        .env("RAFT_INTERNAL_RPC_PORT", (8301 + 2 * s).to_string())
        .env("GO_PROFILING_PORT", (6060 + s).to_string())
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would kill this node.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))
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
