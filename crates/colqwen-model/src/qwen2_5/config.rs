//! `config.json` of a ColQwen2.5 checkpoint, read one to one (fact sheet §1.3): the flat Hub format of
//! Qwen2.5-VL / colqwen2.5-base, or the nested `text_config` form that transformers 5.x writes.

use serde::Deserialize;

use crate::config::{ConfigJson, Geometry};
use crate::error::Result;

/// Language-model settings (fact sheet §1.3, "Text").
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Width of the residual stream (2048 for the 3B model).
    pub hidden_size: usize,
    /// Decoder layers (36).
    pub num_hidden_layers: usize,
    /// Query heads (16).
    pub num_attention_heads: usize,
    /// Key/value heads (2); query head `n` uses kv head `n / (heads / kv_heads)`.
    pub num_key_value_heads: usize,
    /// MLP width (11008).
    pub intermediate_size: usize,
    /// Vocabulary rows of `embed_tokens`.
    pub vocab_size: usize,
    /// RMSNorm epsilon (1e-6).
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (1e6).
    #[serde(default = "default_text_theta")]
    pub rope_theta: f64,
    /// M-RoPE section split over the head_dim/2 frequency slots ([16, 24, 24]).
    #[serde(skip)]
    pub mrope_section: Vec<usize>,
    /// Activation of the MLP ("silu").
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

/// Vision-tower settings (fact sheet §1.3, "Vision").
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Blocks (32).
    pub depth: usize,
    /// Width of the vision residual stream (1280).
    #[serde(alias = "embed_dim")]
    pub hidden_size: usize,
    /// Vision MLP width (3420).
    pub intermediate_size: usize,
    /// Attention heads (16, head_dim 80).
    pub num_heads: usize,
    /// Output width of the merger = text hidden size (2048).
    pub out_hidden_size: usize,
    /// Patch side in pixels (14).
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Patches merged per side (2).
    #[serde(default = "default_merge")]
    pub spatial_merge_size: usize,
    /// Frames per temporal patch (2; a still image is duplicated).
    #[serde(default = "default_merge")]
    pub temporal_patch_size: usize,
    /// Window side in pixels (112 → 4×4 merged tokens).
    #[serde(default = "default_window")]
    pub window_size: usize,
    /// Blocks that attend over the whole image ([7, 15, 23, 31]).
    #[serde(default)]
    pub fullatt_block_indexes: Vec<usize>,
    /// Input channels (3).
    #[serde(default = "default_chans", alias = "in_channels")]
    pub in_chans: usize,
    /// Activation of the gated MLP ("silu").
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

/// `config.json` of a ColQwen2.5 checkpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// `model_type` as written ("qwen2_5_vl").
    pub model_type: String,
    /// Language model.
    pub text: TextConfig,
    /// Vision tower.
    pub vision: VisionConfig,
    /// Id of `<|image_pad|>` (151655 in Qwen).
    pub image_token_id: u32,
    /// Id of `<|vision_start|>` (151652).
    pub vision_start_token_id: u32,
    /// Id of `<|vision_end|>` (151653).
    pub vision_end_token_id: u32,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_text_theta() -> f64 {
    1_000_000.0
}
fn default_act() -> String {
    "silu".into()
}
fn default_patch() -> usize {
    14
}
fn default_merge() -> usize {
    2
}
fn default_window() -> usize {
    112
}
fn default_chans() -> usize {
    3
}

impl Config {
    /// Reads the Qwen2.5-VL fields of `config.json`. Accepts the flat 4.x layout (text fields at top level,
    /// `vision_config` nested) and the 5.x layout (`text_config` + `vision_config`); M-RoPE sections come from
    /// `rope_scaling` or `rope_parameters` (fact sheet §1.3: 5.x converts `mrope` to rope_type `default`, keeping
    /// the sections).
    pub(crate) fn from_json(json: &ConfigJson) -> Result<Self> {
        let mut text: TextConfig = json.parse(json.text())?;
        let rope = json.rope()?;
        if let Some(theta) = rope.rope_theta {
            text.rope_theta = theta;
        }
        text.mrope_section = rope
            .mrope_section
            .ok_or_else(|| json.invalid("rope_scaling.mrope_section is missing (Qwen2.5-VL uses M-RoPE)"))?;
        let vision: VisionConfig = json.parse(json.field("vision_config")?)?;
        let cfg = Config {
            model_type: json.model_type().to_string(),
            image_token_id: json.token("image_token_id")?,
            vision_start_token_id: json.token("vision_start_token_id")?,
            vision_end_token_id: json.token("vision_end_token_id")?,
            text,
            vision,
        };
        cfg.validate().map_err(|reason| json.invalid(reason))?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text;
        let v = &self.vision;
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if t.num_key_value_heads == 0 || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let half = self.text_head_dim() / 2;
        if t.mrope_section.iter().sum::<usize>() != half {
            return Err(format!("mrope_section {:?} must sum to head_dim/2 = {half}", t.mrope_section));
        }
        if t.mrope_section.len() != 3 {
            return Err(format!("mrope_section {:?} must have 3 parts (t, h, w)", t.mrope_section));
        }
        if v.num_heads == 0
            || !v.hidden_size.is_multiple_of(v.num_heads)
            || !(v.hidden_size / v.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "vision hidden_size {} / num_heads {} must give a head_dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        if v.out_hidden_size != t.hidden_size {
            return Err(format!(
                "vision out_hidden_size {} differs from hidden_size {}",
                v.out_hidden_size, t.hidden_size
            ));
        }
        let unit = v.patch_size * v.spatial_merge_size;
        if v.spatial_merge_size != 2 || unit == 0 || !v.window_size.is_multiple_of(unit) {
            return Err(format!(
                "window_size {} must be a multiple of patch_size*spatial_merge_size = {unit} (merge 2)",
                v.window_size
            ));
        }
        if t.hidden_act != "silu" || v.hidden_act != "silu" {
            return Err(format!("hidden_act {:?}/{:?}: only silu is implemented", t.hidden_act, v.hidden_act));
        }
        if let Some(i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!("fullatt_block_indexes names block {i} of {}", v.depth));
        }
        Ok(())
    }

    /// Per-head width of the language model (128).
    pub fn text_head_dim(&self) -> usize {
        self.text.hidden_size / self.text.num_attention_heads
    }

    /// Per-head width of the vision tower (80).
    pub fn vision_head_dim(&self) -> usize {
        self.vision.hidden_size / self.vision.num_heads
    }

    /// Patch layout of the vision tower's input.
    pub(crate) fn geometry(&self) -> Geometry {
        let v = &self.vision;
        Geometry {
            patch: v.patch_size,
            merge: v.spatial_merge_size,
            temporal: v.temporal_patch_size,
            channels: v.in_chans,
            image_token_id: self.image_token_id,
            hidden: self.text.hidden_size,
        }
    }
}
