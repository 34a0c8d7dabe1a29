//! `config.json` of a ColQwen3 (Qwen3-VL) checkpoint: `text_config` and `vision_config` as transformers'
//! `Qwen3VLConfig` writes them (the class defaults fill what a file omits, as transformers does).

use serde::Deserialize;

use crate::config::{ConfigJson, Geometry};
use crate::error::Result;

/// Language-model settings (`Qwen3VLTextConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Width of the residual stream (2560 for the 4B model, 4096 for the 8B).
    pub hidden_size: usize,
    /// Decoder layers (36).
    pub num_hidden_layers: usize,
    /// Query heads (32).
    pub num_attention_heads: usize,
    /// Key/value heads (8); query head `n` uses kv head `n / (heads / kv_heads)`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width (128): explicit in Qwen3, *not* `hidden / heads` (2560 / 32 = 80 for the 4B model).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// MLP width (9728 for the 4B model).
    pub intermediate_size: usize,
    /// Vocabulary rows of `embed_tokens`.
    pub vocab_size: usize,
    /// RMSNorm epsilon (1e-6).
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Activation of the MLP ("silu").
    #[serde(default = "default_silu")]
    pub hidden_act: String,
    /// Whether q/k/v/o carry biases (false for every Qwen3-VL checkpoint).
    #[serde(default)]
    pub attention_bias: bool,
    /// Rotary base (the checkpoints set 5e6; transformers' class default is 5e5).
    #[serde(skip)]
    pub rope_theta: f64,
    /// Interleaved M-RoPE split of the head_dim/2 frequency slots ([24, 20, 20]).
    #[serde(skip)]
    pub mrope_section: Vec<usize>,
}

/// Vision-tower settings (`Qwen3VLVisionConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Blocks (27).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Width of the vision residual stream (1152).
    #[serde(default = "default_vision_hidden")]
    pub hidden_size: usize,
    /// MLP width (4304).
    #[serde(default = "default_vision_inter")]
    pub intermediate_size: usize,
    /// Attention heads (16: head_dim 72).
    #[serde(default = "default_vision_heads")]
    pub num_heads: usize,
    /// Activation of the MLP ("gelu_pytorch_tanh").
    #[serde(default = "default_gelu_tanh")]
    pub hidden_act: String,
    /// Output width of the mergers = the text hidden size.
    pub out_hidden_size: usize,
    /// Patch side in pixels (16).
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Patches merged per side (2).
    #[serde(default = "default_two")]
    pub spatial_merge_size: usize,
    /// Frames per temporal patch (2; a still image is duplicated).
    #[serde(default = "default_two")]
    pub temporal_patch_size: usize,
    /// Input channels (3).
    #[serde(default = "default_three", alias = "in_chans")]
    pub in_channels: usize,
    /// Rows of the learned position table, a square grid (2304 = 48²).
    #[serde(default = "default_positions")]
    pub num_position_embeddings: usize,
    /// Blocks whose output feeds a DeepStack merger ([8, 16, 24]); feature `k` is added after decoder layer `k`.
    #[serde(default = "default_deepstack")]
    pub deepstack_visual_indexes: Vec<usize>,
    /// 2D rotary base (10000).
    #[serde(skip)]
    pub rope_theta: f64,
}

/// `config.json` of a ColQwen3 checkpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// `model_type` as written ("qwen3_vl", or "colqwen3" for the Tomoro checkpoints).
    pub model_type: String,
    /// Language model.
    pub text: TextConfig,
    /// Vision tower.
    pub vision: VisionConfig,
    /// Id of `<|image_pad|>` (151655).
    pub image_token_id: u32,
}

fn default_head_dim() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_silu() -> String {
    "silu".into()
}
fn default_gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_depth() -> usize {
    27
}
fn default_vision_hidden() -> usize {
    1152
}
fn default_vision_inter() -> usize {
    4304
}
fn default_vision_heads() -> usize {
    16
}
fn default_patch() -> usize {
    16
}
fn default_two() -> usize {
    2
}
fn default_three() -> usize {
    3
}
fn default_positions() -> usize {
    2304
}
fn default_deepstack() -> Vec<usize> {
    vec![8, 16, 24]
}

impl VisionConfig {
    /// `vision_config` of `config.json` with its own rotary base (under `rope_parameters` or the 4.x
    /// `rope_scaling`, or beside them; 10000 by default). Qwen3.5 writes the same section (without DeepStack).
    pub(crate) fn from_json(json: &ConfigJson) -> Result<Self> {
        let value = json.field("vision_config")?;
        let mut vision: VisionConfig = json.parse(value)?;
        vision.rope_theta = ["rope_parameters", "rope_scaling"]
            .iter()
            .find_map(|k| value.get(*k).and_then(|r| r.get("rope_theta")).and_then(|t| t.as_f64()))
            .or_else(|| value.get("rope_theta").and_then(|t| t.as_f64()))
            .unwrap_or(10_000.0);
        Ok(vision)
    }

