//! Sharing a collection between accounts, over real HTTP: member lists,
//! key grants and their answers, and a member's access to the owner's
//! collection. Each test starts `keyhold serve` in-process (as `api.rs`
//! does) and runs once per metadata engine: `sqlite::<name>` and
//! `postgres::<name>` (`support/postgres.rs`). All crypto is done here,
//! client side, with the core's real objects. Named after the SECURITY.md
//! property each test pins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::type_complexity, missing_docs)]

use keyhold_core::share::{
    KeyGrant, MEMBER_GENESIS_PREV, MemberChange, MemberEntry, MemberList, Role, ShareResponse, key_commitment, seal_shared_name,
};
use keyhold_core::{
    AccountRootKey, BlobId, ChainChange, ChainEntry, ChainHead, CollectionKey, DeviceChain, DevicePublicKeys, DeviceSecret,
    GENESIS_PREV, Signer, os_rng, root_commitment, wrap_previous_root, wrap_to_device,
};
use keyhold_proto::{
    AccountId, AppendChainEntry, AppendMember, Bytes as B64, Grants, HeadRecord, MemberLog, ObjectId, Packs, PostShareResponse,
    Revisions, SharedCollections, Usage, WrapRecord,
};
use reqwest::Method;

#[path = "support/harness.rs"]
mod harness;

use harness::{
    Account, Coll, Resp, TestServer, contact_chain, create_account, create_account_in, new_collection, now_ms, pack_of, revision,
    send, sign_in, start, start_with_regions,
};

fn next_chain_entry(chain: &DeviceChain, by: &DeviceSecret, change: ChainChange) -> Vec<u8> {
    let account_epoch = if change.starts_epoch() { chain.epoch() + 1 } else { chain.epoch() };
    ChainEntry {
        account: chain.account(),
        seq: chain.head().seq + 1,
        prev: chain.head().id,
        time_ms: now_ms(),
        account_epoch,
        signer: Signer::Device(by.id()),
        change,
    }
    .seal(by)
    .unwrap()
}

/// Adds a device to `a`'s account (signed by `a.device`) and signs it in.
async fn add_device(srv: &TestServer, a: &Account) -> (DeviceSecret, String) {
    let chain = contact_chain(srv, &a.token, a.id).await;
    let new = DeviceSecret::generate(&mut os_rng());
    let entry =
        next_chain_entry(&chain, &a.device, ChainChange::AddDevice { device: new.public().clone(), name: "second".into() });
    let body = AppendChainEntry {
        entry: B64(entry),
        device_wraps: vec![WrapRecord {
            id: new.id().to_hex(),
            epoch: chain.epoch(),
            wrap: B64(wrap_to_device(&a.root, new.public(), a.id, chain.epoch(), &mut os_rng()).unwrap()),
        }],
        recovery_wrap: None,
        recovery_locator: None,
        previous_root_wrap: None,
        collection_wraps: Vec::new(),
    };
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect(201);
    let token = sign_in(srv, a.id, &new).await;
    (new, token)
}

/// Revokes `a.device` from `a`'s account, signed by `by` (which stays).
async fn revoke_first_device(srv: &TestServer, a: &Account, by: &DeviceSecret, by_token: &str) {
    let mut rng = os_rng();
    let chain = contact_chain(srv, by_token, a.id).await;
    let epoch = chain.epoch() + 1;
    let new_root = AccountRootKey::generate(&mut rng);
    let change = ChainChange::RevokeDevice {
        device: a.device.id(),
        root_commitment: root_commitment(&new_root, a.id, epoch),
        cutoffs: Default::default(),
    };
    let body = AppendChainEntry {
        entry: B64(next_chain_entry(&chain, by, change)),
        device_wraps: vec![WrapRecord {
            id: by.id().to_hex(),
            epoch,
            wrap: B64(wrap_to_device(&new_root, by.public(), a.id, epoch, &mut rng).unwrap()),
        }],
        recovery_wrap: Some(B64(wrap_to_device(&new_root, a.recovery.device().public(), a.id, epoch, &mut rng).unwrap())),
        recovery_locator: None,
        previous_root_wrap: Some(B64(wrap_previous_root(&a.root, &new_root, a.id, epoch, &mut rng).unwrap())),
        collection_wraps: Vec::new(),
    };
    srv.post_json("/v1/chain", Some(by_token), &body).await.expect(201);
}

// ---------------------------------------------------------------------------
// Collections, packs, revisions.
// ---------------------------------------------------------------------------

fn path(coll: &Coll, rest: &str) -> String {
    format!("/v1/collections/{}{rest}", coll.id.to_hex())
}

// ---------------------------------------------------------------------------
// Member lists, grants, answers.
// ---------------------------------------------------------------------------

/// An owner's view of its shared collection: the entries it appended.
struct Share {
    coll: Coll,
    entries: Vec<Vec<u8>>,
}

impl Share {
    fn head(&self) -> ChainHead {
        let last = self.entries.last().unwrap();
        ChainHead { seq: u64::try_from(self.entries.len() - 1).unwrap(), id: ObjectId::of(last) }
    }

