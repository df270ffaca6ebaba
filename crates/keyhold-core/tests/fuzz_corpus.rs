//! Replays the fuzz corpora: every file of `fuzz/corpus/<target>/` (valid
//! seed objects, what libFuzzer found, and past crashes kept as regression
//! inputs) through its target in `keyhold_core::fuzz`, plus a few edge
//! inputs. A target's corpus directory must exist and hold at least one
//! file, so this cannot silently test nothing. `scripts/fuzz.sh` runs the
//! same targets under libFuzzer. The `wire` target (keyhold-proto's JSON
//! bodies) is replayed by keyhold-proto's `tests/fuzz_corpus.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../../../fuzz/replay.rs"]
mod replay;

use std::fs;
use std::path::{Path, PathBuf};

use keyhold_core::fuzz::vector::{CHAIN_ACCOUNT, PREVIOUS_ROOT_ACCOUNT, PREVIOUS_ROOT_EPOCH, current_root_key, pairing_keys};
use keyhold_core::fuzz::{TARGETS, kt, vector};
use keyhold_core::transparency::{
    AddCheckpoint, DirectoryLabel, decode_audit_proof, verify_checkpoint, verify_history, verify_lookup, witness_add_checkpoint,
};
use keyhold_core::{DeviceChain, JoinerPake, MAGIC, ObjectType, PairingCode, inviter_respond, unwrap_previous_root};

/// Fuzz targets whose entry function is not in `keyhold_core::fuzz`: the
/// name, and the test that replays its corpus (relative to the workspace).
const OTHER_TARGETS: &[(&str, &str)] = &[
    ("wire", "crates/keyhold-proto/tests/fuzz_corpus.rs"),
    ("client_device_key", "crates/keyhold-client/tests/fuzz_corpus.rs"),
    ("client_config", "crates/keyhold-client/tests/fuzz_corpus.rs"),
    ("client_pinned_chain", "crates/keyhold-client/tests/fuzz_corpus.rs"),
    ("client_pinned_heads", "crates/keyhold-client/tests/fuzz_corpus.rs"),
    ("client_pack_index", "crates/keyhold-client/tests/fuzz_corpus.rs"),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs `target` on `input`, returning the panic message if it panicked.
fn run(target: fn(&[u8]), input: &[u8]) -> Option<String> {
    replay::panic_message(|| target(input))
}

#[test]
fn every_target_survives_its_corpus() {
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        for (path, input) in replay::corpus(&fuzz_dir().join("corpus"), name) {
            if let Some(message) = run(target, &input) {
                failures.push(format!("{name}: {}: {message}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "fuzz targets panicked on corpus inputs:\n{}", failures.join("\n"));
}

#[test]
fn every_target_survives_edge_inputs() {
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff], vec![b'K']];
    // All-0xFF and all-zero inputs of lengths around the fixed object sizes
    // (header, wraps, revision, device keys) and libFuzzer's default limit.
    for len in [7, 32, 59, 64, 83, 107, 115, 219, 1212, 1248, 4096] {
        inputs.push(vec![0xff; len]);
        inputs.push(vec![0; len]);
    }
    // A bare envelope header of every type, and one with a bad version.
    for byte in [0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x11, 0x12, 0x00, 0xff] {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&[1, 1, byte]);
        inputs.push(header.clone());
        header.extend_from_slice(&[0; 256]);
        inputs.push(header);
    }
    inputs.push([&MAGIC[..], &[2, 1, ObjectType::Pack.byte()]].concat());

    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        for input in &inputs {
            if let Some(message) = run(target, input) {
                failures.push(format!("{name}: {} bytes starting {:02x?}: {message}", input.len(), &input[..input.len().min(8)]));
            }
        }
    }
    assert!(failures.is_empty(), "fuzz targets panicked on edge inputs:\n{}", failures.join("\n"));
}

/// `keyhold_core::fuzz::TARGETS` (with [`OTHER_TARGETS`]), `fuzz/Cargo.toml`
/// and `fuzz/fuzz_targets/` name the same targets, so none is fuzzed
/// without being replayed or the other way round.
#[test]
fn fuzz_binaries_match_the_targets() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut binaries: Vec<String> = fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    binaries.sort();
    let mut names: Vec<String> =
        TARGETS.iter().map(|(n, _)| *n).chain(OTHER_TARGETS.iter().map(|(n, _)| *n)).map(str::to_owned).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "duplicate target names in TARGETS");
    assert_eq!(binaries, names, "fuzz/fuzz_targets/*.rs and keyhold_core::fuzz::TARGETS differ");
    for name in &names {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
    }
    for (name, _) in TARGETS {
        let source = fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"))).unwrap();
        assert!(source.contains(&format!("keyhold_core::fuzz::{name}(data)")), "fuzz_targets/{name}.rs does not call its target");
    }
    for (name, replay) in OTHER_TARGETS {
        let replay = fs::read_to_string(fuzz_dir().join("..").join(replay)).unwrap_or_else(|e| panic!("{replay}: {e}"));
        assert!(replay.contains(&format!("\"{name}\"")), "the replay test of {name} does not name its corpus");
    }
}

fn spec_vector(name: &str) -> serde_json::Value {
    let path = fuzz_dir().join("../docs/spec/vectors").join(name);
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn hex_field(v: &serde_json::Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("{field} missing"))).unwrap()
}