    /// Per-head width (72 for the 27-block tower, 64 for the 24-block one).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// What the tower's code needs of these settings, for a language model `text_hidden` wide.
    pub(crate) fn validate(&self, text_hidden: usize) -> std::result::Result<(), String> {
        let v = self;
        if v.num_heads == 0
            || !v.hidden_size.is_multiple_of(v.num_heads)
            || !(v.hidden_size / v.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "vision hidden_size {} / num_heads {} must give a head_dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        if v.out_hidden_size != text_hidden {
            return Err(format!("vision out_hidden_size {} differs from hidden_size {text_hidden}", v.out_hidden_size));
        }
        if v.spatial_merge_size != 2 {
            return Err(format!("spatial_merge_size {} (only 2 is implemented)", v.spatial_merge_size));
        }
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        if side * side != v.num_position_embeddings || side < 2 {
            return Err(format!(
                "num_position_embeddings {} is not the square of a side ≥ 2",
                v.num_position_embeddings
            ));
        }
        if !matches!(v.hidden_act.as_str(), "gelu_pytorch_tanh" | "gelu") {
            return Err(format!(
                "vision hidden_act {:?}: only gelu_pytorch_tanh and gelu are implemented",
                v.hidden_act
            ));
        }
        Ok(())
    }

    /// Patch layout of the tower's input, for a language model `hidden` wide whose `<|image_pad|>` is
    /// `image_token_id`.
    pub(crate) fn geometry(&self, image_token_id: u32, hidden: usize) -> Geometry {
        Geometry {
            patch: self.patch_size,
            merge: self.spatial_merge_size,
            temporal: self.temporal_patch_size,
            channels: self.in_channels,
            image_token_id,
            hidden,
        }
    }
}

impl Config {
    /// Reads the Qwen3-VL fields of `config.json`: `text_config`, `vision_config` (each with its own rotary
    /// parameters under `rope_parameters` or the 4.x `rope_scaling` + `rope_theta`), the image token id.
    pub(crate) fn from_json(json: &ConfigJson) -> Result<Self> {
        let mut text: TextConfig = json.parse(json.text())?;
        let rope = json.rope()?;
        text.rope_theta = rope.rope_theta.unwrap_or(500_000.0);
        text.mrope_section = rope.mrope_section.unwrap_or_else(|| vec![24, 20, 20]);
        if rope.mrope_interleaved == Some(false) {
            return Err(json.invalid("rope mrope_interleaved is false: Qwen3-VL interleaves its M-RoPE streams"));
        }
        let vision = VisionConfig::from_json(json)?;
        let cfg =
            Self { model_type: json.model_type().into(), image_token_id: json.token("image_token_id")?, text, vision };
        cfg.validate().map_err(|reason| json.invalid(reason))?;
        Ok(cfg)
    }

    /// Key/value heads (`num_attention_heads` when the config omits them, as transformers does).
    pub fn kv_heads(&self) -> usize {
        self.text.num_key_value_heads.unwrap_or(self.text.num_attention_heads)
    }

    /// Per-head width of the vision tower (72).
    pub fn vision_head_dim(&self) -> usize {
        self.vision.head_dim()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let (t, v) = (&self.text, &self.vision);
        if v.depth == 0 || t.num_hidden_layers == 0 {
            return Err(format!(
                "depth {} / num_hidden_layers {}: both towers need a layer",
                v.depth, t.num_hidden_layers
            ));
        }
        if t.num_attention_heads == 0 || self.kv_heads() == 0 || !t.num_attention_heads.is_multiple_of(self.kv_heads())
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads,
                self.kv_heads()
            ));
        }
        if t.head_dim == 0 || !t.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} must be even", t.head_dim));
        }
        let half = t.head_dim / 2;
        if t.mrope_section.len() != 3 || t.mrope_section.iter().sum::<usize>() != half {
            return Err(format!(
                "mrope_section {:?} must have 3 parts summing to head_dim/2 = {half}",
                t.mrope_section
            ));
        }
        // Interleaving gives stream s the slots j ≡ s (mod 3) below 3·section[s]; those must fit the head.
        if t.mrope_section[1..].iter().any(|&s| 3 * s > half + 2) {
            return Err(format!("mrope_section {:?} does not interleave within head_dim/2 = {half}", t.mrope_section));
        }
        v.validate(t.hidden_size)?;
        if let Some(i) = v.deepstack_visual_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!("deepstack_visual_indexes names block {i} of {}", v.depth));
        }
        if v.deepstack_visual_indexes.len() > t.num_hidden_layers {
            return Err(format!(
                "{} DeepStack features but {} decoder layers",
                v.deepstack_visual_indexes.len(),
                t.num_hidden_layers
            ));
        }
        if t.hidden_act != "silu" {
            return Err(format!("text hidden_act {:?}: only silu is implemented", t.hidden_act));
        }
        Ok(())
    }

    /// Patch layout of the vision tower's input.
    pub(crate) fn geometry(&self) -> Geometry {
        self.vision.geometry(self.image_token_id, self.text.hidden_size)
    }
}
