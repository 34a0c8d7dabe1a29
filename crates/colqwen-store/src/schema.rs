//! How pages map onto the qdrant-edge shard: vector names, config, payload fields.

use qdrant_edge::{
    Distance, EdgeConfig, EdgeVectorParams, HnswIndexConfig, MultiVectorComparator, MultiVectorConfig,
    VectorStorageDatatype,
};
use serde_json::{Map, Value, json};

use colqwen_core::{IndexManifest, PageRecord, VectorStorage};

/// Named multivector: all rows of a page, MaxSim over Dot, no HNSW graph (m = 0).
pub(crate) const COLQWEN: &str = "colqwen";
/// Named dense vector: L2-normalised mean of the page's rows; HNSW after `optimize`.
pub(crate) const POOLED: &str = "pooled";

pub(crate) mod field {
    pub(crate) const DOC_ID: &str = "doc_id";
    pub(crate) const SOURCE_PATH: &str = "source_path";
    pub(crate) const FILE_SHA256: &str = "file_sha256";
    pub(crate) const PAGE_INDEX: &str = "page_index";
    pub(crate) const PAGE_COUNT: &str = "page_count";
    pub(crate) const PAGE_WIDTH_PT: &str = "page_width_pt";
    pub(crate) const PAGE_HEIGHT_PT: &str = "page_height_pt";
    pub(crate) const MODEL_ID: &str = "model_id";
    pub(crate) const PREPROCESSING: &str = "preprocessing";
    pub(crate) const PREVIEW: &str = "preview";
    pub(crate) const N_VECTORS: &str = "n_vectors";
}

/// Fields with a keyword payload index.
pub(crate) const KEYWORD_INDEXED: [&str; 3] = [field::DOC_ID, field::FILE_SHA256, field::SOURCE_PATH];

/// Fields returned with hits and listings (not `preprocessing`, which is the same for all points).
pub(crate) const HIT_FIELDS: [&str; 8] = [
    field::DOC_ID,
    field::SOURCE_PATH,
    field::FILE_SHA256,
    field::PAGE_INDEX,
    field::PAGE_COUNT,
    field::PAGE_WIDTH_PT,
    field::PAGE_HEIGHT_PT,
    field::PREVIEW,
];

/// Page vectors are memory-mapped without preloading (`on_disk`): opening is instant, two-stage
/// search reads only the prefetched pages, and the OS page cache keeps hot pages.
pub(crate) const MULTIVECTOR_ON_DISK: bool = true;

pub(crate) fn edge_config(manifest: &IndexManifest) -> EdgeConfig {
    let datatype = match manifest.storage {
        VectorStorage::F32 => VectorStorageDatatype::Float32,
        VectorStorage::F16 => VectorStorageDatatype::Float16,
    };
    EdgeConfig::builder()
        .vector(
            COLQWEN,
            EdgeVectorParams::builder(manifest.embedding_dim, Distance::Dot)
                .multivector_config(MultiVectorConfig { comparator: MultiVectorComparator::MaxSim })
                .hnsw_config(HnswIndexConfig { m: 0, ..Default::default() })
                .datatype(datatype)
                .on_disk(MULTIVECTOR_ON_DISK)
                .build(),
        )
        .vector(POOLED, EdgeVectorParams::builder(manifest.embedding_dim, Distance::Dot).build())
        .build()
}

pub(crate) use colqwen_core::pooled;

pub(crate) fn payload(page: &PageRecord, manifest: &IndexManifest) -> Value {
    let mut m = Map::new();
    m.insert(field::DOC_ID.into(), json!(page.doc_id));
    m.insert(field::SOURCE_PATH.into(), json!(page.source_path));
    m.insert(field::FILE_SHA256.into(), json!(page.file_sha256));
    m.insert(field::PAGE_INDEX.into(), json!(page.page_index));
    m.insert(field::PAGE_COUNT.into(), json!(page.page_count));
    m.insert(field::PAGE_WIDTH_PT.into(), json!(page.page_width_pt));
    m.insert(field::PAGE_HEIGHT_PT.into(), json!(page.page_height_pt));
    m.insert(field::MODEL_ID.into(), json!(manifest.model_id));
    m.insert(field::PREPROCESSING.into(), manifest.preprocessing.clone());
    m.insert(field::PREVIEW.into(), json!(page.preview));
    m.insert(field::N_VECTORS.into(), json!(page.vectors.len() / manifest.embedding_dim.max(1)));
    Value::Object(m)
}
