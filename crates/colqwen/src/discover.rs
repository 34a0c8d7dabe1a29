//! Which files an ingest gets: paths as given, folders searched for `*.pdf`, glob patterns. Hostile folders
//! are expected: symlinks are followed at most once per real file or folder (deduplicated by device and
//! inode, so loops end), non-regular files (FIFOs, sockets, devices) are skipped with a note, and a missing
//! path or an unreadable subfolder is reported like a bad PDF while the rest goes on.
//!
//! Also how a file's path is stored in the index ([`stored_path`]) and found again ([`source_file`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::progress::Failure;

/// Folders deeper than this below a given folder are not entered (reported once).
const MAX_DEPTH: usize = 64;

/// What was found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// PDF files to ingest, in order, each real file once.
    pub files: Vec<PathBuf>,
    /// Paths that could not be used (missing, unreadable, not a regular file): failures of the run.
    pub problems: Vec<Failure>,
    /// Entries passed over on purpose while walking folders, with the reason (a note, not a failure).
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// Expands `paths`. `on_found` is called with the number of PDFs found so far (for a progress line).
pub fn discover(paths: &[String], on_found: &dyn Fn(usize)) -> Discovery {
    let mut walk = Walk { out: Discovery::default(), seen_files: HashSet::new(), seen_dirs: HashSet::new(), on_found };
    for p in paths {
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk.dir(path, 0),
            Ok(meta) => walk.file(path, &meta, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_pattern(p) => walk.glob(p),
            Err(e) => walk.problem(path, "open", e),
        }
    }
    walk.out
}

