//! `colqwen serve` end to end: the real binary on loopback with the committed tiny fixture model, real PDFs,
//! real HTTP. Uploads become jobs, searches answer while an ingest runs, bad uploads get a JSON 4xx and the
//! server keeps serving, ids are validated, the key is enforced beyond loopback, and a `kill -9` during an
//! ingest is repaired by a restart (the job resumes; exact page counts, no duplicates). Hostile use (issue 22):
//! failed, oversized and aborted uploads leave nothing on disk, duplicates keep no copy, a delete during an
//! ingest is final, image bombs and huge answers are refused with the limit named, jobs end in a true state
//! and are paginated and pruned, no server path leaves a server bound beyond loopback.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use colqwen_testkit::hostile::{
    BOUNDARY, Client, files_below, folders_below, multipart, png_claiming_uri, png_data_uri,
};
use colqwen_testkit::{fixtures_dir, tiny_adapter};
use serde_json::{Value, json};

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";
const MANUAL_PAGES: u64 = 134;

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

/// A running `colqwen serve`, and a client of it; killed when dropped.
struct Server {
    child: Child,
    api: Client,
}

impl std::ops::Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.api
    }
}

impl Server {
    fn start(index: &Path, extra: &[&str]) -> Server {
        Self::start_with_key(index, extra, None)
    }

    fn start_with_key(index: &Path, extra: &[&str], key: Option<&str>) -> Server {
        let (child, url) = colqwen_testkit::server::start(Path::new(env!("CARGO_BIN_EXE_colqwen")), index, extra, key);
        Server { child, api: Client::with_key(&url, key) }
    }

