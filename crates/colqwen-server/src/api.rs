//! The routes. Handlers are thin: they validate, call the `Service` (on the blocking pool, since it waits on
//! the device worker) and shape JSON. The OpenAPI document (`/openapi.json`) describes every route here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use colqwen::core::{DocumentInfo, SearchMode, doc_id, is_doc_id};
use colqwen::{FileStatus, JobState, JobStatus, SearchOptions};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::AppState;
use crate::error::ApiError;
use crate::uploads::{Batch, upload_name};

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

/// Largest JSON body (search, embeddings with image data URIs, path lists).
const MAX_JSON_BYTES: usize = 32 << 20;
/// Most inputs of one embeddings request.
const MAX_EMBED_INPUTS: usize = 64;
/// Most images of one embeddings request.
const MAX_EMBED_IMAGES: usize = 16;
/// Largest image of `/v1/embeddings`, pixels (40 megapixels: a page scanned at 600 dpi fits; the model resizes
/// every image to its own pixel budget anyway, well below this). A decoded image is held at most
/// [`MAX_IMAGE_BYTES`], one image at a time in the whole server, so memory per request stays bounded whatever
/// a small compressed file claims to be.
const MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// Largest decoded image in memory, bytes (40 megapixels of 8-bit RGBA is 160 MB).
const MAX_IMAGE_BYTES: u64 = 200 << 20;
/// Pixels of all the images of one embeddings request together (bounds the CPU time of one request).
const MAX_REQUEST_PIXELS: u64 = 120_000_000;
/// Hits of one search that may carry a page image or a similarity map (each adds 100–600 KB of base64 and
/// the map's drawing time): the answer stays a few MB whatever the index holds.
const MAX_MEDIA_HITS: usize = 20;
/// Longest query, characters.
const MAX_QUERY_CHARS: usize = 4096;
/// Page size of `/v1/documents` and `/v1/jobs` when `limit` is not given, and the largest `limit`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

static OPENAPI: &str = include_str!("openapi.json");

/// The application: every route, auth, limits, CORS.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let timeout = state.config.request_timeout;
    let max_upload = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    // Uploads and event streams run as long as they need; everything else is bounded in time.
    let long = axum::Router::new()
        .route("/v1/documents", post(upload).layer(DefaultBodyLimit::max(max_upload)))
        .route("/v1/jobs/{id}/events", get(job_events));
    let bounded = axum::Router::new()
        .route("/", get(crate::web::index))
        .route("/web/{file}", get(crate::web::asset))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/documents", get(list_documents))
        .route("/v1/documents/paths", post(ingest_paths))
        .route("/v1/documents/{doc_id}", delete(delete_document))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/resume", post(resume_job))
        .route("/favicon.ico", get(crate::web::favicon))
        .route("/v1/search", post(search))
        .route("/v1/pages/{doc_id}/{page}/preview", get(preview))
        .route("/v1/pages/{doc_id}/{page}/similarity", get(similarity))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/pooling", post(pooling))
        .route("/v1/stats", get(stats))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout));
    let mut app = long
        .merge(bounded)
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .layer(RequestBodyLimitLayer::new(max_upload.max(MAX_JSON_BYTES)))
        .layer(middleware::from_fn_with_state(state.clone(), json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state.config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    "x-api-key".parse().unwrap_or(header::ACCEPT),
                ]),
        );
    }
    app.with_state(state)
}

/// API key check (every route but `/health`) and request counters.
async fn guard(State(state): S, req: Request, next: Next) -> Response {
    if let Some(key) = state.config.api_key.as_deref().filter(|k| !k.is_empty())
        && req.uri().path() != "/health"
        && !crate::web::is_public(req.uri().path())
        && req.method() != Method::OPTIONS
        && !key_matches(req.headers(), key)
    {
        let mut resp =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong API key").into_response();
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        count(&state, resp.status());
        return resp;
    }
    let resp = next.run(req).await;
    count(&state, resp.status());
    resp
}

/// Errors that axum's extractors answer in plain text (malformed JSON, a bad path parameter, a body over the
/// limit) get the same JSON shape as ours, so every error of the API is `{"error": {...}}`; beyond loopback,
/// the paths in every error answer are shown relative ([`crate::paths`]).
async fn json_errors(State(state): S, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let ctype = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if ctype.as_deref() == Some("application/json") {
        // Ours: only the paths in it may need hiding.
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else { return Response::from_parts(parts, body.into()) };
        state.paths.json(&mut v, &[], &["message", "hint", "error"]);
        // The answer's own headers stay (`Connection: close` of a refused upload, among others).
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(v.to_string()));
    }
    if !ctype.as_deref().is_none_or(|c| c.starts_with("text/plain")) {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 << 10).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "{message}: this server takes uploads up to {} MiB (--max-upload-mib) and JSON bodies up to {} MiB",
            state.config.max_upload_bytes >> 20,
            MAX_JSON_BYTES >> 20
        )
    } else {
        message
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    ApiError::new(status, code, message).into_response()
}

/// A JSON request body that must be an object. serde reads a struct from a JSON *array* of its fields in
/// order too (`[["reset"]]` would pass as `{"input": ["reset"]}`), which the OpenAPI document does not allow and
/// a client never means; every JSON route takes its body through this, so an array, a string or a number is a
/// 422 naming what was expected.
struct JsonObject<T>(T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for JsonObject<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Response> {
        let Json(value) = Json::<Value>::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_request",
                "the request body must be a JSON object (see /openapi.json)",
            )
            .into_response());
        }
        serde_json::from_value(value).map(JsonObject).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_request", format!("invalid request body: {e}"))
                .into_response()
        })
    }
}

