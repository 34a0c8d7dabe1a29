//! The binary insert path (gRPC `BatchObjects` over Connect) against the JSON one: the same pages written both
//! ways into two collections read back and search identically, and equal to what was written.

mod common;

use colqwen_core::{MultiVector, PageIndex, PageRecord, SearchMode};
use colqwen_testkit::synth::{DIM, Rng, document, manifest, planted_query};
use colqwen_weaviate::{InsertPath, Weaviate};

fn pages() -> Vec<PageRecord> {
    let mut rng = Rng::new(41);
    let mut pages = document(&mut rng, "doc-a", &"a".repeat(64), 5, 24);
    pages.extend(document(&mut rng, "doc-b", &"b".repeat(64), 2, 7));
    // Values the decimal and binary paths could store differently: widths with no exact f32, a tiny and a
    // negative vector component, a page without a preview path.
    pages[1].page_width_pt = 595.3;
    pages[1].page_height_pt = 841.89;
    pages[2].vectors[0] = -1.0e-30;
    pages[2].vectors[1] = f32::MIN_POSITIVE;
    pages[2].vectors[2] = 0.333_333_34;
    pages[3].preview = None;
    pages
}

#[test]
fn binary_and_json_inserts_agree() {
    let Some(addr) = common::server() else { return };
    let m = manifest("test/insert-paths@1");
    let open = |insert: InsertPath, writers: usize| {
        let mut config = common::config(&addr, &common::collection(&format!("paths_{insert:?}")));
        config.insert = insert;
        config.writers = writers;
        let guard = common::DropCollection(config.clone());
        (Weaviate::open_or_create(&config, &m).expect("open"), guard)
    };
    // Three writers on the binary side: 7 pages go as requests of 3, 3 and 1 pages at once.
    let (binary, _g1) = open(InsertPath::Binary, 3);
    let (json, _g2) = open(InsertPath::Json, 1);
    let written = pages();
    for index in [&binary, &json] {
        index.stage_preview("doc-a", 4, vec![0xff, 0xd8, 0, 1, 2, 0xff, 0xd9]).expect("stage");
        index.upsert(written.clone()).expect("upsert");
        index.wait_indexed(std::time::Duration::from_secs(60)).expect("indexed");
    }
    assert!(binary.inserts_binary(), "the server under test (1.39) has the binary path; it was not taken");
    assert!(!json.inserts_binary());

    for p in &written {
        let b = binary.page_vectors(&p.doc_id, p.page_index).expect("read").expect("stored");
        let j = json.page_vectors(&p.doc_id, p.page_index).expect("read").expect("stored");
        assert_eq!(
            b.data, p.vectors,
            "binary-inserted page {} of {} differs from what was sent",
            p.page_index, p.doc_id
        );
        assert_eq!(j.data, p.vectors, "JSON-inserted page {} of {} differs from what was sent", p.page_index, p.doc_id);
    }
    for index in [&binary, &json] {
        assert_eq!(index.preview("doc-a", 4).expect("preview"), Some(vec![0xff, 0xd8, 0, 1, 2, 0xff, 0xd9]));
        assert_eq!(index.preview("doc-a", 3).expect("preview"), None);
        assert_eq!(index.page_count().expect("count"), written.len());
    }
    assert_eq!(binary.documents().expect("docs"), json.documents().expect("docs"));

    let mut rng = Rng::new(5);
    for target in [&written[1], &written[3], &written[6]] {
        let q = MultiVector::new(planted_query(&mut rng, &target.vectors, 4, 0.5), DIM).expect("query");
        let b = binary.search(&q, 7, None, SearchMode::Exact).expect("search");
        let j = json.search(&q, 7, None, SearchMode::Exact).expect("search");
        assert_eq!(b, j, "the same pages written two ways answer differently");
        let top = &b[0];
        assert_eq!((top.doc_id.as_str(), top.page_index), (target.doc_id.as_str(), target.page_index));
        assert_eq!((top.page_width_pt, top.page_height_pt), (target.page_width_pt, target.page_height_pt));
        assert_eq!(top.preview, target.preview);
    }

    // Writing the same pages again (binary) replaces them: the ids are the same, nothing is added.
    binary.upsert(written.clone()).expect("upsert again");
    assert_eq!(binary.page_count().expect("count"), written.len());
}
