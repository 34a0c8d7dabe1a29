//! Opening a PDF and rendering its pages with hayro.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hayro::hayro_interpret::util::TransformExt;
use hayro::hayro_interpret::{InterpreterSettings, InterpreterWarning};
use hayro::hayro_syntax::object::ObjectIdentifier;
use hayro::hayro_syntax::page::Page;
use hayro::hayro_syntax::{DecryptionError, LoadPdfError, Pdf};
use hayro::kurbo::Affine;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::vello_cpu::peniko::ImageAlphaType;
use hayro::vello_cpu::{Pixels, Pixmap, RasterizerSettings, RenderContext, Resources, TargetInit};
use hayro::{RenderCache, RenderSettings, render_into};
use image::RgbImage;

use crate::error::{Error, Result};

/// Largest width or height hayro can render into (its pixmaps use `u16` sides, in
/// whole tiles of 4 px).
///
/// 65532, not 65535: vello_cpu rounds the pixmap up to whole 4-px tiles in `u16`, and
/// panics (`unwrap` on `None`) for a side above 65532.
pub const MAX_SIDE_PX: u32 = 65_532;

/// How far into the file a `%PDF-` header is looked for (as Acrobat does).
const HEADER_SEARCH_BYTES: usize = 1024;

/// An opened PDF.
///
/// `Document` is `Send + Sync`: one `Arc<Document>` can be shared by several
/// threads, each rendering different pages at the same time (the parsed objects are
/// shared and read-only; each render gets its own rasterizer state and caches).
pub struct Document {
    pdf: Pdf,
    path: PathBuf,
    /// hayro's index of each of the document's pages (the pages hayro yields, less what is not a page, and
    /// in a truncated file less the pages that lost objects in the cut).
    pages: Vec<usize>,
    /// Pages the file says it holds (at least `page_count`): see [`Document::expected_pages`].
    expected_pages: usize,
    /// The file ends inside PDF data (see `looks_truncated`).
    truncated: bool,
    /// Decoded-size measurements and the file's decode budget, for contained renders.
    pub(crate) decode: crate::guard::DecodeLedger,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("path", &self.path)
            .field("page_count", &self.page_count())
            .field("expected_pages", &self.expected_pages)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// Read and open the PDF at `path`.
    ///
    /// `password`: `None` opens unencrypted files and files encrypted with an
    /// empty user password (the common "no password needed to open" case).
    /// `Some(pw)` is tried first; if it does not match, the empty password is tried
    /// too, so one `--password` can be passed for a whole folder of PDFs.
    pub fn open(path: &Path, password: Option<&str>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::open_bytes(bytes, password, path.to_path_buf())
    }

    /// Open a PDF held in memory. `name` is only used in error messages and logs.
    pub fn from_bytes(bytes: Vec<u8>, password: Option<&str>, name: &str) -> Result<Self> {
        Self::open_bytes(bytes, password, PathBuf::from(name))
    }