fn count(state: &AppState, status: StatusCode) {
    use std::sync::atomic::Ordering::Relaxed;
    state.metrics.requests.fetch_add(1, Relaxed);
    if status.is_client_error() {
        state.metrics.client_errors.fetch_add(1, Relaxed);
    } else if status.is_server_error() {
        state.metrics.server_errors.fetch_add(1, Relaxed);
    }
}

/// `Authorization: Bearer KEY` (the scheme in any case, as HTTP auth schemes are) or `X-API-Key: KEY`,
/// compared in constant time.
fn key_matches(headers: &HeaderMap, key: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    given
        .is_some_and(|g| g.len() == key.len() && g.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

/// Runs blocking service work on the blocking pool; a panic there becomes a 500, never a dead server.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed inside the server"))
    })
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(state): S) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&state)).into_response()
}

async fn stats(State(state): S) -> ApiResult<Json<Value>> {
    blocking(move || {
        let s = state.service.stats()?;
        let (queries, pages) = state.service.queue_depths();
        let mut v = serde_json::to_value(&s).unwrap_or_default();
        state.paths.json(&mut v, &["location"], &[]);
        if let Some(o) = v.as_object_mut() {
            o.insert("model_id".into(), json!(state.paths.model(&s.model_id)));
            o.insert("device".into(), json!(state.service.embedder().map(|e| e.device_name())));
            o.insert("queue".into(), json!({ "queries": queries, "pages": pages }));
        }
        Ok(Json(v))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Items per answer (1 to 1000).
    #[serde(default)]
    limit: Option<usize>,
    /// `next_cursor` of the previous answer.
    #[serde(default)]
    cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self, default: usize) -> ApiResult<usize> {
        match self.limit {
            None => Ok(default),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(format!("`limit` must be 1 to {MAX_PAGE}"))),
        }
    }
}

/// `GET /v1/documents?limit=N&cursor=C`: documents by id, `limit` at a time (100 by default); `next_cursor`
/// (the last id of the answer) gives the next ones, `null` at the end. A document's versions are never split.
async fn list_documents(State(state): S, Query(page): Query<PageQuery>) -> ApiResult<Json<Value>> {
    let limit = page.limit(DEFAULT_PAGE)?;
    if let Some(c) = &page.cursor {
        check_id(c)?;
    }
    blocking(move || {
        let docs = state.service.documents()?;
        let total = docs.len();
        let after: Vec<&DocumentInfo> =
            docs.iter().filter(|d| page.cursor.as_deref().is_none_or(|c| d.doc_id.as_str() > c)).collect();
        let mut n = limit.min(after.len());
        while n > 0 && n < after.len() && after[n].doc_id == after[n - 1].doc_id {
            n += 1;
        }
        let next = (n < after.len()).then(|| after[n - 1].doc_id.clone());
        let docs: Vec<Value> = after[..n].iter().map(|d| document_json(&state, d)).collect();
        Ok(Json(json!({ "documents": docs, "next_cursor": next, "total": total })))
    })
    .await
}

fn document_json(state: &AppState, d: &DocumentInfo) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        let name = Path::new(&d.source_path).file_name().map(|n| n.to_string_lossy().into_owned());
        o.insert("name".into(), json!(name));
        o.insert("source_path".into(), json!(state.paths.path(&d.source_path)));
    }
    v
}

/// `DELETE /v1/documents/{id}`: final, also while a job ingests the document. The service stops that ingest
/// from storing any more of it and removes what it stored (pages, previews); the jobs that hold the document
/// settle its file with a note saying so (and never ingest it again); an uploaded source goes with it.
/// Stopping and rolling back rather than refusing with 409: a user who deletes a document that is still
/// uploading means it (a mistaken upload of a large file), and a refusal would leave them waiting for an ingest
/// they do not want.
async fn delete_document(State(state): S, UrlPath(doc_id): UrlPath<String>) -> ApiResult<Json<Value>> {
    check_id(&doc_id)?;
    blocking(move || {
        let sources: Vec<PathBuf> = state
            .service
            .documents()?
            .into_iter()
            .filter(|d| d.doc_id == doc_id)
            .map(|d| PathBuf::from(d.source_path))
            .collect();
        let ingesting = state.service.is_ingesting(&doc_id) || state.jobs.holds_document(&doc_id);
        if sources.is_empty() && !ingesting {
            return Err(ApiError::not_found(format!("no document {doc_id}")));
        }
        // In this order: the jobs first (a run opening the file from now on leaves it), then the service (a run
        // writing it stops, what it wrote goes), then the files.
        let settled = state.jobs.forget_document(&doc_id);
        let was_ingesting = state.service.is_ingesting(&doc_id);
        let pages = state.service.delete_document(&doc_id)?;
        // An uploaded file goes with its document (files ingested by path are the user's and stay).
        for file in sources.iter().chain(&settled) {
            state.uploads.remove(file);
        }
        let stopped = was_ingesting || !settled.is_empty();
        Ok(Json(json!({ "doc_id": doc_id, "pages_deleted": pages, "ingest_stopped": stopped })))
    })
    .await
}

