//! The device chain and pairing (spec: `docs/spec/devices.md`): every rule
//! of the chain verifier fails when it is broken, and pairing over a hostile
//! relay either yields the same keys on both sides or fails. Tests are named
//! after the SECURITY.md property they pin, where one fits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use ed25519_dalek::{Signer as _, SigningKey};
use keyhold_core::{
    AccountId, AccountRootKey, CHAIN_GENESIS_PREV, ChainChange, ChainEntry, ChainHead, CollectionId, CollectionKey,
    CollectionWrapContext, DevicePublicKeys, DeviceSecret, Error, JoinerHello, JoinerPake, MAX_CHAIN_ENTRY_LEN, MAX_DEVICE_NAME,
    ObjectId, PAKE_MESSAGE_LEN, PairingCode, PairingKeys, RecoveryKey, Signer, Welcome, inviter_respond, root_commitment,
    unwrap_collection_key, unwrap_on_device, unwrap_previous_root, wrap_collection_key, wrap_previous_root, wrap_to_device,
};
use keyhold_core::{DeviceChain, Result};
use support::{device, rng};

const ACCOUNT: AccountId = AccountId([7; 16]);
const CONTEXT: &[u8] = b"keyhold v1 2026-11 device chain entry\0";
const HEADER_FIELDS: usize = 7 + 16 + 8 + 32 + 8 + 4 + 1 + 1 + 16;

fn recovery() -> RecoveryKey {
    RecoveryKey::from_bytes([0x99; 32])
}

fn root(epoch: u32) -> AccountRootKey {
    AccountRootKey::from_bytes([0x40 + u8::try_from(epoch).unwrap(); 32])
}

fn seeds_of(d: u8) -> [u8; 32] {
    [d; 32]
}

/// The creation entry of `ACCOUNT` with `first` as its first device.
fn creation(first: &DeviceSecret) -> ChainEntry {
    ChainEntry::create(ACCOUNT, first, "first", recovery().device().public(), &root(0), 1_000)
}

/// The honest next entry of `chain`.
fn next(chain: &DeviceChain, signer: Signer, change: ChainChange) -> ChainEntry {
    let seq = chain.head().seq + 1;
    ChainEntry {
        account: ACCOUNT,
        seq,
        prev: chain.head().id,
        time_ms: 1_000 + i64::try_from(seq).unwrap(),
        account_epoch: chain.epoch() + u32::from(change.starts_epoch()),
        signer,
        change,
    }
}

fn add(d: &DeviceSecret, name: &str) -> ChainChange {
    ChainChange::AddDevice { device: d.public().clone(), name: name.into() }
}

fn revoke(chain: &DeviceChain, d: &DeviceSecret, cutoffs: &[(u8, u64)]) -> ChainChange {
    let epoch = chain.epoch() + 1;
    ChainChange::RevokeDevice {
        device: d.id(),
        root_commitment: root_commitment(&root(epoch), ACCOUNT, epoch),
        cutoffs: cutoffs.iter().map(|(c, s)| (CollectionId([*c; 16]), *s)).collect(),
    }
}

/// A chain: device 1 creates the account, adds device 2 and device 3.
fn three_devices() -> (DeviceChain, Vec<Vec<u8>>) {
    let (a, b, c) = (device(1), device(2), device(3));
    let first = creation(&a).seal(&a).unwrap();
    let mut chain = DeviceChain::genesis(ACCOUNT, &first).unwrap();
    let mut stored = vec![first];
    for (d, name) in [(&b, "second"), (&c, "third")] {
        let entry = next(&chain, Signer::Device(a.id()), add(d, name)).seal(&a).unwrap();
        chain.append(&entry).unwrap();
        stored.push(entry);
    }
    (chain, stored)
}

/// Replaces the signature of `stored` with one by the Ed25519 seed `seed`
/// over the (possibly edited) unsigned part: what a writer holding that key
/// could produce.
fn resign(stored: &[u8], seed: &[u8; 32]) -> Vec<u8> {
    let unsigned = &stored[..stored.len() - 64];
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(unsigned);
    let signature = SigningKey::from_bytes(seed).sign(&message).to_bytes();
    [unsigned, &signature].concat()
}

/// What a client keeps of a chain, to show that a failed `append` changed
/// nothing.
fn snapshot(chain: &DeviceChain) -> String {
    format!(
        "{:?} {} {:?} {:?} {:?}",
        chain.head(),
        chain.epoch(),
        chain.devices(),
        chain.recovery(),
        (0..=chain.head().seq).map(|s| chain.time_of(s)).collect::<Vec<_>>()
    )
}

/// Appends, asserting that a refused entry leaves the chain as it was.
fn append(chain: &mut DeviceChain, stored: &[u8]) -> Result<ChainEntry> {
    let before = snapshot(chain);
    let result = chain.append(stored);
    if result.is_err() {
        assert_eq!(snapshot(chain), before, "a refused entry changed the chain");
    }
    result
}

fn is_malformed(r: Result<impl core::fmt::Debug>) -> bool {
    matches!(r, Err(Error::Malformed(_)))
}

// ------------------------------------------------------------ encoding

#[test]
fn an_entry_reparses_to_itself_and_its_id_is_the_blake3_of_its_bytes() {
    let a = device(1);
    let entry = creation(&a);
    let stored = entry.seal(&a).unwrap();
    let (parsed, signature) = ChainEntry::parse(&stored).unwrap();
    assert_eq!(parsed, entry);
    assert_eq!(&signature[..], &stored[stored.len() - 64..]);
    assert_eq!(&stored[..7], b"KHLD\x01\x01\x06");
    let chain = DeviceChain::genesis(ACCOUNT, &stored).unwrap();
    assert_eq!(chain.head(), ChainHead { seq: 0, id: ObjectId(*blake3::hash(&stored).as_bytes()) });
    // Layout: fixed fields, then the creation body, then the signature.
    assert_eq!(stored.len(), HEADER_FIELDS + 1248 + 2 + "first".len() + 1248 + 32 + 64);
}

