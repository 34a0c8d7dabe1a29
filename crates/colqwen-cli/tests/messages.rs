//! Issue 22, the command line tried as a hostile new user would: what the user gets wrong exits 1 with a hint
//! (never 2, which means "unexpected"), every `error:` line is followed by a `hint:` line, Ctrl-C and SIGTERM
//! stop an ingest with a summary, file names print on one line and find their file again, and damaged or cut
//! manuals store every page they hold and say what is missing. Real binary, tiny fixture model, real PDFs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use colqwen_testkit::{fixtures_dir, tiny_adapter};
use serde_json::Value;

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";
const MANUAL_PAGES: u64 = 134;

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

fn colqwen(index: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
    c.arg("--index").arg(index).arg("--model").arg(tiny_adapter()).args(["--device", "cpu"]);
    c.env("COLQWEN_NO_PROGRESS", "1").env_remove("COLQWEN_INDEX").env_remove("COLQWEN_MODEL");
    c.env_remove("COLQWEN_PDF_PASSWORD");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("colqwen runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

/// Every `error:` line of `err` is followed by a `hint:` line, and there is at least one.
fn assert_hinted(err: &str, what: &str) {
    let lines: Vec<&str> = err.lines().collect();
    let errors: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("error: ")).collect();
    assert!(!errors.is_empty(), "{what}: no error line:\n{err}");
    for i in errors {
        // clap's errors put a usage block between the error and the hint.
        let hint = lines[i + 1..].iter().take_while(|l| !l.starts_with("error: ")).any(|l| l.starts_with("hint: "));
        assert!(hint, "{what}: `{}` has no hint:\n{err}", lines[i]);
    }
}

/// Issue 22 item 11: user mistakes exited 2 ("unexpected"): a password file that is missing or a folder, an
/// index path that is a file, every clap usage error; `--max-visual-tokens 0` was accepted.
#[test]
fn user_mistakes_exit_1_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let page = pdf("siscone-refman_p60_diagram.pdf");
    let missing = tmp.path().join("no-such-password-file");
    let folder = tmp.path().to_path_buf();
    let cases: Vec<(&str, PathBuf, Vec<std::ffi::OsString>)> = vec![
        ("unknown flag", index.clone(), vec!["ingest".into(), "--bogus".into(), page.clone().into()]),
        ("unknown command", index.clone(), vec!["ingets".into(), page.clone().into()]),
        ("--prefetch 0", index.clone(), vec!["search".into(), "q".into(), "--prefetch".into(), "0".into()]),
        ("-k 0", index.clone(), vec!["search".into(), "q".into(), "-k".into(), "0".into()]),
        (
            "--max-visual-tokens 0",
            index.clone(),
            vec!["ingest".into(), "--max-visual-tokens".into(), "0".into(), page.clone().into()],
        ),
        (
            "--batch-size 0",
            index.clone(),
            vec!["ingest".into(), "--batch-size".into(), "0".into(), page.clone().into()],
        ),
        (
            "--page-timeout 0",
            index.clone(),
            vec!["ingest".into(), "--page-timeout".into(), "0".into(), page.clone().into()],
        ),
        ("missing argument", index.clone(), vec!["ingest".into()]),
        (
            "--password-file missing",
            index.clone(),
            vec!["ingest".into(), "--password-file".into(), missing.into(), page.clone().into()],
        ),
        (
            "--password-file a folder",
            index.clone(),
            vec!["ingest".into(), "--password-file".into(), folder.into(), page.clone().into()],
        ),
        ("--index a file", file.clone(), vec!["ingest".into(), page.clone().into()]),
        ("--index below a file", file.join("index"), vec!["ingest".into(), page.clone().into()]),
    ];
    for (what, index, args) in cases {
        let mut c = colqwen(&index);
        c.args(&args);
        let out = run(c);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_hinted(&err, what);
        println!("{what}:\n{err}");
    }
    assert!(!index.exists(), "no index was made by a refused command");
    // `--help` and `--version` are not mistakes.
    for flag in ["--help", "--version"] {
        let out = run({
            let mut c = colqwen(&index);
            c.arg(flag);
            c
        });
        assert_eq!(out.status.code(), Some(0), "{flag}");
    }
}

/// Issue 22 item 11: an index folder that cannot be written (a read-only file system here, since root writes
/// anywhere else) exits 1 with a hint naming --index.
#[test]
fn an_index_that_cannot_be_written_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&ro).output();
    if !mounted.is_ok_and(|o| o.status.success()) {
        // Not root: a folder without write permission does the same.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(ro.clone());
    let mut c = colqwen(&ro.join("index"));
    c.arg("ingest").arg(pdf("siscone-refman_p60_diagram.pdf"));
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_hinted(&err, "read-only index");
    assert!(err.contains("hint: pass --index a folder this user can write to"), "{err}");
}