    /// Sends `head` (request line and headers, without the blank line) and `body` over a raw connection; with
    /// `hang_up`, closes the sending side right after. Returns the status line's code, or 0 when the server
    /// closed without an answer.
    fn raw(&self, head: &str, body: &[u8], hang_up: bool) -> u16 {
        let addr = self.url().trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("the server accepts a connection");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
        let auth = self.key().map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        s.write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").as_bytes())
            .expect("the head is sent");
        let _ = s.write_all(body);
        if hang_up {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// The server's peak resident memory so far, in MB (Linux).
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server's status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kb / 1024.0
    }

    /// Waits until the job has stored `pages` pages (or ended).
    fn wait_stored(&self, job: &str, pages: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, j) = self.get(&format!("/v1/jobs/{job}"));
            if j["pages_stored"].as_u64().unwrap_or(0) >= pages
                || !matches!(j["state"].as_str(), Some("queued" | "running"))
            {
                return j;
            }
            assert!(Instant::now() < deadline, "job {job} stored too little: {j}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the job until it is no longer queued or running.
    fn wait_job(&self, job: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let (status, j) = self.get(&format!("/v1/jobs/{job}"));
            assert_eq!(status, 200, "{j}");
            if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                return j;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("job {job} did not finish");
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `w` × `h` red PNG as a data URI.
fn png_of(w: u32, h: u32) -> String {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("a PNG is written to memory");
    png_data_uri(&out.into_inner())
}

/// A server on a fresh index with the 134-page manual uploaded: the server and the job id.
fn serve_and_upload_manual(index: &Path) -> (Server, String) {
    let server = Server::start(index, &[]);
    let (status, up) = server.upload(&[("manual.pdf", read(MANUAL))]);
    assert_eq!(status, 202, "{up}");
    let job = up["job"].as_str().unwrap().to_string();
    (server, job)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(pdf(name)).unwrap()
}

#[test]
fn upload_progress_search_preview_embeddings_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let server = Server::start(&index, &[]);

    let (status, up) = server.upload(&[
        ("siscone.pdf", read("siscone-refman_p60_diagram.pdf")),
        ("../../gutenprint.pdf", read("gutenprint-users-manual_p5-14_text.pdf")),
    ]);
    assert_eq!(status, 202, "{up}");
    let job = up["job"].as_str().unwrap().to_string();
    // The event stream reports the job until it ends.
    let mut resp = server.agent().get(&format!("{}/v1/jobs/{job}/events", server.url())).call().unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = resp.body_mut().read_to_string().unwrap();
    assert!(events.contains("event: end"), "{events}");
    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["pages_stored"], 11);
    assert!(done["files"].as_array().unwrap().iter().all(|f| f["done"] == true), "{done}");

    let (status, docs) = server.get("/v1/documents");
    assert_eq!(status, 200);
    let docs = docs["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 2);
    // The upload's name could not escape the upload folder.
    assert!(docs.iter().all(|d| d["source_path"].as_str().unwrap().contains("/uploads/")), "{docs:?}");

    let (status, res) =
        server.post("/v1/search", &json!({ "query": "printer driver", "k": 3, "include_images": true }));
    assert_eq!(status, 200, "{res}");
    let results = res["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0]["image_base64"].as_str().unwrap().len() > 100);
    let url = results[0]["preview_url"].as_str().unwrap();
    let (status, ctype, bytes) = server.get_bytes(url);
    assert_eq!((status, ctype.as_str()), (200, "image/jpeg"));
    assert_eq!(&bytes[..2], &[0xff, 0xd8], "a JPEG");

    // Document filter and modes.
    let one = docs.iter().find(|d| d["page_count"] == 1).unwrap()["doc_id"].as_str().unwrap().to_string();
    let (_, res) = server.post("/v1/search", &json!({ "query": "diagram", "k": 5, "doc": one, "mode": "exact" }));
    assert_eq!(res["results"].as_array().unwrap().len(), 1, "{res}");
    // Two-stage with the index's own rerank size, or a given one (the answer is the exact one on 11 pages).
    let (_, exact) = server.post("/v1/search", &json!({ "query": "diagram", "k": 5, "mode": "exact" }));
    for body in [
        json!({ "query": "diagram", "k": 5, "mode": "two_stage" }),
        json!({ "query": "diagram", "k": 5, "mode": "two_stage", "prefetch": 50 }),
        json!({ "query": "diagram", "k": 5, "prefetch": 50 }),
    ] {
        let (status, res) = server.post("/v1/search", &body);
        assert_eq!(status, 200, "{body}: {res}");
        let ids = |r: &serde_json::Value| {
            r["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["doc_id"].clone(), h["page_number"].clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&res), ids(&exact), "{body}");
    }
    for body in [
        json!({ "query": "diagram", "mode": "exact", "prefetch": 50 }),
        json!({ "query": "diagram", "mode": "two_stage", "prefetch": 0 }),
        json!({ "query": "diagram", "prefetch": 100001 }),
    ] {
        let (status, err) = server.post("/v1/search", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("prefetch"), "{err}");
    }

    // Embeddings: a query and a page image, each one multi-vector of 128-wide rows.
    let png = png_of(64, 48);
    let (status, emb) = server.post("/v1/embeddings", &json!({ "input": ["reset the firmware", png] }));
    assert_eq!(status, 200, "{emb}");
    for item in emb["data"].as_array().unwrap() {
        assert_eq!(item["shape"][1], 128);
        assert_eq!(item["embedding"].as_array().unwrap().len() as u64, item["shape"][0].as_u64().unwrap());
    }
    assert_eq!(
        emb["usage"]["prompt_tokens"],
        emb["data"][0]["shape"][0].as_u64().unwrap() + emb["data"][1]["shape"][0].as_u64().unwrap()
    );
    // Without --served-model-name the model answers to its short name (and its full id).
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][0]["id"], "colqwen2.5-tiny-v0.2", "{models}");
    let (_, emb64) = server.post("/v1/embeddings", &json!({ "input": "reset", "encoding_format": "base64" }));
    let rows = emb64["data"][0]["shape"][0].as_u64().unwrap();
    use base64::Engine as _;
    let raw =
        base64::engine::general_purpose::STANDARD.decode(emb64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    assert_eq!(raw.len() as u64, rows * 128 * 4);

    // Bad input: a 4xx with a JSON error naming the problem; the server keeps serving.
    let (status, err) = server.upload(&[("notes.pdf", b"<html>not a pdf</html>".to_vec())]);
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("not a PDF"), "{err}");
    let (status, err) = server.post("/v1/search", &json!({ "query": "" }));
    assert_eq!(status, 400, "{err}");
    let (status, _) = server.post("/v1/search", &json!({ "query": "x", "k": 0 }));
    assert_eq!(status, 400);
    let (status, _) = server.post("/v1/search", &json!({ "query": "x", "unknown": 1 }));
    assert!((400..500).contains(&status));
    // serde would read a struct from an array of its fields (`[["x"]]` as `{"input": ["x"]}`): refused.
    for path in ["/v1/search", "/v1/embeddings", "/pooling", "/v1/documents/paths"] {
        for body in [json!([["reset"]]), json!(["reset", 10]), json!("reset"), json!(3)] {
            let (status, err) = server.post(path, &body);
            assert_eq!(status, 422, "{path} {body}: {err}");
            assert_eq!(err["error"]["code"], "bad_request", "{err}");
        }
    }
    // Ids that try to leave the index folder are refused.
    for path in ["/v1/pages/..%2F..%2Fmanifest.json/1/preview", "/v1/pages/zz/1/preview", "/v1/jobs/..%2Fx"] {
        let (status, _) = server.get(path);
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    let (status, _) = server.delete("/v1/documents/..%2F..%2Fx");
    assert_eq!(status, 400);
    let (status, _) = server.get(&format!("/v1/pages/{one}/0/preview"));
    assert_eq!(status, 400);
    let (status, _) = server.post("/v1/documents/paths", &json!({ "paths": ["/etc/passwd"] }));
    assert_eq!(status, 403, "server-side paths are off without --allow-path");
    assert_eq!(server.get("/health").0, 200);

    // Metrics and the API description.
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("colqwen_pages_ingested_total 11"), "{metrics}");
    assert!(metrics.contains("colqwen_search_latency_seconds_count"), "{metrics}");
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/search"]["post"].is_object());

    // A CLI command on the served index goes through the server.
    let out = Command::new(env!("CARGO_BIN_EXE_colqwen"))
        .arg("--index")
        .arg(&index)
        .args(["--json", "list"])
        .env_remove("COLQWEN_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let upload =
        docs.iter().find(|d| d["doc_id"] == one.as_str()).unwrap()["source_path"].as_str().unwrap().to_string();
    assert!(Path::new(&upload).is_file());
    let (status, del) = server.delete(&format!("/v1/documents/{one}"));
    assert_eq!(status, 200, "{del}");
    assert_eq!(del["pages_deleted"], 1);
    assert!(!Path::new(&upload).exists(), "the uploaded file goes with its document");
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["documents"].as_array().unwrap().len(), 1);
    let (status, _) = server.delete(&format!("/v1/documents/{one}"));
    assert_eq!(status, 404);
}

#[test]
fn search_answers_while_an_ingest_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let (server, job) = serve_and_upload_manual(&index);
    let (mut during, mut with_results) = (0, 0);
    loop {
        let (_, j) = server.get(&format!("/v1/jobs/{job}"));
        if j["state"] != "running" && j["state"] != "queued" {
            break;
        }
        let stored_before = j["pages_stored"].as_u64().unwrap();
        let (status, res) = server.post("/v1/search", &json!({ "query": "paragraph styles", "k": 5 }));
        assert_eq!(status, 200, "a search during the ingest failed: {res}");
        during += 1;
        let n = res["results"].as_array().unwrap().len() as u64;
        if stored_before > 0 {
            assert!(n >= stored_before.min(5), "pages stored so far are searchable ({n} < {stored_before})");
            with_results += 1;
        }
    }
    let done = server.wait_job(&job);
    assert_eq!(done["pages_stored"], MANUAL_PAGES, "{done}");
    assert!(during >= 3 && with_results >= 1, "searched {during} times during the ingest, {with_results} with results");
}

#[test]
fn a_key_is_required_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    // `serve` on every interface, with `key` in COLQWEN_API_KEY (or none).
    let serve_beyond_loopback = |key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_colqwen"));
        cmd.arg("--index").arg(&index).arg("--model").arg(tiny_adapter());
        cmd.args(["--device", "cpu", "serve", "--host", "0.0.0.0", "--port", "0"]);
        match key {
            Some(k) => cmd.env("COLQWEN_API_KEY", k),
            None => cmd.env_remove("COLQWEN_API_KEY"),
        };
        cmd.output().unwrap()
    };
    let out = serve_beyond_loopback(None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without an API key"));
    // A key too short to be safe is refused, saying the minimum, before anything is created.
    let out = serve_beyond_loopback(Some("k"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at least 16"), "{err}");
    assert!(!index.exists(), "a refused start creates no index folder");

    let key = "s3cret-key-0123456789";
    let server = Server::start_with_key(&index, &["--host", "0.0.0.0"], Some(key));
    let server_url = server.url().replace("0.0.0.0", "127.0.0.1");
    let anonymous: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = |path: &str, key: Option<&str>| {
        let mut r = anonymous.get(&format!("{server_url}{path}"));
        if let Some(k) = key {
            r = r.header("X-API-Key", k);
        }
        r.call().unwrap().status().as_u16()
    };
    assert_eq!(call("/health", None), 200);
    for path in ["/v1/documents", "/v1/stats", "/metrics", "/openapi.json", "/v1/jobs", "/v1/models"] {
        assert_eq!(call(path, None), 401, "{path}");
        assert_eq!(call(path, Some("wrong-key!")), 401, "{path}");
        assert_eq!(call(path, Some(key)), 200, "{path}");
    }
    // The auth scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = anonymous.get(&format!("{server_url}/v1/stats")).header("Authorization", &format!("{scheme} {key}"));
        assert_eq!(r.call().unwrap().status(), 200, "{scheme}");
    }

    // No server path in any answer beyond loopback: uploads show relative to the upload folder.
    let (status, up) = server.upload(&[("siscone.pdf", read("siscone-refman_p60_diagram.pdf"))]);
    assert_eq!(status, 202, "{up}");
    let job = up["job"].as_str().unwrap();
    server.wait_job(job);
    let (_, search) = server.post("/v1/search", &json!({ "query": "diagram", "k": 1, "maps": true }));
    let (_, missing) = server.get("/v1/pages/0123456789abcdef/1/preview");
    let root = tmp.path().canonicalize().unwrap().display().to_string();
    for (what, v) in [
        ("documents", server.get("/v1/documents").1),
        ("job", server.get(&format!("/v1/jobs/{job}")).1),
        ("jobs", server.get("/v1/jobs").1),
        ("stats", server.get("/v1/stats").1),
        ("search", search),
        ("error", missing),
        ("models", server.get("/v1/models").1),
        ("wrong model", server.post("/pooling", &json!({ "model": "x", "input": "y" })).1),
    ] {
        let text = v.to_string();
        assert!(!text.contains(&root) && !text.contains(&tmp.path().display().to_string()), "{what}: {text}");
        assert!(!text.contains(&fixtures_dir().display().to_string()), "{what} shows the model's folder: {text}");
    }
    let (_, docs) = server.get("/v1/documents");
    let shown = docs["documents"][0]["source_path"].as_str().unwrap();
    assert!(shown.starts_with("uploads/") && shown.ends_with("/siscone.pdf"), "{shown}");

    // The CLI against this server without the key: exit 1 and a hint naming the variable.
    let list = |key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_colqwen"));
        c.arg("--index").arg(&index).arg("list").env_remove("COLQWEN_API_KEY");
        if let Some(k) = key {
            c.env("COLQWEN_API_KEY", k);
        }
        c.output().unwrap()
    };
    let out = list(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hint:") && err.contains("COLQWEN_API_KEY"), "{err}");
    let out = list(Some(key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("siscone.pdf"));
}

#[test]
fn kill_9_during_an_ingest_then_restart_resumes_to_exact_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let (server, job) = serve_and_upload_manual(&index);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, j) = server.get(&format!("/v1/jobs/{job}"));
        if j["pages_stored"].as_u64().unwrap() >= 20 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();
    // What a crash leaves in the upload folder: a half-written upload and an empty folder. The job's own file
    // is still needed, and stays.
    let uploads = index.join("uploads");
    let needed = files_below(&uploads);
    assert_eq!(needed.len(), 1, "{needed:?}");
    std::fs::create_dir_all(uploads.join("0123456789abcdef/00")).unwrap();
    std::fs::write(uploads.join("0123456789abcdef/00/half.pdf"), b"%PDF-1.4 half").unwrap();
    std::fs::create_dir_all(uploads.join("fedcba9876543210/01")).unwrap();

    let server = Server::start(&index, &[]);
    assert_eq!(files_below(&uploads), needed, "the orphans went at start, the job's file stayed");
    assert_eq!(folders_below(&uploads).len(), 2, "{:?}", folders_below(&uploads));
    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["runs"].as_u64().unwrap() >= 2, "the job was resumed: {done}");
    // The job's count is all it stored, over both runs (the first run's pages were stored before the kill).
    assert_eq!(done["pages_stored"], MANUAL_PAGES, "{done}");
    assert_eq!(done["files"][0]["pages_stored"], MANUAL_PAGES, "{done}");
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], MANUAL_PAGES, "no duplicates, no missing pages: {stats}");
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["documents"][0]["stored_pages"], MANUAL_PAGES);
}

