//! `colqwen serve`: the service over HTTP (axum on tokio).
//!
//! One process owns the index (its lock) and the model; every request shares them. Searches run on the
//! device worker ahead of page batches, so they answer while an upload is being ingested. Security by
//! default: loopback only unless an API key (of at least [`MIN_API_KEY_CHARS`] characters) is set; every id
//! validated; request bodies, answers and times bounded; no server paths shown beyond loopback ([`paths`]);
//! CORS off unless origins are named. SIGTERM or Ctrl-C: no new requests or jobs, the running batch finishes
//! and is flushed, and an interrupted job is resumed at the next start. Uploads leave nothing behind that no
//! document or job needs ([`uploads`]). Clients written for OpenAI's embeddings API or for vLLM's pooling API
//! (multi-vector `token_embed`) work unchanged ([`openai`]).

mod api;
mod error;
mod metrics;
mod openai;
mod paths;
mod uploads;
mod web;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use colqwen::{IngestOptions, Jobs, Service};

pub use api::router;
pub use error::ServeError;

/// Shortest API key accepted: a key short enough to guess is no key.
pub const MIN_API_KEY_CHARS: usize = 16;

/// The file in the index folder that names the running server (so CLI commands can go through it).
pub const SERVER_FILE: &str = "server.json";

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind.
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// Required on every route but `/health` when set.
    pub api_key: Option<String>,
    /// Folders whose files may be ingested by path (`POST /v1/documents/paths`); empty: uploads only.
    pub allow_paths: Vec<PathBuf>,
    /// Largest upload request, bytes.
    pub max_upload_bytes: u64,
    /// Longest request (uploads and event streams excepted).
    pub request_timeout: Duration,
    /// Origins allowed to call the API from a browser page of theirs (empty: CORS off).
    pub cors_origins: Vec<String>,
    /// The names clients may give the model by (`model` of `/v1/embeddings` and `/pooling`, `GET /v1/models`),
    /// besides its full id; empty: its short name (the last part of its Hub id or folder).
    pub served_model_names: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            api_key: None,
            allow_paths: Vec::new(),
            max_upload_bytes: 512 << 20,
            request_timeout: Duration::from_secs(60),
            cors_origins: Vec::new(),
            served_model_names: Vec::new(),
        }
    }
}

impl ServeConfig {
    /// Refuses to serve beyond loopback without an API key, and any key shorter than [`MIN_API_KEY_CHARS`].
    pub fn check(&self) -> Result<(), ServeError> {
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty())
            && key.chars().count() < MIN_API_KEY_CHARS
        {
            return Err(ServeError::KeyTooShort { chars: key.chars().count() });
        }
        if !self.is_loopback()? && self.api_key.as_deref().is_none_or(str::is_empty) {
            return Err(ServeError::KeyRequired(self.host.clone()));
        }
        Ok(())
    }

    /// Whether the server listens on loopback only.
    pub fn is_loopback(&self) -> Result<bool, ServeError> {
        let ip: IpAddr = if self.host == "localhost" {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.host.parse().map_err(|_| ServeError::BadHost(self.host.clone()))?
        };
        Ok(ip.is_loopback())
    }
}

/// Binds the configured address (after [`ServeConfig::check`]). Done before the index is opened or created, so
/// a port that is taken costs nothing and leaves nothing behind.
pub fn bind(config: &ServeConfig) -> Result<std::net::TcpListener, ServeError> {
    config.check()?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener =
        std::net::TcpListener::bind(&addr).map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
    listener.set_nonblocking(true).map_err(ServeError::Runtime)?;
    Ok(listener)
}

/// The URL of the server that runs on the index in `index_dir`, as it wrote it in [`SERVER_FILE`] (it may have
/// died since: ask it).
pub fn served_url(index_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(index_dir.join(SERVER_FILE)).ok()?;
    let info: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(info.get("url")?.as_str()?.trim_end_matches('/').to_string())
}

