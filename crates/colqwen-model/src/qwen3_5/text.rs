//! The Qwen3.5 language model (`Qwen3_5TextModel`) over packed sequences: pre-norm decoder layers whose token
//! mixer is either a Gated DeltaNet (`linear_attn.*`) or gated full attention (`self_attn.*`), each followed
//! by the SwiGLU MLP; zero-centred RMSNorms (`(1 + w)` multiplied in f32 before the one rounding).
//!
//! Gated DeltaNet (transformers 5.17 `Qwen3_5GatedDeltaNet.forward`, no cache): `in_proj_qkv`, `in_proj_z`,
//! `in_proj_b`, `in_proj_a` (one GEMM here), the core of [`super::deltanet`] (causal convolution + SiLU, gates,
//! L2-normalised chunked delta rule in f32), `RMSNormGated(core, z)` per value head — `w·bf16(x·rsqrt(mean x² +
//! ε))`, then `· silu(z)` in f32, one rounding — and `out_proj`. On CUDA in bf16 the core and the gated norm are
//! the kernels of `kernels/colqwen.cu`; elsewhere the core runs on the host.
//!
//! Gated attention (`Qwen3_5Attention`): `q_proj` yields per head `[query (d) | gate (d)]`; the query and key
//! heads get zero-centred RMSNorms, the first `head_dim · partial_rotary_factor` dims of each rotate
//! (interleaved M-RoPE), softmax attention (causal, GQA), then `· sigmoid(gate)` in the model dtype and `o_proj`.

use candle_core::{DType, Device, Module, Tensor};

use super::Config;
use super::config::LayerKind;
use super::deltanet::{self, Heads, Params};
use crate::error::Result;
use crate::nn::{AddNorm, AttentionPlan, GatedMlp, Linear, QkNorm, RmsNorm, attention, pre_norm_block};
use crate::ops::Ops;
use crate::pace::Pace;
use crate::profile::{Profiling, Stage, stage};
use crate::rope::MRope;
use crate::weights::Weights;

/// Gated full attention (`self_attn.*`).
struct GatedAttention {
    /// The query halves of `q_proj`, `k_proj`, `v_proj` as one GEMM: `[N, D] → [N, (Hq + 2·Hkv)·head_dim]`.
    qkv: Linear,
    /// The gate halves of `q_proj`: `[N, D] → [N, Hq·head_dim]`.
    gate: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    heads: usize,
    kv_heads: usize,
    /// The qkv and gate GEMMs, q/k norm + rotary, attention, the output gate and the `o_proj` GEMM.
    stages: [Stage; 5],
}

impl GatedAttention {
    fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let (d, hd, heads, kv) = (t.hidden_size, t.head_dim, t.num_attention_heads, t.num_key_value_heads);
        let bias = t.attention_bias;
        let get = |name: &str, rows: usize| -> Result<(Tensor, Option<Tensor>)> {
            let w = vb.pp(name).get(&[rows, d], "weight")?;
            let b = if bias { Some(vb.pp(name).get(&[rows], "bias")?) } else { None };
            Ok((w, b))
        };
        // q_proj rows are per head [query (hd) | gate (hd)] (`view(..., -1, 2·hd)` then `chunk(2)`).
        let (qg_w, qg_b) = get("q_proj", 2 * heads * hd)?;
        let half = |t: &Tensor, which: usize, tail: &[usize]| -> Result<Tensor> {
            let mut split = vec![heads, 2, hd];
            split.extend_from_slice(tail);
            let mut flat = vec![heads * hd];
            flat.extend_from_slice(tail);
            Ok(t.reshape(split)?.narrow(1, which, 1)?.contiguous()?.reshape(flat)?)
        };
        let (q_w, gate_w) = (half(&qg_w, 0, &[d])?, half(&qg_w, 1, &[d])?);
        let (q_b, gate_b) = match &qg_b {
            Some(b) => (Some(half(b, 0, &[])?), Some(half(b, 1, &[])?)),
            None => (None, None),
        };
        let ((k_w, k_b), (v_w, v_b)) = (get("k_proj", kv * hd)?, get("v_proj", kv * hd)?);
        let qkv_bias = match (q_b, k_b, v_b) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[&q, &k, &v], 0)?),
            _ => None,
        };
        let ops = vb.ops();
        let p = vb.profiling();
        Ok(Self {
            qkv: Linear::from_parts(Tensor::cat(&[&q_w, &k_w, &v_w], 0)?, qkv_bias, ops)?,
            gate: Linear::from_parts(gate_w, gate_b, ops)?,
            o_proj: Linear::new(heads * hd, d, bias, vb.pp("o_proj"))?,
            q_norm: RmsNorm::zero_centred(hd, t.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::zero_centred(hd, t.rms_norm_eps, vb.pp("k_norm"))?,
            heads,
            kv_heads: kv,
            stages: [
                stage!(p, "text.qkv"),
                stage!(p, "text.rope"),
                stage!(p, "text.attention"),
                stage!(p, "text.output_gate"),
                stage!(p, "text.o_proj"),
            ],
        })
    }

    /// `[N, D] → [N, D]`; `cos`/`sin` `[N, rotary_dim/2]` in the model dtype.
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, plan: &AttentionPlan) -> Result<Tensor> {
        let [qkv_stage, rope, attn, gate_stage, o_proj] = &self.stages;
        let (qkv, gate) =
            qkv_stage.run(|| Ok::<_, candle_core::Error>((self.qkv.forward(xs)?, self.gate.forward(xs)?)))?;
        let norm = QkNorm { q: &self.q_norm, k: &self.k_norm };
        let out = attention(&qkv, self.heads, self.kv_heads, cos, sin, Some(norm), plan, [rope, attn])?;
        drop(qkv);
        // `attn_output * torch.sigmoid(gate)` in the model dtype: the sigmoid computed in f32 and rounded, then the
        // product rounded.
        let gated = gate_stage.run(|| {
            let sig = candle_nn::ops::sigmoid(&gate.to_dtype(DType::F32)?)?.to_dtype(out.dtype())?;
            out * sig
        })?;
        Ok(o_proj.run(|| self.o_proj.forward(&gated))?)
    }
}

