//! The Qwen3-VL vision tower (`Qwen3VLVisionModel`; Qwen3.5 uses the same tower without DeepStack): patch
//! embedding (a biased Conv3d = a Linear over the flattened patch), a learned square position table resampled
//! bilinearly to each image's grid, 2D rotary, full bidirectional attention per image (no windows), pre-LayerNorm
//! blocks with a GELU(tanh) MLP, the patch merger (LayerNorm per patch, then 2×2 patches → one token through an
//! exact-GELU MLP), and the DeepStack mergers (LayerNorm after the 2×2 shuffle) that tap chosen blocks.

use candle_core::{DType, Device, Module, Tensor};

use super::config::VisionConfig;
use crate::error::Result;
use crate::model::Visual;
use crate::nn::{
    Activation, AddNorm, AttentionPlan, LayerNorm, Linear, Mlp, attention, pad_head_halves, pre_norm_block,
};
use crate::ops::Ops;
use crate::pace::Pace;
use crate::preprocess::ImageGrid;
use crate::profile::{Profiling, Stage, stage};
use crate::rope::{VisionRope, patch_positions};
use crate::weights::Weights;

/// LayerNorm ε of every vision norm (hard-coded in `Qwen3VLVisionBlock` and `Qwen3VLVisionPatchMerger`).
const EPS: f64 = 1e-6;

struct VisionAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    /// The heads' width in the checkpoint (72) and the width attention runs at (80 on CUDA, see
    /// `Ops::kernel_head_dim`; equal elsewhere).
    head_dim: usize,
    kernel_head_dim: usize,
    /// The qkv GEMM, rotary, attention and proj GEMM.
    stages: [Stage; 4],
}

impl VisionAttention {
    /// `attn.qkv` and `attn.proj` under `vb`, their heads zero-padded to the kernel's width when it differs.
    fn new(d: usize, heads: usize, vb: &Weights, stages: [Stage; 4]) -> Result<Self> {
        let head_dim = d / heads;
        let kernel_head_dim = vb.ops().kernel_head_dim(head_dim);
        let (qkv, proj) = (vb.pp("attn.qkv"), vb.pp("attn.proj"));
        let (mut qkv_w, mut qkv_b) = (qkv.get(&[3 * d, d], "weight")?, qkv.get(&[3 * d], "bias")?);
        let mut proj_w = proj.get(&[d, d], "weight")?;
        if kernel_head_dim != head_dim {
            qkv_w = pad_head_halves(&qkv_w, 0, head_dim, kernel_head_dim)?;
            qkv_b = pad_head_halves(&qkv_b, 0, head_dim, kernel_head_dim)?;
            proj_w = pad_head_halves(&proj_w, 1, head_dim, kernel_head_dim)?;
        }
        Ok(Self {
            qkv: Linear::from_parts(qkv_w, Some(qkv_b), vb.ops())?,
            proj: Linear::from_parts(proj_w, Some(proj.get(&[d], "bias")?), vb.ops())?,
            heads,
            head_dim,
            kernel_head_dim,
            stages,
        })
    }

    /// `xs` `[N, D]` → `[N, D]`; `cos`/`sin` `[N, kernel_head_dim/2]` f32 (rotary in f32, then cast back).
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, plan: &AttentionPlan) -> Result<Tensor> {
        let [qkv, rope, attn, proj] = &self.stages;
        let qkv = qkv.run(|| self.qkv.forward(xs))?;
        let out = attention(&qkv, self.heads, self.heads, cos, sin, None, plan, [rope, attn])?;
        Ok(proj.run(|| self.proj.forward(&out))?)
    }
}

struct VisionBlock {
    norm1: LayerNorm,
    norm2: LayerNorm,
    attn: VisionAttention,
    mlp: Mlp,
    add_norm: Stage,
}

/// `Qwen3VLVisionPatchMerger`: 2×2 neighbouring patches (consecutive rows, thanks to the merge-block order of
/// the preprocessing) → one token of the language model's width.
struct PatchMerger {
    norm: LayerNorm,
    /// Whether the norm runs after the 2×2 shuffle, over `4·D` (the DeepStack mergers), or before it, per patch.
    postshuffle: bool,
    mlp: Mlp,
    unit: usize,
}

