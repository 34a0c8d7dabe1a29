//! The checkpoint's own JSON files, read one to one: `config.json` (which names the model family, chosen here
//! once per load: [`ModelConfig::from_file`]), `preprocessor_config.json` and the PEFT `adapter_config.json`.
//! Each family reads its own fields in its module (`qwen2_5::config`, `qwen3_vl::config`, `qwen3_5::config`); what
//! they share —
//! the layouts of `text_config`, the rotary parameters, the special-token ids — is read here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::{qwen2_5, qwen3_5, qwen3_vl};

/// The model families colqwen implements, chosen from the checkpoint's own `config.json`
/// (`model_type`, then `architectures`) when it loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// ColQwen2.5 on Qwen2.5-VL (`vidore/colqwen2.5-v0.2`, `nomic-ai/colnomic-embed-multimodal-3b/-7b`).
    ColQwen2_5,
    /// ColQwen3 on Qwen3-VL (`TomoroAI/tomoro-colqwen3-embed-4b/-8b`, colpali-engine `ColQwen3`).
    ColQwen3,
    /// ColQwen3.5 on the hybrid Qwen3.5 (Gated DeltaNet + gated attention; colpali-engine `ColQwen3_5`,
    /// `athrael-soju/colqwen3.5-4.5B-v3`).
    ColQwen3_5,
}

impl Family {
    /// Every family, in the order the error for an unknown checkpoint lists them.
    pub const ALL: [Family; 3] = [Family::ColQwen2_5, Family::ColQwen3, Family::ColQwen3_5];

    /// The family's name as colpali-engine spells the model class ("ColQwen2.5").
    pub fn name(self) -> &'static str {
        match self {
            Self::ColQwen2_5 => "ColQwen2.5",
            Self::ColQwen3 => "ColQwen3",
            Self::ColQwen3_5 => "ColQwen3.5",
        }
    }

    /// colpali-engine's processor class of the family, as the index manifest names the prompt format.
    pub fn processor_class(self) -> &'static str {
        match self {
            Self::ColQwen2_5 => "ColQwen2_5_Processor",
            Self::ColQwen3 => "ColQwen3Processor",
            Self::ColQwen3_5 => "ColQwen3_5_Processor",
        }
    }

    /// The `model_type` values of `config.json` this family reads, and its backbone, for messages.
    fn model_types(self) -> &'static [&'static str] {
        match self {
            Self::ColQwen2_5 => &["qwen2_5_vl"],
            // `colqwen3`: the Tomoro checkpoints' own type (their config wraps a Qwen3-VL config).
            Self::ColQwen3 => &["qwen3_vl", "colqwen3"],
            Self::ColQwen3_5 => &["qwen3_5"],
        }
    }

    /// The family of a checkpoint whose `config.json` says `model_type` and `architectures`.
    fn detect(model_type: &str, architectures: &[String]) -> Option<Self> {
        if !model_type.is_empty() {
            return Self::ALL.into_iter().find(|f| f.model_types().contains(&model_type));
        }
        // A config without `model_type`: the architecture names the class it was saved from.
        architectures.iter().find_map(|a| match a.as_str() {
            "ColQwen2_5" | "Qwen2_5_VLForConditionalGeneration" | "Qwen2_5_VLModel" => Some(Self::ColQwen2_5),
            "ColQwen3" | "Qwen3VLForConditionalGeneration" | "Qwen3VLModel" => Some(Self::ColQwen3),
            "ColQwen3_5" | "Qwen3_5ForConditionalGeneration" | "Qwen3_5Model" => Some(Self::ColQwen3_5),
            _ => None,
        })
    }

    /// "ColQwen2.5 (model_type qwen2_5_vl), ColQwen3 (model_type qwen3_vl or colqwen3)": what the error for an
    /// unknown checkpoint offers.
    pub fn supported() -> String {
        let each = Self::ALL.iter().map(|f| format!("{} (model_type {})", f.name(), f.model_types().join(" or ")));
        each.collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `config.json` of a checkpoint, read by the family it names.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// A ColQwen2.5 (Qwen2.5-VL) checkpoint.
    Qwen2_5(qwen2_5::Config),
    /// A ColQwen3 (Qwen3-VL) checkpoint.
    Qwen3Vl(qwen3_vl::Config),
    /// A ColQwen3.5 (Qwen3.5) checkpoint.
    Qwen3_5(qwen3_5::Config),
}

