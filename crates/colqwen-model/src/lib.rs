//! ColQwen2.5 inference on candle, exact to colpali-engine (the parity contract is
//! `shared/reference/colqwen2_5.md`, cited as "fact sheet §N").
//!
//! Data path: [`preprocess`] (page image → `pixel_values`) → [`vision`] (→ visual tokens) → [`text`]
//! (prompt + visual tokens → hidden states) → head ([`ColQwen::head`], → `[L, 128]`) → [`maxsim`].
//! [`ColQwen::embed_images`] and [`ColQwen::embed_queries`] run the whole path on packed batches.

pub mod config;
mod device;
mod error;
#[cfg(feature = "cuda")]
mod kernels;
#[cfg(all(test, feature = "cuda"))]
mod kernels_vs_generic;
pub mod maxsim;
mod model;
mod nn;
mod ops;
pub mod preprocess;
pub mod profile;
mod source;
pub mod text;
pub mod tokenize;
pub mod vision;
mod weights;

pub use candle_core::{DType, Device, DeviceLocation};
pub use colqwen_core::{MultiVector, maxsim};
pub use config::{AdapterConfig, Config, PreprocessorConfig};
pub use device::{default_batch_size, free_device_memory};
pub use error::{Error, Result};
pub use model::{ColQwen, EMBEDDING_DIM, LoadOptions, PackedBatch};
pub use preprocess::{ImageGrid, PixelValues, Preprocessor};
pub use source::{DEFAULT_MODEL_ID, HubOptions, ModelFiles};
pub use tokenize::QueryTemplate;
