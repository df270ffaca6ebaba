//! The Keyhold client engine. Everything the server sends is hostile input:
//! it reaches the user's files only after `keyhold-core` verified it.

pub mod account;
pub mod api;
pub mod audit;
pub mod check;
pub mod client;
pub mod deployment;
pub mod devices;
pub mod error;
pub mod fuzz;
pub mod home;
pub mod link;
pub mod merge;
pub mod ops;
pub mod share;
pub mod state;
pub mod sync;
pub mod transparency;

pub use client::{Client, DEFAULT_COLLECTION};
pub use error::{ClientError, Result};
pub use home::Home;
