//! A tolerant byte-level scan of a PDF, independent of hayro.
//!
//! It finds every `N G obj … endobj` at the top level of the file (the last definition
//! of an object number wins, as in an incremental update), notes which objects are page
//! objects (`/Type /Page`, not `/Pages`) and page-tree nodes, and measures how deeply
//! `<<` and `[` nest outside streams and strings. It does not decode streams, so objects
//! inside object streams (PDF 1.5+) are not seen: the count it gives is a lower bound of
//! what a lenient reader finds, used to notice pages that hayro's page tree lost.
//!
//! The scan is linear in the file size and allocates one entry per object.

use std::collections::HashMap;

/// Deepest `<<`/`[` nesting accepted. hayro 0.9 gives up at 512 levels (its
/// `MAX_OBJECT_NESTING_DEPTH`), so deeper data cannot be read anyway; rejecting it up
/// front also avoids hayro's slow (quadratic) recovery on unclosed deep nesting.
pub(crate) const MAX_NESTING: usize = 512;

/// One object found in the file.
#[derive(Debug, Clone)]
pub(crate) struct RawObject {
    /// Generation number.
    pub(crate) gen_num: u16,
    /// Byte range of the object's body (after `obj`, up to `endobj` or `stream`).
    pub(crate) body: std::ops::Range<usize>,
    /// `/Type /Page`.
    pub(crate) is_page: bool,
    /// `/Type /Pages`.
    pub(crate) is_pages: bool,
    /// The body has a `/Kids` entry.
    pub(crate) has_kids: bool,
}

/// What the scan found.
#[derive(Debug, Default)]
pub(crate) struct RawScan {
    /// Objects by number (the last definition in the file).
    pub(crate) objects: HashMap<u32, RawObject>,
    /// Deepest nesting seen, and where.
    pub(crate) max_depth: usize,
    /// Byte offset where `max_depth` was first exceeded `MAX_NESTING` (if it was).
    pub(crate) too_deep_at: Option<usize>,
}

impl RawScan {
    /// Page objects: `/Type /Page` without `/Kids`, or a node without `/Kids` mistyped
    /// `/Pages` that still has page content.
    pub(crate) fn page_count(&self, data: &[u8]) -> usize {
        self.objects.values().filter(|o| o.looks_like_page(data)).count()
    }
}

impl RawObject {
    /// A leaf of the page tree: typed `/Page`, or typed `/Pages` but with no `/Kids` and
    /// with `/Contents`.
    pub(crate) fn looks_like_page(&self, data: &[u8]) -> bool {
        (self.is_page && !self.has_kids)
            || (self.is_pages && !self.has_kids && find(&data[self.body.clone()], b"/Contents").is_some())
    }
}

