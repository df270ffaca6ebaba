//! Human handles, over real HTTP (issue #8): claiming a handle with a
//! signed claim, looking it up, one handle per account and one account per
//! handle, across residency regions, and the key directory publishing each
//! handle's claim. Each test starts `keyhold serve` in-process (as
//! `sharing_api.rs` does) and runs once per metadata engine:
//! `sqlite::<name>` and `postgres::<name>` (`support/postgres.rs`). The
//! server's own publisher is off; the one test of the directory runs a
//! publishing step itself, in-process, over the same stores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyhold_core::share::HandleClaim;
use keyhold_core::transparency::{DirectoryLabel, LogEntry, verify_lookup};
use keyhold_core::{
    AccountRootKey, CHAIN_GENESIS_PREV, ChainChange, ChainEntry, DeviceChain, DeviceSecret, KdfParams, RecoveryKey, Signer,
    os_rng, root_commitment, wrap_to_device,
};
use keyhold_proto::{
    AccountId, Bytes as B64, Challenge, ChallengeRequest, CreateAccount, DeviceChainEntries, ErrorBody, HandleRecord, KtInfo,
    KtLabel, KtProof, ObjectId, PutHandle, Session, SessionRequest,
};
use keyhold_server::config::{RegionConfig, TransparencyConfig};
use keyhold_server::regions::Regions;
use keyhold_server::transparency::Transparency;
use keyhold_server::{Config, Limits};
use reqwest::{Client, Method, RequestBuilder};
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::sync::oneshot;

const PATIENCE: Duration = Duration::from_secs(10);

#[path = "support/postgres.rs"]
mod postgres_cluster;

#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    static ENGINE: Engine;
}

/// Defines `sqlite::<name>` and `postgres::<name>` for each test body.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::ENGINE.scope(super::Engine::Sqlite, super::$name()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::ENGINE.scope(super::Engine::Postgres, super::$name()).await
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// A server under test (as in sharing_api.rs), its publisher off.
// ---------------------------------------------------------------------------

struct TestServer {
    addr: SocketAddr,
    config: Config,
    _root: TempDir,
    http: Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn database_url() -> Option<String> {
    match ENGINE.try_with(|e| *e).unwrap_or(Engine::Sqlite) {
        Engine::Sqlite => None,
        Engine::Postgres => Some(tokio::task::spawn_blocking(postgres_cluster::database).await.unwrap()),
    }
}

async fn start() -> TestServer {
    start_with_regions(&[]).await
}

/// A server with the default region and one more region per name.
async fn start_with_regions(names: &[&str]) -> TestServer {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let mut regions = Vec::new();
    for name in names {
        regions.push(RegionConfig {
            name: (*name).to_owned(),
            data_dir: root.path().join(name),
            database_url: database_url().await,
            s3: None,
        });
    }
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        database_url: database_url().await,
        regions,
        limits: Limits::default(),
        // Directory epochs only when a test publishes one (`publish`).
        transparency: TransparencyConfig { publish: false, ..TransparencyConfig::default() },
        ..Config::default()
    };
    let server = keyhold_server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(PATIENCE).build().unwrap();
    TestServer { addr, config, _root: root, http, stop: Some(stop) }
}

impl TestServer {
    fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.http.request(method, format!("http://{}{path}", self.addr));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        send(self.req(Method::GET, path, Some(token))).await
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &impl serde::Serialize) -> Resp {
        send(self.req(Method::POST, path, token).json(body)).await
    }

    /// `PUT /v1/handles/{handle}` with `claim`.
    async fn claim(&self, token: &str, handle: &str, claim: &[u8]) -> Resp {
        let body = PutHandle { claim: B64(claim.to_vec()) };
        send(self.req(Method::PUT, &format!("/v1/handles/{handle}"), Some(token)).json(&body)).await
    }

    /// `GET /v1/handles/{handle}`.
    async fn lookup(&self, token: &str, handle: &str) -> Resp {
        self.get(&format!("/v1/handles/{handle}"), token).await
    }
}

struct Resp {
    status: u16,
    body: Vec<u8>,
}

async fn send(builder: RequestBuilder) -> Resp {
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    Resp { status, body }
}

impl Resp {
    fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    /// Checks the status and error code; returns the error's message.
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> String {
        self.expect(status);
        let error = self.json::<ErrorBody>().error;
        assert_eq!(error.code, code, "message: {}", error.message);
        error.message
    }
}

// ---------------------------------------------------------------------------
// Accounts and claims.
// ---------------------------------------------------------------------------

struct Account {
    id: AccountId,
    device: DeviceSecret,
    token: String,
}

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

async fn create_account(srv: &TestServer) -> Account {
    create_account_in(srv, None).await
}

async fn create_account_in(srv: &TestServer, region: Option<&str>) -> Account {
    let mut rng = os_rng();
    let id = AccountId::generate(&mut rng);
    let device = DeviceSecret::generate(&mut rng);
    let root = AccountRootKey::generate(&mut rng);
    let recovery = RecoveryKey::generate(&mut rng);
    let genesis = ChainEntry {
        account: id,
        seq: 0,
        prev: CHAIN_GENESIS_PREV,
        time_ms: now_ms(),
        account_epoch: 0,
        signer: Signer::Device(device.id()),
        change: ChainChange::Create {
            device: device.public().clone(),
            name: "first".into(),
            recovery: recovery.device().public().clone(),
            root_commitment: root_commitment(&root, id, 0),
        },
    }
    .seal(&device)
    .unwrap();
    let body = CreateAccount {
        account_id: id.to_hex(),
        chain_entry: B64(genesis),
        device_wrap: B64(wrap_to_device(&root, device.public(), id, 0, &mut rng).unwrap()),
        recovery_locator: B64(recovery.locator().to_vec()),
        recovery_wrap: B64(recovery.wrap(&root, id, 0, KdfParams::FLOOR, &mut rng).unwrap()),
        region: region.map(str::to_owned),
    };
    srv.post_json("/v1/accounts", None, &body).await.expect(201);
    let token = sign_in(srv, id, &device).await;
    Account { id, device, token }
}

async fn sign_in(srv: &TestServer, account: AccountId, device: &DeviceSecret) -> String {
    let body = ChallengeRequest { account_id: account.to_hex(), device_id: device.id().to_hex() };
    let challenge: Challenge = srv.post_json("/v1/auth/challenge", None, &body).await.expect(200).json();
    let challenge: [u8; 32] = challenge.challenge.array().unwrap();
    let signature = device.sign_challenge(account, &challenge);
    let body = SessionRequest {
        account_id: account.to_hex(),
        device_id: device.id().to_hex(),
        challenge: B64(challenge.to_vec()),
        signature: B64(signature.to_vec()),
    };
    let session: Session = srv.post_json("/v1/auth/session", None, &body).await.expect(200).json();
    session.token
}

/// Any account's device chain, through the contact route, verified.
async fn contact_chain(srv: &TestServer, token: &str, account: AccountId) -> DeviceChain {
    let entries: DeviceChainEntries =
        srv.get(&format!("/v1/accounts/{}/chain", account.to_hex()), token).await.expect(200).json();
    DeviceChain::verify(account, entries.entries.iter().map(|b| b.0.as_slice())).unwrap()
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
