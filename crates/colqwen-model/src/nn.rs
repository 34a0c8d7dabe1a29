//! Building blocks shared by the towers of every family, each with the reference's precision recipe (fact sheet
//! §10): Linear, RMSNorm (§4.4, trap 13), LayerNorm, the gated (SwiGLU) and plain (GELU) MLPs, the pre-norm
//! block, rotary application and variable-length attention over packed sequences.

use candle_core::{D, DType, Module, Result, Tensor};

use crate::ops::Ops;
use crate::profile::Stage;
use crate::weights::Weights;

/// `y = x·Wᵀ (+ b)`; `W` is `[out, in]` as in PyTorch.
#[derive(Clone)]
pub(crate) enum Linear {
    /// `weight` `[out, in]`, optional `bias` `[out]`: candle's matmul, then a broadcast add.
    Plain { weight: Tensor, bias: Option<Tensor> },
    /// Biased layer on CUDA in bf16: one cuBLASLt GEMM with the bias in its epilogue, so the bias enters the
    /// f32 accumulator before the single bf16 rounding, as in the reference (trap 23), and costs no extra
    /// pass (candle's broadcast add over `[N, out]` costs 4× the GEMM on an H100, bench `colqwen-bench gemm`).
    #[cfg(feature = "cuda")]
    Epilogue {
        weight: Tensor,
        bias: Tensor,
        lt: std::sync::Arc<candle_core::cuda_backend::cudarc::cublaslt::CudaBlasLT>,
        /// GELU (tanh) after the bias, in the same epilogue.
        gelu: bool,
    },
    /// 8-bit weight on the CPU ([`Ops::CpuQ8`]): Q8_0 blocks (`crate::quant`), f32 in and out, then the f32 bias.
    Q8 { weight: std::sync::Arc<crate::quant::Q8Matmul>, shape: (usize, usize), bias: Option<Tensor> },
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (w, fused) = match self {
            Self::Plain { weight, .. } => (weight, false),
            #[cfg(feature = "cuda")]
            Self::Epilogue { weight, .. } => (weight, true),
            Self::Q8 { shape, .. } => return write!(f, "Linear({shape:?}, q8)"),
        };
        write!(f, "Linear({:?}, bias epilogue: {fused})", w.dims())
    }
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    pub(crate) fn new(in_dim: usize, out_dim: usize, bias: bool, vb: Weights) -> crate::Result<Self> {
        Self::stacked(&vb, &[("", out_dim)], in_dim, bias)
    }

    /// One projection made of the modules `parts` under `vb` (`(name, out rows)`; `""` is `vb` itself), their
    /// weights `[rows, in_dim]` (and biases when `bias`) stacked along the output: the fused q/k/v or gate/up
    /// GEMM. With [`Ops::CpuQ8`] and a shape that [`crate::quant::fits`], the stacked weight is Q8_0, read from
    /// the 8-bit cache when it holds it (the dense weights are then never loaded).
    pub(crate) fn stacked(vb: &Weights, parts: &[(&str, usize)], in_dim: usize, bias: bool) -> crate::Result<Self> {
        let at = |name: &str| if name.is_empty() { vb.clone() } else { vb.pp(name) };
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let stack = |ts: Vec<Tensor>| -> Result<Tensor> {
            if ts.len() == 1 { Ok(ts.into_iter().next().expect("one part")) } else { Tensor::cat(&ts, 0) }
        };
        let weight = || -> crate::Result<Tensor> {
            Ok(stack(parts.iter().map(|&(n, r)| at(n).get(&[r, in_dim], "weight")).collect::<crate::Result<_>>()?)?)
        };
        let bias = || -> crate::Result<Option<Tensor>> {
            if !bias {
                return Ok(None);
            }
            Ok(Some(stack(parts.iter().map(|&(n, r)| at(n).get(&[r], "bias")).collect::<crate::Result<_>>()?)?))
        };
        if let Ops::CpuQ8 = vb.ops()
            && crate::quant::fits(rows, in_dim)
        {
            let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
            let key = if names == [""] { vb.name().to_string() } else { vb.full(&names.join("+")) };
            let full: Vec<String> = parts.iter().map(|&(n, _)| at(n).full("weight")).collect();
            let q = vb.q8(&key, &full, (rows, in_dim), weight)?;
            let weight = std::sync::Arc::new(crate::quant::Q8Matmul::new(q)?);
            return Ok(Self::Q8 { weight, shape: (rows, in_dim), bias: bias()? });
        }
        let w = weight()?;
        Ok(Self::from_parts(w, bias()?, vb.ops())?)
    }

    /// From tensors (`weight` `[out, in]`, `bias` `[out]`), for `ops`.
    pub(crate) fn from_parts(weight: Tensor, bias: Option<Tensor>, ops: &Ops) -> Result<Self> {
        match (ops, bias) {
            #[cfg(feature = "cuda")]
            (Ops::CudaBf16(cuda), Some(bias)) => Ok(Self::Epilogue {
                weight: weight.contiguous()?,
                bias: bias.contiguous()?,
                lt: cuda.lt.clone(),
                gelu: false,
            }),
            (_, bias) => Ok(Self::Plain { weight, bias }),
        }
    }

    /// The same layer with GELU (tanh) fused into its epilogue where the device can (CUDA in bf16, biased layers);
    /// `None` where it cannot, and the caller applies the activation itself.
    pub(crate) fn fuse_gelu(&self) -> Option<Self> {
        match self {
            #[cfg(feature = "cuda")]
            Self::Epilogue { weight, bias, lt, .. } => {
                Some(Self::Epilogue { weight: weight.clone(), bias: bias.clone(), lt: lt.clone(), gelu: true })
            }
            _ => None,
        }
    }
}