/// Gated DeltaNet (`linear_attn.*`).
struct GatedDeltaNet {
    /// `in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a` as one GEMM: `[N, D] → [N, conv_dim + value_dim + 2·nv]`.
    in_proj: Linear,
    heads: Heads,
    /// The host core's parameters in f32 (the generic path).
    params: Params,
    /// `conv1d.weight` as `[conv_dim, kernel]` in the model dtype (the CUDA path).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    conv: Tensor,
    /// `A_log`, `dt_bias` `[nv]` in f32 on the device (the CUDA path).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    a_log: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    dt_bias: Tensor,
    /// `norm.weight` `[dv]` (plain `w`, not `1 + w`), in the model dtype.
    norm: Tensor,
    eps: f64,
    out_proj: Linear,
    ops: Ops,
    profiling: Profiling,
    /// The input GEMM, the core (convolution, gates, delta rule), the gated norm and the `out_proj` GEMM.
    stages: [Stage; 4],
}

impl GatedDeltaNet {
    fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let d = t.hidden_size;
        let heads = Heads {
            nk: t.linear_num_key_heads,
            nv: t.linear_num_value_heads,
            dk: t.linear_key_head_dim,
            dv: t.linear_value_head_dim,
        };
        let (cd, vd, nv, kw) = (heads.conv_dim(), t.value_dim(), heads.nv, t.linear_conv_kernel_dim);
        let w = |name: &str, rows: usize| vb.pp(name).get(&[rows, d], "weight");
        let in_proj = Tensor::cat(
            &[&w("in_proj_qkv", cd)?, &w("in_proj_z", vd)?, &w("in_proj_b", nv)?, &w("in_proj_a", nv)?],
            0,
        )?;
        let conv = vb.pp("conv1d").get(&[cd, 1, kw], "weight")?.reshape((cd, kw))?;
        // The reference holds A_log and dt_bias in the model dtype and reads them `.float()`.
        let a_log = vb.get(&[nv], "A_log")?.to_dtype(DType::F32)?;
        let dt_bias = vb.get(&[nv], "dt_bias")?.to_dtype(DType::F32)?;
        let host = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?)
        };
        let params = Params { conv: host(&conv)?, kernel: kw, a_log: host(&a_log)?, dt_bias: host(&dt_bias)? };
        let p = vb.profiling();
        Ok(Self {
            in_proj: Linear::from_parts(in_proj, None, vb.ops())?,
            heads,
            params,
            conv,
            a_log,
            dt_bias,
            norm: vb.pp("norm").get(&[heads.dv], "weight")?,
            eps: t.rms_norm_eps,
            out_proj: Linear::new(vd, d, false, vb.pp("out_proj"))?,
            ops: vb.ops().clone(),
            profiling: p.clone(),
            stages: [
                stage!(p, "text.linear_in_proj"),
                stage!(p, "text.linear_core"),
                stage!(p, "text.linear_gated_norm"),
                stage!(p, "text.linear_out_proj"),
            ],
        })
    }

    /// `[N, D] → [N, D]` over the packed sequences of `plan`; `tap` records the core's stages
    /// (`linear0.qkv_conv_in`, `linear0.conv_out`, `linear0.g`, `linear0.beta`, `linear0.core`; generic path).
    fn forward(&self, xs: &Tensor, plan: &DeltaPlan, tap: bool) -> Result<Tensor> {
        let [in_proj, core_stage, norm_stage, out_proj] = &self.stages;
        let Heads { nv, dv, .. } = self.heads;
        let (cd, vd) = (self.heads.conv_dim(), nv * dv);
        let n = xs.dim(0)?;
        let proj = in_proj.run(|| self.in_proj.forward(xs))?;
        let qkv = proj.narrow(1, 0, cd)?;
        let z = proj.narrow(1, cd, vd)?;
        let b = proj.narrow(1, cd + vd, nv)?;
        let a = proj.narrow(1, cd + vd + nv, nv)?;
        let y = match (&self.ops, &plan.cuda) {
            #[cfg(feature = "cuda")]
            (Ops::CudaBf16(_), Some(tiles)) => {
                let core = core_stage.run(|| {
                    let conv = crate::kernels::causal_conv_silu(&qkv, &self.conv, tiles)?;
                    let Heads { nk, nv, dk, dv } = self.heads;
                    crate::kernels::gated_delta_rule(&conv, &a, &b, &self.a_log, &self.dt_bias, tiles, (nk, nv, dk, dv))
                })?;
                norm_stage.run(|| crate::kernels::gated_rms_norm(&core, &z, &self.norm, self.eps, dv))?
            }
            _ => {
                let core = core_stage
                    .run(|| self.core_on_host(&qkv, &a, &b, &plan.cu_seqlens, tap && self.profiling.tapping()))?;
                norm_stage.run(|| {
                    let z = z.contiguous()?.reshape((n * nv, dv))?;
                    gated_rms_norm(&core.reshape((n * nv, dv))?, &z, &self.norm, self.eps)?.reshape((n, vd))
                })?
            }
        };
        Ok(out_proj.run(|| self.out_proj.forward(&y))?)
    }

    /// The core on the host ([`deltanet::core`]): `[N, nv·dv]` in the model dtype.
    fn core_on_host(
        &self,
        qkv: &Tensor,
        a: &Tensor,
        b: &Tensor,
        cu_seqlens: &[usize],
        tap: bool,
    ) -> candle_core::Result<Tensor> {
        let (device, dtype) = (qkv.device(), qkv.dtype());
        let host = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
            t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()
        };
        let round: fn(f32) -> f32 = match dtype {
            DType::BF16 => |x| half::bf16::from_f32(x).to_f32(),
            DType::F16 => |x| half::f16::from_f32(x).to_f32(),
            _ => |x| x,
        };
        let n = qkv.dim(0)?;
        let Heads { nv, dv, .. } = self.heads;
        let core = deltanet::core(&host(qkv)?, &host(a)?, &host(b)?, &self.params, self.heads, cu_seqlens, round);
        if tap {
            let cd = self.heads.conv_dim();
            let f = |v: Vec<f32>, cols: usize| Tensor::from_vec(v, (n, cols), device);
            self.profiling.tap(|| "linear0.qkv_conv_in".into(), qkv);
            self.profiling.tap(|| "linear0.conv_out".into(), &f(core.conv_out, cd)?);
            self.profiling.tap(|| "linear0.g".into(), &f(core.g, nv)?);
            self.profiling.tap(|| "linear0.beta".into(), &f(core.beta, nv)?);
            self.profiling.tap(|| "linear0.core".into(), &f(core.out.clone(), nv * dv)?);
        }
        Tensor::from_vec(core.out, (n, nv * dv), device)?.to_dtype(dtype)
    }
}

