//! `colqwen serve`: load the model once, open the index, serve it over HTTP until SIGTERM or Ctrl-C.
//!
//! The order matters: a second server on the same index is refused first (naming the running one), then the
//! port is bound, and only then is the index opened (or created) and the model loaded — so a refused start
//! costs nothing and leaves no folder behind.

use std::process::ExitCode;

use colqwen::model::LoadOptions;
use colqwen::{IngestOptions, Service};
use colqwen_server::{ServeConfig, ServeError};

use super::remote::Server;
use super::service_options;
use crate::args::{GlobalArgs, ServeArgs};

pub fn run(g: &GlobalArgs, a: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut opts = service_options(g, LoadOptions::default(), &a.storage, false)?;
    // A server answers searches while it ingests: with two or more replicas one stays free for queries.
    opts.reserve_query_replica = true;
    let config = ServeConfig {
        host: a.host.clone(),
        port: a.port,
        api_key: a.api_key.clone(),
        allow_paths: a.allow_paths.clone(),
        max_upload_bytes: a.max_upload_mib.saturating_mul(1 << 20),
        request_timeout: std::time::Duration::from_secs(a.request_timeout),
        cors_origins: a.cors_origins.clone(),
        served_model_names: a.served_model_names.clone(),
    };
    config.check()?; // before anything else: a refused address or key costs nothing
    if let Some(server) = Server::find(&opts.index_dir) {
        return Err(ServeError::AlreadyServed {
            index: opts.index_dir.display().to_string(),
            url: server.url().to_string(),
        }
        .into());
    }
    let listener = colqwen_server::bind(&config)?;
    let started = std::time::Instant::now();
    let service = Service::open(&opts).map_err(|e| {
        // Another process holds the index: name its server when it has one.
        match (super::remote::in_use(&e), colqwen_server::served_url(&opts.index_dir)) {
            (true, Some(url)) => {
                anyhow::Error::new(ServeError::AlreadyServed { index: opts.index_dir.display().to_string(), url })
            }
            _ => e.into(),
        }
    })?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "service ready");
    let ingest = IngestOptions { batch_size: a.batch_size, ..Default::default() };
    colqwen_server::serve(listener, service, ingest, config, |addr| {
        eprintln!("colqwen serving {} on http://{addr} (Ctrl-C to stop)", opts.index_dir.display());
    })?;
    Ok(ExitCode::SUCCESS)
}
