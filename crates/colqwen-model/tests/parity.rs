//! Stage-by-stage parity with colpali-engine (fact sheet §10 protocol): the golden tensors in
//! `fixtures/tiny/golden` were written by `fixtures/gen/make_fixtures.py` from the reference stack, in f32
//! on the CPU at batch size 1. Each test names the stage it checks.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use colqwen_model::qwen2_5::Towers;
use colqwen_model::{Backbone, ColQwen, DType, HubOptions, ImageGrid, LoadOptions, ModelFiles, MultiVector};
use colqwen_testkit::{F32_PARITY, Golden, assert_rows_close, golden_dir, manifest, tiny_adapter};

fn load(skip_adapter: bool) -> ColQwen {
    let files = ModelFiles::resolve(
        tiny_adapter().to_str().unwrap(),
        None,
        &HubOptions { offline: true, ..Default::default() },
    )
    .expect("fixture model resolves");
    ColQwen::load(&files, &Device::Cpu, DType::F32, &LoadOptions { skip_adapter, ..Default::default() })
        .expect("fixture model loads")
}

fn adapter_model() -> &'static ColQwen {
    static M: OnceLock<ColQwen> = OnceLock::new();
    M.get_or_init(|| load(false))
}

fn base_model() -> &'static ColQwen {
    static M: OnceLock<ColQwen> = OnceLock::new();
    M.get_or_init(|| load(true))
}

/// The ColQwen2.5 towers of a loaded fixture model.
fn towers(m: &ColQwen) -> &Towers {
    match m.backbone() {
        Backbone::Qwen2_5(t) => t,
        _ => panic!("the tiny fixture is a ColQwen2.5 checkpoint"),
    }
}

fn inputs() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| Golden::load("inputs"))
}

fn image(i: usize) -> image::RgbImage {
    let m = manifest();
    image::open(golden_dir().join(&m.images[i].file)).unwrap().to_rgb8()
}

fn key(kind: &str, i: usize, what: &str) -> String {
    format!("{kind}.{i:02}.{what}")
}

fn as_u32(v: Vec<i64>) -> Vec<u32> {
    v.into_iter().map(|x| x as u32).collect()
}

fn golden_grid(i: usize) -> ImageGrid {
    let (g, _) = inputs().i64(&key("image", i, "image_grid_thw"));
    ImageGrid { t: g[0] as usize, h: g[1] as usize, w: g[2] as usize }
}

