//! `colqwen list`, `delete`, `stats`: index maintenance without the model.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use colqwen::store::Store;

use super::{index_dir, print_json};
use crate::args::{DeleteArgs, GlobalArgs};

fn open(g: &GlobalArgs) -> anyhow::Result<Store> {
    let dir = index_dir(g)?;
    Store::open(&dir).with_context(|| format!("opening the index {}", dir.display()))
}

pub fn list(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = open(g)?;
    let docs = store.documents()?;
    if g.json {
        print_json(&docs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for d in &docs {
        let partial = if d.stored_pages < d.page_count { " (incomplete: run ingest again)" } else { "" };
        writeln!(out, "{}  {:>4}/{:<4} pages  {}{partial}", d.doc_id, d.stored_pages, d.page_count, d.source_path)?;
    }
    if docs.is_empty() {
        writeln!(out, "the index is empty")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(g: &GlobalArgs, a: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut store = open(g)?;
    let doc = colqwen::resolve_document(&store, &a.doc)?;
    let pages = store.delete_document(&doc)?;
    store.flush()?;
    let previews = store.dir().join("previews").join(&doc);
    if previews.is_dir() {
        std::fs::remove_dir_all(&previews).with_context(|| format!("removing {}", previews.display()))?;
    }
    if g.json {
        print_json(&serde_json::json!({ "doc_id": doc, "pages_deleted": pages }))?;
    } else if !g.quiet {
        writeln!(std::io::stdout().lock(), "deleted {doc}: {pages} pages")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let store = open(g)?;
    let s = store.stats()?;
    if g.json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "index:     {}", store.dir().display())?;
    writeln!(out, "model:     {}", s.model_id)?;
    writeln!(out, "documents: {}", s.documents)?;
    writeln!(out, "pages:     {}", s.pages)?;
    writeln!(out, "disk:      {:.1} MiB ({} vectors)", s.bytes_on_disk as f64 / (1 << 20) as f64, s.storage)?;
    Ok(ExitCode::SUCCESS)
}
