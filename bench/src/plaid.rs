//! next-plaid (lightonai, Apache-2.0): PLAID centroids + 2/4-bit residuals, memory-mapped. Built with
//! `MmapIndex::create_with_kmeans` from all pages at once (f32 in RAM: 10k pages ≈ 3.9 GB, so 100k pages are
//! not built this way: the row says so), searched with its default `SearchParameters` (top_k 10,
//! n_ivf_probe 8, n_full_scores 4096, centroid threshold 0.4) and with a cheaper setting.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};
use ndarray::Array2;
use next_plaid::{IndexConfig, MmapIndex, SearchParameters};
use rayon::prelude::*;

use crate::scale::{Row, Workload, disk_bytes};

/// Largest collection built in RAM here.
const MAX_PAGES: usize = 20_000;

pub(crate) fn rows(w: &Workload, work: &Path) -> Result<Vec<Row>> {
    if w.n > MAX_PAGES {
        return Ok(vec![Row {
            candidate: "next-plaid".into(),
            note: format!(
                "not built: create_with_kmeans needs every page as f32 in RAM ({} GB)",
                w.n * 768 * 128 * 4 >> 30
            ),
            ..Default::default()
        }]);
    }
    let dim = w.ds.dim;
    let embs: Vec<Array2<f32>> = (0..w.n)
        .into_par_iter()
        .map(|i| {
            let p = w.ds.page(i);
            Array2::from_shape_vec((p.len() / dim, dim), p).expect("rows × dim")
        })
        .collect();
    let mut out = Vec::new();
    for nbits in [2usize, 4] {
        let dir = work.join(format!("plaid-{}-{nbits}", w.n));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let path = dir.to_str().ok_or_else(|| anyhow!("work dir must be UTF-8"))?;
        let t = Instant::now();
        let cfg = IndexConfig { nbits, ..Default::default() };
        MmapIndex::create_with_kmeans(&embs, path, &cfg).map_err(|e| anyhow!("next-plaid build: {e}"))?;
        let build_s = t.elapsed().as_secs_f64();
        let disk = disk_bytes(&dir) as f64 / w.n as f64;
        let index = MmapIndex::load(path).map_err(|e| anyhow!("next-plaid load: {e}"))?;
        let settings = [
            ("default", SearchParameters { top_k: 10, ..Default::default() }),
            (
                "n_full_scores 256, probe 4",
                SearchParameters { top_k: 10, n_full_scores: 256, n_ivf_probe: 4, ..Default::default() },
            ),
        ];
        for (name, params) in settings {
            let mut r = Row {
                candidate: format!("next-plaid nbits {nbits} ({name})"),
                build_s: Some(build_s),
                write_pages_per_s: Some(w.n as f64 / build_s),
                disk_bytes_per_page: Some(disk),
                ..Default::default()
            };
            let search = |q: &[f32]| -> Result<Vec<usize>> {
                let qa = Array2::from_shape_vec((q.len() / dim, dim), q.to_vec())?;
                let res = index.search(&qa, &params, None).map_err(|e| anyhow!("next-plaid search: {e}"))?;
                Ok(res.passage_ids.iter().map(|&p| p as usize).collect())
            };
            w.measure(&mut r, usize::MAX, &search)?;
            r.note = format!("build = k-means + encode of all pages (2 threads);{}", r.note);
            out.push(r);
        }
        drop(index);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(out)
}
