//! Key transparency (spec: `docs/spec/transparency.md`): signed checkpoints,
//! `cosignature/v1` interop with signed-note, the pinned policy (K1, K2),
//! consistency and inclusion (K3, K5), freshness (K4), auditor coverage
//! (K6), the witness's decisions, and the vectors in
//! `docs/spec/transparency-vectors/`, checked both ways
//! (`KEYHOLD_UPDATE_VECTORS=1` rewrites them after a deliberate change).
//!
//! akd lookup and history proofs (K7, K10) need an akd `Directory`, which
//! lives in the `akd` crate (not a dependency of the core): they are tested
//! where the server builds one.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::{Signer as _, SigningKey};
use keyhold_core::transparency::{
    AddCheckpoint, Checkpoint, CosignatureVerifier, DirectoryLabel, DirectoryValue, KtError, LogEntry, MerkleLog, NoteKey,
    Policy, VerifiedCheckpoint, WitnessRefusal, WitnessState, add_signature_lines, check_audited, check_consistency, check_fresh,
    check_inclusion, consistency_proof, cosign, evidence, inclusion_proof, leaf_hash, parse_evidence, sign_checkpoint, tree_root,
    verify_checkpoint, verify_cosignature_line, verify_log_signature, witness_add_checkpoint,
};
use keyhold_core::{AccountId, CollectionId};
use serde_json::{Value, json};
use vector_files::{check_generated, h, unh, unh32};

#[path = "support/vector_files.rs"]
mod vector_files;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};

const ORIGIN: &str = "kt.keyhold.example/epoch-roots";
const T0: u64 = 1_800_000_000;

fn log_key() -> NoteKey {
    NoteKey::from_seed(ORIGIN, [0x11; 32]).unwrap()
}
fn witness(i: u8) -> NoteKey {
    NoteKey::from_seed(&format!("witness-{i}.example"), [0x20 + i; 32]).unwrap()
}
fn auditor(i: u8) -> NoteKey {
    NoteKey::from_seed(&format!("auditor-{i}.example"), [0x30 + i; 32]).unwrap()
}

fn policy(witnesses: usize, quorum: usize) -> Policy {
    Policy {
        origin: ORIGIN.into(),
        log_vkey: log_key().log_vkey(),
        witnesses: (1..=witnesses).map(|i| witness(u8::try_from(i).unwrap()).cosigner_vkey()).collect(),
        quorum,
        auditors: vec![auditor(1).cosigner_vkey()],
        max_age_secs: 86_400,
        max_audit_lag_secs: 7_200,
    }
}

/// Entry `i` of the test logs: epoch `i + 1` with a root derived from `i`
/// and `fork` (so two forks share a prefix and then differ).
fn entry(i: u64, fork: u8) -> Vec<u8> {
    let mut root = *blake3::hash(&i.to_be_bytes()).as_bytes();
    if i >= 5 {
        root[0] ^= fork;
    }
    LogEntry::Epoch { epoch: i + 1, root, time_ms: i64::try_from(i).unwrap() * 60_000 }.encode()
}

fn leaves(n: u64, fork: u8) -> Vec<[u8; 32]> {
    (0..n).map(|i| leaf_hash(&entry(i, fork))).collect()
}

fn checkpoint(n: u64, fork: u8) -> Checkpoint {
    Checkpoint { origin: ORIGIN.into(), size: n, root: tree_root(&leaves(n, fork)) }
}

fn signed(n: u64, fork: u8) -> Vec<u8> {
    sign_checkpoint(&checkpoint(n, fork), &log_key()).unwrap()
}

fn cosigned(note: &[u8], cosigners: &[(&NoteKey, u64)]) -> Vec<u8> {
    let lines: Vec<Vec<u8>> = cosigners.iter().map(|(k, t)| cosign(note, k, *t).unwrap()).collect();
    add_signature_lines(note, &lines).unwrap()
}

// ------------------------------------------------------------ keys and notes

#[test]
fn key_names_follow_signed_note() {
    for bad in ["", "a b", "a+b", "tab\there", "nbsp\u{a0}x"] {
        assert!(NoteKey::from_seed(bad, [1; 32]).is_err(), "{bad:?}");
    }
    let k = NoteKey::from_seed("ok.example/x", [1; 32]).unwrap();
    let debug = format!("{k:?}");
    assert!(debug.contains("REDACTED"));
    assert!(!debug.contains(&hex::encode([1u8; 32])));
}

