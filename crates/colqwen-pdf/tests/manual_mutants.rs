//! Mutants of the 134-page manual (`fixtures/pdfs/reportlab-userguide_broken-xref.pdf`, whose broken
//! cross-reference table makes every reader rebuild it by scanning the objects) built in memory: the byte
//! flips and cuts of issue 22 that lost pages in silence or stored none. Every page is found, or the file
//! is named with both counts; a truncated file keeps the pages whose objects all came before the cut.

mod common;

use std::sync::Arc;

use colqwen_pdf::{Document, Error, RenderLimits, render_contained, render_size};
use common::{TARGET_PIXELS, fixture, non_white};

const MANUAL: &str = "pdfs/reportlab-userguide_broken-xref.pdf";
const MANUAL_PAGES: usize = 134;

fn manual() -> Vec<u8> {
    std::fs::read(fixture(MANUAL)).expect("the manual is committed")
}

/// `(start, end)` of every page object (`N 0 obj` … up to its `endobj`, typed `/Page`) of the manual, which
/// writes `endobj\nN 0 obj`.
fn page_objects(pdf: &[u8]) -> Vec<(usize, usize)> {
    let find =
        |from: usize, needle: &[u8]| pdf[from..].windows(needle.len()).position(|w| w == needle).map(|k| from + k);
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(obj) = find(at, b" 0 obj") {
        let start = pdf[..obj].iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
        let end = find(obj, b"endobj").unwrap_or(pdf.len());
        let body = &pdf[obj..end];
        let typed_page = |t: &[u8]| body.windows(t.len()).any(|w| w == t);
        if typed_page(b"/Type /Page\n") || typed_page(b"/Type /Page ") {
            out.push((start, end));
        }
        at = obj + 6;
    }
    out
}

fn render_small(doc: &Arc<Document>, page_index: usize) -> image::RgbImage {
    let l = RenderLimits::default();
    let (w, h) = render_size(doc.page_size_pt(page_index).expect("page size"), TARGET_PIXELS / 4, &l);
    render_contained(doc, page_index, w, h, &l).expect("the page renders")
}

/// Issue 22 item 8: a vertical tab (or any other whitespace byte PDF allows) between `endobj` and the next
/// page object's `N 0 obj` lost that page (97 of 98 stored, exit 0): hayro's object scan does not take 0x0B
/// for whitespace, nor did the tolerant page count. Every page object of the manual, one at a time.
#[test]
fn whitespace_before_a_page_object_loses_no_page() {
    let original = manual();
    let pages = page_objects(&original);
    assert_eq!(pages.len(), MANUAL_PAGES);
    let plain = Arc::new(Document::from_bytes(original.clone(), None, "manual.pdf").unwrap());
    for ws in [0u8, b'\t', 0x0b, 0x0c, b'\r', b' '] {
        for (i, &(start, _)) in pages.iter().enumerate() {
            // Only the vertical tab is worth every page; the others are checked on a few.
            if ws != 0x0b && i % 40 != 0 {
                continue;
            }
            let mut pdf = original.clone();
            assert_eq!(pdf[start - 1], b'\n');
            pdf[start - 1] = ws;
            let doc = Document::from_bytes(pdf, None, "mutant.pdf").unwrap();
            assert_eq!(doc.page_count(), MANUAL_PAGES, "byte {ws:#04x} before page object {i}");
            doc.page_count_check().unwrap_or_else(|e| panic!("byte {ws:#04x} before page object {i}: {e}"));
        }
    }
    // Vertical tabs for every space inside every page dictionary too: the pages render as before.
    let mut pdf = original.clone();
    for &(start, end) in &pages {
        for b in &mut pdf[start..end] {
            if *b == b' ' || *b == b'\n' {
                *b = 0x0b;
            }
        }
    }
    let doc = Arc::new(Document::from_bytes(pdf, None, "tabs.pdf").unwrap());
    assert_eq!(doc.page_count(), MANUAL_PAGES);
    doc.page_count_check().unwrap();
    for i in [0, 57, MANUAL_PAGES - 1] {
        assert!(render_small(&doc, i) == render_small(&plain, i), "page {i} renders as in the original");
    }
}

