//! Hierarchical token pooling at ingest, in RAM: the store's pooling (`colqwen::store::pool`, colpali-engine's
//! `HierarchicalTokenPooler`) at factors 2 and 3, rows optionally rounded to int8, measured as recall of exact
//! MaxSim over the pooled pages against exact MaxSim over the unpooled ones. The store itself with pooling and
//! i8 rows is the `compact` candidate of `scale.rs`.

use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;

use crate::scale::{Row, Workload, maxsim_many, maxsim_one};

/// (pooling factor, int8 rows): the pooled rows as f16, or quantized to int8 with one f32 scale per row.
const VARIANTS: [(usize, bool); 4] = [(2, false), (3, false), (2, true), (3, true)];
/// Single queries timed for latency (the recall pass is batched).
const LATENCY_QUERIES: usize = 20;

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

pub(crate) fn rows(w: &Workload) -> Result<Vec<Row>> {
    let dim = w.ds.dim;
    let mut out = Vec::new();
    for (factor, int8) in VARIANTS {
        let t = Instant::now();
        let pooled: Vec<Vec<f32>> = (0..w.n)
            .into_par_iter()
            .map(|i| {
                let p = colqwen::store::pool::pool(&w.ds.page(i), dim, factor).rows;
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
