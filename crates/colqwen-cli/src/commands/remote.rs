//! A CLI command on an index that a running `colqwen serve` owns goes through that server: the server
//! writes its address to `<index>/server.json` while it runs (and holds the index lock).

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// A running server of an index.
pub struct Server {
    url: String,
    key: Option<String>,
}

impl Server {
    /// The server that owns the index in `dir`, if it says so and answers.
    pub fn find(dir: &Path) -> Option<Server> {
        let bytes = std::fs::read(dir.join(colqwen_server::SERVER_FILE)).ok()?;
        let info: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let url = info.get("url")?.as_str()?.trim_end_matches('/').to_string();
        let server = Server { url, key: crate::env::api_key() };
        server.get::<serde_json::Value>("/health").ok()?;
        Some(server)
    }

    /// Where it listens.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn auth(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        match &self.key {
            Some(k) => req.header("Authorization", &format!("Bearer {k}")),
            None => req,
        }
    }

    /// `GET path` → JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        let mut resp = self.auth(ureq::get(&url)).call().map_err(|e| http_error(&url, e))?;
        resp.body_mut().read_json().with_context(|| format!("reading the answer of {url}"))
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        let mut req = ureq::post(&url);
        if let Some(k) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req.send_json(body).map_err(|e| http_error(&url, e))?;
        resp.body_mut().read_json().with_context(|| format!("reading the answer of {url}"))
    }

    /// `DELETE path` → JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        let mut resp = self.auth(ureq::delete(&url)).call().map_err(|e| http_error(&url, e))?;
        resp.body_mut().read_json().with_context(|| format!("reading the answer of {url}"))
    }
}

fn http_error(url: &str, e: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!("the server at {url} refused the request: {e}")
}

/// Whether an error means "another process holds the index".
pub fn in_use(e: &colqwen::Error) -> bool {
    matches!(e, colqwen::Error::Index(colqwen::core::IndexError::InUse { .. }))
}
