//! The loaded model as the service's [`PageEmbedder`]: a ColQwen model on candle (its family chosen by the model
//! crate from the checkpoint's own config), with its identity in an index.

use std::path::Path;

use colqwen_core::{BoxError, MultiVector, PageEmbedder, PageInput, VisualGrid};
use colqwen_model::{ColQwen, HubOptions, LoadOptions, ModelFiles, PixelValues};

use crate::error::Result;
use crate::runtime::Runtime;

/// Which model to load and how.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Hugging Face model id or local folder; `None`: the index's model, else `vidore/colqwen2.5-v0.2`.
    pub model: Option<String>,
    /// Base model override for an adapter whose `base_model_name_or_path` should not be used.
    pub base: Option<String>,
    /// Hub access.
    pub hub: HubOptions,
    /// Load-time choices (visual-token cap, query template).
    pub load: LoadOptions,
}

/// A loaded ColQwen model with the runtime it lives on.
pub struct Engine {
    model: ColQwen,
    model_id: String,
    runtime: Runtime,
}

impl Engine {
    /// Resolves the model files (downloading into the HF cache when needed) and loads them.
    pub fn load(model: &str, opts: &EngineOptions, runtime: &Runtime) -> Result<Self> {
        let files = ModelFiles::resolve(model, opts.base.as_deref(), &opts.hub)?;
        let loaded = ColQwen::load(&files, &runtime.device, runtime.dtype, &opts.load)?;
        Ok(Self { model: loaded, model_id: model_identity(model, &opts.hub), runtime: runtime.clone() })
    }

    /// The model.
    pub fn model(&self) -> &ColQwen {
        &self.model
    }

    /// Device and dtype.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

impl PageEmbedder for Engine {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn family(&self) -> &str {
        self.model.family().name()
    }

    fn embedding_dim(&self) -> usize {
        self.model.embedding_dim()
    }

    /// Everything that changes a page's vectors besides the weights: the resolution limits, the prompt
    /// format and the renderer (another rasteriser gives other pixels).
    fn preprocessing(&self) -> serde_json::Value {
        let p = self.model.preprocessor();
        serde_json::json!({
            "min_pixels": p.min_pixels,
            "max_pixels": p.max_pixels,
            "prompt": format!("colpali-engine 0.3.18 {}", self.model.family().processor_class()),
            "renderer": "hayro",
        })
    }

    fn max_pixels(&self) -> u64 {
        self.model.preprocessor().max_pixels as u64
    }

    fn prepare(&self, image: &image::RgbImage) -> Result<PageInput, BoxError> {
        let pixels = self.model.preprocessor().preprocess(image)?;
        // One visual token per 2×2 block of patches (spatial merge).
        let tokens = pixels.grid.tokens(2);
        Ok(PageInput::new(pixels, tokens))
    }

    fn default_batch_size(&self) -> usize {
        colqwen_model::default_batch_size(&self.runtime.device)
    }

    fn embed_pages(&self, pages: Vec<PageInput>) -> Result<Vec<MultiVector>, BoxError> {
        Ok(self.model.embed_pixel_values(&downcast_pages(pages)?)?)
    }

    fn embed_pages_paced(
        &self,
        pages: Vec<PageInput>,
        between: &mut dyn FnMut(),
    ) -> Result<Vec<MultiVector>, BoxError> {
        let pixels = downcast_pages(pages)?;
        let mut pace = colqwen_model::Pace::new(&self.runtime.device, between);
        Ok(self.model.embed_pixel_values_paced(&pixels, &mut pace)?)
    }

    fn embed_queries(&self, queries: &[&str]) -> Result<Vec<MultiVector>, BoxError> {
        Ok(self.model.embed_queries(queries)?)
    }

    fn device_name(&self) -> String {
        self.runtime.device_name()
    }

    /// The page's model input is its `smart_resize` size (multiples of 28 px, or 32 px for ColQwen3); each such
    /// cell is one merged visual token. The document sequence is prompt prefix, the `cols × rows` visual tokens in raster
    /// order, prompt suffix, so the prefix length is where the first image token sits in the prompt ids.
    fn visual_grid(&self, width: u32, height: u32) -> Result<VisualGrid, BoxError> {
        let p = self.model.preprocessor();
        let (w, h) = p.target_size(width as usize, height as usize)?;
        let (cols, rows) = (w / p.factor(), h / p.factor());
        let prompts = self.model.prompts();
        let image_token = self.model.image_token_id();
        let ids = prompts.document_ids(cols * rows);
        let first_row = ids.iter().position(|&id| id == image_token).ok_or("the document prompt has no image token")?;
        Ok(VisualGrid { first_row, cols, rows, total_rows: ids.len() })
    }

    /// Each id of the query prompt decoded on its own (so `Ġword` reads `" word"`).
    fn query_tokens(&self, query: &str) -> Result<Vec<String>, BoxError> {
        let prompts = self.model.prompts();
        let ids = prompts.query_ids(query)?;
        ids.iter().map(|&id| prompts.tokenizer().decode(&[id], false).map_err(|e| e.to_string().into())).collect()
    }
}

/// The model inputs of prepared pages (each prepared by this model's `prepare`).
fn downcast_pages(pages: Vec<PageInput>) -> Result<Vec<std::sync::Arc<PixelValues>>, BoxError> {
    pages
        .into_iter()
        .map(|p| p.downcast::<PixelValues>().ok_or_else(|| "page input was prepared by another model".into()))
        .collect()
}

pub(crate) fn model_identity(model: &str, hub: &HubOptions) -> String {
    let p = Path::new(model);
    if p.is_dir() {
        return p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    }
    match &hub.revision {
        Some(rev) => format!("{model}@{rev}"),
        None => model.to_string(),
    }
}
