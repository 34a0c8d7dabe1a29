//! The Gated DeltaNet core on the host, in f32, as transformers 5.17 computes it for a whole sequence
//! (`Qwen3_5GatedDeltaNet.forward` without a cache): the depthwise causal convolution and SiLU over the
//! `[q | k | v]` channels, the gates `β = sigmoid(b)` and `g = −exp(A_log)·softplus(a + dt_bias)`, then the
//! gated delta rule with the queries and keys L2-normalised, in its chunked form
//! (`torch_chunk_gated_delta_rule`, chunks of 64) or its per-token form (`torch_recurrent_gated_delta_rule`, the
//! cross-check). Packed sequences (`cu_seqlens`) never see each other: each starts with a zero state and a
//! zero convolution history.
//!
//! This is the generic path's implementation (CPU, and the generic path of every device: the layer's inputs
//! come to the host and the core goes back) and the twin the CUDA kernels are tested against.

use rayon::prelude::*;

/// Chunk length of `torch_chunk_gated_delta_rule` (its default `chunk_size`).
pub const CHUNK: usize = 64;

/// Head layout of a Gated DeltaNet layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Key (and query) heads.
    pub nk: usize,
    /// Value heads, a multiple of `nk`: value head `h` reads key head `h / (nv / nk)` (`repeat_interleave`).
    pub nv: usize,
    /// Key head width.
    pub dk: usize,
    /// Value head width.
    pub dv: usize,
}

impl Heads {
    /// Channels of the convolution: `[q (nk·dk) | k (nk·dk) | v (nv·dv)]`.
    pub fn conv_dim(&self) -> usize {
        2 * self.nk * self.dk + self.nv * self.dv
    }
}

/// `x·rsqrt(Σx² + 1e-6)` (the `l2norm` of transformers, aligned with flash-linear-attention: the ε inside the
/// root), in place.
fn l2norm(x: &mut [f32]) {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let inv = 1.0 / (ss + 1e-6).sqrt();
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `F.softplus(x)` (β 1, threshold 20): `x` above 20, else `log1p(exp(x))`.
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

/// `σ(x) = 1 / (1 + e^{−x})`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `x·σ(x)`.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// The normalised queries (scaled by `dk^-½` after the norm) and keys of one value head of one sequence,
/// `[len, dk]` each, from `q`, `k` `[N, nk, dk]`.
fn head_qk(
    q: &[f32],
    k: &[f32],
    heads: Heads,
    rows: std::ops::Range<usize>,
    h: usize,
    divide: bool,
) -> (Vec<f32>, Vec<f32>) {
    let Heads { nk, nv, dk, .. } = heads;
    let kh = h / (nv / nk);
    // Python computes `dk ** -0.5` and `dk ** 0.5` in double; torch uses them as f32 scalars.
    let scale = (dk as f64).powf(-0.5) as f32;
    let sqrt = (dk as f64).sqrt() as f32;
    let mut qs = Vec::with_capacity(rows.len() * dk);
    let mut ks = Vec::with_capacity(rows.len() * dk);
    for t in rows {
        let at = (t * nk + kh) * dk;
        let (mut qt, mut kt) = (q[at..at + dk].to_vec(), k[at..at + dk].to_vec());
        l2norm(&mut qt);
        l2norm(&mut kt);
        // The chunked form multiplies by the scale, the per-token form divides by the root.
        if divide {
            qt.iter_mut().for_each(|x| *x /= sqrt);
        } else {
            qt.iter_mut().for_each(|x| *x *= scale);
        }
        qs.extend(qt);
        ks.extend(kt);
    }
    (qs, ks)
}

/// Runs `per_head` for every (sequence, value head) in parallel and scatters its `[len, dv]` output into
/// `[N, nv, dv]`.
fn per_sequence_head(
    n: usize,
    heads: Heads,
    cu_seqlens: &[usize],
    per_head: impl Fn(std::ops::Range<usize>, usize) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let Heads { nv, dv, .. } = heads;
    let jobs: Vec<(usize, usize, usize)> =
        cu_seqlens.windows(2).flat_map(|w| (0..nv).map(move |h| (w[0], w[1], h))).collect();
    let outs: Vec<_> = jobs.par_iter().map(|&(s, e, h)| per_head(s..e, h)).collect();
    let mut out = vec![0f32; n * nv * dv];
    for (&(s, e, h), o) in jobs.iter().zip(outs) {
        for t in s..e {
            let src = &o[(t - s) * dv..(t - s + 1) * dv];
            out[(t * nv + h) * dv..(t * nv + h + 1) * dv].copy_from_slice(src);
        }
    }
    out
}

/// The delta rule's inputs over packed sequences, f32: `q`, `k` `[N, nk, dk]`, `v` `[N, nv, dv]`, `g`, `beta`
/// `[N, nv]`.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Queries (before their L2 norm).
    pub q: &'a [f32],
    /// Keys (before their L2 norm).
    pub k: &'a [f32],
    /// Values.
    pub v: &'a [f32],
    /// Log-decays.
    pub g: &'a [f32],
    /// Write strengths.
    pub beta: &'a [f32],
}

