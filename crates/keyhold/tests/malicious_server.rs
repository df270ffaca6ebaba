//! Adversarial suite (issue "Adversarial suite"): a malicious server — the
//! real `keyhold serve` behind a proxy that rewrites what it answers, on
//! cue (`common/proxy.rs`) — mounts each attack of SECURITY.md A–D (and
//! F4) against the real client. Every attack must be detected and named
//! (exit code 3, "integrity check failed", or the core's refusal), and
//! must change nothing locally. `hostile_server.rs` attacks the stores
//! instead; here the stores stay honest and only the answers lie.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::proxy::{Log, Proxy, ResponseParts};
use common::{Device, Server, noise, snapshot};
use keyhold_core::pack::{PackEntry, open_pack};
use keyhold_core::{
    AccountRootKey, BlobId, BlobRef, CollectionId, CollectionKey, CollectionKeys, CollectionWrapContext, DeviceChain,
    DeviceSecret, ObjectId, ObjectType, REVISION_LEN, Revision, RevisionHeader, os_rng, seal_revision, unwrap_collection_key,
    wrap_collection_key, wrap_to_device,
};
use keyhold_proto::{AccountKeys, Bytes as B64, HeadRecord, HexId, Packs, RecoveryInfo, Revisions, WrapRecord};

const INTEGRITY_EXIT: i32 = 3;

// ---------------------------------------------------------------------------
// Verdicts

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed closed on an integrity failure and named it: exit
/// code 3, the plain statement, and `detail` (the core's error text).
fn assert_integrity(out: &Output, what: &str, detail: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(INTEGRITY_EXIT), "{what}: expected an integrity failure, got {:?}: {err}", out.status);
    assert!(err.contains("integrity check failed"), "{what}: unclear message: {err}");
    assert!(err.contains(detail), "{what}: expected {detail:?} in: {err}");
}

/// The command refused (any failure exit) with `message`.
fn assert_refused(out: &Output, what: &str, message: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: the client went ahead: {err}");
    assert!(err.contains(message), "{what}: expected {message:?} in: {err}");
}

fn sync_run(device: &Device) -> Output {
    device.run(&["sync", device.folder.to_str().unwrap()])
}

/// `device` syncs against the lying proxy: it must fail closed with
/// `detail` and leave its folder exactly as it was (no temporary file,
/// no partial download, no deletion).
fn sync_detected(device: &Device, what: &str, detail: &str) {
    let before = snapshot(&device.folder);
    let out = sync_run(device);
    assert_integrity(&out, what, detail);
    assert_eq!(snapshot(&device.folder), before, "{what}: the sync folder changed");
}

/// Like [`sync_detected`] for refusals that are not integrity failures.
fn sync_refused(device: &Device, what: &str, message: &str) {
    let before = snapshot(&device.folder);
    let out = sync_run(device);
    assert_refused(&out, what, message);
    assert_eq!(snapshot(&device.folder), before, "{what}: the sync folder changed");
}

/// Asserts that nothing was written to the server since the log was
/// cleared: no pack uploaded, no revision committed (through the proxy),
/// and the server's stores hold what they held (`stored`).
fn assert_wrote_nothing(log: &Log, server: &Server, stored: &(String, String), what: &str) {
    assert_eq!(log.count("PUT", "/v1/collections/*/packs/*"), 0, "{what}: a pack was uploaded");
    assert_eq!(log.count("POST", "/v1/collections/*/revisions"), 0, "{what}: a revision was committed");
    assert_eq!(&stored_objects(server), stored, "{what}: the server stores new objects");
}

fn stored_objects(server: &Server) -> (String, String) {
    (server.sql("SELECT count(*) FROM revisions"), server.sql("SELECT count(*), sum(size) FROM packs"))
}

// ---------------------------------------------------------------------------
// Accounts

/// A new device of `server` that talks through `proxy` (a device keeps the
/// server it was set up with).
fn device(dir: &std::path::Path, name: &str, server: &Server, proxy: &Proxy) -> Device {
    proxy.device(&Device::new(dir, name, server))
}

/// One account, devices a (created it) and b (recovered), both behind the proxy.
fn account(dir: &std::path::Path, server: &Server, proxy: &Proxy) -> (Device, Device, String) {
    let a = device(dir, "a", server, proxy);
    let b = device(dir, "b", server, proxy);
    let key = a.init(dir);
    b.recover(&key);
    (a, b, key)
}

fn keys_of(device: &Device) -> keyhold_client::home::DeviceKeys {
    keyhold_client::Home::locate(Some(device.home.clone())).unwrap().load().unwrap().1
}

/// The default collection's keys of epoch 0, as the account's owner (the
/// test, reading the wrap the server stores) derives them.
fn collection_keys(server: &Server, owner: &Device) -> (CollectionId, CollectionKeys) {
    let keys = keys_of(owner);
    let rows = match common::backend() {
        common::Backend::Embedded => {
            server.sql("SELECT hex(collection_id) || ':' || hex(wrap) FROM collection_wraps WHERE epoch = 0")
        }
        common::Backend::PostgresS3 => {
            server.sql("SELECT encode(collection_id, 'hex') || ':' || encode(wrap, 'hex') FROM collection_wraps WHERE epoch = 0")
        }
    };
    let row: Vec<&str> = rows.split(['\'', '\n']).find(|s| s.contains(':')).unwrap().split(':').collect();
    let collection = CollectionId(hex::decode(row[0]).unwrap().try_into().unwrap());
    let ctx = CollectionWrapContext { account: keys.account, collection, collection_epoch: 0, account_epoch: 0 };
    let key = unwrap_collection_key(&hex::decode(row[1]).unwrap(), &keys.root, &ctx).unwrap();
    (collection, CollectionKeys::derive(&key, collection, 0))
}

/// The newest revision a device committed through the proxy.
fn last_commit(log: &Log) -> Vec<u8> {
    log.last("POST", "/v1/collections/*/revisions").unwrap().request.body
}

fn flip_last(bytes: &mut [u8]) {
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
}

// ---------------------------------------------------------------------------
// Where blobs sit in packs, as the account's owner can read it

struct Blob {
    pack: ObjectId,
    entry: PackEntry,
    bytes: Vec<u8>,
}

/// Every blob of every pack uploaded through the proxy, opened with the
/// owner's keys: lets a test aim at one chunk, manifest or listing.
struct Layout {
    keys: CollectionKeys,
    blobs: Vec<Blob>,
}

impl Layout {
    fn read(log: &Log, server: &Server, owner: &Device) -> Layout {
        let (_, keys) = collection_keys(server, owner);
        let mut blobs = Vec::new();
        for upload in log.matching("PUT", "/v1/collections/*/packs/*") {
            let pack = ObjectId::from_hex(upload.request.segment(4).unwrap()).unwrap();
            for entry in open_pack(&keys, &upload.request.body).unwrap() {
                let bytes = entry.slice(&upload.request.body).unwrap().to_vec();
                blobs.push(Blob { pack, entry, bytes });
            }
        }
        Layout { keys, blobs }
    }

