//! Similarity maps against colpali-engine 0.3.18's own (`interpretability.get_similarity_maps_from_embeddings`
//! and `normalize_similarity_map`), written by `fixtures/gen/make_fixtures.py` for the tiny fixture model into
//! `golden/similarity.safetensors`: the grid (`get_n_patches`), the raw maps from the reference's embeddings
//! (maths parity), the raw maps from our own embeddings (model + maths, the embeddings' tolerance) and the
//! per-token min–max normalisation.

use colqwen::core::{MultiVector, PageEmbedder, normalize, similarity_maps};
use colqwen::{DTypeChoice, DeviceChoice, Engine, EngineOptions, Runtime};
use colqwen_testkit::{F32_PARITY, Golden, assert_rows_close, golden_dir, manifest, tiny_adapter};

/// `(image, query)` pairs of the goldens (`SIMILARITY_PAIRS` of the generator).
const PAIRS: [(usize, usize); 4] = [(0, 0), (4, 1), (6, 0), (6, 2)];

/// Ours are `maps[a][y·cols + x]`; the reference's are `[a][x][y]`.
fn to_reference_layout(maps: &[Vec<f32>], cols: usize, rows: usize) -> Vec<f32> {
    maps.iter().flat_map(|m| (0..cols).flat_map(move |x| (0..rows).map(move |y| m[y * cols + x]))).collect()
}

fn tiny_engine() -> Engine {
    let runtime = Runtime::resolve(DeviceChoice::Cpu, DTypeChoice::F32).unwrap();
    Engine::load(&tiny_adapter().display().to_string(), &EngineOptions::default(), &runtime).unwrap()
}

#[test]
fn maps_match_colpali_engine() {
    let engine = tiny_engine();
    let sims = Golden::load("similarity");
    let reference = Golden::load("adapter");
    let m = manifest();
    for (i, j) in PAIRS {
        let what = format!("image {i:02} query {j:02}");
        let k = format!("image.{i:02}.query.{j:02}");
        let (n_patches, _) = sims.i64(&format!("{k}.n_patches"));
        let (raw, shape) = sims.f32(&format!("{k}.maps"));
        let (normalized, _) = sims.f32(&format!("{k}.normalized"));
        let img = &m.images[i];

        // The grid from the original image size, as the ingest would compute it for a page rendered that size.
        let grid = engine.visual_grid(img.width as u32, img.height as u32).unwrap();
        assert_eq!([grid.cols as i64, grid.rows as i64], [n_patches[0], n_patches[1]], "{what}: grid");
        assert_eq!(shape, vec![shape[0], grid.cols, grid.rows], "{what}: map shape");
        let cells = grid.cells();

        // Maths: the reference's own embeddings through our maps.
        let (pe, _) = reference.f32(&format!("image.{i:02}.embedding"));
        let (qe, _) = reference.f32(&format!("query.{j:02}.embedding"));
        let page = MultiVector::new(pe, 128).unwrap();
        let query = MultiVector::new(qe, 128).unwrap();
        let ours = similarity_maps(&query, &page, &grid).unwrap();
        assert_eq!(ours.maps.len(), shape[0], "{what}: one map per query token");
        let d = assert_rows_close(
            &format!("{what} raw maps (reference embeddings)"),
            &to_reference_layout(&ours.maps, grid.cols, grid.rows),
            &raw,
            cells,
            F32_PARITY,
        );
        eprintln!("{what}: raw maps from reference embeddings {d:?}");
        let ours_norm: Vec<Vec<f32>> = ours.maps.iter().map(|m| normalize(m)).collect();
        let d = assert_rows_close(
            &format!("{what} normalised maps"),
            &to_reference_layout(&ours_norm, grid.cols, grid.rows),
            &normalized,
            cells,
            F32_PARITY,
        );
        eprintln!("{what}: normalised maps {d:?}");

        // Model and maths: our embeddings of the same image and query.
        let image = image::open(golden_dir().join(&img.file)).unwrap().to_rgb8();
        let input = engine.prepare(&image).unwrap();
        let page = engine.embed_pages(vec![input]).unwrap().remove(0);
        let query = engine.embed_queries(&[m.queries[j].as_str()]).unwrap().remove(0);
        assert_eq!(engine.query_tokens(&m.queries[j]).unwrap().len(), query.rows, "{what}: one token per row");
        let ours = similarity_maps(&query, &page, &grid).unwrap();
        let d = assert_rows_close(
            &format!("{what} raw maps (our embeddings)"),
            &to_reference_layout(&ours.maps, grid.cols, grid.rows),
            &raw,
            cells,
            F32_PARITY,
        );
        eprintln!("{what}: raw maps from our embeddings {d:?}");
    }
}

#[test]
fn a_page_of_another_size_is_refused() {
    let engine = tiny_engine();
    let reference = Golden::load("adapter");
    let (pe, _) = reference.f32("image.06.embedding");
    let (qe, _) = reference.f32("query.00.embedding");
    let (page, query) = (MultiVector::new(pe, 128).unwrap(), MultiVector::new(qe, 128).unwrap());
    // Image 00's grid (8×6) for image 06's vectors (8×11): a clear error, not a guess.
    let other = engine.visual_grid(224, 168).unwrap();
    let err = similarity_maps(&query, &page, &other).unwrap_err().to_string();
    assert!(err.contains("re-ingest"), "{err}");
}