    fn open_bytes(mut bytes: Vec<u8>, password: Option<&str>, path: PathBuf) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Empty { path });
        }
        let _span = tracing::debug_span!("open_pdf", path = %path.display(), bytes = bytes.len()).entered();

        // A tolerant scan of the bytes first: nesting depth (hayro's recovery is slow on
        // very deep unclosed nesting, and it cannot read deeper than 512 levels anyway) and
        // the page objects a lenient reader finds. It also turns vertical tabs between tokens
        // into spaces, so that hayro finds the objects they separate.
        let raw = crate::scan::scan(&mut bytes);
        if let Some(offset) = raw.too_deep_at {
            return Err(Error::TooDeeplyNested {
                path,
                depth: raw.max_depth,
                max_depth: crate::scan::MAX_NESTING,
                offset,
            });
        }
        if raw.vertical_tabs > 0 {
            tracing::debug!(vertical_tabs = raw.vertical_tabs, "read vertical tabs between tokens as spaces");
        }
        let raw_pages = raw.page_count(&bytes);
        let raw_tree_count = raw.tree_count(&bytes);

        // Keep the bytes shared so a second attempt (empty password) does not copy them,
        // and so they are still at hand to diagnose a failure.
        let data: Arc<Vec<u8>> = Arc::new(bytes);
        // A truncated file: hayro rebuilds its xref by scanning for objects and finds the pages
        // whose objects survived; only the pages whose every object came before the cut are
        // kept (below), and `page_count_check` names the file as incomplete. One that lost its
        // catalog or page tree gets a new tree of the page objects found.
        let truncated = looks_truncated(&data);
        let rebuilt = || {
            let fixed = crate::repair::rebuild_tree(&data, &raw)?;
            let pdf = load(&Arc::new(fixed), password).ok()?;
            tracing::warn!(pages = pdf.pages().len(), "rebuilt the page tree of a truncated file");
            Some(pdf)
        };
        let mut pdf = match load(&data, password) {
            Ok(pdf) => pdf,
            Err(LoadError::Wrong) => return Err(Error::WrongPassword { path }),
            Err(LoadError::Hayro(e)) => {
                // Objects appended after the last %%EOF can hide the file's real xref: retry
                // on the bytes up to it.
                let retried = cut_at_last_eof(&data).and_then(|cut| load(&Arc::new(cut), password).ok());
                match retried.or_else(|| if truncated { rebuilt() } else { None }) {
                    Some(pdf) => {
                        tracing::debug!("opened the file cut at its last %%EOF, or with a rebuilt page tree");
                        pdf
                    }
                    None => return Err(classify_load_error(e, &data, path)),
                }
            }
        };

        // Pages hayro's page tree lost, or boxes it cannot render: repair and reopen.
        let needs_repair = pdf.pages().len() < raw_pages || pdf.pages().iter().any(|p| !page_box_is_sane(p));
        if needs_repair && !truncated {
            let xref = pdf.xref();
            let unreadable = |num: u32, gen_num: u16| {
                xref.get::<hayro::hayro_syntax::object::Dict<'_>>(ObjectIdentifier::new(num, i32::from(gen_num)))
                    .is_none()
            };
            if let Some(fix) = crate::repair::repair(&data, &raw, unreadable) {
                let before = pdf.pages().len();
                match load(&Arc::new(fix.data), password) {
                    Ok(repaired) if repaired.pages().len() >= before => {
                        tracing::warn!(
                            path = %path.display(),
                            pages_before = before,
                            pages_after = repaired.pages().len(),
                            retyped_nodes = fix.retyped,
                            rebuilt_pages = fix.rebuilt,
                            replaced_boxes = fix.boxes,
                            orphan_pages = fix.orphans,
                            "repaired the page tree"
                        );
                        pdf = repaired;
                    }
                    _ => tracing::debug!("the repaired file is no better; keeping the original"),
                }
            }
        }

        // The pages: what hayro yields, less the dictionaries that are not pages (hayro makes
        // pages of annotations when the tree cannot be read), and in a truncated file less the
        // pages that lost objects in the cut.
        let kept = |pdf: &Pdf| -> Vec<usize> {
            (0..pdf.pages().len())
                .filter(|&i| {
                    let p = &pdf.pages()[i];
                    crate::tree::is_page(p) && (!truncated || crate::tree::is_complete(p, pdf.xref()))
                })
                .collect()
        };
        let mut pages = kept(&pdf);
        if pages.is_empty()
            && truncated
            && let Some(other) = rebuilt()
        {
            let other_pages = kept(&other);
            if !other_pages.is_empty() {
                (pdf, pages) = (other, other_pages);
            }
        }
        let tree = crate::tree::count(&pdf);
        let not_pages = pdf.pages().iter().filter(|p| !crate::tree::is_page(p)).count();
        if not_pages > 0 {
            tracing::warn!(path = %path.display(), not_pages, "dropped dictionaries that are not pages");
        }
        // What the file says it holds: the tree's /Count (read by hayro, else from the bytes),
        // the leaves its /Kids name, the page objects in the bytes.
        let tree_count = tree.count.or(raw_tree_count).unwrap_or(0);
        let tree_pages = tree_count.max(tree.kids).max(raw_pages);
        let page_count = pages.len();
        if page_count == 0 {
            return Err(if truncated {
                Error::Damaged {
                    path,
                    reason: "the file is truncated (it ends inside PDF data, without a final %%EOF) and no complete page could be recovered",
                }
            } else {
                Error::NoPages { path, expected_pages: tree_pages }
            });
        }
        // When nothing in the file gives a count (an unreadable tree whose pages sit in object
        // streams, where the byte scan cannot see them), there is no bound to hold the reader to.
        let bound_known = tree.count.or(raw_tree_count).is_some() || tree.kids > 0 || raw_pages > 0;
        if bound_known && page_count > tree_pages {
            return Err(Error::TooManyPages { path, page_count, tree_pages });
        }
        let expected_pages = tree_pages.max(page_count);
        tracing::debug!(
            pages = page_count,
            expected_pages,
            tree_count,
            tree_kids = tree.kids,
            raw_pages,
            truncated,
            version = ?pdf.version(),
            "opened PDF"
        );
        Ok(Self { pdf, pages, path, expected_pages, truncated, decode: crate::guard::DecodeLedger::default() })
    }

    /// The file path (or the `name` given to [`Document::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of pages (never 0: a PDF without pages fails to open with
    /// [`Error::NoPages`], and never more than the file says it holds: that fails with
    /// [`Error::TooManyPages`]).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// How many pages the file says it holds: the largest of [`Document::page_count`], the
    /// page tree's root `/Count`, the number of leaves its `/Kids` name (a kid whose object
    /// is missing counts), and the number of page objects (`/Type /Page`, not `/Pages`) in a
    /// byte-level scan of the file (objects inside compressed object streams are not seen by
    /// that scan). More than `page_count` means pages were lost even after repair; see
    /// [`Document::page_count_check`].
    pub fn expected_pages(&self) -> usize {
        self.expected_pages
    }

    /// Whether the file is cut off (it ends inside PDF data): its pages are the ones whose
    /// every object came before the cut, and [`Document::page_count_check`] fails.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// `Err(`[`Error::Truncated`]`)` for a cut-off file, `Err(`[`Error::PagesMissing`]`)`
    /// if the document yields fewer pages than the file holds ([`Document::expected_pages`]),
    /// naming both counts. Callers that index a document should report this as a failure of
    /// the file even if its other pages are used: the file is damaged (or holds unreachable
    /// page objects, e.g. deleted pages left behind by an editor, which the scan cannot tell
    /// apart).
    pub fn page_count_check(&self) -> Result<()> {
        if self.truncated {
            return Err(Error::Truncated {
                path: self.path.clone(),
                page_count: self.page_count(),
                expected_pages: self.expected_pages,
            });
        }
        if self.page_count() < self.expected_pages {
            return Err(Error::PagesMissing {
                path: self.path.clone(),
                page_count: self.page_count(),
                expected_pages: self.expected_pages,
            });
        }
        Ok(())
    }

    /// Page size in PDF points (1/72 inch) as displayed: the crop box (intersected
    /// with the media box) with `/Rotate` applied, so a landscape page rotated by 90°
    /// reports `(height, width)` of its box. Zero-area boxes are reported as A4, which
    /// is what hayro renders them as.
    pub fn page_size_pt(&self, page_index: usize) -> Result<(f32, f32)> {
        Ok(self.page(page_index)?.render_dimensions())
    }

    fn page(&self, page_index: usize) -> Result<&Page<'_>> {
        let out_of_range =
            || Error::PageOutOfRange { path: self.path.clone(), page_index, page_count: self.pages.len() };
        let &i = self.pages.get(page_index).ok_or_else(out_of_range)?;
        self.pdf.pages().get(i).ok_or_else(out_of_range)
    }

    /// Render one page to exactly `width_px` × `height_px` RGB8 pixels on a white
    /// background. The page (as displayed, after `/Rotate`) is stretched to fill the
    /// image; pass a size with the page's aspect ratio (see
    /// [`render_size`](crate::render_size)) to avoid distortion.
    ///
    /// Runs on the calling thread (hayro rasterizes single-threaded). Only the hard
    /// limit of 65535 px per side is checked here: no time limit, no panic
    /// containment and no scan for oversized images (which can abort the process, see
    /// [`Error::ImageTooLarge`]). Use [`render_contained`](crate::render_contained) for
    /// untrusted input.
    ///
    /// Problems hayro recovers from (a font or image that fails to load) do not fail
    /// the render; they are logged once per page with `tracing::warn!`.
    pub fn render_page(&self, page_index: usize, width_px: u32, height_px: u32) -> Result<RgbImage> {
        self.renderer().render_page(page_index, width_px, height_px)
    }

    /// A renderer that keeps hayro's caches (parsed fonts, glyph outlines, decoded
    /// objects) and its rasterizer buffers between pages: about 1.3× the throughput of
    /// [`Document::render_page`] on text documents (see NOTES.md). It is not `Send`: make
    /// one per thread, e.g. one per worker in a thread pool, all borrowing the same
    /// shared `Document`. Its caches grow with the fonts and images seen; drop it (or
    /// make a new one) between documents.
    pub fn renderer(&self) -> PageRenderer<'_> {
        PageRenderer { doc: self, cache: RenderCache::new(), ctx: None }
    }

    /// Scan what the page uses and fail with [`Error::ImageTooLarge`],
    /// [`Error::TooManyDashes`] or [`Error::DecodeLimit`] if rendering it could exhaust
    /// memory (see `guard.rs`). On success the page's decoded bytes are added to the
    /// document's running total (`limits.max_file_decoded_bytes`).
    pub(crate) fn check_page_hazards(&self, page_index: usize, limits: &crate::RenderLimits) -> Result<()> {
        let page = self.page(page_index)?;
        let decode_limits =
            crate::guard::DecodeLimits { stream: limits.max_stream_decoded_bytes, page: limits.max_page_decoded_bytes };
        let scan = crate::guard::scan_page(page, &self.decode, decode_limits);
        tracing::debug!(page_index, ?scan, "scanned page before rendering");
        if let Some((scope, decoded_bytes, complete, limit_bytes)) = scan.decode_exceeded {
            return Err(Error::DecodeLimit {
                path: self.path.clone(),
                page_index,
                scope,
                decoded_bytes,
                complete,
                limit_bytes,
            });
        }
        if let Some((w, h)) = scan.largest_image
            && u64::from(w) * u64::from(h) > limits.max_image_pixels
        {
            return Err(Error::ImageTooLarge {
                path: self.path.clone(),
                page_index,
                width_px: w,
                height_px: h,
                max_image_pixels: limits.max_image_pixels,
            });
        }
        if scan.dash_segments > limits.max_dash_segments as f64 {
            return Err(Error::TooManyDashes {
                path: self.path.clone(),
                page_index,
                // Saturating float-to-int conversion.
                dash_segments: scan.dash_segments as u64,
                max_dash_segments: limits.max_dash_segments,
            });
        }
        let before = self.decode.add(scan.decoded_bytes);
        let total = before.saturating_add(scan.decoded_bytes);
        if total > limits.max_file_decoded_bytes {
            // Not rendered: take it back out of the total.
            self.decode.used_bytes.fetch_sub(scan.decoded_bytes, Ordering::SeqCst);
            return Err(Error::DecodeLimit {
                path: self.path.clone(),
                page_index,
                scope: crate::DecodeScope::File,
                decoded_bytes: total,
                complete: true,
                limit_bytes: limits.max_file_decoded_bytes,
            });
        }
        Ok(())
    }

    /// Check a requested pixel size against the rasterizer's limits and `max_pixels`.
    pub(crate) fn check_size(
        &self,
        page_index: usize,
        width_px: u32,
        height_px: u32,
        max_pixels: u64,
    ) -> Result<(u16, u16)> {
        let total = u64::from(width_px) * u64::from(height_px);
        match (u16::try_from(width_px), u16::try_from(height_px)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 && total <= max_pixels => Ok((w, h)),
            _ => Err(Error::PageTooLarge {
                path: self.path.clone(),
                page_index,
                width_px,
                height_px,
                max_pixels: max_pixels.min(u64::from(MAX_SIDE_PX) * u64::from(MAX_SIDE_PX)),
            }),
        }
    }
}

