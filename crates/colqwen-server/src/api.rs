//! The routes. Handlers are thin: they validate, call the `Service` (on the blocking pool, since it waits on
//! the device worker) and shape JSON. The OpenAPI document (`/openapi.json`) describes every route here.

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
use colqwen::core::{SearchMode, is_doc_id};
use colqwen::{JobState, SearchOptions};
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

type S = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

/// Largest JSON body (search, embeddings with image data URIs, path lists).
const MAX_JSON_BYTES: usize = 32 << 20;
/// Most inputs of one embeddings request.
const MAX_EMBED_INPUTS: usize = 64;
/// Longest query, characters.
const MAX_QUERY_CHARS: usize = 4096;

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
        .route("/v1/search", post(search))
        .route("/v1/pages/{doc_id}/{page}/preview", get(preview))
        .route("/v1/pages/{doc_id}/{page}/similarity", get(similarity))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/stats", get(stats))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout));
    let mut app = long
        .merge(bounded)
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json") })
        .layer(RequestBodyLimitLayer::new(max_upload.max(MAX_JSON_BYTES)))
        .layer(middleware::map_response(json_errors))
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
/// limit) get the same JSON shape as ours, so every error of the API is `{"error": {...}}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|c| c.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !is_text {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 << 10).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
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

/// `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time.
fn key_matches(headers: &HeaderMap, key: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
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
        if let Some(o) = v.as_object_mut() {
            o.insert("device".into(), json!(state.service.embedder().map(|e| e.device_name())));
            o.insert("queue".into(), json!({ "queries": queries, "pages": pages }));
        }
        Ok(Json(v))
    })
    .await
}

async fn list_documents(State(state): S) -> ApiResult<Json<Value>> {
    blocking(move || {
        let docs = state.service.documents()?;
        let docs: Vec<Value> = docs
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    let name = Path::new(&d.source_path).file_name().map(|n| n.to_string_lossy().into_owned());
                    o.insert("name".into(), json!(name));
                }
                v
            })
            .collect();
        Ok(Json(json!({ "documents": docs })))
    })
    .await
}

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
        if sources.is_empty() {
            return Err(ApiError::not_found(format!("no document {doc_id}")));
        }
        let pages = state.service.delete_document(&doc_id)?;
        // An uploaded file goes with its document (files ingested by path are the user's and stay).
        let uploads = state.uploads.canonicalize().ok();
        for src in sources {
            if let (Some(up), Ok(real)) = (&uploads, src.canonicalize())
                && real.starts_with(up)
            {
                let _ = std::fs::remove_file(&real);
            }
        }
        Ok(Json(json!({ "doc_id": doc_id, "pages_deleted": pages })))
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

