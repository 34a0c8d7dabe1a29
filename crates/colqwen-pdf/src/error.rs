//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while opening or rendering a PDF.
///
/// Every variant names the file (`path`, which is the `name` given to
/// [`Document::from_bytes`](crate::Document::from_bytes) for in-memory documents)
/// and, where relevant, the 0-based `page_index`; the messages show the 1-based page
/// number (`page_index.saturating_add(1)`), as the CLI does. Messages end with what the user can do
/// about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is zero bytes long.
    #[error("{}: file is empty (0 bytes); re-download or re-export it", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// The file is not a PDF at all (no `%PDF-` header in its first 1024
    /// bytes, and the PDF parser found nothing), e.g. an HTML page saved as `.pdf`.
    #[error(
        "{}: not a PDF file (no %PDF- header; it starts with {}); it may be a web page or \
         another format saved with a .pdf name",
        path.display(),
        starts_with
    )]
    NotPdf {
        /// The file.
        path: PathBuf,
        /// The first few bytes, printable ASCII only, for the message.
        starts_with: String,
    },

    /// The file looks like a PDF but cannot be read, even after attempting to
    /// reconstruct its cross-reference table (a broken xref that can be repaired is
    /// *not* an error).
    #[error("{}: damaged PDF: {reason}; re-download the file or repair it (e.g. `qpdf in.pdf out.pdf`)", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, as far as can be told.
        reason: &'static str,
    },

    /// The file opens but has no page at all, not even after repair (a page tree
    /// with no kids, kids that point nowhere, page dictionaries that cannot be read).
    #[error(
        "{}: the PDF has no pages that can be read{}; re-download the file or repair it (e.g. `qpdf in.pdf out.pdf`)",
        path.display(),
        if *expected_pages > 0 { format!(" (a scan of the file finds {expected_pages} page object(s))") } else { String::new() }
    )]
    NoPages {
        /// The file.
        path: PathBuf,
        /// Page objects a tolerant byte scan found (0: the file really has none).
        expected_pages: usize,
    },

    /// The document yields fewer pages than the file holds: some page objects could
    /// not be reached or read, even after repair. Returned by
    /// [`Document::page_count_check`](crate::Document::page_count_check); the pages that
    /// were found can still be rendered.
    #[error(
        "{}: only {page_count} of the {expected_pages} pages in the file can be read \
         (the page tree is damaged); the other pages are missing. Repair the file (e.g. `qpdf in.pdf out.pdf`) \
         or re-export it",
        path.display()
    )]
    PagesMissing {
        /// The file.
        path: PathBuf,
        /// Pages the document yields.
        page_count: usize,
        /// Page objects a tolerant scan found.
        expected_pages: usize,
    },

    /// The file is cut off (it ends inside PDF data, without its final `%%EOF`): only the pages whose every
    /// object came before the cut can be read. Returned by
    /// [`Document::page_count_check`](crate::Document::page_count_check); those pages can still be rendered.
    #[error(
        "{}: the file is truncated (it ends inside PDF data): {page_count} of its {expected_pages} pages \
         were recovered complete{}",
        path.display(),
        if page_count < expected_pages { ", the others are missing" } else { ", but the end of the file is missing" }
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Complete pages recovered.
        page_count: usize,
        /// Pages the file says it holds (its page tree, or the page objects found).
        expected_pages: usize,
    },

    /// The reader yields more pages than the file's page tree and page objects account for: some would be
    /// invented (hayro makes pages of other dictionaries when the tree cannot be read), and which ones cannot
    /// be told, so the file is refused.
    #[error(
        "{}: the PDF reader finds {page_count} pages but the file holds at most {tree_pages} \
         (its page tree and page objects); the page tree is damaged",
        path.display()
    )]
    TooManyPages {
        /// The file.
        path: PathBuf,
        /// Pages the reader yields.
        page_count: usize,
        /// The most pages the file accounts for: the tree's `/Count`, its `/Kids`, the page objects.
        tree_pages: usize,
    },

    /// Dictionaries or arrays are nested deeper than the reader supports (a malformed
    /// or hostile file). Checked before parsing, so it fails fast.
    #[error(
        "{}: PDF objects are nested more than {max_depth} levels deep (at least {depth}, at byte {offset}); \
         the file is malformed or hostile",
        path.display()
    )]
    TooDeeplyNested {
        /// The file.
        path: PathBuf,
        /// Deepest nesting found.
        depth: usize,
        /// The limit.
        max_depth: usize,
        /// Byte offset where the limit was exceeded.
        offset: usize,
    },

    /// Decompressing the streams a page needs would produce more bytes than allowed
    /// (a "decompression bomb": a few MB of compressed data inflating to gigabytes), so
    /// the page is not rendered. Other pages may still render.
    #[error(
        "{}: page {}: {scope} would inflate to {} bytes, more than the {limit_bytes} allowed; \
         this looks like a decompression bomb, so the page is skipped (the other pages are not affected)",
        path.display(),
        page_index.saturating_add(1),
        if *complete { format!("{decoded_bytes}") } else { format!("more than {decoded_bytes}") }
    )]
    DecodeLimit {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// Which limit: one stream, the page, or the whole file.
        scope: DecodeScope,
        /// Decoded bytes measured (a lower bound if `complete` is false: measuring
        /// stopped at the limit).
        decoded_bytes: u64,
        /// Whether `decoded_bytes` is the full size.
        complete: bool,
        /// The limit that applied.
        limit_bytes: u64,
    },

    /// The PDF is encrypted with a user password and none was given.
    #[error("{}: PDF is password-protected and no password was given", path.display())]
    PasswordRequired {
        /// The file.
        path: PathBuf,
    },

    /// The PDF is encrypted and the given password opens it neither as user
    /// nor (for AES-256 files) as owner password.
    #[error("{}: the password given does not open this PDF", path.display())]
    WrongPassword {
        /// The file.
        path: PathBuf,
    },

    /// The PDF uses an encryption scheme the renderer does not implement.
    #[error(
        "{}: PDF uses an unsupported encryption method; decrypt it first (e.g. `qpdf --decrypt --password=PW in.pdf out.pdf`)",
        path.display()
    )]
    UnsupportedEncryption {
        /// The file.
        path: PathBuf,
    },

    /// A page index past the end of the document was requested.
    #[error(
        "{}: page {} does not exist (the document has {page_count} page(s))",
        path.display(),
        page_index.saturating_add(1)
    )]
    PageOutOfRange {
        /// The file.
        path: PathBuf,
        /// The requested 0-based page index.
        page_index: usize,
        /// Number of pages in the document.
        page_count: usize,
    },

    /// The requested pixel size is zero, or larger than the limit
    /// (`max_pixels`, or 65535 px per side, which is the rasterizer's hard limit).
    #[error(
        "{}: page {}: requested render size {width_px}x{height_px} px is outside the \
         allowed range (1..=65535 px per side, at most {max_pixels} px in total), so the page is skipped; \
         a lower --max-visual-tokens renders it smaller",
        path.display(),
        page_index.saturating_add(1)
    )]
    PageTooLarge {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// Requested width.
        width_px: u32,
        /// Requested height.
        height_px: u32,
        /// The pixel limit that applied.
        max_pixels: u64,
    },

    /// The page holds an image whose declared size exceeds `max_image_pixels`.
    /// Rendering it could exhaust memory, which aborts the whole process, so the page
    /// is not rendered.
    #[error(
        "{}: page {}: contains a {width_px}x{height_px} px image, more than the \
         {max_image_pixels} px allowed (memory bound), so the page is skipped",
        path.display(),
        page_index.saturating_add(1)
    )]
    ImageTooLarge {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// Declared image width.
        width_px: u32,
        /// Declared image height.
        height_px: u32,
        /// The limit that applied.
        max_image_pixels: u64,
    },

    /// The page strokes paths with so fine a dash pattern that rendering would need
    /// more dash segments than allowed (each costs memory; an unbounded number
    /// exhausts it, which aborts the whole process).
    #[error(
        "{}: page {}: dashed lines would need about {dash_segments} dash segments, \
         more than the {max_dash_segments} allowed (memory bound), so the page is skipped",
        path.display(),
        page_index.saturating_add(1)
    )]
    TooManyDashes {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// Estimated dash segments.
        dash_segments: u64,
        /// The limit that applied.
        max_dash_segments: u64,
    },

    /// The renderer panicked on this page (a bug in the renderer, triggered by
    /// this file). Other pages may still render.
    #[error(
        "{}: page {}: the PDF renderer crashed ({message}); skip this page or \
         re-save the PDF with another tool",
        path.display(),
        page_index.saturating_add(1)
    )]
    RenderPanicked {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// The panic payload, if it was a string.
        message: String,
    },

    /// Rendering this page took longer than the time budget. The render keeps
    /// running on a detached thread until it ends on its own.
    #[error(
        "{}: page {}: rendering did not finish within {budget:?}, so the page is skipped; \
         --page-timeout raises the budget",
        path.display(),
        page_index.saturating_add(1)
    )]
    RenderTimeout {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// The budget that was exceeded.
        budget: Duration,
    },

    /// Too many earlier renders timed out and are still running on detached
    /// threads, so no new contained render is started.
    #[error(
        "{}: page {}: not rendered because {hung} earlier page renders timed out and \
         are still running; restart the process, and skip the PDFs whose pages timed out",
        path.display(),
        page_index.saturating_add(1)
    )]
    TooManyHungRenders {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// How many timed-out renders are still running.
        hung: usize,
    },

    /// The operating system refused to start a render worker thread.
    #[error("{}: page {}: cannot start a render thread: {source}", path.display(), page_index.saturating_add(1))]
    SpawnWorker {
        /// The file.
        path: PathBuf,
        /// 0-based page index.
        page_index: usize,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Encoding a preview image failed.
    #[error("cannot encode preview image: {source}")]
    EncodePreview {
        /// The underlying error.
        #[source]
        source: image::ImageError,
    },
}

