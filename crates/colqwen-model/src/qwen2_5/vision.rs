//! Vision tower (fact sheet §4): patch embedding, window permutation, 2D rotary, window/full attention
//! blocks, merger. Works on the patches of several images packed into one `[ΣP, 1176]` matrix.

use candle_core::{Device, Module, Tensor};

use super::Config;
use crate::error::Result;
use crate::nn::{AddNorm, AttentionPlan, GatedMlp, Linear, RmsNorm, attention, pre_norm_block};
use crate::ops::Ops;
use crate::pace::Pace;
use crate::preprocess::ImageGrid;
use crate::profile::{Profiling, Stage, stage};
use crate::rope::{VisionRope, patch_positions};
use crate::weights::Weights;

/// Window layout of a packed batch of images (§4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    /// Merged-token order used inside the tower: `window_index[k]` is the raster merged-token id placed at
    /// position `k` (ids offset per image). Length `ΣT`.
    pub window_index: Vec<usize>,
    /// Patch offsets of the windows, duplicates removed (`cu_window_seqlens`).
    pub cu_window_seqlens: Vec<usize>,
    /// Patch offsets of whole images (`cu_seqlens`), for the full-attention blocks.
    pub cu_seqlens: Vec<usize>,
}

impl WindowLayout {
    /// `get_vision_window_index` of the reference: windows of `win × win` merged tokens in raster order,
    /// cells in raster order inside each window, padding cells dropped.
    pub fn new(grids: &[ImageGrid], merge: usize, win: usize) -> Self {
        let unit = merge * merge;
        let mut window_index = Vec::new();
        let mut cu_window_seqlens = vec![0usize];
        let mut cu_seqlens = vec![0usize];
        let mut base = 0usize;
        for g in grids {
            let (mh, mw) = (g.h / merge, g.w / merge);
            // pad = win − (m mod win): a whole empty window row/column when m is a multiple of win (trap 11).
            let (nwh, nww) = ((mh + win - mh % win) / win, (mw + win - mw % win) / win);
            for t in 0..g.t {
                for wr in 0..nwh {
                    for wc in 0..nww {
                        let mut cells = 0;
                        for r in wr * win..((wr + 1) * win).min(mh) {
                            for c in wc * win..((wc + 1) * win).min(mw) {
                                window_index.push(base + t * mh * mw + r * mw + c);
                                cells += 1;
                            }
                        }
                        let last = *cu_window_seqlens.last().expect("starts with 0");
                        if cells > 0 {
                            cu_window_seqlens.push(last + cells * unit);
                        }
                    }
                }
                let last = *cu_seqlens.last().expect("starts with 0");
                cu_seqlens.push(last + g.h * g.w);
            }
            base += g.t * mh * mw;
        }
        Self { window_index, cu_window_seqlens, cu_seqlens }
    }

    /// Inverse permutation (`argsort(window_index)`), used to restore raster order after the merger (§4.5).
    pub fn reverse_index(&self) -> Vec<usize> {
        let mut rev = vec![0usize; self.window_index.len()];
        for (pos, &id) in self.window_index.iter().enumerate() {
            rev[id] = pos;
        }
        rev
    }
}

fn index_tensor(idx: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, idx.len(), device)?)
}

/// Stages of one attention layer (the attention stage depends on the block kind: window or full).
struct AttentionStages {
    qkv: Stage,
    rope: Stage,
    window: Stage,
    full: Stage,
    proj: Stage,
}

struct VisionAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    stages: AttentionStages,
}

struct VisionBlock {
    norm1: RmsNorm,
    norm2: RmsNorm,
    attn: VisionAttention,
    mlp: GatedMlp,
    /// The residual add + norm steps of the block.
    add_norm: Stage,
}

struct PatchMerger {
    ln_q: RmsNorm,
    mlp0: Linear,
    mlp2: Linear,
    unit: usize,
    stage: Stage,
}

/// Stages of the tower outside its blocks.
struct TowerStages {
    patch_embed: Stage,
    rotary_tables: Stage,
    attention_plan: Stage,
}

/// The Qwen2.5-VL vision transformer (`visual.*`).
pub struct VisionModel {
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    fullatt: Vec<usize>,
    rope: VisionRope,
    merge: usize,
    window: usize,
    ops: Ops,
    profiling: Profiling,
    stages: TowerStages,
}

impl VisionAttention {
    /// `xs`: `[N, D]` → `[N, D]`; `cos`/`sin`: `[N, head_dim/2]` f32 (rotary in f32, trap 12).
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, plan: &AttentionPlan, full: bool) -> Result<Tensor> {
        let st = &self.stages;
        let qkv = st.qkv.run(|| self.qkv.forward(xs))?;
        let attn = if full { &st.full } else { &st.window };
        let out = attention(&qkv, self.heads, self.heads, cos, sin, None, plan, [&st.rope, attn])?;
        Ok(st.proj.run(|| self.proj.forward(&out))?)
    }
}

