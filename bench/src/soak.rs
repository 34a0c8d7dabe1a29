//! The server's soak run (issue 22): `bench/serve/soak.sh` starts `colqwen serve`, runs this driver, kills the
//! server with `kill -9` in the middle and restarts it, then checks the index.
//!
//! - `soak URL CLIENTS SECONDS INDEX_DIR OUT_DIR [THINK_MS]`: `CLIENTS` threads send a mix of ordinary and
//!   hostile requests for `SECONDS`, each waiting 0 to 2 × `THINK_MS` (default 600) between two: searches, uploads (good, a duplicate, bad, over the limit, aborted mid-body), deletes of
//!   their own documents (while they are queued or being ingested too), embeddings (good ones and image
//!   bombs), cancels and resumes, lists. Each client keeps at most a few documents of its own, so the index
//!   stays the same size: what grows is a leak. Every answer is checked against what it should be; a
//!   connection error while `OUT_DIR/down` exists (the script's restart window) counts as "down", not as a
//!   failure. Every 10 s a line of `OUT_DIR/samples.csv`: the server's RSS, the index folder's size on disk,
//!   the files in `uploads/`, pages, documents and jobs. At the end, `OUT_DIR/summary.json` (requests and
//!   failures by route) and `OUT_DIR/expected.json` (the page count of every content sent, the documents
//!   deleted).
//! - `soak-check URL INDEX_DIR OUT_DIR`: resumes every cancelled job, waits for every job to end, then checks
//!   that the index is consistent: the documents listed are exactly those search returns (each document's
//!   own search returns all its pages), every document has its true page count, no deleted document came
//!   back, `uploads/` holds one file per stored document and nothing else, the previews are those of the
//!   stored documents, every job's total is the sum of its files. Prints one JSON line; exit 1 when a check
//!   fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const BOUNDARY: &str = "colqwen-soak-boundary";

/// How one request ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The answer it should have had (a success, or the documented refusal of a hostile request).
    Right,
    /// The server was down (the restart window): not counted against it.
    Down,
    /// Anything else.
    Wrong,
}

struct Tally {
    /// route → [right, down, wrong]
    by_route: Mutex<BTreeMap<&'static str, [u64; 3]>>,
    wrong: Mutex<Vec<String>>,
    started: Instant,
}

impl Tally {
    fn record(&self, route: &'static str, outcome: Outcome, detail: impl FnOnce() -> String) {
        let mut m = self.by_route.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = m.entry(route).or_default();
        match outcome {
            Outcome::Right => e[0] += 1,
            Outcome::Down => e[1] += 1,
            Outcome::Wrong => {
                e[2] += 1;
                let mut w = self.wrong.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if w.len() < 50 {
                    w.push(format!("{:.1} s: {route}: {}", self.started.elapsed().as_secs_f64(), detail()));
                }
            }
        }
    }
}

struct Api {
    url: String,
    agent: ureq::Agent,
    /// Exists while the script restarts the server.
    down_marker: PathBuf,
    /// Touched by the script when the server is back.
    restarted: PathBuf,
    /// The route of the request before (a failure's message names it).
    prev: std::cell::Cell<&'static str>,
}

/// After a restart, a connection kept from before fails at its next use: within this window that is the
/// restart's doing ("down"), not a failure of the new server.
const RESTART_GRACE: Duration = Duration::from_secs(10);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

impl Api {
    fn new(url: &str, out: &Path) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            agent: agent(),
            down_marker: out.join("down"),
            restarted: out.join("restarted"),
            prev: std::cell::Cell::new(""),
        }
    }

    /// Whether the server is being restarted or just was.
    fn restarting(&self) -> bool {
        self.down_marker.exists()
            || std::fs::metadata(&self.restarted)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < RESTART_GRACE))
    }

    /// New connections from here on (those of the killed server are dead).
    fn reconnect(&mut self) {
        self.agent = agent();
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

    fn upload(&self, files: &[(&str, &[u8])]) -> (u16, Value) {
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
        let req = self
            .agent
            .post(&format!("{}/v1/documents", self.url))
            .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"));
        Self::answer(req.send(&body[..]))
    }

    /// A multipart upload that stops in the middle of its file, the connection dropped.
    fn aborted_upload(&self, bytes: &[u8]) -> u16 {
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut s) = std::net::TcpStream::connect(addr) else { return 0 };
        let head = format!(
            "POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {}\r\n\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"aborted.pdf\"\r\n\r\n",
            bytes.len() + 200
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&bytes[..bytes.len() / 2]);
        std::thread::sleep(Duration::from_millis(50));
        200
    }

    /// Judges an answer: `ok` are the statuses it should have.
    fn judge(&self, tally: &Tally, route: &'static str, status: u16, ok: &[u16], body: &Value) -> Outcome {
        let outcome = if ok.contains(&status) {
            Outcome::Right
        } else if (status == 0 || status == 503) && self.restarting() {
            Outcome::Down
        } else {
            Outcome::Wrong
        };
        let prev = self.prev.replace(route);
        tally.record(route, outcome, || {
            format!("{status} {} (after {prev})", body.to_string().chars().take(300).collect::<String>())
        });
        outcome
    }
}