impl Module for Linear {
    /// `[N, in] → [N, out]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            #[cfg(feature = "cuda")]
            Self::Epilogue { weight, bias, lt, gelu: false } => crate::kernels::linear_bias(lt, xs, weight, bias),
            #[cfg(feature = "cuda")]
            Self::Epilogue { weight, bias, lt, gelu: true } => crate::kernels::linear_bias_gelu(lt, xs, weight, bias),
            Self::Plain { weight, bias } => {
                let ys = xs.matmul(&weight.t()?)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
            Self::Q8 { weight, bias, .. } => {
                let ys = weight.forward(xs)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
        }
    }
}

/// RMSNorm with the reference's order (trap 13): statistics in f32, normalised values cast back to the
/// input dtype, *then* multiplied by the weight. The zero-centred form of Qwen3.5 ([`RmsNorm::zero_centred`])
/// multiplies by `1 + w` in f32 *before* the one rounding instead.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    /// `w` in the model dtype, or for the zero-centred form `1 + w` in f32.
    weight: Tensor,
    eps: f64,
    ops: Ops,
    /// Zero-centred (`Qwen3_5RMSNorm`): `(x·rsqrt(mean(x²) + ε))·(1 + w)` all in f32, then cast.
    centred: bool,
}

/// A norm that can take the residual add before it: `(h = xs + delta, norm(h))`, or `(xs, norm(xs))` without a
/// `delta` (one fused kernel where the device has one).
pub(crate) trait AddNorm {
    fn add_forward(&self, xs: &Tensor, delta: Option<&Tensor>) -> Result<(Tensor, Tensor)>;
}

impl RmsNorm {
    pub(crate) fn new(dim: usize, eps: f64, vb: Weights) -> crate::Result<Self> {
        Ok(Self { weight: vb.get(&[dim], "weight")?, eps, ops: vb.ops().clone(), centred: false })
    }

    /// Qwen3.5's zero-centred norm: the stored weight `w` (in the model dtype, as the reference holds it)
    /// becomes `1 + w` in f32 once at load, exactly the multiplier `1.0 + self.weight.float()` the reference
    /// forms on every call.
    pub(crate) fn zero_centred(dim: usize, eps: f64, vb: Weights) -> crate::Result<Self> {
        let weight = (vb.get(&[dim], "weight")?.to_dtype(DType::F32)? + 1.0)?;
        Ok(Self { weight, eps, ops: vb.ops().clone(), centred: true })
    }

    /// The zero-centred form without a fused kernel: f32 statistics and product, one rounding.
    fn centred_generic(&self, xs: &Tensor) -> Result<Tensor> {
        let x32 = xs.to_dtype(DType::F32)?;
        let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x32.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?.broadcast_mul(&self.weight)?;
        y.to_dtype(xs.dtype())
    }
}

