//! What clients see of the server's file paths.
//!
//! On loopback the client is on the server's machine (the CLI goes through a running server and prints, or
//! deletes by, the paths that a local command would): paths are shown as they are. Bound beyond loopback, a
//! client learns nothing of the server's folders: a path below the upload folder is shown as
//! `uploads/<batch>/<n>/<name>`, one below an `--allow-path` folder as that folder's name and the rest
//! (`manuals/2024/x.pdf`), the index folder as `index`, any other path by its file name only; messages (job
//! errors, error answers) get the same treatment for every path they contain.

use std::path::{Path, PathBuf};

/// How paths are shown (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct PathView {
    /// `(absolute prefix, shown as)`, longest prefix first; empty: paths are shown as they are.
    rules: Vec<(String, String)>,
    relative: bool,
}

impl PathView {
    /// Paths as they are.
    pub(crate) fn absolute() -> Self {
        Self::default()
    }

    /// Relative paths (see the module doc); each folder in both its given and its canonical form.
    pub(crate) fn relative(index_dir: &Path, uploads: &Path, allow_paths: &[PathBuf]) -> Self {
        let mut rules = Vec::new();
        let mut add = |dir: &Path, shown: String| {
            for form in [std::path::absolute(dir).ok(), dir.canonicalize().ok()].into_iter().flatten() {
                let s = form.display().to_string().trim_end_matches('/').to_string();
                if !s.is_empty() && !rules.iter().any(|(p, _)| *p == s) {
                    rules.push((s, shown.clone()));
                }
            }
        };
        add(uploads, "uploads".into());
        for a in allow_paths {
            let name = a.canonicalize().ok().and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()));
            add(a, name.unwrap_or_else(|| "allowed".into()));
        }
        add(index_dir, "index".into());
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Self { rules, relative: true }
    }

    /// One path as the client sees it.
    pub(crate) fn path(&self, p: &str) -> String {
        if !self.relative {
            return p.to_string();
        }
        for (prefix, shown) in &self.rules {
            if p == prefix {
                return shown.clone();
            }
            if let Some(rest) = p.strip_prefix(prefix.as_str()).and_then(|r| r.strip_prefix('/')) {
                return format!("{shown}/{rest}");
            }
        }
        if !Path::new(p).is_absolute() {
            // A path relative to the server's working folder (an index opened by a relative path).
            return self.path(&std::path::absolute(p).map(|a| a.display().to_string()).unwrap_or_default());
        }
        Path::new(p).file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// A model id: a local model folder (an absolute path) as [`PathView::path`] shows it, a Hub id as it is.
    pub(crate) fn model(&self, id: &str) -> String {
        if Path::new(id).is_absolute() { self.path(id) } else { id.to_string() }
    }

    /// A message with every path in it shown as [`PathView::path`] shows it: the known folders by their
    /// names, any other absolute path (a word that starts with `/`) by its file name.
    pub(crate) fn text(&self, t: &str) -> String {
        if !self.relative {
            return t.to_string();
        }
        let mut out = t.to_string();
        for (prefix, shown) in &self.rules {
            out = out.replace(prefix.as_str(), shown);
        }
        // Other absolute paths: up to the next space, quote or colon, reduced to their last component.
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find('/') {
            let starts_word = i == 0 || rest[..i].ends_with([' ', '"', '\'', '(', '=', '[']);
            if !starts_word {
                result.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
                continue;
            }
            result.push_str(&rest[..i]);
            let end = rest[i..].find([' ', '"', '\'', ':', ')', ',', ']']).map_or(rest.len(), |e| i + e);
            let word = &rest[i..end];
            result.push_str(Path::new(word).file_name().map(|n| n.to_string_lossy()).as_deref().unwrap_or(""));
            rest = &rest[end..];
        }
        result.push_str(rest);
        result
    }

    /// Applies [`PathView::path`] to `value[key]` and [`PathView::text`] to `value[key]` for the message keys.
    pub(crate) fn json(&self, value: &mut serde_json::Value, path_keys: &[&str], text_keys: &[&str]) {
        if !self.relative {
            return;
        }
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(s) if path_keys.contains(&k.as_str()) => *s = self.path(s),
                        serde_json::Value::String(s) if text_keys.contains(&k.as_str()) => *s = self.text(s),
                        _ => self.json(v, path_keys, text_keys),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.json(v, path_keys, text_keys);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_beyond_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        let index = tmp.path().join("index");
        let uploads = index.join("uploads");
        let manuals = tmp.path().join("manuals");
        std::fs::create_dir_all(&uploads).unwrap();
        std::fs::create_dir_all(&manuals).unwrap();
        let v = PathView::relative(&index, &uploads, std::slice::from_ref(&manuals));
        let up = format!("{}/ab/00/x.pdf", uploads.display());
        assert_eq!(v.path(&up), "uploads/ab/00/x.pdf");
        assert_eq!(v.path(&format!("{}/2024/y.pdf", manuals.display())), "manuals/2024/y.pdf");
        assert_eq!(v.path("/home/someone/secret/z.pdf"), "z.pdf");
        assert_eq!(
            v.text(&format!("cannot read {up}: No such file; see /etc/passwd or {}/jobs/x.json", index.display())),
            "cannot read uploads/ab/00/x.pdf: No such file; see passwd or index/jobs/x.json"
        );
        assert_eq!(PathView::absolute().path(&up), up);
    }
}
