//! Token pooling at ingest against colpali-engine 0.3.18's `HierarchicalTokenPooler`, on the reference's own
//! page embeddings of the tiny fixture model. `golden/pooling.safetensors` is written by
//! `fixtures/gen/make_pooling_golden.py` (the pooler's scipy calls, transcribed).
//!
//! MaxSim does not depend on row order, and the reference orders clusters by scipy's label walk: the pooled
//! pages are compared as partitions of the rows (same clusters) and as sets of rows (same unit means).

use colqwen::store::pool;
use colqwen_testkit::Golden;

#[test]
fn pooling_matches_colpali_engine() {
    let reference = Golden::load("adapter");
    let golden = Golden::load("pooling");
    let mut cases = 0;
    for i in 0.. {
        let key = format!("image.{i:02}.embedding");
        if !reference.has(&key) {
            break;
        }
        let (page, shape) = reference.f32(&key);
        let dim = shape[1];
        for factor in [2usize, 3] {
            let what = format!("image {i:02} factor {factor}");
            let (want_rows, want_shape) = golden.f32(&format!("image.{i:02}.factor.{factor}.pooled"));
            let (want_labels, _) = golden.i64(&format!("image.{i:02}.factor.{factor}.labels"));
            let got = pool::pool(&page, dim, factor);
            assert_eq!(got.rows.len() / dim, want_shape[0], "{what}: pooled rows");
            // Same partition: rows share a cluster here exactly when they share one in the reference.
            let n = shape[0];
            for a in 0..n {
                for b in a + 1..n {
                    assert_eq!(
                        got.labels[a] == got.labels[b],
                        want_labels[a] == want_labels[b],
                        "{what}: rows {a} and {b}"
                    );
                }
            }
            // Same rows: our cluster of row r is the reference's cluster of row r.
            for r in 0..n {
                let ours = &got.rows[got.labels[r] as usize * dim..][..dim];
                let theirs = &want_rows[want_labels[r] as usize * dim..][..dim];
                for (x, y) in ours.iter().zip(theirs) {
                    assert!((x - y).abs() <= 1e-5, "{what}: row {r}: {x} vs {y}");
                }
            }
            cases += 1;
        }
    }
    assert!(cases >= 10, "only {cases} cases in the goldens");
}
