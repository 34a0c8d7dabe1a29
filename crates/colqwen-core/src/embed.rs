//! The model seam: what the service needs of a page-embedding model, whatever its family (ColQwen2.5 now;
//! ColQwen3 changes preprocessing, prompts and the head, not this interface).

use std::any::Any;
use std::sync::Arc;

use crate::error::BoxError;
use crate::manifest::{IndexManifest, VectorStorage};
use crate::multivector::MultiVector;
use crate::similarity::VisualGrid;

/// A page image turned into the model's input (for ColQwen2.5: `pixel_values` and the patch grid). Opaque to
/// everything but the embedder that made it, so the render threads can prepare it while the device is busy.
///
/// Cloning shares the input (an `Arc`): the embedding pool keeps a batch's inputs to retry it on another device.
#[derive(Clone)]
pub struct PageInput {
    inner: Arc<dyn Any + Send + Sync>,
    /// Visual tokens the page will have (for batching and progress).
    pub visual_tokens: usize,
}

impl PageInput {
    /// Wraps an embedder's own input type.
    pub fn new<T: Any + Send + Sync>(input: T, visual_tokens: usize) -> Self {
        Self { inner: Arc::new(input), visual_tokens }
    }

    /// The embedder's own input type, shared; `None` if it was made by another embedder.
    pub fn downcast<T: Any + Send + Sync>(self) -> Option<Arc<T>> {
        self.inner.downcast::<T>().ok()
    }
}

impl std::fmt::Debug for PageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageInput({} visual tokens)", self.visual_tokens)
    }
}

/// A page-embedding model. `Send + Sync`: render threads call [`PageEmbedder::prepare`] while one device
/// worker calls the `embed_*` methods.
pub trait PageEmbedder: Send + Sync {
    /// The identity recorded in an index: a Hub id (with revision) or a local folder's absolute path.
    fn model_id(&self) -> &str;
    /// The model family ("ColQwen2.5", "ColQwen3"), recorded in an index's manifest.
    fn family(&self) -> &str;
    /// Width of one vector.
    fn embedding_dim(&self) -> usize;
    /// Everything besides the weights that changes a page's vectors (resolution limits, prompt, renderer).
    fn preprocessing(&self) -> serde_json::Value;
    /// Pixels the model wants of a page at most (the renderer renders to about this size).
    fn max_pixels(&self) -> u64;
    /// Page image → model input (CPU work, any thread).
    fn prepare(&self, image: &image::RgbImage) -> Result<PageInput, BoxError>;
    /// Pages per forward pass that suit the device.
    fn default_batch_size(&self) -> usize;
    /// Embeds prepared pages, one multi-vector each, in order; each result is independent of the batch.
    fn embed_pages(&self, pages: Vec<PageInput>) -> Result<Vec<MultiVector>, BoxError>;
    /// [`Self::embed_pages`], calling `between` at the points of the forward pass where other work for the same
    /// device may be slipped in without waiting for the whole batch (between layers; see `colqwen_model::Pace`):
    /// the embedding worker embeds waiting queries there. Embedders without such points ignore it.
    fn embed_pages_paced(
        &self,
        pages: Vec<PageInput>,
        between: &mut dyn FnMut(),
    ) -> Result<Vec<MultiVector>, BoxError> {
        let _ = between;
        self.embed_pages(pages)
    }
    /// Embeds text queries.
    fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>, BoxError>;
    /// Where it runs, for messages and metrics ("cpu", "cuda:0").
    fn device_name(&self) -> String;

    /// Where the visual tokens of a page rendered at `width × height` px lie in its multi-vector, and the
    /// grid they form (for similarity maps). Models without a patch grid keep the default: no maps.
    fn visual_grid(&self, width: u32, height: u32) -> Result<VisualGrid, BoxError> {
        let _ = (width, height);
        Err("this model does not lay its page vectors on a grid; no similarity maps".into())
    }

    /// The tokens of a query, one per row of its multi-vector (augmentation tokens included), as text.
    fn query_tokens(&self, query: &str) -> Result<Vec<String>, BoxError> {
        let _ = query;
        Err("this model cannot list a query's tokens".into())
    }

    /// The manifest of a new index made with this embedder.
    fn manifest(&self, storage: VectorStorage) -> IndexManifest {
        IndexManifest::new(self.model_id(), self.embedding_dim(), self.preprocessing(), storage)
            .with_family(self.family())
    }
}