/// Which decode limit of [`RenderLimits`](crate::RenderLimits) a page exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeScope {
    /// One stream (object `obj_number`) inflates to more than
    /// `max_stream_decoded_bytes`.
    Stream {
        /// The stream's object number.
        obj_number: u32,
    },
    /// The streams of one page together inflate to more than `max_page_decoded_bytes`.
    Page,
    /// The pages rendered so far from this document, plus this one, inflate to more than
    /// `max_file_decoded_bytes`.
    File,
}

impl std::fmt::Display for DecodeScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream { obj_number } => write!(f, "compressed stream (object {obj_number})"),
            Self::Page => f.write_str("the compressed streams of this page together"),
            Self::File => f.write_str("the compressed streams of the pages rendered from this file so far"),
        }
    }
}

/// What to do about a PDF error (the CLI prints it as `hint:`, the server puts it in the JSON error): every
/// variant has one. Every PDF error is about the user's file, so the default `user_fixable` (true) holds.
impl colqwen_core::Hint for Error {
    fn hint(&self) -> Option<String> {
        use Error as P;
        const REPAIR: &str = "re-download or re-export the file, or repair it (e.g. `qpdf in.pdf out.pdf`); \
                              other files are not affected";
        Some(match self {
            P::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "give this user read access to the file".into()
            }
            P::Io { .. } => "check that the file exists and can be read".into(),
            P::PasswordRequired { .. } => {
                "pass the password with --password-file FILE (or the COLQWEN_PDF_PASSWORD variable); \
                 --password is visible to other users in `ps`"
                    .into()
            }
            P::WrongPassword { .. } => "check the password (the first line of the password file, or the \
                                        COLQWEN_PDF_PASSWORD variable); it must be the PDF's user password"
                .into(),
            P::UnsupportedEncryption { .. } => {
                "decrypt it with a tool that supports its method, then ingest the decrypted copy".into()
            }
            P::Empty { .. } | P::NotPdf { .. } | P::Damaged { .. } | P::NoPages { .. } | P::TooDeeplyNested { .. } => {
                REPAIR.into()
            }
            P::PagesMissing { .. } => {
                "the pages that can be read are stored; ingest a repaired or re-exported copy to add the rest".into()
            }
            P::TooManyPages { .. } => REPAIR.into(),
            P::Truncated { .. } => {
                "the pages recovered are stored; download or copy the file again in full, then ingest it again".into()
            }
            P::DecodeLimit { .. } | P::ImageTooLarge { .. } | P::TooManyDashes { .. } => {
                "if the file is trusted, print the page to a new PDF (flattening it) and ingest that".into()
            }
            P::RenderTimeout { .. } => "raise --page-timeout if the page is just slow".into(),
            P::RenderPanicked { .. } => "re-save the PDF with another tool (e.g. `qpdf in.pdf out.pdf`)".into(),
            P::TooManyHungRenders { .. } => "restart colqwen, and leave out the PDFs whose pages timed out".into(),
            P::PageTooLarge { .. } => "a lower --max-visual-tokens renders it smaller".into(),
            P::PageOutOfRange { .. } => "page numbers start at 1 and end at the document's page count".into(),
            P::SpawnWorker { .. } => "the system is out of threads or memory; retry with fewer --jobs".into(),
            P::EncodePreview { .. } => return None,
        })
    }
}
