//! Hierarchical token pooling at ingest (colpali-engine's `HierarchicalTokenPooler`, after Answer.AI's
//! ColBERT pooling), measured as recall of exact MaxSim over the pooled pages against exact MaxSim over the
//! unpooled ones.
//!
//! The reference clusters a page's rows with scipy `linkage(1 − E·Eᵀ, method="ward", metric="euclidean")`:
//! the *rows of the distance matrix* are the points, then `fcluster(maxclust = rows / factor)` and each
//! cluster becomes the mean of its rows (not renormalised). The Euclidean distance between rows i and j of
//! `1 − E·Eᵀ` is `‖E(e_i − e_j)‖`, so the squared distances are `b_ii + b_jj − 2 b_ij` with
//! `B = E·(EᵀE)·Eᵀ` — computed here without forming the n-dimensional points. Ward linkage is run by the
//! nearest-neighbour chain algorithm (Lance–Williams update on squared distances; Ward is reducible, so the
//! chain gives the same dendrogram), and `maxclust` is "apply the n − t lowest merges".

use std::time::Instant;

use anyhow::Result;
use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::scale::{Row, Workload, maxsim_many, maxsim_one};

/// (pooling factor, int8 rows): the pooled rows as f16, or quantized to int8 with one f32 scale per row.
const VARIANTS: [(usize, bool); 4] = [(2, false), (3, false), (2, true), (3, true)];
/// Single queries timed for latency (the recall pass is batched).
const LATENCY_QUERIES: usize = 20;

/// Pools one page's rows (`rows × dim`) to `rows / factor` cluster means.
pub(crate) fn pool_page(page: &[f32], dim: usize, factor: usize) -> Vec<f32> {
    let n = page.len() / dim;
    let t = (n / factor).max(1);
    if n <= t {
        return page.to_vec();
    }
    let e = ArrayView2::from_shape((n, dim), page).expect("rows × dim");
    // Gram matrix of the rows: ‖e_i − e_j‖² = G_ii + G_jj − 2·G_ij.
    let b = e.dot(&e.t());
    let mut d2 = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            d2[i * n + j] = (b[[i, i]] + b[[j, j]] - 2.0 * b[[i, j]]).max(0.0);
        }
    }
    let merges = ward_nn_chain(&mut d2, n);
    let mut order: Vec<usize> = (0..merges.len()).collect();
    order.sort_by(|&x, &y| merges[x].2.total_cmp(&merges[y].2));
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &m in order.iter().take(n - t) {
        let (a, b) = (find(&mut parent, merges[m].0), find(&mut parent, merges[m].1));
        parent[b] = a;
    }
    let mut slot = vec![usize::MAX; n];
    let mut sums: Vec<f32> = Vec::new();
    let mut counts: Vec<f32> = Vec::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        if slot[r] == usize::MAX {
            slot[r] = counts.len();
            counts.push(0.0);
            sums.extend(std::iter::repeat_n(0.0, dim));
        }
        let s = slot[r];
        counts[s] += 1.0;
        sums[s * dim..(s + 1) * dim].iter_mut().zip(&page[i * dim..(i + 1) * dim]).for_each(|(a, v)| *a += v);
    }
    for (s, c) in counts.iter().enumerate() {
        sums[s * dim..(s + 1) * dim].iter_mut().for_each(|a| *a /= c);
    }
    sums
}

/// Rows quantized to int8 with one scale per row (`max |x| / 127`) and back: what a store of int8 rows would
/// score with.
fn int8_round_trip(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.chunks_exact(dim) {
        let scale = row.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        if scale == 0.0 {
            out.extend_from_slice(row);
            continue;
        }
        out.extend(row.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) * scale));
    }
    out
}

/// Ward linkage on an `n × n` matrix of squared distances (overwritten); returns the `n − 1` merges as
/// (representative a, representative b, squared merge distance).
fn ward_nn_chain(d2: &mut [f32], n: usize) -> Vec<(usize, usize, f32)> {
    let mut active = vec![true; n];
    let mut size = vec![1.0f32; n];
    let mut merges = Vec::with_capacity(n - 1);
    let mut chain: Vec<usize> = Vec::new();
    while merges.len() < n - 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|&a| a).expect("an active cluster"));
        }
        let (a, b) = loop {
            let a = *chain.last().expect("chain not empty");
            let prev = if chain.len() >= 2 { Some(chain[chain.len() - 2]) } else { None };
            let mut best = (usize::MAX, f32::INFINITY);
            if let Some(p) = prev {
                best = (p, d2[a * n + p]);
            }
            for x in 0..n {
                if x != a && active[x] && d2[a * n + x] < best.1 {
                    best = (x, d2[a * n + x]);
                }
            }
            if Some(best.0) == prev {
                break (a, best.0);
            }
            chain.push(best.0);
        };
        chain.pop();
        chain.pop();
        let dab = d2[a * n + b];
        let (na, nb) = (size[a], size[b]);
        for k in 0..n {
            if !active[k] || k == a || k == b {
                continue;
            }
            let nk = size[k];
            let v = ((na + nk) * d2[a * n + k] + (nb + nk) * d2[b * n + k] - nk * dab) / (na + nb + nk);
            d2[a * n + k] = v;
            d2[k * n + a] = v;
        }
        active[b] = false;
        size[a] = na + nb;
        merges.push((a, b, dab));
    }
    merges
}