#[test]
fn every_kind_reparses_to_itself() {
    let (chain, _) = three_devices();
    let (a, b) = (device(1), device(2));
    let new_recovery = RecoveryKey::from_bytes([0x98; 32]).device();
    let changes = [
        add(&device(9), "phone ✓"),
        revoke(&chain, &b, &[(1, 4), (2, 0)]),
        ChainChange::RotateRecovery {
            recovery: new_recovery.public().clone(),
            root_commitment: root_commitment(&root(1), ACCOUNT, 1),
        },
    ];
    for change in changes {
        let entry = next(&chain, Signer::Device(a.id()), change);
        assert_eq!(ChainEntry::parse(&entry.seal(&a).unwrap()).unwrap().0, entry);
    }
    let by_recovery = next(&chain, Signer::RecoveryKey, add(&device(9), "x"));
    let stored = by_recovery.seal(&recovery().device()).unwrap();
    assert_eq!(ChainEntry::parse(&stored).unwrap().0, by_recovery);
    // The recovery signer is encoded as kind 0x02 and a zero id.
    assert_eq!(&stored[HEADER_FIELDS - 17..HEADER_FIELDS], &[&[2u8][..], &[0u8; 16]].concat()[..]);
}

#[test]
fn seal_refuses_a_key_other_than_the_named_signer() {
    let (a, b) = (device(1), device(2));
    let entry = ChainEntry { signer: Signer::Device(b.id()), ..creation(&a) };
    assert!(matches!(entry.seal(&a), Err(Error::ContextMismatch(_))));
}

#[test]
fn trailing_truncated_and_oversized_entries_are_refused() {
    let a = device(1);
    let stored = creation(&a).seal(&a).unwrap();
    let mut trailing = stored.clone();
    trailing.push(0);
    assert_eq!(ChainEntry::parse(&trailing).unwrap_err(), Error::TrailingBytes);
    assert_eq!(DeviceChain::genesis(ACCOUNT, &trailing).unwrap_err(), Error::TrailingBytes);
    assert_eq!(ChainEntry::parse(&stored[..stored.len() - 1]).unwrap_err(), Error::Truncated);
    assert_eq!(ChainEntry::parse(&stored[..5]).unwrap_err(), Error::Truncated);
    let huge = vec![0u8; MAX_CHAIN_ENTRY_LEN + 1];
    assert!(matches!(ChainEntry::parse(&huge), Err(Error::LimitExceeded(_))));
}

#[test]
fn a5_another_object_type_is_not_an_entry() {
    let a = device(1);
    let mut stored = creation(&a).seal(&a).unwrap();
    stored[6] = 0x02;
    assert!(matches!(ChainEntry::parse(&stored), Err(Error::WrongObjectType { .. })));
}

#[test]
fn unknown_kinds_and_signer_encodings_are_malformed() {
    let a = device(1);
    let stored = creation(&a).seal(&a).unwrap();
    let kind_at = HEADER_FIELDS - 18;
    for (at, value) in [(kind_at, 0x00), (kind_at, 0x05), (kind_at + 1, 0x00), (kind_at + 1, 0x03)] {
        let mut bad = stored.clone();
        bad[at] = value;
        assert!(is_malformed(ChainEntry::parse(&resign(&bad, &seeds_of(1)))), "byte {at} = {value}");
    }
    // The recovery key as signer with a non-zero id.
    let entry = ChainEntry { signer: Signer::RecoveryKey, ..creation(&a) };
    let mut bad = entry.seal(&recovery().device()).unwrap();
    bad[HEADER_FIELDS - 1] = 1;
    assert!(is_malformed(ChainEntry::parse(&bad)));
}

#[test]
fn device_names_must_be_1_to_64_bytes_without_control_characters() {
    let a = device(1);
    let with_name = |name: String| {
        let ChainChange::Create { device, recovery, root_commitment, .. } = creation(&a).change else { unreachable!() };
        ChainEntry { change: ChainChange::Create { device, name, recovery, root_commitment }, ..creation(&a) }
    };
    for good in ["x".to_owned(), "é".repeat(32), "a".repeat(MAX_DEVICE_NAME), "Ada's laptop 🖥".into()] {
        let stored = with_name(good.clone()).seal(&a).unwrap();
        assert!(DeviceChain::genesis(ACCOUNT, &stored).is_ok(), "{good:?}");
    }
    for bad in [String::new(), "a".repeat(MAX_DEVICE_NAME + 1), "new\nline".into(), "tab\t".into(), "\u{7f}".into()] {
        assert!(is_malformed(with_name(bad.clone()).seal(&a)), "{bad:?} sealed");
    }
    // A writer that bypasses the encoder's check is refused by the reader:
    // an empty name, then a name of invalid UTF-8, then a control character.
    let stored = with_name("ab".into()).seal(&a).unwrap();
    let name_at = HEADER_FIELDS + 1248;
    let mut empty = stored[..name_at].to_vec();
    empty.extend_from_slice(&[0, 0]);
    empty.extend_from_slice(&stored[name_at + 4..]);
    let mut not_utf8 = stored.clone();
    not_utf8[name_at + 2] = 0xff;
    let mut control = stored.clone();
    control[name_at + 3] = b'\n';
    let mut too_long = stored.clone();
    too_long[name_at..name_at + 2].copy_from_slice(&65u16.to_be_bytes());
    for bad in [empty, not_utf8, control, too_long] {
        assert!(is_malformed(ChainEntry::parse(&resign(&bad, &seeds_of(1)))));
    }
}

// ------------------------------------------------------------- genesis