    /// The next entry, signed by `by` (a device of `owner`), not yet sent.
    fn next(&self, owner: AccountId, by: &DeviceSecret, key_epoch: u32, change: MemberChange) -> Vec<u8> {
        let (seq, prev) = match self.entries.last() {
            None => (0, MEMBER_GENESIS_PREV),
            Some(last) => (u64::try_from(self.entries.len()).unwrap(), ObjectId::of(last)),
        };
        MemberEntry { collection: self.coll.id, owner, seq, prev, time_ms: now_ms(), key_epoch, signer: by.id(), change }
            .seal(by)
            .unwrap()
    }
}

fn create_entry(owner: AccountId, by: &DeviceSecret, coll: &Coll) -> Vec<u8> {
    let sealed_name = seal_shared_name(&coll.key, coll.id, owner, "Photos", &mut os_rng()).unwrap();
    let commitments = vec![key_commitment(&coll.key, coll.id, 0)];
    MemberEntry {
        collection: coll.id,
        owner,
        seq: 0,
        prev: MEMBER_GENESIS_PREV,
        time_ms: now_ms(),
        key_epoch: 0,
        signer: by.id(),
        change: MemberChange::Create { commitments, sealed_name },
    }
    .seal(by)
    .unwrap()
}

async fn append(srv: &TestServer, token: &str, coll: &Coll, entry: &[u8], grants: &[Vec<u8>]) -> Resp {
    let body = AppendMember { entry: B64(entry.to_vec()), grants: grants.iter().cloned().map(B64).collect() };
    srv.post_json(&path(coll, "/members"), Some(token), &body).await
}

/// Alice's collection with a revision and a pack, shared (created list).
async fn alice_shares(srv: &TestServer, alice: &Account) -> (Share, ObjectId, BlobId) {
    let coll = new_collection();
    let (pack_id, pack, blob) = pack_of(&coll.keys, b"alice's photo");
    srv.put_bytes(&path(&coll, &format!("/packs/{}", pack_id.to_hex())), &alice.token, pack).await.expect(201);
    let (_, rev0) = revision(&coll, &alice.device, 0, GENESIS_PREV, blob);
    srv.post_bytes(&path(&coll, "/revisions"), &alice.token, rev0).await.expect(201);
    let create = create_entry(alice.id, &alice.device, &coll);
    append(srv, &alice.token, &coll, &create, &[]).await.expect(201);
    (Share { coll, entries: vec![create] }, pack_id, blob)
}

/// A grant of the share's keys to every active device of `member`'s chain
/// (as the contact route shows it), tied to `entry`.
fn grant(alice: &Account, by: &DeviceSecret, share: &Share, member: &DeviceChain, entry: ChainHead, role: Role) -> Vec<u8> {
    let devices: Vec<&DevicePublicKeys> = member.active_devices().map(|d| &d.public).collect();
    KeyGrant::seal(
        share.coll.id,
        alice.id,
        by,
        member.account(),
        entry,
        role,
        &[&share.coll.key],
        "Photos",
        &devices,
        &mut os_rng(),
    )
    .unwrap()
}

/// Alice adds `member` with `role`: the entry and its one grant.
async fn add_member(srv: &TestServer, alice: &Account, share: &mut Share, member: &Account, role: Role) -> Vec<u8> {
    let chain = contact_chain(srv, &alice.token, member.id).await;
    let entry = share.next(alice.id, &alice.device, 0, MemberChange::Add { account: member.id, role, chain: chain.head() });
    let head = ChainHead { seq: u64::try_from(share.entries.len()).unwrap(), id: ObjectId::of(&entry) };
    let g = grant(alice, &alice.device, share, &chain, head, role);
    append(srv, &alice.token, &share.coll, &entry, std::slice::from_ref(&g)).await.expect(201);
    share.entries.push(entry);
    g
}

/// The member's signed answer to a grant, from `device`.
fn answer(member: &Account, device: &DeviceSecret, grant: &[u8], accept: bool) -> Vec<u8> {
    let (g, _) = KeyGrant::parse(grant).unwrap();
    ShareResponse {
        collection: g.collection,
        owner: g.owner,
        member: member.id,
        device: device.id(),
        grant: ObjectId::of(grant),
        accept,
        time_ms: now_ms(),
    }
    .seal(device)
    .unwrap()
}

async fn respond(srv: &TestServer, token: &str, grant: ObjectId, response: Vec<u8>) -> Resp {
    srv.post_json(&format!("/v1/grants/{}/response", grant.to_hex()), Some(token), &PostShareResponse { response: B64(response) })
        .await
}

/// Alice shares a collection with Bob as `role`, and Bob accepts.
async fn shared_with_bob(srv: &TestServer, alice: &Account, bob: &Account, role: Role) -> (Share, ObjectId, BlobId) {
    let (mut share, pack, blob) = alice_shares(srv, alice).await;
    let g = add_member(srv, alice, &mut share, bob, role).await;
    respond(srv, &bob.token, ObjectId::of(&g), answer(bob, &bob.device, &g, true)).await.expect(201);
    (share, pack, blob)
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

async fn a3_a_contacts_device_chain_is_served_to_any_signed_in_account() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let chain = contact_chain(&srv, &alice.token, bob.id).await;
    assert_eq!(chain.active_devices().map(|d| d.public.id()).collect::<Vec<_>>(), vec![bob.device.id()]);
    let unknown = AccountId::generate(&mut os_rng());
    srv.get(&format!("/v1/accounts/{}/chain", unknown.to_hex()), &alice.token).await.expect_error(404, "not_found");
    srv.get("/v1/accounts/xyz/chain", &alice.token).await.expect_error(400, "bad_request");
    send(srv.req(Method::GET, &format!("/v1/accounts/{}/chain", bob.id.to_hex()), None)).await.expect_error(401, "unauthorized");
}

