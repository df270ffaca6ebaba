//! Fuzz entry points, one per parser of stored (untrusted) objects.
//!
//! Each target takes arbitrary bytes, builds fixed, deterministic keys and
//! hands the bytes to one parser, ignoring its result: a target must never
//! panic, hang or allocate without bound, whatever the input. Where a parser
//! accepts an input, the target also checks the invariants the format
//! promises (one encoding per value, round trips), so a violation shows up
//! as a crash too.
//!
//! The cargo-fuzz binaries in `fuzz/fuzz_targets/` call these functions, and
//! `tests/fuzz_corpus.rs` replays the corpora in `fuzz/corpus/<target>/`
//! through them on every `cargo test`. The fixtures are public so that valid
//! seed inputs can be generated against the same keys. Not part of the API.
//!
//! The targets of the device chain, pairing and previous-root wraps use the
//! keys of the spec's vectors (`docs/spec/vectors/`, [`vector`]), so the
//! vectors' objects are valid seeds; so do the key transparency targets
//! (`kt_…`, `docs/spec/transparency-vectors/`, [`kt`]).

#![doc(hidden)]

use self::fixture::{
    ACCOUNT, ACCOUNT_EPOCH, COLLECTION, COLLECTION_EPOCH, collection_keys, collection_wrap_context, device, device_and_id,
    file_manifest, root_key,
};
use self::vector::{
    CHAIN_ACCOUNT, JOINER_CONFIRMATION, JOINER_RANDOMNESS, PAIRING_CODE, PREVIOUS_ROOT_ACCOUNT, PREVIOUS_ROOT_EPOCH,
    current_root_key, pairing_keys,
};
use crate::aead::NONCE_LEN;
use crate::envelope::HEADER_LEN;
use crate::pack::{PACK_PREFIX_LEN, PACK_TRAILER_LEN, open_index, open_pack, open_trailer};
use crate::transparency::{
    AddCheckpoint, Checkpoint, DirectoryLabel, DirectoryValue, EPOCH_ENTRY_LEN, HEARTBEAT_ENTRY_LEN, LogEntry, TILE_WIDTH,
    decode_audit_proof, encode_audit_proof, evidence, parse_evidence, parse_tile_path, verify_checkpoint,
    verify_cosignature_line, verify_history, verify_log_signature, verify_lookup, witness_add_checkpoint,
};
use crate::wrap::PREVIOUS_ROOT_WRAP_LEN;
use crate::{
    BlobId, ChainEntry, ChainHead, DeviceChain, DeviceId, DevicePublicKeys, FileDecryptor, HistoryVerifier, JoinerPake, Listing,
    MAX_BLOB_PLAINTEXT, Manifest, ObjectId, ObjectType, PAKE_MESSAGE_LEN, PairingCode, RecoveryKey, RevisionHeader,
    inviter_respond, open_revision, peek_type, unwrap_collection_key, unwrap_on_device, unwrap_previous_root, wrap_previous_root,
};

/// The fixed keys and ids every target uses, public so that valid seed
/// inputs can be made against them.
pub mod fixture {
    use std::sync::OnceLock;

    use crate::{
        AccountId, AccountRootKey, ChunkRef, CollectionId, CollectionKey, CollectionKeys, CollectionWrapContext, DeviceId,
        DeviceSecret, FileId, FileMeta, Manifest, ObjectType, RecoveryKey,
    };

    /// The account every fixture belongs to.
    pub const ACCOUNT: AccountId = AccountId([0xa1; 16]);
    /// The account key epoch of the root key the wraps carry.
    pub const ACCOUNT_EPOCH: u32 = 1;
    /// The collection every fixture belongs to.
    pub const COLLECTION: CollectionId = CollectionId([0xc0; 16]);
    /// The collection key epoch of [`collection_keys`].
    pub const COLLECTION_EPOCH: u32 = 2;
    /// The collection key's bytes.
    pub const COLLECTION_KEY: [u8; 32] = [7; 32];
    /// The account root key's bytes.
    pub const ROOT_KEY: [u8; 32] = [9; 32];
    /// The recovery key's bytes.
    pub const RECOVERY_KEY: [u8; 32] = [5; 32];
    /// The device's Ed25519 and X-Wing seeds.
    pub const DEVICE_SEEDS: ([u8; 32], [u8; 32]) = ([1; 32], [2; 32]);
    /// The plaintext chunks of the file [`super::file_decryptor`] expects, in order.
    pub const FILE_CHUNKS: [&[u8]; 3] = [b"Keyhold fuzz file, chunk one. ", b"chunk two, ", b"and the last chunk.\n"];

    /// The collection key of [`COLLECTION`] at [`COLLECTION_EPOCH`].
    pub fn collection_key() -> CollectionKey {
        CollectionKey::from_bytes(COLLECTION_KEY)
    }

