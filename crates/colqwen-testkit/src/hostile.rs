//! What hostile clients send `colqwen serve`, for the server's tests and its soak run (`bench/src/soak.rs`):
//! a client that answers every request with its status and body (0 for a connection error) instead of failing,
//! multipart bodies (whole or cut off mid-file), PNGs whose header claims an absurd size, document ids, and a
//! look at what the server left on disk.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// The multipart boundary of [`multipart`] and [`Client::upload`].
pub const BOUNDARY: &str = "colqwen-test-boundary-7d1f";

/// A `multipart/form-data` body of `file` fields (name, bytes), delimited by [`BOUNDARY`].
pub fn multipart<B: AsRef<[u8]>>(files: &[(&str, B)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/pdf\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes.as_ref());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A document's id as the server gives it: the first 16 hex digits of its file's SHA-256.
pub fn doc_id(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))[..16].to_string()
}

/// A client of the server's API that does not judge: every request gives its status and its body as JSON (a
/// body that is not JSON as a string), status 0 with the error's text when no answer came.
pub struct Client {
    url: String,
    key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`), without an API key.
    pub fn new(url: &str) -> Self {
        Self::with_key(url, None)
    }

    /// A client that sends `key` (when given) as `Authorization: Bearer …` with every request.
    pub fn with_key(url: &str, key: Option<&str>) -> Self {
        Self { url: url.trim_end_matches('/').to_string(), key: key.map(str::to_owned), agent: agent() }
    }

    /// The server's address, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API key sent, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The connection pool, for a request the methods below do not make (a stream read as it comes).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// New connections from here on (after a restart those kept from before are dead).
    pub fn reconnect(&mut self) {
        self.agent = agent();
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => r.header("Authorization", &format!("Bearer {k}")),
            None => r,
        }
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

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        Self::answer(self.with_auth(self.agent.get(&format!("{}{path}", self.url))).call())
    }

    /// A `GET` whose body is not JSON: status, `Content-Type` and bytes (status 0 when no answer came).
    pub fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let Ok(mut resp) = self.with_auth(self.agent.get(&format!("{}{path}", self.url))).call() else {
            return (0, String::new(), Vec::new());
        };
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let mut bytes = Vec::new();
        let _ = resp.body_mut().as_reader().read_to_end(&mut bytes);
        (resp.status().as_u16(), ctype, bytes)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let req =
            self.with_auth(self.agent.post(&format!("{}{path}", self.url))).header("Content-Type", "application/json");
        Self::answer(req.send(body.to_string().as_bytes()))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        Self::answer(self.with_auth(self.agent.delete(&format!("{}{path}", self.url))).call())
    }

    /// Every item of a paginated list (`/v1/documents` or `/v1/jobs`: `field` is `documents` or `jobs`), `limit`
    /// to a page, following `next_cursor`; `None` when a page does not answer 200 with the list.
    pub fn list_all(&self, route: &str, field: &str, limit: usize) -> Option<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("{route}?limit={limit}"),
                Some(next) => format!("{route}?limit={limit}&cursor={next}"),
            };
            let (status, page) = self.get(&path);
            if status != 200 {
                return None;
            }
            all.extend(page[field].as_array()?.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Some(all),
            }
        }
    }

    /// `POST /v1/documents` with `files` (name, bytes) as a multipart body.
    pub fn upload<B: AsRef<[u8]>>(&self, files: &[(&str, B)]) -> (u16, Value) {
        let req = self
            .with_auth(self.agent.post(&format!("{}/v1/documents", self.url)))
            .header("Content-Type", &format!("multipart/form-data; boundary={BOUNDARY}"));
        Self::answer(req.send(&multipart(files)[..]))
    }

    /// An upload of `bytes` that stops in the middle of the file, the connection dropped (its head announces
    /// the whole body).
    pub fn aborted_upload(&self, bytes: &[u8]) -> std::io::Result<()> {
        let body = multipart(&[("aborted.pdf", bytes)]);
        let mut s = std::net::TcpStream::connect(self.url.trim_start_matches("http://"))?;
        let auth = self.key.as_ref().map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        let head = format!(
            "POST /v1/documents HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(&body[..body.len() / 2])?;
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }
}

/// Statuses as answers (no error for a 4xx or 5xx), and a bound on a request: a server that hangs fails the
/// request, not the whole run.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A PNG whose header says `width` × `height` 8-bit RGB pixels, followed by a token of image data: an image
/// bomb as a server sees it before it decodes anything (a decoder would allocate the whole image).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
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
        let mut out = u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = kind.to_vec();
        crc.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc).to_be_bytes());
        out
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// [`png_claiming`] as a data URI.
pub fn png_claiming_uri(width: u32, height: u32) -> String {
    png_data_uri(&png_claiming(width, height))
}

/// `data:image/png;base64,…` of `png`, as `/v1/embeddings` takes images.
pub fn png_data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

/// Every file below `dir` (none when it does not exist; symbolic links count as files).
pub fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    walk(dir).0
}

/// Every folder below `dir`.
pub fn folders_below(dir: &Path) -> BTreeSet<PathBuf> {
    walk(dir).1
}

fn walk(dir: &Path) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let (mut files, mut folders) = (BTreeSet::new(), BTreeSet::new());
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                folders.insert(e.path());
                todo.push(e.path());
            } else {
                files.insert(e.path());
            }
        }
    }
    (files, folders)
}