/// Scan `data`. Stops measuring depth (but keeps indexing objects) once it exceeds
/// `MAX_NESTING`.
pub(crate) fn scan(data: &[u8]) -> RawScan {
    let mut out = RawScan::default();
    let mut i = 0;
    let mut depth = 0usize;
    let mut open: Option<(u32, u16, usize)> = None; // object being read: num, gen, body start
    let n = data.len();
    while i < n {
        let b = data[i];
        match b {
            b'%' => {
                // Comment to end of line.
                while i < n && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                i = skip_literal_string(data, i);
                continue;
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 2;
                note_depth(&mut out, depth, i);
                continue;
            }
            b'<' => {
                // Hex string: up to the next '>'.
                match memchr(b'>', &data[i..]) {
                    Some(k) => i += k + 1,
                    None => i = n,
                }
                continue;
            }
            b'>' if data.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 2;
                continue;
            }
            b'[' => {
                depth += 1;
                i += 1;
                note_depth(&mut out, depth, i);
                continue;
            }
            b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            b's' if data[i..].starts_with(b"stream") && is_delim_before(data, i) => {
                // Stream data: skip to `endstream` (the /Length may be wrong).
                let end = find(&data[i + 6..], b"endstream").map_or(n, |k| i + 6 + k);
                if let Some((num, gen_num, start)) = open.take() {
                    record(&mut out, data, num, gen_num, start..i);
                }
                i = end + 9;
                continue;
            }
            b'e' if data[i..].starts_with(b"endobj") && is_delim_before(data, i) => {
                if let Some((num, gen_num, start)) = open.take() {
                    record(&mut out, data, num, gen_num, start..i);
                }
                depth = 0;
                i += 6;
                continue;
            }
            b'o' if data[i..].starts_with(b"obj") && is_delim_before(data, i) && !is_regular(data.get(i + 3)) => {
                if let Some((num, gen_num)) = object_header_before(data, i) {
                    // An object without `endobj` before the next one still counts.
                    if let Some((pnum, pgen, start)) = open.take() {
                        record(&mut out, data, pnum, pgen, start..i);
                    }
                    open = Some((num, gen_num, i + 3));
                    depth = 0;
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some((num, gen_num, start)) = open.take() {
        record(&mut out, data, num, gen_num, start..n);
    }
    out
}

fn note_depth(out: &mut RawScan, depth: usize, at: usize) {
    if depth > out.max_depth {
        out.max_depth = depth;
        if depth > MAX_NESTING && out.too_deep_at.is_none() {
            out.too_deep_at = Some(at);
        }
    }
}

fn record(out: &mut RawScan, data: &[u8], num: u32, gen_num: u16, body: std::ops::Range<usize>) {
    let text = &data[body.clone()];
    let (is_page, is_pages) = type_of(text);
    let has_kids = find(text, b"/Kids").is_some();
    out.objects.insert(num, RawObject { gen_num, body, is_page, is_pages, has_kids });
}

/// `(is /Type /Page, is /Type /Pages)` of a dictionary's text.
fn type_of(text: &[u8]) -> (bool, bool) {
    let mut at = 0;
    while let Some(k) = find(&text[at..], b"/Type") {
        let mut j = at + k + 5;
        while j < text.len() && text[j].is_ascii_whitespace() {
            j += 1;
        }
        let rest = &text[j..];
        if rest.starts_with(b"/Pages") && !is_regular(rest.get(6)) {
            return (false, true);
        }
        if rest.starts_with(b"/Page") && !is_regular(rest.get(5)) {
            return (true, false);
        }
        at = j;
    }
    (false, false)
}

/// Parse `N G` right before `obj` at `i` (`N G obj`), if present.
fn object_header_before(data: &[u8], i: usize) -> Option<(u32, u16)> {
    let mut j = i;
    let skip_ws = |j: &mut usize| {
        while *j > 0 && data[*j - 1].is_ascii_whitespace() {
            *j -= 1;
        }
    };
    let digits = |j: &mut usize| -> Option<u64> {
        let end = *j;
        while *j > 0 && data[*j - 1].is_ascii_digit() && end - *j < 10 {
            *j -= 1;
        }
        std::str::from_utf8(&data[*j..end]).ok()?.parse().ok()
    };
    skip_ws(&mut j);
    if j == i {
        return None;
    }
    let gen_num = digits(&mut j)?;
    let before_gen = j;
    skip_ws(&mut j);
    if j == before_gen {
        return None;
    }
    let num = digits(&mut j)?;
    if j > 0 && is_regular(Some(&data[j - 1])) {
        return None;
    }
    Some((u32::try_from(num).ok()?, u16::try_from(gen_num).ok()?))
}

/// Skip a literal string starting at `data[i] == b'('`; returns the index after it.
fn skip_literal_string(data: &[u8], mut i: usize) -> usize {
    let mut level = 0usize;
    while i < data.len() {
        match data[i] {
            b'\\' => i += 1,
            b'(' => level += 1,
            b')' => {
                level -= 1;
                if level == 0 {
                    return i + 1;
                }
            }
            // A string does not cross an object end in practice; stop there so that an
            // unbalanced '(' in damaged data does not hide the rest of the file.
            b'e' if data[i..].starts_with(b"endobj") => return i,
            _ => {}
        }
        i += 1;
    }
    data.len()
}

fn is_regular(b: Option<&u8>) -> bool {
    b.is_some_and(|&b| !b.is_ascii_whitespace() && !b"()<>[]{}/%".contains(&b))
}

fn is_delim_before(data: &[u8], i: usize) -> bool {
    i == 0 || !is_regular(Some(&data[i - 1]))
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// First position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut start = 0;
    while let Some(k) = memchr(first, &haystack[start..]) {
        let at = start + k;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        start = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pages_not_pages_nodes() {
        let pdf = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] >>\nendobj\n3 0 obj\n<</Type/Page/Contents 4 0 R>>\nendobj\n4 0 obj\n<< /Length 3 >>\nstream\n[[[\nendstream\nendobj\n%%EOF\n";
        let s = scan(pdf);
        assert_eq!(s.objects.len(), 4);
        assert_eq!(s.page_count(pdf), 1);
        assert!(s.objects[&2].is_pages && s.objects[&2].has_kids);
        assert!(s.too_deep_at.is_none());
    }

    #[test]
    fn last_definition_wins_and_depth_is_measured() {
        let mut pdf = b"1 0 obj\n<</Type/Page/Contents 2 0 R>>\nendobj\n1 0 obj\n<</Type/Font>>\nendobj\n".to_vec();
        assert_eq!(scan(&pdf).page_count(&pdf), 0);
        pdf.extend_from_slice(b"5 0 obj\n");
        pdf.extend(std::iter::repeat_n(b'[', 600));
        let s = scan(&pdf);
        assert_eq!(s.max_depth, 600);
        assert!(s.too_deep_at.is_some());
    }

    #[test]
    fn strings_and_comments_do_not_nest() {
        let pdf = b"1 0 obj\n<< /A ([[[[\\)) % [[[[\n /B <5B5B> >>\nendobj\n";
        assert_eq!(scan(pdf).max_depth, 1);
    }
}
