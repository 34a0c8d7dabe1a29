//! Top-10 from Weaviate against exact MaxSim on the same embeddings (its HNSW over multi-vectors is
//! approximate), with and without MUVERA, on the node under test (`colqwen_testkit::weaviate::server`). Synthetic
//! clustered pages; queries are noisy copies of rows of one page, so each has a clear best page and a
//! ranked tail. Prints the recall; asserts floors that a broken search (wrong vectors, wrong score sign,
//! filter mix-ups) cannot reach.

mod common;

use colqwen_core::{MultiVector, PageIndex, SearchMode, maxsim};
use colqwen_testkit::synth::{DIM, Rng, document, manifest, planted_query};
use colqwen_weaviate::Weaviate;

const PAGES_PER_DOC: usize = 10;
const DOCS: usize = 40;
const ROWS: usize = 48;
const QUERIES: usize = 20;

fn recall_at_10(muvera: bool) -> Option<(f64, f64)> {
    let addr = common::server()?;
    let mut config = common::config(&addr, &common::collection(if muvera { "recall_muvera" } else { "recall_hnsw" }));
    config.muvera = muvera;
    let _drop = common::DropCollection(config.clone());
    let index = Weaviate::open_or_create(&config, &manifest("recall/model@1")).expect("open");
    let mut rng = Rng::new(21);
    let mut pages = Vec::new();
    for d in 0..DOCS {
        pages.extend(document(&mut rng, &format!("{d:04x}"), &format!("sha-{d}"), PAGES_PER_DOC, ROWS));
    }
    index.upsert(pages.clone()).expect("upsert");
    let (mut recall, mut top1) = (0.0, 0.0);
    for q in 0..QUERIES {
        let target = &pages[(q * 37) % pages.len()];
        let query = planted_query(&mut rng, &target.vectors, 16, 1.5);
        let mut exact: Vec<(f32, usize)> =
            pages.iter().enumerate().map(|(i, p)| (maxsim(&query, &p.vectors, DIM), i)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<(String, usize)> =
            exact[..10].iter().map(|&(_, i)| (pages[i].doc_id.clone(), pages[i].page_index)).collect();
        let hits =
            index.search(&MultiVector::new(query, DIM).expect("query"), 10, None, SearchMode::Auto).expect("search");
        let got: Vec<(String, usize)> = hits.iter().map(|h| (h.doc_id.clone(), h.page_index)).collect();
        recall += got.iter().filter(|g| want.contains(g)).count() as f64 / 10.0;
        top1 += f64::from(u8::from(got.first() == want.first()));
    }
    Some((recall / QUERIES as f64, top1 / QUERIES as f64))
}

#[test]
fn recall_without_muvera() {
    let Some((recall, top1)) = recall_at_10(false) else { return };
    eprintln!("Weaviate HNSW multivector (no MUVERA): recall@10 {recall:.3}, top-1 {top1:.3}");
    assert!(recall >= 0.95 && top1 >= 0.95, "recall@10 {recall}, top-1 {top1}");
}

#[test]
fn recall_with_muvera() {
    let Some((recall, top1)) = recall_at_10(true) else { return };
    eprintln!("Weaviate HNSW over MUVERA encodings: recall@10 {recall:.3}, top-1 {top1:.3}");
    assert!(recall >= 0.85 && top1 >= 0.9, "recall@10 {recall}, top-1 {top1}");
}
