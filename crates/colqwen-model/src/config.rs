//! The checkpoint's own JSON files, read one to one: `config.json` (fact sheet §1.3, the flat Hub format of
//! Qwen2.5-VL / colqwen2.5-base, or the nested `text_config` form that transformers 5.x writes),
//! `preprocessor_config.json` (§2.3) and the PEFT `adapter_config.json` (§1.4).

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

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

#[derive(Deserialize)]
struct RopeScaling {
    #[serde(default)]
    mrope_section: Option<Vec<usize>>,
    #[serde(default)]
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    text_config: Option<serde_json::Value>,
    vision_config: Option<VisionConfig>,
    image_token_id: Option<u32>,
    vision_start_token_id: Option<u32>,
    vision_end_token_id: Option<u32>,
}

impl Config {
    /// Reads `config.json`. Accepts the flat 4.x layout (text fields at top level, `vision_config` nested) and
    /// the 5.x layout (`text_config` + `vision_config`); M-RoPE sections come from `rope_scaling` or
    /// `rope_parameters` (fact sheet §1.3: 5.x converts `mrope` to rope_type `default`, keeping the sections).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let json = |source| Error::Json { path: path.into(), what: "model config", source };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json)?;
        let raw: RawConfig = serde_json::from_value(value.clone()).map_err(json)?;
        let model_type = raw.model_type.unwrap_or_default();
        if model_type != "qwen2_5_vl" {
            return Err(Error::UnsupportedModelType { path: path.into(), model_type });
        }
        let text_value = raw.text_config.unwrap_or_else(|| value.clone());
        let mut text: TextConfig = serde_json::from_value(text_value.clone()).map_err(json)?;
        let rope = text_value
            .get("rope_scaling")
            .filter(|v| !v.is_null())
            .or_else(|| text_value.get("rope_parameters").filter(|v| !v.is_null()))
            .or_else(|| value.get("rope_scaling").filter(|v| !v.is_null()));
        let rope: Option<RopeScaling> = rope.map(|v| serde_json::from_value(v.clone())).transpose().map_err(json)?;
        if let Some(theta) = rope.as_ref().and_then(|r| r.rope_theta) {
            text.rope_theta = theta;
        }
        let invalid = |reason: String| Error::InvalidConfig { path: path.into(), reason };
        text.mrope_section = rope
            .and_then(|r| r.mrope_section)
            .ok_or_else(|| invalid("rope_scaling.mrope_section is missing (Qwen2.5-VL uses M-RoPE)".into()))?;
        let vision = raw.vision_config.ok_or_else(|| invalid("vision_config is missing".into()))?;
        let token = |v: Option<u32>, name: &str| {
            v.or_else(|| text_value.get(name).and_then(|x| x.as_u64()).map(|x| x as u32))
                .ok_or_else(|| invalid(format!("{name} is missing")))
        };
        let cfg = Config {
            model_type,
            image_token_id: token(raw.image_token_id, "image_token_id")?,
            vision_start_token_id: token(raw.vision_start_token_id, "vision_start_token_id")?,
            vision_end_token_id: token(raw.vision_end_token_id, "vision_end_token_id")?,
            text,
            vision,
        };
        cfg.validate().map_err(invalid)?;
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

    /// Pixels per merged-token side: `patch_size · spatial_merge_size` (28).
    pub fn factor(&self) -> usize {
        self.vision.patch_size * self.vision.spatial_merge_size
    }
}

/// `preprocessor_config.json` (fact sheet §2.3, §2.5).
#[derive(Debug, Clone)]
pub struct PreprocessorConfig {
    /// `size.shortest_edge` / `min_pixels` (3136).
    pub min_pixels: usize,
    /// `size.longest_edge` / `max_pixels` (602112 = 768 tokens for vidore's caps).
    pub max_pixels: usize,
    /// Per-channel mean (CLIP).
    pub image_mean: [f32; 3],
    /// Per-channel std (CLIP).
    pub image_std: [f32; 3],
    /// `rescale_factor` (1/255).
    pub rescale_factor: f64,
}

#[derive(Deserialize)]
struct RawPreprocessor {
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
    size: Option<RawSize>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    rescale_factor: Option<f64>,
    patch_size: Option<usize>,
    merge_size: Option<usize>,
    temporal_patch_size: Option<usize>,
}

