//! The HTTP conversation with a Weaviate server: one `ureq` agent, the key, the timeouts, and the mapping of
//! every transport or status failure to one [`IndexError`] that says what happened and what to do.

use std::time::Duration;

use colqwen_core::IndexError;
use serde_json::Value;

/// Largest answer body we read (a page's vectors as JSON are ~1-2 MB; a listing of 10k pages a few MB).
const MAX_BODY_BYTES: u64 = 512 << 20;

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    location: String,
    api_key: Option<String>,
    timeout: Duration,
}

/// What a request sends.
pub(crate) enum Body<'a> {
    None,
    Json(&'a Value),
    /// Already-serialised JSON (batch inserts write their float arrays straight into one buffer).
    Raw(&'a [u8]),
}

impl Client {
    pub(crate) fn new(base: String, location: String, api_key: Option<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .http_status_as_error(false)
            .build()
            .into();
        Self { agent, base, location, api_key, timeout }
    }

    /// Sends a request; returns the status and the body parsed as JSON (`Null` when empty). Transport failures
    /// and 401/403 are errors here; other statuses are for the caller to judge (404 may be an answer).
    pub(crate) fn call(
        &self,
        op: &'static str,
        method: &str,
        path: &str,
        body: Body<'_>,
    ) -> Result<(u16, Value), IndexError> {
        self.call_with(op, method, path, body, None)
    }

    /// [`Client::call`] with one extra request header (GET only).
    pub(crate) fn call_with(
        &self,
        op: &'static str,
        method: &str,
        path: &str,
        body: Body<'_>,
        header: Option<(&str, &str)>,
    ) -> Result<(u16, Value), IndexError> {
        let url = format!("{}{path}", self.base);
        let auth = self.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let result = match (method, body) {
            ("GET", _) => {
                let req = with_auth(self.agent.get(&url), auth.as_deref());
                match header {
                    Some((name, value)) => req.header(name, value).call(),
                    None => req.call(),
                }
            }
            ("DELETE", Body::None) => with_auth(self.agent.delete(&url), auth.as_deref()).call(),
            ("DELETE", Body::Json(v)) => with_auth_body(self.agent.delete(&url).force_send_body(), auth.as_deref())
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(v).expect("JSON values serialise")),
            (m, b) => {
                let req = match m {
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                let req = with_auth_body(req, auth.as_deref()).header("Content-Type", "application/json");
                match b {
                    Body::None => req.send_empty(),
                    Body::Json(v) => req.send(serde_json::to_vec(v).expect("JSON values serialise")),
                    Body::Raw(bytes) => req.send(bytes),
                }
            }
        };
        let mut resp = result.map_err(|e| self.transport_error(op, e))?;
        let status = resp.status().as_u16();
        self.check_access(op, status)?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|e| self.transport_error(op, e))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// A Connect unary call (POST, protobuf body and answer); returns the status and the raw answer. Transport
    /// failures and 401/403 are errors here, as in [`Client::call`].
    pub(crate) fn call_proto(&self, op: &'static str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), IndexError> {
        let url = format!("{}{path}", self.base);
        let auth = self.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let req = with_auth_body(self.agent.post(&url), auth.as_deref())
            .header("Content-Type", "application/proto")
            .header("Connect-Protocol-Version", "1")
            .header("Connect-Timeout-Ms", self.timeout.as_millis().to_string());
        let mut resp = req.send(body).map_err(|e| self.transport_error(op, e))?;
        let status = resp.status().as_u16();
        self.check_access(op, status)?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_error(op, e))?;
        Ok((status, bytes))
    }

    /// 401 and 403 are [`IndexError::AccessRefused`] (a missing or wrong key), whatever the call.
    fn check_access(&self, op: &'static str, status: u16) -> Result<(), IndexError> {
        if status == 401 || status == 403 {
            return Err(IndexError::AccessRefused { location: self.location.clone(), op, status });
        }
        Ok(())
    }

    /// An [`IndexError::Remote`] with `message` as it is.
    pub(crate) fn remote_text(&self, op: &'static str, status: u16, message: String) -> IndexError {
        self.remote(op, status, &Value::String(message))
    }

    /// Like [`Client::call`], but any status outside 2xx is an [`IndexError::Remote`].
    pub(crate) fn ok(&self, op: &'static str, method: &str, path: &str, body: Body<'_>) -> Result<Value, IndexError> {
        let (status, value) = self.call(op, method, path, body)?;
        if (200..300).contains(&status) { Ok(value) } else { Err(self.remote(op, status, &value)) }
    }

    /// A GraphQL query; its `errors` become an [`IndexError::Remote`].
    pub(crate) fn graphql(&self, op: &'static str, query: &str) -> Result<Value, IndexError> {
        let body = serde_json::json!({ "query": query });
        let mut value = self.ok(op, "POST", "/v1/graphql", Body::Json(&body))?;
        if let Some(errors) = value.get("errors").filter(|e| !e.is_null()) {
            return Err(self.remote(op, 200, errors));
        }
        Ok(value.get_mut("data").map(Value::take).unwrap_or(Value::Null))
    }

    pub(crate) fn remote(&self, op: &'static str, status: u16, body: &Value) -> IndexError {
        let mut message = error_message(body);
        if message.len() > 500 {
            let mut cut = 500;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        IndexError::Remote { location: self.location.clone(), op, status, message }
    }

    fn transport_error(&self, op: &'static str, e: ureq::Error) -> IndexError {
        match e {
            ureq::Error::Timeout(_) => {
                IndexError::Timeout { location: self.location.clone(), op, seconds: self.timeout.as_secs() }
            }
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => {
                IndexError::Timeout { location: self.location.clone(), op, seconds: self.timeout.as_secs() }
            }
            other => IndexError::Unreachable { location: self.location.clone(), op, source: Box::new(other) },
        }
    }
}

fn with_auth(
    req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    auth: Option<&str>,
) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

fn with_auth_body(
    req: ureq::RequestBuilder<ureq::typestate::WithBody>,
    auth: Option<&str>,
) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

/// The human part of a Weaviate error body: `{"error":[{"message":…}]}`, GraphQL `[{"message":…}]`, or text.
fn error_message(body: &Value) -> String {
    let list = body.get("error").unwrap_or(body);
    if let Some(items) = list.as_array() {
        let msgs: Vec<&str> = items.iter().filter_map(|i| i.get("message").and_then(Value::as_str)).collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        return m.to_string();
    }
    match body {
        Value::String(s) => s.clone(),
        Value::Null => "(empty answer)".into(),
        other => other.to_string(),
    }
}