    fn blob(&self, id: BlobId) -> &Blob {
        self.blobs.iter().rev().find(|b| b.entry.id == id).unwrap()
    }

    /// Every listing (oldest first) with an entry called `name`.
    fn listings_naming(&self, name: &str) -> Vec<(&Blob, keyhold_core::Listing)> {
        self.blobs
            .iter()
            .filter(|b| b.entry.kind == ObjectType::Listing)
            .map(|b| (b, self.keys.open_listing(&b.entry.id, b.bytes.clone()).unwrap()))
            .filter(|(_, l)| l.entries().iter().any(|e| e.name == name))
            .collect()
    }

    /// The newest listing naming `name`.
    fn listing_naming(&self, name: &str) -> &Blob {
        self.listings_naming(name).pop().unwrap().0
    }

    /// The manifest the newest listing names for `name`.
    fn manifest_of(&self, name: &str) -> &Blob {
        let (_, listing) = self.listings_naming(name).pop().unwrap();
        let entry = listing.entries().iter().find(|e| e.name == name).unwrap();
        self.blob(entry.target.id)
    }

    /// The chunks of file `name`, in file order.
    fn chunks_of(&self, name: &str) -> Vec<&Blob> {
        let manifest = self.manifest_of(name);
        let manifest = self.keys.open_manifest(&manifest.entry.id, manifest.bytes.clone()).unwrap();
        manifest.chunks.iter().map(|c| self.blob(c.id)).collect()
    }
}

impl Blob {
    fn start(&self) -> usize {
        usize::try_from(self.entry.offset).unwrap()
    }

    fn end(&self) -> usize {
        self.start() + usize::try_from(self.entry.len).unwrap()
    }
}

/// From now on, wherever a client reads blob `at` from its pack by range,
/// it gets `bytes` in its place instead (fitted to `at`'s length, so the
/// answer keeps its size). Returns how many answers were changed.
fn present(proxy: &Proxy, at: &Blob, bytes: Vec<u8>) -> Arc<AtomicUsize> {
    let applied = Arc::new(AtomicUsize::new(0));
    let counter = applied.clone();
    let (start, end) = (at.start(), at.end());
    proxy.rewrite_response("GET", &format!("/v1/collections/*/packs/{}", at.pack.to_hex()), move |req, resp| {
        let Some(range) = req.range() else { return };
        let (from, to) = (usize::try_from(range.start).unwrap(), usize::try_from(range.end).unwrap());
        if resp.status.as_u16() != 206 || start < from || end > to {
            return;
        }
        let place = &mut resp.body[start - from..end - from];
        let n = bytes.len().min(place.len());
        place[..n].copy_from_slice(&bytes[..n]);
        counter.fetch_add(1, Ordering::SeqCst);
    });
    applied
}

fn fired(applied: &AtomicUsize, what: &str) {
    assert!(applied.load(Ordering::SeqCst) > 0, "{what}: the attack never happened");
}

/// a has synced a tree with files of several chunks, several files and
/// two folders; b has synced nothing yet (its first sync reads it all).
fn content(dir: &std::path::Path, server: &Server, proxy: &Proxy) -> (Device, Device, Layout) {
    let (a, b, _) = account(dir, server, proxy);
    // Over MAX_CHUNK: at least two chunks.
    a.write("big.bin", &noise(1, 4 * 1024 * 1024 + 300_000));
    a.write("small.bin", &noise(2, 100_000));
    a.write("left.txt", b"the left file's content");
    a.write("right.txt", b"the right file, another");
    a.write("one/x.txt", b"in folder one");
    a.write("two/y.txt", b"in folder two");
    a.sync();
    let layout = Layout::read(&proxy.log(), server, &a);
    (a, b, layout)
}

// ---------------------------------------------------------------------------
// A1: wrapped keys

/// a, b and c on one account in sync; then a revokes c, which starts
/// account key epoch 1. b has not run since: it must fetch its wrap of the
/// new root key (and the previous root key's wrap) from the server.
fn rotated(dir: &std::path::Path, server: &Server, proxy: &Proxy) -> (Device, Device) {
    let (a, b, key) = account(dir, server, proxy);
    let c = Device::new(dir, "c", server);
    c.recover(&key);
    a.write("notes.txt", b"written in epoch 0");
    a.sync();
    b.sync();
    a.ok(&["devices", "revoke", "c"]);
    assert_eq!(keys_of(&a).epoch, 1);
    (a, b)
}

#[test]
fn a1_a_flipped_replaced_or_withheld_device_wrap_of_a_new_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b) = rotated(dir.path(), &server, &proxy);
    b.write("new.txt", b"must never be sealed under a key the server chose");
    let b_keys = keys_of(&b);
    let (account, b_id) = (b_keys.account, b_keys.device.id().to_hex());
    let stored = stored_objects(&server);
    // The server's own root key, wrapped (validly) to b's public key, and a
    // collection key of its making under it: what b would encrypt to.
    let evil_root = AccountRootKey::generate(&mut os_rng());
    let evil_wrap = wrap_to_device(&evil_root, b_keys.device.public(), account, 1, &mut os_rng()).unwrap();
    let evil_collection = {
        let (collection, _) = collection_keys(&server, &b);
        let ctx = CollectionWrapContext { account, collection, collection_epoch: 2, account_epoch: 1 };
        let wrap = wrap_collection_key(&CollectionKey::generate(&mut os_rng()), &evil_root, &ctx, &mut os_rng()).unwrap();
        WrapRecord { id: collection.to_hex(), epoch: 2, wrap: B64(wrap) }
    };
    type Attack = Box<dyn Fn(&mut AccountKeys) + Send + Sync>;
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "flipped",
            Box::new(|keys: &mut AccountKeys| keys.device_wraps.iter_mut().for_each(|w| flip_last(&mut w.wrap.0))),
            "authenticated decryption failed",
        ),
        (
            "replaced by a key of the server's",
            Box::new(move |keys: &mut AccountKeys| {
                for w in keys.device_wraps.iter_mut().filter(|w| w.id == b_id && w.epoch == 1) {
                    w.wrap = B64(evil_wrap.clone());
                }
                keys.collection_wraps.push(evil_collection.clone());
            }),
            "root key does not match the chain's commitment",
        ),
        (
            "withheld",
            Box::new(|keys: &mut AccountKeys| keys.device_wraps.clear()),
            "withholds this device's key of account epoch 1",
        ),
    ];
    for (what, attack, detail) in attacks {
        proxy.log().clear();
        let rule = proxy.rewrite_json("GET", "/v1/keys", move |_, keys: &mut AccountKeys| attack(keys));
        // A withheld key is tampering too: the chain says epoch 1 exists.
        sync_detected(&b, what, detail);
        assert!(rule.hits() > 0, "{what}: the attack never happened");
        proxy.remove(&rule);
        assert_wrote_nothing(&proxy.log(), &server, &stored, what);
        assert_eq!(keys_of(&b).epoch, 0, "{what}: b adopted a root key");
    }
    // The honest answer still works.
    b.sync();
    assert_eq!(keys_of(&b).epoch, 1);
}