/// `POST /v1/documents`, multipart: one or more `file` fields (PDFs), optional `password`. Each file is streamed
/// to `<index>/uploads/<job>/`, checked (opens as a PDF with pages), and the good ones go into one job.
async fn upload(State(state): S, mut multipart: Multipart) -> ApiResult<Response> {
    let batch = format!("{:016x}", rand_id());
    let dir = state.uploads.join(&batch);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| io_error("create the upload folder", &e))?;
    let mut saved: Vec<(String, PathBuf)> = Vec::new();
    let mut password: Option<String> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| ApiError::bad_request(e.body_text()))? {
        match field.name() {
            Some("file") => {
                let name = safe_name(field.file_name().unwrap_or("upload.pdf"), saved.len());
                let path = dir.join(&name);
                let mut out = tokio::fs::File::create(&path).await.map_err(|e| io_error("store the upload", &e))?;
                while let Some(chunk) = field.chunk().await.map_err(|e| ApiError::bad_request(e.body_text()))? {
                    out.write_all(&chunk).await.map_err(|e| io_error("store the upload", &e))?;
                }
                out.flush().await.map_err(|e| io_error("store the upload", &e))?;
                saved.push((name, path));
            }
            Some("password") => password = field.text().await.ok().filter(|p| !p.is_empty()),
            // A field the API does not define is a mistake of the client (a misspelt `file`?): refused, and
            // nothing of this upload is kept.
            other => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                let name = other.unwrap_or("").chars().take(64).collect::<String>();
                return Err(ApiError::bad_request(format!(
                    "unknown multipart field {name:?}: the upload takes `file` (one or more) and `password`"
                )));
            }
        }
    }
    if saved.is_empty() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(ApiError::bad_request("no `file` field in the multipart body"));
    }
    let pw = password.clone();
    let checked = blocking(move || Ok(check_pdfs(saved, pw.as_deref()))).await?;
    let (good, rejected): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, _, e)| e.is_none());
    let rejected: Vec<Value> = rejected
        .into_iter()
        .map(|(name, path, e)| {
            let _ = std::fs::remove_file(&path);
            let (message, hint) = e.unwrap_or_default();
            json!({ "name": name, "error": message, "hint": hint })
        })
        .collect();
    if good.is_empty() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let first = rejected.first().and_then(|r| r.get("error")).and_then(Value::as_str).unwrap_or("").to_string();
        let body = json!({ "error": {
            "code": "bad_pdf",
            "message": format!("no file of the upload is a readable PDF: {first}"),
            "hint": "re-download or re-export the file; a protected PDF needs the `password` field",
            "rejected": rejected,
        }});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
    }
    let files: Vec<(String, PathBuf)> = good.into_iter().map(|(n, p, _)| (n, p)).collect();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let names = json!(names);
    let job = state.jobs.submit_with_password(files, password)?;
    let body = json!({ "job": job, "files": names, "rejected": rejected,
        "status_url": format!("/v1/jobs/{job}"), "events_url": format!("/v1/jobs/{job}/events") });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Opens each saved file as a PDF (with the password): `(name, path, Some((error, hint)))` when it cannot be
/// ingested, so a bad upload is answered at once instead of failing later inside the job.
fn check_pdfs(
    files: Vec<(String, PathBuf)>,
    password: Option<&str>,
) -> Vec<(String, PathBuf, Option<(String, Option<String>)>)> {
    files
        .into_iter()
        .map(|(name, path)| {
            let err = match std::fs::read(&path) {
                Err(e) => Some((format!("{name}: cannot read the upload: {e}"), None)),
                Ok(bytes) => match colqwen::pdf::Document::from_bytes(bytes, password, &name) {
                    Ok(doc) if doc.page_count() == 0 => Some((format!("{name}: the PDF has no pages"), None)),
                    Ok(_) => None,
                    Err(e) => {
                        let e = colqwen::Error::from(e);
                        Some((colqwen::error_chain(&e), e.hint()))
                    }
                },
            };
            (name, path, err)
        })
        .collect()
}

/// A file name that stays inside the upload folder: the last path component, only `[A-Za-z0-9._ -]`, not
/// hidden, ending in `.pdf`, prefixed with its position (two uploads may share a name).
fn safe_name(raw: &str, position: usize) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' ') { c } else { '_' })
        .take(120)
        .collect();
    clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() {
        clean = "upload".into();
    }
    if !clean.to_ascii_lowercase().ends_with(".pdf") {
        clean.push_str(".pdf");
    }
    format!("{position:02}-{clean}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsRequest {
    paths: Vec<String>,
}

/// `POST /v1/documents/paths {"paths": [...]}`: server-side files, only below a `--allow-path` folder.
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
        let real = Path::new(p).canonicalize().map_err(|_| ApiError::not_found(format!("{p:?}: no such file")))?;
        if !allowed.iter().any(|a| real.starts_with(a)) || !real.is_file() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{p}: not a file below an allowed folder"),
            ));
        }
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        files.push((name, real));
    }
    let job = state.jobs.submit(files)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job, "status_url": format!("/v1/jobs/{job}") }))).into_response())
}

async fn list_jobs(State(state): S) -> Json<Value> {
    Json(json!({ "jobs": state.jobs.list() }))
}

async fn job_status(State(state): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    check_id(&id)?;
    Ok(Json(serde_json::to_value(state.jobs.status(&id)?).unwrap_or_default()))
}

