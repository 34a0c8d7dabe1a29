//! The Qwen3-VL language model (`Qwen3VLTextModel`): Qwen3 decoder layers — no projection biases, a per-head
//! RMSNorm of the queries and keys before the rotary, interleaved M-RoPE — over packed sequences, with the
//! DeepStack features added to the visual positions after the first layers.

use candle_core::{Module, Tensor};

use super::Config;
use crate::error::Result;
use crate::model::DeepStack;
use crate::nn::{AddNorm, AttentionPlan, GatedMlp, Linear, QkNorm, RmsNorm, attention, pre_norm_block};
use crate::ops::Ops;
use crate::pace::Pace;
use crate::profile::{Profiling, Stage, stage};
use crate::rope::MRope;
use crate::weights::Weights;

struct Attention {
    /// `q_proj`, `k_proj`, `v_proj` as one GEMM: `[N, D] → [N, (Hq + 2·Hkv)·head_dim]`.
    qkv: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    /// The qkv GEMM, q/k norm + rotary, attention and `o_proj` GEMM.
    stages: [Stage; 4],
}

impl Attention {
    fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let (d, hd, heads, kv_heads) = (t.hidden_size, t.head_dim, t.num_attention_heads, cfg.kv_heads());
        let bias = t.attention_bias;
        let part = |name: &str, h: usize| -> Result<(Tensor, Option<Tensor>)> {
            let w = vb.pp(name).get(&[h * hd, d], "weight")?;
            let b = if bias { Some(vb.pp(name).get(&[h * hd], "bias")?) } else { None };
            Ok((w, b))
        };
        let ((qw, qb), (kw, kb), (vw, vb_)) =
            (part("q_proj", heads)?, part("k_proj", kv_heads)?, part("v_proj", kv_heads)?);
        let qkv_bias = match (qb, kb, vb_) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[&q, &k, &v], 0)?),
            _ => None,
        };
        let qkv = Linear::from_parts(Tensor::cat(&[&qw, &kw, &vw], 0)?, qkv_bias, vb.ops())?;
        let p = vb.profiling();
        Ok(Self {
            qkv,
            o_proj: Linear::new(heads * hd, d, bias, vb.pp("o_proj"))?,
            q_norm: RmsNorm::new(hd, t.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(hd, t.rms_norm_eps, vb.pp("k_norm"))?,
            heads,
            kv_heads,
            stages: [
                stage!(p, "text.qkv"),
                stage!(p, "text.rope"),
                stage!(p, "text.attention"),
                stage!(p, "text.o_proj"),
            ],
        })
    }

    /// `[N, D] → [N, D]`; `cos`/`sin` `[N, head_dim/2]` in the model dtype (the reference casts them before
    /// rotating).
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, plan: &AttentionPlan) -> Result<Tensor> {
        let [qkv_stage, rope, attn, o_proj] = &self.stages;
        let qkv = qkv_stage.run(|| self.qkv.forward(xs))?;
        let norm = QkNorm { q: &self.q_norm, k: &self.k_norm };
        let out = attention(&qkv, self.heads, self.kv_heads, cos, sin, Some(norm), plan, [rope, attn])?;
        Ok(o_proj.run(|| self.o_proj.forward(&out))?)
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    self_attn: Attention,
    mlp: GatedMlp,
    add_norm: Stage,
}

/// The Qwen3-VL language model (`language_model.*`).
pub struct TextModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rope: MRope,
    head_dim: usize,
    ops: Ops,
    profiling: Profiling,
    rotary_tables: Stage,
    attention_plan: Stage,
    deepstack: Stage,
}

impl TextModel {
    /// Loads `language_model.*`.
    pub(crate) fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let d = t.hidden_size;
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
                    self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
                    mlp: GatedMlp::new(d, t.intermediate_size, false, vb.pp("mlp"), mlp_stages)?,
                    add_norm: stage!(p, "text.add_norm"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::new(d, t.rms_norm_eps, vb.pp("norm"))?,
            rope: MRope::interleaved(t.head_dim, t.rope_theta, &t.mrope_section),
            head_dim: t.head_dim,
            ops: vb.ops().clone(),
            profiling: p.clone(),
            rotary_tables: stage!(p, "text.rotary_tables"),
            attention_plan: stage!(p, "text.attention_plan"),
            deepstack: stage!(p, "text.deepstack"),
        })
    }

    /// Token embeddings `[N, D]` of `ids`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let idx = Tensor::from_vec(ids.to_vec(), ids.len(), self.embed_tokens.device())?;
        Ok(self.embed_tokens.index_select(&idx, 0)?)
    }

    /// Decoder stack + final norm: `embeds` `[N, D]` of packed sequences (sequence `i` = rows
    /// `cu_seqlens[i]..cu_seqlens[i+1]`), positions `[3][N]` → `last_hidden_state` `[N, D]`. DeepStack feature
    /// `k` is added (in the model dtype) to the visual rows of layer `k`'s output, as `_deepstack_process` does.
    ///
    /// Taps: `text.layer.{l}` (each layer's output, after its DeepStack add).
    pub(crate) fn forward(
        &self,
        embeds: &Tensor,
        positions: &[Vec<u32>; 3],
        cu_seqlens: &[usize],
        deepstack: Option<DeepStack>,
        pace: &mut Pace,
    ) -> Result<Tensor> {
        let (cos, sin) = self.rotary_tables.run(|| self.rope.tables(positions, embeds.dtype(), embeds.device()))?;
        let (heads, kv_heads) = self.layers.first().map_or((1, 1), |l| (l.self_attn.heads, l.self_attn.kv_heads));
        let plan = self
            .attention_plan
            .run(|| AttentionPlan::new(&self.ops, cu_seqlens, heads, kv_heads, self.head_dim, true, embeds.device()))?;
        let features = deepstack.as_ref().map_or(&[][..], |d| d.features);
        let (mut xs, mut pending) = (embeds.clone(), None);
        for (l, layer) in self.layers.iter().enumerate() {
            let norms = [&layer.input_layernorm, &layer.post_attention_layernorm];
            let (h, delta) = pre_norm_block(&xs, pending.as_ref(), norms, &layer.mlp, &layer.add_norm, |a| {
                layer.self_attn.forward(a, &cos, &sin, &plan)
            })?;
            (xs, pending) = (h, Some(delta));
            pace.layer_done()?;
            let inject = deepstack.as_ref().zip(features.get(l));
            if inject.is_none() && !self.profiling.tapping() {
                continue;
            }
            if let Some(p) = pending.take() {
                xs = (xs + p)?;
            }
            if let Some((ds, feature)) = inject {
                xs = self.deepstack.run(|| xs.index_add(ds.rows, &feature.to_dtype(xs.dtype())?, 0))?;
            }
            self.profiling.tap(|| format!("text.layer.{l}"), &xs);
        }
        Ok(self.norm.add_forward(&xs, pending.as_ref())?.1)
    }
}