#[test]
fn a1_a_flipped_or_withheld_previous_root_wrap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, _b) = rotated(dir.path(), &server, &proxy);
    // a holds the root key of epoch 1 only; epoch 0 (which the collection's
    // first key is wrapped under) comes from the previous-root wrap.
    a.write("new.txt", b"new data");
    let stored = stored_objects(&server);
    type Attack = Box<dyn Fn(&mut AccountKeys) + Send + Sync>;
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "flipped",
            Box::new(|keys: &mut AccountKeys| keys.previous_root_wraps.iter_mut().for_each(|w| flip_last(&mut w.wrap.0))),
            "authenticated decryption failed",
        ),
        (
            "replaced by other bytes",
            Box::new(|keys: &mut AccountKeys| keys.previous_root_wraps.iter_mut().for_each(|w| w.wrap.0[40..].fill(0x5a))),
            "authenticated decryption failed",
        ),
        ("withheld", Box::new(|keys: &mut AccountKeys| keys.previous_root_wraps.clear()), "unknown account key epoch"),
    ];
    for (what, attack, detail) in attacks {
        proxy.log().clear();
        let rule = proxy.rewrite_json("GET", "/v1/keys", move |_, keys: &mut AccountKeys| attack(keys));
        sync_detected(&a, what, detail);
        assert!(rule.hits() > 0, "{what}: the attack never happened");
        proxy.remove(&rule);
        assert_wrote_nothing(&proxy.log(), &server, &stored, what);
    }
    a.sync();
}

#[test]
fn a1_a_flipped_swapped_or_withheld_collection_key_wrap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    a.write("doc.txt", b"hello");
    a.sync();
    // A second collection: its genuine key is what the server swaps in.
    let other = dir.path().join("other-folder");
    std::fs::create_dir_all(&other).unwrap();
    a.ok(&["sync", other.to_str().unwrap(), "--collection", "other"]);
    b.sync();
    b.write("new.txt", b"new data");
    let stored = stored_objects(&server);
    type Attack = Box<dyn Fn(&mut AccountKeys) + Send + Sync>;
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "flipped",
            Box::new(|keys: &mut AccountKeys| keys.collection_wraps.iter_mut().for_each(|w| flip_last(&mut w.wrap.0))),
            "authenticated decryption failed",
        ),
        (
            "swapped with another collection's key",
            Box::new(|keys: &mut AccountKeys| {
                assert_eq!(keys.collection_wraps.len(), 2);
                let first = keys.collection_wraps[0].wrap.clone();
                keys.collection_wraps[0].wrap = keys.collection_wraps[1].wrap.clone();
                keys.collection_wraps[1].wrap = first;
            }),
            "object belongs to another context (collection)",
        ),
        (
            "withheld",
            Box::new(|keys: &mut AccountKeys| keys.collection_wraps.clear()),
            // b files a fresh key, the server refuses it and still shows none.
            "withholds the key of collection",
        ),
    ];
    for (what, attack, detail) in attacks {
        proxy.log().clear();
        let rule = proxy.rewrite_json("GET", "/v1/keys", move |_, keys: &mut AccountKeys| attack(keys));
        sync_detected(&b, what, detail);
        assert!(rule.hits() > 0, "{what}: the attack never happened");
        proxy.remove(&rule);
        assert_wrote_nothing(&proxy.log(), &server, &stored, what);
    }
    // Withheld, and the server pretends to accept the fresh key b files:
    // b's history does not open under that key.
    proxy.log().clear();
    let hide = proxy.rewrite_json("GET", "/v1/keys", |_, keys: &mut AccountKeys| keys.collection_wraps.clear());
    let accept = proxy.answer("PUT", "/v1/collections/*/keys/*", |_| ResponseParts::new(201, Vec::new()));
    sync_detected(&b, "withheld, fresh key accepted", "authenticated decryption failed");
    assert!(hide.hits() > 0 && accept.hits() > 0);
    proxy.clear();
    assert_wrote_nothing(&proxy.log(), &server, &stored, "withheld, fresh key accepted");
    b.sync();
}

// ---------------------------------------------------------------------------
// A1, A4: recovery

/// Runs `keyhold recover` on `device` with `key`.
fn recover_run(device: &Device, key: &str) -> Output {
    std::process::Command::new(common::BIN)
        .args(["recover", "--name", &device.name])
        .env("KEYHOLD_HOME", &device.home)
        .env("KEYHOLD_SERVER", &device.server)
        .env("KEYHOLD_RECOVERY_KEY", key)
        .env("KEYHOLD_LOG", "warn")
        .output()
        .unwrap()
}

/// An account (created directly on the server) and a device about to
/// recover it through the proxy.
fn recovery_setup(dir: &std::path::Path, server: &Server, proxy: &Proxy) -> (Device, String) {
    let a = Device::new(dir, "a", server);
    let key = a.init(dir);
    (device(dir, "r", server, proxy), key)
}

/// `recover` through the lying proxy fails with `detail` and creates no home.
fn recovery_refused(
    proxy: &Proxy,
    r: &Device,
    key: &str,
    what: &str,
    detail: &str,
    attack: impl Fn(&mut RecoveryInfo) + Send + Sync + 'static,
) {
    let rule = proxy.rewrite_json("GET", "/v1/recovery/*", move |_, info: &mut RecoveryInfo| attack(info));
    let out = recover_run(r, key);
    assert!(rule.hits() > 0, "{what}: the attack never happened");
    proxy.remove(&rule);
    assert_integrity(&out, what, detail);
    assert!(!r.home.exists(), "{what}: a home was created");
    assert_eq!(proxy.log().count("POST", "/v1/recovery/*/devices"), 0, "{what}: a device was enrolled");
}

#[test]
fn a1_recovery_refuses_a_flipped_replaced_or_empty_recovery_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (r, key) = recovery_setup(dir.path(), &server, &proxy);
    recovery_refused(&proxy, &r, &key, "flipped", "authenticated decryption failed", |info| flip_last(&mut info.recovery_wrap.0));
    // The server wraps a root key of its own to the recovery key's public
    // key (which the chain publishes): it opens, but the chain's signed
    // commitment names another key.
    recovery_refused(
        &proxy,
        &r,
        &key,
        "replaced by a key of the server's",
        "root key does not match the chain's commitment",
        |info| {
            let account = keyhold_core::AccountId::from_hex(&info.account_id).unwrap();
            let chain = DeviceChain::verify(account, info.chain.iter().map(|e| e.0.as_slice())).unwrap();
            let evil = AccountRootKey::generate(&mut os_rng());
            info.recovery_wrap = B64(wrap_to_device(&evil, chain.recovery(), account, info.epoch, &mut os_rng()).unwrap());
        },
    );
    recovery_refused(&proxy, &r, &key, "empty", "object is truncated", |info| info.recovery_wrap.0.clear());
    // The honest answer still works.
    r.recover(&key);
}

