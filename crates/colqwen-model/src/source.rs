//! Where a checkpoint comes from: a local folder, or a Hugging Face model id fetched with `hf-hub` into the
//! standard HF cache. An adapter folder (vidore/colqwen2.5-v0.2, fact sheet §1.1) names its base in
//! `adapter_config.json`; the processor files (tokenizer, preprocessor) come from the adapter repo when it
//! has them, as `ColQwen2_5_Processor.from_pretrained(adapter)` does.

use std::path::{Path, PathBuf};

use crate::config::AdapterConfig;
use crate::error::{Error, Result};

/// The model users load by default.
pub const DEFAULT_MODEL_ID: &str = "vidore/colqwen2.5-v0.2";

/// How to reach the Hub.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// HF cache folder; `None` = hf-hub's default (`~/.cache/huggingface/hub`, or `$HF_HOME/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network: only files already in the cache are used.
    pub offline: bool,
    /// Draw hf-hub's download progress bars.
    pub progress: bool,
    /// Access token for gated/private repos.
    pub token: Option<String>,
    /// Git revision (branch, tag or commit) of the named model; the base follows its own default.
    pub revision: Option<String>,
}

/// Resolved local paths of everything a ColQwen2.5 checkpoint needs.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user named (model id or folder), for messages and the index manifest.
    pub id: String,
    /// `config.json` of the base.
    pub config: PathBuf,
    /// Safetensors shards of the base (one or more).
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `preprocessor_config.json`, or a `processor_config.json` with an `image_processor` section.
    pub preprocessor: PathBuf,
    /// `adapter_config.json` + `adapter_model.safetensors`, when the model is a LoRA adapter.
    pub adapter: Option<(PathBuf, PathBuf)>,
}

/// Files of one repository or folder.
trait Repo {
    fn name(&self) -> String;
    /// `Ok(None)` when the file does not exist in this repo.
    fn get(&self, file: &str) -> Result<Option<PathBuf>>;
}

struct LocalRepo(PathBuf);

impl Repo for LocalRepo {
    fn name(&self) -> String {
        self.0.display().to_string()
    }
    fn get(&self, file: &str) -> Result<Option<PathBuf>> {
        let p = self.0.join(file);
        Ok(p.is_file().then_some(p))
    }
}

struct HubRepo {
    id: String,
    api: Option<hf_hub::api::sync::ApiRepo>,
    cache: hf_hub::CacheRepo,
    cache_dir: PathBuf,
}

impl HubRepo {
    fn new(id: &str, revision: Option<&str>, opts: &HubOptions) -> Result<Self> {
        let cache = match &opts.cache_dir {
            Some(dir) => hf_hub::Cache::new(dir.clone()),
            None => hf_hub::Cache::from_env(),
        };
        let repo = match revision {
            Some(rev) => hf_hub::Repo::with_revision(id.into(), hf_hub::RepoType::Model, rev.into()),
            None => hf_hub::Repo::model(id.into()),
        };
        let api = if opts.offline {
            None
        } else {
            let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
                .with_progress(opts.progress)
                .with_token(opts.token.clone().or_else(|| cache.token()))
                .build()
                .map_err(|e| Error::Hub { repo: id.into(), file: String::new(), reason: e.to_string() })?;
            Some(api.repo(repo.clone()))
        };
        Ok(Self { id: id.into(), api, cache: cache.repo(repo), cache_dir: cache.path().clone() })
    }
}

impl Repo for HubRepo {
    fn name(&self) -> String {
        self.id.clone()
    }
    fn get(&self, file: &str) -> Result<Option<PathBuf>> {
        if let Some(p) = self.cache.get(file) {
            return Ok(Some(p));
        }
        let Some(api) = &self.api else {
            return Err(Error::NotCached { repo: self.id.clone(), file: file.into(), cache: self.cache_dir.clone() });
        };
        match api.get(file) {
            Ok(p) => Ok(Some(p)),
            // A 404 means the repo simply lacks that optional file.
            Err(hf_hub::api::sync::ApiError::RequestError(e)) if e.to_string().contains("404") => Ok(None),
            Err(e) => Err(Error::Hub { repo: self.id.clone(), file: file.into(), reason: e.to_string() }),
        }
    }
}

