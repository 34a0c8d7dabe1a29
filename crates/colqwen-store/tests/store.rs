//! Store behaviour on the real page log, in temp dirs.

mod common;

use std::collections::{BTreeSet, HashMap};

use colqwen_store::{Error, PageRecord, SearchMode, Store, VectorStorage, maxsim, point_id};
use common::*;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn round_trip_write_flush_reopen() {
    let dir = temp();
    let mut rng = Rng::new(1);
    let pages = document(&mut rng, "a", "sha-a", 5, 32);
    let query = planted_query(&mut rng, &pages[3].vectors, 8, DIM, 0.2);
    {
        let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
        store.upsert(pages.clone()).unwrap();
        store.flush().unwrap();
        assert_eq!(store.page_count().unwrap(), 5);
    }
    for dir_files in ["manifest.json", "LOCK", "pages.log"] {
        assert!(dir.path().join(dir_files).exists(), "{dir_files} missing");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.manifest(), &manifest(VectorStorage::F32));
    assert_eq!(store.page_count().unwrap(), 5);
    let hits = store.search(&query, 3, None, SearchMode::Exact).unwrap();
    assert_eq!(hits.len(), 3);
    let top = &hits[0];
    assert_eq!((top.doc_id.as_str(), top.page_index), ("a", 3));
    assert_eq!(top.source_path, "pdfs/a.pdf");
    assert_eq!(top.file_sha256, "sha-a");
    assert_eq!(top.page_count, 5);
    assert_eq!((top.page_width_pt, top.page_height_pt), (595.0, 842.0));
    assert_eq!(top.preview.as_deref(), Some("previews/sha-a/3.webp"));
    let m = manifest(VectorStorage::F32);
    assert_eq!(top.point_id, point_id("sha-a", 3, &m.model_id, &m.preprocessing));
    let oracle = maxsim(&query, &pages[3].vectors, DIM);
    assert!((top.score - oracle).abs() <= 1e-4 * oracle.abs(), "{} vs {oracle}", top.score);
}

#[test]
fn open_missing_index_is_not_found() {
    let dir = temp();
    match Store::open(&dir.path().join("nope")) {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    match Store::open(dir.path()) {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn idempotent_upsert() {
    let dir = temp();
    let mut rng = Rng::new(2);
    let pages = document(&mut rng, "a", "sha-a", 6, 16);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    store.upsert(pages.clone()).unwrap();
    store.upsert(pages.clone()).unwrap();
    assert_eq!(store.page_count().unwrap(), 6);
    store.flush().unwrap();
    drop(store);
    // Again after reopening (the WAL numbering must continue, or replacements would be skipped).
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    let mut changed = pages.clone();
    for p in &mut changed {
        p.preview = Some("changed.webp".into());
    }
    store.upsert(changed).unwrap();
    assert_eq!(store.page_count().unwrap(), 6);
    let q = planted_query(&mut rng, &pages[0].vectors, 4, DIM, 0.1);
    let hits = store.search(&q, 6, None, SearchMode::Exact).unwrap();
    assert!(hits.iter().all(|h| h.preview.as_deref() == Some("changed.webp")));
    assert_eq!(store.point_ids().unwrap().len(), 6);
}

#[test]
fn delete_document_and_file_version() {
    let dir = temp();
    let mut rng = Rng::new(3);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    store.upsert(document(&mut rng, "a", "sha-a1", 4, 8)).unwrap();
    store.upsert(document(&mut rng, "b", "sha-b", 3, 8)).unwrap();
    // "a" changed on disk: new version re-indexed with 2 pages, then the old version is dropped.
    store.upsert(document(&mut rng, "a", "sha-a2", 2, 8)).unwrap();
    assert_eq!(store.page_count().unwrap(), 9);
    assert_eq!(store.delete_file_version("pdfs/a.pdf", "sha-a2").unwrap(), 4);
    assert_eq!(store.delete_file_version("pdfs/a.pdf", "sha-a2").unwrap(), 0);
    assert_eq!(store.page_count().unwrap(), 5);
    assert_eq!(store.pages_of_file("sha-a1").unwrap(), BTreeSet::new());
    assert_eq!(store.pages_of_file("sha-a2").unwrap(), BTreeSet::from([0, 1]));
    assert_eq!(store.delete_document("b").unwrap(), 3);
    assert_eq!(store.delete_document("b").unwrap(), 0);
    assert_eq!(store.delete_document("never-there").unwrap(), 0);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.page_count().unwrap(), 2);
    let docs = store.documents().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].doc_id, "a");
    assert_eq!(docs[0].file_sha256, "sha-a2");
}

