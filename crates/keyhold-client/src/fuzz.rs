//! Fuzz entry points for the files this client keeps on its own disk:
//! `device.key`, `config.json`, `chain.json`, `heads.json` and the pack
//! index rows of `state.sqlite3`. A disk can be damaged, restored from an
//! old backup or edited by hand; none of that may make the client panic,
//! and where a parser accepts an input the format's invariants must hold
//! (one encoding per value).
//!
//! The cargo-fuzz binaries `fuzz/fuzz_targets/client_*.rs` call these
//! functions, and `tests/fuzz_corpus.rs` replays the corpora in
//! `fuzz/corpus/client_*/` through them on every `cargo test`. Not part of
//! the API.

#![doc(hidden)]

use keyhold_core::ObjectId;
use keyhold_core::fuzz::vector::CHAIN_ACCOUNT;

use crate::devices::reconcile;
use crate::home::{DeviceConfig, DeviceKeys, PinnedChain};
use crate::state::{decode_pack_entries, decode_pins};

/// A target: the name of its fuzz binary and corpus, and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("client_device_key", client_device_key),
    ("client_config", client_config),
    ("client_pinned_chain", client_pinned_chain),
    ("client_pinned_heads", client_pinned_heads),
    ("client_pack_index", client_pack_index),
];

/// `device.key`: a file that decodes encodes back to itself.
pub fn client_device_key(data: &[u8]) {
    if let Some(keys) = DeviceKeys::decode(data) {
        assert_eq!(keys.encode().as_slice(), data, "device.key does not round-trip");
    }
}

/// `config.json`.
pub fn client_config(data: &[u8]) {
    if let Ok(config) = DeviceConfig::parse(data) {
        let again = serde_json::to_vec(&config).map_err(|e| e.to_string());
        let reparsed = again.as_deref().map(DeviceConfig::parse).map(|r| r.map(|c| c.device_id));
        assert!(matches!(reparsed, Ok(Ok(ref id)) if *id == config.device_id), "config.json does not round-trip");
    }
}

/// `chain.json`, then what the client does with it: verify the pinned
/// entries (under the spec vectors' account, so the vectors' chains reach
/// the success path) and reconcile them with a server that shows the same
/// chain, and with one that shows it shortened (a rollback).
pub fn client_pinned_chain(data: &[u8]) {
    let Ok(pinned) = PinnedChain::parse(data) else { return };
    let entries: Vec<Vec<u8>> = pinned.entries.iter().map(|e| e.0.clone()).collect();
    let _ = reconcile(CHAIN_ACCOUNT, Some(&pinned), entries.clone());
    let mut shorter = entries;
    shorter.pop();
    let _ = reconcile(CHAIN_ACCOUNT, Some(&pinned), shorter);
}

/// `heads.json`.
pub fn client_pinned_heads(data: &[u8]) {
    if let Ok(heads) = decode_pins(data) {
        for (collection, head) in heads {
            assert_eq!(collection.to_hex().len(), 32);
            assert_eq!(head.id.to_hex().len(), 64);
        }
    }
}

/// One pack's row of the pack index.
pub fn client_pack_index(data: &[u8]) {
    if let Some(entries) = decode_pack_entries(ObjectId([7; 32]), data) {
        assert_eq!(entries.len() * 41, data.len(), "pack index row length");
    }
}
