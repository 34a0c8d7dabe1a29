//! The OpenAI- and vLLM-shaped parts of the API, as their clients really call them:
//!
//! - `GET /v1/models`: the served model under its served names (the OpenAI SDK and the tools built on it —
//!   LiteLLM, LangChain, Open WebUI — discover models there before they embed).
//! - `model` in a request: any served name (`--served-model-name`, default the model's short name: the last
//!   part of its Hub id or folder) or the model's full id; anything else is 404 `model_not_found`, as OpenAI
//!   answers.
//! - `POST /pooling` as vLLM 0.33 serves multi-vector models (`"task": "token_embed"`): text `input` (a string
//!   or a list: queries) or chat `messages` (one input: the message's image, if it has one — a page — else its
//!   text, a query), answered `data[i].data = [n_tokens][dim]` (or base64 little-endian f32), with `usage`.
//!
//! The embedding itself is `api::embed_inputs`, shared with `/v1/embeddings`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The short name of a model id: the last part of a Hub id (`vidore/colqwen2.5-v0.2` → `colqwen2.5-v0.2`, any
/// `@revision` dropped) or of a folder's path.
pub(crate) fn short_name(model_id: &str) -> String {
    let id = if std::path::Path::new(model_id).is_dir() {
        model_id
    } else {
        model_id.rsplit_once('@').map_or(model_id, |(id, _)| id)
    };
    let id = id.trim_end_matches('/');
    id.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(id).to_string()
}

/// The names a server answers to: `--served-model-name` values, else the model's short name.
pub(crate) fn served_names(configured: &[String], model_id: &str) -> Vec<String> {
    let names: Vec<String> = configured.iter().filter(|n| !n.trim().is_empty()).cloned().collect();
    if names.is_empty() { vec![short_name(model_id)] } else { names }
}

/// Whether a request's `model` names this server's model: absent or empty, a served name, or one of the
/// model's full ids (`ids`: the id as recorded and as shown to clients). Otherwise 404 `model_not_found`.
pub(crate) fn check_model(requested: Option<&str>, names: &[String], ids: &[&str]) -> Result<(), ApiError> {
    let Some(m) = requested.filter(|m| !m.is_empty()) else { return Ok(()) };
    if names.iter().any(|n| n == m) || ids.contains(&m) {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "model_not_found",
        format!("this server serves {}, not {m}", names.join(", ")),
    )
    .with_hint(format!("pass \"model\": \"{}\" (GET /v1/models lists it), or leave it out", names[0])))
}

/// `GET /v1/models`: every served name, its root the model's full id.
pub(crate) fn models_json(names: &[String], root: &str, created: u64) -> Value {
    let data: Vec<Value> = names
        .iter()
        .map(|n| json!({ "id": n, "object": "model", "created": created, "owned_by": "colqwen", "root": root, "parent": null }))
        .collect();
    json!({ "object": "list", "data": data })
}

/// Seconds since the epoch (the `created` of OpenAI's and vLLM's answers).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// OpenAI's `usage` of an embedding request: every row embedded is a prompt token.
pub(crate) fn usage_json(tokens: usize) -> Value {
    json!({ "prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": null })
}

/// A `POST /pooling` request (vLLM's completion-style or chat-style pooling request; other vLLM fields, such as
/// `truncate_prompt_tokens` or `priority`, are accepted and have no effect).
#[derive(Deserialize)]
pub(crate) struct PoolingRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) input: Option<PoolingInput>,
    #[serde(default)]
    pub(crate) messages: Option<Vec<Message>>,
    /// vLLM's pooling task: `token_embed` (a vector per token) is the one a multi-vector model serves.
    #[serde(default)]
    pub(crate) task: Option<String>,
    #[serde(default)]
    pub(crate) encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum PoolingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(crate) struct Message {
    /// Read only so that a role that is not a string is refused (the schema says string); any role is taken.
    #[serde(default, rename = "role")]
    _role: Option<String>,
    #[serde(default)]
    pub(crate) content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) image_url: Option<ImageUrl>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ImageUrl {
    Object { url: String },
    Plain(String),
}