/// Rewrites the Argon2id parameters stored in a recovery wrap (layout:
/// header 7, account 16, epoch 4, then memory KiB, passes, lanes as
/// big-endian u32; the parameters are in the wrap's associated data).
fn set_kdf(info: &mut RecoveryInfo, memory_kib: u32, iterations: u32, parallelism: u32) {
    let w = &mut info.recovery_wrap.0;
    assert_eq!(keyhold_core::peek_type(w), Some(ObjectType::RecoveryKeyWrap));
    w[27..31].copy_from_slice(&memory_kib.to_be_bytes());
    w[31..35].copy_from_slice(&iterations.to_be_bytes());
    w[35..39].copy_from_slice(&parallelism.to_be_bytes());
}

#[test]
fn a4_recovery_kdf_parameters_below_the_floor_are_refused_before_argon2_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (r, key) = recovery_setup(dir.path(), &server, &proxy);
    let floor = keyhold_core::KdfParams::FLOOR;
    for (what, m, t, p) in [
        ("8 MiB", 8 * 1024, floor.iterations, floor.parallelism),
        ("one pass", floor.memory_kib, 1, floor.parallelism),
        ("trivial", 8, 1, 1),
    ] {
        recovery_refused(&proxy, &r, &key, what, "weaker than this client's pinned minimum", move |info| set_kdf(info, m, t, p));
    }
}

#[test]
fn a4_recovery_kdf_parameters_above_the_ceiling_are_refused_before_argon2_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (r, key) = recovery_setup(dir.path(), &server, &proxy);
    let ceiling = keyhold_core::KdfParams::CEILING;
    for (what, m, t, p) in [
        ("4 GiB", 4 * 1024 * 1024, 3, 1),
        ("a million passes", 64 * 1024, 1_000_000, 1),
        ("256 lanes", 64 * 1024, 3, 256),
        ("everything at the maximum", u32::MAX, u32::MAX, u32::MAX),
        ("just over", ceiling.memory_kib + 1, ceiling.iterations, ceiling.parallelism),
    ] {
        recovery_refused(&proxy, &r, &key, what, "exceed this client's pinned maximum", move |info| set_kdf(info, m, t, p));
    }
}

// ---------------------------------------------------------------------------
// A4, A5: versions, suites, types

#[test]
fn a4_a_revision_or_pack_of_another_format_version_or_suite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    a.write("doc.txt", b"hello");
    a.sync();
    for (what, byte, value, detail) in [
        ("older format version", 4, 0u8, "unsupported format version 0"),
        ("newer format version", 4, 2, "unsupported format version 2"),
        ("other cipher suite", 5, 2, "unsupported cipher suite 0x02"),
    ] {
        let rule = proxy.rewrite_json("GET", "/v1/collections/*/revisions", move |_, list: &mut Revisions| {
            list.revisions.iter_mut().for_each(|r| r.0[byte] = value);
        });
        sync_detected(&b, &format!("revision: {what}"), detail);
        assert!(rule.hits() > 0);
        proxy.remove(&rule);
    }
    for (what, byte, value, detail) in [
        ("older format version", 4, 0u8, "unsupported format version 0"),
        ("other cipher suite", 5, 7, "unsupported cipher suite 0x07"),
    ] {
        let rule = proxy.rewrite_response("GET", "/v1/collections/*/packs/*", move |req, resp| {
            if req.range().is_some_and(|r| r.start == 0) {
                resp.body[byte] = value;
            }
        });
        sync_detected(&b, &format!("pack: {what}"), detail);
        assert!(rule.hits() > 0);
        proxy.remove(&rule);
    }
    b.sync();
    assert_eq!(std::fs::read(b.path("doc.txt")).unwrap(), b"hello");
}

#[test]
fn a5_a_pack_presented_as_a_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    a.write("doc.txt", b"hello");
    a.sync();
    let pack = proxy.log().last("PUT", "/v1/collections/*/packs/*").unwrap().request.body;
    let rule = proxy.rewrite_json("GET", "/v1/collections/*/revisions", move |_, list: &mut Revisions| {
        list.revisions.iter_mut().for_each(|r| r.0 = pack[..REVISION_LEN].to_vec());
    });
    sync_detected(&b, "pack as revision", "wrong object type: expected Revision, found type byte 0x01");
    assert!(rule.hits() > 0);
}

#[test]
fn a5_a_revision_or_a_chunk_presented_as_part_of_a_pack_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    // The pack's header read answered with a revision's first bytes.
    let revision = last_commit(&proxy.log());
    let rule = proxy.rewrite_response("GET", "/v1/collections/*/packs/*", move |req, resp| {
        if req.range().is_some_and(|r| r.start == 0) {
            let n = resp.body.len();
            resp.body = revision[..n].to_vec();
        }
    });
    sync_detected(&b, "revision as pack", "wrong object type: expected Pack, found type byte 0x02");
    assert!(rule.hits() > 0);
    proxy.remove(&rule);
    // A chunk where the root listing is read (the blob's type is bound into
    // its key and associated data).
    let root = layout.listing_naming("big.bin");
    let chunk = layout.chunks_of("small.bin")[0];
    let applied = present(&proxy, root, chunk.bytes.clone());
    sync_detected(&b, "chunk as listing", "authenticated decryption failed");
    fired(&applied, "chunk as listing");
    // A listing where a manifest is read.
    proxy.clear();
    let applied = present(&proxy, layout.manifest_of("left.txt"), layout.listing_naming("x.txt").bytes.clone());
    sync_detected(&b, "listing as manifest", "authenticated decryption failed");
    fired(&applied, "listing as manifest");
}

#[test]
fn a5_a_collection_key_wrap_presented_as_a_device_wrap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b) = rotated(dir.path(), &server, &proxy);
    let rule = proxy.rewrite_json("GET", "/v1/keys", |_, keys: &mut AccountKeys| {
        let collection_wrap = keys.collection_wraps[0].wrap.clone();
        keys.device_wraps.iter_mut().for_each(|w| w.wrap = collection_wrap.clone());
    });
    sync_detected(&b, "collection wrap as device wrap", "wrong object type: expected DeviceKeyWrap, found type byte 0x05");
    assert!(rule.hits() > 0);
    assert_eq!(keys_of(&b).epoch, 0);
}

// ---------------------------------------------------------------------------
// B: content, through pack range reads

