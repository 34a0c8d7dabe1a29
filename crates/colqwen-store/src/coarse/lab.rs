//! Experiments on the coarse stage over a `colqwen-bench scale-data` folder (ignored; run by hand):
//! recall of candidate rankings against exact MaxSim over the uncompressed pages, without building a store, so
//! that a variant of the coarse stage costs seconds once the exact scores are cached.
//!
//! ```sh
//! LAB_DATA=/work/benchdata/d600 LAB_BASE=600 LAB_N=10000 LAB_STORAGE=compact|f16 LAB_R=500,1000,2000 \
//!   LAB_VARIANTS=base,win0.3,mix0,sub4x4 LAB_CACHE=/work/benchdata/lab \
//!   cargo test --release -p colqwen-store --lib coarse_variants -- --ignored --nocapture
//! ```
//!
//! Pages are the bench's `--augment stitch` pages (the same seeds as `bench/src/scale_data.rs`), known-item
//! queries are made as the bench makes them, and a text hit counts within the bench's f16 tolerance of the 10th
//! score. Variants: `base` (the shipped ranking: 3 by the two-level score, 1 by the first level), `winW` (the
//! tables resolving the top `W` of each query row's range), `mixK` (every K-th candidate by the first level; 0:
//! none), `f32` (the two-level score from f32 tables), `subSxM` (a prefilter: every page by every S-th of its
//! sorted codes, then the best M × R by all of them), `sketchSxM` (the same with pages pooled to ~S rows).
//! The codebook is trained as `optimize` trains it, but on a sample phased by page number instead of point id:
//! another sample, so another k-means optimum, and recall differs from the store's by as much as codebooks do
//! (`bench/results.md`, 2026-12-08).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::path::{Path, PathBuf};

use half::f16;
use rayon::prelude::*;

use super::*;

