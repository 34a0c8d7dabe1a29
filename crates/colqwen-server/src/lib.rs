//! `colqwen serve`: the service over HTTP (axum on tokio).
//!
//! One process owns the index (its lock) and the model; every request shares them. Searches run on the
//! device worker ahead of page batches, so they answer while an upload is being ingested. Security by
//! default: loopback only unless an API key is set; every id validated; request bodies and times bounded;
//! CORS off unless origins are named. SIGTERM or Ctrl-C: no new requests or jobs, the running batch finishes
//! and is flushed, and an interrupted job is resumed at the next start.

mod api;
mod error;
mod metrics;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use colqwen::{IngestOptions, Jobs, Service};

pub use api::router;
pub use error::ServeError;

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
        }
    }
}

impl ServeConfig {
    /// Refuses to serve beyond loopback without an API key.
    pub fn check(&self) -> Result<(), ServeError> {
        let ip: IpAddr = if self.host == "localhost" {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.host.parse().map_err(|_| ServeError::BadHost(self.host.clone()))?
        };
        if !ip.is_loopback() && self.api_key.as_deref().is_none_or(str::is_empty) {
            return Err(ServeError::KeyRequired(self.host.clone()));
        }
        Ok(())
    }
}

/// Shared by every request.
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// Ingest jobs.
    pub jobs: Jobs,
    /// The configuration.
    pub config: ServeConfig,
    /// Where uploads are written (`<index>/uploads`).
    pub uploads: PathBuf,
    /// Request counters.
    pub metrics: metrics::HttpMetrics,
}

/// Serves `service` until SIGTERM or Ctrl-C; `on_ready` gets the bound address.
pub fn serve(
    service: Service,
    ingest: IngestOptions,
    config: ServeConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    config.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    let service = Arc::new(service);
    let index_dir = service.index_dir().to_path_buf();
    let jobs = Jobs::start(service.clone(), ingest)?;
    let state = Arc::new(AppState {
        uploads: index_dir.join("uploads"),
        service,
        jobs,
        config: config.clone(),
        metrics: Default::default(),
    });
    let server_file = index_dir.join(SERVER_FILE);
    let result = runtime.block_on(async {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        let bound = listener.local_addr().map_err(ServeError::Runtime)?;
        let info = serde_json::json!({ "url": format!("http://{bound}"), "pid": std::process::id() });
        if let Err(e) = std::fs::write(&server_file, info.to_string()) {
            tracing::warn!("cannot write {}: {e}", server_file.display());
        }
        on_ready(bound);
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