/// The `[q | k | v]` rows of the convolution's output `[N, conv_dim]` as three arrays `[N, nk·dk]`,
/// `[N, nk·dk]`, `[N, nv·dv]` (`torch.split` then `reshape`).
pub fn split_qkv(conv_out: &[f32], heads: Heads) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (cd, kd) = (heads.conv_dim(), heads.nk * heads.dk);
    let n = conv_out.len() / cd.max(1);
    let (mut q, mut k, mut v) =
        (Vec::with_capacity(n * kd), Vec::with_capacity(n * kd), Vec::with_capacity(n * (cd - 2 * kd)));
    for row in conv_out.chunks(cd) {
        q.extend_from_slice(&row[..kd]);
        k.extend_from_slice(&row[kd..2 * kd]);
        v.extend_from_slice(&row[2 * kd..]);
    }
    (q, k, v)
}

/// `torch_chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)` over packed sequences, with
/// the key heads repeated (interleaved) to the value heads as `Qwen3_5GatedDeltaNet` does before the call →
/// `[N, nv, dv]` f32.
pub fn chunked(x: &Inputs, heads: Heads, cu_seqlens: &[usize]) -> Vec<f32> {
    let n = cu_seqlens.last().copied().unwrap_or(0);
    per_sequence_head(n, heads, cu_seqlens, |rows, h| chunked_head(x, heads, rows, h))
}