#[test]
fn pages_of_file_and_documents() {
    let dir = temp();
    let mut rng = Rng::new(4);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    // An interrupted ingest: pages 0, 2, 5 of a 7-page file.
    let doc = document(&mut rng, "a", "sha-a", 7, 8);
    store.upsert(vec![doc[0].clone(), doc[2].clone(), doc[5].clone()]).unwrap();
    store.upsert(document(&mut rng, "b", "sha-b", 2, 8)).unwrap();
    assert_eq!(store.pages_of_file("sha-a").unwrap(), BTreeSet::from([0, 2, 5]));
    assert_eq!(store.pages_of_file("sha-b").unwrap(), BTreeSet::from([0, 1]));
    assert!(store.pages_of_file("unknown").unwrap().is_empty());
    let docs = store.documents().unwrap();
    let summary: Vec<_> = docs.iter().map(|d| (d.doc_id.as_str(), d.page_count, d.stored_pages)).collect();
    assert_eq!(summary, [("a", 7, 3), ("b", 2, 2)]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.pages, stats.documents), (5, 2));
    assert_eq!(stats.storage, VectorStorage::F32);
    assert_eq!(stats.embedding_dim, DIM);
    assert!(stats.bytes_on_disk.is_some_and(|b| b > 0));
}

#[test]
fn refuses_mismatched_manifest() {
    let dir = temp();
    drop(Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap());
    let mut other = manifest(VectorStorage::F32);
    other.model_id = "vidore/colqwen2-v1.0".into();
    let err = Store::open_or_create(dir.path(), &other).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ManifestMismatch { field: "model_id", .. }), "{msg}");
    assert!(msg.contains("vidore/colqwen2.5-v0.2@test") && msg.contains("vidore/colqwen2-v1.0"), "{msg}");

    let mut other = manifest(VectorStorage::F32);
    other.preprocessing["max_pixels"] = serde_json::json!(602112);
    let err = Store::open_or_create(dir.path(), &other).unwrap_err();
    assert!(matches!(err, Error::ManifestMismatch { field: "preprocessing", .. }), "{err}");

    let mut other = manifest(VectorStorage::F32);
    other.embedding_dim = 64;
    assert!(matches!(
        Store::open_or_create(dir.path(), &other),
        Err(Error::ManifestMismatch { field: "embedding_dim", .. })
    ));
    assert!(matches!(
        Store::open_or_create(dir.path(), &manifest(VectorStorage::F16)),
        Err(Error::ManifestMismatch { field: "storage", .. })
    ));
    let mut other = manifest(VectorStorage::F32);
    other.format_version = 99;
    assert!(matches!(Store::open_or_create(dir.path(), &other), Err(Error::UnsupportedFormat { found: 99, .. })));
    // Key order of the preprocessing object does not matter.
    let mut reordered = manifest(VectorStorage::F32);
    reordered.preprocessing = serde_json::json!({"dpi": "fit", "max_visual_tokens": 768, "max_pixels": 1003520});
    Store::open_or_create(dir.path(), &reordered).unwrap();
}

#[test]
fn second_open_is_in_use() {
    let dir = temp();
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    // File::try_lock is per open file description: a second open in the same process conflicts.
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    assert!(err.to_string().contains("index in use by another colqwen process"));
    assert!(matches!(Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)), Err(Error::InUse { .. })));
    drop(store);
    Store::open(dir.path()).unwrap();
}

