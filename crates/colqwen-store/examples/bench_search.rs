//! Store write speed, disk use and search latency/recall on synthetic clustered pages, next to a
//! brute-force MaxSim over the same vectors in RAM.
//!
//! intent: pick SearchMode::Auto's threshold and prefetch size, and decide f32 vs f16.
//!
//! cargo run --release --example bench_search -- <work_dir> <pages> [storages=f32,f16] [queries=20]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use colqwen_store::{SearchMode, Store, VectorStorage, maxsim};
use common::*;
use rayon::prelude::*;

const ROWS: usize = 768;
const QUERY_ROWS: usize = 24;
const K: usize = 10;
const PREFETCHES: [usize; 4] = [50, 100, 200, 500];
const INGEST_BATCH: usize = 16;
const FLUSH_EVERY: usize = 256;

fn cpu_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_PROCESS_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and CPU milliseconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (w, c) = (Instant::now(), cpu_now());
    let out = f();
    (out, w.elapsed().as_secs_f64() * 1e3, (cpu_now() - c) * 1e3)
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let work = Path::new(args.get(1).map(String::as_str).unwrap_or("bench-data"));
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let storages: Vec<VectorStorage> = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("f32,f16")
        .split(',')
        .map(|s| if s == "f16" { VectorStorage::F16 } else { VectorStorage::F32 })
        .collect();
    let n_queries: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    println!(
        "# bench_search: {n} pages x {ROWS} x {DIM}, queries {n_queries} x {QUERY_ROWS} rows, rayon threads {}",
        rayon::current_num_threads()
    );

    let (pages, gen_ms, _) = timed(|| (0..n).into_par_iter().map(|i| corpus_page(i, ROWS)).collect::<Vec<_>>());
    println!("generated in {:.1} s", gen_ms / 1e3);
    let mut qrng = Rng::new(CORPUS_SEED + 1);
    let queries: Vec<(Vec<f32>, Option<usize>)> = (0..n_queries)
        .map(|i| {
            if i % 2 == 0 {
                let t = qrng.below(n as u64) as usize;
                (planted_query(&mut qrng, &pages[t], QUERY_ROWS, DIM, 1.0), Some(t))
            } else {
                (random_query(&mut qrng, QUERY_ROWS, DIM), None)
            }
        })
        .collect();

    // Brute force in RAM.
    let mut bf1 = Vec::new();
    let mut bfp = Vec::new();
    let mut truth = Vec::new();
    for (q, _) in &queries {
        let (scores, w, _) = timed(|| pages.iter().map(|p| maxsim_fast(q, p, DIM)).collect::<Vec<_>>());
        bf1.push(w);
        let (scores_p, w, _) = timed(|| pages.par_iter().map(|p| maxsim_fast(q, p, DIM)).collect::<Vec<_>>());
        bfp.push(w);
        assert_eq!(top_k(&scores, K), top_k(&scores_p, K));
        truth.push(top_k(&scores, K));
    }
    // Spot check against the scalar oracle.
    let o = maxsim(&queries[0].0, &pages[0], DIM);
    let f = maxsim_fast(&queries[0].0, &pages[0], DIM);
    assert!((o - f).abs() <= 1e-4 * o.abs());
    println!("| brute force RAM, 1 thread | p50 {:.1} ms | p95 {:.1} ms |", pct(&bf1, 0.5), pct(&bf1, 0.95));
    println!("| brute force RAM, rayon | p50 {:.1} ms | p95 {:.1} ms |", pct(&bfp, 0.5), pct(&bfp, 0.95));

    for storage in storages {
        let dir = work.join(format!("idx-{n}-{storage}"));
        let _ = std::fs::remove_dir_all(&dir);
        let manifest = manifest(storage);
        let (store, _, _) = timed(|| Store::open_or_create(&dir, &manifest).unwrap());
        let t0 = Instant::now();
        let c0 = cpu_now();
        let mut flush_ms = 0.0;
        for (b, chunk) in pages.chunks(INGEST_BATCH).enumerate() {
            let recs = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let i = b * INGEST_BATCH + j;
                    let doc = i / 10;
                    colqwen_store::PageRecord {
                        doc_id: format!("d{doc}"),
                        source_path: format!("pdfs/d{doc}.pdf"),
                        file_sha256: format!("sha{doc}"),
                        page_index: i % 10,
                        page_count: 10,
                        page_width_pt: 595.0,
                        page_height_pt: 842.0,
                        preview: None,
                        vectors: v.clone(),
                    }
                })
                .collect();
            store.upsert(recs).unwrap();
            if ((b + 1) * INGEST_BATCH) % FLUSH_EVERY == 0 {
                let (_, w, _) = timed(|| store.flush().unwrap());
                flush_ms += w;
            }
        }
        let (_, w, _) = timed(|| store.flush().unwrap());
        flush_ms += w;
        let ingest_s = t0.elapsed().as_secs_f64();
        let ingest_cpu = cpu_now() - c0;
        let stats = store.stats().unwrap();
        println!(
            "\n## {storage}: ingest {n} pages in {ingest_s:.1} s wall / {ingest_cpu:.1} s CPU = {:.0} pages/s (flushes {:.1} s); disk {:.0} MiB (WAL {:.0} MiB)",
            n as f64 / ingest_s,
            flush_ms / 1e3,
            stats.bytes_on_disk.unwrap_or(0) as f64 / 1048576.0,
            stats.wal_bytes as f64 / 1048576.0
        );
        drop(store);
        let (store, open_ms, _) = timed(|| Store::open(&dir).unwrap());
        let stats = store.stats().unwrap();
        println!(
            "reopen {open_ms:.0} ms; disk after reopen {:.0} MiB (WAL {:.0} MiB)",
            stats.bytes_on_disk.unwrap_or(0) as f64 / 1048576.0,
            stats.wal_bytes as f64 / 1048576.0
        );
        run_queries(&store, &queries, &truth, "");
        concurrency(&store, &queries);
        drop(store);
        if n >= 5000 {
            let store = Store::open(&dir).unwrap();
            let (_, w, _) = timed(|| store.optimize().unwrap());
            let stats = store.stats().unwrap();
            println!(
                "\noptimize() {:.1} s; disk {:.0} MiB",
                w / 1e3,
                stats.bytes_on_disk.unwrap_or(0) as f64 / 1048576.0
            );
            run_queries(&store, &queries, &truth, " (optimized)");
        }
    }
}