#[test]
fn log_signatures_match_signed_notes_own_signer() {
    let key = log_key();
    let vkey = key.log_vkey();
    let (name, rest) = vkey.split_once('+').unwrap();
    let (id, _) = rest.split_once('+').unwrap();
    let mut private = vec![0x01];
    private.extend_from_slice(&[0x11; 32]);
    let skey = format!("PRIVATE+KEY+{name}+{id}+{}", data_encoding::BASE64.encode(&private));
    let signer = StandardSigner::new(&skey).unwrap();
    let body = checkpoint(7, 0).to_body().unwrap();
    let mut note = Note::new(&body, &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    assert_eq!(note.to_bytes(), signed(7, 0));
    let verifier = StandardVerifier::new(&vkey).unwrap();
    let (ok, _) = Note::from_bytes(&signed(7, 0)).unwrap().verify(&VerifierList::new(vec![Box::new(verifier)])).unwrap();
    assert_eq!(ok.len(), 1);
}

#[test]
fn cosignatures_verify_with_signed_notes_machinery_and_flips_fail() {
    let w = witness(1);
    let note = cosigned(&signed(7, 0), &[(&w, T0)]);
    let verifier = CosignatureVerifier::new(&w.cosigner_vkey()).unwrap();
    let list = || VerifierList::new(vec![Box::new(verifier.clone())]);
    let (ok, unknown) = Note::from_bytes(&note).unwrap().verify(&list()).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(unknown.len(), 1, "the log's own signature is unknown to a cosigner verifier");
    assert_eq!(&ok[0].signature()[..8], &T0.to_be_bytes());

    // Flip every byte of the cosignature (after base64 decoding): each flip
    // is refused, either as an invalid signature or as another key id.
    let line = cosign(&signed(7, 0), &w, T0).unwrap();
    let text = String::from_utf8(line.clone()).unwrap();
    let b64 = text.trim_end().rsplit_once(' ').unwrap().1;
    let raw = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
    assert_eq!(raw.len(), 4 + 8 + 64);
    for i in 0..raw.len() {
        let mut flipped = raw.clone();
        flipped[i] ^= 0x01;
        let line = format!("— {} {}\n", w.name(), data_encoding::BASE64.encode(&flipped));
        let note = add_signature_lines(&signed(7, 0), &[line.into_bytes()]).unwrap();
        let result = Note::from_bytes(&note).unwrap().verify(&list());
        assert!(matches!(result, Err(NoteError::InvalidSignature { .. } | NoteError::UnverifiedNote)), "flip at {i}");
    }
    // The same cosignature over another checkpoint does not verify.
    let moved = add_signature_lines(&signed(8, 0), &[line]).unwrap();
    assert!(matches!(Note::from_bytes(&moved).unwrap().verify(&list()), Err(NoteError::InvalidSignature { .. })));
}

/// The signed message, built here by hand from the tlog-cosignature text
/// with a bare Ed25519 key, verifies with our verifier.
#[test]
fn cosignature_message_is_the_c2sp_one() {
    let seed = [0x21; 32];
    let sk = SigningKey::from_bytes(&seed);
    let name = "witness-1.example";
    let mut pk = vec![0x04];
    pk.extend_from_slice(&sk.verifying_key().to_bytes());
    let id = signed_note::key_id(name, &pk);
    let note = signed(7, 0);
    let body = checkpoint(7, 0).to_body().unwrap();
    let message = [format!("cosignature/v1\ntime {T0}\n").into_bytes(), body].concat();
    let mut raw = id.to_be_bytes().to_vec();
    raw.extend_from_slice(&T0.to_be_bytes());
    raw.extend_from_slice(&sk.sign(&message).to_bytes());
    let line = format!("— {name} {}\n", data_encoding::BASE64.encode(&raw));
    assert_eq!(line.as_bytes(), cosign(&note, &witness(1), T0).unwrap());
    assert_eq!(witness(1).cosigner_vkey(), format!("{name}+{id:08x}+{}", data_encoding::BASE64.encode(&pk)));
}

#[test]
fn added_lines_replace_the_same_keys_earlier_line() {
    let note = cosigned(&signed(7, 0), &[(&witness(1), T0), (&witness(2), T0)]);
    let again = cosigned(&note, &[(&witness(1), T0 + 60)]);
    let text = String::from_utf8(again.clone()).unwrap();
    assert_eq!(text.matches("— witness-1.example ").count(), 1);
    assert_eq!(text.matches("— ").count(), 3);
    let v = verify_checkpoint(&policy(3, 2), &again).unwrap();
    assert!(v.witness_times.contains(&("witness-1.example".into(), T0 + 60)));
    assert!(add_signature_lines(&note, &[b"not a line".to_vec()]).is_err());
}

// ------------------------------------------------------------ K1, K2

#[test]
fn log_signature_alone_and_single_cosignature_lines() {
    let note = signed(7, 0);
    assert_eq!(verify_log_signature(ORIGIN, &log_key().log_vkey(), &note).unwrap(), checkpoint(7, 0));
    assert_eq!(
        verify_log_signature("other", &log_key().log_vkey(), &note).unwrap_err(),
        KtError::UnknownOrigin { found: ORIGIN.into() }
    );
    assert_eq!(verify_log_signature(ORIGIN, &witness(1).log_vkey(), &note).unwrap_err(), KtError::BadLogSignature);
    assert!(matches!(verify_log_signature(ORIGIN, "nope", &note), Err(KtError::BadPolicy(_))));

    let auditors = vec![auditor(1).cosigner_vkey(), "garbage".to_string()];
    let line = cosign(&note, &auditor(1), T0).unwrap();
    assert_eq!(verify_cosignature_line(&note, &line, &auditors), Some("auditor-1.example".into()));
    assert_eq!(verify_cosignature_line(&note, line.strip_suffix(b"\n").unwrap(), &auditors), Some("auditor-1.example".into()));
    assert_eq!(verify_cosignature_line(&signed(8, 0), &line, &auditors), None, "another checkpoint");
    assert_eq!(verify_cosignature_line(&note, &cosign(&note, &auditor(2), T0).unwrap(), &auditors), None, "not pinned");
    assert_eq!(verify_cosignature_line(&note, b"junk", &auditors), None);
}

#[test]
fn k1_origin_and_log_signature() {
    let p = policy(3, 2);
    let note = cosigned(&signed(7, 0), &[(&witness(1), T0), (&witness(2), T0)]);
    let v = verify_checkpoint(&p, &note).unwrap();
    assert_eq!(v.checkpoint, checkpoint(7, 0));
    assert_eq!(v.note, note);

    let other = Checkpoint { origin: "other.example/log".into(), ..checkpoint(7, 0) };
    let note = cosigned(&sign_checkpoint(&other, &log_key()).unwrap(), &[(&witness(1), T0), (&witness(2), T0)]);
    assert_eq!(verify_checkpoint(&p, &note).unwrap_err(), KtError::UnknownOrigin { found: "other.example/log".into() });

    // Signed by another key of the same name: not the log.
    let impostor = NoteKey::from_seed(ORIGIN, [0x12; 32]).unwrap();
    let note = cosigned(&sign_checkpoint(&checkpoint(7, 0), &impostor).unwrap(), &[(&witness(1), T0), (&witness(2), T0)]);
    assert_eq!(verify_checkpoint(&p, &note).unwrap_err(), KtError::BadLogSignature);

    // The log's signature flipped.
    let good = signed(7, 0);
    let text = String::from_utf8(good.clone()).unwrap();
    let (head, sig) = text.trim_end().rsplit_once(' ').unwrap();
    let mut raw = data_encoding::BASE64.decode(sig.as_bytes()).unwrap();
    raw[10] ^= 1;
    let bad = format!("{head} {}\n", data_encoding::BASE64.encode(&raw));
    let note = cosigned(bad.as_bytes(), &[(&witness(1), T0), (&witness(2), T0)]);
    assert_eq!(verify_checkpoint(&p, &note).unwrap_err(), KtError::BadLogSignature);

    // Garbage, and a checkpoint with an extension line.
    assert!(matches!(verify_checkpoint(&p, b"hello\n"), Err(KtError::Malformed(_))));
    assert!(matches!(
        Checkpoint::from_body(b"o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\next\n"),
        Err(KtError::Malformed(_))
    ));
}

#[test]
fn k2_quorum_counts_distinct_pinned_witnesses() {
    let p = policy(3, 2);
    let base = signed(7, 0);
    let (w1, w2, w3) = (witness(1), witness(2), witness(3));
    let stranger = NoteKey::from_seed("stranger.example", [0x77; 32]).unwrap();

    let ok = cosigned(&base, &[(&w1, T0), (&w3, T0 + 5)]);
    let v = verify_checkpoint(&p, &ok).unwrap();
    assert_eq!(v.witness_times.len(), 2);
    assert_eq!(v.newest_witness_time, T0 + 5);
    assert_eq!(v.quorum_witness_time, T0);

    // One witness, however many lines: one.
    let w1_line = cosign(&base, &w1, T0).unwrap();
    let dup = [base.clone(), w1_line.clone(), w1_line.clone()].concat();
    assert_eq!(verify_checkpoint(&p, &dup).unwrap_err(), KtError::NoQuorum { have: 1, need: 2 });
    let two_times = [base.clone(), w1_line.clone(), cosign(&base, &w1, T0 + 1).unwrap()].concat();
    assert_eq!(verify_checkpoint(&p, &two_times).unwrap_err(), KtError::NoQuorum { have: 1, need: 2 });

    // Unknown keys are ignored, however many.
    let strangers = cosigned(&base, &[(&w1, T0), (&stranger, T0)]);
    assert_eq!(verify_checkpoint(&p, &strangers).unwrap_err(), KtError::NoQuorum { have: 1, need: 2 });
    // An auditor is not a witness.
    let audited = cosigned(&base, &[(&w1, T0), (&auditor(1), T0)]);
    assert_eq!(verify_checkpoint(&p, &audited).unwrap_err(), KtError::NoQuorum { have: 1, need: 2 });
    let with_all = cosigned(&base, &[(&w1, T0), (&w2, T0), (&auditor(1), T0 + 9), (&stranger, T0)]);
    let v = verify_checkpoint(&p, &with_all).unwrap();
    assert_eq!(v.auditor_times, vec![("auditor-1.example".to_string(), T0 + 9)]);

    // 1 of 2 fails a quorum of 2; nothing at all fails too.
    let p2 = policy(2, 2);
    assert_eq!(verify_checkpoint(&p2, &cosigned(&base, &[(&w2, T0)])).unwrap_err(), KtError::NoQuorum { have: 1, need: 2 });
    assert_eq!(verify_checkpoint(&p2, &base).unwrap_err(), KtError::NoQuorum { have: 0, need: 2 });

    // A pinned witness's invalid signature fails the note, even with a quorum.
    let mut raw_line = String::from_utf8(cosign(&base, &w3, T0).unwrap()).unwrap();
    let (head, sig) = raw_line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = data_encoding::BASE64.decode(sig.as_bytes()).unwrap();
    raw[20] ^= 1;
    raw_line = format!("{head} {}\n", data_encoding::BASE64.encode(&raw));
    let bad = add_signature_lines(&cosigned(&base, &[(&w1, T0), (&w2, T0)]), &[raw_line.into_bytes()]).unwrap();
    assert_eq!(verify_checkpoint(&p, &bad).unwrap_err(), KtError::BadCosignature { name: "witness-3.example".into() });
}

#[test]
fn policies_are_validated() {
    assert!(policy(3, 2).validate().is_ok());
    assert_eq!(Policy::majority(1), 1);
    assert_eq!(Policy::majority(4), 3);
    assert_eq!(Policy::majority(5), 3);
    for p in [
        policy(3, 0),
        policy(3, 4),
        Policy { witnesses: vec![witness(1).cosigner_vkey(), witness(1).cosigner_vkey()], quorum: 1, ..policy(0, 1) },
        Policy { witnesses: vec![witness(1).log_vkey()], quorum: 1, ..policy(0, 1) },
        Policy { log_vkey: log_key().cosigner_vkey(), ..policy(3, 2) },
        Policy { auditors: vec![witness(1).cosigner_vkey()], ..policy(3, 2) },
        Policy { witnesses: vec!["x+00000000+BA==".into()], quorum: 1, ..policy(0, 1) },
        Policy { origin: String::new(), ..policy(3, 2) },
    ] {
        assert!(matches!(p.validate(), Err(KtError::BadPolicy(_))), "{p:?}");
    }
    // The same public key under two names is one witness, not two.
    let w = witness(1);
    let renamed = NoteKey::from_seed("alias.example", [0x21; 32]).unwrap();
    let p = Policy { witnesses: vec![w.cosigner_vkey(), renamed.cosigner_vkey()], quorum: 2, ..policy(0, 1) };
    assert!(matches!(p.validate(), Err(KtError::BadPolicy(_))));
}

// ------------------------------------------------------------ K3, K5

#[test]
fn k3_k5_proofs_for_every_pair_of_sizes_up_to_40() {
    let all = leaves(40, 0);
    let mut log = MerkleLog::new();
    for i in 0..40 {
        assert_eq!(log.append(&entry(i, 0)), i);
    }
    for new in 1..=40u64 {
        let new_cp = checkpoint(new, 0);
        assert_eq!(log.root(new).unwrap(), new_cp.root);
        for old in 0..=new {
            let old_cp = checkpoint(old, 0);
            let proof = consistency_proof(&all, old, new).unwrap();
            assert_eq!(log.consistency_proof(old, new).unwrap(), proof);
            check_consistency(&old_cp, &new_cp, &proof).unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][3] ^= 1;
                assert_eq!(check_consistency(&old_cp, &new_cp, &bad), Err(KtError::Inconsistent), "{old}->{new} flip {i}");
            }
            if old > 0 && old < new {
                let mut wrong_old = old_cp.clone();
                wrong_old.root[0] ^= 1;
                assert_eq!(check_consistency(&wrong_old, &new_cp, &proof), Err(KtError::Inconsistent));
                let mut longer = proof.clone();
                longer.push([0; 32]);
                assert_eq!(check_consistency(&old_cp, &new_cp, &longer), Err(KtError::Inconsistent));
                assert_eq!(check_consistency(&new_cp, &old_cp, &proof), Err(KtError::Rollback { have: new, served: old }));
            }
        }
        for index in 0..new {
            let proof = inclusion_proof(&all, index, new).unwrap();
            assert_eq!(log.inclusion_proof(index, new).unwrap(), proof);
            check_inclusion(&new_cp, index, &entry(index, 0), &proof).unwrap();
            // Entries before the fork point are the same in both histories.
            let forked = check_inclusion(&new_cp, index, &entry(index, 2), &proof);
            assert_eq!(forked, if index < 5 { Ok(()) } else { Err(KtError::BadInclusion) });
            assert_eq!(check_inclusion(&new_cp, index, &entry(index + 40, 0), &proof), Err(KtError::BadInclusion));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][31] ^= 0x80;
                assert_eq!(check_inclusion(&new_cp, index, &entry(index, 0), &bad), Err(KtError::BadInclusion));
            }
        }
        assert_eq!(check_inclusion(&new_cp, new, &entry(new, 0), &[]), Err(KtError::BadInclusion));
    }
    assert_eq!(consistency_proof(&all, 3, 41), Err(KtError::BeyondTree));
    assert_eq!(consistency_proof(&all, 5, 4), Err(KtError::BeyondTree));
    assert_eq!(inclusion_proof(&all, 40, 40), Err(KtError::BeyondTree));
}

