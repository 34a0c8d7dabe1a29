//! Progress bars on a terminal (indicatif), drawn from the library's `Progress` callbacks. Hidden under
//! `--quiet`, `--verbose`, `--json`, a non-terminal stderr and COLQWEN_NO_PROGRESS.

use std::io::IsTerminal;
use std::path::Path;

use colqwen::{Failure, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars may be drawn.
pub fn enabled(quiet: bool, verbose: u8, json: bool) -> bool {
    !quiet && verbose == 0 && !json && !crate::env::no_progress() && std::io::stderr().is_terminal()
}

/// A spinner for a slow step (model load); hidden when bars are off.
pub fn spinner(enabled: bool, message: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner().with_message(message);
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}

/// Three bars: pages rendered, embedded, stored (with pages/s).
pub struct IngestBars {
    multi: MultiProgress,
    rendered: ProgressBar,
    embedded: ProgressBar,
    stored: ProgressBar,
}

impl IngestBars {
    pub fn new(enabled: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = |unit: &str| {
            ProgressStyle::with_template(&format!(
                "{{prefix:>9}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
        };
        let bar = |name: &'static str| {
            let pb = multi.add(ProgressBar::new(0).with_style(style("pages")).with_prefix(name));
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            pb
        };
        let (rendered, embedded, stored) = (bar("rendered"), bar("embedded"), bar("stored"));
        Self { multi, rendered, embedded, stored }
    }

    pub fn finish(&self) {
        for pb in [&self.rendered, &self.embedded, &self.stored] {
            pb.finish_and_clear();
        }
    }
}

impl Progress for IngestBars {
    fn on_document_queued(&self, _path: &Path, pages: usize, _skipped: usize) {
        for pb in [&self.rendered, &self.embedded, &self.stored] {
            pb.inc_length(pages as u64);
        }
    }
    fn on_page_rendered(&self) {
        self.rendered.inc(1);
    }
    fn on_pages_embedded(&self, n: usize) {
        self.embedded.inc(n as u64);
    }
    fn on_pages_stored(&self, _path: &Path, n: usize) {
        self.stored.inc(n as u64);
    }
    fn on_failure(&self, f: &Failure) {
        // Failed pages still count as handled so the bars reach their end.
        if f.page_index.is_some() {
            for pb in [&self.rendered, &self.embedded, &self.stored] {
                pb.dec_length(1);
            }
        }
        let _ = self.multi.println(format!("warning: {}", f.describe()));
    }
    fn on_document_done(&self, path: &Path) {
        self.stored.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
}