    /// The derived keys of [`COLLECTION`] at [`COLLECTION_EPOCH`].
    pub fn collection_keys() -> &'static CollectionKeys {
        static KEYS: OnceLock<CollectionKeys> = OnceLock::new();
        KEYS.get_or_init(|| CollectionKeys::derive(&collection_key(), COLLECTION, COLLECTION_EPOCH))
    }

    /// The account root key of [`ACCOUNT`] at [`ACCOUNT_EPOCH`].
    pub fn root_key() -> AccountRootKey {
        AccountRootKey::from_bytes(ROOT_KEY)
    }

    /// The account's recovery key.
    pub fn recovery_key() -> RecoveryKey {
        RecoveryKey::from_bytes(RECOVERY_KEY)
    }

    /// The one enrolled device: the recipient of device wraps and the only
    /// author whose revisions verify.
    pub fn device() -> &'static DeviceSecret {
        &device_and_id().0
    }

    pub(super) fn device_and_id() -> &'static (DeviceSecret, DeviceId) {
        static DEVICE: OnceLock<(DeviceSecret, DeviceId)> = OnceLock::new();
        DEVICE.get_or_init(|| {
            let device = DeviceSecret::from_seeds(&DEVICE_SEEDS.0, &DEVICE_SEEDS.1);
            let id = device.id();
            (device, id)
        })
    }

    /// The context of the collection key wrap [`super::collection_wrap`] expects.
    pub fn collection_wrap_context() -> CollectionWrapContext {
        CollectionWrapContext {
            account: ACCOUNT,
            collection: COLLECTION,
            collection_epoch: COLLECTION_EPOCH,
            account_epoch: ACCOUNT_EPOCH,
        }
    }

    /// The manifest [`super::file_decryptor`] follows: [`FILE_CHUNKS`] sealed as
    /// chunks under [`collection_keys`].
    pub fn file_manifest() -> &'static Manifest {
        static MANIFEST: OnceLock<Manifest> = OnceLock::new();
        MANIFEST.get_or_init(|| {
            let keys = collection_keys();
            let chunks: Vec<ChunkRef> = FILE_CHUNKS
                .iter()
                .map(|chunk| ChunkRef {
                    id: keys.blob_id(ObjectType::Chunk, chunk),
                    len: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
                })
                .collect();
            let size = chunks.iter().map(|c| u64::from(c.len)).sum();
            Manifest {
                meta: FileMeta { file_id: FileId([0xf1; 16]), version: 1, name: "fuzz.txt".into(), mode: 0o644, mtime_ns: 1 },
                size,
                chunks,
            }
        })
    }
}

/// The keys, ids and randomness of the spec's vectors (`docs/spec/vectors/`)
/// that the device chain, pairing and previous-root-wrap targets use, so the
/// vectors' stored objects open and verify against them.
pub mod vector {
    use std::sync::OnceLock;

    use crate::{AccountId, AccountRootKey, PAKE_MESSAGE_LEN, PairingKeys};

    /// The account of every `device-chain-*.json` vector.
    pub const CHAIN_ACCOUNT: AccountId = AccountId([0x33; 16]);
    /// The account of `previous-root-wrap.json`.
    pub const PREVIOUS_ROOT_ACCOUNT: AccountId = AccountId([0x33; 16]);
    /// The epoch of `previous-root-wrap.json`'s current root key.
    pub const PREVIOUS_ROOT_EPOCH: u32 = 1;
    /// The root key of that epoch.
    pub const CURRENT_ROOT_KEY: [u8; 32] = [0x45; 32];
    /// The pairing code of `pairing.json`.
    pub const PAIRING_CODE: &str = "J790Z-74JBJ";
    /// The randomness the joiner of `pairing.json` draws.
    pub const JOINER_RANDOMNESS: &str = "f400927857aaf64114f561baacb379708c79a1dc1476ab573216a4020764bde545c143dbb9609c22ab855d60925a997603d78a3f20d154abd8ddfa6974eedf6b";
    /// The randomness the inviter of `pairing.json` draws.
    pub const INVITER_RANDOMNESS: &str = "c2206fc0bd318594f8cc73bc35106fbaf87b28c38a8dbfc8d9848243038f9c1c84034870a9b65832a5f2bad9063feebe9de6c9e88643afe9ecdd3c8306f410db";
    /// `pairing.json`'s SPAKE2 key.
    pub const SHARED_KEY: &str = "9d3219686c1674c74869d37258555723f5ec12f050ae0e3813e076ec85421a40";
    /// `pairing.json`'s inviter message.
    pub const INVITER_MESSAGE: &str = "4121e07e218e16d8a462bd0fa3e84f304cf697d75db3da593a2f1e7ebd07a65672";
    /// `pairing.json`'s joiner message.
    pub const JOINER_MESSAGE: &str = "427b419604f09ff9c25fc7ecb45bd1eea8bcb37803e491d0932db4c738895de492";
    /// The link id of every `docs/spec/link-vectors/` vector.
    pub const LINK_ID: crate::LinkId = crate::LinkId([0x5a; 16]);
    /// The secret of their fragments.
    pub const LINK_SECRET: [u8; 32] = [0x42; 32];
    /// The time (Unix ms) they are opened at.
    pub const LINK_NOW: i64 = 1_800_000_000_000;
    /// `pairing.json`'s joiner key confirmation.
    pub const JOINER_CONFIRMATION: &str = "1ab1bc82ac1545d5a269731fb1660d7f95c838e1b06e5aa3b837e7b45a2129d2";

    /// Decodes one of the hex constants above (all zero if it does not fit).
    pub fn hex<const N: usize>(text: &str) -> [u8; N] {
        data_encoding::HEXLOWER.decode(text.as_bytes()).ok().and_then(|v| v.try_into().ok()).unwrap_or([0; N])
    }

    /// The root key of [`PREVIOUS_ROOT_EPOCH`].
    pub fn current_root_key() -> AccountRootKey {
        AccountRootKey::from_bytes(CURRENT_ROOT_KEY)
    }

    /// The keys of `pairing.json`'s attempt, from [`PairingKeys::derive`] on
    /// its SPAKE2 key and messages.
    pub fn pairing_keys() -> Option<&'static PairingKeys> {
        static KEYS: OnceLock<Option<PairingKeys>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let inviter: [u8; PAKE_MESSAGE_LEN] = hex(INVITER_MESSAGE);
            let joiner: [u8; PAKE_MESSAGE_LEN] = hex(JOINER_MESSAGE);
            PairingKeys::derive(&hex::<32>(SHARED_KEY), &inviter, &joiner).ok()
        })
        .as_ref()
    }
}

/// A deterministic RNG for the targets that need randomness: hands out its
/// seed, then BLAKE3's output stream keyed by nothing but that seed.
pub struct FuzzRng {
    seed: Vec<u8>,
    pos: usize,
    stream: blake3::OutputReader,
}

impl FuzzRng {
    /// An RNG whose first bytes are `seed`.
    pub fn new(seed: &[u8]) -> Self {
        let stream = blake3::Hasher::new_derive_key("keyhold fuzz rng").update(seed).finalize_xof();
        FuzzRng { seed: seed.to_vec(), pos: 0, stream }
    }
}

