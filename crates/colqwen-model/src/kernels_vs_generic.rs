//! Each fused CUDA kernel (`kernels.rs`) against its generic candle twin (`nn.rs`), on the GPU, at the model's
//! real shapes. Skipped (with a note) where no CUDA device is present. A module of its own, so that
//! `kernels.rs` never imports `nn.rs` (which imports it).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use candle_core::{DType, Device, Tensor};
use half::bf16;

use crate::kernels::{
    add_layer_norm, add_rms_norm, blas_lt, flash_attention, flash_tiles, linear_bias, linear_bias_gelu, rope, silu_mul,
    upload_pinned,
};
use crate::nn::{AttentionPlan, apply_rotary, pad_head_halves, varlen_attention};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("no CUDA device ({e}); kernel test skipped");
            None
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Packed qkv `[N, Hq + 2Hkv, d]` of random bf16 values, plus the generic path's `[H, N, d]` copies.
fn random_qkv(dev: &Device, n: usize, hq: usize, hkv: usize, d: usize) -> Tensor {
    Tensor::randn(0f32, 1.0, (n, hq + 2 * hkv, d), dev).unwrap().to_dtype(DType::BF16).unwrap()
}

fn check_attention(dev: &Device, cu: &[usize], hq: usize, hkv: usize, d: usize, causal: bool) {
    let n = *cu.last().unwrap();
    let qkv = random_qkv(dev, n, hq, hkv, d);
    let (q, k, v) =
        (qkv.narrow(1, 0, hq).unwrap(), qkv.narrow(1, hq, hkv).unwrap(), qkv.narrow(1, hq + hkv, hkv).unwrap());
    let scale = 1.0 / (d as f64).sqrt();
    let tiles = flash_tiles(cu, dev).unwrap();
    let fused = flash_attention(&q, &k, &v, &tiles, causal, scale).unwrap().reshape((n, hq * d)).unwrap();
    let heads = |t: &Tensor| t.transpose(0, 1).unwrap().contiguous().unwrap();
    let plan = AttentionPlan::generic(cu, hq, hkv, d, causal, dev).unwrap();
    let generic = varlen_attention(&heads(&q), &heads(&k), &heads(&v), &plan, scale).unwrap();
    let err = max_abs_diff(&fused, &generic);
    // Outputs are convex combinations of N(0,1) values; both paths round P to bf16 (the generic path also
    // rounds q·scale and the scores), so a few bf16 ulps of O(1) values.
    assert!(err < 3e-2, "flash d={d} causal={causal} segments {cu:?}: max |fused − generic| = {err}");
    assert!(fused.to_dtype(DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().is_finite());
}

#[test]
fn flash_attention_matches_generic_vision_windows_and_full() {
    let Some(dev) = gpu() else { return };
    // Windows of a 768-token page (64 patches) and of a ragged page (48, 32, 16), then whole images.
    check_attention(&dev, &[0, 64, 128, 176, 208, 224, 288], 16, 16, 80, false);
    check_attention(&dev, &[0, 3072, 3072 + 1000], 16, 16, 80, false);
    check_attention(&dev, &[0, 5, 37, 100], 2, 2, 16, false);
}

#[test]
fn flash_attention_matches_generic_causal_gqa() {
    let Some(dev) = gpu() else { return };
    check_attention(&dev, &[0, 790, 797, 900], 16, 2, 128, true);
    check_attention(&dev, &[0, 1, 66, 130], 4, 2, 16, true);
}

#[test]
fn rope_matches_generic_both_recipes() {
    let Some(dev) = gpu() else { return };
    for (hq, hkv, d, f32_tables) in [(16, 16, 80, true), (16, 2, 128, false)] {
        let n = 300;
        let qkv = random_qkv(&dev, n, hq, hkv, d);
        let theta = Tensor::randn(0f32, 3.0, (n, d / 2), &dev).unwrap();
        let (mut cos, mut sin) = (theta.cos().unwrap(), theta.sin().unwrap());
        if !f32_tables {
            cos = cos.to_dtype(DType::BF16).unwrap();
            sin = sin.to_dtype(DType::BF16).unwrap();
        }
        let fused = rope(&qkv, hq + hkv, &cos, &sin).unwrap(); // [N, hq+hkv, d]
        let x = qkv.narrow(1, 0, hq + hkv).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
        let generic = apply_rotary(&x.to_dtype(cos.dtype()).unwrap(), &cos, &sin)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let err = max_abs_diff(&fused, &generic);
        // Same arithmetic; at most a double-rounding ulp on values of magnitude ≲ 4.
        assert!(err <= 0.032, "rope d={d} f32 tables {f32_tables}: max diff {err}");
    }
}

#[test]
fn silu_mul_matches_generic() {
    let Some(dev) = gpu() else { return };
    let gu = Tensor::randn(0f32, 2.0, (257, 2 * 3456), &dev).unwrap().to_dtype(DType::BF16).unwrap();
    let fused = silu_mul(&gu).unwrap();
    let (g, u) = (gu.narrow(1, 0, 3456).unwrap(), gu.narrow(1, 3456, 3456).unwrap());
    let generic = (candle_nn::ops::silu(&g).unwrap() * u).unwrap();
    let err = max_abs_diff(&fused, &generic);
    assert!(err == 0.0, "silu_mul: max diff {err}");
}

#[test]
fn linear_bias_matches_f32_product() {
    let Some(dev) = gpu() else { return };
    let Device::Cuda(cuda) = &dev else { return };
    let lt = blas_lt(cuda).unwrap();
    let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
    // x as a view at an offset (the second of two stacked matrices), as norm outputs are.
    let xx = bf(Tensor::randn(0f32, 1.0, (2, 1000, 1280), &dev).unwrap());
    let x = xx.get(1).unwrap();
    let w = bf((Tensor::randn(0f32, 1.0, (3840, 1280), &dev).unwrap() * 0.03).unwrap());
    let b = bf(Tensor::randn(0f32, 1.0, 3840, &dev).unwrap());
    let fused = linear_bias(&lt, &x, &w, &b).unwrap().to_dtype(DType::F32).unwrap();
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let exact = f(&x).matmul(&f(&w).t().unwrap()).unwrap().broadcast_add(&f(&b)).unwrap();
    // One bf16 rounding of the f32 result: relative error ≤ 2⁻⁸ (plus accumulation-order noise).
    let rel = ((&fused - &exact).unwrap().abs().unwrap() / (exact.abs().unwrap() + 1e-2).unwrap()).unwrap();
    let worst = rel.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(worst < 6e-3, "linear_bias: worst relative error {worst}");
}

#[test]
fn add_rms_norm_matches_reference_order() {
    let Some(dev) = gpu() else { return };
    for d in [1280, 2048, 32] {
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let x = bf(Tensor::randn(0f32, 1.0, (333, d), &dev).unwrap());
        let delta = bf(Tensor::randn(0f32, 0.5, (333, d), &dev).unwrap());
        let w = bf(Tensor::randn(1f32, 0.2, d, &dev).unwrap());
        let (h, y) = add_rms_norm(&x, Some(&delta), &w, 1e-6).unwrap();
        let h_ref = (&x + &delta).unwrap();
        assert_eq!(max_abs_diff(&h, &h_ref), 0.0, "residual add must round as the bf16 add does");
        // Trap 13: statistics in f32, normalised values cast to bf16, then the weight multiply in bf16.
        let h32 = h_ref.to_dtype(DType::F32).unwrap();
        let var = h32.sqr().unwrap().mean_keepdim(1).unwrap();
        let n = bf(h32.broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap()).unwrap());
        let y_ref = n.broadcast_mul(&w).unwrap();
        let rel = ((y.to_dtype(DType::F32).unwrap() - y_ref.to_dtype(DType::F32).unwrap()).unwrap().abs().unwrap()
            / (y_ref.to_dtype(DType::F32).unwrap().abs().unwrap() + 1e-3).unwrap())
        .unwrap();
        let worst = rel.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(worst <= 1.6e-2, "add_rms_norm d={d}: worst relative difference {worst} (more than 2 ulp)");
        let (same, y0) = add_rms_norm(&h_ref, None, &w, 1e-6).unwrap();
        assert_eq!(max_abs_diff(&same, &h_ref), 0.0);
        assert_eq!(max_abs_diff(&y0, &y), 0.0, "with and without the fused add must agree");
    }
}

