//! The upload folder (`<index>/uploads`): where uploaded PDFs live while jobs ingest them and afterwards as their
//! documents' sources (similarity maps read the page sizes from them), and nothing else.
//!
//! Each request's files go to `<batch>/<n>/<name>`: a folder per request and per file, so the file keeps the
//! user's own name (only what a file name cannot hold is replaced, see [`upload_name`]) and two files of one
//! name never collide. A request owns its folder through a [`Batch`] until a job takes the files: a refused,
//! failed or aborted upload (a body over the limit, a truncated multipart body, a client that goes away, a name
//! that cannot be read) removes the folder when the batch drops — also when axum drops the handler's future in
//! the middle of a stream. What a crash leaves behind is removed by [`Uploads::sweep`] (at start and whenever a
//! job ends): every file below the folder that is neither a stored document's source nor a file of a job that
//! may still run, and every folder left empty. Folders of requests in flight are never touched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The upload folder and the requests writing into it.
#[derive(Debug)]
pub(crate) struct Uploads {
    dir: PathBuf,
    /// Batch folders of requests in flight. Held for the whole of a sweep, so that a batch handed to a job
    /// while the sweep runs is either still listed here or already a job's.
    open: Mutex<HashSet<PathBuf>>,
}

impl Uploads {
    /// `dir` must be absolute (job files and document sources are compared with the paths below it).
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, open: Mutex::default() }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn open(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every file below the folder that `keep` does not name, then the folders left empty; the
    /// folders of requests in flight stay. `keep` is asked while new batches wait: the files of a job that was
    /// just submitted are in it. Returns the files removed.
    pub(crate) fn sweep(&self, keep: impl FnOnce() -> HashSet<PathBuf>) -> usize {
        let open = self.open();
        let keep = keep();
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        for entry in entries.flatten() {
            let path = entry.path();
            if open.contains(&path) {
                continue;
            }
            removed += remove_unkept(&path, &keep);
        }
        if removed > 0 {
            tracing::info!(files = removed, "removed upload files that no document or job needs");
        }
        removed
    }

    /// Removes an uploaded file (a deleted document's source) and the folders it leaves empty. Files outside
    /// the upload folder are the user's and stay.
    pub(crate) fn remove(&self, file: &Path) {
        let (Ok(real), Ok(root)) = (file.canonicalize(), self.dir.canonicalize()) else { return };
        if !real.starts_with(&root) || real == root {
            return;
        }
        let _ = std::fs::remove_file(&real);
        let mut dir = real.parent();
        while let Some(d) = dir {
            if d == root || !d.starts_with(&root) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

/// Removes what below `path` (a file or a folder) `keep` does not name, and folders left empty; returns the
/// files removed.
fn remove_unkept(path: &Path, keep: &HashSet<PathBuf>) -> usize {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        if keep.contains(path) {
            return 0;
        }
        return usize::from(std::fs::remove_file(path).is_ok());
    }
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            removed += remove_unkept(&entry.path(), keep);
        }
    }
    let _ = std::fs::remove_dir(path); // only when empty
    removed
}

/// The folder of one upload request, removed with everything in it when dropped unless [`Batch::keep`] was
/// called (the job owns the files then).
#[derive(Debug)]
pub(crate) struct Batch {
    uploads: Arc<Uploads>,
    dir: PathBuf,
    kept: bool,
}

impl Batch {
    /// A fresh folder `<uploads>/<random hex>/`, registered as in flight before it exists.
    pub(crate) fn begin(uploads: &Arc<Uploads>) -> std::io::Result<Self> {
        let dir = uploads.dir.join(format!("{:016x}", rand_id()));
        uploads.open().insert(dir.clone());
        let batch = Self { uploads: uploads.clone(), dir, kept: false };
        std::fs::create_dir_all(&batch.dir)?;
        Ok(batch)
    }