#[test]
fn genesis_accepts_the_first_device_and_commits_to_epoch_0() {
    let a = device(1);
    let chain = DeviceChain::genesis(ACCOUNT, &creation(&a).seal(&a).unwrap()).unwrap();
    assert_eq!(chain.account(), ACCOUNT);
    assert_eq!(chain.epoch(), 0);
    assert_eq!(chain.head().seq, 0);
    assert_eq!(chain.recovery(), recovery().device().public());
    let first = chain.device(&a.id()).unwrap();
    assert_eq!(
        (first.name.as_str(), first.added_seq, first.added_by, first.revoked.is_none()),
        ("first", 0, Signer::Device(a.id()), true)
    );
    assert_eq!(chain.active_devices().count(), 1);
    assert_eq!(chain.time_of(0), Some(1_000));
    assert_eq!(chain.time_of(1), None);
}

#[test]
fn a2_genesis_refuses_a_creation_entry_not_signed_by_its_first_device() {
    let (a, server) = (device(1), device(66));
    // Signed by another key in the first device's name.
    let forged = resign(&creation(&a).seal(&a).unwrap(), &seeds_of(66));
    assert_eq!(DeviceChain::genesis(ACCOUNT, &forged).unwrap_err(), Error::BadSignature);
    // Signed by another device, honestly named.
    let other = ChainEntry { signer: Signer::Device(server.id()), ..creation(&a) };
    assert!(is_malformed(DeviceChain::genesis(ACCOUNT, &other.seal(&server).unwrap())));
    // Signed by the recovery key.
    let by_recovery = ChainEntry { signer: Signer::RecoveryKey, ..creation(&a) };
    assert!(is_malformed(DeviceChain::genesis(ACCOUNT, &by_recovery.seal(&recovery().device()).unwrap())));
}

#[test]
fn genesis_refuses_a_creation_entry_out_of_place() {
    let a = device(1);
    for entry in [
        ChainEntry { seq: 1, ..creation(&a) },
        ChainEntry { prev: ObjectId([1; 32]), ..creation(&a) },
        ChainEntry { account_epoch: 1, ..creation(&a) },
        ChainEntry { change: add(&a, "first"), ..creation(&a) },
    ] {
        assert!(is_malformed(DeviceChain::genesis(ACCOUNT, &entry.seal(&a).unwrap())), "{entry:?}");
    }
    let other_account = ChainEntry { account: AccountId([8; 16]), ..creation(&a) };
    assert!(matches!(DeviceChain::genesis(ACCOUNT, &other_account.seal(&a).unwrap()), Err(Error::ContextMismatch(_))));
    assert!(is_malformed(DeviceChain::verify(ACCOUNT, std::iter::empty::<&[u8]>())));
}

// ------------------------------------------------------------- linkage