impl rand_core::TryRng for FuzzRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> core::result::Result<u32, Self::Error> {
        rand_core::utils::next_word_via_fill(self)
    }
    fn try_next_u64(&mut self) -> core::result::Result<u64, Self::Error> {
        rand_core::utils::next_word_via_fill(self)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> core::result::Result<(), Self::Error> {
        let from_seed = self.seed.get(self.pos..).unwrap_or_default();
        let n = from_seed.len().min(dst.len());
        let (head, tail) = dst.split_at_mut(n);
        head.copy_from_slice(from_seed.get(..n).unwrap_or_default());
        self.pos = self.pos.saturating_add(n);
        self.stream.fill(tail);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FuzzRng {}

/// Splits a big-endian `u16` length and that many bytes (fewer at the end
/// of the input) off `data`; `None` if fewer than 2 bytes are left.
fn take_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    Some(rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len())))
}

/// Splits `data` into at most `max` pieces with [`take_prefixed`].
fn split_prefixed(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    while pieces.len() < max {
        let Some((piece, rest)) = take_prefixed(data) else { break };
        pieces.push(piece);
        data = rest;
    }
    pieces
}

/// Every object type byte, blob or not.
const ALL_TYPES: [ObjectType; 8] = [
    ObjectType::Pack,
    ObjectType::Revision,
    ObjectType::DeviceKeyWrap,
    ObjectType::RecoveryKeyWrap,
    ObjectType::CollectionKeyWrap,
    ObjectType::Chunk,
    ObjectType::Manifest,
    ObjectType::Listing,
];

/// [`Manifest::decode`]; an accepted manifest must re-encode to exactly the
/// input (one encoding per value; manifests are blobs, at most
/// [`MAX_BLOB_PLAINTEXT`] long).
pub fn manifest(data: &[u8]) {
    let decoded = Manifest::decode(data);
    if let (Ok(manifest), true) = (decoded, data.len() <= MAX_BLOB_PLAINTEXT) {
        assert_eq!(manifest.encode().as_deref(), Ok(data), "manifest encoding is not canonical");
    }
}

/// [`Listing::decode`]; an accepted listing (at most [`MAX_BLOB_PLAINTEXT`]
/// long) must re-encode to exactly the input, and each of its names must be
/// found by [`Listing::get`].
pub fn listing(data: &[u8]) {
    let decoded = Listing::decode(data);
    if let (Ok(listing), true) = (decoded, data.len() <= MAX_BLOB_PLAINTEXT) {
        assert_eq!(listing.encode().as_deref(), Ok(data), "listing encoding is not canonical");
        for entry in listing.entries() {
            assert_eq!(listing.get(&entry.name), Some(entry), "listing lookup misses an entry");
        }
    }
}

/// [`CollectionKeys::open_blob`] under every object type (and the manifest
/// and listing openers): the first 32 bytes are the blob id, the rest the
/// ciphertext.
pub fn blob(data: &[u8]) {
    let keys = collection_keys();
    let (id, ciphertext) = match data.split_first_chunk::<32>() {
        Some((id, rest)) => (BlobId(*id), rest),
        None => (BlobId([0; 32]), data),
    };
    for kind in ALL_TYPES {
        if let Ok(plaintext) = keys.open_blob(kind, &id, ciphertext.to_vec()) {
            assert!(kind.is_blob(), "a non-blob type opened as a blob");
            assert_eq!(keys.blob_id(kind, &plaintext), id, "blob opened under another id");
        }
    }
    let _ = keys.open_manifest(&id, ciphertext.to_vec());
    let _ = keys.open_listing(&id, ciphertext.to_vec());
}

/// [`crate::pack::open_pack`], then every blob it lists; and the range-read
/// path: [`open_trailer`] on the last bytes, [`open_index`] on the range it
/// names, and [`open_index`] on everything after the prefix.
pub fn pack(data: &[u8]) {
    let keys = collection_keys();
    if let Ok(entries) = open_pack(keys, data) {
        for entry in &entries {
            if let Ok(bytes) = entry.slice(data) {
                let _ = keys.open_blob(entry.kind, &entry.id, bytes.to_vec());
            }
        }
    }
    if let Some((prefix, rest)) = data.split_at_checked(PACK_PREFIX_LEN) {
        if let Some((_, trailer)) = rest.split_at_checked(rest.len().saturating_sub(PACK_TRAILER_LEN)) {
            if let Ok((offset, len)) = open_trailer(keys, prefix, trailer, data.len()) {
                if let Some(index) = data.get(offset..offset.saturating_add(len)) {
                    let _ = open_index(keys, prefix, index, offset);
                }
            }
        }
        let _ = open_trailer(keys, prefix, rest, data.len());
        let _ = open_index(keys, prefix, rest, PACK_PREFIX_LEN);
    }
}

/// [`RevisionHeader::parse`] and [`open_revision`] with a resolver that knows
/// only [`device`]; a verified revision is then offered to a fresh
/// [`HistoryVerifier`].
pub fn revision(data: &[u8]) {
    let _ = peek_type(data);
    let header = RevisionHeader::parse(data);
    let keys = collection_keys();
    let (dev, dev_id) = (device(), device_and_id().1);
    if let Ok(verified) = open_revision(keys, data, |id: &DeviceId| (*id == dev_id).then_some(dev.public())) {
        assert_eq!(verified.revision.author, dev_id, "revision verified under another author");
        let header = header.unwrap_or_else(|e| panic!("opened revision whose header does not parse: {e}"));
        assert_eq!((header.collection, header.seq, header.epoch), (COLLECTION, verified.revision.seq, COLLECTION_EPOCH));
        let mut history = HistoryVerifier::new(COLLECTION, None);
        let _ = history.check_offered(verified.head());
        let _ = history.extend(std::slice::from_ref(&verified));
    }
}

/// [`unwrap_on_device`] for [`device`], [`ACCOUNT`] and [`ACCOUNT_EPOCH`].
pub fn device_wrap(data: &[u8]) {
    let _ = unwrap_on_device(data, device(), ACCOUNT, ACCOUNT_EPOCH);
}

/// [`unwrap_collection_key`] under [`root_key`] for
/// [`collection_wrap_context`].
pub fn collection_wrap(data: &[u8]) {
    let _ = unwrap_collection_key(data, &root_key(), &collection_wrap_context());
}

