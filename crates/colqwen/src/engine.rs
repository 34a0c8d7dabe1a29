//! The loaded model and its identity in an index manifest.

use std::path::Path;

use colqwen_model::{ColQwen, HubOptions, LoadOptions, ModelFiles};
use colqwen_store::{IndexManifest, VectorStorage};

use crate::error::Result;
use crate::runtime::Runtime;

/// Which model to load and how.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Hugging Face model id or local folder (default `vidore/colqwen2.5-v0.2`).
    pub model: String,
    /// Base model override for an adapter whose `base_model_name_or_path` should not be used.
    pub base: Option<String>,
    /// Hub access.
    pub hub: HubOptions,
    /// Load-time choices (visual-token cap, query template).
    pub load: LoadOptions,
}

/// A loaded ColQwen2.5 with the runtime it lives on.
pub struct Engine {
    model: ColQwen,
    model_id: String,
    runtime: Runtime,
}

impl Engine {
    /// Resolves the model files (downloading into the HF cache when needed) and loads them.
    pub fn load(opts: &EngineOptions, runtime: &Runtime) -> Result<Self> {
        let files = ModelFiles::resolve(&opts.model, opts.base.as_deref(), &opts.hub)?;
        let model = ColQwen::load(&files, &runtime.device, runtime.dtype, &opts.load)?;
        Ok(Self { model, model_id: model_identity(&opts.model, &opts.hub), runtime: runtime.clone() })
    }

    /// The model.
    pub fn model(&self) -> &ColQwen {
        &self.model
    }

    /// The identity recorded in an index: a Hub id (with revision) or a local folder's absolute path.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Device and dtype.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Everything that changes a page's vectors, for the index manifest and the page identity.
    pub fn preprocessing(&self) -> serde_json::Value {
        let p = self.model.preprocessor();
        serde_json::json!({
            "min_pixels": p.min_pixels,
            "max_pixels": p.max_pixels,
            "prompt": "colpali-engine 0.3.18 ColQwen2_5_Processor",
            "renderer": "hayro",
        })
    }

    /// The manifest a new index made by this engine gets.
    pub fn index_manifest(&self, storage: VectorStorage) -> IndexManifest {
        IndexManifest::new(self.model_id.clone(), colqwen_model::EMBEDDING_DIM, self.preprocessing(), storage)
    }
}

fn model_identity(model: &str, hub: &HubOptions) -> String {
    let p = Path::new(model);
    if p.is_dir() {
        return p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    }
    match &hub.revision {
        Some(rev) => format!("{model}@{rev}"),
        None => model.to_string(),
    }
}
