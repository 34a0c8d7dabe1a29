//! `colqwen list`, `delete`, `stats`: index maintenance without the model. On an index that a running server
//! owns, they go through that server.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use colqwen::Service;
use colqwen::core::{DocumentInfo, Stats};

use super::remote::{Server, in_use};
use super::{UsageError, index_dir, print_json, remote_index, shown};
use crate::args::{DeleteArgs, GlobalArgs};

/// The index, opened here, or the server that owns it.
enum Target {
    Local(Service),
    Remote(Server),
}

fn open(g: &GlobalArgs) -> anyhow::Result<Target> {
    let dir = index_dir(g)?;
    if let Some(config) = remote_index(g)? {
        let service = Service::open_remote_index(&dir, &config)
            .with_context(|| format!("opening the index {}", config.location))?;
        return Ok(Target::Local(service));
    }
    match Service::open_index(&dir) {
        Ok(s) => Ok(Target::Local(s)),
        Err(e) if in_use(&e) => match Server::find(&dir) {
            Some(server) => Ok(Target::Remote(server)),
            None => Err(e).with_context(|| format!("opening the index {}", dir.display())),
        },
        Err(e) => Err(e).with_context(|| format!("opening the index {}", dir.display())),
    }
}

fn documents(t: &Target) -> anyhow::Result<Vec<DocumentInfo>> {
    match t {
        Target::Local(s) => Ok(s.documents()?),
        Target::Remote(server) => {
            let docs = server.get_all("/v1/documents", "documents")?;
            Ok(docs
                .iter()
                .map(|d| {
                    let s = |k: &str| d.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
                    let n = |k: &str| d.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
                    DocumentInfo {
                        doc_id: s("doc_id"),
                        source_path: s("source_path"),
                        file_sha256: s("file_sha256"),
                        page_count: n("page_count"),
                        stored_pages: n("stored_pages"),
                    }
                })
                .collect())
        }
    }
}

pub fn list(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docs = documents(&open(g)?)?;
    if g.json {
        print_json(&docs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for d in &docs {
        let partial = if d.stored_pages < d.page_count {
            " (incomplete: ingesting it again completes it or says why not)"
        } else {
            ""
        };
        writeln!(
            out,
            "{}  {:>4}/{:<4} pages  {}{partial}",
            d.doc_id,
            d.stored_pages,
            d.page_count,
            shown(&d.source_path)
        )?;
    }
    if docs.is_empty() {
        writeln!(out, "the index is empty")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Shortest id prefix `delete` accepts: a one-character prefix deleting a whole document by accident is too
/// easy.
const MIN_PREFIX: usize = 4;

pub fn delete(g: &GlobalArgs, a: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let target = open(g)?;
    let docs = documents(&target)?;
    let as_stored = colqwen::stored_path(std::path::Path::new(&a.doc));
    let exact = docs.iter().any(|d| d.doc_id == a.doc || d.source_path == a.doc || d.source_path == as_stored);
    let by_name =
        docs.iter().any(|d| std::path::Path::new(&d.source_path).file_name().is_some_and(|f| f == a.doc.as_str()));
    if !exact && !by_name && a.doc.len() < MIN_PREFIX {
        return Err(UsageError::new(
            format!("{:?} is too short to name a document", a.doc),
            format!(
                "give at least {MIN_PREFIX} characters of its id, its path or its file name (`colqwen list` shows them)"
            ),
        )
        .into());
    }
    let doc = match &target {
        Target::Local(s) => s.resolve_document(&a.doc)?,
        Target::Remote(_) => {
            let as_stored = colqwen::stored_path(std::path::Path::new(&a.doc));
            let matches: Vec<&DocumentInfo> = docs
                .iter()
                .filter(|d| d.doc_id.starts_with(&a.doc) || d.source_path == a.doc || d.source_path == as_stored)
                .collect();
            match matches[..] {
                [d] => d.doc_id.clone(),
                _ => return Err(colqwen::Error::NoSuchDocument(a.doc.clone()).into()),
            }
        }
    };
    if !a.yes && !exact && std::io::stdin().is_terminal() {
        let name = docs.iter().find(|d| d.doc_id == doc).map(|d| d.source_path.clone()).unwrap_or_default();
        eprint!("delete {doc} ({name})? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            eprintln!("nothing deleted");
            return Ok(ExitCode::from(1));
        }
    }
    let pages = match &target {
        Target::Local(s) => s.delete_document(&doc)?,
        Target::Remote(server) => {
            let v: serde_json::Value = server.delete(&format!("/v1/documents/{doc}"))?;
            v.get("pages_deleted").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize
        }
    };
    if g.json {
        print_json(&serde_json::json!({ "doc_id": doc, "pages_deleted": pages }))?;
    } else if !g.quiet {
        writeln!(std::io::stdout().lock(), "deleted {doc}: {pages} pages")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = open(g)?;
    let s: Stats = match &target {
        Target::Local(s) => s.stats()?,
        Target::Remote(server) => {
            let v: serde_json::Value = server.get("/v1/stats")?;
            if g.json {
                print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "served by {}", server.url())?;
            for (k, v) in v.as_object().into_iter().flatten() {
                writeln!(out, "{k}: {v}")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if g.json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "index:     {}", s.location)?;
    writeln!(out, "model:     {} ({}, {} dims)", s.model_id, s.family, s.embedding_dim)?;
    writeln!(out, "documents: {}", s.documents)?;
    writeln!(out, "pages:     {}", s.pages)?;
    let pooled = if s.pool_factor > 1 { format!(", pooled by {}", s.pool_factor) } else { String::new() };
    let disk = match s.bytes_on_disk {
        Some(bytes) => format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64),
        None => "not reported".to_string(),
    };
    writeln!(out, "disk:      {disk} ({} vectors{pooled})", s.storage)?;
    Ok(ExitCode::SUCCESS)
}
