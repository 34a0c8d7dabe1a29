//! Language model (fact sheet §5): Qwen2 decoder layers with 3-stream M-RoPE over packed sequences.

use candle_core::{DType, Device, Module, Tensor};

use crate::config::Config;
use crate::error::Result;
use crate::nn::{AttentionPlan, GatedMlp, Linear, RmsNorm, attention, pre_norm_block};
use crate::ops::Ops;
use crate::preprocess::ImageGrid;
use crate::profile::{Stage, stage};
use crate::weights::Weights;

/// M-RoPE positions `[3][L]` (t, h, w streams) of one document (§5.2): text tokens advance all streams
/// together; an image group of `mh × mw` tokens gets `(s, s+r, s+c)`, after which the counter moves on by
/// `max(mh, mw)`.
pub fn document_positions(ids: &[u32], image_token_id: u32, grids: &[ImageGrid], merge: usize) -> [Vec<u32>; 3] {
    let mut pos: [Vec<u32>; 3] = Default::default();
    let mut s = 0u32;
    let mut grids = grids.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != image_token_id {
            for p in &mut pos {
                p.push(s);
            }
            s += 1;
            i += 1;
            continue;
        }
        let run = ids[i..].iter().take_while(|&&t| t == image_token_id).count();
        let g = grids.next().copied().unwrap_or(ImageGrid { t: 1, h: merge, w: run * merge });
        let (mh, mw) = (g.h / merge, g.w / merge);
        for t in 0..g.t {
            for r in 0..mh {
                for c in 0..mw {
                    pos[0].push(s + t as u32);
                    pos[1].push(s + r as u32);
                    pos[2].push(s + c as u32);
                }
            }
        }
        s += mh.max(mw) as u32;
        i += run;
    }
    pos
}

/// Query positions: `0..L` on all three streams (§5.2; never shifted, since queries are not padded).
pub fn query_positions(len: usize) -> [Vec<u32>; 3] {
    let p: Vec<u32> = (0..len as u32).collect();
    [p.clone(), p.clone(), p]
}

struct Attention {
    /// `q_proj`, `k_proj`, `v_proj` as one GEMM: `[N, D] → [N, (Hq + 2·Hkv)·head_dim]`.
    qkv: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    /// The qkv GEMM, rotary, attention and `o_proj` GEMM.
    stages: [Stage; 4],
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    self_attn: Attention,
    mlp: GatedMlp,
    /// The residual add + norm steps of the layer.
    add_norm: Stage,
}

