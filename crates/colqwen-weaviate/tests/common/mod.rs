//! Collections of the Weaviate server under test (the node the test binary starts, or `COLQWEN_TEST_WEAVIATE`;
//! see `colqwen_testkit::weaviate`).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::atomic::{AtomicUsize, Ordering};

use colqwen_weaviate::{Location, Weaviate, WeaviateConfig};

pub use colqwen_testkit::weaviate::{server, server_binary};

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
