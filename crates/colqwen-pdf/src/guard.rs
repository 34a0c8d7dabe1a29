//! Pre-render scan for pages that would make hayro exhaust memory.
//!
//! A failed allocation aborts the whole process; it cannot be caught like a panic.
//! Two tiny-PDF ways to get there with hayro 0.9 were found (see NOTES.md):
//!
//! - **Images with absurd declared sizes.** hayro allocates `width × height` bytes
//!   (or more) for an image *before* checking that the stream holds that much data:
//!   a 700-byte PDF declaring a 2e9 × 2e9 1-bit image makes it request 4 EB.
//! - **Very fine dash patterns.** A dashed stroke is expanded into one outline per
//!   dash (about 400 bytes each) before rasterizing, even off-page: a 141000-unit
//!   line with a `[0.000001] 0 d` dash needs 7e10 dashes.
//!
//! So, before a contained render, the objects reachable from the page are walked: the
//! largest declared image (XObject, inline image, soft mask or mask, in forms,
//! patterns, Type3 glyphs, annotation appearances) is found, and the number of dash
//! segments of dashed strokes is estimated (path length / dash period; curves by
//! their control polygon) in the page's and its forms' content streams. The walk
//! reads dictionaries and decodes content streams only, and is bounded by a node
//! budget. Not seen: a dash pattern set outside a form and inherited inside it.
//!
//! - **Decompression bombs.** hayro decodes streams without a size cap. Every stream the
//!   page uses (content streams, forms, images, soft masks, patterns, Type3 glyphs,
//!   annotation appearances, embedded fonts and CMaps) is first decoded here with a limit
//!   ([`crate::decode`]), before hayro or this scan decodes it; the sizes are remembered
//!   per document, so a stream shared by many pages is measured once. The page is
//!   refused if one stream, or all of its streams together, inflate past the limits, or
//!   if the document's running total (pages rendered so far, plus this one) would.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hayro::hayro_syntax::object::Stream;

use crate::decode::Measured;
use crate::error::DecodeScope;

use hayro::hayro_syntax::content::TypedIter;
use hayro::hayro_syntax::content::ops::TypedInstruction;
use hayro::hayro_syntax::object::{Array, Dict, MaybeRef, Name, Object, ObjectIdentifier};
use hayro::hayro_syntax::page::Page;
use hayro::hayro_syntax::xref::XRef;

/// Most objects visited per page; a page with more is scanned partially.
const NODE_BUDGET: usize = 200_000;
/// Deepest nesting followed.
const MAX_DEPTH: usize = 64;

/// What the scan found on one page.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PageScan {
    /// Largest declared image as `(width, height)`, if any.
    pub(crate) largest_image: Option<(u32, u32)>,
    /// Estimated number of dash segments over all dashed strokes.
    pub(crate) dash_segments: f64,
    /// Bytes the page's streams decode to (data filters only; see `decode.rs`).
    pub(crate) decoded_bytes: u64,
    /// The first decode limit exceeded: scope, bytes measured, complete, limit.
    pub(crate) decode_exceeded: Option<(DecodeScope, u64, bool, u64)>,
}

/// Decode limits for one page, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub(crate) stream: u64,
    pub(crate) page: u64,
}

/// Per-document memory of stream sizes and the running decode total.
#[derive(Debug, Default)]
pub(crate) struct DecodeLedger {
    /// Measured size per stream, with the limit it was measured under.
    sizes: Mutex<HashMap<ObjectIdentifier, (Measured, u64)>>,
    /// Decoded bytes of the pages rendered (contained) so far.
    pub(crate) used_bytes: AtomicU64,
}

impl DecodeLedger {
    fn measure(&self, stream: &Stream<'_>, limit: u64) -> Measured {
        let id = stream.obj_id();
        let known = self.sizes.lock().ok().and_then(|m| m.get(&id).copied());
        if let Some((m, measured_under)) = known
            && (m.complete || measured_under <= limit)
        {
            return m;
        }
        let filters = stream.filters();
        let early: Vec<bool> = lzw_early_change(stream, filters.len());
        let m = crate::decode::measure(&stream.raw_data(), &filters, &early, limit);
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(id, (m, limit));
        }
        m
    }

    /// Add a page's decoded bytes to the running total; the total before.
    pub(crate) fn add(&self, bytes: u64) -> u64 {
        self.used_bytes.fetch_add(bytes, Ordering::SeqCst)
    }
}

