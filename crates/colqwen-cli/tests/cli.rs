//! The `colqwen` binary end to end on the CPU with the committed tiny fixture model and real PDFs:
//! ingest, idempotence, search, list/delete/stats, bad inputs, a killed ingest, a changed file, a second
//! process on the same index. The fixture model is random, so scores are meaningless; the tests check
//! behaviour, counts and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use colqwen_testkit::{fixtures_dir, tiny_adapter, tiny_base};
use serde_json::Value;

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

fn bad(name: &str) -> PathBuf {
    fixtures_dir().join("bad-pdfs").join(name)
}

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";

fn colqwen(index: &Path) -> Command {
    colqwen_with(index, &tiny_adapter())
}

fn colqwen_with(index: &Path, model: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
    c.arg("--index").arg(index).arg("--model").arg(model).arg("--device").arg("cpu");
    c.env("COLQWEN_NO_PROGRESS", "1").env_remove("COLQWEN_INDEX").env_remove("COLQWEN_MODEL");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("colqwen runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ingest(index: &Path, files: &[PathBuf], extra: &[&str]) -> Output {
    let mut c = colqwen(index);
    c.arg("--json").arg("ingest").args(extra).args(files);
    run(c)
}

fn stats(index: &Path) -> Value {
    let mut c = colqwen(index);
    c.args(["--json", "stats"]);
    let out = run(c);
    assert!(out.status.success(), "stats: {}", stderr(&out));
    json(&out)
}

#[test]
fn ingest_is_idempotent_and_search_list_delete_work() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let files = [pdf("siscone-refman_p60_diagram.pdf"), pdf("gutenprint-users-manual_p5-14_text.pdf")];
    let out = ingest(&index, &files, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["pages_ingested"], 11);
    assert_eq!(s["pages_skipped"], 0);
    // Previews were written beside the index.
    assert!(index.join("previews").is_dir());

    let again = json(&ingest(&index, &files, &[]));
    assert_eq!(again["pages_ingested"], 0, "second run adds nothing");
    assert_eq!(again["pages_skipped"], 11);
    assert_eq!(stats(&index)["pages"], 11);

    let mut c = colqwen(&index);
    c.args(["--json", "search", "how do I install the printer driver", "-k", "3"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = json(&out);
    assert_eq!(hits.as_array().unwrap().len(), 3);
    assert!(hits[0]["page_number"].as_u64().unwrap() >= 1);
    assert!(Path::new(hits[0]["preview"].as_str().unwrap()).is_file());

    let mut c = colqwen(&index);
    c.args(["--json", "search", "diagram", "--doc", "siscone-refman_p60_diagram.pdf"]);
    let hits = json(&run(c));
    assert_eq!(hits.as_array().unwrap().len(), 1, "--doc filters to the one-page document");

    // --prefetch runs two-stage with that rerank size (on 11 pages: the exact answer); not with --mode exact.
    let ranked = |extra: &[&str]| {
        let mut c = colqwen(&index);
        c.args(["--json", "search", "printer driver", "-k", "4"]).args(extra);
        let hits = json(&run(c));
        hits.as_array().unwrap().iter().map(|h| (h["doc_id"].clone(), h["page_number"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(ranked(&["--prefetch", "5"]), ranked(&["--mode", "exact"]));
    let mut c = colqwen(&index);
    c.args(["search", "printer driver", "--mode", "exact", "--prefetch", "5"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--prefetch"), "{}", stderr(&out));

    let mut c = colqwen(&index);
    c.args(["--json", "list"]);
    let docs = json(&run(c));
    assert_eq!(docs.as_array().unwrap().len(), 2);

    let mut c = colqwen(&index);
    c.args(["--json", "delete", "siscone-refman_p60_diagram.pdf"]);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["pages_deleted"], 1);
    assert_eq!(stats(&index)["pages"], 10);
}

#[test]
fn bad_inputs_are_reported_and_the_rest_is_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let files = [
        bad("empty.pdf"),
        bad("html-saved-as.pdf"),
        bad("truncated-half.pdf"),
        bad("password-secret.pdf"),
        bad("encrypted-empty-user-password.pdf"),
        pdf("linnsequencer-brochure_scanned.pdf"),
        pdf("wikipedia-ocr-printout_epson-scan_unusual.pdf"),
        pdf("cplusplus-annotations_p125_table.pdf"),
    ];
    let out = ingest(&index, &files, &[]);
    assert_eq!(out.status.code(), Some(1), "failures give exit code 1: {}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["pages_ingested"], 4, "encrypted-with-empty-password, two scans and the table page");
    let failures = s["failures"].as_array().unwrap();
    let message = |name: &str| {
        failures
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .map(|f| f["error"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no failure reported for {name}: {failures:?}"))
    };
    assert!(message("empty.pdf").contains("empty"));
    assert!(message("html-saved-as.pdf").contains("not a PDF"));
    assert!(message("truncated-half.pdf").contains("truncated"));
    assert!(message("password-secret.pdf").contains("password"));
    assert_eq!(failures.len(), 4);
    assert!(failures.iter().any(|f| f["hint"].to_string().contains("--password")));
    // The index stays readable and holds what was ingested.
    assert_eq!(stats(&index)["pages"], 4);

    let out = ingest(&index, &[bad("password-secret.pdf")], &["--password", "secret"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["pages_ingested"], 1);
}

#[test]
fn a_page_that_hangs_the_renderer_is_contained() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let files = [bad("form-fanout-hang.pdf"), pdf("siscone-refman_p60_diagram.pdf")];
    let out = ingest(&index, &files, &["--page-timeout", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["pages_ingested"], 1);
    let f = &s["failures"][0];
    assert_eq!(f["page_number"], 1);
    assert!(f["error"].as_str().unwrap().contains("did not finish"), "{f}");
}

#[test]
fn a_killed_ingest_resumes_to_exactly_the_right_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let manual = pdf(MANUAL);
    for delay_ms in [1500u64, 3000] {
        let mut c = colqwen(&index);
        c.args(["ingest"]).arg(&manual).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The index opens after the kill.
        let mut c = colqwen(&index);
        c.args(["--json", "list"]);
        let out = run(c);
        assert!(out.status.success() || !index.join("manifest.json").exists(), "{}", stderr(&out));
    }
    let out = ingest(&index, &[manual.clone()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(
        s["pages_ingested"].as_u64().unwrap() + s["pages_skipped"].as_u64().unwrap(),
        134,
        "every page either resumed or already there: {s}"
    );
    let st = stats(&index);
    assert_eq!(st["pages"], 134, "no duplicates, no missing pages");
    let mut c = colqwen(&index);
    c.args(["--json", "list"]);
    let docs = json(&run(c));
    assert_eq!(docs[0]["stored_pages"], 134);
}

#[test]
fn a_changed_file_replaces_its_old_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let doc = tmp.path().join("manual.pdf");
    std::fs::copy(pdf("gutenprint-users-manual_p5-14_text.pdf"), &doc).unwrap();
    assert_eq!(json(&ingest(&index, &[doc.clone()], &[]))["pages_ingested"], 10);
    std::fs::copy(pdf("cplusplus-annotations_p125_table.pdf"), &doc).unwrap();
    let s = json(&ingest(&index, &[doc.clone()], &[]));
    assert_eq!(s["pages_ingested"], 1);
    assert_eq!(s["pages_replaced"], 10);
    assert_eq!(stats(&index)["pages"], 1);
}

#[test]
fn a_second_process_gets_a_clear_in_use_message() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    assert!(ingest(&index, &[pdf("siscone-refman_p60_diagram.pdf")], &[]).status.success());
    let mut c = colqwen(&index);
    c.args(["ingest", "--force"]).arg(pdf(MANUAL)).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Wait until the ingest holds the index: its first preview (written after the index is opened and locked)
    // appears. `57ca4fdd6a0cc32d` is the manual's document id (SHA-256 prefix, fixtures/pdfs/SOURCES.md).
    let first_preview = index.join("previews/57ca4fdd6a0cc32d");
    let mut out = None;
    for _ in 0..240 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if first_preview.is_dir() {
            let mut c = colqwen(&index);
            c.arg("list");
            out = Some(run(c));
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = out.expect("the ingest never held the index");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn an_index_refuses_another_model() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    assert!(ingest(&index, &[pdf("siscone-refman_p60_diagram.pdf")], &[]).status.success());
    let mut c = colqwen_with(&index, &tiny_base());
    c.args(["search", "anything"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was built with model"), "{}", stderr(&out));
}

#[test]
fn a_missing_index_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = colqwen(&tmp.path().join("nothing"));
    c.args(["search", "firmware"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("hint: run `colqwen ingest"), "{err}");
}

#[test]
fn search_maps_writes_one_overlay_per_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let maps = tmp.path().join("maps");
    let out =
        ingest(&index, &[pdf("siscone-refman_p60_diagram.pdf"), pdf("cplusplus-annotations_p125_table.pdf")], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut c = colqwen(&index);
    c.args(["--json", "search", "class reference", "-k", "2", "--maps"]).arg(&maps);
    let out = run(c);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = json(&out);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2);
    for h in hits {
        let path = PathBuf::from(h["map"].as_str().unwrap_or_else(|| panic!("no map for {h}")));
        assert!(path.starts_with(&maps), "{}", path.display());
        // The overlay has the preview's size and is coloured (viridis over a black-and-white page).
        let img = image::open(&path).unwrap().to_rgb8();
        let preview = image::open(h["preview"].as_str().unwrap()).unwrap();
        assert_eq!(img.dimensions(), (preview.width(), preview.height()));
        let coloured = img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 40).count();
        assert!(coloured * 2 > (img.width() * img.height()) as usize, "{}: not an overlay", path.display());
    }
}

/// The compact storage end to end: a new index made with `--storage i8 --pool-factor 2` keeps both (a later
/// ingest without the flags does not change them), stores about a quarter of the f16 bytes per page, and
/// still draws a similarity map per hit (each cell shows its cluster's score).
#[test]
fn compact_storage_keeps_its_settings_and_draws_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let (compact, plain) = (tmp.path().join("compact"), tmp.path().join("plain"));
    let files = [pdf("siscone-refman_p60_diagram.pdf"), pdf("cplusplus-annotations_p125_table.pdf")];
    let out = ingest(&compact, &files[..1], &["--storage", "i8", "--pool-factor", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ingest(&compact, &files[1..], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ingest(&plain, &files, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (s, p) = (stats(&compact), stats(&plain));
    assert_eq!((s["storage"].as_str(), s["pool_factor"].as_u64()), (Some("i8"), Some(2)), "{s}");
    assert_eq!((p["storage"].as_str(), p["pool_factor"].as_u64()), (Some("f16"), Some(1)), "{p}");
    assert_eq!(s["pages"], p["pages"]);
    let log_bytes = |dir: &Path| std::fs::metadata(dir.join("pages.log")).unwrap().len() as f64;
    let ratio = log_bytes(&compact) / log_bytes(&plain);
    assert!(ratio < 0.35, "compact log is {ratio:.2} of the f16 one");

    let search = |index: &Path, maps: Option<&Path>| {
        let mut c = colqwen(index);
        c.args(["--json", "search", "class reference", "-k", "2", "--mode", "exact"]);
        if let Some(m) = maps {
            c.arg("--maps").arg(m);
        }
        let out = run(c);
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)
    };
    let maps = tmp.path().join("maps");
    let (hits, want) = (search(&compact, Some(&maps)), search(&plain, None));
    let pages = |v: &Value| {
        let mut p: Vec<String> =
            v.as_array().unwrap().iter().map(|h| format!("{}#{}", h["doc_id"], h["page_number"])).collect();
        p.sort();
        p
    };
    assert_eq!(pages(&hits), pages(&want));
    for h in hits.as_array().unwrap() {
        let path = PathBuf::from(h["map"].as_str().unwrap_or_else(|| panic!("no map for {h}")));
        assert!(image::open(&path).is_ok(), "{}", path.display());
    }
}

#[test]
fn eight_bit_text_weights_search_an_f32_index_from_a_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let cache = tmp.path().join("cache");
    let files = [pdf("gutenprint-users-manual_p5-14_text.pdf")];
    let out = ingest(&index, &files, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let search = |dtype: &str| {
        let mut c = colqwen(&index);
        c.env("XDG_CACHE_HOME", &cache).args(["--dtype", dtype, "--json", "search", "printer driver", "-k", "3"]);
        let out = run(c);
        assert!(out.status.success(), "--dtype {dtype}: {}", stderr(&out));
        json(&out).as_array().unwrap().len()
    };
    assert_eq!(search("q8"), 3);
    // The first q8 run wrote the 8-bit weight cache under the user's cache dir; the second reads it.
    let cached = || std::fs::read_dir(cache.join("colqwen").join("q8")).unwrap().count();
    assert_eq!(cached(), 1);
    assert_eq!(search("q8"), 3);
    assert_eq!(cached(), 1);
}
