//! `colqwen search QUERY`

use std::io::Write;
use std::process::ExitCode;

use colqwen::core::SearchMode;
use colqwen::model::LoadOptions;
use colqwen::{SearchHit, SearchOptions, Service};

use super::remote::{Server, in_use};
use super::{UsageError, print_json, service_options};
use crate::args::{GlobalArgs, ModeArg, SearchArgs, StorageArg};

pub fn run(g: &GlobalArgs, a: &SearchArgs) -> anyhow::Result<ExitCode> {
    let mode = match a.mode {
        ModeArg::Auto => SearchMode::Auto,
        ModeArg::Exact => SearchMode::Exact,
        ModeArg::TwoStage => SearchMode::TwoStage { prefetch: colqwen::store::AUTO_PREFETCH },
    };
    let opts = SearchOptions { k: a.k, doc: a.doc.clone(), mode };
    let bars = crate::progress::enabled(g.quiet, g.verbose, g.json);
    let service_opts = service_options(g, LoadOptions::default(), StorageArg::F16, bars)?;
    let spinner = crate::progress::spinner(bars, "loading model");
    let hits: Vec<SearchHit> = match Service::open_existing(&service_opts) {
        Ok(service) => {
            spinner.finish_and_clear();
            service.search(&a.query, &opts)?
        }
        Err(e) if in_use(&e) => {
            spinner.finish_and_clear();
            let Some(server) = Server::find(&service_opts.index_dir) else { return Err(e.into()) };
            tracing::info!(url = server.url(), "the index is served: searching through the server");
            let body = serde_json::json!({ "query": a.query, "k": a.k, "doc": a.doc, "mode": mode });
            let answer: serde_json::Value = server.post("/v1/search", &body)?;
            let hits = answer.get("results").cloned().unwrap_or_default();
            return print_remote(g, &hits, a.doc.is_some());
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        print_json(&hits)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no pages in the index{}", if a.doc.is_some() { " for that document" } else { "" })?;
    }
    for (rank, h) in hits.iter().enumerate() {
        writeln!(
            out,
            "{:>2}. {:>8.3}  {} p.{}/{}  [{}]{}",
            rank + 1,
            h.score,
            h.source_path,
            h.page_number,
            h.page_count,
            h.doc_id,
            h.preview.as_ref().map(|p| format!("  {}", p.display())).unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_remote(g: &GlobalArgs, hits: &serde_json::Value, filtered: bool) -> anyhow::Result<ExitCode> {
    if g.json {
        print_json(hits)?;
        return Ok(ExitCode::SUCCESS);
    }
    let hits = hits.as_array().ok_or_else(|| UsageError("the server answered without results".into()))?;
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no pages in the index{}", if filtered { " for that document" } else { "" })?;
    }
    for (rank, h) in hits.iter().enumerate() {
        let s = |k: &str| h.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
        let score = h.get("score").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
        writeln!(
            out,
            "{:>2}. {score:>8.3}  {} p.{}/{}  [{}]",
            rank + 1,
            s("source_path"),
            s("page_number"),
            s("page_count"),
            s("doc_id")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