#[test]
fn verify_accepts_the_whole_chain_in_order() {
    let (chain, stored) = three_devices();
    let again = DeviceChain::verify(ACCOUNT, stored.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(snapshot(&again), snapshot(&chain));
    assert_eq!(again.head(), ChainHead { seq: 2, id: ObjectId::of(&stored[2]) });
    assert_eq!(again.active_devices().count(), 3);
}

#[test]
fn c5_c6_an_entry_that_does_not_extend_the_head_is_a_fork() {
    let (mut chain, stored) = three_devices();
    let a = device(1);
    let honest = next(&chain, Signer::Device(a.id()), add(&device(4), "fourth"));
    for entry in [
        ChainEntry { prev: ObjectId::of(&stored[1]), ..honest.clone() },
        ChainEntry { prev: CHAIN_GENESIS_PREV, ..honest.clone() },
        ChainEntry { seq: 4, ..honest.clone() },
        ChainEntry { seq: 2, prev: ObjectId::of(&stored[1]), ..honest.clone() },
    ] {
        let seq = entry.seq;
        assert_eq!(append(&mut chain, &entry.seal(&a).unwrap()).unwrap_err(), Error::ChainFork { seq });
    }
    // Entries withheld, reordered or replayed break the links too.
    let reordered = [&stored[0], &stored[2], &stored[1]].map(Vec::as_slice);
    assert_eq!(DeviceChain::verify(ACCOUNT, reordered).unwrap_err(), Error::ChainFork { seq: 2 });
    let replayed = [&stored[0], &stored[1], &stored[1]].map(Vec::as_slice);
    assert_eq!(DeviceChain::verify(ACCOUNT, replayed).unwrap_err(), Error::ChainFork { seq: 1 });
    append(&mut chain, &honest.seal(&a).unwrap()).unwrap();
}

#[test]
fn an_entry_of_another_account_is_refused() {
    let (mut chain, _) = three_devices();
    let a = device(1);
    let entry = ChainEntry { account: AccountId([8; 16]), ..next(&chain, Signer::Device(a.id()), add(&device(4), "x")) };
    assert!(matches!(append(&mut chain, &entry.seal(&a).unwrap()), Err(Error::ContextMismatch(_))));
}

// ------------------------------------------------------------- signers

#[test]
fn a2_an_entry_no_enrolled_device_signed_is_refused() {
    let (mut chain, _) = three_devices();
    let server = device(66);
    // The server signs with a key of its own, honestly named: unknown.
    let own = next(&chain, Signer::Device(server.id()), add(&server, "server"));
    assert_eq!(append(&mut chain, &own.seal(&server).unwrap()).unwrap_err(), Error::UnknownAuthor);
    // In an enrolled device's name: the signature fails.
    let a = device(1);
    let forged = next(&chain, Signer::Device(a.id()), add(&server, "server")).seal(&a).unwrap();
    assert_eq!(append(&mut chain, &resign(&forged, &seeds_of(66))).unwrap_err(), Error::BadSignature);
    // In the recovery key's name.
    let as_recovery = next(&chain, Signer::RecoveryKey, add(&server, "server")).seal(&server).unwrap();
    assert_eq!(append(&mut chain, &as_recovery).unwrap_err(), Error::BadSignature);
    assert!(chain.device(&server.id()).is_none());
}

#[test]
fn d1_a_bit_flipped_anywhere_in_an_entry_is_refused() {
    let (mut chain, _) = three_devices();
    let a = device(1);
    let stored = next(&chain, Signer::Device(a.id()), add(&device(4), "fourth")).seal(&a).unwrap();
    // Every byte of the fixed fields, some of the body, every byte of the signature.
    let positions = (7..HEADER_FIELDS).chain((HEADER_FIELDS..stored.len()).step_by(97)).chain(stored.len() - 64..stored.len());
    for at in positions {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        assert!(append(&mut chain, &bad).is_err(), "byte {at} flipped and accepted");
    }
    let mut bad = stored.clone();
    *bad.last_mut().unwrap() ^= 0x80;
    assert_eq!(append(&mut chain, &bad).unwrap_err(), Error::BadSignature);
    append(&mut chain, &stored).unwrap();
}

#[test]
fn the_recovery_key_signs_entries_until_it_is_replaced() {
    let (mut chain, _) = three_devices();
    let old = recovery().device();
    let new_key = RecoveryKey::from_bytes([0x98; 32]);
    // The recovery key enrolls a device (as after losing every device).
    let enroll = next(&chain, Signer::RecoveryKey, add(&device(4), "recovered"));
    append(&mut chain, &enroll.seal(&old).unwrap()).unwrap();
    assert_eq!(chain.device(&device(4).id()).unwrap().added_by, Signer::RecoveryKey);
    // It is replaced (here by itself; an enrolled device may do it too).
    let rotate = next(
        &chain,
        Signer::RecoveryKey,
        ChainChange::RotateRecovery {
            recovery: new_key.device().public().clone(),
            root_commitment: root_commitment(&root(1), ACCOUNT, 1),
        },
    );
    append(&mut chain, &rotate.seal(&old).unwrap()).unwrap();
    assert_eq!(chain.recovery(), new_key.device().public());
    assert_eq!(chain.epoch(), 1);
    // The old recovery key no longer signs; the new one does.
    let later = next(&chain, Signer::RecoveryKey, add(&device(5), "later"));
    assert_eq!(append(&mut chain, &later.seal(&old).unwrap()).unwrap_err(), Error::BadSignature);
    append(&mut chain, &later.seal(&new_key.device()).unwrap()).unwrap();
}

#[test]
fn the_recovery_key_as_a_device_shares_its_signing_key_with_the_auth_key() {
    let key = recovery();
    let as_device = key.device();
    assert_eq!(&as_device.public().to_bytes()[..32], &key.auth_public_key());
    // Its X-Wing key is independent of the signing key and of another secret's.
    let other = RecoveryKey::from_bytes([0x98; 32]).device();
    assert_ne!(as_device.public().to_bytes()[32..], other.public().to_bytes()[32..]);
    assert_eq!(as_device.id(), RecoveryKey::from_bytes([0x99; 32]).device().id());
    // A root key wrapped to it opens with the recovery key alone.
    let wrap = wrap_to_device(&root(1), as_device.public(), ACCOUNT, 1, &mut rng(3)).unwrap();
    let opened = unwrap_on_device(&wrap, &recovery().device(), ACCOUNT, 1).unwrap();
    assert_eq!(opened.expose_secret(), root(1).expose_secret());
}

// ------------------------------------------------------------- epochs

#[test]
fn each_entry_must_carry_exactly_the_epoch_it_leads_to() {
    let (mut chain, _) = three_devices();
    let (a, c) = (device(1), device(3));
    let cases = [
        (add(&device(4), "x"), 1),
        (revoke(&chain, &c, &[]), 0),
        (revoke(&chain, &c, &[]), 2),
        (ChainChange::RotateRecovery { recovery: device(9).public().clone(), root_commitment: [0; 32] }, 0),
    ];
    for (change, epoch) in cases {
        let entry = ChainEntry { account_epoch: epoch, ..next(&chain, Signer::Device(a.id()), change) };
        let result = append(&mut chain, &entry.seal(&a).unwrap());
        assert_eq!(result.unwrap_err(), Error::Malformed("chain entry has the wrong account key epoch"));
    }
}

#[test]
fn an_account_is_created_only_once() {
    let (mut chain, _) = three_devices();
    let a = device(1);
    let again = ChainEntry { seq: 3, prev: chain.head().id, account_epoch: 1, ..creation(&a) };
    assert!(is_malformed(append(&mut chain, &again.seal(&a).unwrap())));
    let same_epoch = ChainEntry { account_epoch: 0, ..again };
    assert!(is_malformed(append(&mut chain, &same_epoch.seal(&a).unwrap())));
}

#[test]
fn a1_only_the_root_key_the_chain_committed_to_is_accepted() {
    let (mut chain, _) = three_devices();
    chain.check_root_key(0, &root(0)).unwrap();
    assert!(matches!(chain.check_root_key(0, &root(1)), Err(Error::ContextMismatch(_))));
    assert!(matches!(chain.check_root_key(1, &root(1)), Err(Error::ContextMismatch(_))));
    // A root key the server wraps to a device opens, and is refused.
    let a = device(1);
    let server_key = AccountRootKey::from_bytes([0x5e; 32]);
    let wrap = wrap_to_device(&server_key, a.public(), ACCOUNT, 0, &mut rng(9)).unwrap();
    let opened = unwrap_on_device(&wrap, &a, ACCOUNT, 0).unwrap();
    assert!(chain.check_root_key(0, &opened).is_err());
    // After a revocation, epoch 1 has its own commitment; epoch 0's stays.
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &device(2), &[]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    chain.check_root_key(1, &root(1)).unwrap();
    chain.check_root_key(0, &root(0)).unwrap();
    assert!(chain.check_root_key(1, &root(0)).is_err());
    // The commitment binds the account and the epoch.
    assert_ne!(root_commitment(&root(0), ACCOUNT, 0), root_commitment(&root(0), ACCOUNT, 1));
    assert_ne!(root_commitment(&root(0), ACCOUNT, 0), root_commitment(&root(0), AccountId([8; 16]), 0));
}

// ---------------------------------------------------------- add, revoke

#[test]
fn a_device_is_enrolled_once_and_never_again_after_revocation() {
    let (mut chain, _) = three_devices();
    let (a, b) = (device(1), device(2));
    let twice = next(&chain, Signer::Device(a.id()), add(&b, "again"));
    assert!(is_malformed(append(&mut chain, &twice.seal(&a).unwrap())));
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    let back = next(&chain, Signer::Device(a.id()), add(&b, "back"));
    assert!(is_malformed(append(&mut chain, &back.seal(&a).unwrap())));
}

#[test]
fn a_device_cannot_revoke_itself_nor_one_that_is_not_enrolled() {
    let (mut chain, _) = three_devices();
    let (a, b) = (device(1), device(2));
    let own = next(&chain, Signer::Device(a.id()), revoke(&chain, &a, &[]));
    assert!(is_malformed(append(&mut chain, &own.seal(&a).unwrap())));
    let stranger = next(&chain, Signer::Device(a.id()), revoke(&chain, &device(66), &[]));
    assert!(is_malformed(append(&mut chain, &stranger.seal(&a).unwrap())));
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    let twice = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[]));
    assert!(is_malformed(append(&mut chain, &twice.seal(&a).unwrap())));
}