fn open_repo(
    name: &str,
    relative_to: Option<&Path>,
    revision: Option<&str>,
    opts: &HubOptions,
) -> Result<Box<dyn Repo>> {
    let as_path = Path::new(name);
    let candidates = [relative_to.map(|dir| dir.join(name)), Some(as_path.to_path_buf())];
    for c in candidates.into_iter().flatten() {
        if c.is_dir() {
            return Ok(Box::new(LocalRepo(c)));
        }
    }
    if as_path.is_absolute() || name.starts_with('.') || name.split('/').count() > 2 {
        return Err(Error::io(as_path, std::io::Error::new(std::io::ErrorKind::NotFound, "model folder not found")));
    }
    Ok(Box::new(HubRepo::new(name, revision, opts)?))
}

fn required(repo: &dyn Repo, file: &str) -> Result<PathBuf> {
    repo.get(file)?.ok_or_else(|| Error::MissingFile { dir: repo.name().into(), file: file.into() })
}

fn weights(repo: &dyn Repo) -> Result<Vec<PathBuf>> {
    if let Some(index) = repo.get("model.safetensors.index.json")? {
        let bytes = std::fs::read(&index).map_err(|e| Error::io(&index, e))?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let idx: Index = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: index.clone(),
            what: "safetensors index",
            source,
        })?;
        let mut shards: Vec<&String> = idx.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        return shards.into_iter().map(|s| required(repo, s)).collect();
    }
    Ok(vec![required(repo, "model.safetensors")?])
}

impl ModelFiles {
    /// Resolves a model id or folder. A folder with `adapter_config.json` is an adapter: its
    /// `base_model_name_or_path` is resolved next to it (sibling folder), as a path, or on the Hub, unless
    /// `base_override` names the base explicitly.
    pub fn resolve(model: &str, base_override: Option<&str>, opts: &HubOptions) -> Result<Self> {
        let top = open_repo(model, None, opts.revision.as_deref(), opts)?;
        let adapter_cfg = top.get("adapter_config.json")?;
        let (base, adapter) = match adapter_cfg {
            None => (top, None),
            Some(cfg_path) => {
                let cfg = AdapterConfig::from_file(&cfg_path)?;
                let weights = required(top.as_ref(), "adapter_model.safetensors")?;
                let base_name = base_override.map(str::to_string).or(cfg.base_model_name_or_path).ok_or_else(|| {
                    Error::Adapter {
                        path: cfg_path.clone(),
                        reason: "base_model_name_or_path is missing; pass the base model explicitly".into(),
                    }
                })?;
                let parent = cfg_path.parent().and_then(Path::parent);
                let base = open_repo(&base_name, parent, None, opts)?;
                (base, Some((top, cfg_path, weights)))
            }
        };
        // Processor files: the adapter repo's own when present (fact sheet §1.1), else the base's; of several
        // names, the first the repo has (transformers 5 saves the image processor's settings inside
        // `processor_config.json` when a processor is saved whole, as `ColQwen3Processor.save_pretrained` does).
        let processor_file = |files: &[&str]| -> Result<PathBuf> {
            let repos = adapter.iter().map(|(repo, _, _)| repo.as_ref()).chain([base.as_ref()]);
            for repo in repos {
                for file in files {
                    if let Some(p) = repo.get(file)? {
                        return Ok(p);
                    }
                }
            }
            required(base.as_ref(), files[0])
        };
        Ok(Self {
            id: model.to_string(),
            config: required(base.as_ref(), "config.json")?,
            weights: weights(base.as_ref())?,
            tokenizer: processor_file(&["tokenizer.json"])?,
            preprocessor: processor_file(&["preprocessor_config.json", "processor_config.json"])?,
            adapter: adapter.map(|(_, c, w)| (c, w)),
        })
    }
}