/// Renders pages of one [`Document`], reusing caches between pages; see
/// [`Document::renderer`].
pub struct PageRenderer<'d> {
    doc: &'d Document,
    cache: RenderCache<'d>,
    ctx: Option<RenderContext>,
}

impl std::fmt::Debug for PageRenderer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRenderer").field("doc", &self.doc.path).finish_non_exhaustive()
    }
}

impl PageRenderer<'_> {
    /// Same as [`Document::render_page`].
    pub fn render_page(&mut self, page_index: usize, width_px: u32, height_px: u32) -> Result<RgbImage> {
        let doc = self.doc;
        let page = doc.page(page_index)?;
        let (w16, h16) = doc.check_size(page_index, width_px, height_px, u64::MAX)?;
        let _span =
            tracing::debug_span!("render_page", path = %doc.path.display(), page_index, width_px, height_px).entered();

        let warnings = Arc::new(WarningCounts::default());
        let sink = warnings.clone();
        let interpreter_settings =
            InterpreterSettings { warning_sink: Arc::new(move |w| sink.record(w)), ..InterpreterSettings::default() };

        let (page_w_pt, page_h_pt) = page.render_dimensions();
        let transform = Affine::scale_non_uniform(
            f64::from(width_px) / f64::from(page_w_pt),
            f64::from(height_px) / f64::from(page_h_pt),
        ) * page.initial_transform(true).to_kurbo();

        // Reuse the rasterizer's buffers; take it out while rendering so that a panic
        // inside hayro cannot leave a half-used context behind for the next page.
        let mut ctx = match self.ctx.take() {
            Some(mut ctx) => {
                ctx.reset_and_resize(w16, h16);
                ctx
            }
            None => RenderContext::new(w16, h16),
        };
        render_into(page, &self.cache, &interpreter_settings, &RenderSettings::default(), &mut ctx, transform);
        ctx.flush();
        let mut pixmap = Pixmap::new(w16, h16);
        ctx.render_with(
            &mut pixmap,
            &mut Resources::default(),
            RasterizerSettings { target_init: TargetInit::Clear(WHITE), ..RasterizerSettings::default() },
        );
        self.ctx = Some(ctx);

        warnings.report(&doc.path, page_index);

        let rgb = match pixmap.try_take_rgb8(ImageAlphaType::AlphaPremultiplied) {
            Pixels::Rgb8(rgb) => rgb,
            // Not expected with an opaque white background, but composite over white
            // rather than fail: premultiplied c over white is c + (255 - a).
            Pixels::Rgba8(rgba) => rgba
                .chunks_exact(4)
                .flat_map(|p| {
                    let under = 255 - p[3];
                    [p[0].saturating_add(under), p[1].saturating_add(under), p[2].saturating_add(under)]
                })
                .collect(),
        };
        Ok(RgbImage::from_raw(width_px, height_px, rgb).expect("hayro returns exactly width*height RGB pixels"))
    }
}

