//! The ColQwen shell shared by every family: preprocessing, prompts, packing, the `custom_text_proj` head and
//! the move back to the host, around the towers of the family that `config.json` names ([`Backbone`], chosen
//! once at load). Inputs of a batch are packed, never padded, so each embedding is independent of the rest of its
//! batch.

use std::borrow::Borrow;

use candle_core::{DType, Device, Module, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use colqwen_core::MultiVector;

use crate::config::{AdapterConfig, Family, Geometry, ModelConfig, PreprocessorConfig};
use crate::error::{Error, Result};
use crate::nn::Linear;
use crate::ops::Ops;
use crate::pace::Pace;
use crate::preprocess::{ImageGrid, PixelValues, Preprocessor};
use crate::profile::{Profiler, Profiling, Stage, Taps, stage};
use crate::rope::{document_positions, query_positions};
use crate::source::ModelFiles;
use crate::tokenize::{Prompts, QueryTemplate};
use crate::weights::Weights;
use crate::{qwen2_5, qwen3_5, qwen3_vl};
/// Choices made at load time.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Cap on visual tokens per page (colpali's `max_num_visual_tokens`); `None` = the checkpoint's
    /// `max_pixels`.
    pub max_visual_tokens: Option<usize>,
    /// Query template (prefix, augmentation tokens).
    pub query: QueryTemplate,
    /// Load the base only, ignoring the adapter (for tests and comparisons).
    pub skip_adapter: bool,
    /// How the language model's projections hold their weights: dense in the model dtype (the default), or 8-bit
    /// on the CPU.
    pub text_weights: TextWeights,
    /// Folder of the 8-bit weight cache (one file per checkpoint, see [`TextWeights::Q8`]); `None`: quantize at
    /// every load. Unused with dense weights.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// How the language model's projections hold their weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextWeights {
    /// In the model dtype, like every other weight.
    #[default]
    Dense,
    /// 8-bit on the CPU, for the f32 model: Q8_0 blocks (32 weights with one f16 scale) for the projections whose
    /// input width is a multiple of 32, run with activations quantized to 8 bits per 32 values (`crate::quant`:
    /// our AVX-512 VNNI kernel, else candle's); the vision tower, norms, embeddings and head stay f32. About 4× less memory traffic per query encode, at
    /// a measured cost in accuracy (README, `bench/results.md`). The merged and quantized weights are cached in
    /// [`LoadOptions::cache_dir`], so only the first load quantizes. An error on any other device or dtype. Such a
    /// model is for answering queries, so its vision tower is built from the checkpoint on the first page, not at
    /// load (a checkpoint lacking a vision weight fails then, naming it).
    Q8,
}

/// Token sequences of a batch, packed: the model input of the text tower.
#[derive(Debug, Clone)]
pub struct PackedBatch {
    /// All ids, sequence after sequence.
    pub ids: Vec<u32>,
    /// M-RoPE positions `[3][N]`.
    pub positions: [Vec<u32>; 3],
    /// Sequence offsets `[0, L0, L0+L1, …]`.
    pub cu_seqlens: Vec<usize>,
}

impl PackedBatch {
    fn new() -> Self {
        Self { ids: Vec::new(), positions: Default::default(), cu_seqlens: vec![0] }
    }

    fn push(&mut self, ids: Vec<u32>, positions: [Vec<u32>; 3]) {
        self.cu_seqlens.push(self.cu_seqlens.last().copied().unwrap_or(0) + ids.len());
        self.ids.extend(ids);
        for (all, p) in self.positions.iter_mut().zip(positions) {
            all.extend(p);
        }
    }
}

/// The towers of the loaded family: the one place that dispatches on it.
#[non_exhaustive]
pub enum Backbone {
    /// ColQwen2.5 (Qwen2.5-VL).
    Qwen2_5(qwen2_5::Towers),
    /// ColQwen3 (Qwen3-VL).
    Qwen3Vl(qwen3_vl::Towers),
    /// ColQwen3.5 (Qwen3.5).
    Qwen3_5(qwen3_5::Towers),
}

