//! Recovering pages that hayro's page tree loses, by appending an incremental update.
//!
//! hayro 0.9 drops a page silently when its dictionary does not parse (one damaged
//! byte in an `/Annots` array, a number written `1e9`), when a leaf of the page tree
//! is typed `/Pages` (it then looks for `/Kids`) or a node with `/Kids` is typed
//! `/Page`, and when a page object is not reachable from the tree. Absurd page boxes
//! (`[0 0 1 100000]`, `1e9`, ±3e38) make pages blank or make the rasteriser panic.
//!
//! The repair works on the bytes, with the objects found by [`crate::scan`]: it writes
//! new versions of the broken page and page-tree objects (same object numbers) and
//! appends them to the file with a new xref section and trailer, like any PDF editor
//! saving an incremental update; later definitions win, so hayro then reads the new
//! versions. Only objects outside object streams can be repaired, and encrypted files
//! are not touched (new objects would need encrypting).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::scan::{RawScan, find, is_ws};

/// A4 in points.
const A4: (f64, f64) = (595.2756, 841.8898);
/// Largest page side accepted as is, in points (ISO 32000 allows 14,400 units at
/// `/UserUnit 1`; large-format plans exceed that, so allow about 70 m).
pub(crate) const MAX_PAGE_SIDE_PT: f64 = 200_000.0;
/// Smallest page side accepted as is, in points (ISO 32000's minimum is 3).
pub(crate) const MIN_PAGE_SIDE_PT: f64 = 3.0;
/// Most extreme aspect ratio accepted as is.
pub(crate) const MAX_ASPECT: f64 = 1000.0;

/// What the repair changed, for the log.
#[derive(Debug, Default)]
pub(crate) struct Repair {
    /// The patched file.
    pub(crate) data: Vec<u8>,
    /// Page-tree objects whose `/Type` was corrected.
    pub(crate) retyped: usize,
    /// Page objects rebuilt from the entries that could be read.
    pub(crate) rebuilt: usize,
    /// Page boxes replaced.
    pub(crate) boxes: usize,
    /// Unreachable page objects added to the tree.
    pub(crate) orphans: usize,
}

/// Whether a page box is usable as is.
pub(crate) fn box_is_sane(x0: f64, y0: f64, x1: f64, y1: f64) -> bool {
    let (w, h) = ((x1 - x0).abs(), (y1 - y0).abs());
    [x0, y0, x1, y1].iter().all(|v| v.is_finite() && v.abs() <= 10.0 * MAX_PAGE_SIDE_PT)
        && (MIN_PAGE_SIDE_PT..=MAX_PAGE_SIDE_PT).contains(&w)
        && (MIN_PAGE_SIDE_PT..=MAX_PAGE_SIDE_PT).contains(&h)
        && w.max(h) / w.min(h) <= MAX_ASPECT
}

/// Build the repaired file, or `None` if there is nothing the repair can change.
/// `unreadable(num, gen)` says whether hayro fails to read that object as a dictionary.
pub(crate) fn repair(data: &[u8], scan: &RawScan, unreadable: impl Fn(u32, u16) -> bool) -> Option<Repair> {
    if trailer_has(data, b"/Encrypt") {
        return None;
    }
    let mut out = Repair::default();
    let mut patches: BTreeMap<u32, (u16, Vec<u8>)> = BTreeMap::new();

    // Page-tree nodes: fix /Type, boxes, unreadable page dictionaries.
    let mut nums: Vec<u32> = scan.objects.keys().copied().collect();
    nums.sort_unstable();
    for &num in &nums {
        let o = &scan.objects[&num];
        if !(o.is_page || o.is_pages) {
            continue;
        }
        let Some(dict) = dict_text(&data[o.body.clone()]) else { continue };
        let mut text = dict.to_vec();
        let mut changed = false;
        let leaf = o.looks_like_page(data);
        if leaf && !o.has_kids && unreadable(num, o.gen_num) {
            text = rebuild_page(&text);
            out.rebuilt += 1;
            changed = true;
        }
        if o.has_kids && o.is_page {
            text = retype(&text, b"/Pages");
            out.retyped += 1;
            changed = true;
        } else if leaf && o.is_pages {
            text = retype(&text, b"/Page");
            out.retyped += 1;
            changed = true;
        }
        for key in [&b"/MediaBox"[..], b"/CropBox"] {
            if let Some(fixed) = fix_box(&text, key) {
                text = fixed;
                out.boxes += 1;
                changed = true;
            }
        }
        if changed {
            patches.insert(num, (o.gen_num, text));
        }
    }

    // Page objects no /Kids array refers to: add them to the root node.
    let referenced: HashSet<u32> = scan
        .objects
        .iter()
        .filter(|(_, o)| o.has_kids)
        .flat_map(|(num, o)| {
            let text = patches.get(num).map_or(&data[o.body.clone()], |p| &p.1[..]);
            kids_refs(text)
        })
        .collect();
    let orphans: Vec<u32> =
        nums.iter().copied().filter(|n| scan.objects[n].looks_like_page(data) && !referenced.contains(n)).collect();
    if !orphans.is_empty()
        && let Some(root) = root_pages(data, scan)
        && let Some(o) = scan.objects.get(&root)
        && let Some(dict) = dict_text(&data[o.body.clone()])
    {
        let text = patches.get(&root).map_or_else(|| dict.to_vec(), |p| p.1.clone());
        if let Some(k) = find(&text, b"/Kids")
            && let Some(open) = text[k..].iter().position(|&b| b == b'[')
        {
            let at = k + open + 1;
            let mut refs = String::new();
            for n in &orphans {
                let _ = write!(refs, " {n} {} R", scan.objects[n].gen_num);
            }
            let mut t = text[..at].to_vec();
            t.extend_from_slice(refs.as_bytes());
            t.extend_from_slice(&text[at..]);
            patches.insert(root, (o.gen_num, t));
            out.orphans = orphans.len();
        }
    }

    if patches.is_empty() {
        return None;
    }
    out.data = append_update(data, &patches, scan)?;
    Some(out)
}