async fn cancel_job(State(state): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    check_id(&id)?;
    state.jobs.cancel(&id)?;
    Ok(Json(serde_json::to_value(state.jobs.status(&id)?).unwrap_or_default()))
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
                let data = serde_json::to_string(&status).unwrap_or_default();
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
        return Err(ApiError::bad_request("`query` is empty"));
    }
    if req.query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!("`query` is longer than {MAX_QUERY_CHARS} characters")));
    }
    if req.k == 0 || req.k > colqwen::MAX_K {
        return Err(ApiError::bad_request(format!("`k` must be 1 to {}", colqwen::MAX_K)));
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
                    "source_path": h.source_path,
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
                        Err(e) => v["similarity_error"] = json!(colqwen::error_chain(&e)),
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
/// multi-vector (`[[f32; 128]; n]`) per input.
async fn embeddings(State(state): S, JsonObject(req): JsonObject<EmbeddingsRequest>) -> ApiResult<Json<Value>> {
    let inputs = match req.input {
        EmbedInput::One(s) => vec![s],
        EmbedInput::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::bad_request(format!("`input` must hold 1 to {MAX_EMBED_INPUTS} items")));
    }
    let base64_out = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(ApiError::bad_request("`encoding_format` must be float or base64")),
    };
    let served = state.service.manifest().model_id.clone();
    if let Some(m) = &req.model
        && !m.is_empty()
        && *m != served
    {
        return Err(ApiError::bad_request(format!("this server embeds with {served}, not {m}")));
    }
    let mut texts: Vec<(usize, String)> = Vec::new();
    let mut images: Vec<(usize, image::RgbImage)> = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        if let Some(rest) = input.strip_prefix("data:") {
            images.push((i, decode_data_uri(rest).map_err(|m| ApiError::bad_request(format!("input {i}: {m}")))?));
        } else if input.trim().is_empty() || input.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(format!(
                "input {i}: a query must have 1 to {MAX_QUERY_CHARS} characters"
            )));
        } else {
            texts.push((i, input));
        }
    }
    let n = texts.len() + images.len();
    blocking(move || {
        let mut out: Vec<Option<colqwen::core::MultiVector>> = vec![None; n];
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
        if !refs.is_empty() {
            for ((i, _), v) in texts.iter().zip(state.service.embed_queries(&refs)?) {
                out[*i] = Some(v);
            }
        }
        if !images.is_empty() {
            let imgs: Vec<image::RgbImage> = images.iter().map(|(_, im)| im.clone()).collect();
            for ((i, _), v) in images.iter().zip(state.service.embed_images(&imgs)?) {
                out[*i] = Some(v);
            }
        }
        let data: Vec<Value> = out
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.unwrap_or(colqwen::core::MultiVector { rows: 0, dim: 0, data: Vec::new() });
                let shape = json!([v.rows, v.dim]);
                let embedding = if base64_out {
                    let bytes: Vec<u8> = v.data.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(v.rows().map(<[f32]>::to_vec).collect::<Vec<_>>())
                };
                json!({ "object": "embedding", "index": i, "embedding": embedding, "shape": shape })
            })
            .collect();
        Ok(Json(json!({ "object": "list", "data": data, "model": served })))
    })
    .await
}

/// `image/png;base64,....` (after `data:`) → RGB image, bounded in size.
fn decode_data_uri(rest: &str) -> Result<image::RgbImage, String> {
    let (meta, payload) = rest.split_once(',').ok_or("a data URI needs a comma")?;
    if !meta.starts_with("image/") || !meta.ends_with(";base64") {
        return Err("only base64 image data URIs (data:image/...;base64,...) are accepted".into());
    }
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(payload.trim()).map_err(|e| format!("bad base64: {e}"))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("unreadable image: {e}"))?;
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("unreadable image: {e}"))?;
    Ok(img.to_rgb8())
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

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_stay_inside() {
        assert_eq!(safe_name("../../etc/passwd", 0), "00-passwd.pdf");
        assert_eq!(safe_name("..\\..\\x.pdf", 1), "01-x.pdf");
        assert_eq!(safe_name(".hidden.pdf", 2), "02-hidden.pdf");
        assert_eq!(safe_name("", 3), "03-upload.pdf");
        assert_eq!(safe_name("a b/c$d.PDF", 4), "04-c_d.PDF");
    }

    #[test]
    fn key_check() {
        let mut h = HeaderMap::new();
        assert!(!key_matches(&h, "k1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert!(key_matches(&h, "k1"));
        assert!(!key_matches(&h, "k2"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert!(key_matches(&h, "k1"));
    }
}