#[test]
fn k3_same_size_other_root_and_rollback() {
    let a = checkpoint(7, 0);
    let b = checkpoint(7, 1);
    assert_ne!(a.root, b.root);
    assert_eq!(check_consistency(&a, &b, &[]), Err(KtError::Inconsistent));
    assert_eq!(check_consistency(&a, &a, &[]), Ok(()));
    assert_eq!(check_consistency(&a, &a, &[[0; 32]]), Err(KtError::Inconsistent));
    assert_eq!(check_consistency(&a, &checkpoint(6, 0), &[]), Err(KtError::Rollback { have: 7, served: 6 }));
    // A fork's proof does not connect the two histories.
    let proof = consistency_proof(&leaves(9, 1), 7, 9).unwrap();
    assert_eq!(check_consistency(&a, &checkpoint(9, 1), &proof), Err(KtError::Inconsistent));
    // Before the fork point both histories agree.
    let proof = consistency_proof(&leaves(9, 1), 5, 9).unwrap();
    assert_eq!(check_consistency(&checkpoint(5, 0), &checkpoint(9, 1), &proof), Ok(()));
}

// ------------------------------------------------------------ K4, K6

fn verified(times: &[u64], auditor_time: Option<u64>) -> VerifiedCheckpoint {
    let base = signed(7, 0);
    let ws: Vec<NoteKey> = (1..=3).map(witness).collect();
    let a = auditor(1);
    let mut cos: Vec<(&NoteKey, u64)> = ws.iter().zip(times).map(|(w, t)| (w, *t)).collect();
    if let Some(t) = auditor_time {
        cos.push((&a, t));
    }
    verify_checkpoint(&policy(3, 2), &cosigned(&base, &cos)).unwrap()
}