/// The text a document's path is stored as (its `source_path`): absolute, so that its similarity maps find the
/// source PDF from any folder. A path that is not UTF-8 (Unix allows any bytes but `/` and NUL in a name) keeps
/// its bytes: each byte that is not part of valid UTF-8 is written `%XX`, and `%` itself `%25`. Only such
/// paths are written this way; a UTF-8 path is stored as it is.
pub fn stored_path(path: &Path) -> String {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(text) = path.to_str() {
        return text.to_string();
    }
    #[cfg(unix)]
    {
        use std::fmt::Write as _;
        use std::os::unix::ffi::OsStrExt as _;
        let mut out = String::new();
        for chunk in path.as_os_str().as_bytes().utf8_chunks() {
            out.push_str(&chunk.valid().replace('%', "%25"));
            for b in chunk.invalid() {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    }
    #[cfg(not(unix))]
    path.to_string_lossy().into_owned()
}

/// The file a stored `source_path` names ([`stored_path`]'s inverse): the path as written if it exists,
/// else the path with `%XX` decoded (a name that was not UTF-8).
pub fn source_file(stored: &str) -> PathBuf {
    let plain = PathBuf::from(stored);
    #[cfg(unix)]
    if !plain.exists() && stored.contains('%') {
        use std::os::unix::ffi::OsStringExt as _;
        let bytes = stored.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        return PathBuf::from(std::ffi::OsString::from_vec(out));
    }
    plain
}

fn is_pattern(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

struct Walk<'a> {
    out: Discovery,
    seen_files: HashSet<(u64, u64)>,
    seen_dirs: HashSet<(u64, u64)>,
    on_found: &'a dyn Fn(usize),
}

impl Walk<'_> {
    fn problem(&mut self, path: &Path, op: &'static str, source: std::io::Error) {
        self.out.problems.push(Failure {
            path: path.to_path_buf(),
            page_index: None,
            error: Error::Io { op, path: path.to_path_buf(), source },
        });
    }

    /// A file given or found: regular files only (a FIFO would block the reader forever).
    fn file(&mut self, path: &Path, meta: &std::fs::Metadata, given: bool) {
        if !meta.is_file() {
            if given {
                self.out.problems.push(Failure {
                    path: path.to_path_buf(),
                    page_index: None,
                    error: Error::NotRegularFile(path.to_path_buf()),
                });
            } else {
                self.out.skipped.push((path.to_path_buf(), "not a regular file"));
            }
            return;
        }
        if self.seen_files.insert(identity(meta)) {
            self.out.files.push(path.to_path_buf());
            (self.on_found)(self.out.files.len());
        }
    }

    fn dir(&mut self, dir: &Path, depth: usize) {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) => return self.problem(dir, "open", e),
        };
        if !self.seen_dirs.insert(identity(&meta)) {
            self.out.skipped.push((dir.to_path_buf(), "folder already visited (symlink loop or second link)"));
            return;
        }
        if depth > MAX_DEPTH {
            self.out.skipped.push((dir.to_path_buf(), "folder nested too deep"));
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return self.problem(dir, "read the folder", e),
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => paths.push(e.path()),
                Err(e) => return self.problem(dir, "read the folder", e),
            }
        }
        paths.sort();
        for p in paths {
            // Follows symlinks; a dangling one is skipped with a note.
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(_) if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) => {
                    self.out.skipped.push((p, "dangling symlink"));
                    continue;
                }
                Err(e) => {
                    self.problem(&p, "open", e);
                    continue;
                }
            };
            if meta.is_dir() {
                self.dir(&p, depth + 1);
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")) {
                self.file(&p, &meta, false);
            }
        }
    }

    fn glob(&mut self, pattern: &str) {
        let matches: Vec<PathBuf> = match glob::glob(pattern) {
            Ok(m) => m.filter_map(Result::ok).collect(),
            Err(e) => {
                let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
                return self.problem(Path::new(pattern), "expand the pattern", source);
            }
        };
        if matches.is_empty() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no file matches the pattern");
            return self.problem(Path::new(pattern), "expand", source);
        }
        for m in matches {
            match std::fs::metadata(&m) {
                Ok(meta) if meta.is_dir() => self.dir(&m, 0),
                Ok(meta) => self.file(&m, &meta, true),
                Err(e) => self.problem(&m, "open", e),
            }
        }
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (
        meta.len(),
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Issue 22 item 14: a name that is not UTF-8 was stored lossily (its maps then failed: no such file), and a
    /// relative path was stored relative (no source from another folder).
    #[test]
    fn stored_paths_are_absolute_and_find_their_file_again() {
        use std::os::unix::ffi::OsStrExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let names: [&[u8]; 4] = [b"plain.pdf", b"caf\xe9 100%.pdf", b"line\nbreak.pdf", "été 日本.pdf".as_bytes()];
        for name in names {
            let path = tmp.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(&path, b"%PDF-1.4").unwrap();
            let stored = stored_path(&path);
            assert_eq!(source_file(&stored), path, "{stored}");
            assert!(source_file(&stored).is_file());
            if let Ok(text) = std::str::from_utf8(name) {
                assert!(stored.ends_with(text), "a UTF-8 name is stored as it is: {stored}");
            }
        }
        assert!(
            stored_path(&tmp.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9 100%.pdf")))
                .ends_with("caf%E9 100%25.pdf")
        );
        let relative = stored_path(Path::new("docs/a.pdf"));
        assert!(Path::new(&relative).is_absolute(), "{relative}");
        assert_eq!(Path::new(&relative), std::env::current_dir().unwrap().join("docs/a.pdf"));
    }

    #[test]
    fn loops_fifos_missing_paths_and_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one.pdf"), b"%PDF-1.4").unwrap();
        std::fs::write(root.join("a/b/two.PDF"), b"%PDF-1.4").unwrap();
        std::fs::write(root.join("a/notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("a/b"), root.join("a/loop2")).unwrap();
        std::os::unix::fs::symlink(root.join("a/one.pdf"), root.join("a/b/same.pdf")).unwrap();
        std::os::unix::fs::symlink(root.join("gone.pdf"), root.join("a/dangling.pdf")).unwrap();
        let fifo = root.join("a/fifo.pdf");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        let found = std::cell::Cell::new(0);
        let args = [root.join("a").display().to_string(), root.join("missing.pdf").display().to_string()];
        let d = discover(&args, &|n| found.set(n));
        let names: Vec<String> =
            d.files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        // `b/same.pdf` links to `one.pdf`: the first path found for a real file is the one used.
        assert_eq!(names, ["same.pdf", "two.PDF"], "each real file once, loops ended");
        assert_eq!(found.get(), 2);
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(d.problems[0].path.ends_with("missing.pdf"));
        assert!(d.skipped.iter().any(|(p, why)| p.ends_with("dangling.pdf") && why.contains("dangling")));
        if made {
            assert!(d.skipped.iter().any(|(p, why)| p.ends_with("fifo.pdf") && why.contains("regular")));
            let given = discover(&[fifo.display().to_string()], &|_| {});
            assert!(matches!(given.problems[0].error, Error::NotRegularFile(_)));
        }
    }
}
