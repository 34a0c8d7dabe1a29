//! Language model (fact sheet §5): Qwen2 decoder layers with 3-stream M-RoPE (contiguous sections) over packed
//! sequences.

use candle_core::{Module, Tensor};

use super::Config;
use crate::error::Result;
use crate::nn::{AddNorm, AttentionPlan, GatedMlp, Linear, RmsNorm, attention, pre_norm_block};
use crate::ops::Ops;
use crate::pace::Pace;
use crate::profile::{Profiling, Stage, stage};
use crate::rope::MRope;
use crate::weights::Weights;

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
    rope: MRope,
    ops: Ops,
    profiling: Profiling,
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
        let out = attention(&qkv, self.heads, self.kv_heads, cos, sin, None, plan, [rope, attn])?;
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
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            rope: MRope::sectioned(hd, t.rope_theta, &t.mrope_section),
            ops: vb.ops().clone(),
            profiling: p.clone(),
            rotary_tables: stage!(p, "text.rotary_tables"),
            attention_plan: stage!(p, "text.attention_plan"),
        })
    }

    /// Token embeddings `[N, D]` of `ids`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let idx = Tensor::from_vec(ids.to_vec(), ids.len(), self.embed_tokens.device())?;
        Ok(self.embed_tokens.index_select(&idx, 0)?)
    }

    /// Decoder stack + final norm: `embeds` `[N, D]` of packed sequences (sequence `i` = rows
    /// `cu_seqlens[i]..cu_seqlens[i+1]`), positions `[3][N]` → `last_hidden_state` `[N, D]`.
    pub fn forward(&self, embeds: &Tensor, positions: &[Vec<u32>; 3], cu_seqlens: &[usize]) -> Result<Tensor> {
        self.forward_paced(embeds, positions, cu_seqlens, &mut Pace::none())
    }

    /// [`Self::forward`], calling `pace` after every layer.
    pub(crate) fn forward_paced(
        &self,
        embeds: &Tensor,
        positions: &[Vec<u32>; 3],
        cu_seqlens: &[usize],
        pace: &mut Pace,
    ) -> Result<Tensor> {
        let (cos, sin) = self.rotary_tables.run(|| self.rope.tables(positions, embeds.dtype(), embeds.device()))?;
        let (heads, kv_heads) = self.layers.first().map_or((1, 1), |l| (l.self_attn.heads, l.self_attn.kv_heads));
        let head_dim = self.rope.rot_dim();
        let plan = self
            .attention_plan
            .run(|| AttentionPlan::new(&self.ops, cu_seqlens, heads, kv_heads, head_dim, true, embeds.device()))?;
        let (mut xs, mut pending) = (embeds.clone(), None);
        for (l, layer) in self.layers.iter().enumerate() {
            let norms = [&layer.input_layernorm, &layer.post_attention_layernorm];
            let (h, delta) = pre_norm_block(&xs, pending.as_ref(), norms, &layer.mlp, &layer.add_norm, |a| {
                layer.self_attn.forward(a, &cos, &sin, &plan)
            })?;
            (xs, pending) = (h, Some(delta));
            pace.layer_done()?;
            if self.profiling.tapping() {
                self.profiling.tap(|| format!("text.layer.{l}"), &(&xs + pending.as_ref().expect("just set"))?);
            }
        }
        Ok(self.norm.add_forward(&xs, pending.as_ref())?.1)
    }
}
