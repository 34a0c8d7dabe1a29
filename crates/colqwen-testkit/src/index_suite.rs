//! One behaviour suite for every [`PageIndex`] backend (the embedded store, Weaviate): a backend's test file
//! calls [`index_suite!`](crate::index_suite) with a function that makes a fresh, empty index location, and
//! gets one `#[test]` per case. The cases use only the `PageIndex` trait.

use std::any::Any;
use std::sync::Arc;

use colqwen_core::{IndexError, IndexManifest, MultiVector, PageIndex, SearchMode, maxsim};

use crate::synth::{DIM, Rng, document, manifest, planted_query};

/// Opens (creating if needed) the one index location of a test with a manifest.
pub type Opener = Box<dyn Fn(&IndexManifest) -> colqwen_core::Result<Arc<dyn PageIndex>>>;

/// A fresh index location: how to open it, and what must live as long as it (a temp dir, a guard that drops a
/// remote collection).
pub struct Fresh {
    /// Opens the location.
    pub open: Opener,
    /// Dropped after the test.
    pub guard: Box<dyn Any>,
}

/// The model every case writes with.
pub const MODEL: &str = "suite/model@1";

fn open(fresh: &Fresh) -> Arc<dyn PageIndex> {
    (fresh.open)(&manifest(MODEL)).expect("open a fresh index")
}

fn mv(data: &[f32]) -> MultiVector {
    MultiVector::new(data.to_vec(), DIM).expect("a whole number of rows")
}

/// Writing the same pages again replaces them; changed vectors replace the old ones.
pub fn upsert_is_idempotent(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(2);
    let pages = document(&mut rng, "a1", "sha-a1", 6, 16);
    index.upsert(pages.clone()).expect("upsert");
    index.upsert(pages.clone()).expect("upsert again");
    index.flush().expect("flush");
    assert_eq!(index.page_count().expect("count"), 6);
    let mut changed = pages.clone();
    for p in &mut changed {
        p.vectors = document(&mut rng, "x", "x", 1, 16).remove(0).vectors;
    }
    index.upsert(changed.clone()).expect("upsert changed");
    index.flush().expect("flush");
    assert_eq!(index.page_count().expect("count"), 6);
    let stored = index.page_vectors("a1", 3).expect("read").expect("stored");
    assert_vectors_eq(&stored.data, &changed[3].vectors);
    let docs = index.documents().expect("documents");
    assert_eq!(docs.len(), 1);
    assert_eq!((docs[0].page_count, docs[0].stored_pages), (6, 6));
}

/// Deleting a document, and the old versions of a changed file, removes exactly their pages.
pub fn delete_document_and_file_version(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(3);
    let old = document(&mut rng, "a1", "sha-a1", 4, 8);
    let mut new = document(&mut rng, "a2", "sha-a2", 3, 8);
    for p in &mut new {
        p.source_path = "pdfs/a1.pdf".into();
    }
    let other = document(&mut rng, "b1", "sha-b1", 3, 8);
    index.upsert([old, new, other].concat()).expect("upsert");
    index.flush().expect("flush");
    assert_eq!(index.page_count().expect("count"), 10);
    assert_eq!(index.delete_file_version("pdfs/a1.pdf", "sha-a2").expect("delete old"), 4);
    assert_eq!(index.delete_file_version("pdfs/a1.pdf", "sha-a2").expect("again"), 0);
    assert_eq!(index.delete_document("b1").expect("delete b1"), 3);
    assert_eq!(index.delete_document("b1").expect("again"), 0);
    assert_eq!(index.delete_document("ffff").expect("never there"), 0);
    index.flush().expect("flush");
    let docs = index.documents().expect("documents");
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!((docs[0].doc_id.as_str(), docs[0].file_sha256.as_str()), ("a2", "sha-a2"));
    assert_eq!(docs[0].source_path, "pdfs/a1.pdf");
    assert_eq!(index.page_count().expect("count"), 3);
    assert!(index.pages_of_file("sha-a1").expect("pages").is_empty());
}

/// A planted query finds its page first, with the MaxSim score; a document filter keeps only that document.
pub fn search_and_document_filter(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(4);
    let a = document(&mut rng, "a1", "sha-a1", 5, 24);
    let b = document(&mut rng, "b1", "sha-b1", 5, 24);
    index.upsert([a.clone(), b.clone()].concat()).expect("upsert");
    index.flush().expect("flush");
    let query = mv(&planted_query(&mut rng, &a[2].vectors, 8, 0.2));
    for mode in [SearchMode::Auto, SearchMode::Exact] {
        let hits = index.search(&query, 3, None, mode).expect("search");
        assert_eq!(hits.len(), 3);
        let top = &hits[0];
        assert_eq!((top.doc_id.as_str(), top.page_index), ("a1", 2), "{mode:?}");
        assert_eq!((top.source_path.as_str(), top.file_sha256.as_str()), ("pdfs/a1.pdf", "sha-a1"));
        assert_eq!((top.page_count, top.page_width_pt, top.page_height_pt), (5, 595.0, 842.0));
        assert_eq!(top.preview.as_deref(), Some("previews/a1/0003.jpg"));
        let m = manifest(MODEL);
        assert_eq!(top.point_id, colqwen_core::point_id("sha-a1", 2, &m.model_id, &m.preprocessing));
        let oracle = maxsim(&query.data, &a[2].vectors, DIM);
        assert!((top.score - oracle).abs() <= 1e-3 * oracle.abs(), "score {} vs MaxSim {oracle}", top.score);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "hits sorted by score");
    }
    let only_b = index.search(&query, 10, Some("b1"), SearchMode::Auto).expect("filtered search");
    assert_eq!(only_b.len(), 5);
    assert!(only_b.iter().all(|h| h.doc_id == "b1"));
    assert!(index.search(&query, 10, Some("ffff"), SearchMode::Auto).expect("no such doc").is_empty());
    assert!(index.search(&query, 0, None, SearchMode::Auto).expect("k = 0").is_empty());
}