fn check_id(id: &str) -> ApiResult<()> {
    if is_doc_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{id:?} is not an id (lowercase hex digits)")))
    }
}

/// One uploaded file, saved.
struct Saved {
    name: String,
    path: PathBuf,
}

/// `POST /v1/documents`, multipart: one or more `file` fields (PDFs), optional `password`. Each file is streamed
/// to its own folder of the request's batch ([`crate::uploads`]), checked (opens as a PDF with pages), and the
/// good ones go into one job; a file whose content is stored already (or comes twice) keeps no copy and is
/// settled in the job as a duplicate. Whatever fails — the request or one file — leaves nothing on disk.
async fn upload(state: S, multipart: Multipart) -> Response {
    let mut resp = upload_files(state, multipart).await.unwrap_or_else(IntoResponse::into_response);
    // A refused upload may leave its body unread, and then the server closes the connection: say so, so that
    // no client sends its next request on it.
    if resp.status().is_client_error() || resp.status().is_server_error() {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn upload_files(State(state): S, mut multipart: Multipart) -> ApiResult<Response> {
    let batch = Batch::begin(&state.uploads).map_err(|e| io_error("create the upload folder", &e))?;
    let limit = state.config.max_upload_bytes;
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the upload is larger than this server takes: {} MiB", limit >> 20))
                .with_hint("upload fewer or smaller files per request (the server's --max-upload-mib sets the limit)")
        } else if e.status().is_server_error() {
            // The body stopped coming (the client hung up or stalled): the client's doing, not the server's.
            ApiError::bad_request(format!("the upload was cut short: {}", e.body_text()))
        } else {
            ApiError::new(e.status(), "bad_request", format!("the multipart body cannot be read: {}", e.body_text()))
        }
    };
    let mut saved: Vec<Saved> = Vec::new();
    let mut password: Option<String> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => {
                let name = upload_name(field.file_name().unwrap_or(""));
                let path = batch.file_path(saved.len(), &name).map_err(|e| io_error("store the upload", &e))?;
                let mut out = tokio::fs::File::create(&path).await.map_err(|e| io_error("store the upload", &e))?;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    out.write_all(&chunk).await.map_err(|e| io_error("store the upload", &e))?;
                }
                out.flush().await.map_err(|e| io_error("store the upload", &e))?;
                saved.push(Saved { name, path });
            }
            Some("password") => password = field.text().await.ok().filter(|p| !p.is_empty()),
            // A field the API does not define is a mistake of the client (a misspelt `file`?): refused, and
            // nothing of this upload is kept.
            other => {
                let name = other.unwrap_or("").chars().take(64).collect::<String>();
                return Err(ApiError::bad_request(format!(
                    "unknown multipart field {name:?}: the upload takes `file` (one or more) and `password`"
                )));
            }
        }
    }
    if saved.is_empty() {
        return Err(ApiError::bad_request("no `file` field in the multipart body"));
    }
    let pw = password.clone();
    let checked = blocking(move || Ok(check_pdfs(saved, pw.as_deref()))).await?;
    let mut good = Vec::new();
    let mut rejected = Vec::new();
    let mut first_hint = None;
    for c in checked {
        match c.outcome {
            Ok(sha256) => good.push((c.saved, sha256)),
            Err((reason, message, hint)) => {
                let _ = std::fs::remove_file(&c.saved.path);
                first_hint = first_hint.or_else(|| hint.clone());
                rejected.push(json!({ "name": c.saved.name, "reason": reason.code(), "error": message, "hint": hint }));
            }
        }
    }
    if good.is_empty() {
        let first = rejected.first().and_then(|r| r.get("error")).and_then(Value::as_str).unwrap_or("").to_string();
        let mut body = json!({ "error": {
            "code": "bad_pdf",
            "message": format!("no file of the upload is a readable PDF: {first}"),
            "hint": first_hint.unwrap_or_else(|| "re-download or re-export the file".into()),
            "rejected": rejected,
        }});
        state.paths.json(&mut body, &[], &["message", "error"]);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
    }
    let known = {
        let state = state.clone();
        blocking(move || Ok(state.service.documents()?)).await?
    };
    let files = dedupe(&state, good, &known);
    let duplicates: Vec<Value> = files
        .iter()
        .filter(|f| f.duplicate_of.is_some())
        .map(|f| json!({ "name": f.name, "duplicate_of": f.duplicate_of, "note": f.note }))
        .collect();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let names = json!(names);
    let job = state.jobs.submit_files(files, password)?;
    batch.keep();
    let mut body = json!({ "job": job, "files": names, "duplicates": duplicates, "rejected": rejected,
        "status_url": format!("/v1/jobs/{job}"), "events_url": format!("/v1/jobs/{job}/events") });
    state.paths.json(&mut body, &[], &["error", "note"]);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The job's files for the good uploads: a file whose content came earlier in the request, or is stored