impl AddNorm for RmsNorm {
    /// One kernel on CUDA in bf16, exact reference order (trap 13).
    fn add_forward(&self, xs: &Tensor, delta: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        match &self.ops {
            #[cfg(feature = "cuda")]
            Ops::CudaBf16(_) if self.centred && crate::kernels::centred_rms_norm_fits(xs.dim(D::Minus1)?) => {
                crate::kernels::add_centred_rms_norm(xs, delta, &self.weight, self.eps)
            }
            #[cfg(feature = "cuda")]
            Ops::CudaBf16(_) if !self.centred && crate::kernels::add_rms_norm_fits(xs.dim(D::Minus1)?) => {
                crate::kernels::add_rms_norm(xs, delta, &self.weight, self.eps)
            }
            _ => {
                let h = match delta {
                    Some(d) => (xs + d)?,
                    None => xs.clone(),
                };
                let y = self.forward(&h)?;
                Ok((h, y))
            }
        }
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        // In f32 the casts below are no-ops, so candle's fused kernel computes the same function. On CUDA the
        // fused kernel (f32 inside, one rounding after the weight multiply) replaces nine memory-bound passes; it
        // differs from the reference's double rounding by at most one half-precision ulp per element.
        if self.centred {
            // f32 in, f32 weights: candle's fused kernel computes the reference's function.
            if xs.dtype() == DType::F32 {
                return candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32);
            }
            #[cfg(feature = "cuda")]
            if let Ops::CudaBf16(_) = &self.ops
                && crate::kernels::centred_rms_norm_fits(xs.dim(D::Minus1)?)
            {
                // Per-head norms come as [N, H, d]: rows of d.
                let d = xs.dim(D::Minus1)?;
                let rows = xs.elem_count() / d.max(1);
                let y = crate::kernels::add_centred_rms_norm(&xs.reshape((rows, d))?, None, &self.weight, self.eps)?.1;
                return y.reshape(xs.shape());
            }
            return self.centred_generic(xs);
        }
        let fused = match &self.ops {
            Ops::Generic | Ops::CpuQ8 => xs.dtype() == DType::F32,
            #[cfg(feature = "cuda")]
            Ops::Cuda | Ops::CudaBf16(_) => true,
        };
        if fused {
            return candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32);
        }
        let x32 = xs.to_dtype(DType::F32)?;
        let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x32.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?.to_dtype(xs.dtype())?;
        y.broadcast_mul(&self.weight)
    }
}

/// LayerNorm with bias as torch computes it in every dtype: mean and variance over the last dim in f32
/// (two passes), `(x − mean)·rsqrt(var + ε)·w + b` in f32, one rounding to the input dtype.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    ops: Ops,
}

impl LayerNorm {
    pub(crate) fn new(dim: usize, eps: f64, vb: Weights) -> crate::Result<Self> {
        Ok(Self { weight: vb.get(&[dim], "weight")?, bias: vb.get(&[dim], "bias")?, eps, ops: vb.ops().clone() })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let x32 = xs.to_dtype(DType::F32)?;
        let centred = x32.broadcast_sub(&x32.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?;
        let y = normed
            .broadcast_mul(&self.weight.to_dtype(DType::F32)?)?
            .broadcast_add(&self.bias.to_dtype(DType::F32)?)?;
        y.to_dtype(xs.dtype())
    }
}

impl AddNorm for LayerNorm {
    /// One kernel on CUDA in bf16 for widths up to 2048 (the vision blocks; the DeepStack mergers' 4608-wide
    /// norm takes the generic path).
    fn add_forward(&self, xs: &Tensor, delta: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if let Ops::CudaBf16(_) = &self.ops
            && crate::kernels::add_rms_norm_fits(xs.dim(D::Minus1)?)
        {
            return crate::kernels::add_layer_norm(xs, delta, &self.weight, &self.bias, self.eps);
        }
        let h = match delta {
            Some(d) => (xs + d)?,
            None => xs.clone(),
        };
        let y = self.forward(&h)?;
        Ok((h, y))
    }
}

/// The activation of a plain MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `gelu_pytorch_tanh`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
    /// `gelu`: the exact erf form.
    GeluErf,
}

impl Activation {
    /// From the config's `hidden_act` name (transformers' `ACT2FN` keys).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu_pytorch_tanh" | "gelu_new" => Some(Self::GeluTanh),
            "gelu" => Some(Self::GeluErf),
            _ => None,
        }
    }

    /// Applied in f32, rounded once to the input dtype (torch's half-precision GELU kernels compute in f32).
    pub(crate) fn apply(self, xs: &Tensor) -> Result<Tensor> {
        let x32 = xs.to_dtype(DType::F32)?;
        let y = match self {
            Self::GeluTanh => x32.gelu()?,
            Self::GeluErf => x32.gelu_erf()?,
        };
        y.to_dtype(xs.dtype())
    }
}