#[test]
fn b1_a_flipped_byte_in_a_chunk_read_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let chunks = layout.chunks_of("big.bin");
    for (what, chunk, at) in [("first byte", chunks[0], 0), ("tag", chunks[1], chunks[1].bytes.len() - 1)] {
        let mut flipped = chunk.bytes.clone();
        flipped[at] ^= 0x80;
        let applied = present(&proxy, chunk, flipped);
        sync_detected(&b, what, "authenticated decryption failed");
        fired(&applied, what);
        proxy.clear();
    }
    // So are flips in the pack's own index and trailer.
    let rule = proxy.rewrite_response("GET", "/v1/collections/*/packs/*", |_, resp| flip_last(&mut resp.body));
    sync_detected(&b, "index or trailer", "authenticated decryption failed");
    assert!(rule.hits() > 0);
    proxy.clear();
    b.sync();
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), noise(1, 4 * 1024 * 1024 + 300_000));
}

#[test]
fn a6_every_kind_of_tampering_fails_alike_and_sends_nothing_back() {
    // No decryption oracle: whatever the server altered (a chunk's bytes, a
    // chunk's tag, a folder listing), the client answers the same way — the
    // same refusal, the same exit code — and sends the server nothing
    // derived from what it decrypted: no request with a body, no report.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let chunks = layout.chunks_of("big.bin");
    let listing = layout.listing_naming("x.txt");
    let mut outcomes = Vec::new();
    for (what, blob, at) in
        [("chunk body", chunks[0], 0), ("chunk tag", chunks[1], chunks[1].bytes.len() - 1), ("listing", listing, 20)]
    {
        let mut altered = blob.bytes.clone();
        altered[at] ^= 0x01;
        let applied = present(&proxy, blob, altered);
        proxy.log().clear();
        let before = snapshot(&b.folder);
        let out = sync_run(&b);
        fired(&applied, what);
        assert_eq!(snapshot(&b.folder), before, "{what}: the sync folder changed");
        let sent_bodies: Vec<String> = proxy
            .log()
            .all()
            .into_iter()
            // Signing in (before anything is read) is the only request with a body.
            .filter(|e| !e.request.body.is_empty() && !e.request.path.starts_with("/v1/auth/"))
            .map(|e| format!("{} {}", e.request.method, e.request.path))
            .collect();
        assert!(sent_bodies.is_empty(), "{what}: the client sent the server {sent_bodies:?} after the failure");
        outcomes.push((what, out.status.code(), stderr(&out)));
        proxy.clear();
    }
    let (first, code, message) = &outcomes[0];
    assert_eq!(*code, Some(INTEGRITY_EXIT));
    for (what, other_code, other_message) in &outcomes[1..] {
        assert_eq!(other_code, code, "{what} and {first} fail with different exit codes");
        assert_eq!(other_message, message, "{what} and {first} fail with different messages");
    }
}

#[test]
fn b2_two_chunks_swapped_in_a_read_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let chunks = layout.chunks_of("big.bin");
    assert!(chunks.len() >= 2);
    let first = present(&proxy, chunks[0], chunks[1].bytes.clone());
    let second = present(&proxy, chunks[1], chunks[0].bytes.clone());
    sync_detected(&b, "swapped chunks", "authenticated decryption failed");
    fired(&first, "first chunk");
    fired(&second, "second chunk");
}

#[test]
fn b3_a_chunk_of_another_file_spliced_in_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let last = *layout.chunks_of("big.bin").last().unwrap();
    let applied = present(&proxy, last, layout.chunks_of("small.bin")[0].bytes.clone());
    sync_detected(&b, "spliced chunk", "authenticated decryption failed");
    fired(&applied, "spliced chunk");
}

#[test]
fn b4_a_truncated_read_or_a_pack_listed_shorter_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let last = *layout.chunks_of("big.bin").last().unwrap();
    // The server lists the pack as ending where the file's last chunk
    // ends (as if the object were truncated there). First, before b has
    // read (and kept) the pack's index.
    let (pack, size) = (last.pack, u64::try_from(last.end()).unwrap());
    let rule = proxy.rewrite_json("GET", "/v1/collections/*/packs", move |_, packs: &mut Packs| {
        packs.packs.iter_mut().filter(|p| p.id.0 == pack).for_each(|p| p.size = size);
    });
    sync_detected(&b, "pack listed shorter", "authenticated decryption failed");
    assert!(rule.hits() > 0);
    proxy.clear();
    // The answer to the read that includes the file's last chunk stops
    // where that chunk starts: the chunk is dropped.
    let (pack, cut, end) = (last.pack.to_hex(), u64::try_from(last.start()).unwrap(), u64::try_from(last.end()).unwrap());
    let applied = Arc::new(AtomicUsize::new(0));
    let counter = applied.clone();
    proxy.rewrite_response("GET", &format!("/v1/collections/*/packs/{pack}"), move |req, resp| {
        if let Some(range) = req.range().filter(|r| r.start <= cut && r.end >= end) {
            resp.body.truncate(usize::try_from(cut - range.start).unwrap());
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // A short answer is refused as a protocol violation (exit 1).
    sync_detected(&b, "read cut at a chunk boundary", "range answer of the wrong length");
    fired(&applied, "read cut at a chunk boundary");
}

// ---------------------------------------------------------------------------
// C: names, structure, attributes, freshness

#[test]
fn c1_two_files_contents_swapped_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    let (left, right) = (layout.manifest_of("left.txt"), layout.manifest_of("right.txt"));
    let first = present(&proxy, left, right.bytes.clone());
    let second = present(&proxy, right, left.bytes.clone());
    sync_detected(&b, "swapped manifests", "authenticated decryption failed");
    assert!(first.load(Ordering::SeqCst) + second.load(Ordering::SeqCst) > 0, "the attack never happened");
}

#[test]
fn c2_a_folders_entries_shown_under_another_folder_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, layout) = content(dir.path(), &server, &proxy);
    // one/x.txt and two/y.txt each moved to the other parent.
    let (one, two) = (layout.listing_naming("x.txt"), layout.listing_naming("y.txt"));
    let first = present(&proxy, one, two.bytes.clone());
    let second = present(&proxy, two, one.bytes.clone());
    sync_detected(&b, "swapped folder listings", "authenticated decryption failed");
    assert!(first.load(Ordering::SeqCst) + second.load(Ordering::SeqCst) > 0, "the attack never happened");
}

/// a and b in sync on `doc.txt`; then a changes the tree with `change` and
/// syncs: b's next sync must read the new root listing.
fn changed_tree(dir: &std::path::Path, server: &Server, proxy: &Proxy, change: impl Fn(&Device)) -> (Device, Layout) {
    let (a, b, _) = account(dir, server, proxy);
    a.write("doc.txt", b"a document");
    a.sync();
    b.sync();
    change(&a);
    a.sync();
    (b, Layout::read(&proxy.log(), server, &a))
}

