//! `colqwen ingest PATHS...`

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::atomic::AtomicBool;

use anyhow::Context;
use colqwen::model::LoadOptions;
use colqwen::{IngestOptions, NoProgress, Service, Summary};

use super::remote::in_use;
use super::{UsageError, print_json, service_options};
use crate::args::{GlobalArgs, IngestArgs};
use crate::progress::{IngestBars, enabled};

pub fn run(g: &GlobalArgs, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let password = match &a.password_file {
        Some(f) => Some(read_password(f)?),
        None => a.password.clone(),
    };
    let bars = enabled(g.quiet, g.verbose, g.json);
    let walking = crate::progress::spinner(bars, "looking for PDFs");
    let found = colqwen::discover(&a.paths, &|n| walking.set_message(format!("looking for PDFs: {n} found")));
    walking.finish_and_clear();
    if !g.quiet && !g.json {
        for (path, why) in &found.skipped {
            eprintln!("note: skipped {}: {why}", path.display());
        }
    }
    let files = found.files;
    if files.is_empty() && found.problems.is_empty() {
        return Err(UsageError(format!("no PDF files found in {}", a.paths.join(", "))).into());
    }
    let load = LoadOptions { max_visual_tokens: a.max_visual_tokens, ..Default::default() };
    let mut opts = service_options(g, load, &a.storage, bars)?;
    // An ingest never searches: no GPU copy of the index. (A second CUDA stream would also switch the context
    // to cudarc's multi-stream event tracking for every kernel of the model.)
    opts.search_device = colqwen::SearchDevice::Cpu;
    let dir = opts.index_dir.clone();
    // What the summary names: the folder, or the remote collection's address.
    let shown = opts.remote.as_ref().map_or_else(|| dir.clone(), |c| c.location.to_string().into());
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
    let mut summary = service.ingest(&files, &ingest, &progress, &AtomicBool::new(false))?;
    progress.finish();
    // Protected PDFs and no password given: ask once on a terminal, then ingest those files again.
    if ingest.password.is_none() && std::io::stdin().is_terminal() && !g.json {
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
                let again = service.ingest(&locked, &retry, &NoProgress, &AtomicBool::new(false))?;
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
        print_json(&summary_json(&summary))?;
    } else if !g.quiet {
        print_summary(&summary, &shown)?;
    } else {
        for f in &summary.failures {
            eprintln!("error: {}", f.describe());
        }
    }
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// First line of a password file.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn summary_json(s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "documents": s.documents,
        "pages_ingested": s.pages_ingested,
        "pages_skipped": s.pages_skipped,
        "pages_replaced": s.pages_replaced,
        "seconds": s.seconds,
        "pages_per_second": if s.seconds > 0.0 { s.pages_ingested as f64 / s.seconds } else { 0.0 },
        "cancelled": s.cancelled,
        "duplicates": s.duplicates.iter().map(|(f, first)| serde_json::json!({
            "path": f.display().to_string(), "same_content_as": first.display().to_string(),
        })).collect::<Vec<_>>(),
        "failures": s.failures.iter().map(colqwen::Failure::to_json).collect::<Vec<_>>(),
    })
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
    writeln!(out, "index: {}", dir.display())?;
    drop(out);
    for (f, first) in &s.duplicates {
        eprintln!("note: {} has the same content as {}: stored once", f.display(), first.display());
    }
    for f in &s.failures {
        eprintln!("error: {}", f.describe());
        if let Some(hint) = f.error.hint() {
            eprintln!("hint: {hint}");
        }
    }
    Ok(())
}
