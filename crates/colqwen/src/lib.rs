//! colqwen: PDF manuals → a searchable visual index of ColQwen2.5 page embeddings.
//!
//! The only crate where pages become tensors and tensors become index rows: [`ingest`] runs
//! render → preprocess → embed → store; [`search`] embeds a query and ranks pages by MaxSim.
//! The CLI (and later the server) drive it; it never prints nor reads environment variables.

mod engine;
mod error;
mod ingest;
mod progress;
mod runtime;
mod search;

pub use colqwen_model as model;
pub use colqwen_pdf as pdf;
pub use colqwen_store as store;
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result};
pub use ingest::{Failure, IngestOptions, Summary, doc_id, ingest};
pub use progress::{NoProgress, Progress};
pub use runtime::{DTypeChoice, DeviceChoice, Runtime};
pub use search::{SearchHit, SearchOptions, resolve_document, search};