#[test]
fn add_layer_norm_matches_torch_order() {
    let Some(dev) = gpu() else { return };
    for d in [1152, 2048, 32] {
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        // An offset mean, as the vision residual stream has: a one-pass variance would lose digits here.
        let x = bf((Tensor::randn(0f32, 1.0, (333, d), &dev).unwrap() + 20.0).unwrap());
        let delta = bf(Tensor::randn(0f32, 0.5, (333, d), &dev).unwrap());
        let w = bf(Tensor::randn(1f32, 0.2, d, &dev).unwrap());
        let b = bf(Tensor::randn(0f32, 0.2, d, &dev).unwrap());
        let (h, y) = add_layer_norm(&x, Some(&delta), &w, &b, 1e-6).unwrap();
        let h_ref = (&x + &delta).unwrap();
        assert_eq!(max_abs_diff(&h, &h_ref), 0.0, "residual add must round as the bf16 add does");
        let h32 = f(&h_ref);
        let c = h32.broadcast_sub(&h32.mean_keepdim(1).unwrap()).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(1).unwrap();
        let y_ref = c
            .broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&f(&w))
            .unwrap()
            .broadcast_add(&f(&b))
            .unwrap();
        // One bf16 rounding of the f32 value: within one ulp (2⁻⁸ relative) plus summation-order noise.
        let rel = ((f(&y) - &y_ref).unwrap().abs().unwrap() / (y_ref.abs().unwrap() + 1e-2).unwrap()).unwrap();
        let worst = rel.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(worst <= 8e-3, "add_layer_norm d={d}: worst relative difference {worst}");
        let (_, y0) = add_layer_norm(&h_ref, None, &w, &b, 1e-6).unwrap();
        assert_eq!(max_abs_diff(&y0, &y), 0.0, "with and without the fused add must agree");
    }
}

