//! Every model family through everything a user runs, with its tiny fixture checkpoint (random weights, so
//! scores are meaningless; the tests check behaviour): ingest of real PDFs, search (exact, two-stage),
//! similarity maps on the family's own grid, compact storage, the index's record of the family and the width,
//! the server (`/v1/embeddings`, search, maps) and a Weaviate collection.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use colqwen_testkit::{fixtures_dir, tiny, tiny_adapter};
use serde_json::Value;

/// A family's fixture checkpoint, its name in the index, and the width of its vectors.
struct Family {
    model: &'static str,
    name: &'static str,
    dim: u64,
    /// Pixels per merged-token side (grid cell of the similarity maps).
    cell: u64,
    /// The checkpoint's cap on visual tokens per page.
    max_tokens: u64,
}

const COLQWEN3: Family = Family { model: "colqwen3-tiny", name: "ColQwen3", dim: 320, cell: 32, max_tokens: 32 };
/// ColQwen3.5 (the hybrid Qwen3.5 backbone); its head is `config.json`'s `dim`, 96 in the fixture.
const COLQWEN3_5: Family = Family { model: "colqwen3_5-tiny", name: "ColQwen3.5", dim: 96, cell: 32, max_tokens: 32 };

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

fn colqwen(index: &str, model: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
    c.arg("--index").arg(index).arg("--model").arg(model).arg("--device").arg("cpu");
    c.env("COLQWEN_NO_PROGRESS", "1").env_remove("COLQWEN_INDEX").env_remove("COLQWEN_MODEL");
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `c` with `--json`, expecting success; its JSON answer.
fn json(mut c: Command) -> Value {
    let out = c.output().expect("colqwen runs");
    assert!(out.status.success(), "{:?}: {}", c.get_args().collect::<Vec<_>>(), stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)))
}

fn pages(hits: &Value) -> Vec<String> {
    let mut p: Vec<String> =
        hits.as_array().unwrap().iter().map(|h| format!("{}#{}", h["doc_id"], h["page_number"])).collect();
    p.sort();
    p
}

/// Ingest, stats, exact and two-stage search with maps, a compact index, and the refusal of another model.
fn end_to_end(f: &Family) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(f.model);
    let files = [pdf("siscone-refman_p60_diagram.pdf"), pdf("cplusplus-annotations_p125_table.pdf")];
    let (plain, compact) = (tmp.path().join("plain"), tmp.path().join("compact"));
    let (plain, compact) = (plain.to_str().unwrap(), compact.to_str().unwrap());
    let mut c = colqwen(plain, &model);
    c.args(["--json", "ingest"]).args(&files);
    assert_eq!(json(c)["pages_ingested"], 2);
    let mut c = colqwen(compact, &model);
    c.args(["--json", "ingest", "--storage", "i8", "--pool-factor", "2"]).args(&files);
    assert_eq!(json(c)["pages_ingested"], 2);

    for (index, storage) in [(plain, "f16"), (compact, "i8")] {
        let mut c = colqwen(index, &model);
        c.args(["--json", "stats"]);
        let s = json(c);
        assert_eq!((s["family"].as_str(), s["embedding_dim"].as_u64()), (Some(f.name), Some(f.dim)), "{s}");
        assert_eq!(s["storage"].as_str(), Some(storage));
    }

    let search = |index: &str, extra: &[&str], maps: Option<&Path>| {
        let mut c = colqwen(index, &model);
        c.args(["--json", "search", "class reference", "-k", "2"]).args(extra);
        if let Some(m) = maps {
            c.arg("--maps").arg(m);
        }
        json(c)
    };
    let maps = tmp.path().join("maps");
    let exact = search(plain, &["--mode", "exact"], Some(&maps));
    assert_eq!(exact.as_array().unwrap().len(), 2);
    assert_eq!(pages(&search(plain, &["--prefetch", "2"], None)), pages(&exact), "two-stage over 2 pages = exact");
    assert_eq!(pages(&search(compact, &["--mode", "exact"], None)), pages(&exact), "compact finds the same pages");
    for h in exact.as_array().unwrap() {
        let path = PathBuf::from(h["map"].as_str().unwrap_or_else(|| panic!("no map for {h}")));
        let img = image::open(&path).unwrap().to_rgb8();
        let preview = image::open(h["preview"].as_str().unwrap()).unwrap();
        assert_eq!(img.dimensions(), (preview.width(), preview.height()));
        let coloured = img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 40).count();
        assert!(coloured * 2 > (img.width() * img.height()) as usize, "{}: not an overlay", path.display());
    }

    // Another model (ColQwen2.5) on this index: refused, nothing written.
    let before = std::fs::metadata(Path::new(plain).join("pages.log")).unwrap().len();
    let mut c = colqwen(plain, &tiny_adapter());
    c.args(["ingest"]).arg(pdf("gutenprint-users-manual_p5-14_text.pdf"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(Path::new(plain).join("pages.log")).unwrap().len(), before);
}

