//! `weaviate ADDR PAGES ROWS MUVERA QUERIES STORE_DIR`: the Weaviate backend against the embedded store on
//! the same synthetic pages (clustered unit vectors, `ROWS × 128` per page, seeded; not model output).
//!
//! Writes `PAGES` pages into a fresh collection `Bench` (MUVERA on if `MUVERA` is 1) in batches of 8 (the
//! ingest's page batch) from one thread, and into a fresh embedded store in `STORE_DIR` (`-`: skip the
//! store); then runs `QUERIES` queries (16 rows, noisy copies of rows of a random page) on both, k = 10,
//! and reports insert pages/s, query p50/p95, and Weaviate's recall@10 and top-1 agreement against the
//! store's exact MaxSim, for Weaviate's modes `auto` (limit k) and `exact` (limit max(4k, 100), a wider
//! HNSW search list). One JSON line per measurement on stdout. Pages are generated again for each pass, never all held.
//!
//! Environment: `WEAVIATE_INSERT` `binary` (default) or `json`, `WEAVIATE_WRITERS` (requests in flight per
//! upsert, default 2), `BENCH_BATCH` (pages per upsert, default 8). After the inserts it waits until the
//! server's vector index holds every page (`indexed_seconds`: from the first insert; differs from `seconds`
//! only on a server with async indexing).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use colqwen::core::{MultiVector, PageIndex, PageRecord, SearchMode};
use colqwen::store::Store;
use colqwen::weaviate::{InsertPath, Location, Weaviate, WeaviateConfig};
use colqwen_testkit::synth::{DIM, Rng, clustered_page, manifest, planted_query};
use serde_json::json;

/// Pages per upsert unless `BENCH_BATCH` says otherwise.
const BATCH: usize = 8;
const PAGES_PER_DOC: usize = 100;

fn page(i: usize, rows: usize) -> PageRecord {
    let mut rng = Rng::new(0xC01 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let doc = i / PAGES_PER_DOC;
    PageRecord {
        doc_id: format!("{doc:016x}"),
        source_path: format!("bench/{doc}.pdf"),
        file_sha256: format!("{doc:064x}"),
        page_index: i % PAGES_PER_DOC,
        page_count: PAGES_PER_DOC,
        page_width_pt: 595.0,
        page_height_pt: 842.0,
        preview: None,
        vectors: clustered_page(&mut rng, rows, 1.0),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fill(index: &dyn PageIndex, pages: usize, rows: usize, what: &str) -> Result<Instant> {
    let started = Instant::now();
    let batch = env_usize("BENCH_BATCH", BATCH).max(1);
    let mut written = 0;
    while written < pages {
        let n = batch.min(pages - written);
        index.upsert((written..written + n).map(|i| page(i, rows)).collect())?;
        written += n;
        if written % 1000 < batch {
            eprintln!("{what}: {written} pages, {:.1} pages/s", written as f64 / started.elapsed().as_secs_f64());
        }
    }
    index.flush()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"what": what, "insert_pages": pages, "rows": rows, "batch": batch, "seconds": secs,
               "pages_per_s": pages as f64 / secs})
    );
    Ok(started)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut ms: Vec<f64>, recall: Option<(f64, f64)>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"what": what, "queries": ms.len(), "p50_ms": percentile(&ms, 0.5), "p95_ms": percentile(&ms, 0.95),
               "recall_at_10": recall.map(|r| r.0), "top1_agreement": recall.map(|r| r.1)})
    );
}

pub(crate) fn run(addr: &str, pages: usize, rows: usize, muvera: bool, queries: usize, store_dir: &str) -> Result<()> {
    let mut config = WeaviateConfig::new(Location::parse(&format!("weaviate://{addr}/Bench"))?);
    config.muvera = muvera;
    config.timeout = std::time::Duration::from_secs(600);
    config.insert = match std::env::var("WEAVIATE_INSERT").as_deref() {
        Ok("json") => InsertPath::Json,
        _ => InsertPath::Binary,
    };
    config.writers = env_usize("WEAVIATE_WRITERS", config.writers);
    Weaviate::drop_collection(&config)?;
    let m = manifest("bench/synthetic@1");
    let weaviate = Weaviate::open_or_create(&config, &m)?;
    let what = format!("weaviate{}_{:?}_w{}", if muvera { "_muvera" } else { "" }, config.insert, config.writers);
    let started = fill(&weaviate, pages, rows, &what)?;
    weaviate.wait_indexed(std::time::Duration::from_secs(3600))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"what": format!("{what}_indexed"), "indexed_seconds": secs, "indexed_pages_per_s": pages as f64 / secs})
    );
    let store = if store_dir == "-" {
        None
    } else {
        let store = Store::open_or_create(Path::new(store_dir), &m)?;
        fill(&store, pages, rows, "store")?;
        Some(store)
    };
    let mut rng = Rng::new(77);
    let (mut w_ms, mut wx_ms, mut s_ms, mut exact_ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut recall, mut recall_x) = ((0.0, 0.0), (0.0, 0.0));
    for _ in 0..queries {
        let target = page((rng.next_u64() % pages as u64) as usize, rows);
        let q = MultiVector::new(planted_query(&mut rng, &target.vectors, 16, 1.5), DIM).expect("query");
        let t = Instant::now();
        let got = weaviate.search(&q, 10, None, SearchMode::Auto)?;
        w_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let got_x = weaviate.search(&q, 10, None, SearchMode::Exact)?;
        wx_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(store) = &store {
            let t = Instant::now();
            PageIndex::search(store, &q, 10, None, SearchMode::Auto)?;
            s_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let exact = PageIndex::search(store, &q, 10, None, SearchMode::Exact)?;
            exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
            for (r, hits) in [(&mut recall, &got), (&mut recall_x, &got_x)] {
                r.0 += hits.iter().filter(|g| exact.iter().any(|e| e.point_id == g.point_id)).count() as f64 / 10.0;
                r.1 += f64::from(u8::from(hits.first().map(|h| h.point_id) == exact.first().map(|e| e.point_id)));
            }
        }
    }
    let n = queries as f64;
    let (recall, recall_x) = (
        store.is_some().then(|| (recall.0 / n, recall.1 / n)),
        store.is_some().then(|| (recall_x.0 / n, recall_x.1 / n)),
    );
    let name = if muvera { "weaviate_muvera_search" } else { "weaviate_search" };
    report(&format!("{name}_auto"), w_ms, recall);
    report(&format!("{name}_exact_mode"), wx_ms, recall_x);
    if store.is_some() {
        report("store_search_auto", s_ms, None);
        report("store_search_exact", exact_ms, None);
    }
    Ok(())
}