#[test]
fn sigterm_finishes_the_batch_and_the_job_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let (mut server, job) = serve_and_upload_manual(&index);
    loop {
        let (_, j) = server.get(&format!("/v1/jobs/{job}"));
        if j["pages_stored"].as_u64().unwrap() >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(!index.join("server.json").exists(), "the server file is removed");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(index.join("jobs").join(format!("{job}.json"))).unwrap()).unwrap();
    assert_eq!(saved["state"], "interrupted", "{saved}");
    drop(server);

    let server = Server::start(&index, &[]);
    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done");
    assert_eq!(done["pages_stored"], MANUAL_PAGES, "both runs counted, as after a kill -9: {done}");
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], MANUAL_PAGES);
}

/// Issue 22, item 1: an upload over the limit is a 413 naming the limit, and no failed or aborted upload
/// leaves a file or a folder behind.
#[test]
fn failed_and_aborted_uploads_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let server = Server::start(&index, &["--max-upload-mib", "1"]);
    let uploads = index.join("uploads");
    let nothing_left = |what: &str| {
        // An aborted request may still be unwinding on the server for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(files_below(&uploads).is_empty() && folders_below(&uploads).is_empty()) {
            assert!(Instant::now() < deadline, "{what} left {:?} {:?}", files_below(&uploads), folders_below(&uploads));
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Over the limit (3 MB against 1 MiB): 413 as documented, the limit named.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (status, err) = server.upload(&[("big.pdf", big.clone())]);
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "too_large", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("1 MiB"), "{err}");
    nothing_left("an upload over the limit");

    // A multipart body cut short (no closing boundary), with and without the client hanging up.
    let cut = {
        let mut b = multipart(&[("cut.pdf", read("siscone-refman_p60_diagram.pdf"))]);
        b.truncate(b.len() / 2);
        b
    };
    let head = |len: usize| {
        format!(
            "POST /v1/documents HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len}"
        )
    };
    assert_eq!(server.raw(&head(cut.len()), &cut, false), 400);
    nothing_left("a truncated multipart body");
    server.raw(&head(cut.len() + 100_000), &cut, true);
    nothing_left("a client that hung up mid-body");
    // A client that goes away in the middle of a file, connection dropped.
    {
        let addr = server.url().trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(format!("{}\r\nHost: x\r\n\r\n", head(cut.len() + 100_000)).as_bytes()).unwrap();
        s.write_all(&cut).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    nothing_left("a dropped connection");

    // A NUL in the file name, an unknown field, no file at all, a file that is no PDF.
    let nul = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\0b.pdf\"\r\n\r\n%PDF-1.4\r\n--{BOUNDARY}--\r\n"
    );
    let status = server.raw(&head(nul.len()), nul.as_bytes(), false);
    assert!((400..500).contains(&status), "{status}");
    nothing_left("a NUL in the file name");
    let odd = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"fil\"; filename=\"x.pdf\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    );
    assert_eq!(server.raw(&head(odd.len()), odd.as_bytes(), false), 400);
    let (status, _) = server.upload(&[("notes.pdf", b"<html>not a pdf</html>".to_vec())]);
    assert_eq!(status, 422);
    nothing_left("refused uploads");

    // A good file and a bad one: the good one is kept (as the user named it), the bad one is not.
    let (status, up) =
        server.upload(&[("été ü 日本.pdf", read("siscone-refman_p60_diagram.pdf")), ("bad.pdf", b"nope".to_vec())]);
    assert_eq!(status, 202, "{up}");
    assert_eq!(up["rejected"][0]["name"], "bad.pdf");
    server.wait_job(up["job"].as_str().unwrap());
    let kept = files_below(&uploads);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept.iter().next().unwrap().file_name().unwrap(), "été ü 日本.pdf");
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["documents"][0]["name"], "été ü 日本.pdf", "{docs}");
    assert_eq!(server.get("/health").0, 200);
}

