//! Do two threads searching one `&Store` run in parallel? Compares per-thread CPU time of
//! concurrent exact searches with that of a pure compute loop under the same machine load.
//!
//! intent: answer "does a query use both cores / do concurrent queries scale" for qdrant-edge 0.7.
//!
//! cargo run --release --example probe_threads -- <existing index dir> [queries per thread=2]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use colqwen_store::{SearchMode, Store};
use common::*;

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn burn(data: &[f32], rounds: usize) -> f32 {
    let mut acc = 0.0f32;
    for r in 0..rounds {
        for x in data {
            acc = acc.mul_add(0.999, *x * r as f32);
        }
    }
    acc
}

fn pair<F: Fn() + Sync>(name: &str, f: F) {
    let start = Instant::now();
    let cpus: Vec<(f64, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (w, c) = (Instant::now(), thread_cpu());
                    f();
                    (w.elapsed().as_secs_f64(), thread_cpu() - c)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu: f64 = cpus.iter().map(|c| c.1).sum();
    println!(
        "{name}: 2 threads, wall {wall:.2} s, thread CPU {:.2} + {:.2} s => {:.2} cores busy",
        cpus[0].1,
        cpus[1].1,
        cpu / wall
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let per_thread: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let store = Store::open(&dir).unwrap();
    let mut rng = Rng::new(7);
    let q = random_query(&mut rng, 24, DIM);
    let _ = store.search(&q, 10, None, SearchMode::Exact).unwrap(); // warm the page cache
    let (w, c) = (Instant::now(), thread_cpu());
    for _ in 0..per_thread {
        store.search(&q, 10, None, SearchMode::Exact).unwrap();
    }
    let (w, c) = (w.elapsed().as_secs_f64(), thread_cpu() - c);
    println!("exact search, 1 thread: {:.2} s per query, thread CPU/wall {:.2}", w / per_thread as f64, c / w);
    pair("exact search", || {
        for _ in 0..per_thread {
            store.search(&q, 10, None, SearchMode::Exact).unwrap();
        }
    });
    let data = vec![0.5f32; 1 << 20];
    let rounds = 2000 * per_thread;
    pair("compute loop", || {
        std::hint::black_box(burn(&data, rounds));
    });
}