/// completely, is settled as a duplicate (its copy removed); one whose content an earlier upload holds (a
/// document still incomplete, a job that may still run) is ingested from that upload's file (its copy
/// removed: the job skips what is stored and adds what is missing); the others as they are.
fn dedupe(state: &AppState, good: Vec<(Saved, String)>, known: &[DocumentInfo]) -> Vec<FileStatus> {
    let stored: HashMap<&str, &DocumentInfo> = known.iter().map(|d| (d.file_sha256.as_str(), d)).collect();
    let pending: HashMap<String, PathBuf> = state
        .jobs
        .list()
        .into_iter()
        .filter(|j| j.state.is_active() || j.resumable)
        .flat_map(|j| j.files)
        .filter(|f| !f.is_settled() && f.path.is_file())
        .filter_map(|f| Some((f.doc_id?, f.path)))
        .collect();
    let mut seen: HashMap<String, (String, PathBuf)> = HashMap::new();
    let mut files = Vec::new();
    for (saved, sha256) in good {
        let id = doc_id(&sha256);
        let mut file = FileStatus::new(saved.name.clone(), saved.path.clone());
        file.doc_id = Some(id.clone());
        let doc = stored.get(sha256.as_str()).filter(|d| Path::new(&d.source_path).is_file());
        if let Some((first, path)) = seen.get(&sha256) {
            file.path = path.clone();
            file = file.settled(format!("the same content as {first} of this upload: stored once"));
            file.duplicate_of = Some(id);
        } else if let Some(d) = doc.filter(|d| d.stored_pages >= d.page_count) {
            let shown = Path::new(&d.source_path).file_name().map(|n| n.to_string_lossy().into_owned());
            file.path = PathBuf::from(&d.source_path);
            file.page_count = Some(d.page_count);
            file.pages_skipped = d.page_count;
            file.opened = true;
            file = file.settled(format!(
                "already stored as {} ({} page{}): no second copy is kept",
                shown.unwrap_or_default(),
                d.page_count,
                if d.page_count == 1 { "" } else { "s" }
            ));
            file.duplicate_of = Some(id);
        } else if let Some(existing) = doc.map(|d| PathBuf::from(&d.source_path)).or_else(|| pending.get(&id).cloned())
        {
            // The earlier copy is completed by this job (pages stored are skipped).
            file.path = existing;
            file.duplicate_of = Some(id);
            file.note = Some("the same content as an earlier upload: stored once, from that upload".into());
        } else {
            seen.insert(sha256, (saved.name.clone(), saved.path.clone()));
            files.push(file);
            continue;
        }
        let _ = std::fs::remove_file(&saved.path);
        files.push(file);
    }
    files
}

/// Why an uploaded file was refused, for clients to act on (the web page asks for a password on the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PasswordRequired,
    WrongPassword,
    Unreadable,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Self::PasswordRequired => "password_required",
            Self::WrongPassword => "wrong_password",
            Self::Unreadable => "unreadable",
        }
    }
}

/// A saved file after its check: its SHA-256, or why it cannot be ingested (reason, message, hint).
struct Checked {
    saved: Saved,
    outcome: Result<String, (Refusal, String, Option<String>)>,
}

/// Opens each saved file as a PDF (with the password) and hashes it, so a bad upload is answered at once
/// instead of failing later inside the job. Messages name the file by the user's name; a protected PDF is
/// told in this API's words (its `password` field), not the command line's.
fn check_pdfs(files: Vec<Saved>, password: Option<&str>) -> Vec<Checked> {
    use colqwen::pdf::Error as P;
    use sha2::Digest as _;
    files
        .into_iter()
        .map(|saved| {
            let name = saved.name.clone();
            let outcome = match std::fs::read(&saved.path) {
                Err(e) => Err((Refusal::Unreadable, format!("{name}: cannot read the upload: {e}"), None)),
                Ok(bytes) => {
                    let sha256 = format!("{:x}", sha2::Sha256::digest(&bytes));
                    match colqwen::pdf::Document::from_bytes(bytes, password, &name) {
                        Ok(doc) if doc.page_count() == 0 => {
                            Err((Refusal::Unreadable, format!("{name}: the PDF has no pages"), None))
                        }
                        Ok(_) => Ok(sha256),
                        Err(P::PasswordRequired { .. }) => Err((
                            Refusal::PasswordRequired,
                            format!("{name} is password-protected"),
                            Some("upload it again with its password in the `password` field".into()),
                        )),
                        Err(P::WrongPassword { .. }) => Err((
                            Refusal::WrongPassword,
                            format!("the password does not open {name}"),
                            Some("check the password and upload the file again".into()),
                        )),
                        Err(e) => {
                            let e = colqwen::Error::from(e);
                            Err((Refusal::Unreadable, colqwen::error_chain(&e), e.hint()))
                        }
                    }
                }
            };
            Checked { saved, outcome }
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsRequest {
    paths: Vec<String>,
}

/// `POST /v1/documents/paths {"paths": [...]}`: server-side files, only below a `--allow-path` folder. A path
/// outside every allowed folder is refused the same way (403) whether it exists or not, so the answer tells
/// nothing about the server's other files; only a path inside an allowed folder can be "not found" (404).
async fn ingest_paths(State(state): S, JsonObject(req): JsonObject<PathsRequest>) -> ApiResult<Response> {
    if state.config.allow_paths.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "ingesting server-side paths is off; start the server with --allow-path DIR",
        ));
    }
    if req.paths.is_empty() || req.paths.len() > 10_000 {
        return Err(ApiError::bad_request("`paths` must hold 1 to 10000 paths"));
    }
    let allowed: Vec<PathBuf> = state.config.allow_paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut files = Vec::new();
    for p in &req.paths {
        let forbidden =
            || ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("{p}: not a file below an allowed folder"));
        let (real, exists) = resolve(Path::new(p)).ok_or_else(forbidden)?;
        if !allowed.iter().any(|a| real.starts_with(a)) {
            return Err(forbidden());
        }
        if !exists {
            return Err(ApiError::not_found(format!("{p}: no such file")));
        }
        if !real.is_file() {
            return Err(forbidden());
        }
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        files.push((name, real));
    }
    let job = state.jobs.submit(files)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job, "status_url": format!("/v1/jobs/{job}") }))).into_response())
}