#[test]
fn k4_freshness_edges() {
    let v = verified(&[T0 - 500, T0], None);
    assert_eq!(v.newest_witness_time, T0);
    assert_eq!(check_fresh(&v, T0 + 100, 100, 10), Ok(()));
    assert_eq!(check_fresh(&v, T0 + 101, 100, 10), Err(KtError::Stale { age_secs: 101 }));
    assert_eq!(check_fresh(&v, T0 - 10, 100, 10), Ok(()));
    assert_eq!(check_fresh(&v, T0 - 11, 100, 10), Err(KtError::FromFuture));
    assert_eq!(check_fresh(&v, T0, 0, 0), Ok(()));
    assert_eq!(check_fresh(&v, u64::MAX, u64::MAX, u64::MAX), Ok(()));
}

#[test]
fn k6_auditor_coverage() {
    let none = verified(&[T0, T0], None);
    assert_eq!(check_audited(&none, 0, T0, 7200), Err(KtError::NotAudited));
    let a = verified(&[T0, T0], Some(T0));
    assert_eq!(check_audited(&a, 6, T0 + 1_000_000, 7200), Ok(()), "inside the audited tree");
    assert_eq!(check_audited(&a, 7, T0 + 7200, 7200), Ok(()), "beyond it, within the lag");
    assert_eq!(check_audited(&a, 7, T0 + 7201, 7200), Err(KtError::NotAudited));
}

