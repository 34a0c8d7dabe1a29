//! Exact MaxSim on the GPU (issue 10): a store of synthetic pages (768 rows × 128, f16, clustered unit vectors),
//! the device scorer's copy time and memory, search latency p50/p95 with the scorer against the store's CPU scan
//! on all cores, and the top-10 overlap between the two (f16 dot products on the device).
//!
//!   colqwen-bench device-search WORK_DIR SIZES [QUERIES=200] [CPU_QUERIES=20] [TWO_STAGE=0|1]
//!
//! QUERIES = 0 skips the device (the CPU scan only); TWO_STAGE = 1 also builds the coarse stage on all cores and
//! times the CPU's two-stage search (prefetch 1,000) against the CPU's exact answers.
//!
//! SIZES: comma list, ascending (e.g. 10000,100000); the store grows from one size to the next and each size gets
//! a fresh scorer (a full copy, timed). Prints one JSON line per size. Measures on a GPU with a CUDA build; a CPU
//! build runs the same code on candle's CPU device (a smoke test).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use colqwen::DeviceScorer;
use colqwen::core::{IndexManifest, PageRecord, SearchMode, VectorStorage};
use colqwen::model::Device;
use colqwen::store::Store;
use rayon::prelude::*;

use crate::scale::pct;

const ROWS: usize = 768;
const DIM: usize = 128;
const QUERY_ROWS: usize = 24;

