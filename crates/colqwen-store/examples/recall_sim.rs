//! Recall of two-stage search (pooled-vector prefetch + exact MaxSim rerank) at sizes too big to
//! store, simulated in RAM on the same synthetic pages as bench_search (streamed, not kept).
//!
//! intent: choose AUTO_PREFETCH for recall@10 >= 0.95 as the index grows (1k..100k pages).
//!
//! cargo run --release --example recall_sim -- <pages> [queries=20]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use colqwen_store::pooled;
use common::*;
use rayon::prelude::*;

const ROWS: usize = 768;
const QUERY_ROWS: usize = 24;
const K: usize = 10;
const PREFETCHES: [usize; 7] = [50, 100, 200, 500, 1000, 2000, 5000];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let n_queries: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let started = Instant::now();
    // Queries exactly as bench_search makes them.
    let mut qrng = Rng::new(CORPUS_SEED + 1);
    let queries: Vec<(Vec<f32>, bool)> = (0..n_queries)
        .map(|i| {
            if i % 2 == 0 {
                let t = qrng.below(n as u64) as usize;
                (planted_query(&mut qrng, &corpus_page(t, ROWS), QUERY_ROWS, DIM, 1.0), true)
            } else {
                (random_query(&mut qrng, QUERY_ROWS, DIM), false)
            }
        })
        .collect();
    let pooled_q: Vec<Vec<f32>> = queries.iter().map(|(q, _)| pooled(q, DIM)).collect();
    // Per page: (pooled score, MaxSim) for every query.
    let per_page: Vec<Vec<(f32, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let v = corpus_page(i, ROWS);
            let p = pooled(&v, DIM);
            queries
                .iter()
                .zip(&pooled_q)
                .map(|((q, _), pq)| (pq.iter().zip(&p).map(|(a, b)| a * b).sum(), maxsim_fast(q, &v, DIM)))
                .collect()
        })
        .collect();
    println!("# recall_sim: {n} pages, {n_queries} queries, computed in {:.0} s", started.elapsed().as_secs_f64());
    println!("| prefetch | recall@10 planted | recall@10 random | min recall random |");
    println!("|---|---|---|---|");
    for p in PREFETCHES.into_iter().filter(|&p| p < n) {
        let (mut rp, mut rr, mut np, mut nr, mut min_r) = (0.0, 0.0, 0, 0, 1.0f64);
        for (qi, (_, planted)) in queries.iter().enumerate() {
            let pooled_s: Vec<f32> = per_page.iter().map(|s| s[qi].0).collect();
            let exact_s: Vec<f32> = per_page.iter().map(|s| s[qi].1).collect();
            let truth = top_k(&exact_s, K);
            let cand = top_k(&pooled_s, p);
            let mut reranked: Vec<usize> = cand.clone();
            reranked.sort_by(|&a, &b| exact_s[b].total_cmp(&exact_s[a]));
            reranked.truncate(K);
            let recall = truth.iter().filter(|t| reranked.contains(t)).count() as f64 / K as f64;
            if *planted {
                rp += recall;
                np += 1;
            } else {
                rr += recall;
                nr += 1;
                min_r = min_r.min(recall);
            }
        }
        println!("| {p} | {:.3} | {:.3} | {:.1} |", rp / np as f64, rr / nr as f64, min_r);
    }
}