/// One value head of one sequence in chunks of [`CHUNK`], in the reference's order of operations: zero
/// padding to whole chunks, `k·β` and `v·β`, the in-chunk cumulative log-decay `c`, the decay matrix
/// `D[i][j] = exp(c_i − c_j)` (0 above the diagonal), the unit-lower-triangular system `(I + strict(kβ·kᵀ ⊙ D))`
/// solved by forward substitution for the new values and the decayed keys, then the scan over chunks.
fn chunked_head(x: &Inputs, heads: Heads, rows: std::ops::Range<usize>, h: usize) -> Vec<f32> {
    let Inputs { q, k, v, g, beta } = *x;
    let Heads { nv, dk, dv, .. } = heads;
    let len = rows.len();
    let (qs, ks) = head_qk(q, k, heads, rows.clone(), h, false);
    let at = |t: usize| rows.start + t;
    let mut state = vec![0f32; dk * dv];
    let mut out = vec![0f32; len * dv];
    let c_ = CHUNK;
    // Per chunk scratch.
    let mut kc = vec![0f32; c_ * dk];
    let mut qc = vec![0f32; c_ * dk];
    let mut kb = vec![0f32; c_ * dk];
    let mut vb = vec![0f32; c_ * dv];
    let mut cum = vec![0f32; c_];
    let mut decay = vec![0f32; c_ * c_];
    let mut ut = vec![0f32; c_ * c_];
    let mut attn = vec![0f32; c_ * c_];
    let mut new_values = vec![0f32; c_ * dv];
    let mut k_cumdecay = vec![0f32; c_ * dk];
    let mut v_new = vec![0f32; c_ * dv];
    for c0 in (0..len).step_by(c_) {
        let m = (len - c0).min(c_);
        // Rows past the end are the reference's zero padding (q = k = v = 0, g = β = 0).
        kc.fill(0.0);
        qc.fill(0.0);
        kb.fill(0.0);
        vb.fill(0.0);
        let mut acc = 0f32;
        for i in 0..c_ {
            let (gi, bi) = if i < m { (g[at(c0 + i) * nv + h], beta[at(c0 + i) * nv + h]) } else { (0.0, 0.0) };
            acc += gi;
            cum[i] = acc;
            if i < m {
                let t = c0 + i;
                kc[i * dk..(i + 1) * dk].copy_from_slice(&ks[t * dk..(t + 1) * dk]);
                qc[i * dk..(i + 1) * dk].copy_from_slice(&qs[t * dk..(t + 1) * dk]);
                for d in 0..dk {
                    kb[i * dk + d] = kc[i * dk + d] * bi;
                }
                let vt = &v[(at(t) * nv + h) * dv..(at(t) * nv + h + 1) * dv];
                for d in 0..dv {
                    vb[i * dv + d] = vt[d] * bi;
                }
            }
        }
        for i in 0..c_ {
            for j in 0..c_ {
                decay[i * c_ + j] = if j <= i { (cum[i] - cum[j]).exp() } else { 0.0 };
            }
        }
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        for i in 0..c_ {
            for j in 0..c_ {
                let kk = dot(&kb[i * dk..(i + 1) * dk], &kc[j * dk..(j + 1) * dk]);
                ut[i * c_ + j] = kk * decay[i * c_ + j];
                let qk = dot(&qc[i * dk..(i + 1) * dk], &kc[j * dk..(j + 1) * dk]);
                attn[i * c_ + j] = qk * decay[i * c_ + j];
            }
        }
        // (I + strict_lower(ut)) X = B, row by row (`solve_triangular(..., unitriangular=True)`).
        for i in 0..c_ {
            let e = cum[i].exp();
            for d in 0..dv {
                let mut x = vb[i * dv + d];
                for j in 0..i {
                    x -= ut[i * c_ + j] * new_values[j * dv + d];
                }
                new_values[i * dv + d] = x;
            }
            for d in 0..dk {
                let mut x = kb[i * dk + d] * e;
                for j in 0..i {
                    x -= ut[i * c_ + j] * k_cumdecay[j * dk + d];
                }
                k_cumdecay[i * dk + d] = x;
            }
        }
        let last = cum[c_ - 1];
        // v_new = new_values − k_cumdecay·S; o = (q·e^c)·S + attn·v_new.
        for i in 0..c_ {
            for d in 0..dv {
                let mut x = 0f32;
                for e in 0..dk {
                    x += k_cumdecay[i * dk + e] * state[e * dv + d];
                }
                v_new[i * dv + d] = new_values[i * dv + d] - x;
            }
        }
        for i in 0..m {
            let qe = cum[i].exp();
            for d in 0..dv {
                let mut inter = 0f32;
                for e in 0..dk {
                    inter += (qc[i * dk + e] * qe) * state[e * dv + d];
                }
                let mut intra = 0f32;
                for j in 0..c_ {
                    intra += attn[i * c_ + j] * v_new[j * dv + d];
                }
                out[(c0 + i) * dv + d] = inter + intra;
            }
        }
        // S = S·exp(c_last) + (k·exp(c_last − c))ᵀ·v_new.
        let chunk_decay = last.exp();
        for e in 0..dk {
            for d in 0..dv {
                let mut x = 0f32;
                for i in 0..c_ {
                    x += (kc[i * dk + e] * (last - cum[i]).exp()) * v_new[i * dv + d];
                }
                state[e * dv + d] = state[e * dv + d] * chunk_decay + x;
            }
        }
    }
    out
}