#[test]
fn a7_a_revoked_device_cannot_sign_entries() {
    let (mut chain, _) = three_devices();
    let (a, b) = (device(1), device(2));
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[(1, 5)]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    let revocation = chain.device(&b.id()).unwrap().revoked.clone().unwrap();
    assert_eq!((revocation.seq, revocation.epoch, revocation.by), (3, 1, Signer::Device(a.id())));
    assert_eq!(chain.active_devices().count(), 2);
    // B tries to add a device, to revoke A, to replace the recovery key.
    let changes = [
        add(&device(66), "b's friend"),
        revoke(&chain, &a, &[]),
        ChainChange::RotateRecovery { recovery: device(66).public().clone(), root_commitment: [0; 32] },
    ];
    for change in changes {
        let by_b = next(&chain, Signer::Device(b.id()), change);
        assert_eq!(append(&mut chain, &by_b.seal(&b).unwrap()).unwrap_err(), Error::UnknownAuthor);
    }
}

#[test]
fn a7_revisions_of_a_revoked_device_beyond_its_cutoff_are_refused() {
    let (mut chain, _) = three_devices();
    let (a, b, c) = (device(1), device(2), device(3));
    let (listed, other) = (CollectionId([1; 16]), CollectionId([2; 16]));
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[(1, 5), (3, 0)]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    assert!(chain.may_author(&b.id(), listed, 0));
    assert!(chain.may_author(&b.id(), listed, 5));
    assert!(!chain.may_author(&b.id(), listed, 6));
    assert!(chain.may_author(&b.id(), CollectionId([3; 16]), 0));
    assert!(!chain.may_author(&b.id(), CollectionId([3; 16]), 1));
    assert!(!chain.may_author(&b.id(), other, 0), "a collection the revocation does not list");
    assert!(chain.may_author(&c.id(), other, 1_000_000));
    assert!(!chain.may_author(&device(66).id(), listed, 0));
}

#[test]
fn revocation_cutoffs_must_be_strictly_ascending() {
    let (mut chain, _) = three_devices();
    let (a, b) = (device(1), device(2));
    let stored = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[(1, 5), (2, 7)])).seal(&a).unwrap();
    let first = HEADER_FIELDS + 16 + 32 + 4;
    // Swapped: (2, 7) then (1, 5).
    let mut swapped = stored.clone();
    swapped[first..first + 48].rotate_left(24);
    // Duplicated: (1, 5) twice.
    let mut duplicated = stored.clone();
    duplicated.copy_within(first..first + 16, first + 24);
    for bad in [swapped, duplicated] {
        let bad = resign(&bad, &seeds_of(1));
        assert_eq!(append(&mut chain, &bad).unwrap_err(), Error::Malformed("revocation cutoffs out of order"));
    }
    // A count larger than the bytes that follow.
    let mut count = stored.clone();
    count[first - 4..first].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(ChainEntry::parse(&resign(&count, &seeds_of(1))).unwrap_err(), Error::Truncated);
    append(&mut chain, &stored).unwrap();
}

// ------------------------------------------------------- pinning a head

/// The rule of `devices.md`, "Pinned heads": the chain a server shows must
/// contain the pinned head at its sequence number.
fn check_against_pin(pinned: ChainHead, served: &[Vec<u8>]) -> Result<DeviceChain> {
    let chain = DeviceChain::verify(ACCOUNT, served.iter().map(Vec::as_slice))?;
    if chain.head().seq < pinned.seq {
        return Err(Error::ChainRollback { pinned: pinned.seq + 1, served: chain.head().seq + 1 });
    }
    let at_pin = ObjectId::of(&served[usize::try_from(pinned.seq).unwrap()]);
    if at_pin != pinned.id {
        return Err(Error::ChainFork { seq: pinned.seq });
    }
    Ok(chain)
}

