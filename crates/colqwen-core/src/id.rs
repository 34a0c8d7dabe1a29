//! Deterministic point ids, so that re-ingesting a page replaces it (idempotent ingest).

use sha2::{Digest, Sha256};

/// Short, stable document id: the first 16 hex digits of the file's SHA-256.
pub fn doc_id(sha256: &str) -> String {
    sha256[..16.min(sha256.len())].to_string()
}

/// Whether `s` can be a document id (1 to 64 lowercase hex digits): what an id from a user or a URL must
/// be before it goes near a path or a filter.
pub fn is_doc_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Id of one stored page: the first 8 bytes (big-endian) of SHA-256 over
/// `"colqwen-point-v1"`, the file hash, the page index, the model id and the canonical JSON of
/// the preprocessing settings, NUL-separated. Same page + same settings = same id.
pub fn point_id(file_sha256: &str, page_index: usize, model_id: &str, preprocessing: &serde_json::Value) -> u64 {
    let mut h = Sha256::new();
    h.update(b"colqwen-point-v1\0");
    h.update(file_sha256.as_bytes());
    h.update(b"\0");
    h.update(page_index.to_string().as_bytes());
    h.update(b"\0");
    h.update(model_id.as_bytes());
    h.update(b"\0");
    h.update(canonical_json(preprocessing).as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Compact JSON with object keys sorted at every level. qdrant-edge turns on serde_json's
/// `preserve_order`, so `serde_json::to_string` alone would depend on insertion order.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a = json!({"max_pixels": 1, "dpi": {"b": 2, "a": [1, {"y": 1, "x": 2}]}});
        let mut m = serde_json::Map::new();
        m.insert("dpi".into(), json!({"a": [1, {"x": 2, "y": 1}], "b": 2}));
        m.insert("max_pixels".into(), json!(1));
        let b = serde_json::Value::Object(m);
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"dpi":{"a":[1,{"x":2,"y":1}],"b":2},"max_pixels":1}"#);
    }

    #[test]
    fn point_id_is_deterministic_and_sensitive() {
        let p = json!({"max_pixels": 1});
        let id = point_id("abc", 3, "m", &p);
        assert_eq!(id, point_id("abc", 3, "m", &p));
        assert_ne!(id, point_id("abc", 4, "m", &p));
        assert_ne!(id, point_id("abd", 3, "m", &p));
        assert_ne!(id, point_id("abc", 3, "n", &p));
        assert_ne!(id, point_id("abc", 3, "m", &json!({"max_pixels": 2})));
        // "ab" + "c3" must not collide with "abc" + "3".
        assert_ne!(point_id("ab", 3, "m", &p), point_id("ab\03", 0, "m", &p));
    }
}