enum LoadError {
    /// A password was given, and neither it nor the empty password opens the file.
    Wrong,
    Hayro(LoadPdfError),
}

/// Open with hayro: `password` first; if it does not match, the empty user password
/// (the file may have only an owner password).
fn load(data: &Arc<Vec<u8>>, password: Option<&str>) -> std::result::Result<Pdf, LoadError> {
    match (Pdf::new_with_password(data.clone(), password.unwrap_or("")), password) {
        (Err(LoadPdfError::Decryption(DecryptionError::PasswordProtected)), Some(pw)) if !pw.is_empty() => {
            match Pdf::new_with_password(data.clone(), "") {
                Ok(pdf) => {
                    tracing::debug!("given password did not match; opened with the empty user password");
                    Ok(pdf)
                }
                Err(LoadPdfError::Decryption(DecryptionError::PasswordProtected)) => Err(LoadError::Wrong),
                Err(e) => Err(LoadError::Hayro(e)),
            }
        }
        (r, _) => r.map_err(LoadError::Hayro),
    }
}

/// The bytes up to and including the last `%%EOF`, if anything but whitespace follows it.
fn cut_at_last_eof(data: &[u8]) -> Option<Vec<u8>> {
    let pos = rfind(data, b"%%EOF")?;
    let end = pos + 5;
    (!data[end..].trim_ascii().is_empty()).then(|| data[..end].to_vec())
}