#[test]
fn c5_c6_a_served_chain_must_contain_the_pinned_head() {
    let (chain, stored) = three_devices();
    let pinned = chain.head();
    check_against_pin(pinned, &stored).unwrap();
    // Longer is fine.
    let a = device(1);
    let mut longer = stored.clone();
    longer.push(next(&chain, Signer::Device(a.id()), add(&device(4), "x")).seal(&a).unwrap());
    check_against_pin(pinned, &longer).unwrap();
    // Shorter: a rollback, even though every entry is validly signed.
    assert_eq!(check_against_pin(pinned, &stored[..2]).unwrap_err(), Error::ChainRollback { pinned: 3, served: 2 });
    // Another entry at the pinned seq: a fork.
    let mut forked = stored[..2].to_vec();
    let mut at_two = DeviceChain::verify(ACCOUNT, forked.iter().map(Vec::as_slice)).unwrap();
    let other = next(&at_two, Signer::Device(a.id()), add(&device(5), "other")).seal(&a).unwrap();
    at_two.append(&other).unwrap();
    forked.push(other);
    assert_eq!(check_against_pin(pinned, &forked).unwrap_err(), Error::ChainFork { seq: 2 });
}

// ------------------------------------------------- rotation on revocation

#[test]
fn a7_after_revocation_nothing_of_the_new_epoch_opens_with_the_revoked_devices_keys() {
    let (mut chain, _) = three_devices();
    let (a, b, c) = (device(1), device(2), device(3));
    let mut r = rng(7);
    let collection = CollectionId([1; 16]);
    let (old_ck, new_ck) = (CollectionKey::from_bytes([0x31; 32]), CollectionKey::from_bytes([0x32; 32]));
    let old_wrap = wrap_collection_key(
        &old_ck,
        &root(0),
        &CollectionWrapContext { account: ACCOUNT, collection, collection_epoch: 0, account_epoch: 0 },
        &mut r,
    )
    .unwrap();
    // A revokes B: new epoch 1, committed in the entry.
    let entry = next(&chain, Signer::Device(a.id()), revoke(&chain, &b, &[(1, 9)]));
    append(&mut chain, &entry.seal(&a).unwrap()).unwrap();
    let new_root = root(1);
    let recipients: Vec<DevicePublicKeys> =
        chain.active_devices().map(|d| d.public.clone()).chain([chain.recovery().clone()]).collect();
    assert_eq!(recipients.len(), 3, "A, C and the recovery key");
    assert!(!recipients.iter().any(|p| p.id() == b.id()));
    let wraps: Vec<Vec<u8>> = recipients.iter().map(|p| wrap_to_device(&new_root, p, ACCOUNT, 1, &mut r).unwrap()).collect();
    let previous = wrap_previous_root(&root(0), &new_root, ACCOUNT, 1, &mut r).unwrap();
    let ctx = CollectionWrapContext { account: ACCOUNT, collection, collection_epoch: 1, account_epoch: 1 };
    let new_wrap = wrap_collection_key(&new_ck, &new_root, &ctx, &mut r).unwrap();
    // C and the recovery key get the new root key, which the chain vouches
    // for, and from it the old root key and the new collection key.
    for holder in [&c, &recovery().device()] {
        let got = wraps.iter().find_map(|w| unwrap_on_device(w, holder, ACCOUNT, 1).ok()).unwrap();
        chain.check_root_key(1, &got).unwrap();
        let old = unwrap_previous_root(&previous, &got, ACCOUNT, 1).unwrap();
        chain.check_root_key(0, &old).unwrap();
        assert_eq!(unwrap_collection_key(&new_wrap, &got, &ctx).unwrap().expose_secret(), new_ck.expose_secret());
    }
    // B holds every key of epoch 0 and none of epoch 1.
    for wrap in &wraps {
        assert!(unwrap_on_device(wrap, &b, ACCOUNT, 1).is_err());
        // Even with the device id rewritten to B's, the HPKE opening fails.
        let mut aimed = wrap.clone();
        aimed[23..39].copy_from_slice(b.id().as_bytes());
        assert_eq!(unwrap_on_device(&aimed, &b, ACCOUNT, 1).unwrap_err(), Error::DecryptionFailed);
    }
    assert_eq!(unwrap_previous_root(&previous, &root(0), ACCOUNT, 1).unwrap_err(), Error::DecryptionFailed);
    assert_eq!(unwrap_collection_key(&new_wrap, &root(0), &ctx).unwrap_err(), Error::DecryptionFailed);
    // What B already had still opens for B: old data stays old data.
    let old_ctx = CollectionWrapContext { account: ACCOUNT, collection, collection_epoch: 0, account_epoch: 0 };
    assert!(unwrap_collection_key(&old_wrap, &root(0), &old_ctx).is_ok());
    assert_eq!(keyhold_core::collection_wrap_account_epoch(&new_wrap), Some(1));
}

#[test]
fn previous_root_wraps_are_bound_to_account_and_epoch() {
    let mut r = rng(8);
    assert!(matches!(wrap_previous_root(&root(0), &root(0), ACCOUNT, 0, &mut r), Err(Error::ContextMismatch(_))));
    let wrap = wrap_previous_root(&root(1), &root(2), ACCOUNT, 2, &mut r).unwrap();
    assert_eq!(wrap.len(), 7 + 16 + 4 + 12 + 48);
    assert_eq!(&wrap[..7], b"KHLD\x01\x01\x07");
    assert_eq!(unwrap_previous_root(&wrap, &root(2), ACCOUNT, 2).unwrap().expose_secret(), root(1).expose_secret());
    assert!(matches!(unwrap_previous_root(&wrap, &root(2), ACCOUNT, 1), Err(Error::ContextMismatch(_))));
    assert!(matches!(unwrap_previous_root(&wrap, &root(2), AccountId([8; 16]), 2), Err(Error::ContextMismatch(_))));
    let mut rewritten = wrap.clone();
    rewritten[26] = 3;
    assert_eq!(unwrap_previous_root(&rewritten, &root(2), ACCOUNT, 3).unwrap_err(), Error::DecryptionFailed);
    let mut longer = wrap.clone();
    longer.push(0);
    assert_eq!(unwrap_previous_root(&longer, &root(2), ACCOUNT, 2).unwrap_err(), Error::TrailingBytes);
}

// ------------------------------------------------------------- pairing

const CODE: &str = "7K3QP-M9X2D";

