//! SIGKILL during ingest: the index reopens, keeps every flushed page, has no duplicates, and
//! can be searched. The child is this test binary re-executed with `CRASH_CHILD_DIR` set.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use colqwen_store::{PageRecord, SearchMode, Store, VectorStorage, point_id};
use common::*;

const CHILD_DIR: &str = "CRASH_CHILD_DIR";
const CHILD_RUN: &str = "CRASH_CHILD_RUN";
const PAGES_PER_FILE: usize = 8;
const BATCH: usize = 4;
const FLUSH_EVERY: usize = 8;
const ROWS: usize = 64;

fn child_page(rng: &mut Rng, run: u32, i: usize) -> PageRecord {
    let file = i / PAGES_PER_FILE;
    page(rng, &format!("r{run}-d{file}"), &format!("r{run}-sha{file}"), i % PAGES_PER_FILE, PAGES_PER_FILE, ROWS)
}

/// The child: upserts pages in batches, flushing every FLUSH_EVERY pages and printing
/// "flushed N" after each flush returns. A no-op unless started by `sigkill_during_ingest`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let run: u32 = std::env::var(CHILD_RUN).unwrap().parse().unwrap();
    let store = Store::open_or_create(dir.as_ref(), &manifest(VectorStorage::F32)).unwrap();
    let mut rng = Rng::new(run as u64);
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    while written < 100_000 {
        let batch: Vec<_> = (written..written + BATCH).map(|i| child_page(&mut rng, run, i)).collect();
        store.upsert(batch).unwrap();
        written += BATCH;
        if written % FLUSH_EVERY == 0 {
            store.flush().unwrap();
            writeln!(out, "flushed {written}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn sigkill_during_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("sigkill_during_ingest seed {seed}");
    let mut rng = Rng::new(seed);
    let m = manifest(VectorStorage::F32);
    let mut flushed_ids: BTreeSet<u64> = BTreeSet::new();
    for run in 0..5u32 {
        let target = 8 + rng.below(40) as usize; // wait for "flushed >= target" ...
        let extra_ms = rng.below(40); // ... then kill after a random delay (mid-upsert or mid-flush)
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("flushed ") {
                    let _ = tx.send(n.trim().parse::<usize>().unwrap());
                }
            }
        });
        let mut last = 0;
        while last < target {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(n) => last = n,
                Err(e) => panic!("child gave no progress: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success());
        reader.join().unwrap();
        let max_flushed = std::iter::from_fn(|| rx.try_recv().ok()).fold(last, usize::max);

        let mut regen = Rng::new(run as u64);
        for i in 0..max_flushed {
            let p = child_page(&mut regen, run, i);
            flushed_ids.insert(point_id(&p.file_sha256, p.page_index, &m.model_id, &m.preprocessing));
        }

        let store = Store::open(dir.path()).expect("index opens after SIGKILL");
        let count = store.page_count().unwrap();
        let ids = store.point_ids().unwrap();
        let distinct: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(count, ids.len(), "count() disagrees with scroll");
        assert_eq!(ids.len(), distinct.len(), "duplicate point ids");
        let missing: Vec<_> = flushed_ids.difference(&distinct).collect();
        assert!(missing.is_empty(), "{} flushed pages lost", missing.len());
        assert!(count >= flushed_ids.len());
        eprintln!(
            "run {run}: killed {extra_ms} ms after flushed {last}; last flushed {max_flushed}; pages after reopen {count} (flushed in all runs {})",
            flushed_ids.len()
        );
        let mut qrng = Rng::new(run as u64);
        let p0 = child_page(&mut qrng, run, 0);
        let q = planted_query(&mut qrng, &p0.vectors, 8, DIM, 0.3);
        let hits = store.search(&q, 5, None, SearchMode::Exact).unwrap();
        assert_eq!(hits.len(), 5);
        let hits2 = store.search(&q, 5, None, SearchMode::TwoStage { prefetch: Some(20) }).unwrap();
        assert_eq!(hits2.len(), 5);
    }
}