#[test]
fn c3_an_older_listing_with_other_attributes_is_detected() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (b, layout) = changed_tree(dir.path(), &server, &proxy, |a| {
        std::fs::set_permissions(a.path("doc.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    });
    // The same folder, its one entry with the old mode: a genuine listing,
    // served in place of the new one.
    let versions = layout.listings_naming("doc.txt");
    assert_eq!(versions.len(), 2);
    let (old, new) = (versions[0].0, versions[1].0);
    assert_eq!(old.bytes.len(), new.bytes.len(), "only an attribute differs");
    let applied = present(&proxy, new, old.bytes.clone());
    sync_detected(&b, "old attributes", "authenticated decryption failed");
    fired(&applied, "old attributes");
}

#[test]
fn c4_an_entry_omitted_from_a_listing_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (b, layout) = changed_tree(dir.path(), &server, &proxy, |a| a.write("added.txt", b"a second file"));
    let new = layout.listing_naming("added.txt");
    // The listing as it was before the entry was added (a genuine listing
    // of the same folder, one entry short)…
    let old = layout.listings_naming("doc.txt")[0].0;
    assert!(old.bytes.len() < new.bytes.len());
    let applied = present(&proxy, new, old.bytes.clone());
    sync_detected(&b, "older listing", "authenticated decryption failed");
    fired(&applied, "older listing");
    proxy.clear();
    // …or the new listing cut by its last entry (zero-filled to its length).
    let mut cut = new.bytes[..old.bytes.len()].to_vec();
    cut.resize(new.bytes.len(), 0);
    let applied = present(&proxy, new, cut);
    sync_detected(&b, "cut listing", "authenticated decryption failed");
    fired(&applied, "cut listing");
}

#[test]
fn c5_an_older_head_and_history_replayed_to_a_device_that_saw_newer_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    a.write("doc.txt", b"version one");
    a.sync();
    b.sync();
    // What the server answered b while revision 0 was the newest.
    let log = proxy.log();
    let old_head = log.last("GET", "/v1/collections/*/head").unwrap().response;
    let old_list = log.last("GET", "/v1/collections/*/revisions").unwrap().response;
    assert_eq!(old_head.parse::<HeadRecord>().seq, 0);
    a.write("doc.txt", b"version two");
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("doc.txt")).unwrap(), b"version two");
    b.write("mine.txt", b"b's new file");
    let stored = stored_objects(&server);
    // Replayed: the old head and the old history, both genuine and signed.
    log.clear();
    let head = proxy.answer("GET", "/v1/collections/*/head", move |_| old_head.clone());
    let list = proxy.answer("GET", "/v1/collections/*/revisions", move |_| old_list.clone());
    sync_detected(&b, "replayed head", "rollback detected: the server offers revision 0 but this device has seen 1");
    // (Refused on the head alone: the replayed history is never read.)
    assert!(head.hits() > 0);
    drop(list);
    proxy.clear();
    // The collection denied altogether.
    let gone = proxy.answer("GET", "/v1/collections/*/head", |_| ResponseParts::error(404, "not_found", "no such collection"));
    sync_detected(&b, "no head", "rollback detected: the server offers revision 0 but this device has seen 1");
    assert!(gone.hits() > 0);
    proxy.clear();
    assert_wrote_nothing(&log, &server, &stored, "rollback");
    assert_eq!(std::fs::read(b.path("doc.txt")).unwrap(), b"version two");
}

/// A forking server's view for one device: the genuine history up to
/// `fork` (inclusive), then only that device's own commits, which it keeps
/// to itself (the real server's compare-and-swap would refuse them, since
/// the other device moved the head: a forking server does not ask it).
fn fork_view(proxy: &Proxy, fork: HeadRecord, branch: Arc<Mutex<Vec<Vec<u8>>>>, keep_commits: bool) {
    let heads = branch.clone();
    proxy.answer("GET", "/v1/collections/*/head", move |_| {
        let head = heads
            .lock()
            .unwrap()
            .last()
            .map_or(fork, |r| HeadRecord { seq: RevisionHeader::parse(r).unwrap().seq, id: HexId(ObjectId::of(r)) });
        ResponseParts::json(200, &head)
    });
    let lists = branch.clone();
    proxy.rewrite_json("GET", "/v1/collections/*/revisions", move |req, list: &mut Revisions| {
        let after = req.query_param("after").map(|a| a.parse::<u64>().unwrap());
        list.revisions.retain(|r| RevisionHeader::parse(&r.0).unwrap().seq <= fork.seq);
        for r in lists.lock().unwrap().iter() {
            if after.is_none_or(|a| RevisionHeader::parse(r).unwrap().seq > a) {
                list.revisions.push(B64(r.clone()));
            }
        }
    });
    if keep_commits {
        proxy.answer("POST", "/v1/collections/*/revisions", move |req| {
            branch.lock().unwrap().push(req.body.clone());
            let head = HeadRecord { seq: RevisionHeader::parse(&req.body).unwrap().seq, id: HexId(ObjectId::of(&req.body)) };
            ResponseParts::json(201, &head)
        });
    }
}

#[test]
fn c6_a_fork_between_two_devices_is_detected_when_their_heads_meet() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // Each device has its own line to the server, so each can be shown
    // its own history.
    let (to_a, to_b) = (Proxy::start(&server), Proxy::start(&server));
    let a = device(dir.path(), "a", &server, &to_a);
    let b = device(dir.path(), "b", &server, &to_b);
    let key = a.init(dir.path());
    b.recover(&key);
    a.write("base.txt", b"common ground");
    a.sync();
    b.sync();
    let fork = to_b.log().last("GET", "/v1/collections/*/head").unwrap().response.parse::<HeadRecord>();
    // From here on, b sees the history up to the fork and its own commits.
    let branch = Arc::new(Mutex::new(Vec::new()));
    fork_view(&to_b, fork, branch.clone(), true);
    a.write("a.txt", b"written on a");
    a.sync();
    b.write("b.txt", b"written on b");
    b.sync();
    assert_eq!(branch.lock().unwrap().len(), 1, "b committed on its branch");
    assert!(!b.path("a.txt").exists(), "b was shown a's commit");
    // The heads meet: b is shown the genuine history…
    to_b.clear();
    sync_detected(&b, "b meets a's history", "fork detected at revision 1");
    // …and a is shown b's.
    fork_view(&to_a, fork, branch, false);
    sync_detected(&a, "a meets b's history", "fork detected at revision 1");
}

// ---------------------------------------------------------------------------
// D1: injection

/// Makes the proxy show `stored` as the newest revision, after the genuine ones.
fn inject(proxy: &Proxy, stored: Vec<u8>) -> (common::proxy::Rule, common::proxy::Rule) {
    let head = HeadRecord { seq: RevisionHeader::parse(&stored).unwrap().seq, id: HexId(ObjectId::of(&stored)) };
    let heads = proxy.answer("GET", "/v1/collections/*/head", move |_| ResponseParts::json(200, &head));
    let lists = proxy.rewrite_json("GET", "/v1/collections/*/revisions", move |_, list: &mut Revisions| {
        list.revisions.push(B64(stored.clone()));
    });
    (heads, lists)
}

