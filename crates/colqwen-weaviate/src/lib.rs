//! A colqwen [`PageIndex`](colqwen_core::PageIndex) on a Weaviate server, for users who outgrow one machine:
//! a collection per index, pages as objects with a native multi-vector (MaxSim) index, sharding and
//! replication by the server. Selected by an index location `weaviate://HOST:PORT/Collection`.
//!
//! Plain HTTP through the blocking `ureq` client: REST deletes and GraphQL queries, and batch inserts as
//! Weaviate's gRPC `BatchObjects` in the Connect protocol on the REST port (binary vectors; see `wire.rs`),
//! falling back to REST JSON batches on a server without that path. No gRPC stack or generated stubs (the few
//! protobuf messages are declared by hand with `prost`), and nothing of Weaviate's source in this crate.

mod client;
mod index;
mod location;
mod wire;

pub use index::{InsertPath, Weaviate, WeaviateConfig};
pub use location::{Location, SCHEME};
