//! Rendering with containment: panics and runaway renders become errors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use image::RgbImage;

use crate::document::Document;
use crate::error::{Error, Result};

/// Limits for [`render_contained`] and [`render_size`](crate::render_size).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderLimits {
    /// Largest `width × height` a page may be rendered at. Caps absurd page
    /// sizes (a 200-inch poster) so one page cannot take gigabytes: a render needs
    /// about 4 bytes per pixel plus the RGB output, 3 bytes per pixel.
    pub max_pixels: u64,
    /// Largest image (declared `width × height`) a page may contain for
    /// [`render_contained`] to render it. hayro allocates about 1–4 bytes per image
    /// pixel before checking the image data, and a failed allocation aborts the
    /// process; see [`Error::ImageTooLarge`].
    pub max_image_pixels: u64,
    /// Most dash segments (estimated: stroked length / dash period, summed over the
    /// page) a page may need for [`render_contained`] to render it. hayro turns every
    /// dash into an outline of about 400 bytes before rasterizing; see
    /// [`Error::TooManyDashes`].
    pub max_dash_segments: u64,
    /// Most bytes one stream may decode to (Flate, LZW, RunLength, ASCII filters; image
    /// codecs are bounded by `max_image_pixels`) for [`render_contained`] to render a page
    /// that uses it; see [`Error::DecodeLimit`]. hayro decodes a stream into one buffer
    /// with no cap, so a few MB of Flate data can ask for gigabytes.
    pub max_stream_decoded_bytes: u64,
    /// Most bytes all the streams one page uses may decode to together.
    pub max_page_decoded_bytes: u64,
    /// Most bytes the pages rendered from one [`Document`] may decode to in all
    /// (counted per render: a stream shared by many pages counts on each). Bounds the
    /// time a file of shared bombs can take, and the page contents hayro keeps decoded
    /// for the document's lifetime.
    pub max_file_decoded_bytes: u64,
    /// Wall-clock budget for one page render.
    pub time_budget: Duration,
    /// How many renders that timed out may still be running (detached) before
    /// [`render_contained`] refuses to start new ones with
    /// [`Error::TooManyHungRenders`]. Counted per process.
    pub max_hung_renders: usize,
    /// Render at about this many times the target pixel count (see
    /// [`render_size`](crate::render_size)), so that rounding each side to a multiple
    /// of 28 downstream can only downsample.
    pub oversample: f64,
    /// Never render below this resolution (dots per inch), even if the pixel target
    /// would allow fewer pixels; only `max_pixels` overrides it. Matters for pages
    /// larger than about A3 at the default target.
    pub min_dpi: f32,
}

impl Default for RenderLimits {
    /// 16.7 M pixels (4096²) per render, 268 M pixels (2^28, e.g. 16384²) per image,
    /// 2 M dash segments per page (about 0.8 GB, 2 s), decoded streams of 256 MiB per
    /// stream, 512 MiB per page and 16 GiB per document, 30 s, 4 hung renders, 1.25×
    /// oversampling, 72 dpi minimum.
    fn default() -> Self {
        Self {
            max_pixels: 4096 * 4096,
            max_image_pixels: 1 << 28,
            max_dash_segments: 2_000_000,
            max_stream_decoded_bytes: 256 << 20,
            max_page_decoded_bytes: 512 << 20,
            max_file_decoded_bytes: 16 << 30,
            time_budget: Duration::from_secs(30),
            max_hung_renders: 4,
            oversample: 1.25,
            min_dpi: 72.0,
        }
    }
}

/// Stack size of render worker threads. hayro caps nesting of forms/patterns at
/// 50 levels; a large stack leaves room for that on any input (a stack overflow
/// aborts the process and cannot be contained). Only touched pages are committed.
const WORKER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Number of contained renders that timed out and whose thread is still running.
static HUNG_RENDERS: AtomicUsize = AtomicUsize::new(0);

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// How many renders started by [`render_contained`]/[`contain`] timed out and are
/// still running on their detached threads (process-wide).
pub fn hung_renders() -> usize {
    HUNG_RENDERS.load(Ordering::SeqCst)
}

