//! The search-at-scale dataset (issue 10): model embeddings of rendered real pages, written once to a folder
//! outside the repository, and the deterministic vector-level augmentation that stretches it to any size.
//!
//! `colqwen-bench scale-data MODEL OUT_DIR IMAGES QUERIES PDF...` renders every page of the PDFs as ingest
//! does (at the model's pixel cap for 768 visual tokens), then makes `IMAGES` distinct page images: the first
//! are the pages as rendered, the rest crops (zoom 1.0–1.6 at a random offset), shifts (a white margin of up
//! to 8 % on random sides) and rescales of them back to the page's render size, all seeded by the image
//! number. Each image is embedded with the model at `max_visual_tokens = 768`; `QUERIES` (one text query a
//! line) are embedded too.
//!
//! Files in `OUT_DIR` (all little-endian):
//! - `pages.f16`: every page's rows, row-major, `dim` IEEE half values a row, pages one after another;
//! - `pages.rows`: one u32 a page, its row count (offsets are the running sum);
//! - `queries.f32`, `queries.rows`: the same for the text queries, f32;
//! - `meta.json`: dim, counts, model, token budget, the source of every image (pdf, page, augmentation).
//!
//! Pages beyond the embedded ones are made by [`Dataset::page`]: page `i ≥ E` is embedded page `i mod E` with
//! Gaussian noise on every component (σ = 0.3 × the dataset's spread, the row then renormalised), 0–10 % of its
//! rows dropped and the rest shuffled, seeded by `i` — so 100k pages need no 40 GB on disk.
//!
//! That is the `copies` augmentation (the default). `scale --augment stitch` makes page `i ≥ E` instead from
//! three different embedded pages, seeded by `i`: the rows of the first from its start to a cut at 20–45 % of its
//! rows, the second's rows between the same fractions (its cut 55–80 %), the third's from there to its end — in
//! the model's row order, which is the patch grid's raster order between the prompt's prefix and suffix tokens,
//! so roughly the top of one page, the middle of another and the bottom of a third, no noise. Copies are a worst
//! case for ranking: a page's 10–33 copies differ only by noise, so which of them is "rank 10" is decided by
//! noise, and known-item truth is one copy among near-identical ones. Stitched pages have distinct content (any
//! two share at most a third of a page), which is closer to a real collection of 100k pages; neither is a
//! model's embedding of a real page (attention makes every row depend on the whole image), which is why both
//! are reported.
//!
//! The spread is the RMS deviation of a component from the mean row over all embedded rows. Until 2026-12-03
//! the noise was σ = 0.3/√dim, the spread of isotropic unit rows; but the tiny model's rows are nearly
//! collinear (mean cosine of two random rows 0.955, the mean row's norm 0.974), so that noise (norm 0.3) was as
//! large as the distance between two unrelated rows (0.30) and every augmented page was, in effect, random
//! vectors around the mean — the content of the real page it came from was gone, and ranks among them were
//! decided by the noise. Noise relative to the spread keeps an augmented page a perturbed copy of its page.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use colqwen::model::{ColQwen, HubOptions, LoadOptions, ModelFiles};
use colqwen::{DTypeChoice, DeviceChoice, Runtime};
use half::f16;
use image::RgbImage;
use rayon::prelude::*;

use crate::recall::Rng;

/// Visual tokens a page gets from the real model at its default cap (ColQwen2.5: 768).
pub(crate) const VISUAL_TOKENS: usize = 768;
/// Vector-level augmentation noise per component, relative to the dataset's spread ([`Dataset::spread`]).
const AUG_NOISE: f32 = 0.3;
/// Images embedded per model call.
const EMBED_BATCH: usize = 32;

