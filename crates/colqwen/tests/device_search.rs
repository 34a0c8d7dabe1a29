//! The device scorer (exact MaxSim of every page on a candle device) against the store's own CPU scan, on the
//! CPU device: the same code path as on a GPU — block layout → rows on the device, chunks per row count, appends
//! within a lineage, a full copy after a delete, the budget — only the device differs.

use std::sync::Arc;

use colqwen::DeviceScorer;
use colqwen::core::{Hit, SearchMode, VectorStorage};
use colqwen::model::Device;
use colqwen::store::Store;
use colqwen_testkit::synth::{self, Rng};

/// Searches with and without the scorer; the same pages in the same order (or scores within f16 rounding).
fn same_answers(store: &Store, scorer: &Arc<DeviceScorer>, query: &[f32], filter: Option<&str>) -> Vec<Hit> {
    store.set_exact_scorer(None);
    let cpu = store.search(query, 10, filter, SearchMode::Exact).unwrap();
    store.set_exact_scorer(Some(scorer.clone()));
    let dev = store.search(query, 10, filter, SearchMode::Exact).unwrap();
    let auto = store.search(query, 10, filter, SearchMode::Auto).unwrap();
    assert_eq!(cpu.len(), dev.len());
    for (c, d) in cpu.iter().zip(&dev) {
        // f16 dot products on the device: ≤ 2⁻¹¹ relative each, over ≤ 24 query rows.
        assert!((c.score - d.score).abs() <= 0.02, "score {} on the CPU, {} on the device", c.score, d.score);
    }
    assert_eq!(cpu[0].point_id, dev[0].point_id, "a planted query's page comes first on both");
    let ids = |h: &[Hit]| h.iter().map(|h| h.point_id).collect::<Vec<_>>();
    let overlap = ids(&cpu).iter().filter(|id| ids(&dev).contains(id)).count();
    assert!(overlap >= cpu.len() - 1, "top-10 overlap {overlap}");
    assert_eq!(ids(&dev), ids(&auto), "auto is exact with a device scorer");
    dev
}

fn run(storage: VectorStorage) {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = synth::manifest("m");
    manifest.storage = storage;
    let store = Store::open_or_create(dir.path(), &manifest).unwrap();
    let mut rng = Rng::new(7);
    // Two paper sizes: 40 rows (padded to 48) and 20 rows (padded to 32), interleaved in the log.
    let a = synth::document(&mut rng, "aaaaaaaaaaaaaaaa", "sha-a", 30, 40);
    let b = synth::document(&mut rng, "bbbbbbbbbbbbbbbb", "sha-b", 25, 20);
    store.upsert(a[..15].to_vec()).unwrap();
    store.upsert(b.clone()).unwrap();
    store.upsert(a[15..].to_vec()).unwrap();
    // Chunks of 200 rows: a few pages each, so the grouping and the open-chunk appends are exercised.
    let scorer = Arc::new(DeviceScorer::new(Device::Cpu, usize::MAX).with_chunk_rows(200));
    store.set_exact_scorer(Some(scorer.clone()));

    for (doc, page) in [(&a, 3), (&a, 22), (&b, 0), (&b, 24)] {
        let q = synth::planted_query(&mut rng, &doc[page].vectors, 24, 0.3);
        let hits = same_answers(&store, &scorer, &q, None);
        assert_eq!((hits[0].doc_id.as_str(), hits[0].page_index), (doc[page].doc_id.as_str(), page));
    }
    // Document filter.
    let q = synth::planted_query(&mut rng, &a[5].vectors, 24, 0.3);
    let hits = same_answers(&store, &scorer, &q, Some("bbbbbbbbbbbbbbbb"));
    assert!(hits.iter().all(|h| h.doc_id == "bbbbbbbbbbbbbbbb"));

    // Appended pages (same lineage): found.
    let c = synth::document(&mut rng, "cccccccccccccccc", "sha-c", 9, 40);
    store.upsert(c.clone()).unwrap();
    let q = synth::planted_query(&mut rng, &c[8].vectors, 24, 0.3);
    let hits = same_answers(&store, &scorer, &q, None);
    assert_eq!((hits[0].doc_id.as_str(), hits[0].page_index), ("cccccccccccccccc", 8));

    // A deleted document (a new lineage): gone from the device's answers, and the pages already on the device
    // are found again by id (nothing copied again).
    let elem = if storage == VectorStorage::F16 { 2 } else { 4 };
    let bytes = |pages: usize, padded_rows: usize| pages * padded_rows * synth::DIM * elem;
    let all = bytes(30, 48) + bytes(25, 32) + bytes(9, 48);
    assert_eq!(scorer.copied_bytes(), all);
    store.delete_document("cccccccccccccccc").unwrap();
    let q = synth::planted_query(&mut rng, &c[8].vectors, 24, 0.3);
    let hits = same_answers(&store, &scorer, &q, None);
    assert!(hits.iter().all(|h| h.doc_id != "cccccccccccccccc"));
    assert_eq!(scorer.copied_bytes(), all, "a delete reuses the device copy");
    // Deleting more than what is left: the copy is made afresh with only the live pages.
    store.delete_document("aaaaaaaaaaaaaaaa").unwrap();
    let q = synth::planted_query(&mut rng, &a[3].vectors, 24, 0.3);
    let hits = same_answers(&store, &scorer, &q, None);
    assert!(hits.iter().all(|h| h.doc_id != "aaaaaaaaaaaaaaaa"));
    assert_eq!(scorer.copied_bytes(), bytes(25, 32), "dead pages outweighed live ones: copied afresh");
    // A page written again (same id) after a delete of its document comes back through the id map.
    store.upsert(c.clone()).unwrap();
    let q = synth::planted_query(&mut rng, &c[2].vectors, 24, 0.3);
    let hits = same_answers(&store, &scorer, &q, None);
    assert_eq!((hits[0].doc_id.as_str(), hits[0].page_index), ("cccccccccccccccc", 2));

    // A budget smaller than the index: declined, the CPU answers.
    let small = Arc::new(DeviceScorer::new(Device::Cpu, 1024));
    store.set_exact_scorer(Some(small.clone()));
    let q = synth::planted_query(&mut rng, &b[10].vectors, 24, 0.3);
    let hits = same_answers(&store, &small, &q, None);
    assert_eq!((hits[0].doc_id.as_str(), hits[0].page_index), ("bbbbbbbbbbbbbbbb", 10));
}

#[test]
fn device_scorer_matches_the_cpu_scan_f16() {
    run(VectorStorage::F16);
}

#[test]
fn device_scorer_matches_the_cpu_scan_f32() {
    run(VectorStorage::F32);
}
