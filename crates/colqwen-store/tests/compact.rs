//! The compact storage: rows as i8 with a scale per row, pages pooled at ingest (hierarchical token pooling).

mod common;

use colqwen_store::{Error, PageRecord, SearchMode, Store, VectorStorage, maxsim, pool};
use common::*;

fn compact() -> colqwen_store::IndexManifest {
    manifest(VectorStorage::I8).with_pool_factor(2)
}

/// Exact search over a pooled i8 index scores each page as MaxSim over the rows it stores (within i8 rounding
/// of the pooled rows), `page_vectors` gives the page back in its original shape (each row replaced by its
/// cluster's row), and both survive a reopen.
#[test]
fn pooled_i8_pages_score_their_stored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let store = Store::open_or_create(dir.path(), &compact()).unwrap();
    // Row counts that are and are not multiples of 16, and a one-row page.
    let mut pages = document(&mut rng, "a", "sha-a", 3, 40);
    pages.extend(document(&mut rng, "b", "sha-b", 2, 33));
    pages.extend(document(&mut rng, "c", "sha-c", 1, 1));
    store.upsert(pages.clone()).unwrap();
    store.flush().unwrap();
    let query = planted_query(&mut rng, &pages[1].vectors, 12, DIM, 0.3);
    check(&store, &pages, &query);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!((store.manifest().storage, store.manifest().pool_factor), (VectorStorage::I8, 2));
    check(&store, &pages, &query);
}

fn check(store: &Store, pages: &[PageRecord], query: &[f32]) {
    let hits = store.search(query, 10, None, SearchMode::Exact).unwrap();
    assert_eq!(hits.len(), pages.len());
    assert_eq!((hits[0].doc_id.as_str(), hits[0].page_index), ("a", 1));
    for hit in &hits {
        let page = pages.iter().find(|p| p.doc_id == hit.doc_id && p.page_index == hit.page_index).unwrap();
        let rows = page.vectors.len() / DIM;
        let stored = store.page_vectors(&hit.doc_id, hit.page_index).unwrap().expect("stored");
        assert_eq!((stored.rows, stored.dim), (rows, DIM), "original shape");
        // The search scores what page_vectors shows, up to the query's rounding to 8 bits where the CPU scores
        // i8 pages in integers (AVX-512 VNNI): at most half a query row's step (its largest magnitude / 127)
        // times a stored row's absolute sum, per query row.
        let shown = maxsim(query, &stored.data, DIM);
        let widest = stored.data.chunks_exact(DIM).map(|r| r.iter().map(|v| v.abs()).sum::<f32>()).fold(0.0, f32::max);
        let rounding: f32 =
            query.chunks_exact(DIM).map(|q| q.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0 / 2.0 * widest).sum();
        let tolerance = rounding + 1e-4 * (1.0 + shown.abs());
        assert!((hit.score - shown).abs() <= tolerance, "{} vs {shown} (tolerance {tolerance})", hit.score);
        // What is stored is the pooled page rounded to i8: each value off by at most half its row's step.
        let pooled = pool::pool(&page.vectors, DIM, 2);
        assert_eq!(pooled.rows.len() / DIM, (rows / 2).max(1));
        let want = pool::expand(&pooled.rows, &pooled.labels, DIM);
        for (got, want) in stored.data.chunks_exact(DIM).zip(want.chunks_exact(DIM)) {
            let step = want.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= step * 0.5 + 1e-6, "{g} vs {w}");
            }
        }
    }
}

/// The coarse stage codes pooled i8 pages from their stored rows: two-stage finds planted pages with the exact
/// score, and a page replaced by a new version is found as the new one.
#[test]
fn two_stage_over_a_pooled_i8_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(9);
    let store = Store::open_or_create(dir.path(), &compact()).unwrap();
    let pages = documents(&mut rng, 30, 10, 64);
    store.upsert(pages.clone()).unwrap();
    assert_eq!(store.optimize().unwrap(), 300);
    let targets: Vec<&PageRecord> = [0usize, 77, 299].iter().map(|&t| &pages[t]).collect();
    assert_two_stage_finds(&store, &mut rng, &targets, 0.3);
}

/// An index keeps its pooling: opening it with another factor is refused, naming both values.
#[test]
fn another_pool_factor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_or_create(dir.path(), &compact()).unwrap());
    let err = Store::open_or_create(dir.path(), &manifest(VectorStorage::I8)).unwrap_err();
    assert!(matches!(err, Error::ManifestMismatch { field: "pool_factor", .. }), "{err}");
    assert!(err.to_string().contains('2') && err.to_string().contains('1'), "{err}");
    let mut bad = manifest(VectorStorage::F16).with_pool_factor(0);
    assert!(Store::open_or_create(&dir.path().join("zero"), &bad).is_err());
    bad.pool_factor = 17;
    assert!(Store::open_or_create(&dir.path().join("big"), &bad).is_err());
    // A manifest without the field (written by an older build) reads as factor 1.
    let plain = dir.path().join("plain");
    drop(Store::open_or_create(&plain, &manifest(VectorStorage::F16)).unwrap());
    let text = std::fs::read_to_string(plain.join("manifest.json")).unwrap();
    assert!(!text.contains("pool_factor"), "{text}");
    assert_eq!(Store::open(&plain).unwrap().manifest().pool_factor, 1);
}

/// A pooled page record whose labels were cut off is reported as damage on open, not read out of bounds.
#[test]
fn a_record_of_the_wrong_size_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    {
        let store = Store::open_or_create(dir.path(), &compact()).unwrap();
        store.upsert(document(&mut rng, "a", "sha-a", 1, 40)).unwrap();
        store.flush().unwrap();
    }
    // Rewrite the metadata to claim more original rows than the record holds labels for (same JSON length, so
    // the record's layout stays valid; the CRC is not checked below `committed`).
    let log = dir.path().join("pages.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.windows(16).position(|w| w == b"\"pooled_from\":40").expect("pooled_from in the metadata");
    bytes[at + 14..at + 16].copy_from_slice(b"41");
    std::fs::write(&log, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
}