/// Makes the dataset folder (see the module documentation).
pub(crate) fn generate(model: &str, out: &Path, images: usize, queries: &Path, pdfs: &[String]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let rt = Runtime::resolve(DeviceChoice::Auto, DTypeChoice::Auto)?;
    let files = ModelFiles::resolve(model, None, &HubOptions { offline: true, ..Default::default() })?;
    let load = LoadOptions { max_visual_tokens: Some(VISUAL_TOKENS), ..Default::default() };
    let m = ColQwen::load(&files, &rt.device, rt.dtype, &load)?;
    let max_pixels = m.preprocessor().max_pixels as u64;
    let limits = colqwen::pdf::RenderLimits::default();
    let t = Instant::now();
    let mut pages: Vec<(String, usize, RgbImage)> = Vec::new();
    for p in pdfs {
        let doc = Arc::new(colqwen::pdf::Document::open(Path::new(p), None)?);
        let name = Path::new(p).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let imgs = (0..doc.page_count())
            .into_par_iter()
            .map(|i| -> Result<_> {
                let (w, h) = colqwen::pdf::render_size(doc.page_size_pt(i)?, max_pixels, &limits);
                Ok((name.clone(), i, colqwen::pdf::render_contained(&doc, i, w, h, &limits)?))
            })
            .collect::<Result<Vec<_>>>()?;
        pages.extend(imgs);
    }
    if pages.is_empty() {
        bail!("no pages rendered: pass PDF files after the query file");
    }
    eprintln!("rendered {} real pages in {:.1}s", pages.len(), t.elapsed().as_secs_f64());

    let mut vec_out = BufWriter::new(std::fs::File::create(out.join("pages.f16"))?);
    let mut rows_out = BufWriter::new(std::fs::File::create(out.join("pages.rows"))?);
    let mut sources = Vec::with_capacity(images);
    let (mut dim, mut total_rows) = (0usize, 0usize);
    let t = Instant::now();
    for start in (0..images).step_by(EMBED_BATCH) {
        let batch: Vec<usize> = (start..images.min(start + EMBED_BATCH)).collect();
        let made = batch
            .par_iter()
            .map(|&j| -> Result<_> {
                let (pdf, page, img) = &pages[j % pages.len()];
                let (aug, desc) = augment(img, j, pages.len());
                let pv = m.preprocessor().preprocess(aug.as_ref().unwrap_or(img))?;
                Ok((pv, serde_json::json!({"pdf": pdf, "page": page, "augmentation": desc})))
            })
            .collect::<Result<Vec<_>>>()?;
        let (pvs, descs): (Vec<_>, Vec<_>) = made.into_iter().unzip();
        for e in m.embed_pixel_values(&pvs)? {
            dim = e.dim;
            total_rows += e.rows;
            rows_out.write_all(&(e.rows as u32).to_le_bytes())?;
            for x in &e.data {
                vec_out.write_all(&f16::from_f32(*x).to_le_bytes())?;
            }
        }
        sources.extend(descs);
        let done = start + batch.len();
        if done % 256 < EMBED_BATCH || done == images {
            let s = t.elapsed().as_secs_f64();
            eprintln!("{done}/{images} images embedded, {:.2} images/s, {:.0} rows/page", done as f64 / s, {
                total_rows as f64 / done as f64
            });
        }
    }
    vec_out.flush()?;
    rows_out.flush()?;
    let embed_secs = t.elapsed().as_secs_f64();

    let qs: Vec<String> = std::fs::read_to_string(queries)
        .with_context(|| format!("reading queries {}", queries.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let refs: Vec<&str> = qs.iter().map(String::as_str).collect();
    let mut q_out = BufWriter::new(std::fs::File::create(out.join("queries.f32"))?);
    let mut qr_out = BufWriter::new(std::fs::File::create(out.join("queries.rows"))?);
    for e in m.embed_queries(&refs)? {
        qr_out.write_all(&(e.rows as u32).to_le_bytes())?;
        for x in &e.data {
            q_out.write_all(&x.to_le_bytes())?;
        }
    }
    q_out.flush()?;
    qr_out.flush()?;
    let meta = serde_json::json!({
        "format": "colqwen-bench scale dataset v1",
        "dim": dim,
        "pages": images,
        "rows": total_rows,
        "queries": qs.len(),
        "model": model,
        "max_visual_tokens": VISUAL_TOKENS,
        "real_pages": pages.len(),
        "embed_seconds": embed_secs,
        "images_per_second": images as f64 / embed_secs,
        "sources": sources,
    });
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    println!(
        "{{\"what\": \"scale-data\", \"images\": {images}, \"rows\": {total_rows}, \"dim\": {dim}, \"queries\": {}, \"embed_seconds\": {embed_secs:.1}, \"images_per_second\": {:.2}}}",
        qs.len(),
        images as f64 / embed_secs
    );
    Ok(())
}

/// Image `j`: the rendered page itself for the first `real` images, else a seeded crop/shift/rescale of it
/// (`None` = use the page as rendered) and a description of what was done.
fn augment(img: &RgbImage, j: usize, real: usize) -> (Option<RgbImage>, serde_json::Value) {
    if j < real {
        return (None, serde_json::json!("none"));
    }
    let mut rng = Rng(0xA076_1D64_78BD_642F ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (w, h) = img.dimensions();
    let zoom = 1.0 + 0.6 * rng.unit();
    let (cw, ch) = (((w as f64) / zoom) as u32, ((h as f64) / zoom) as u32);
    let (x0, y0) = ((rng.unit() * f64::from(w - cw)) as u32, (rng.unit() * f64::from(h - ch)) as u32);
    let crop = image::imageops::crop_imm(img, x0, y0, cw.max(1), ch.max(1)).to_image();
    // A white margin of up to 8 % of the crop on each side: shifts the content inside the frame.
    let margin = |rng: &mut Rng, len: u32| (rng.unit() * 0.08 * f64::from(len)) as u32;
    let (ml, mr, mt, mb) = (margin(&mut rng, cw), margin(&mut rng, cw), margin(&mut rng, ch), margin(&mut rng, ch));
    let mut canvas = RgbImage::from_pixel(cw + ml + mr, ch + mt + mb, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, &crop, i64::from(ml), i64::from(mt));
    // Back to the page's render size (a zoom): the model sees ≈ 768 tokens like a real page.
    let out = image::imageops::resize(&canvas, w, h, image::imageops::FilterType::Triangle);
    (Some(out), serde_json::json!({"zoom": zoom, "crop": [x0, y0, cw, ch], "margins_lrtb": [ml, mr, mt, mb]}))
}

/// How pages beyond the embedded ones are made (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Augment {
    /// A noisy, row-shuffled copy of embedded page `i mod E`.
    Copies,
    /// Thirds of three different embedded pages, joined.
    Stitch,
}

impl std::str::FromStr for Augment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Augment> {
        match s {
            "copies" => Ok(Augment::Copies),
            "stitch" => Ok(Augment::Stitch),
            other => bail!("--augment {other}: copies or stitch"),
        }
    }
}

/// The dataset folder, memory-mapped.
pub(crate) struct Dataset {
    /// Width of a row.
    pub dim: usize,
    vecs: memmap2::Mmap,
    /// Row offset of embedded page `i` (`offsets[i]..offsets[i + 1]`).
    offsets: Vec<usize>,
    /// Text queries, f32 rows each.
    pub queries: Vec<Vec<f32>>,
    /// RMS deviation of one component from the mean row, over the embedded rows (module documentation).
    pub spread: f32,
    /// How pages beyond the embedded ones are made.
    pub augment: Augment,
}

impl Dataset {
    /// Opens a folder written by [`generate`].
    pub(crate) fn open(dir: &Path) -> Result<Dataset> {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("meta.json"))
                .with_context(|| format!("{}: not a dataset folder (run scale-data first)", dir.display()))?,
        )?;
        let dim = meta["dim"].as_u64().context("meta.json: dim")? as usize;
        let counts = read_u32s(&dir.join("pages.rows"))?;
        let mut offsets = vec![0usize];
        for c in &counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + *c as usize);
        }
        let file = std::fs::File::open(dir.join("pages.f16"))?;
        // SAFETY: the dataset is written once and only read afterwards; nothing truncates it while mapped.
        let vecs = unsafe { memmap2::Mmap::map(&file)? };
        if vecs.len() != offsets.last().copied().unwrap_or(0) * dim * 2 {
            bail!("{}: pages.f16 does not match pages.rows × dim {dim}", dir.display());
        }
        let qrows = read_u32s(&dir.join("queries.rows"))?;
        let qdata = std::fs::read(dir.join("queries.f32"))?;
        let qf: Vec<f32> = qdata.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut queries = Vec::new();
        let mut at = 0;
        for r in qrows {
            let n = r as usize * dim;
            queries.push(qf[at..at + n].to_vec());
            at += n;
        }
        let mut ds = Dataset { dim, vecs, offsets, queries, spread: 0.0, augment: Augment::Copies };
        ds.spread = ds.measure_spread();
        Ok(ds)
    }

    /// The per-component noise of an augmented page (and of a known-item query's rows): [`AUG_NOISE`] × the
    /// spread.
    pub(crate) fn noise_sigma(&self) -> f32 {
        AUG_NOISE * self.spread
    }

    fn measure_spread(&self) -> f32 {
        let dim = self.dim;
        let mut sum = vec![0f64; dim];
        let mut sq = 0f64;
        let mut n = 0usize;
        for i in 0..self.embedded() {
            for row in self.embedded_page(i).chunks_exact(dim) {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += x as f64;
                    sq += (x as f64) * (x as f64);
                }
                n += 1;
            }
        }
        let n = n.max(1) as f64;
        let mean_sq: f64 = sum.iter().map(|s| (s / n) * (s / n)).sum();
        ((sq / n - mean_sq).max(0.0) / dim as f64).sqrt() as f32
    }

    /// Pages embedded by the model.
    pub(crate) fn embedded(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Rows of embedded page `i` as f32.
    fn embedded_page(&self, i: usize) -> Vec<f32> {
        let bytes = &self.vecs[self.offsets[i] * self.dim * 2..self.offsets[i + 1] * self.dim * 2];
        bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
    }

    /// Page `i` of the stretched collection (module documentation), rounded through f16 like stored pages.
    pub(crate) fn page(&self, i: usize) -> Vec<f32> {
        let e = self.embedded();
        let base = self.embedded_page(i % e);
        if i < e {
            return base;
        }
        if self.augment == Augment::Stitch && e >= 3 {
            return self.stitched(i);
        }
        let dim = self.dim;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1);
        let rows = base.len() / dim;
        let mut order: Vec<usize> = (0..rows).collect();
        for k in (1..rows).rev() {
            order.swap(k, (rng.next() % (k as u64 + 1)) as usize);
        }
        let keep = rows - (rng.unit() * 0.1 * rows as f64) as usize;
        let sigma = self.noise_sigma();
        let mut v = Vec::with_capacity(keep * dim);
        for &r in &order[..keep.max(1)] {
            let row: Vec<f32> = base[r * dim..(r + 1) * dim].iter().map(|x| x + sigma * rng.normal()).collect();
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.extend(row.iter().map(|x| f16::from_f32(x / n).to_f32()));
        }
        v
    }

    /// Page `i ≥ E` of a stitched collection: thirds of three different embedded pages (module documentation).
    fn stitched(&self, i: usize) -> Vec<f32> {
        let e = self.embedded() as u64;
        let mut rng = Rng(0xA076_1D64_78BD_642F ^ (i as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB) | 1);
        let a = (rng.next() % e) as usize;
        let mut b = a;
        while b == a {
            b = (rng.next() % e) as usize;
        }
        let mut c = a;
        while c == a || c == b {
            c = (rng.next() % e) as usize;
        }
        let cut1 = 0.20 + 0.25 * rng.unit();
        let cut2 = 0.55 + 0.25 * rng.unit();
        let mut v = Vec::new();
        for (p, from, to) in [(a, 0.0, cut1), (b, cut1, cut2), (c, cut2, 1.0)] {
            let rows = self.offsets[p + 1] - self.offsets[p];
            let (lo, hi) = ((from * rows as f64).round() as usize, (to * rows as f64).round() as usize);
            let page = self.embedded_page(p);
            v.extend_from_slice(&page[lo * self.dim..hi * self.dim]);
        }
        v
    }
}

fn read_u32s(p: &PathBuf) -> Result<Vec<u32>> {
    let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(b.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
