//! Property tests: random files and trees round-trip through sealing, packing
//! and opening; any single-byte change to any stored object is detected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;

use keyhold_core::pack::{PackBuilder, open_pack};
use keyhold_core::{
    AccountId, AccountRootKey, BlobRef, CollectionKey, CollectionWrapContext, GENESIS_PREV, KdfParams, Listing, Manifest,
    ObjectType, RecoveryKey, Revision, open_revision, seal_revision, unwrap_collection_key, unwrap_on_device,
    wrap_collection_key, wrap_to_device,
};
use proptest::prelude::*;
use support::{BlobStore, Node, data, device, keys, read_folder, rng, seal_folder};

fn name() -> impl Strategy<Value = String> {
    // Printable names including non-ASCII; validate_name's rules hold.
    "[a-zA-Z0-9 ._\\-éüж日本]{1,24}".prop_filter("reserved", |n| n != "." && n != "..")
}

fn node(depth: u32) -> BoxedStrategy<Node> {
    let file = (0usize..70_000, any::<u64>(), 0u32..0o7777, any::<i64>()).prop_map(|(len, seed, mode, mtime_ns)| Node::File {
        content: data(&seed.to_string(), len),
        mode,
        mtime_ns,
    });
    if depth == 0 {
        return file.boxed();
    }
    prop_oneof![
        3 => file,
        1 => prop::collection::btree_map(name(), node(depth - 1), 0..6).prop_map(Node::Folder),
    ]
    .boxed()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn trees_round_trip(tree in prop::collection::btree_map(name(), node(3), 0..8)) {
        let keys = keys(1);
        let mut store = BlobStore::default();
        let root = seal_folder(&keys, &tree, &mut store);
        prop_assert_eq!(read_folder(&keys, &root, &store).unwrap(), tree);
    }

    #[test]
    fn files_round_trip_through_packs(len in 0usize..6_000_000, seed in any::<u64>(), piece in 1usize..3_000_000) {
        let keys = keys(1);
        let content = data(&seed.to_string(), len);
        let mut enc = keyhold_core::FileEncryptor::new(&keys);
        let mut blobs = Vec::new();
        for p in content.chunks(piece) {
            enc.update(p, &mut blobs).unwrap();
        }
        let meta = keyhold_core::FileMeta { file_id: keyhold_core::FileId([1; 16]), version: 1, name: "f".into(), mode: 0o644, mtime_ns: 0 };
        let (manifest, sealed) = enc.finish(meta, &mut blobs).unwrap();
        blobs.push(sealed.clone());
        // Pack them the way a writer would: close at the target size.
        let mut packs = Vec::new();
        let mut builder = PackBuilder::new(&keys, &mut rng(1));
        for blob in &blobs {
            if builder.blob_bytes() + blob.ciphertext.len() > keyhold_core::pack::PACK_TARGET_LEN && !builder.is_empty() {
                packs.push(std::mem::replace(&mut builder, PackBuilder::new(&keys, &mut rng(2))).finish(&keys).unwrap().1);
            }
            builder.push(blob).unwrap();
        }
        packs.push(builder.finish(&keys).unwrap().1);
        let mut located = BTreeMap::new();
        for pack in &packs {
            for entry in open_pack(&keys, pack).unwrap() {
                located.insert(entry.id, entry.slice(pack).unwrap().to_vec());
            }
        }
        let opened: Manifest = keys.open_manifest(&sealed.id, located[&sealed.id].clone()).unwrap();
        prop_assert_eq!(&opened, &manifest);
        let mut dec = keyhold_core::FileDecryptor::new(&keys, opened);
        let mut out = Vec::with_capacity(len);
        while let Some(c) = dec.expected().copied() {
            out.extend(dec.open_next(located[&c.id].clone()).unwrap());
        }
        dec.finish().unwrap();
        prop_assert!(out == content);
    }

    #[test]
    fn sealing_into_a_pack_gives_the_same_pack_as_pushing_sealed_blobs(len in 0usize..3_000_000, seed in any::<u64>()) {
        // Writers seal chunks straight into their pack's buffer; the pack
        // must be byte for byte the one built from separately sealed blobs.
        struct IntoPack(PackBuilder);
        impl keyhold_core::BlobSink for IntoPack {
            type Error = keyhold_core::Error;
            fn blob(&mut self, keys: &keyhold_core::CollectionKeys, blob: keyhold_core::Plaintext<'_>) -> keyhold_core::Result<()> {
                self.0.seal(keys, &blob)
            }
        }
        let keys = keys(1);
        let content = data(&seed.to_string(), len);
        let meta = keyhold_core::FileMeta { file_id: keyhold_core::FileId([1; 16]), version: 1, name: "f".into(), mode: 0o644, mtime_ns: 0 };
        let mut sealed = Vec::new();
        let mut enc = keyhold_core::FileEncryptor::new(&keys);
        enc.update(&content, &mut sealed).unwrap();
        let (manifest, _) = enc.finish(meta.clone(), &mut sealed).unwrap();
        let mut pushed = PackBuilder::new(&keys, &mut rng(seed.to_le_bytes()[0]));
        for blob in &sealed {
            pushed.push(blob).unwrap();
        }
        let mut direct = IntoPack(PackBuilder::with_buffer(&keys, &mut rng(seed.to_le_bytes()[0]), vec![7u8; 100]));
        let mut enc = keyhold_core::FileEncryptor::new(&keys);
        enc.update(&content, &mut direct).unwrap();
        let (direct_manifest, _) = enc.finish(meta, &mut direct).unwrap();
        prop_assert_eq!(direct_manifest, manifest);
        prop_assert_eq!(direct.0.finish(&keys).unwrap(), pushed.finish(&keys).unwrap());
    }

    #[test]
    fn manifests_and_listings_decode_what_they_encode(tree in prop::collection::btree_map(name(), node(1), 0..10)) {
        let keys = keys(1);
        let mut store = BlobStore::default();
        let root = seal_folder(&keys, &tree, &mut store);
        for (id, (kind, ciphertext)) in &store.blobs {
            let plain = keys.open_blob(*kind, id, ciphertext.clone()).unwrap();
            match kind {
                ObjectType::Listing => prop_assert_eq!(Listing::decode(&plain).unwrap().encode().unwrap(), plain),
                ObjectType::Manifest => prop_assert_eq!(Manifest::decode(&plain).unwrap().encode().unwrap(), plain),
                _ => {}
            }
        }
        prop_assert!(store.blobs.contains_key(&root.id));
    }
}

