//! The search-at-scale harness (issue 10): every candidate on the same pages and the same queries, one run,
//! one table row per candidate × size.
//!
//! `colqwen-bench scale DATA_DIR WORK_DIR SIZES [--candidates LIST] [--latency-queries N] [--exact-queries N]
//! [--cold-queries N] [--truth-queries N] [--augment copies|stitch]`
//!
//! - `DATA_DIR`: a folder written by `scale-data` (`scale_data.rs`); pages beyond the embedded ones are
//!   regenerated from a seed ([`Dataset::page`]).
//! - `--augment`: how pages beyond the embedded ones are made: noisy copies (default) or stitched thirds of
//!   three pages (`scale_data.rs`).
//! - `WORK_DIR`: where indexes are built (each is deleted after it was measured).
//! - `SIZES`: comma list of page counts, e.g. `1000,10000,100000`.
//! - `--candidates`: comma list of `store` (the embedded store through `PageIndex`: exact, two-stage 50 to
//!   2000, auto), `compact` (the same store with `--storage i8 --pool-factor 2`: pages pooled at ingest, rows
//!   as i8; recall still against exact MaxSim over the unpooled pages), `muvera` (fixed-dimensional encodings + exact rerank, `fde.rs`), `pool` (hierarchical token
//!   pooling at ingest, factors 2 and 3, `pool.rs`), `plaid` (next-plaid at nbits 2 and 4). Default: all.
//!
//! Queries: (a) the model's embeddings of the committed text queries (`bench/scale/queries.txt`), truth = exact
//! MaxSim top-10 over the same stored (f16-rounded) vectors, computed by a multi-threaded scan; (b) 200
//! known-item queries, 20–30 rows sampled from one page with the augmentation's noise
//! ([`Dataset::noise_sigma`]; rows renormalised), truth = that page. Random tiny-model weights give near-ties,
//! so a returned page counts as a correct (a) hit when it is in the exact top-10 **or** its exact score is within the f16 tolerance
//! (`TIE_REL` × |10th score|) of the 10th score; the run prints how often ranks 10 and 11 are that close.
//!
//! Latency: one query at a time, after a warm-up pass (warm page cache); cold = `echo 3 >
//! /proc/sys/vm/drop_caches` before each query (needs root; the row says `n/a` otherwise). RSS is the process's
//! resident set right after a candidate's searches (it includes the harness's own data: truth scores, the
//! memory-mapped dataset pages it touched).

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use colqwen::core::MultiVector;
use colqwen::store::{IndexManifest, PageIndex, PageRecord, SearchMode, Store, VectorStorage};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::recall::Rng;
use crate::scale_data::{Augment, Dataset};
use crate::{fde, pool};

const K: usize = 10;
/// Relative score tolerance for ties at rank 10: f16 storage moves a MaxSim score by ≈ 1e-3 relative.
const TIE_REL: f32 = 1e-3;
/// Pages per synthetic document in the store (the store groups pages by document).
const PAGES_PER_DOC: usize = 100;
/// Pages per `upsert` call, and pages between `flush` calls, while building.
const UPSERT_BATCH: usize = 64;
const FLUSH_EVERY: usize = 1024;
const KNOWN_ITEM_QUERIES: usize = 200;

struct Opts {
    candidates: Vec<String>,
    latency_queries: usize,
    exact_queries: usize,
    cold_queries: usize,
    truth_queries: usize,
    augment: Augment,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        candidates: ["store", "muvera", "pool", "plaid"].map(String::from).to_vec(),
        latency_queries: 200,
        exact_queries: 20,
        cold_queries: 200,
        truth_queries: usize::MAX,
        augment: Augment::Copies,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--candidates" => o.candidates = v.split(',').map(String::from).collect(),
            "--latency-queries" => o.latency_queries = v.parse()?,
            "--exact-queries" => o.exact_queries = v.parse()?,
            "--cold-queries" => o.cold_queries = v.parse()?,
            "--truth-queries" => o.truth_queries = v.parse()?,
            "--augment" => o.augment = v.parse()?,
            _ => bail!(
                "unknown option {a}: --candidates, --latency-queries, --exact-queries, --cold-queries, --truth-queries, --augment"
            ),
        }
    }
    Ok(o)
}

/// Exact scores of every query against every page `0..n`: `scores[page][query]`.
pub(crate) struct Truth {
    scores: Vec<Vec<f32>>,
    /// Per query: the exact top-11 (page, score).
    top: Vec<Vec<(usize, f32)>>,
}

