//! The hostile user of issue 22, as one automated check: while `colqwen serve` (the real binary, the tiny
//! fixture model on the CPU) ingests a 134-page manual, clients upload good, bad, duplicate, oversized and
//! aborted files, delete documents while they are being ingested, throw image bombs and oversized requests at
//! `/v1/embeddings`, and search. Every request that should succeed does; every refusal is the documented 4xx.
//! At the end, and again after a restart, the index is consistent: what `list` shows is exactly what `search`
//! can return, page for page; every document has its true page count; no deleted document came back; the
//! upload folder holds one file per stored document and nothing else; the previews are those of the stored
//! documents; every job ended with a report that adds up.
// The helpers below are test code as much as the test: a failed unwrap is a failed check.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colqwen_testkit::fixtures_dir;
use serde_json::{Value, json};

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";
const BOUNDARY: &str = "colqwen-hostile-boundary";

/// A document's id: the first 16 hex digits of its file's SHA-256.
fn doc_id(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))[..16].to_string()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("pdfs").join(name)).unwrap()
}

/// The same one-page PDF with a comment after `%%EOF`: new bytes, so a new document of one page.
fn variant(n: usize) -> Vec<u8> {
    let mut b = read("siscone-refman_p60_diagram.pdf");
    b.extend_from_slice(format!("\n% variant {n}\n").as_bytes());
    b
}

struct Client {
    url: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self { url: url.to_string(), agent }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.agent.get(&format!("{}{path}", self.url)).call())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(self.agent.post(&format!("{}{path}", self.url)).send_json(body))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        Self::answer(self.agent.delete(&format!("{}{path}", self.url)).call())
    }

    fn upload(&self, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let body = multipart(files);
        let req = self
            .agent
            .post(&format!("{}/v1/documents", self.url))
            .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"));
        Self::answer(req.send(&body[..]))
    }

    /// A multipart upload cut in the middle of its file, the connection dropped.
    fn aborted_upload(&self, bytes: &[u8]) {
        let body = multipart(&[("aborted.pdf", bytes.to_vec())]);
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body[..body.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Every document, page by page of the list.
    fn documents(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => "/v1/documents?limit=7".to_string(),
                Some(c) => format!("/v1/documents?limit=7&cursor={c}"),
            };
            let (status, page) = self.get(&path);
            assert_eq!(status, 200, "{page}");
            all.extend(page["documents"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return all,
            }
        }
    }

    fn jobs(&self) -> Vec<Value> {
        let (status, j) = self.get("/v1/jobs?limit=1000");
        assert_eq!(status, 200, "{j}");
        j["jobs"].as_array().unwrap().clone()
    }
}

fn multipart(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/pdf\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                files.insert(e.path());
            }
        }
    }
    files
}

/// A PNG header claiming `w` × `h` pixels, with a token of data.
fn png_claiming(w: u32, h: u32) -> String {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = kind.to_vec();
        crc.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    use base64::Engine as _;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

fn small_png() -> String {
    let img = image::RgbImage::from_pixel(320, 240, image::Rgb([250, 250, 250]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    use base64::Engine as _;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out.into_inner()))
}

/// Requests that got an answer other than the one they should have, by what they were.
#[derive(Default)]
struct Tally {
    wrong: Mutex<Vec<String>>,
    requests: AtomicUsize,
}

impl Tally {
    fn expect(&self, what: &str, status: u16, ok: &[u16], body: &Value) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok.contains(&status) {
            self.wrong.lock().unwrap().push(format!("{what}: {status} {body}"));
        }
    }
}