/// A plain two-layer MLP, `fc2(act(fc1(x)))`, both layers biased (the Qwen3-VL vision blocks and mergers).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    fc1: Linear,
    fc2: Linear,
    /// The activation, or `None` when fc1's epilogue applies it (GELU-tanh on CUDA in bf16).
    act: Option<Activation>,
    /// The fc1 GEMM, the activation and the fc2 GEMM.
    stages: [Stage; 3],
}

impl Mlp {
    /// Loads `{fc1}` `[inter, d]` and `{fc2}` `[out, inter]` (weights and biases) under `vb`.
    pub(crate) fn new(
        (d, inter, out): (usize, usize, usize),
        names: [&str; 2],
        act: Activation,
        vb: &Weights,
        stages: [Stage; 3],
    ) -> crate::Result<Self> {
        let fc1 = Linear::new(d, inter, true, vb.pp(names[0]))?;
        // cuBLASLt's GELU epilogue is the tanh form: fused for GELU-tanh only.
        let (fc1, act) = match (act, fc1.fuse_gelu()) {
            (Activation::GeluTanh, Some(fused)) => (fused, None),
            (act, _) => (fc1, Some(act)),
        };
        Ok(Self { fc1, fc2: Linear::new(inter, out, true, vb.pp(names[1]))?, act, stages })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let [fc1, act_stage, fc2] = &self.stages;
        let mut h = fc1.run(|| self.fc1.forward(xs))?;
        if let Some(act) = self.act {
            h = act_stage.run(|| act.apply(&h))?;
        }
        fc2.run(|| self.fc2.forward(&h))
    }
}

/// NeoX ("half") rotary on `[H, N, d]` with per-token `cos`/`sin` of shape `[N, r/2]`: the first `r` dims of each
/// head rotate (all of them when `r = d`), in the tables' dtype, the result in the input's.
pub(crate) fn apply_rotary(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (d, r) = (xs.dim(D::Minus1)?, 2 * cos.dim(D::Minus1)?);
    let rotate = |x: &Tensor| -> Result<Tensor> {
        let x = x.to_dtype(cos.dtype())?.unsqueeze(0)?.contiguous()?;
        candle_nn::rotary_emb::rope(&x, cos, sin)?.squeeze(0)?.to_dtype(xs.dtype())
    };
    if r == d {
        return rotate(xs);
    }
    let rotated = rotate(&xs.narrow(D::Minus1, 0, r)?)?;
    Tensor::cat(&[&rotated, &xs.narrow(D::Minus1, r, d - r)?], D::Minus1)
}

/// Upper bound on the f32 score matrices materialised at once by [`varlen_attention`].
const SCORE_BYTES_PER_CHUNK: usize = 512 << 20;

/// One batch of equal-length sequences of an [`AttentionPlan`].
struct Chunk {
    /// Packed row indices of the chunk's sequences, in order (`[S·len]`, u32).
    rows: Tensor,
    seqs: usize,
    len: usize,
    /// Causal mask already expanded to the scores' shape `[S·Hkv, group·len, len]` (contiguous, f32), so the
    /// add is elementwise: candle's broadcast add is several times slower on CUDA.
    mask: Option<Tensor>,
}

/// How packed sequences are attended, built once per forward and shared by every layer.
///
/// Sequence `i` is rows `cu_seqlens[i]..cu_seqlens[i+1]`; tokens of different sequences never see each
/// other and nothing is padded, which is what makes results independent of the batch.
pub(crate) struct AttentionPlan {
    kind: PlanKind,
    n: usize,
    /// Softmax scale, `1/√head_dim` of the model's heads (also when the kernel runs on zero-padded heads).
    scale: f64,
}

enum PlanKind {
    /// Sequences of equal length (the vision windows of a page, pages of one size) gathered and run as one
    /// batched matmul, in chunks that bound the score memory.
    Generic {
        chunks: Vec<Chunk>,
        /// Inverse of the concatenated chunk row order (`[N]`, u32).
        inverse: Tensor,
    },
    /// The fused flash kernel over 64-row tiles of every sequence (CUDA, bf16, see `kernels.rs`).
    #[cfg(feature = "cuda")]
    Flash { tiles: Tensor, causal: bool },
}