/// A small random generator (xorshift), one per client: the mix is reproducible from the client number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The page count of every content sent, and the documents deleted (for the check).
#[derive(Default)]
struct Expected {
    pages: Mutex<HashMap<String, u64>>,
    deleted: Mutex<BTreeSet<String>>,
}

fn doc_id(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))[..16].to_string()
}

/// `base` with a comment after its end: new bytes, the same pages.
fn variant(base: &[u8], tag: &str) -> Vec<u8> {
    let mut b = base.to_vec();
    b.extend_from_slice(format!("\n% soak {tag}\n").as_bytes());
    b
}

/// A PNG header claiming 10000 × 10000 pixels (an image bomb as a server first sees it).
fn bomb() -> String {
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
    let mut ihdr = 10_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&10_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    use base64::Engine as _;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

fn small_png() -> String {
    let img = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    use base64::Engine as _;
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out.into_inner()))
}

/// The contents clients send.
struct Corpus {
    one_page: Vec<u8>,
    ten_pages: Vec<u8>,
    oversized: Vec<u8>,
    bomb: String,
    small_png: String,
}

/// Documents a client keeps at most: one more and it deletes its oldest.
const KEEP: usize = 4;

#[allow(clippy::too_many_arguments)]
fn client(
    id: u64,
    mut api: Api,
    think_ms: u64,
    corpus: &Corpus,
    tally: &Tally,
    expected: &Expected,
    stop: &AtomicBool,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut mine: std::collections::VecDeque<(String, Vec<u8>)> = Default::default();
    let mut retry_deletes: Vec<String> = Vec::new();
    let mut n = 0u64;
    let queries = ["paragraph styles", "table of contents", "printer driver", "reset the firmware", "diagram"];
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let tag = format!("c{id}-{n}");
        // A user's pace: 0 to 2 × `think_ms` between requests.
        std::thread::sleep(Duration::from_millis(rng.below(2 * think_ms + 1)));
        if api.restarting() {
            // The killed server's connections are dead: new ones while the restart settles.
            api.reconnect();
        }
        if mine.len() > KEEP || (!mine.is_empty() && rng.below(100) < 8) {
            let (doc, _) = mine.pop_front().unwrap_or_default();
            expected.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(doc.clone());
            let (s, b) = api.delete(&format!("/v1/documents/{doc}"));
            if api.judge(tally, "DELETE /v1/documents/{id}", s, &[200], &b) == Outcome::Down {
                retry_deletes.push(doc);
            }
            continue;
        }
        if !retry_deletes.is_empty() && !api.restarting() {
            for doc in std::mem::take(&mut retry_deletes) {
                // Sent before the kill: it may have been done already.
                let (s, b) = api.delete(&format!("/v1/documents/{doc}"));
                if api.judge(tally, "DELETE /v1/documents/{id} (retry)", s, &[200, 404], &b) == Outcome::Down {
                    retry_deletes.push(doc);
                }
            }
        }
        match rng.below(100) {
            0..35 => {
                let q = queries[rng.below(queries.len() as u64) as usize];
                let (s, b) = api.post("/v1/search", &json!({ "query": q, "k": 10 }));
                api.judge(tally, "POST /v1/search", s, &[200], &b);
            }
            35..45 => {
                let bytes = variant(&corpus.one_page, &tag);
                expected.pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(doc_id(&bytes), 1);
                let (s, b) = api.upload(&[("manual page.pdf", &bytes)]);
                if api.judge(tally, "POST /v1/documents (good)", s, &[202], &b) == Outcome::Right {
                    mine.push_back((doc_id(&bytes), bytes));
                }
            }
            45..49 => {
                // The same content again (already stored or still queued), and twice in one request.
                let (s, b) = match mine.back() {
                    Some((_, bytes)) => api.upload(&[("again.pdf", bytes), ("again-2.pdf", bytes)]),
                    None => continue,
                };
                api.judge(tally, "POST /v1/documents (duplicate)", s, &[202], &b);
            }
            49..52 => {
                let (s, b) = api.upload(&[("notes.pdf", b"<html>not a pdf</html>")]);
                api.judge(tally, "POST /v1/documents (bad)", s, &[422], &b);
            }
            52..54 => {
                let (s, b) = api.upload(&[("huge.pdf", &corpus.oversized)]);
                // Answered 413 as soon as the limit is passed, the connection closed: a client still sending
                // may see that instead. Refused either way.
                api.judge(tally, "POST /v1/documents (over the limit)", s, &[413, 0], &b);
            }
            54..56 => {
                let s = api.aborted_upload(&variant(&corpus.one_page, &tag));
                api.judge(tally, "POST /v1/documents (aborted)", s, &[200], &Value::Null);
            }
            56..68 => {
                let (s, b) = api.post(
                    "/v1/embeddings",
                    &json!({ "input": [queries[rng.below(5) as usize], corpus.small_png.clone()] }),
                );
                api.judge(tally, "POST /v1/embeddings", s, &[200], &b);
            }
            68..71 => {
                let (s, b) = api.post("/v1/embeddings", &json!({ "input": vec![corpus.bomb.clone(); 6] }));
                api.judge(tally, "POST /v1/embeddings (image bombs)", s, &[413], &b);
            }
            71..74 => {
                // A ten-page upload, cancelled at once, resumed (most times) or left cancelled.
                let bytes = variant(&corpus.ten_pages, &tag);
                expected.pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(doc_id(&bytes), 10);
                let (s, b) = api.upload(&[("ten pages.pdf", &bytes)]);
                if api.judge(tally, "POST /v1/documents (to cancel)", s, &[202], &b) != Outcome::Right {
                    continue;
                }
                mine.push_back((doc_id(&bytes), bytes));
                let job = b["job"].as_str().unwrap_or_default().to_string();
                let (s, b) = api.post(&format!("/v1/jobs/{job}/cancel"), &json!({}));
                // 409: it had ended already (the queue was empty and ten pages are quick).
                api.judge(tally, "POST /v1/jobs/{id}/cancel", s, &[200, 409], &b);
                if s == 200 && rng.below(4) != 0 {
                    std::thread::sleep(Duration::from_millis(rng.below(500)));
                    let (s, b) = api.post(&format!("/v1/jobs/{job}/resume"), &json!({}));
                    // 409: it was still running its last batch when asked (cancelled a moment later).
                    api.judge(tally, "POST /v1/jobs/{id}/resume", s, &[202, 409], &b);
                }
            }
            74..78 => {
                let (s, b) = api.post("/v1/search", &json!({ "query": "x", "k": 100, "include_images": true }));
                api.judge(tally, "POST /v1/search (too many images)", s, &[400], &b);
            }
            78..89 => {
                let (s, b) = api.get("/v1/documents?limit=20");
                api.judge(tally, "GET /v1/documents", s, &[200], &b);
            }
            _ => {
                let (s, b) = api.get("/v1/jobs?limit=20");
                api.judge(tally, "GET /v1/jobs", s, &[200], &b);
                let (s, b) = api.get("/v1/stats");
                api.judge(tally, "GET /v1/stats", s, &[200], &b);
            }
        }
    }
}