/// Issue 22, item 2: content that is already stored, or comes twice in one request, keeps no copy, and the
/// duplicate's status in the job says what happened.
#[test]
fn duplicates_keep_no_copy_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let server = Server::start(&index, &[]);
    let siscone = read("siscone-refman_p60_diagram.pdf");
    let (status, up) =
        server.upload(&[("a.pdf", siscone.clone()), ("b.pdf", siscone.clone()), ("c.pdf", read(MANUAL))]);
    assert_eq!(status, 202, "{up}");
    assert_eq!(up["duplicates"][0]["name"], "b.pdf", "{up}");
    let job = server.wait_job(up["job"].as_str().unwrap());
    assert_eq!(job["state"], "done", "{job}");
    let b = &job["files"][1];
    assert_eq!(b["done"], true, "{job}");
    assert!(b["duplicate_of"].as_str().is_some_and(|d| d.len() == 16), "{job}");
    assert!(b["note"].as_str().unwrap().contains("a.pdf"), "{job}");
    assert_eq!(job["pages_stored"], 1 + MANUAL_PAGES, "{job}");

    // Uploaded again later, under another name: already stored, nothing kept, nothing stored twice.
    let (status, up) = server.upload(&[("again.pdf", siscone)]);
    assert_eq!(status, 202, "{up}");
    let again = server.wait_job(up["job"].as_str().unwrap());
    let f = &again["files"][0];
    assert_eq!(
        (f["done"].clone(), f["pages_skipped"].clone(), f["pages_stored"].clone()),
        (json!(true), json!(1), json!(0))
    );
    assert!(f["note"].as_str().unwrap().contains("already stored"), "{again}");
    assert_eq!(
        files_below(&index.join("uploads")).len(),
        2,
        "one copy per content: {:?}",
        files_below(&index.join("uploads"))
    );
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["total"], 2, "{docs}");
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], 1 + MANUAL_PAGES);
}