async fn d2_d3_a_member_accepts_then_reads_and_writes_the_owners_collection() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let (mut share, pack_id, blob) = alice_shares(&srv, &alice).await;
    let c = share.coll.id;

    // The creation again (a retry): 200, nothing more stored.
    append(&srv, &alice.token, &share.coll, &share.entries[0].clone(), &[]).await.expect(200);
    let shared: SharedCollections = srv.get("/v1/shared", &alice.token).await.expect(200).json();
    assert_eq!(shared.collections.len(), 1);
    assert_eq!(
        (shared.collections[0].collection.as_str(), shared.collections[0].owner.as_str()),
        (&*c.to_hex(), &*alice.id.to_hex())
    );

    // Alice adds Bob (writer) with a grant to his devices.
    let usage_before: Usage = srv.get("/v1/usage", &alice.token).await.expect(200).json();
    let g = add_member(&srv, &alice, &mut share, &bob, Role::Writer).await;
    let usage_after: Usage = srv.get("/v1/usage", &alice.token).await.expect(200).json();
    assert_eq!(usage_after.used_bytes, usage_before.used_bytes + u64::try_from(share.entries[1].len() + g.len()).unwrap());

    // Bob sees the grant, unanswered, and the keys in it match the list's commitments.
    let grants: Grants = srv.get("/v1/grants", &bob.token).await.expect(200).json();
    assert_eq!(grants.grants.len(), 1);
    let record = &grants.grants[0];
    assert_eq!((record.id.0, record.grant.0.clone(), record.response.is_none()), (ObjectId::of(&g), g.clone(), true));
    assert_eq!((record.collection.as_str(), record.owner.as_str()), (&*c.to_hex(), &*alice.id.to_hex()));
    let log: MemberLog = srv.get(&path(&share.coll, "/members"), &bob.token).await.expect(200).json();
    assert_eq!(log.owner, alice.id.to_hex());
    let alice_chain = contact_chain(&srv, &bob.token, alice.id).await;
    let owner_device = |id: &keyhold_core::DeviceId| alice_chain.device(id).map(|d| d.public.clone());
    let list = MemberList::verify(c, alice.id, log.entries.iter().map(|e| e.0.as_slice()), owner_device).unwrap();
    assert_eq!(list.role(&bob.id), Some(Role::Writer));
    let opened = KeyGrant::verify(&g, owner_device).unwrap().open(&bob.device, bob.id).unwrap();
    list.check_key(0, &opened.keys[0]).unwrap();
    assert_eq!(opened.name, "Photos");
    // Nobody else has grants; Alice's own list has none addressed to her.
    assert!(srv.get("/v1/grants", &alice.token).await.expect(200).json::<Grants>().grants.is_empty());

    // Invited, not yet accepted: no access to the data (D2), and the collection is not in Bob's list.
    srv.get(&path(&share.coll, "/head"), &bob.token).await.expect_error(404, "not_found");
    assert!(srv.get("/v1/shared", &bob.token).await.expect(200).json::<SharedCollections>().collections.is_empty());

    // Bob accepts, signed by his device; the same answer again is fine, another is refused.
    let yes = answer(&bob, &bob.device, &g, true);
    respond(&srv, &bob.token, ObjectId::of(&g), yes.clone()).await.expect(201);
    respond(&srv, &bob.token, ObjectId::of(&g), yes.clone()).await.expect(200);
    respond(&srv, &bob.token, ObjectId::of(&g), answer(&bob, &bob.device, &g, false)).await.expect_error(409, "conflict");
    let grants: Grants = srv.get("/v1/grants", &bob.token).await.expect(200).json();
    assert_eq!(grants.grants[0].response.as_ref().map(|r| r.0.clone()), Some(yes));
    let shared: SharedCollections = srv.get("/v1/shared", &bob.token).await.expect(200).json();
    assert_eq!(shared.collections.len(), 1);
    assert_eq!(shared.collections[0].owner, alice.id.to_hex());

    // Bob reads Alice's head, revisions and packs.
    let head: HeadRecord = srv.get(&path(&share.coll, "/head"), &bob.token).await.expect(200).json();
    assert_eq!(head, srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json::<HeadRecord>());
    let revs: Revisions = srv.get(&path(&share.coll, "/revisions"), &bob.token).await.expect(200).json();
    assert_eq!(revs.revisions.len(), 1);
    let packs: Packs = srv.get(&path(&share.coll, "/packs"), &bob.token).await.expect(200).json();
    assert_eq!(packs.packs.iter().map(|p| p.id.0).collect::<Vec<_>>(), vec![pack_id]);
    let whole = srv.get(&path(&share.coll, &format!("/packs/{}", pack_id.to_hex())), &bob.token).await;
    whole.expect(200);
    assert_eq!(ObjectId::of(&whole.body), pack_id);
    // Not through the account-wide pack route: that one is Bob's own namespace.
    srv.get(&format!("/v1/packs/{}", pack_id.to_hex()), &bob.token).await.expect_error(404, "not_found");

    // As a writer, Bob uploads a pack (charged to Alice) and commits on Alice's head.
    let (bob_pack, bytes, bob_blob) = pack_of(&share.coll.keys, b"bob's photo");
    let alice_used: Usage = srv.get("/v1/usage", &alice.token).await.expect(200).json();
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", bob_pack.to_hex())), &bob.token, bytes.clone()).await.expect(201);
    let (rev1_id, rev1) = revision(&share.coll, &bob.device, 1, head.id.0, bob_blob);
    let committed: HeadRecord =
        srv.post_bytes(&path(&share.coll, "/revisions"), &bob.token, rev1.clone()).await.expect(201).json();
    assert_eq!(committed.id.0, rev1_id);
    let alice_head: HeadRecord = srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json();
    assert_eq!((alice_head.seq, alice_head.id.0), (1, rev1_id));
    let alice_now: Usage = srv.get("/v1/usage", &alice.token).await.expect(200).json();
    assert_eq!(alice_now.used_bytes, alice_used.used_bytes + u64::try_from(bytes.len() + rev1.len()).unwrap());
    assert_eq!(srv.get("/v1/usage", &bob.token).await.expect(200).json::<Usage>().used_bytes, 0);
    // The compare-and-swap holds for members as for the owner.
    let (_, stale) = revision(&share.coll, &bob.device, 1, head.id.0, blob);
    srv.post_bytes(&path(&share.coll, "/revisions"), &bob.token, stale).await.expect_error(409, "head_moved");
    // A pack of another collection cannot be filed under this one.
    let other = new_collection();
    let (other_id, other_bytes, _) = pack_of(&other.keys, b"elsewhere");
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", other_id.to_hex())), &bob.token, other_bytes)
        .await
        .expect_error(400, "bad_request");
}