impl AttentionPlan {
    /// Plan for `heads` query heads of `head_dim` sharing `kv_heads` key/value heads under `ops`: the flash
    /// kernel where it exists (CUDA in bf16, a compiled head dim), the generic path elsewhere.
    pub(crate) fn new(
        ops: &Ops,
        cu_seqlens: &[usize],
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
        device: &candle_core::Device,
    ) -> Result<Self> {
        match ops {
            #[cfg(feature = "cuda")]
            Ops::CudaBf16(_) if crate::kernels::flash_fits(head_dim) => {
                let tiles = crate::kernels::flash_tiles(cu_seqlens, device)?;
                let n = cu_seqlens.last().copied().unwrap_or(0);
                Ok(Self { kind: PlanKind::Flash { tiles, causal }, n, scale: 1.0 / (head_dim as f64).sqrt() })
            }
            _ => Self::generic(cu_seqlens, heads, kv_heads, head_dim, causal, device),
        }
    }

    /// The same plan with another softmax scale: `1/√d` of the model's head dim `d` when the heads run
    /// zero-padded to a wider kernel (see [`pad_head_halves`]).
    pub(crate) fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// The generic plan (any device and dtype).
    pub(crate) fn generic(
        cu_seqlens: &[usize],
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        causal: bool,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let group = heads / kv_heads;
        let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for w in cu_seqlens.windows(2) {
            if w[1] > w[0] {
                by_len.entry(w[1] - w[0]).or_default().push(w[0]);
            }
        }
        let n = cu_seqlens.last().copied().unwrap_or(0);
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut chunks = Vec::new();
        for (len, starts) in by_len {
            let per_seq = heads * len * len * 4;
            let per_chunk = (SCORE_BYTES_PER_CHUNK / per_seq.max(1)).max(1);
            for starts in starts.chunks(per_chunk) {
                let rows: Vec<u32> = starts.iter().flat_map(|&st| (st as u32)..(st + len) as u32).collect();
                order.extend_from_slice(&rows);
                let s = starts.len();
                let mask = if causal {
                    let m = causal_mask(len, device)?;
                    Some(m.unsqueeze(0)?.broadcast_as((s * kv_heads, group, len, len))?.contiguous()?.reshape((
                        s * kv_heads,
                        group * len,
                        len,
                    ))?)
                } else {
                    None
                };
                chunks.push(Chunk { rows: Tensor::from_vec(rows, s * len, device)?, seqs: s, len, mask });
            }
        }
        let mut inverse = vec![0u32; n];
        for (pos, &row) in order.iter().enumerate() {
            inverse[row as usize] = pos as u32;
        }
        let inverse = Tensor::from_vec(inverse, n, device)?;
        Ok(Self { kind: PlanKind::Generic { chunks, inverse }, n, scale: 1.0 / (head_dim as f64).sqrt() })
    }
}

/// Widens heads of `d` dims to `p` along `axis` (length `k·d`, `k` heads) by zero-padding each half of each head,
/// `[a₀ … a_{d/2−1}, 0…, a_{d/2} … a_{d−1}, 0…]`: a NeoX rotary over `p` then still pairs `aᵢ` with `a_{i+d/2}`,
/// q·k is unchanged and padded value dims come out zero. This lets heads of a width without a compiled flash
/// kernel (Qwen3-VL's vision heads of 72) run the next wider one (80), exactly.
pub(crate) fn pad_head_halves(t: &Tensor, axis: usize, d: usize, p: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let heads = dims[axis] / d;
    let mut split = dims[..axis].to_vec();
    split.extend([heads, 2, d / 2]);
    split.extend_from_slice(&dims[axis + 1..]);
    let x = t.reshape(split)?;
    let mut zeros = x.dims().to_vec();
    zeros[axis + 2] = (p - d) / 2;
    let y = Tensor::cat(&[&x, &Tensor::zeros(zeros, t.dtype(), t.device())?], axis + 2)?;
    let mut out = dims;
    out[axis] = heads * p;
    y.reshape(out)
}

/// Per-head RMSNorms of the queries and the keys, applied before the rotary (Qwen3's `q_norm`, `k_norm`).
pub(crate) struct QkNorm<'a> {
    pub(crate) q: &'a RmsNorm,
    pub(crate) k: &'a RmsNorm,
}