/// Whether hayro's media and crop boxes of `page` can be rendered as they are.
fn page_box_is_sane(page: &Page<'_>) -> bool {
    [page.media_box(), page.crop_box()].iter().all(|r| crate::repair::box_is_sane(r.x0, r.y0, r.x1, r.y1))
}

/// Map hayro's load error to ours, looking at the bytes to tell "not a PDF" from
/// "a damaged PDF".
fn classify_load_error(e: LoadPdfError, data: &[u8], path: PathBuf) -> Error {
    match e {
        LoadPdfError::Decryption(DecryptionError::PasswordProtected) => Error::PasswordRequired { path },
        LoadPdfError::Decryption(DecryptionError::UnsupportedAlgorithm) => Error::UnsupportedEncryption { path },
        LoadPdfError::Decryption(DecryptionError::InvalidEncryption) => {
            Error::Damaged { path, reason: "its encryption dictionary is invalid" }
        }
        LoadPdfError::Decryption(DecryptionError::MissingIDEntry) => {
            Error::Damaged { path, reason: "it is encrypted but its trailer lacks the /ID entry needed to decrypt it" }
        }
        LoadPdfError::Invalid => {
            if !has_pdf_header(data) {
                Error::NotPdf { path, starts_with: printable_prefix(data, 16) }
            } else if looks_truncated(data) {
                Error::Damaged {
                    path,
                    reason: "the file is truncated (it ends inside PDF data, without a final %%EOF) and no pages could be recovered",
                }
            } else {
                Error::Damaged {
                    path,
                    reason: "neither its cross-reference table nor its page tree could be read or reconstructed",
                }
            }
        }
    }
}