#[test]
fn linear_bias_gelu_matches_f32_gelu_tanh() {
    let Some(dev) = gpu() else { return };
    let Device::Cuda(cuda) = &dev else { return };
    let lt = blas_lt(cuda).unwrap();
    let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let x = bf(Tensor::randn(0f32, 1.0, (1000, 1152), &dev).unwrap());
    let w = bf((Tensor::randn(0f32, 1.0, (4304, 1152), &dev).unwrap() * 0.05).unwrap());
    let b = bf(Tensor::randn(0f32, 0.5, 4304, &dev).unwrap());
    let fused = f(&linear_bias_gelu(&lt, &x, &w, &b).unwrap());
    let exact = f(&x).matmul(&f(&w).t().unwrap()).unwrap().broadcast_add(&f(&b)).unwrap().gelu().unwrap();
    // One bf16 rounding of the f32 GELU (the reference rounds twice: after the bias and after the GELU).
    let err = ((&fused - &exact).unwrap().abs().unwrap() / (exact.abs().unwrap() + 1e-2).unwrap()).unwrap();
    let worst = err.flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(worst < 1e-2, "linear_bias_gelu: worst relative error {worst}");
    let plain = f(&linear_bias(&lt, &x, &w, &b).unwrap());
    assert!(max_abs_diff(&plain.gelu().unwrap(), &fused) < 0.05, "the epilogue's GELU is the tanh form");
}

