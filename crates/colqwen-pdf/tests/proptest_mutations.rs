//! Property tests: structured mutations of the sample PDFs (byte flips, truncation,
//! insertions of PDF tokens, all placed around object boundaries, xref entries and
//! dictionary keys) are opened and page 0 is rendered with the contained renderer. No
//! panic may escape, opening must not take long, each render must return within its
//! budget, an Ok document must have pages, and every error must name the file.
//!
//! Default: 200 cases (a few seconds). Longer runs by hand:
//! `PROPTEST_CASES=5000 cargo test --release -p colqwen-pdf --test proptest_mutations -- --nocapture`

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, Error, RenderLimits, render_contained, render_size};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Time budget of one contained render in these tests.
const BUDGET: Duration = Duration::from_secs(10);
/// Opening is not contained; it must stay fast anyway.
const OPEN_BUDGET: Duration = Duration::from_secs(10);

/// Sample PDFs with the offsets where mutations are aimed (object headers, `endobj`,
/// `stream`, `xref`, `trailer`, `/Type`, `/Kids`, `/MediaBox`, `/Contents`, `/Length`,
/// `/Annots`, `/Filter`).
struct Sample {
    name: String,
    bytes: Vec<u8>,
    anchors: Vec<usize>,
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        common::corpus()
            .into_iter()
            .filter(|p| std::fs::metadata(p).map(|m| m.len() < 300_000).unwrap_or(false))
            .map(|p| {
                let bytes = std::fs::read(&p).expect("sample readable");
                let needles: [&[u8]; 13] = [
                    b" obj",
                    b"endobj",
                    b"stream",
                    b"xref",
                    b"trailer",
                    b"/Type",
                    b"/Kids",
                    b"/MediaBox",
                    b"/Contents",
                    b"/Length",
                    b"/Annots",
                    b"/Filter",
                    b"R ",
                ];
                let mut anchors: Vec<usize> = needles
                    .iter()
                    .flat_map(|n| bytes.windows(n.len()).enumerate().filter(move |(_, w)| w == n).map(|(i, _)| i))
                    .collect();
                anchors.sort_unstable();
                anchors.push(0);
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("sample.pdf").to_owned();
                Sample { name, bytes, anchors }
            })
            .collect()
    })
}

/// PDF tokens that stress the parser and renderer when inserted.
const TOKENS: &[&[u8]] = &[
    b"<<",
    b">>",
    b"[",
    b"]",
    b"(",
    b")",
    b" 0 R",
    b" obj",
    b"endobj",
    b"stream\n",
    b"endstream",
    b"%%EOF",
    b"/Type /Pages",
    b"/Type /Page",
    b"/Kids [ ]",
    b"/MediaBox [0 0 1 100000]",
    b"/MediaBox [0 0 1e9 1e9]",
    b"/Length 999999999",
    b"/Width 65535 /Height 65535",
    b"/Filter /FlateDecode",
    b"/Filter /LZWDecode",
    b"/Rotate 45",
    b"/Count 0",
    b"-1",
    b"99999999999",
    b"\0",
    b"\xff\xfe",
    b"xref\n0 1\n",
    b"q",
    b"Q",
    b"BI",
];

