//! What the user typed, validated by clap; no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turn PDF manuals into a searchable visual index (ColQwen2.5 page embeddings) and search it.
#[derive(Debug, Parser)]
#[command(name = "colqwen", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Index folder [default: the user's data dir, e.g. ~/.local/share/colqwen/index], or a Weaviate
    /// collection: weaviate://HOST:PORT/Collection
    #[arg(long, global = true, env = "COLQWEN_INDEX")]
    pub index: Option<PathBuf>,
    /// API key of the Weaviate server of --index weaviate://…
    #[arg(long, global = true, env = "COLQWEN_WEAVIATE_API_KEY", hide_env_values = true)]
    pub weaviate_key: Option<String>,
    /// A new Weaviate collection: copies of each shard (2 or more on a cluster)
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub weaviate_replicas: u16,
    /// A new Weaviate collection: index MUVERA encodings instead of the multi-vectors (faster inserts, lower recall)
    #[arg(long, global = true)]
    pub weaviate_muvera: bool,
    /// Weaviate writes: batch requests in flight at once (each a share of the pages of one store batch)
    #[arg(long, global = true, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub weaviate_writers: u16,
    /// Weaviate writes: REST JSON batches instead of the binary path (gRPC BatchObjects on the REST port)
    #[arg(long, global = true)]
    pub weaviate_json: bool,
    /// Model: Hugging Face id or local folder [default: vidore/colqwen2.5-v0.2, or the index's model]
    #[arg(long, global = true, env = "COLQWEN_MODEL")]
    pub model: Option<String>,
    /// Base checkpoint for an adapter, overriding its base_model_name_or_path
    #[arg(long, global = true)]
    pub base_model: Option<String>,
    /// Model revision (branch, tag or commit) on the Hub
    #[arg(long, global = true)]
    pub revision: Option<String>,
    /// Never download: use only the Hugging Face cache
    #[arg(long, global = true, env = "COLQWEN_OFFLINE")]
    pub offline: bool,
    /// Where to run the model: auto (every CUDA GPU, else Metal, else the CPU), cpu, cuda (every visible GPU),
    /// cuda:N or cuda:0,2 (those GPUs), metal. One model replica per device
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceArg,
    /// Model replicas per device (each with its own worker thread and CUDA stream); more than 1 on one GPU lets
    /// a server answer queries while a page batch runs
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replicas: u16,
    /// Compute precision: auto (bf16 on GPUs, f32 on the CPU), f32, bf16, f16, or q8 (the CPU's f32 model with
    /// 8-bit weights in the language model's projections: about 4× faster queries and start-up, at a measured
    /// cost in accuracy; the 8-bit weights are cached in the user's cache dir, e.g. ~/.cache/colqwen/q8)
    #[arg(long, global = true, value_enum, default_value_t = DTypeArg::Auto)]
    pub dtype: DTypeArg,
    /// Where exact search scores pages: auto (the model's CUDA GPU, if the index fits in half of its free
    /// memory; else the CPU) or cpu
    #[arg(long, global = true, value_enum, default_value_t = SearchDeviceArg::Auto)]
    pub search_device: SearchDeviceArg,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Less output (no progress bars)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More logging (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchDeviceArg {
    Auto,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Cpu,
    /// Every visible CUDA GPU.
    CudaAll,
    /// These CUDA GPUs, in this order.
    Cuda(Vec<usize>),
    Metal,
}

fn parse_device(s: &str) -> Result<DeviceArg, String> {
    use colqwen::DeviceChoice as D;
    let list = D::parse_list(s)?;
    Ok(match list[..] {
        [D::Auto] => DeviceArg::Auto,
        [D::Cpu] => DeviceArg::Cpu,
        [D::Metal] => DeviceArg::Metal,
        [D::CudaAll] => DeviceArg::CudaAll,
        _ => DeviceArg::Cuda(list.iter().filter_map(|d| if let D::Cuda(i) = d { Some(*i) } else { None }).collect()),
    })
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn device_lists_parse() {
        assert_eq!(parse_device("cuda"), Ok(DeviceArg::CudaAll));
        assert_eq!(parse_device("cuda:1"), Ok(DeviceArg::Cuda(vec![1])));
        assert_eq!(parse_device("cuda:0,2"), Ok(DeviceArg::Cuda(vec![0, 2])));
        for bad in ["cuda:", "cuda:x", "cuda:0,,1", "gpu", "cuda:-1"] {
            assert!(parse_device(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    Auto,
    F32,
    Bf16,
    F16,
    Q8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add PDFs (files, folders, globs) to the index; pages already there are skipped
    Ingest(IngestArgs),
    /// Rank the index's pages for a question
    Search(SearchArgs),
    /// List the documents in the index
    List,
    /// Remove a document (id, id prefix, path or file name) from the index
    Delete(DeleteArgs),
    /// Pages, documents, size and model of the index
    Stats,
    /// Serve the index over HTTP (JSON API under /v1, web page at /): search while ingesting
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind; anything but loopback requires an API key
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port, printed at start)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// API key required on every route but /health (as `Authorization: Bearer KEY` or `X-API-Key`; at least 16
    /// characters)
    #[arg(long, env = "COLQWEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Allow ingesting server-side files below this folder (repeatable); uploads are always allowed
    #[arg(long = "allow-path")]
    pub allow_paths: Vec<PathBuf>,
    /// Largest upload, in MiB per request
    #[arg(long, default_value_t = 512)]
    pub max_upload_mib: u64,
    /// Seconds a request may take (uploads and event streams excepted)
    #[arg(long, default_value_t = 60)]
    pub request_timeout: u64,
    /// Allow cross-origin requests from this origin (repeatable; off by default)
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// A name clients may give the model by in `model` (OpenAI's and vLLM's routes, GET /v1/models; repeatable;
    /// its full id is always accepted) [default: the model's short name, e.g. colqwen2.5-v0.2]
    #[arg(long = "served-model-name")]
    pub served_model_names: Vec<String>,
    /// Pages per forward pass [default: 4 on the CPU; on a GPU from its free memory, at most 16]
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// A count that must be at least 1 (`--batch-size 0` would never embed a page).
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// PDF files, folders (searched recursively for *.pdf) or glob patterns
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Re-embed pages that are already in the index
    #[arg(long)]
    pub force: bool,
    /// Password for encrypted PDFs. Visible to other users in `ps`: prefer --password-file, the
    /// COLQWEN_PDF_PASSWORD variable, or the prompt (asked when stdin is a terminal and a PDF needs one)
    #[arg(long, env = "COLQWEN_PDF_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password for encrypted PDFs from this file (first line)
    #[arg(long, conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    /// Pages per forward pass [default: 4 on the CPU; on a GPU from its free memory, at most 16]
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Cap on visual tokens per page (colpali's max_num_visual_tokens) [default: the model's max_pixels]
    #[arg(long, value_parser = positive)]
    pub max_visual_tokens: Option<usize>,
    /// Render threads [default: all cores]
    #[arg(long, value_parser = positive)]
    pub jobs: Option<usize>,
    /// Seconds one page may take to render before it is reported as failed
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub page_timeout: u64,
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// How a new index stores its pages (an existing index keeps its own).
#[derive(Debug, Clone, Args)]
pub struct StorageOpts {
    /// Element type of the stored vectors of a new index: f16 halves f32's disk with the same top-10 (scores
    /// within 2e-3); i8 (a scale per row) halves it again. An existing index keeps its own
    #[arg(long, value_enum, default_value_t = StorageArg::F16)]
    pub storage: StorageArg,
    /// Token pooling of a new index: each page stored as 1/N as many vectors, cluster means of its own
    /// (colpali-engine's hierarchical pooler). `--storage i8 --pool-factor 2` stores ≈ 50 KB a page instead
    /// of ≈ 196 KB. Embedded index only; an existing index keeps its own
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub pool_factor: u32,
}

impl Default for StorageOpts {
    /// What the flags default to (a command that only opens an existing index passes this).
    fn default() -> Self {
        StorageOpts { storage: StorageArg::F16, pool_factor: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageArg {
    F32,
    F16,
    I8,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The question
    pub query: String,
    /// Number of pages to return
    #[arg(short, default_value_t = 10, value_parser = positive)]
    pub k: usize,
    /// Only search this document (id, id prefix, path or file name)
    #[arg(long)]
    pub doc: Option<String>,
    /// Ranking: exact MaxSim over all pages, two-stage (coarse codes pick candidates, exact MaxSim ranks them),
    /// or auto (exact up to 2,000 pages, two-stage above)
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Pages the two-stage search reranks exactly (1 to 100000; implies --mode two-stage). Default: the index
    /// decides by its size and storage, as auto does (200 to 1,000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub prefetch: Option<u32>,
    /// Write each hit's similarity map (the query's aggregate map over the page preview) as a PNG into DIR
    #[arg(long, value_name = "DIR")]
    pub maps: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Auto,
    Exact,
    TwoStage,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Document id, id prefix (at least 4 hex digits), path or file name (see `colqwen list`)
    pub doc: String,
    /// Do not ask for confirmation
    #[arg(long, short)]
    pub yes: bool,
}
