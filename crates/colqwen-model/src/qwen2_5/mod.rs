//! ColQwen2.5: the Qwen2.5-VL towers (windowed vision transformer with RMSNorm and SwiGLU, Qwen2 decoder with
//! contiguous M-RoPE sections) behind the shared head and preprocessing. The parity contract is
//! `shared/reference/colqwen2_5.md`, cited as "fact sheet §N".

pub mod config;
pub mod text;
pub mod vision;

pub use config::Config;

use crate::deferred::Deferred;
use crate::error::Result;
use crate::weights::Weights;
use text::TextModel;
use vision::VisionModel;

/// On-disk key → module key (fact sheet §1.1, colpali-engine's `_checkpoint_conversion_mapping` for
/// ColQwen2.5), plus the 5.x `Qwen2_5_VLForConditionalGeneration` layout (`model.language_model.*`,
/// `model.visual.*`) that colnomic-style bases and newer saves use.
pub(crate) fn module_key(disk_key: &str) -> String {
    const RULES: [(&str, &str); 7] = [
        ("base_model.model.custom_text_proj", "custom_text_proj"),
        ("model.language_model.", "language_model."),
        ("model.visual.", "visual."),
        ("model.layers", "language_model.layers"),
        ("model.embed_tokens", "language_model.embed_tokens"),
        ("model.norm", "language_model.norm"),
        ("model.custom_text_proj", "custom_text_proj"),
    ];
    crate::weights::rename(disk_key, &RULES)
}

/// The two towers of a loaded ColQwen2.5.
pub struct Towers {
    /// Vision transformer (`visual.*`).
    vision: Deferred<VisionModel>,
    /// Language model (`language_model.*`).
    pub text: TextModel,
}

impl Towers {
    /// Loads `visual.*` and `language_model.*` under the checkpoint root `vb`; with `defer_vision`, `visual.*`
    /// on the first page instead.
    pub(crate) fn new(cfg: &Config, vb: &Weights, defer_vision: bool) -> Result<Self> {
        let (c, visual) = (cfg.clone(), vb.pp("visual"));
        let vision = Deferred::new(defer_vision, move || VisionModel::new(&c, visual.clone()))?;
        Ok(Self { vision, text: TextModel::new(cfg, vb.pp("language_model"))? })
    }

    /// The vision tower, built now if the model was loaded with it deferred (8-bit text weights,
    /// `TextWeights::Q8`).
    pub fn vision(&self) -> Result<&VisionModel> {
        self.vision.get()
    }
}