/// `Qwen3_5RMSNormGated(x, z)` over rows of one value head: `x` `[R, dv]`, `z` `[R, dv]`, `w` `[dv]`, model dtype.
/// Statistics in f32, normalised values cast to the model dtype, multiplied by `w` (rounded), then by
/// `silu(z)` computed in f32, one last rounding.
pub(crate) fn gated_rms_norm(x: &Tensor, z: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let var = x32.sqr()?.mean_keepdim(1)?;
    let normed = x32.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?.to_dtype(dtype)?;
    let weighted = normed.broadcast_mul(w)?;
    let gate = candle_nn::ops::silu(&z.to_dtype(DType::F32)?)?;
    (weighted.to_dtype(DType::F32)? * gate)?.to_dtype(dtype)
}

/// How the DeltaNet layers see the packed sequences of one forward pass (built once, shared by the layers).
pub(crate) struct DeltaPlan {
    cu_seqlens: Vec<usize>,
    /// The chunk and sequence tables of the CUDA kernels (CUDA in bf16 only).
    #[cfg(feature = "cuda")]
    cuda: Option<crate::kernels::DeltaTiles>,
    #[cfg(not(feature = "cuda"))]
    cuda: Option<std::convert::Infallible>,
}

impl DeltaPlan {
    fn new(ops: &Ops, cu_seqlens: &[usize], heads: Heads, device: &Device) -> Result<Self> {
        let cuda = match ops {
            #[cfg(feature = "cuda")]
            Ops::CudaBf16(_) if crate::kernels::deltanet_fits(heads.dk, heads.dv) => {
                Some(crate::kernels::delta_tiles(cu_seqlens, device)?)
            }
            _ => {
                let _ = (heads, device);
                None
            }
        };
        Ok(Self { cu_seqlens: cu_seqlens.to_vec(), cuda })
    }
}