fn run_queries(store: &Store, queries: &[(Vec<f32>, Option<usize>)], truth: &[Vec<usize>], tag: &str) {
    // Warm-up (page cache), then timed.
    let _ = store.search(&queries[0].0, K, None, SearchMode::Exact).unwrap();
    let mut modes = vec![("exact".to_string(), SearchMode::Exact)];
    for p in PREFETCHES {
        modes.push((format!("two-stage {p}"), SearchMode::TwoStage { prefetch: Some(p) }));
    }
    modes.push(("auto".to_string(), SearchMode::Auto));
    println!(
        "| mode{tag} | p50 wall ms | p95 wall ms | p50 CPU ms | CPU/wall | recall@10 planted | recall@10 random | top-1 planted |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, mode) in modes {
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        let (mut rec_p, mut rec_r, mut n_p, mut n_r, mut top1) = (0.0, 0.0, 0, 0, 0);
        for ((q, planted), truth) in queries.iter().zip(truth) {
            let (hits, w, c) = timed(|| store.search(q, K, None, mode).unwrap());
            wall.push(w);
            cpu.push(c);
            let got: HashSet<usize> = hits.iter().map(|h| page_number(h)).collect();
            let recall = truth.iter().filter(|t| got.contains(t)).count() as f64 / K as f64;
            match planted {
                Some(t) => {
                    rec_p += recall;
                    n_p += 1;
                    if hits.first().map(page_number) == Some(*t) {
                        top1 += 1;
                    }
                }
                None => {
                    rec_r += recall;
                    n_r += 1;
                }
            }
        }
        let sum_w: f64 = wall.iter().sum();
        let sum_c: f64 = cpu.iter().sum();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.2} | {:.3} | {:.3} | {top1}/{n_p} |",
            pct(&wall, 0.5),
            pct(&wall, 0.95),
            pct(&cpu, 0.5),
            sum_c / sum_w,
            rec_p / n_p.max(1) as f64,
            rec_r / n_r.max(1) as f64,
        );
    }
}

/// Same exact queries, one after another vs split over 2 threads sharing the `&Store`.
fn concurrency(store: &Store, queries: &[(Vec<f32>, Option<usize>)]) {
    let qs: Vec<&[f32]> = queries.iter().map(|(q, _)| q.as_slice()).collect();
    let (_, seq_ms, _) = timed(|| {
        for q in &qs {
            store.search(q, K, None, SearchMode::Exact).unwrap();
        }
    });
    let (_, par_ms, par_cpu) = timed(|| {
        std::thread::scope(|s| {
            for half in qs.chunks(qs.len().div_ceil(2)) {
                s.spawn(move || {
                    for q in half {
                        store.search(q, K, None, SearchMode::Exact).unwrap();
                    }
                });
            }
        })
    });
    println!(
        "exact, {} queries: sequential {:.0} ms, 2 threads {:.0} ms wall ({:.0} ms CPU): speed-up {:.2}",
        qs.len(),
        seq_ms,
        par_ms,
        par_cpu,
        seq_ms / par_ms
    );
}

/// Page number in generation order, from the payload written above.
fn page_number(h: &colqwen_store::Hit) -> usize {
    h.doc_id[1..].parse::<usize>().unwrap() * 10 + h.page_index
}
