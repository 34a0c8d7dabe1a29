//! `colqwen serve` end to end: the real binary on loopback with the committed tiny fixture model, real PDFs,
//! real HTTP. Uploads become jobs, searches answer while an ingest runs, bad uploads get a JSON 4xx and the
//! server keeps serving, ids are validated, the key is enforced beyond loopback, and a `kill -9` during an
//! ingest is repaired by a restart (the job resumes; exact page counts, no duplicates).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use colqwen_testkit::{fixtures_dir, tiny_adapter};
use serde_json::{Value, json};

const MANUAL: &str = "reportlab-userguide_broken-xref.pdf";
const MANUAL_PAGES: u64 = 134;

fn pdf(name: &str) -> PathBuf {
    fixtures_dir().join("pdfs").join(name)
}

/// A running `colqwen serve`; killed when dropped.
struct Server {
    child: Child,
    url: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Server {
    fn start(index: &Path, extra: &[&str]) -> Server {
        Self::start_with_key(index, extra, None)
    }

    fn start_with_key(index: &Path, extra: &[&str], key: Option<&str>) -> Server {
        let (child, url) = colqwen_testkit::server::start(Path::new(env!("CARGO_BIN_EXE_colqwen")), index, extra, key);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Server { child, url, key: key.map(str::to_owned), agent }
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => r.header("Authorization", &format!("Bearer {k}")),
            None => r,
        }
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut resp = r.expect("the server answers");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.with_auth(self.agent.get(&format!("{}{path}", self.url))).call())
    }

    fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let mut resp = self.with_auth(self.agent.get(&format!("{}{path}", self.url))).call().unwrap();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let mut bytes = Vec::new();
        resp.body_mut().as_reader().read_to_end(&mut bytes).unwrap();
        (resp.status().as_u16(), ctype, bytes)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(self.with_auth(self.agent.post(&format!("{}{path}", self.url))).send_json(body))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        Self::answer(self.with_auth(self.agent.delete(&format!("{}{path}", self.url))).call())
    }

    /// `POST /v1/documents` with the files as `file` fields.
    fn upload(&self, files: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let boundary = "colqwen-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                     Content-Type: application/pdf\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = self
            .with_auth(self.agent.post(&format!("{}/v1/documents", self.url)))
            .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"));
        Self::answer(req.send(&body[..]))
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
    let mut resp = server.agent.get(&format!("{}/v1/jobs/{job}/events", server.url)).call().unwrap();
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
    let png = {
        let img = image::RgbImage::from_pixel(64, 48, image::Rgb([200, 10, 10]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        use base64::Engine as _;
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out.into_inner()))
    };
    let (status, emb) = server.post("/v1/embeddings", &json!({ "input": ["reset the firmware", png] }));
    assert_eq!(status, 200, "{emb}");
    for item in emb["data"].as_array().unwrap() {
        assert_eq!(item["shape"][1], 128);
        assert_eq!(item["embedding"].as_array().unwrap().len() as u64, item["shape"][0].as_u64().unwrap());
    }
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
    for path in ["/v1/search", "/v1/embeddings", "/v1/documents/paths"] {
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
    let out = Command::new(env!("CARGO_BIN_EXE_colqwen"))
        .arg("--index")
        .arg(&index)
        .arg("--model")
        .arg(tiny_adapter())
        .args(["--device", "cpu", "serve", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("COLQWEN_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without an API key"));

    let server = Server::start_with_key(&index, &["--host", "0.0.0.0"], Some("s3cret-key"));
    let server_url = server.url.replace("0.0.0.0", "127.0.0.1");
    let anonymous: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = |path: &str, key: Option<&str>| {
        let mut r = anonymous.get(&format!("{server_url}{path}"));
        if let Some(k) = key {
            r = r.header("X-API-Key", k);
        }
        r.call().unwrap().status().as_u16()
    };
    assert_eq!(call("/health", None), 200);
    for path in ["/v1/documents", "/v1/stats", "/metrics", "/openapi.json", "/v1/jobs"] {
        assert_eq!(call(path, None), 401, "{path}");
        assert_eq!(call(path, Some("wrong-key!")), 401, "{path}");
        assert_eq!(call(path, Some("s3cret-key")), 200, "{path}");
    }
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

    let server = Server::start(&index, &[]);
    let done = server.wait_job(&job);
    assert_eq!(done["state"], "done", "{done}");
    assert!(done["runs"].as_u64().unwrap() >= 2, "the job was resumed: {done}");
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
    let (_, stats) = server.get("/v1/stats");
    assert_eq!(stats["pages"], MANUAL_PAGES);
}