// ------------------------------------------------------------ witness

fn request(old: u64, new: u64, fork: u8) -> AddCheckpoint {
    AddCheckpoint { old_size: old, proof: consistency_proof(&leaves(new, fork), old, new).unwrap(), note: signed(new, fork) }
}

fn add(state: Option<&WitnessState>, req: &AddCheckpoint) -> Result<(WitnessState, Vec<u8>), WitnessRefusal> {
    witness_add_checkpoint(ORIGIN, &log_key().log_vkey(), state, req, &witness(1), T0)
}

#[test]
fn witness_cosigns_only_extensions() {
    let (s3, line) = add(None, &request(0, 3, 0)).unwrap();
    assert_eq!(s3, WitnessState { origin: ORIGIN.into(), size: 3, root: checkpoint(3, 0).root });
    assert_eq!(line, cosign(&signed(3, 0), &witness(1), T0).unwrap());
    let (s7, line) = add(Some(&s3), &request(3, 7, 0)).unwrap();
    assert_eq!(s7.size, 7);
    let note = add_signature_lines(&signed(7, 0), &[line]).unwrap();
    assert_eq!(verify_checkpoint(&policy(1, 1), &note).unwrap().witness_times, vec![("witness-1.example".into(), T0)]);
    // The same checkpoint again: cosigned again, state unchanged.
    let (same, _) = add(Some(&s7), &request(7, 7, 0)).unwrap();
    assert_eq!(same, s7);
    assert_eq!(WitnessState::decode(&s7.encode().unwrap()).unwrap(), s7);
}

#[test]
fn witness_refuses_split_views_and_stale_sizes() {
    let (s7, _) = add(None, &request(0, 7, 0)).unwrap();
    // The other fork at the same size.
    assert_eq!(add(Some(&s7), &request(7, 7, 1)).unwrap_err(), WitnessRefusal::Conflict { known_size: 7 });
    // The other fork, grown, with its own (valid for it) proof.
    assert_eq!(add(Some(&s7), &request(7, 9, 1)).unwrap_err(), WitnessRefusal::BadProof);
    // An old size the witness has moved past, or not reached.
    assert_eq!(add(Some(&s7), &request(3, 9, 0)).unwrap_err(), WitnessRefusal::Conflict { known_size: 7 });
    assert_eq!(add(Some(&s7), &request(5, 5, 0)).unwrap_err(), WitnessRefusal::Conflict { known_size: 7 });
    assert_eq!(add(Some(&s7), &request(8, 9, 0)).unwrap_err(), WitnessRefusal::Conflict { known_size: 7 });
    assert_eq!(add(None, &request(3, 9, 0)).unwrap_err(), WitnessRefusal::Conflict { known_size: 0 });
    // A smaller checkpoint than the old size claimed.
    let shrink = AddCheckpoint { old_size: 7, proof: vec![], note: signed(5, 0) };
    assert_eq!(add(Some(&s7), &shrink).unwrap_err(), WitnessRefusal::Malformed);
    // A proof from nothing must be empty.
    let padded = AddCheckpoint { proof: vec![[0; 32]], ..request(0, 3, 0) };
    assert_eq!(add(None, &padded).unwrap_err(), WitnessRefusal::BadProof);
    // Not the log's key, not the log, not a note.
    let impostor = NoteKey::from_seed(ORIGIN, [0x12; 32]).unwrap();
    let forged = AddCheckpoint { note: sign_checkpoint(&checkpoint(9, 0), &impostor).unwrap(), ..request(7, 9, 0) };
    assert_eq!(add(Some(&s7), &forged).unwrap_err(), WitnessRefusal::BadSignature);
    let other = Checkpoint { origin: "other.example".into(), ..checkpoint(9, 0) };
    let elsewhere = AddCheckpoint { note: sign_checkpoint(&other, &log_key()).unwrap(), ..request(7, 9, 0) };
    assert_eq!(add(Some(&s7), &elsewhere).unwrap_err(), WitnessRefusal::UnknownLog);
    let garbage = AddCheckpoint { note: b"nope\n".to_vec(), ..request(7, 9, 0) };
    assert_eq!(add(Some(&s7), &garbage).unwrap_err(), WitnessRefusal::Malformed);
    // Statuses.
    assert_eq!(WitnessRefusal::Conflict { known_size: 1 }.http_status(), 409);
    assert_eq!(WitnessRefusal::BadProof.http_status(), 422);
    assert_eq!(WitnessRefusal::BadSignature.http_status(), 403);
    assert_eq!(WitnessRefusal::UnknownLog.http_status(), 404);
    assert_eq!(WitnessRefusal::Malformed.http_status(), 400);
}