fn code() -> PairingCode {
    PairingCode::parse(CODE).unwrap()
}

fn hello() -> JoinerHello {
    JoinerHello { device: device(4).public().clone(), name: "new laptop".into() }
}

fn welcome() -> Welcome {
    Welcome { account: ACCOUNT, epoch: 0, root: root(0), head: ChainHead { seq: 3, id: ObjectId([0xab; 32]) } }
}

/// Both sides with the same code: (joiner keys, inviter keys, the two SPAKE2 messages).
fn paired(seed: u8) -> (PairingKeys, PairingKeys, [u8; PAKE_MESSAGE_LEN], [u8; PAKE_MESSAGE_LEN]) {
    let (joiner, msg_b) = JoinerPake::start(&code(), &mut rng(seed));
    let (inviter, msg_a) = inviter_respond(&code(), &msg_b, &mut rng(seed + 1)).unwrap();
    let joiner = joiner.finish(&msg_a, &inviter.inviter_confirmation()).unwrap();
    (joiner, inviter, msg_a, msg_b)
}

#[test]
fn with_the_right_code_both_sides_derive_the_same_keys_and_safety_string() {
    let (joiner, inviter, msg_a, msg_b) = paired(20);
    assert_eq!((msg_a[0], msg_b[0]), (b'A', b'B'));
    assert_eq!(joiner.safety_string(), inviter.safety_string());
    let safety = joiner.safety_string().as_bytes();
    assert!(safety.len() == 9 && safety[4] == b'-' && safety.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()));
    assert_eq!(joiner.inviter_confirmation(), inviter.inviter_confirmation());
    assert_ne!(joiner.inviter_confirmation(), joiner.joiner_confirmation());
    inviter.check_joiner_confirmation(&joiner.joiner_confirmation()).unwrap();
    // The ceremony's two sealed messages.
    let sealed_hello = joiner.seal_joiner_hello(&hello()).unwrap();
    assert_eq!(&sealed_hello[..8], b"KHLD\x01\x01\x08\x01");
    assert_eq!(inviter.open_joiner_hello(&sealed_hello).unwrap(), hello());
    let sealed_welcome = inviter.seal_welcome(&welcome()).unwrap();
    assert_eq!(&sealed_welcome[..8], b"KHLD\x01\x01\x08\x02");
    assert_eq!(sealed_welcome.len(), 8 + 16 + 4 + 32 + 8 + 32 + 16);
    let got = joiner.open_welcome(&sealed_welcome).unwrap();
    assert_eq!(
        (got.account, got.epoch, got.root.expose_secret(), got.head),
        (ACCOUNT, 0, root(0).expose_secret(), welcome().head)
    );
    assert!(!format!("{got:?} {joiner:?} {:?}", code()).contains("44444444"));
    assert!(!format!("{:?}", code()).contains("M9X2D"));
    // Another attempt with the same code has other keys.
    let (again, _, _, _) = paired(30);
    assert_ne!(again.joiner_confirmation(), joiner.joiner_confirmation());
}

#[test]
fn with_a_wrong_code_the_joiner_fails() {
    let (joiner, msg_b) = JoinerPake::start(&PairingCode::parse("7K3QP-M9X2E").unwrap(), &mut rng(20));
    let (inviter, msg_a) = inviter_respond(&code(), &msg_b, &mut rng(21)).unwrap();
    assert_eq!(joiner.finish(&msg_a, &inviter.inviter_confirmation()).unwrap_err(), Error::PairingFailed);
}

#[test]
fn a_relay_without_the_code_that_substitutes_its_own_message_fails() {
    let guess = PairingCode::parse("7K3Q0-00000").unwrap();
    // Toward the joiner: the relay plays the inviter with a guessed code.
    let (joiner, msg_b) = JoinerPake::start(&code(), &mut rng(20));
    let (relay, relay_a) = inviter_respond(&guess, &msg_b, &mut rng(66)).unwrap();
    assert_eq!(joiner.finish(&relay_a, &relay.inviter_confirmation()).unwrap_err(), Error::PairingFailed);
    // Toward the inviter: the relay plays the joiner.
    let (relay, relay_b) = JoinerPake::start(&guess, &mut rng(67));
    let (inviter, msg_a) = inviter_respond(&code(), &relay_b, &mut rng(21)).unwrap();
    assert_eq!(relay.finish(&msg_a, &inviter.inviter_confirmation()).unwrap_err(), Error::PairingFailed);
    // Whatever it sends as the joiner's confirmation, the inviter refuses it
    // (the relay's own derivation, or the inviter's confirmation echoed back).
    let mine = paired(40).0.joiner_confirmation();
    for fake in [mine.to_vec(), inviter.inviter_confirmation().to_vec(), vec![0; 32], vec![]] {
        assert_eq!(inviter.check_joiner_confirmation(&fake).unwrap_err(), Error::PairingFailed);
    }
    // Relaying the joiner's own message back to it, or a garbage point.
    let (joiner, msg_b) = JoinerPake::start(&code(), &mut rng(20));
    assert_eq!(joiner.finish(&msg_b, &[0; 32]).unwrap_err(), Error::PairingFailed);
    let (joiner, _) = JoinerPake::start(&code(), &mut rng(20));
    assert_eq!(joiner.finish(&[b'A'; 10], &[0; 32]).unwrap_err(), Error::PairingFailed);
    let mut not_a_point = [0xff; PAKE_MESSAGE_LEN];
    not_a_point[0] = b'A';
    let (joiner, _) = JoinerPake::start(&code(), &mut rng(20));
    assert_eq!(joiner.finish(&not_a_point, &[0; 32]).unwrap_err(), Error::PairingFailed);
    assert_eq!(inviter_respond(&code(), &msg_b[..32], &mut rng(1)).unwrap_err(), Error::PairingFailed);
}