/// xorshift64*: a fast seeded generator (the pages need volume, not quality).
struct Fast(u64);
impl Fast {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Page `i`: rows around a page centroid (deterministic in `i`).
fn page(i: usize) -> Vec<f32> {
    let mut rng = Fast(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut centroid: Vec<f32> = (0..DIM).map(|_| rng.next()).collect();
    normalize(&mut centroid);
    let mut out = Vec::with_capacity(ROWS * DIM);
    for _ in 0..ROWS {
        let mut row: Vec<f32> = centroid.iter().map(|c| c + 0.25 * rng.next()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

fn record(i: usize) -> PageRecord {
    let doc = format!("{:016x}", i / 100);
    PageRecord {
        doc_id: doc.clone(),
        source_path: format!("synthetic/{doc}.pdf"),
        file_sha256: format!("{doc:0>64}"),
        page_index: i % 100,
        page_count: 100,
        page_width_pt: 612.0,
        page_height_pt: 792.0,
        preview: None,
        vectors: page(i),
    }
}

/// A query planted on page `target`: noisy copies of some of its rows.
fn query(target: usize, seed: u64) -> Vec<f32> {
    let p = page(target);
    let mut rng = Fast(seed.wrapping_mul(0x94D0_49BB_1331_11EB) | 1);
    let mut out = Vec::with_capacity(QUERY_ROWS * DIM);
    for _ in 0..QUERY_ROWS {
        let r = ((rng.next() + 0.5) * ROWS as f32) as usize % ROWS;
        let mut row: Vec<f32> = p[r * DIM..(r + 1) * DIM].iter().map(|x| x + 0.1 * rng.next()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

/// Where one chunk's time goes (2 Mi rows of f16, 24 query rows): the GEMM alone, with candle's reductions, with
/// the fused kernel. Prints one JSON line.
fn breakdown(device: &Device) -> Result<()> {
    use candle_core::{DType, Tensor};
    let rows = (1usize << 21) / ROWS * ROWS; // whole pages, as the scorer's chunks
    let pages = Tensor::randn(0f32, 1., (rows, DIM), device)?.to_dtype(DType::F16)?;
    let q = Tensor::randn(0f32, 1., (QUERY_ROWS, DIM), device)?.to_dtype(DType::F16)?;
    let time = |f: &dyn Fn() -> candle_core::Result<Tensor>| -> Result<f64> {
        f()?;
        device.synchronize()?;
        let t = Instant::now();
        for _ in 0..20 {
            f()?;
        }
        device.synchronize()?;
        Ok(t.elapsed().as_secs_f64() * 1e3 / 20.0)
    };
    let gemm = time(&|| q.matmul(&pages.t()?))?;
    let generic = time(&|| colqwen::model::maxsim::generic(&q.matmul(&pages.t()?)?, ROWS))?;
    let fused = time(&|| colqwen::model::maxsim::maxsim_reduce(&q.matmul(&pages.t()?)?, ROWS))?;
    let a = colqwen::model::maxsim::generic(&q.matmul(&pages.t()?)?, ROWS)?.to_vec1::<f32>()?;
    let b = colqwen::model::maxsim::maxsim_reduce(&q.matmul(&pages.t()?)?, ROWS)?.to_vec1::<f32>()?;
    let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!(
        "{}",
        serde_json::json!({
            "what": "one chunk", "rows": rows, "query_rows": QUERY_ROWS, "bytes": rows * DIM * 2,
            "gemm_ms": gemm, "gemm_plus_candle_reduce_ms": generic, "gemm_plus_fused_kernel_ms": fused,
            "fused_vs_candle_max_abs_diff": max_diff,
        })
    );
    Ok(())
}

pub(crate) fn run(work: &Path, sizes: &str, queries: usize, cpu_queries: usize, two_stage: bool) -> Result<()> {
    let sizes: Vec<usize> = sizes.split(',').map(|s| s.parse().context("SIZES: numbers")).collect::<Result<_>>()?;
    // Without CUDA (a CPU build) candle's CPU device runs the same code: a smoke test, not a measurement.
    let device = Device::new_cuda_with_stream(0).unwrap_or(Device::Cpu);
    if work.exists() {
        bail!("{} exists: give a new folder", work.display());
    }
    let manifest =
        IndexManifest::new("synthetic-device-search", DIM, serde_json::json!({"synthetic": true}), VectorStorage::F16);
    breakdown(&device)?;
    let store = Store::open_or_create(work, &manifest)?;
    let mut written = 0;
    for &n in &sizes {
        let t = Instant::now();
        while written < n {
            let batch = (n - written).min(1024);
            let pages: Vec<PageRecord> = (written..written + batch).into_par_iter().map(record).collect();
            store.upsert(pages)?;
            store.flush()?;
            written += batch;
        }
        let write_s = t.elapsed().as_secs_f64();
        let free_before = colqwen::model::free_device_memory(&device).unwrap_or(0);
        let scorer = Arc::new(DeviceScorer::new(device.clone(), usize::MAX));
        let t = Instant::now();
        // QUERIES = 0: the CPU scan only (no copy: on a CPU build the "device" copy would be in RAM).
        if queries > 0 {
            store.set_exact_scorer(Some(scorer.clone()));
        }
        let copy_s = t.elapsed().as_secs_f64();
        let free_after = colqwen::model::free_device_memory(&device).unwrap_or(0);
        let qs: Vec<(usize, Vec<f32>)> = (0..queries.max(cpu_queries))
            .map(|j| {
                let target = (j * 7919 + 13) % n;
                (target, query(target, j as u64 + 1))
            })
            .collect();
        // Warm-up (kernels loaded, cuBLAS handle).
        for (_, q) in qs.iter().take(queries.min(3)) {
            store.search(q, 10, None, SearchMode::Exact)?;
        }
        let mut gpu_ms = Vec::new();
        let mut gpu_hits = Vec::new();
        let mut top1 = 0;
        for (target, q) in qs.iter().take(queries) {
            let t = Instant::now();
            let hits = store.search(q, 10, None, SearchMode::Exact)?;
            gpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
            top1 += usize::from(
                hits.first()
                    .is_some_and(|h| h.doc_id == format!("{:016x}", target / 100) && h.page_index == target % 100),
            );
            gpu_hits.push(hits);
        }
        store.set_exact_scorer(None);
        let mut cpu_ms = Vec::new();
        let mut cpu_hits = Vec::new();
        let mut overlap = 0.0;
        let mut same_order = 0;
        for (j, (_, q)) in qs.iter().take(cpu_queries).enumerate() {
            let t = Instant::now();
            let cpu = store.search(q, 10, None, SearchMode::Exact)?;
            cpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
            cpu_hits.push(cpu.clone());
            if let Some(gpu) = gpu_hits.get(j) {
                let ids: Vec<u64> = gpu.iter().map(|h| h.point_id).collect();
                overlap += cpu.iter().filter(|h| ids.contains(&h.point_id)).count() as f64 / cpu.len().max(1) as f64;
                same_order += usize::from(cpu.iter().map(|h| h.point_id).eq(ids.iter().copied()));
            }
        }
        let compared = cpu_queries.min(gpu_hits.len()).max(1);
        // The CPU's two-stage search (coarse codebook built on all cores first), against the CPU's exact answers.
        let mut two = serde_json::Value::Null;
        if two_stage && !cpu_hits.is_empty() {
            let t = Instant::now();
            let covered = store.optimize()?;
            let optimize_s = t.elapsed().as_secs_f64();
            let mut ms = Vec::new();
            let (mut overlap, mut top1) = (0.0, 0);
            for ((target, q), exact) in qs.iter().zip(&cpu_hits) {
                let t = Instant::now();
                let hits = store.search(
                    q,
                    10,
                    None,
                    SearchMode::TwoStage { prefetch: Some(colqwen::store::AUTO_PREFETCH) },
                )?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                let ids: Vec<u64> = hits.iter().map(|h| h.point_id).collect();
                overlap +=
                    exact.iter().filter(|h| ids.contains(&h.point_id)).count() as f64 / exact.len().max(1) as f64;
                top1 += usize::from(
                    hits.first()
                        .is_some_and(|h| h.doc_id == format!("{:016x}", target / 100) && h.page_index == target % 100),
                );
            }
            let (p50, p95) = pct(ms.clone());
            two = serde_json::json!({
                "optimize_s": optimize_s, "coded_pages": covered, "prefetch": colqwen::store::AUTO_PREFETCH,
                "p50_ms": p50, "p95_ms": p95,
                "top10_overlap_vs_cpu_exact": overlap / ms.len() as f64,
                "top1_planted": top1 as f64 / ms.len() as f64,
            });
        }
        let (gpu_p, cpu_p) = (pct(gpu_ms.clone()), pct(cpu_ms.clone()));
        println!(
            "{}",
            serde_json::json!({
                "pages": n,
                "device": format!("{:?}", device.location()),
                "rows": ROWS,
                "storage": "f16",
                "write_s": write_s,
                "device_copy_s": copy_s,
                "device_bytes": scorer.copied_bytes(),
                "device_mem_used_bytes": free_before.saturating_sub(free_after),
                "gpu_queries": gpu_ms.len(),
                "gpu_p50_ms": gpu_p.0,
                "gpu_p95_ms": gpu_p.1,
                "gpu_top1_planted": top1 as f64 / gpu_ms.len().max(1) as f64,
                "cpu_queries": cpu_ms.len(),
                "cpu_threads": store.search_threads(),
                "cpu_p50_ms": cpu_p.0,
                "cpu_p95_ms": cpu_p.1,
                "top10_overlap_gpu_vs_cpu": overlap / compared as f64,
                "same_order_fraction": same_order as f64 / compared as f64,
                "cpu_two_stage": two,
            })
        );
        drop(scorer);
    }
    Ok(())
}
