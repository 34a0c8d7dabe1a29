//! Each bad file gives its own error variant, naming the file.

mod common;

use std::path::Path;

use colqwen_pdf::{Document, Error};
use common::{fixture, non_white};

fn open_err(rel: &str, password: Option<&str>) -> (Error, String) {
    let path = fixture(rel);
    let err = Document::open(&path, password).expect_err(rel);
    let msg = err.to_string();
    let file_name = Path::new(rel).file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(file_name), "message does not name the file: {msg}");
    println!("{rel} (password {password:?}): {msg}");
    (err, msg)
}

#[test]
fn empty_file() {
    let (err, _) = open_err("bad-pdfs/empty.pdf", None);
    assert!(matches!(err, Error::Empty { .. }), "{err:?}");
    let err = Document::from_bytes(Vec::new(), None, "mem.pdf").unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err:?}");
}

#[test]
fn html_saved_as_pdf() {
    let (err, msg) = open_err("bad-pdfs/html-saved-as.pdf", None);
    assert!(matches!(err, Error::NotPdf { .. }), "{err:?}");
    assert!(msg.contains("<!DOCTYPE html>"), "{msg}");
}

#[test]
fn truncated_pdf() {
    let (err, msg) = open_err("bad-pdfs/truncated-half.pdf", None);
    assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn junk_after_final_eof_is_accepted() {
    let mut bytes = std::fs::read(fixture("pdfs/siscone-refman_p60_diagram.pdf")).unwrap();
    bytes.extend(std::iter::repeat_n(0u8, 10_000));
    bytes.extend_from_slice(b"<html><body>footer</body></html>\n");
    let doc = Document::from_bytes(bytes, None, "padded.pdf").unwrap();
    assert!(non_white(&doc.render_page(0, 298, 421).unwrap()) > 100);
}

#[test]
fn missing_file() {
    let (err, _) = open_err("bad-pdfs/does-not-exist.pdf", None);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn empty_user_password_opens_and_renders() {
    let path = fixture("bad-pdfs/encrypted-empty-user-password.pdf");
    let plain = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    for password in [None, Some(""), Some("owner"), Some("not-the-password")] {
        let doc = Document::open(&path, password).unwrap_or_else(|e| panic!("{password:?}: {e}"));
        assert_eq!(doc.page_count(), 1);
        let img = doc.render_page(0, 298, 421).unwrap();
        assert!(non_white(&img) > 100);
        assert!(img == plain.render_page(0, 298, 421).unwrap(), "decrypted render differs");
    }
}

#[test]
fn user_password_aes256() {
    let rel = "bad-pdfs/password-secret.pdf";
    let (err, _) = open_err(rel, None);
    assert!(matches!(err, Error::PasswordRequired { .. }), "{err:?}");
    let hint = colqwen_core::Hint::hint(&err).unwrap();
    assert!(hint.contains("--password-file"), "{hint}");
    let (err, _) = open_err(rel, Some(""));
    assert!(matches!(err, Error::PasswordRequired { .. }), "{err:?}");
    let (err, _) = open_err(rel, Some("wrong"));
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");

    let doc = Document::open(&fixture(rel), Some("secret")).unwrap();
    assert!(non_white(&doc.render_page(0, 298, 421).unwrap()) > 100);
    // AES-256 (revision 6): the owner password opens it too.
    Document::open(&fixture(rel), Some("owner")).unwrap();
}

#[test]
fn user_password_rc4() {
    let rel = "bad-pdfs/password-secret-rc4.pdf";
    let (err, _) = open_err(rel, None);
    assert!(matches!(err, Error::PasswordRequired { .. }), "{err:?}");
    let (err, _) = open_err(rel, Some("wrong"));
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
    let doc = Document::open(&fixture(rel), Some("secret")).unwrap();
    assert!(non_white(&doc.render_page(0, 298, 421).unwrap()) > 100);
    // hayro limitation: for RC4/AES-128 (revisions 2-4) only the user password is
    // checked, so the owner password does not open the file.
    let (err, _) = open_err(rel, Some("owner"));
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
}

#[test]
fn from_bytes_names_the_document_in_errors() {
    let bytes = std::fs::read(fixture("bad-pdfs/html-saved-as.pdf")).unwrap();
    let err = Document::from_bytes(bytes, None, "upload-42.pdf").unwrap_err();
    assert!(matches!(err, Error::NotPdf { .. }));
    assert!(err.to_string().starts_with("upload-42.pdf: "), "{err}");
}

#[test]
fn page_out_of_range() {
    let doc = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    let err = doc.render_page(1, 10, 10).unwrap_err();
    assert!(matches!(err, Error::PageOutOfRange { page_index: 1, page_count: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("siscone-refman_p60_diagram.pdf"));
    assert!(matches!(doc.page_size_pt(5), Err(Error::PageOutOfRange { .. })));
    println!("{err}");
}

#[test]
fn zero_or_oversized_render_size() {
    let doc = Document::open(&fixture("pdfs/siscone-refman_p60_diagram.pdf"), None).unwrap();
    for (w, h) in [(0, 10), (10, 0), (70_000, 10)] {
        let err = doc.render_page(0, w, h).unwrap_err();
        assert!(matches!(err, Error::PageTooLarge { .. }), "{err:?}");
    }
}