#[derive(Deserialize)]
struct RawSize {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

/// OPENAI_CLIP_MEAN (fact sheet §2.5), written as the reference writes it.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OPENAI_CLIP_STD (fact sheet §2.5), written as the reference writes it.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

impl PreprocessorConfig {
    /// Reads `preprocessor_config.json`; `min_pixels`/`max_pixels` override `size` as in the reference's
    /// `__init__` (§2.3), class defaults fill what the file omits.
    pub fn from_file(path: &Path, cfg: &Config) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let raw: RawPreprocessor = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.into(),
            what: "preprocessor config",
            source,
        })?;
        let invalid = |reason: String| Error::InvalidConfig { path: path.into(), reason };
        let check = |name: &str, found: Option<usize>, want: usize| match found {
            Some(f) if f != want => Err(invalid(format!("{name} {f} differs from the model's {want}"))),
            _ => Ok(()),
        };
        check("patch_size", raw.patch_size, cfg.vision.patch_size)?;
        check("merge_size", raw.merge_size, cfg.vision.spatial_merge_size)?;
        check("temporal_patch_size", raw.temporal_patch_size, cfg.vision.temporal_patch_size)?;
        let size = raw.size.as_ref();
        let min_pixels = raw.min_pixels.or(size.and_then(|s| s.shortest_edge)).unwrap_or(56 * 56);
        let max_pixels = raw.max_pixels.or(size.and_then(|s| s.longest_edge)).unwrap_or(28 * 28 * 1280);
        if max_pixels < min_pixels || max_pixels < cfg.factor() * cfg.factor() {
            return Err(invalid(format!(
                "max_pixels {max_pixels} is below min_pixels {min_pixels} or one merged token"
            )));
        }
        Ok(Self {
            min_pixels,
            max_pixels,
            image_mean: raw.image_mean.unwrap_or(CLIP_MEAN),
            image_std: raw.image_std.unwrap_or(CLIP_STD),
            rescale_factor: raw.rescale_factor.unwrap_or(1.0 / 255.0),
        })
    }
}

/// The fields of a PEFT `adapter_config.json` that change the numbers (fact sheet §1.4).
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    /// `peft_type`, must be "LORA".
    #[serde(default)]
    pub peft_type: Option<String>,
    /// Default rank.
    pub r: usize,
    /// Default alpha.
    pub lora_alpha: f64,
    /// Scale by alpha/sqrt(r) instead of alpha/r.
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA is not implemented; refused at load.
    #[serde(default)]
    pub use_dora: bool,
    /// Per-module rank overrides (pattern → r).
    #[serde(default)]
    pub rank_pattern: std::collections::BTreeMap<String, usize>,
    /// Per-module alpha overrides (pattern → alpha).
    #[serde(default)]
    pub alpha_pattern: std::collections::BTreeMap<String, f64>,
    /// Weights stored transposed (Conv1D-style); must be false for Linear layers.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// The base checkpoint: a Hub id or a path (relative paths resolve against the adapter folder's parent).
    pub base_model_name_or_path: Option<String>,
}

impl AdapterConfig {
    /// Reads `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.into(),
            what: "PEFT adapter config",
            source,
        })?;
        let bad = |reason: &str| Err(Error::Adapter { path: path.into(), reason: reason.into() });
        if cfg.peft_type.as_deref().is_some_and(|t| t != "LORA") {
            return bad("only LoRA adapters (peft_type \"LORA\") are supported");
        }
        if cfg.use_dora {
            return bad("DoRA adapters (use_dora) are not supported");
        }
        if cfg.fan_in_fan_out {
            return bad("fan_in_fan_out adapters are not supported (ColQwen2.5 LoRA targets Linear layers)");
        }
        Ok(cfg)
    }

    /// Rank and alpha for one module, after `rank_pattern`/`alpha_pattern` (PEFT: a key matches when the module
    /// name ends with it at a dot boundary).
    pub fn rank_alpha(&self, module: &str) -> (usize, f64) {
        let matches = |key: &str| module == key || module.ends_with(&format!(".{key}"));
        let r = self.rank_pattern.iter().find(|(k, _)| matches(k)).map(|(_, &v)| v).unwrap_or(self.r);
        let a = self.alpha_pattern.iter().find(|(k, _)| matches(k)).map(|(_, &v)| v).unwrap_or(self.lora_alpha);
        (r, a)
    }

    /// LoRA scaling `s` for one module: alpha/r, or alpha/sqrt(r) with rsLoRA (PEFT `update_layer`).
    pub fn scaling(&self, module: &str) -> f64 {
        let (r, alpha) = self.rank_alpha(module);
        if self.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 }
    }
}
