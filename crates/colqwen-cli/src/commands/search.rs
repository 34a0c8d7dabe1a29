//! `colqwen search QUERY`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;

use colqwen::core::SearchMode;
use colqwen::model::LoadOptions;
use colqwen::{SearchHit, SearchOptions, Service};

use super::remote::{Server, in_use};
use super::{UsageError, print_json, service_options, shown};
use crate::args::{GlobalArgs, ModeArg, SearchArgs, StorageOpts};

pub fn run(g: &GlobalArgs, a: &SearchArgs) -> anyhow::Result<ExitCode> {
    let prefetch = a.prefetch.map(|p| p as usize);
    let mode = match (a.mode, prefetch) {
        (ModeArg::Exact, Some(_)) => {
            return Err(UsageError::new(
                "--prefetch sets the two-stage rerank; it does not go with --mode exact",
                "leave out --mode exact (--prefetch implies --mode two-stage), or leave out --prefetch",
            )
            .into());
        }
        (ModeArg::Exact, None) => SearchMode::Exact,
        (ModeArg::Auto, None) => SearchMode::Auto,
        (ModeArg::TwoStage | ModeArg::Auto, prefetch) => SearchMode::TwoStage { prefetch },
    };
    let opts = SearchOptions { k: a.k, doc: a.doc.clone(), mode };
    let bars = crate::progress::enabled(g.quiet, g.verbose, g.json);
    let service_opts = service_options(g, LoadOptions::default(), &StorageOpts::default(), bars)?;
    let spinner = crate::progress::spinner(bars, "loading model");
    if let Some(dir) = &a.maps {
        std::fs::create_dir_all(dir).map_err(|e| {
            UsageError::new(
                format!("cannot create {}: {e}", dir.display()),
                "pass --maps a folder this user can write to (it is created if missing)",
            )
        })?;
    }
    let mut maps: Vec<Option<PathBuf>> = Vec::new();
    let hits: Vec<SearchHit> = match Service::open_existing(&service_opts) {
        Ok(service) => {
            spinner.finish_and_clear();
            let hits = service.search(&a.query, &opts)?;
            if let Some(dir) = &a.maps {
                let (tokens, q) = service.map_query(&a.query)?;
                for (rank, h) in hits.iter().enumerate() {
                    let png = service
                        .page_maps(&h.doc_id, h.page_number, &tokens, &q)
                        .and_then(|m| service.similarity_png(&h.doc_id, h.page_number, &m, None));
                    maps.push(write_map(
                        dir,
                        rank,
                        &h.doc_id,
                        h.page_number,
                        png.map_err(|e| colqwen::error_chain(&e)),
                    ));
                }
            }
            hits
        }
        Err(e) if in_use(&e) => {
            spinner.finish_and_clear();
            let Some(server) = Server::find(&service_opts.index_dir) else { return Err(e.into()) };
            tracing::info!(url = server.url(), "the index is served: searching through the server");
            let body =
                serde_json::json!({ "query": a.query, "k": a.k, "doc": a.doc, "mode": mode, "maps": a.maps.is_some() });
            let answer: serde_json::Value = server.post("/v1/search", &body)?;
            let mut hits = answer.get("results").cloned().unwrap_or_default();
            if let (Some(dir), Some(list)) = (&a.maps, hits.as_array_mut()) {
                for (rank, h) in list.iter_mut().enumerate() {
                    let png = match (h.get("similarity_base64").and_then(|v| v.as_str()), h.get("similarity_error")) {
                        (Some(b64), _) => base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| format!("the server sent a broken map: {e}")),
                        (None, err) => Err(err.and_then(|e| e.as_str()).unwrap_or("no map").to_string()),
                    };
                    let doc = h.get("doc_id").and_then(|v| v.as_str()).unwrap_or("").to_string();
                    let page = h.get("page_number").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
                    let path = write_map(dir, rank, &doc, page, png);
                    if let Some(o) = h.as_object_mut() {
                        o.remove("similarity_base64");
                        o.insert("map".into(), serde_json::json!(path));
                    }
                }
            }
            return print_remote(g, &hits, a.doc.is_some());
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        if a.maps.is_some() {
            let with_maps: Vec<serde_json::Value> = hits
                .iter()
                .zip(&maps)
                .map(|(h, m)| {
                    let mut v = serde_json::to_value(h).unwrap_or_default();
                    v["map"] = serde_json::json!(m);
                    v
                })
                .collect();
            print_json(&with_maps)?;
        } else {
            print_json(&hits)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no pages in the index{}", if a.doc.is_some() { " for that document" } else { "" })?;
    }
    if let Some(dir) = &a.maps {
        let written = maps.iter().flatten().count();
        writeln!(out, "{written} similarity maps in {}", dir.display())?;
    }
    for (rank, h) in hits.iter().enumerate() {
        writeln!(
            out,
            "{:>2}. {:>8.3}  {} p.{}/{}  [{}]{}",
            rank + 1,
            h.score,
            shown(&h.source_path),
            h.page_number,
            h.page_count,
            h.doc_id,
            h.preview.as_ref().map(|p| format!("  {}", p.display())).unwrap_or_default()
        )?;
        if let Some(Some(m)) = maps.get(rank) {
            writeln!(out, "              map {}", m.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes hit `rank`'s map as `DIR/NN-DOCID-pPAGE.png`; a hit without a map gets a warning and no file, and the
/// other hits go on.
fn write_map(
    dir: &Path,
    rank: usize,
    doc_id: &str,
    page: usize,
    png: std::result::Result<Vec<u8>, String>,
) -> Option<PathBuf> {
    let path = dir.join(format!("{:02}-{doc_id}-p{page}.png", rank + 1));
    match png
        .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display())))
    {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!("no similarity map for hit {} (page {page} of {doc_id}): {e}", rank + 1);
            None
        }
    }
}

fn print_remote(g: &GlobalArgs, hits: &serde_json::Value, filtered: bool) -> anyhow::Result<ExitCode> {
    if g.json {
        print_json(hits)?;
        return Ok(ExitCode::SUCCESS);
    }
    let hits = hits.as_array().ok_or_else(|| {
        UsageError::new(
            "the server answered without results",
            "check that the server is a colqwen server of this version",
        )
    })?;
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
            shown(&s("source_path")),
            s("page_number"),
            s("page_count"),
            s("doc_id")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