/// Issue 22, item 3: `DELETE` while the upload job ingests the document stops that ingest and removes what it
/// stored; the document never comes back, its file and previews are gone, and the job says what happened.
#[test]
fn a_delete_during_the_ingest_is_final() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let (server, job) = serve_and_upload_manual(&index);
    // A second upload queued behind the first: deleted before its job runs.
    let (status, queued) = server.upload(&[("queued.pdf", read("gutenprint-users-manual_p5-14_text.pdf"))]);
    assert_eq!(status, 202, "{queued}");
    let queued_job = queued["job"].as_str().unwrap().to_string();
    let (_, q) = server.get(&format!("/v1/jobs/{queued_job}"));
    let queued_doc = q["files"][0]["doc_id"].as_str().unwrap().to_string();

    let j = server.wait_stored(&job, 20);
    let doc = j["files"][0]["doc_id"].as_str().unwrap().to_string();
    assert_eq!(j["state"], "running", "{j}");
    let (status, del) = server.delete(&format!("/v1/documents/{doc}"));
    assert_eq!(status, 200, "{del}");
    assert_eq!(del["ingest_stopped"], true, "{del}");
    let (status, del) = server.delete(&format!("/v1/documents/{queued_doc}"));
    assert_eq!(status, 200, "a document still queued can be deleted: {del}");

    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    let f = &done["files"][0];
    assert_eq!((f["done"].clone(), f["pages_stored"].clone()), (json!(true), json!(0)), "{done}");
    assert!(f["note"].as_str().unwrap().contains("deleted"), "{done}");
    assert_eq!(done["pages_stored"], 0, "the job's report is true: {done}");
    let q = server.wait_job(&queued_job);
    assert!(q["files"][0]["note"].as_str().unwrap().contains("deleted before"), "{q}");
    assert_eq!(q["pages_stored"], 0, "{q}");

    // Nothing of either document is left: not listed, not searchable, no map, no file, no preview.
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["total"], 0, "{docs}");
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], 0, "{stats}");
    let (_, res) = server.post("/v1/search", &json!({ "query": "paragraph styles", "k": 5 }));
    assert_eq!(res["results"].as_array().unwrap().len(), 0, "{res}");
    assert_eq!(server.get(&format!("/v1/pages/{doc}/30/similarity?q=x")).0, 404);
    assert!(files_below(&index.join("uploads")).is_empty(), "{:?}", files_below(&index.join("uploads")));
    assert!(!index.join("previews").join(&doc).exists(), "the previews go too");
    // Still after a restart.
    drop(server);
    let server = Server::start(&index, &[]);
    let (_, docs) = server.get("/v1/documents");
    assert_eq!(docs["total"], 0, "{docs}");
    assert_eq!(server.get(&format!("/v1/jobs/{job}")).1["files"][0]["pages_stored"], 0);
}

