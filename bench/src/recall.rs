//! Recall@10 of two-stage search (pooled-vector prefetch, then exact MaxSim) against exact MaxSim, on a large
//! synthetic collection built from *model embeddings of real pages*: every corpus page is rendered as ingest
//! renders it and embedded (768 visual tokens); synthetic page `i` is real page `i mod R` with each row
//! perturbed (Gaussian noise, σ = 0.3 per dim / √128·… relative) and renormalised, so pages keep the real
//! pages' structure but differ. Queries are the model's embeddings of `QUERIES`. Pages are regenerated from a
//! seed while scanning, so 100k pages need no 40 GB of RAM. Ranking rules are the store's (pooled = mean of
//! rows, normalised; cosine prefetch; MaxSim rerank).
//!
//! intent: choose the store's Auto prefetch from embeddings with real-page structure, not random vectors.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use colqwen::model::{ColQwen, HubOptions, LoadOptions, ModelFiles, MultiVector};
use colqwen::{DTypeChoice, DeviceChoice, Runtime};
use rayon::prelude::*;

const PREFETCHES: [usize; 5] = [50, 100, 200, 500, 1000];
const K: usize = 10;
/// Noise per component relative to a unit row's typical component (1/√128).
const NOISE: f32 = 0.5;

/// xorshift64: small, seeded, deterministic (benchmark data only).
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn synthetic(real: &[MultiVector], i: usize) -> Vec<f32> {
    let base = &real[i % real.len()];
    if i < real.len() {
        return base.data.clone();
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1);
    let sigma = NOISE / (base.dim as f32).sqrt();
    let mut v = base.data.clone();
    for row in v.chunks_exact_mut(base.dim) {
        row.iter_mut().for_each(|x| *x += sigma * rng.normal());
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn top(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx.truncate(k);
    idx
}

pub(crate) fn run(model: &str, sizes: &str, queries: &str, pdfs: &[String]) -> Result<()> {
    let rt = Runtime::resolve(DeviceChoice::Auto, DTypeChoice::Auto)?;
    let files = ModelFiles::resolve(model, None, &HubOptions { offline: true, ..Default::default() })?;
    let load = LoadOptions { max_visual_tokens: Some(768), ..Default::default() };
    let m = ColQwen::load(&files, &rt.device, rt.dtype, &load)?;
    let limits = colqwen::pdf::RenderLimits::default();
    let mut real = Vec::new();
    for p in pdfs {
        let doc = Arc::new(colqwen::pdf::Document::open(Path::new(p), None)?);
        let pvs = (0..doc.page_count())
            .into_par_iter()
            .map(|i| -> Result<_> {
                let (w, h) =
                    colqwen::pdf::render_size(doc.page_size_pt(i)?, m.preprocessor().max_pixels as u64, &limits);
                let img = colqwen::pdf::render_contained(&doc, i, w, h, &limits)?;
                Ok(m.preprocessor().preprocess(&img)?)
            })
            .collect::<Result<Vec<_>>>()?;
        for chunk in pvs.chunks(8) {
            real.extend(m.embed_pixel_values(chunk)?);
        }
    }
    let qs: Vec<String> =
        std::fs::read_to_string(queries)?.lines().filter(|l| !l.is_empty()).map(String::from).collect();
    let refs: Vec<&str> = qs.iter().map(String::as_str).collect();
    let q = m.embed_queries(&refs)?;
    let dim = q[0].dim;
    let qpooled: Vec<Vec<f32>> = q.iter().map(|x| colqwen::store::pooled(&x.data, dim)).collect();
    eprintln!(
        "{} real pages embedded ({} rows each on average), {} queries",
        real.len(),
        real.iter().map(|r| r.rows).sum::<usize>() / real.len().max(1),
        q.len()
    );
    for n in sizes.split(',').map(str::parse::<usize>) {
        let n = n?;
        // One pass over the collection: exact MaxSim and pooled cosine of every query against every page.
        let per_page: Vec<(Vec<f32>, Vec<f32>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let v = synthetic(&real, i);
                let p = colqwen::store::pooled(&v, dim);
                let exact = q.iter().map(|qq| colqwen::store::maxsim(&qq.data, &v, dim)).collect();
                let cos = qpooled.iter().map(|qp| qp.iter().zip(&p).map(|(a, b)| a * b).sum()).collect();
                (exact, cos)
            })
            .collect();
        let mut line = format!("{{\"pages\": {n}, \"queries\": {}", q.len());
        for &pf in PREFETCHES.iter().filter(|&&pf| pf < n) {
            let mut hits = 0usize;
            for j in 0..q.len() {
                let exact: Vec<f32> = per_page.iter().map(|(e, _)| e[j]).collect();
                let cos: Vec<f32> = per_page.iter().map(|(_, c)| c[j]).collect();
                let truth = top(&exact, K);
                let cand = top(&cos, pf);
                let mut reranked: Vec<(usize, f32)> = cand.iter().map(|&c| (c, exact[c])).collect();
                reranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                hits += reranked.iter().take(K).filter(|(c, _)| truth.contains(c)).count();
            }
            line += &format!(", \"recall@10_prefetch_{pf}\": {:.3}", hits as f64 / (K * q.len()) as f64);
        }
        println!("{line}}}");
    }
    Ok(())
}
