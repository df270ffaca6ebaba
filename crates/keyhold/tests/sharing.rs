//! Sharing between people end to end (issue #8): a real server publishing
//! its key directory, three real witnesses and an auditor on loopback, and
//! the real binary on two devices each for Alice and Bob, and one for Carol.
//! The hostile server is a proxy in front of the real one (it answers with
//! anything it likes) or the operator's own SQL on its own database.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use common::kt::World;
use common::proxy::Proxy;
use common::{Device, snapshot};
use keyhold_core::share::{KeyGrant, MemberChange, MemberEntry, Role};
use keyhold_core::{
    AccountId, ChainChange, ChainEntry, ChainHead, CollectionId, CollectionKey, CollectionKeys, DeviceSecret, ObjectId,
    RevisionHeader, Signer, open_revision, os_rng,
};
use keyhold_proto::{Bytes as B64, DeviceChainEntries, GrantRecord, Grants, HexId, MemberLog};

fn account(d: &Device) -> String {
    let status: serde_json::Value = serde_json::from_str(&d.ok(&["status", "--json"])).unwrap();
    status["account"].as_str().unwrap().to_owned()
}

fn sync(d: &Device, collection: &str) -> String {
    d.ok(&["sync", d.folder.to_str().unwrap(), "--collection", collection])
}

