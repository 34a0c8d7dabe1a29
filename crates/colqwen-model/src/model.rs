//! ColQwen2.5 = vision tower + language model + `custom_text_proj` head (fact sheet §6), with the
//! document and query paths of §2 and §3. Inputs of a batch are packed, never padded, so each embedding is
//! independent of the rest of its batch.

use std::borrow::Borrow;

use candle_core::{DType, Device, Module, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use colqwen_core::MultiVector;

use crate::config::{AdapterConfig, Config, PreprocessorConfig};
use crate::error::Result;
use crate::nn::Linear;
use crate::ops::Ops;
use crate::preprocess::{ImageGrid, PixelValues, Preprocessor};
use crate::profile::{Profiler, Profiling, Stage, stage};
use crate::source::ModelFiles;
use crate::text::{TextModel, document_positions, query_positions};
use crate::tokenize::{Prompts, QueryTemplate};
use crate::vision::VisionModel;
use crate::weights::Weights;

/// Width of the ColQwen head (`dim = 128`, hard-coded in colpali-engine).
pub const EMBEDDING_DIM: usize = 128;

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

/// A loaded ColQwen2.5 model.
pub struct ColQwen {
    config: Config,
    vision: VisionModel,
    text: TextModel,
    head: Linear,
    preprocessor: Preprocessor,
    prompts: Prompts,
    device: Device,
    dtype: DType,
    lora_pairs: usize,
    /// The device fast path, chosen once at load and shared with every layer.
    ops: Ops,
    /// Where the stages of every layer report when profiling is on.
    profiling: Profiling,
    upload: Stage,
    download: Stage,
}

impl ColQwen {
    /// Loads config, processor files and weights onto `device` in `dtype`; a LoRA adapter is merged into the
    /// base weights at load (`W + s·B·A` in f32, one rounding; fact sheet §1.4).
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType, opts: &LoadOptions) -> Result<Self> {
        let config = Config::from_file(&files.config)?;
        let pre_cfg = PreprocessorConfig::from_file(&files.preprocessor, &config)?;
        let v = &config.vision;
        let preprocessor = Preprocessor::new(
            &pre_cfg,
            v.patch_size,
            v.spatial_merge_size,
            v.temporal_patch_size,
            opts.max_visual_tokens,
        );
        let prompts = Prompts::load(&files.tokenizer, config.image_token_id, opts.query.clone())?;
        let adapter = match (&files.adapter, opts.skip_adapter) {
            (Some((cfg, weights)), false) => Some((weights.as_path(), AdapterConfig::from_file(cfg)?)),
            _ => None,
        };
        // The one place where the device fast path is chosen; the layers dispatch on `ops`.
        let ops = Ops::for_device(device, dtype)?;
        let profiling = Profiling::new(device);
        let vb = Weights::open(&files.weights, adapter, dtype, device, &ops, &profiling)?;
        let vision = VisionModel::new(&config, vb.pp("visual"))?;
        let text = TextModel::new(&config, vb.pp("language_model"))?;
        let head = Linear::new(config.text.hidden_size, EMBEDDING_DIM, true, vb.pp("custom_text_proj"))?;
        vb.check_adapter_used()?;
        tracing::info!(device = ?device, ?dtype, ops = ops.name(), lora_pairs = vb.lora_pairs(), "loaded ColQwen2.5");
        Ok(Self {
            lora_pairs: vb.lora_pairs(),
            config,
            vision,
            text,
            head,
            preprocessor,
            prompts,
            device: device.clone(),
            dtype,
            ops,
            upload: stage!(profiling, "upload"),
            download: stage!(profiling, "download"),
            profiling,
        })
    }

    /// Times the stages of every forward pass into `profiler` from now on (with the device synchronised around
    /// each stage, so passes run slower), or stops timing with `None`. Off after load; while off, stages cost
    /// one atomic load each and never synchronise. Each stage is also a TRACE `tracing` span, profiler or not.
    pub fn set_profiling(&self, profiler: Option<std::sync::Arc<Profiler>>) {
        self.profiling.set(profiler);
    }

    /// The checkpoint's config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The image preprocessor (settings in force, incl. the visual-token cap).
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }
    /// Tokenizer and prompt templates.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }
    /// Vision tower, for stage-by-stage use.
    pub fn vision(&self) -> &VisionModel {
        &self.vision
    }
    /// Language model, for stage-by-stage use.
    pub fn text(&self) -> &TextModel {
        &self.text
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
        let merge = self.config.vision.spatial_merge_size;
        let mut batch = PackedBatch::new();
        for g in grids {
            let ids = self.prompts.document_ids(g.tokens(merge));
            let pos = document_positions(&ids, self.config.image_token_id, std::slice::from_ref(g), merge);
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
    /// model dtype, then divided; trap 25). `[N, D] → [N, 128]`.
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let proj = self.head.forward(hidden)?;
        let norm = proj.to_dtype(DType::F32)?.sqr()?.sum_keepdim(1)?.sqrt()?.to_dtype(proj.dtype())?;
        Ok(proj.broadcast_div(&norm)?)
    }

    /// Input embeddings of a document batch: token embeddings with the visual tokens scattered into the
    /// `<|image_pad|>` slots in order (§5.1). `vision`: `[ΣT, D]`.
    pub fn scatter_image_features(&self, batch: &PackedBatch, vision: &Tensor) -> Result<Tensor> {
        let n = batch.ids.len();
        let mut next = n;
        let index: Vec<u32> = batch
            .ids
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if t == self.config.image_token_id {
                    next += 1;
                    (next - 1) as u32
                } else {
                    i as u32
                }
            })
            .collect();
        let slots = next - n;
        let rows = vision.dim(0)?;
        if slots != rows {
            return Err(candle_core::Error::Msg(format!(
                "{slots} image slots in the prompts but {rows} visual tokens"
            ))
            .into());
        }
        let text = self.text.embed(&batch.ids)?;
        let all = Tensor::cat(&[&text, &vision.to_dtype(text.dtype())?], 0)?;
        let index = Tensor::from_vec(index, n, &self.device)?;
        Ok(all.index_select(&index, 0)?)
    }

    /// Preprocesses images in parallel on the CPU (§2).
    pub fn preprocess_images(&self, images: &[RgbImage]) -> Result<Vec<PixelValues>> {
        images.par_iter().map(|img| self.preprocessor.preprocess(img)).collect()
    }

    /// Embeds images: one `[T + 11, 128]` multi-vector each (all prompt positions kept, as the reference).
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<MultiVector>> {
        let pvs = self.preprocess_images(images)?;
        self.embed_pixel_values(&pvs)
    }

    /// Embeds preprocessed images, packed into one forward pass.
    pub fn embed_pixel_values<P: Borrow<PixelValues> + Sync>(&self, images: &[P]) -> Result<Vec<MultiVector>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        // Owned or shared (`Arc`) inputs alike: the pool keeps a batch's inputs for a retry on another replica.
        let images: Vec<&PixelValues> = images.iter().map(Borrow::borrow).collect();
        let images = images.as_slice();
        let grids: Vec<ImageGrid> = images.iter().map(|p| p.grid).collect();
        let width = images[0].data.len() / images[0].grid.patches().max(1);
        let rows = images.iter().map(|p| p.data.len()).sum::<usize>() / width.max(1);
        // Cast to the model dtype on the host, in parallel: the reference casts pixel_values to the model dtype
        // before the patch embedding (trap 9) with the same round-to-nearest-even, so the values are identical,
        // and the upload is half the size in bf16/f16.
        let pixel_values = self.upload.run(|| self.upload_pixels(images, (rows, width)))?;
        let vision = self.vision.forward(&pixel_values, &grids)?;
        let batch = self.document_batch(&grids);
        let embeds = self.scatter_image_features(&batch, &vision)?;
        let hidden = self.text.forward(&embeds, &batch.positions, &batch.cu_seqlens)?;
        self.split(&self.head(&hidden)?, &batch.cu_seqlens)
    }

    /// `[ΣP, 1176]` pixel values of `images` on the device, in the model dtype. On CUDA in bf16 they are
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

    /// Embeds queries: one `[len + 10, 128]` multi-vector each.
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.query_batch(queries)?;
        let embeds = self.text.embed(&batch.ids)?;
        let hidden = self.text.forward(&embeds, &batch.positions, &batch.cu_seqlens)?;
        self.split(&self.head(&hidden)?, &batch.cu_seqlens)
    }

    /// One move back to the host, in f32, then split per sequence.
    fn split(&self, emb: &Tensor, cu: &[usize]) -> Result<Vec<MultiVector>> {
        let all: Vec<f32> =
            self.download.run(|| emb.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1())?;
        Ok(cu
            .windows(2)
            .map(|w| MultiVector {
                rows: w[1] - w[0],
                dim: EMBEDDING_DIM,
                data: all[w[0] * EMBEDDING_DIM..w[1] * EMBEDDING_DIM].to_vec(),
            })
            .collect())
    }
}

impl std::fmt::Debug for ColQwen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColQwen")
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