impl ModelConfig {
    /// Reads `config.json` and the family it names; a family colqwen does not implement is an error that lists
    /// the ones it does.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = ConfigJson::read(path)?;
        let family = Family::detect(json.model_type(), &json.architectures())
            .ok_or_else(|| Error::UnsupportedModelType { path: path.into(), model_type: json.model_type().into() })?;
        Ok(match family {
            Family::ColQwen2_5 => Self::Qwen2_5(qwen2_5::Config::from_json(&json)?),
            Family::ColQwen3 => Self::Qwen3Vl(qwen3_vl::Config::from_json(&json)?),
            Family::ColQwen3_5 => Self::Qwen3_5(qwen3_5::Config::from_json(&json)?),
        })
    }

    /// The family this config belongs to.
    pub fn family(&self) -> Family {
        match self {
            Self::Qwen2_5(_) => Family::ColQwen2_5,
            Self::Qwen3Vl(_) => Family::ColQwen3,
            Self::Qwen3_5(_) => Family::ColQwen3_5,
        }
    }

    /// The processor settings a checkpoint brings beyond its files: the TomoroAI ColQwen3 checkpoints
    /// (`model_type` "colqwen3") are published with a processor (remote code) that caps pages at 1280 visual
    /// tokens whatever `preprocessor_config.json` says, and strips whitespace from queries. `None`: the files say
    /// it all (colpali-engine's processors).
    pub(crate) fn processor_defaults(&self) -> Option<(usize, bool)> {
        match self {
            Self::Qwen3Vl(c) if c.model_type == "colqwen3" => Some((1280, true)),
            _ => None,
        }
    }

    /// The patch layout and special ids every family's shell needs.
    pub(crate) fn geometry(&self) -> Geometry {
        match self {
            Self::Qwen2_5(c) => c.geometry(),
            Self::Qwen3Vl(c) => c.geometry(),
            Self::Qwen3_5(c) => c.geometry(),
        }
    }
}

/// What the shared parts of the model (preprocessing, prompts, packing, the head) need from a family's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Patch side in pixels (14 for Qwen2.5-VL, 16 for Qwen3-VL).
    pub(crate) patch: usize,
    /// Patches merged per side into one visual token (2).
    pub(crate) merge: usize,
    /// Frames per temporal patch (2; a still image is duplicated).
    pub(crate) temporal: usize,
    /// Input channels (3).
    pub(crate) channels: usize,
    /// Id of `<|image_pad|>`.
    pub(crate) image_token_id: u32,
    /// Width of the language model's residual stream (the head's input).
    pub(crate) hidden: usize,
}

impl Geometry {
    /// Pixels per merged-token side: `patch · merge` (28 or 32).
    pub(crate) fn factor(&self) -> usize {
        self.patch * self.merge
    }

    /// Values per patch row of `pixel_values`: `channels · temporal · patch²` (1176 or 1536).
    pub(crate) fn patch_width(&self) -> usize {
        self.channels * self.temporal * self.patch * self.patch
    }
}

/// Rotary parameters as a config writes them, under `rope_scaling` (transformers 4.x) or `rope_parameters`
/// (5.x), at the text config's level or the top level.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Rope {
    /// M-RoPE split of the rotated frequency slots over the (t, h, w) position streams.
    #[serde(default)]
    pub(crate) mrope_section: Option<Vec<usize>>,
    /// Whether the streams alternate slot by slot (Qwen3-VL) instead of taking contiguous sections (Qwen2.5-VL).
    #[serde(default)]
    pub(crate) mrope_interleaved: Option<bool>,
    /// Rotary base.
    #[serde(default)]
    pub(crate) rope_theta: Option<f64>,
    /// Share of each head's dims that rotate (Qwen3.5: 0.25).
    #[serde(default)]
    pub(crate) partial_rotary_factor: Option<f64>,
}

/// A `config.json` parsed as JSON, with the readers the families share; errors name the file.
pub(crate) struct ConfigJson {
    path: PathBuf,
    value: serde_json::Value,
}