async fn a_reader_reads_and_its_writes_are_refused_read_only() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let (share, pack_id, blob) = shared_with_bob(&srv, &alice, &bob, Role::Reader).await;
    let head: HeadRecord = srv.get(&path(&share.coll, "/head"), &bob.token).await.expect(200).json();
    srv.get(&path(&share.coll, &format!("/packs/{}", pack_id.to_hex())), &bob.token).await.expect(200);
    let (_, rev1) = revision(&share.coll, &bob.device, 1, head.id.0, blob);
    srv.post_bytes(&path(&share.coll, "/revisions"), &bob.token, rev1).await.expect_error(403, "read_only");
    let (id, bytes, _) = pack_of(&share.coll.keys, b"not allowed");
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", id.to_hex())), &bob.token, bytes).await.expect_error(403, "read_only");
    let packs: Packs = srv.get(&path(&share.coll, "/packs"), &alice.token).await.expect(200).json();
    assert_eq!(packs.packs.len(), 1);
    let after: HeadRecord = srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json();
    assert_eq!(after, head);
}

async fn g1_a_non_member_sees_a_shared_collection_as_missing() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let carol = create_account(&srv).await;
    let (share, pack_id, _) = shared_with_bob(&srv, &alice, &bob, Role::Writer).await;
    let missing = new_collection();

    // Carol's token on Alice's shared collection answers as on a missing one.
    for rest in ["/members", "/head", "/revisions", "/packs", &format!("/packs/{}", pack_id.to_hex())] {
        let theirs = srv.get(&path(&share.coll, rest), &carol.token).await;
        let none = srv.get(&path(&missing, rest), &carol.token).await;
        assert!(theirs.status == 404 || theirs.status == 200, "{rest}: {}", theirs.status);
        assert_eq!((theirs.status, &theirs.body), (none.status, &none.body), "{rest} leaks existence");
    }
    srv.get(&path(&share.coll, "/members"), &carol.token).await.expect_error(404, "not_found");
    srv.get(&path(&share.coll, &format!("/packs/{}", pack_id.to_hex())), &carol.token).await.expect_error(404, "not_found");
    assert!(srv.get("/v1/grants", &carol.token).await.expect(200).json::<Grants>().grants.is_empty());
    assert!(srv.get("/v1/shared", &carol.token).await.expect(200).json::<SharedCollections>().collections.is_empty());

    // Carol cannot answer a grant addressed to Bob: not even with a signed
    // answer of her own, nor with Bob's.
    let grants: Grants = srv.get("/v1/grants", &bob.token).await.expect(200).json();
    let g = grants.grants[0].grant.0.clone();
    let bobs = grants.grants[0].response.clone().unwrap().0;
    respond(&srv, &carol.token, ObjectId::of(&g), answer(&carol, &carol.device, &g, true)).await.expect_error(404, "not_found");
    respond(&srv, &carol.token, ObjectId::of(&g), bobs).await.expect_error(404, "not_found");
    let unknown = ObjectId::of(b"no such grant");
    respond(&srv, &carol.token, unknown, answer(&carol, &carol.device, &g, true)).await.expect_error(404, "not_found");
    // Nor can Bob answer with a response signed by another device, or for another account.
    let forged = answer(&bob, &carol.device, &g, false);
    respond(&srv, &bob.token, ObjectId::of(&g), forged).await.expect_error(400, "bad_request");
    let mut flipped = answer(&bob, &bob.device, &g, false);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    respond(&srv, &bob.token, ObjectId::of(&g), flipped).await.expect_error(400, "bad_request");

    // Carol's writes to the shared collection's id stay in her own namespace.
    let head: HeadRecord = srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json();
    let (carol_pack, bytes, blob) = pack_of(&share.coll.keys, b"carol's");
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", carol_pack.to_hex())), &carol.token, bytes).await.expect(201);
    let (_, rev) = revision(&share.coll, &carol.device, head.seq + 1, head.id.0, blob);
    srv.post_bytes(&path(&share.coll, "/revisions"), &carol.token, rev).await.expect_error(409, "head_moved");
    srv.get(&path(&share.coll, &format!("/packs/{}", carol_pack.to_hex())), &alice.token).await.expect_error(404, "not_found");
    assert_eq!(srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json::<HeadRecord>(), head);
}