/// MaxSim of each query (rows concatenated in `qall`, `qrows` rows each) against one page, via one matrix
/// product `qall · pageᵀ` then a max per query row and a sum per query.
pub(crate) fn maxsim_many(qall: ArrayView2<f32>, qrows: &[usize], page: &[f32], dim: usize) -> Vec<f32> {
    let p = ArrayView2::from_shape((page.len() / dim, dim), page).expect("page rows × dim");
    let s = qall.dot(&p.t());
    let best: Vec<f32> = s.rows().into_iter().map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect();
    let mut out = Vec::with_capacity(qrows.len());
    let mut at = 0;
    for &r in qrows {
        out.push(best[at..at + r].iter().sum());
        at += r;
    }
    out
}

/// MaxSim of one query against one page (a matrix product, SIMD through `matrixmultiply`).
pub(crate) fn maxsim_one(q: &[f32], page: &[f32], dim: usize) -> f32 {
    let qv = ArrayView2::from_shape((q.len() / dim, dim), q).expect("query rows × dim");
    maxsim_many(qv, &[q.len() / dim], page, dim)[0]
}

fn stack(queries: &[Vec<f32>], dim: usize) -> (Array2<f32>, Vec<usize>) {
    let rows: Vec<usize> = queries.iter().map(|q| q.len() / dim).collect();
    let data: Vec<f32> = queries.concat();
    (Array2::from_shape_vec((data.len() / dim, dim), data).expect("rows × dim"), rows)
}

fn top_k(scores: impl Iterator<Item = f32>, k: usize) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = scores.enumerate().collect();
    let k = k.min(v.len());
    if k == 0 {
        return Vec::new();
    }
    v.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    v.truncate(k);
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn truth(ds: &Dataset, n: usize, queries: &[Vec<f32>]) -> Truth {
    let (qall, qrows) = stack(queries, ds.dim);
    let scores: Vec<Vec<f32>> =
        (0..n).into_par_iter().map(|i| maxsim_many(qall.view(), &qrows, &ds.page(i), ds.dim)).collect();
    let top = (0..queries.len()).map(|j| top_k(scores.iter().map(|s| s[j]), K + 1)).collect();
    Truth { scores, top }
}

impl Truth {
    /// Correct hits among `got` for text query `j` (module documentation: ties within tolerance count).
    pub(crate) fn hits(&self, j: usize, got: &[usize]) -> usize {
        let t = &self.top[j];
        let tenth = t[K.min(t.len()) - 1].1;
        let tol = TIE_REL * tenth.abs();
        let set: HashSet<usize> = t.iter().take(K).map(|x| x.0).collect();
        got.iter().take(K).filter(|&&p| set.contains(&p) || self.scores[p][j] >= tenth - tol).count()
    }
}

/// Known-item queries for a collection of `n` pages: (query rows, the page they came from).
fn known_items(ds: &Dataset, n: usize) -> Vec<(Vec<f32>, usize)> {
    let dim = ds.dim;
    (0..KNOWN_ITEM_QUERIES)
        .map(|q| {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((q as u64 + 1) * 0x2545_F491_4F6C_DD1D) ^ n as u64 | 1);
            let p = (rng.next() % n as u64) as usize;
            let page = ds.page(p);
            let rows = page.len() / dim;
            let take = 20 + (rng.next() % 11) as usize;
            let mut order: Vec<usize> = (0..rows).collect();
            for k in 0..take.min(rows) {
                let r = k + (rng.next() % (rows - k) as u64) as usize;
                order.swap(k, r);
            }
            let sigma = ds.noise_sigma();
            let mut v = Vec::with_capacity(take * dim);
            for &r in &order[..take.min(rows)] {
                let row: Vec<f32> = page[r * dim..(r + 1) * dim].iter().map(|x| x + sigma * rng.normal()).collect();
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.extend(row.iter().map(|x| x / norm));
            }
            (v, p)
        })
        .collect()
}

/// One measured row of the table.
#[derive(Default)]
pub(crate) struct Row {
    pub candidate: String,
    pub build_s: Option<f64>,
    pub write_pages_per_s: Option<f64>,
    pub disk_bytes_per_page: Option<f64>,
    pub warm: Option<(f64, f64)>,
    pub cold: Option<(f64, f64)>,
    pub recall_a: Option<f64>,
    pub recall_b: Option<f64>,
    pub rss_mib: Option<f64>,
    pub note: String,
}

pub(crate) fn pct(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[(v.len() * 95 / 100).min(v.len() - 1)])
}