/// The Qwen2.5-VL language model (`language_model.*`).
pub struct TextModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    inv_freq: Vec<f32>,
    mrope_section: Vec<usize>,
    ops: Ops,
    rotary_tables: Stage,
    attention_plan: Stage,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj` (biased) fused into one projection, and `o_proj`.
    fn new(d: usize, heads: usize, kv_heads: usize, head_dim: usize, vb: Weights) -> Result<Self> {
        let part = |name: &str, h: usize| -> Result<(Tensor, Tensor)> {
            Ok((vb.pp(name).get(&[h * head_dim, d], "weight")?, vb.pp(name).get(&[h * head_dim], "bias")?))
        };
        let ((qw, qb), (kw, kb), (vw, vb_)) =
            (part("q_proj", heads)?, part("k_proj", kv_heads)?, part("v_proj", kv_heads)?);
        let bias = Tensor::cat(&[&qb, &kb, &vb_], 0)?;
        let qkv = Linear::from_parts(Tensor::cat(&[&qw, &kw, &vw], 0)?, Some(bias), vb.ops())?;
        let o_proj = Linear::new(heads * head_dim, d, false, vb.pp("o_proj"))?;
        let p = vb.profiling();
        let stages =
            [stage!(p, "text.qkv"), stage!(p, "text.rope"), stage!(p, "text.attention"), stage!(p, "text.o_proj")];
        Ok(Self { qkv, o_proj, heads, kv_heads, stages })
    }

    /// `[N, D] → [N, D]`; `cos`/`sin` `[N, head_dim/2]` in the model dtype (rotary in bf16, trap 16).
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, plan: &AttentionPlan) -> Result<Tensor> {
        let [qkv_stage, rope, attn, o_proj] = &self.stages;
        let qkv = qkv_stage.run(|| self.qkv.forward(xs))?;
        let out = attention(&qkv, self.heads, self.kv_heads, cos, sin, plan, [rope, attn])?;
        Ok(o_proj.run(|| self.o_proj.forward(&out))?)
    }
}

impl TextModel {
    /// Loads `language_model.*`.
    pub(crate) fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let (d, hd) = (t.hidden_size, cfg.text_head_dim());
        let embed_tokens = vb.pp("embed_tokens").get(&[t.vocab_size, d], "weight")?;
        let p = vb.profiling();
        let layers = (0..t.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp("layers").pp(i);
                let mlp_stages =
                    [stage!(p, "text.mlp_gate_up"), stage!(p, "text.silu_mul"), stage!(p, "text.mlp_down")];
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::new(d, t.rms_norm_eps, vb.pp("input_layernorm"))?,
                    post_attention_layernorm: RmsNorm::new(d, t.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
                    self_attn: Attention::new(d, t.num_attention_heads, t.num_key_value_heads, hd, vb.pp("self_attn"))?,
                    mlp: GatedMlp::new(d, t.intermediate_size, false, vb.pp("mlp"), mlp_stages)?,
                    add_norm: stage!(p, "text.add_norm"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(d, t.rms_norm_eps, vb.pp("norm"))?;
        let theta = t.rope_theta as f32;
        let inv_freq = (0..hd).step_by(2).map(|i| 1.0f32 / theta.powf(i as f32 / hd as f32)).collect();
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            inv_freq,
            mrope_section: t.mrope_section.clone(),
            ops: vb.ops().clone(),
            rotary_tables: stage!(p, "text.rotary_tables"),
            attention_plan: stage!(p, "text.attention_plan"),
        })
    }

    /// Token embeddings `[N, D]` of `ids`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let idx = Tensor::from_vec(ids.to_vec(), ids.len(), self.embed_tokens.device())?;
        Ok(self.embed_tokens.index_select(&idx, 0)?)
    }

    /// M-RoPE `cos`, `sin` `[N, head_dim/2]` (§5.3): frequency slot `i` takes the angle of the stream its
    /// section names; computed in f32, cast to `dtype`.
    fn rotary(&self, positions: &[Vec<u32>; 3], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let n = positions[0].len();
        let half = self.inv_freq.len();
        let mut stream = Vec::with_capacity(half);
        for (s, &len) in self.mrope_section.iter().enumerate() {
            stream.extend(std::iter::repeat_n(s, len));
        }
        let mut angles = Vec::with_capacity(n * half);
        #[allow(clippy::needless_range_loop)] // `tok` indexes whichever of the three streams each slot names
        for tok in 0..n {
            for (i, f) in self.inv_freq.iter().enumerate() {
                angles.push(positions[stream[i]][tok] as f32 * f);
            }
        }
        let theta = Tensor::from_vec(angles, (n, half), device)?;
        Ok((theta.cos()?.to_dtype(dtype)?, theta.sin()?.to_dtype(dtype)?))
    }

    /// Decoder stack + final norm: `embeds` `[N, D]` of packed sequences (sequence `i` = rows
    /// `cu_seqlens[i]..cu_seqlens[i+1]`), positions `[3][N]` → `last_hidden_state` `[N, D]`.
    pub fn forward(&self, embeds: &Tensor, positions: &[Vec<u32>; 3], cu_seqlens: &[usize]) -> Result<Tensor> {
        let (cos, sin) = self.rotary_tables.run(|| self.rotary(positions, embeds.dtype(), embeds.device()))?;
        let (heads, kv_heads) = self.layers.first().map_or((1, 1), |l| (l.self_attn.heads, l.self_attn.kv_heads));
        let head_dim = 2 * self.inv_freq.len();
        let plan = self
            .attention_plan
            .run(|| AttentionPlan::new(&self.ops, cu_seqlens, heads, kv_heads, head_dim, true, embeds.device()))?;
        let (mut xs, mut pending) = (embeds.clone(), None);
        for layer in &self.layers {
            let norms = [&layer.input_layernorm, &layer.post_attention_layernorm];
            let (h, delta) = pre_norm_block(&xs, pending.as_ref(), norms, &layer.mlp, &layer.add_norm, |a| {
                layer.self_attn.forward(a, &cos, &sin, &plan)
            })?;
            (xs, pending) = (h, Some(delta));
        }
        Ok(self.norm.add_forward(&xs, pending.as_ref())?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fact sheet §5.2: 1024×768 page (mh 24, mw 32): prefix 0..3, image t=4, h=4+r, w=4+c, suffix 36..42.
    #[test]
    fn document_positions_follow_fact_sheet() {
        let img = 9u32;
        let mut ids = vec![1, 2, 3, 4];
        ids.extend(std::iter::repeat_n(img, 768));
        ids.extend([5, 6, 7, 8, 9 + 1, 11, 12]);
        let p = document_positions(&ids, img, &[ImageGrid { t: 1, h: 48, w: 64 }], 2);
        assert_eq!(&p[0][..4], &[0, 1, 2, 3]);
        assert_eq!(p[0][4], 4);
        assert_eq!((p[1][4 + 33], p[2][4 + 33]), (4 + 1, 4 + 1));
        assert_eq!(&p[2][4 + 768..], &[36, 37, 38, 39, 40, 41, 42]);
        assert_eq!(p[0].len(), 779);
    }
}