/// [`RecoveryKey::parse`] on the input as (lossy) UTF-8; an accepted key must
/// survive a display/parse round trip.
pub fn recovery_key(data: &[u8]) {
    if let Ok(key) = RecoveryKey::parse(&String::from_utf8_lossy(data)) {
        let shown = key.display().unwrap_or_else(|e| panic!("cannot display a parsed recovery key: {e}"));
        let again = RecoveryKey::parse(&shown).unwrap_or_else(|e| panic!("displayed recovery key does not parse: {e}"));
        assert!(again.expose_secret() == key.expose_secret(), "recovery key display/parse round trip differs");
    }
}

/// [`RecoveryKey::unwrap`] with [`fixture::recovery_key`] for [`ACCOUNT`] and
/// [`ACCOUNT_EPOCH`]. Inputs whose Argon2id parameters pass the pinned
/// floor and ceiling run Argon2id (64 MiB or more), so they are slow.
pub fn recovery_wrap(data: &[u8]) {
    let _ = fixture::recovery_key().unwrap(data, ACCOUNT, ACCOUNT_EPOCH);
}

/// [`DevicePublicKeys::from_bytes`]; accepted keys must re-encode to exactly
/// the input (the device id is a hash of the encoding).
pub fn device_public_keys(data: &[u8]) {
    if let Ok(keys) = DevicePublicKeys::from_bytes(data) {
        assert!(keys.to_bytes() == data, "device public key encoding is not canonical");
        let _ = keys.id();
    }
}

/// A [`FileDecryptor`] following [`file_manifest`], fed the ciphertexts
/// split from the input: each is a big-endian `u16` length, then that many
/// bytes (fewer at the end of the input).
pub fn file_decryptor(data: &[u8]) {
    let keys = collection_keys();
    let mut decryptor = FileDecryptor::new(keys, file_manifest().clone());
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let (ciphertext, tail) = tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
        rest = tail;
        let expected = decryptor.expected().copied();
        if let Ok(plaintext) = decryptor.open_next(ciphertext.to_vec()) {
            let expected = expected.unwrap_or_else(|| panic!("opened a chunk beyond the manifest"));
            assert_eq!(keys.blob_id(ObjectType::Chunk, &plaintext), expected.id, "chunk opened out of place");
        }
    }
    let _ = decryptor.finish();
}

/// [`peek_type`]: whatever it reports must be the input's type byte.
pub fn peek(data: &[u8]) {
    if let Some(kind) = peek_type(data) {
        assert_eq!(data.get(6).copied(), Some(kind.byte()), "peeked type is not the type byte");
    }
}

/// [`ChainEntry::parse`] on each entry, [`DeviceChain::verify`] for
/// [`CHAIN_ACCOUNT`] on all of them, then [`DeviceChain::genesis`] and
/// [`DeviceChain::append`] one entry at a time, going on past rejected ones.
/// The first byte is the number of entries (at most); then each entry is a
/// big-endian `u16` length and that many bytes (fewer at the end). A
/// rejected entry must leave the chain as it was, and the chain verifies
/// exactly when every entry appends.
pub fn device_chain(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else { return };
    let entries = split_prefixed(rest, usize::from(count));
    for stored in &entries {
        if let Ok((entry, _)) = ChainEntry::parse(stored) {
            let _ = entry.change.starts_epoch();
        }
    }
    let verified = DeviceChain::verify(CHAIN_ACCOUNT, entries.iter().copied());
    let Some((first, later)) = entries.split_first() else {
        assert!(verified.is_err(), "an empty device chain verified");
        return;
    };
    let Ok(mut chain) = DeviceChain::genesis(CHAIN_ACCOUNT, first) else {
        assert!(verified.is_err(), "a chain verified whose creation entry does not");
        return;
    };
    let mut every_entry_appended = true;
    for stored in later {
        let (before, epoch, devices) = (chain.head(), chain.epoch(), chain.devices().clone());
        match chain.append(stored) {
            Ok(entry) => {
                assert_eq!(before.seq.checked_add(1), Some(entry.seq), "appended entry out of sequence");
                assert_eq!(
                    chain.head(),
                    ChainHead { seq: entry.seq, id: ObjectId::of(stored) },
                    "head is not the appended entry"
                );
                let epoch_now = if entry.change.starts_epoch() { epoch.checked_add(1) } else { Some(epoch) };
                assert_eq!(Some(chain.epoch()), epoch_now, "appended entry has the wrong epoch");
                assert_eq!(chain.epoch(), entry.account_epoch, "chain epoch is not the entry's");
            }
            Err(_) => {
                every_entry_appended = false;
                assert_eq!((chain.head(), chain.epoch()), (before, epoch), "a rejected entry moved the chain");
                assert!(*chain.devices() == devices, "a rejected entry changed the devices");
            }
        }
    }
    assert_eq!(verified.is_ok(), every_entry_appended, "verify and append disagree");
    if let Ok(verified) = verified {
        assert_eq!(verified.head(), chain.head(), "verify and append reach different heads");
    }
    let head = chain.head();
    assert!(chain.time_of(head.seq).is_some(), "no time for the head entry");
    for (id, device) in chain.devices() {
        assert_eq!(*id, device.public.id(), "device filed under another id");
        let _ = chain.may_author(id, COLLECTION, u64::MAX);
    }
    let _ = chain.active_devices().count();
    let _ = chain.check_root_key(chain.epoch(), &root_key());
    let _ = chain.recovery().id();
}

