//! A colqwen [`PageIndex`](colqwen_core::PageIndex) on a Weaviate server, for users who outgrow one machine:
//! a collection per index, pages as objects with a native multi-vector (MaxSim) index, sharding and
//! replication by the server. Selected by an index location `weaviate://HOST:PORT/Collection`.
//!
//! Plain HTTP (REST batch inserts and deletes, GraphQL queries) through the blocking `ureq` client: no gRPC
//! stubs, and nothing of Weaviate's source in this crate.

mod client;
mod index;
mod location;

pub use index::{Weaviate, WeaviateConfig};
pub use location::{Location, SCHEME};
