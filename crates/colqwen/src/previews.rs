//! Page previews: a JPEG per stored page, `<index>/previews/<doc_id>/<page_number>.jpg`. Where they live is
//! this module's business; callers ask by document id and page.
//!
//! An index that keeps previews itself (a server: [`PageIndex::keeps_previews`]) gets each preview with its
//! page, so every client can show it; the folder is then a local cache, filled on first read (a document id
//! is a content hash, so a cached preview never goes stale).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use colqwen_core::{PageIndex, is_doc_id};

use crate::error::{Error, Result};

/// The preview folder of one index.
#[derive(Clone)]
pub struct Previews {
    root: PathBuf,
    /// The index, when it keeps the previews itself.
    remote: Option<Arc<dyn PageIndex>>,
}

impl std::fmt::Debug for Previews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Previews").field("root", &self.root).field("remote", &self.remote.is_some()).finish()
    }
}

impl Previews {
    /// Previews kept by `index` when it keeps them, cached in `index_dir`; else files in `index_dir`.
    pub(crate) fn for_index(index_dir: &Path, index: &Arc<dyn PageIndex>) -> Self {
        Self { root: index_dir.join("previews"), remote: index.keeps_previews().then(|| index.clone()) }
    }

    /// Writes a page's preview (write then rename, so a crash never leaves a half-written file under the final
    /// name); returns the key stored with the page.
    pub(crate) fn write(&self, doc_id: &str, page_index: usize, jpeg: &[u8]) -> Result<String> {
        if let Some(index) = &self.remote {
            index.stage_preview(doc_id, page_index, jpeg.to_vec())?;
        }
        let key = self.write_file(doc_id, page_index, jpeg)?;
        Ok(format!("previews/{key}"))
    }

    /// Writes the file (write then rename); returns its key below the preview folder.
    fn write_file(&self, doc_id: &str, page_index: usize, jpeg: &[u8]) -> Result<String> {
        let key = Self::key(doc_id, page_index);
        let path = self.root.join(&key);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("jpg.tmp");
            std::fs::write(&tmp, jpeg)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| io_error("write", &path, source))?;
        Ok(key)
    }

    /// The file of a page's preview, if there is one. `doc_id` must be a document id (hex), so no path escapes
    /// the preview folder.
    pub fn path(&self, doc_id: &str, page_index: usize) -> Result<Option<PathBuf>> {
        if !is_doc_id(doc_id) {
            return Err(Error::InvalidId(doc_id.into()));
        }
        let path = self.root.join(Self::key(doc_id, page_index));
        if path.is_file() {
            return Ok(Some(path));
        }
        let Some(index) = &self.remote else { return Ok(None) };
        let Some(jpeg) = index.preview(doc_id, page_index)? else { return Ok(None) };
        Ok(Some(self.root.join(self.write_file(doc_id, page_index, &jpeg)?)))
    }

    /// The JPEG bytes of a page's preview.
    pub fn read(&self, doc_id: &str, page_index: usize) -> Result<Option<Vec<u8>>> {
        match self.path(doc_id, page_index)? {
            Some(path) => std::fs::read(&path).map(Some).map_err(|source| io_error("read", &path, source)),
            None => Ok(None),
        }
    }

    /// Removes every preview of a document.
    pub(crate) fn delete(&self, doc_id: &str) -> Result<()> {
        if !is_doc_id(doc_id) {
            return Err(Error::InvalidId(doc_id.into()));
        }
        let dir = self.root.join(doc_id);
        // An ingest that is rendering a page of the document may write a preview into the folder while it is
        // being removed ("directory not empty"): try again; the ingest removes what it wrote after a delete
        // itself (see `ingest::InFlight`).
        let mut tries = 0;
        loop {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 5 => tries += 1,
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    tracing::warn!("previews of {doc_id} are still being written; the ingest removes them");
                    return Ok(());
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error("remove", &dir, e)),
                _ => return Ok(()),
            }
        }
    }

    fn key(doc_id: &str, page_index: usize) -> String {
        format!("{doc_id}/{:04}.jpg", page_index + 1)
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
        return Error::Index(colqwen_core::IndexError::NoSpace { op: "writing a preview", path: path.to_path_buf() });
    }
    Error::Io { op, path: path.to_path_buf(), source }
}
