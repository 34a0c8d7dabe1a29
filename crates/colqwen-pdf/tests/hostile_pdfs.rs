//! Real (hand-made, tiny) PDFs that make hayro 0.9.0 hang or abort, and how
//! render_contained handles them. See fixtures/bad-pdfs/README.md.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, Error, RenderLimits, hung_renders, render_contained, render_size};
use common::{TARGET_PIXELS, fixture};

/// form-fanout-hang.pdf: 40 nested forms each drawing the next twice = 2^40 fills.
/// hayro's nesting limit (50) does not stop it; the render effectively never ends.
#[test]
fn endless_render_becomes_render_timeout() {
    let doc = Arc::new(Document::open(&fixture("bad-pdfs/form-fanout-hang.pdf"), None).unwrap());
    assert_eq!(doc.page_count(), 1);
    let limits = RenderLimits { time_budget: Duration::from_secs(2), ..RenderLimits::default() };
    let (w, h) = render_size(doc.page_size_pt(0).unwrap(), TARGET_PIXELS, &limits);
    let before = hung_renders();
    let start = Instant::now();
    let err = render_contained(&doc, 0, w, h, &limits).unwrap_err();
    let waited = start.elapsed();
    assert!(
        matches!(err, Error::RenderTimeout { page_index: 0, budget, .. } if budget == Duration::from_secs(2)),
        "{err:?}"
    );
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(4), "{waited:?}");
    // The worker cannot be killed: it is detached and still running.
    assert_eq!(hung_renders(), before + 1);
    println!("{err}");
}

/// huge-image-declared.pdf: a 2e9 x 2e9 px 1-bit image with 2 bytes of data. hayro
/// would allocate w*h bytes first and the process would abort ("memory allocation of
/// 4000000000000000000 bytes failed"); the pre-render scan refuses the page instead.
#[test]
fn absurd_image_is_refused_before_rendering() {
    let doc = Arc::new(Document::open(&fixture("bad-pdfs/huge-image-declared.pdf"), None).unwrap());
    let limits = RenderLimits::default();
    let err = render_contained(&doc, 0, 612, 792, &limits).unwrap_err();
    assert!(
        matches!(err, Error::ImageTooLarge { page_index: 0, width_px: 2_000_000_000, height_px: 2_000_000_000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("huge-image-declared.pdf"));
    println!("{err}");
}

/// The image scan does not refuse real pages, including the scans.
#[test]
fn image_scan_accepts_every_corpus_page() {
    let limits = RenderLimits::default();
    for path in common::corpus() {
        let doc = Arc::new(Document::open(&path, None).unwrap());
        for i in 0..doc.page_count() {
            let (w, h) = render_size(doc.page_size_pt(i).unwrap(), TARGET_PIXELS, &limits);
            render_contained(&doc, i, w, h, &limits).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A limit below the scanned page's image size refuses it (the scan sees the JBIG2 image).
#[test]
fn image_limit_applies_to_scans() {
    let doc = Arc::new(Document::open(&fixture("pdfs/linnsequencer-brochure_scanned.pdf"), None).unwrap());
    let limits = RenderLimits { max_image_pixels: 1_000_000, ..RenderLimits::default() };
    let err = render_contained(&doc, 0, 306, 396, &limits).unwrap_err();
    assert!(matches!(err, Error::ImageTooLarge { .. }), "{err:?}");
    println!("{err}");
}

/// dash-memory-bomb.pdf: a 141421-unit line with a 0.000001 dash. hayro would build
/// one outline per dash (~1.4e11) and run out of memory; the scan refuses the page.
#[test]
fn fine_dash_is_refused_before_rendering() {
    let doc = Arc::new(Document::open(&fixture("bad-pdfs/dash-memory-bomb.pdf"), None).unwrap());
    let err = render_contained(&doc, 0, 729, 943, &RenderLimits::default()).unwrap_err();
    match &err {
        Error::TooManyDashes { page_index: 0, dash_segments, max_dash_segments: 2_000_000, .. } => {
            assert!(*dash_segments > 100_000_000_000, "{dash_segments}");
        }
        other => panic!("expected TooManyDashes, got {other:?}"),
    }
    println!("{err}");
}

/// alpha-overflow-panic.pdf: 300000 long thin strokes (via nested forms) overflow
/// vello_common's 31-bit coverage index: hayro panics with "`alpha_idx` too large"
/// (vello_common-0.3.0/src/strip.rs:205) after ~9 s and ~2.7 GB of RAM. This is the
/// real-input test of RenderPanicked; ignored by default because of its cost
/// (run with `cargo test --release -- --ignored`). tests/contain.rs covers the same
/// containment cheaply through the closure seam.
#[test]
#[ignore = "needs ~3 GB RAM and ~10 s of CPU"]
fn renderer_panic_becomes_render_panicked() {
    let doc = Arc::new(Document::open(&fixture("bad-pdfs/alpha-overflow-panic.pdf"), None).unwrap());
    let limits = RenderLimits { time_budget: Duration::from_secs(120), ..RenderLimits::default() };
    let (w, h) = render_size(doc.page_size_pt(0).unwrap(), TARGET_PIXELS, &limits);
    let err = render_contained(&doc, 0, w, h, &limits).unwrap_err();
    match &err {
        Error::RenderPanicked { page_index: 0, message, .. } => {
            assert!(message.contains("alpha_idx"), "{message}");
        }
        other => panic!("expected RenderPanicked, got {other:?}"),
    }
    println!("{err}");
    // The document stays usable after the panic.
    assert_eq!(doc.page_count(), 1);
}