impl PatchMerger {
    fn new(v: &VisionConfig, postshuffle: bool, vb: Weights, stages: [Stage; 3]) -> Result<Self> {
        let unit = v.spatial_merge_size * v.spatial_merge_size;
        let wide = v.hidden_size * unit;
        Ok(Self {
            norm: LayerNorm::new(if postshuffle { wide } else { v.hidden_size }, EPS, vb.pp("norm"))?,
            postshuffle,
            // `nn.GELU()`: the exact erf form, unlike the blocks' tanh approximation.
            mlp: Mlp::new(
                (wide, wide, v.out_hidden_size),
                ["linear_fc1", "linear_fc2"],
                Activation::GeluErf,
                &vb,
                stages,
            )?,
            unit,
        })
    }

    /// `[N, D]` patches → `[N/4, H]` tokens; `pending` is the residual add the last block left for the norm.
    fn forward(&self, xs: &Tensor, pending: Option<&Tensor>) -> Result<Tensor> {
        let (n, d) = xs.dims2()?;
        let shuffled = if self.postshuffle {
            let full = match pending {
                Some(p) => (xs + p)?,
                None => xs.clone(),
            };
            self.norm.forward(&full.reshape((n / self.unit, self.unit * d))?)?
        } else {
            self.norm.add_forward(xs, pending)?.1.reshape((n / self.unit, self.unit * d))?
        };
        Ok(self.mlp.forward(&shuffled)?)
    }
}

struct TowerStages {
    patch_embed: Stage,
    position_table: Stage,
    rotary_tables: Stage,
    attention_plan: Stage,
}

/// The Qwen3-VL vision transformer (`visual.*`).
pub struct VisionModel {
    /// Conv3d as a Linear: `[D, C·T·P·P]` with its bias.
    patch_embed: Linear,
    /// Learned positions `[side², D]`.
    pos_embed: Tensor,
    side: usize,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    /// `(block index, merger)`: the block whose output feeds each DeepStack merger, in feature order.
    deepstack: Vec<(usize, PatchMerger)>,
    rope: VisionRope,
    merge: usize,
    ops: Ops,
    profiling: Profiling,
    stages: TowerStages,
}

