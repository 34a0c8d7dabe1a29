//! Micro-benchmark of the Linear shapes of the vision tower on the device: where do biased GEMMs lose time?
//! `colqwen-bench gemm` prints ms and TFLOP/s for matmul variants.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

fn time(dev: &Device, f: &dyn Fn() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let t = Instant::now();
    let n = 10;
    for _ in 0..n {
        f()?;
    }
    dev.synchronize()?;
    Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
}

pub(crate) fn run() -> Result<()> {
    let dev = Device::new_cuda(0)?;
    for (m, k, n) in
        [(49152usize, 1280usize, 3420usize), (49152, 1280, 3456), (49152, 1280, 3840), (12464, 2048, 11008)]
    {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.to_dtype(DType::BF16)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?.to_dtype(DType::BF16)?;
        let wt = w.t()?.contiguous()?;
        let b = Tensor::randn(0f32, 0.02, n, &dev)?.to_dtype(DType::BF16)?;
        let flop = 2.0 * (m * k * n) as f64;
        let cases: Vec<(&str, Box<dyn Fn() -> Result<Tensor>>)> = vec![
            ("x@w.t()", Box::new(|| Ok(x.matmul(&w.t()?)?))),
            ("x@wt(contig)", Box::new(|| Ok(x.matmul(&wt)?))),
            ("x@w.t()+b", Box::new(|| Ok(x.matmul(&w.t()?)?.broadcast_add(&b)?))),
            ("bias add only", Box::new(|| Ok(x.matmul(&wt)?.broadcast_add(&b)?))),
            ("silu", Box::new(|| Ok(candle_nn::ops::silu(&x)?))),
        ];
        for (name, f) in cases {
            let ms = time(&dev, f.as_ref())?;
            println!(
                "{{\"what\": \"gemm\", \"shape\": \"{m}x{k}x{n}\", \"case\": \"{name}\", \"ms\": {ms:.3}, \"tflops\": {:.1}}}",
                flop / ms / 1e9
            );
        }
    }
    Ok(())
}