/// Self-attention of one layer straight from its fused projection, rotary included.
///
/// `qkv` `[N, (Hq + 2·Hkv)·d]` (query heads, then key heads, then value heads), rotary tables `cos`/`sin`
/// `[N, r/2]` with `r ≤ d` (the first `r` dims of each head rotate) → `[N, Hq·d]`. The rotation runs in the
/// tables' dtype: f32 tables give the vision tower's recipe (trap 12), tables in the model dtype the language
/// model's (trap 16). `qk_norm` normalises each query and key head first. `stages` are the rotary and the
/// attention stage.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    qkv: &Tensor,
    heads: usize,
    kv_heads: usize,
    cos: &Tensor,
    sin: &Tensor,
    qk_norm: Option<QkNorm>,
    plan: &AttentionPlan,
    stages: [&Stage; 2],
) -> Result<Tensor> {
    let (n, width) = qkv.dims2()?;
    let d = width / (heads + 2 * kv_heads);
    let scale = plan.scale;
    let qkv = qkv.reshape((n, heads + 2 * kv_heads, d))?;
    match &plan.kind {
        #[cfg(feature = "cuda")]
        PlanKind::Flash { tiles, causal } => {
            let qk = stages[0].run(|| match &qk_norm {
                Some(norm) => {
                    let q = norm.q.forward(&qkv.narrow(1, 0, heads)?.contiguous()?)?;
                    let k = norm.k.forward(&qkv.narrow(1, heads, kv_heads)?.contiguous()?)?;
                    crate::kernels::rope(&Tensor::cat(&[&q, &k], 1)?, heads + kv_heads, cos, sin)
                }
                None => crate::kernels::rope(&qkv, heads + kv_heads, cos, sin),
            })?;
            stages[1].run(|| {
                let (q, k) = (qk.narrow(1, 0, heads)?, qk.narrow(1, heads, kv_heads)?);
                let v = qkv.narrow(1, heads + kv_heads, kv_heads)?;
                crate::kernels::flash_attention(&q, &k, &v, tiles, *causal, scale)?.reshape((n, heads * d))
            })
        }
        PlanKind::Generic { .. } => {
            // [H, N, d] per projection.
            let part = |first: usize, count: usize| qkv.narrow(1, first, count)?.transpose(0, 1)?.contiguous();
            let rot = |t: Tensor, norm: Option<&RmsNorm>| {
                let t = match norm {
                    Some(norm) => norm.forward(&t)?,
                    None => t,
                };
                apply_rotary(&t, cos, sin)
            };
            let (qn, kn) = (qk_norm.as_ref().map(|n| n.q), qk_norm.as_ref().map(|n| n.k));
            let (q, k) = stages[0]
                .run(|| Ok::<_, candle_core::Error>((rot(part(0, heads)?, qn)?, rot(part(heads, kv_heads)?, kn)?)))?;
            let v = part(heads + kv_heads, kv_heads)?;
            stages[1].run(|| varlen_attention(&q, &k, &v, plan, scale))
        }
    }
}

/// The gated MLP of both towers, `down(silu(gate(x)) · up(x))`, with gate and up fused into one GEMM.
#[derive(Debug, Clone)]
pub(crate) struct GatedMlp {
    /// `[N, D] → [N, 2I]`: gate columns, then up columns.
    gate_up: Linear,
    down: Linear,
    ops: Ops,
    /// The gate/up GEMM, the activation and the down GEMM.
    stages: [Stage; 3],
}

impl GatedMlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `vb` (with biases when `bias`); `stages` time the
    /// gate/up GEMM, the activation and the down GEMM. On CUDA ([`Ops::pads_gemm_widths`]) the width is padded
    /// to a multiple of 128 (vision: 3420 → 3456) with zero rows in gate/up and zero columns in down:
    /// `silu(0)·0 = 0`, so the function is unchanged, and cuBLAS runs its aligned kernels (2.5× faster for
    /// this shape on an H100, bench `colqwen-bench gemm`).
    pub(crate) fn new(d: usize, inter: usize, bias: bool, vb: Weights, stages: [Stage; 3]) -> crate::Result<Self> {
        let ops = vb.ops().clone();
        if let Ops::CpuQ8 = ops {
            // The 8-bit path: gate/up stacked (and cached) as one Q8_0 weight where the shapes fit.
            return Ok(Self {
                gate_up: Linear::stacked(&vb, &[("gate_proj", inter), ("up_proj", inter)], d, bias)?,
                down: Linear::new(inter, d, bias, vb.pp("down_proj"))?,
                ops,
                stages,
            });
        }
        let get =
            |name: &str, shape: &[usize]| vb.pp(name).get(shape, if shape.len() == 1 { "bias" } else { "weight" });
        let (mut gw, mut uw, mut dw) =
            (get("gate_proj", &[inter, d])?, get("up_proj", &[inter, d])?, get("down_proj", &[d, inter])?);
        let (mut gb, mut ub, db) = if bias {
            (Some(get("gate_proj", &[inter])?), Some(get("up_proj", &[inter])?), Some(get("down_proj", &[d])?))
        } else {
            (None, None, None)
        };
        let padded = inter.div_ceil(128) * 128;
        if ops.pads_gemm_widths() && padded != inter {
            let extra = padded - inter;
            let (dtype, device) = (gw.dtype(), gw.device().clone());
            let zeros = |shape: &[usize]| Tensor::zeros(shape, dtype, &device);
            let pad = |t: &Tensor, dim: usize, shape: &[usize]| Tensor::cat(&[t, &zeros(shape)?], dim);
            gw = pad(&gw, 0, &[extra, d])?;
            uw = pad(&uw, 0, &[extra, d])?;
            dw = pad(&dw, 1, &[d, extra])?;
            gb = gb.map(|b| pad(&b, 0, &[extra])).transpose()?;
            ub = ub.map(|b| pad(&b, 0, &[extra])).transpose()?;
        }
        let gate_up_bias = match (gb, ub) {
            (Some(g), Some(u)) => Some(Tensor::cat(&[&g, &u], 0)?),
            _ => None,
        };
        Ok(Self {
            gate_up: Linear::from_parts(Tensor::cat(&[&gw, &uw], 0)?, gate_up_bias, &ops)?,
            down: Linear::from_parts(dw, db, &ops)?,
            ops,
            stages,
        })
    }
}