fn golden_pixel_values(i: usize) -> Tensor {
    let (v, shape) = inputs().f32(&key("image", i, "pixel_values"));
    Tensor::from_vec(v, (shape[0], shape[1]), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Embedding of golden image `i` from the golden `pixel_values` (isolates the model from the resampler).
fn embed_golden_pixels(m: &ColQwen, i: usize) -> (Tensor, Tensor, Tensor) {
    let grid = golden_grid(i);
    let vision = towers(m).vision().unwrap().forward(&golden_pixel_values(i), &[grid]).unwrap();
    let batch = m.document_batch(&[grid]);
    let embeds = m.scatter_image_features(&batch, &vision).unwrap();
    let hidden = towers(m).text.forward(&embeds, &batch.positions, &batch.cu_seqlens).unwrap();
    let emb = m.head(&hidden).unwrap();
    (vision, hidden, emb)
}

#[test]
fn document_token_ids_grids_and_positions_are_exact() {
    let m = adapter_model();
    for i in 0..manifest().images.len() {
        let pv = m.preprocessor().preprocess(&image(i)).unwrap();
        assert_eq!(pv.grid, golden_grid(i), "image {i}: image_grid_thw");
        let batch = m.document_batch(&[pv.grid]);
        let (ids, _) = inputs().i64(&key("image", i, "input_ids"));
        assert_eq!(batch.ids, as_u32(ids), "image {i}: input_ids");
        let (mask, _) = inputs().i64(&key("image", i, "attention_mask"));
        assert!(mask.iter().all(|&x| x == 1), "image {i}: batch-size-1 reference has no padding");
        let (pos, shape) = inputs().i64(&key("image", i, "position_ids"));
        let l = shape[1];
        for s in 0..3 {
            assert_eq!(batch.positions[s], as_u32(pos[s * l..(s + 1) * l].to_vec()), "image {i}: position stream {s}");
        }
        let layout = towers(m).vision().unwrap().layout(&[pv.grid]);
        let (wi, _) = inputs().i64(&key("image", i, "window_index"));
        assert_eq!(layout.window_index, wi.iter().map(|&x| x as usize).collect::<Vec<_>>(), "image {i}: window_index");
        let (cu, _) = inputs().i64(&key("image", i, "cu_window_seqlens"));
        assert_eq!(
            layout.cu_window_seqlens,
            cu.iter().map(|&x| x as usize).collect::<Vec<_>>(),
            "image {i}: cu_window_seqlens"
        );
    }
}

#[test]
fn query_token_ids_and_positions_are_exact() {
    let m = adapter_model();
    let queries = manifest().queries;
    for (j, q) in queries.iter().enumerate() {
        let batch = m.query_batch(&[q]).unwrap();
        let (ids, _) = inputs().i64(&key("query", j, "input_ids"));
        assert_eq!(batch.ids, as_u32(ids), "query {j} {q:?}: input_ids");
        let (mask, _) = inputs().i64(&key("query", j, "attention_mask"));
        assert!(mask.iter().all(|&x| x == 1));
        let (pos, shape) = inputs().i64(&key("query", j, "position_ids"));
        let l = shape[shape.len() - 1];
        assert_eq!(batch.positions[0], as_u32(pos[..l].to_vec()), "query {j}: positions");
    }
}

/// Normalised value → uint8 level (inverse of the fused normalisation, fact sheet §2.5).
fn levels(v: &[f32]) -> Vec<i32> {
    const MEAN: [f32; 3] = [122.77094, 116.74602, 104.09373];
    const STD: [f32; 3] = [68.50053, 66.63216, 70.32316];
    v.iter()
        .enumerate()
        .map(|(k, x)| {
            let c = (k % 1176) / 392;
            (x * STD[c] + MEAN[c]).round() as i32
        })
        .collect()
}

#[test]
fn pixel_values_exact_when_presized_and_within_one_step_when_resampled() {
    let m = adapter_model();
    let man = manifest();
    for (i, img) in man.images.iter().enumerate() {
        let ours = m.preprocessor().preprocess(&image(i)).unwrap();
        let (theirs, _) = inputs().f32(&key("image", i, "pixel_values"));
        assert_eq!(ours.data.len(), theirs.len(), "image {i}: pixel_values length");
        if img.presized {
            assert_eq!(ours.data, theirs, "image {i} ({}): pre-sized pixel_values must be bit-identical", img.file);
        } else {
            let (a, b) = (levels(&ours.data), levels(&theirs));
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).max().unwrap();
            let off = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            eprintln!("image {i} ({}): resampled, {off}/{} values differ, max {worst} step", img.file, a.len());
            assert!(worst <= 1, "image {i} ({}): resampled pixel_values differ by {worst} uint8 steps", img.file);
        }
    }
}

#[test]
fn patch_embedding_matches() {
    let m = adapter_model();
    let g = Golden::load("adapter");
    for i in 0..manifest().images.len() {
        let ours = towers(m).vision().unwrap().embed_patches(&golden_pixel_values(i)).unwrap();
        let (theirs, shape) = g.f32(&key("image", i, "patch_embed"));
        assert_rows_close(&format!("image {i} patch_embed"), &flat(&ours), &theirs, shape[1], F32_PARITY);
    }
}

fn check_documents(m: &ColQwen, golden: &str) {
    let g = Golden::load(golden);
    for i in 0..manifest().images.len() {
        let (vision, hidden, emb) = embed_golden_pixels(m, i);
        let (v, vs) = g.f32(&key("image", i, "vision_output"));
        let dv = assert_rows_close(&format!("{golden} image {i} vision output"), &flat(&vision), &v, vs[1], F32_PARITY);
        let (h, hs) = g.f32(&key("image", i, "last_hidden_state"));
        let dh =
            assert_rows_close(&format!("{golden} image {i} last hidden state"), &flat(&hidden), &h, hs[1], F32_PARITY);
        let (e, _) = g.f32(&key("image", i, "embedding"));
        let de = assert_rows_close(&format!("{golden} image {i} embedding"), &flat(&emb), &e, 128, F32_PARITY);
        eprintln!("{golden} image {i}: vision {dv:?} hidden {dh:?} embedding {de:?}");
    }
}

#[test]
fn document_stages_match_with_adapter() {
    check_documents(adapter_model(), "adapter");
}

#[test]
fn document_stages_match_base_without_adapter() {
    check_documents(base_model(), "base");
}

fn check_queries(m: &ColQwen, golden: &str) {
    let g = Golden::load(golden);
    let queries = manifest().queries;
    for (j, q) in queries.iter().enumerate() {
        let batch = m.query_batch(&[q]).unwrap();
        let embeds = towers(m).text.embed(&batch.ids).unwrap();
        let hidden = towers(m).text.forward(&embeds, &batch.positions, &batch.cu_seqlens).unwrap();
        let (h, hs) = g.f32(&key("query", j, "last_hidden_state"));
        assert_rows_close(
            &format!("{golden} query {j} last hidden state"),
            &flat(&hidden),
            &h,
            hs[hs.len() - 1],
            F32_PARITY,
        );
        let emb = &m.embed_queries(&[q]).unwrap()[0];
        let (e, _) = g.f32(&key("query", j, "embedding"));
        let d = assert_rows_close(&format!("{golden} query {j} embedding"), &emb.data, &e, 128, F32_PARITY);
        eprintln!("{golden} query {j}: embedding {d:?}");
    }
}

#[test]
fn query_stages_match_with_adapter() {
    check_queries(adapter_model(), "adapter");
}

#[test]
fn query_stages_match_base_without_adapter() {
    check_queries(base_model(), "base");
}

/// The reference's own score (fact sheet §7.1, trap 27): `score_multi_vector` right-pads the documents of a
/// block with zero rows, so every document shorter than the block's longest gets an extra 0 candidate in each
/// max. We do not reproduce that batch dependence in [`MultiVector::maxsim`]; this test-only emulation proves that the
/// embeddings and the sum are otherwise exact.
fn reference_score(q: &MultiVector, d: &MultiVector, zero_padded: bool) -> f32 {
    q.rows()
        .map(|qr| {
            let best =
                d.rows().map(|dr| qr.iter().zip(dr).map(|(a, b)| a * b).sum::<f32>()).fold(f32::NEG_INFINITY, f32::max);
            if zero_padded { best.max(0.0) } else { best }
        })
        .sum()
}

/// End to end from the PNG files (our resampler included) and the query strings, scored with MaxSim.
fn check_scores(m: &ColQwen, golden: &str) {
    let man = manifest();
    let images: Vec<_> = (0..man.images.len()).map(image).collect();
    let docs = m.embed_images(&images).unwrap();
    let qs: Vec<&str> = man.queries.iter().map(String::as_str).collect();
    let queries = m.embed_queries(&qs).unwrap();
    let (theirs, shape) = Golden::load(golden).f32("scores");
    let n_img = shape[1];
    let longest = docs.iter().map(|d| d.rows).max().unwrap();
    let (mut worst, mut clamped) = (0f64, 0usize);
    for (j, q) in queries.iter().enumerate() {
        let ours: Vec<f32> = docs.iter().map(|d| q.maxsim(d)).collect();
        let reference = &theirs[j * n_img..(j + 1) * n_img];
        for (i, (d, b)) in docs.iter().zip(reference).enumerate() {
            let a = reference_score(q, d, d.rows < longest);
            clamped += usize::from(a != ours[i]);
            let rel = ((a - b).abs() / b.abs().max(1e-6)) as f64;
            worst = worst.max(rel);
            assert!(rel <= 1e-4, "{golden} query {j} image {i}: score {a} vs reference {b} (relative error {rel:.2e})");
        }
        assert_eq!(ranking(&ours), ranking(reference), "{golden} query {j}: ranking differs");
    }
    eprintln!(
        "{golden}: max relative score error {worst:.2e}; {clamped} pairs where the reference's zero padding binds"
    );
}

fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

#[test]
fn maxsim_scores_match_with_identical_ranking() {
    check_scores(adapter_model(), "adapter");
}

#[test]
fn maxsim_scores_match_base_without_adapter() {
    check_scores(base_model(), "base");
}

#[test]
fn adapter_changes_the_output() {
    let q = &manifest().queries[0];
    let with = &adapter_model().embed_queries(&[q]).unwrap()[0];
    let without = &base_model().embed_queries(&[q]).unwrap()[0];
    let d = colqwen_testkit::compare_rows(&with.data, &without.data, 128);
    assert!(d.max_abs > 1e-2, "the adapter should change the embedding, max |Δ| was {:.2e}", d.max_abs);
    assert_eq!(adapter_model().lora_pairs(), 3 * 7 + 1, "LoRA pairs: 7 per decoder layer + custom_text_proj");
    assert_eq!(base_model().lora_pairs(), 0);
}

fn max_abs(a: &MultiVector, b: &MultiVector) -> f32 {
    assert_eq!((a.rows, a.dim), (b.rows, b.dim));
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// colpali#274: in the reference a page's embedding depends on what else is in its batch. Here inputs are
/// packed, so each embedding alone equals the same input inside a mixed-size batch.
#[test]
fn embeddings_do_not_depend_on_the_batch() {
    let m = adapter_model();
    let man = manifest();
    let images: Vec<_> = (0..man.images.len()).map(image).collect();
    let batched = m.embed_images(&images).unwrap();
    let reversed: Vec<_> = images.iter().rev().cloned().collect();
    let batched_rev = m.embed_images(&reversed).unwrap();
    for (i, img) in images.iter().enumerate() {
        let alone = &m.embed_images(std::slice::from_ref(img)).unwrap()[0];
        let d = max_abs(alone, &batched[i]).max(max_abs(alone, &batched_rev[images.len() - 1 - i]));
        assert!(d <= 1e-6, "image {i}: alone vs in batch differ by {d:.2e}");
    }
    let qs: Vec<&str> = man.queries.iter().map(String::as_str).collect();
    let batched = m.embed_queries(&qs).unwrap();
    for (j, q) in qs.iter().enumerate() {
        let alone = &m.embed_queries(&[q]).unwrap()[0];
        let d = max_abs(alone, &batched[j]);
        assert!(d <= 1e-6, "query {j}: alone vs in batch differ by {d:.2e}");
    }
}
