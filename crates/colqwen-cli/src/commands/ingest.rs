//! `colqwen ingest PATHS...`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use colqwen::model::LoadOptions;
use colqwen::store::{IndexManifest, Store, VectorStorage};
use colqwen::{IngestOptions, Summary};

use super::{UsageError, index_dir, load_engine, print_json};
use crate::args::{GlobalArgs, IngestArgs, StorageArg};
use crate::progress::{IngestBars, enabled};

pub fn run(g: &GlobalArgs, a: &IngestArgs) -> anyhow::Result<ExitCode> {
    let files = expand(&a.paths)?;
    if files.is_empty() {
        return Err(UsageError(format!("no PDF files found in {}", a.paths.join(", "))).into());
    }
    let dir = index_dir(g)?;
    let bars = enabled(g.quiet, g.verbose, g.json);
    let load = LoadOptions { max_visual_tokens: a.max_visual_tokens, ..Default::default() };
    let existing = IndexManifest::read(&dir).with_context(|| format!("reading the index {}", dir.display()))?;
    let engine = load_engine(g, existing.as_ref().map(|m| m.model_id.as_str()), load, bars)?;
    let storage = match a.storage {
        StorageArg::F16 => VectorStorage::F16,
        StorageArg::F32 => VectorStorage::F32,
    };
    let mut manifest = engine.index_manifest(storage);
    if let Some(existing) = &existing {
        manifest.storage = existing.storage; // an existing index keeps its storage type
    }
    let mut store =
        Store::open_or_create(&dir, &manifest).with_context(|| format!("opening the index {}", dir.display()))?;
    let default_jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let opts = IngestOptions {
        force: a.force,
        password: a.password.clone(),
        batch_size: a.batch_size.unwrap_or_else(|| colqwen::model::default_batch_size(&engine.runtime().device)),
        render_threads: a.jobs.unwrap_or(default_jobs),
        render_limits: colqwen::pdf::RenderLimits {
            time_budget: Duration::from_secs(a.page_timeout),
            ..Default::default()
        },
        ..Default::default()
    };
    let progress = IngestBars::new(bars);
    let summary = colqwen::ingest(&engine, &mut store, &files, &opts, &progress)?;
    progress.finish();
    drop(store);
    if g.json {
        print_json(&summary_json(&summary))?;
    } else if !g.quiet {
        print_summary(&summary, &dir)?;
    } else {
        for f in &summary.failures {
            eprintln!("error: {}", crate::describe_failure(f));
        }
    }
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
        "failures": s.failures.iter().map(|f| serde_json::json!({
            "path": f.path.display().to_string(),
            "page_number": f.page_index.map(|p| p + 1),
            "error": crate::describe_failure(f),
            "hints": failure_hints(f),
        })).collect::<Vec<_>>(),
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
        eprintln!("error: {}", crate::describe_failure(f));
        for hint in failure_hints(f) {
            eprintln!("hint: {hint}");
        }
    }
    Ok(())
}

fn failure_hints(f: &colqwen::Failure) -> Vec<String> {
    let mut hints = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&f.error);
    while let Some(e) = source {
        if let Some(h) = crate::hint_for_error(e) {
            hints.push(h);
        }
        source = e.source();
    }
    hints.dedup();
    hints
}
