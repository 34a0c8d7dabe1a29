//! `scripts/weaviate.sh` itself (issue 22 item 15): `start` on the data folder of `cluster` left node1 waiting
//! for node2 as a raft candidate forever; the script exited 1 after 121 s and left the node running. Now it
//! refuses such a folder at once, and a start that does not get ready stops the node it started.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `scripts/weaviate.sh ARGS` on the ports of `slot` and `slot + 1`, with its nodes' files in `run`.
fn script(run: &Path, slot: u16, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut c = Command::new("bash");
    c.arg(root.join("scripts/weaviate.sh")).args(args);
    c.env("WEAVIATE_RUN", run).env("WEAVIATE_PORT", (8080 + slot).to_string()).env("WEAVIATE_SLOT", slot.to_string());
    c.envs(extra_env.iter().copied());
    c.output().expect("bash runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the process in `pidfile` (if any) is alive.
fn alive(pidfile: &Path) -> Option<bool> {
    let pid = std::fs::read_to_string(pidfile).ok()?;
    Some(Path::new(&format!("/proc/{}", pid.trim())).exists())
}

#[test]
fn start_refuses_a_cluster_folder_and_never_leaves_a_node_running() {
    // The script installs (or finds) the same pinned binary as the tests' own nodes.
    if common::server_binary().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = tmp.path().join("run");
    let slot = colqwen_testkit::weaviate::free_slots(2).expect("two free slots");
    let out = script(&run, slot, &["cluster"], &[]);
    assert!(out.status.success(), "cluster: {}", stderr(&out));
    let out = script(&run, slot, &["stop"], &[]);
    assert!(out.status.success(), "stop: {}", stderr(&out));

    // `start` on the cluster's folder: refused at once, nothing started.
    let t = Instant::now();
    let out = script(&run, slot, &["start"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "refused after {:?}", t.elapsed());
    assert!(err.contains("error: ") && err.contains("2-node cluster"), "{err}");
    assert!(err.contains("hint: ") && err.contains("scripts/weaviate.sh cluster"), "{err}");
    assert_eq!(alive(&run.join("node1/pid")), None, "no node started: {err}");

    // A folder from before the check (its mode unknown, said to be a single node's): node1 starts and never
    // gets ready; the script gives up after WEAVIATE_READY_TIMEOUT and stops it.
    std::fs::write(run.join("mode"), "single\n").expect("mode");
    std::fs::remove_dir_all(run.join("node2")).expect("forget node2");
    let out = script(&run, slot, &["start"], &[("WEAVIATE_READY_TIMEOUT", "15")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not become ready in 15 s") && err.contains("stopped node1"), "{err}");
    assert_eq!(alive(&run.join("node1/pid")), None, "the pid file is gone: {err}");
    let pid: String =
        err.lines().find_map(|l| l.strip_prefix("node1: pid ")).and_then(|r| r.split(',').next()).unwrap_or("").into();
    assert!(!pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists(), "node1 (pid {pid}) is still running");
}