/// Issue 22, item 4: image bombs are refused from their header (413, the limit named) without the memory a
/// decode would take, and the inputs of one request are bounded.
#[test]
fn embeddings_refuse_image_bombs() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let server = Server::start(&index, &[]);
    let bomb = png_claiming_uri(10_000, 10_000);
    for n in [1, 2, 6] {
        let (status, err) = server.post("/v1/embeddings", &json!({ "input": vec![bomb.clone(); n] }));
        assert_eq!(status, 413, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("10000 × 10000") && message.contains("40 megapixels"), "{message}");
        assert!(err["error"]["hint"].as_str().unwrap().contains("scale"), "{err}");
    }
    let (status, err) = server.post("/v1/embeddings", &json!({ "input": vec![bomb.clone(); 17] }));
    assert_eq!(status, 413, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("at most 16"), "{err}");
    // Each image under the limit, too many pixels together.
    let (status, err) = server.post("/v1/embeddings", &json!({ "input": vec![png_claiming_uri(6000, 6000); 4] }));
    assert_eq!(status, 413, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("120 megapixels"), "{err}");
    let peak = server.peak_rss_mb();
    eprintln!("peak RSS after the image bombs: {peak:.0} MB");
    assert!(peak < 250.0, "a refused image must not be decoded: peak RSS {peak:.0} MB");
    // A real image still works.
    let png = {
        let img = image::RgbImage::from_pixel(640, 480, image::Rgb([255, 255, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        png_data_uri(&out.into_inner())
    };
    let (status, emb) = server.post("/v1/embeddings", &json!({ "input": [png] }));
    assert_eq!(status, 200, "{emb}");
}

/// Issue 22, item 5: images and maps come with at most 20 hits; more is a 400 naming the limit.
#[test]
fn search_answers_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let server = Server::start(&index, &[]);
    let (_, up) = server.upload(&[("g.pdf", read("gutenprint-users-manual_p5-14_text.pdf"))]);
    server.wait_job(up["job"].as_str().unwrap());
    for body in [
        json!({ "query": "printer", "k": 21, "include_images": true }),
        json!({ "query": "printer", "k": 1000, "maps": true }),
        json!({ "query": "printer", "k": 1000, "include_images": true, "maps": true }),
    ] {
        let (status, err) = server.post("/v1/search", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("at most 20"), "{err}");
    }
    let (status, res) =
        server.post("/v1/search", &json!({ "query": "printer", "k": 20, "include_images": true, "maps": true }));
    assert_eq!(status, 200, "{res}");
    assert!(
        res["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["image_base64"].is_string() && r["similarity_base64"].is_string())
    );
    let (status, _) = server.post("/v1/search", &json!({ "query": "printer", "k": 1000 }));
    assert_eq!(status, 200);
}

/// Issue 22, item 7: jobs end in a true state (every file failed: `failed`), a finished job cannot be
/// cancelled (409), a cancelled one can be resumed to exact counts, lists come in pages, finished jobs are
/// pruned, and server-side paths outside `--allow-path` are refused the same way whether they exist or not.
#[test]
fn jobs_are_true_paginated_resumable_and_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(allowed.join("notes.pdf"), "not a pdf").unwrap();
    std::fs::copy(pdf(MANUAL), allowed.join("manual.pdf")).unwrap();
    let server = Server::start(&index, &["--allow-path", allowed.to_str().unwrap()]);

    // Paths: outside the allowed folder, existing or not, the same 403; inside and missing, 404.
    let paths = |p: &str| server.post("/v1/documents/paths", &json!({ "paths": [p] }));
    let (a, _) = paths("/etc/passwd");
    let (b, _) = paths("/etc/no-such-file-here");
    let (c, _) = paths(&format!("{}/../../etc/passwd", allowed.display()));
    assert_eq!((a, b, c), (403, 403, 403), "the answer must not tell what exists outside");
    assert_eq!(paths(&format!("{}/missing.pdf", allowed.display())).0, 404);

    // Every file failed: the job says failed, with the reason.
    let (status, j) = paths(allowed.join("notes.pdf").to_str().unwrap());
    assert_eq!(status, 202, "{j}");
    let failed = server.wait_job(j["job"].as_str().unwrap());
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("not a PDF"), "{failed}");
    let (status, err) = server.post(&format!("/v1/jobs/{}/cancel", failed["id"].as_str().unwrap()), &json!({}));
    assert_eq!(status, 409, "cancelling a finished job: {err}");

    // Cancel a running job, then resume it: the counts come out exact.
    let (_, j) = paths(allowed.join("manual.pdf").to_str().unwrap());
    let job = j["job"].as_str().unwrap().to_string();
    server.wait_stored(&job, 10);
    let (status, c) = server.post(&format!("/v1/jobs/{job}/cancel"), &json!({}));
    assert_eq!(status, 200, "{c}");
    let cancelled = server.wait_job(&job);
    assert_eq!((cancelled["state"].clone(), cancelled["resumable"].clone()), (json!("cancelled"), json!(true)));
    let (status, r) = server.post(&format!("/v1/jobs/{job}/resume"), &json!({}));
    assert_eq!(status, 202, "{r}");
    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["pages_stored"], MANUAL_PAGES, "{done}");
    assert_eq!(server.post(&format!("/v1/jobs/{job}/resume"), &json!({})).0, 409, "a done job cannot be resumed");
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], MANUAL_PAGES);

    // Many small uploads: the jobs list is paginated and bounded (finished jobs are pruned).
    for i in 0..205 {
        let (status, up) = server.upload(&[(&format!("s{i}.pdf"), read("siscone-refman_p60_diagram.pdf"))]);
        assert_eq!(status, 202, "{up}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.get("/v1/jobs?limit=1").1["jobs"][0]["state"] != "done" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, first) = server.get("/v1/jobs?limit=1");
    assert!(first["total"].as_u64().unwrap() <= 201, "finished jobs are pruned: {}", first["total"]);
    let mut seen = std::collections::HashSet::new();
    for j in server.list_all("/v1/jobs", "jobs", 64).expect("every page of the jobs") {
        assert!(seen.insert(j["id"].as_str().unwrap().to_string()), "a job came twice");
    }
    assert_eq!(seen.len() as u64, server.get("/v1/jobs").1["total"].as_u64().unwrap());
    assert!(std::fs::read_dir(index.join("jobs")).unwrap().count() <= 201, "pruned on disk too");
    let (status, docs) = server.get("/v1/documents?limit=1");
    assert_eq!(status, 200);
    assert_eq!(docs["documents"].as_array().unwrap().len(), 1);
    let next = docs["next_cursor"].as_str().unwrap();
    let (_, rest) = server.get(&format!("/v1/documents?limit=1&cursor={next}"));
    assert_eq!(rest["documents"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null(), "{rest}");
    assert_eq!(server.get("/v1/documents?limit=0").0, 400);
    assert_eq!(server.get("/v1/jobs?cursor=..%2F").0, 400);
}

/// Issue 22, item 7: a `serve` that cannot bind creates nothing, and a second `serve` on an index names the
/// server that has it.
#[test]
fn refused_starts_leave_nothing_and_name_the_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let fresh = tmp.path().join("fresh");
    let serve = |index: &Path, port: &str| {
        Command::new(env!("CARGO_BIN_EXE_colqwen"))
            .arg("--index")
            .arg(index)
            .arg("--model")
            .arg(tiny_adapter())
            .args(["--device", "cpu", "serve", "--port", port])
            .env_remove("COLQWEN_API_KEY")
            .output()
            .unwrap()
    };
    let out = serve(&fresh, &port);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(!fresh.exists(), "a serve that cannot bind created the index folder");

    let index = tmp.path().join("index");
    let server = Server::start(&index, &[]);
    let out = serve(&index, "0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(server.url()), "the running server is named: {err}");
}

/// Clients written for OpenAI and vLLM (issue 24): `GET /v1/models` lists the served names, `model` may be any
/// of them or the full id (anything else is OpenAI's 404 `model_not_found`), `usage` counts the rows embedded, and
/// vLLM's `POST /pooling` (`task: token_embed`, text `input` or chat `messages` with an image) answers
/// `data[i].data = [n_tokens][dim]`, the same vectors as `/v1/embeddings`.
#[test]
fn openai_and_vllm_clients_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let server =
        Server::start(&tmp.path().join("index"), &["--served-model-name", "tiny", "--served-model-name", "t2"]);
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200, "{models}");
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny", "t2"]);
    let full = tiny_adapter().display().to_string();
    assert_eq!(models["data"][0]["root"], full.as_str());

    let png = png_of(64, 48);
    let (status, emb) =
        server.post("/v1/embeddings", &json!({ "model": "tiny", "input": ["reset the firmware", png] }));
    assert_eq!(status, 200, "{emb}");
    assert_eq!(emb["model"], "tiny");
    let rows = |v: &Value| v.as_array().unwrap().len() as u64;
    let (q, page) = (&emb["data"][0]["embedding"], &emb["data"][1]["embedding"]);
    assert_eq!(emb["usage"]["prompt_tokens"], rows(q) + rows(page), "{}", emb["usage"]);
    assert_eq!(emb["usage"]["total_tokens"], emb["usage"]["prompt_tokens"]);
    for model in ["t2", full.as_str()] {
        assert_eq!(server.post("/v1/embeddings", &json!({ "model": model, "input": "x" })).0, 200, "{model}");
    }
    // The short name is not served when names are given; another model is OpenAI's 404 with a hint.
    for model in ["colqwen2.5-tiny-v0.2", "text-embedding-3-small"] {
        let (status, err) = server.post("/v1/embeddings", &json!({ "model": model, "input": "x" }));
        assert_eq!((status, err["error"]["code"].as_str()), (404, Some("model_not_found")), "{err}");
        assert!(err["error"]["hint"].as_str().unwrap().contains("\"tiny\""), "{err}");
    }

    // vLLM's requests, as its ColQwen3 example sends them: text queries, then a page in chat form.
    let (status, pooled) = server.post("/pooling", &json!({ "model": "tiny", "input": ["reset the firmware"] }));
    assert_eq!(status, 200, "{pooled}");
    assert_eq!((pooled["object"].as_str(), pooled["data"][0]["object"].as_str()), (Some("list"), Some("pooling")));
    assert_eq!(&pooled["data"][0]["data"], q);
    assert_eq!(pooled["usage"]["prompt_tokens"], rows(q));
    let chat = json!({ "model": "tiny", "task": "token_embed", "messages": [{ "role": "user", "content": [
        { "type": "image_url", "image_url": { "url": png } },
        { "type": "text", "text": "Describe the image." },
    ]}]});
    let (status, pooled) = server.post("/pooling", &chat);
    assert_eq!(status, 200, "{pooled}");
    assert_eq!(&pooled["data"][0]["data"], page);
    let (_, b64) = server.post("/pooling", &json!({ "input": "reset the firmware", "encoding_format": "base64" }));
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(raw.len() as u64, rows(q) * 128 * 4);
    for (body, says) in [
        (json!({ "input": "x", "task": "embed" }), "token_embed"),
        (json!({ "input": "x", "messages": [] }), "not both"),
        (
            json!({ "messages": [{ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "http://127.0.0.1:1/page.png" } }] }] }),
            "fetches no URL",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": png } }, { "type": "image_url", "image_url": { "url": png } }] }] }),
            "2 images",
        ),
        (json!({}), "send `input`"),
    ] {
        let (status, err) = server.post("/pooling", &body);
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(says), "{body}: {err}");
    }
    let (status, _) = server.post("/pooling", &json!({ "model": "gpt-4o", "input": "x" }));
    assert_eq!(status, 404);
    let (status, _) = server.post("/pooling", &json!({ "messages": [{ "role": 5, "content": "x" }] }));
    assert_eq!(status, 422, "a role that is not a string is refused");
}
