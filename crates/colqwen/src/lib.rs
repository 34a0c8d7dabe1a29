//! colqwen: PDF manuals → a searchable visual index of ColQwen2.5 page embeddings.
//!
//! The crate that joins the stages: [`Service`] owns the embedder (behind one worker per device, see
//! [`EmbedWorker`]), the index ([`colqwen_core::PageIndex`]) and the page previews; `ingest` runs
//! render → preprocess → embed → store as overlapping bounded stages; [`Jobs`] runs ingests for a long-lived
//! server and resumes interrupted ones. The CLI and the server are thin layers over it. It never prints nor
//! reads environment variables.

mod discover;
mod engine;
mod error;
mod ingest;
mod jobs;
mod overlay;
mod previews;
mod progress;
mod runtime;
mod search;
mod service;
mod worker;

pub use colqwen_core as core;
pub use colqwen_model as model;
pub use colqwen_pdf as pdf;
pub use colqwen_store as store;
pub use colqwen_weaviate as weaviate;
pub use discover::{Discovery, discover, source_file, stored_path};
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result};
pub use ingest::IngestOptions;
pub use jobs::{FileStatus, JobConflict, JobState, JobStatus, Jobs, MAX_FINISHED_AGE, MAX_FINISHED_JOBS};
pub use overlay::{overlay_png, viridis};
pub use previews::Previews;
pub use progress::{Failure, FailureJson, NoProgress, Progress, Summary, error_chain};
pub use runtime::{DTypeChoice, DeviceChoice, Runtime};
pub use search::{DeviceScorer, MAX_K, SearchDevice, SearchHit, SearchOptions};
pub use service::PageMaps;
pub use service::{LATENCY_BUCKETS, Metrics, Service, ServiceOptions, remote_state_dir};
pub use worker::{EmbedWorker, PoolOptions};