/// A truncated file that lost its catalog or page tree (writers such as pdfTeX put them last): its complete
/// objects (up to the last `endobj`), then a new page tree of every page object found, in file order, a
/// catalog and a trailer. hayro rebuilds the cross-reference table by scanning (there is none) and finds the
/// pages through the new tree; attributes the pages inherited from the lost tree (a `/MediaBox`, `/Resources`
/// set on a node) are lost with it. `None` if there is no page object.
pub(crate) fn rebuild_tree(data: &[u8], scan: &RawScan) -> Option<Vec<u8>> {
    let mut pages: Vec<(usize, u32, u16)> = scan
        .objects
        .iter()
        .filter(|(_, o)| o.looks_like_page(data) && o.body.end <= scan.last_endobj)
        .map(|(&num, o)| (o.body.start, num, o.gen_num))
        .collect();
    if pages.is_empty() {
        return None;
    }
    pages.sort_unstable();
    let tree = scan.objects.keys().max().copied().unwrap_or(0).checked_add(1)?;
    let catalog = tree.checked_add(1)?;
    let mut out = data[..scan.last_endobj].to_vec();
    let mut kids = String::new();
    for (_, num, gen_num) in &pages {
        let _ = write!(kids, " {num} {gen_num} R");
    }
    out.extend_from_slice(
        format!(
            "\n{tree} 0 obj\n<< /Type /Pages /Kids [{kids} ] /Count {} >>\nendobj\n\
             {catalog} 0 obj\n<< /Type /Catalog /Pages {tree} 0 R >>\nendobj\n\
             trailer\n<< /Root {catalog} 0 R /Size {} >>\n%%EOF\n",
            pages.len(),
            catalog + 1
        )
        .as_bytes(),
    );
    Some(out)
}

/// The `<< … >>` at the start of an object body (up to its matching `>>`, or to the end
/// of the body if it is unbalanced).
fn dict_text(body: &[u8]) -> Option<&[u8]> {
    let start = find(body, b"<<")?;
    let end = matching_close(body, start).unwrap_or(body.len());
    Some(&body[start..end])
}