impl VisionModel {
    /// Loads `visual.*`.
    pub(crate) fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let v = &cfg.vision;
        let d = v.hidden_size;
        let head_dim = cfg.vision_head_dim();
        let per_patch = v.in_chans * v.temporal_patch_size * v.patch_size * v.patch_size;
        // Conv3d with kernel = stride = input: a Linear over the flattened (c, t, y, x) patch (§4.1).
        let patch_embed = vb
            .pp("patch_embed.proj")
            .get(&[d, v.in_chans, v.temporal_patch_size, v.patch_size, v.patch_size], "weight")?
            .reshape((d, per_patch))?;
        let p = vb.profiling();
        let blocks = (0..v.depth)
            .map(|i| {
                let vb = vb.pp("blocks").pp(i);
                let lin = |name: &str, i: usize, o: usize| Linear::new(i, o, true, vb.pp(name));
                let mlp_stages =
                    [stage!(p, "vision.mlp_gate_up"), stage!(p, "vision.silu_mul"), stage!(p, "vision.mlp_down")];
                Ok(VisionBlock {
                    norm1: RmsNorm::new(d, 1e-6, vb.pp("norm1"))?,
                    norm2: RmsNorm::new(d, 1e-6, vb.pp("norm2"))?,
                    attn: VisionAttention {
                        qkv: lin("attn.qkv", d, 3 * d)?,
                        proj: lin("attn.proj", d, d)?,
                        heads: v.num_heads,
                        stages: AttentionStages {
                            qkv: stage!(p, "vision.qkv"),
                            rope: stage!(p, "vision.rope"),
                            window: stage!(p, "vision.attention_window"),
                            full: stage!(p, "vision.attention_full"),
                            proj: stage!(p, "vision.proj"),
                        },
                    },
                    mlp: GatedMlp::new(d, v.intermediate_size, true, vb.pp("mlp"), mlp_stages)?,
                    add_norm: stage!(p, "vision.add_norm"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let unit = v.spatial_merge_size * v.spatial_merge_size;
        let vm = vb.pp("merger");
        let merger = PatchMerger {
            ln_q: RmsNorm::new(d, 1e-6, vm.pp("ln_q"))?,
            mlp0: Linear::new(d * unit, d * unit, true, vm.pp("mlp.0"))?,
            mlp2: Linear::new(d * unit, v.out_hidden_size, true, vm.pp("mlp.2"))?,
            unit,
            stage: stage!(p, "vision.merger"),
        };
        Ok(Self {
            patch_embed,
            blocks,
            merger,
            fullatt: v.fullatt_block_indexes.clone(),
            // 2D rotary: head_dim/2 rotated dims split between rows and columns, θ = 10000 (trap 12, 18).
            rope: VisionRope::new(head_dim, 10_000.0),
            merge: v.spatial_merge_size,
            window: v.window_size / v.spatial_merge_size / v.patch_size,
            ops: vb.ops().clone(),
            profiling: p.clone(),
            stages: TowerStages {
                patch_embed: stage!(p, "vision.patch_embed"),
                rotary_tables: stage!(p, "vision.rotary_tables"),
                attention_plan: stage!(p, "vision.attention_plan"),
            },
        })
    }

    /// Window layout for these grids.
    pub fn layout(&self, grids: &[ImageGrid]) -> WindowLayout {
        WindowLayout::new(grids, self.merge, self.window)
    }

    /// Patch embedding: `[ΣP, 1176]` (any float dtype; cast to the model dtype first, trap 9) → `[ΣP, D]`,
    /// rows in patch order (before the window permutation).
    pub fn embed_patches(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let xs = pixel_values.to_dtype(self.patch_embed.dtype())?;
        Ok(xs.matmul(&self.patch_embed.t()?)?)
    }

    /// Rotary `cos`, `sin` `[ΣP, head_dim/2]` in f32, in window-permuted order.
    fn rotary(&self, grids: &[ImageGrid], layout: &WindowLayout, device: &Device) -> Result<(Tensor, Tensor)> {
        let pos = patch_positions(grids, self.merge);
        let unit = self.merge * self.merge;
        let permuted = layout.window_index.iter().flat_map(|&id| pos[id * unit..(id + 1) * unit].iter().copied());
        let permuted: Vec<_> = permuted.collect();
        Ok(self.rope.tables(permuted.into_iter(), device)?)
    }

    /// Taps: `vision.patch_embed` (patch order), `vision.output`.
    ///
    /// The whole tower: `pixel_values` `[ΣP, 1176]` of the images with these grids → visual tokens
    /// `[ΣT, out_hidden]` in raster order per image, images concatenated.
    pub fn forward(&self, pixel_values: &Tensor, grids: &[ImageGrid]) -> Result<Tensor> {
        self.forward_paced(pixel_values, grids, &mut Pace::none())
    }

    /// [`Self::forward`], calling `pace` after every block.
    pub(crate) fn forward_paced(&self, pixel_values: &Tensor, grids: &[ImageGrid], pace: &mut Pace) -> Result<Tensor> {
        let device = pixel_values.device();
        let layout = self.layout(grids);
        let st = &self.stages;
        let xs = st.patch_embed.run(|| self.embed_patches(pixel_values))?;
        self.profiling.tap(|| "vision.patch_embed".into(), &xs);
        let (n, d) = xs.dims2()?;
        let unit = self.merge * self.merge;
        let groups = index_tensor(&layout.window_index, device)?;
        // Permute whole 2×2 groups into window order (§4.3).
        let mut xs = xs.reshape((n / unit, unit * d))?.index_select(&groups, 0)?.reshape((n, d))?;
        let (cos, sin) = st.rotary_tables.run(|| self.rotary(grids, &layout, device))?;
        let heads = self.blocks.first().map_or(1, |b| b.attn.heads);
        let head_dim = d / heads;
        let (window_plan, full_plan) = st.attention_plan.run(|| {
            let plan = |cu: &[usize]| AttentionPlan::new(&self.ops, cu, heads, heads, head_dim, false, device);
            Ok::<_, candle_core::Error>((plan(&layout.cu_window_seqlens)?, plan(&layout.cu_seqlens)?))
        })?;
        let mut pending = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let full = self.fullatt.contains(&i);
            let plan = if full { &full_plan } else { &window_plan };
            let norms = [&block.norm1, &block.norm2];
            let (h, delta) = pre_norm_block(&xs, pending.as_ref(), norms, &block.mlp, &block.add_norm, |a| {
                block.attn.forward(a, &cos, &sin, plan, full)
            })?;
            (xs, pending) = (h, Some(delta));
            pace.layer_done()?;
        }
        let m = &self.merger;
        let xs = m.stage.run(|| {
            let xs = m.ln_q.add_forward(&xs, pending.as_ref())?.1.reshape((n / m.unit, m.unit * d))?;
            m.mlp2.forward(&m.mlp0.forward(&xs)?.gelu_erf()?)
        })?;
        let rev = index_tensor(&layout.reverse_index(), device)?;
        let out = xs.index_select(&rev, 0)?;
        self.profiling.tap(|| "vision.output".into(), &out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fact sheet §4.3 tiny example: grid (1, 4, 12) → merged 2×6.
    #[test]
    fn window_index_matches_fact_sheet_example() {
        let l = WindowLayout::new(&[ImageGrid { t: 1, h: 4, w: 12 }], 2, 4);
        assert_eq!(l.window_index, [0, 1, 2, 3, 6, 7, 8, 9, 4, 5, 10, 11]);
        assert_eq!(l.cu_window_seqlens, [0, 32, 48]);
        assert_eq!(l.cu_seqlens, [0, 48]);
    }

    /// 768-token page (1, 48, 64): 48 full windows of 64 patches; A4 (1, 64, 46): 48 windows, 8 of 48.
    #[test]
    fn window_counts_match_fact_sheet() {
        let l = WindowLayout::new(&[ImageGrid { t: 1, h: 48, w: 64 }], 2, 4);
        assert_eq!(l.cu_window_seqlens.len() - 1, 48);
        assert!(l.cu_window_seqlens.windows(2).all(|w| w[1] - w[0] == 64));
        let a4 = WindowLayout::new(&[ImageGrid { t: 1, h: 64, w: 46 }], 2, 4);
        let sizes: Vec<usize> = a4.cu_window_seqlens.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(sizes.len(), 48);
        assert_eq!(sizes.iter().filter(|&&s| s == 48).count(), 8);
    }

    #[test]
    fn two_images_offset_ids_and_reverse_is_inverse() {
        let grids = [ImageGrid { t: 1, h: 4, w: 12 }, ImageGrid { t: 1, h: 10, w: 10 }];
        let l = WindowLayout::new(&grids, 2, 4);
        assert_eq!(l.window_index.len(), 12 + 25);
        assert_eq!(l.cu_seqlens, [0, 48, 148]);
        let rev = l.reverse_index();
        for (pos, &id) in l.window_index.iter().enumerate() {
            assert_eq!(rev[id], pos);
        }
    }
}