/// Qwen3-VL's vision heads of 72 dims run the 80-dim flash kernel zero-padded: same attention output.
#[test]
fn padded_heads_equal_the_unpadded_generic_attention() {
    let Some(dev) = gpu() else { return };
    let (n, h, d, p) = (500, 16, 72, 80);
    let qkv = Tensor::randn(0f32, 1.0, (n, 3 * h * d), &dev).unwrap().to_dtype(DType::BF16).unwrap();
    let theta = Tensor::randn(0f32, 3.0, (n, d / 2), &dev).unwrap();
    let (cos, sin) = (theta.cos().unwrap(), theta.sin().unwrap());
    let cu = [0, 200, 500];
    let unpadded = {
        let x = qkv.reshape((n, 3 * h, d)).unwrap();
        let part = |i: usize| x.narrow(1, i * h, h).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
        let rot = |t: Tensor| apply_rotary(&t, &cos, &sin).unwrap();
        let plan = AttentionPlan::generic(&cu, h, h, d, false, &dev).unwrap();
        varlen_attention(&rot(part(0)), &rot(part(1)), &part(2), &plan, 1.0 / (d as f64).sqrt()).unwrap()
    };
    let padded_qkv = pad_head_halves(&qkv, 1, d, p).unwrap();
    let ones = Tensor::ones((n, (p - d) / 2), DType::F32, &dev).unwrap();
    let zeros = ones.zeros_like().unwrap();
    let cos_p = Tensor::cat(&[&cos, &ones], 1).unwrap();
    let sin_p = Tensor::cat(&[&sin, &zeros], 1).unwrap();
    let x = padded_qkv.reshape((n, 3 * h, p)).unwrap();
    let qk = rope(&x, 2 * h, &cos_p, &sin_p).unwrap();
    let tiles = flash_tiles(&cu, &dev).unwrap();
    let out = flash_attention(
        &qk.narrow(1, 0, h).unwrap(),
        &qk.narrow(1, h, h).unwrap(),
        &x.narrow(1, 2 * h, h).unwrap(),
        &tiles,
        false,
        1.0 / (d as f64).sqrt(),
    )
    .unwrap(); // [n, h, p]
    let (first, second) = (out.narrow(2, 0, d / 2).unwrap(), out.narrow(2, p / 2, d / 2).unwrap());
    let back = Tensor::cat(&[&first, &second], 2).unwrap().reshape((n, h * d)).unwrap();
    assert_eq!(
        max_abs_diff(
            &out.narrow(2, d / 2, (p - d) / 2).unwrap(),
            &first.zeros_like().unwrap().narrow(2, 0, (p - d) / 2).unwrap()
        ),
        0.0,
        "padded value dims stay zero"
    );
    let err = max_abs_diff(&back, &unpadded);
    assert!(err < 3e-2, "padded flash vs generic: max diff {err}");
}

#[test]
fn pinned_upload_equals_plain_upload_and_reuses_its_buffer() {
    let Some(dev) = gpu() else { return };
    let Device::Cuda(cuda) = &dev else { return };
    let mut staging = None;
    for (rows, width) in [(300, 1176), (7, 1176), (301, 1176)] {
        let host: Vec<bf16> = (0..rows * width).map(|i| bf16::from_f32((i % 997) as f32 * 0.25 - 100.0)).collect();
        let up = upload_pinned(cuda, &mut staging, (rows, width), |dst| dst.copy_from_slice(&host)).unwrap();
        let plain = Tensor::from_vec(host, (rows, width), &dev).unwrap();
        assert_eq!(up.dims(), [rows, width]);
        assert_eq!(max_abs_diff(&up, &plain), 0.0);
    }
    assert_eq!(staging.as_ref().map(|s| s.len()), Some(301 * 1176), "grown once, reused for the smaller batch");
}

// ---- Qwen3.5 (ColQwen3.5) ----

use crate::kernels::{
    add_centred_rms_norm, causal_conv_silu, delta_tiles, deltanet_fits, gated_delta_rule, gated_rms_norm,
};
use crate::qwen3_5::deltanet::{self, Heads, Params};

fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn round_bf16(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

/// Worst `|ours − theirs| / (|theirs| + floor)`.
fn worst_relative(ours: &[f32], theirs: &[f32], floor: f32) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs() / (b.abs() + floor)).fold(0f32, f32::max)
}

/// Qwen3.5's 256-dim full-attention heads (16 query heads over 4 kv heads) on the flash kernel with 32-key tiles.
#[test]
fn flash_attention_matches_generic_head_dim_256() {
    let Some(dev) = gpu() else { return };
    check_attention(&dev, &[0, 790, 797, 900], 16, 4, 256, true);
    check_attention(&dev, &[0, 1, 33, 97], 4, 2, 256, true);
}

