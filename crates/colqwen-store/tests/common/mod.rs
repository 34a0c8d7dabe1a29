//! Seeded synthetic pages for the store tests.
#![allow(dead_code)]

use colqwen_store::{IndexManifest, PageRecord, SearchMode, Store, VectorStorage};
use serde_json::json;

pub(crate) const DIM: usize = 128;

/// splitmix64: tiny, seeded, good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

pub(crate) fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

pub(crate) fn unit_vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.normal()).collect();
    normalize(&mut v);
    v
}

/// Seed of the synthetic corpus that `bench_search` and `recall_sim` share (pages from it, queries from it + 1).
pub(crate) const CORPUS_SEED: u64 = 42;

/// Page `i` of that corpus: `rows` clustered unit vectors, the same whichever example asks.
pub(crate) fn corpus_page(i: usize, rows: usize) -> Vec<f32> {
    let mut rng = Rng::new(CORPUS_SEED ^ (i as u64).wrapping_mul(0x9E37_79B9));
    clustered_page(&mut rng, rows, DIM, 1.0)
}

/// MaxSim with 8 accumulators, the loop a plain Rust implementation would use (the benchmarks' baseline).
pub(crate) fn maxsim_fast(query: &[f32], doc: &[f32], dim: usize) -> f32 {
    let nq = query.len() / dim;
    let mut best = vec![f32::NEG_INFINITY; nq];
    for d in doc.chunks_exact(dim) {
        for (b, q) in best.iter_mut().zip(query.chunks_exact(dim)) {
            let mut acc = [0.0f32; 8];
            for (qc, dc) in q.chunks_exact(8).zip(d.chunks_exact(8)) {
                for j in 0..8 {
                    acc[j] += qc[j] * dc[j];
                }
            }
            let dot = acc.iter().sum::<f32>();
            if dot > *b {
                *b = dot;
            }
        }
    }
    best.iter().sum()
}

/// Indices of the `k` highest scores, best first.
pub(crate) fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx.truncate(k);
    idx
}

/// `rows` unit vectors around a random page centroid (noise of norm ~`noise`), like real pages.
pub(crate) fn clustered_page(rng: &mut Rng, rows: usize, dim: usize, noise: f32) -> Vec<f32> {
    let centroid = unit_vector(rng, dim);
    let sigma = noise / (dim as f32).sqrt();
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let mut row: Vec<f32> = centroid.iter().map(|c| c + sigma * rng.normal()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

/// `rows` noisy copies of random rows of `page`.
pub(crate) fn planted_query(rng: &mut Rng, page: &[f32], rows: usize, dim: usize, noise: f32) -> Vec<f32> {
    let page_rows = page.len() / dim;
    let sigma = noise / (dim as f32).sqrt();
    let mut out = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        let r = rng.below(page_rows as u64) as usize;
        let mut row: Vec<f32> = page[r * dim..(r + 1) * dim].iter().map(|x| x + sigma * rng.normal()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

pub(crate) fn random_query(rng: &mut Rng, rows: usize, dim: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| unit_vector(rng, dim)).collect()
}

pub(crate) fn manifest(storage: VectorStorage) -> IndexManifest {
    IndexManifest::new(
        "vidore/colqwen2.5-v0.2@test",
        DIM,
        json!({"max_pixels": 1003520, "max_visual_tokens": 768, "dpi": "fit"}),
        storage,
    )
}

/// Page `page_index` of a `page_count`-page file `doc`, version `sha`.
pub(crate) fn page(
    rng: &mut Rng,
    doc: &str,
    sha: &str,
    page_index: usize,
    page_count: usize,
    rows: usize,
) -> PageRecord {
    PageRecord {
        doc_id: doc.to_owned(),
        source_path: format!("pdfs/{doc}.pdf"),
        file_sha256: sha.to_owned(),
        page_index,
        page_count,
        page_width_pt: 595.0,
        page_height_pt: 842.0,
        preview: Some(format!("previews/{sha}/{page_index}.webp")),
        vectors: clustered_page(rng, rows, DIM, 1.0),
    }
}

/// All pages of one file.
pub(crate) fn document(rng: &mut Rng, doc: &str, sha: &str, page_count: usize, rows: usize) -> Vec<PageRecord> {
    (0..page_count).map(|i| page(rng, doc, sha, i, page_count, rows)).collect()
}

/// `docs` documents `d0`, `d1`, … (files `sha0`, `sha1`, …) of `page_count` pages each, their pages in order.
pub(crate) fn documents(rng: &mut Rng, docs: usize, page_count: usize, rows: usize) -> Vec<PageRecord> {
    (0..docs).flat_map(|d| document(rng, &format!("d{d}"), &format!("sha{d}"), page_count, rows)).collect()
}

/// For each target, a query planted in it (`noise`) finds it first exactly, two-stage with 20 candidates and
/// two-stage with the index's default rerank size, with the same score.
pub(crate) fn assert_two_stage_finds(store: &Store, rng: &mut Rng, targets: &[&PageRecord], noise: f32) {
    for target in targets {
        let query = planted_query(rng, &target.vectors, 16, DIM, noise);
        let exact = store.search(&query, 10, None, SearchMode::Exact).unwrap();
        let two = store.search(&query, 10, None, SearchMode::TwoStage { prefetch: Some(20) }).unwrap();
        let want = (target.doc_id.as_str(), target.page_index);
        assert_eq!((exact[0].doc_id.as_str(), exact[0].page_index), want);
        assert_eq!((two[0].doc_id.as_str(), two[0].page_index), want);
        assert_eq!(two[0].score, exact[0].score);
        let default = store.search(&query, 10, None, SearchMode::TwoStage { prefetch: None }).unwrap();
        assert_eq!(default[0].point_id, exact[0].point_id);
    }
}