#[test]
fn a_relay_that_recorded_both_messages_cannot_derive_the_key_even_knowing_the_code() {
    let (joiner, inviter, msg_a, msg_b) = paired(20);
    let sealed_hello = joiner.seal_joiner_hello(&hello()).unwrap();
    // The relay knows the code and replays the recorded joiner message into
    // a fresh SPAKE2 run as the inviter, then derives keys over the recorded
    // transcript: without the inviter's secret scalar its key differs.
    let password = [&b"keyhold v1 2026-11 pairing code\0"[..], b"7K3QPM9X2D"].concat();
    let (state, _) = spake2::Spake2::<spake2::Ed25519Group>::start_a_with_rng(
        &spake2::Password::new(&password),
        &spake2::Identity::new(b"keyhold v1 2026-11 pairing inviter"),
        &spake2::Identity::new(b"keyhold v1 2026-11 pairing joiner"),
        rng(99),
    );
    let relay_shared = state.finish(&msg_b).unwrap();
    let relay = PairingKeys::derive(&relay_shared, &msg_a, &msg_b).unwrap();
    assert_ne!(relay.inviter_confirmation(), inviter.inviter_confirmation());
    assert_ne!(relay.joiner_confirmation(), joiner.joiner_confirmation());
    assert_eq!(relay.open_joiner_hello(&sealed_hello).unwrap_err(), Error::PairingFailed);
    // The same run with the inviter's own randomness is the inviter: the
    // identities and password above are the ones the pairing module uses.
    let (state, again) = spake2::Spake2::<spake2::Ed25519Group>::start_a_with_rng(
        &spake2::Password::new(&password),
        &spake2::Identity::new(b"keyhold v1 2026-11 pairing inviter"),
        &spake2::Identity::new(b"keyhold v1 2026-11 pairing joiner"),
        rng(21),
    );
    assert_eq!(again, msg_a);
    let honest = PairingKeys::derive(&state.finish(&msg_b).unwrap(), &msg_a, &msg_b).unwrap();
    assert_eq!(honest.inviter_confirmation(), inviter.inviter_confirmation());
    assert_eq!(honest.safety_string(), inviter.safety_string());
}

#[test]
fn sealed_messages_do_not_open_in_the_other_direction_or_altered() {
    let (joiner, inviter, _, _) = paired(20);
    let sealed_hello = joiner.seal_joiner_hello(&hello()).unwrap();
    let sealed_welcome = inviter.seal_welcome(&welcome()).unwrap();
    // Swapped between directions: the direction byte says so.
    assert!(matches!(inviter.open_joiner_hello(&sealed_welcome), Err(Error::ContextMismatch(_))));
    assert!(matches!(joiner.open_welcome(&sealed_hello), Err(Error::ContextMismatch(_))));
    // With the direction byte rewritten: the other key, so authentication fails.
    let mut as_welcome = sealed_hello.clone();
    as_welcome[7] = 0x02;
    assert_eq!(joiner.open_welcome(&as_welcome).unwrap_err(), Error::PairingFailed);
    // A flipped bit, a cut tag, another type.
    let mut flipped = sealed_welcome.clone();
    flipped[20] ^= 1;
    assert_eq!(joiner.open_welcome(&flipped).unwrap_err(), Error::PairingFailed);
    assert_eq!(joiner.open_welcome(&sealed_welcome[..30]).unwrap_err(), Error::PairingFailed);
    assert_eq!(joiner.open_welcome(&sealed_welcome[..8 + 15]).unwrap_err(), Error::Truncated);
    let mut retyped = sealed_welcome.clone();
    retyped[6] = 0x06;
    assert!(matches!(joiner.open_welcome(&retyped), Err(Error::WrongObjectType { .. })));
    // Keys of another attempt open nothing.
    let (other, _, _, _) = paired(30);
    assert_eq!(other.open_welcome(&sealed_welcome).unwrap_err(), Error::PairingFailed);
    // A hello with a bad name is not sealed.
    let nameless = JoinerHello { name: String::new(), ..hello() };
    assert!(is_malformed(joiner.seal_joiner_hello(&nameless)));
    let long = JoinerHello { name: "n".repeat(MAX_DEVICE_NAME + 1), ..hello() };
    assert!(is_malformed(joiner.seal_joiner_hello(&long)));
}

#[test]
fn pairing_codes_are_normalised_and_checked() {
    let canonical = code();
    for typed in ["7k3qp-m9x2d", "7K3QPM9X2D", " 7K3QP m9x2d ", "7-K-3-Q-P-M-9-X-2-D", "7K3\tQPM9X2D"] {
        assert_eq!(PairingCode::parse(typed).unwrap().display().as_str(), "7K3QP-M9X2D", "{typed}");
    }
    assert_eq!(canonical.slot(), "7K3Q");
    // Crockford: O reads as 0, I and L as 1.
    assert_eq!(PairingCode::parse("OoIiLl-0000").unwrap().display().as_str(), "00111-10000");
    for (typed, why) in [
        ("7K3QP-M9X2", "wrong length"),
        ("7K3QP-M9X2DD", "wrong length"),
        ("", "wrong length"),
        ("7K3QP-M9X2U", "unexpected character"),
        ("7K3QP_M9X2D", "unexpected character"),
        ("7K3QP-M9X2É", "unexpected character"),
        ("7K3QP.M9X2D", "unexpected character"),
    ] {
        assert_eq!(PairingCode::parse(typed).unwrap_err(), Error::InvalidPairingCode(why), "{typed}");
    }
    let mut r = rng(5);
    for _ in 0..50 {
        let drawn = PairingCode::generate(&mut r);
        let shown = drawn.display();
        assert_eq!(shown.len(), 11);
        assert_eq!(PairingCode::parse(&shown).unwrap().display().as_str(), shown.as_str());
        assert!(shown.chars().all(|c| c == '-' || "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
    }
}