    /// Where file number `position` named `name` goes (its folder is created).
    pub(crate) fn file_path(&self, position: usize, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(format!("{position:02}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir.join(name))
    }

    /// The files that are left belong to a job now: the folder stays, less the folders emptied meanwhile
    /// (refused files, duplicates).
    pub(crate) fn keep(mut self) {
        self.kept = true;
        let _ = remove_unkept(&self.dir, &every_file_below(&self.dir));
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        self.uploads.open().remove(&self.dir);
    }
}

/// Every file below `dir` (symbolic links as files).
pub(crate) fn every_file_below(dir: &Path) -> HashSet<PathBuf> {
    let mut files = HashSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                files.insert(p);
            }
        }
    }
    files
}

/// Longest file name kept, in bytes (file systems allow 255).
const MAX_NAME_BYTES: usize = 200;

/// The user's file name, as it is shown and stored: the last component of what the client sent; control
/// characters (NUL, line breaks …) and path separators replaced by `_`; no leading dots or spaces (no hidden
/// file, no `..`); at most [`MAX_NAME_BYTES`] bytes, cut at a character boundary with the extension kept;
/// `upload.pdf` when nothing is left. Letters of every script stay: `été ü 日本.pdf` is stored and shown as it is.
pub(crate) fn upload_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().map(|c| if c.is_control() { '_' } else { c }).collect();
    let clean = clean.trim_start_matches(['.', ' ']).trim_end();
    if clean.is_empty() {
        return "upload.pdf".into();
    }
    if clean.len() <= MAX_NAME_BYTES {
        return clean.to_string();
    }
    let ext = match clean.rsplit_once('.') {
        Some((_, e)) if e.len() <= 16 && !e.is_empty() => format!(".{e}"),
        _ => String::new(),
    };
    let mut stem_end = MAX_NAME_BYTES - ext.len();
    while !clean.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", &clean[..stem_end])
}

pub(crate) fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_and_readable() {
        assert_eq!(upload_name("../../etc/passwd"), "passwd");
        assert_eq!(upload_name("..\\..\\x.pdf"), "x.pdf");
        assert_eq!(upload_name(".hidden.pdf"), "hidden.pdf");
        assert_eq!(upload_name(".."), "upload.pdf");
        assert_eq!(upload_name(""), "upload.pdf");
        assert_eq!(upload_name("a\0b\nc.pdf"), "a_b_c.pdf");
        assert_eq!(upload_name("été ü 日本.pdf"), "été ü 日本.pdf");
        let long = format!("{}.pdf", "日".repeat(100));
        let cut = upload_name(&long);
        assert!(cut.len() <= MAX_NAME_BYTES && cut.ends_with("日.pdf"), "{cut}");
    }

    #[test]
    fn a_batch_left_unkept_leaves_nothing_and_sweep_keeps_what_is_needed() {
        let tmp = tempfile::tempdir().unwrap();
        let uploads = Arc::new(Uploads::new(tmp.path().join("uploads")));
        let path = {
            let batch = Batch::begin(&uploads).unwrap();
            let p = batch.file_path(0, "a.pdf").unwrap();
            std::fs::write(&p, b"x").unwrap();
            p
        };
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(uploads.dir()).unwrap().count(), 0, "no folder is left");

        let batch = Batch::begin(&uploads).unwrap();
        let kept = batch.file_path(0, "kept.pdf").unwrap();
        let orphan = batch.file_path(1, "orphan.pdf").unwrap();
        std::fs::write(&kept, b"x").unwrap();
        std::fs::write(&orphan, b"x").unwrap();
        // In flight: a sweep leaves it alone.
        assert_eq!(uploads.sweep(HashSet::new), 0);
        batch.keep();
        assert_eq!(uploads.sweep(|| HashSet::from([kept.clone()])), 1);
        assert!(kept.exists() && !orphan.exists() && !orphan.parent().unwrap().exists());
        uploads.remove(&kept);
        assert_eq!(std::fs::read_dir(uploads.dir()).unwrap().count(), 0, "{:?}", uploads.dir());
    }
}
