//! Nothing lost in silence: the committed hostile corpus (`fixtures/hostile`, made by `make.py`), hostile
//! folders and a full disk through the real binary. Every input ends with all pages stored or a named
//! failure and exit 1; never a signal, a hang or a silent 0-page result; memory stays bounded; the index
//! opens and searches afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use colqwen_testkit::{fixtures_dir, tiny_adapter};
use serde_json::Value;

fn colqwen(index: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
    c.arg("--index").arg(index).arg("--model").arg(tiny_adapter()).args(["--device", "cpu"]);
    c.env("COLQWEN_NO_PROGRESS", "1").env_remove("COLQWEN_INDEX").env_remove("COLQWEN_MODEL");
    c
}

/// Runs with a wall-clock limit; a hang fails the test instead of blocking CI.
fn run_within(mut c: Command, limit: Duration) -> Output {
    let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("colqwen did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Largest resident set of any child process that has ended so far, bytes (Linux: ru_maxrss is in KiB).
fn children_max_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-parameter.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64 * 1024
}

/// The README's bound for one ingest with the default limits and two render threads.
const RSS_BOUND: u64 = 3 << 30;

#[test]
fn every_hostile_input_ends_stored_or_named() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let mut names = Vec::new();
    for e in std::fs::read_dir(fixtures_dir().join("hostile")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // 20,000 real pages take minutes to embed on 2 cores; the PDF crate's tests open and count it.
        if p.extension().is_some_and(|x| x == "pdf") && name != "pages-20000.pdf" {
            std::fs::copy(&p, corpus.join(&name)).unwrap();
            names.push(name);
        }
    }
    assert!(names.len() >= 25, "the hostile corpus is committed");
    let index = tmp.path().join("index");
    let mut c = colqwen(&index);
    c.arg("--json").arg("ingest").arg(&corpus);
    let out = run_within(c, Duration::from_secs(600));
    assert_eq!(out.status.code(), Some(1), "failures give exit 1, never a signal: {:?}", out.status);
    let rss = children_max_rss();
    assert!(rss < RSS_BOUND, "peak RSS {rss} bytes over the bound");
    let summary = json(&out);
    let failures = summary["failures"].as_array().unwrap();

    let mut c = colqwen(&index);
    c.args(["--json", "list"]);
    let docs = json(&run_within(c, Duration::from_secs(60)));
    let docs = docs.as_array().unwrap();
    for name in &names {
        let stored = docs.iter().find(|d| d["source_path"].as_str().unwrap().ends_with(name.as_str()));
        let failed: Vec<&Value> =
            failures.iter().filter(|f| f["path"].as_str().unwrap().ends_with(name.as_str())).collect();
        let complete = stored.is_some_and(|d| d["stored_pages"] == d["page_count"]);
        assert!(complete || !failed.is_empty(), "{name}: neither all pages stored nor a named failure");
        for f in &failed {
            let msg = f["error"].as_str().unwrap();
            assert!(msg.contains(name.as_str()), "{name}: the error names the file: {msg}");
            assert_eq!(msg.matches(name.as_str()).count(), 1, "{name}: the path is said once: {msg}");
        }
        if let Some(d) = stored
            && d["stored_pages"] != d["page_count"]
        {
            assert!(!failed.is_empty(), "{name}: missing pages without a failure");
        }
    }
    // Files whose pages all render under repair are stored whole.
    for name in [
        "mediabox-1x100000.pdf",
        "tree-both-swapped.pdf",
        "appended-object-after-eof.pdf",
        "annots-ref-byte-bracket.pdf",
    ] {
        let d = docs
            .iter()
            .find(|d| d["source_path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} stored"));
        assert_eq!(d["stored_pages"], d["page_count"], "{name}");
    }
    for name in ["zero-pages.pdf", "nesting-20k-dict.pdf"] {
        assert!(failures.iter().any(|f| f["path"].as_str().unwrap().ends_with(name)), "{name} is a named failure");
    }

    let mut c = colqwen(&index);
    c.args(["--json", "search", "anything", "-k", "3"]);
    let out = run_within(c, Duration::from_secs(120));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out).as_array().unwrap().len(), 3);
}

#[test]
fn hostile_folders_end_and_bad_paths_do_not_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("docs");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let good = fixtures_dir().join("pdfs").join("siscone-refman_p60_diagram.pdf");
    std::fs::copy(&good, root.join("sub/one.pdf")).unwrap();
    std::fs::copy(fixtures_dir().join("pdfs/cplusplus-annotations_p125_table.pdf"), root.join("two.pdf")).unwrap();
    // The same content under a second name, two symlink loops, a FIFO named *.pdf, a missing path. (An
    // unreadable subfolder takes the same path as the missing file; as root it cannot be made here.)
    std::fs::copy(&good, root.join("copy-of-one.pdf")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("sub/loop2")).unwrap();
    assert!(Command::new("mkfifo").arg(root.join("pipe.pdf")).status().unwrap().success());
    let mut c = colqwen(&tmp.path().join("index"));
    c.arg("--json").arg("ingest").arg(&root).arg(tmp.path().join("missing.pdf"));
    let out = run_within(c, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    assert_eq!(s["pages_ingested"], 2, "both real documents, once each: {s}");
    assert_eq!(s["duplicates"].as_array().unwrap().len(), 1, "{s}");
    let failures = s["failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f["path"].as_str().unwrap().ends_with("missing.pdf")), "{s}");
    assert!(
        !failures.iter().any(|f| f["path"].as_str().unwrap().ends_with("pipe.pdf")),
        "a FIFO in a folder is a note"
    );
}

#[test]
fn a_full_disk_is_one_clear_error_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |opts: &str| Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(&mnt).output();
    // 16 MiB: the store keeps 8 MiB free, and this manual needs ~13 MB (tiny model, previews included).
    match mount("size=16m") {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipped: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
            return;
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let index = mnt.join("index");
    let manual = fixtures_dir().join("pdfs").join("reportlab-userguide_broken-xref.pdf");
    let mut c = colqwen(&index);
    c.arg("ingest").arg(&manual);
    let out = run_within(c, Duration::from_secs(300));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "one clear error, exit 1, no SIGBUS: {err}");
    assert!(err.contains("no space left"), "{err}");
    assert!(err.contains("hint: free space"), "{err}");

    let grow = Command::new("mount").args(["-o", "remount,size=1g"]).arg(&mnt).status().unwrap();
    assert!(grow.success());
    let mut c = colqwen(&index);
    c.args(["--json", "ingest"]).arg(&manual);
    let out = run_within(c, Duration::from_secs(300));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = colqwen(&index);
    c.args(["--json", "stats"]);
    let stats = json(&run_within(c, Duration::from_secs(60)));
    assert_eq!(stats["pages"], 134, "exact counts after freeing space");
}
