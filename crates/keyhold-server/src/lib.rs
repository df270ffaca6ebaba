//! `keyhold serve`: a stateless HTTP service over a metadata store (SQLite
//! by default) and a blob store (a local folder by default) that only ever
//! holds ciphertext, opaque ids and the few cleartext fields the protocol
//! needs (docs/server-data.md lists every one).

pub mod admin;
pub mod app;
pub mod blobs;
pub mod config;
pub mod directory_store;
pub mod error;
pub mod handles;
pub mod kt_routes;
pub mod kt_store;
pub mod links;
pub mod links_store;
mod local_packs;
pub mod metrics;
pub mod regions;
pub mod serve;
pub mod share_routes;
pub mod share_store;
pub mod store;
pub mod transparency;
pub mod witness;

pub use config::{Config, Limits, S3Config};
pub use serve::{BoundServer, ServeError, bind, check_config};