/// What the index must hold: listed = searchable page for page, true page counts, nothing deleted back, one
/// upload file per document and nothing else, previews of stored documents only, jobs that add up.
fn check_consistent(c: &Client, index: &Path, pages_of: &HashMap<String, u64>, deleted: &BTreeSet<String>) {
    let docs = c.documents();
    let listed: BTreeMap<String, u64> =
        docs.iter().map(|d| (d["doc_id"].as_str().unwrap().to_string(), d["stored_pages"].as_u64().unwrap())).collect();
    assert_eq!(listed.len(), docs.len(), "a document listed twice: {docs:?}");
    for d in &docs {
        let id = d["doc_id"].as_str().unwrap();
        let truth = pages_of.get(id).unwrap_or_else(|| panic!("a document nobody uploaded: {d}"));
        assert_eq!(d["page_count"].as_u64(), Some(*truth), "{d}");
        assert_eq!(d["stored_pages"].as_u64(), Some(*truth), "every page stored: {d}");
        assert!(!deleted.contains(id), "a deleted document came back: {d}");
    }
    let total: u64 = listed.values().sum();
    let (status, stats) = c.get("/v1/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["pages"].as_u64(), Some(total), "{stats}");
    let (status, res) = c.post("/v1/search", &json!({ "query": "the", "k": 1000, "mode": "exact" }));
    assert_eq!(status, 200, "{res}");
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    for h in res["results"].as_array().unwrap() {
        *found.entry(h["doc_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(found, listed, "what search can return is what list shows, page for page");

    let uploads = files_below(&index.join("uploads"));
    let sources: BTreeSet<PathBuf> = docs.iter().map(|d| PathBuf::from(d["source_path"].as_str().unwrap())).collect();
    assert_eq!(uploads, sources, "the upload folder holds the stored documents' files and nothing else");
    let previews: BTreeSet<String> = std::fs::read_dir(index.join("previews"))
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(previews, listed.keys().cloned().collect(), "previews of the stored documents only");

    for j in c.jobs() {
        assert!(!matches!(j["state"].as_str(), Some("queued" | "running")), "{j}");
        let files = j["files"].as_array().unwrap();
        let sum: u64 = files.iter().map(|f| f["pages_stored"].as_u64().unwrap()).sum();
        assert_eq!(j["pages_stored"].as_u64(), Some(sum), "the job's total is its files': {j}");
        if j["state"] == "done" {
            assert!(files.iter().all(|f| f["done"] == true), "a done job with a file not done: {j}");
        }
        for f in files {
            if f["done"] == true && f["note"].is_null() && f["errors"].as_array().unwrap().is_empty() {
                // Stored by this job: its document is listed with all its pages, unless deleted afterwards.
                let id = f["doc_id"].as_str().unwrap();
                assert!(listed.contains_key(id) || deleted.contains(id), "{f}");
            }
        }
    }
}

#[test]
fn hostile_clients_while_ingesting_leave_the_index_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let bin = Path::new(env!("CARGO_BIN_EXE_colqwen"));
    let (mut child, url) = colqwen_testkit::server::start(bin, &index, &["--max-upload-mib", "2"], None);
    let c = Arc::new(Client::new(&url));
    let tally = Arc::new(Tally::default());
    // The true page count of every content uploaded, by document id.
    let pages_of: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let deleted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    pages_of.lock().unwrap().insert(doc_id(&read(MANUAL)), 134);
    pages_of.lock().unwrap().insert(doc_id(&read("gutenprint-users-manual_p5-14_text.pdf")), 10);
    let (victims_tx, victims_rx) = std::sync::mpsc::channel::<String>();

    // The long ingest the others run against, and a second one queued behind it.
    let (status, up) = c.upload(&[("manual.pdf", read(MANUAL))]);
    assert_eq!(status, 202, "{up}");
    let manual_job = up["job"].as_str().unwrap().to_string();
    let (status, up) = c.upload(&[("gutenprint.pdf", read("gutenprint-users-manual_p5-14_text.pdf"))]);
    assert_eq!(status, 202, "{up}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    // Uploads: good ones (kept), victims (deleted by the deleter), duplicates, bad, oversized, aborted, a NUL.
    {
        let (c, tally, stop, pages_of) = (c.clone(), tally.clone(), stop.clone(), pages_of.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let keep = variant(2 * n);
                let victim = variant(2 * n + 1);
                pages_of.lock().unwrap().extend([(doc_id(&keep), 1), (doc_id(&victim), 1)]);
                let (s, b) = c.upload(&[("keep.pdf", keep.clone()), ("keep-again.pdf", keep.clone())]);
                tally.expect("good upload with a duplicate inside", s, &[202], &b);
                let (s, b) = c.upload(&[("victim.pdf", victim.clone()), ("bad.pdf", b"<html>no</html>".to_vec())]);
                tally.expect("a victim and a bad file", s, &[202], &b);
                let _ = victims_tx.send(doc_id(&victim));
                let (s, b) = c.upload(&[("again.pdf", keep)]);
                tally.expect("already stored (or queued)", s, &[202], &b);
                let (s, b) = c.upload(&[("bad.pdf", b"%PDF-1.4 nothing".to_vec())]);
                tally.expect("only bad", s, &[422], &b);
                let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
                let (s, b) = c.upload(&[("big.pdf", big)]);
                // The server answers 413 as soon as the limit is passed and closes the connection: a client
                // still sending may see the connection closed (0) instead. Refused either way.
                tally.expect("oversized", s, &[413, 0], &b);
                c.aborted_upload(&variant(1_000_000 + n));
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    // Deletes: the manual while it is ingested, each victim right after its upload (queued, being ingested or
    // stored by then).
    {
        let (c, tally, stop, deleted) = (c.clone(), tally.clone(), stop.clone(), deleted.clone());
        let manual_job = manual_job.clone();
        threads.push(std::thread::spawn(move || {
            let mut manual_done = false;
            let mut stopped_ingests = 0;
            while !stop.load(Ordering::Relaxed) {
                if !manual_done {
                    let (_, j) = c.get(&format!("/v1/jobs/{manual_job}"));
                    if j["pages_stored"].as_u64().unwrap_or(0) >= 20 {
                        let id = j["files"][0]["doc_id"].as_str().unwrap().to_string();
                        deleted.lock().unwrap().insert(id.clone());
                        let (s, b) = c.delete(&format!("/v1/documents/{id}"));
                        tally.expect("delete the manual during its ingest", s, &[200], &b);
                        stopped_ingests += usize::from(b["ingest_stopped"] == true);
                        manual_done = true;
                    }
                }
                while let Ok(id) = victims_rx.try_recv() {
                    deleted.lock().unwrap().insert(id.clone());
                    let (s, b) = c.delete(&format!("/v1/documents/{id}"));
                    tally.expect("delete a victim", s, &[200], &b);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The last victims.
            while let Ok(id) = victims_rx.try_recv() {
                deleted.lock().unwrap().insert(id.clone());
                let (s, b) = c.delete(&format!("/v1/documents/{id}"));
                tally.expect("delete a victim", s, &[200], &b);
            }
            assert!(
                manual_done && stopped_ingests == 1,
                "the manual was deleted while it was being ingested ({manual_done}, {stopped_ingests})"
            );
        }));
    }
    // Embeddings abuse, and good embeddings.
    {
        let (c, tally, stop) = (c.clone(), tally.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (bomb, small) = (png_claiming(10_000, 10_000), small_png());
            while !stop.load(Ordering::Relaxed) {
                let (s, b) = c.post("/v1/embeddings", &json!({ "input": vec![bomb.clone(); 6] }));
                tally.expect("image bombs", s, &[413], &b);
                let (s, b) = c.post("/v1/embeddings", &json!({ "input": vec![small.clone(); 17] }));
                tally.expect("too many images", s, &[413], &b);
                let (s, b) = c.post("/v1/embeddings", &json!({ "input": vec!["x"; 65] }));
                tally.expect("too many inputs", s, &[400], &b);
                let (s, b) = c.post("/v1/embeddings", &json!({ "input": ["reset the firmware", small.clone()] }));
                tally.expect("good embeddings", s, &[200], &b);
                let (s, b) = c.post("/v1/search", &json!({ "query": "x", "k": 500, "maps": true }));
                tally.expect("a huge answer", s, &[400], &b);
            }
        }));
    }
    // Searches all along.
    {
        let (c, tally, stop) = (c.clone(), tally.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (s, b) = c.post("/v1/search", &json!({ "query": "paragraph styles", "k": 5 }));
                tally.expect("search", s, &[200], &b);
            }
        }));
    }

    // Until the manual's job has ended (stopped for its delete) and a few more rounds went by.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, j) = c.get(&format!("/v1/jobs/{manual_job}"));
        if !matches!(j["state"].as_str(), Some("queued" | "running")) {
            eprintln!("the manual's job ended: {j}");
            break;
        }
        assert!(Instant::now() < deadline, "the manual's job did not end: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // Every job ends.
    let deadline = Instant::now() + Duration::from_secs(600);
    while c.jobs().iter().any(|j| matches!(j["state"].as_str(), Some("queued" | "running"))) {
        assert!(Instant::now() < deadline, "jobs did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let wrong = tally.wrong.lock().unwrap().clone();
    eprintln!(
        "{} requests, {} answered otherwise than they should",
        tally.requests.load(Ordering::Relaxed),
        wrong.len()
    );
    assert!(wrong.is_empty(), "requests answered wrongly: {wrong:#?}");

    // What the jobs that are kept (finished ones are pruned) say of page counts agrees with the files.
    for j in c.jobs() {
        for f in j["files"].as_array().unwrap() {
            if let (Some(id), Some(n)) = (f["doc_id"].as_str(), f["page_count"].as_u64()) {
                assert_eq!(pages_of.lock().unwrap().get(id), Some(&n), "{f}");
            }
        }
    }
    // The sweep after the last job's end has run (every 2 s).
    std::thread::sleep(Duration::from_secs(3));
    let deleted = deleted.lock().unwrap().clone();
    let pages_of = pages_of.lock().unwrap().clone();
    check_consistent(&c, &index, &pages_of, &deleted);

    // The same after a restart.
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, url) = colqwen_testkit::server::start(bin, &index, &[], None);
    let c = Client::new(&url);
    check_consistent(&c, &index, &pages_of, &deleted);
    let _ = child.kill();
    let _ = child.wait();
}
