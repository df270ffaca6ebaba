//! Replays the corpus of the `wire` fuzz target (`fuzz/corpus/wire/`: the
//! server's JSON answers as the client parses them) through its entry
//! function, `fuzz/wire.rs`, shared with the libFuzzer binary, plus a few
//! edge inputs. keyhold-core's `tests/fuzz_corpus.rs` replays the other
//! targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[path = "../../../fuzz/wire.rs"]
mod wire;

use std::path::Path;

/// The corpus directory's name, as `fuzz/Cargo.toml` names the binary.
const TARGET: &str = "wire";

/// Runs the target on `input`, returning the panic message if it panicked.
fn run(input: &[u8]) -> Option<String> {
    replay::panic_message(|| wire::wire(input))
}

#[test]
fn wire_survives_its_corpus() {
    let mut failures = Vec::new();
    for (path, input) in replay::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"), TARGET) {
        if let Some(message) = run(&input) {
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    assert!(failures.is_empty(), "wire panicked on corpus inputs:\n{}", failures.join("\n"));
}

#[test]
fn wire_survives_edge_inputs() {
    let mut failures = Vec::new();
    for selector in 0..=255u8 {
        for body in [&b""[..], b"{}", b"[]", b"null", b"{\"a\":", b"\"\\ud800\"", &[0xff; 64], &[b'['; 512]] {
            let input = [&[selector][..], body].concat();
            if let Some(message) = run(&input) {
                failures.push(format!("selector {selector}, body {:?}: {message}", String::from_utf8_lossy(body)));
            }
        }
    }
    assert!(run(&[]).is_none(), "wire panicked on the empty input");
    assert!(failures.is_empty(), "wire panicked on edge inputs:\n{}", failures.join("\n"));
}