/// The partial rotary (the first quarter of each head) against the generic `apply_rotary`, both recipes, on the
/// 4B's heads (r 64 of 256) and the tiny checkpoint's (r 8 of 32), from a strided view of a fused projection.
#[test]
fn partial_rope_matches_generic() {
    let Some(dev) = gpu() else { return };
    for (hq, hkv, d, r, f32_tables) in [(16, 4, 256, 64, false), (4, 2, 32, 8, false), (16, 4, 256, 64, true)] {
        let n = 300;
        let qkv = random_qkv(&dev, n, hq, hkv, d);
        let theta = Tensor::randn(0f32, 3.0, (n, r / 2), &dev).unwrap();
        let (mut cos, mut sin) = (theta.cos().unwrap(), theta.sin().unwrap());
        if !f32_tables {
            cos = cos.to_dtype(DType::BF16).unwrap();
            sin = sin.to_dtype(DType::BF16).unwrap();
        }
        let fused = rope(&qkv, hq + hkv, &cos, &sin).unwrap();
        let x = qkv.narrow(1, 0, hq + hkv).unwrap().transpose(0, 1).unwrap().contiguous().unwrap();
        let generic = apply_rotary(&x, &cos, &sin).unwrap().to_dtype(DType::BF16).unwrap().transpose(0, 1).unwrap();
        let err = max_abs_diff(&fused, &generic);
        assert!(err <= 0.032, "partial rope d={d} r={r} f32 tables {f32_tables}: max diff {err}");
        let pass = max_abs_diff(
            &fused.narrow(2, r, d - r).unwrap(),
            &qkv.narrow(1, 0, hq + hkv).unwrap().narrow(2, r, d - r).unwrap(),
        );
        assert_eq!(pass, 0.0, "the dims past r are copied");
    }
}

/// The fused add + zero-centred RMSNorm against its definition (f32 statistics and product, one rounding), at the
/// widths of the 4B (2560), the 9B (4096), the tiny checkpoint (64) and the per-head q/k norms (256, 32).
#[test]
fn centred_rms_norm_matches_reference_order() {
    let Some(dev) = gpu() else { return };
    for d in [2560, 4096, 64, 256, 32] {
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let x = bf(Tensor::randn(0f32, 1.0, (333, d), &dev).unwrap());
        let delta = bf(Tensor::randn(0f32, 0.5, (333, d), &dev).unwrap());
        // The stored weight is bf16; the norm multiplies by 1 + w in f32.
        let w1 = (f(&bf(Tensor::randn(0f32, 0.15, d, &dev).unwrap())) + 1.0).unwrap();
        let (h, y) = add_centred_rms_norm(&x, Some(&delta), &w1, 1e-6).unwrap();
        let h_ref = (&x + &delta).unwrap();
        assert_eq!(max_abs_diff(&h, &h_ref), 0.0, "residual add must round as the bf16 add does");
        let h32 = f(&h_ref);
        let var = h32.sqr().unwrap().mean_keepdim(1).unwrap();
        let y_ref = h32.broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(&w1).unwrap();
        // One bf16 rounding of the f32 value: within one ulp (2⁻⁸ relative) plus rsqrt noise.
        let worst = worst_relative(&host(&y), &host(&y_ref), 1e-2);
        assert!(worst <= 8e-3, "centred norm d={d}: worst relative difference {worst}");
        let (_, y0) = add_centred_rms_norm(&h_ref, None, &w1, 1e-6).unwrap();
        assert_eq!(max_abs_diff(&y0, &y), 0.0, "with and without the fused add must agree");
    }
}

/// The causal convolution + SiLU over packed sequences (a strided view of the fused projection) against the
/// host twin (`deltanet::conv_silu`, the reference's two roundings).
#[test]
fn causal_conv_silu_matches_host() {
    let Some(dev) = gpu() else { return };
    let cu = [0usize, 1, 5, 70, 200];
    let (n, c, k) = (200, 96, 4);
    let proj = Tensor::randn(0f32, 1.0, (n, c + 40), &dev).unwrap().to_dtype(DType::BF16).unwrap();
    let x = proj.narrow(1, 0, c).unwrap();
    let w = Tensor::randn(0f32, 0.5, (c, k), &dev).unwrap().to_dtype(DType::BF16).unwrap();
    let tiles = delta_tiles(&cu, &dev).unwrap();
    let fused = host(&causal_conv_silu(&x, &w, &tiles).unwrap());
    let expected = deltanet::conv_silu(&host(&x), &host(&w), k, c, &cu, round_bf16);
    // Same two roundings; the f32 sums may round differently by an ulp before the first one.
    let worst = worst_relative(&fused, &expected, 1e-2);
    assert!(worst <= 8e-3, "causal conv: worst relative difference {worst}");
}

