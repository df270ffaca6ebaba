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

#![doc(hidden)]

use self::fixture::{
    ACCOUNT, ACCOUNT_EPOCH, COLLECTION, COLLECTION_EPOCH, collection_keys, collection_wrap_context, device, device_and_id,
    file_manifest, root_key,
};
use crate::pack::{PACK_PREFIX_LEN, PACK_TRAILER_LEN, open_index, open_pack, open_trailer};
use crate::{
    BlobId, DeviceId, DevicePublicKeys, FileDecryptor, HistoryVerifier, Listing, MAX_BLOB_PLAINTEXT, Manifest, ObjectType,
    RecoveryKey, RevisionHeader, open_revision, peek_type, unwrap_collection_key, unwrap_on_device,
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
];
