//! Human handles, over real HTTP (issue #8): claiming a handle with a
//! signed claim, looking it up, one handle per account and one account per
//! handle, across residency regions, and the key directory publishing each
//! handle's claim. Each test starts `keyhold serve` in-process (as
//! `sharing_api.rs` does) and runs once per metadata engine:
//! `sqlite::<name>` and `postgres::<name>` (`support/postgres.rs`). The
//! server's own publisher is off; the one test of the directory runs a
//! publishing step itself, in-process, over the same stores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use keyhold_core::share::HandleClaim;
use keyhold_core::transparency::{DirectoryLabel, LogEntry, verify_lookup};
use keyhold_core::{DeviceSecret, os_rng};
use keyhold_proto::{Bytes as B64, HandleRecord, KtInfo, KtLabel, KtProof, ObjectId, PutHandle};
use keyhold_server::Config;
use keyhold_server::config::TransparencyConfig;
use keyhold_server::regions::Regions;
use keyhold_server::transparency::Transparency;
use reqwest::Method;

#[path = "support/harness.rs"]
mod harness;

use harness::{Account, Resp, TestServer, contact_chain, create_account, create_account_in, now_ms, send};

/// A server whose own publisher is off: directory epochs only when a test
/// publishes one (`publish`).
async fn start() -> TestServer {
    start_with_regions(&[]).await
}

async fn start_with_regions(names: &[&str]) -> TestServer {
    harness::start_with(names, |config| {
        config.transparency = TransparencyConfig { publish: false, ..TransparencyConfig::default() };
    })
    .await
}

/// The handle routes.
trait HandleRoutes {
    /// `PUT /v1/handles/{handle}` with `claim`.
    async fn claim(&self, token: &str, handle: &str, claim: &[u8]) -> Resp;
    /// `GET /v1/handles/{handle}`.
    async fn lookup(&self, token: &str, handle: &str) -> Resp;
}

impl HandleRoutes for TestServer {
    async fn claim(&self, token: &str, handle: &str, claim: &[u8]) -> Resp {
        let body = PutHandle { claim: B64(claim.to_vec()) };
        send(self.req(Method::PUT, &format!("/v1/handles/{handle}"), Some(token)).json(&body)).await
    }

    async fn lookup(&self, token: &str, handle: &str) -> Resp {
        self.get(&format!("/v1/handles/{handle}"), token).await
    }
}

/// `a`'s claim of `handle`, signed by its device.
fn claim_of(a: &Account, handle: &str) -> Vec<u8> {
    HandleClaim { handle: handle.into(), account: a.id, device: a.device.id(), time_ms: now_ms() }.seal(&a.device).unwrap()
}

/// Checks a served record against the holder's verified device chain, as
/// a client does (before checking it against the key directory).
async fn check_record(srv: &TestServer, token: &str, record: &HandleRecord, holder: &Account, handle: &str) {
    assert_eq!(record.account, holder.id.to_hex());
    let chain = contact_chain(srv, token, holder.id).await;
    let claim = HandleClaim::verify(&record.claim.0, |id| chain.device(id).map(|d| d.public.clone())).unwrap();
    assert_eq!((claim.handle.as_str(), claim.account, claim.device), (handle, holder.id, holder.device.id()));
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

async fn a_handle_is_claimed_once_and_served_to_every_signed_in_account() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    srv.lookup(&bob.token, "alice").await.expect_error(404, "not_found");

    let claim = claim_of(&alice, "alice");
    srv.claim(&alice.token, "alice", &claim).await.expect(201);
    // The same claim again (a retry after a lost answer): done already.
    srv.claim(&alice.token, "alice", &claim).await.expect(200);
    // Another claim of the same handle by the same account: the first stays.
    let message = srv.claim(&alice.token, "alice", &claim_of(&alice, "alice")).await.expect_error(409, "conflict");
    assert!(message.contains("under another claim"), "{message}");

    // Public to every signed-in account, the holder included.
    for token in [&bob.token, &alice.token] {
        let record: HandleRecord = srv.lookup(token, "alice").await.expect(200).json();
        assert_eq!(record.claim.0, claim);
        check_record(&srv, token, &record, &alice, "alice").await;
    }
    srv.lookup(&bob.token, "bob").await.expect_error(404, "not_found");
}

