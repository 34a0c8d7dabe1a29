//! Building blocks shared by both towers, each with the reference's precision recipe (fact sheet §10):
//! Linear, RMSNorm (§4.4, trap 13), rotary application and variable-length attention over packed sequences.

use candle_core::{D, DType, Module, Result, Tensor};

use crate::weights::Weights;

/// `y = x·Wᵀ (+ b)`; `W` is `[out, in]` as in PyTorch.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`.
    pub(crate) fn new(in_dim: usize, out_dim: usize, bias: bool, vb: Weights) -> crate::Result<Self> {
        let weight = vb.get(&[out_dim, in_dim], "weight")?;
        let bias = if bias { Some(vb.get(&[out_dim], "bias")?) } else { None };
        Ok(Self { weight, bias })
    }
}

impl Module for Linear {
    /// `[N, in] → [N, out]`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = xs.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => ys.broadcast_add(b),
            None => Ok(ys),
        }
    }
}

/// RMSNorm with the reference's order (trap 13): statistics in f32, normalised values cast back to the
/// input dtype, *then* multiplied by the weight.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(dim: usize, eps: f64, vb: Weights) -> crate::Result<Self> {
        Ok(Self { weight: vb.get(&[dim], "weight")?, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.dtype() == DType::F32 || xs.device().is_cuda() {
            // In f32 the cast is a no-op, so candle's fused kernel computes the same function. On CUDA the fused
            // kernel (f32 inside, one rounding after the weight multiply) replaces nine memory-bound passes; it
            // differs from the reference's double rounding by at most one bf16 ulp per element.
            return candle_nn::ops::rms_norm(&xs.contiguous()?, &self.weight, self.eps as f32);
        }
        let x32 = xs.to_dtype(DType::F32)?;
        let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x32.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?.to_dtype(xs.dtype())?;
        y.broadcast_mul(&self.weight)
    }
}

/// NeoX ("half") rotary on `[H, N, d]` with per-token `cos`/`sin` of shape `[N, d/2]`.
pub(crate) fn apply_rotary(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let xs = xs.unsqueeze(0)?.contiguous()?;
    candle_nn::rotary_emb::rope(&xs, cos, sin)?.squeeze(0)
}

/// Upper bound on the f32 score matrices materialised at once by [`varlen_attention`].
const SCORE_BYTES_PER_CHUNK: usize = 512 << 20;

/// Attention over packed variable-length sequences.
///
/// `q`: `[Hq, N, d]`, `k`, `v`: `[Hkv, N, d]` with `Hq` a multiple of `Hkv` (query head `n` uses kv head
/// `n / (Hq/Hkv)`, trap 19); sequence `i` is rows `cu_seqlens[i]..cu_seqlens[i+1]`; tokens of different
/// sequences never see each other, which is what makes results independent of the batch. Scores and softmax
/// in f32, probabilities cast to the value dtype before `·V` (trap 20). Returns `[N, Hq·d]`.
///
/// Sequences of equal length (the vision windows of a page, pages of one size) are gathered and run as one
/// batched matmul, in chunks that bound the score memory; nothing is padded.
pub(crate) fn varlen_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens: &[usize],
    causal: bool,
    scale: f64,
) -> Result<Tensor> {
    let (hq, n, d) = q.dims3()?;
    let hkv = k.dim(0)?;
    let group = hq / hkv;
    let device = q.device();
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for w in cu_seqlens.windows(2) {
        if w[1] > w[0] {
            by_len.entry(w[1] - w[0]).or_default().push(w[0]);
        }
    }
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut outs = Vec::new();
    for (len, starts) in by_len {
        let per_seq = hq * len * len * 4;
        let chunk = (SCORE_BYTES_PER_CHUNK / per_seq.max(1)).max(1);
        let mask = if causal { Some(causal_mask(len, device)?) } else { None };
        for starts in starts.chunks(chunk) {
            let s = starts.len();
            let rows: Vec<u32> = starts.iter().flat_map(|&st| (st as u32)..(st + len) as u32).collect();
            let idx = Tensor::from_slice(&rows, rows.len(), device)?;
            order.extend_from_slice(&rows);
            // [S·Hkv, group·len, d]: sequences × kv heads as the batch, the query heads of a kv head stacked.
            let qs = q.index_select(&idx, 1)?.reshape((hkv, group, s, len, d))?.permute((2, 0, 1, 3, 4))?.reshape((
                s * hkv,
                group * len,
                d,
            ))?;
            let kv = |t: &Tensor| -> Result<Tensor> {
                t.index_select(&idx, 1)?.reshape((hkv, s, len, d))?.transpose(0, 1)?.reshape((s * hkv, len, d))
            };
            let (ks, vs) = (kv(k)?, kv(v)?);
            let mut scores = (qs.matmul(&ks.t()?)?.to_dtype(DType::F32)? * scale)?;
            if let Some(mask) = &mask {
                scores = scores.reshape((s * hkv, group, len, len))?.broadcast_add(mask)?.reshape((
                    s * hkv,
                    group * len,
                    len,
                ))?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
            let out = probs.matmul(&vs)?; // [S·Hkv, group·len, d]
            outs.push(out.reshape((s, hkv, group, len, d))?.permute((1, 2, 0, 3, 4))?.reshape((hq, s * len, d))?);
        }
    }
    let out = Tensor::cat(&outs, 1)?; // [Hq, N, d], rows in `order`
    let mut inverse = vec![0u32; n];
    for (pos, &row) in order.iter().enumerate() {
        inverse[row as usize] = pos as u32;
    }
    let out = out.index_select(&Tensor::from_vec(inverse, n, device)?, 1)?;
    out.transpose(0, 1)?.reshape((n, hq * d))
}

/// `[len, len]` additive mask, 0 on and below the diagonal, −∞ above.
fn causal_mask(len: usize, device: &candle_core::Device) -> Result<Tensor> {
    let data: Vec<f32> =
        (0..len).flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Tensor::from_vec(data, (len, len), device)
}
