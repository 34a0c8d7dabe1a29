//! One module per subcommand; `run` turns the parsed flags into settings once and dispatches. Each command is
//! a thin layer over `colqwen::Service`.

mod admin;
mod ingest;
mod remote;
mod search;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use colqwen::core::VectorStorage;
use colqwen::model::{HubOptions, LoadOptions, TextWeights};
use colqwen::weaviate::{InsertPath, Location, WeaviateConfig};
use colqwen::{DTypeChoice, DeviceChoice, EngineOptions, Runtime, SearchDevice, ServiceOptions};

use crate::args::{Cli, Command, DTypeArg, DeviceArg, GlobalArgs, SearchDeviceArg, StorageArg, StorageOpts};

pub use remote::RemoteError;

/// A usage problem found after parsing (exit code 1), with what to do about it.
#[derive(Debug)]
pub struct UsageError {
    message: String,
    hint: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { message: message.into(), hint: hint.into() }
    }

    pub fn hint(&self) -> &str {
        &self.hint
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// Text for one line of human output: control characters (a newline in a file name would look like a
/// second row) are written as escapes (`\n`, `\t`, `\u{1b}`).
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::Ingest(a) => ingest::run(g, a),
        Command::Search(a) => search::run(g, a),
        Command::List => admin::list(g),
        Command::Delete(a) => admin::delete(g, a),
        Command::Stats => admin::stats(g),
        Command::Serve(a) => serve::run(g, a),
    }
}

/// The index folder: `--index`, else `<data dir>/colqwen/index`. For a Weaviate index, the folder of this
/// machine's state for it: `<data dir>/colqwen/remote/<host>_<port>_<Collection>`.
pub fn index_dir(g: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let data = || dirs::data_dir().context("cannot find the user's data directory; pass --index DIR");
    if let Some(remote) = remote_index(g)? {
        return Ok(colqwen::remote_state_dir(&data()?, &remote.location));
    }
    if let Some(dir) = &g.index {
        return Ok(dir.clone());
    }
    Ok(data()?.join("colqwen").join("index"))
}

/// The Weaviate collection named by `--index weaviate://HOST:PORT/Collection`, if that is what it names.
pub fn remote_index(g: &GlobalArgs) -> anyhow::Result<Option<WeaviateConfig>> {
    let Some(s) = g.index.as_ref().and_then(|p| p.to_str()).filter(|s| Location::is_weaviate(s)) else {
        return Ok(None);
    };
    let mut config = WeaviateConfig::new(Location::parse(s).map_err(colqwen::Error::Index)?);
    config.api_key = g.weaviate_key.clone().filter(|k| !k.is_empty());
    config.replication_factor = usize::from(g.weaviate_replicas);
    config.muvera = g.weaviate_muvera;
    config.writers = usize::from(g.weaviate_writers);
    if g.weaviate_json {
        config.insert = InsertPath::Json;
    }
    Ok(Some(config))
}

fn runtimes(g: &GlobalArgs) -> anyhow::Result<Vec<Runtime>> {
    let devices = match &g.device {
        DeviceArg::Auto => vec![DeviceChoice::Auto],
        DeviceArg::Cpu => vec![DeviceChoice::Cpu],
        DeviceArg::CudaAll => vec![DeviceChoice::CudaAll],
        DeviceArg::Cuda(ids) => ids.iter().map(|&i| DeviceChoice::Cuda(i)).collect(),
        DeviceArg::Metal => vec![DeviceChoice::Metal],
    };
    let dtype = match g.dtype {
        DTypeArg::Auto => DTypeChoice::Auto,
        // q8: the f32 model, with 8-bit text weights chosen in the load options (`service_options`).
        DTypeArg::F32 | DTypeArg::Q8 => DTypeChoice::F32,
        DTypeArg::Bf16 => DTypeChoice::Bf16,
        DTypeArg::F16 => DTypeChoice::F16,
    };
    Ok(Runtime::resolve_all(&devices, dtype, usize::from(g.replicas))?)
}

/// Everything a `Service` needs, from the global flags (`--dtype q8` sets the 8-bit text weights of `load`).
pub fn service_options(
    g: &GlobalArgs,
    mut load: LoadOptions,
    storage: &StorageOpts,
    bars: bool,
) -> anyhow::Result<ServiceOptions> {
    if g.dtype == DTypeArg::Q8 {
        load.text_weights = TextWeights::Q8;
        // One cache for every index: the 8-bit weights depend on the checkpoint only. No cache dir: quantized at
        // every start.
        load.cache_dir = dirs::cache_dir().map(|d| d.join("colqwen").join("q8"));
    }
    let hub = HubOptions {
        cache_dir: None,
        offline: g.offline || crate::env::hf_offline(),
        progress: bars,
        token: crate::env::hf_token(),
        revision: g.revision.clone(),
    };
    Ok(ServiceOptions {
        index_dir: index_dir(g)?,
        remote: remote_index(g)?,
        engine: EngineOptions { model: g.model.clone(), base: g.base_model.clone(), hub, load },
        runtimes: runtimes(g)?,
        reserve_query_replica: false,
        storage: match storage.storage {
            StorageArg::F16 => VectorStorage::F16,
            StorageArg::F32 => VectorStorage::F32,
            StorageArg::I8 => VectorStorage::I8,
        },
        pool_factor: storage.pool_factor,
        search_device: match g.search_device {
            SearchDeviceArg::Auto => SearchDevice::Auto,
            SearchDeviceArg::Cpu => SearchDevice::Cpu,
        },
    })
}

/// Prints JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}