impl Module for GatedMlp {
    /// `[N, D] → [N, D]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let [gate_up, act, down] = &self.stages;
        let gu = gate_up.run(|| self.gate_up.forward(xs))?;
        let h = act.run(|| silu_mul(&self.ops, &gu))?;
        drop(gu); // the widest activation: not alive during the down GEMM
        down.run(|| self.down.forward(&h))
    }
}

/// A pre-norm transformer block, `h = x + attn(norm1(x))`, output `h + mlp(norm2(h))`, with that last residual
/// add left pending: returns `(h, d)` whose sum is the block's output, so the add runs fused with the next norm
/// ([`RmsNorm::add_forward`]); `pending` is the previous block's `d`. `add_norm` times both add + norm steps.
/// Inputs of each stage are dropped as soon as it has run, keeping them out of the next stage's peak.
pub(crate) fn pre_norm_block<N: AddNorm>(
    xs: &Tensor,
    pending: Option<&Tensor>,
    norms: [&N; 2],
    mlp: &dyn Module,
    add_norm: &Stage,
    attn: impl FnOnce(&Tensor) -> crate::Result<Tensor>,
) -> crate::Result<(Tensor, Tensor)> {
    let (xs, a) = add_norm.run(|| norms[0].add_forward(xs, pending))?;
    let o = attn(&a)?;
    drop(a);
    let (xs, m) = add_norm.run(|| norms[1].add_forward(&xs, Some(&o)))?;
    drop(o);
    let d = mlp.forward(&m)?;
    Ok((xs, d))
}

/// `silu(gu[:, :I]) · gu[:, I:]` of `[N, 2I]` → `[N, I]`, the reference's two roundings (silu, then the
/// product) in half precision; one fused kernel on CUDA in bf16.
pub(crate) fn silu_mul(ops: &Ops, gu: &Tensor) -> Result<Tensor> {
    let inter = gu.dim(1)? / 2;
    match ops {
        #[cfg(feature = "cuda")]
        Ops::CudaBf16(_) if crate::kernels::silu_mul_fits(inter) => crate::kernels::silu_mul(&gu.contiguous()?),
        _ => candle_nn::ops::silu(&gu.narrow(1, 0, inter)?)? * gu.narrow(1, inter, inter)?,
    }
}