pub(crate) fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Empties the page cache (root only); false if not permitted.
pub(crate) fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Allocated bytes below `dir` (sparse files count what they use).
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// What a candidate is asked: text queries (a) with their truth, known-item queries (b).
pub(crate) struct Workload<'a> {
    pub ds: &'a Dataset,
    pub n: usize,
    pub text: &'a [Vec<f32>],
    pub truth: &'a Truth,
    pub known: &'a [(Vec<f32>, usize)],
    pub latency_queries: usize,
    pub cold_queries: usize,
}

impl Workload<'_> {
    /// Runs `search` (query rows → ranked pages) over both query sets and the latency passes.
    pub(crate) fn measure(
        &self,
        row: &mut Row,
        limit: usize,
        search: &dyn Fn(&[f32]) -> Result<Vec<usize>>,
    ) -> Result<()> {
        let nt = self.text.len().min(limit);
        let nk = self.known.len().min(limit);
        // Warm-up pass (also the recall of the text queries).
        let mut hits = 0;
        for j in 0..nt {
            hits += self.truth.hits(j, &search(&self.text[j])?);
        }
        row.recall_a = Some(hits as f64 / (K * nt) as f64);
        let found = (0..nk)
            .map(|j| Ok(search(&self.known[j].0)?.iter().take(K).any(|&p| p == self.known[j].1)))
            .collect::<Result<Vec<bool>>>()?;
        row.recall_b = Some(found.iter().filter(|&&f| f).count() as f64 / nk as f64);
        // Latency over the text queries, then the known-item ones, up to `latency_queries`.
        let timed: Vec<&[f32]> =
            self.text[..nt].iter().map(Vec::as_slice).chain(self.known[..nk].iter().map(|k| k.0.as_slice())).collect();
        let mut warm = Vec::new();
        // Warm latencies apart for queries of up to 32 rows and longer ones: the coarse scan's tables are twice
        // as wide past 32 rows, which may be where the p95 comes from.
        let (mut short, mut long) = (Vec::new(), Vec::new());
        for &q in timed.iter().take(self.latency_queries) {
            let t = Instant::now();
            search(q)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            warm.push(ms);
            if q.len() / self.ds.dim <= 32 { short.push(ms) } else { long.push(ms) }
        }
        for (name, v) in [("<= 32", short), ("> 32", long)] {
            if !v.is_empty() {
                let n = v.len();
                let (p50, p95) = pct(v);
                row.note += &format!(" warm, queries of {name} rows: {p50:.1} / {p95:.1} ms ({n});");
            }
        }
        let warm_n = warm.len();
        row.warm = Some(pct(warm));
        row.rss_mib = rss_mib();
        let mut cold = Vec::new();
        for &q in timed.iter().take(self.cold_queries) {
            if !drop_caches() {
                row.note += " cold: drop_caches not permitted;";
                break;
            }
            let t = Instant::now();
            search(q)?;
            cold.push(t.elapsed().as_secs_f64() * 1e3);
        }
        if !cold.is_empty() {
            row.cold = Some(pct(cold));
        }
        if nt < self.text.len() {
            row.note += &format!(" {nt} text + {nk} known-item queries;");
        }
        if let Some(n) = (warm_n < 200).then_some(warm_n) {
            row.note += &format!(" latency over {n} queries;");
        }
        Ok(())
    }
}

fn print_row(n: usize, r: &Row) {
    let f = |x: Option<f64>, p: usize| x.map_or("n/a".to_string(), |v| format!("{v:.p$}"));
    let pair = |x: Option<(f64, f64)>| x.map_or("n/a".to_string(), |(a, b)| format!("{a:.1} / {b:.1}"));
    println!(
        "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.candidate,
        f(r.build_s, 1),
        f(r.write_pages_per_s, 0),
        f(r.disk_bytes_per_page.map(|b| b / 1024.0), 1),
        pair(r.warm),
        pair(r.cold),
        f(r.recall_a, 3),
        f(r.recall_b, 3),
        f(r.rss_mib, 0),
        r.note.trim()
    );
}

