//! Client-side objects the API suites send: a new account's creation body
//! (all its cryptography done here, as a client does it) and a collection
//! with its keys.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use keyhold_core::pack::PackBuilder;
use keyhold_core::{
    AccountRootKey, BlobId, BlobRef, ChainEntry, CollectionKey, CollectionKeys, DeviceSecret, KdfParams, ObjectType, RecoveryKey,
    Revision, os_rng, seal_revision, wrap_to_device,
};
use keyhold_proto::{AccountId, Bytes as B64, CollectionId, CreateAccount, ObjectId};

pub fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A fresh account and the body that creates it in `region` (the server's
/// default when `None`).
pub fn new_account(region: Option<&str>) -> (AccountId, DeviceSecret, AccountRootKey, RecoveryKey, CreateAccount) {
    let mut rng = os_rng();
    let id = AccountId::generate(&mut rng);
    let device = DeviceSecret::generate(&mut rng);
    let root = AccountRootKey::generate(&mut rng);
    let recovery = RecoveryKey::generate(&mut rng);
    let genesis = ChainEntry::create(id, &device, "first", recovery.device().public(), &root, now_ms()).seal(&device).unwrap();
    let body = CreateAccount {
        account_id: id.to_hex(),
        chain_entry: B64(genesis),
        device_wrap: B64(wrap_to_device(&root, device.public(), id, 0, &mut rng).unwrap()),
        recovery_locator: B64(recovery.locator().to_vec()),
        // The cheapest parameters a client accepts: the server never runs Argon2id.
        recovery_wrap: B64(recovery.wrap(&root, id, 0, KdfParams::FLOOR, &mut rng).unwrap()),
        region: region.map(str::to_owned),
    };
    (id, device, root, recovery, body)
}

/// A collection: its id, key and derived keys of epoch 0.
pub struct Coll {
    pub id: CollectionId,
    pub key: CollectionKey,
    pub keys: CollectionKeys,
}

pub fn new_collection() -> Coll {
    let mut rng = os_rng();
    let id = CollectionId::generate(&mut rng);
    let key = CollectionKey::generate(&mut rng);
    let keys = CollectionKeys::derive(&key, id, 0);
    Coll { id, key, keys }
}

/// A pack holding one chunk of `plaintext`: its id, bytes and the chunk's id.
pub fn pack_of(keys: &CollectionKeys, plaintext: &[u8]) -> (ObjectId, Vec<u8>, BlobId) {
    let blob = keys.seal_blob(ObjectType::Chunk, plaintext).unwrap();
    let mut builder = PackBuilder::new(keys, &mut os_rng());
    builder.push(&blob).unwrap();
    let (id, bytes, _) = builder.finish(keys).unwrap();
    (id, bytes, blob.id)
}

/// Revision `seq` of `coll` (epoch 0) naming `root`, signed by `author`.
pub fn revision(coll: &Coll, author: &DeviceSecret, seq: u64, prev: ObjectId, root: BlobId) -> (ObjectId, Vec<u8>) {
    let revision = Revision {
        collection: coll.id,
        seq,
        prev,
        epoch: 0,
        root: BlobRef { epoch: 0, id: root },
        author: author.id(),
        time_ms: now_ms(),
    };
    seal_revision(&coll.keys, &revision, author, &mut os_rng()).unwrap()
}