async fn d1_forged_or_misplaced_member_list_entries_are_refused_and_store_nothing() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let carol = create_account(&srv).await;
    let (share, _, _) = alice_shares(&srv, &alice).await;
    let bob_chain = contact_chain(&srv, &alice.token, bob.id).await;
    let add_bob = MemberChange::Add { account: bob.id, role: Role::Writer, chain: bob_chain.head() };
    let add_with_grant = |entry: &[u8]| {
        let head = ChainHead { seq: 1, id: ObjectId::of(entry) };
        grant(&alice, &alice.device, &share, &bob_chain, head, Role::Writer)
    };

    // Signed by a device that is not in Alice's chain.
    let mallory = DeviceSecret::generate(&mut os_rng());
    let forged = share.next(alice.id, &mallory, 0, add_bob.clone());
    append(&srv, &alice.token, &share.coll, &forged, &[add_with_grant(&forged)]).await.expect_error(400, "bad_request");
    // Signed by Alice's device, then a byte of the signature flipped.
    let mut flipped = share.next(alice.id, &alice.device, 0, add_bob.clone());
    let g = add_with_grant(&flipped);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    append(&srv, &alice.token, &share.coll, &flipped, &[g]).await.expect_error(400, "bad_request");
    // Off the head: a later seq, or the right seq on another prev.
    let good = share.next(alice.id, &alice.device, 0, add_bob.clone());
    let (parsed, _) = MemberEntry::parse(&good).unwrap();
    let skip = MemberEntry { seq: 2, ..parsed.clone() }.seal(&alice.device).unwrap();
    append(&srv, &alice.token, &share.coll, &skip, &[]).await.expect_error(409, "members_moved");
    let fork = MemberEntry { prev: ObjectId::of(b"another list"), ..parsed.clone() }.seal(&alice.device).unwrap();
    append(&srv, &alice.token, &share.coll, &fork, &[]).await.expect_error(409, "members_moved");
    // An entry of another owner, sent with Alice's session: refused. Carol
    // cannot append to Alice's list, nor create one for its id.
    let carols = MemberEntry { owner: carol.id, signer: carol.device.id(), ..parsed.clone() }.seal(&carol.device).unwrap();
    append(&srv, &alice.token, &share.coll, &carols, &[]).await.expect_error(400, "bad_request");
    append(&srv, &carol.token, &share.coll, &good, &[add_with_grant(&good)]).await.expect_error(400, "bad_request");
    append(&srv, &carol.token, &share.coll, &carols, &[]).await.expect_error(409, "members_moved");
    let carol_create = create_entry(carol.id, &carol.device, &share.coll);
    append(&srv, &carol.token, &share.coll, &carol_create, &[]).await.expect_error(409, "conflict");
    // An entry of another collection than the path's.
    let elsewhere = new_collection();
    append(&srv, &alice.token, &elsewhere, &good, &[add_with_grant(&good)]).await.expect_error(400, "bad_request");
    // Garbage.
    append(&srv, &alice.token, &share.coll, b"not an entry", &[]).await.expect_error(400, "bad_request");
    // An account that does not exist cannot be added.
    let nobody = AccountId::generate(&mut os_rng());
    let ghost = share.next(
        alice.id,
        &alice.device,
        0,
        MemberChange::Add { account: nobody, role: Role::Writer, chain: bob_chain.head() },
    );
    let ghost_grant = KeyGrant::seal(
        share.coll.id,
        alice.id,
        &alice.device,
        nobody,
        ChainHead { seq: 1, id: ObjectId::of(&ghost) },
        Role::Writer,
        &[&share.coll.key],
        "Photos",
        &[bob.device.public()],
        &mut os_rng(),
    )
    .unwrap();
    append(&srv, &alice.token, &share.coll, &ghost, &[ghost_grant]).await.expect_error(404, "not_found");
    // Nor with a chain head Bob's chain does not have.
    let wrong_head = ChainHead { seq: 0, id: ObjectId::of(b"not bob's") };
    let bad_chain =
        share.next(alice.id, &alice.device, 0, MemberChange::Add { account: bob.id, role: Role::Writer, chain: wrong_head });
    append(&srv, &alice.token, &share.coll, &bad_chain, &[add_with_grant(&bad_chain)]).await.expect_error(400, "bad_request");

    // Nothing of it was stored; Bob has no grant and no access.
    let log: MemberLog = srv.get(&path(&share.coll, "/members"), &alice.token).await.expect(200).json();
    assert_eq!(log.entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), share.entries);
    assert!(srv.get("/v1/grants", &bob.token).await.expect(200).json::<Grants>().grants.is_empty());
    srv.get(&path(&share.coll, "/members"), &bob.token).await.expect_error(404, "not_found");
    // The genuine entry goes in.
    append(&srv, &alice.token, &share.coll, &good, &[add_with_grant(&good)]).await.expect(201);
}

