//! One module per subcommand; `run` turns the parsed flags into settings once and dispatches.

mod admin;
mod ingest;
mod search;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use colqwen::model::{DEFAULT_MODEL_ID, HubOptions, LoadOptions};
use colqwen::{DTypeChoice, DeviceChoice, Engine, EngineOptions, Runtime};

use crate::args::{Cli, Command, DTypeArg, DeviceArg, GlobalArgs};

/// A usage problem found after parsing (exit code 1).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::Ingest(a) => ingest::run(g, a),
        Command::Search(a) => search::run(g, a),
        Command::List => admin::list(g),
        Command::Delete(a) => admin::delete(g, a),
        Command::Stats => admin::stats(g),
    }
}

/// The index folder: `--index`, else `<data dir>/colqwen/index`.
pub fn index_dir(g: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &g.index {
        return Ok(dir.clone());
    }
    let data = dirs::data_dir().context("cannot find the user's data directory; pass --index DIR")?;
    Ok(data.join("colqwen").join("index"))
}

pub fn runtime(g: &GlobalArgs) -> anyhow::Result<Runtime> {
    let device = match g.device {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Cuda(i) => DeviceChoice::Cuda(i),
        DeviceArg::Metal => DeviceChoice::Metal,
    };
    let dtype = match g.dtype {
        DTypeArg::Auto => DTypeChoice::Auto,
        DTypeArg::F32 => DTypeChoice::F32,
        DTypeArg::Bf16 => DTypeChoice::Bf16,
        DTypeArg::F16 => DTypeChoice::F16,
    };
    Ok(Runtime::resolve(device, dtype)?)
}

/// Loads the model: `--model`, else the model an existing index was built with, else the default.
pub fn load_engine(g: &GlobalArgs, index_model: Option<&str>, load: LoadOptions, bars: bool) -> anyhow::Result<Engine> {
    let model = g.model.clone().or_else(|| index_model.map(str::to_string)).unwrap_or_else(|| DEFAULT_MODEL_ID.into());
    let hub = HubOptions {
        cache_dir: None,
        offline: g.offline || crate::env::hf_offline(),
        progress: bars,
        token: crate::env::hf_token(),
        revision: g.revision.clone(),
    };
    let rt = runtime(g)?;
    let spinner = crate::progress::spinner(bars, "loading model");
    let opts = EngineOptions { model: model.clone(), base: g.base_model.clone(), hub, load };
    let engine = Engine::load(&opts, &rt).with_context(|| format!("loading model {model}"))?;
    spinner.finish_and_clear();
    tracing::info!(model = engine.model_id(), device = rt.device_name(), dtype = ?rt.dtype, "model ready");
    Ok(engine)
}

/// Prints JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}
