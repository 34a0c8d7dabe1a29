//! render_contained / contain turn panics into RenderPanicked and hangs into
//! RenderTimeout.
//!
//! Real PDFs that make hayro 0.9.0 hang and panic are tested in hostile_pdfs.rs (the
//! panic one is #[ignore]d: ~3 GB, ~10 s). Here the containment is tested cheaply
//! through its closure seam, `contain`, with closures that panic or sleep, including the
//! cap on hung renders. These steps share the process-wide hung-render counter, so they
//! run in one test function, in order.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, Error, RenderLimits, contain, hung_renders, render_contained};
use common::fixture;
use image::RgbImage;

#[test]
fn containment() {
    let path = fixture("pdfs/siscone-refman_p60_diagram.pdf");
    let limits =
        RenderLimits { time_budget: Duration::from_millis(300), max_hung_renders: 2, ..RenderLimits::default() };

    // 1. A panic becomes RenderPanicked with the message. Its own, generous budget: printing a panic with a
    // backtrace (RUST_BACKTRACE) can take longer than 300 ms on a loaded machine.
    let panic_limits = RenderLimits { time_budget: Duration::from_secs(30), ..limits.clone() };
    let err = contain(&path, 3, &panic_limits, || panic!("boom in page 3")).unwrap_err();
    match &err {
        Error::RenderPanicked { page_index: 3, message, .. } => assert_eq!(message, "boom in page 3"),
        other => panic!("expected RenderPanicked, got {other:?}"),
    }
    assert!(err.to_string().contains("siscone-refman_p60_diagram.pdf"));
    println!("{err}");
    let err = contain(&path, 4, &panic_limits, || panic!("formatted {}", 42)).unwrap_err();
    assert!(matches!(&err, Error::RenderPanicked { message, .. } if message == "formatted 42"));

    // 2. A render that takes too long becomes RenderTimeout, promptly.
    assert_eq!(hung_renders(), 0);
    let start = Instant::now();
    let err = contain(&path, 7, &limits, || {
        std::thread::sleep(Duration::from_millis(1500));
        Ok(RgbImage::new(1, 1))
    })
    .unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(1200), "{:?}", start.elapsed());
    assert!(
        matches!(err, Error::RenderTimeout { page_index: 7, budget, .. } if budget == limits.time_budget),
        "{err:?}"
    );
    println!("{err}");
    assert_eq!(hung_renders(), 1);

    // 3. A second hang reaches the cap; the next call is refused without starting.
    let err = contain(&path, 8, &limits, || {
        std::thread::sleep(Duration::from_millis(1500));
        Ok(RgbImage::new(1, 1))
    })
    .unwrap_err();
    assert!(matches!(err, Error::RenderTimeout { .. }), "{err:?}");
    assert_eq!(hung_renders(), 2);
    let err = contain(&path, 9, &limits, || Ok(RgbImage::new(1, 1))).unwrap_err();
    assert!(matches!(err, Error::TooManyHungRenders { hung: 2, .. }), "{err:?}");
    println!("{err}");

    // 4. When the detached renders end, the counter drops and renders work again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hung_renders() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hung_renders(), 0);
    let img = contain(&path, 9, &limits, || Ok(RgbImage::new(2, 3))).unwrap();
    assert_eq!(img.dimensions(), (2, 3));

    // 5. An error from the closure passes through unchanged.
    let err = contain(&path, 0, &limits, || Err(Error::Empty { path: "x.pdf".into() })).unwrap_err();
    assert!(matches!(err, Error::Empty { .. }));

    // 6. The real thing: render_contained renders a page, and enforces max_pixels.
    let doc = Arc::new(Document::open(&path, None).unwrap());
    let img = render_contained(&doc, 0, 298, 421, &limits).unwrap();
    assert_eq!(img.dimensions(), (298, 421));
    let small = RenderLimits { max_pixels: 10_000, ..limits.clone() };
    let err = render_contained(&doc, 0, 298, 421, &small).unwrap_err();
    assert!(matches!(err, Error::PageTooLarge { max_pixels: 10_000, .. }), "{err:?}");
    println!("{err}");
    let err = render_contained(&doc, 1, 298, 421, &limits).unwrap_err();
    assert!(matches!(err, Error::PageOutOfRange { .. }), "{err:?}");
}