#[test]
fn add_checkpoint_bodies() {
    let req = request(3, 7, 0);
    assert!(!req.proof.is_empty());
    let body = req.encode();
    assert!(body.starts_with(b"old 3\n"));
    assert_eq!(AddCheckpoint::decode(&body).unwrap(), req);
    let empty = request(0, 7, 0);
    assert!(empty.encode().starts_with(b"old 0\n\n"));
    assert_eq!(AddCheckpoint::decode(&empty.encode()).unwrap(), empty);
    let note = String::from_utf8(signed(7, 0)).unwrap();
    let h = data_encoding::BASE64.encode(&[7; 32]);
    for bad in [
        String::new(),
        "old 3\n".into(),
        "old 3\n\n".into(),
        format!("old 03\n\n{note}"),
        format!("old -1\n\n{note}"),
        format!("old  3\n\n{note}"),
        format!("new 3\n\n{note}"),
        format!("old 3\n{}\n\n{note}", data_encoding::BASE64.encode(&[7; 31])),
        format!("old 3\n{}\n\n{note}", &h[..43]),
        format!("old 3\n{h}\n{note}"),
        format!("old 3\n{}\n{note}", format!("{h}\n").repeat(129)),
    ] {
        assert!(AddCheckpoint::decode(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(AddCheckpoint::decode(format!("old 3\n{}\n{note}", format!("{h}\n").repeat(128)).as_bytes()).is_ok());
    // Base64 with non-zero unused bits is not canonical.
    let loose = format!("{}d=", &h[..42]); // "c" -> "d": only an unused bit differs
    assert_ne!(loose, h);
    assert!(AddCheckpoint::decode(format!("old 3\n{loose}\n\n{note}").as_bytes()).is_err());
}

#[test]
fn evidence_carries_notes_verbatim() {
    let a = cosigned(&signed(7, 0), &[(&witness(1), T0)]);
    let b = cosigned(&signed(7, 1), &[(&witness(2), T0)]);
    let file = evidence("same size, two roots", &[&a, &b]);
    let parsed = parse_evidence(&file).unwrap();
    assert_eq!(parsed.reason, "same size, two roots");
    assert_eq!(parsed.notes, vec![a, b]);
    assert!(std::str::from_utf8(&file).is_ok());
}

// ------------------------------------------------------------ vectors

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/transparency-vectors")
}

fn text(v: &Value) -> Vec<u8> {
    v.as_str().unwrap().as_bytes().to_vec()
}

fn generate() -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let e = LogEntry::Epoch { epoch: 42, root: [0xab; 32], time_ms: 1_800_000_000_123 };
    out.insert(
        "log-entry-epoch.json",
        json!({
            "description": "An epoch entry of the epoch-root log: envelope KHLD 01 01 09, kind 0x01, i64 time_ms, u64 epoch, akd root.",
            "kind": "epoch", "epoch": 42, "root": h(&[0xab; 32]), "time_ms": 1_800_000_000_123i64,
            "entry": h(&e.encode()), "leaf_hash": h(&leaf_hash(&e.encode())), "expect": "ok"
        }),
    );
    let hb = LogEntry::Heartbeat { time_ms: -1 };
    out.insert(
        "log-entry-heartbeat.json",
        json!({
            "description": "A heartbeat entry: envelope, kind 0x02, i64 time_ms (here -1).",
            "kind": "heartbeat", "time_ms": -1, "entry": h(&hb.encode()), "leaf_hash": h(&leaf_hash(&hb.encode())), "expect": "ok"
        }),
    );
    let mut long = hb.encode();
    long.push(0);
    out.insert(
        "log-entry-trailing-byte.json",
        json!({
            "description": "A heartbeat entry with one byte too many.",
            "entry": h(&long), "expect": "Malformed"
        }),
    );
    let account = DirectoryLabel::Account(AccountId([0x33; 16]));
    let collection = DirectoryLabel::Collection(AccountId([0x33; 16]), CollectionId([0x44; 16]));
    let value = DirectoryValue { seq: 5, hash: [0x55; 32] };
    out.insert(
        "directory-label-value.json",
        json!({
            "description": "akd labels (0x01 account id; 0x02 account id collection id) and a value (u64 seq, 32-byte id).",
            "account_id": h(&[0x33; 16]), "account_label": h(&account.to_bytes()),
            "collection_id": h(&[0x44; 16]), "collection_label": h(&collection.to_bytes()),
            "seq": 5, "hash": h(&[0x55; 32]), "value": h(&value.to_bytes()), "expect": "ok"
        }),
    );
    out.insert(
        "directory-label-handle.json",
        json!({
            "description": "A handle's label: 0x03 then the handle's bytes (sharing.md, \"Handles\"); an upper-case handle is not a label.",
            "handle": "bob.smith", "handle_label": h(&DirectoryLabel::Handle("bob.smith".into()).to_bytes()),
            "bad_label": h(b"\x03Bob"), "expect": "ok"
        }),
    );

    // A log of 7 epoch entries (epochs 1..=7), cosigned at size 7.
    let entries: Vec<Vec<u8>> = (0..7).map(|i| entry(i, 0)).collect();
    let lh: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(e)).collect();
    let cp = Checkpoint { origin: ORIGIN.into(), size: 7, root: tree_root(&lh) };
    let note = sign_checkpoint(&cp, &log_key()).unwrap();
    let cosignature = cosign(&note, &witness(1), T0).unwrap();
    let auditor_line = cosign(&note, &auditor(1), T0 + 30).unwrap();
    let full = add_signature_lines(&note, &[cosignature.clone(), auditor_line.clone()]).unwrap();
    let keys = json!({
        "log": {"name": ORIGIN, "seed": h(&[0x11; 32]), "vkey": log_key().log_vkey()},
        "witness": {"name": witness(1).name(), "seed": h(&[0x21; 32]), "vkey": witness(1).cosigner_vkey()},
        "auditor": {"name": auditor(1).name(), "seed": h(&[0x31; 32]), "vkey": auditor(1).cosigner_vkey()},
    });
    out.insert(
        "checkpoint-cosigned.json",
        json!({
            "description": "A checkpoint of 7 entries signed by the log (Ed25519 signed note, alg 0x01), cosigned by a witness and an auditor (cosignature/v1, alg 0x04). Policy: this witness, quorum 1, this auditor.",
            "keys": keys, "origin": ORIGIN, "size": 7, "root": h(&cp.root),
            "body": String::from_utf8(cp.to_body().unwrap()).unwrap(),
            "log_signed_note": String::from_utf8(note.clone()).unwrap(),
            "witness_time": T0, "witness_line": String::from_utf8(cosignature.clone()).unwrap(),
            "auditor_time": T0 + 30, "auditor_line": String::from_utf8(auditor_line).unwrap(),
            "note": String::from_utf8(full.clone()).unwrap(), "expect": "ok"
        }),
    );
    let mut flipped = String::from_utf8(cosignature.clone()).unwrap();
    let (head, sig) = flipped.trim_end().rsplit_once(' ').unwrap();
    let mut raw = data_encoding::BASE64.decode(sig.as_bytes()).unwrap();
    raw[4] ^= 1; // the time: the signature no longer matches
    flipped = format!("{head} {}\n", data_encoding::BASE64.encode(&raw));
    let bad = add_signature_lines(&note, &[flipped.into_bytes()]).unwrap();
    out.insert(
        "checkpoint-bad-cosignature.json",
        json!({
            "description": "The same checkpoint with the witness's time altered: a pinned witness's invalid cosignature fails the checkpoint.",
            "keys": keys, "note": String::from_utf8(bad).unwrap(), "expect": "BadCosignature"
        }),
    );

    let proof = consistency_proof(&lh, 3, 7).unwrap();
    let old = Checkpoint { origin: ORIGIN.into(), size: 3, root: tree_root(&lh[..3]) };
    out.insert(
        "consistency-proof.json",
        json!({
            "description": "Leaves 0..7 (the entries of checkpoint-cosigned.json), the roots at sizes 3 and 7, the consistency proof 3 -> 7 and the inclusion proof of entry 4 in size 7.",
            "entries": entries.iter().map(|e| h(e)).collect::<Vec<_>>(),
            "old_size": 3, "old_root": h(&old.root), "new_size": 7, "new_root": h(&cp.root),
            "consistency_proof": proof.iter().map(|p| h(p)).collect::<Vec<_>>(),
            "inclusion_index": 4,
            "inclusion_proof": inclusion_proof(&lh, 4, 7).unwrap().iter().map(|p| h(p)).collect::<Vec<_>>(),
            "expect": "ok"
        }),
    );

    let state = WitnessState { origin: ORIGIN.into(), size: 3, root: old.root };
    let req = AddCheckpoint { old_size: 3, proof, note: note.clone() };
    let (after, line) = witness_add_checkpoint(ORIGIN, &log_key().log_vkey(), Some(&state), &req, &witness(1), T0).unwrap();
    out.insert(
        "add-checkpoint.json",
        json!({
            "description": "A tlog-witness add-checkpoint body from size 3 to 7, the witness's state before (a checkpoint body) and after, and the cosignature line it answers with (200).",
            "keys": keys, "state": String::from_utf8(state.encode().unwrap()).unwrap(),
            "body": String::from_utf8(req.encode()).unwrap(), "now": T0,
            "new_state": String::from_utf8(after.encode().unwrap()).unwrap(),
            "response": String::from_utf8(line).unwrap(), "expect": "ok"
        }),
    );
    let stale = AddCheckpoint { old_size: 2, ..req.clone() };
    out.insert(
        "add-checkpoint-conflict.json",
        json!({
            "description": "The same request claiming old size 2 while the witness holds size 3: 409 Conflict, body \"3\\n\" (text/x.tlog.size).",
            "keys": keys, "state": String::from_utf8(state.encode().unwrap()).unwrap(),
            "body": String::from_utf8(stale.encode()).unwrap(), "now": T0,
            "expect": "Conflict", "known_size": 3
        }),
    );
    out.insert(
        "evidence.json",
        json!({
            "description": "An evidence file holding the cosigned checkpoint and the log-signed note.",
            "reason": "example", "notes": [String::from_utf8(full.clone()).unwrap(), String::from_utf8(note.clone()).unwrap()],
            "file": String::from_utf8(evidence("example", &[&full, &note])).unwrap(), "expect": "ok"
        }),
    );
    out
}