/// 50 pages, 5 random + 5 planted queries: the exact ranking and scores equal the oracle's.
#[test]
fn exact_search_equals_oracle() {
    let dir = temp();
    let mut rng = Rng::new(5);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    let pages = documents(&mut rng, 10, 5, 32);
    store.upsert(pages.clone()).unwrap();
    let m = manifest(VectorStorage::F32);
    let by_id: HashMap<u64, &PageRecord> =
        pages.iter().map(|p| (point_id(&p.file_sha256, p.page_index, &m.model_id, &m.preprocessing), p)).collect();
    let mut queries: Vec<Vec<f32>> = (0..5).map(|_| random_query(&mut rng, 16, DIM)).collect();
    for t in [0, 11, 22, 33, 49] {
        queries.push(planted_query(&mut rng, &pages[t].vectors, 16, DIM, 0.5));
    }
    for query in &queries {
        let hits = store.search(query, 50, None, SearchMode::Exact).unwrap();
        assert_eq!(hits.len(), 50);
        let mut oracle: Vec<f32> = pages.iter().map(|p| maxsim(query, &p.vectors, DIM)).collect();
        oracle.sort_by(|a, b| b.total_cmp(a));
        for (rank, hit) in hits.iter().enumerate() {
            let own = maxsim(query, &by_id[&hit.point_id].vectors, DIM);
            let tol = 1e-4 * own.abs().max(1e-3);
            assert!((hit.score - own).abs() <= tol, "score {} vs oracle {own}", hit.score);
            // Same rank as the oracle (up to ties within tolerance).
            assert!((hit.score - oracle[rank]).abs() <= tol, "rank {rank}: {} vs {}", hit.score, oracle[rank]);
        }
    }
}

#[test]
fn filter_by_doc_id() {
    let dir = temp();
    let mut rng = Rng::new(6);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    let pages = documents(&mut rng, 6, 4, 16);
    store.upsert(pages.clone()).unwrap();
    // A query planted in d1 page 2, searched only within d4.
    let query = planted_query(&mut rng, &pages[4 + 2].vectors, 8, DIM, 0.2);
    for mode in [SearchMode::Exact, SearchMode::TwoStage { prefetch: Some(3) }, SearchMode::Auto] {
        let hits = store.search(&query, 10, Some("d4"), mode).unwrap();
        assert!(!hits.is_empty(), "{mode:?}");
        assert!(hits.iter().all(|h| h.doc_id == "d4"), "{mode:?}");
        assert!(hits.len() <= 4);
        let all = store.search(&query, 1, None, mode).unwrap();
        assert_eq!((all[0].doc_id.as_str(), all[0].page_index), ("d1", 2), "{mode:?}");
    }
    assert!(store.search(&query, 10, Some("nope"), SearchMode::Exact).unwrap().is_empty());
}

#[test]
fn two_stage_finds_planted_top1() {
    let dir = temp();
    let mut rng = Rng::new(7);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    let pages = documents(&mut rng, 20, 10, 32);
    store.upsert(pages.clone()).unwrap();
    for target in [3usize, 57, 101, 150, 199] {
        let query = planted_query(&mut rng, &pages[target].vectors, 16, DIM, 0.5);
        let exact = store.search(&query, 10, None, SearchMode::Exact).unwrap();
        let two = store.search(&query, 10, None, SearchMode::TwoStage { prefetch: Some(20) }).unwrap();
        let want = (pages[target].doc_id.as_str(), pages[target].page_index);
        assert_eq!((exact[0].doc_id.as_str(), exact[0].page_index), want);
        assert_eq!((two[0].doc_id.as_str(), two[0].page_index), want);
        assert_eq!(two[0].point_id, exact[0].point_id);
        assert!((two[0].score - exact[0].score).abs() <= 1e-5 * exact[0].score.abs());
    }
}

#[test]
fn f16_storage_round_trip_scores_close_to_f32() {
    let mut rng = Rng::new(8);
    let pages = documents(&mut rng, 6, 5, 32);
    let queries: Vec<Vec<f32>> = (0..4).map(|i| planted_query(&mut rng, &pages[i * 7].vectors, 16, DIM, 0.5)).collect();
    let (d32, d16) = (temp(), temp());
    {
        let s32 = Store::open_or_create(d32.path(), &manifest(VectorStorage::F32)).unwrap();
        let s16 = Store::open_or_create(d16.path(), &manifest(VectorStorage::F16)).unwrap();
        s32.upsert(pages.clone()).unwrap();
        s16.upsert(pages.clone()).unwrap();
        s32.flush().unwrap();
        s16.flush().unwrap();
    }
    let s32 = Store::open(d32.path()).unwrap();
    let s16 = Store::open(d16.path()).unwrap();
    assert_eq!(s16.manifest().storage, VectorStorage::F16);
    for (i, q) in queries.iter().enumerate() {
        let h32 = s32.search(q, 30, None, SearchMode::Exact).unwrap();
        let h16 = s16.search(q, 30, None, SearchMode::Exact).unwrap();
        assert_eq!(h16[0].point_id, h32[0].point_id, "query {i}");
        let f32_scores: HashMap<u64, f32> = h32.iter().map(|h| (h.point_id, h.score)).collect();
        for h in &h16 {
            let s = f32_scores[&h.point_id];
            assert!((h.score - s).abs() <= 2e-3 * s.abs(), "f16 {} vs f32 {s}", h.score);
        }
    }
}