/// Render a page with containment, for untrusted PDFs.
///
/// - The size is checked against `limits.max_pixels` first ([`Error::PageTooLarge`]).
/// - On the worker, before rendering, the objects the page uses are scanned for
///   images larger than `limits.max_image_pixels` ([`Error::ImageTooLarge`]) and for
///   dashed strokes needing more than `limits.max_dash_segments` dashes
///   ([`Error::TooManyDashes`]): either could make hayro request more memory than
///   exists, which aborts the process.
/// - The render runs on a new worker thread under `catch_unwind`; a panic in the
///   renderer becomes [`Error::RenderPanicked`] and other pages can still be rendered.
///   The process's panic hook still runs, so the default hook prints the panic to
///   stderr; a binary that wants it silent installs its own hook.
/// - If the render takes longer than `limits.time_budget`, this returns
///   [`Error::RenderTimeout`]. A thread cannot be killed in Rust: the worker is
///   **detached** and keeps one core busy (and its memory) until it ends on its own;
///   its result is then dropped. At most `limits.max_hung_renders` such threads may
///   exist at once; beyond that, this returns [`Error::TooManyHungRenders`] without
///   starting a render (the caller should then skip the rest of the document, or
///   restart the process).
///
/// - Every stream the page uses is decoded first with a cap (bytes per stream, per page
///   and per document: `limits.max_*_decoded_bytes`), before hayro decodes it without
///   one; a decompression bomb becomes [`Error::DecodeLimit`].
///
/// Not contained: an out-of-memory abort and a stack overflow end the whole process
/// (Rust cannot catch either). `max_pixels`, the hazard scan, the decode limits and the
/// worker's 64 MiB stack make them unlikely (NOTES.md gives the peak memory measured
/// per page).
pub fn render_contained(
    doc: &Arc<Document>,
    page_index: usize,
    width_px: u32,
    height_px: u32,
    limits: &RenderLimits,
) -> Result<RgbImage> {
    doc.check_size(page_index, width_px, height_px, limits.max_pixels)?;
    let worker_doc = Arc::clone(doc);
    let worker_limits = limits.clone();
    contain(doc.path(), page_index, limits, move || {
        worker_doc.check_page_hazards(page_index, &worker_limits)?;
        worker_doc.render_page(page_index, width_px, height_px)
    })
}

/// The containment used by [`render_contained`], for any render closure: runs `f`
/// on a worker thread under `catch_unwind` with `limits.time_budget`. `path` and
/// `page_index` only label the errors. Exposed so the containment can be tested (and
/// reused) without a PDF that makes hayro panic or hang.
pub fn contain<F>(path: &Path, page_index: usize, limits: &RenderLimits, f: F) -> Result<RgbImage>
where
    F: FnOnce() -> Result<RgbImage> + Send + 'static,
{
    let hung = HUNG_RENDERS.load(Ordering::SeqCst);
    if hung >= limits.max_hung_renders {
        return Err(Error::TooManyHungRenders { path: path.to_path_buf(), page_index, hung });
    }

    let state = Arc::new(AtomicU8::new(RUNNING));
    let worker_state = Arc::clone(&state);
    let (tx, rx) = mpsc::sync_channel::<std::thread::Result<Result<RgbImage>>>(1);

    std::thread::Builder::new()
        .name(format!("colqwen-pdf-render-p{page_index}"))
        .stack_size(WORKER_STACK_BYTES)
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f));
            // The receiver may be gone (timed out); then the result is just dropped.
            let _ = tx.send(outcome);
            if worker_state.compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                // The caller gave up on us and counted us as hung.
                HUNG_RENDERS.fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(page_index, "a timed-out render finished");
            }
        })
        .map_err(|source| Error::SpawnWorker { path: path.to_path_buf(), page_index, source })?;

    let outcome = match rx.recv_timeout(limits.time_budget) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // Count first, then mark abandoned, so the worker's decrement can never
            // run before this increment.
            HUNG_RENDERS.fetch_add(1, Ordering::SeqCst);
            if state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                tracing::warn!(
                    path = %path.display(),
                    page_index,
                    budget = ?limits.time_budget,
                    "page render timed out; its thread is left running"
                );
                return Err(Error::RenderTimeout { path: path.to_path_buf(), page_index, budget: limits.time_budget });
            }
            // It finished just now: its result is in the channel.
            HUNG_RENDERS.fetch_sub(1, Ordering::SeqCst);
            match rx.recv() {
                Ok(outcome) => outcome,
                Err(_) => Err(no_result()),
            }
        }
        // The worker ended without sending (cannot happen: send precedes the end and
        // catch_unwind catches panics) — report it as a crash.
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(no_result()),
    };

    outcome.unwrap_or_else(|payload| {
        let message = panic_message(payload.as_ref());
        tracing::warn!(path = %path.display(), page_index, %message, "page render panicked");
        Err(Error::RenderPanicked { path: path.to_path_buf(), page_index, message })
    })
}

fn no_result() -> Box<dyn std::any::Any + Send> {
    Box::new("render worker ended without a result")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
