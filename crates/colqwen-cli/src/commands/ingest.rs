//! `colqwen ingest PATHS...`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::atomic::AtomicBool;

use anyhow::Context;
use colqwen::model::LoadOptions;
use colqwen::{IngestOptions, Service, Summary};

use super::remote::in_use;
use super::{UsageError, print_json, service_options};
use crate::args::{GlobalArgs, IngestArgs};
use crate::progress::{IngestBars, enabled};

pub fn run(g: &GlobalArgs, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let files = expand(&a.paths)?;
    if files.is_empty() {
        return Err(UsageError(format!("no PDF files found in {}", a.paths.join(", "))).into());
    }
    let password = match &a.password_file {
        Some(f) => Some(read_password(f)?),
        None => a.password.clone(),
    };
    let bars = enabled(g.quiet, g.verbose, g.json);
    let load = LoadOptions { max_visual_tokens: a.max_visual_tokens, ..Default::default() };
    let opts = service_options(g, load, a.storage, bars)?;
    let dir = opts.index_dir.clone();
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
    let summary = service.ingest(&files, &ingest, &progress, &AtomicBool::new(false))?;
    progress.finish();
    drop(service);
    if g.json {
        print_json(&summary_json(&summary))?;
    } else if !g.quiet {
        print_summary(&summary, &dir)?;
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

/// Files as given, folders searched recursively for `*.pdf`, anything else as a glob pattern.
fn expand(paths: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_file() {
            files.push(path.to_path_buf());
        } else if path.is_dir() {
            walk(path, &mut files).with_context(|| format!("reading folder {p}"))?;
        } else {
            let matches: Vec<_> = glob::glob(p)
                .map_err(|e| UsageError(format!("{p}: not a file, folder or valid glob pattern ({e})")))?
                .filter_map(Result::ok)
                .collect();
            if matches.is_empty() {
                return Err(UsageError(format!("{p}: no such file, folder or matching files")).into());
            }
            for m in matches {
                if m.is_dir() { walk(&m, &mut files)? } else { files.push(m) }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")) {
            out.push(p);
        }
    }
    Ok(())
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
    for f in &s.failures {
        eprintln!("error: {}", f.describe());
        if let Some(hint) = f.error.hint() {
            eprintln!("hint: {hint}");
        }
    }
    Ok(())
}
