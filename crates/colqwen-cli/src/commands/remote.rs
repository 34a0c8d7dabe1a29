//! A CLI command on an index that a running `colqwen serve` owns goes through that server: the server
//! writes its address to `<index>/server.json` while it runs (and holds the index lock).

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// A running server of an index.
pub struct Server {
    url: String,
    key: Option<String>,
    agent: ureq::Agent,
}

/// The server refused a request: its status, its message and what to do. A 4xx is the user's to fix (exit 1).
#[derive(Debug)]
pub struct RemoteError {
    /// The URL asked.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// The server's message (`error.message` of its JSON answer).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server at {} answered {}: {}", self.url, self.status, self.message)
    }
}

impl std::error::Error for RemoteError {}

impl RemoteError {
    /// Whether the user can fix it (a 4xx: a key, a name, a limit).
    pub fn user_fixable(&self) -> bool {
        (400..500).contains(&self.status)
    }
}

impl Server {
    /// The server that owns the index in `dir`, if it says so and answers.
    pub fn find(dir: &Path) -> Option<Server> {
        let url = colqwen_server::served_url(dir)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .into();
        let server = Server { url, key: crate::env::api_key(), agent };
        server.get::<serde_json::Value>("/health").ok()?;
        Some(server)
    }

    /// Where it listens.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.key {
            Some(k) => req.header("Authorization", &format!("Bearer {k}")),
            None => req,
        }
    }

    /// `GET path` → JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        answer(&url, self.auth(self.agent.get(&url)).call())
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        answer(&url, self.auth(self.agent.post(&url)).send_json(body))
    }

    /// `DELETE path` → JSON.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        answer(&url, self.auth(self.agent.delete(&url)).call())
    }

    /// Every item of a paginated list (`GET path?limit=…&cursor=…` → `{key: [...], "next_cursor"}`).
    pub fn get_all(&self, path: &str, key: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page: serde_json::Value = match &cursor {
                None => self.get(&format!("{path}?limit=1000"))?,
                Some(c) => self.get(&format!("{path}?limit=1000&cursor={c}"))?,
            };
            items.extend(page.get(key).and_then(serde_json::Value::as_array).cloned().unwrap_or_default());
            match page.get("next_cursor").and_then(serde_json::Value::as_str) {
                Some(c) if cursor.as_deref() != Some(c) => cursor = Some(c.to_string()),
                _ => return Ok(items),
            }
        }
    }
}

/// A 2xx answer's JSON, or the server's error as a [`RemoteError`].
fn answer<T: DeserializeOwned>(
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<T> {
    let mut resp = result.map_err(|e| anyhow::anyhow!("cannot reach the server at {url}: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return resp.body_mut().read_json().with_context(|| format!("reading the answer of {url}"));
    }
    let body: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
    let text = |k: &str| body["error"][k].as_str().map(str::to_owned);
    let hint = match status {
        401 => Some(
            "the server needs its API key: set COLQWEN_API_KEY to the key it was started with (it is sent as \
             `Authorization: Bearer`)"
                .to_string(),
        ),
        _ => text("hint"),
    };
    let message = text("message").unwrap_or_else(|| format!("HTTP status {status}"));
    Err(RemoteError { url: url.to_string(), status, message, hint }.into())
}

/// Whether an error means "another process holds the index".
pub fn in_use(e: &colqwen::Error) -> bool {
    matches!(e, colqwen::Error::Index(colqwen::core::IndexError::InUse { .. }))
}