/// What a vision tower makes of a packed batch of images.
pub(crate) struct Visual {
    /// Visual tokens `[ΣT, H]`, raster order per image, images concatenated: they replace the `<|image_pad|>`
    /// embeddings.
    pub(crate) tokens: Tensor,
    /// DeepStack features `[ΣT, H]` in the same order (Qwen3-VL; empty elsewhere): feature `k` is added to the
    /// visual positions after decoder layer `k`.
    pub(crate) deepstack: Vec<Tensor>,
}

/// The visual positions of a packed batch and the features to add there after the first decoder layers.
pub(crate) struct DeepStack<'a> {
    /// Packed row indices of the `<|image_pad|>` tokens (`[ΣT]`, u32), in order.
    pub(crate) rows: &'a Tensor,
    /// One `[ΣT, H]` feature per layer, from layer 0.
    pub(crate) features: &'a [Tensor],
}

impl Backbone {
    fn load(config: &ModelConfig, vb: &Weights, defer_vision: bool) -> Result<Self> {
        Ok(match config {
            ModelConfig::Qwen2_5(c) => Self::Qwen2_5(qwen2_5::Towers::new(c, vb, defer_vision)?),
            ModelConfig::Qwen3Vl(c) => Self::Qwen3Vl(qwen3_vl::Towers::new(c, vb, defer_vision)?),
            ModelConfig::Qwen3_5(c) => Self::Qwen3_5(qwen3_5::Towers::new(c, vb, defer_vision)?),
        })
    }

    /// The family's on-disk → module key mapping.
    fn rename(config: &ModelConfig) -> crate::weights::Rename {
        match config {
            ModelConfig::Qwen2_5(_) => qwen2_5::module_key,
            ModelConfig::Qwen3Vl(_) => qwen3_vl::module_key,
            ModelConfig::Qwen3_5(_) => qwen3_5::module_key,
        }
    }

    /// The vision tower over `pixel_values` `[ΣP, patch_width]` of images with these grids.
    fn vision(&self, pixel_values: &Tensor, grids: &[ImageGrid], pace: &mut Pace) -> Result<Visual> {
        match self {
            Self::Qwen2_5(t) => {
                Ok(Visual { tokens: t.vision()?.forward_paced(pixel_values, grids, pace)?, deepstack: Vec::new() })
            }
            Self::Qwen3Vl(t) => t.vision()?.forward(pixel_values, grids, pace),
            Self::Qwen3_5(t) => t.vision()?.forward(pixel_values, grids, pace),
        }
    }

    /// Token embeddings `[N, H]`.
    fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        match self {
            Self::Qwen2_5(t) => t.text.embed(ids),
            Self::Qwen3Vl(t) => t.text.embed(ids),
            Self::Qwen3_5(t) => t.text.embed(ids),
        }
    }

    /// The language model over packed input embeddings → `last_hidden_state` `[N, H]`.
    fn text(
        &self,
        embeds: &Tensor,
        batch: &PackedBatch,
        deepstack: Option<DeepStack>,
        pace: &mut Pace,
    ) -> Result<Tensor> {
        let (pos, cu) = (&batch.positions, &batch.cu_seqlens);
        match self {
            Self::Qwen2_5(t) => t.text.forward_paced(embeds, pos, cu, pace),
            Self::Qwen3Vl(t) => t.text.forward(embeds, pos, cu, deepstack, pace),
            Self::Qwen3_5(t) => t.text.forward(embeds, pos, cu, pace),
        }
    }
}

/// A loaded ColQwen model of any supported [`Family`].
pub struct ColQwen {
    config: ModelConfig,
    geometry: Geometry,
    backbone: Backbone,
    head: Linear,
    /// Width of one output vector (128 for ColQwen2.5, 320 for ColQwen3): the head's output rows.
    dim: usize,
    preprocessor: Preprocessor,
    prompts: Prompts,
    device: Device,
    dtype: DType,
    lora_pairs: usize,
    /// Query batches are padded to a multiple of this many rows (`Ops::query_rows_multiple`).
    query_rows_multiple: usize,
    /// The device fast path, chosen once at load and shared with every layer.
    ops: Ops,
    /// Where the stages of every layer report when profiling is on.
    profiling: Profiling,
    upload: Stage,
    download: Stage,
}

