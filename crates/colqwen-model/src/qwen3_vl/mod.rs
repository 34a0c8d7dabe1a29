//! ColQwen3: the Qwen3-VL towers behind the shared head and preprocessing (colpali-engine's `ColQwen3`, a
//! `Qwen3VLModel` with a 320-wide `custom_text_proj`). What differs from ColQwen2.5, stage by stage: 16-px patches
//! merged 2×2 into 32-px cells, a biased patch embedding, a learned position table resampled bilinearly, no
//! attention windows, LayerNorm and GELU(tanh) in the vision blocks, DeepStack features from three vision blocks
//! added after the first three decoder layers, no projection biases but per-head q/k RMSNorm in the decoder, and
//! interleaved M-RoPE.

pub mod config;
pub mod text;
pub mod vision;

pub use config::Config;

use crate::deferred::Deferred;
use crate::error::Result;
use crate::weights::Weights;
use text::TextModel;
use vision::VisionModel;

/// On-disk key → module key: colpali-engine's `ColQwen3._checkpoint_conversion_mapping`, applied in order
/// (`base_model.model.custom_text_proj` of a PEFT save → `custom_text_proj`; the Hub layout of
/// `Qwen3VLForConditionalGeneration`, `model.visual.*` / `model.language_model.*`, → `visual.*` /
/// `language_model.*`; any other `model.` prefix dropped), and the layout of the TomoroAI checkpoints
/// (`model_type` "colqwen3", remote code: the Qwen3-VL model under `vlm.`, the head named
/// `embedding_proj_layer`), renamed as vLLM's `ColQwen3Model` loader renames it. `lm_head.*` / `vlm.lm_head.*`
/// are never asked for.
pub(crate) fn module_key(disk_key: &str) -> String {
    const RULES: [(&str, &str); 7] = [
        ("base_model.model.custom_text_proj", "custom_text_proj"),
        ("vlm.model.visual", "visual"),
        ("vlm.model.language_model", "language_model"),
        ("embedding_proj_layer", "custom_text_proj"),
        ("model.visual", "visual"),
        ("model.language_model", "language_model"),
        ("model.", ""),
    ];
    crate::weights::rename(disk_key, &RULES)
}

/// The two towers of a loaded ColQwen3.
pub struct Towers {
    /// Vision transformer with its DeepStack mergers (`visual.*`).
    vision: Deferred<VisionModel>,
    /// Language model (`language_model.*`).
    pub text: TextModel,
}

impl Towers {
    /// Loads `visual.*` and `language_model.*` under the checkpoint root `vb`; with `defer_vision`, `visual.*`
    /// on the first page instead.
    pub(crate) fn new(cfg: &Config, vb: &Weights, defer_vision: bool) -> Result<Self> {
        let (v, visual) = (cfg.vision.clone(), vb.pp("visual"));
        let vision = Deferred::new(defer_vision, move || VisionModel::new(&v, true, visual.clone()))?;
        Ok(Self { vision, text: TextModel::new(cfg, vb.pp("language_model"))? })
    }

    /// The vision tower, built now if the model was loaded with it deferred (8-bit text weights,
    /// `TextWeights::Q8`).
    pub fn vision(&self) -> Result<&VisionModel> {
        self.vision.get()
    }
}
