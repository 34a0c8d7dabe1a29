//! Every page of the real corpus renders, to the requested size, with content.

mod common;

use std::sync::Arc;

use colqwen_pdf::{Document, RenderLimits, render_contained, render_size};
use common::{TARGET_PIXELS, corpus, dark_fraction, fixture, non_white};

#[test]
fn every_corpus_page_renders_to_the_requested_size_with_content() {
    let limits = RenderLimits::default();
    let mut total_pages = 0;
    for path in corpus() {
        let doc = Document::open(&path, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.page_count() > 0, "{}", path.display());
        for page_index in 0..doc.page_count() {
            let size = doc.page_size_pt(page_index).unwrap();
            let (w, h) = render_size(size, TARGET_PIXELS, &limits);
            let img = doc.render_page(page_index, w, h).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(img.dimensions(), (w, h), "{} p{page_index}", path.display());
            assert!(non_white(&img) > 100, "{} page {page_index} is blank", path.display());
            total_pages += 1;
        }
    }
    assert_eq!(total_pages, 148, "the corpus has 148 pages");
}

#[test]
fn broken_xref_manual_is_recovered_with_all_134_pages() {
    let path = fixture("pdfs/reportlab-userguide_broken-xref.pdf");
    let doc = Document::open(&path, None).unwrap();
    assert_eq!(doc.page_count(), 134);
    for page_index in [0, 1, 67, 133] {
        let (w, h) = (300, 424);
        let img = doc.render_page(page_index, w, h).unwrap();
        assert!(non_white(&img) > 100, "page {page_index}");
    }
}

#[test]
fn page_sizes_are_sensible() {
    let expect: &[(&str, usize, (f32, f32))] = &[
        ("cplusplus-annotations_p125_table.pdf", 1, (595.0, 842.0)),
        ("gutenprint-users-manual_p5-14_text.pdf", 10, (612.0, 792.0)),
        ("linnsequencer-brochure_scanned.pdf", 1, (612.0, 792.0)),
        ("reportlab-userguide_broken-xref.pdf", 134, (595.276, 841.89)),
        ("siscone-refman_p60_diagram.pdf", 1, (595.0, 842.0)),
        ("wikipedia-ocr-printout_epson-scan_unusual.pdf", 1, (595.0, 841.0)),
    ];
    for (name, pages, (ew, eh)) in expect {
        let doc = Document::open(&fixture(&format!("pdfs/{name}")), None).unwrap();
        assert_eq!(doc.page_count(), *pages, "{name}");
        for i in 0..doc.page_count() {
            let (w, h) = doc.page_size_pt(i).unwrap();
            // pdfinfo rounds to whole points for some files.
            assert!((w - ew).abs() < 1.0 && (h - eh).abs() < 1.0, "{name} p{i}: {w}x{h}");
        }
    }
}

#[test]
fn scanned_jbig2_and_ccitt_pages_render_with_content() {
    for name in ["linnsequencer-brochure_scanned.pdf", "wikipedia-ocr-printout_epson-scan_unusual.pdf"] {
        let doc = Document::open(&fixture(&format!("pdfs/{name}")), None).unwrap();
        let (w, h) = render_size(doc.page_size_pt(0).unwrap(), TARGET_PIXELS, &RenderLimits::default());
        let img = doc.render_page(0, w, h).unwrap();
        let dark = dark_fraction(&img);
        // A text scan is a few percent to a few tens of percent ink; blank would be 0,
        // an image decoded as all-black would be ~1.
        assert!((0.01..0.6).contains(&dark), "{name}: dark fraction {dark}");
    }
}

#[test]
fn rotated_page_reports_displayed_size_and_renders_rotated() {
    let upright = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    let rotated = Document::open(&fixture("bad-pdfs/rotated-90.pdf"), None).unwrap();
    assert_eq!(upright.page_size_pt(0).unwrap(), (595.0, 842.0));
    assert_eq!(rotated.page_size_pt(0).unwrap(), (842.0, 595.0));

    let (w, h) = (298, 421);
    let a = upright.render_page(0, w, h).unwrap();
    let b = rotated.render_page(0, h, w).unwrap();
    // /Rotate 90 turns the page clockwise for display.
    let a_cw = image::imageops::rotate90(&a);
    assert_eq!(a_cw.dimensions(), b.dimensions());
    let diff: u64 = a_cw.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    let mae = diff as f64 / a_cw.as_raw().len() as f64;
    assert!(mae < 3.0, "rotated render differs from upright render turned clockwise: MAE {mae}");
}

#[test]
fn render_is_exactly_the_requested_size_even_when_distorting() {
    let doc = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    for (w, h) in [(1, 1), (7, 300), (300, 7), (1000, 100)] {
        assert_eq!(doc.render_page(0, w, h).unwrap().dimensions(), (w, h));
    }
}

#[test]
fn one_document_renders_pages_from_several_threads() {
    let doc = Arc::new(Document::open(&fixture("pdfs/gutenprint-users-manual_p5-14_text.pdf"), None).unwrap());
    let (w, h) = (306, 396);
    let serial: Vec<_> = (0..doc.page_count()).map(|i| doc.render_page(i, w, h).unwrap()).collect();
    let parallel: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..doc.page_count())
            .map(|i| {
                let doc = &doc;
                s.spawn(move || doc.render_page(i, w, h).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in serial.iter().zip(&parallel).enumerate() {
        assert!(a == b, "page {i}: parallel render differs from serial render");
    }
}

#[test]
fn contained_render_matches_direct_render() {
    let doc = Arc::new(Document::open(&fixture("pdfs/cplusplus-annotations_p125_table.pdf"), None).unwrap());
    let limits = RenderLimits::default();
    let direct = doc.render_page(0, 400, 566).unwrap();
    let contained = render_contained(&doc, 0, 400, 566, &limits).unwrap();
    assert!(direct == contained);
}

#[test]
fn preview_is_a_small_jpeg() {
    let doc = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    let img = doc.render_page(0, 651, 921).unwrap();
    let jpeg = colqwen_pdf::encode_preview(&img, 256, 80).unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
    assert!(jpeg.len() < 40_000, "{} bytes", jpeg.len());
    let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (181, 256));
}

#[test]
fn page_renderer_matches_render_page_across_pages_and_sizes() {
    let limits = RenderLimits::default();
    for path in corpus() {
        let doc = Document::open(&path, None).unwrap();
        let mut renderer = doc.renderer();
        // Pages out of order and at alternating sizes, to exercise the reused buffers.
        let mut order: Vec<usize> = (0..doc.page_count()).rev().collect();
        order.extend(0..doc.page_count().min(3));
        for (k, &i) in order.iter().enumerate() {
            let (mut w, mut h) = render_size(doc.page_size_pt(i).unwrap(), TARGET_PIXELS, &limits);
            if k % 2 == 1 {
                (w, h) = (w / 2, h / 2);
            }
            let a = renderer.render_page(i, w, h).unwrap();
            let b = doc.render_page(i, w, h).unwrap();
            let diff = a.as_raw().iter().zip(b.as_raw()).filter(|(x, y)| x != y).count();
            assert!(diff == 0, "{} page {i} at {w}x{h}: {diff} bytes differ", path.display());
        }
    }
}