/// `torch_recurrent_gated_delta_rule` (one token at a time) with the same arguments and result as
/// [`chunked`]: equal in exact arithmetic, a cross-check of the chunked form.
pub fn recurrent(x: &Inputs, heads: Heads, cu_seqlens: &[usize]) -> Vec<f32> {
    let Inputs { q, k, v, g, beta } = *x;
    let n = cu_seqlens.last().copied().unwrap_or(0);
    let Heads { nv, dk, dv, .. } = heads;
    per_sequence_head(n, heads, cu_seqlens, |rows, h| {
        let (qs, ks) = head_qk(q, k, heads, rows.clone(), h, true);
        let mut state = vec![0f32; dk * dv];
        let mut out = vec![0f32; rows.len() * dv];
        for (t, row) in rows.enumerate() {
            let decay = g[row * nv + h].exp();
            let b = beta[row * nv + h];
            state.iter_mut().for_each(|s| *s *= decay);
            let (qt, kt) = (&qs[t * dk..(t + 1) * dk], &ks[t * dk..(t + 1) * dk]);
            let vt = &v[(row * nv + h) * dv..(row * nv + h + 1) * dv];
            for d in 0..dv {
                let kv_mem: f32 = (0..dk).map(|e| state[e * dv + d] * kt[e]).sum();
                let delta = (vt[d] - kv_mem) * b;
                for e in 0..dk {
                    state[e * dv + d] += kt[e] * delta;
                }
            }
            for d in 0..dv {
                out[t * dv + d] = (0..dk).map(|e| state[e * dv + d] * qt[e]).sum();
            }
        }
        out
    })
}

/// A layer's fixed parameters of the core, in f32 (from the model-dtype weights, as the reference reads them).
#[derive(Debug, Clone)]
pub struct Params {
    /// `conv1d.weight` `[conv_dim, kernel]`.
    pub conv: Vec<f32>,
    /// Convolution width (4).
    pub kernel: usize,
    /// `A_log` `[nv]`.
    pub a_log: Vec<f32>,
    /// `dt_bias` `[nv]`.
    pub dt_bias: Vec<f32>,
}

/// What the core computes for a packed batch, all f32 (values the model dtype holds where the reference
/// rounds).
#[derive(Debug, Clone)]
pub struct Core {
    /// Convolution + SiLU output `[N, conv_dim]` (`mixed_qkv` after `causal_conv1d_fn`).
    pub conv_out: Vec<f32>,
    /// Log-decay `[N, nv]` (f32 in the reference whatever the model dtype).
    pub g: Vec<f32>,
    /// `sigmoid(b)` `[N, nv]`.
    pub beta: Vec<f32>,
    /// Gated-delta-rule output `[N, nv, dv]` (the gated norm's input).
    pub out: Vec<f32>,
}

/// The core of one layer over packed sequences: `qkv` `[N, conv_dim]` (the `in_proj_qkv` output), `a`, `b`
/// `[N, nv]` (the `in_proj_a` / `in_proj_b` outputs), values as the model dtype holds them. `round` rounds to
/// the model dtype where the reference's tensors are in it: the convolution's output (accumulated in f32,
/// rounded once), SiLU's output and `β`; the delta rule runs in f32 and its output is rounded by the caller.
pub fn core(
    qkv: &[f32],
    a: &[f32],
    b: &[f32],
    params: &Params,
    heads: Heads,
    cu_seqlens: &[usize],
    round: fn(f32) -> f32,
) -> Core {
    let conv_out = conv_silu(qkv, &params.conv, params.kernel, heads.conv_dim(), cu_seqlens, round);
    let (g, beta) = gates(a, b, params, heads.nv, round);
    let (q, k, v) = split_qkv(&conv_out, heads);
    let out = chunked(&Inputs { q: &q, k: &k, v: &v, g: &g, beta: &beta }, heads, cu_seqlens);
    Core { conv_out, g, beta, out }
}

/// The depthwise causal convolution and SiLU (`causal_conv1d_fn(..., activation="silu")`) of `x` `[N, channels]`
/// with `weight` `[channels, kernel]` over packed sequences: `out[t] = silu(Σ_j w[j]·x[t − (K−1) + j])`, zero
/// before each sequence's first row (F.conv1d with padding K−1, cut to L); the sum accumulated in f32 and rounded
/// once by `round`, SiLU computed from the rounded value and rounded.
pub fn conv_silu(
    x: &[f32],
    weight: &[f32],
    kernel: usize,
    channels: usize,
    cu_seqlens: &[usize],
    round: fn(f32) -> f32,
) -> Vec<f32> {
    let n = cu_seqlens.last().copied().unwrap_or(0);
    let (cd, kw) = (channels, kernel);
    let mut out = vec![0f32; n * cd];
    for w in cu_seqlens.windows(2) {
        let (s, e) = (w[0], w[1]);
        out[s * cd..e * cd].par_chunks_mut(cd).enumerate().for_each(|(t, row)| {
            for (c, o) in row.iter_mut().enumerate() {
                let mut acc = 0f32;
                for j in 0..kw {
                    if let Some(src) = (t + j).checked_sub(kw - 1) {
                        acc += weight[c * kw + j] * x[(s + src) * cd + c];
                    }
                }
                *o = round(silu(round(acc)));
            }
        });
    }
    out
}