/// a and b in sync on one revision; b has a new file it would commit on
/// top of whatever it accepts. Returns the genuine newest revision too.
fn injection_setup(dir: &std::path::Path, server: &Server, proxy: &Proxy) -> (Device, Device, Vec<u8>) {
    let (a, b, _) = account(dir, server, proxy);
    a.write("doc.txt", b"genuine");
    a.sync();
    b.sync();
    b.write("b.txt", b"b's file");
    (a, b, last_commit(&proxy.log()))
}

fn next_revision(genuine: &[u8], root: BlobRef, author: keyhold_core::DeviceId) -> Revision {
    let header = RevisionHeader::parse(genuine).unwrap();
    Revision {
        collection: header.collection,
        seq: header.seq + 1,
        prev: ObjectId::of(genuine),
        epoch: header.epoch,
        root,
        author,
        time_ms: 0,
    }
}

#[test]
fn d1_a_revision_the_server_made_itself_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (_a, b, genuine) = injection_setup(dir.path(), &server, &proxy);
    // Well formed and linked to the genuine head, but sealed under a key
    // and signed by a device of the server's own making.
    let ghost = DeviceSecret::generate(&mut os_rng());
    let header = RevisionHeader::parse(&genuine).unwrap();
    let made_up = CollectionKeys::derive(&CollectionKey::generate(&mut os_rng()), header.collection, header.epoch);
    let revision = next_revision(&genuine, BlobRef { id: BlobId([7; 32]), epoch: 0 }, ghost.id());
    let (_, forged) = seal_revision(&made_up, &revision, &ghost, &mut os_rng()).unwrap();
    let stored = stored_objects(&server);
    proxy.log().clear();
    let (heads, lists) = inject(&proxy, forged);
    sync_detected(&b, "server-made revision", "authenticated decryption failed");
    assert!(heads.hits() > 0 && lists.hits() > 0);
    assert_wrote_nothing(&proxy.log(), &server, &stored, "server-made revision");
}

#[test]
fn d1_a_revision_no_enrolled_device_signed_is_rejected_even_under_the_right_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, genuine) = injection_setup(dir.path(), &server, &proxy);
    // Sealed under the genuine collection key (say a leaked one), naming
    // the genuine tree, but signed by a device no enrolled device added.
    let (_, keys) = collection_keys(&server, &a);
    let a_public = keys_of(&a).device.public().clone();
    let root = keyhold_core::open_revision(&keys, &genuine, |_| Some(&a_public)).unwrap().revision.root;
    let ghost = DeviceSecret::generate(&mut os_rng());
    let (_, forged) = seal_revision(&keys, &next_revision(&genuine, root, ghost.id()), &ghost, &mut os_rng()).unwrap();
    let stored = stored_objects(&server);
    proxy.log().clear();
    let (heads, lists) = inject(&proxy, forged);
    sync_detected(&b, "unsigned revision", "revision signed by an unknown or unauthorised device");
    assert!(heads.hits() > 0 && lists.hits() > 0);
    assert_wrote_nothing(&proxy.log(), &server, &stored, "unsigned revision");
}

// ---------------------------------------------------------------------------
// F4: a server that says "stored" and drops the object

#[test]
fn f4_a_pack_lost_after_it_was_acknowledged_fails_closed_and_costs_no_local_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    a.write("precious.txt", b"the only copy");
    a.sync();
    // The server accepted (and returned) the pack; now it drops it, and
    // says so to no one: it is no longer listed, and reads of it fail.
    let lost =
        ObjectId::from_hex(proxy.log().last("PUT", "/v1/collections/*/packs/*").unwrap().request.segment(4).unwrap()).unwrap();
    let unlisted = proxy.rewrite_json("GET", "/v1/collections/*/packs", move |_, packs: &mut Packs| {
        packs.packs.retain(|p| p.id.0 != lost);
    });
    proxy.answer("GET", &format!("/v1/collections/*/packs/{}", lost.to_hex()), |_| {
        ResponseParts::error(404, "not_found", "no such pack")
    });
    // Another device fails closed and says what is missing (exit 1: data
    // missing, not data altered).
    sync_refused(&b, "lost pack", "is not stored on the server");
    assert!(unlisted.hits() > 0);
    assert!(!b.path("precious.txt").exists());
    // The writer's copy stays, whatever it syncs, edits or checks.
    let _ = sync_run(&a);
    a.write("other.txt", b"a later edit");
    let _ = sync_run(&a);
    assert_eq!(std::fs::read(a.path("precious.txt")).unwrap(), b"the only copy");
    let check = a.run(&["check", "--read-data"]);
    assert!(!check.status.success(), "check passed with a lost pack: {}", stderr(&check));
}

#[test]
fn f4_the_writer_detects_a_dropped_pack_upload_before_marking_the_file_synced() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = account(dir.path(), &server, &proxy);
    // Every pack upload is answered 201 and never reaches the server.
    let dropped = proxy.answer("PUT", "/v1/collections/*/packs/*", |_| ResponseParts::new(201, Vec::new()));
    a.write("precious.txt", b"the only copy");
    sync_detected(&a, "dropped pack", "integrity check failed");
    assert!(dropped.hits() > 0);
    assert_eq!(server.count("SELECT count(*) FROM revisions"), 0, "a revision names the dropped pack");
    // Not marked synced: once the server stores what it is sent, the file
    // goes up, and reaches the other device.
    proxy.clear();
    a.sync();
    assert_eq!(std::fs::read(a.path("precious.txt")).unwrap(), b"the only copy");
    b.sync();
    assert_eq!(std::fs::read(b.path("precious.txt")).unwrap(), b"the only copy");
}

#[test]
fn f4_the_writer_detects_a_stored_pack_read_back_with_other_bytes() {
    // The pack is stored, but its read-back answers other bytes: at the
    // end (an index swapped for another, say), or at the start. A fresh
    // account each, so the second case meets no pack left by the first.
    for (what, at_end) in [("index or trailer", true), ("prefix", false)] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let proxy = Proxy::start(&server);
        let (a, b, _) = account(dir.path(), &server, &proxy);
        a.write("precious.txt", b"the only copy");
        let rule = proxy.rewrite_response("GET", "/v1/collections/*/packs/*", move |req, resp| {
            let at_start = req.range().is_some_and(|r| r.start == 0);
            if resp.is_success() && at_start != at_end {
                if let Some(byte) = resp.body.last_mut() {
                    *byte ^= 1;
                }
            }
        });
        sync_detected(&a, &format!("read-back with another {what}"), "integrity check failed");
        assert!(rule.hits() > 0, "{what}: no read-back was answered");
        assert_eq!(server.count("SELECT count(*) FROM revisions"), 0, "{what}: a revision names the pack");
        proxy.remove(&rule);
        a.sync();
        b.sync();
        assert_eq!(std::fs::read(b.path("precious.txt")).unwrap(), b"the only copy", "{what}");
    }
}