/// Attention over packed variable-length sequences (see [`AttentionPlan`]).
///
/// `q`: `[Hq, N, d]`, `k`, `v`: `[Hkv, N, d]` with `Hq` a multiple of `Hkv` (query head `n` uses kv head
/// `n / (Hq/Hkv)`, trap 19). Scores and softmax in f32, probabilities cast to the value dtype before `·V`
/// (trap 20). Returns `[N, Hq·d]`.
pub(crate) fn varlen_attention(q: &Tensor, k: &Tensor, v: &Tensor, plan: &AttentionPlan, scale: f64) -> Result<Tensor> {
    let (hq, n, d) = q.dims3()?;
    if n != plan.n {
        candle_core::bail!("attention plan covers {} rows, the input has {n}", plan.n);
    }
    let (chunks, inverse) = match &plan.kind {
        PlanKind::Generic { chunks, inverse } => (chunks, inverse),
        #[cfg(feature = "cuda")]
        PlanKind::Flash { .. } => candle_core::bail!("varlen_attention needs a generic attention plan"),
    };
    let hkv = k.dim(0)?;
    let group = hq / hkv;
    // In half precision the scale is applied to q (one pass over [Hq, N, d]) instead of to the f32 scores
    // (a pass over [.., len, len]); in f32 it stays on the scores, as in the reference.
    let (q, score_scale) = if q.dtype() == DType::F32 { (q.clone(), scale) } else { ((q * scale)?, 1.0) };
    let q = &q;
    let mut outs = Vec::with_capacity(chunks.len());
    for c in chunks {
        let (s, len) = (c.seqs, c.len);
        // [S·Hkv, group·len, d]: sequences × kv heads as the batch, the query heads of a kv head stacked.
        let qs = q.index_select(&c.rows, 1)?.reshape((hkv, group, s, len, d))?.permute((2, 0, 1, 3, 4))?.reshape((
            s * hkv,
            group * len,
            d,
        ))?;
        let kv = |t: &Tensor| -> Result<Tensor> {
            t.index_select(&c.rows, 1)?.reshape((hkv, s, len, d))?.transpose(0, 1)?.reshape((s * hkv, len, d))
        };
        let (ks, vs) = (kv(k)?, kv(v)?);
        let mut scores = qs.matmul(&ks.t()?)?.to_dtype(DType::F32)?;
        if score_scale != 1.0 {
            scores = (scores * score_scale)?;
        }
        if let Some(mask) = &c.mask {
            scores = (scores + mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let out = probs.matmul(&vs)?; // [S·Hkv, group·len, d]
        outs.push(out.reshape((s, hkv, group, len, d))?.permute((1, 2, 0, 3, 4))?.reshape((hq, s * len, d))?);
    }
    let out = Tensor::cat(&outs, 1)?.index_select(inverse, 1)?; // [Hq, N, d]
    out.transpose(0, 1)?.reshape((n, hq * d))
}

/// `[len, len]` additive mask, 0 on and below the diagonal, −∞ above.
fn causal_mask(len: usize, device: &candle_core::Device) -> Result<Tensor> {
    let data: Vec<f32> =
        (0..len).flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Tensor::from_vec(data, (len, len), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Heads zero-padded by `pad_head_halves` (with padded rotary slots of angle 0) attend exactly as the
    /// unpadded heads: the CUDA path runs Qwen3-VL's 72-dim vision heads so, on the 80-dim flash kernel.
    #[test]
    fn zero_padded_heads_attend_as_the_unpadded_ones() {
        let dev = Device::Cpu;
        let (n, h, d, p) = (37, 2, 12, 16);
        let qkv = Tensor::randn(0f32, 1.0, (n, 3 * h * d), &dev).unwrap();
        let theta = Tensor::randn(0f32, 3.0, (n, d / 2), &dev).unwrap();
        let (cos, sin) = (theta.cos().unwrap(), theta.sin().unwrap());
        let cu = [0, 20, 37];
        let run = |qkv: &Tensor, cos: &Tensor, sin: &Tensor, width: usize| {
            let plan =
                AttentionPlan::generic(&cu, h, h, width, false, &dev).unwrap().with_scale(1.0 / (d as f64).sqrt());
            let stage = crate::profile::Profiling::new(&dev);
            let s = crate::profile::stage!(stage, "t");
            attention(qkv, h, h, cos, sin, None, &plan, [&s, &s]).unwrap()
        };
        let plain = run(&qkv, &cos, &sin, d);
        let ones = Tensor::ones((n, (p - d) / 2), DType::F32, &dev).unwrap();
        let cos_p = Tensor::cat(&[&cos, &ones], 1).unwrap();
        let sin_p = Tensor::cat(&[&sin, &ones.zeros_like().unwrap()], 1).unwrap();
        let padded = run(&pad_head_halves(&qkv, 1, d, p).unwrap(), &cos_p, &sin_p, p).reshape((n, h, p)).unwrap();
        let back = Tensor::cat(&[&padded.narrow(2, 0, d / 2).unwrap(), &padded.narrow(2, p / 2, d / 2).unwrap()], 2)
            .unwrap()
            .reshape((n, h * d))
            .unwrap();
        let diff =
            (back - plain).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "padded vs plain: {diff}");
        let pads = padded.narrow(2, d / 2, (p - d) / 2).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(pads.to_scalar::<f32>().unwrap(), 0.0, "padded value dims stay zero");
    }
}