/// `colqwen serve` with the family: embeddings of the family's width, upload, search, a similarity map on the
/// family's grid.
fn served(f: &Family) {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let (mut child, url) = colqwen_testkit::server::start_with(
        Path::new(env!("CARGO_BIN_EXE_colqwen")),
        &index,
        &tiny(f.model),
        &[],
        None,
    );
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |path: &str, body: Value| -> (u16, Value) {
        let mut r = agent.post(&format!("{url}{path}")).send_json(&body).unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null))
    };
    let (status, e) = post("/v1/embeddings", serde_json::json!({"input": ["reset the firmware"]}));
    assert_eq!(status, 200, "{e}");
    let shape = &e["data"][0]["shape"];
    assert_eq!(shape[1].as_u64(), Some(f.dim), "{e}");
    assert!(shape[0].as_u64().unwrap() > 10, "query tokens + 10 augmentation tokens: {e}");

    // Server-side ingest of one PDF from an allowed folder, then search and a map.
    let (status, job) =
        post("/v1/documents/paths", serde_json::json!({"paths": [pdf("siscone-refman_p60_diagram.pdf")]}));
    assert!(status == 202 || status == 403, "{status} {job}");
    if status == 403 {
        // Not started with --allow-path: upload instead.
        let bytes = std::fs::read(pdf("siscone-refman_p60_diagram.pdf")).unwrap();
        let boundary = "colqwenfamilies";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"siscone.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut r = agent
            .post(&format!("{url}/v1/documents"))
            .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.body_mut().read_to_string().unwrap_or_default());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let hit = loop {
        let (status, found) = post("/v1/search", serde_json::json!({"query": "diagram", "k": 1}));
        assert_eq!(status, 200, "{found}");
        if let Some(h) = found["results"].get(0) {
            break h.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the upload was not searchable within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let doc = hit["doc_id"].as_str().unwrap();
    let mut r = agent.get(&format!("{url}/v1/pages/{doc}/1/similarity?q=diagram&format=json")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let maps: Value = r.body_mut().read_json().unwrap();
    let (cols, rows) = (maps["cols"].as_u64().unwrap(), maps["rows"].as_u64().unwrap());
    assert_eq!(maps["aggregate"].as_array().unwrap().len() as u64, cols * rows);
    assert!(cols * rows <= f.max_tokens && cols * rows >= 1, "{cols}×{rows} cells of {} px", f.cell);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn colqwen3_end_to_end() {
    end_to_end(&COLQWEN3);
}

#[test]
fn colqwen3_served() {
    served(&COLQWEN3);
}

#[test]
fn colqwen3_5_end_to_end() {
    end_to_end(&COLQWEN3_5);
}

#[test]
fn colqwen3_5_served() {
    served(&COLQWEN3_5);
}

/// A Weaviate collection of 320-wide multi-vectors, made and searched by the ColQwen3 model.
#[test]
fn colqwen3_on_weaviate() {
    let Some(addr) = colqwen_testkit::weaviate::server() else { return };
    let location = format!("weaviate://{addr}/TFamilies_{}", std::process::id());
    let state = tempfile::tempdir().unwrap();
    let model = tiny(COLQWEN3.model);
    let with_state = |mut c: Command| {
        c.env("XDG_DATA_HOME", state.path()).env_remove("COLQWEN_WEAVIATE_API_KEY");
        c
    };
    let mut c = with_state(colqwen(&location, &model));
    c.args(["--json", "ingest", "--weaviate-muvera"])
        .args([pdf("siscone-refman_p60_diagram.pdf"), pdf("cplusplus-annotations_p125_table.pdf")]);
    let ingested = json(c);
    let mut c = with_state(colqwen(&location, &model));
    c.args(["--json", "search", "class reference", "-k", "2"]);
    let hits = json(c);
    let mut c = with_state(colqwen(&location, &model));
    c.args(["--json", "stats"]);
    let stats = json(c);
    let _ = colqwen::weaviate::Weaviate::drop_collection(&colqwen::weaviate::WeaviateConfig::new(
        colqwen::weaviate::Location::parse(&location).unwrap(),
    ));
    assert_eq!(ingested["pages_ingested"], 2, "{ingested}");
    assert_eq!(hits.as_array().unwrap().len(), 2, "{hits}");
    assert_eq!((stats["family"].as_str(), stats["embedding_dim"].as_u64()), (Some("ColQwen3"), Some(320)), "{stats}");
}

/// A checkpoint of a family colqwen does not run: one `error:` naming the file and the families it runs, a
/// `hint:`, exit 1, and no index folder made.
#[test]
fn an_unsupported_checkpoint_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(tiny(COLQWEN3.model)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, model.join(p.file_name().unwrap())).unwrap();
    }
    let cfg = model.join("config.json");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("\"qwen3_vl\"", "\"llava\"")).unwrap();
    let index = tmp.path().join("index");
    let mut c = colqwen(index.to_str().unwrap(), &model);
    c.arg("ingest").arg(pdf("siscone-refman_p60_diagram.pdf"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(err.contains("config.json") && err.contains("ColQwen3") && err.contains("ColQwen2.5"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!index.exists(), "nothing is written before the model has loaded");
}