pub(crate) fn rows(w: &Workload) -> Result<Vec<Row>> {
    let dim = w.ds.dim;
    let mut out = Vec::new();
    for (factor, int8) in VARIANTS {
        let t = Instant::now();
        let pooled: Vec<Vec<f32>> = (0..w.n)
            .into_par_iter()
            .map(|i| {
                let p = pool_page(&w.ds.page(i), dim, factor);
                if int8 { int8_round_trip(&p, dim) } else { p }
            })
            .collect();
        let build_s = t.elapsed().as_secs_f64();
        let rows: usize = pooled.iter().map(|p| p.len() / dim).sum();
        // Recall: all queries against all pooled pages in one batched pass.
        let mut qs: Vec<Vec<f32>> = w.text.to_vec();
        qs.extend(w.known.iter().map(|k| k.0.clone()));
        let qrows: Vec<usize> = qs.iter().map(|q| q.len() / dim).collect();
        let qall = ndarray::Array2::from_shape_vec((qrows.iter().sum(), dim), qs.concat())?;
        let scores: Vec<Vec<f32>> = pooled.par_iter().map(|p| maxsim_many(qall.view(), &qrows, p, dim)).collect();
        let top = |j: usize| -> Vec<usize> {
            let mut v: Vec<(usize, f32)> = scores.iter().map(|s| s[j]).enumerate().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.into_iter().take(10).map(|x| x.0).collect()
        };
        let hits_a: usize = (0..w.text.len()).map(|j| w.truth.hits(j, &top(j))).sum();
        let hits_b = (0..w.known.len()).filter(|&j| top(w.text.len() + j).contains(&w.known[j].1)).count();
        let mut lat = Vec::new();
        for q in w.text.iter().take(LATENCY_QUERIES) {
            let t = Instant::now();
            let mut s: Vec<(usize, f32)> =
                pooled.par_iter().enumerate().map(|(i, p)| (i, maxsim_one(q, p, dim))).collect();
            s.sort_by(|a, b| b.1.total_cmp(&a.1));
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        out.push(Row {
            candidate: format!(
                "token pooling factor {factor}{} (exact over pooled)",
                if int8 { " + int8 rows" } else { "" }
            ),
            build_s: Some(build_s),
            write_pages_per_s: Some(w.n as f64 / build_s),
            disk_bytes_per_page: Some((rows * if int8 { dim + 4 } else { dim * 2 }) as f64 / w.n as f64),
            warm: Some(crate::scale::pct(lat)),
            recall_a: Some(hits_a as f64 / (10 * w.text.len()) as f64),
            recall_b: Some(hits_b as f64 / w.known.len() as f64),
            rss_mib: crate::scale::rss_mib(),
            note: format!(
                "{:.0} rows/page after pooling; disk = pooled rows (f16, or int8 + an f32 scale per row); latency = 2-thread exact scan in RAM over {LATENCY_QUERIES} queries; build = pooling time (2 threads);",
                rows as f64 / w.n as f64
            ),
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recall::Rng;

    /// Ward by the textbook loop: merge the globally closest pair each time (O(n³)).
    fn ward_naive(d2: &mut [f32], n: usize) -> Vec<f32> {
        let mut active = vec![true; n];
        let mut size = vec![1.0f32; n];
        let mut heights = Vec::new();
        for _ in 0..n - 1 {
            let mut best = (0, 0, f32::INFINITY);
            for i in 0..n {
                for j in i + 1..n {
                    if active[i] && active[j] && d2[i * n + j] < best.2 {
                        best = (i, j, d2[i * n + j]);
                    }
                }
            }
            let (a, b, dab) = best;
            for k in 0..n {
                if active[k] && k != a && k != b {
                    let nk = size[k];
                    let v = ((size[a] + nk) * d2[a * n + k] + (size[b] + nk) * d2[b * n + k] - nk * dab)
                        / (size[a] + size[b] + nk);
                    d2[a * n + k] = v;
                    d2[k * n + a] = v;
                }
            }
            active[b] = false;
            size[a] += size[b];
            heights.push(dab);
        }
        heights
    }

    #[test]
    fn nn_chain_gives_the_same_merge_heights_as_the_naive_ward_loop() {
        let (n, dim) = (60, 8);
        let mut rng = Rng(7);
        let pts: Vec<f32> = (0..n * dim).map(|_| rng.normal()).collect();
        let mut d2 = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                d2[i * n + j] = (0..dim).map(|k| (pts[i * dim + k] - pts[j * dim + k]).powi(2)).sum();
            }
        }
        let mut chain: Vec<f32> = ward_nn_chain(&mut d2.clone(), n).iter().map(|m| m.2).collect();
        chain.sort_by(f32::total_cmp);
        let naive = ward_naive(&mut d2, n);
        for (a, b) in chain.iter().zip(&naive) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{chain:?} vs {naive:?}");
        }
    }

    #[test]
    fn pooling_keeps_rows_over_factor_and_duplicate_rows_collapse() {
        let dim = 4;
        // Three distinct unit rows, each repeated 4 times: factor 4 must give exactly those 3 rows back.
        let base = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8]];
        let page: Vec<f32> = (0..12).flat_map(|i| base[i % 3]).collect();
        let pooled = pool_page(&page, dim, 4);
        assert_eq!(pooled.len(), 3 * dim);
        for b in base {
            assert!(
                pooled.chunks_exact(dim).any(|r| r.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5)),
                "{pooled:?}"
            );
        }
    }
}