/// Issue 22 item 12: these errors had no hint: a decompression-bomb page, "no pages that can be read", "only N
/// of M", a missing path, a FIFO, a dangling link, a glob with no match, an empty query; the password error
/// recommended `--password` (visible in `ps`), and a wrong password from a file said "check the value given
/// with --password".
#[test]
fn every_error_has_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(dir.join("gone.pdf"), dir.join("dangling.pdf")).unwrap();
    assert!(Command::new("mkfifo").arg(dir.join("fifo.pdf")).status().unwrap().success());
    let hostile = fixtures_dir().join("hostile");
    let mut c = colqwen(&index);
    c.arg("ingest")
        .arg(hostile.join("bomb-content-300mib.pdf"))
        .arg(hostile.join("zero-pages.pdf"))
        .arg(hostile.join("objstm-page-unreadable.pdf"))
        .arg(fixtures_dir().join("bad-pdfs/password-secret.pdf"))
        .arg(dir.join("missing.pdf"))
        .arg(dir.join("fifo.pdf"))
        .arg(dir.join("dangling.pdf"))
        .arg(dir.join("*.nomatch"))
        .arg(pdf("siscone-refman_p60_diagram.pdf"));
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_hinted(&err, "ingest");
    assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 8, "{err}");
    for (name, said) in [
        ("bomb-content-300mib.pdf", "decompression bomb"),
        ("zero-pages.pdf", "no pages that can be read"),
        ("objstm-page-unreadable.pdf", "only 2 of the 3 pages"),
        ("password-secret.pdf", "password-protected"),
        ("missing.pdf", "No such file"),
        ("fifo.pdf", "not a regular file"),
        ("dangling.pdf", "No such file"),
        ("*.nomatch", "no file matches"),
    ] {
        assert!(err.lines().any(|l| l.starts_with("error: ") && l.contains(name) && l.contains(said)), "{name}: {err}");
    }
    let password_hint = err.lines().skip_while(|l| !l.contains("password-protected")).nth(1).unwrap_or_default();
    assert!(password_hint.contains("--password-file"), "{password_hint}");
    assert!(!err.lines().any(|l| l.contains("password-protected") && l.contains("--password")), "{err}");

    // A wrong password read from a file.
    let pw = tmp.path().join("password");
    std::fs::write(&pw, "wrong\n").unwrap();
    let mut c = colqwen(&index);
    c.arg("ingest").arg("--password-file").arg(&pw).arg(fixtures_dir().join("bad-pdfs/password-secret.pdf"));
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_hinted(&err, "wrong password");
    assert!(err.contains("does not open this PDF") && !err.contains("given with --password"), "{err}");

    let mut c = colqwen(&index);
    c.args(["search", ""]);
    let out = run(c);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_hinted(&err, "empty query");
    // JSON summaries carry the hints too.
    let mut c = colqwen(&index);
    c.args(["--json", "ingest"]).arg(hostile.join("zero-pages.pdf")).arg(dir.join("missing.pdf"));
    let s = json(&run(c));
    for f in s["failures"].as_array().unwrap() {
        assert!(f["hint"].as_str().is_some_and(|h| !h.is_empty()), "{f}");
    }
}