async fn a_taken_handle_or_a_second_handle_is_refused_with_409() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    srv.claim(&alice.token, "alice", &claim_of(&alice, "alice")).await.expect(201);

    // Bob's claim of Alice's handle.
    let message = srv.claim(&bob.token, "alice", &claim_of(&bob, "alice")).await.expect_error(409, "conflict");
    assert!(message.contains("handle taken"), "{message}");
    // Alice's second handle.
    let message = srv.claim(&alice.token, "alice.2", &claim_of(&alice, "alice.2")).await.expect_error(409, "conflict");
    assert!(message.contains("this account already has handle alice"), "{message}");

    // Nothing changed: Alice holds "alice", nobody "alice.2", and Bob may take another.
    let record: HandleRecord = srv.lookup(&bob.token, "alice").await.expect(200).json();
    check_record(&srv, &bob.token, &record, &alice, "alice").await;
    srv.lookup(&bob.token, "alice.2").await.expect_error(404, "not_found");
    srv.claim(&bob.token, "bob_1", &claim_of(&bob, "bob_1")).await.expect(201);
}

async fn forged_or_misplaced_claims_are_refused_and_store_nothing() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;

    // Signed by a device the chain never enrolled (naming itself).
    let stranger = DeviceSecret::generate(&mut os_rng());
    let by_stranger = HandleClaim { handle: "alice".into(), account: alice.id, device: stranger.id(), time_ms: now_ms() }
        .seal(&stranger)
        .unwrap();
    srv.claim(&alice.token, "alice", &by_stranger).await.expect_error(400, "bad_request");
    // Naming the signed-in device, with a signature that does not verify.
    let mut bad_signature = claim_of(&alice, "alice");
    *bad_signature.last_mut().unwrap() ^= 1;
    let message = srv.claim(&alice.token, "alice", &bad_signature).await.expect_error(400, "bad_request");
    assert!(message.contains("signature"), "{message}");
    // Another account's claim, sent by Alice; and a claim for another account signed by Alice's device.
    srv.claim(&alice.token, "bob", &claim_of(&bob, "bob")).await.expect_error(400, "bad_request");
    let for_bob = HandleClaim { handle: "alice".into(), account: bob.id, device: alice.device.id(), time_ms: now_ms() }
        .seal(&alice.device)
        .unwrap();
    srv.claim(&alice.token, "alice", &for_bob).await.expect_error(400, "bad_request");
    // Bob's device signing for Alice's account, sent with Bob's session.
    let bobs_for_alice = HandleClaim { handle: "alice".into(), account: alice.id, device: bob.device.id(), time_ms: now_ms() }
        .seal(&bob.device)
        .unwrap();
    srv.claim(&bob.token, "alice", &bobs_for_alice).await.expect_error(400, "bad_request");
    // A claim of another handle than the path's.
    let message = srv.claim(&alice.token, "alicia", &claim_of(&alice, "alice")).await.expect_error(400, "bad_request");
    assert!(message.contains("another handle"), "{message}");
    // Not handles, in the path.
    for bad in ["Alice", "al", "-alice", "alice%20", "%C3%A9lise", &"a".repeat(33)] {
        srv.claim(&alice.token, bad, &claim_of(&alice, "alice")).await.expect_error(400, "bad_request");
        srv.lookup(&bob.token, bad).await.expect_error(400, "bad_request");
    }
    // Malformed, empty or overlong claims; an oversized body.
    for bad in [Vec::new(), b"not a claim".to_vec(), vec![0x4b; 300]] {
        srv.claim(&alice.token, "alice", &bad).await.expect_error(400, "bad_request");
    }
    srv.claim(&alice.token, "alice", &vec![0x4b; 2000]).await.expect_error(413, "too_large");
    let no_json = srv.req(Method::PUT, "/v1/handles/alice", Some(&alice.token)).header("content-type", "application/json");
    send(no_json.body("{")).await.expect_error(400, "bad_request");

    // Nothing was stored: no handle is known, and Alice's real claim is her first.
    for handle in ["alice", "alicia", "bob"] {
        srv.lookup(&bob.token, handle).await.expect_error(404, "not_found");
    }
    srv.claim(&alice.token, "alice", &claim_of(&alice, "alice")).await.expect(201);
}