impl VisionModel {
    /// Loads `visual.*` of a tower configured by `v`; with `deepstack` false (Qwen3.5, whose tower has none) the
    /// DeepStack mergers are not loaded.
    pub(crate) fn new(v: &VisionConfig, deepstack: bool, vb: Weights) -> Result<Self> {
        let d = v.hidden_size;
        let per_patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
        let pe = vb.pp("patch_embed.proj");
        let weight = pe.get(&[d, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size], "weight")?;
        let patch_embed = Linear::from_parts(weight.reshape((d, per_patch))?, Some(pe.get(&[d], "bias")?), vb.ops())?;
        let pos_embed = vb.pp("pos_embed").get(&[v.num_position_embeddings, d], "weight")?;
        let act = Activation::from_name(&v.hidden_act).unwrap_or(Activation::GeluTanh);
        let p = vb.profiling();
        let blocks = (0..v.depth)
            .map(|i| {
                let vb = vb.pp("blocks").pp(i);
                let mlp_stages = [stage!(p, "vision.mlp_fc1"), stage!(p, "vision.gelu"), stage!(p, "vision.mlp_fc2")];
                Ok(VisionBlock {
                    norm1: LayerNorm::new(d, EPS, vb.pp("norm1"))?,
                    norm2: LayerNorm::new(d, EPS, vb.pp("norm2"))?,
                    attn: VisionAttention::new(
                        d,
                        v.num_heads,
                        &vb,
                        [
                            stage!(p, "vision.qkv"),
                            stage!(p, "vision.rope"),
                            stage!(p, "vision.attention"),
                            stage!(p, "vision.proj"),
                        ],
                    )?,
                    mlp: Mlp::new(
                        (d, v.intermediate_size, d),
                        ["mlp.linear_fc1", "mlp.linear_fc2"],
                        act,
                        &vb,
                        mlp_stages,
                    )?,
                    add_norm: stage!(p, "vision.add_norm"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let merger_stages =
            || [stage!(p, "vision.merger_fc1"), stage!(p, "vision.merger_gelu"), stage!(p, "vision.merger_fc2")];
        let merger = PatchMerger::new(v, false, vb.pp("merger"), merger_stages())?;
        let deepstack = if deepstack {
            v.deepstack_visual_indexes
                .iter()
                .enumerate()
                .map(|(k, &block)| {
                    Ok((block, PatchMerger::new(v, true, vb.pp("deepstack_merger_list").pp(k), merger_stages())?))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        Ok(Self {
            patch_embed,
            pos_embed,
            side,
            blocks,
            merger,
            deepstack,
            rope: VisionRope::new(v.head_dim(), v.rope_theta),
            merge: v.spatial_merge_size,
            ops: vb.ops().clone(),
            profiling: p.clone(),
            stages: TowerStages {
                patch_embed: stage!(p, "vision.patch_embed"),
                position_table: stage!(p, "vision.position_table"),
                rotary_tables: stage!(p, "vision.rotary_tables"),
                attention_plan: stage!(p, "vision.attention_plan"),
            },
        })
    }

    /// The learned position table resampled to every patch of these grids `[ΣP, D]` (f32 products of the
    /// table's rows and f32 weights, summed in f32, cast to the model dtype: `Qwen3VLVisionModel.forward`).
    fn position_embedding(&self, grids: &[ImageGrid], device: &Device) -> Result<Tensor> {
        let (index, weights) = bilinear_taps(grids, self.merge, self.side);
        let n = weights.len() / 4;
        let index = Tensor::from_vec(index, 4 * n, device)?;
        let weights = Tensor::from_vec(weights, (n, 4, 1), device)?;
        let d = self.pos_embed.dim(1)?;
        let rows = self.pos_embed.index_select(&index, 0)?.to_dtype(DType::F32)?.reshape((n, 4, d))?;
        Ok(rows.broadcast_mul(&weights)?.sum(1)?.to_dtype(self.pos_embed.dtype())?)
    }

    /// The whole tower: `pixel_values` `[ΣP, C·T·P·P]` of images with these grids → visual tokens `[ΣT, H]` and
    /// the DeepStack features (same shape each), raster order per image, images concatenated.
    ///
    /// Taps: `vision.patch_embed`, `vision.pos_embed`, `vision.block0`, `vision.deepstack.{k}`, `vision.output`.
    pub(crate) fn forward(&self, pixel_values: &Tensor, grids: &[ImageGrid], pace: &mut Pace) -> Result<Visual> {
        let device = pixel_values.device();
        let st = &self.stages;
        let tap = |name: &str, t: &Tensor| self.profiling.tap(|| format!("vision.{name}"), t);
        let xs = st.patch_embed.run(|| self.patch_embed.forward(&pixel_values.to_dtype(self.pos_embed.dtype())?))?;
        tap("patch_embed", &xs);
        let pos = st.position_table.run(|| self.position_embedding(grids, device))?;
        tap("pos_embed", &pos);
        let mut xs = (xs + pos)?;
        let positions = patch_positions(grids, self.merge);
        let attn = &self.blocks[0].attn;
        let (cos, sin) = st.rotary_tables.run(|| {
            let (cos, sin) = self.rope.tables(positions.into_iter(), device)?;
            let pad = (attn.kernel_head_dim - attn.head_dim) / 2;
            if pad == 0 {
                return Ok::<_, candle_core::Error>((cos, sin));
            }
            // Padded slots rotate zeros with each other: any angle will do (cos 1, sin 0).
            let ones = Tensor::ones((cos.dim(0)?, pad), DType::F32, device)?;
            Ok((Tensor::cat(&[&cos, &ones], 1)?, Tensor::cat(&[&sin, &ones.zeros_like()?], 1)?))
        })?;
        // Each frame of each image is one attention segment (`get_vision_cu_seqlens`).
        let mut cu_seqlens = vec![0usize];
        for g in grids {
            for _ in 0..g.t {
                cu_seqlens.push(cu_seqlens.last().copied().unwrap_or(0) + g.h * g.w);
            }
        }
        let (heads, width) = (attn.heads, attn.kernel_head_dim);
        let plan = st.attention_plan.run(|| {
            let plan = AttentionPlan::new(&self.ops, &cu_seqlens, heads, heads, width, false, device)?;
            Ok::<_, candle_core::Error>(plan.with_scale(1.0 / (attn.head_dim as f64).sqrt()))
        })?;
        let mut pending: Option<Tensor> = None;
        let mut features = Vec::with_capacity(self.deepstack.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let norms = [&block.norm1, &block.norm2];
            let (h, delta) = pre_norm_block(&xs, pending.as_ref(), norms, &block.mlp, &block.add_norm, |a| {
                block.attn.forward(a, &cos, &sin, &plan)
            })?;
            (xs, pending) = (h, Some(delta));
            pace.layer_done()?;
            let taps_block0 = i == 0 && self.profiling.tapping();
            let feeds: Vec<&PatchMerger> = self.deepstack.iter().filter(|(b, _)| *b == i).map(|(_, m)| m).collect();
            if feeds.is_empty() && !taps_block0 {
                continue;
            }
            // This block's output is needed whole: take the pending residual add now.
            if let Some(p) = pending.take() {
                xs = (xs + p)?;
            }
            if taps_block0 {
                tap("block0", &xs);
            }
            for merger in feeds {
                features.push(merger.forward(&xs, None)?);
            }
        }
        for (k, f) in features.iter().enumerate() {
            tap(&format!("deepstack.{k}"), f);
        }
        let tokens = self.merger.forward(&xs, pending.as_ref())?;
        tap("output", &tokens);
        Ok(Visual { tokens, deepstack: features })
    }
}

/// The 4 table rows and f32 weights of every patch's bilinear sample of a `side × side` table
/// (`get_vision_interpolation_indices_and_weights` with `mode="bilinear"`, `align_corners=True`, border
/// clamping), patches in merge-block order. Returns `(rows [4·ΣP], weights [4·ΣP])`, taps in the order
/// (r0,c0), (r0,c1), (r1,c0), (r1,c1).
pub(crate) fn bilinear_taps(grids: &[ImageGrid], merge: usize, side: usize) -> (Vec<u32>, Vec<f32>) {
    // Per axis: src = i·(side−1)/max(size−1, 1) in f32; taps floor and floor+1 clamped to the table; weight of a
    // tap = max(1 − |src − floor − offset|, 0), computed in that order as the reference does.
    let axis = |i: usize, size: usize| -> [(u32, f32); 2] {
        let src = (i as f32 * (side - 1) as f32) / (size.saturating_sub(1).max(1)) as f32;
        let floor = src.floor();
        [0.0f32, 1.0].map(|off| {
            let tap = ((floor + off) as usize).min(side - 1) as u32;
            let w = (1.0 - ((src - floor) - off).abs()).max(0.0);
            (tap, w)
        })
    };
    let positions = patch_positions(grids, merge);
    let mut sizes = Vec::with_capacity(positions.len());
    for g in grids {
        sizes.extend(std::iter::repeat_n((g.h, g.w), g.t * g.h * g.w));
    }
    let mut index = Vec::with_capacity(4 * positions.len());
    let mut weights = Vec::with_capacity(4 * positions.len());
    for (&(r, c), &(h, w)) in positions.iter().zip(&sizes) {
        let (rows, cols) = (axis(r, h), axis(c, w));
        for (tr, wr) in rows {
            for (tc, wc) in cols {
                index.push(tr * side as u32 + tc);
                weights.push(wr * wc);
            }
        }
    }
    (index, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid the size of the table samples it exactly: one weight 1 on the patch's own row.
    #[test]
    fn a_grid_of_the_table_size_samples_its_own_rows() {
        let (index, weights) = bilinear_taps(&[ImageGrid { t: 1, h: 4, w: 4 }], 2, 4);
        // Merge-block order: first block = patches (0,0), (0,1), (1,0), (1,1).
        let own: Vec<u32> =
            index.chunks(4).zip(weights.chunks(4)).map(|(i, w)| i[w.iter().position(|&x| x == 1.0).unwrap()]).collect();
        assert_eq!(&own[..4], &[0, 1, 4, 5]);
        assert!(weights.chunks(4).all(|w| w.iter().sum::<f32>() == 1.0));
    }

    /// A 2×2 grid on an 8×8 table takes the four corners (align_corners: ends map to ends).
    #[test]
    fn align_corners_maps_ends_to_ends() {
        let (index, weights) = bilinear_taps(&[ImageGrid { t: 1, h: 2, w: 2 }], 2, 8);
        let own: Vec<u32> =
            index.chunks(4).zip(weights.chunks(4)).map(|(i, w)| i[w.iter().position(|&x| x == 1.0).unwrap()]).collect();
        assert_eq!(own, [0, 7, 56, 63]);
    }
}
