//! Two-stage latency on a large synthetic index (built once in DIR, then reused): the coarse scan's cost.
//!
//! cargo run --release -p colqwen-store --example coarse_scan -- DIR [pages=100000] [rows=375] [queries=200] [query_rows=24]
//!
//! Synthetic clustered pages of `rows` rows stored as i8 (375: a 750-row page pooled by 2); the index is kept in
//! DIR, so binaries of two trees can be compared on the same pages back to back.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use colqwen_store::{SearchMode, Store, VectorStorage};
use common::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rows: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(375);
    let nq: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(200);
    let query_rows: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(24);
    let store = Store::open_or_create(dir, &manifest(VectorStorage::I8)).unwrap();
    if store.page_count().unwrap() < n {
        let t = Instant::now();
        for start in (0..n).step_by(100) {
            let pages: Vec<_> = (start..start + 100)
                .map(|i| {
                    let mut rng = Rng::new(i as u64);
                    let mut p = page(&mut rng, &format!("d{}", i / 100), &format!("s{}", i / 100), i % 100, 100, rows);
                    p.vectors = clustered_page(&mut rng, rows, DIM, 1.0);
                    p
                })
                .collect();
            store.upsert(pages).unwrap();
        }
        store.flush().unwrap();
        println!("built {n} pages in {:.1} s", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    store.optimize().unwrap();
    println!("optimize {:.1} s", t.elapsed().as_secs_f64());
    let mut rng = Rng::new(7);
    let queries: Vec<Vec<f32>> = (0..nq).map(|_| random_query(&mut rng, query_rows, DIM)).collect();
    for prefetch in [50, 200, 1000, 2500] {
        for q in queries.iter().take(10) {
            store.search(q, 10, None, SearchMode::TwoStage { prefetch: Some(prefetch) }).unwrap();
        }
        let mut ms: Vec<f64> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                store.search(q, 10, None, SearchMode::TwoStage { prefetch: Some(prefetch) }).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!("two-stage {prefetch}: p50 {:.1} ms, p95 {:.1} ms", ms[ms.len() / 2], ms[ms.len() * 95 / 100]);
    }
}
