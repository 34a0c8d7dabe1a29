//! `colqwen serve` for the binary's tests (the HTTP API tests and the browser test start it the same way).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tiny_adapter;

/// Starts `bin serve` (the tests' `env!("CARGO_BIN_EXE_colqwen")`) over `index` with the tiny fixture model on
/// the CPU, on an ephemeral loopback port, with the `extra` flags and `key` as `COLQWEN_API_KEY`. Returns the
/// child and the server's URL once `/health` answers; panics with the server's stderr if it exits first, or
/// after two minutes.
pub fn start(bin: &Path, index: &Path, extra: &[&str], key: Option<&str>) -> (Child, String) {
    start_with(bin, index, &tiny_adapter(), extra, key)
}

/// [`start`] with another model (a folder of `fixtures/tiny`).
pub fn start_with(bin: &Path, index: &Path, model: &Path, extra: &[&str], key: Option<&str>) -> (Child, String) {
    let _ = std::fs::remove_file(index.join("server.json"));
    let mut c = Command::new(bin);
    c.arg("--index").arg(index).arg("--model").arg(model);
    c.args(["--device", "cpu", "serve", "--port", "0"])
        .args(extra)
        .env("COLQWEN_NO_PROGRESS", "1")
        .env_remove("COLQWEN_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        c.env("COLQWEN_API_KEY", k);
    }
    let mut child = c.spawn().expect("colqwen serve starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the server's status") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the server exited ({status}): {err}");
        }
        if let Ok(bytes) = std::fs::read(index.join("server.json"))
            && let Ok(info) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(url) = info["url"].as_str()
        {
            let url = url.trim_end_matches('/').to_string();
            if ureq::get(&format!("{url}/health")).call().is_ok() {
                // From here on the server's messages go to `<index>/server-stderr.log`: a pipe nobody reads
                // would block a server that logs much (a long test) once it is full.
                if let Some(mut err) = child.stderr.take() {
                    let log = index.join("server-stderr.log");
                    std::thread::spawn(move || {
                        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
                            let _ = std::io::copy(&mut err, &mut f);
                        }
                    });
                }
                return (child, url);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up");
}
