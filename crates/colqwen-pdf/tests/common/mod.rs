#![allow(dead_code)]
//! Shared helpers for the integration tests.

use std::path::PathBuf;

use image::RgbImage;

pub(crate) const TARGET_PIXELS: u64 = 602_112; // 768 tokens x 28²

pub(crate) fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

pub(crate) fn corpus() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture("pdfs"))
        .expect("fixtures/pdfs exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 6, "expected the 6 corpus PDFs in fixtures/pdfs");
    v
}

/// Pixels that are not pure white.
pub(crate) fn non_white(img: &RgbImage) -> usize {
    img.pixels().filter(|p| p.0 != [255, 255, 255]).count()
}

/// Fraction of pixels with luma below 128.
pub(crate) fn dark_fraction(img: &RgbImage) -> f64 {
    let dark = img
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000 < 128
        })
        .count();
    dark as f64 / (f64::from(img.width()) * f64::from(img.height()))
}
