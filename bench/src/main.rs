//! `colqwen-bench`: the Rust side of `bench/gpu/run.sh`.
//!
//! - `render OUT_DIR MAX_PIXELS PDF...`: renders every page (as ingest does) to `OUT_DIR/<pdf>-<page>.png`.
//! - `recall MODEL SIZES QUERIES PDF...`: recall@10 of two-stage vs exact search (see `recall.rs`).
//! - `http URL CLIENTS SECONDS QUERIES [KEY]`: search latency over HTTP under concurrent clients (`http.rs`).
//! - `embed MODEL IMAGE_DIR OUT.safetensors|- BATCHES [QUERIES_FILE]`: embeds all PNGs at each batch size
//!   (comma list, e.g. `1,8,16,32`), prints one JSON line per batch size (pages/s, seconds), writes the
//!   embeddings of the last run (`image.<file stem>`) and of the queries (`query.<i>`), and times queries at
//!   batch 1.
//! - `cpu-embed MODEL f32|q8 IMAGE_DIR|- QUERIES OUT.safetensors|- [CACHE_DIR|-] [MAX_PAGES] [MAX_VISUAL_TOKENS]`: the model on the CPU with
//!   dense or 8-bit text weights: load time, query latency, pages/s, embeddings (`cpu.rs`).
//! - `scale-data MODEL OUT_DIR IMAGES QUERIES PDF...`: the search-at-scale dataset (`scale_data.rs`).
//! - `scale DATA_DIR WORK_DIR SIZES [OPTIONS]`: the search-at-scale harness, one row per candidate × size
//!   (`scale.rs`).
//! - `search-latency INDEX QUERIES_FILE [ROUNDS]`: `Service::search` in-process on an existing index
//!   (`search_latency.rs`), the baseline of the Python package's overhead.
//! - `weaviate ADDR PAGES ROWS MUVERA QUERIES STORE_DIR`: the Weaviate backend against the embedded store
//!   (insert pages/s, query p50/p95, recall@10; see `weaviate.rs`).
//! - `soak URL CLIENTS SECONDS INDEX_DIR OUT_DIR [THINK_MS]` and `soak-check URL INDEX_DIR OUT_DIR`: the server's soak run
//!   (mixed ordinary and hostile traffic, RSS and disk over time, the index checked at the end; `soak.rs`,
//!   driven by `bench/serve/soak.sh`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use colqwen::model::{ColQwen, HubOptions, LoadOptions, ModelFiles, PixelValues};
use colqwen::{DTypeChoice, DeviceChoice, Runtime};
use rayon::prelude::*;