/// Every stored object of every type, as the server holds it (built once:
/// the recovery wrap runs Argon2id).
fn stored_objects() -> &'static [(&'static str, Vec<u8>)] {
    static OBJECTS: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>> = std::sync::OnceLock::new();
    OBJECTS.get_or_init(build_stored_objects)
}

fn build_stored_objects() -> Vec<(&'static str, Vec<u8>)> {
    let keys = keys(1);
    let dev = device(1);
    let root = AccountRootKey::from_bytes([3; 32]);
    let account = AccountId([4; 16]);
    let mut store = BlobStore::default();
    let tree = BTreeMap::from([("f".to_owned(), support::file(&data("f", 2000)))]);
    let listing_ref = seal_folder(&keys, &tree, &mut store);
    let mut builder = PackBuilder::new(&keys, &mut rng(3));
    for (id, (kind, ct)) in &store.blobs {
        builder.push(&keyhold_core::SealedBlob { kind: *kind, id: *id, ciphertext: ct.clone() }).unwrap();
    }
    let (_, pack, _) = builder.finish(&keys).unwrap();
    let rev = Revision {
        collection: keys.collection(),
        seq: 0,
        prev: GENESIS_PREV,
        epoch: 1,
        root: listing_ref,
        author: dev.id(),
        time_ms: 5,
    };
    let (_, revision) = seal_revision(&keys, &rev, &dev, &mut rng(4)).unwrap();
    let device_wrap = wrap_to_device(&root, dev.public(), account, 0, &mut rng(5)).unwrap();
    let ctx = CollectionWrapContext { account, collection: keys.collection(), collection_epoch: 1, account_epoch: 0 };
    let collection_wrap = wrap_collection_key(&CollectionKey::from_bytes([8; 32]), &root, &ctx, &mut rng(6)).unwrap();
    let recovery_wrap = RecoveryKey::from_bytes([9; 32]).wrap(&root, account, 0, KdfParams::DEFAULT, &mut rng(7)).unwrap();
    vec![
        ("pack", pack),
        ("revision", revision),
        ("device wrap", device_wrap),
        ("collection wrap", collection_wrap),
        ("recovery wrap", recovery_wrap),
    ]
}

/// Opens an object of the named kind with the fixtures' keys.
fn opens(kind: &str, bytes: &[u8]) -> bool {
    let keys = keys(1);
    let dev = device(1);
    let root = AccountRootKey::from_bytes([3; 32]);
    let account = AccountId([4; 16]);
    match kind {
        "pack" => open_pack(&keys, bytes)
            .and_then(|entries| {
                entries.iter().try_for_each(|e| keys.open_blob(e.kind, &e.id, e.slice(bytes)?.to_vec()).map(drop))
            })
            .is_ok(),
        "revision" => {
            let known = BTreeMap::from([(dev.id(), dev.public().clone())]);
            let opened = open_revision(&keys, bytes, |id| known.get(id));
            // The cleartext header is authenticated too: a changed header
            // either fails to open or yields a different object id.
            opened.is_ok_and(|r| r.id == keyhold_core::ObjectId::of(&stored_objects()[1].1))
        }
        "device wrap" => unwrap_on_device(bytes, &dev, account, 0).is_ok(),
        "collection wrap" => {
            let ctx = CollectionWrapContext { account, collection: keys.collection(), collection_epoch: 1, account_epoch: 0 };
            unwrap_collection_key(bytes, &root, &ctx).is_ok()
        }
        "recovery wrap" => RecoveryKey::from_bytes([9; 32]).unwrap(bytes, account, 0).is_ok(),
        _ => unreachable!(),
    }
}

#[test]
fn stored_objects_open_unchanged() {
    for (kind, bytes) in stored_objects() {
        assert!(opens(kind, bytes), "{kind}");
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn any_single_byte_change_to_any_stored_object_is_detected(which in 0usize..4, at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let (kind, mut bytes) = stored_objects()[which].clone();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(!opens(kind, &bytes), "{} byte {} ^ {:#04x} went unnoticed", kind, i, xor);
    }
}

proptest! {
    // Argon2id (64 MiB) makes each case slower: fewer cases.
    #![proptest_config(config(24))]

    #[test]
    fn any_single_byte_change_to_a_recovery_wrap_is_detected(at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let (kind, mut bytes) = stored_objects()[4].clone();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(!opens(kind, &bytes));
    }
}

#[test]
fn any_single_byte_change_to_any_blob_is_detected() {
    let keys = keys(1);
    let mut store = BlobStore::default();
    let tree = BTreeMap::from([("d".to_owned(), support::folder(vec![("f", support::file(&data("f", 3000)))]))]);
    seal_folder(&keys, &tree, &mut store);
    for (id, (kind, ct)) in &store.blobs {
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x80;
            assert!(keys.open_blob(*kind, id, bad).is_err(), "{kind:?} byte {i}");
        }
    }
    let _ = BlobRef { epoch: 0, id: keyhold_core::BlobId([0; 32]) };
}