impl PoolingRequest {
    /// The inputs as `/v1/embeddings` takes them (queries as text, pages as `data:image/…` URIs) and whether the
    /// answer is base64. A request with `messages` is one input: its image, if it has one, else its text.
    pub(crate) fn inputs(self) -> Result<(Vec<String>, bool), ApiError> {
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "`encoding_format` {other:?}: this server sends float or base64"
                )));
            }
        };
        match self.task.as_deref() {
            None | Some("token_embed") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "task {other:?}: this server's model is multi-vector and serves task token_embed (a vector per token)"
                ))
                .with_hint("send \"task\": \"token_embed\", or leave task out"));
            }
        }
        let inputs = match (self.input, self.messages) {
            (Some(_), Some(_)) => return Err(ApiError::bad_request("send `input` or `messages`, not both")),
            (Some(PoolingInput::One(s)), None) => vec![s],
            (Some(PoolingInput::Many(v)), None) => v,
            (None, Some(messages)) => vec![message_input(messages)?],
            (None, None) => {
                return Err(ApiError::bad_request("send `input` (text) or `messages` (chat, with an image_url)"));
            }
        };
        Ok((inputs, base64))
    }
}

/// The one input of a chat-style request: its image (a page) or, without one, its text joined (a query).
fn message_input(messages: Vec<Message>) -> Result<String, ApiError> {
    let mut images = Vec::new();
    let mut texts = Vec::new();
    for m in messages {
        match m.content {
            Some(Content::Text(t)) => texts.push(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match (p.kind.as_str(), p.text, p.image_url) {
                        ("text", Some(t), _) => texts.push(t),
                        ("image_url", _, Some(ImageUrl::Object { url } | ImageUrl::Plain(url))) => images.push(url),
                        (kind, _, _) => {
                            return Err(ApiError::bad_request(format!(
                                "a message part of type {kind:?}: this server takes text and image_url parts"
                            )));
                        }
                    }
                }
            }
            None => {}
        }
    }
    match images.len() {
        0 if texts.iter().all(|t| t.trim().is_empty()) => {
            Err(ApiError::bad_request("the messages hold no text and no image"))
        }
        0 => Ok(texts.join("\n")),
        1 if images[0].starts_with("data:") => Ok(images.pop().unwrap_or_default()),
        1 => Err(ApiError::bad_request("image_url must be a data:image/…;base64,… URI: this server fetches no URL")
            .with_hint("send the image inline, e.g. data:image/png;base64,…")),
        n => Err(ApiError::bad_request(format!(
            "{n} images in one chat request: a page embedding is of one image (send one request per page)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name("vidore/colqwen2.5-v0.2"), "colqwen2.5-v0.2");
        assert_eq!(short_name("TomoroAI/tomoro-colqwen3-embed-4b@main"), "tomoro-colqwen3-embed-4b");
        assert_eq!(short_name("plain"), "plain");
        assert_eq!(served_names(&[], "org/m"), vec!["m".to_string()]);
        assert_eq!(served_names(&["a".into(), " ".into()], "org/m"), vec!["a".to_string()]);
    }

    #[test]
    fn models_are_checked_against_names_and_ids() {
        let names = vec!["m".to_string()];
        assert!(check_model(None, &names, &["org/m"]).is_ok());
        assert!(check_model(Some(""), &names, &["org/m"]).is_ok());
        assert!(check_model(Some("m"), &names, &["org/m"]).is_ok());
        assert!(check_model(Some("org/m"), &names, &["org/m"]).is_ok());
        let e = check_model(Some("gpt"), &names, &["org/m"]).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (404, "model_not_found"));
    }

    #[test]
    fn chat_requests_are_one_input() {
        let parse = |v: Value| serde_json::from_value::<PoolingRequest>(v).unwrap().inputs();
        let (inputs, b64) = parse(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "Describe the image."}]}]}))
        .unwrap();
        assert_eq!((inputs, b64), (vec!["data:image/png;base64,AAAA".to_string()], false));
        let (inputs, _) = parse(json!({"messages": [{"role": "user", "content": "a question"}]})).unwrap();
        assert_eq!(inputs, vec!["a question".to_string()]);
        assert!(parse(json!({"input": "x", "task": "embed"})).is_err());
        assert!(
            parse(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}))
            .is_err()
        );
        assert!(parse(json!({"input": "x", "messages": []})).is_err());
        assert_eq!(
            parse(json!({"input": ["a", "b"], "encoding_format": "base64"})).unwrap(),
            (vec!["a".into(), "b".into()], true)
        );
    }
}