/// Pairing, picked by the first byte (mod 5); the rest is the input.
/// 0: [`PairingCode::parse`] on it as (lossy) UTF-8; an accepted code must
/// survive a display/parse round trip. 1: [`JoinerPake::finish`] for
/// `pairing.json`'s joiner (its code and randomness) with the inviter
/// message (a big-endian `u16` length, then that many bytes) and the key
/// confirmation (the rest). 2: [`inviter_respond`] with `pairing.json`'s
/// code and inviter randomness to it as the joiner message. 3 and 4:
/// [`crate::PairingKeys::open_joiner_hello`] and
/// [`crate::PairingKeys::open_welcome`] under [`pairing_keys`]; what opens
/// must seal back to exactly the input.
pub fn pairing(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let code = || PairingCode::parse(PAIRING_CODE).unwrap_or_else(|e| panic!("fixture pairing code: {e}"));
    match selector % 5 {
        0 => {
            if let Ok(code) = PairingCode::parse(&String::from_utf8_lossy(rest)) {
                let shown = code.display();
                let again = PairingCode::parse(&shown).unwrap_or_else(|e| panic!("displayed pairing code does not parse: {e}"));
                assert!(again.display() == shown, "pairing code display/parse round trip differs");
                assert!(shown.starts_with(code.slot()) && code.slot().len() == crate::PAIRING_SLOT_LEN, "bad slot");
            }
        }
        1 => {
            let (message, confirmation) = take_prefixed(rest).unwrap_or((rest, &[]));
            let (joiner, _) = JoinerPake::start(&code(), &mut FuzzRng::new(&vector::hex::<64>(JOINER_RANDOMNESS)));
            if let Ok(keys) = joiner.finish(message, confirmation) {
                assert_eq!(keys.joiner_confirmation(), vector::hex(JOINER_CONFIRMATION), "joiner finished another attempt");
            }
        }
        2 => {
            let rng = &mut FuzzRng::new(&vector::hex::<64>(vector::INVITER_RANDOMNESS));
            if let Ok((keys, message)) = inviter_respond(&code(), rest, rng) {
                assert_eq!(rest.len(), PAKE_MESSAGE_LEN, "inviter answered a joiner message of the wrong length");
                let _ = (keys.inviter_confirmation(), message);
            }
        }
        3 => {
            let Some(keys) = pairing_keys() else { return };
            if let Ok(hello) = keys.open_joiner_hello(rest) {
                let sealed = keys.seal_joiner_hello(&hello).unwrap_or_else(|e| panic!("cannot reseal an opened hello: {e}"));
                assert!(sealed == rest, "joiner hello encoding is not canonical");
            }
        }
        _ => {
            let Some(keys) = pairing_keys() else { return };
            if let Ok(welcome) = keys.open_welcome(rest) {
                let sealed = keys.seal_welcome(&welcome).unwrap_or_else(|e| panic!("cannot reseal an opened welcome: {e}"));
                assert!(sealed == rest, "welcome encoding is not canonical");
            }
        }
    }
}

/// [`unwrap_previous_root`] under [`current_root_key`] for
/// [`PREVIOUS_ROOT_ACCOUNT`] and [`PREVIOUS_ROOT_EPOCH`]; what opens must
/// rewrap (with the same nonce) to exactly the input.
pub fn previous_root_wrap(data: &[u8]) {
    let current = current_root_key();
    if let Ok(previous) = unwrap_previous_root(data, &current, PREVIOUS_ROOT_ACCOUNT, PREVIOUS_ROOT_EPOCH) {
        assert_eq!(data.len(), PREVIOUS_ROOT_WRAP_LEN, "previous root wrap of the wrong length opened");
        let at = HEADER_LEN + 16 + 4;
        let nonce = data.get(at..at + NONCE_LEN).unwrap_or_default();
        let again = wrap_previous_root(&previous, &current, PREVIOUS_ROOT_ACCOUNT, PREVIOUS_ROOT_EPOCH, &mut FuzzRng::new(nonce))
            .unwrap_or_else(|e| panic!("cannot rewrap an opened previous root key: {e}"));
        assert!(again == data, "previous root wrap encoding is not canonical");
    }
}

/// The keys, state and VRF key of the key transparency targets (`kt_…`).
/// The log, witness and auditor keys, the origin, the witness's state and
/// the time are those of the spec's vectors
/// (`docs/spec/transparency-vectors/`), so the vectors' notes, requests and
/// evidence files are valid seeds.
pub mod kt {
    use std::sync::OnceLock;

    use crate::transparency::{DirectoryLabel, NoteKey, Policy, WitnessState};
    use crate::{AccountId, CollectionId};

    /// The log's origin (and the log key's name).
    pub const ORIGIN: &str = "kt.keyhold.example/epoch-roots";
    /// The log key's Ed25519 seed.
    pub const LOG_SEED: [u8; 32] = [0x11; 32];
    /// The one pinned witness's name.
    pub const WITNESS: &str = "witness-1.example";
    /// Its Ed25519 seed.
    pub const WITNESS_SEED: [u8; 32] = [0x21; 32];
    /// The one pinned auditor's name.
    pub const AUDITOR: &str = "auditor-1.example";
    /// Its Ed25519 seed.
    pub const AUDITOR_SEED: [u8; 32] = [0x31; 32];
    /// The witness's time (seconds since the Unix epoch) when it cosigns.
    pub const NOW: u64 = 1_800_000_000;
    /// What the witness cosigned last (`add-checkpoint.json`'s `state`):
    /// size 3 of the vectors' log.
    pub const WITNESS_STATE: &[u8] = b"kt.keyhold.example/epoch-roots\n3\nkJ/aiYeSmYceOUrpE6yVI95gnP/YDgVc9GKy8ooMEdM=\n";
    /// The akd VRF secret key of the `kt_proofs` directory.
    pub const VRF_SEED: [u8; 32] = [0x71; 32];
    /// The label `kt_proofs` checks when the input's label does not parse.
    pub const LABEL: DirectoryLabel = DirectoryLabel::Account(AccountId([0x33; 16]));
    /// Another label (a collection), for seeds.
    pub const COLLECTION_LABEL: DirectoryLabel = DirectoryLabel::Collection(AccountId([0x33; 16]), CollectionId([0x44; 16]));

    struct Keys {
        log: NoteKey,
        witness: NoteKey,
        auditor: NoteKey,
        policy: Policy,
    }

