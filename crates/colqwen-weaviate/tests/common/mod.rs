//! Where the Weaviate server under test is: `COLQWEN_TEST_WEAVIATE=HOST:PORT` (set by `.ci/run` after
//! `scripts/weaviate.sh start`). Unset, these tests fail with that instruction, so CI cannot pass without a
//! server; `COLQWEN_TEST_WEAVIATE=skip` is the documented opt-out for a developer without Go.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};

use colqwen_weaviate::{Location, Weaviate, WeaviateConfig};

/// The server's `HOST:PORT`, or `None` when the developer opted out.
pub fn server() -> Option<String> {
    match std::env::var("COLQWEN_TEST_WEAVIATE") {
        Ok(v) if v == "skip" => {
            eprintln!("COLQWEN_TEST_WEAVIATE=skip: Weaviate test not run");
            None
        }
        Ok(v) if !v.is_empty() => Some(v),
        _ => panic!(
            "these tests need a Weaviate server: run `scripts/weaviate.sh start` and set \
             COLQWEN_TEST_WEAVIATE=127.0.0.1:8080 (or COLQWEN_TEST_WEAVIATE=skip to skip them)"
        ),
    }
}

/// The binary for tests that start their own nodes (restart, cluster): `COLQWEN_TEST_WEAVIATE_SERVER`
/// (`scripts/weaviate.sh path` prints it).
pub fn server_binary() -> Option<std::path::PathBuf> {
    server()?;
    match std::env::var_os("COLQWEN_TEST_WEAVIATE_SERVER") {
        Some(p) if !p.is_empty() => Some(p.into()),
        _ => panic!("set COLQWEN_TEST_WEAVIATE_SERVER to the weaviate-server binary (`scripts/weaviate.sh path`)"),
    }
}

/// A collection name no other test of this process or another uses.
pub fn collection(case: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let camel: String = case
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    format!("T{camel}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Config of `collection` on the server at `addr`.
pub fn config(addr: &str, collection: &str) -> WeaviateConfig {
    WeaviateConfig::new(Location::parse(&format!("weaviate://{addr}/{collection}")).expect("valid location"))
}

/// Drops the collection when dropped.
pub struct DropCollection(pub WeaviateConfig);

impl Drop for DropCollection {
    fn drop(&mut self) {
        let _ = Weaviate::drop_collection(&self.0);
    }
}