/// Shared by every request.
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// Ingest jobs.
    pub jobs: Jobs,
    /// The configuration.
    pub config: ServeConfig,
    /// The upload folder (`<index>/uploads`, absolute) and the requests writing into it.
    pub(crate) uploads: Arc<uploads::Uploads>,
    /// How server paths are shown to clients.
    pub(crate) paths: paths::PathView,
    /// Image decodes of `/v1/embeddings` at once (each may hold up to its pixel budget in memory).
    pub(crate) image_decodes: Arc<tokio::sync::Semaphore>,
    /// The model's served names ([`ServeConfig::served_model_names`], or its short name), the first one the
    /// name answers carry.
    pub(crate) served_names: Vec<String>,
    /// When the server started (seconds since the epoch): the `created` of its model in `GET /v1/models`.
    pub(crate) started_unix: u64,
    /// Request counters.
    pub metrics: metrics::HttpMetrics,
}

impl AppState {
    /// Removes upload files that no document and no job needs any more ([`uploads::Uploads::sweep`]).
    pub(crate) fn sweep_uploads(&self) {
        self.uploads.sweep(|| {
            // Jobs first: a job that ends between the two reads has stored its pages (its files are sources).
            let mut keep: HashSet<PathBuf> = self.jobs.files_in_use().into_iter().map(absolute).collect();
            match self.service.documents() {
                Ok(docs) => keep.extend(docs.into_iter().map(|d| absolute(PathBuf::from(d.source_path)))),
                Err(e) => {
                    // Without the list, nothing can be told apart: keep everything this time.
                    tracing::warn!("cannot list the documents to sweep the uploads: {e}");
                    keep.extend(uploads::every_file_below(self.uploads.dir()));
                }
            }
            keep
        });
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Serves `service` on `listener` (from [`bind`]) until SIGTERM or Ctrl-C; `on_ready` gets the bound address.
pub fn serve(
    listener: std::net::TcpListener,
    service: Service,
    ingest: IngestOptions,
    config: ServeConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    config.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    let service = Arc::new(service);
    let index_dir = absolute(service.index_dir().to_path_buf());
    let uploads_dir = index_dir.join("uploads");
    let paths = if config.is_loopback()? {
        paths::PathView::absolute()
    } else {
        paths::PathView::relative(&index_dir, &uploads_dir, &config.allow_paths)
    };
    let jobs = Jobs::start(service.clone(), ingest)?;
    let state = Arc::new(AppState {
        uploads: Arc::new(uploads::Uploads::new(uploads_dir)),
        paths,
        image_decodes: Arc::new(tokio::sync::Semaphore::new(1)),
        served_names: openai::served_names(&config.served_model_names, &service.manifest().model_id),
        started_unix: openai::unix_now(),
        service,
        jobs,
        config: config.clone(),
        metrics: Default::default(),
    });
    // What a crash left in the upload folder (a half-written upload, the file of a job that was pruned).
    state.sweep_uploads();
    let server_file = index_dir.join(SERVER_FILE);
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Runtime)?;
        let bound = listener.local_addr().map_err(ServeError::Runtime)?;
        let info = serde_json::json!({ "url": format!("http://{bound}"), "pid": std::process::id() });
        if let Err(e) = std::fs::write(&server_file, info.to_string()) {
            tracing::warn!("cannot write {}: {e}", server_file.display());
        }
        on_ready(bound);
        tokio::spawn(sweep_when_jobs_end(state.clone()));
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(ServeError::Runtime)
    });
    tracing::info!("shutting down: finishing the batch in hand");
    // The job thread blocks on the device worker: stop it outside the async runtime.
    state.jobs.shutdown();
    let _ = std::fs::remove_file(&server_file);
    drop(state);
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Sweeps the upload folder whenever a job has ended or was pruned (its failed files, duplicates and pruned
/// jobs' files go).
async fn sweep_when_jobs_end(state: Arc<AppState>) {
    let mut seen = state.jobs.ended();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = state.jobs.ended();
        if now != seen {
            seen = now;
            let state = state.clone();
            let _ = tokio::task::spawn_blocking(move || state.sweep_uploads()).await;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
