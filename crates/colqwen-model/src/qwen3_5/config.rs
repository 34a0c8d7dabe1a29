//! `config.json` of a ColQwen3.5 (Qwen3.5) checkpoint: `text_config` as transformers 5.17's `Qwen3_5TextConfig`
//! reads it (its class defaults fill what a file omits) and `vision_config`, the Qwen3-VL tower's settings
//! without DeepStack.

use serde::Deserialize;

use crate::config::{ConfigJson, Geometry};
use crate::error::Result;
use crate::qwen3_vl::config::VisionConfig;

/// What a decoder layer mixes tokens with (`layer_types[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated DeltaNet (`linear_attn.*`).
    Linear,
    /// Gated full attention (`self_attn.*`).
    Full,
}

/// Language-model settings (`Qwen3_5TextConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Width of the residual stream (2560 for the 4B model).
    pub hidden_size: usize,
    /// Decoder layers (32).
    pub num_hidden_layers: usize,
    /// Query heads of the full-attention layers (16).
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Key/value heads of the full-attention layers (4).
    #[serde(default = "default_kv_heads")]
    pub num_key_value_heads: usize,
    /// Per-head width of the full-attention layers (256).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// MLP width (9216 for the 4B model).
    pub intermediate_size: usize,
    /// Vocabulary rows of `embed_tokens` (248320).
    pub vocab_size: usize,
    /// RMSNorm epsilon (1e-6), also of the DeltaNet's gated norm.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Activation of the MLP and of the DeltaNet's convolution ("silu").
    #[serde(default = "default_silu")]
    pub hidden_act: String,
    /// Whether q/k/v/o carry biases (false).
    #[serde(default)]
    pub attention_bias: bool,
    /// Kind of each layer as written (`"linear_attention"` / `"full_attention"`, or the legacy names); absent:
    /// every `full_attention_interval`-th layer is full attention.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Period of the full-attention layers when `layer_types` is absent (4: layers 3, 7, 11, …).
    #[serde(default = "default_interval")]
    pub full_attention_interval: usize,
    /// Width of the DeltaNet's causal convolution (4).
    #[serde(default = "default_conv")]
    pub linear_conv_kernel_dim: usize,
    /// DeltaNet key (and query) head width (128).
    #[serde(default = "default_linear_dim")]
    pub linear_key_head_dim: usize,
    /// DeltaNet value head width (128).
    #[serde(default = "default_linear_dim")]
    pub linear_value_head_dim: usize,
    /// DeltaNet key (and query) heads (16).
    #[serde(default = "default_linear_key_heads")]
    pub linear_num_key_heads: usize,
    /// DeltaNet value heads (32); value head `h` reads key head `h / (value heads / key heads)`.
    #[serde(default = "default_linear_value_heads")]
    pub linear_num_value_heads: usize,
    /// Rotary base (1e7 in the checkpoints).
    #[serde(skip)]
    pub rope_theta: f64,
    /// Interleaved M-RoPE split of the rotated frequency slots ([11, 11, 10]).
    #[serde(skip)]
    pub mrope_section: Vec<usize>,
    /// Share of each full-attention head that rotates (0.25: 64 of 256 dims).
    #[serde(skip)]
    pub partial_rotary_factor: f64,
}

fn default_heads() -> usize {
    16
}
fn default_kv_heads() -> usize {
    4
}
fn default_head_dim() -> usize {
    256
}
fn default_eps() -> f64 {
    1e-6
}
fn default_silu() -> String {
    "silu".into()
}
fn default_interval() -> usize {
    4
}
fn default_conv() -> usize {
    4
}
fn default_linear_dim() -> usize {
    128
}
fn default_linear_key_heads() -> usize {
    16
}
fn default_linear_value_heads() -> usize {
    32
}

/// `config.json` of a ColQwen3.5 checkpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Language model.
    pub text: TextConfig,
    /// Vision tower (the Qwen3-VL tower's fields; no DeepStack whatever `deepstack_visual_indexes` says, as
    /// `Qwen3_5VisionModel` has none).
    pub vision: VisionConfig,
    /// Kind of each decoder layer.
    pub layers: Vec<LayerKind>,
    /// Id of `<|image_pad|>` (248056).
    pub image_token_id: u32,
}

impl TextConfig {
    /// Channels of the DeltaNet's convolution: queries, keys and values (`2·key_dim + value_dim`).
    pub fn conv_dim(&self) -> usize {
        2 * self.linear_num_key_heads * self.linear_key_head_dim + self.value_dim()
    }