/// Where `path` really is (symbolic links followed) and whether it exists: for a path that does not exist,
/// its deepest existing folder resolved and the rest appended. `None` for a relative path, or a missing rest
/// that climbs (`..`).
fn resolve(path: &Path) -> Option<(PathBuf, bool)> {
    if !path.is_absolute() {
        return None;
    }
    if let Ok(real) = path.canonicalize() {
        return Some((real, true));
    }
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        let name = at.file_name()?;
        rest.push(name.to_os_string());
        at = at.parent()?;
        if let Ok(real) = at.canonicalize() {
            let mut p = real;
            for part in rest.iter().rev() {
                p.push(part);
            }
            return Some((p, false));
        }
    }
}

/// `GET /v1/jobs?limit=N&cursor=C`: jobs newest first, `limit` at a time (100 by default); `next_cursor` gives
/// the next ones, `null` at the end.
async fn list_jobs(State(state): S, Query(page): Query<PageQuery>) -> ApiResult<Json<Value>> {
    let limit = page.limit(DEFAULT_PAGE)?;
    let cursor = match &page.cursor {
        None => None,
        Some(c) => Some(parse_job_cursor(c).ok_or_else(|| ApiError::bad_request("`cursor` is not one of ours"))?),
    };
    let all = state.jobs.list();
    let total = all.len();
    let after: Vec<JobStatus> =
        all.into_iter().filter(|j| cursor.as_ref().is_none_or(|(c, id)| (j.created, &j.id) < (*c, id))).collect();
    let n = limit.min(after.len());
    let next = (n < after.len()).then(|| format!("{}.{}", after[n - 1].created, after[n - 1].id));
    let jobs: Vec<Value> = after[..n].iter().map(|j| job_json(&state, j)).collect();
    Ok(Json(json!({ "jobs": jobs, "next_cursor": next, "total": total })))
}

/// `CREATED.ID` (seconds, hex id) of a job.
fn parse_job_cursor(c: &str) -> Option<(u64, String)> {
    let (created, id) = c.split_once('.')?;
    (is_doc_id(id) && !created.is_empty() && created.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Some((created.parse().ok()?, id.to_string())))
        .flatten()
}

/// A job as JSON, its paths shown as the client may see them.
fn job_json(state: &AppState, status: &JobStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    state.paths.json(&mut v, &["path"], &["error", "note"]);
    v
}

async fn job_status(State(state): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    check_id(&id)?;
    Ok(Json(job_json(&state, &state.jobs.status(&id)?)))
}

/// `POST /v1/jobs/{id}/cancel`: a queued job never starts, a running one stops after the batch in hand; a job
/// that has already ended is a 409.
///
/// The request's body, if any, is read (and ignored): left unread, it makes the server close the connection
/// after the answer, and a client that sent `{}` would find its next request on a dead connection.
async fn cancel_job(State(state): S, UrlPath(id): UrlPath<String>, _body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    check_id(&id)?;
    state.jobs.cancel(&id)??;
    Ok(Json(job_json(&state, &state.jobs.status(&id)?)))
}

/// `POST /v1/jobs/{id}/resume`: a cancelled job (or one whose run failed as a whole) is queued again; what it
/// stored is kept and skipped. Anything else is a 409 saying why.
/// The body, if any, is read and ignored (see `cancel_job`).
async fn resume_job(State(state): S, UrlPath(id): UrlPath<String>, _body: axum::body::Bytes) -> ApiResult<Response> {
    check_id(&id)?;
    state.jobs.resume(&id)??;
    Ok((StatusCode::ACCEPTED, Json(job_json(&state, &state.jobs.status(&id)?))).into_response())
}