async fn a3_grants_tied_to_another_entry_member_or_signer_are_refused() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let carol = create_account(&srv).await;
    let (share, _, _) = alice_shares(&srv, &alice).await;
    let bob_chain = contact_chain(&srv, &alice.token, bob.id).await;
    let carol_chain = contact_chain(&srv, &alice.token, carol.id).await;
    let entry = share.next(
        alice.id,
        &alice.device,
        0,
        MemberChange::Add { account: bob.id, role: Role::Writer, chain: bob_chain.head() },
    );
    let head = ChainHead { seq: 1, id: ObjectId::of(&entry) };

    for (why, g) in [
        ("tied to the creation entry", vec![grant(&alice, &alice.device, &share, &bob_chain, share.head(), Role::Writer)]),
        ("for another account", vec![grant(&alice, &alice.device, &share, &carol_chain, head, Role::Writer)]),
        ("of another role", vec![grant(&alice, &alice.device, &share, &bob_chain, head, Role::Reader)]),
        (
            "signed by another device",
            vec![grant(&alice, &DeviceSecret::generate(&mut os_rng()), &share, &bob_chain, head, Role::Writer)],
        ),
        ("missing", vec![]),
        (
            "twice",
            vec![
                grant(&alice, &alice.device, &share, &bob_chain, head, Role::Writer),
                grant(&alice, &alice.device, &share, &bob_chain, head, Role::Writer),
            ],
        ),
        ("garbage", vec![b"not a grant".to_vec()]),
    ] {
        let r = append(&srv, &alice.token, &share.coll, &entry, &g).await;
        assert_eq!(r.status, 400, "a grant {why}: {}", String::from_utf8_lossy(&r.body));
    }
    let log: MemberLog = srv.get(&path(&share.coll, "/members"), &alice.token).await.expect(200).json();
    assert_eq!(log.entries.len(), 1);
    assert!(srv.get("/v1/grants", &bob.token).await.expect(200).json::<Grants>().grants.is_empty());
    assert!(srv.get("/v1/grants", &carol.token).await.expect(200).json::<Grants>().grants.is_empty());
}

async fn a7_a_removed_member_loses_access_at_once() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let carol = create_account(&srv).await;
    let (mut share, pack_id, blob) = shared_with_bob(&srv, &alice, &bob, Role::Writer).await;
    let g = add_member(&srv, &alice, &mut share, &carol, Role::Reader).await;
    respond(&srv, &carol.token, ObjectId::of(&g), answer(&carol, &carol.device, &g, true)).await.expect(201);
    let head: HeadRecord = srv.get(&path(&share.coll, "/head"), &bob.token).await.expect(200).json();

    // Alice removes Bob: a new key epoch, granted to Carol (who stays).
    let new_key = CollectionKey::generate(&mut os_rng());
    let commitment = key_commitment(&new_key, share.coll.id, 1);
    let remove = share.next(alice.id, &alice.device, 1, MemberChange::Remove { account: bob.id, cutoff: head.seq, commitment });
    let entry_head = ChainHead { seq: u64::try_from(share.entries.len()).unwrap(), id: ObjectId::of(&remove) };
    let carol_chain = contact_chain(&srv, &alice.token, carol.id).await;
    let devices: Vec<&DevicePublicKeys> = carol_chain.active_devices().map(|d| &d.public).collect();
    let seal = |member: AccountId, role: Role| {
        KeyGrant::seal(
            share.coll.id,
            alice.id,
            &alice.device,
            member,
            entry_head,
            role,
            &[&share.coll.key, &new_key],
            "Photos",
            &devices,
            &mut os_rng(),
        )
        .unwrap()
    };
    // Keys for the removed member are refused.
    append(&srv, &alice.token, &share.coll, &remove, &[seal(bob.id, Role::Writer)]).await.expect_error(400, "bad_request");
    // A removal whose cutoff is not the collection's head (a write landed
    // after the head the owner verified) is refused: the owner reads the
    // head again and signs a new removal.
    let stale = share.next(
        alice.id,
        &alice.device,
        1,
        MemberChange::Remove { account: bob.id, cutoff: head.seq + 1, commitment: key_commitment(&new_key, share.coll.id, 1) },
    );
    append(&srv, &alice.token, &share.coll, &stale, &[]).await.expect_error(409, "members_moved");
    let carol_grant = seal(carol.id, Role::Reader);
    append(&srv, &alice.token, &share.coll, &remove, std::slice::from_ref(&carol_grant)).await.expect(201);
    share.entries.push(remove);

    // Bob: 404 on everything of the collection, at once.
    for rest in ["/head", "/revisions", "/members", &format!("/packs/{}", pack_id.to_hex())] {
        srv.get(&path(&share.coll, rest), &bob.token).await.expect_error(404, "not_found");
    }
    srv.get(&path(&share.coll, "/packs"), &bob.token).await.expect_error(404, "not_found");
    let (_, rev) = revision(&share.coll, &bob.device, head.seq + 1, head.id.0, blob);
    srv.post_bytes(&path(&share.coll, "/revisions"), &bob.token, rev).await.expect_error(404, "not_found");
    let (id, bytes, _) = pack_of(&share.coll.keys, b"too late");
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", id.to_hex())), &bob.token, bytes).await.expect_error(404, "not_found");
    assert!(srv.get("/v1/shared", &bob.token).await.expect(200).json::<SharedCollections>().collections.is_empty());
    assert_eq!(srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200).json::<HeadRecord>(), head);

    // Carol stays, and finds the new epoch's grant; accepting it changes nothing of her access.
    srv.get(&path(&share.coll, "/head"), &carol.token).await.expect(200);
    let grants: Grants = srv.get("/v1/grants", &carol.token).await.expect(200).json();
    assert_eq!(grants.grants.len(), 2);
    assert_eq!(grants.grants[1].grant.0, carol_grant);
    respond(&srv, &carol.token, ObjectId::of(&carol_grant), answer(&carol, &carol.device, &carol_grant, true)).await.expect(201);
    srv.get(&path(&share.coll, "/head"), &carol.token).await.expect(200);
    let log: MemberLog = srv.get(&path(&share.coll, "/members"), &carol.token).await.expect(200).json();
    assert_eq!(log.entries.len(), 4);
}

