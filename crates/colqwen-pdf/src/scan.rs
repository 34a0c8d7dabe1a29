//! A tolerant byte-level scan of a PDF, independent of hayro.
//!
//! It finds every `N G obj … endobj` at the top level of the file (the last definition
//! of an object number wins, as in an incremental update), notes which objects are page
//! objects (`/Type /Page`, not `/Pages`) and page-tree nodes, and measures how deeply
//! `<<` and `[` nest outside streams and strings. It does not decode streams, so objects
//! inside object streams (PDF 1.5+) are not seen: the count it gives is a lower bound of
//! what a lenient reader finds, used to notice pages that hayro's page tree lost.
//!
//! Whitespace is every byte ISO 32000 allows (NUL, tab, line feed, form feed, carriage return, space) and
//! also the vertical tab (0x0B), which real files carry where whitespace belongs (a byte flip, or a writer
//! that takes C's `isspace` for PDF's): hayro does not take 0x0B for whitespace, so `endobj\x0b12 0 obj` hides
//! object 12 from its cross-reference rebuild and the page is lost. The scan therefore also rewrites every
//! 0x0B outside strings, streams and comments to a space, in place (same length, so every byte offset in the
//! file stays right), before hayro reads the bytes.
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
    /// Vertical tabs (0x0B) outside strings, streams and comments rewritten to spaces.
    pub(crate) vertical_tabs: usize,
    /// Offset just after the last `endobj` (where the complete objects of a truncated file end).
    pub(crate) last_endobj: usize,
}

impl RawScan {
    /// Page objects: `/Type /Page` without `/Kids`, or a node without `/Kids` mistyped
    /// `/Pages` that still has page content.
    pub(crate) fn page_count(&self, data: &[u8]) -> usize {
        self.objects.values().filter(|o| o.looks_like_page(data)).count()
    }

    /// The largest `/Count` of a page-tree node (`/Type /Pages`), read from the bytes: what the page tree
    /// says the document holds, also when hayro cannot read the tree (the root's count is the largest).
    pub(crate) fn tree_count(&self, data: &[u8]) -> Option<usize> {
        self.objects.values().filter(|o| o.is_pages).filter_map(|o| count_of(&data[o.body.clone()])).max()
    }
}

/// The integer after `/Count` in a dictionary's text.
fn count_of(text: &[u8]) -> Option<usize> {
    let k = find(text, b"/Count")? + 6;
    let rest = &text[k..];
    let start = rest.iter().position(|&b| !is_ws(b))?;
    let digits = rest[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[start..start + digits]).ok()?.parse().ok()
}

impl RawObject {
    /// A leaf of the page tree: typed `/Page`, or typed `/Pages` but with no `/Kids` and
    /// with `/Contents`.
    pub(crate) fn looks_like_page(&self, data: &[u8]) -> bool {
        (self.is_page && !self.has_kids)
            || (self.is_pages && !self.has_kids && find(&data[self.body.clone()], b"/Contents").is_some())
    }
}

/// Scan `data`, rewriting vertical tabs outside strings, streams and comments to spaces. Stops measuring
/// depth (but keeps indexing objects) once it exceeds `MAX_NESTING`.
pub(crate) fn scan(data: &mut [u8]) -> RawScan {
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
            0x0b => {
                data[i] = b' ';
                out.vertical_tabs += 1;
            }
            b'e' if data[i..].starts_with(b"endobj") && is_delim_before(data, i) => {
                if let Some((num, gen_num, start)) = open.take() {
                    record(&mut out, data, num, gen_num, start..i);
                }
                depth = 0;
                i += 6;
                out.last_endobj = i;
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
        while j < text.len() && is_ws(text[j]) {
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
        while *j > 0 && is_ws(data[*j - 1]) {
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

/// PDF whitespace (ISO 32000-2 Table 1: NUL, tab, line feed, form feed, carriage return, space) and the
/// vertical tab (see the module doc).
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn is_regular(b: Option<&u8>) -> bool {
    b.is_some_and(|&b| !is_ws(b) && !b"()<>[]{}/%".contains(&b))
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
        let pdf = &mut b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<</Type/Page/Contents 4 0 R>>\nendobj\n4 0 obj\n<< /Length 3 >>\nstream\n[[[\nendstream\nendobj\n%%EOF\n".to_vec();
        let s = scan(pdf);
        assert_eq!(s.objects.len(), 4);
        assert_eq!(s.page_count(pdf), 1);
        assert_eq!(s.tree_count(pdf), Some(1));
        assert!(s.objects[&2].is_pages && s.objects[&2].has_kids);
        assert!(s.too_deep_at.is_none());
    }

    #[test]
    fn last_definition_wins_and_depth_is_measured() {
        let mut pdf = b"1 0 obj\n<</Type/Page/Contents 2 0 R>>\nendobj\n1 0 obj\n<</Type/Font>>\nendobj\n".to_vec();
        assert_eq!(scan(&mut pdf).page_count(&pdf), 0);
        pdf.extend_from_slice(b"5 0 obj\n");
        pdf.extend(std::iter::repeat_n(b'[', 600));
        let s = scan(&mut pdf);
        assert_eq!(s.max_depth, 600);
        assert!(s.too_deep_at.is_some());
    }

    #[test]
    fn strings_and_comments_do_not_nest() {
        let pdf = &mut b"1 0 obj\n<< /A ([[[[\\)) % [[[[\n /B <5B5B> >>\nendobj\n".to_vec();
        assert_eq!(scan(pdf).max_depth, 1);
    }

    /// Every whitespace byte PDF allows, and the vertical tab, separates objects; vertical tabs outside
    /// strings and streams become spaces, the ones inside stay.
    #[test]
    fn every_whitespace_byte_separates_objects() {
        for ws in [0u8, b'\t', b'\n', 0x0b, 0x0c, b'\r', b' '] {
            let mut pdf = b"1 0 obj\n<</Type/Page/Contents 2 0 R>>\nendobj".to_vec();
            pdf.push(ws);
            pdf.extend_from_slice(b"3");
            pdf.push(ws);
            pdf.extend_from_slice(b"0");
            pdf.push(ws);
            pdf.extend_from_slice(b"obj<</Type");
            pdf.push(ws);
            pdf.extend_from_slice(b"/Page/T (a\x0bb)>>endobj\n4 0 obj<</Length 1>>stream\n\x0b\nendstream endobj");
            let s = scan(&mut pdf);
            assert_eq!(s.page_count(&pdf), 2, "whitespace byte {ws:#04x}");
            assert!(s.objects.contains_key(&3), "whitespace byte {ws:#04x}");
            assert_eq!(s.vertical_tabs, if ws == 0x0b { 4 } else { 0 });
            assert_eq!(pdf.iter().filter(|&&b| b == 0x0b).count(), 2, "inside a string and a stream they stay");
        }
    }
}
