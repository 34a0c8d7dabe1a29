//! ColQwen inference on candle, exact to colpali-engine 0.3.18, for the model families of [`Family`]: ColQwen2.5
//! (Qwen2.5-VL; the parity contract is `shared/reference/colqwen2_5.md`, cited as "fact sheet §N"), ColQwen3
//! (Qwen3-VL) and ColQwen3.5 (Qwen3.5, a hybrid of Gated DeltaNet and attention layers).
//!
//! Data path: [`preprocess`] (page image → `pixel_values`) → the family's vision tower (→ visual tokens) → its
//! language model (prompt + visual tokens → hidden states) → head ([`ColQwen::head`], → `[L, dim]`) →
//! [`maxsim`]. [`ColQwen::embed_images`] and [`ColQwen::embed_queries`] run the whole path on packed batches.
//!
//! Layout: the shared parts (`config` with the family choice, `preprocess`, `tokenize`, `rope`, `nn`, `ops` and
//! the CUDA `kernels`, `weights`, `source`, the shell in `model`) beside one module per family ([`qwen2_5`],
//! [`qwen3_vl`], [`qwen3_5`]) holding what is that family's own: its config fields, towers and checkpoint key
//! names.

pub mod config;
mod deferred;
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
pub mod pace;
pub mod preprocess;
pub mod profile;
mod quant;
pub mod qwen2_5;
pub mod qwen3_5;
pub mod qwen3_vl;
pub mod rope;
mod source;
pub mod tokenize;
mod weights;

pub use candle_core::{DType, Device, DeviceLocation};
pub use colqwen_core::{MultiVector, maxsim};
pub use config::{AdapterConfig, Family, ModelConfig, PreprocessorConfig};
pub use device::{default_batch_size, free_device_memory};
pub use error::{Error, Result};
pub use model::{Backbone, ColQwen, LoadOptions, PackedBatch, TextWeights};
pub use pace::Pace;
pub use preprocess::{ImageGrid, PixelValues, Preprocessor};
pub use source::{DEFAULT_MODEL_ID, HubOptions, ModelFiles};
pub use tokenize::QueryTemplate;