async fn g1_handle_routes_refuse_missing_or_bad_tokens() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let claim = claim_of(&alice, "alice");
    for auth in [None, Some("Bearer garbage".to_owned()), Some(format!("Bearer {}x", alice.token))] {
        let mut put = srv.req(Method::PUT, "/v1/handles/alice", None).json(&PutHandle { claim: B64(claim.clone()) });
        let mut get = srv.req(Method::GET, "/v1/handles/alice", None);
        if let Some(h) = &auth {
            put = put.header("authorization", h);
            get = get.header("authorization", h);
        }
        send(put).await.expect_error(401, "unauthorized");
        send(get).await.expect_error(401, "unauthorized");
    }
    srv.claim(&alice.token, "alice", &claim).await.expect(201);
}

async fn handles_are_one_accounts_across_regions_and_live_in_the_claimants() {
    let srv = start_with_regions(&["eu"]).await;
    let alice = create_account(&srv).await;
    let bob = create_account_in(&srv, Some("eu")).await;
    srv.claim(&bob.token, "bob", &claim_of(&bob, "bob")).await.expect(201);
    srv.claim(&alice.token, "alice", &claim_of(&alice, "alice")).await.expect(201);
    // Each region's handle is taken from the other.
    srv.claim(&alice.token, "bob", &claim_of(&alice, "bob")).await.expect_error(409, "conflict");
    srv.claim(&bob.token, "alice", &claim_of(&bob, "alice")).await.expect_error(409, "conflict");
    for token in [&alice.token, &bob.token] {
        let record: HandleRecord = srv.lookup(token, "bob").await.expect(200).json();
        check_record(&srv, token, &record, &bob, "bob").await;
        let record: HandleRecord = srv.lookup(token, "alice").await.expect(200).json();
        check_record(&srv, token, &record, &alice, "alice").await;
    }
    // Stored in the claimant's region only.
    let regions = Regions::open(&srv.config).await.unwrap();
    let eu = &regions.named("eu").unwrap().meta;
    let default = &regions.default_region().meta;
    assert_eq!(eu.handle("bob").await.unwrap().unwrap().account, bob.id);
    assert!(eu.handle("alice").await.unwrap().is_none());
    assert_eq!(default.handle("alice").await.unwrap().unwrap().account, alice.id);
    assert!(default.handle("bob").await.unwrap().is_none());
}