/// One mutation, positions as fractions so they apply to any sample.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte near an anchor (anchor index, offset from it, mask).
    Flip(usize, u8, u8),
    /// Insert a token near an anchor.
    Insert(usize, u8, usize),
    /// Delete a few bytes near an anchor.
    Delete(usize, u8, u8),
    /// Keep only the first `n`/1000 of the file.
    Truncate(u16),
    /// Append bytes after the end (after %%EOF).
    Append(usize),
    /// Duplicate a block around an anchor.
    Duplicate(usize, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>(), 1u8..=255).prop_map(|(a, o, m)| Mutation::Flip(a, o, m)),
        3 => (any::<usize>(), any::<u8>(), 0..TOKENS.len()).prop_map(|(a, o, t)| Mutation::Insert(a, o, t)),
        2 => (any::<usize>(), any::<u8>(), 1u8..16).prop_map(|(a, o, n)| Mutation::Delete(a, o, n)),
        1 => (1u16..1000).prop_map(Mutation::Truncate),
        1 => (0..TOKENS.len()).prop_map(Mutation::Append),
        1 => (any::<usize>(), 1u16..4096).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn apply(s: &Sample, muts: &[Mutation]) -> Vec<u8> {
    let mut b = s.bytes.clone();
    for m in muts {
        let at = |a: usize, o: u8, len: usize| (s.anchors[a % s.anchors.len()] + usize::from(o)).min(len);
        match *m {
            Mutation::Flip(a, o, mask) => {
                let i = at(a, o, b.len().saturating_sub(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= mask;
                }
            }
            Mutation::Insert(a, o, t) => {
                let i = at(a, o, b.len());
                b.splice(i..i, TOKENS[t].iter().copied());
            }
            Mutation::Delete(a, o, n) => {
                let i = at(a, o, b.len());
                let end = (i + usize::from(n)).min(b.len());
                b.drain(i..end);
            }
            Mutation::Truncate(n) => b.truncate(b.len() * usize::from(n) / 1000),
            Mutation::Append(t) => b.extend_from_slice(TOKENS[t]),
            Mutation::Duplicate(a, n) => {
                let i = at(a, 0, b.len());
                let end = (i + usize::from(n)).min(b.len());
                let block = b[i..end].to_vec();
                b.splice(i..i, block);
            }
        }
    }
    b
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// Open and render page 0 contained; Err(description) if a property fails.
fn check(name: &str, bytes: Vec<u8>) -> Result<(), String> {
    let limits = RenderLimits { time_budget: BUDGET, max_hung_renders: 1000, ..RenderLimits::default() };
    let t = Instant::now();
    let opened = std::panic::catch_unwind(|| Document::from_bytes(bytes, None, name));
    let open_time = t.elapsed();
    let opened = opened.map_err(|_| format!("{name}: Document::from_bytes panicked"))?;
    if open_time > OPEN_BUDGET {
        return Err(format!("{name}: opening took {open_time:?}"));
    }
    let doc = match opened {
        Ok(doc) => Arc::new(doc),
        Err(e) => {
            return if e.to_string().contains(name) {
                Ok(())
            } else {
                Err(format!("error does not name the file: {e}"))
            };
        }
    };
    if doc.page_count() == 0 {
        return Err(format!("{name}: opened with 0 pages"));
    }
    let size = doc.page_size_pt(0).map_err(|e| format!("{name}: page_size_pt: {e}"))?;
    let (w, h) = render_size(size, common::TARGET_PIXELS, &limits);
    let t = Instant::now();
    let r = render_contained(&doc, 0, w, h, &limits);
    let took = t.elapsed();
    if took > BUDGET + Duration::from_secs(2) {
        return Err(format!("{name}: render returned after {took:?}"));
    }
    match r {
        Ok(img) if img.width() == w && img.height() == h => Ok(()),
        Ok(img) => Err(format!("{name}: wrong size {}x{} for {w}x{h}", img.width(), img.height())),
        // A contained panic or timeout is not a test failure of the containment, but it is
        // a finding: report it so a long run lists them.
        Err(e @ (Error::RenderPanicked { .. } | Error::RenderTimeout { .. })) => Err(format!("FINDING {e}")),
        Err(e) if e.to_string().contains(name) => Ok(()),
        Err(e) => Err(format!("error does not name the file: {e}")),
    }
}

#[test]
fn mutated_samples_open_and_render_within_budget() {
    let n = samples().len();
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let start = Instant::now();
    let strategy = (0..n, prop::collection::vec(mutation(), 1..6));
    let result = runner.run(&strategy, |(si, muts)| {
        let s = &samples()[si];
        let bytes = apply(s, &muts);
        let name = format!("mutated-{}", s.name);
        check(&name, bytes).map_err(|e| TestCaseError::fail(format!("{e}; mutations {muts:?}")))
    });
    println!("{} cases in {:?}", cases(), start.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}