async fn d2_a_declined_grant_gives_no_access() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let (mut share, _, _) = alice_shares(&srv, &alice).await;
    let g = add_member(&srv, &alice, &mut share, &bob, Role::Writer).await;
    respond(&srv, &bob.token, ObjectId::of(&g), answer(&bob, &bob.device, &g, false)).await.expect(201);
    srv.get(&path(&share.coll, "/head"), &bob.token).await.expect_error(404, "not_found");
    srv.get(&path(&share.coll, "/members"), &bob.token).await.expect_error(404, "not_found");
    assert!(srv.get("/v1/shared", &bob.token).await.expect(200).json::<SharedCollections>().collections.is_empty());
    // Changing its mind is a new answer to the same grant: refused.
    respond(&srv, &bob.token, ObjectId::of(&g), answer(&bob, &bob.device, &g, true)).await.expect_error(409, "conflict");
    srv.get(&path(&share.coll, "/head"), &bob.token).await.expect_error(404, "not_found");
}

async fn a7_entries_of_a_since_revoked_device_stay_valid_and_it_signs_no_more() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    // Alice's first device creates the list; her second revokes it.
    let (mut share, _, _) = alice_shares(&srv, &alice).await;
    let (second, second_token) = add_device(&srv, &alice).await;
    revoke_first_device(&srv, &alice, &second, &second_token).await;

    let bob_chain = contact_chain(&srv, &second_token, bob.id).await;
    let add = MemberChange::Add { account: bob.id, role: Role::Writer, chain: bob_chain.head() };
    let head_of = |entry: &[u8]| ChainHead { seq: 1, id: ObjectId::of(entry) };
    // The revoked device signs no more entries (nor grants).
    let stale = share.next(alice.id, &alice.device, 0, add.clone());
    let g = grant(&alice, &alice.device, &share, &bob_chain, head_of(&stale), Role::Writer);
    append(&srv, &second_token, &share.coll, &stale, &[g]).await.expect_error(400, "bad_request");
    let entry = share.next(alice.id, &second, 0, add);
    let g = grant(&alice, &alice.device, &share, &bob_chain, head_of(&entry), Role::Writer);
    append(&srv, &second_token, &share.coll, &entry, &[g]).await.expect_error(400, "bad_request");
    // The enrolled device appends over the creation entry its revoked sibling signed.
    let g = grant(&alice, &second, &share, &bob_chain, head_of(&entry), Role::Writer);
    append(&srv, &second_token, &share.coll, &entry, std::slice::from_ref(&g)).await.expect(201);
    share.entries.push(entry);
    respond(&srv, &bob.token, ObjectId::of(&g), answer(&bob, &bob.device, &g, true)).await.expect(201);
    srv.get(&path(&share.coll, "/head"), &bob.token).await.expect(200);
}

async fn g1_every_sharing_route_refuses_missing_or_bad_tokens() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let (share, pack_id, _) = alice_shares(&srv, &alice).await;
    let c = share.coll.id.to_hex();
    let grant = ObjectId::of(b"a grant").to_hex();
    let json = |v: serde_json::Value| Some(("application/json", serde_json::to_vec(&v).unwrap()));
    let routes: Vec<(Method, String, Option<(&str, Vec<u8>)>)> = vec![
        (Method::GET, format!("/v1/accounts/{}/chain", alice.id.to_hex()), None),
        (Method::GET, format!("/v1/collections/{c}/members"), None),
        (Method::POST, format!("/v1/collections/{c}/members"), json(serde_json::json!({"entry": "AAAA", "grants": []}))),
        (Method::GET, "/v1/grants".into(), None),
        (Method::POST, format!("/v1/grants/{grant}/response"), json(serde_json::json!({"response": "AAAA"}))),
        (Method::GET, "/v1/shared".into(), None),
        (Method::GET, format!("/v1/collections/{c}/packs/{}", pack_id.to_hex()), None),
        (
            Method::PUT,
            format!("/v1/collections/{c}/packs/{}", pack_id.to_hex()),
            Some(("application/octet-stream", vec![1; 100])),
        ),
    ];
    for (method, route, body) in &routes {
        for auth in [None, Some("Bearer garbage".to_owned()), Some(format!("Bearer {}x", alice.token)), Some(alice.token.clone())]
        {
            let mut req = srv.req(method.clone(), route, None);
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            if let Some((ct, bytes)) = body {
                req = req.header("content-type", *ct).body(bytes.clone());
            }
            send(req).await.expect_error(401, "unauthorized");
        }
        // The real token gets past authentication.
        let mut req = srv.req(method.clone(), route, Some(&alice.token));
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", *ct).body(bytes.clone());
        }
        assert_ne!(send(req).await.status, 401, "{method} {route}");
    }
}