pub(crate) fn run(data: &Path, work: &Path, sizes: &str, args: &[String]) -> Result<()> {
    let o = parse_opts(args)?;
    let mut ds = Dataset::open(data)?;
    ds.augment = o.augment;
    std::fs::create_dir_all(work)?;
    println!(
        "| pages | candidate | build s | write pages/s | disk KiB/page | warm p50 / p95 ms | cold p50 / p95 ms | recall@10 (a) text | recall@10 (b) known-item | RSS MiB | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes.split(',').map(str::parse::<usize>) {
        let n = n.context("SIZES: comma list of page counts")?;
        let text: Vec<Vec<f32>> = ds.queries.iter().take(o.truth_queries).cloned().collect();
        let t = Instant::now();
        let truth = truth(&ds, n, &text);
        let gaps: Vec<f32> = truth.top.iter().map(|t| t[K - 1].1 - t[K].1).collect();
        let close = truth.top.iter().zip(&gaps).filter(|(t, g)| **g < TIE_REL * t[K - 1].1.abs()).count();
        eprintln!(
            "{{\"pages\": {n}, \"augment\": \"{:?}\", \"spread\": {:.5}, \"truth_seconds\": {:.1}, \"text_queries\": {}, \"rank10_11_gap_median\": {:.5}, \"gap_below_f16_tolerance\": {close}}}",
            ds.augment,
            ds.spread,
            t.elapsed().as_secs_f64(),
            text.len(),
            pct(gaps.iter().map(|&g| f64::from(g)).collect()).0
        );
        let known = known_items(&ds, n);
        let w = Workload {
            ds: &ds,
            n,
            text: &text,
            truth: &truth,
            known: &known,
            latency_queries: o.latency_queries,
            cold_queries: o.cold_queries,
        };
        for c in &o.candidates {
            let rows = match c.as_str() {
                "store" => store_rows(&w, work, o.exact_queries, VectorStorage::F16, 1)?,
                "compact" => store_rows(&w, work, o.exact_queries, VectorStorage::I8, 2)?,
                "muvera" => fde::rows(&w)?,
                "pool" => pool::rows(&w)?,
                "plaid" => crate::plaid::rows(&w, work)?,
                other => bail!("unknown candidate {other}: store, compact, muvera, pool, plaid"),
            };
            for r in &rows {
                print_row(n, r);
            }
        }
    }
    Ok(())
}