const K: usize = 10;
const TIE_REL: f32 = 1e-3;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn read_u32s(p: &Path) -> Vec<u32> {
    std::fs::read(p).unwrap().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

pub(super) struct Data {
    pub(super) dim: usize,
    vecs: memmap2::Mmap,
    offsets: Vec<usize>,
    pub(super) queries: Vec<Vec<f32>>,
    spread: f32,
}

impl Data {
    pub(super) fn open(dir: &Path, base: usize) -> Data {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        let dim = meta["dim"].as_u64().unwrap() as usize;
        let counts = read_u32s(&dir.join("pages.rows"));
        let mut offsets = vec![0usize];
        for c in counts.iter().take(base) {
            offsets.push(offsets.last().copied().unwrap() + *c as usize);
        }
        let file = std::fs::File::open(dir.join("pages.f16")).unwrap();
        let vecs = unsafe { memmap2::Mmap::map(&file).unwrap() };
        let qrows = read_u32s(&dir.join("queries.rows"));
        let qdata = std::fs::read(dir.join("queries.f32")).unwrap();
        let qf: Vec<f32> = qdata.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut queries = Vec::new();
        let mut at = 0;
        for r in qrows {
            let n = r as usize * dim;
            queries.push(qf[at..at + n].to_vec());
            at += n;
        }
        let mut d = Data { dim, vecs, offsets, queries, spread: 0.0 };
        d.spread = d.measure_spread();
        d
    }

    fn measure_spread(&self) -> f32 {
        let dim = self.dim;
        let mut sum = vec![0f64; dim];
        let mut sq = 0f64;
        let mut n = 0usize;
        for i in 0..self.embedded() {
            for row in self.embedded_page(i).chunks_exact(dim) {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += x as f64;
                    sq += (x as f64) * (x as f64);
                }
                n += 1;
            }
        }
        let n = n.max(1) as f64;
        let mean_sq: f64 = sum.iter().map(|s| (s / n) * (s / n)).sum();
        ((sq / n - mean_sq).max(0.0) / dim as f64).sqrt() as f32
    }

    fn embedded(&self) -> usize {
        self.offsets.len() - 1
    }

    fn embedded_page(&self, i: usize) -> Vec<f32> {
        let bytes = &self.vecs[self.offsets[i] * self.dim * 2..self.offsets[i + 1] * self.dim * 2];
        bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
    }

    /// Page `i` of the stitched collection (the bench's `--augment stitch`).
    pub(super) fn page(&self, i: usize) -> Vec<f32> {
        let e = self.embedded();
        if i < e {
            return self.embedded_page(i);
        }
        let e = e as u64;
        let mut rng = Rng(0xA076_1D64_78BD_642F ^ (i as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB) | 1);
        let a = (rng.next() % e) as usize;
        let mut b = a;
        while b == a {
            b = (rng.next() % e) as usize;
        }
        let mut c = a;
        while c == a || c == b {
            c = (rng.next() % e) as usize;
        }
        let cut1 = 0.20 + 0.25 * rng.unit();
        let cut2 = 0.55 + 0.25 * rng.unit();
        let mut v = Vec::new();
        for (p, from, to) in [(a, 0.0, cut1), (b, cut1, cut2), (c, cut2, 1.0)] {
            let rows = self.offsets[p + 1] - self.offsets[p];
            let (lo, hi) = ((from * rows as f64).round() as usize, (to * rows as f64).round() as usize);
            let page = self.embedded_page(p);
            v.extend_from_slice(&page[lo * self.dim..hi * self.dim]);
        }
        v
    }

    /// The bench's known-item queries for `n` pages.
    pub(super) fn known_items(&self, n: usize) -> Vec<(Vec<f32>, usize)> {
        let dim = self.dim;
        (0..200)
            .map(|q| {
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((q as u64 + 1) * 0x2545_F491_4F6C_DD1D) ^ n as u64 | 1);
                let p = (rng.next() % n as u64) as usize;
                let page = self.page(p);
                let rows = page.len() / dim;
                let take = 20 + (rng.next() % 11) as usize;
                let mut order: Vec<usize> = (0..rows).collect();
                for k in 0..take.min(rows) {
                    let r = k + (rng.next() % (rows - k) as u64) as usize;
                    order.swap(k, r);
                }
                let sigma = 0.3 * self.spread;
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
}

/// MaxSim of every query (rows stacked in `qall`, `qrows` each) against one page.
fn maxsim_many(qall: &[f32], qrows: &[usize], page: &[f32], dim: usize) -> Vec<f32> {
    let n = page.len() / dim;
    let mut s = vec![0.0f32; qall.len() / dim * n];
    matmul_nt(qall, page, dim, &mut s);
    let mut out = Vec::with_capacity(qrows.len());
    let mut at = 0;
    for &r in qrows {
        let mut sum = 0.0;
        for q in at..at + r {
            sum += s[q * n..(q + 1) * n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
        out.push(sum);
        at += r;
    }
    out
}

/// `scores[page][query]`, cached in `path`.
fn cached_scores(path: &Path, n: usize, nq: usize, f: impl Fn(usize) -> Vec<f32> + Sync + Send) -> Vec<Vec<f32>> {
    if let Ok(b) = std::fs::read(path)
        && b.len() == n * nq * 4
    {
        let all: Vec<f32> = b.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        return all.chunks_exact(nq).map(<[f32]>::to_vec).collect();
    }
    let t = std::time::Instant::now();
    let v: Vec<Vec<f32>> = (0..n).into_par_iter().map(f).collect();
    eprintln!("computed {} in {:.1}s", path.display(), t.elapsed().as_secs_f64());
    let bytes: Vec<u8> = v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
    v
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The 3:1 merge of two rankings (best first), `r` distinct pages.
fn select(both: &[usize], first: &[usize], r: usize) -> Vec<usize> {
    let mut taken = std::collections::HashSet::with_capacity(r);
    let mut out = Vec::with_capacity(r);
    let (mut b, mut f) = (both.iter(), first.iter());
    while out.len() < r.min(both.len()) {
        let from_first = taken.len() % 4 == 3;
        let next = if from_first { f.next().or_else(|| b.next()) } else { b.next().or_else(|| f.next()) };
        let Some(&c) = next else { break };
        if taken.insert(c) {
            out.push(c);
        }
    }
    out
}

fn order_by(idx: &[usize], score: impl Fn(usize) -> f32) -> Vec<usize> {
    let mut v: Vec<(usize, f32)> = idx.iter().map(|&i| (i, score(i))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|x| x.0).collect()
}

fn top(idx: &[usize], m: usize, score: impl Fn(usize) -> f32) -> Vec<usize> {
    let mut v = order_by(idx, score);
    v.truncate(m);
    v
}

struct Eval<'a> {
    n: usize,
    nt: usize,
    truth: &'a [Vec<f32>],
    stored: &'a [Vec<f32>],
    known: &'a [(Vec<f32>, usize)],
}

impl Eval<'_> {
    /// (text recall, known-item recall) when query `j`'s candidates are `cands(j)`.
    fn recall(&self, cands: &(dyn Fn(usize) -> Vec<usize> + Sync)) -> (f64, f64) {
        let nq = self.nt + self.known.len();
        let res: Vec<f64> = (0..nq)
            .into_par_iter()
            .map(|j| {
                let c = cands(j);
                let got = top(&c, K, |i| self.stored[i][j]);
                if j < self.nt {
                    let all: Vec<usize> = (0..self.n).collect();
                    let t = top(&all, K, |i| self.truth[i][j]);
                    let tenth = self.truth[t[K - 1]][j];
                    let tol = TIE_REL * tenth.abs();
                    got.iter().filter(|&&p| t.contains(&p) || self.truth[p][j] >= tenth - tol).count() as f64 / K as f64
                } else {
                    f64::from(u8::from(got.contains(&self.known[j - self.nt].1)))
                }
            })
            .collect();
        let a = res[..self.nt].iter().sum::<f64>() / self.nt as f64;
        let b = res[self.nt..].iter().sum::<f64>() / (nq - self.nt) as f64;
        (a, b)
    }
}

/// Coarse scores (both, first) of every page for every query: `[query][page]`.
fn coarse_scores(book: &Codebook, codes: &[Arc<PageCodes>], queries: &[Vec<f32>]) -> Vec<Vec<Scores>> {
    queries
        .par_iter()
        .map(|q| {
            let t = book.table(q);
            codes.iter().map(|c| t.score(c)).collect()
        })
        .collect()
}

#[test]
#[ignore = "experiment: needs a scale-data folder (LAB_DATA)"]
fn coarse_variants() {
    let dir = PathBuf::from(env("LAB_DATA", "/work/benchdata/d3k"));
    let n: usize = env("LAB_N", "10000").parse().unwrap();
    let base: usize = env("LAB_BASE", "600").parse().unwrap();
    let storage = env("LAB_STORAGE", "f16");
    let nt: usize = env("LAB_TEXT", "120").parse().unwrap();
    let cache = PathBuf::from(env("LAB_CACHE", "/work/benchdata/lab"));
    std::fs::create_dir_all(&cache).unwrap();
    let data = Data::open(&dir, base);
    let dim = data.dim;
    let text: Vec<Vec<f32>> = data.queries.iter().take(nt).cloned().collect();
    let known = data.known_items(n);
    let queries: Vec<Vec<f32>> = text.iter().cloned().chain(known.iter().map(|k| k.0.clone())).collect();
    let qrows: Vec<usize> = queries.iter().map(|q| q.len() / dim).collect();
    let qall: Vec<f32> = queries.concat();
    let t = std::time::Instant::now();
    // Stored rows of every page.
    let stored_rows: Vec<Vec<f32>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let p = data.page(i);
            if storage == "compact" {
                let pooled = crate::pool::pool(&p, dim, 2).rows;
                let mut q = vec![0i8; dim];
                let mut out = Vec::with_capacity(pooled.len());
                for row in pooled.chunks_exact(dim) {
                    let s = crate::kernel::layout::quantize_row(row, &mut q);
                    out.extend(q.iter().map(|&v| v as f32 * s));
                }
                out
            } else {
                p
            }
        })
        .collect();
    eprintln!("stored rows {:.1}s", t.elapsed().as_secs_f64());
    let truth = cached_scores(&cache.join(format!("truth-{base}-{n}-{nt}.bin")), n, queries.len(), |i| {
        maxsim_many(&qall, &qrows, &data.page(i), dim)
    });
    let stored = if storage == "compact" {
        cached_scores(&cache.join(format!("compact-{base}-{n}-{nt}.bin")), n, queries.len(), |i| {
            maxsim_many(&qall, &qrows, &stored_rows[i], dim)
        })
    } else {
        truth.clone()
    };
    let ev = Eval { n, nt, truth: &truth, stored: &stored, known: &known };
    let exact_all: Vec<usize> = (0..n).collect();
    println!("storage {storage}, base {base}, n {n}: stored exact {:?}", ev.recall(&|_| exact_all.clone()));

    // The codebook as the optimizer trains it.
    let t = std::time::Instant::now();
    let per_page = 65_536usize.div_ceil(n).max(1);
    let mut sample = Vec::new();
    for (i, rows) in stored_rows.iter().enumerate() {
        for r in crate::optimize::sampled_rows(i as u64, rows.len() / dim, per_page) {
            sample.extend_from_slice(&rows[r * dim..(r + 1) * dim]);
        }
    }
    let book = Codebook::train(&sample, dim);
    eprintln!("trained {:.1}s", t.elapsed().as_secs_f64());
    let variants: Vec<String> = env("LAB_VARIANTS", "base").split(',').map(String::from).collect();
    let rs: Vec<usize> = env("LAB_R", "50,200,500,1000,2000").split(',').map(|s| s.parse().unwrap()).collect();
    let t = std::time::Instant::now();
    let codes: Vec<Arc<PageCodes>> =
        stored_rows.par_iter().map_init(Vec::new, |scratch, rows| book.codes(rows, scratch)).collect();
    let coded_rows: usize = codes.iter().map(|c| c.len() / 3).sum();
    eprintln!("coded {:.1}s, {:.1} coded rows a page", t.elapsed().as_secs_f64(), coded_rows as f64 / n as f64);
    let full = coarse_scores(&book, &codes, &queries);
    let rank_full = |j: usize, idx: &[usize], r: usize| {
        let both = top(idx, r, |i| full[j][i].both);
        let first = top(idx, r, |i| full[j][i].first);
        select(&both, &first, r)
    };
    for v in &variants {
        match v.as_str() {
            "base" => {
                for &r in &rs {
                    let got = ev.recall(&|j| rank_full(j, &exact_all, r));
                    println!("base R={r}: {:.3} / {:.3}", got.0, got.1);
                }
            }
            s if s.starts_with("sketch") => {
                // sketchS[xM]: pages pooled to ~S rows, coded; the best M×R by the sketch's score go on.
                let spec = &s["sketch".len()..];
                let (rows_s, mult) = spec.split_once('x').unwrap_or((spec, "4"));
                let (rows_s, mult): (usize, usize) = (rows_s.parse().unwrap(), mult.parse().unwrap());
                let t = std::time::Instant::now();
                let sketch: Vec<Arc<PageCodes>> = stored_rows
                    .par_iter()
                    .map_init(Vec::new, |scratch, rows| {
                        let nr = rows.len() / dim;
                        let pooled = crate::pool::pool(rows, dim, (nr / rows_s).max(1)).rows;
                        book.codes(&pooled, scratch)
                    })
                    .collect();
                let srows: usize = sketch.iter().map(|c| c.len() / 3).sum();
                eprintln!(
                    "sketch {s}: {:.1}s, {:.1} coded rows a page",
                    t.elapsed().as_secs_f64(),
                    srows as f64 / n as f64
                );
                let sk = coarse_scores(&book, &sketch, &queries);
                for &r in &rs {
                    let m = (mult * r).min(n);
                    let got = ev.recall(&|j| {
                        let both = top(&exact_all, m, |i| sk[j][i].both);
                        let first = top(&exact_all, m / 4, |i| sk[j][i].first);
                        let mut surv = both;
                        surv.extend(first);
                        surv.sort_unstable();
                        surv.dedup();
                        rank_full(j, &surv, r)
                    });
                    // Survivors' share of the full scan's rows.
                    println!(
                        "{s} R={r} (M={m}): {:.3} / {:.3}; rows scanned {:.2} of the full pass",
                        got.0,
                        got.1,
                        (srows as f64 + coded_rows as f64 * (1.25 * m as f64 / n as f64).min(1.0)) / coded_rows as f64
                    );
                }
                // The sketch alone as the coarse stage.
                for &r in &rs {
                    let got = ev.recall(&|j| {
                        let both = top(&exact_all, r, |i| sk[j][i].both);
                        let first = top(&exact_all, r, |i| sk[j][i].first);
                        select(&both, &first, r)
                    });
                    println!("{s} alone R={r}: {:.3} / {:.3}", got.0, got.1);
                }
            }
            s if s.starts_with("win") => {
                let w: f32 = s[3..].parse().unwrap();
                let sc: Vec<Vec<Scores>> = queries
                    .par_iter()
                    .map(|q| {
                        let t = book.table_in_window(q, w);
                        codes.iter().map(|c| t.score(c)).collect()
                    })
                    .collect();
                for &r in &rs {
                    let got = ev.recall(&|j| {
                        let both = top(&exact_all, r, |i| sc[j][i].both);
                        let first = top(&exact_all, r, |i| sc[j][i].first);
                        select(&both, &first, r)
                    });
                    println!("{s} R={r}: {:.3} / {:.3}", got.0, got.1);
                }
            }
            "f32" => {
                // The coarse score with f32 tables: what the 8-bit tables lose.
                let sc: Vec<Vec<f32>> = queries
                    .par_iter()
                    .map(|q| {
                        let nq = q.len() / dim;
                        let (k1, k2) = (book.len(), book.residual_len());
                        let mut t1 = vec![0.0f32; nq * k1];
                        let mut t2 = vec![0.0f32; nq * k2];
                        matmul_nt(q, &book.centroids, dim, &mut t1);
                        matmul_nt(q, &book.residuals, dim, &mut t2);
                        codes
                            .iter()
                            .map(|c| {
                                let (c1, c2) = split(c);
                                let c1: Vec<usize> =
                                    c1.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).collect();
                                (0..nq)
                                    .map(|qi| {
                                        c1.iter()
                                            .zip(c2)
                                            .map(|(&a, &b)| t1[qi * k1 + a] + t2[qi * k2 + b as usize])
                                            .fold(f32::NEG_INFINITY, f32::max)
                                    })
                                    .sum()
                            })
                            .collect()
                    })
                    .collect();
                for &r in &rs {
                    let got = ev.recall(&|j| {
                        let both = top(&exact_all, r, |i| sc[j][i]);
                        let first = top(&exact_all, r, |i| full[j][i].first);
                        select(&both, &first, r)
                    });
                    let alone = ev.recall(&|j| top(&exact_all, r, |i| sc[j][i]));
                    println!("f32 R={r}: {:.3} / {:.3}; alone {:.3} / {:.3}", got.0, got.1, alone.0, alone.1);
                }
            }
            s if s.starts_with("mix") => {
                // every k-th candidate from `first` (0: `both` alone).
                let k: usize = s[3..].parse().unwrap();
                for &r in &rs {
                    let got = ev.recall(&|j| {
                        let both = top(&exact_all, r, |i| full[j][i].both);
                        if k == 0 {
                            return both;
                        }
                        let first = top(&exact_all, r, |i| full[j][i].first);
                        let mut taken = std::collections::HashSet::new();
                        let mut out = Vec::new();
                        let (mut b, mut f) = (both.iter(), first.iter());
                        while out.len() < r {
                            let nf = taken.len() % k == k - 1;
                            let next = if nf { f.next().or_else(|| b.next()) } else { b.next().or_else(|| f.next()) };
                            let Some(&c) = next else { break };
                            if taken.insert(c) {
                                out.push(c);
                            }
                        }
                        out
                    });
                    println!("{s} R={r}: {:.3} / {:.3}", got.0, got.1);
                }
            }
            s if s.starts_with("sub") => {
                // subS[xM]: a first pass over every S-th of a page's (sorted) codes; the best M×R by it (and
                // M×R/4 by its first-level score) get the full pass.
                let spec = &s[3..];
                let (step, mult) = spec.split_once('x').unwrap_or((spec, "4"));
                let (step, mult): (usize, usize) = (step.parse().unwrap(), mult.parse().unwrap());
                let sub: Vec<Arc<PageCodes>> = codes
                    .iter()
                    .map(|c| {
                        let (c1, c2) = split(c);
                        let idx: Vec<usize> = (0..c2.len()).step_by(step).collect();
                        let mut out: Vec<u8> = idx.iter().flat_map(|&i| [c1[2 * i], c1[2 * i + 1]]).collect();
                        out.extend(idx.iter().map(|&i| c2[i]));
                        out.into()
                    })
                    .collect();
                let sk = coarse_scores(&book, &sub, &queries);
                for &r in &rs {
                    let m = (mult * r).min(n);
                    let got = ev.recall(&|j| {
                        let mut surv = top(&exact_all, m, |i| sk[j][i].both);
                        surv.extend(top(&exact_all, m / 4, |i| sk[j][i].first));
                        surv.sort_unstable();
                        surv.dedup();
                        rank_full(j, &surv, r)
                    });
                    println!(
                        "{s} R={r} (M={m}): {:.3} / {:.3}; rows scanned {:.2} of the full pass",
                        got.0,
                        got.1,
                        1.0 / step as f64 + (1.25 * m as f64 / n as f64).min(1.0)
                    );
                }
            }
            other => println!("unknown variant {other}"),
        }
    }
}