/// `/EarlyChange` of each filter's `/DecodeParms` (default 1 = true).
fn lzw_early_change(stream: &Stream<'_>, n: usize) -> Vec<bool> {
    let dict = stream.dict();
    let one = dict.get::<Dict<'_>>(b"DecodeParms").or_else(|| dict.get::<Dict<'_>>(b"DP"));
    let many = dict.get::<Array<'_>>(b"DecodeParms").or_else(|| dict.get::<Array<'_>>(b"DP"));
    (0..n)
        .map(|i| {
            let params = if i == 0 { one.clone() } else { None }
                .or_else(|| many.as_ref().and_then(|a| a.iter::<Object<'_>>().nth(i)).and_then(|o| o.into_dict()));
            params.and_then(|p| p.get::<i32>(b"EarlyChange")).is_none_or(|v| v != 0)
        })
        .collect()
}

/// Scan the objects page `page` uses.
pub(crate) fn scan_page(page: &Page<'_>, ledger: &DecodeLedger, limits: DecodeLimits) -> PageScan {
    let mut w = Walker {
        xref: page.xref(),
        visited: HashSet::new(),
        budget: NODE_BUDGET,
        found: PageScan::default(),
        ledger,
        limits,
    };
    // Measure the content streams before hayro decodes them (`page_stream` decodes and
    // keeps them). A stream listed several times counts each time.
    let contents: Vec<Stream<'_>> = match page.raw().get::<Stream<'_>>(b"Contents") {
        Some(s) => vec![s],
        None => page.raw().get::<Array<'_>>(b"Contents").map(|a| a.iter::<Stream<'_>>().collect()).unwrap_or_default(),
    };
    for s in &contents {
        if !w.check_stream(s, false) {
            return w.found;
        }
    }
    if let Some(content) = page.page_stream() {
        let resources = page.raw().get::<Dict<'_>>(b"Resources");
        w.scan_content(content, resources.as_ref());
    }
    w.visit_dict(page.raw(), 0, true);
    w.found
}

struct Walker<'x, 'l> {
    xref: &'x XRef,
    visited: HashSet<ObjectIdentifier>,
    budget: usize,
    found: PageScan,
    ledger: &'l DecodeLedger,
    limits: DecodeLimits,
}

/// Dash state and path length while scanning one content stream.
#[derive(Default)]
struct PathState {
    /// Sum of the dash array (hayro replaces 0 entries by 0.01); 0 = solid.
    dash_period: f64,
    saved: Vec<f64>,
    length: f64,
    current: (f64, f64),
    start: (f64, f64),
}

impl PathState {
    fn set_dash(&mut self, values: impl Iterator<Item = f32>) {
        self.dash_period = values.map(|v| if v == 0.0 { 0.01 } else { f64::from(v).abs() }).sum();
    }

    fn to(&mut self, p: (f64, f64)) {
        let d = ((p.0 - self.current.0).powi(2) + (p.1 - self.current.1).powi(2)).sqrt();
        if d.is_finite() {
            self.length += d;
        } else {
            self.length = f64::MAX;
        }
        self.current = p;
    }

    /// Dash segments the current path produces if stroked now.
    fn stroke(&mut self) -> f64 {
        let n = if self.dash_period > 0.0 { self.length / self.dash_period } else { 0.0 };
        self.length = 0.0;
        n
    }
}

