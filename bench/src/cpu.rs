//! `cpu-embed MODEL f32|q8 IMAGE_DIR|- QUERIES OUT.safetensors|- [CACHE_DIR|-] [MAX_PAGES] [MAX_VISUAL_TOKENS]`: the model on the CPU with
//! dense f32 or 8-bit text weights (`TextWeights::Q8`). Prints one JSON line each for the load (seconds), the
//! query encodes at batch 1 (first call apart: candle re-tiles the 8-bit weights on first use; then p50 / p95
//! over the rest), and the page embeds (batches of 4, the CPU default: pages/s); writes the embeddings as
//! `embed` does (`image.<file stem>`, `query.<i>`), for `bench/gpu/compare.py OURS REF` against an f32 run.
//! Threads: candle's and rayon's defaults (every core this process may use; `taskset` limits them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use colqwen::model::{ColQwen, DType, Device, HubOptions, LoadOptions, ModelFiles, TextWeights};

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let [model, dtype, images, queries, out, rest @ ..] = args else {
        bail!(
            "usage: cpu-embed MODEL f32|q8 IMAGE_DIR|- QUERIES OUT.safetensors|- [CACHE_DIR|-] [MAX_PAGES] [MAX_VISUAL_TOKENS]"
        )
    };
    let text_weights = match dtype.as_str() {
        "f32" => TextWeights::Dense,
        "q8" => TextWeights::Q8,
        other => bail!("{other}: f32 or q8"),
    };
    crate::check_output(Path::new(out))?;
    let cache_dir = rest.first().filter(|s| s.as_str() != "-").map(PathBuf::from);
    let max_pages: usize = rest.get(1).map_or(Ok(usize::MAX), |s| s.parse()).context("MAX_PAGES: a number")?;
    let t = Instant::now();
    let files = ModelFiles::resolve(model, None, &HubOptions { offline: true, ..Default::default() })?;
    let max_visual_tokens = rest.get(2).map(|s| s.parse()).transpose().context("MAX_VISUAL_TOKENS: a number")?;
    let opts = LoadOptions { text_weights, cache_dir, max_visual_tokens, ..Default::default() };
    let m = ColQwen::load(&files, &Device::Cpu, DType::F32, &opts)?;
    let threads = rayon::current_num_threads();
    println!(
        "{{\"what\": \"cpu_load\", \"dtype\": \"{dtype}\", \"threads\": {threads}, \"seconds\": {:.2}}}",
        t.elapsed().as_secs_f64()
    );
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let to_tensor =
        |e: &colqwen::core::MultiVector| Tensor::from_slice(&e.data, (e.rows, e.dim), &candle_core::Device::Cpu);
    let qs: Vec<String> =
        std::fs::read_to_string(queries)?.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
    if qs.is_empty() {
        bail!("{queries}: no queries");
    }
    let mut times = Vec::new();
    for (i, q) in qs.iter().enumerate() {
        let t = Instant::now();
        let e = m.embed_queries(&[q])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        tensors.insert(format!("query.{i:03}"), to_tensor(&e[0])?);
    }
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        println!(
            "{{\"what\": \"cpu_query\", \"dtype\": \"{dtype}\", \"threads\": {threads}, \"queries\": {}, \"first_ms\": {first:.1}, \"p50_ms\": {:.1}, \"p95_ms\": {:.1}}}",
            times.len(),
            percentile(&times, 50),
            percentile(&times, 95)
        );
    }
    if images != "-" {
        let (paths, pvs) = crate::page_images(&m, Path::new(images), max_pages)?;
        let tokens: usize = pvs.iter().map(|p| p.grid.tokens(2)).sum();
        let t = Instant::now();
        let mut embs = Vec::with_capacity(pvs.len());
        for chunk in pvs.chunks(4) {
            embs.extend(m.embed_pixel_values(chunk)?);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"what\": \"cpu_pages\", \"dtype\": \"{dtype}\", \"threads\": {threads}, \"pages\": {}, \"mean_visual_tokens\": {:.0}, \"seconds\": {secs:.1}, \"pages_per_second\": {:.4}}}",
            pvs.len(),
            tokens as f64 / pvs.len().max(1) as f64,
            pvs.len() as f64 / secs
        );
        for (p, e) in paths.iter().zip(&embs) {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            tensors.insert(format!("image.{stem}"), to_tensor(e)?);
        }
    }
    crate::save_embeddings(&tensors, Path::new(out))
}
