//! MUVERA fixed-dimensional encodings (Dhulipala et al., 2024) as a first stage, then exact MaxSim rerank.
//!
//! Written by hand: the Rust crates named `muvera`/`muvera-rs` are small single-author ports without
//! releases we could judge; the algorithm is short. Per repetition `r` (of `REPS`):
//! - SimHash: `KSIM` Gaussian hyperplanes split the unit sphere into `2^KSIM` buckets (a row's bucket is the
//!   sign bits of its dot products);
//! - each bucket's rows are summed (query) or averaged (page); a page bucket that got no row takes the row
//!   whose bucket id is nearest in Hamming distance ("fill empty", pages only);
//! - each bucket vector is projected to `DPROJ` dims by a random ±1/√DPROJ matrix.
//!
//! The encoding is the concatenation (`REPS · 2^KSIM · DPROJ` dims); `<fde(q), fde(p)>` approximates
//! MaxSim(q, p). The first stage is a full scan of the page encodings (2 threads; an HNSW over them is what
//! Qdrant/Weaviate add at larger scale), then the top `C` pages are rescored exactly from their vectors.

use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;

use crate::recall::Rng;
use crate::scale::{Row, Workload, maxsim_one};

const KSIM: usize = 4;
const DPROJ: usize = 16;
const REPS: usize = 8;
const BUCKETS: usize = 1 << KSIM;
/// Encoding width.
const FDE_DIM: usize = REPS * BUCKETS * DPROJ;
/// Candidates rescored exactly.
const RERANK: [usize; 3] = [100, 200, 500];

/// The random hyperplanes and projections, fixed by a seed.
struct Encoder {
    dim: usize,
    /// `REPS × KSIM × dim`.
    planes: Vec<f32>,
    /// `REPS × DPROJ × dim`, entries ±1/√DPROJ.
    proj: Vec<f32>,
}

impl Encoder {
    fn new(dim: usize) -> Self {
        let mut rng = Rng(0x51ED_2701_F3A5_9C1B);
        let planes = (0..REPS * KSIM * dim).map(|_| rng.normal()).collect();
        let s = 1.0 / (DPROJ as f32).sqrt();
        let proj = (0..REPS * DPROJ * dim).map(|_| if rng.next() & 1 == 0 { s } else { -s }).collect();
        Encoder { dim, planes, proj }
    }

    fn bucket(&self, r: usize, row: &[f32]) -> usize {
        let mut b = 0;
        for k in 0..KSIM {
            let h = &self.planes[(r * KSIM + k) * self.dim..][..self.dim];
            if h.iter().zip(row).map(|(a, b)| a * b).sum::<f32>() > 0.0 {
                b |= 1 << k;
            }
        }
        b
    }

    /// The encoding of `rows` (`is_query`: sums, no fill; else means with fill-empty).
    fn encode(&self, rows: &[f32], is_query: bool) -> Vec<f32> {
        let dim = self.dim;
        let mut out = vec![0.0f32; FDE_DIM];
        for r in 0..REPS {
            let ids: Vec<usize> = rows.chunks_exact(dim).map(|x| self.bucket(r, x)).collect();
            let mut sums = vec![0.0f32; BUCKETS * dim];
            let mut counts = [0usize; BUCKETS];
            for (x, &b) in rows.chunks_exact(dim).zip(&ids) {
                counts[b] += 1;
                sums[b * dim..(b + 1) * dim].iter_mut().zip(x).for_each(|(s, v)| *s += v);
            }
            for b in 0..BUCKETS {
                let v: Vec<f32> = if counts[b] > 0 {
                    let c = if is_query { 1.0 } else { counts[b] as f32 };
                    sums[b * dim..(b + 1) * dim].iter().map(|s| s / c).collect()
                } else if is_query || ids.is_empty() {
                    continue;
                } else {
                    let nearest = (0..ids.len()).min_by_key(|&i| (ids[i] ^ b).count_ones()).unwrap_or(0);
                    rows[nearest * dim..(nearest + 1) * dim].to_vec()
                };
                let o = &mut out[(r * BUCKETS + b) * DPROJ..][..DPROJ];
                for (d, slot) in o.iter_mut().enumerate() {
                    let p = &self.proj[(r * DPROJ + d) * dim..][..dim];
                    *slot = p.iter().zip(&v).map(|(a, b)| a * b).sum();
                }
            }
        }
        out
    }
}

/// Largest collection measured: the rerank reads page vectors held in RAM as f16 (10k pages ≈ 1.9 GB).
const MAX_PAGES: usize = 20_000;

pub(crate) fn rows(w: &Workload) -> Result<Vec<Row>> {
    if w.n > MAX_PAGES {
        return Ok(vec![Row {
            candidate: "muvera".into(),
            note: format!("not measured above {MAX_PAGES} pages: the rerank holds every page's f16 vectors in RAM"),
            ..Default::default()
        }]);
    }
    // The pages as a store holds them (f16), so that the rerank reads rather than regenerates them.
    let held: Vec<Vec<half::f16>> =
        (0..w.n).into_par_iter().map(|i| w.ds.page(i).into_iter().map(half::f16::from_f32).collect()).collect();
    let enc = Encoder::new(w.ds.dim);
    let t = Instant::now();
    let fdes: Vec<f32> = held
        .par_iter()
        .flat_map_iter(|p| enc.encode(&p.iter().map(|x| x.to_f32()).collect::<Vec<f32>>(), false))
        .collect();
    let build_s = t.elapsed().as_secs_f64();
    let dim = w.ds.dim;
    let first_stage = |q: &[f32]| -> Vec<(usize, f32)> {
        let qf = enc.encode(q, true);
        let mut s: Vec<(usize, f32)> = fdes
            .par_chunks_exact(FDE_DIM)
            .enumerate()
            .map(|(i, p)| (i, p.iter().zip(&qf).map(|(a, b)| a * b).sum()))
            .collect();
        let c = RERANK[RERANK.len() - 1].min(s.len());
        s.select_nth_unstable_by(c - 1, |a, b| b.1.total_cmp(&a.1));
        s.truncate(c);
        s.sort_by(|a, b| b.1.total_cmp(&a.1));
        s
    };
    let mut out = Vec::new();
    for c in RERANK.into_iter().filter(|&c| c < w.n) {
        let mut r = Row {
            candidate: format!("muvera {REPS}x{BUCKETS}x{DPROJ} + rerank {c}"),
            build_s: Some(build_s),
            write_pages_per_s: Some(w.n as f64 / build_s),
            disk_bytes_per_page: Some((FDE_DIM * 4) as f64),
            ..Default::default()
        };
        let search = |q: &[f32]| -> Result<Vec<usize>> {
            let cand = first_stage(q);
            let mut scored: Vec<(usize, f32)> = cand
                .par_iter()
                .take(c)
                .map(|&(i, _)| {
                    let page: Vec<f32> = held[i].iter().map(|x| x.to_f32()).collect();
                    (i, maxsim_one(q, &page, dim))
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            Ok(scored.into_iter().take(10).map(|x| x.0).collect())
        };
        // Everything it reads is in RAM: no cold-cache pass.
        Workload { cold_queries: 0, ..*w }.measure(&mut r, usize::MAX, &search)?;
        r.note = format!(
            "FDE {FDE_DIM} dims f32 in RAM (disk column = FDE only, plus the f16 vectors for the rerank); full-scan first stage; rerank from f16 pages in RAM; no cold pass (all in RAM);{}",
            r.note
        );
        out.push(r);
    }
    Ok(out)
}