mod cpu;
mod device_search;
mod fde;
mod gemm;
mod http;
mod plaid;
mod pool;
mod recall;
mod scale;
mod scale_data;
mod search_latency;
mod soak;
mod weaviate;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("render") if args.len() >= 4 => render(Path::new(&args[1]), args[2].parse()?, &args[3..]),
        Some("embed") if args.len() >= 5 => {
            embed(&args[1], Path::new(&args[2]), Path::new(&args[3]), &args[4], args.get(5))
        }
        Some("gemm") => gemm::run(),
        Some("cpu-embed") => cpu::run(&args[1..]),
        Some("device-search") if args.len() >= 3 => device_search::run(
            Path::new(&args[1]),
            &args[2],
            args.get(3).map_or(Ok(200), |s| s.parse()).context("QUERIES: a number")?,
            args.get(4).map_or(Ok(20), |s| s.parse()).context("CPU_QUERIES: a number")?,
            args.get(5).is_some_and(|s| s == "1"),
        ),
        Some("http") if args.len() >= 5 => http::run(&args[1], &args[2], args[3].parse()?, &args[4], args.get(5)),
        Some("soak") if (6..=7).contains(&args.len()) => soak::run(
            &args[1],
            args[2].parse().context("CLIENTS: a number")?,
            args[3].parse().context("SECONDS: a number")?,
            Path::new(&args[4]),
            Path::new(&args[5]),
            args.get(6).map_or(Ok(600), |s| s.parse()).context("THINK_MS: a number")?,
        ),
        Some("soak-check") if args.len() == 4 => soak::check(&args[1], Path::new(&args[2]), Path::new(&args[3])),
        Some("recall") if args.len() >= 5 => recall::run(&args[1], &args[2], &args[3], &args[4..]),
        Some("scale-data") if args.len() >= 6 => scale_data::generate(
            &args[1],
            Path::new(&args[2]),
            args[3].parse().context("IMAGES: a number")?,
            Path::new(&args[4]),
            &args[5..],
        ),
        Some("scale") if args.len() >= 4 => scale::run(Path::new(&args[1]), Path::new(&args[2]), &args[3], &args[4..]),
        Some("search-latency") if args.len() >= 3 => search_latency::run(
            Path::new(&args[1]),
            Path::new(&args[2]),
            args.get(3).map_or(Ok(20), |s| s.parse()).context("ROUNDS: a number")?,
        ),
        Some("weaviate") if args.len() == 7 => {
            weaviate::run(&args[1], args[2].parse()?, args[3].parse()?, args[4] == "1", args[5].parse()?, &args[6])
        }
        _ => bail!(
            "usage: colqwen-bench render OUT_DIR MAX_PIXELS PDF... | embed MODEL IMAGE_DIR OUT BATCHES [QUERIES] \
             | cpu-embed MODEL f32|q8 IMAGE_DIR|- QUERIES OUT [CACHE_DIR] [MAX_PAGES] [MAX_VISUAL_TOKENS] \
             | recall MODEL PAGES QUERIES PDF... | http URL CLIENTS SECONDS QUERIES [KEY] \
             | scale-data MODEL OUT_DIR IMAGES QUERIES PDF... | scale DATA_DIR WORK_DIR SIZES [OPTIONS] \
             | weaviate ADDR PAGES ROWS MUVERA(0|1) QUERIES STORE_DIR|- \
             | device-search WORK_DIR SIZES [QUERIES] [CPU_QUERIES] [TWO_STAGE] \
             | search-latency INDEX QUERIES_FILE [ROUNDS] \
             | soak URL CLIENTS SECONDS INDEX_DIR OUT_DIR [THINK_MS] | soak-check URL INDEX_DIR OUT_DIR"
        ),
    }
}

fn render(out: &Path, max_pixels: u64, pdfs: &[String]) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let limits = colqwen::pdf::RenderLimits::default();
    let t = Instant::now();
    let mut pages = 0;
    for p in pdfs {
        let doc = std::sync::Arc::new(colqwen::pdf::Document::open(Path::new(p), None)?);
        let stem = Path::new(p).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let n = doc.page_count();
        (0..n).into_par_iter().try_for_each(|i| -> Result<()> {
            let size = doc.page_size_pt(i)?;
            let (w, h) = colqwen::pdf::render_size(size, max_pixels, &limits);
            let img = colqwen::pdf::render_contained(&doc, i, w, h, &limits)?;
            img.save(out.join(format!("{stem}-{:04}.png", i + 1)))?;
            Ok(())
        })?;
        pages += n;
    }
    println!("{{\"rendered_pages\": {pages}, \"seconds\": {:.3}}}", t.elapsed().as_secs_f64());
    Ok(())
}