impl ConfigJson {
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.into(),
            what: "model config",
            source,
        })?;
        Ok(Self { path: path.into(), value })
    }

    /// `model_type` ("" when absent).
    pub(crate) fn model_type(&self) -> &str {
        self.value.get("model_type").and_then(|v| v.as_str()).unwrap_or_default()
    }

    fn architectures(&self) -> Vec<String> {
        self.value.get("architectures").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    }

    /// The language model's fields: `text_config` (transformers 5.x, and every Qwen3 config), else the top level
    /// (the flat Qwen2.5-VL layout of 4.x).
    pub(crate) fn text(&self) -> &serde_json::Value {
        self.value.get("text_config").filter(|v| v.is_object()).unwrap_or(&self.value)
    }

    /// A required top-level field.
    pub(crate) fn field(&self, name: &str) -> Result<&serde_json::Value> {
        self.value.get(name).filter(|v| !v.is_null()).ok_or_else(|| self.invalid(format!("{name} is missing")))
    }

    /// `value` as a `T`; a missing or mistyped field is an error naming the file.
    pub(crate) fn parse<T: DeserializeOwned>(&self, value: &serde_json::Value) -> Result<T> {
        serde_json::from_value(value.clone()).map_err(|source| Error::Json {
            path: self.path.clone(),
            what: "model config",
            source,
        })
    }

    /// The rotary parameters: `rope_scaling` or `rope_parameters` of the text config, else of the top level;
    /// `rope_theta` beside them when they do not carry it.
    pub(crate) fn rope(&self) -> Result<Rope> {
        let text = self.text();
        let found = ["rope_scaling", "rope_parameters"]
            .iter()
            .find_map(|k| text.get(*k).filter(|v| v.is_object()))
            .or_else(|| {
                ["rope_scaling", "rope_parameters"].iter().find_map(|k| self.value.get(*k).filter(|v| v.is_object()))
            });
        let mut rope: Rope = match found {
            Some(v) => self.parse(v)?,
            None => Rope::default(),
        };
        if rope.rope_theta.is_none() {
            rope.rope_theta = text.get("rope_theta").and_then(|v| v.as_f64());
        }
        if rope.partial_rotary_factor.is_none() {
            rope.partial_rotary_factor = text.get("partial_rotary_factor").and_then(|v| v.as_f64());
        }
        Ok(rope)
    }

    /// A special-token id: top level, else in the text config.
    pub(crate) fn token(&self, name: &str) -> Result<u32> {
        [&self.value, self.text()]
            .iter()
            .find_map(|v| v.get(name).and_then(|x| x.as_u64()))
            .map(|x| x as u32)
            .ok_or_else(|| self.invalid(format!("{name} is missing")))
    }

    /// An [`Error::InvalidConfig`] naming this file.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidConfig { path: self.path.clone(), reason: reason.into() }
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
    /// `__init__` (§2.3), class defaults fill what the file omits. Its patch layout must be the model's.
    /// A `processor_config.json` is read through its `image_processor` section.
    pub(crate) fn from_file(path: &Path, geometry: &Geometry) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let json = |source| Error::Json { path: path.into(), what: "preprocessor config", source };
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json)?;
        if let Some(section) = value.get_mut("image_processor").filter(|v| v.is_object()) {
            value = section.take();
        }
        let raw: RawPreprocessor = serde_json::from_value(value).map_err(json)?;
        let invalid = |reason: String| Error::InvalidConfig { path: path.into(), reason };
        let check = |name: &str, found: Option<usize>, want: usize| match found {
            Some(f) if f != want => Err(invalid(format!("{name} {f} differs from the model's {want}"))),
            _ => Ok(()),
        };
        check("patch_size", raw.patch_size, geometry.patch)?;
        check("merge_size", raw.merge_size, geometry.merge)?;
        check("temporal_patch_size", raw.temporal_patch_size, geometry.temporal)?;
        let size = raw.size.as_ref();
        let min_pixels = raw.min_pixels.or(size.and_then(|s| s.shortest_edge)).unwrap_or(56 * 56);
        let max_pixels = raw.max_pixels.or(size.and_then(|s| s.longest_edge)).unwrap_or(28 * 28 * 1280);
        if max_pixels < min_pixels || max_pixels < geometry.factor() * geometry.factor() {
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
