//! render_size never yields a size that Qwen2.5-VL's smart_resize would upsample.

mod common;

use colqwen_pdf::{Document, MAX_SIDE_PX, RenderLimits, render_size};
use common::{TARGET_PIXELS, corpus};

const FACTOR: f64 = 28.0;

/// Python's round(): half to even.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 { 2.0 * (x / 2.0).round() } else { r }
}

/// Qwen2.5-VL `smart_resize(height, width, factor=28, min_pixels, max_pixels)`.
fn smart_resize(h: f64, w: f64, min_pixels: f64, max_pixels: f64) -> (f64, f64) {
    let mut h_bar = FACTOR.max(round_half_even(h / FACTOR) * FACTOR);
    let mut w_bar = FACTOR.max(round_half_even(w / FACTOR) * FACTOR);
    if h_bar * w_bar > max_pixels {
        let beta = (h * w / max_pixels).sqrt();
        h_bar = FACTOR.max((h / beta / FACTOR).floor() * FACTOR);
        w_bar = FACTOR.max((w / beta / FACTOR).floor() * FACTOR);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels / (h * w)).sqrt();
        h_bar = (h * beta / FACTOR).ceil() * FACTOR;
        w_bar = (w * beta / FACTOR).ceil() * FACTOR;
    }
    (h_bar, w_bar)
}

fn check(page_pt: (f32, f32), target: u64, limits: &RenderLimits) {
    let (w, h) = render_size(page_pt, target, limits);
    assert!(w >= 1 && h >= 1 && w <= MAX_SIDE_PX && h <= MAX_SIDE_PX);
    assert!(u64::from(w) * u64::from(h) <= limits.max_pixels, "{page_pt:?} -> {w}x{h}");
    assert!(u64::from(w) * u64::from(h) >= target, "{page_pt:?} -> {w}x{h} < {target}");
    let (h_bar, w_bar) = smart_resize(f64::from(h), f64::from(w), 3136.0, target as f64);
    assert!(
        h_bar <= f64::from(h) && w_bar <= f64::from(w),
        "{page_pt:?} -> render {w}x{h} but smart_resize gives {w_bar}x{h_bar} (upsampling)"
    );
    let aspect_page = f64::from(page_pt.0) / f64::from(page_pt.1);
    let aspect_px = f64::from(w) / f64::from(h);
    assert!((aspect_px / aspect_page - 1.0).abs() < 0.01, "{page_pt:?} -> {w}x{h}");
}

#[test]
fn common_page_sizes_only_downsample() {
    let limits = RenderLimits::default();
    let sizes = [
        (595.0, 842.0), // A4
        (842.0, 595.0), // A4 landscape
        (612.0, 792.0), // letter
        (792.0, 612.0),
        (612.0, 1008.0),  // legal
        (420.0, 595.0),   // A5
        (297.64, 419.53), // A6
        (252.0, 144.0),   // business card
        (72.0, 72.0),     // 1 inch square
        (10.0, 10.0),     // tiny
        (2384.0, 3370.0), // A0 poster
        (8400.0, 8400.0), // huge scan page
        (595.0, 5000.0),  // long receipt
        (5000.0, 300.0),  // banner
        (842.0, 1191.0),  // A3
        (1224.0, 792.0),  // tabloid landscape
    ];
    for target in [602_112, 100_352, 1_003_520, 12_845_056] {
        for s in sizes {
            check(s, target, &limits);
        }
    }
}

#[test]
fn every_corpus_page_only_downsamples() {
    let limits = RenderLimits::default();
    for path in corpus() {
        let doc = Document::open(&path, None).unwrap();
        for i in 0..doc.page_count() {
            check(doc.page_size_pt(i).unwrap(), TARGET_PIXELS, &limits);
        }
    }
}

#[test]
fn a4_and_letter_sizes() {
    let l = RenderLimits::default();
    // about 1.25 x 602112 = 752640 px
    assert_eq!(render_size((595.0, 842.0), TARGET_PIXELS, &l), (729, 1032));
    assert_eq!(render_size((612.0, 792.0), TARGET_PIXELS, &l), (763, 987));
}

#[test]
fn min_dpi_applies_to_large_pages_and_max_pixels_caps() {
    let l = RenderLimits::default();
    // A0 at 72 dpi = 2384x3370 = 8.0 Mpx (more than 1.25 x target, within 16.7 Mpx).
    assert_eq!(render_size((2384.0, 3370.0), TARGET_PIXELS, &l), (2384, 3370));
    // 8400 pt square at 72 dpi would be 70 Mpx: capped at 4096².
    let (w, h) = render_size((8400.0, 8400.0), TARGET_PIXELS, &l);
    assert_eq!((w, h), (4096, 4096));
}
