//! Replays the corpora of the client's fuzz targets (`fuzz/corpus/client_*/`:
//! the files the client keeps on its own disk) through their entry
//! functions in `keyhold_client::fuzz`, plus a few edge inputs, and checks
//! that the seeds reach the parsers' success paths. keyhold-core's
//! `tests/fuzz_corpus.rs` checks that every fuzz binary has a replay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/replay.rs"]
mod replay;

use std::path::{Path, PathBuf};

use keyhold_client::fuzz::TARGETS;
use keyhold_client::home::{DeviceConfig, DeviceKeys, PinnedChain};

/// The names of the targets, as the corpus directories and fuzz binaries
/// are named (keyhold-core's `fuzz_binaries_match_the_targets` looks for
/// each quoted name here).
const NAMES: &[&str] = &["client_device_key", "client_config", "client_pinned_chain", "client_pinned_heads", "client_pack_index"];

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    replay::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"), name)
}

fn run(target: fn(&[u8]), input: &[u8]) -> Option<String> {
    replay::panic_message(|| target(input))
}

#[test]
fn every_client_target_survives_its_corpus_and_edge_inputs() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, NAMES);
    let mut edge: Vec<Vec<u8>> = vec![Vec::new(), b"{}".to_vec(), b"[]".to_vec(), b"null".to_vec(), b"KHDEVK1\0".to_vec()];
    for len in [1, 8, 40, 41, 42, 124, 125, 4096] {
        edge.push(vec![0; len]);
        edge.push(vec![0xff; len]);
    }
    edge.push(br#"{"entries":["AAAA"],"seen":18446744073709551615}"#.to_vec());
    edge.push(br#"{"entries":[],"seen":0}"#.to_vec());
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        for (path, input) in corpus(name) {
            if let Some(message) = run(target, &input) {
                failures.push(format!("{name}: {}: {message}", path.display()));
            }
        }
        for input in &edge {
            if let Some(message) = run(target, input) {
                failures.push(format!("{name}: edge input {:?}: {message}", String::from_utf8_lossy(input)));
            }
        }
    }
    assert!(failures.is_empty(), "client fuzz targets panicked:\n{}", failures.join("\n"));
}

#[test]
fn the_seeds_reach_the_success_paths() {
    assert!(corpus("client_device_key").iter().any(|(_, b)| DeviceKeys::decode(b).is_some()));
    assert!(corpus("client_config").iter().any(|(_, b)| DeviceConfig::parse(b).is_ok()));
    let chains: Vec<PinnedChain> = corpus("client_pinned_chain").iter().filter_map(|(_, b)| PinnedChain::parse(b).ok()).collect();
    assert!(!chains.is_empty());
    let account = keyhold_core::fuzz::vector::CHAIN_ACCOUNT;
    assert!(
        chains.iter().any(|c| {
            keyhold_client::devices::reconcile(account, Some(c), c.entries.iter().map(|e| e.0.clone()).collect()).is_ok()
        }),
        "no pinned chain seed verifies"
    );
    assert!(
        corpus("client_pinned_heads").iter().any(|(_, b)| keyhold_client::state::decode_pins(b).is_ok_and(|h| !h.is_empty()))
    );
    assert!(corpus("client_pack_index").iter().any(|(_, b)| {
        keyhold_client::state::decode_pack_entries(keyhold_core::ObjectId([7; 32]), b).is_some_and(|e| e.len() == 3)
    }));
}