async fn a_share_reaches_across_residency_regions_and_lives_in_the_owners() {
    let srv = start_with_regions(&["eu"]).await;
    let alice = create_account(&srv).await;
    let bob = create_account_in(&srv, Some("eu")).await;
    assert_eq!(srv.get("/v1/usage", &bob.token).await.expect(200).json::<Usage>().region, "eu");

    // Alice (default region) shares with Bob (eu): his chain, his grant and his answer cross regions.
    let (share, pack_id, blob) = shared_with_bob(&srv, &alice, &bob, Role::Writer).await;
    let head: HeadRecord = srv.get(&path(&share.coll, "/head"), &bob.token).await.expect(200).json();
    srv.get(&path(&share.coll, &format!("/packs/{}", pack_id.to_hex())), &bob.token).await.expect(200);
    let (bob_pack, bytes, _) = pack_of(&share.coll.keys, b"from the eu");
    srv.put_bytes(&path(&share.coll, &format!("/packs/{}", bob_pack.to_hex())), &bob.token, bytes).await.expect(201);
    let (_, rev) = revision(&share.coll, &bob.device, head.seq + 1, head.id.0, blob);
    srv.post_bytes(&path(&share.coll, "/revisions"), &bob.token, rev).await.expect(201);
    // Stored in Alice's region, under Alice: she reads Bob's pack, Bob's account stores nothing.
    srv.get(&path(&share.coll, &format!("/packs/{}", bob_pack.to_hex())), &alice.token).await.expect(200);
    assert_eq!(srv.get("/v1/usage", &bob.token).await.expect(200).json::<Usage>().used_bytes, 0);
    let shared: SharedCollections = srv.get("/v1/shared", &bob.token).await.expect(200).json();
    assert_eq!(shared.collections.len(), 1);

    // And the other way round: Bob (eu) shares with Alice.
    let (share, _, _) = shared_with_bob(&srv, &bob, &alice, Role::Reader).await;
    srv.get(&path(&share.coll, "/head"), &alice.token).await.expect(200);
    let log: MemberLog = srv.get(&path(&share.coll, "/members"), &alice.token).await.expect(200).json();
    assert_eq!(log.owner, bob.id.to_hex());
    // A collection id shared in one region cannot be shared again from another.
    let again = create_entry(alice.id, &alice.device, &share.coll);
    append(&srv, &alice.token, &share.coll, &again, &[]).await.expect_error(409, "conflict");
}

/// Mallory learns the id of one of Bob's collections (device revocations
/// list them) and makes a member list for it, adding Bob: refused, and Bob's
/// own collection stays his.
async fn g1_an_account_cannot_take_over_anothers_collection_id() {
    let srv = start().await;
    let bob = create_account(&srv).await;
    let mallory = create_account(&srv).await;
    let coll = new_collection();
    let (pack_id, pack, blob) = pack_of(&coll.keys, b"bob's own data");
    srv.put_bytes(&path(&coll, &format!("/packs/{}", pack_id.to_hex())), &bob.token, pack).await.expect(201);
    let (_, rev0) = revision(&coll, &bob.device, 0, GENESIS_PREV, blob);
    srv.post_bytes(&path(&coll, "/revisions"), &bob.token, rev0).await.expect(201);
    let create = create_entry(mallory.id, &mallory.device, &coll);
    append(&srv, &mallory.token, &coll, &create, &[]).await.expect_error(409, "conflict");
    let head: HeadRecord = srv.get(&path(&coll, "/head"), &bob.token).await.expect(200).json();
    assert_eq!(head.seq, 0);
}

on_both_engines!(
    g1_an_account_cannot_take_over_anothers_collection_id,
    a3_a_contacts_device_chain_is_served_to_any_signed_in_account,
    d2_d3_a_member_accepts_then_reads_and_writes_the_owners_collection,
    a_reader_reads_and_its_writes_are_refused_read_only,
    g1_a_non_member_sees_a_shared_collection_as_missing,
    d1_forged_or_misplaced_member_list_entries_are_refused_and_store_nothing,
    a3_grants_tied_to_another_entry_member_or_signer_are_refused,
    a7_a_removed_member_loses_access_at_once,
    d2_a_declined_grant_gives_no_access,
    a7_entries_of_a_since_revoked_device_stay_valid_and_it_signs_no_more,
    g1_every_sharing_route_refuses_missing_or_bad_tokens,
    a_share_reaches_across_residency_regions_and_lives_in_the_owners,
);
