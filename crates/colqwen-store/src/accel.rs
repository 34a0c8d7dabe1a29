//! A hook for scoring every page somewhere else than on the CPU (a GPU), with the store still owning the pages,
//! the document filter, the ranking and the hits.
//!
//! The store knows no device library: an [`ExactScorer`] (the `colqwen` library implements one with candle, so
//! it runs on CUDA or Metal) sees the pages as they lie in the log — a page is `padded_rows × dim` elements of the
//! store's type in the block layout of [`crate::kernel`]: blocks of 16 rows stored dimension-major (element
//! `(row r, dim k)` of block `b` at `b·16·dim + k·16 + r`), a trailing partial block padded with copies of the
//! page's last row, so a padded row never changes a maximum. A scorer keeps its own copy and brings it up to date
//! from [`PagesView::lineage`]: within one lineage, a snapshot is the previous one with pages appended; across
//! lineages, pages keep their point ids ([`PagesView::id`]).

use colqwen_core::VectorStorage;

use crate::kernel::BLOCK;
use crate::store::Snapshot;

/// Scores every page of the index for one query, or declines (the CPU scan runs instead).
pub trait ExactScorer: Send + Sync {
    /// MaxSim of `query` (`nq × dim` row-major f32) against every page of `pages`, in the view's order; `None`
    /// to decline (index too large for the device, device error). Must not panic.
    fn score_all(&self, pages: &PagesView<'_>, query: &[f32]) -> Option<Vec<f32>>;

    /// Brings the scorer's copy up to date ahead of the first search (at start-up, after a large write).
    fn prepare(&self, pages: &PagesView<'_>);

    /// For logs: what and where (e.g. "cuda:0").
    fn name(&self) -> String;
}

/// The pages of one snapshot, read-only.
pub struct PagesView<'a> {
    pub(crate) snap: &'a Snapshot,
    pub(crate) dim: usize,
    pub(crate) storage: VectorStorage,
}

impl PagesView<'_> {
    /// Pages in the view.
    pub fn len(&self) -> usize {
        self.snap.pages.len()
    }

    /// True when the index holds no page.
    pub fn is_empty(&self) -> bool {
        self.snap.pages.is_empty()
    }

    /// Identifies the history of snapshots this one belongs to: while it stays the same, every later view is
    /// this one with pages appended at the end; any other change (a page replaced or deleted, a compaction, a
    /// reopened index) starts a new lineage.
    pub fn lineage(&self) -> u64 {
        self.snap.lineage
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Element type of [`PagesView::stored`].
    pub fn storage(&self) -> VectorStorage {
        self.storage
    }

    /// Rows in the block layout of page `i`: its vector count rounded up to a multiple of [`PagesView::BLOCK`].
    pub fn padded_rows(&self, i: usize) -> usize {
        crate::kernel::layout::padded_rows(self.snap.pages[i].meta.rows)
    }

    /// The bytes of page `i`'s vectors in the block layout (little-endian f32 or f16; for i8, each block is its
    /// `16 × dim` values followed by the 16 rows' f32 scales, a row's value being scale × integer).
    pub fn stored(&self, i: usize) -> &[u8] {
        let Some(map) = self.snap.map.as_deref() else { return &[] };
        let (at, len) = self.snap.pages[i].data;
        &map[at as usize..(at + len) as usize]
    }

    /// The point id of page `i` (a page's vectors depend only on its id: file content, page, model, preprocessing).
    pub fn id(&self, i: usize) -> u64 {
        self.snap.pages[i].meta.id
    }

    /// Bytes per element of [`PagesView::stored`].
    pub fn storage_bytes(&self) -> usize {
        crate::store::elem_bytes(self.storage) as usize
    }

    /// Rows per block of the layout.
    pub const BLOCK: usize = BLOCK;
}