    fn keys() -> Option<&'static Keys> {
        static KEYS: OnceLock<Option<Keys>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let log = NoteKey::from_seed(ORIGIN, LOG_SEED).ok()?;
            let witness = NoteKey::from_seed(WITNESS, WITNESS_SEED).ok()?;
            let auditor = NoteKey::from_seed(AUDITOR, AUDITOR_SEED).ok()?;
            let policy = Policy {
                origin: ORIGIN.into(),
                log_vkey: log.log_vkey(),
                witnesses: vec![witness.cosigner_vkey()],
                quorum: 1,
                auditors: vec![auditor.cosigner_vkey()],
                max_age_secs: 86_400,
                max_audit_lag_secs: 7_200,
            };
            Some(Keys { log, witness, auditor, policy })
        })
        .as_ref()
    }

    /// The log key.
    pub fn log_key() -> Option<&'static NoteKey> {
        keys().map(|k| &k.log)
    }

    /// The witness key.
    pub fn witness_key() -> Option<&'static NoteKey> {
        keys().map(|k| &k.witness)
    }

    /// The auditor key.
    pub fn auditor_key() -> Option<&'static NoteKey> {
        keys().map(|k| &k.auditor)
    }

    /// The pinned policy: the log key, the witness (quorum 1), the auditor.
    pub fn policy() -> Option<&'static Policy> {
        keys().map(|k| &k.policy)
    }

    /// [`WITNESS_STATE`], parsed.
    pub fn witness_state() -> Option<WitnessState> {
        WitnessState::decode(WITNESS_STATE).ok()
    }

    /// The VRF public key of [`VRF_SEED`].
    pub fn vrf_public_key() -> [u8; 32] {
        let Ok(secret) = akd_core::ecvrf::VRFPrivateKey::try_from(&VRF_SEED[..]) else { return [0; 32] };
        akd_core::ecvrf::VRFPublicKey::from(&secret).to_bytes()
    }

    /// A `kt_proofs` input for a lookup (`selector` 0) or history (1) proof
    /// by the directory of [`VRF_SEED`] for `label`, against `root` at `epoch`.
    pub fn proof_input(selector: u8, epoch: u64, root: [u8; 32], label: &DirectoryLabel, proof: &[u8]) -> Vec<u8> {
        let label = label.to_bytes();
        let mut out = vec![selector];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&root);
        out.extend_from_slice(&u16::try_from(label.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&label);
        out.extend_from_slice(proof);
        out
    }
}

/// [`LogEntry::decode`]: an accepted entry must re-encode to exactly the
/// input, of the length of its kind.
pub fn kt_log_entry(data: &[u8]) {
    if let Ok(entry) = LogEntry::decode(data) {
        assert!(entry.encode() == data, "log entry encoding is not canonical");
        let len = match entry {
            LogEntry::Epoch { .. } => EPOCH_ENTRY_LEN,
            LogEntry::Heartbeat { .. } => HEARTBEAT_ENTRY_LEN,
        };
        assert_eq!(data.len(), len, "log entry of the wrong length accepted");
    }
}

/// [`DirectoryLabel::from_bytes`] and [`DirectoryValue::from_bytes`] on the
/// input: what parses must re-encode to exactly the input.
pub fn kt_label_value(data: &[u8]) {
    if let Ok(label) = DirectoryLabel::from_bytes(data) {
        assert!(label.to_bytes() == data, "directory label encoding is not canonical");
    }
    if let Ok(value) = DirectoryValue::from_bytes(data) {
        assert!(value.to_bytes() == data, "directory value encoding is not canonical");
    }
}

/// The signature lines of a note: the lines after its last empty line.
fn signature_lines(note: &[u8]) -> Vec<&[u8]> {
    let at = note.windows(2).rposition(|w| w == b"\n\n").map_or(note.len(), |i| i.saturating_add(2));
    note.get(at..).unwrap_or_default().split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect()
}

/// The input as a signed checkpoint note: [`Checkpoint::from_note`] (what
/// parses must survive a body round trip), [`verify_log_signature`] for
/// [`kt::ORIGIN`] and the log key, [`verify_cosignature_line`] on each of
/// its signature lines with the witness's and auditor's keys, and
/// [`verify_checkpoint`] under [`kt::policy`]. The answers must agree with
/// each other.
pub fn kt_checkpoint(data: &[u8]) {
    let (Some(policy), Some(log), Some(witness), Some(auditor)) =
        (kt::policy(), kt::log_key(), kt::witness_key(), kt::auditor_key())
    else {
        return;
    };
    let parsed = Checkpoint::from_note(data);
    if let Ok(cp) = &parsed {
        let body = cp.to_body().unwrap_or_else(|e| panic!("cannot encode a parsed checkpoint: {e}"));
        assert_eq!(Checkpoint::from_body(&body).as_ref(), Ok(cp), "checkpoint body round trip differs");
    }
    let logged = verify_log_signature(kt::ORIGIN, &log.log_vkey(), data);
    if let Ok(cp) = &logged {
        assert_eq!(parsed.as_ref().ok(), Some(cp), "log signature verified on a note that does not parse");
        assert_eq!(cp.origin, kt::ORIGIN, "log signature verified for another origin");
    }
    let cosigners = [witness.cosigner_vkey(), auditor.cosigner_vkey()];
    let mut cosigned_by = Vec::new();
    for line in signature_lines(data) {
        if let Some(name) = verify_cosignature_line(data, line, &cosigners) {
            assert!(parsed.is_ok(), "cosignature line verified on a note that does not parse");
            assert!(name == kt::WITNESS || name == kt::AUDITOR, "cosignature line verified by an unknown key");
            cosigned_by.push(name);
        }
    }
    if let Ok(verified) = verify_checkpoint(policy, data) {
        assert_eq!(logged.as_ref(), Ok(&verified.checkpoint), "checkpoint verified without the log's signature");
        assert!(verified.note == data, "verified note is not the input");
        assert!(verified.witness_times.len() >= policy.quorum, "checkpoint verified without a quorum");
        assert!(verified.newest_witness_time >= verified.quorum_witness_time, "quorum time after the newest time");
        for (name, _) in verified.witness_times.iter().chain(&verified.auditor_times) {
            assert!(cosigned_by.contains(name), "cosigner {name} counted whose line does not verify");
        }
        assert!(verified.witness_times.iter().all(|(n, _)| n == kt::WITNESS), "a non-witness counted as witness");
        assert!(verified.auditor_times.iter().all(|(n, _)| n == kt::AUDITOR), "a non-auditor counted as auditor");
    }
}