/// Server-Sent Events: one `status` event (the job's JSON) whenever the job changes, then `end` when it is no
/// longer queued or running.
async fn job_events(
    State(state): S,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    check_id(&id)?;
    state.jobs.status(&id)?;
    let stream = futures_util::stream::unfold((state, id, None::<u64>, false), |(state, id, seen, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let Ok(status) = state.jobs.status(&id) else { return None };
            let finished = !matches!(status.state, JobState::Queued | JobState::Running);
            if seen != Some(status.version) || finished {
                let data = job_json(&state, &status).to_string();
                let event = Event::default().event(if finished { "end" } else { "status" }).data(data);
                return Some((Ok(event), (state, id, Some(status.version), finished)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    #[serde(default = "default_k")]
    k: usize,
    /// Document id, id prefix, path or file name.
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    mode: Option<ModeRequest>,
    /// Pages the two-stage search reranks exactly (implies two-stage); absent: the index decides.
    #[serde(default)]
    prefetch: Option<usize>,
    /// Add each page's preview as base64 JPEG (for VLM RAG).
    #[serde(default)]
    include_images: bool,
    /// Add each page's aggregate similarity map as a base64 PNG overlay (`similarity_base64`).
    #[serde(default)]
    maps: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ModeRequest {
    Name(String),
    Full(SearchMode),
}

fn default_k() -> usize {
    10
}

async fn search(State(state): S, JsonObject(req): JsonObject<SearchRequest>) -> ApiResult<Json<Value>> {
    if req.query.trim().is_empty() {
        return Err(colqwen::Error::EmptyQuery.into());
    }
    if req.query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!("`query` is longer than {MAX_QUERY_CHARS} characters")));
    }
    if req.k == 0 || req.k > colqwen::MAX_K {
        return Err(ApiError::bad_request(format!("`k` must be 1 to {}", colqwen::MAX_K)));
    }
    if (req.include_images || req.maps) && req.k > MAX_MEDIA_HITS {
        return Err(ApiError::bad_request(format!(
            "`include_images` and `maps` come with at most {MAX_MEDIA_HITS} hits (`k` ≤ {MAX_MEDIA_HITS}); \
             asked for {}",
            req.k
        ))
        .with_hint(
            "ask for fewer hits, or search without them and fetch each page's preview_url (and its similarity map) \
             as you show it",
        ));
    }
    let mode = match (req.mode, req.prefetch) {
        (None, None) => SearchMode::Auto,
        (None, Some(p)) => SearchMode::TwoStage { prefetch: Some(p) },
        (Some(ModeRequest::Full(m)), None) => m,
        (Some(ModeRequest::Full(_)), Some(_)) => {
            return Err(ApiError::bad_request("give `prefetch` either at the top level or inside `mode`, not both"));
        }
        (Some(ModeRequest::Name(n)), prefetch) => match (n.as_str(), prefetch) {
            ("auto", None) => SearchMode::Auto,
            ("exact", None) => SearchMode::Exact,
            ("two_stage" | "two-stage", prefetch) => SearchMode::TwoStage { prefetch },
            ("auto" | "exact", Some(_)) => {
                return Err(ApiError::bad_request(
                    "`prefetch` sets the two-stage rerank: it goes with `mode` two_stage (or no `mode`)",
                ));
            }
            _ => return Err(ApiError::bad_request("`mode` must be auto, exact or two_stage")),
        },
    };
    if let SearchMode::TwoStage { prefetch: Some(p) } = mode
        && (p == 0 || p > 100_000)
    {
        return Err(ApiError::bad_request("`prefetch` must be 1 to 100000"));
    }
    let started = Instant::now();
    blocking(move || {
        let opts = SearchOptions { k: req.k, doc: req.doc, mode };
        let hits = state.service.search(&req.query, &opts)?;
        let map_query = if req.maps { Some(state.service.map_query(&req.query)?) } else { None };
        let results: Vec<Value> = hits
            .into_iter()
            .map(|h| {
                let mut v = json!({
                    "score": h.score,
                    "doc_id": h.doc_id,
                    "source_path": state.paths.path(&h.source_path),
                    "name": Path::new(&h.source_path).file_name().map(|n| n.to_string_lossy().into_owned()),
                    "page_number": h.page_number,
                    "page_count": h.page_count,
                    "preview_url": h.preview.as_ref().map(|_| format!("/v1/pages/{}/{}/preview", h.doc_id, h.page_number)),
                });
                if req.include_images
                    && let Some(p) = &h.preview
                    && let Ok(bytes) = std::fs::read(p)
                {
                    v["image_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                    v["image_mime"] = json!("image/jpeg");
                }
                if let Some((tokens, q)) = &map_query {
                    // A page without a map (e.g. its source PDF is gone) still comes back, with the reason.
                    match state
                        .service
                        .page_maps(&h.doc_id, h.page_number, tokens, q)
                        .and_then(|m| state.service.similarity_png(&h.doc_id, h.page_number, &m, None))
                    {
                        Ok(png) => v["similarity_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(png)),
                        Err(e) => v["similarity_error"] = json!(state.paths.text(&colqwen::error_chain(&e))),
                    }
                }
                v
            })
            .collect();
        Ok(Json(json!({ "results": results, "took_ms": started.elapsed().as_secs_f64() * 1e3 })))
    })
    .await
}

async fn preview(State(state): S, UrlPath((doc_id, page)): UrlPath<(String, String)>) -> ApiResult<Response> {
    check_id(&doc_id)?;
    let page = page_number(&doc_id, &page)?;
    let bytes = blocking(move || Ok(state.service.preview(&doc_id, page)?)).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=3600")], Body::from(bytes))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimilarityQuery {
    q: String,
    /// Index of one query token (see `tokens` of the JSON form); absent: the aggregate map.
    #[serde(default)]
    token: Option<usize>,
    /// `png` (default): the overlay; `json`: the query's tokens, the grid and every normalised map.
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/pages/{doc_id}/{page}/similarity?q=…[&token=i][&format=json]`: where on the page the query
/// matches, from the page's stored vectors (no re-embedding of the page).
async fn similarity(
    State(state): S,
    UrlPath((doc_id, page)): UrlPath<(String, String)>,
    Query(sq): Query<SimilarityQuery>,
) -> ApiResult<Response> {
    check_id(&doc_id)?;
    let page = page_number(&doc_id, &page)?;
    if sq.q.trim().is_empty() {
        return Err(ApiError::bad_request("`q` is empty"));
    }
    if sq.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!("`q` is longer than {MAX_QUERY_CHARS} characters")));
    }
    let json_out = match sq.format.as_deref() {
        None | Some("png") => false,
        Some("json") => true,
        Some(_) => return Err(ApiError::bad_request("`format` must be png or json")),
    };
    blocking(move || {
        let maps = state.service.similarity(&doc_id, page, &sq.q)?;
        if let Some(t) = sq.token
            && t >= maps.tokens.len()
        {
            return Err(ApiError::bad_request(format!(
                "`token` must be below {} (the query's tokens)",
                maps.tokens.len()
            )));
        }
        if json_out {
            let per_token: Vec<Vec<f32>> = (0..maps.tokens.len()).filter_map(|i| maps.normalized(Some(i))).collect();
            let body = json!({
                "doc_id": doc_id, "page_number": page, "tokens": maps.tokens,
                "cols": maps.grid.cols, "rows": maps.grid.rows,
                "aggregate": maps.normalized(None), "maps": per_token,
            });
            return Ok(Json(body).into_response());
        }
        let png = state.service.similarity_png(&doc_id, page, &maps, sq.token)?;
        Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=600")], Body::from(png))
            .into_response())
    })
    .await
}

/// A page number from the URL: digits, from 1.
fn page_number(doc_id: &str, page: &str) -> ApiResult<usize> {
    if page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()) || page.bytes().all(|b| b == b'0') {
        return Err(ApiError::bad_request("page must be a number from 1"));
    }
    // A number beyond any document's length is a page that does not exist.
    page.parse().map_err(|_| ApiError::not_found(format!("document {doc_id} has no page {page}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsRequest {
    input: EmbedInput,
    /// Accepted for OpenAI compatibility; must be the served model or absent.
    #[serde(default)]
    model: Option<String>,
    /// `float` (default): nested arrays; `base64`: little-endian f32 plus the shape.
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

/// OpenAI-style embeddings: strings are queries, `data:image/...;base64,` URIs are page images. One
/// multi-vector (`[[f32; 128]; n]`) per input, its `shape` beside it (a client that decodes base64 into one flat
/// list keeps it there), and `usage` (every row embedded is a prompt token).
async fn embeddings(State(state): S, JsonObject(req): JsonObject<EmbeddingsRequest>) -> ApiResult<Json<Value>> {
    let inputs = match req.input {
        EmbedInput::One(s) => vec![s],
        EmbedInput::Many(v) => v,
    };
    let base64_out = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(ApiError::bad_request("`encoding_format` must be float or base64")),
    };
    check_model(&state, req.model.as_deref())?;
    let vectors = embed_inputs(state.clone(), inputs).await?;
    let tokens = vectors.iter().map(|v| v.rows).sum();
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let shape = json!([v.rows, v.dim]);
            json!({ "object": "embedding", "index": i, "embedding": encode_rows(&v, base64_out), "shape": shape })
        })
        .collect();
    Ok(Json(json!({
        "object": "list", "data": data, "model": state.served_names[0], "usage": crate::openai::usage_json(tokens),
    })))
}

/// `GET /v1/models`: the model under each of its served names (OpenAI's model list; `root`: its full id).
async fn models(State(state): S) -> Json<Value> {
    let root = state.paths.model(&state.service.manifest().model_id);
    Json(crate::openai::models_json(&state.served_names, &root, state.started_unix))
}

/// `POST /pooling`: vLLM's pooling API for multi-vector models (`task: token_embed`), see [`crate::openai`].
async fn pooling(
    State(state): S,
    JsonObject(req): JsonObject<crate::openai::PoolingRequest>,
) -> ApiResult<Json<Value>> {
    check_model(&state, req.model.as_deref())?;
    let (inputs, base64_out) = req.inputs()?;
    let vectors = embed_inputs(state.clone(), inputs).await?;
    let tokens = vectors.iter().map(|v| v.rows).sum();
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({ "index": i, "object": "pooling", "data": encode_rows(v, base64_out) }))
        .collect();
    Ok(Json(json!({
        "id": format!("pool-{:016x}", crate::uploads::rand_id()), "object": "list", "created": crate::openai::unix_now(),
        "model": state.served_names[0], "data": data, "usage": crate::openai::usage_json(tokens),
    })))
}

/// A request's `model`: absent, a served name, or the model's id (as recorded, or as shown to clients).
fn check_model(state: &AppState, requested: Option<&str>) -> ApiResult<()> {
    let id = &state.service.manifest().model_id;
    let shown = state.paths.model(id);
    crate::openai::check_model(requested, &state.served_names, &[id.as_str(), shown.as_str()])
}

/// A multi-vector as JSON: `[[f32; dim]; rows]`, or base64 of its little-endian f32 values, row after row.
fn encode_rows(v: &colqwen::core::MultiVector, base64_out: bool) -> Value {
    if base64_out {
        let bytes: Vec<u8> = v.data.iter().flat_map(|f| f.to_le_bytes()).collect();
        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(v.rows().map(<[f32]>::to_vec).collect::<Vec<_>>())
    }
}

/// Embeds a request's inputs, in order: strings are queries, `data:image/...;base64,` URIs page images (shared
/// by `/v1/embeddings` and `/pooling`).
async fn embed_inputs(state: Arc<AppState>, inputs: Vec<String>) -> ApiResult<Vec<colqwen::core::MultiVector>> {
    if inputs.is_empty() || inputs.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::bad_request(format!("`input` must hold 1 to {MAX_EMBED_INPUTS} items")));
    }
    let mut texts: Vec<(usize, String)> = Vec::new();
    let mut images: Vec<(usize, String)> = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        if input.starts_with("data:") {
            images.push((i, input));
        } else if input.trim().is_empty() || input.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(format!(
                "input {i}: a query must have 1 to {MAX_QUERY_CHARS} characters"
            )));
        } else {
            texts.push((i, input));
        }
    }
    if images.len() > MAX_EMBED_IMAGES {
        return Err(ApiError::too_large(format!(
            "{} images in one request; this server embeds at most {MAX_EMBED_IMAGES} per request",
            images.len()
        )));
    }
    let n = texts.len() + images.len();
    // Every image's header is read first and checked against the pixel budgets, so an image bomb costs
    // nothing; then each image is decoded and shrunk to the model's input one at a time (and one at a time in
    // the whole server): memory per request is one decoded image and the small model inputs.
    let images = Arc::new(images);
    {
        let (state, images) = (state.clone(), images.clone());
        blocking(move || {
            let model_pixels = state.service.embedder().map_or(0, |e| e.max_pixels());
            let mut total = 0u64;
            for (i, uri) in images.iter() {
                let prefix = format!("input {i}: ");
                let (_, pixels) = open_image(uri, model_pixels).map_err(|e| e.prefixed(&prefix))?;
                total += pixels;
                if total > MAX_REQUEST_PIXELS {
                    return Err(ApiError::too_large(format!(
                        "{prefix}the images of this request have more than {:.0} megapixels together, the most one \
                         request may have",
                        MAX_REQUEST_PIXELS as f64 / 1e6
                    ))
                    .with_hint("send them in several requests, or scale them down first"));
                }
            }
            Ok(())
        })
        .await?;
    }
    let mut prepared = Vec::with_capacity(images.len());
    for at in 0..images.len() {
        let permit = state
            .image_decodes
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::from(colqwen::Error::WorkerStopped))?;
        let (state, images) = (state.clone(), images.clone());
        prepared.push(
            blocking(move || {
                let _permit = permit;
                let (i, uri) = &images[at];
                let model_pixels = state.service.embedder().map_or(0, |e| e.max_pixels());
                let (decoder, _) = open_image(uri, model_pixels).map_err(|e| e.prefixed(&format!("input {i}: ")))?;
                let image = image::DynamicImage::from_decoder(decoder)
                    .map_err(|e| ApiError::bad_request(format!("input {i}: unreadable image: {e}")))?
                    .into_rgb8();
                Ok((*i, state.service.prepare_image(&image)?))
            })
            .await?,
        );
    }
    blocking(move || {
        let mut out: Vec<Option<colqwen::core::MultiVector>> = vec![None; n];
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        if !refs.is_empty() {
            for ((i, _), v) in texts.iter().zip(state.service.embed_queries(&refs)?) {
                out[*i] = Some(v);
            }
        }
        if !prepared.is_empty() {
            let (at, inputs): (Vec<usize>, Vec<_>) = prepared.into_iter().unzip();
            for (i, v) in at.into_iter().zip(state.service.embed_prepared(inputs)?) {
                out[i] = Some(v);
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.unwrap_or(colqwen::core::MultiVector { rows: 0, dim: 0, data: Vec::new() }))
            .collect())
    })
    .await
}

/// A `data:image/...;base64,...` input's decoder, its header read and checked: an image over
/// [`MAX_IMAGE_PIXELS`] (or [`MAX_IMAGE_BYTES`] decoded) is refused (413) before any pixel is decoded. Also
/// returns its pixel count. `model_pixels`: what the model keeps of an image, for the hint.
fn open_image(uri: &str, model_pixels: u64) -> ApiResult<(impl image::ImageDecoder, u64)> {
    use image::ImageDecoder as _;
    let bad = |m: String| ApiError::bad_request(m);
    let rest = uri.strip_prefix("data:").unwrap_or(uri);
    let (meta, payload) = rest.split_once(',').ok_or_else(|| bad("a data URI needs a comma".into()))?;
    if !meta.starts_with("image/") || !meta.ends_with(";base64") {
        return Err(bad("only base64 image data URIs (data:image/...;base64,...) are accepted".into()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| bad(format!("bad base64: {e}")))?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("unreadable image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| bad(format!("unreadable image: {e}")))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS || decoder.total_bytes() > MAX_IMAGE_BYTES {
        return Err(ApiError::too_large(format!(
            "the image is {w} × {h} ({:.1} megapixels); this server decodes images of at most {:.0} megapixels",
            pixels as f64 / 1e6,
            MAX_IMAGE_PIXELS as f64 / 1e6
        ))
        .with_hint(format!(
            "scale the image down first: the model sees at most {:.2} megapixels of it (it resizes every image to \
             that)",
            model_pixels as f64 / 1e6
        )));
    }
    Ok((decoder, pixels))
}

fn io_error(what: &str, e: &std::io::Error) -> ApiError {
    if e.raw_os_error() == Some(28) {
        return ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "no_space",
            format!("cannot {what}: no space left on the server"),
        );
    }
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_check() {
        let mut h = HeaderMap::new();
        assert!(!key_matches(&h, "k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert!(key_matches(&h, "k1"));
        assert!(!key_matches(&h, "k2"));
        // The scheme is case-insensitive (RFC 9110 §11.1).
        for v in ["bearer k1", "BEARER k1", "Bearer   k1"] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            assert!(key_matches(&h, "k1"), "{v}");
        }
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k1"));
        assert!(!key_matches(&h, "k1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert!(key_matches(&h, "k1"));
    }
}