fn has_pdf_header(data: &[u8]) -> bool {
    find(&data[..data.len().min(HEADER_SEARCH_BYTES)], b"%PDF-")
}

/// A file is taken as truncated if it has no `%%EOF` at all, or if it ends inside a
/// PDF object after its last `%%EOF` (an `obj` without its `endobj`: an incremental update
/// or the rest of a linearized file was cut off). Complete objects appended after the
/// last `%%EOF` (an update whose xref was never written) and junk (padding, an HTML
/// footer) are fine: viewers ignore them, and so does hayro.
fn looks_truncated(data: &[u8]) -> bool {
    match rfind(data, b"%%EOF") {
        None => true,
        Some(pos) => {
            let tail = &data[pos + 5..];
            let last_start = rfind(tail, b" obj");
            let last_end = rfind(tail, b"endobj");
            match (last_start, last_end) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(s), Some(e)) => s > e,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The first `n` bytes as a quoted string, non-printable bytes shown as `.`.
fn printable_prefix(data: &[u8], n: usize) -> String {
    let s: String =
        data.iter().take(n).map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
    format!("{s:?}")
}

/// Counts of hayro's (non-fatal) interpreter warnings for one page render.
#[derive(Default)]
struct WarningCounts {
    unsupported_font: AtomicU32,
    image_decode_failure: AtomicU32,
    other: AtomicU32,
}

impl WarningCounts {
    fn record(&self, w: InterpreterWarning) {
        let counter = match w {
            InterpreterWarning::UnsupportedFont => &self.unsupported_font,
            InterpreterWarning::ImageDecodeFailure => &self.image_decode_failure,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, path: &Path, page_index: usize) {
        let fonts = self.unsupported_font.load(Ordering::Relaxed);
        let images = self.image_decode_failure.load(Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        if fonts + images + other > 0 {
            tracing::warn!(
                path = %path.display(),
                page_index,
                unsupported_fonts = fonts,
                image_decode_failures = images,
                other_warnings = other,
                "page rendered, but some of its content could not be drawn"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Document>();
    }

    #[test]
    fn truncation_heuristic() {
        assert!(looks_truncated(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"));
        assert!(!looks_truncated(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"));
        assert!(!looks_truncated(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n\0\0\0<html></html>"));
        assert!(looks_truncated(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n2 0 obj\n<<>>\nendo"));
        assert!(!looks_truncated(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n2 0 obj\n<<>>\nendobj\n"));
    }

    #[test]
    fn printable_prefix_masks_binary() {
        assert_eq!(printable_prefix(b"<!DOCTYPE html>\n<x>", 16), "\"<!DOCTYPE html>.\"");
    }
}