/// [`AddCheckpoint::decode`] (what parses must encode to the same bytes:
/// one canonical body per request), then [`witness_add_checkpoint`] for [`kt::ORIGIN`] by the
/// vectors' witness at [`kt::NOW`], from [`kt::WITNESS_STATE`] and from no
/// state. What the witness cosigns must be signed by the log, extend its
/// state, and carry a cosignature that verifies.
pub fn kt_add_checkpoint(data: &[u8]) {
    let Ok(request) = AddCheckpoint::decode(data) else { return };
    assert_eq!(request.encode(), data, "add-checkpoint round trip differs");
    let (Some(log), Some(me), Some(state)) = (kt::log_key(), kt::witness_key(), kt::witness_state()) else { return };
    let log_vkey = log.log_vkey();
    for state in [Some(&state), None] {
        let Ok((after, line)) = witness_add_checkpoint(kt::ORIGIN, &log_vkey, state, &request, me, kt::NOW) else { continue };
        let cp = verify_log_signature(kt::ORIGIN, &log_vkey, &request.note)
            .unwrap_or_else(|e| panic!("witness cosigned a checkpoint the log did not sign: {e}"));
        assert_eq!((&after.origin, after.size, after.root), (&cp.origin, cp.size, cp.root), "new state is not the checkpoint");
        assert_eq!(request.old_size, state.map_or(0, |s| s.size), "witness accepted another old size");
        if let Some(s) = state {
            assert!(after.size >= s.size, "witness cosigned a rollback");
            assert!(after.size != s.size || after.root == s.root, "witness cosigned a second tree of its size");
        }
        let name = verify_cosignature_line(&request.note, &line, &[me.cosigner_vkey()]);
        assert_eq!(name.as_deref(), Some(kt::WITNESS), "witness's cosignature does not verify");
    }
}

/// [`parse_evidence`]: what parses must be written back to exactly the
/// input by [`evidence`].
pub fn kt_evidence(data: &[u8]) {
    if let Ok(parsed) = parse_evidence(data) {
        let notes: Vec<&[u8]> = parsed.notes.iter().map(Vec::as_slice).collect();
        assert!(evidence(&parsed.reason, &notes) == data, "evidence encoding is not canonical");
    }
}

/// The canonical C2SP path of a hash tile (without the leading `tile/`).
fn tile_path(level: u8, index: u64, width: u64) -> String {
    let digits = index.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded.as_bytes().chunks(3).filter_map(|g| core::str::from_utf8(g).ok()).collect();
    let last = groups.len().saturating_sub(1);
    let n: Vec<String> =
        groups.iter().enumerate().map(|(i, g)| if i < last { format!("x{g}") } else { (*g).to_owned() }).collect();
    let partial = if width < TILE_WIDTH { format!(".p/{width}") } else { String::new() };
    format!("{level}/{}{partial}", n.join("/"))
}

/// akd proofs and tile paths, picked by the first byte (mod 4); the rest is
/// the input. 0 and 1: [`verify_lookup`] and [`verify_history`] under
/// [`kt::vrf_public_key`], with the rest as a big-endian `u64` epoch, a
/// 32-byte root, the label (a big-endian `u16` length and that many bytes;
/// [`kt::LABEL`] if it does not parse) and the proof (the rest; see
/// [`kt::proof_input`]). 2: [`decode_audit_proof`]; what parses must
/// survive an encode/decode round trip. 3: [`parse_tile_path`] on it as
/// (lossy) UTF-8; an accepted path must be the canonical one.
pub fn kt_proofs(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 4 {
        0 | 1 => {
            let Some((epoch, rest)) = rest.split_first_chunk::<8>() else { return };
            let Some((root, rest)) = rest.split_first_chunk::<32>() else { return };
            let (label, proof) = take_prefixed(rest).unwrap_or((&[], rest));
            let label = DirectoryLabel::from_bytes(label).unwrap_or(kt::LABEL);
            let (epoch, vrf) = (u64::from_be_bytes(*epoch), kt::vrf_public_key());
            if selector % 4 == 0 {
                if let Ok((version, _)) = verify_lookup(&vrf, *root, epoch, &label, proof) {
                    assert!((1..=epoch).contains(&version), "lookup verified a version beyond the epoch");
                }
            } else if let Ok(history) = verify_history(&vrf, *root, epoch, &label, proof) {
                let versions: Vec<u64> = history.iter().map(|(_, version, _)| *version).collect();
                let complete: Vec<u64> = (1..=u64::try_from(versions.len()).unwrap_or(0)).rev().collect();
                assert_eq!(versions, complete, "history verified that is not complete and newest first");
                assert!(history.iter().all(|(published, _, _)| *published <= epoch), "history value published after the epoch");
            }
        }
        2 => {
            if let Ok(proof) = decode_audit_proof(rest) {
                assert_eq!(decode_audit_proof(&encode_audit_proof(&proof)), Ok(proof), "audit proof round trip differs");
            }
        }
        _ => {
            let path = String::from_utf8_lossy(rest);
            if let Ok((level, index, width)) = parse_tile_path(&path) {
                assert!(level < 64 && (1..=TILE_WIDTH).contains(&width), "tile path out of range accepted");
                let canonical = tile_path(level, index, width);
                assert_eq!(path.strip_prefix("tile/").unwrap_or(&path), canonical, "non-canonical tile path accepted");
            }
        }
    }
}