/// Index after the `>>` matching the `<<` at `start`.
fn matching_close(t: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < t.len() {
        match t[i] {
            b'(' => {
                let mut level = 0usize;
                while i < t.len() {
                    match t[i] {
                        b'\\' => i += 1,
                        b'(' => level += 1,
                        b')' => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'<' if t.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b'>' if t.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Replace the value of `/Type` by `to`.
fn retype(text: &[u8], to: &[u8]) -> Vec<u8> {
    let Some(k) = find(text, b"/Type") else { return text.to_vec() };
    let mut j = k + 5;
    while j < text.len() && is_ws(text[j]) {
        j += 1;
    }
    let mut e = j + 1;
    while e < text.len() && !is_ws(text[e]) && !b"/<>[]()".contains(&text[e]) {
        e += 1;
    }
    [&text[..k], b"/Type ", to, &text[e..]].concat()
}

/// A new page dictionary made of the entries of `text` that can be read: `/Parent`,
/// `/Contents`, `/Resources`, `/MediaBox`, `/CropBox`, `/Rotate` (what rendering needs;
/// annotations and the rest are dropped).
fn rebuild_page(text: &[u8]) -> Vec<u8> {
    let mut out = b"<< /Type /Page".to_vec();
    for key in [&b"/Parent"[..], b"/Contents", b"/Resources", b"/MediaBox", b"/CropBox", b"/Rotate"] {
        if let Some(v) = value_of(text, key) {
            out.push(b' ');
            out.extend_from_slice(key);
            out.push(b' ');
            out.extend_from_slice(v);
        }
    }
    out.extend_from_slice(b" >>");
    out
}

/// The text of `key`'s value if it is a reference, a balanced dictionary, an array of
/// numbers/references, or a number.
fn value_of<'t>(text: &'t [u8], key: &[u8]) -> Option<&'t [u8]> {
    let mut from = 0;
    let k = loop {
        let k = from + find(&text[from..], key)?;
        // Whole key only (`/Contents`, not `/ContentsX`).
        if !text.get(k + key.len()).is_some_and(|b| b.is_ascii_alphanumeric()) {
            break k;
        }
        from = k + 1;
    };
    let mut i = k + key.len();
    while i < text.len() && is_ws(text[i]) {
        i += 1;
    }
    let rest = &text[i..];
    if rest.starts_with(b"<<") {
        let end = matching_close(rest, 0)?;
        return Some(&rest[..end]);
    }
    if rest.starts_with(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let inner = &rest[1..end];
        let ok = inner.iter().all(|&b| b.is_ascii_digit() || is_ws(b) || b".-+R".contains(&b));
        return ok.then_some(&rest[..=end]);
    }
    // `N G R` or a number.
    let end = rest.iter().position(|b| b"/>]".contains(b)).unwrap_or(rest.len());
    let v = rest[..end].trim_ascii();
    let ok = !v.is_empty() && v.iter().all(|&b| b.is_ascii_digit() || is_ws(b) || b".-+R".contains(&b));
    ok.then_some(v)
}

/// If `key` holds a box that hayro cannot read or that is absurd, the text with a sane
/// box: A4 at the box's lower-left corner (or at the origin if that corner is absurd too).
fn fix_box(text: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let k = find(text, key)?;
    let mut i = k + key.len();
    while i < text.len() && is_ws(text[i]) {
        i += 1;
    }
    if text.get(i) != Some(&b'[') {
        return None;
    }
    let end = i + text[i..].iter().position(|&b| b == b']')?;
    let tokens: Vec<&[u8]> = text[i + 1..end].split(|&b| is_ws(b)).filter(|t| !t.is_empty()).collect();
    let nums: Vec<f64> =
        tokens.iter().filter_map(|t| std::str::from_utf8(t).ok().and_then(|s| s.parse::<f64>().ok())).collect();
    let plain = tokens.iter().all(|t| is_pdf_number(t));
    if tokens.len() == 4 && nums.len() == 4 && plain && box_is_sane(nums[0], nums[1], nums[2], nums[3]) {
        return None;
    }
    let (mut x, mut y) = if nums.len() == 4 { (nums[0].min(nums[2]), nums[1].min(nums[3])) } else { (0.0, 0.0) };
    if !(x.is_finite() && y.is_finite() && x.abs() <= MAX_PAGE_SIDE_PT && y.abs() <= MAX_PAGE_SIDE_PT) {
        (x, y) = (0.0, 0.0);
    }
    let sane = format!("[ {x:.4} {y:.4} {:.4} {:.4} ]", x + A4.0, y + A4.1);
    Some([&text[..k], key, b" ", sane.as_bytes(), &text[end + 1..]].concat())
}

/// A number as PDF writes them: optional sign, digits, at most one '.', no exponent.
fn is_pdf_number(t: &[u8]) -> bool {
    let t = t.strip_prefix(b"-").or_else(|| t.strip_prefix(b"+")).unwrap_or(t);
    !t.is_empty()
        && t.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && t.iter().filter(|&&b| b == b'.').count() <= 1
        && t.iter().any(u8::is_ascii_digit)
}

/// Object numbers referenced in the `/Kids` array of a node's text.
fn kids_refs(text: &[u8]) -> Vec<u32> {
    let Some(k) = find(text, b"/Kids") else { return vec![] };
    let rest = &text[k + 5..];
    let Some(open) = rest.iter().position(|&b| b == b'[') else { return vec![] };
    let close = rest[open..].iter().position(|&b| b == b']').map_or(rest.len(), |c| open + c);
    let words: Vec<&[u8]> = rest[open + 1..close].split(|&b| is_ws(b)).filter(|w| !w.is_empty()).collect();
    words.windows(3).filter(|w| w[2] == b"R").filter_map(|w| std::str::from_utf8(w[0]).ok()?.parse().ok()).collect()
}

/// The object number of the root page-tree node: `/Pages N G R` in the catalog named by
/// the last `/Root` reference of the file.
fn root_pages(data: &[u8], scan: &RawScan) -> Option<u32> {
    let root = last_ref_after(data, b"/Root")?;
    let catalog = scan.objects.get(&root.0)?;
    let body = &data[catalog.body.clone()];
    let v = value_of(body, b"/Pages")?;
    std::str::from_utf8(v).ok()?.split_whitespace().next()?.parse().ok()
}

/// `(num, gen)` of the last `key N G R` in `data`.
fn last_ref_after(data: &[u8], key: &[u8]) -> Option<(u32, u16)> {
    let k = data.windows(key.len()).rposition(|w| w == key)?;
    let v = value_of(&data[k..], key)?;
    let mut it = std::str::from_utf8(v).ok()?.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn trailer_has(data: &[u8], key: &[u8]) -> bool {
    // Trailers (and xref stream dictionaries) are near the end; /Encrypt in a trailer is
    // followed by a reference or a dictionary.
    let tail = &data[data.len().saturating_sub(64 * 1024)..];
    find(tail, key).is_some()
}

/// `data` + the patched objects + an xref section + a trailer pointing at the previous
/// xref.
fn append_update(data: &[u8], patches: &BTreeMap<u32, (u16, Vec<u8>)>, scan: &RawScan) -> Option<Vec<u8>> {
    let (root, root_gen) = last_ref_after(data, b"/Root")?;
    let prev = last_startxref(data);
    let size = scan.objects.keys().max().copied().unwrap_or(0).max(*patches.keys().max()?) + 1;
    let mut out = data.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let mut offsets = Vec::new();
    for (num, (gen_num, text)) in patches {
        offsets.push((*num, *gen_num, out.len()));
        out.extend_from_slice(format!("{num} {gen_num} obj\n").as_bytes());
        out.extend_from_slice(text);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref_at = out.len();
    out.extend_from_slice(b"xref\n");
    for (num, gen_num, off) in offsets {
        out.extend_from_slice(format!("{num} 1\n{off:010} {gen_num:05} n \n").as_bytes());
    }
    let prev = prev.map(|p| format!(" /Prev {p}")).unwrap_or_default();
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root {root} {root_gen} R{prev} >>\nstartxref\n{xref_at}\n%%EOF\n")
            .as_bytes(),
    );
    Some(out)
}

fn last_startxref(data: &[u8]) -> Option<usize> {
    let k = data.windows(9).rposition(|w| w == b"startxref")?;
    std::str::from_utf8(&data[k + 9..(k + 40).min(data.len())]).ok()?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes() {
        assert!(box_is_sane(0.0, 0.0, 595.0, 842.0));
        assert!(box_is_sane(0.0, 0.0, -595.0, -842.0));
        assert!(!box_is_sane(0.0, 0.0, 1.0, 100_000.0));
        assert!(!box_is_sane(0.0, 0.0, 1e9, 1e9));
        assert!(!box_is_sane(0.0, 0.0, 0.0, 0.0));
        assert!(!box_is_sane(f64::NAN, 0.0, 1.0, 1.0));
        let fixed = fix_box(b"<< /MediaBox [ 0 0 1e9 1e9 ] /Rotate 0 >>", b"/MediaBox").unwrap();
        assert_eq!(fixed, b"<< /MediaBox [ 0.0000 0.0000 595.2756 841.8898 ] /Rotate 0 >>".to_vec());
        assert!(fix_box(b"<< /MediaBox [0 0 612 792] >>", b"/MediaBox").is_none());
    }

    #[test]
    fn rebuilds_a_page_from_what_reads() {
        let t = b"<< /Annots [ 4 0 [ 5 0 R ] /Contents 18 0 R /MediaBox [ 0 0 595 842 ] /Parent 2 0 R /Resources << /Font 19 0 R /ProcSet [ /PDF /Text ] >> /Rotate 0 /Type /Page >>";
        let r = rebuild_page(t);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "<< /Type /Page /Parent 2 0 R /Contents 18 0 R /Resources << /Font 19 0 R /ProcSet [ /PDF /Text ] >> /MediaBox [ 0 0 595 842 ] /Rotate 0 >>"
        );
    }

    #[test]
    fn retypes() {
        assert_eq!(
            retype(b"<< /Type /Pages /Contents 3 0 R >>", b"/Page"),
            b"<< /Type /Page /Contents 3 0 R >>".to_vec()
        );
        assert_eq!(kids_refs(b"<< /Kids [ 3 0 R 4 0 R ] >>"), vec![3, 4]);
    }
}