/// The fixtures of the device chain, pairing and previous-root-wrap targets
/// match the spec's vectors, so the vectors' objects (their seeds) reach the
/// parsers' success paths rather than failing on a key mismatch.
#[test]
fn vector_fixtures_match_the_spec_vectors() {
    let chain = spec_vector("device-chain-rotate-recovery.json");
    let entries: Vec<Vec<u8>> = chain["entries"].as_array().unwrap().iter().map(|e| hex_field(e, "stored")).collect();
    let verified = DeviceChain::verify(CHAIN_ACCOUNT, entries.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(verified.head().seq, chain["head"]["seq"].as_u64().unwrap());

    let wrap = spec_vector("previous-root-wrap.json");
    let previous =
        unwrap_previous_root(&hex_field(&wrap, "wrap"), &current_root_key(), PREVIOUS_ROOT_ACCOUNT, PREVIOUS_ROOT_EPOCH).unwrap();
    assert_eq!(previous.expose_secret().to_vec(), hex_field(&wrap, "previous_root_key"));

    let pairing = spec_vector("pairing.json");
    let code = PairingCode::parse(vector::PAIRING_CODE).unwrap();
    assert_eq!(*code.display(), pairing["code"].as_str().unwrap());
    let mut rng = keyhold_core::fuzz::FuzzRng::new(&hex::decode(vector::JOINER_RANDOMNESS).unwrap());
    let (joiner, message) = JoinerPake::start(&code, &mut rng);
    assert_eq!(message.to_vec(), hex_field(&pairing, "joiner_message"));
    let mut rng = keyhold_core::fuzz::FuzzRng::new(&hex::decode(vector::INVITER_RANDOMNESS).unwrap());
    let (inviter, reply) = inviter_respond(&code, &message, &mut rng).unwrap();
    assert_eq!(reply.to_vec(), hex_field(&pairing, "inviter_message"));
    let keys = joiner.finish(&reply, &inviter.inviter_confirmation()).unwrap();
    assert_eq!(keys.joiner_confirmation().to_vec(), hex::decode(vector::JOINER_CONFIRMATION).unwrap());
    let fixed = pairing_keys().unwrap();
    assert_eq!(fixed.safety_string(), pairing["safety_string"].as_str().unwrap());
    fixed.open_joiner_hello(&hex_field(&pairing, "sealed_joiner_hello")).unwrap();
    fixed.open_welcome(&hex_field(&pairing, "sealed_welcome")).unwrap();
}

fn transparency_vector(name: &str) -> serde_json::Value {
    let path = fuzz_dir().join("../docs/spec/transparency-vectors").join(name);
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn text_field(v: &serde_json::Value, field: &str) -> Vec<u8> {
    v[field].as_str().unwrap_or_else(|| panic!("{field} missing")).as_bytes().to_vec()
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("corpus").join(target).join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixtures of the key transparency targets match the transparency
/// vectors (keys, witness state, time), and the seeds reach the success
/// paths: the vectors' checkpoint verifies under the fixed policy, the
/// witness cosigns the vectors' request, and the `kt_proofs` seeds (made by
/// an akd directory under [`kt::VRF_SEED`]) verify.
#[test]
fn transparency_fixtures_match_the_vectors_and_seeds_verify() {
    let cosigned = transparency_vector("checkpoint-cosigned.json");
    let keys = &cosigned["keys"];
    assert_eq!(kt::log_key().unwrap().log_vkey(), keys["log"]["vkey"].as_str().unwrap());
    assert_eq!(kt::witness_key().unwrap().cosigner_vkey(), keys["witness"]["vkey"].as_str().unwrap());
    assert_eq!(kt::auditor_key().unwrap().cosigner_vkey(), keys["auditor"]["vkey"].as_str().unwrap());
    assert_eq!(kt::ORIGIN, cosigned["origin"].as_str().unwrap());
    let verified = verify_checkpoint(kt::policy().unwrap(), &text_field(&cosigned, "note")).unwrap();
    assert_eq!(verified.auditor_times.len(), 1);
    assert_eq!(seed("kt_checkpoint", "seed-cosigned"), text_field(&cosigned, "note"));

    let add = transparency_vector("add-checkpoint.json");
    assert_eq!(kt::WITNESS_STATE, text_field(&add, "state"));
    assert_eq!(kt::NOW, add["now"].as_u64().unwrap());
    let request = AddCheckpoint::decode(&seed("kt_add_checkpoint", "seed-add-checkpoint")).unwrap();
    let log_vkey = kt::log_key().unwrap().log_vkey();
    let state = kt::witness_state().unwrap();
    let (_, line) =
        witness_add_checkpoint(kt::ORIGIN, &log_vkey, Some(&state), &request, kt::witness_key().unwrap(), kt::NOW).unwrap();
    assert_eq!(line, text_field(&add, "response"));

    // kt_proofs seeds: selector, epoch, root, label, proof.
    let split = |input: &[u8]| {
        let epoch = u64::from_be_bytes(input[1..9].try_into().unwrap());
        let root: [u8; 32] = input[9..41].try_into().unwrap();
        let len = usize::from(u16::from_be_bytes([input[41], input[42]]));
        let label = DirectoryLabel::from_bytes(&input[43..43 + len]).unwrap();
        (epoch, root, label, input[43 + len..].to_vec())
    };
    let vrf = kt::vrf_public_key();
    for (name, version) in [("seed-lookup-account", 3), ("seed-lookup-collection", 2)] {
        let (epoch, root, label, proof) = split(&seed("kt_proofs", name));
        assert_eq!(verify_lookup(&vrf, root, epoch, &label, &proof).unwrap().0, version, "{name}");
    }
    for (name, versions) in [("seed-history-account", 3), ("seed-history-collection", 2)] {
        let (epoch, root, label, proof) = split(&seed("kt_proofs", name));
        assert_eq!(verify_history(&vrf, root, epoch, &label, &proof).unwrap().len(), versions, "{name}");
    }
    decode_audit_proof(&seed("kt_proofs", "seed-audit-2")[1..]).unwrap();
}
