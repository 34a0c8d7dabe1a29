//! PDF bytes → RGB page images, for colqwen.
//!
//! Backed by [hayro](https://crates.io/crates/hayro) 0.9 (pure Rust, no C
//! dependencies). Knows nothing about models: it opens PDFs ([`Document`]), reports
//! page sizes, renders pages to exact pixel sizes on white ([`Document::render_page`]),
//! contains renderer panics and runaway renders ([`render_contained`]), picks render
//! sizes for a model pixel budget ([`render_size`]) and encodes JPEG previews
//! ([`encode_preview`]).
//!
//! Damaged files are repaired where possible (lost pages put back, absurd page boxes
//! replaced), a file without pages fails to open, a file whose reader yields more pages than
//! its page tree holds fails to open, a truncated file opens with its complete pages, and
//! [`Document::page_count_check`] says when pages are missing or the file is truncated. [`render_contained`] bounds what a page may decode
//! (decompression bombs), allocate and take ([`RenderLimits`]).
//!
//! Page indices are 0-based (`page_index`). Errors name the file and page and say what
//! the user can do ([`Error`]). Logging is through `tracing` only.
//!
//! # Threads
//! [`Document`] is `Send + Sync`. Share one `Arc<Document>` and render different pages
//! from several threads at once; there is no need to open the file once per thread.
//! hayro itself renders a page on one core. For throughput, give each worker thread its
//! own [`PageRenderer`] ([`Document::renderer`]), which keeps hayro's caches between
//! pages.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod contain;
mod decode;
mod document;
mod error;
mod guard;
mod preview;
mod repair;
mod scan;
mod size;
mod tree;

pub use contain::{RenderLimits, contain, hung_renders, render_contained};
pub use document::{Document, MAX_SIDE_PX, PageRenderer};
pub use error::{DecodeScope, Error, Result};
pub use preview::encode_preview;
pub use size::render_size;
