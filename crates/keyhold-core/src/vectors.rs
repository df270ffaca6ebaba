//! Test vectors (`docs/spec/vectors/*.json`), checked both ways:
//! `generated_vectors_match_the_files` regenerates every vector from fixed
//! seeds and compares it with the file (set `KEYHOLD_UPDATE_VECTORS=1` to
//! rewrite the files after a deliberate format change — which also needs a
//! new format version); `every_vector_file_verifies` reads each file and
//! checks it using only the file's contents, as a second implementation
//! would. Each file holds one case and names the result it expects: `ok` or
//! the `Error` variant.
//!
//! Conventions: byte strings are lower-case hex; `xof:<label>:<len>` as
//! file content means the first `len` bytes of the BLAKE3 XOF of the UTF-8
//! label (unkeyed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::as_conversions)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::chain::{CHAIN_GENESIS_PREV, ChainChange, ChainEntry, ChainHead, DeviceChain, Signer, root_commitment};
use crate::chunking::MAX_CHUNK;
use crate::collection::CollectionKeys;
use crate::device::{DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::envelope::ObjectType;
use crate::error::{Error, Result};
use crate::ids::{AccountId, BlobId, CollectionId, DeviceId, FileId, ObjectId};
use crate::pack::{PackBuilder, open_pack};
use crate::pairing::{JoinerHello, JoinerPake, PAKE_MESSAGE_LEN, PairingCode, PairingKeys, Welcome, inviter_respond};
use crate::recovery::{KdfParams, RecoveryKey};
use crate::revision::{GENESIS_PREV, HistoryVerifier, Revision, VerifiedRevision, open_revision, seal_revision};
use crate::secret::{AccountRootKey, CollectionKey};
use crate::stream::{FileDecryptor, FileEncryptor};
use crate::tree::{BlobRef, Entry, EntryKind, FileMeta, Listing};
use crate::wrap::{
    CollectionWrapContext, unwrap_collection_key, unwrap_on_device, unwrap_previous_root, wrap_collection_key,
    wrap_previous_root, wrap_to_device,
};

// ---------------------------------------------------------------- helpers

// The RNGs that record and replay a vector's randomness, shared with the
// integration tests' vector files.
#[path = "../tests/support/vector_files.rs"]
mod vector_files;
use vector_files::{RecordingRng, ReplayRng};

fn xof(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(label.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// Content of a file named `xof:<label>:<len>`.
fn content(spec: &str) -> Vec<u8> {
    let mut parts = spec.splitn(3, ':');
    assert_eq!(parts.next(), Some("xof"));
    let label = parts.next().unwrap();
    let len: usize = parts.next().unwrap().parse().unwrap();
    xof(label, len)
}

fn h(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("missing field {field}"))).unwrap()
}
fn h32(v: &Value, field: &str) -> [u8; 32] {
    h(v, field).try_into().unwrap()
}
fn h16(v: &Value, field: &str) -> [u8; 16] {
    h(v, field).try_into().unwrap()
}
fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("missing field {field}"))
}

fn error_name(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug.split(['(', ' ', '{']).next().unwrap_or_default().to_owned()
}

fn outcome(r: Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => error_name(&e),
    }
}

const COLLECTION_KEY: [u8; 32] = [0x11; 32];
const COLLECTION: CollectionId = CollectionId([0x22; 16]);
const ACCOUNT: AccountId = AccountId([0x33; 16]);
const ROOT_KEY: [u8; 32] = [0x44; 32];
const SIGNING_SEED: [u8; 32] = [0x55; 32];
const KEM_SEED: [u8; 32] = [0x66; 32];
const OTHER_SIGNING_SEED: [u8; 32] = [0x77; 32];
const OTHER_KEM_SEED: [u8; 32] = [0x88; 32];

fn keys_from(v: &Value) -> CollectionKeys {
    CollectionKeys::derive(
        &CollectionKey::from_bytes(h32(v, "collection_key")),
        CollectionId(h16(v, "collection_id")),
        u(v, "epoch") as u32,
    )
}

fn collection_inputs() -> Value {
    json!({"collection_key": hex::encode(COLLECTION_KEY), "collection_id": COLLECTION.to_hex(), "epoch": 1})
}

fn merge(a: Value, b: Value) -> Value {
    let (Value::Object(mut a), Value::Object(b)) = (a, b) else { panic!("objects only") };
    a.extend(b);
    Value::Object(a)
}

fn mutate(v: &Value, field: &str, f: impl FnOnce(&mut Vec<u8>)) -> Value {
    let mut bytes = h(v, field);
    f(&mut bytes);
    let mut out = v.clone();
    out[field] = json!(hex::encode(bytes));
    out
}

fn negative(base: &Value, description: &str, expect: &str, change: impl FnOnce(Value) -> Value) -> Value {
    let mut v = change(base.clone());
    v["description"] = json!(description);
    v["expect"] = json!(expect);
    v
}

// ------------------------------------------------------------- generation

fn derivation_vector() -> Value {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let device = DeviceSecret::from_seeds(&SIGNING_SEED, &KEM_SEED);
    let sample_id = keys.blob_id(ObjectType::Chunk, b"keyhold");
    let gear: Vec<String> = keys.chunker.gear_words().iter().take(8).map(|w| format!("{w:016x}")).collect();
    merge(
        collection_inputs(),
        json!({
            "kind": "derivation",
            "description": "every key derived from a collection key, a root key and device seeds",
            "expect": "ok",
            "account_root_key": hex::encode(ROOT_KEY),
            "signing_seed": hex::encode(SIGNING_SEED),
            "kem_seed": hex::encode(KEM_SEED),
            "blob_id_key": hex::encode(keys.blob_id.expose_secret()),
            "blob_key_root": hex::encode(keys.blob_key_root.expose_secret()),
            "pack_key_root": hex::encode(keys.pack_key_root.expose_secret()),
            "revision_key": hex::encode(keys.revision.expose_secret()),
            "gear_first_8": gear,
            "sample_chunk_plaintext": hex::encode(b"keyhold"),
            "sample_chunk_id": sample_id.to_hex(),
            "sample_chunk_key": hex::encode(keys.blob_key(ObjectType::Chunk, &sample_id).expose_secret()),
            "collection_wrap_kek": hex::encode(
                crate::kdf::derive(crate::kdf::context::COLLECTION_KEY_WRAP, &[&ROOT_KEY]).expose_secret()
            ),
            "device_public_keys": hex::encode(device.public().to_bytes()),
            "device_id": device.id().to_hex(),
            "account_id": ACCOUNT.to_hex(),
            "recovery_secret": hex::encode([0x99u8; 32]),
            "recovery_auth_public_key": hex::encode(RecoveryKey::from_bytes([0x99; 32]).auth_public_key()),
            "recovery_locator": hex::encode(RecoveryKey::from_bytes([0x99; 32]).locator()),
            "named_collection_id_default": CollectionId::named(&AccountRootKey::from_bytes(ROOT_KEY), "default").to_hex(),
        }),
    )
}

