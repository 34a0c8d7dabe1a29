//! ColQwen3.5: the Qwen3.5 towers behind the shared head and preprocessing (colpali-engine's `ColQwen3_5`, a
//! `Qwen3_5Model` with a `custom_text_proj` of `config.dim` rows). The vision tower is Qwen3-VL's without
//! DeepStack (`qwen3_vl::vision`, built from the same `vision_config` fields). The language model is hybrid:
//! most layers are Gated DeltaNet (linear attention with a decaying delta-rule state, a short causal
//! convolution and a gated RMSNorm; [`deltanet`] holds its core), every fourth one gated full attention (the
//! query projection also yields a sigmoid gate on the output, per-head q/k norms, a rotary over a quarter of
//! each head); every RMSNorm but the gated one is zero-centred (`1 + w`, multiplied in f32).

pub mod config;
pub mod deltanet;
pub mod text;

pub use config::Config;

use crate::deferred::Deferred;
use crate::error::Result;
use crate::qwen3_vl::vision::VisionModel;
use crate::weights::Weights;
use text::TextModel;

/// On-disk key → module key: colpali-engine's `ColQwen3_5._checkpoint_conversion_mapping`
/// (`base_model.model.custom_text_proj` of a PEFT save → `custom_text_proj`) and the prefixes transformers
/// strips when a `Qwen3_5ForConditionalGeneration` checkpoint (the Hub layout of `Qwen/Qwen3.5-*`,
/// `model.visual.*` / `model.language_model.*`) loads into `Qwen3_5Model`. `mtp.*` (the multi-token-prediction
/// block of the Hub checkpoints, `_keys_to_ignore_on_load_unexpected`) and `lm_head.*` are never asked for.
pub(crate) fn module_key(disk_key: &str) -> String {
    const RULES: [(&str, &str); 4] = [
        ("base_model.model.custom_text_proj", "custom_text_proj"),
        ("model.visual", "visual"),
        ("model.language_model", "language_model"),
        ("model.", ""),
    ];
    crate::weights::rename(disk_key, &RULES)
}

/// The two towers of a loaded ColQwen3.5.
pub struct Towers {
    /// Vision transformer (`visual.*`; no DeepStack mergers).
    vision: Deferred<VisionModel>,
    /// Language model (`language_model.*`).
    pub text: TextModel,
}

impl Towers {
    /// Loads `visual.*` and `language_model.*` under the checkpoint root `vb`; with `defer_vision`, `visual.*`
    /// on the first page instead.
    pub(crate) fn new(cfg: &Config, vb: &Weights, defer_vision: bool) -> Result<Self> {
        let (v, visual) = (cfg.vision.clone(), vb.pp("visual"));
        let vision = Deferred::new(defer_vision, move || VisionModel::new(&v, false, visual.clone()))?;
        Ok(Self { vision, text: TextModel::new(cfg, vb.pp("language_model"))? })
    }

    /// The vision tower, built now if the model was loaded with it deferred (8-bit text weights,
    /// `TextWeights::Q8`).
    pub fn vision(&self) -> Result<&VisionModel> {
        self.vision.get()
    }
}