#[test]
fn rejects_bad_input_without_panicking() {
    let dir = temp();
    let mut rng = Rng::new(9);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F32)).unwrap();
    let mut bad = page(&mut rng, "a", "sha", 0, 1, 4);
    bad.vectors.pop();
    assert!(matches!(store.upsert(vec![bad.clone()]), Err(Error::PageVectorShape { .. })));
    bad.vectors.clear();
    assert!(matches!(store.upsert(vec![bad]), Err(Error::PageVectorShape { .. })));
    let mut nan = page(&mut rng, "a", "sha", 0, 1, 4);
    nan.vectors[5] = f32::NAN;
    assert!(matches!(store.upsert(vec![nan]), Err(Error::NonFinite { .. })));
    let oob = page(&mut rng, "a", "sha", 3, 2, 4);
    assert!(matches!(store.upsert(vec![oob]), Err(Error::PageIndexOutOfRange { .. })));
    assert_eq!(store.page_count().unwrap(), 0);
    store.upsert(vec![page(&mut rng, "a", "sha", 0, 1, 4)]).unwrap();
    assert!(matches!(store.search(&[0.0; 100], 5, None, SearchMode::Exact), Err(Error::QueryShape { .. })));
    assert!(matches!(store.search(&[], 5, None, SearchMode::Exact), Err(Error::QueryShape { .. })));
    assert!(store.search(&[0.5; DIM], 0, None, SearchMode::Exact).unwrap().is_empty());
    assert_eq!(store.search(&[0.5; DIM], 5, None, SearchMode::Auto).unwrap().len(), 1);
}

/// Replacing and deleting pages leaves dead records; once they outweigh the live ones (and 32 MiB) a flush
/// rewrites the log. Pages, replacements and deletions survive it and a reopen.
#[test]
fn compaction_keeps_live_pages_and_drops_dead_ones() {
    let dir = temp();
    let mut rng = Rng::new(10);
    let m = manifest(VectorStorage::F32);
    let store = Store::open_or_create(dir.path(), &m).unwrap();
    // 160 pages × 768 rows × 512 B ≈ 63 MB per round; two more rounds of the same pages leave ≈ 126 MB dead
    // (more than the live pages, far below the 256 MiB that a small index once had to reach first).
    let pages: Vec<_> =
        (0..16).flat_map(|d| document(&mut rng, &format!("d{d}"), &format!("sha{d}"), 10, 768)).collect();
    for _ in 0..3 {
        store.upsert(pages.clone()).unwrap();
    }
    let log_len = || std::fs::metadata(dir.path().join("pages.log")).unwrap().len();
    let before = log_len();
    store.flush().unwrap();
    assert!(log_len() < before / 2, "the log was not compacted: {before} -> {}", log_len());
    assert_eq!(store.page_count().unwrap(), 160);
    let mut replaced = page(&mut rng, "d0", "sha0", 0, 10, 8);
    replaced.preview = Some("new.webp".into());
    let q = replaced.vectors[..DIM].to_vec();
    store.upsert(vec![replaced]).unwrap();
    assert_eq!(store.delete_document("d1").unwrap(), 10);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.page_count().unwrap(), 150);
    let hit = &store.search(&q, 1, Some("d0"), SearchMode::Exact).unwrap()[0];
    assert_eq!((hit.page_index, hit.preview.as_deref()), (0, Some("new.webp")));
    assert!(store.pages_of_file("sha1").unwrap().is_empty());
    let oracle = maxsim(&pages[25].vectors[..4 * DIM], &pages[25].vectors, DIM);
    let top = &store.search(&pages[25].vectors[..4 * DIM], 1, None, SearchMode::Exact).unwrap()[0];
    assert_eq!((top.doc_id.as_str(), top.page_index), ("d2", 5));
    assert!((top.score - oracle).abs() <= 1e-4 * oracle.abs());
}