async fn disclosure_hands_the_handle_over_and_deletion_frees_it() {
    let srv = start().await;
    let alice = create_account(&srv).await;
    let bob = create_account(&srv).await;
    let claim = claim_of(&alice, "alice");
    srv.claim(&alice.token, "alice", &claim).await.expect(201);

    let out = tempfile::tempdir().unwrap();
    keyhold_server::admin::disclose(&srv.config, &alice.id.to_hex(), out.path(), "a test").await.unwrap();
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&std::fs::read(out.path().join("handles.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["handle"], "alice");
    assert_eq!(rows[0]["account_id"], alice.id.to_hex());

    keyhold_server::admin::delete(&srv.config, &alice.id.to_hex(), "a test").await.unwrap();
    srv.lookup(&bob.token, "alice").await.expect_error(404, "not_found");
    // Alice's account can no longer write, and the handle is free for Bob.
    srv.claim(&alice.token, "alice", &claim).await.expect_error(403, "account_blocked");
    srv.claim(&bob.token, "alice", &claim_of(&bob, "alice")).await.expect(201);
}

/// Runs one publishing step in-process, over the server's stores.
async fn publish(config: &Config) {
    let regions = Regions::open(config).await.unwrap();
    let kt = Transparency::open(config, &regions).await.unwrap();
    kt.tick(&regions).await.unwrap();
    kt.release().await;
}

/// `POST /kt/lookup` of a handle's label.
async fn kt_lookup(srv: &TestServer, token: &str, handle: &str) -> Resp {
    let mut label = vec![0x03];
    label.extend_from_slice(handle.as_bytes());
    srv.post_json("/kt/lookup", Some(token), &KtLabel { label: B64(label) }).await
}

/// Verifies a lookup proof of `handle`'s label: (version, id of the claim).
fn verified(info: &KtInfo, proof: &KtProof, handle: &str) -> (u64, [u8; 32]) {
    let LogEntry::Epoch { epoch, root, .. } = LogEntry::decode(&proof.entry.0).unwrap() else { panic!("not an epoch entry") };
    assert_eq!(epoch, proof.epoch);
    let label = DirectoryLabel::Handle(handle.into());
    let (version, value) = verify_lookup(&info.vrf_public_key.0, root, epoch, &label, &proof.proof.0).unwrap();
    assert_eq!(value.seq, 0);
    (version, value.hash)
}

async fn the_key_directory_publishes_each_handles_claim() {
    let srv = start_with_regions(&["eu"]).await;
    let alice = create_account(&srv).await;
    let bob = create_account_in(&srv, Some("eu")).await;
    let claim = claim_of(&alice, "alice");
    srv.claim(&alice.token, "alice", &claim).await.expect(201);

    publish(&srv.config).await;
    let info: KtInfo = send(srv.req(Method::GET, "/kt/info", None)).await.expect(200).json();
    let proof: KtProof = kt_lookup(&srv, &bob.token, "alice").await.expect(200).json();
    assert_eq!(verified(&info, &proof, "alice"), (1, ObjectId::of(&claim).0));
    kt_lookup(&srv, &bob.token, "nobody").await.expect_error(404, "not_found");
    kt_lookup(&srv, &bob.token, "Alice").await.expect_error(400, "bad_request");

    // Two regions holding one handle (a claim about to be withdrawn,
    // handles.rs) stop neither publishing nor the published claim.
    let bobs = claim_of(&bob, "alice");
    let regions = Regions::open(&srv.config).await.unwrap();
    let eu = &regions.named("eu").unwrap().meta;
    assert!(eu.insert_handle("alice", bob.id, &bobs, 0).await.unwrap());
    publish(&srv.config).await;
    let proof: KtProof = kt_lookup(&srv, &alice.token, "alice").await.expect(200).json();
    assert_eq!(verified(&info, &proof, "alice"), (1, ObjectId::of(&claim).0));
    let record: HandleRecord = srv.lookup(&bob.token, "alice").await.expect(200).json();
    assert_eq!(record.claim.0, claim);

    // Withdrawn, Bob claims a handle of his own: published in the next epoch.
    eu.withdraw_handle("alice", bob.id, &bobs).await.unwrap();
    let bobs_own = claim_of(&bob, "bob");
    srv.claim(&bob.token, "bob", &bobs_own).await.expect(201);
    kt_lookup(&srv, &alice.token, "bob").await.expect_error(404, "not_found");
    publish(&srv.config).await;
    let proof: KtProof = kt_lookup(&srv, &alice.token, "bob").await.expect(200).json();
    assert_eq!(verified(&info, &proof, "bob"), (1, ObjectId::of(&bobs_own).0));
    let proof: KtProof = kt_lookup(&srv, &alice.token, "alice").await.expect(200).json();
    assert_eq!(verified(&info, &proof, "alice"), (1, ObjectId::of(&claim).0));
}

on_both_engines!(
    a_handle_is_claimed_once_and_served_to_every_signed_in_account,
    a_taken_handle_or_a_second_handle_is_refused_with_409,
    forged_or_misplaced_claims_are_refused_and_store_nothing,
    g1_handle_routes_refuse_missing_or_bad_tokens,
    handles_are_one_accounts_across_regions_and_live_in_the_claimants,
    disclosure_hands_the_handle_over_and_deletion_frees_it,
    the_key_directory_publishes_each_handles_claim,
);