/// The chunked gated delta rule kernels against the host twin (`deltanet::gates` + `deltanet::chunked`, the
/// reference's f32 algorithm) on the 4B's heads (16 key × 128, 32 value × 128) and the tiny checkpoint's
/// (2 × 8, 4 × 16), over sequences of 1, 63, 64, 65 and 800 rows packed together.
#[test]
fn gated_delta_rule_matches_host() {
    let Some(dev) = gpu() else { return };
    let cu = [0usize, 1, 64, 128, 193, 993];
    for heads in [Heads { nk: 16, nv: 32, dk: 128, dv: 128 }, Heads { nk: 2, nv: 4, dk: 8, dv: 16 }] {
        assert!(deltanet_fits(heads.dk, heads.dv));
        let (n, cd, nv) = (*cu.last().unwrap(), heads.conv_dim(), heads.nv);
        // The conv output after SiLU (values ≥ −0.28), and a projection holding b then a, as the layer's GEMM.
        let conv = candle_nn::ops::silu(&Tensor::randn(0f32, 1.0, (n, cd), &dev).unwrap())
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let proj = Tensor::randn(0f32, 1.0, (n, 2 * nv + 8), &dev).unwrap().to_dtype(DType::BF16).unwrap();
        let (b, a) = (proj.narrow(1, 0, nv).unwrap(), proj.narrow(1, nv, nv).unwrap());
        let a_log = Tensor::rand(0.05f32, 1.0, nv, &dev).unwrap().log().unwrap();
        let dt_bias = Tensor::randn(0f32, 0.5, nv, &dev).unwrap();
        let tiles = delta_tiles(&cu, &dev).unwrap();
        let Heads { nk, nv, dk, dv } = heads;
        let fused = host(&gated_delta_rule(&conv, &a, &b, &a_log, &dt_bias, &tiles, (nk, nv, dk, dv)).unwrap());
        let params = Params { conv: Vec::new(), kernel: 4, a_log: host(&a_log), dt_bias: host(&dt_bias) };
        let (g, beta) = deltanet::gates(&host(&a), &host(&b), &params, nv, round_bf16);
        let (q, k, v) = deltanet::split_qkv(&host(&conv), heads);
        let expected = deltanet::chunked(&deltanet::Inputs { q: &q, k: &k, v: &v, g: &g, beta: &beta }, heads, &cu);
        // The kernel's f32 sums run in other orders; its output is rounded to bf16 once.
        let worst = worst_relative(&fused, &expected, 5e-2);
        let max_abs = fused.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("delta rule {heads:?}: worst relative {worst:.2e}, max |Δ| {max_abs:.2e}");
        assert!(worst <= 1e-2, "delta rule {heads:?}: worst relative difference {worst} (max |Δ| {max_abs})");
        assert!(fused.iter().all(|x| x.is_finite()));
    }
}

/// The gated RMSNorm kernel against the generic path's (`qwen3_5::text::gated_rms_norm`, candle ops on the GPU):
/// the same roundings.
#[test]
fn gated_rms_norm_matches_generic() {
    let Some(dev) = gpu() else { return };
    for (nv, dv) in [(32, 128), (4, 16)] {
        let n = 257;
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let core = bf(Tensor::randn(0f32, 0.3, (n, nv * dv), &dev).unwrap());
        let proj = bf(Tensor::randn(0f32, 1.5, (n, 3 * nv * dv), &dev).unwrap());
        let z = proj.narrow(1, nv * dv, nv * dv).unwrap();
        let w = bf(Tensor::randn(1f32, 0.2, dv, &dev).unwrap());
        let fused = gated_rms_norm(&core, &z, &w, 1e-6, dv).unwrap();
        let generic = crate::qwen3_5::text::gated_rms_norm(
            &core.reshape((n * nv, dv)).unwrap(),
            &z.contiguous().unwrap().reshape((n * nv, dv)).unwrap(),
            &w,
            1e-6,
        )
        .unwrap()
        .reshape((n, nv * dv))
        .unwrap();
        // Identical steps; rsqrt and exp may differ by an ulp before a rounding.
        let worst = worst_relative(&host(&fused), &host(&generic), 1e-2);
        assert!(worst <= 8e-3, "gated norm nv={nv} dv={dv}: worst relative difference {worst}");
    }
}
