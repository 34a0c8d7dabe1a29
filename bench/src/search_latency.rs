//! `search-latency INDEX QUERIES_FILE [ROUNDS]`: the latency of `Service::search` in-process on an existing
//! index (its own model, on the CPU; exact search, k = 10), every query of the file once per round after one
//! warm-up round. The baseline of the Python package's search overhead (`bench/python/overhead.py` calls the
//! same service through `colqwen.Index.search` on the same index and queries).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use colqwen::core::{SearchMode, VectorStorage};
use colqwen::{
    DTypeChoice, DeviceChoice, EngineOptions, Runtime, SearchDevice, SearchOptions, Service, ServiceOptions,
};

pub(crate) fn run(index: &Path, queries: &Path, rounds: usize) -> Result<()> {
    let opts = ServiceOptions {
        index_dir: index.to_path_buf(),
        remote: None,
        engine: EngineOptions::default(),
        runtimes: Runtime::resolve_all(&[DeviceChoice::Cpu], DTypeChoice::Auto, 1)?,
        reserve_query_replica: false,
        storage: VectorStorage::F16,
        pool_factor: 1,
        search_device: SearchDevice::Cpu,
    };
    let service = Service::open_existing(&opts)?;
    let text = std::fs::read_to_string(queries).with_context(|| format!("reading {}", queries.display()))?;
    let qs: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let search = SearchOptions { k: 10, doc: None, mode: SearchMode::Exact };
    for q in &qs {
        service.search(q, &search)?;
    }
    let mut ms = Vec::with_capacity(qs.len() * rounds);
    for _ in 0..rounds {
        for q in &qs {
            let t = Instant::now();
            std::hint::black_box(service.search(q, &search)?);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!("{}", serde_json::json!({ "searches": ms.len(), "p50_ms": at(0.5), "p95_ms": at(0.95), "mean_ms": mean }));
    Ok(())
}