impl<'x> Walker<'x, '_> {
    /// Measure `s` and add it to the page total; false if a limit is exceeded (then the
    /// stream must not be decoded). `once`: count it only the first time it is seen.
    fn check_stream(&mut self, s: &Stream<'_>, once: bool) -> bool {
        if self.found.decode_exceeded.is_some() {
            return false;
        }
        if once && !self.visited.insert(s.obj_id()) {
            return true;
        }
        let m = self.ledger.measure(s, self.limits.stream);
        if !m.complete || m.bytes > self.limits.stream {
            let scope = DecodeScope::Stream { obj_number: s.obj_id().obj_number };
            self.found.decode_exceeded = Some((scope, m.bytes, m.complete, self.limits.stream));
            return false;
        }
        self.found.decoded_bytes += m.bytes;
        if self.found.decoded_bytes > self.limits.page {
            self.found.decode_exceeded = Some((DecodeScope::Page, self.found.decoded_bytes, false, self.limits.page));
            return false;
        }
        true
    }

    fn record(&mut self, dict: &Dict<'_>, inline: bool) {
        let (wk, hk): (&[u8], &[u8]) = if inline { (b"W", b"H") } else { (b"Width", b"Height") };
        let w = dict.get::<u32>(wk).or_else(|| dict.get::<u32>(b"Width"));
        let h = dict.get::<u32>(hk).or_else(|| dict.get::<u32>(b"Height"));
        if let (Some(w), Some(h)) = (w, h) {
            let area = u64::from(w) * u64::from(h);
            if self.found.largest_image.is_none_or(|(lw, lh)| area > u64::from(lw) * u64::from(lh)) {
                self.found.largest_image = Some((w, h));
            }
        }
    }

    fn scan_content(&mut self, data: &[u8], resources: Option<&Dict<'_>>) {
        let mut st = PathState::default();
        let mut ops = TypedIter::new(data);
        while let Some(op) = ops.next() {
            if self.budget == 0 {
                return;
            }
            self.budget -= 1;
            let n = |x: &hayro::hayro_syntax::object::Number| x.as_f64();
            match op {
                TypedInstruction::InlineImage(img) => {
                    let dict = img.0.dict().clone();
                    self.record(&dict, true);
                }
                TypedInstruction::DashPattern(d) => st.set_dash(d.0.iter::<f32>()),
                TypedInstruction::SetGraphicsState(name) => {
                    let dash = resources
                        .and_then(|r| r.get::<Dict<'_>>(b"ExtGState"))
                        .and_then(|gs| gs.get::<Dict<'_>>(name.0.as_ref()))
                        .and_then(|g| g.get::<Array<'_>>(b"D"))
                        .and_then(|d| d.iter::<Array<'_>>().next());
                    if let Some(arr) = dash {
                        st.set_dash(arr.iter::<f32>());
                    }
                }
                TypedInstruction::SaveState(_) if st.saved.len() < 4096 => {
                    st.saved.push(st.dash_period);
                }
                TypedInstruction::RestoreState(_) => {
                    if let Some(p) = st.saved.pop() {
                        st.dash_period = p;
                    }
                }
                TypedInstruction::MoveTo(m) => {
                    st.current = (n(&m.0), n(&m.1));
                    st.start = st.current;
                }
                TypedInstruction::LineTo(l) => st.to((n(&l.0), n(&l.1))),
                TypedInstruction::CubicTo(c) => {
                    st.to((n(&c.0), n(&c.1)));
                    st.to((n(&c.2), n(&c.3)));
                    st.to((n(&c.4), n(&c.5)));
                }
                TypedInstruction::CubicStartTo(c) => {
                    st.to((n(&c.0), n(&c.1)));
                    st.to((n(&c.2), n(&c.3)));
                }
                TypedInstruction::CubicEndTo(c) => {
                    st.to((n(&c.0), n(&c.1)));
                    st.to((n(&c.2), n(&c.3)));
                }
                TypedInstruction::RectPath(r) => {
                    let (x, y, w, h) = (n(&r.0), n(&r.1), n(&r.2), n(&r.3));
                    st.current = (x, y);
                    st.to((x + w, y));
                    st.to((x + w, y + h));
                    st.to((x, y + h));
                    st.to((x, y));
                    st.start = (x, y);
                }
                TypedInstruction::ClosePath(_) => st.to(st.start),
                TypedInstruction::StrokePath(_)
                | TypedInstruction::FillAndStrokeNonZero(_)
                | TypedInstruction::FillAndStrokeEvenOdd(_) => {
                    self.found.dash_segments += st.stroke();
                }
                TypedInstruction::CloseAndStrokePath(_)
                | TypedInstruction::CloseFillAndStrokeNonZero(_)
                | TypedInstruction::CloseFillAndStrokeEvenOdd(_) => {
                    st.to(st.start);
                    self.found.dash_segments += st.stroke();
                }
                TypedInstruction::FillPathNonZero(_)
                | TypedInstruction::FillPathNonZeroCompatibility(_)
                | TypedInstruction::FillPathEvenOdd(_)
                | TypedInstruction::EndPath(_) => st.length = 0.0,
                _ => {}
            }
        }
    }

    fn resolve(&mut self, item: MaybeRef<Object<'x>>) -> Option<Object<'x>> {
        match item {
            MaybeRef::NotRef(obj) => Some(obj),
            MaybeRef::Ref(r) => {
                if !self.visited.insert(r.into()) {
                    return None;
                }
                self.xref.get::<Object<'x>>(r.into())
            }
        }
    }

    fn visit(&mut self, obj: Object<'x>, depth: usize, as_content: bool) {
        if self.budget == 0 || depth > MAX_DEPTH {
            return;
        }
        self.budget -= 1;
        match obj {
            Object::Dict(d) => self.visit_dict(&d, depth, false),
            Object::Array(a) => {
                for item in a.raw_iter() {
                    if let Some(o) = self.resolve(item) {
                        self.visit(o, depth + 1, false);
                    }
                }
            }
            Object::Stream(s) => {
                if !self.check_stream(&s, false) {
                    return;
                }
                let dict = s.dict().clone();
                let subtype = dict.get::<Name<'_>>(b"Subtype");
                let is = |n: &[u8]| subtype.as_ref().is_some_and(|s| s.as_ref() == n);
                if is(b"Image") || (dict.contains_key(b"Width") && dict.contains_key(b"Height")) {
                    self.record(&dict, false);
                }
                let is_content = as_content || is(b"Form") || dict.get::<u8>(b"PatternType") == Some(1);
                if is_content && let Ok(data) = s.decoded() {
                    let resources = dict.get::<Dict<'_>>(b"Resources");
                    self.scan_content(&data, resources.as_ref());
                }
                self.visit_dict(&dict, depth, false);
            }
            _ => {}
        }
    }

    fn visit_dict(&mut self, d: &Dict<'x>, depth: usize, is_start_page: bool) {
        if !is_start_page {
            // Do not wander into other pages (via /Parent, /Dest, /P, ...).
            if let Some(t) = d.get::<Name<'_>>(b"Type")
                && (t.as_ref() == b"Page" || t.as_ref() == b"Pages")
            {
                return;
            }
        }
        for (key, item) in d.entries() {
            let k: &[u8] = key.as_ref();
            if is_start_page && k == b"Contents" {
                // The page's own content was scanned already.
                continue;
            }
            // Keys that lead to other pages, or to data that never holds images.
            if matches!(
                k,
                b"Parent"
                    | b"P"
                    | b"Dest"
                    | b"Next"
                    | b"Prev"
                    | b"Last"
                    | b"First"
                    | b"StructParent"
                    | b"StructParents"
                    | b"Metadata"
                    | b"Thumb"
                    | b"PieceInfo"
                    | b"B"
                    | b"ID"
                    | b"Widths"
                    | b"W"
                    | b"W2"
            ) {
                continue;
            }
            if matches!(k, b"Encoding" | b"ToUnicode" | b"FontFile" | b"FontFile2" | b"FontFile3") {
                // Decoded by hayro, but hold no images: measure only.
                if let MaybeRef::Ref(r) = item
                    && let Some(s) = self.xref.get::<Stream<'x>>(r.into())
                {
                    self.check_stream(&s, true);
                }
                continue;
            }
            let as_content = k == b"CharProcs";
            if let Some(o) = self.resolve(item) {
                if as_content {
                    // Each entry of /CharProcs is a glyph content stream.
                    if let Object::Dict(procs) = o {
                        for (_, glyph) in procs.entries() {
                            if let Some(g) = self.resolve(glyph) {
                                self.visit(g, depth + 2, true);
                            }
                        }
                    }
                } else {
                    self.visit(o, depth + 1, false);
                }
            }
        }
    }
}
