//! `colqwen ingest PATHS...`

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use colqwen::model::LoadOptions;
use colqwen::{IngestOptions, NoProgress, Service, Summary};

use super::remote::in_use;
use super::{UsageError, print_json, service_options, shown};
use crate::args::{GlobalArgs, IngestArgs};
use crate::progress::{IngestBars, enabled};

pub fn run(g: &GlobalArgs, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let password = match &a.password_file {
        Some(f) => Some(read_password(f)?),
        None => a.password.clone(),
    };
    let interrupts = Interrupts::install()?;
    let bars = enabled(g.quiet, g.verbose, g.json);
    let walking = crate::progress::spinner(bars, "looking for PDFs");
    let found = colqwen::discover(&a.paths, &|n| walking.set_message(format!("looking for PDFs: {n} found")));
    walking.finish_and_clear();
    if !g.quiet && !g.json {
        for (path, why) in &found.skipped {
            eprintln!("note: skipped {}: {why}", shown(&path.display().to_string()));
        }
    }
    let files = found.files;
    if files.is_empty() && found.problems.is_empty() {
        return Err(UsageError::new(
            format!("no PDF files found in {}", shown(&a.paths.join(", "))),
            "give PDF files, folders holding *.pdf files, or a glob pattern such as 'docs/*.pdf'",
        )
        .into());
    }
    let load = LoadOptions { max_visual_tokens: a.max_visual_tokens, ..Default::default() };
    let mut opts = service_options(g, load, &a.storage, bars)?;
    // An ingest never searches: no GPU copy of the index. (A second CUDA stream would also switch the context
    // to cudarc's multi-stream event tracking for every kernel of the model.)
    opts.search_device = colqwen::SearchDevice::Cpu;
    let dir = opts.index_dir.clone();
    // What the summary names: the folder, or the remote collection's address.
    let index = opts.remote.as_ref().map_or_else(|| dir.clone(), |c| c.location.to_string().into());
    let spinner = crate::progress::spinner(bars, "loading model");
    let service = Service::open(&opts).map_err(|e| {
        if in_use(&e) && dir.join(colqwen_server::SERVER_FILE).exists() {
            anyhow::Error::from(e).context(format!(
                "a colqwen server owns {}: upload the files to it (POST /v1/documents) instead",
                dir.display()
            ))
        } else {
            anyhow::Error::from(e).context(format!("opening the index {}", dir.display()))
        }
    })?;
    spinner.finish_and_clear();
    let ingest = IngestOptions {
        force: a.force,
        password,
        batch_size: a.batch_size,
        render_threads: a.jobs.unwrap_or_else(|| IngestOptions::default().render_threads),
        render_limits: colqwen::pdf::RenderLimits {
            time_budget: Duration::from_secs(a.page_timeout),
            ..Default::default()
        },
        ..Default::default()
    };
    let progress = IngestBars::new(bars);
    let mut summary = service.ingest(&files, &ingest, &progress, &interrupts.cancel)?;
    progress.finish();
    // Protected PDFs and no password given: ask once on a terminal, then ingest those files again.
    if ingest.password.is_none() && std::io::stdin().is_terminal() && !g.json && !summary.cancelled {
        let locked: Vec<PathBuf> = summary
            .failures
            .iter()
            .filter(|f| matches!(f.error, colqwen::Error::Pdf(colqwen::pdf::Error::PasswordRequired { .. })))
            .map(|f| f.path.clone())
            .collect();
        if !locked.is_empty() {
            let prompt = format!("password for {} protected PDF(s) (not shown): ", locked.len());
            if let Ok(pw) = rpassword::prompt_password(prompt) {
                let retry = IngestOptions { password: Some(pw), ..ingest.clone() };
                let again = service.ingest(&locked, &retry, &NoProgress, &interrupts.cancel)?;
                summary.cancelled |= again.cancelled;
                summary.failures.retain(|f| !locked.contains(&f.path));
                summary.failures.extend(again.failures);
                summary.pages_ingested += again.pages_ingested;
                summary.pages_skipped += again.pages_skipped;
            }
        }
    }
    drop(service);
    summary.failures.splice(0..0, found.problems);
    if g.json {
        print_json(&summary.to_json())?;
    } else if !g.quiet {
        print_summary(&summary, &index)?;
    }
    if !g.json {
        print_failures(&summary);
    }
    if summary.cancelled {
        let signal = interrupts.signal();
        if !g.json {
            eprintln!(
                "error: interrupted by {}: {} pages were stored and flushed before stopping; the index is intact",
                signal.name(),
                summary.pages_ingested
            );
            eprintln!("hint: run the same command again to continue: the pages already stored are skipped");
        }
        return Ok(ExitCode::from(signal.exit_code()));
    }
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Ctrl-C (SIGINT) and SIGTERM stop an ingest the way the server's shutdown does: no new page is taken, the
/// batch on the model finishes, what is done is stored and flushed, and the summary says so; the exit code
/// is 128 + the signal's number (130, 143), as a shell reports a process killed by it. A second signal ends
/// the process at once (the index stays intact: a store keeps what was flushed, and a re-run redoes the rest).
struct Interrupts {
    cancel: Arc<AtomicBool>,
    /// The last signal that arrived.
    which: Arc<AtomicUsize>,
}

/// The signal that stopped the ingest.
struct Signal(usize);

impl Interrupts {
    fn install() -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let cancel = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // The shutdown first: on the first signal the flag is still false, so only the second one exits.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, cancel.clone())
                .context("installing the signal handlers")?;
            signal_hook::flag::register(sig, cancel.clone()).context("installing the signal handlers")?;
            signal_hook::flag::register_usize(sig, which.clone(), sig as usize)
                .context("installing the signal handlers")?;
        }
        Ok(Self { cancel, which })
    }

    fn signal(&self) -> Signal {
        Signal(self.which.load(Ordering::SeqCst))
    }
}

impl Signal {
    fn name(&self) -> &'static str {
        match i32::try_from(self.0) {
            Ok(signal_hook::consts::SIGTERM) => "SIGTERM",
            _ => "Ctrl-C (SIGINT)",
        }
    }

    fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.0).unwrap_or(130)
    }
}

/// First line of a password file.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read(path).map_err(|e| {
        let why = if path.is_dir() { "it is a folder".to_string() } else { e.to_string() };
        UsageError::new(
            format!("cannot read the password file {}: {why}", shown(&path.display().to_string())),
            "pass --password-file a readable file whose first line is the password",
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn print_summary(s: &Summary, dir: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let rate = if s.seconds > 0.0 { s.pages_ingested as f64 / s.seconds } else { 0.0 };
    writeln!(
        out,
        "{} documents: {} pages ingested, {} already present, {} replaced, {} failed ({:.1} s, {:.1} pages/s)",
        s.documents,
        s.pages_ingested,
        s.pages_skipped,
        s.pages_replaced,
        s.failures.len(),
        s.seconds,
        rate
    )?;
    writeln!(out, "index: {}", shown(&dir.display().to_string()))?;
    drop(out);
    for (f, first) in &s.duplicates {
        eprintln!(
            "note: {} has the same content as {}: stored once",
            shown(&f.display().to_string()),
            shown(&first.display().to_string())
        );
    }
    Ok(())
}

/// One `error:` line and one `hint:` line per failure, on stderr.
fn print_failures(s: &Summary) {
    for f in &s.failures {
        eprintln!("error: {}", shown(&f.describe()));
        eprintln!("hint: {}", shown(&f.error.hint().unwrap_or_else(|| crate::FALLBACK_HINT.to_string())));
    }
}
