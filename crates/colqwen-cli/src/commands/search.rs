//! `colqwen search QUERY`

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use colqwen::SearchOptions;
use colqwen::model::LoadOptions;
use colqwen::store::{SearchMode, Store};

use super::{index_dir, load_engine, print_json};
use crate::args::{GlobalArgs, ModeArg, SearchArgs};

pub fn run(g: &GlobalArgs, a: &SearchArgs) -> anyhow::Result<ExitCode> {
    let dir = index_dir(g)?;
    let store = Store::open(&dir).with_context(|| format!("opening the index {}", dir.display()))?;
    let index_model = store.manifest().model_id.clone();
    let bars = crate::progress::enabled(g.quiet, g.verbose, g.json);
    let engine = load_engine(g, Some(&index_model), LoadOptions::default(), bars)?;
    if engine.model_id() != index_model {
        return Err(colqwen::Error::ModelMismatch { index_model, requested: engine.model_id().into() }.into());
    }
    let mode = match a.mode {
        ModeArg::Auto => SearchMode::Auto,
        ModeArg::Exact => SearchMode::Exact,
        ModeArg::TwoStage => SearchMode::TwoStage { prefetch: colqwen::store::AUTO_PREFETCH },
    };
    let opts = SearchOptions { k: a.k, doc: a.doc.clone(), mode };
    let hits = colqwen::search(&engine, &store, &a.query, &opts)?;
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
