//! Seeded synthetic page embeddings: clustered unit vectors like real pages, and queries planted on a page, so
//! that index tests and benchmarks know which page must come first.

use colqwen_core::{IndexManifest, PageRecord, VectorStorage};

/// Width of ColQwen2.5 vectors.
pub const DIM: usize = 128;

/// splitmix64: tiny, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// `rows` unit vectors around a random page centroid (noise of norm ~`noise`).
pub fn clustered_page(rng: &mut Rng, rows: usize, noise: f32) -> Vec<f32> {
    let mut centroid: Vec<f32> = (0..DIM).map(|_| rng.normal()).collect();
    normalize(&mut centroid);
    let sigma = noise / (DIM as f32).sqrt();
    let mut out = Vec::with_capacity(rows * DIM);
    for _ in 0..rows {
        let mut row: Vec<f32> = centroid.iter().map(|c| c + sigma * rng.normal()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

/// `rows` noisy copies of random rows of `page` (a query whose best page is `page`).
pub fn planted_query(rng: &mut Rng, page: &[f32], rows: usize, noise: f32) -> Vec<f32> {
    let page_rows = page.len() / DIM;
    let sigma = noise / (DIM as f32).sqrt();
    let mut out = Vec::with_capacity(rows * DIM);
    for _ in 0..rows {
        let r = (rng.next_u64() % page_rows as u64) as usize;
        let mut row: Vec<f32> = page[r * DIM..(r + 1) * DIM].iter().map(|x| x + sigma * rng.normal()).collect();
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

/// The manifest of the synthetic test model; `model` names it (another name is another model).
pub fn manifest(model: &str) -> IndexManifest {
    IndexManifest::new(
        model,
        DIM,
        serde_json::json!({"max_pixels": 1003520, "max_visual_tokens": 768, "dpi": "fit"}),
        VectorStorage::F32,
    )
}

/// Every page of a `page_count`-page file `doc` (version `sha`), `rows` vectors each.
pub fn document(rng: &mut Rng, doc: &str, sha: &str, page_count: usize, rows: usize) -> Vec<PageRecord> {
    (0..page_count)
        .map(|page_index| PageRecord {
            doc_id: doc.to_owned(),
            source_path: format!("pdfs/{doc}.pdf"),
            file_sha256: sha.to_owned(),
            page_index,
            page_count,
            page_width_pt: 595.0,
            page_height_pt: 842.0,
            preview: Some(format!("previews/{doc}/{:04}.jpg", page_index + 1)),
            vectors: clustered_page(rng, rows, 1.0),
        })
        .collect()
}
