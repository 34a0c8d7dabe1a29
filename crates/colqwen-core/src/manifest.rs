//! `manifest.json`: what an index was built with. A run with other settings is refused.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IndexError as Error, Result};

/// The on-disk format this build reads and writes. 2 (2026-12): the embedded store's own page log
/// (`pages.log`); 1 was the qdrant-edge shard (`shard/`), which this build refuses with a clear message.
pub const FORMAT_VERSION: u32 = 2;

const MANIFEST_FILE: &str = "manifest.json";

/// The largest token-pooling factor an index accepts (colpali-engine's documented range is 2–3; beyond that
/// pages lose their single-row matches).
pub const MAX_POOL_FACTOR: u32 = 16;

/// Element type of the stored page vectors. Queries are always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    /// 4 bytes per value.
    #[default]
    F32,
    /// 2 bytes per value (IEEE half); scores differ from f32 by ~1e-3 relative.
    F16,
    /// 1 byte per value: each row scaled by its own `max |x| / 127` (one f32 per row) and rounded. Scores differ
    /// from f32 by ~1e-2 relative; with token pooling (factor 2) a page takes ≈ 48 KB instead of 196 KB (f16).
    I8,
}

impl std::fmt::Display for VectorStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorStorage::F32 => "f32",
            VectorStorage::F16 => "f16",
            VectorStorage::I8 => "i8",
        })
    }
}

/// What an index was built with. Stored as `<dir>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexManifest {
    /// Always [`FORMAT_VERSION`] for manifests made by this build.
    pub format_version: u32,
    /// Model identity, e.g. `"vidore/colqwen2.5-v0.2@<revision>"`.
    pub model_id: String,
    /// The model family ("ColQwen2.5", "ColQwen3"): manifests written before families existed were all
    /// ColQwen2.5.
    #[serde(default = "colqwen2_5")]
    pub family: String,
    /// Width of one vector (128 for ColQwen2.5).
    pub embedding_dim: usize,
    /// Everything that changes the vectors of a page: max_pixels, max_visual_tokens, dpi policy, ...
    pub preprocessing: serde_json::Value,
    /// Element type of the stored page vectors.
    pub storage: VectorStorage,
    /// Hierarchical token pooling at ingest: a page of `n` rows is stored as at most `n / pool_factor` cluster
    /// means (colpali-engine's `HierarchicalTokenPooler`). 1 (the default, absent from older manifests) stores
    /// every row.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub pool_factor: u32,
}

fn colqwen2_5() -> String {
    "ColQwen2.5".into()
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

impl IndexManifest {
    /// A manifest of the current [`FORMAT_VERSION`].
    pub fn new(
        model_id: impl Into<String>,
        embedding_dim: usize,
        preprocessing: serde_json::Value,
        storage: VectorStorage,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            model_id: model_id.into(),
            family: colqwen2_5(),
            embedding_dim,
            preprocessing,
            storage,
            pool_factor: 1,
        }
    }

    /// The same manifest for a model of `family`.
    pub fn with_family(mut self, family: impl Into<String>) -> Self {
        self.family = family.into();
        self
    }

    /// The same manifest with token pooling by `factor` (1 = none).
    pub fn with_pool_factor(mut self, factor: u32) -> Self {
        self.pool_factor = factor;
        self
    }

    /// Refuses a manifest this build cannot use (other format version, empty model id, zero width).
    pub fn validate(&self, dir: &Path) -> Result<()> {
        if self.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                dir: dir.to_path_buf(),
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if self.embedding_dim == 0 {
            return Err(Error::InvalidManifest { reason: "embedding_dim must be > 0" });
        }
        if self.model_id.trim().is_empty() {
            return Err(Error::InvalidManifest { reason: "model_id must not be empty" });
        }
        if !(1..=MAX_POOL_FACTOR).contains(&self.pool_factor) {
            return Err(Error::InvalidManifest { reason: "pool_factor must be 1 to 16" });
        }
        Ok(())
    }

    /// Refuses `requested` unless it describes the same vectors as `self` (the manifest on disk).
    pub fn check_same(&self, requested: &IndexManifest, dir: &Path) -> Result<()> {
        let mismatch = |field: &'static str, index: String, requested: String| Error::ManifestMismatch {
            dir: dir.to_path_buf(),
            field,
            index,
            requested,
        };
        if self.format_version != requested.format_version {
            return Err(mismatch(
                "format_version",
                self.format_version.to_string(),
                requested.format_version.to_string(),
            ));
        }
        if self.model_id != requested.model_id {
            return Err(mismatch("model_id", self.model_id.clone(), requested.model_id.clone()));
        }
        if self.family != requested.family {
            return Err(mismatch("family", self.family.clone(), requested.family.clone()));
        }
        if self.embedding_dim != requested.embedding_dim {
            return Err(mismatch("embedding_dim", self.embedding_dim.to_string(), requested.embedding_dim.to_string()));
        }
        // serde_json::Value equality ignores object key order.
        if self.preprocessing != requested.preprocessing {
            return Err(mismatch(
                "preprocessing",
                crate::id::canonical_json(&self.preprocessing),
                crate::id::canonical_json(&requested.preprocessing),
            ));
        }
        if self.storage != requested.storage {
            return Err(mismatch("storage", self.storage.to_string(), requested.storage.to_string()));
        }
        if self.pool_factor != requested.pool_factor {
            return Err(mismatch("pool_factor", self.pool_factor.to_string(), requested.pool_factor.to_string()));
        }
        Ok(())
    }

    /// `<dir>/manifest.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// The manifest of the index in `dir`; `Ok(None)` when there is no index there yet. Reads the file only
    /// (no lock), so a caller can learn an index's model before loading it.
    pub fn read(dir: &Path) -> Result<Option<IndexManifest>> {
        let path = Self::path(dir);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        let manifest: IndexManifest =
            serde_json::from_slice(&bytes).map_err(|source| Error::ManifestParse { path, source })?;
        Ok(Some(manifest))
    }

    /// Atomic write: temp file, fsync, rename, fsync of the directory.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(".manifest.json.tmp");
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serialises to JSON");
        {
            let mut f = fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
            f.write_all(&json).map_err(Error::io("writing", &tmp))?;
            f.write_all(b"\n").map_err(Error::io("writing", &tmp))?;
            f.sync_all().map_err(Error::io("syncing", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(Error::io("renaming into place", &path))?;
        sync_dir(dir)
    }
}

/// fsync of a directory (Unix), so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = fs::File::open(dir).map_err(Error::io("opening directory", dir))?;
        d.sync_all().map_err(Error::io("syncing directory", dir))?;
    }
    let _ = dir;
    Ok(())
}
