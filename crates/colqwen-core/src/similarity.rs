//! Similarity maps: where on a page each query token finds its match (colpali-engine 0.3.18
//! `interpretability`: `get_similarity_maps_from_embeddings`, `normalize_similarity_map`).
//!
//! A page's stored multi-vector is the model's whole document sequence: a few prompt tokens, then one visual
//! token per cell of the merged-patch grid in raster order (row by row, left to right; one cell = 28×28 px of
//! the model input), then more prompt tokens. [`VisualGrid`] says where the visual rows are and how they lie
//! on the page; the model that made the vectors knows it ([`crate::PageEmbedder::visual_grid`]).
//!
//! For a query row `a` and a cell `(x, y)` the raw map is the dot product `⟨Q[a], page[first_row + y·cols + x]⟩`.
//! Plain maths on `f32` slices, no image types: drawing a map is the library's business.

use serde::Serialize;

use crate::multivector::MultiVector;

/// Where a page's visual tokens are in its multi-vector and the grid they form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VisualGrid {
    /// Index of the first visual row (the prompt tokens before it are not part of the image).
    pub first_row: usize,
    /// Cells across (merged patches per row: model input width / 28 for ColQwen2.5).
    pub cols: usize,
    /// Cells down.
    pub rows: usize,
    /// Rows the whole multi-vector must have for this grid (prompt tokens included).
    pub total_rows: usize,
}

impl VisualGrid {
    /// Visual tokens: `cols × rows`.
    pub fn cells(&self) -> usize {
        self.cols * self.rows
    }
}

/// Why maps could not be computed: the vectors do not fit the grid the page should have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The page's stored rows differ from what its grid needs (another preprocessing, another model).
    #[error(
        "the page has {stored} stored vectors but its {cols}×{rows} visual grid needs {expected}; \
         the page was embedded with other settings — re-ingest the document"
    )]
    RowCount {
        /// Rows stored for the page.
        stored: usize,
        /// Rows the grid needs.
        expected: usize,
        /// Grid cells across.
        cols: usize,
        /// Grid cells down.
        rows: usize,
    },
    /// Query and page vectors have different widths.
    #[error("query vectors are {query} wide but page vectors are {page} wide")]
    Width {
        /// Query vector width.
        query: usize,
        /// Page vector width.
        page: usize,
    },
    /// An empty grid or an empty query.
    #[error("nothing to map: the grid or the query is empty")]
    Empty,
}

/// Raw maps of every query row over a page's grid: `maps[a][y·cols + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityMaps {
    /// Cells across.
    pub cols: usize,
    /// Cells down.
    pub rows: usize,
    /// One map per query row (every row: text tokens and the augmentation tokens), row-major `rows × cols`.
    pub maps: Vec<Vec<f32>>,
}

/// The raw (un-normalised) map of every query row over the page's visual grid.
pub fn similarity_maps(query: &MultiVector, page: &MultiVector, grid: &VisualGrid) -> Result<SimilarityMaps, MapError> {
    if query.dim != page.dim {
        return Err(MapError::Width { query: query.dim, page: page.dim });
    }
    if grid.cells() == 0 || query.rows == 0 {
        return Err(MapError::Empty);
    }
    if page.rows != grid.total_rows || grid.first_row + grid.cells() > page.rows {
        return Err(MapError::RowCount {
            stored: page.rows,
            expected: grid.total_rows,
            cols: grid.cols,
            rows: grid.rows,
        });
    }
    let visual = &page.data[grid.first_row * page.dim..(grid.first_row + grid.cells()) * page.dim];
    let maps = query
        .rows()
        .map(|q| visual.chunks_exact(page.dim).map(|v| q.iter().zip(v).map(|(a, b)| a * b).sum()).collect())
        .collect();
    Ok(SimilarityMaps { cols: grid.cols, rows: grid.rows, maps })
}

impl SimilarityMaps {
    /// The aggregate map: per cell, the largest value over the query rows (cleaner than the mean, which
    /// the many augmentation rows wash out).
    pub fn aggregate_max(&self) -> Vec<f32> {
        let cells = self.cols * self.rows;
        let mut out = vec![f32::NEG_INFINITY; cells];
        for m in &self.maps {
            for (o, &v) in out.iter_mut().zip(m) {
                *o = o.max(v);
            }
        }
        out
    }
}

/// Min–max normalisation to `[0, 1]` as colpali-engine's `normalize_similarity_map`:
/// `(m − min) / (max − min + 1e-10)`; a constant map becomes all zeros.
pub fn normalize(map: &[f32]) -> Vec<f32> {
    let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return vec![0.0; map.len()];
    }
    let span = hi - lo + 1e-10;
    map.iter().map(|&v| (v - lo) / span).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(rows: &[[f32; 2]]) -> MultiVector {
        MultiVector::new(rows.iter().flatten().copied().collect(), 2).unwrap()
    }

    #[test]
    fn maps_lie_in_raster_order_after_the_prompt_rows() {
        // 1 prompt row, a 3×2 grid, 1 suffix row.
        let page =
            mv(&[[9.0, 9.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [7.0, 7.0]]);
        let query = mv(&[[1.0, 0.0], [0.0, 1.0]]);
        let grid = VisualGrid { first_row: 1, cols: 3, rows: 2, total_rows: 8 };
        let m = similarity_maps(&query, &page, &grid).unwrap();
        assert_eq!(m.maps[0], vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0]);
        assert_eq!(m.maps[1], vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(m.aggregate_max(), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let n = normalize(&m.maps[0]);
        assert!((n[2] - 1.0).abs() < 1e-6 && n[3] == 0.0 && (n[0] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_row_count_that_does_not_fit_the_grid_is_an_error() {
        let page = mv(&[[1.0, 0.0]; 7]);
        let query = mv(&[[1.0, 0.0]]);
        let grid = VisualGrid { first_row: 1, cols: 3, rows: 2, total_rows: 8 };
        assert!(matches!(similarity_maps(&query, &page, &grid), Err(MapError::RowCount { stored: 7, .. })));
        let wide = MultiVector::new(vec![0.0; 3], 3).unwrap();
        assert!(matches!(similarity_maps(&wide, &page, &grid), Err(MapError::Width { .. })));
    }

    #[test]
    fn constant_maps_normalise_to_zero() {
        assert_eq!(normalize(&[2.0, 2.0]), vec![0.0, 0.0]);
        assert!(normalize(&[]).is_empty());
    }
}