impl ColQwen {
    /// Loads config, processor files and weights onto `device` in `dtype`; the family comes from `config.json`
    /// (an unknown one is an error listing the supported families); a LoRA adapter is merged into the base
    /// weights at load (`W + s·B·A` in f32, one rounding; fact sheet §1.4).
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType, opts: &LoadOptions) -> Result<Self> {
        let config = ModelConfig::from_file(&files.config)?;
        let geometry = config.geometry();
        let pre_cfg = PreprocessorConfig::from_file(&files.preprocessor, &geometry)?;
        let g = &geometry;
        let (mut cap, mut query) = (opts.max_visual_tokens, opts.query.clone());
        if let Some((tokens, strip)) = config.processor_defaults() {
            cap = cap.or(Some(tokens));
            query.strip |= strip;
        }
        let preprocessor = Preprocessor::new(&pre_cfg, g.patch, g.merge, g.temporal, cap);
        let prompts = Prompts::load(&files.tokenizer, geometry.image_token_id, query)?;
        let adapter = match (&files.adapter, opts.skip_adapter) {
            (Some((cfg, weights)), false) => Some((weights.as_path(), AdapterConfig::from_file(cfg)?)),
            _ => None,
        };
        // The one place where the device fast path is chosen; the layers dispatch on `ops` (the language model's
        // on `text_ops`, which differ with 8-bit text weights).
        let ops = Ops::for_device(device, dtype)?;
        let text_ops = ops.for_text(opts.text_weights, device, dtype)?;
        let profiling = Profiling::new(device);
        let vb = Weights::open(
            &files.weights,
            Backbone::rename(&config),
            adapter,
            dtype,
            device,
            (&ops, &text_ops),
            opts.cache_dir.as_deref(),
            &profiling,
        )?;
        // A model with 8-bit text weights is loaded to answer queries on the CPU (`serve --dtype q8`): its vision
        // tower, which queries never run, is built from the checkpoint on the first page instead of at start-up
        // (the f32 widening of its weights was ~40 % of the 3B model's start-up page faults). Decided here, once.
        let defer_vision = opts.text_weights == TextWeights::Q8;
        let backbone = Backbone::load(&config, &vb, defer_vision)?;
        let head_vb = vb.pp("custom_text_proj");
        let dim = match head_vb.shape_of("weight")?.as_deref() {
            // The head's width is its weight's: colpali-engine hard-codes 320 for ColQwen3 and 128 for ColQwen2.5
            // whatever the config says.
            Some(&[dim, hidden]) if hidden == geometry.hidden && dim > 0 => dim,
            Some(shape) => {
                return Err(Error::InvalidConfig {
                    path: files.config.clone(),
                    reason: format!(
                        "custom_text_proj.weight has shape {shape:?}, expected [dim, {}] (the text hidden size)",
                        geometry.hidden
                    ),
                });
            }
            None => {
                return Err(Error::MissingTensor { name: "custom_text_proj.weight".into(), files: vb.files_list() });
            }
        };
        let head = Linear::new(geometry.hidden, dim, true, head_vb)?;
        vb.check_adapter_used(if defer_vision { Some(crate::weights::VISION_TOWER) } else { None })?;
        vb.finish()?;
        let family = config.family();
        tracing::info!(%family, device = ?device, ?dtype, ops = ops.name(), text_ops = text_ops.name(), dim, lora_pairs = vb.lora_pairs(), "loaded model");
        if let Ops::CpuQ8 = text_ops {
            tracing::info!(kernels = crate::quant::kernel_level(), cache = ?vb.q8_cache_path(), "8-bit text weights");
        }
        let model = Self {
            lora_pairs: vb.lora_pairs(),
            query_rows_multiple: ops.query_rows_multiple(),
            config,
            geometry,
            backbone,
            head,
            dim,
            preprocessor,
            prompts,
            device: device.clone(),
            dtype,
            ops,
            upload: stage!(profiling, "upload"),
            download: stage!(profiling, "download"),
            profiling,
        };
        model.warm_up()?;
        Ok(model)
    }

    /// Records the named intermediate tensors of every forward pass into `taps` from now on, or stops with
    /// `None` (for the stage-by-stage parity tests).
    pub fn set_taps(&self, taps: Option<std::sync::Arc<Taps>>) {
        self.profiling.set_taps(taps);
    }

    /// Times the stages of every forward pass into `profiler` from now on (with the device synchronised around
    /// each stage, so passes run slower), or stops timing with `None`. Off after load; while off, stages cost
    /// one atomic load each and never synchronise. Each stage is also a TRACE `tracing` span, profiler or not.
    pub fn set_profiling(&self, profiler: Option<std::sync::Arc<Profiler>>) {
        self.profiling.set(profiler);
    }

    /// The checkpoint's config (and through it, its family).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// The family the checkpoint belongs to.
    pub fn family(&self) -> Family {
        self.config.family()
    }
    /// The family's towers, for stage-by-stage use.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }
    /// Width of one output vector (128 for ColQwen2.5, 320 for ColQwen3).
    pub fn embedding_dim(&self) -> usize {
        self.dim
    }
    /// Id of `<|image_pad|>`.
    pub fn image_token_id(&self) -> u32 {
        self.geometry.image_token_id
    }
    /// The image preprocessor (settings in force, incl. the visual-token cap).
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }
    /// Tokenizer and prompt templates.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }
    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of LoRA pairs merged at load (0 without adapter).
    pub fn lora_pairs(&self) -> usize {
        self.lora_pairs
    }

    /// Ids, M-RoPE positions and offsets of a batch of documents with these grids (§2.7, §5.2).
    pub fn document_batch(&self, grids: &[ImageGrid]) -> PackedBatch {
        let merge = self.geometry.merge;
        let mut batch = PackedBatch::new();
        for g in grids {
            let ids = self.prompts.document_ids(g.tokens(merge));
            let pos = document_positions(&ids, self.geometry.image_token_id, std::slice::from_ref(g), merge);
            batch.push(ids, pos);
        }
        batch
    }

    /// Ids, positions and offsets of a batch of queries (§3).
    pub fn query_batch(&self, queries: &[&str]) -> Result<PackedBatch> {
        let mut batch = PackedBatch::new();
        for q in queries {
            let ids = self.prompts.query_ids(q)?;
            let pos = query_positions(ids.len());
            batch.push(ids, pos);
        }
        Ok(batch)
    }

    /// Head (§6): `custom_text_proj`, then L2 normalisation without ε (norm accumulated in f32, rounded to the
    /// model dtype, then divided; trap 25). `[N, H] → [N, dim]`.
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let proj = self.head.forward(hidden)?;
        let norm = proj.to_dtype(DType::F32)?.sqr()?.sum_keepdim(1)?.sqrt()?.to_dtype(proj.dtype())?;
        Ok(proj.broadcast_div(&norm)?)
    }

    /// Packed row indices of the `<|image_pad|>` tokens of `batch`, in order: where the visual tokens go.
    fn visual_rows(&self, batch: &PackedBatch) -> Vec<u32> {
        let image = self.geometry.image_token_id;
        batch.ids.iter().enumerate().filter(|&(_, &t)| t == image).map(|(i, _)| i as u32).collect()
    }

    /// Input embeddings of a document batch: token embeddings with the visual tokens scattered into the
    /// `<|image_pad|>` slots in order (§5.1; `masked_scatter` in the reference). `vision`: `[ΣT, H]`.
    pub fn scatter_image_features(&self, batch: &PackedBatch, vision: &Tensor) -> Result<Tensor> {
        let n = batch.ids.len();
        let rows = self.visual_rows(batch);
        let tokens = vision.dim(0)?;
        if rows.len() != tokens {
            return Err(candle_core::Error::Msg(format!(
                "{} image slots in the prompts but {tokens} visual tokens",
                rows.len()
            ))
            .into());
        }
        // Gather from [text rows; visual tokens]: row i takes text row i, or visual token k at its k-th slot.
        let mut index: Vec<u32> = (0..n as u32).collect();
        for (k, &r) in rows.iter().enumerate() {
            index[r as usize] = (n + k) as u32;
        }
        let text = self.backbone.embed(&batch.ids)?;
        let all = Tensor::cat(&[&text, &vision.to_dtype(text.dtype())?], 0)?;
        let index = Tensor::from_vec(index, n, &self.device)?;
        Ok(all.index_select(&index, 0)?)
    }

    /// Preprocesses images in parallel on the CPU (§2).
    pub fn preprocess_images(&self, images: &[RgbImage]) -> Result<Vec<PixelValues>> {
        images.par_iter().map(|img| self.preprocessor.preprocess(img)).collect()
    }

    /// Embeds images: one `[T + 11, dim]` multi-vector each (all prompt positions kept, as the reference).
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<MultiVector>> {
        let pvs = self.preprocess_images(images)?;
        self.embed_pixel_values(&pvs)
    }

    /// Embeds preprocessed images, packed into one forward pass.
    pub fn embed_pixel_values<P: Borrow<PixelValues> + Sync>(&self, images: &[P]) -> Result<Vec<MultiVector>> {
        self.embed_pixel_values_paced(images, &mut Pace::none())
    }

    /// [`Self::embed_pixel_values`], paced: `pace` runs between layers (see [`Pace`]: the embedding worker
    /// embeds waiting queries there, on this thread and device, instead of after the whole batch).
    pub fn embed_pixel_values_paced<P: Borrow<PixelValues> + Sync>(
        &self,
        images: &[P],
        pace: &mut Pace,
    ) -> Result<Vec<MultiVector>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        // Owned or shared (`Arc`) inputs alike: the pool keeps a batch's inputs for a retry on another replica.
        let images: Vec<&PixelValues> = images.iter().map(Borrow::borrow).collect();
        let images = images.as_slice();
        let grids: Vec<ImageGrid> = images.iter().map(|p| p.grid).collect();
        let width = self.geometry.patch_width();
        let rows = images.iter().map(|p| p.data.len()).sum::<usize>() / width;
        // Cast to the model dtype on the host, in parallel: the reference casts pixel_values to the model dtype
        // before the patch embedding (trap 9) with the same round-to-nearest-even, so the values are identical,
        // and the upload is half the size in bf16/f16.
        let pixel_values = self.upload.run(|| self.upload_pixels(images, (rows, width)))?;
        let visual = self.backbone.vision(&pixel_values, &grids, pace)?;
        drop(pixel_values);
        let batch = self.document_batch(&grids);
        let embeds = self.scatter_image_features(&batch, &visual.tokens)?;
        let rows = self.visual_rows(&batch);
        let rows = Tensor::from_vec(rows.clone(), rows.len(), &self.device)?;
        let deepstack =
            (!visual.deepstack.is_empty()).then_some(DeepStack { rows: &rows, features: &visual.deepstack });
        let hidden = self.backbone.text(&embeds, &batch, deepstack, pace)?;
        self.profiling.tap(|| "last_hidden_state".into(), &hidden);
        self.split(&self.head(&hidden)?, &batch.cu_seqlens)
    }

    /// `[ΣP, patch_width]` pixel values of `images` on the device, in the model dtype. On CUDA in bf16 they are
    /// converted straight into a reused page-locked buffer and copied by DMA (a pageable upload of a
    /// 16-page batch took longer than a sixth of its forward pass on an H100).
    fn upload_pixels(&self, images: &[&PixelValues], shape: (usize, usize)) -> candle_core::Result<Tensor> {
        let n = shape.0 * shape.1;
        match (&self.ops, self.dtype) {
            #[cfg(feature = "cuda")]
            (Ops::CudaBf16(cuda), _) => cuda.upload(shape, |dst| fill_pixels(images, dst, half::bf16::from_f32)),
            (_, DType::BF16) => Tensor::from_vec(pack_pixels(images, n, half::bf16::from_f32), shape, &self.device),
            (_, DType::F16) => Tensor::from_vec(pack_pixels(images, n, half::f16::from_f32), shape, &self.device),
            _ => Tensor::from_vec(pack_pixels(images, n, |x| x), shape, &self.device),
        }
    }

    /// Embeds queries: one `[len + 10, dim]` multi-vector each.
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = self.query_batch(queries)?;
        let real = batch.cu_seqlens.len();
        let rows = batch.ids.len();
        let pad = rows.next_multiple_of(self.query_rows_multiple) - rows;
        if pad > 0 {
            // A sequence of its own: packed attention keeps it apart from the queries, whose rows are unchanged.
            let id = batch.ids[0];
            batch.push(vec![id; pad], query_positions(pad));
        }
        let embeds = self.backbone.embed(&batch.ids)?;
        let hidden = self.backbone.text(&embeds, &batch, None, &mut Pace::none())?;
        self.profiling.tap(|| "last_hidden_state".into(), &hidden);
        self.split(&self.head(&hidden)?, &batch.cu_seqlens[..real])
    }

    /// Pads query batches to a multiple of `rows` rows from now on (see `Ops::query_rows_multiple`: 16 on CUDA,
    /// 1 on the CPU after load); for tests and benchmarks.
    pub fn set_query_rows_multiple(&mut self, rows: usize) {
        self.query_rows_multiple = rows.max(1);
    }

    /// Runs queries of 1, 16, 32, 48 and 64 words once, on CUDA (with the prompt's fixed tokens around them,
    /// one query per padded bucket from the shortest query up to about 64 words), so that the first user
    /// queries do not pay for first launches and cuBLAS's per-shape choices (a no-op on the CPU, where nothing
    /// is compiled or chosen per shape).
    pub fn warm_up(&self) -> Result<()> {
        if self.query_rows_multiple == 1 {
            return Ok(());
        }
        let words = ["page"; 64];
        for n in (0..=64).step_by(self.query_rows_multiple) {
            self.embed_queries(&[&words[..n.max(1)].join(" ")])?;
        }
        Ok(())
    }

    /// One move back to the host, in f32, then split per sequence.
    fn split(&self, emb: &Tensor, cu: &[usize]) -> Result<Vec<MultiVector>> {
        let dim = self.dim;
        let all: Vec<f32> =
            self.download.run(|| emb.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1())?;
        Ok(cu
            .windows(2)
            .map(|w| MultiVector { rows: w[1] - w[0], dim, data: all[w[0] * dim..w[1] * dim].to_vec() })
            .collect())
    }
}

impl std::fmt::Debug for ColQwen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColQwen")
            .field("family", &self.family())
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .field("ops", &self.ops)
            .finish()
    }
}

/// The `n` pixel values of all images, concatenated and converted by `cast`.
fn pack_pixels<T: Send + Copy + Default>(images: &[&PixelValues], n: usize, cast: impl Fn(f32) -> T + Sync) -> Vec<T> {
    let mut flat = vec![T::default(); n];
    fill_pixels(images, &mut flat, cast);
    flat
}

/// Writes the pixel values of all images, concatenated and converted by `cast`, into `flat` (their total
/// length), in parallel over images.
fn fill_pixels<T: Send>(images: &[&PixelValues], flat: &mut [T], cast: impl Fn(f32) -> T + Sync) {
    let mut rest = flat;
    let mut parts = Vec::with_capacity(images.len());
    for p in images {
        let (dst, tail) = rest.split_at_mut(p.data.len());
        parts.push((dst, &p.data));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(dst, src)| dst.iter_mut().zip(src.iter()).for_each(|(d, &s)| *d = cast(s)));
}