/// The coarse stage: after `optimize`, two-stage search finds planted pages with exact scores, and pages
/// written afterwards (not yet coded) are still found; the stage survives a reopen through `coarse.bin`.
#[test]
fn two_stage_with_the_coarse_stage() {
    let dir = temp();
    let mut rng = Rng::new(12);
    let store = Store::open_or_create(dir.path(), &manifest(VectorStorage::F16)).unwrap();
    let pages = documents(&mut rng, 40, 10, 64);
    store.upsert(pages.clone()).unwrap();
    assert_eq!(store.optimize().unwrap(), 400);
    assert_eq!(store.coarse_coverage(), 400);
    let late = document(&mut rng, "late", "sha-late", 2, 64);
    store.upsert(late.clone()).unwrap();
    store.flush().unwrap();
    let mut targets: Vec<&PageRecord> = [3usize, 57, 101, 250, 399].iter().map(|&t| &pages[t]).collect();
    targets.push(&late[1]);
    assert_two_stage_finds(&store, &mut rng, &targets, 0.5);
    drop(store);
    assert!(dir.path().join("coarse.bin").exists());
    let store = Store::open(dir.path()).unwrap();
    assert!(store.coarse_coverage() >= 400, "coarse.bin was not loaded: {}", store.coarse_coverage());
}

/// An index of the previous format (qdrant-edge, format_version 1) is refused with a message that says what
/// to do, never opened as an empty index.
#[test]
fn an_index_of_the_old_format_is_refused() {
    let dir = temp();
    std::fs::create_dir_all(dir.path().join("shard/segments")).unwrap();
    let mut old = serde_json::to_value(manifest(VectorStorage::F16)).unwrap();
    old["format_version"] = 1.into();
    std::fs::write(dir.path().join("manifest.json"), old.to_string()).unwrap();
    for err in [
        Store::open(dir.path()).unwrap_err(),
        Store::open_or_create(dir.path(), &manifest(VectorStorage::F16)).unwrap_err(),
    ] {
        assert!(matches!(err, Error::UnsupportedFormat { found: 1, supported: 2, .. }), "{err:?}");
        let hint = colqwen_core::Hint::hint(&err).unwrap();
        assert!(hint.contains("re-ingest"), "{hint}");
    }
}

#[test]
fn page_vectors_come_back_as_stored() {
    let dir = temp();
    let mut rng = Rng::new(11);
    let pages = document(&mut rng, "a", "sha-a", 3, 16);
    for storage in [VectorStorage::F32, VectorStorage::F16] {
        let sub = dir.path().join(storage.to_string());
        let store = Store::open_or_create(&sub, &manifest(storage)).unwrap();
        store.upsert(pages.clone()).unwrap();
        let got = store.page_vectors("a", 1).unwrap().expect("page 1 stored");
        assert_eq!((got.rows, got.dim), (16, DIM));
        let tol = if storage == VectorStorage::F32 { 0.0 } else { 1e-3 };
        for (a, b) in got.data.iter().zip(&pages[1].vectors) {
            assert!((a - b).abs() <= tol, "{storage}: {a} vs {b}");
        }
        assert_eq!(store.page_vectors("a", 3).unwrap(), None);
        assert_eq!(store.page_vectors("b", 0).unwrap(), None);
    }
}

/// `optimize` leaves a codebook that depends on the pages only: an index optimized at 300 pages and again after
/// 100 more ends with the same `coarse.bin` as one that received all 400 at once.
#[test]
fn optimize_trains_on_the_whole_index_whenever_it_ran_before() {
    let mut rng = Rng::new(21);
    let pages = documents(&mut rng, 40, 10, 48);
    let (early, all_at_once) = (temp(), temp());
    let store = Store::open_or_create(early.path(), &manifest(VectorStorage::F16)).unwrap();
    store.upsert(pages[..300].to_vec()).unwrap();
    assert_eq!(store.optimize().unwrap(), 300);
    store.upsert(pages[300..].to_vec()).unwrap();
    assert_eq!(store.optimize().unwrap(), 400);
    drop(store);
    let store = Store::open_or_create(all_at_once.path(), &manifest(VectorStorage::F16)).unwrap();
    store.upsert(pages.clone()).unwrap();
    assert_eq!(store.optimize().unwrap(), 400);
    drop(store);
    let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join("coarse.bin")).unwrap();
    assert!(read(&early) == read(&all_at_once), "the codebook depends on when optimize ran");
}