/// The embedded store through `Store::open_or_create` and the `PageIndex` trait: f16 as shipped by default
/// (`pool_factor` 1), or the compact storage.
fn store_rows(
    w: &Workload,
    work: &Path,
    exact_queries: usize,
    storage: VectorStorage,
    pool_factor: u32,
) -> Result<Vec<Row>> {
    let name = if pool_factor > 1 { format!("compact ({storage}, pool {pool_factor})") } else { "store".into() };
    let dir = work.join(format!("store-{storage}-{pool_factor}-{}", w.n));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let manifest = IndexManifest::new(
        "colqwen-bench/scale",
        w.ds.dim,
        serde_json::json!({"max_visual_tokens": crate::scale_data::VISUAL_TOKENS}),
        storage,
    )
    .with_pool_factor(pool_factor);
    let mut build = Row { candidate: format!("{name} build"), ..Default::default() };
    {
        let store = Store::open_or_create(&dir, &manifest)?;
        let index: &dyn PageIndex = &store;
        let (mut write_s, t_all) = (0.0, Instant::now());
        let mut since_flush = 0;
        for start in (0..w.n).step_by(UPSERT_BATCH * 8) {
            // Generate a block in parallel (not timed), then write it in UPSERT_BATCH pages per call (timed).
            let end = w.n.min(start + UPSERT_BATCH * 8);
            let recs: Vec<PageRecord> = (start..end).into_par_iter().map(|i| record(w.ds, i)).collect();
            let mut recs = recs.into_iter();
            loop {
                let chunk: Vec<PageRecord> = recs.by_ref().take(UPSERT_BATCH).collect();
                if chunk.is_empty() {
                    break;
                }
                since_flush += chunk.len();
                let t = Instant::now();
                index.upsert(chunk)?;
                if since_flush >= FLUSH_EVERY {
                    index.flush()?;
                    since_flush = 0;
                }
                write_s += t.elapsed().as_secs_f64();
            }
        }
        let t = Instant::now();
        index.flush()?;
        write_s += t.elapsed().as_secs_f64();
        build.build_s = Some(t_all.elapsed().as_secs_f64());
        build.write_pages_per_s = Some(w.n as f64 / write_s);
    }
    let t = Instant::now();
    let store = Store::open_or_create(&dir, &manifest)?;
    let reopen_s = t.elapsed().as_secs_f64();
    // The coarse stage of two-stage search is built by a background thread; build it now on all cores so that
    // the two-stage rows measure it complete (its time is reported apart from the writes).
    let t = Instant::now();
    let coded = store.optimize()?;
    build.note = format!(
        "reopen {reopen_s:.2}s; coarse stage {:.1}s ({coded} pages coded, {} threads); build s includes generating augmented pages;",
        t.elapsed().as_secs_f64(),
        store.search_threads()
    );
    build.disk_bytes_per_page = Some(disk_bytes(&dir) as f64 / w.n as f64);
    let index: &dyn PageIndex = &store;
    if index.page_count()? != w.n {
        bail!("store holds {} pages, expected {}", index.page_count()?, w.n);
    }
    let mut rows = vec![build];
    let modes = [
        ("exact", SearchMode::Exact, exact_queries),
        ("two-stage 50", SearchMode::TwoStage { prefetch: Some(50) }, usize::MAX),
        ("two-stage 100", SearchMode::TwoStage { prefetch: Some(100) }, usize::MAX),
        ("two-stage 200", SearchMode::TwoStage { prefetch: Some(200) }, usize::MAX),
        ("two-stage 500", SearchMode::TwoStage { prefetch: Some(500) }, usize::MAX),
        ("two-stage 1000", SearchMode::TwoStage { prefetch: Some(1000) }, usize::MAX),
        ("two-stage 2000", SearchMode::TwoStage { prefetch: Some(2000) }, usize::MAX),
        ("auto", SearchMode::Auto, usize::MAX),
    ];
    for (mode_name, mode, limit) in modes {
        let mut r = Row {
            candidate: format!("{name} {mode_name}"),
            disk_bytes_per_page: rows[0].disk_bytes_per_page,
            ..Default::default()
        };
        let search = |q: &[f32]| -> Result<Vec<usize>> {
            let mv = MultiVector::new(q.to_vec(), w.ds.dim).context("query rows")?;
            Ok(index.search(&mv, K, None, mode)?.iter().map(page_of).collect())
        };
        // Exact scans every page: its latency passes are capped at `limit` queries (cold: 10).
        let capped = Workload {
            latency_queries: w.latency_queries.min(limit),
            cold_queries: if limit == usize::MAX { w.cold_queries } else { w.cold_queries.min(10) },
            ..*w
        };
        capped.measure(&mut r, limit, &search)?;
        rows.push(r);
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(rows)
}

fn record(ds: &Dataset, i: usize) -> PageRecord {
    let (doc, page) = (i / PAGES_PER_DOC, i % PAGES_PER_DOC);
    let sha = format!("{doc:016x}").repeat(4);
    PageRecord {
        doc_id: colqwen::core::doc_id(&sha),
        source_path: format!("/bench/doc-{doc}.pdf"),
        file_sha256: sha,
        page_index: page,
        page_count: PAGES_PER_DOC,
        page_width_pt: 612.0,
        page_height_pt: 792.0,
        preview: None,
        vectors: ds.page(i),
    }
}

fn page_of(h: &colqwen::store::Hit) -> usize {
    usize::from_str_radix(&h.doc_id, 16).unwrap_or(usize::MAX / 2) * PAGES_PER_DOC + h.page_index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_maxsim_equals_the_core_maxsim() {
        let dim = 16;
        let mut rng = Rng(3);
        let mut v = |n: usize| (0..n * dim).map(|_| rng.normal()).collect::<Vec<f32>>();
        let (q1, q2, page) = (v(5), v(9), v(40));
        let (qall, rows) = stack(&[q1.clone(), q2.clone()], dim);
        let got = maxsim_many(qall.view(), &rows, &page, dim);
        for (g, q) in got.iter().zip([&q1, &q2]) {
            let want = colqwen::core::maxsim(q, &page, dim);
            assert!((g - want).abs() <= 1e-4 * want.abs().max(1.0), "{g} vs {want}");
        }
    }

    #[test]
    fn ties_within_f16_tolerance_count_as_hits() {
        // 12 pages, one query: page scores 12, 11, ..., 1, and page 10 (score 2) ties page 9 (score 3) closely.
        let mut scores: Vec<Vec<f32>> = (0..12).map(|i| vec![12.0 - i as f32]).collect();
        scores[10][0] = 3.0 - 1e-4;
        let top = vec![top_k(scores.iter().map(|s| s[0]), K + 1)];
        let t = Truth { scores, top };
        assert_eq!(t.hits(0, &(0..10).collect::<Vec<_>>()), 10);
        let mut swapped: Vec<usize> = (0..9).collect();
        swapped.push(10);
        assert_eq!(t.hits(0, &swapped), 10, "a near-tie at rank 10 is a hit");
        swapped[9] = 11;
        assert_eq!(t.hits(0, &swapped), 9, "rank 12 is not");
    }
}
