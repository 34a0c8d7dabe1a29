//! `colqwen serve`: load the model once, open the index, serve it over HTTP until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use colqwen::model::LoadOptions;
use colqwen::{IngestOptions, Service};
use colqwen_server::ServeConfig;

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
    };
    config.check()?; // before the model load: a refused address costs nothing
    let started = std::time::Instant::now();
    let service = Service::open(&opts)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "service ready");
    let ingest = IngestOptions { batch_size: a.batch_size, ..Default::default() };
    colqwen_server::serve(service, ingest, config, |addr| {
        eprintln!("colqwen serving {} on http://{addr} (Ctrl-C to stop)", opts.index_dir.display());
    })?;
    Ok(ExitCode::SUCCESS)
}