/// Bytes below `dir`.
fn bytes_below(dir: &Path) -> u64 {
    let mut bytes = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => bytes += m.len(),
                Err(_) => {}
            }
        }
    }
    bytes
}

/// The index folder's size in MB: all, and its parts (the page log, uploads, previews, jobs).
fn disk_mb(index: &Path) -> [f64; 5] {
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let log = std::fs::metadata(index.join("pages.log")).map_or(0, |m| m.len());
    [
        mb(bytes_below(index)),
        mb(log),
        mb(bytes_below(&index.join("uploads"))),
        mb(bytes_below(&index.join("previews"))),
        mb(bytes_below(&index.join("jobs"))),
    ]
}

fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            } else {
                files.insert(e.path());
            }
        }
    }
    files
}

/// The serving process's resident memory, MB (its pid from `server.json`).
fn server_rss_mb(index: &Path) -> Option<f64> {
    let info: Value = serde_json::from_slice(&std::fs::read(index.join("server.json")).ok()?).ok()?;
    let pid = info["pid"].as_u64()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn run(url: &str, clients: usize, seconds: f64, index: &Path, out: &Path, think_ms: u64) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let pdfs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pdfs");
    let corpus = Arc::new(Corpus {
        one_page: std::fs::read(pdfs.join("siscone-refman_p60_diagram.pdf"))?,
        ten_pages: std::fs::read(pdfs.join("gutenprint-users-manual_p5-14_text.pdf"))?,
        oversized: (0..(3u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
        bomb: bomb(),
        small_png: small_png(),
    });
    let started = Instant::now();
    let tally = Arc::new(Tally { by_route: Mutex::default(), wrong: Mutex::default(), started });
    let expected = Arc::new(Expected::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut samples = std::fs::File::create(out.join("samples.csv"))?;
    writeln!(
        samples,
        "seconds,rss_mb,disk_mb,log_mb,uploads_mb,previews_mb,jobs_mb,upload_files,pages,documents,jobs"
    )?;
    let monitor = {
        let (stop, index, api) = (stop.clone(), index.to_path_buf(), Api::new(url, out));
        std::thread::spawn(move || {
            let mut next = 0.0;
            while !stop.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                if t >= next {
                    next += 10.0;
                    let rss = server_rss_mb(&index).map_or_else(|| "down".into(), |r| format!("{r:.1}"));
                    let [all, log, up, previews, jobs_mb] = disk_mb(&index);
                    let uploads = files_below(&index.join("uploads")).len();
                    let (_, st) = api.get("/v1/stats");
                    let (_, jobs) = api.get("/v1/jobs?limit=1");
                    let line = format!(
                        "{t:.0},{rss},{all:.2},{log:.2},{up:.2},{previews:.2},{jobs_mb:.2},{uploads},{},{},{}",
                        st["pages"], st["documents"], jobs["total"]
                    );
                    let _ = writeln!(samples, "{line}");
                    eprintln!("soak {line}");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let threads: Vec<_> = (0..clients)
        .map(|id| {
            let (corpus, tally, expected, stop) = (corpus.clone(), tally.clone(), expected.clone(), stop.clone());
            let api = Api::new(url, out);
            std::thread::spawn(move || client(id as u64, api, think_ms, &corpus, &tally, &expected, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = monitor.join();
    let by_route = tally.by_route.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let wrong = tally.wrong.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let routes: BTreeMap<&str, Value> =
        by_route.iter().map(|(k, [r, d, w])| (*k, json!({ "right": r, "down": d, "wrong": w }))).collect();
    let totals = by_route.values().fold([0u64; 3], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2]]);
    let summary = json!({
        "clients": clients, "seconds": started.elapsed().as_secs_f64(), "think_ms": think_ms,
        "requests": totals[0] + totals[1] + totals[2], "right": totals[0], "down": totals[1], "wrong": totals[2],
        "by_route": routes, "first_wrong": wrong,
    });
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    let exp = json!({
        "pages": *expected.pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        "deleted": *expected.deleted.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
    });
    std::fs::write(out.join("expected.json"), serde_json::to_vec(&exp)?)?;
    println!(
        "{}",
        json!({ "requests": summary["requests"], "right": totals[0], "down": totals[1], "wrong": totals[2] })
    );
    Ok(())
}

pub(crate) fn check(url: &str, index: &Path, out: &Path) -> Result<()> {
    let api = Api::new(url, out);
    let exp: Value = serde_json::from_slice(&std::fs::read(out.join("expected.json")).context("expected.json")?)?;
    let pages_of = |id: &str| exp["pages"][id].as_u64();
    let deleted: BTreeSet<String> =
        exp["deleted"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let all_jobs =
        || -> Vec<Value> { api.get("/v1/jobs?limit=1000").1["jobs"].as_array().cloned().unwrap_or_default() };
    // Cancelled jobs run to their end, then nothing may be queued or running.
    for j in all_jobs() {
        if j["resumable"] == true {
            let (s, b) = api.post(&format!("/v1/jobs/{}/resume", j["id"].as_str().unwrap_or_default()), &json!({}));
            if s != 202 {
                bail!("resuming {}: {s} {b}", j["id"]);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    while all_jobs().iter().any(|j| matches!(j["state"].as_str(), Some("queued" | "running"))) {
        if Instant::now() > deadline {
            bail!("jobs still running after 30 minutes");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(3)); // the sweep after the last job's end
    let mut problems: Vec<String> = Vec::new();
    let mut docs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = cursor
            .as_ref()
            .map_or("/v1/documents?limit=1000".to_string(), |c| format!("/v1/documents?limit=1000&cursor={c}"));
        let (s, page) = api.get(&path);
        if s != 200 {
            bail!("listing the documents: {s} {page}");
        }
        docs.extend(page["documents"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut total_pages = 0;
    for d in &docs {
        let id = d["doc_id"].as_str().unwrap_or_default();
        let stored = d["stored_pages"].as_u64().unwrap_or(0);
        total_pages += stored;
        match pages_of(id) {
            None => problems.push(format!("a document nobody sent: {d}")),
            Some(n) if d["page_count"].as_u64() != Some(n) || stored != n => {
                problems.push(format!("{id}: {stored} of {} pages stored, {n} true: {d}", d["page_count"]));
            }
            _ => {}
        }
        if deleted.contains(id) {
            problems.push(format!("a deleted document came back: {d}"));
        }
        let (s, r) = api.post("/v1/search", &json!({ "query": "the", "k": 1000, "mode": "exact", "doc": id }));
        let hits = r["results"].as_array().map_or(0, Vec::len) as u64;
        if s != 200 || hits != stored {
            problems.push(format!("{id}: search returns {hits} pages ({s}), list says {stored}"));
        }
    }
    let (_, r) = api.post("/v1/search", &json!({ "query": "the", "k": 1000, "mode": "exact" }));
    let listed: BTreeSet<&str> = docs.iter().filter_map(|d| d["doc_id"].as_str()).collect();
    let found: BTreeSet<&str> =
        r["results"].as_array().into_iter().flatten().filter_map(|h| h["doc_id"].as_str()).collect();
    if total_pages <= 1000 && found != listed {
        problems.push(format!("search returns documents {found:?}, list shows {listed:?}"));
    }
    let (_, stats) = api.get("/v1/stats");
    if stats["pages"].as_u64() != Some(total_pages) {
        problems.push(format!("stats say {} pages, the list {total_pages}", stats["pages"]));
    }
    let uploads = files_below(&index.join("uploads"));
    let sources: BTreeSet<PathBuf> = docs.iter().filter_map(|d| d["source_path"].as_str().map(PathBuf::from)).collect();
    for orphan in uploads.difference(&sources) {
        problems.push(format!("an upload file no document has: {}", orphan.display()));
    }
    for missing in sources.difference(&uploads) {
        problems.push(format!("a document's file is gone: {}", missing.display()));
    }
    let previews: BTreeSet<String> = std::fs::read_dir(index.join("previews"))
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let listed_owned: BTreeSet<String> = listed.iter().map(|s| s.to_string()).collect();
    for extra in previews.difference(&listed_owned) {
        problems.push(format!("previews of a document that is not stored: {extra}"));
    }
    let jobs = all_jobs();
    for j in &jobs {
        let sum: u64 = j["files"].as_array().into_iter().flatten().filter_map(|f| f["pages_stored"].as_u64()).sum();
        if j["pages_stored"].as_u64() != Some(sum) {
            problems.push(format!("job {}: total {} but its files {sum}", j["id"], j["pages_stored"]));
        }
    }
    let report = json!({
        "documents": docs.len(), "pages": total_pages, "upload_files": uploads.len(), "jobs_kept": jobs.len(),
        "deleted": deleted.len(), "contents_sent": exp["pages"].as_object().map_or(0, |m| m.len()),
        "consistent": problems.is_empty(), "problems": problems.iter().take(20).collect::<Vec<_>>(),
    });
    println!("{report}");
    if !problems.is_empty() {
        bail!("{} consistency problems", problems.len());
    }
    Ok(())
}
