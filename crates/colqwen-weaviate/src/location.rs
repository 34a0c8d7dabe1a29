//! `weaviate://HOST:PORT/Collection`: where a remote index lives.

use colqwen_core::IndexError;

/// The URL scheme that selects this backend.
pub const SCHEME: &str = "weaviate://";

/// A parsed remote index location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Host name or address (no scheme, no port).
    pub host: String,
    /// HTTP port of the server.
    pub port: u16,
    /// Collection (Weaviate class) name: an uppercase ASCII letter, then letters, digits or `_`.
    pub collection: String,
}

impl Location {
    /// Whether `s` names a Weaviate index (starts with `weaviate://`), decided once by the caller.
    pub fn is_weaviate(s: &str) -> bool {
        s.starts_with(SCHEME)
    }

    /// Parses `weaviate://HOST:PORT/Collection` (the port defaults to 8080).
    pub fn parse(s: &str) -> Result<Self, IndexError> {
        let bad = |reason| IndexError::InvalidLocation { location: s.to_string(), reason };
        let rest = s.strip_prefix(SCHEME).ok_or_else(|| bad("it does not start with weaviate://"))?;
        let (authority, collection) = rest.split_once('/').ok_or_else(|| bad("no /Collection after the host"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?)
            }
            None => (authority, 8080),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
        if !host_ok {
            return Err(bad("the host is empty or has characters a host name cannot have"));
        }
        if !is_collection_name(collection) {
            return Err(bad("the collection must be an uppercase letter, then letters, digits or _ (at most 200)"));
        }
        Ok(Self { host: host.to_string(), port, collection: collection.to_string() })
    }

    /// `http://HOST:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}:{}/{}", self.host, self.port, self.collection)
    }
}

/// Weaviate's class-name rule (`^[A-Z][_0-9A-Za-z]*$`), with a length cap of ours.
fn is_collection_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z')) && s.len() <= 200 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let l = Location::parse("weaviate://127.0.0.1:8081/Pages").expect("valid");
        assert_eq!((l.host.as_str(), l.port, l.collection.as_str()), ("127.0.0.1", 8081, "Pages"));
        assert_eq!(l.to_string(), "weaviate://127.0.0.1:8081/Pages");
        assert_eq!(Location::parse("weaviate://db.local/My_Pages2").expect("valid").port, 8080);
        for bad in [
            "http://h:1/P",
            "weaviate://h:1",
            "weaviate://h:0/P",
            "weaviate://h:99999/P",
            "weaviate://:1/P",
            "weaviate://h:1/pages",
            "weaviate://h:1/P/../x",
            "weaviate://h:1/P-x",
            "weaviate://h h:1/P",
        ] {
            assert!(matches!(Location::parse(bad), Err(IndexError::InvalidLocation { .. })), "{bad}");
        }
    }
}