/// Issue 22 item 14: a file name with a newline printed raw in `list` (it looked like a second row); a name
/// that is not UTF-8 was stored lossily (its maps then failed: no such file); a relative path was stored
/// relative (`search --maps` from another folder found no source).
#[test]
fn odd_names_and_relative_paths_list_on_one_line_and_find_their_file() {
    use std::os::unix::ffi::OsStrExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(pdf("siscone-refman_p60_diagram.pdf"), docs.join("line\nbreak.pdf")).unwrap();
    let latin1 = docs.join(std::ffi::OsStr::from_bytes(b"caf\xe9 50%.pdf"));
    std::fs::copy(pdf("cplusplus-annotations_p125_table.pdf"), &latin1).unwrap();
    // Ingested by a relative path, from the folder above it.
    let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
    c.current_dir(tmp.path()).arg("--index").arg(&index).arg("--model").arg(tiny_adapter()).args(["--device", "cpu"]);
    c.env("COLQWEN_NO_PROGRESS", "1").env_remove("COLQWEN_INDEX").env_remove("COLQWEN_MODEL");
    c.args(["--json", "ingest", "docs"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["pages_ingested"], 2);

    let mut c = colqwen(&index);
    c.arg("list");
    let out = run(c);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "one line per document:\n{text}");
    assert!(text.contains("line\\nbreak.pdf"), "{text}");
    let mut c = colqwen(&index);
    c.args(["--json", "list"]);
    for d in json(&run(c)).as_array().unwrap() {
        let stored = d["source_path"].as_str().unwrap();
        assert!(Path::new(stored).is_absolute(), "stored absolute: {stored}");
        assert!(colqwen::source_file(stored).is_file(), "{stored} names its file");
    }

    // Maps from another folder: both sources are found.
    let maps = tmp.path().join("maps");
    let mut c = colqwen(&index);
    c.current_dir("/").args(["--json", "search", "table", "-k", "2", "--maps"]).arg(&maps);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = json(&out);
    for h in hits.as_array().unwrap() {
        assert!(h["map"].as_str().is_some_and(|m| Path::new(m).is_file()), "no map for {h}: {}", stderr(&out));
    }
    // `delete` takes the relative path too.
    let mut c = colqwen(&index);
    c.current_dir(tmp.path()).args(["delete", "--yes", "docs/line\nbreak.pdf"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue 22 item 13: Ctrl-C or SIGTERM during `colqwen ingest` ended the process at once with no word. Now the
/// pipeline stops, stores and flushes what is done, says how many pages were stored and how to go on, and exits
/// 130 (SIGINT) or 143 (SIGTERM); the index is intact and a re-run completes it exactly.
#[test]
fn ctrl_c_and_sigterm_stop_an_ingest_with_a_summary() {
    for (signal, code, name) in [(libc::SIGINT, 130, "Ctrl-C (SIGINT)"), (libc::SIGTERM, 143, "SIGTERM")] {
        let tmp = tempfile::tempdir().unwrap();
        let index = tmp.path().join("index");
        let mut c = colqwen(&index);
        c.arg("ingest").arg(pdf(MANUAL)).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        // Once pages are being rendered (previews appear), send the signal.
        let started = Instant::now();
        let previews = index.join("previews");
        while std::fs::read_dir(&previews).map_or(0, |d| d.count()) == 0 {
            assert!(started.elapsed() < Duration::from_secs(120), "no page rendered");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: a plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        let line = err.lines().find(|l| l.starts_with("error: interrupted by")).unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(name), "{line}");
        assert_hinted(&err, name);
        let stored: u64 =
            line.split(": ").nth(2).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
        assert!(stored < MANUAL_PAGES, "{name}: stopped before the end ({stored} pages)");

        let mut c = colqwen(&index);
        c.args(["--json", "stats"]);
        let st = json(&run(c));
        assert_eq!(st["pages"], stored, "{name}: what the message says is what the index holds");
        let mut c = colqwen(&index);
        c.args(["--json", "ingest"]).arg(pdf(MANUAL));
        let s = json(&run(c));
        assert_eq!(
            (s["pages_skipped"].as_u64(), s["pages_ingested"].as_u64()),
            (Some(stored), Some(MANUAL_PAGES - stored))
        );
    }
}

/// Issue 22 items 8 and 10 through the binary: the manual with a vertical tab before a page object lost that
/// page with exit 0 (133 of 134, `list` 133/133); cut at 97 % it stored nothing. Now all 134 pages, exit 0;
/// and the cut file stores its 131 complete pages, exit 1, named as truncated with both counts, `list`
/// 131/134.
#[test]
fn a_flipped_and_a_cut_manual_store_every_page_they_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let full = std::fs::read(pdf(MANUAL)).unwrap();
    // The whitespace before the 11th page object's header (`endobj\nN 0 obj`).
    let mut flipped = full.clone();
    let page_headers: Vec<usize> = (0..full.len() - 12)
        .filter(|&i| full[i..].starts_with(b"endobj\n"))
        .filter(|&i| {
            let next = &full[i + 7..(i + 700).min(full.len())];
            let end = next.windows(6).position(|w| w == b"endobj").unwrap_or(next.len());
            next[..end].windows(12).any(|w| w.starts_with(b"/Type /Page") && !w[11].is_ascii_alphanumeric())
        })
        .collect();
    assert!(page_headers.len() > 20, "{}", page_headers.len());
    flipped[page_headers[10] + 6] = 0x0b;
    std::fs::write(tmp.path().join("flipped.pdf"), &flipped).unwrap();
    std::fs::write(tmp.path().join("cut.pdf"), &full[..full.len() * 97 / 100]).unwrap();

    let mut c = colqwen(&index);
    c.args(["--json", "ingest"]).arg(tmp.path().join("flipped.pdf")).arg(tmp.path().join("cut.pdf"));
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["pages_ingested"], MANUAL_PAGES + 131, "{s}");
    let failures = s["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{s}");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(
        error.contains("cut.pdf") && error.contains("truncated") && error.contains("131 of its 134 pages"),
        "{error}"
    );

    let mut c = colqwen(&index);
    c.args(["--json", "list"]);
    let docs = json(&run(c));
    let counts = |name: &str| {
        let d = docs.as_array().unwrap().iter().find(|d| d["source_path"].as_str().unwrap().ends_with(name)).unwrap();
        (d["stored_pages"].as_u64().unwrap(), d["page_count"].as_u64().unwrap())
    };
    assert_eq!(counts("flipped.pdf"), (MANUAL_PAGES, MANUAL_PAGES));
    assert_eq!(counts("cut.pdf"), (131, MANUAL_PAGES));
}