fn stderr_of(d: &Device, args: &[&str]) -> (Option<i32>, String) {
    let out = d.run(args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Alice (laptop, phone), Bob (laptop, phone) and Carol, all published in
/// the key directory.
struct People {
    /// In front of the server, when the test asked for one: every device
    /// talks to the server through it.
    proxy: Option<Proxy>,
    world: World,
    alice: Device,
    alice_phone: Device,
    bob: Device,
    bob_phone: Device,
    carol: Device,
}

fn people(dir: &Path, proxied: bool) -> People {
    let world = World::new(dir, "");
    let proxy = proxied.then(|| Proxy::start(&world.server));
    let device = |name: &str| {
        let mut d = world.device(name);
        if let Some(proxy) = &proxy {
            d.server = proxy.url.clone();
        }
        d
    };
    let alice = device("alice-laptop");
    init_with_handle(&alice, dir, "alice");
    let alice_phone = device("alice-phone");
    assert!(alice.pair(&alice_phone).1.status.success());
    let bob = device("bob-laptop");
    init_with_handle(&bob, dir, "bob");
    let bob_phone = device("bob-phone");
    assert!(bob.pair(&bob_phone).1.status.success());
    let carol = device("carol");
    carol.init(dir);
    world.settle();
    People { proxy, world, alice, alice_phone, bob, bob_phone, carol }
}

/// Creates the device's account with a handle.
fn init_with_handle(d: &Device, dir: &Path, handle: &str) {
    let file = dir.join(format!("recovery-{}", d.name));
    let out = d.run(&["init", "--name", &d.name, "--recovery-key-file", file.to_str().unwrap(), "--handle", handle]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(&format!("Handle {handle} claimed")), "{stderr}");
}

/// `handle@host:port` of the world's server.
fn at_server(p: &People, handle: &str) -> String {
    format!("{handle}@{}", p.world.server.url.trim_start_matches("http://"))
}

/// The one pending invitation `device` sees: (id, name).
fn invitation(device: &Device) -> (String, String) {
    let out = device.run(&["--json", "invitations"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending: Vec<&serde_json::Value> = list.as_array().unwrap().iter().filter(|i| i["status"] == "pending").collect();
    assert_eq!(pending.len(), 1, "{list} {stderr}");
    (pending[0]["id"].as_str().unwrap().to_owned(), pending[0]["name"].as_str().unwrap().to_owned())
}

fn accept(device: &Device, id: &str) -> String {
    let out: serde_json::Value = serde_json::from_str(&device.ok(&["--json", "accept", id])).unwrap();
    out["collection"].as_str().unwrap().to_owned()
}

#[test]
fn d3_alice_and_bob_share_both_edit_and_converge_a_reader_cannot_write_carol_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = people(dir.path(), false);
    p.alice.write("plan.txt", b"day 1: the coast");
    p.alice.write("photos/a.jpg", &common::noise(1, 300_000));
    sync(&p.alice, "trip");

    let bob_id = account(&p.bob);
    let alice_id = account(&p.alice);
    // Alice names Bob by his handle; the log binds it to Bob's account.
    let shared = p.alice.ok(&["share", "trip", &at_server(&p, "bob")]);
    assert!(shared.contains(&bob_id), "{shared}");
    assert!(shared.contains("bob-laptop") && shared.contains("bob-phone"), "{shared}");
    assert!(shared.contains("safety number"), "{shared}");
    // The safety number Alice was shown is the one Bob computes.
    let from_bob: serde_json::Value = serde_json::from_str(&p.bob.ok(&["verify", &alice_id, "--json"])).unwrap();
    assert!(shared.contains(from_bob["safety_number"].as_str().unwrap()), "{shared}");

    // Nothing appears on Bob's side until one of his devices accepts.
    let (id, name) = invitation(&p.bob);
    assert_eq!(name, "trip");
    let joined = accept(&p.bob, &id);
    assert_eq!(joined, format!("trip@{alice_id}"));
    sync(&p.bob, &joined);
    assert_eq!(std::fs::read(p.bob.path("plan.txt")).unwrap(), b"day 1: the coast");
    // Bob's phone reads it without accepting again: the keys are filed
    // under Bob's own account key.
    sync(&p.bob_phone, &joined);

    // Both edit; all four devices converge.
    p.bob_phone.write("plan.txt", b"day 1: the coast\nday 2: the mountains (bob)");
    p.bob_phone.write("bob.txt", b"from bob");
    sync(&p.bob_phone, &joined);
    p.alice_phone.write("alice.txt", b"from alice's phone");
    sync(&p.alice_phone, "trip");
    for _ in 0..2 {
        sync(&p.alice, "trip");
        sync(&p.alice_phone, "trip");
        sync(&p.bob, &joined);
        sync(&p.bob_phone, &joined);
    }
    let want = snapshot(&p.alice.folder);
    assert!(want.contains_key("bob.txt") && want.contains_key("alice.txt"), "{want:?}");
    for d in [&p.alice_phone, &p.bob, &p.bob_phone] {
        assert_eq!(snapshot(&d.folder), want, "{} differs", d.name);
    }
    assert_eq!(std::fs::read(p.alice.path("plan.txt")).unwrap(), b"day 1: the coast\nday 2: the mountains (bob)");
    let listed = p.alice.ok(&["collections"]);
    assert!(listed.contains(&format!("member {bob_id} (writer)")), "{listed}");

    // A read-only share: Bob reads, and his writes are refused.
    p.alice.write("notes.txt", b"read me");
    let ro_dir = dir.path().join("alice-ro");
    std::fs::create_dir_all(&ro_dir).unwrap();
    std::fs::write(ro_dir.join("notes.txt"), b"read me").unwrap();
    p.alice.ok(&["sync", ro_dir.to_str().unwrap(), "--collection", "readonly"]);
    p.alice.ok(&["share", "readonly", &bob_id, "--read-only"]);
    let (id, _) = invitation(&p.bob);
    let ro = accept(&p.bob, &id);
    let bob_ro = dir.path().join("bob-ro");
    std::fs::create_dir_all(&bob_ro).unwrap();
    p.bob.ok(&["sync", bob_ro.to_str().unwrap(), "--collection", &ro]);
    assert_eq!(std::fs::read(bob_ro.join("notes.txt")).unwrap(), b"read me");
    std::fs::write(bob_ro.join("mine.txt"), b"bob tries to write").unwrap();
    let out = p.bob.run(&["sync", bob_ro.to_str().unwrap(), "--collection", &ro]);
    assert!(!out.status.success(), "a reader's write went through");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read"), "{stderr}");
    assert_eq!(std::fs::read(bob_ro.join("mine.txt")).unwrap(), b"bob tries to write", "the reader's file was lost");
    p.alice.ok(&["sync", ro_dir.to_str().unwrap(), "--collection", "readonly"]);
    assert!(!ro_dir.join("mine.txt").exists());

    // Carol, never invited, gets nothing.
    let none = p.carol.ok(&["invitations"]);
    assert!(none.contains("no invitations"), "{none}");
    let (code, stderr) = stderr_of(&p.carol, &["sync", p.carol.folder.to_str().unwrap(), "--collection", &joined]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no shared collection"), "{stderr}");
    assert!(common::walkdir(&p.carol.folder).is_empty());

    // The server colludes with the reader and lets its write in: every
    // other client refuses it, as the signed member list says reader.
    let bob_blob = p.world.server.blob_literal(&bob_id);
    p.world.server.sql(&format!("UPDATE share_members SET role = 1 WHERE member_id = {bob_blob}"));
    p.bob.ok(&["sync", bob_ro.to_str().unwrap(), "--collection", &ro]);
    let out = p.alice.run(&["sync", ro_dir.to_str().unwrap(), "--collection", "readonly"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unknown or unauthorised device"), "{stderr}");
    assert!(!ro_dir.join("mine.txt").exists());
    drop(p.world);
}

/// A chain for `account` that the server made up, as long as the genuine
/// one (two entries): a creation entry and a second device, signed by
/// devices of its own.
fn forged_chain(account: AccountId) -> Vec<Vec<u8>> {
    let ghost = DeviceSecret::generate(&mut os_rng());
    let recovery = DeviceSecret::generate(&mut os_rng());
    let second = DeviceSecret::generate(&mut os_rng());
    let root = keyhold_core::AccountRootKey::generate(&mut os_rng());
    let create = ChainEntry::create(account, &ghost, "bob-laptop", recovery.public(), &root, 0).seal(&ghost).unwrap();
    let add = ChainEntry {
        account,
        seq: 1,
        prev: ObjectId::of(&create),
        time_ms: 0,
        account_epoch: 0,
        signer: Signer::Device(ghost.id()),
        change: ChainChange::AddDevice { device: second.public().clone(), name: "bob-phone".into() },
    }
    .seal(&ghost)
    .unwrap();
    vec![create, add]
}

#[test]
fn a3_d2_d3_the_server_cannot_substitute_keys_inject_invitations_insert_members_or_forge_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let p = people(dir.path(), true);
    let proxy = p.proxy.as_ref().unwrap();
    let bob_id = account(&p.bob);
    let alice_id = account(&p.alice);
    let bob_account = AccountId::from_hex(&bob_id).unwrap();
    p.alice.write("plan.txt", b"secret plan");
    sync(&p.alice, "trip");

    // 1. A3: the server answers Alice's lookup of Bob with a chain of its
    // own. The key directory proves another head: refused, nothing sent.
    let forged = forged_chain(bob_account);
    let rule = proxy.rewrite_json::<DeviceChainEntries>("GET", &format!("/v1/accounts/{bob_id}/chain"), move |_, chain| {
        chain.entries = forged.iter().cloned().map(B64).collect();
    });
    let alice_via_proxy = &p.alice;
    let (code, stderr) = stderr_of(alice_via_proxy, &["share", "trip", &bob_id]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("substitutes keys"), "{stderr}");
    assert_eq!(proxy.log().count("POST", "/v1/collections/*/members"), 0, "Alice sent something to a substituted key");
    assert!(rule.hits() > 0);
    proxy.remove(&rule);

    // 2. D2: an invitation Alice never made (signed by a device that is not
    // hers) appears in Bob's list: refused, shown as an alarm.
    let ghost = DeviceSecret::generate(&mut os_rng());
    let fake_key = CollectionKey::generate(&mut os_rng());
    let collection = CollectionId([0x42; 16]);
    let alice_account = AccountId::from_hex(&alice_id).unwrap();
    let bob_laptop = keyhold_client::home::Home::locate(Some(p.bob.home.clone())).unwrap().load().unwrap().1;
    let fake = KeyGrant::seal(
        collection,
        alice_account,
        &ghost,
        bob_account,
        ChainHead { seq: 1, id: ObjectId([1; 32]) },
        Role::Writer,
        &[&fake_key],
        "from alice, honest",
        &[bob_laptop.device.public()],
        &mut os_rng(),
    )
    .unwrap();
    let fake_id = ObjectId::of(&fake);
    let rule = proxy.rewrite_json::<Grants>("GET", "/v1/grants", move |_, grants| {
        grants.grants.push(GrantRecord {
            id: HexId(fake_id),
            collection: collection.to_hex(),
            owner: alice_id.clone(),
            grant: B64(fake.clone()),
            response: None,
        });
    });
    let bob_via_proxy = &p.bob;
    let out = bob_via_proxy.run(&["invitations"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no invitations"));
    let (code, _) = stderr_of(bob_via_proxy, &["accept", &fake_id.to_hex()]);
    assert_ne!(code, Some(0), "Bob accepted an invitation Alice never made");
    assert!(rule.hits() >= 2);
    proxy.remove(&rule);

    // 3. D2/D3: the server inserts a member (Carol) into the member list.
    p.alice.ok(&["share", "trip", &bob_id]);
    let (id, _) = invitation(&p.bob);
    let joined = accept(&p.bob, &id);
    sync(&p.bob, &joined);
    let carol_account = AccountId::from_hex(&account(&p.carol)).unwrap();
    let rule = proxy.rewrite_json::<MemberLog>("GET", "/v1/collections/*/members", move |_, log| {
        let last = log.entries.last().unwrap().0.clone();
        let (parsed, _) = MemberEntry::parse(&last).unwrap();
        let inserted = MemberEntry {
            seq: parsed.seq + 1,
            prev: ObjectId::of(&last),
            signer: ghost.id(),
            change: MemberChange::Add {
                account: carol_account,
                role: Role::Writer,
                chain: ChainHead { seq: 0, id: ObjectId([0; 32]) },
            },
            ..parsed
        };
        log.entries.push(B64(inserted.seal(&ghost).unwrap()));
    });
    for d in [alice_via_proxy, bob_via_proxy] {
        let (code, stderr) = stderr_of(
            d,
            &["sync", d.folder.to_str().unwrap(), "--collection", if d.name.starts_with("alice") { "trip" } else { &joined }],
        );
        assert_eq!(code, Some(3), "{}: {stderr}", d.name);
        assert!(stderr.contains("integrity"), "{stderr}");
    }
    assert!(rule.hits() >= 2);
    proxy.remove(&rule);

    // 4. D3: the server replays a revision Bob signed at another place in
    // the history, as if Bob had written it again.
    p.bob.write("bob.txt", b"bob was here");
    sync(&p.bob, &joined);
    let rule = proxy.rewrite_json::<keyhold_proto::Revisions>("GET", "/v1/collections/*/revisions", |_, page| {
        if let Some(last) = page.revisions.last().cloned() {
            let mut replayed = last.0.clone();
            // seq + 1, prev = the genuine last revision: a well-formed header.
            let header = RevisionHeader::parse(&replayed).unwrap();
            replayed[23..31].copy_from_slice(&(header.seq + 1).to_be_bytes());
            replayed[35..67].copy_from_slice(ObjectId::of(&last.0).as_bytes());
            page.revisions.push(B64(replayed));
        }
    });
    let (code, stderr) = stderr_of(alice_via_proxy, &["sync", p.alice.folder.to_str().unwrap(), "--collection", "trip"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("integrity"), "{stderr}");
    assert!(rule.hits() > 0);
    proxy.remove(&rule);
    // Without the hostile proxy, everything still syncs.
    sync(&p.alice, "trip");
    assert_eq!(std::fs::read(p.alice.path("bob.txt")).unwrap(), b"bob was here");
    drop(p.world);
}

#[test]
fn a7_after_unshare_bobs_keys_open_nothing_written_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let p = people(dir.path(), true);
    let proxy = p.proxy.as_ref().unwrap();
    let bob_id = account(&p.bob);
    let carol_id = account(&p.carol);
    p.alice.write("before.txt", b"bob may read this");
    sync(&p.alice, "trip");
    p.alice.ok(&["share", "trip", &bob_id]);
    p.alice.ok(&["share", "trip", &carol_id]);
    let (id, _) = invitation(&p.bob);
    let joined = accept(&p.bob, &id);
    sync(&p.bob, &joined);
    let (id, _) = invitation(&p.carol);
    let carol_joined = accept(&p.carol, &id);
    sync(&p.carol, &carol_joined);

    p.alice.ok(&["unshare", "trip", &bob_id]);
    p.alice.write("after.txt", b"bob must not read this");
    sync(&p.alice, "trip");
    // Carol, still a member, takes the new key from Alice's grant.
    sync(&p.carol, &carol_joined);
    assert_eq!(std::fs::read(p.carol.path("after.txt")).unwrap(), b"bob must not read this");
    // The server shows Carol the member list as it was before Bob's
    // removal: her client, which verified the removal, refuses it.
    let rule = proxy.rewrite_json::<MemberLog>("GET", "/v1/collections/*/members", |_, log| {
        log.entries.pop();
    });
    let (code, stderr) = stderr_of(&p.carol, &["sync", p.carol.folder.to_str().unwrap(), "--collection", &carol_joined]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("rollback"), "{stderr}");
    assert!(rule.hits() > 0);
    proxy.remove(&rule);
    // The server refuses Bob at once; his client says why.
    let (code, stderr) = stderr_of(&p.bob, &["sync", p.bob.folder.to_str().unwrap(), "--collection", &joined]);
    assert_ne!(code, Some(0));
    assert!(!p.bob.path("after.txt").exists(), "{stderr}");

    // Checked with Bob's keys directly: every collection key Bob's devices
    // hold (the grants sealed to them, opened with their own secrets) fails
    // to open the revision written after the removal.
    // The revision Alice committed after the removal, as she sent it.
    let alice_api_head = proxy.log().last("POST", "/v1/collections/*/revisions").unwrap().request.body;
    let header = RevisionHeader::parse(&alice_api_head).unwrap();
    assert_eq!(header.epoch, 1, "the revision after the removal is under a new key epoch");
    let mut tried = 0;
    for bob_device in [&p.bob, &p.bob_phone] {
        let keys = keyhold_client::home::Home::locate(Some(bob_device.home.clone())).unwrap().load().unwrap().1;
        let grants_seen = bob_grants(proxy, bob_device);
        for stored in grants_seen {
            let grant = KeyGrant::parse(&stored).unwrap().0;
            let granted = grant.open(&keys.device, keys.account).unwrap();
            assert_eq!(grant.key_epoch, 0, "Bob was granted a key after his removal");
            for (epoch, key) in granted.keys.iter().enumerate() {
                for try_epoch in [u32::try_from(epoch).unwrap(), header.epoch] {
                    let derived = CollectionKeys::derive(key, header.collection, try_epoch);
                    assert!(open_revision(&derived, &alice_api_head, |_| None).is_err());
                    tried += 1;
                }
            }
        }
    }
    assert!(tried >= 4);
    drop(p.world);
}

/// The grants the server holds for Bob's account, as Bob's device fetches them.
fn bob_grants(proxy: &Proxy, device: &Device) -> Vec<Vec<u8>> {
    device.ok(&["invitations"]);
    let exchange = proxy.log().last("GET", "/v1/grants").unwrap();
    let grants: Grants = exchange.response.parse();
    grants.grants.into_iter().map(|g| g.grant.0).collect()
}

#[test]
fn a7_a_revoked_device_of_a_member_or_of_the_owner_starts_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let p = people(dir.path(), true);
    let proxy = p.proxy.as_ref().unwrap();
    let bob_id = account(&p.bob);
    p.alice.write("before.txt", b"epoch 0");
    sync(&p.alice, "trip");
    p.alice.ok(&["share", "trip", &bob_id]);
    let (id, _) = invitation(&p.bob);
    let joined = accept(&p.bob, &id);
    sync(&p.bob, &joined);
    let bob_phone = keyhold_client::home::Home::locate(Some(p.bob_phone.home.clone())).unwrap().load().unwrap().1.device.id();

    // Bob loses his phone and revokes it; once the key directory shows it,
    // Alice's next sync starts epoch 1, sealed to Bob's laptop only.
    p.bob.ok(&["devices", "revoke", "bob-phone"]);
    p.world.settle();
    p.alice.write("after-phone.txt", b"epoch 1");
    sync(&p.alice, "trip");
    let commit = proxy.log().last("POST", "/v1/collections/*/revisions").unwrap().request.body;
    assert_eq!(RevisionHeader::parse(&commit).unwrap().epoch, 1);
    let newest =
        bob_grants(proxy, &p.bob).into_iter().map(|g| KeyGrant::parse(&g).unwrap().0).max_by_key(|g| g.key_epoch).unwrap();
    assert_eq!(newest.key_epoch, 1);
    assert!(newest.wraps.iter().all(|(d, _)| *d != bob_phone), "the revoked phone was sealed the new key");
    sync(&p.bob, &joined);
    assert_eq!(std::fs::read(p.bob.path("after-phone.txt")).unwrap(), b"epoch 1");

    // Alice revokes her own phone: her collections' new epoch reaches Bob
    // through a grant, and the phone never holds it.
    p.alice.ok(&["devices", "revoke", "alice-phone"]);
    p.alice.write("after-alice-phone.txt", b"epoch 2");
    sync(&p.alice, "trip");
    let commit = proxy.log().last("POST", "/v1/collections/*/revisions").unwrap().request.body;
    assert_eq!(RevisionHeader::parse(&commit).unwrap().epoch, 2);
    sync(&p.bob, &joined);
    assert_eq!(std::fs::read(p.bob.path("after-alice-phone.txt")).unwrap(), b"epoch 2");
    drop(p.world);
}

#[test]
fn a3_a_handle_names_only_the_account_the_log_bound_it_to() {
    let dir = tempfile::tempdir().unwrap();
    let p = people(dir.path(), false);
    let bob_id = account(&p.bob);
    p.carol.ok(&["handle", "carol"]);
    // Handles are one per account and first come, first served.
    let (code, stderr) = stderr_of(&p.carol, &["handle", "bob"]);
    assert_ne!(code, Some(0), "{stderr}");
    p.world.settle();
    let verified: serde_json::Value = serde_json::from_str(&p.alice.ok(&["verify", "bob", "--json"])).unwrap();
    assert_eq!(verified["account"], bob_id.as_str());
    let (code, stderr) = stderr_of(&p.alice, &["share", "trip", "bob@elsewhere.example"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("another server"), "{stderr}");

    // The operator re-points Bob's handle at Carol's account (her claim,
    // her id): the log shows the handle's second claim, and Alice refuses
    // loudly rather than share with whoever the server names.
    let server = &p.world.server;
    let carol_claim = server.sql_value(&format!("SELECT {} FROM handles WHERE handle = 'carol'", server.hex_of("claim")));
    p.world.server.sql("DELETE FROM handles WHERE handle = 'carol'");
    let carol_id = account(&p.carol);
    let (claim, carol) = (server.blob_literal(&carol_claim), server.blob_literal(&carol_id));
    server.sql(&format!("UPDATE handles SET claim = {claim}, account_id = {carol} WHERE handle = 'bob'"));
    p.world.settle();
    let (code, stderr) = stderr_of(&p.alice, &["share", "trip", "bob"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("re-pointed") || stderr.contains("substitutes"), "{stderr}");
    drop(p.world);
}