fn device_wrap_vectors() -> Vec<(String, Value)> {
    let device = DeviceSecret::from_seeds(&SIGNING_SEED, &KEM_SEED);
    let mut rng = RecordingRng::new(1);
    let wrap = wrap_to_device(&AccountRootKey::from_bytes(ROOT_KEY), device.public(), ACCOUNT, 3, &mut rng).unwrap();
    let base = json!({
        "kind": "device-wrap",
        "description": "the account root key wrapped to a device with HPKE (X-Wing, HKDF-SHA256, AES-256-GCM)",
        "expect": "ok",
        "signing_seed": hex::encode(SIGNING_SEED),
        "kem_seed": hex::encode(KEM_SEED),
        "account_id": ACCOUNT.to_hex(),
        "epoch": 3,
        "expected_epoch": 3,
        "account_root_key": hex::encode(ROOT_KEY),
        "encapsulation_randomness": rng.take(),
        "wrap": hex::encode(wrap),
    });
    vec![
        ("device-wrap-bad-magic", negative(&base, "magic bytes changed", "BadMagic", |v| mutate(&v, "wrap", |b| b[0] = b'X'))),
        (
            "device-wrap-bad-version",
            negative(&base, "format version 2", "UnsupportedVersion", |v| mutate(&v, "wrap", |b| b[4] = 2)),
        ),
        (
            "device-wrap-bad-suite",
            negative(&base, "unknown cipher suite", "UnsupportedSuite", |v| mutate(&v, "wrap", |b| b[5] = 0)),
        ),
        (
            "device-wrap-as-collection-wrap",
            negative(&base, "type byte says collection key wrap", "WrongObjectType", |v| mutate(&v, "wrap", |b| b[6] = 5)),
        ),
        (
            "device-wrap-flipped-ciphertext",
            negative(&base, "last ciphertext bit flipped", "DecryptionFailed", |v| {
                mutate(&v, "wrap", |b| *b.last_mut().unwrap() ^= 1)
            }),
        ),
        (
            "device-wrap-flipped-encapsulation",
            negative(&base, "a bit of the X-Wing ciphertext flipped", "DecryptionFailed", |v| {
                mutate(&v, "wrap", |b| b[100] ^= 0x80)
            }),
        ),
        (
            "device-wrap-wrong-epoch",
            negative(&base, "opened expecting another epoch", "ContextMismatch", |mut v| {
                v["expected_epoch"] = json!(4);
                v
            }),
        ),
        (
            "device-wrap-epoch-rewritten",
            negative(&base, "cleartext epoch rewritten to match the opener", "DecryptionFailed", |mut v| {
                v["expected_epoch"] = json!(4);
                mutate(&v, "wrap", |b| b[7 + 32 + 1 + 3] = 4)
            }),
        ),
        (
            "device-wrap-truncated",
            negative(&base, "last byte missing", "Truncated", |v| {
                mutate(&v, "wrap", |b| {
                    b.pop();
                })
            }),
        ),
        ("device-wrap-trailing", negative(&base, "one byte appended", "TrailingBytes", |v| mutate(&v, "wrap", |b| b.push(0)))),
        ("device-wrap", base),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

fn check_device_wrap(v: &Value) -> Result<()> {
    let device = DeviceSecret::from_seeds(&h32(v, "signing_seed"), &h32(v, "kem_seed"));
    let account = AccountId(h16(v, "account_id"));
    let key = unwrap_on_device(&h(v, "wrap"), &device, account, u(v, "expected_epoch") as u32)?;
    assert_eq!(key.expose_secret(), &h32(v, "account_root_key"));
    // Generation direction: the same randomness gives the same bytes.
    let mut rng = ReplayRng::new(&v["encapsulation_randomness"]);
    let again = wrap_to_device(&key, device.public(), account, u(v, "epoch") as u32, &mut rng)?;
    assert_eq!(hex::encode(again), v["wrap"].as_str().unwrap());
    Ok(())
}

fn recovery_vectors() -> Vec<(String, Value)> {
    let key = RecoveryKey::from_bytes([0x99; 32]);
    let mut rng = RecordingRng::new(2);
    let params = KdfParams::DEFAULT;
    let wrap = key.wrap(&AccountRootKey::from_bytes(ROOT_KEY), ACCOUNT, 0, params, &mut rng).unwrap();
    let base = json!({
        "kind": "recovery-wrap",
        "description": "the account root key wrapped under Argon2id(recovery key)",
        "expect": "ok",
        "recovery_key": key.display().unwrap().as_str(),
        "recovery_secret": hex::encode(key.expose_secret()),
        "account_id": ACCOUNT.to_hex(),
        "epoch": 0,
        "account_root_key": hex::encode(ROOT_KEY),
        "randomness": rng.take(),
        "wrap": hex::encode(wrap),
    });
    // Parameter fields sit after header (7), account (16) and epoch (4).
    let m_at = 7 + 16 + 4;
    vec![
        (
            "recovery-wrap-weak-kdf",
            negative(&base, "memory cost lowered to 32 MiB (below the floor)", "KdfTooWeak", |v| {
                mutate(&v, "wrap", |b| b[m_at..m_at + 4].copy_from_slice(&(32 * 1024u32).to_be_bytes()))
            }),
        ),
        (
            "recovery-wrap-costly-kdf",
            negative(&base, "iterations raised to 1000 (above the ceiling)", "KdfTooCostly", |v| {
                mutate(&v, "wrap", |b| b[m_at + 4..m_at + 8].copy_from_slice(&1000u32.to_be_bytes()))
            }),
        ),
        (
            "recovery-wrap-flipped",
            negative(&base, "a ciphertext bit flipped", "DecryptionFailed", |v| {
                mutate(&v, "wrap", |b| *b.last_mut().unwrap() ^= 4)
            }),
        ),
        (
            "recovery-key-typo",
            negative(&base, "one character of the recovery key mistyped", "InvalidRecoveryKey", |mut v| {
                let typed = v["recovery_key"].as_str().unwrap().to_owned();
                let swapped = if typed.starts_with('Z') { typed.replacen('Z', "Y", 1) } else { format!("Z{}", &typed[1..]) };
                v["recovery_key"] = json!(swapped);
                v
            }),
        ),
        ("recovery-wrap", base),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

fn check_recovery_wrap(v: &Value) -> Result<()> {
    let typed = v["recovery_key"].as_str().unwrap();
    let key = RecoveryKey::parse(typed)?;
    assert_eq!(key.expose_secret(), &h32(v, "recovery_secret"));
    // Lower case, spaces and O-for-0 are accepted too.
    assert!(RecoveryKey::parse(&typed.to_lowercase().replace('-', " ").replace('0', "o")).is_ok());
    let account = AccountId(h16(v, "account_id"));
    let root = key.unwrap(&h(v, "wrap"), account, u(v, "epoch") as u32)?;
    assert_eq!(root.expose_secret(), &h32(v, "account_root_key"));
    let mut rng = ReplayRng::new(&v["randomness"]);
    let again = key.wrap(&root, account, u(v, "epoch") as u32, KdfParams::DEFAULT, &mut rng)?;
    assert_eq!(hex::encode(again), v["wrap"].as_str().unwrap());
    Ok(())
}

fn collection_wrap_vectors() -> Vec<(String, Value)> {
    let mut rng = RecordingRng::new(3);
    let ctx = CollectionWrapContext { account: ACCOUNT, collection: COLLECTION, collection_epoch: 1, account_epoch: 3 };
    let wrap =
        wrap_collection_key(&CollectionKey::from_bytes(COLLECTION_KEY), &AccountRootKey::from_bytes(ROOT_KEY), &ctx, &mut rng)
            .unwrap();
    let base = json!({
        "kind": "collection-wrap",
        "description": "a collection key wrapped under the account root key",
        "expect": "ok",
        "account_root_key": hex::encode(ROOT_KEY),
        "account_id": ACCOUNT.to_hex(),
        "collection_id": COLLECTION.to_hex(),
        "collection_epoch": 1,
        "account_epoch": 3,
        "collection_key": hex::encode(COLLECTION_KEY),
        "randomness": rng.take(),
        "wrap": hex::encode(wrap),
    });
    vec![
        (
            "collection-wrap-other-collection",
            negative(&base, "opened for another collection", "ContextMismatch", |mut v| {
                v["collection_id"] = json!("00".repeat(16));
                v
            }),
        ),
        (
            "collection-wrap-flipped",
            negative(&base, "a tag bit flipped", "DecryptionFailed", |v| mutate(&v, "wrap", |b| *b.last_mut().unwrap() ^= 1)),
        ),
        ("collection-wrap", base),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

fn check_collection_wrap(v: &Value) -> Result<()> {
    let ctx = CollectionWrapContext {
        account: AccountId(h16(v, "account_id")),
        collection: CollectionId(h16(v, "collection_id")),
        collection_epoch: u(v, "collection_epoch") as u32,
        account_epoch: u(v, "account_epoch") as u32,
    };
    let root = AccountRootKey::from_bytes(h32(v, "account_root_key"));
    let key = unwrap_collection_key(&h(v, "wrap"), &root, &ctx)?;
    assert_eq!(key.expose_secret(), &h32(v, "collection_key"));
    let mut rng = ReplayRng::new(&v["randomness"]);
    assert_eq!(hex::encode(wrap_collection_key(&key, &root, &ctx, &mut rng)?), v["wrap"].as_str().unwrap());
    Ok(())
}

fn chunking_vector() -> Value {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let spec = "xof:keyhold chunking vector:16000000";
    let data = content(spec);
    let lengths = keys.chunker.chunk_lengths(&data);
    let mut ids = Vec::new();
    let mut at = 0;
    for len in &lengths {
        ids.push(keys.blob_id(ObjectType::Chunk, &data[at..at + len]).to_hex());
        at += len;
    }
    merge(
        collection_inputs(),
        json!({
            "kind": "chunking",
            "description": "keyed FastCDC boundaries and chunk ids of a 16,000,000-byte input",
            "expect": "ok",
            "content": spec,
            "chunk_lengths": lengths,
            "chunk_ids": ids,
        }),
    )
}

fn check_chunking(v: &Value) -> Result<()> {
    let keys = keys_from(v);
    let data = content(v["content"].as_str().unwrap());
    let lengths: Vec<u64> = keys.chunker.chunk_lengths(&data).into_iter().map(|l| l as u64).collect();
    let expected: Vec<u64> = v["chunk_lengths"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(lengths, expected);
    let mut at = 0;
    for (len, id) in expected.iter().zip(v["chunk_ids"].as_array().unwrap()) {
        let len = *len as usize;
        assert_eq!(keys.blob_id(ObjectType::Chunk, &data[at..at + len]).to_hex(), id.as_str().unwrap());
        at += len;
    }
    Ok(())
}

fn file_meta(v: &Value) -> FileMeta {
    FileMeta {
        file_id: FileId(h16(v, "file_id")),
        version: u(v, "version"),
        name: v["name"].as_str().unwrap().to_owned(),
        mode: u(v, "mode") as u32,
        mtime_ns: v["mtime_ns"].as_i64().unwrap(),
    }
}

fn encrypt_file(
    keys: &CollectionKeys,
    data: &[u8],
    meta: FileMeta,
) -> (Vec<crate::SealedBlob>, crate::Manifest, crate::SealedBlob) {
    let mut enc = FileEncryptor::new(keys);
    let mut chunks = Vec::new();
    // Feed in uneven pieces: boundaries must not depend on how data arrives.
    for piece in data.chunks(1_000_003) {
        enc.update(piece, &mut chunks).unwrap();
    }
    let (manifest, sealed) = enc.finish(meta, &mut chunks).unwrap();
    (chunks, manifest, sealed)
}

fn file_vectors() -> Vec<(String, Value)> {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let spec = "xof:keyhold file vector:6000000";
    let base_inputs = merge(
        collection_inputs(),
        json!({
            "content": spec,
            "file_id": "ab".repeat(16),
            "version": 2,
            "name": "Отчёт 2026.pdf",
            "mode": 0o644,
            "mtime_ns": 1_795_000_000_123_456_789i64,
        }),
    );
    let (chunks, manifest, sealed) = encrypt_file(&keys, &content(spec), file_meta(&base_inputs));
    let base = merge(
        base_inputs,
        json!({
            "kind": "file",
            "description": "a 6,000,000-byte file: chunk ids and ciphertext hashes, its manifest and sealed manifest",
            "expect": "ok",
            "mutation": "none",
            "chunk_ids": manifest.chunks.iter().map(|c| c.id.to_hex()).collect::<Vec<_>>(),
            "chunk_lengths": manifest.chunks.iter().map(|c| c.len).collect::<Vec<_>>(),
            "chunk_ciphertext_blake3": chunks.iter().map(|c| blake3::hash(&c.ciphertext).to_hex().to_string()).collect::<Vec<_>>(),
            "manifest": hex::encode(manifest.encode().unwrap()),
            "manifest_id": sealed.id.to_hex(),
            "manifest_ciphertext": hex::encode(&sealed.ciphertext),
        }),
    );
    let with = |name: &str, description: &str, expect: &str, mutation: &str| {
        (
            name.to_owned(),
            negative(&base, description, expect, |mut v| {
                v["mutation"] = json!(mutation);
                v
            }),
        )
    };
    vec![
        with("file-chunks-swapped", "the server swaps the first two chunks", "DecryptionFailed", "swap 0 1"),
        with("file-chunk-flipped", "one bit of chunk 1 flipped", "DecryptionFailed", "flip 1"),
        with("file-last-chunk-dropped", "the last chunk is withheld", "MissingChunks", "drop-last"),
        with("file-chunk-spliced", "a chunk of another file in place of chunk 0", "DecryptionFailed", "splice 0"),
        with("file-chunk-as-manifest", "the manifest blob served as chunk 0", "DecryptionFailed", "manifest-as-chunk 0"),
        with("file-extra-chunk", "one chunk too many", "UnexpectedChunk", "append"),
        ("file".to_owned(), base),
    ]
}

fn check_file(v: &Value) -> Result<()> {
    let keys = keys_from(v);
    let data = content(v["content"].as_str().unwrap());
    let (mut chunks, manifest, sealed) = encrypt_file(&keys, &data, file_meta(v));
    // Generation direction.
    let ids: Vec<&str> = v["chunk_ids"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(manifest.chunks.iter().map(|c| c.id.to_hex()).collect::<Vec<_>>(), ids);
    for (c, expected) in chunks.iter().zip(v["chunk_ciphertext_blake3"].as_array().unwrap()) {
        assert_eq!(blake3::hash(&c.ciphertext).to_hex().as_str(), expected.as_str().unwrap());
    }
    assert_eq!(hex::encode(manifest.encode()?), v["manifest"].as_str().unwrap());
    assert_eq!(hex::encode(&sealed.ciphertext), v["manifest_ciphertext"].as_str().unwrap());
    // Parse direction: the stored manifest opens, then the chunks as mutated.
    let manifest_id = BlobId(h32(v, "manifest_id"));
    let opened = keys.open_manifest(&manifest_id, h(v, "manifest_ciphertext"))?;
    let mut served: Vec<Vec<u8>> = chunks.drain(..).map(|c| c.ciphertext).collect();
    let words: Vec<&str> = v["mutation"].as_str().unwrap().split(' ').collect();
    match words.as_slice() {
        ["none"] => {}
        ["swap", a, b] => served.swap(a.parse().unwrap(), b.parse().unwrap()),
        ["flip", i] => served[i.parse::<usize>().unwrap()][10] ^= 1,
        ["drop-last"] => drop(served.pop()),
        ["splice", i] => {
            let other = encrypt_file(&keys, &content("xof:another file:300000"), file_meta(v)).0;
            served[i.parse::<usize>().unwrap()] = other[0].ciphertext.clone();
        }
        ["manifest-as-chunk", i] => served[i.parse::<usize>().unwrap()] = h(v, "manifest_ciphertext"),
        ["append"] => served.push(served[0].clone()),
        other => panic!("unknown mutation {other:?}"),
    }
    let mut dec = FileDecryptor::new(&keys, opened);
    let mut out = Vec::new();
    for ct in served {
        out.extend_from_slice(&dec.open_next(ct)?);
    }
    dec.finish()?;
    assert_eq!(out, data);
    Ok(())
}

fn listing_fixture(keys: &CollectionKeys) -> Listing {
    let target = |n: u8| BlobRef { epoch: keys.epoch, id: BlobId([n; 32]) };
    Listing::new(vec![
        Entry { name: "notes".into(), kind: EntryKind::Folder, mode: 0o755, mtime_ns: 1, size: 0, target: target(1) },
        Entry { name: "a.txt".into(), kind: EntryKind::File, mode: 0o644, mtime_ns: -5, size: 12, target: target(2) },
        Entry { name: "日記.md".into(), kind: EntryKind::File, mode: 0o600, mtime_ns: 7, size: 0, target: target(3) },
    ])
    .unwrap()
}

fn listing_vectors() -> Vec<(String, Value)> {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let listing = listing_fixture(&keys);
    let sealed = keys.seal_listing(&listing).unwrap();
    let plain = listing.encode().unwrap();
    let base = merge(
        collection_inputs(),
        json!({
            "kind": "listing",
            "description": "a folder of three entries, encoded and sealed",
            "expect": "ok",
            "listing": hex::encode(&plain),
            "listing_id": sealed.id.to_hex(),
            "listing_ciphertext": hex::encode(&sealed.ciphertext),
        }),
    );
    // A validly sealed but malformed listing: what a buggy or hostile writer
    // device could produce. The reader must still refuse it.
    let reseal = |v: Value, plain: Vec<u8>| {
        let sealed = keys.seal_blob(ObjectType::Listing, &plain).unwrap();
        let mut v = v;
        v["listing"] = json!(hex::encode(&plain));
        v["listing_id"] = json!(sealed.id.to_hex());
        v["listing_ciphertext"] = json!(hex::encode(&sealed.ciphertext));
        v
    };
    let entry_len = |name: &str| 1 + 2 + name.len() + 4 + 8 + 8 + 36;
    let first = entry_len("a.txt");
    let second = entry_len("notes");
    let mut unsorted = plain.clone();
    unsorted[4..4 + first + second].rotate_left(first);
    let mut bad_name = plain.clone();
    bad_name[4 + 3] = b'/';
    vec![
        ("listing-unsorted".to_owned(), negative(&base, "entries out of order", "Malformed", |v| reseal(v, unsorted))),
        ("listing-slash-in-name".to_owned(), negative(&base, "a name containing '/'", "InvalidName", |v| reseal(v, bad_name))),
        (
            "listing-flipped".to_owned(),
            negative(&base, "a ciphertext bit flipped", "DecryptionFailed", |v| mutate(&v, "listing_ciphertext", |b| b[3] ^= 1)),
        ),
        (
            "listing-as-manifest".to_owned(),
            negative(&base, "the listing opened as a manifest", "DecryptionFailed", |mut v| {
                v["open_as"] = json!("manifest");
                v
            }),
        ),
        ("listing".to_owned(), base),
    ]
}

fn check_listing(v: &Value) -> Result<()> {
    let keys = keys_from(v);
    let id = BlobId(h32(v, "listing_id"));
    if v["open_as"].as_str() == Some("manifest") {
        keys.open_manifest(&id, h(v, "listing_ciphertext"))?;
        return Ok(());
    }
    let listing = keys.open_listing(&id, h(v, "listing_ciphertext"))?;
    assert_eq!(hex::encode(listing.encode()?), v["listing"].as_str().unwrap());
    assert_eq!(hex::encode(keys.seal_listing(&listing)?.ciphertext), v["listing_ciphertext"].as_str().unwrap());
    Ok(())
}

fn pack_vectors() -> Vec<(String, Value)> {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let mut rng = RecordingRng::new(4);
    let inputs = merge(
        collection_inputs(),
        json!({"content": "xof:keyhold small file:100", "file_id": "cd".repeat(16), "version": 1, "name": "small", "mode": 0o644, "mtime_ns": 0}),
    );
    let (chunks, _, manifest) = encrypt_file(&keys, &content("xof:keyhold small file:100"), file_meta(&inputs));
    let mut builder = PackBuilder::new(&keys, &mut rng);
    for blob in chunks.iter().chain([&manifest]) {
        builder.push(blob).unwrap();
    }
    let (id, pack, entries) = builder.finish(&keys).unwrap();
    let base = merge(
        inputs,
        json!({
            "kind": "pack",
            "description": "a pack holding a 100-byte file's chunk and manifest",
            "expect": "ok",
            "randomness": rng.take(),
            "pack": hex::encode(&pack),
            "pack_id": id.to_hex(),
            "entries": entries.iter().map(|e| json!({"type": e.kind.byte(), "id": e.id.to_hex(), "offset": e.offset, "len": e.len})).collect::<Vec<_>>(),
        }),
    );
    let len = pack.len();
    vec![
        (
            "pack-padding-flipped".to_owned(),
            negative(&base, "a byte of the sealed index's tag flipped", "DecryptionFailed", |v| {
                mutate(&v, "pack", |b| b[len - 30] ^= 1)
            }),
        ),
        (
            "pack-truncated".to_owned(),
            negative(&base, "the trailer cut short", "DecryptionFailed", |v| {
                mutate(&v, "pack", |b| {
                    b.pop();
                })
            }),
        ),
        (
            "pack-other-epoch".to_owned(),
            negative(&base, "opened with keys of another epoch", "ContextMismatch", |mut v| {
                v["epoch"] = json!(2);
                v
            }),
        ),
        ("pack".to_owned(), base),
    ]
}

fn check_pack(v: &Value) -> Result<()> {
    let keys = keys_from(v);
    let pack = h(v, "pack");
    let entries = open_pack(&keys, &pack)?;
    assert_eq!(ObjectId::of(&pack).to_hex(), v["pack_id"].as_str().unwrap());
    assert_eq!(pack.len() as u64, crate::padme(pack.len() as u64), "pack length is a Padmé length");
    let expected = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), expected.len());
    for (e, x) in entries.iter().zip(expected) {
        assert_eq!(
            (e.kind.byte() as u64, e.id.to_hex(), e.offset as u64, e.len as u64),
            (u(x, "type"), x["id"].as_str().unwrap().to_owned(), u(x, "offset"), u(x, "len"))
        );
        keys.open_blob(e.kind, &e.id, e.slice(&pack)?.to_vec())?;
    }
    // Generation direction.
    let (chunks, _, manifest) = encrypt_file(&keys, &content(v["content"].as_str().unwrap()), file_meta(v));
    let mut builder = PackBuilder::new(&keys, &mut ReplayRng::new(&v["randomness"]));
    for blob in chunks.iter().chain([&manifest]) {
        builder.push(blob)?;
    }
    assert_eq!(hex::encode(builder.finish(&keys)?.1), v["pack"].as_str().unwrap());
    Ok(())
}

fn revision_vectors() -> Vec<(String, Value)> {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let device = DeviceSecret::from_seeds(&SIGNING_SEED, &KEM_SEED);
    let other = DeviceSecret::from_seeds(&OTHER_SIGNING_SEED, &OTHER_KEM_SEED);
    let mut rng = RecordingRng::new(5);
    let mut chain = Vec::new();
    let mut prev = GENESIS_PREV;
    for seq in 0..3u64 {
        let rev = Revision {
            collection: COLLECTION,
            seq,
            prev,
            epoch: 1,
            root: BlobRef { epoch: 1, id: BlobId([seq as u8 + 1; 32]) },
            author: device.id(),
            time_ms: 1_795_000_000_000 + seq as i64,
        };
        let (id, stored) = seal_revision(&keys, &rev, &device, &mut rng).unwrap();
        chain.push(json!({"id": id.to_hex(), "stored": hex::encode(stored), "randomness": rng.take()}));
        prev = id;
    }
    // A revision 1 that forks from the same revision 0.
    let fork = Revision {
        collection: COLLECTION,
        seq: 1,
        prev: ObjectId(h32(&chain[0], "id")),
        epoch: 1,
        root: BlobRef { epoch: 1, id: BlobId([0xEE; 32]) },
        author: device.id(),
        time_ms: 1_795_000_000_001,
    };
    let (fork_id, fork_stored) = seal_revision(&keys, &fork, &device, &mut rng).unwrap();
    let fork_json = json!({"id": fork_id.to_hex(), "stored": hex::encode(fork_stored), "randomness": rng.take()});
    // A revision claiming `device` as author but signed by `other`.
    let forged = Revision { author: other.id(), ..fork.clone() };
    let (_, mut forged_stored) = seal_revision(&keys, &forged, &other, &mut rng).unwrap();
    let mut fields = crate::revision::tests_support::open_body(&keys, &forged_stored);
    fields[36..52].copy_from_slice(device.id().as_bytes());
    forged_stored = crate::revision::tests_support::reseal_body(&keys, &forged_stored, &fields);
    let forged_json =
        json!({"id": ObjectId::of(&forged_stored).to_hex(), "stored": hex::encode(&forged_stored), "randomness": ""});
    let base = merge(
        collection_inputs(),
        json!({
            "kind": "revision-chain",
            "description": "three revisions signed by one device, accepted in order",
            "expect": "ok",
            "signing_seed": hex::encode(SIGNING_SEED),
            "kem_seed": hex::encode(KEM_SEED),
            "chain": chain,
            "last_seen": null,
        }),
    );
    let with_chain = |name: &str, description: &str, expect: &str, chain: Vec<Value>, last_seen: Value| {
        (
            name.to_owned(),
            negative(&base, description, expect, |mut v| {
                v["chain"] = json!(chain);
                v["last_seen"] = last_seen;
                v
            }),
        )
    };
    let seen = |i: usize| json!({"seq": i, "id": chain[i]["id"]});
    vec![
        with_chain(
            "revision-reordered",
            "revisions 1 and 2 swapped",
            "MissingRevisions",
            vec![chain[0].clone(), chain[2].clone(), chain[1].clone()],
            json!(null),
        ),
        with_chain(
            "revision-gap",
            "revision 1 withheld",
            "MissingRevisions",
            vec![chain[0].clone(), chain[2].clone()],
            json!(null),
        ),
        with_chain(
            "revision-rollback",
            "the server offers revision 1 after revision 2 was seen",
            "Rollback",
            vec![chain[1].clone()],
            seen(2),
        ),
        with_chain("revision-fork", "a different revision 1 after revision 1 was seen", "Fork", vec![fork_json.clone()], seen(1)),
        with_chain(
            "revision-fork-meets",
            "a chain that extends a different revision 1",
            "Fork",
            vec![chain[2].clone()],
            json!({"seq": 1, "id": fork_json["id"]}),
        ),
        with_chain(
            "revision-forged-author",
            "signed by another device in this device's name",
            "BadSignature",
            vec![chain[0].clone(), forged_json],
            json!(null),
        ),
        (
            "revision-unknown-author".to_owned(),
            negative(&base, "signed by a device the reader does not know", "UnknownAuthor", |mut v| {
                v["signing_seed"] = json!(hex::encode(OTHER_SIGNING_SEED));
                v["kem_seed"] = json!(hex::encode(OTHER_KEM_SEED));
                v
            }),
        ),
        (
            "revision-other-collection".to_owned(),
            negative(&base, "opened as a revision of another collection", "ContextMismatch", |mut v| {
                v["collection_id"] = json!("00".repeat(16));
                v
            }),
        ),
        (
            "revision-flipped".to_owned(),
            negative(&base, "a bit of revision 0's ciphertext flipped", "DecryptionFailed", |mut v| {
                v["chain"][0] = mutate(&v["chain"][0], "stored", |b| b[REV_BODY_AT + 3] ^= 1);
                v
            }),
        ),
        ("revision-chain".to_owned(), base),
    ]
}

const REV_BODY_AT: usize = crate::revision::REVISION_HEADER_LEN + 12;

fn check_revision_chain(v: &Value) -> Result<()> {
    let keys = keys_from(v);
    let device = DeviceSecret::from_seeds(&h32(v, "signing_seed"), &h32(v, "kem_seed"));
    let known: BTreeMap<DeviceId, DevicePublicKeys> = [(device.id(), device.public().clone())].into();
    let mut verified: Vec<VerifiedRevision> = Vec::new();
    for link in v["chain"].as_array().unwrap() {
        let stored = h(link, "stored");
        let rev = open_revision(&keys, &stored, |id| known.get(id))?;
        assert_eq!(rev.id.to_hex(), link["id"].as_str().unwrap());
        // Generation direction, where the link records its randomness.
        if let Some(r) = link["randomness"].as_str().filter(|r| !r.is_empty()) {
            let (_, again) = seal_revision(&keys, &rev.revision, &device, &mut ReplayRng::from_hex(r))?;
            assert_eq!(again, stored);
        }
        verified.push(rev);
    }
    let last = match &v["last_seen"] {
        Value::Null => None,
        seen => Some(crate::Head { seq: u(seen, "seq"), id: ObjectId(h32(seen, "id")) }),
    };
    let mut verifier = HistoryVerifier::new(keys.collection(), last);
    if let Some(first) = verified.first() {
        // A device first compares the offered head with the one it saw…
        verifier.check_offered(verified.last().unwrap_or(first).head())?;
    }
    // …then accepts only a chain that extends it.
    verifier.extend(&verified)?;
    Ok(())
}

// ------------------------------------------------------------ device chain

const RECOVERY_SECRET: [u8; 32] = [0x99; 32];
const NEW_RECOVERY_SECRET: [u8; 32] = [0x9a; 32];
const THIRD_SIGNING_SEED: [u8; 32] = [0xaa; 32];
const THIRD_KEM_SEED: [u8; 32] = [0xbb; 32];
const OUTSIDER_SIGNING_SEED: [u8; 32] = [0xcc; 32];
const OUTSIDER_KEM_SEED: [u8; 32] = [0xdd; 32];
const CHAIN_TIME_MS: i64 = 1_795_000_000_000;
/// The chain entry signature context (`chain.rs`), for re-signing edited entries.
const CHAIN_SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-11 device chain entry\0";
/// Length of an entry's fixed fields, envelope to signer id.
const CHAIN_FIXED_LEN: usize = 7 + 16 + 8 + 32 + 8 + 4 + 1 + 1 + 16;

/// The root key of account key epoch `epoch` in the chain vectors (epoch 0's is `ROOT_KEY`).
fn chain_root(epoch: u32) -> AccountRootKey {
    AccountRootKey::from_bytes([0x44 + epoch as u8; 32])
}

/// Devices A (the first), B, C and the outsider D; then the recovery keys R0 and R1.
fn chain_devices() -> [DeviceSecret; 4] {
    [
        DeviceSecret::from_seeds(&SIGNING_SEED, &KEM_SEED),
        DeviceSecret::from_seeds(&OTHER_SIGNING_SEED, &OTHER_KEM_SEED),
        DeviceSecret::from_seeds(&THIRD_SIGNING_SEED, &THIRD_KEM_SEED),
        DeviceSecret::from_seeds(&OUTSIDER_SIGNING_SEED, &OUTSIDER_KEM_SEED),
    ]
}

fn chain_key_inputs() -> Value {
    let devices: Vec<Value> = chain_devices()
        .iter()
        .map(|d| {
            let (s, k) = d.expose_seeds();
            json!({"signing_seed": hex::encode(*s), "kem_seed": hex::encode(*k), "device_id": d.id().to_hex()})
        })
        .collect();
    let recovery: Vec<Value> = [RECOVERY_SECRET, NEW_RECOVERY_SECRET]
        .iter()
        .map(|secret| {
            let d = RecoveryKey::from_bytes(*secret).device();
            let (s, k) = d.expose_seeds();
            json!({
                "recovery_secret": hex::encode(secret),
                "signing_seed": hex::encode(*s),
                "kem_seed": hex::encode(*k),
                "device_id": d.id().to_hex(),
            })
        })
        .collect();
    json!({"devices": devices, "recovery_keys": recovery})
}

/// Every key a chain vector lists, by device id. Recovery keys are rebuilt
/// from their secrets and checked against the listed seeds and id.
fn chain_keys(v: &Value) -> BTreeMap<String, DeviceSecret> {
    let mut keys = BTreeMap::new();
    for d in v["devices"].as_array().unwrap() {
        let secret = DeviceSecret::from_seeds(&h32(d, "signing_seed"), &h32(d, "kem_seed"));
        assert_eq!(secret.id().to_hex(), d["device_id"].as_str().unwrap());
        keys.insert(secret.id().to_hex(), secret);
    }
    for r in v["recovery_keys"].as_array().unwrap() {
        let secret = RecoveryKey::from_bytes(h32(r, "recovery_secret")).device();
        let (s, k) = secret.expose_seeds();
        assert_eq!((*s, *k), (h32(r, "signing_seed"), h32(r, "kem_seed")));
        assert_eq!(secret.id().to_hex(), r["device_id"].as_str().unwrap());
        keys.insert(secret.id().to_hex(), secret);
    }
    keys
}

fn entry_fields(e: &ChainEntry) -> Value {
    let (signer, signer_id) = match e.signer {
        Signer::Device(id) => ("device", id.to_hex()),
        Signer::RecoveryKey => ("recovery", "00".repeat(16)),
    };
    let common = json!({
        "seq": e.seq,
        "prev": e.prev.to_hex(),
        "time_ms": e.time_ms,
        "account_epoch": e.account_epoch,
        "signer": signer,
        "signer_id": signer_id,
    });
    let change = match &e.change {
        ChainChange::Create { device, name, recovery, root_commitment } => json!({
            "kind": "create",
            "device": device.id().to_hex(),
            "name": name,
            "recovery": recovery.id().to_hex(),
            "root_commitment": hex::encode(root_commitment),
        }),
        ChainChange::AddDevice { device, name } => json!({"kind": "add-device", "device": device.id().to_hex(), "name": name}),
        ChainChange::RevokeDevice { device, root_commitment, cutoffs } => json!({
            "kind": "revoke-device",
            "device": device.to_hex(),
            "root_commitment": hex::encode(root_commitment),
            "cutoffs": cutoffs.iter().map(|(c, s)| json!({"collection_id": c.to_hex(), "seq": s})).collect::<Vec<_>>(),
        }),
        ChainChange::RotateRecovery { recovery, root_commitment } => json!({
            "kind": "rotate-recovery",
            "recovery": recovery.id().to_hex(),
            "root_commitment": hex::encode(root_commitment),
        }),
    };
    merge(common, change)
}

fn entry_from_fields(f: &Value, account: AccountId, keys: &BTreeMap<String, DeviceSecret>) -> ChainEntry {
    let public = |field: &str| keys[f[field].as_str().unwrap()].public().clone();
    let name = || f["name"].as_str().unwrap().to_owned();
    let signer = match f["signer"].as_str().unwrap() {
        "device" => Signer::Device(DeviceId(h16(f, "signer_id"))),
        "recovery" => Signer::RecoveryKey,
        other => panic!("unknown signer {other}"),
    };
    let change = match f["kind"].as_str().unwrap() {
        "create" => ChainChange::Create {
            device: public("device"),
            name: name(),
            recovery: public("recovery"),
            root_commitment: h32(f, "root_commitment"),
        },
        "add-device" => ChainChange::AddDevice { device: public("device"), name: name() },
        "revoke-device" => ChainChange::RevokeDevice {
            device: DeviceId(h16(f, "device")),
            root_commitment: h32(f, "root_commitment"),
            cutoffs: f["cutoffs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (CollectionId(h16(c, "collection_id")), u(c, "seq")))
                .collect(),
        },
        "rotate-recovery" => {
            ChainChange::RotateRecovery { recovery: public("recovery"), root_commitment: h32(f, "root_commitment") }
        }
        other => panic!("unknown entry kind {other}"),
    };
    ChainEntry {
        account,
        seq: u(f, "seq"),
        prev: ObjectId(h32(f, "prev")),
        time_ms: f["time_ms"].as_i64().unwrap(),
        account_epoch: u(f, "account_epoch") as u32,
        signer,
        change,
    }
}

/// An entry sealed by `key`, with the fields it was made from.
fn chain_link(entry: &ChainEntry, key: &DeviceSecret) -> Value {
    let stored = entry.seal(key).unwrap();
    json!({
        "id": ObjectId::of(&stored).to_hex(),
        "signed_with": key.id().to_hex(),
        "fields": entry_fields(entry),
        "stored": hex::encode(&stored),
    })
}

/// An entry no honest writer produces from fields: bytes only.
fn raw_link(stored: &[u8]) -> Value {
    json!({"id": ObjectId::of(stored).to_hex(), "signed_with": null, "fields": null, "stored": hex::encode(stored)})
}

/// The honest chain of the vectors: A creates the account (recovery key
/// R0), adds B; R0 adds C; A revokes B with two cutoffs (epoch 1); C
/// replaces R0 by R1 (epoch 2).
fn chain_links() -> Vec<Value> {
    let [a, b, c, _] = chain_devices();
    let (r0, r1) = (RecoveryKey::from_bytes(RECOVERY_SECRET).device(), RecoveryKey::from_bytes(NEW_RECOVERY_SECRET).device());
    let commit = |e: u32| root_commitment(&chain_root(e), ACCOUNT, e);
    let mut links: Vec<Value> = Vec::new();
    let steps: Vec<(u32, Signer, ChainChange, &DeviceSecret)> = vec![
        (
            0,
            Signer::Device(a.id()),
            ChainChange::Create {
                device: a.public().clone(),
                name: "desktop".into(),
                recovery: r0.public().clone(),
                root_commitment: commit(0),
            },
            &a,
        ),
        (0, Signer::Device(a.id()), ChainChange::AddDevice { device: b.public().clone(), name: "laptop".into() }, &a),
        (0, Signer::RecoveryKey, ChainChange::AddDevice { device: c.public().clone(), name: "phone ☎".into() }, &r0),
        (
            1,
            Signer::Device(a.id()),
            ChainChange::RevokeDevice {
                device: b.id(),
                root_commitment: commit(1),
                cutoffs: [(COLLECTION, 7), (CollectionId([0x05; 16]), 2)].into(),
            },
            &a,
        ),
        (
            2,
            Signer::Device(c.id()),
            ChainChange::RotateRecovery { recovery: r1.public().clone(), root_commitment: commit(2) },
            &c,
        ),
    ];
    for (seq, (epoch, signer, change, key)) in steps.into_iter().enumerate() {
        let entry = chain_next(links.last(), seq as u64, epoch, signer, change);
        links.push(chain_link(&entry, key));
    }
    links
}

fn chain_next(prev: Option<&Value>, seq: u64, account_epoch: u32, signer: Signer, change: ChainChange) -> ChainEntry {
    ChainEntry {
        account: ACCOUNT,
        seq,
        prev: prev.map_or(CHAIN_GENESIS_PREV, |p| ObjectId(h32(p, "id"))),
        time_ms: CHAIN_TIME_MS + seq as i64 * 60_000,
        account_epoch,
        signer,
        change,
    }
}

fn device_chain_vectors() -> Vec<(String, Value)> {
    let [a, b, c, d] = chain_devices();
    let r0 = RecoveryKey::from_bytes(RECOVERY_SECRET).device();
    let r1 = RecoveryKey::from_bytes(NEW_RECOVERY_SECRET).device();
    let links = chain_links();
    let query = |who: &DeviceSecret, collection: CollectionId, seq: u64, allowed: bool| json!({"device": who.id().to_hex(), "collection_id": collection.to_hex(), "seq": seq, "allowed": allowed});
    let before_revocation = vec![query(&a, COLLECTION, 0, true), query(&d, COLLECTION, 0, false)];
    let after_revocation = vec![
        query(&b, CollectionId([0x05; 16]), 2, true),
        query(&b, CollectionId([0x05; 16]), 3, false),
        query(&b, COLLECTION, 7, true),
        query(&b, COLLECTION, 8, false),
        query(&b, CollectionId([0x77; 16]), 0, false),
        query(&a, CollectionId([0x77; 16]), 1_000_000, true),
        query(&d, COLLECTION, 0, false),
    ];
    let vector = |description: &str, count: usize, active: &[&DeviceSecret], recovery: &DeviceSecret, may_author: &[Value]| {
        let entries = &links[..count];
        let mut active: Vec<String> = active.iter().map(|d| d.id().to_hex()).collect();
        active.sort();
        let epoch = entries.last().unwrap()["fields"]["account_epoch"].as_u64().unwrap() as u32;
        merge(
            chain_key_inputs(),
            json!({
                "kind": "device-chain",
                "description": description,
                "expect": "ok",
                "account_id": ACCOUNT.to_hex(),
                "entries": entries,
                "head": {"seq": count - 1, "id": entries[count - 1]["id"]},
                "epoch": epoch,
                "root_keys": (0..=epoch).map(|e| hex::encode(chain_root(e).expose_secret())).collect::<Vec<_>>(),
                "active_devices": active,
                "recovery": recovery.id().to_hex(),
                "may_author": may_author,
            }),
        )
    };
    let create = vector("the creation entry: device A, recovery key R0, epoch 0", 1, &[&a], &r0, &before_revocation);
    let add = vector("A adds device B; the recovery key R0 adds device C", 3, &[&a, &b, &c], &r0, &before_revocation);
    let revoke = vector("A revokes B with cutoffs in two collections, starting epoch 1", 4, &[&a, &c], &r0, &after_revocation);
    let rotate = vector("C replaces the recovery key R0 by R1, starting epoch 2", 5, &[&a, &c], &r1, &after_revocation);

    let with = |base: &Value, description: &str, expect: &str, entries: Vec<Value>| {
        negative(base, description, expect, |mut v| {
            v["entries"] = json!(entries);
            v
        })
    };
    let l = |i: usize| links[i].clone();
    let mut flipped = h(&links[1], "stored");
    *flipped.last_mut().unwrap() ^= 1;
    let mut unsorted = h(&links[3], "stored");
    let first_cutoff = CHAIN_FIXED_LEN + 16 + 32 + 4;
    unsorted[first_cutoff..first_cutoff + 48].rotate_left(24);
    unsorted.truncate(unsorted.len() - SIGNATURE_LEN);
    let message = [CHAIN_SIGNATURE_CONTEXT, &unsorted].concat();
    let signature = a.sign(&message);
    unsorted.extend_from_slice(&signature);
    let mut trailing = h(&links[3], "stored");
    trailing.push(0);
    let add_d = |name: &str| ChainChange::AddDevice { device: d.public().clone(), name: name.into() };
    let commit1 = root_commitment(&chain_root(1), ACCOUNT, 1);
    vec![
        ("device-chain-create".to_owned(), create.clone()),
        ("device-chain-add-device".to_owned(), add),
        ("device-chain-revoke".to_owned(), revoke.clone()),
        ("device-chain-rotate-recovery".to_owned(), rotate.clone()),
        (
            "device-chain-bad-signature".to_owned(),
            with(
                &revoke,
                "last byte of entry 1's signature XORed with 0x01",
                "BadSignature",
                vec![l(0), raw_link(&flipped), l(2), l(3)],
            ),
        ),
        (
            "device-chain-wrong-prev".to_owned(),
            with(&revoke, "entry 1 names zero(32) as its previous entry", "ChainFork", {
                let e = chain_next(
                    None,
                    1,
                    0,
                    Signer::Device(a.id()),
                    ChainChange::AddDevice { device: b.public().clone(), name: "laptop".into() },
                );
                vec![l(0), chain_link(&e, &a), l(2), l(3)]
            }),
        ),
        (
            "device-chain-signer-unknown".to_owned(),
            with(&revoke, "entry 1 adds device D, signed by D itself (not enrolled)", "UnknownAuthor", {
                let e = chain_next(Some(&links[0]), 1, 0, Signer::Device(d.id()), add_d("server"));
                vec![l(0), chain_link(&e, &d)]
            }),
        ),
        (
            "device-chain-signer-revoked".to_owned(),
            with(&revoke, "entry 4 adds device D, signed by the revoked device B", "UnknownAuthor", {
                let e = chain_next(Some(&links[3]), 4, 1, Signer::Device(b.id()), add_d("tablet"));
                vec![l(0), l(1), l(2), l(3), chain_link(&e, &b)]
            }),
        ),
        (
            "device-chain-wrong-epoch".to_owned(),
            with(&revoke, "entry 1 (an addition) claims account key epoch 1", "Malformed", {
                let e = chain_next(
                    Some(&links[0]),
                    1,
                    1,
                    Signer::Device(a.id()),
                    ChainChange::AddDevice { device: b.public().clone(), name: "laptop".into() },
                );
                vec![l(0), chain_link(&e, &a)]
            }),
        ),
        (
            "device-chain-cutoffs-unsorted".to_owned(),
            with(
                &revoke,
                "entry 3's two cutoffs swapped, validly re-signed by A",
                "Malformed",
                vec![l(0), l(1), l(2), raw_link(&unsorted)],
            ),
        ),
        (
            "device-chain-trailing".to_owned(),
            with(&revoke, "one zero byte appended to entry 3", "TrailingBytes", vec![l(0), l(1), l(2), raw_link(&trailing)]),
        ),
        (
            "device-chain-self-revoke".to_owned(),
            with(&revoke, "entry 3: A revokes itself", "Malformed", {
                let e = chain_next(
                    Some(&links[2]),
                    3,
                    1,
                    Signer::Device(a.id()),
                    ChainChange::RevokeDevice { device: a.id(), root_commitment: commit1, cutoffs: BTreeMap::new() },
                );
                vec![l(0), l(1), l(2), chain_link(&e, &a)]
            }),
        ),
        (
            "device-chain-create-signed-by-another".to_owned(),
            with(&create, "the creation of device A signed by device B", "Malformed", {
                let ChainChange::Create { device, name, recovery, root_commitment } =
                    entry_from_fields(&links[0]["fields"], ACCOUNT, &chain_keys(&create)).change
                else {
                    unreachable!()
                };
                let e = chain_next(
                    None,
                    0,
                    0,
                    Signer::Device(b.id()),
                    ChainChange::Create { device, name, recovery, root_commitment },
                );
                vec![chain_link(&e, &b)]
            }),
        ),
        (
            "device-chain-old-recovery-key".to_owned(),
            with(&rotate, "entry 5 adds device D, signed by the replaced recovery key R0", "BadSignature", {
                let e = chain_next(Some(&links[4]), 5, 2, Signer::RecoveryKey, add_d("tablet"));
                vec![l(0), l(1), l(2), l(3), l(4), chain_link(&e, &r0)]
            }),
        ),
    ]
}

fn check_device_chain(v: &Value) -> Result<()> {
    let account = AccountId(h16(v, "account_id"));
    let keys = chain_keys(v);
    let links = v["entries"].as_array().unwrap();
    let stored: Vec<Vec<u8>> = links.iter().map(|l| h(l, "stored")).collect();
    for (link, bytes) in links.iter().zip(&stored) {
        assert_eq!(ObjectId::of(bytes).to_hex(), link["id"].as_str().unwrap());
        // Generation direction, where the link records its fields: the
        // same fields signed by the same key give the same bytes (Ed25519
        // signatures are deterministic), and the bytes parse to the fields.
        if !link["fields"].is_null() {
            let entry = entry_from_fields(&link["fields"], account, &keys);
            let key = &keys[link["signed_with"].as_str().unwrap()];
            assert_eq!(&entry.seal(key)?, bytes);
            assert_eq!(ChainEntry::parse(bytes)?.0, entry);
        }
    }
    let chain = DeviceChain::verify(account, stored.iter().map(Vec::as_slice))?;
    let head = &v["head"];
    assert_eq!(chain.head(), ChainHead { seq: u(head, "seq"), id: ObjectId(h32(head, "id")) });
    assert_eq!(u64::from(chain.epoch()), u(v, "epoch"));
    let active: Vec<String> = chain.active_devices().map(|d| d.public.id().to_hex()).collect();
    let expected: Vec<String> = v["active_devices"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
    assert_eq!(active, expected);
    assert_eq!(chain.recovery().id().to_hex(), v["recovery"].as_str().unwrap());
    let roots = v["root_keys"].as_array().unwrap();
    for (epoch, root) in roots.iter().enumerate() {
        let root = AccountRootKey::from_bytes(hex::decode(root.as_str().unwrap()).unwrap().try_into().unwrap());
        chain.check_root_key(epoch as u32, &root)?;
        assert!(chain.check_root_key(epoch as u32 + 1, &root).is_err());
    }
    for q in v["may_author"].as_array().unwrap() {
        let allowed = chain.may_author(&DeviceId(h16(q, "device")), CollectionId(h16(q, "collection_id")), u(q, "seq"));
        assert_eq!(allowed, q["allowed"].as_bool().unwrap(), "{q}");
    }
    Ok(())
}

fn device_derivation_vector() -> Value {
    let recovery = RecoveryKey::from_bytes(RECOVERY_SECRET);
    let device = recovery.device();
    let (s, k) = device.expose_seeds();
    let root = AccountRootKey::from_bytes(ROOT_KEY);
    json!({
        "kind": "device-derivation",
        "description": "root key commitments, the recovery key as a device, the previous-root-key wrap KEK",
        "expect": "ok",
        "account_root_key": hex::encode(ROOT_KEY),
        "account_id": ACCOUNT.to_hex(),
        "root_commitment_epoch_0": hex::encode(root_commitment(&root, ACCOUNT, 0)),
        "root_commitment_epoch_3": hex::encode(root_commitment(&root, ACCOUNT, 3)),
        "previous_root_wrap_kek": hex::encode(crate::kdf::derive(crate::kdf::context::PREVIOUS_ROOT_WRAP, &[&ROOT_KEY]).expose_secret()),
        "recovery_secret": hex::encode(RECOVERY_SECRET),
        "recovery_device_signing_seed": hex::encode(*s),
        "recovery_device_kem_seed": hex::encode(*k),
        "recovery_device_public_keys": hex::encode(device.public().to_bytes()),
        "recovery_device_id": device.id().to_hex(),
        "recovery_auth_public_key": hex::encode(recovery.auth_public_key()),
    })
}

fn check_device_derivation(v: &Value) -> Result<()> {
    assert_eq!(&device_derivation_vector(), v);
    // The recovery key's device signing key is its auth key.
    assert_eq!(&h(v, "recovery_device_public_keys")[..32], &h(v, "recovery_auth_public_key")[..]);
    Ok(())
}

fn previous_root_wrap_vectors() -> Vec<(String, Value)> {
    let mut rng = RecordingRng::new(6);
    let wrap = wrap_previous_root(&chain_root(0), &chain_root(1), ACCOUNT, 1, &mut rng).unwrap();
    let base = json!({
        "kind": "previous-root-wrap",
        "description": "the root key of epoch 0 wrapped under the root key of epoch 1",
        "expect": "ok",
        "account_id": ACCOUNT.to_hex(),
        "epoch": 1,
        "expected_epoch": 1,
        "current_root_key": hex::encode(chain_root(1).expose_secret()),
        "previous_root_key": hex::encode(chain_root(0).expose_secret()),
        "randomness": rng.take(),
        "wrap": hex::encode(wrap),
    });
    vec![
        (
            "previous-root-wrap-flipped",
            negative(&base, "last byte (in the tag) XORed with 0x01", "DecryptionFailed", |v| {
                mutate(&v, "wrap", |b| *b.last_mut().unwrap() ^= 1)
            }),
        ),
        (
            "previous-root-wrap-wrong-epoch",
            negative(&base, "opened expecting epoch 2", "ContextMismatch", |mut v| {
                v["expected_epoch"] = json!(2);
                v
            }),
        ),
        (
            "previous-root-wrap-epoch-rewritten",
            negative(&base, "cleartext epoch rewritten to 2, opened expecting 2", "DecryptionFailed", |mut v| {
                v["expected_epoch"] = json!(2);
                mutate(&v, "wrap", |b| b[7 + 16 + 3] = 2)
            }),
        ),
        (
            "previous-root-wrap-under-previous-key",
            negative(&base, "opened with the previous root key (what a revoked device holds)", "DecryptionFailed", |mut v| {
                v["current_root_key"] = json!(hex::encode(chain_root(0).expose_secret()));
                v
            }),
        ),
        (
            "previous-root-wrap-trailing",
            negative(&base, "one byte appended", "TrailingBytes", |v| mutate(&v, "wrap", |b| b.push(0))),
        ),
        ("previous-root-wrap", base),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

fn check_previous_root_wrap(v: &Value) -> Result<()> {
    let account = AccountId(h16(v, "account_id"));
    let current = AccountRootKey::from_bytes(h32(v, "current_root_key"));
    let previous = unwrap_previous_root(&h(v, "wrap"), &current, account, u(v, "expected_epoch") as u32)?;
    assert_eq!(previous.expose_secret(), &h32(v, "previous_root_key"));
    let mut rng = ReplayRng::new(&v["randomness"]);
    let again = wrap_previous_root(&previous, &current, account, u(v, "epoch") as u32, &mut rng)?;
    assert_eq!(hex::encode(again), v["wrap"].as_str().unwrap());
    Ok(())
}

// ---------------------------------------------------------------- pairing

/// SPAKE2 parameters of `pairing.rs`, listed in the vectors for a second
/// implementation.
const SPAKE2_INVITER_IDENTITY: &[u8] = b"keyhold v1 2026-11 pairing inviter";
const SPAKE2_JOINER_IDENTITY: &[u8] = b"keyhold v1 2026-11 pairing joiner";
const SPAKE2_PASSWORD_PREFIX: &[u8] = b"keyhold v1 2026-11 pairing code\0";

fn spake2_password(code: &PairingCode) -> Vec<u8> {
    [SPAKE2_PASSWORD_PREFIX, code.display().replace('-', "").as_bytes()].concat()
}

/// The inviter's SPAKE2 run done with the `spake2` crate directly: its key.
fn spake2_inviter_key(code: &PairingCode, randomness: &str, joiner_message: &[u8]) -> Vec<u8> {
    let (state, _) = spake2::Spake2::<spake2::Ed25519Group>::start_a_with_rng(
        &spake2::Password::new(spake2_password(code)),
        &spake2::Identity::new(SPAKE2_INVITER_IDENTITY),
        &spake2::Identity::new(SPAKE2_JOINER_IDENTITY),
        ReplayRng::from_hex(randomness),
    );
    state.finish(joiner_message).unwrap()
}

fn pairing_key(context: &str, shared: &[u8], inviter_message: &[u8], joiner_message: &[u8]) -> [u8; 32] {
    *crate::kdf::derive(context, &[shared, inviter_message, joiner_message]).expose_secret()
}

fn pairing_vectors() -> Vec<(String, Value)> {
    let [_, b, _, _] = chain_devices();
    let mut code_rng = RecordingRng::new(9);
    let code = PairingCode::generate(&mut code_rng);
    let shown = code.display().to_string();
    let typed = shown.to_lowercase().replace('-', " ").replace('0', "o").replace('1', "l");
    let (mut joiner_rng, mut inviter_rng) = (RecordingRng::new(7), RecordingRng::new(8));
    let (joiner, msg_b) = JoinerPake::start(&PairingCode::parse(&typed).unwrap(), &mut joiner_rng);
    let (inviter, msg_a) = inviter_respond(&code, &msg_b, &mut inviter_rng).unwrap();
    let joiner = joiner.finish(&msg_a, &inviter.inviter_confirmation()).unwrap();
    let (joiner_randomness, inviter_randomness) = (joiner_rng.take(), inviter_rng.take());
    let shared = spake2_inviter_key(&code, &inviter_randomness, &msg_b);
    let hello = JoinerHello { device: b.public().clone(), name: "laptop".into() };
    let hello_plaintext = [&b.public().to_bytes()[..], &6u16.to_be_bytes(), b"laptop"].concat();
    let head = ChainHead { seq: 1, id: ObjectId(h32(&chain_links()[1], "id")) };
    let welcome = Welcome { account: ACCOUNT, epoch: 0, root: AccountRootKey::from_bytes(ROOT_KEY), head };
    let welcome_plaintext =
        [&ACCOUNT.as_bytes()[..], &0u32.to_be_bytes(), &ROOT_KEY, &head.seq.to_be_bytes(), head.id.as_bytes()].concat();
    let key = |ctx: &str| hex::encode(pairing_key(ctx, &shared, &msg_a, &msg_b));
    let base = json!({
        "kind": "pairing",
        "description": "a pairing: SPAKE2 messages, key schedule, safety string, sealed joiner hello and welcome",
        "expect": "ok",
        "code_randomness": code_rng.take(),
        "code": shown,
        "slot": code.slot(),
        "joiner_code": typed,
        "spake2_inviter_identity": hex::encode(SPAKE2_INVITER_IDENTITY),
        "spake2_joiner_identity": hex::encode(SPAKE2_JOINER_IDENTITY),
        "spake2_password": hex::encode(spake2_password(&code)),
        "joiner_randomness": joiner_randomness,
        "inviter_randomness": inviter_randomness,
        "joiner_message": hex::encode(msg_b),
        "inviter_message": hex::encode(msg_a),
        "shared_key": hex::encode(&shared),
        "inviter_confirmation": hex::encode(inviter.inviter_confirmation()),
        "joiner_confirmation": hex::encode(joiner.joiner_confirmation()),
        "to_inviter_key": key(crate::kdf::context::PAIRING_TO_INVITER),
        "to_joiner_key": key(crate::kdf::context::PAIRING_TO_JOINER),
        "safety_key": key(crate::kdf::context::PAIRING_SAFETY),
        "safety_string": joiner.safety_string(),
        "hello_signing_seed": hex::encode(OTHER_SIGNING_SEED),
        "hello_kem_seed": hex::encode(OTHER_KEM_SEED),
        "hello_name": "laptop",
        "hello_plaintext": hex::encode(&hello_plaintext),
        "sealed_joiner_hello": hex::encode(joiner.seal_joiner_hello(&hello).unwrap()),
        "welcome_account_id": ACCOUNT.to_hex(),
        "welcome_epoch": 0,
        "welcome_root_key": hex::encode(ROOT_KEY),
        "welcome_head_seq": head.seq,
        "welcome_head_id": head.id.to_hex(),
        "welcome_plaintext": hex::encode(&welcome_plaintext),
        "sealed_welcome": hex::encode(inviter.seal_welcome(&welcome).unwrap()),
    });
    // The relay knows the slot and guesses the rest.
    let guess = PairingCode::parse(&format!("{}000000", code.slot())).unwrap();
    let set = |v: &mut Value, field: &str, value: &[u8]| v[field] = json!(hex::encode(value));
    let mut other_typed = typed.clone();
    let last = other_typed.pop().unwrap();
    other_typed.push(if last == '7' { '8' } else { '7' });
    vec![
        (
            "pairing-wrong-code",
            negative(&base, "the joiner typed another code (last character changed)", "PairingFailed", |mut v| {
                v["joiner_code"] = json!(other_typed);
                v
            }),
        ),
        (
            "pairing-code-typo",
            negative(&base, "the joiner typed a U, which is not in the alphabet", "InvalidPairingCode", |mut v| {
                v["joiner_code"] = json!(format!("u{}", &typed[1..]));
                v
            }),
        ),
        (
            "pairing-relay-inviter-message",
            negative(
                &base,
                "the relay answers the joiner with its own SPAKE2 message and confirmation (code guessed)",
                "PairingFailed",
                |mut v| {
                    let (relay, relay_a) = inviter_respond(&guess, &msg_b, &mut RecordingRng::new(66)).unwrap();
                    set(&mut v, "inviter_message", &relay_a);
                    set(&mut v, "inviter_confirmation", &relay.inviter_confirmation());
                    v
                },
            ),
        ),
        (
            "pairing-relay-joiner-message",
            negative(
                &base,
                "the relay sends the inviter its own SPAKE2 message (code guessed) and relays the inviter's answer",
                "PairingFailed",
                |mut v| {
                    let (_, relay_b) = JoinerPake::start(&guess, &mut RecordingRng::new(67));
                    let (answer, _) = inviter_respond(&code, &relay_b, &mut ReplayRng::from_hex(&inviter_randomness)).unwrap();
                    set(&mut v, "joiner_message", &relay_b);
                    set(&mut v, "inviter_confirmation", &answer.inviter_confirmation());
                    v
                },
            ),
        ),
        (
            "pairing-reflected-message",
            negative(&base, "the joiner's own SPAKE2 message sent back to it", "PairingFailed", |mut v| {
                set(&mut v, "inviter_message", &msg_b);
                v
            }),
        ),
        (
            "pairing-confirmation-reflected",
            negative(&base, "the inviter's confirmation sent back to it as the joiner's", "PairingFailed", |mut v| {
                set(&mut v, "joiner_confirmation", &inviter.inviter_confirmation());
                v
            }),
        ),
        (
            "pairing-hello-flipped",
            negative(&base, "byte 20 of the sealed joiner hello XORed with 0x01", "PairingFailed", |v| {
                mutate(&v, "sealed_joiner_hello", |b| b[20] ^= 1)
            }),
        ),
        (
            "pairing-welcome-as-hello",
            negative(&base, "the sealed welcome presented to the inviter as the joiner hello", "ContextMismatch", |mut v| {
                v["sealed_joiner_hello"] = v["sealed_welcome"].clone();
                v
            }),
        ),
        (
            "pairing-welcome-redirected",
            negative(
                &base,
                "the sealed welcome, its direction byte rewritten to 0x01, presented as the joiner hello",
                "PairingFailed",
                |mut v| {
                    v["sealed_joiner_hello"] = v["sealed_welcome"].clone();
                    mutate(&v, "sealed_joiner_hello", |b| b[7] = 0x01)
                },
            ),
        ),
        ("pairing", base.clone()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

fn check_pairing(v: &Value) -> Result<()> {
    let s = |field: &str| v[field].as_str().unwrap_or_else(|| panic!("missing field {field}")).to_owned();
    // What each side does with what reached it, in the ceremony's order.
    let code = PairingCode::parse(&s("code"))?;
    assert_eq!(code.display().as_str(), s("code"));
    assert_eq!(PairingCode::generate(&mut ReplayRng::from_hex(&s("code_randomness"))).display().as_str(), s("code"));
    assert_eq!(code.slot(), s("slot"));
    let joiner_code = PairingCode::parse(&s("joiner_code"))?;
    let (joiner, joiner_message) = JoinerPake::start(&joiner_code, &mut ReplayRng::from_hex(&s("joiner_randomness")));
    let (inviter, inviter_message) =
        inviter_respond(&code, &h(v, "joiner_message"), &mut ReplayRng::from_hex(&s("inviter_randomness")))?;
    let joiner = joiner.finish(&h(v, "inviter_message"), &h(v, "inviter_confirmation"))?;
    inviter.check_joiner_confirmation(&h(v, "joiner_confirmation"))?;
    let hello = inviter.open_joiner_hello(&h(v, "sealed_joiner_hello"))?;
    let welcome = joiner.open_welcome(&h(v, "sealed_welcome"))?;
    let device = DeviceSecret::from_seeds(&h32(v, "hello_signing_seed"), &h32(v, "hello_kem_seed"));
    assert_eq!(hello, JoinerHello { device: device.public().clone(), name: s("hello_name") });
    assert_eq!(welcome.account, AccountId(h16(v, "welcome_account_id")));
    assert_eq!(u64::from(welcome.epoch), u(v, "welcome_epoch"));
    assert_eq!(welcome.root.expose_secret(), &h32(v, "welcome_root_key"));
    assert_eq!(welcome.head, ChainHead { seq: u(v, "welcome_head_seq"), id: ObjectId(h32(v, "welcome_head_id")) });
    // Generation direction: the recorded randomness gives the recorded
    // messages, and the key schedule gives the recorded values.
    assert_eq!(hex::encode(joiner_message), s("joiner_message"));
    assert_eq!(hex::encode(inviter_message), s("inviter_message"));
    assert_eq!(hex::encode(inviter.inviter_confirmation()), s("inviter_confirmation"));
    assert_eq!(hex::encode(joiner.joiner_confirmation()), s("joiner_confirmation"));
    assert_eq!(joiner.safety_string(), s("safety_string"));
    assert_eq!(inviter.safety_string(), s("safety_string"));
    assert_eq!(hex::encode(spake2_password(&code)), s("spake2_password"));
    let shared = spake2_inviter_key(&code, &s("inviter_randomness"), &h(v, "joiner_message"));
    assert_eq!(hex::encode(&shared), s("shared_key"));
    let (msg_a, msg_b): ([u8; PAKE_MESSAGE_LEN], [u8; PAKE_MESSAGE_LEN]) =
        (h(v, "inviter_message").try_into().unwrap(), h(v, "joiner_message").try_into().unwrap());
    let derived = PairingKeys::derive(&shared, &msg_a, &msg_b)?;
    assert_eq!(derived.inviter_confirmation(), inviter.inviter_confirmation());
    assert_eq!(derived.joiner_confirmation(), joiner.joiner_confirmation());
    let safety = pairing_key(crate::kdf::context::PAIRING_SAFETY, &shared, &msg_a, &msg_b);
    assert_eq!(hex::encode(safety), s("safety_key"));
    let number = u64::from_be_bytes(safety[..8].try_into().unwrap()) % 100_000_000;
    assert_eq!(format!("{:04}-{:04}", number / 10_000, number % 10_000), s("safety_string"));
    for (ctx, field, sealed, plaintext, direction) in [
        (crate::kdf::context::PAIRING_TO_INVITER, "to_inviter_key", "sealed_joiner_hello", "hello_plaintext", 0x01),
        (crate::kdf::context::PAIRING_TO_JOINER, "to_joiner_key", "sealed_welcome", "welcome_plaintext", 0x02),
    ] {
        let key = pairing_key(ctx, &shared, &msg_a, &msg_b);
        assert_eq!(hex::encode(key), s(field));
        let mut sealed = h(v, sealed);
        let header = sealed[..8].to_vec();
        assert_eq!(header, [&b"KHLD\x01\x01\x08"[..], &[direction]].concat());
        let opened = crate::aead::open(&key, [0; 12], &header, &mut sealed[8..])?;
        assert_eq!(hex::encode(opened), s(plaintext));
    }
    assert_eq!(hex::encode(joiner.seal_joiner_hello(&hello)?), s("sealed_joiner_hello"));
    assert_eq!(hex::encode(inviter.seal_welcome(&welcome)?), s("sealed_welcome"));
    Ok(())
}

fn all_vectors() -> Vec<(String, Value)> {
    let mut all = vec![("derivation".to_owned(), derivation_vector()), ("chunking".to_owned(), chunking_vector())];
    all.extend(device_wrap_vectors());
    all.extend(recovery_vectors());
    all.extend(collection_wrap_vectors());
    all.extend(file_vectors());
    all.extend(listing_vectors());
    all.extend(pack_vectors());
    all.extend(revision_vectors());
    all.extend(device_chain_vectors());
    all.push(("device-derivation".to_owned(), device_derivation_vector()));
    all.extend(previous_root_wrap_vectors());
    all.extend(pairing_vectors());
    all
}

fn check_derivation(v: &Value) -> Result<()> {
    // Regeneration *is* the check here: compare every derived value.
    assert_eq!(&derivation_vector(), v);
    Ok(())
}

fn check(v: &Value) -> Result<()> {
    match v["kind"].as_str().unwrap() {
        "derivation" => check_derivation(v),
        "device-wrap" => check_device_wrap(v),
        "recovery-wrap" => check_recovery_wrap(v),
        "collection-wrap" => check_collection_wrap(v),
        "chunking" => check_chunking(v),
        "file" => check_file(v),
        "listing" => check_listing(v),
        "pack" => check_pack(v),
        "revision-chain" => check_revision_chain(v),
        "device-chain" => check_device_chain(v),
        "device-derivation" => check_device_derivation(v),
        "previous-root-wrap" => check_previous_root_wrap(v),
        "pairing" => check_pairing(v),
        other => panic!("unknown vector kind {other}"),
    }
}

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/vectors")
}

#[test]
fn generated_vectors_match_the_files() {
    let dir = vector_dir();
    let update = std::env::var_os("KEYHOLD_UPDATE_VECTORS").is_some();
    let generated = all_vectors();
    for (name, value) in &generated {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(value).unwrap() + "\n";
        if update {
            std::fs::write(&path, text).unwrap();
        } else {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(on_disk == text, "{name}.json differs from what the code generates (format change without a version bump?)");
        }
    }
    let names: Vec<String> = generated.iter().map(|(n, _)| format!("{n}.json")).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        assert!(names.contains(&file), "stale vector file {file}");
    }
}

#[test]
fn every_vector_file_verifies() {
    let mut count = 0;
    let mut paths: Vec<_> = std::fs::read_dir(vector_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got = outcome(check(&v));
        assert_eq!(got, v["expect"].as_str().unwrap(), "{}", path.display());
        count += 1;
    }
    assert!(count >= 40, "only {count} vectors found");
}

#[test]
fn chunk_boundaries_do_not_depend_on_how_data_arrives() {
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes(COLLECTION_KEY), COLLECTION, 1);
    let data = xof("feed", 3 * MAX_CHUNK + 12345);
    let whole = keys.chunker.chunk_lengths(&data);
    // Uniform pieces, the client's 8 MiB reads, and a mix that leaves tails
    // of every size between reads.
    let patterns: [&[usize]; 5] = [&[1 << 20], &[4095], &[MAX_CHUNK + 1], &[8 << 20], &[1, 300_000, 3 << 20, 8 << 20, 77]];
    for piece in patterns {
        let mut enc = FileEncryptor::new(&keys);
        let mut out = Vec::new();
        let mut rest = &data[..];
        for &size in piece.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (p, tail) = rest.split_at(size.min(rest.len()));
            enc.update(p, &mut out).unwrap();
            rest = tail;
        }
        let meta = FileMeta { file_id: FileId([0; 16]), version: 1, name: "f".into(), mode: 0, mtime_ns: 0 };
        let (manifest, _) = enc.finish(meta, &mut out).unwrap();
        let lengths: Vec<usize> = manifest.chunks.iter().map(|c| c.len as usize).collect();
        assert_eq!(lengths, whole, "piece sizes {piece:?}");
    }
}