fn embed(model: &str, images: &Path, out: &Path, batches: &str, queries: Option<&String>) -> Result<()> {
    check_output(out)?;
    let rt = Runtime::resolve(DeviceChoice::Auto, DTypeChoice::Auto)?;
    let t = Instant::now();
    let files = ModelFiles::resolve(model, None, &HubOptions { offline: true, ..Default::default() })?;
    let m = ColQwen::load(&files, &rt.device, rt.dtype, &LoadOptions::default())?;
    eprintln!("loaded {model} on {} {:?} in {:.1}s", rt.device_name(), rt.dtype, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let (paths, pvs) = page_images(&m, images, usize::MAX)?;
    let tokens: usize = pvs.iter().map(|p| p.grid.tokens(2)).sum();
    eprintln!("preprocessed {} images ({} visual tokens) in {:.2}s", pvs.len(), tokens, t.elapsed().as_secs_f64());
    // Warm-up: kernel JIT, cuBLAS handles, allocator.
    m.embed_pixel_values(&pvs[..pvs.len().min(2)])?;
    let mut last = Vec::new();
    for bs in batches.split(',').map(str::parse::<usize>) {
        let bs = bs?;
        let t = Instant::now();
        let mut embs = Vec::with_capacity(pvs.len());
        for chunk in pvs.chunks(bs) {
            embs.extend(m.embed_pixel_values(chunk)?);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"what\": \"embed\", \"batch_size\": {bs}, \"pages\": {}, \"seconds\": {secs:.4}, \"pages_per_second\": {:.2}, \"mean_visual_tokens\": {:.1}}}",
            pvs.len(),
            pvs.len() as f64 / secs,
            tokens as f64 / pvs.len() as f64
        );
        last = embs;
    }
    // Where the time goes: one pass of 32 pages at batch 16 with per-span device synchronisation.
    let profiler = std::sync::Arc::new(colqwen::model::profile::Profiler::new());
    m.set_profiling(Some(profiler.clone()));
    let t = Instant::now();
    let n = pvs.len().min(32);
    for chunk in pvs[..n].chunks(16) {
        m.embed_pixel_values(chunk)?;
    }
    let total = t.elapsed().as_secs_f64();
    for (name, secs, calls) in profiler.report() {
        println!(
            "{{\"what\": \"profile\", \"span\": \"{name}\", \"ms_per_page\": {:.3}, \"share\": {:.3}, \"calls\": {calls}}}",
            secs * 1e3 / n as f64,
            secs / total
        );
    }
    println!("{{\"what\": \"profile_total\", \"ms_per_page\": {:.3}}}", total * 1e3 / n as f64);
    if let (Some(free), Some(after)) = (profiler.min_free_memory(), colqwen::model::free_device_memory(&rt.device)) {
        // Free memory between batches (weights, context and allocator reserve held) vs the least seen inside.
        println!(
            "{{\"what\": \"profile_memory\", \"batch_size\": 16, \"forward_extra_mib\": {}, \"free_after_mib\": {}}}",
            after.saturating_sub(free) >> 20,
            after >> 20
        );
    }
    m.set_profiling(None);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (p, e) in paths.iter().zip(&last) {
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        tensors
            .insert(format!("image.{stem}"), Tensor::from_slice(&e.data, (e.rows, e.dim), &candle_core::Device::Cpu)?);
    }
    if let Some(qfile) = queries {
        let qs: Vec<String> =
            std::fs::read_to_string(qfile)?.lines().filter(|l| !l.is_empty()).map(String::from).collect();
        let mut times = Vec::new();
        for _ in 0..3 {
            for q in &qs {
                let t = Instant::now();
                m.embed_queries(&[q])?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"what\": \"query\", \"batch_size\": 1, \"median_ms\": {:.2}, \"p95_ms\": {:.2}}}",
            times[times.len() / 2],
            times[times.len() * 95 / 100]
        );
        let refs: Vec<&str> = qs.iter().map(String::as_str).collect();
        for (i, e) in m.embed_queries(&refs)?.iter().enumerate() {
            tensors.insert(
                format!("query.{i:03}"),
                Tensor::from_slice(&e.data, (e.rows, e.dim), &candle_core::Device::Cpu)?,
            );
        }
    }
    save_embeddings(&tensors, out)
}

/// Writes the embeddings to `out`; `-` writes nothing (timings only). safetensors 0.8 writes a sibling temp file
/// and renames it over `out`, so an existing `out` that is not a regular file is refused: run as root with
/// `/dev/null` as OUT, that rename replaced the machine's null device with a plain file (2026-12-08), and every
/// later reader of /dev/null (rustc probing through cargo among them) read back what had been written to it.
fn save_embeddings(tensors: &HashMap<String, Tensor>, out: &Path) -> Result<()> {
    if out == Path::new("-") {
        return Ok(());
    }
    check_output(out)?;
    candle_core::safetensors::save(tensors, out)?;
    Ok(())
}

/// Called before the work too, so that a wrong OUT fails in a second rather than after the embeds.
fn check_output(out: &Path) -> Result<()> {
    if out != Path::new("-")
        && let Ok(meta) = std::fs::symlink_metadata(out)
        && !meta.is_file()
    {
        bail!(
            "{}: exists and is not a regular file; the embeddings are written to a temp file renamed over it, which \
             would replace it (give a file path, or - to write nothing)",
            out.display()
        );
    }
    Ok(())
}

/// The first `max` PNG files of `dir` in name order, and their model inputs (preprocessed on all cores).
pub(crate) fn page_images(m: &ColQwen, dir: &Path, max: usize) -> Result<(Vec<PathBuf>, Vec<PixelValues>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    paths.sort();
    paths.truncate(max);
    let pvs = paths
        .par_iter()
        .map(|p| -> Result<PixelValues> {
            let img = image::open(p).with_context(|| p.display().to_string())?.to_rgb8();
            Ok(m.preprocessor().preprocess(&img)?)
        })
        .collect::<Result<_>>()?;
    Ok((paths, pvs))
}