    /// Width of the DeltaNet's values (`value heads · value head dim`).
    pub fn value_dim(&self) -> usize {
        self.linear_num_value_heads * self.linear_value_head_dim
    }

    /// Rotated dims of a full-attention head (`head_dim · partial_rotary_factor`, truncated as `int()` does).
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor) as usize
    }
}

impl Config {
    /// Reads the Qwen3.5 fields of `config.json`: `text_config` (with `rope_parameters`: theta, the interleaved
    /// sections, `partial_rotary_factor`), `vision_config`, the image token id; the layer kinds from
    /// `layer_types` or `full_attention_interval`.
    pub(crate) fn from_json(json: &ConfigJson) -> Result<Self> {
        let mut text: TextConfig = json.parse(json.text())?;
        let rope = json.rope()?;
        text.rope_theta = rope.rope_theta.unwrap_or(10_000.0);
        text.mrope_section = rope.mrope_section.unwrap_or_else(|| vec![11, 11, 10]);
        // `Qwen3_5TextConfig.__post_init__` sets 0.25 where the config gives none.
        text.partial_rotary_factor = rope.partial_rotary_factor.unwrap_or(0.25);
        if rope.mrope_interleaved == Some(false) {
            return Err(json.invalid("rope mrope_interleaved is false: Qwen3.5 interleaves its M-RoPE streams"));
        }
        let layers = match &text.layer_types {
            Some(names) => names
                .iter()
                .map(|name| match name.as_str() {
                    // transformers' `remap_legacy_layer_types`: "mamba"/"conv" are linear, "attention" full.
                    "linear_attention" | "mamba" | "conv" => Ok(LayerKind::Linear),
                    "full_attention" | "attention" => Ok(LayerKind::Full),
                    other => Err(json.invalid(format!("layer_types names {other:?}, not a Qwen3.5 layer kind"))),
                })
                .collect::<Result<Vec<_>>>()?,
            None => (0..text.num_hidden_layers)
                .map(|i| {
                    if (i + 1) % text.full_attention_interval.max(1) == 0 { LayerKind::Full } else { LayerKind::Linear }
                })
                .collect(),
        };
        let vision = VisionConfig::from_json(json)?;
        let cfg = Self { image_token_id: json.token("image_token_id")?, text, vision, layers };
        cfg.validate().map_err(|reason| json.invalid(reason))?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text;
        if self.vision.depth == 0 || t.num_hidden_layers == 0 {
            return Err(format!(
                "depth {} / num_hidden_layers {}: both towers need a layer",
                self.vision.depth, t.num_hidden_layers
            ));
        }
        if self.layers.len() != t.num_hidden_layers {
            return Err(format!("{} layer_types for {} layers", self.layers.len(), t.num_hidden_layers));
        }
        if t.num_attention_heads == 0
            || t.num_key_value_heads == 0
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let (nk, nv) = (t.linear_num_key_heads, t.linear_num_value_heads);
        if nk == 0 || nv == 0 || !nv.is_multiple_of(nk) {
            return Err(format!("linear_num_value_heads {nv} is not a multiple of linear_num_key_heads {nk}"));
        }
        if t.linear_key_head_dim == 0 || t.linear_value_head_dim == 0 || t.linear_conv_kernel_dim == 0 {
            return Err("linear attention head dims and conv kernel must be positive".into());
        }
        let rot = t.rotary_dim();
        if rot == 0 || !rot.is_multiple_of(2) || rot > t.head_dim || !t.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} with partial_rotary_factor {} rotates {rot} dims: must be even and at most head_dim",
                t.head_dim, t.partial_rotary_factor
            ));
        }
        let half = rot / 2;
        if t.mrope_section.len() != 3 || t.mrope_section.iter().sum::<usize>() != half {
            return Err(format!(
                "mrope_section {:?} must have 3 parts summing to the rotated half {half}",
                t.mrope_section
            ));
        }
        // Interleaving gives stream s the slots j ≡ s (mod 3) below 3·section[s]; those must fit the rotated half.
        if t.mrope_section[1..].iter().any(|&s| 3 * s > half + 2) {
            return Err(format!("mrope_section {:?} does not interleave within {half} slots", t.mrope_section));
        }
        if t.hidden_act != "silu" {
            return Err(format!("text hidden_act {:?}: only silu is implemented", t.hidden_act));
        }
        self.vision.validate(t.hidden_size)
    }

    /// Patch layout of the vision tower's input.
    pub(crate) fn geometry(&self) -> Geometry {
        self.vision.geometry(self.image_token_id, self.text.hidden_size)
    }
}