#[test]
fn generated_vectors_match_the_files() {
    check_generated(&vectors_dir(), &generate());
}

fn policy_of(keys: &Value) -> Policy {
    Policy {
        origin: keys["log"]["name"].as_str().unwrap().into(),
        log_vkey: keys["log"]["vkey"].as_str().unwrap().into(),
        witnesses: vec![keys["witness"]["vkey"].as_str().unwrap().into()],
        quorum: 1,
        auditors: vec![keys["auditor"]["vkey"].as_str().unwrap().into()],
        max_age_secs: 0,
        max_audit_lag_secs: 0,
    }
}

/// Each file checked from its own contents only.
#[test]
fn every_vector_file_verifies() {
    let mut seen = 0;
    for file in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = file.unwrap().path();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let expect = v["expect"].as_str().unwrap();
        seen += 1;
        match name.as_str() {
            "log-entry-epoch.json" | "log-entry-heartbeat.json" | "log-entry-trailing-byte.json" => {
                let bytes = unh(&v["entry"]);
                match (LogEntry::decode(&bytes), expect) {
                    (Ok(e), "ok") => {
                        assert_eq!(e.encode(), bytes);
                        assert_eq!(leaf_hash(&bytes), unh32(&v["leaf_hash"]));
                        assert_eq!(e.time_ms(), v["time_ms"].as_i64().unwrap());
                        if let LogEntry::Epoch { epoch, root, .. } = e {
                            assert_eq!(epoch, v["epoch"].as_u64().unwrap());
                            assert_eq!(root, unh32(&v["root"]));
                        }
                    }
                    (Err(KtError::Malformed(_)), "Malformed") => {}
                    (r, _) => panic!("{name}: {r:?}"),
                }
            }
            "directory-label-handle.json" => {
                let label = DirectoryLabel::from_bytes(&unh(&v["handle_label"])).unwrap();
                assert_eq!(label, DirectoryLabel::Handle(v["handle"].as_str().unwrap().into()));
                assert!(DirectoryLabel::from_bytes(&unh(&v["bad_label"])).is_err());
            }
            "directory-label-value.json" => {
                let a = DirectoryLabel::from_bytes(&unh(&v["account_label"])).unwrap();
                assert_eq!(a, DirectoryLabel::Account(AccountId(unh(&v["account_id"]).try_into().unwrap())));
                let c = DirectoryLabel::from_bytes(&unh(&v["collection_label"])).unwrap();
                assert_eq!(
                    c,
                    DirectoryLabel::Collection(
                        AccountId(unh(&v["account_id"]).try_into().unwrap()),
                        CollectionId(unh(&v["collection_id"]).try_into().unwrap())
                    )
                );
                let val = DirectoryValue::from_bytes(&unh(&v["value"])).unwrap();
                assert_eq!(val, DirectoryValue { seq: v["seq"].as_u64().unwrap(), hash: unh32(&v["hash"]) });
            }
            "checkpoint-cosigned.json" | "checkpoint-bad-cosignature.json" => {
                let keys = &v["keys"];
                for role in ["log", "witness", "auditor"] {
                    let k = NoteKey::from_seed(keys[role]["name"].as_str().unwrap(), unh32(&keys[role]["seed"])).unwrap();
                    let vkey = if role == "log" { k.log_vkey() } else { k.cosigner_vkey() };
                    assert_eq!(vkey, keys[role]["vkey"].as_str().unwrap());
                }
                let result = verify_checkpoint(&policy_of(keys), &text(&v["note"]));
                match (result, expect) {
                    (Ok(vc), "ok") => {
                        assert_eq!(vc.checkpoint.size, v["size"].as_u64().unwrap());
                        assert_eq!(vc.checkpoint.root, unh32(&v["root"]));
                        assert_eq!(vc.checkpoint.to_body().unwrap(), text(&v["body"]));
                        assert_eq!(vc.newest_witness_time, v["witness_time"].as_u64().unwrap());
                        assert_eq!(vc.auditor_times[0].1, v["auditor_time"].as_u64().unwrap());
                        let lines = [text(&v["witness_line"]), text(&v["auditor_line"])];
                        assert_eq!(add_signature_lines(&text(&v["log_signed_note"]), &lines).unwrap(), text(&v["note"]));
                    }
                    (Err(KtError::BadCosignature { .. }), "BadCosignature") => {}
                    (r, _) => panic!("{name}: {r:?}"),
                }
            }
            "consistency-proof.json" => {
                let entries: Vec<Vec<u8>> = v["entries"].as_array().unwrap().iter().map(unh).collect();
                let lh: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(e)).collect();
                let (o, n) = (v["old_size"].as_u64().unwrap(), v["new_size"].as_u64().unwrap());
                let old = Checkpoint { origin: ORIGIN.into(), size: o, root: unh32(&v["old_root"]) };
                let new = Checkpoint { origin: ORIGIN.into(), size: n, root: unh32(&v["new_root"]) };
                assert_eq!(tree_root(&lh[..usize::try_from(o).unwrap()]), old.root);
                assert_eq!(tree_root(&lh), new.root);
                let proof: Vec<[u8; 32]> = v["consistency_proof"].as_array().unwrap().iter().map(unh32).collect();
                check_consistency(&old, &new, &proof).unwrap();
                let index = v["inclusion_index"].as_u64().unwrap();
                let ip: Vec<[u8; 32]> = v["inclusion_proof"].as_array().unwrap().iter().map(unh32).collect();
                check_inclusion(&new, index, &entries[usize::try_from(index).unwrap()], &ip).unwrap();
            }
            "add-checkpoint.json" | "add-checkpoint-conflict.json" => {
                let keys = &v["keys"];
                let me = NoteKey::from_seed(keys["witness"]["name"].as_str().unwrap(), unh32(&keys["witness"]["seed"])).unwrap();
                let state = WitnessState::decode(&text(&v["state"])).unwrap();
                let req = AddCheckpoint::decode(&text(&v["body"])).unwrap();
                assert_eq!(req.encode(), text(&v["body"]));
                let result = witness_add_checkpoint(
                    keys["log"]["name"].as_str().unwrap(),
                    keys["log"]["vkey"].as_str().unwrap(),
                    Some(&state),
                    &req,
                    &me,
                    v["now"].as_u64().unwrap(),
                );
                match (result, expect) {
                    (Ok((after, line)), "ok") => {
                        assert_eq!(after.encode().unwrap(), text(&v["new_state"]));
                        assert_eq!(line, text(&v["response"]));
                    }
                    (Err(WitnessRefusal::Conflict { known_size }), "Conflict") => {
                        assert_eq!(known_size, v["known_size"].as_u64().unwrap());
                    }
                    (r, _) => panic!("{name}: {r:?}"),
                }
            }
            "evidence.json" => {
                let parsed = parse_evidence(&text(&v["file"])).unwrap();
                assert_eq!(parsed.reason, v["reason"].as_str().unwrap());
                let notes: Vec<Vec<u8>> = v["notes"].as_array().unwrap().iter().map(text).collect();
                assert_eq!(parsed.notes, notes);
            }
            other => panic!("unknown vector file {other}"),
        }
    }
    assert_eq!(seen, generate().len(), "every generated vector has a file and no file is left over");
}