/// Link shares (`docs/spec/links.md`), the first byte selecting the parser.
/// Even: the rest is a stored link object, opened as [`vector::LINK_ID`]
/// with the key fragment of [`vector::LINK_SECRET`] at
/// [`vector::LINK_NOW`] (a password link's header is parsed, but Argon2id
/// is not run); an accepted link must re-seal to exactly the input. Odd:
/// the rest is a metadata plaintext (what a link's creator, untrusted by
/// whoever opens it, seals); accepted metadata must re-encode to exactly
/// the input. The link vectors' objects and plaintexts are the seeds.
pub fn link(data: &[u8]) {
    use crate::{LinkEntryKind, LinkFragment, LinkHeader, LinkMeta, LinkMode, LinkSecret, open_link, seal_link};
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector % 2 == 1 {
        if let Ok(meta) = LinkMeta::decode_padded(rest) {
            assert_eq!(meta.encode_padded().as_deref(), Ok(rest), "link metadata encoding is not canonical");
        }
        return;
    }
    let Ok(header) = LinkHeader::parse(rest) else { return };
    if header.mode != LinkMode::Key {
        return;
    }
    let fragment = LinkFragment::new(false, LinkSecret::from_bytes(vector::LINK_SECRET));
    if let Ok((meta, contents)) = open_link(rest, vector::LINK_ID, &fragment, None, vector::LINK_NOW) {
        let files: Vec<&[u8]> = meta
            .entries
            .iter()
            .zip(&contents)
            .filter(|(e, _)| e.kind == LinkEntryKind::File)
            .map(|(_, c)| c.as_slice())
            .collect();
        let resealed = seal_link(vector::LINK_ID, &fragment, None, &meta, &files);
        assert_eq!(resealed.as_deref(), Ok(rest), "an opened link does not re-seal to its bytes");
    }
}

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// Every fuzz target by name: the name of its cargo-fuzz binary and of its
/// corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("listing", listing),
    ("blob", blob),
    ("pack", pack),
    ("revision", revision),
    ("device_wrap", device_wrap),
    ("collection_wrap", collection_wrap),
    ("recovery_key", recovery_key),
    ("recovery_wrap", recovery_wrap),
    ("device_public_keys", device_public_keys),
    ("file_decryptor", file_decryptor),
    ("peek", peek),
    ("device_chain", device_chain),
    ("pairing", pairing),
    ("previous_root_wrap", previous_root_wrap),
    ("kt_log_entry", kt_log_entry),
    ("kt_label_value", kt_label_value),
    ("kt_checkpoint", kt_checkpoint),
    ("kt_add_checkpoint", kt_add_checkpoint),
    ("kt_evidence", kt_evidence),
    ("kt_proofs", kt_proofs),
    ("link", link),
    ("share_member_list", share_member_list),
    ("share_key_grant", share_key_grant),
    ("share_response", share_response),
    ("share_handle_claim", share_handle_claim),
];

/// The sharing targets use the keys of `docs/spec/sharing-vectors/`, so the
/// vectors' objects are valid seeds.
pub mod share_fixture {
    use crate::{AccountId, CollectionId, DeviceSecret};

    /// The vectors' collection.
    pub const COLLECTION: CollectionId = CollectionId([0x5c; 16]);
    /// The vectors' owner.
    pub const OWNER: AccountId = AccountId([0xa1; 16]);
    /// The vectors' member whose devices a grant is sealed to.
    pub const MEMBER: AccountId = AccountId([0xc0; 16]);

    /// The owner's device of the vectors.
    pub fn owner_device() -> DeviceSecret {
        DeviceSecret::from_seeds(&[0x01; 32], &[0x02; 32])
    }

    /// A member device a vector grant is sealed to.
    pub fn member_device() -> DeviceSecret {
        DeviceSecret::from_seeds(&[0x21; 32], &[0x22; 32])
    }
}

/// [`crate::share::MemberEntry::parse`] and a member list of the input
/// split into entries at every stored length the parser accepts.
pub fn share_member_list(data: &[u8]) {
    use crate::share::{MAX_MEMBER_ENTRY_LEN, MemberEntry, MemberList};
    let owner = share_fixture::owner_device();
    let lookup = |id: &DeviceId| (*id == owner.id()).then(|| owner.public().clone());
    if MemberEntry::parse(data).is_ok() {
        assert!(data.len() <= MAX_MEMBER_ENTRY_LEN, "member entry over its limit accepted");
    }
    // The input as two entries, split at its first byte (a cheap way to
    // reach `append` with attacker-shaped bytes).
    let (first, rest) = data.split_at(data.len().min(usize::from(data.first().copied().unwrap_or(0)).saturating_mul(2)));
    if let Ok(list) = MemberList::verify(share_fixture::COLLECTION, share_fixture::OWNER, [first, rest], lookup) {
        assert!(list.head().seq == 1, "a two-entry list ends anywhere but at seq 1");
    }
}

/// [`crate::share::KeyGrant::parse`], then opening the vectors' member
/// device's wrap: never a panic, and keys only for a grant that verifies.
pub fn share_key_grant(data: &[u8]) {
    use crate::share::{KeyGrant, MAX_GRANT_LEN};
    let owner = share_fixture::owner_device();
    if let Ok((grant, _)) = KeyGrant::parse(data) {
        assert!(data.len() <= MAX_GRANT_LEN, "key grant over its limit accepted");
        let _ = grant.open(&share_fixture::member_device(), share_fixture::MEMBER);
    }
    let _ = KeyGrant::verify(data, |id| (*id == owner.id()).then(|| owner.public().clone()));
}

/// [`crate::share::ShareResponse::parse`]: what parses has the one length.
pub fn share_response(data: &[u8]) {
    use crate::share::{SHARE_RESPONSE_LEN, ShareResponse};
    if ShareResponse::parse(data).is_ok() {
        assert_eq!(data.len(), SHARE_RESPONSE_LEN, "share response of the wrong length accepted");
    }
}

/// [`crate::share::HandleClaim::parse`]: what parses names a valid handle
/// and re-encodes to exactly the input.
pub fn share_handle_claim(data: &[u8]) {
    use crate::share::{HandleClaim, validate_handle};
    if let Ok((claim, _)) = HandleClaim::parse(data) {
        assert!(validate_handle(&claim.handle).is_ok(), "an invalid handle parsed");
        assert_eq!(data.get(7).copied().map(usize::from), Some(claim.handle.len()), "handle length mismatch");
    }
}