enum Mixer {
    Linear(GatedDeltaNet),
    Full(GatedAttention),
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    mixer: Mixer,
    mlp: GatedMlp,
    add_norm: Stage,
}

/// The Qwen3.5 language model (`language_model.*`).
pub struct TextModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rope: MRope,
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
    linear_heads: Heads,
    ops: Ops,
    profiling: Profiling,
    rotary_tables: Stage,
    attention_plan: Stage,
}

impl TextModel {
    /// Loads `language_model.*`.
    pub(crate) fn new(cfg: &Config, vb: Weights) -> Result<Self> {
        let t = &cfg.text;
        let d = t.hidden_size;
        let embed_tokens = vb.pp("embed_tokens").get(&[t.vocab_size, d], "weight")?;
        let p = vb.profiling();
        let layers = cfg
            .layers
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let vb = vb.pp("layers").pp(i);
                let mlp_stages =
                    [stage!(p, "text.mlp_gate_up"), stage!(p, "text.silu_mul"), stage!(p, "text.mlp_down")];
                let mixer = match kind {
                    LayerKind::Linear => Mixer::Linear(GatedDeltaNet::new(cfg, vb.pp("linear_attn"))?),
                    LayerKind::Full => Mixer::Full(GatedAttention::new(cfg, vb.pp("self_attn"))?),
                };
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::zero_centred(d, t.rms_norm_eps, vb.pp("input_layernorm"))?,
                    post_attention_layernorm: RmsNorm::zero_centred(
                        d,
                        t.rms_norm_eps,
                        vb.pp("post_attention_layernorm"),
                    )?,
                    mixer,
                    mlp: GatedMlp::new(d, t.intermediate_size, false, vb.pp("mlp"), mlp_stages)?,
                    add_norm: stage!(p, "text.add_norm"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::zero_centred(d, t.rms_norm_eps, vb.pp("norm"))?,
            rope: MRope::interleaved(t.rotary_dim(), t.rope_theta, &t.mrope_section),
            head_dim: t.head_dim,
            heads: t.num_attention_heads,
            kv_heads: t.num_key_value_heads,
            linear_heads: Heads {
                nk: t.linear_num_key_heads,
                nv: t.linear_num_value_heads,
                dk: t.linear_key_head_dim,
                dv: t.linear_value_head_dim,
            },
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
    ///
    /// Taps: `text.layer.{l}` (each layer's output) and the core stages of the first DeltaNet layer
    /// (`linear0.*`, generic path).
    pub(crate) fn forward(
        &self,
        embeds: &Tensor,
        positions: &[Vec<u32>; 3],
        cu_seqlens: &[usize],
        pace: &mut Pace,
    ) -> Result<Tensor> {
        let device = embeds.device();
        let (cos, sin) = self.rotary_tables.run(|| self.rope.tables(positions, embeds.dtype(), device))?;
        let (plan, delta) = self.attention_plan.run(|| {
            let plan =
                AttentionPlan::new(&self.ops, cu_seqlens, self.heads, self.kv_heads, self.head_dim, true, device)?;
            Ok::<_, crate::Error>((plan, DeltaPlan::new(&self.ops, cu_seqlens, self.linear_heads, device)?))
        })?;
        let first_linear = self.layers.iter().position(|l| matches!(l.mixer, Mixer::Linear(_)));
        let (mut xs, mut pending) = (embeds.clone(), None);
        for (l, layer) in self.layers.iter().enumerate() {
            let norms = [&layer.input_layernorm, &layer.post_attention_layernorm];
            let (h, d) =
                pre_norm_block(&xs, pending.as_ref(), norms, &layer.mlp, &layer.add_norm, |a| match &layer.mixer {
                    Mixer::Linear(m) => m.forward(a, &delta, Some(l) == first_linear),
                    Mixer::Full(m) => m.forward(a, &cos, &sin, &plan),
                })?;
            (xs, pending) = (h, Some(d));
            pace.layer_done()?;
            if self.profiling.tapping() {
                if let Some(p) = pending.take() {
                    xs = (xs + p)?;
                }
                self.profiling.tap(|| format!("text.layer.{l}"), &xs);
            }
        }
        Ok(self.norm.add_forward(&xs, pending.as_ref())?.1)
    }
}