// ---------------------------------------------------------------------------
// F6: `check` says exactly what is missing or corrupt

/// `check --json` with `args`, on `device`: its exit code and report.
fn check_report(device: &Device, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = device.run(&[&["--json", "check"], args].concat());
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check printed no report ({e}): {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
    (out.status.code(), report)
}

/// A problem of a check report: (state, object, id), and each path it
/// affects with how many revisions.
type Found = ((String, String, String), Vec<(String, usize)>);

fn problems(report: &serde_json::Value) -> Vec<Found> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let affects = p["affects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["path"].as_str().unwrap().to_owned(), a["revisions"].as_array().unwrap().len()))
                .collect();
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            ((s("state"), s("object"), s("id")), affects)
        })
        .collect()
}

#[test]
fn f6_check_names_the_corrupt_chunk_the_file_and_the_revisions_it_spoils() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, _b, layout) = content(dir.path(), &server, &proxy);
    // A second revision that keeps big.bin: the damage spoils both.
    a.write("left.txt", b"the left file, edited");
    a.sync();
    let (code, clean) = check_report(&a, &["--read-data"]);
    assert_eq!(code, Some(0), "an honest server fails check: {clean}");
    assert_eq!(clean["chunks_read"], clean["chunks"]);
    let chunk = layout.chunks_of("big.bin")[1];
    let mut flipped = chunk.bytes.clone();
    flipped[10] ^= 0x04;
    let applied = present(&proxy, chunk, flipped);
    let (code, report) = check_report(&a, &["--read-data"]);
    fired(&applied, "flipped chunk");
    assert_eq!(code, Some(INTEGRITY_EXIT), "{report}");
    assert_eq!(
        problems(&report),
        vec![(("corrupt".into(), "chunk".into(), chunk.entry.id.to_hex()), vec![("big.bin".into(), 2)])],
        "{report}"
    );
    // The same, in words.
    let out = a.run(&["check", "--read-data"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("PROBLEM corrupt chunk {}", chunk.entry.id.to_hex()))
            && text.contains("affects big.bin (revisions ")
            && text.contains("authenticated decryption failed"),
        "{text}"
    );
    assert!(stderr(&out).contains("1 damaged object"), "{}", stderr(&out));
}

#[test]
fn f6_check_lists_every_blob_of_a_lost_pack_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, b, _) = content(dir.path(), &server, &proxy);
    // Enough new content for packs that hold nothing but its chunks.
    a.write("huge.bin", &noise(5, 20 << 20));
    a.sync();
    let layout = Layout::read(&proxy.log(), &server, &a);
    let lost = layout
        .blobs
        .iter()
        .map(|b| b.pack)
        .find(|p| layout.blobs.iter().filter(|b| b.pack == *p).all(|b| b.entry.kind == ObjectType::Chunk))
        .expect("a pack of chunks only");
    let mut expected: Vec<String> = layout.blobs.iter().filter(|b| b.pack == lost).map(|b| b.entry.id.to_hex()).collect();
    expected.sort();
    // Still listed, but never served. A device that knows the pack's index
    // finds out only by reading the data.
    let refused = proxy.answer("GET", &format!("/v1/collections/*/packs/{}", lost.to_hex()), |_| {
        ResponseParts::error(404, "not_found", "no such pack")
    });
    let (code, report) = check_report(&a, &[]);
    assert_eq!(code, Some(0), "check without --read-data reads no chunk: {report}");
    let (code, report) = check_report(&a, &["--read-data"]);
    assert!(refused.hits() > 0);
    assert_eq!(code, Some(INTEGRITY_EXIT), "{report}");
    let found = problems(&report);
    let mut ids: Vec<String> = found.iter().map(|((_, _, id), _)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, expected, "check must name exactly the lost pack's blobs: {report}");
    for ((state, object, id), affects) in &found {
        assert_eq!((state.as_str(), object.as_str()), ("missing", "chunk"), "{id}");
        assert_eq!(affects, &vec![("huge.bin".to_owned(), 1)], "{id}");
    }
    // A device that has never read it cannot read its index either: the
    // pack is reported, and so is every chunk it should hold.
    let (code, report) = check_report(&b, &[]);
    assert_eq!(code, Some(INTEGRITY_EXIT), "{report}");
    let found = problems(&report);
    assert_eq!(found[0].0, ("missing".to_owned(), "pack".to_owned(), lost.to_hex()), "{report}");
    let mut ids: Vec<String> = found[1..].iter().map(|((_, _, id), _)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, expected, "{report}");
    // Dropped from the list as well: a device that has not read the pack
    // list before finds the chunks missing without reading any data.
    let c = device(dir.path(), "c", &server, &proxy);
    c.recover(std::fs::read_to_string(dir.path().join("recovery-a-home")).unwrap().trim());
    proxy.rewrite_json("GET", "/v1/collections/*/packs", move |_, packs: &mut Packs| {
        packs.packs.retain(|p| p.id.0 != lost);
    });
    let (code, report) = check_report(&c, &[]);
    assert_eq!(code, Some(INTEGRITY_EXIT), "{report}");
    let mut ids: Vec<String> = problems(&report).into_iter().map(|((_, _, id), _)| id).collect();
    ids.sort();
    assert_eq!(ids, expected, "{report}");
}

#[test]
fn f6_check_sample_reads_that_share_of_the_chunks_picked_anew_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let proxy = Proxy::start(&server);
    let (a, _b, layout) = content(dir.path(), &server, &proxy);
    let (_, full) = check_report(&a, &["--read-data"]);
    let chunks = full["chunks"].as_u64().unwrap();
    assert!(chunks >= 6, "{full}");
    let chunk = layout.chunks_of("small.bin")[0];
    let mut flipped = chunk.bytes.clone();
    flipped[0] ^= 0x01;
    present(&proxy, chunk, flipped);
    let (mut caught, mut missed) = (0, 0);
    // Half the chunks per run, so each run misses the bad one with even
    // odds; 20 runs that all agree would be a 1 in 500,000 event.
    for _ in 0..20 {
        let (code, report) = check_report(&a, &["--read-data", "--sample", "50"]);
        assert_eq!(report["chunks_read"].as_u64().unwrap(), chunks.div_ceil(2), "{report}");
        assert_eq!(report["chunks"].as_u64().unwrap(), chunks);
        if code == Some(INTEGRITY_EXIT) {
            caught += 1;
            assert_eq!(problems(&report)[0].0.2, chunk.entry.id.to_hex());
        } else {
            assert_eq!(code, Some(0), "{report}");
            missed += 1;
        }
    }
    assert!(caught > 0 && missed > 0, "the sample is not random: caught {caught}, missed {missed}");
}