/// Issue 22 item 10: the manual cut at 97 % or 99 % of its bytes stored none of its pages. The pages whose
/// every object came before the cut are recovered (the counts below were checked by a script following
/// every reference of each page object in the bytes), render with ink, and `page_count_check` names the file
/// as truncated with both counts. A cut that leaves no complete page is a named `Damaged`.
#[test]
fn truncated_manual_keeps_its_complete_pages() {
    let full = manual();
    for (percent, complete) in [(50, 13), (90, 115), (97, 131), (99, 134)] {
        let cut = full[..full.len() * percent / 100].to_vec();
        let doc = Arc::new(Document::from_bytes(cut, None, "cut.pdf").unwrap_or_else(|e| panic!("{percent}%: {e}")));
        assert!(doc.is_truncated());
        assert_eq!((doc.page_count(), doc.expected_pages()), (complete, MANUAL_PAGES), "{percent}%");
        let e = doc.page_count_check().unwrap_err();
        assert!(
            matches!(e, Error::Truncated { page_count, expected_pages: MANUAL_PAGES, .. } if page_count == complete),
            "{percent}%: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.starts_with("cut.pdf: ") && msg.contains(&format!("{complete} of its {MANUAL_PAGES} pages")));
        println!("{msg}");
        for i in [0, complete - 1] {
            assert!(non_white(&render_small(&doc, i)) > 1000, "{percent}%: page {i} has ink");
        }
    }
    for percent in [1, 10] {
        let cut = full[..full.len() * percent / 100].to_vec();
        let e = Document::from_bytes(cut, None, "cut.pdf").unwrap_err();
        assert!(matches!(e, Error::Damaged { reason, .. } if reason.contains("truncated")), "{percent}%: {e:?}");
    }
}

/// Issue 22 item 10, the other kind of cut: writers such as pdfTeX put the catalog and the page tree at the end,
/// so a cut file has its page objects but nothing that leads to them (hayro cannot open it). The gutenprint
/// manual's 10 pages rewritten in that order and cut at 70 / 85 / 95 %: a page tree of the page objects found
/// is rebuilt, and the pages whose objects all came before the cut are kept (the counts were checked by a
/// script following every reference of each page object in the bytes).
#[test]
fn truncated_file_without_its_catalog_and_tree_keeps_its_complete_pages() {
    let original = std::fs::read(fixture("pdfs/gutenprint-users-manual_p5-14_text.pdf")).expect("committed");
    // qpdf wrote `N 0 obj … endobj` one after the other, then `xref`: move the catalog and the page tree last.
    let body_start = original.iter().position(|&b| b == b'\n').expect("header") + 1;
    let body_start = body_start + original[body_start..].iter().position(|&b| b == b'\n').expect("binary line") + 1;
    let xref = original.windows(5).rposition(|w| w == b"\nxref").expect("xref") + 1;
    let mut objects: Vec<&[u8]> = Vec::new();
    let mut at = body_start;
    while at < xref {
        let end = at + original[at..xref].windows(8).position(|w| w == b"\nendobj\n").expect("endobj") + 8;
        objects.push(&original[at..end]);
        at = end;
    }
    let is_root = |o: &&[u8]| {
        let head = &o[..o.len().min(300)];
        head.windows(14).any(|w| w == b"/Type /Catalog") || head.windows(13).any(|w| w == b"/Type /Pages ")
    };
    let (roots, rest): (Vec<&[u8]>, Vec<&[u8]>) = objects.into_iter().partition(is_root);
    assert_eq!(roots.len(), 2);
    let mut reordered = original[..body_start].to_vec();
    for o in rest.iter().chain(&roots) {
        reordered.extend_from_slice(o);
    }
    let body_end = reordered.len();
    for (percent, complete) in [(70, 4), (85, 8), (95, 8)] {
        let cut = reordered[..body_end * percent / 100].to_vec();
        let doc = Arc::new(Document::from_bytes(cut, None, "cut.pdf").unwrap_or_else(|e| panic!("{percent}%: {e}")));
        assert!(doc.is_truncated());
        assert_eq!(doc.page_count(), complete, "{percent}%");
        let e = doc.page_count_check().unwrap_err();
        assert!(matches!(e, Error::Truncated { page_count, .. } if page_count == complete), "{percent}%: {e:?}");
        println!("{percent}%: {e}");
        for i in 0..complete {
            assert!(non_white(&render_small(&doc, i)) > 1000, "{percent}%: page {i} has ink");
        }
    }
}