/// Listing: pages of a file, documents with stored/total pages (an interrupted ingest), counts and stats.
pub fn list_and_stats(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(5);
    let a = document(&mut rng, "a1", "sha-a1", 4, 8);
    let partial: Vec<_> =
        document(&mut rng, "c1", "sha-c1", 6, 8).into_iter().filter(|p| p.page_index % 2 == 0).collect();
    index.upsert([a, partial].concat()).expect("upsert");
    index.flush().expect("flush");
    assert_eq!(index.pages_of_file("sha-c1").expect("pages"), [0, 2, 4].into_iter().collect());
    assert_eq!(index.pages_of_file("sha-a1").expect("pages").len(), 4);
    assert!(index.pages_of_file("sha-none").expect("pages").is_empty());
    let docs = index.documents().expect("documents");
    let summary: Vec<_> = docs.iter().map(|d| (d.doc_id.as_str(), d.page_count, d.stored_pages)).collect();
    assert_eq!(summary, [("a1", 4, 4), ("c1", 6, 3)]);
    assert_eq!(index.page_count().expect("count"), 7);
    let stats = index.stats().expect("stats");
    assert_eq!((stats.pages, stats.documents), (7, 2));
    assert_eq!((stats.model_id.as_str(), stats.embedding_dim), (MODEL, DIM));
    assert_eq!(stats.location, index.location());
}

/// A page's stored vectors come back as written; a page not stored is `None`.
pub fn page_vectors_round_trip(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(6);
    let a = document(&mut rng, "a1", "sha-a1", 3, 20);
    index.upsert(a.clone()).expect("upsert");
    index.flush().expect("flush");
    let got = index.page_vectors("a1", 1).expect("read").expect("stored");
    assert_eq!((got.rows, got.dim), (20, DIM));
    assert_vectors_eq(&got.data, &a[1].vectors);
    assert!(index.page_vectors("a1", 3).expect("read").is_none());
    assert!(index.page_vectors("b1", 0).expect("read").is_none());
}

/// An index made by one model refuses another, and keeps its own manifest.
pub fn refuses_another_model(fresh: &Fresh) {
    {
        let index = open(fresh);
        let mut rng = Rng::new(7);
        index.upsert(document(&mut rng, "a1", "sha-a1", 1, 4)).expect("upsert");
        index.flush().expect("flush");
    }
    match (fresh.open)(&manifest("another/model@2")) {
        Err(IndexError::ManifestMismatch { field: "model_id", index, requested, .. }) => {
            assert_eq!((index.as_str(), requested.as_str()), (MODEL, "another/model@2"));
        }
        Err(other) => panic!("expected ManifestMismatch, got {other:?}"),
        Ok(_) => panic!("expected ManifestMismatch, got an index"),
    }
    let index = open(fresh);
    assert_eq!(index.manifest(), &manifest(MODEL));
    assert_eq!(index.page_count().expect("count"), 1);
}

/// Vectors of the wrong shape, NaN and a query of the wrong width are refused, not stored.
pub fn rejects_bad_input(fresh: &Fresh) {
    let index = open(fresh);
    let mut rng = Rng::new(8);
    let mut bad = document(&mut rng, "a1", "sha-a1", 1, 2);
    bad[0].vectors.pop();
    assert!(matches!(index.upsert(bad), Err(IndexError::PageVectorShape { .. })));
    let mut nan = document(&mut rng, "a1", "sha-a1", 1, 2);
    nan[0].vectors[5] = f32::NAN;
    assert!(matches!(index.upsert(nan), Err(IndexError::NonFinite { .. })));
    let query = MultiVector { rows: 1, dim: DIM - 1, data: vec![0.1; DIM - 1] };
    assert!(matches!(index.search(&query, 3, None, SearchMode::Auto), Err(IndexError::QueryShape { .. })));
    assert_eq!(index.page_count().expect("count"), 0);
}

fn assert_vectors_eq(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-7, "stored vectors differ by up to {worst}");
}

/// One `#[test]` per case of this suite, each on a fresh location from `$fresh: fn(&str) -> Option<Fresh>`
/// (the argument is a short name of the case, for a collection or folder name; `None` skips the case, for a
/// backend the developer explicitly opted out of).
#[macro_export]
macro_rules! index_suite {
    ($fresh:expr) => {
        $crate::index_suite!(@cases $fresh;
            upsert_is_idempotent, delete_document_and_file_version, search_and_document_filter, list_and_stats,
            page_vectors_round_trip, refuses_another_model, rejects_bad_input);
    };
    (@cases $fresh:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let fresh: Option<$crate::index_suite::Fresh> = ($fresh)(stringify!($case));
                let Some(fresh) = fresh else { return };
                $crate::index_suite::$case(&fresh);
            }
        )*
    };
}