/// The gates of `[N, nv]` projections `a`, `b`: `(g, β)` with `g = −exp(A_log)·softplus(a + dt_bias)` in f32 and
/// `β = sigmoid(b)` rounded by `round` (the reference computes it in the model dtype).
pub fn gates(a: &[f32], b: &[f32], params: &Params, nv: usize, round: fn(f32) -> f32) -> (Vec<f32>, Vec<f32>) {
    let n = a.len() / nv.max(1);
    let mut g = vec![0f32; n * nv];
    let mut beta = vec![0f32; n * nv];
    for t in 0..n {
        for h in 0..nv {
            beta[t * nv + h] = round(sigmoid(b[t * nv + h]));
            g[t * nv + h] = -params.a_log[h].exp() * softplus(a[t * nv + h] + params.dt_bias[h]);
        }
    }
    (g, beta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use colqwen_testkit::{Golden, tiny};

    const HEADS: Heads = Heads { nk: 2, nv: 4, dk: 8, dv: 16 };

    /// Both forms against `torch_chunk_gated_delta_rule` and `torch_recurrent_gated_delta_rule` (transformers
    /// 5.17, f32) at the chunk boundaries: L = 1, 63, 64, 65 and 700 (11 chunks).
    #[test]
    fn delta_rule_matches_the_reference_at_chunk_boundaries() {
        let golden = Golden::load_from(&tiny("golden-qwen3_5"), "deltanet");
        for len in [1usize, 63, 64, 65, 700] {
            let get = |what: &str| golden.f32(&format!("L{len}.{what}")).0;
            let (q, k, v, g, beta) = (get("q"), get("k"), get("v"), get("g"), get("beta"));
            let (x, cu) = (Inputs { q: &q, k: &k, v: &v, g: &g, beta: &beta }, [0, len]);
            let (ours_chunked, ours_recurrent) = (chunked(&x, HEADS, &cu), recurrent(&x, HEADS, &cu));
            for (what, ours) in [("chunked", &ours_chunked), ("recurrent", &ours_recurrent)] {
                for reference in ["out_chunk", "out_recurrent"] {
                    let theirs = get(reference);
                    assert_eq!(ours.len(), theirs.len());
                    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    eprintln!("L {len}: {what} vs {reference}: max |Δ| {worst:.2e}");
                    assert!(worst <= 3e-6, "L {len}: {what} vs {reference}: max |Δ| {worst}");
                }
            }
        }
    }

    /// Packed sequences are independent: two sequences in one call give what each gives alone.
    #[test]
    fn packed_sequences_do_not_see_each_other() {
        let golden = Golden::load_from(&tiny("golden-qwen3_5"), "deltanet");
        let parts = [65usize, 63];
        let cat = |what: &str| parts.iter().flat_map(|l| golden.f32(&format!("L{l}.{what}")).0).collect::<Vec<_>>();
        let (q, k, v, g, beta) = (cat("q"), cat("k"), cat("v"), cat("g"), cat("beta"));
        let both = chunked(&Inputs { q: &q, k: &k, v: &v, g: &g, beta: &beta }, HEADS, &[0, 65, 128]);
        let alone = cat("out_chunk");
        let worst = both.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 3e-6, "packed vs alone: {worst}");
    }

    #[test]
    fn softplus_follows_torch_threshold() {
        assert_eq!(softplus(25.0), 25.0);
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        // Far below zero softplus(x) ≈ eˣ, which log(1 + eˣ) would lose.
        assert!((softplus(-30.0) / (-30f32).exp() - 1.0).abs() < 1e-6);
    }
}
