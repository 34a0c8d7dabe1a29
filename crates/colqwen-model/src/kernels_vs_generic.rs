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
