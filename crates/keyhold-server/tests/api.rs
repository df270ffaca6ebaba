//! The server over real HTTP: each test starts `keyhold serve` in-process on
//! 127.0.0.1 port 0 with a fresh data folder and talks to it as a client (or
//! as a hostile client, byte by byte). Named after the SECURITY.md property
//! each test pins. Every test runs twice, once per metadata engine:
//! `sqlite::<name>` on the embedded SQLite file and `postgres::<name>` on a
//! real PostgreSQL (`support/postgres.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::type_complexity, missing_docs)]

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::{Coll, new_account, new_collection, now_ms, pack_of, revision};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keyhold_core::pack::open_pack;
use keyhold_core::{
    AccountId, AccountRootKey, BlobId, ChainChange, ChainEntry, CollectionKey, CollectionKeys, CollectionWrapContext,
    DeviceChain, DeviceId, DeviceSecret, GENESIS_PREV, KdfParams, ObjectId, ObjectType, REVISION_LEN, RecoveryKey, Signer,
    open_revision, os_rng, root_commitment, unwrap_collection_key, unwrap_on_device, unwrap_previous_root, wrap_collection_key,
    wrap_previous_root, wrap_to_device,
};
use keyhold_proto::{
    AccountKeys, AppendChainEntry, Bytes as B64, Challenge, ChallengeRequest, DeviceChainEntries, EnrollDevice, ErrorBody,
    HeadRecord, Packs, PairingAttempt, PairingAttemptId, PairingAttempts, PairingHello, PairingSlot, PairingStep,
    PutCollectionKey, RecoveryInfo, Revisions, Session, SessionRequest, Usage, WrapRecord,
};
use keyhold_server::{Config, Limits};
use reqwest::{Client, Method, RequestBuilder};
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;

/// How long any single exchange may take before the test fails (never a
/// synchronization sleep: only an upper bound on waiting).
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A server under test.
// ---------------------------------------------------------------------------

#[path = "support/postgres.rs"]
mod postgres_cluster;

/// The metadata engine a test's servers run on.
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

struct TestServer {
    addr: SocketAddr,
    /// Holds `data/` (the server's data dir) and nothing else, so a test can
    /// check that nothing was written beside it.
    root: TempDir,
    data_dir: PathBuf,
    /// The metadata database, for tests that move time on in it.
    db_url: String,
    http: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), keyhold_server::ServeError>>>,
}

fn client_from(local: Option<IpAddr>) -> Client {
    // reqwest is built with `rustls-no-provider`: even a plain-HTTP client
    // wants a process-wide provider installed before it is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(PATIENCE);
    if let Some(ip) = local {
        builder = builder.local_address(ip);
    }
    builder.build().unwrap()
}

async fn start(limits: Limits) -> TestServer {
    start_with_metrics(limits, None).await
}

async fn start_with_metrics(limits: Limits, metrics_token: Option<&str>) -> TestServer {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let database_url = match ENGINE.try_with(|e| *e).unwrap_or(Engine::Sqlite) {
        Engine::Sqlite => None,
        Engine::Postgres => Some(tokio::task::spawn_blocking(postgres_cluster::database).await.unwrap()),
    };
    let db_url = database_url.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("metadata.sqlite3").display()));
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        database_url,
        metrics_token: metrics_token.map(str::to_owned),
        limits,
        ..Config::default()
    };
    // Bound before spawning: the listener accepts from here on, no waiting.
    let server = keyhold_server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    TestServer { addr, root, data_dir, db_url, http: client_from(None), stop: Some(stop), task: Some(task) }
}

async fn start_default() -> TestServer {
    start(Limits::default()).await
}

impl TestServer {
    /// Every file in the local blob folder (packs, and any staging file an
    /// upload left behind).
    fn blob_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() { walk(&path, out) } else { out.push(path) }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.join("blobs"), &mut out);
        out
    }

    fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        self.req_with(&self.http, method, path, token)
    }

    fn req_with(&self, http: &Client, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = http.request(method, format!("http://{}{path}", self.addr));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        send(self.req(Method::GET, path, token)).await
    }

    async fn put_bytes(&self, path: &str, token: &str, body: Vec<u8>) -> Resp {
        send(self.req(Method::PUT, path, Some(token)).header("content-type", "application/octet-stream").body(body)).await
    }

    async fn post_bytes(&self, path: &str, token: &str, body: Vec<u8>) -> Resp {
        send(self.req(Method::POST, path, Some(token)).header("content-type", "application/octet-stream").body(body)).await
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &impl serde::Serialize) -> Resp {
        send(self.req(Method::POST, path, token).json(body)).await
    }

    async fn put_json(&self, path: &str, token: Option<&str>, body: &impl serde::Serialize) -> Resp {
        send(self.req(Method::PUT, path, token).json(body)).await
    }

    /// Stops the server and checks that it shuts down cleanly.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = timeout(PATIENCE, self.task.take().unwrap()).await.expect("graceful shutdown took too long");
        result.unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response, read whole.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

async fn send(builder: RequestBuilder) -> Resp {
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    Resp { status, headers, body }
}

impl Resp {
    fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> ErrorBody {
        self.json()
    }

    fn code(&self) -> String {
        self.error().error.code
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        assert_eq!(self.code(), code);
        assert_eq!(self.header("content-type").as_deref(), Some("application/json"));
    }
}

// ---------------------------------------------------------------------------
// Accounts, sessions, collections, packs, revisions.
// ---------------------------------------------------------------------------

struct Account {
    id: AccountId,
    device: DeviceSecret,
    root: AccountRootKey,
    recovery: RecoveryKey,
    recovery_wrap: Vec<u8>,
    token: String,
}

async fn create_account(srv: &TestServer) -> Account {
    let (id, device, root, recovery, body) = new_account(None);
    srv.post_json("/v1/accounts", None, &body).await.expect(201);
    let token = sign_in(srv, id, &device).await;
    Account { id, device, root, recovery, recovery_wrap: body.recovery_wrap.0, token }
}

/// The account's chain as the server holds it, verified.
async fn fetch_chain(srv: &TestServer, token: &str, account: AccountId) -> (Vec<Vec<u8>>, DeviceChain) {
    let entries: DeviceChainEntries = srv.get("/v1/chain", Some(token)).await.expect(200).json();
    let entries: Vec<Vec<u8>> = entries.entries.into_iter().map(|b| b.0).collect();
    let chain = DeviceChain::verify(account, entries.iter().map(Vec::as_slice)).unwrap();
    (entries, chain)
}

/// The next entry of `chain`, signed by `signer` (a device, or the recovery key's device).
fn next_entry(chain: &DeviceChain, signer: Signer, change: ChainChange, by: &DeviceSecret) -> Vec<u8> {
    let account_epoch = if change.starts_epoch() { chain.epoch() + 1 } else { chain.epoch() };
    ChainEntry {
        account: chain.account(),
        seq: chain.head().seq + 1,
        prev: chain.head().id,
        time_ms: now_ms(),
        account_epoch,
        signer,
        change,
    }
    .seal(by)
    .unwrap()
}

fn add_device_change(device: &DeviceSecret, name: &str) -> ChainChange {
    ChainChange::AddDevice { device: device.public().clone(), name: name.into() }
}

/// `POST /v1/chain` adding `new` to `a`'s account, signed by `a.device`.
fn add_device_body(a: &Account, chain: &DeviceChain, root: &AccountRootKey, new: &DeviceSecret) -> AppendChainEntry {
    let entry = next_entry(chain, Signer::Device(a.device.id()), add_device_change(new, "another"), &a.device);
    AppendChainEntry {
        entry: B64(entry),
        device_wraps: vec![WrapRecord {
            id: new.id().to_hex(),
            epoch: chain.epoch(),
            wrap: B64(wrap_to_device(root, new.public(), a.id, chain.epoch(), &mut os_rng()).unwrap()),
        }],
        recovery_wrap: None,
        recovery_locator: None,
        previous_root_wrap: None,
        collection_wraps: Vec::new(),
    }
}

/// Adds a device to `a`'s account through `POST /v1/chain` and signs it in.
async fn add_device(srv: &TestServer, a: &Account) -> (DeviceSecret, String) {
    let (_, chain) = fetch_chain(srv, &a.token, a.id).await;
    let new = DeviceSecret::generate(&mut os_rng());
    srv.post_json("/v1/chain", Some(&a.token), &add_device_body(a, &chain, &a.root, &new)).await.expect(201);
    let token = sign_in(srv, a.id, &new).await;
    (new, token)
}

/// `POST /v1/chain` revoking `victim`, signed by `a.device`, with a new
/// root key wrapped to `stay` (and the recovery key).
fn revoke_body(a: &Account, chain: &DeviceChain, victim: DeviceId, stay: &[&DeviceSecret]) -> (AccountRootKey, AppendChainEntry) {
    let mut rng = os_rng();
    let epoch = chain.epoch() + 1;
    let new_root = AccountRootKey::generate(&mut rng);
    let change = ChainChange::RevokeDevice {
        device: victim,
        root_commitment: root_commitment(&new_root, a.id, epoch),
        cutoffs: Default::default(),
    };
    let entry = next_entry(chain, Signer::Device(a.device.id()), change, &a.device);
    let body = AppendChainEntry {
        entry: B64(entry),
        device_wraps: stay
            .iter()
            .map(|d| WrapRecord {
                id: d.id().to_hex(),
                epoch,
                wrap: B64(wrap_to_device(&new_root, d.public(), a.id, epoch, &mut os_rng()).unwrap()),
            })
            .collect(),
        recovery_wrap: Some(B64(wrap_to_device(&new_root, a.recovery.device().public(), a.id, epoch, &mut rng).unwrap())),
        recovery_locator: None,
        previous_root_wrap: Some(B64(wrap_previous_root(&a.root, &new_root, a.id, epoch, &mut rng).unwrap())),
        collection_wraps: Vec::new(),
    };
    (new_root, body)
}

async fn challenge_with(srv: &TestServer, http: &Client, account: AccountId, device: DeviceId) -> Resp {
    let body = ChallengeRequest { account_id: account.to_hex(), device_id: device.to_hex() };
    send(srv.req_with(http, Method::POST, "/v1/auth/challenge", None).json(&body)).await
}

async fn session_with(
    srv: &TestServer,
    http: &Client,
    account: AccountId,
    device: DeviceId,
    challenge: [u8; 32],
    sig: [u8; 64],
) -> Resp {
    let body = SessionRequest {
        account_id: account.to_hex(),
        device_id: device.to_hex(),
        challenge: B64(challenge.to_vec()),
        signature: B64(sig.to_vec()),
    };
    send(srv.req_with(http, Method::POST, "/v1/auth/session", None).json(&body)).await
}

/// Challenge → signature → session token, from `http`'s address.
async fn sign_in_with(srv: &TestServer, http: &Client, account: AccountId, device: &DeviceSecret) -> String {
    let challenge = challenge_with(srv, http, account, device.id()).await;
    let challenge: [u8; 32] = challenge.expect(200).json::<Challenge>().challenge.array().unwrap();
    let sig = device.sign_challenge(account, &challenge);
    let session = session_with(srv, http, account, device.id(), challenge, sig).await;
    let session: Session = session.expect(200).json();
    assert!(session.expires_in > 0);
    session.token
}

async fn sign_in(srv: &TestServer, account: AccountId, device: &DeviceSecret) -> String {
    sign_in_with(srv, &srv.http, account, device).await
}

fn collection_wrap(account: &Account, coll: &Coll) -> Vec<u8> {
    let ctx = CollectionWrapContext { account: account.id, collection: coll.id, collection_epoch: 0, account_epoch: 0 };
    wrap_collection_key(&coll.key, &account.root, &ctx, &mut os_rng()).unwrap()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    getrandom::fill(&mut out).unwrap();
    out
}

fn random_pack(keys: &CollectionKeys, plaintext_len: usize) -> (ObjectId, Vec<u8>) {
    let (id, bytes, _) = pack_of(keys, &random_bytes(plaintext_len));
    (id, bytes)
}

fn random_hex_id() -> String {
    ObjectId::of(&random_bytes(32)).to_hex()
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1, for what a well-behaved client cannot send.
// ---------------------------------------------------------------------------

struct RawResp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response: its head, then a `Content-Length` body (or up to EOF).
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<RawResp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    let mut body = buf[head_end..].to_vec();
    match length {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    Ok(RawResp { status, head, body })
}

/// Sends `request` as is on a new connection and reads the response.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    timeout(PATIENCE, read_response(&mut stream)).await.expect("no response in time").unwrap()
}

fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body).ok().map(|e| e.error.code)
}

// ---------------------------------------------------------------------------
// Happy path.
// ---------------------------------------------------------------------------

async fn healthz_answers() {
    let srv = start_default().await;
    let r = srv.get("/healthz", None).await;
    r.expect(200);
    assert_eq!(r.body, b"ok");
    srv.shutdown().await;
}

async fn happy_path_keys_packs_ranges_revisions_and_head_compare_and_swap() {
    let srv = start_default().await;
    let (id, device, root, recovery, body) = new_account(None);
    srv.post_json("/v1/accounts", None, &body).await.expect(201);
    // The same account again: refused, nothing changes.
    srv.post_json("/v1/accounts", None, &body).await.expect_error(409, "conflict");
    let token = sign_in(&srv, id, &device).await;
    let acct = Account { id, device, root, recovery, recovery_wrap: body.recovery_wrap.0, token };
    let t = acct.token.as_str();

    // Collection key wrap: filed once; the same again is fine; another is refused.
    let coll = new_collection();
    let wrap = collection_wrap(&acct, &coll);
    let key_path = format!("/v1/collections/{}/keys/0", coll.id.to_hex());
    srv.put_json(&key_path, Some(t), &PutCollectionKey { wrap: B64(wrap.clone()) }).await.expect(201);
    srv.put_json(&key_path, Some(t), &PutCollectionKey { wrap: B64(wrap.clone()) }).await.expect(200);
    let other_wrap = collection_wrap(&acct, &coll);
    assert_ne!(other_wrap, wrap);
    srv.put_json(&key_path, Some(t), &PutCollectionKey { wrap: B64(other_wrap) }).await.expect_error(409, "conflict");

    // The account's keys, as stored, open on the device.
    let keys: AccountKeys = srv.get("/v1/keys", Some(t)).await.expect(200).json();
    assert_eq!(keys.account_epoch, 0);
    assert!(keys.previous_root_wraps.is_empty());
    assert_eq!(keys.device_wraps.len(), 1);
    assert_eq!(keys.device_wraps[0].id, acct.device.id().to_hex());
    let opened = unwrap_on_device(&keys.device_wraps[0].wrap.0, &acct.device, acct.id, 0).unwrap();
    assert_eq!(opened.expose_secret(), acct.root.expose_secret());
    assert_eq!(keys.collection_wraps.len(), 1);
    assert_eq!(keys.collection_wraps[0].id, coll.id.to_hex());
    assert_eq!(keys.collection_wraps[0].wrap.0, wrap);
    let ctx = CollectionWrapContext { account: acct.id, collection: coll.id, collection_epoch: 0, account_epoch: 0 };
    let key = unwrap_collection_key(&keys.collection_wraps[0].wrap.0, &opened, &ctx).unwrap();
    assert_eq!(key.expose_secret(), coll.key.expose_secret());

    // A real pack: 201, then 200 (idempotent retry).
    let (pack_id, pack, blob_id) = pack_of(&coll.keys, b"hello, hostile server");
    let pack_path = format!("/v1/packs/{}", pack_id.to_hex());
    srv.put_bytes(&pack_path, t, pack.clone()).await.expect(201);
    srv.put_bytes(&pack_path, t, pack.clone()).await.expect(200);
    let size = u64::try_from(pack.len()).unwrap();

    let packs: Packs = srv.get(&format!("/v1/collections/{}/packs", coll.id.to_hex()), Some(t)).await.expect(200).json();
    assert_eq!(packs.packs.len(), 1);
    assert_eq!(packs.packs[0].id.0, pack_id);
    assert_eq!(packs.packs[0].size, size);

    // Whole, and by range.
    let whole = srv.get(&pack_path, Some(t)).await;
    whole.expect(200);
    assert_eq!(whole.body, pack);
    assert_eq!(whole.header("content-type").as_deref(), Some("application/octet-stream"));
    let entries = open_pack(&coll.keys, &whole.body).unwrap();
    assert_eq!(entries.len(), 1);
    let plaintext = coll.keys.open_blob(ObjectType::Chunk, &blob_id, entries[0].slice(&whole.body).unwrap().to_vec()).unwrap();
    assert_eq!(plaintext, b"hello, hostile server");

    let first = send(srv.req(Method::GET, &pack_path, Some(t)).header("range", "bytes=0-9")).await;
    first.expect(206);
    assert_eq!(first.body, pack[..10]);
    assert_eq!(first.header("content-range").unwrap(), format!("bytes 0-9/{size}"));
    let last = send(srv.req(Method::GET, &pack_path, Some(t)).header("range", "bytes=-24")).await;
    last.expect(206);
    assert_eq!(last.body, pack[pack.len() - 24..]);
    assert_eq!(last.header("content-range").unwrap(), format!("bytes {}-{}/{size}", size - 24, size - 1));
    let unsatisfiable = send(srv.req(Method::GET, &pack_path, Some(t)).header("range", format!("bytes={size}-"))).await;
    assert!(unsatisfiable.status == 400 || unsatisfiable.status == 416, "status {}", unsatisfiable.status);

    // No head yet.
    let head_path = format!("/v1/collections/{}/head", coll.id.to_hex());
    srv.get(&head_path, Some(t)).await.expect_error(404, "not_found");

    // Revision 0.
    let revs_path = format!("/v1/collections/{}/revisions", coll.id.to_hex());
    let (rev0_id, rev0) = revision(&coll, &acct.device, 0, GENESIS_PREV, blob_id);
    assert_eq!(rev0.len(), REVISION_LEN);
    let committed: HeadRecord = srv.post_bytes(&revs_path, t, rev0.clone()).await.expect(201).json();
    assert_eq!(committed, HeadRecord { seq: 0, id: keyhold_proto::HexId(rev0_id) });
    let head: HeadRecord = srv.get(&head_path, Some(t)).await.expect(200).json();
    assert_eq!(head, committed);
    let revs: Revisions = srv.get(&revs_path, Some(t)).await.expect(200).json();
    assert!(!revs.more);
    assert_eq!(revs.revisions.len(), 1);
    assert_eq!(revs.revisions[0].0, rev0);
    let verified =
        open_revision(&coll.keys, &revs.revisions[0].0, |d| (*d == acct.device.id()).then(|| acct.device.public())).unwrap();
    assert_eq!(verified.id, rev0_id);

    // Revision 1 extends it.
    let (rev1_id, rev1) = revision(&coll, &acct.device, 1, rev0_id, blob_id);
    srv.post_bytes(&revs_path, t, rev1.clone()).await.expect(201);
    let head: HeadRecord = srv.get(&head_path, Some(t)).await.expect(200).json();
    assert_eq!(head, HeadRecord { seq: 1, id: keyhold_proto::HexId(rev1_id) });

    // A concurrent writer's seq 1 (on the same parent) is stale: 409 head_moved with the head.
    let (_, stale) = revision(&coll, &acct.device, 1, rev0_id, blob_id);
    let r = srv.post_bytes(&revs_path, t, stale).await;
    r.expect_error(409, "head_moved");
    assert_eq!(r.error().error.head, Some(head));
    // Re-sending revision 0 is stale too.
    let r = srv.post_bytes(&revs_path, t, rev0.clone()).await;
    r.expect_error(409, "head_moved");
    assert_eq!(r.error().error.head, Some(head));

    // Pagination by `after`.
    let revs: Revisions = srv.get(&format!("{revs_path}?after=0"), Some(t)).await.expect(200).json();
    assert_eq!(revs.revisions.iter().map(|b| b.0.clone()).collect::<Vec<_>>(), vec![rev1]);
    let revs: Revisions = srv.get(&format!("{revs_path}?after=1"), Some(t)).await.expect(200).json();
    assert!(revs.revisions.is_empty());

    // Usage counts what was stored.
    let usage: Usage = srv.get("/v1/usage", Some(t)).await.expect(200).json();
    let revisions = 2 * u64::try_from(REVISION_LEN).unwrap();
    let wrap_len = u64::try_from(wrap.len()).unwrap();
    assert_eq!(usage.used_bytes, size + revisions + wrap_len);
    assert_eq!(usage.quota_bytes, Limits::default().default_quota_bytes);

    srv.shutdown().await;
}

// ---------------------------------------------------------------------------
// G1: tenant isolation.
// ---------------------------------------------------------------------------

async fn g1_another_accounts_objects_look_exactly_like_missing_ones() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let b = create_account(&srv).await;

    // Account A stores a collection key, a pack and a revision.
    let coll = new_collection();
    let c = coll.id.to_hex();
    let wrap = collection_wrap(&a, &coll);
    srv.put_json(&format!("/v1/collections/{c}/keys/0"), Some(&a.token), &PutCollectionKey { wrap: B64(wrap) }).await.expect(201);
    let (pack_id, pack, blob_id) = pack_of(&coll.keys, b"a's secret");
    srv.put_bytes(&format!("/v1/packs/{}", pack_id.to_hex()), &a.token, pack.clone()).await.expect(201);
    let (rev0_id, rev0) = revision(&coll, &a.device, 0, GENESIS_PREV, blob_id);
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), &a.token, rev0.clone()).await.expect(201);

    let missing_coll = new_collection().id.to_hex();
    let missing_pack = random_hex_id();

    // B's token on A's ids answers exactly what it answers for ids that do not exist.
    for (a_path, missing_path) in [
        (format!("/v1/packs/{}", pack_id.to_hex()), format!("/v1/packs/{missing_pack}")),
        (format!("/v1/collections/{c}/head"), format!("/v1/collections/{missing_coll}/head")),
        (format!("/v1/collections/{c}/revisions"), format!("/v1/collections/{missing_coll}/revisions")),
        (format!("/v1/collections/{c}/revisions?after=0"), format!("/v1/collections/{missing_coll}/revisions?after=0")),
        (format!("/v1/collections/{c}/packs"), format!("/v1/collections/{missing_coll}/packs")),
    ] {
        let theirs = srv.get(&a_path, Some(&b.token)).await;
        let missing = srv.get(&missing_path, Some(&b.token)).await;
        assert!(theirs.status == 404 || theirs.status == 200, "{a_path}: {}", theirs.status);
        assert_eq!((theirs.status, &theirs.body), (missing.status, &missing.body), "{a_path} leaks existence");
        if theirs.status == 404 {
            assert_eq!(theirs.code(), "not_found");
        }
        // And A still sees its own.
        srv.get(&a_path, Some(&a.token)).await.expect(200);
    }
    let listed: Packs = srv.get(&format!("/v1/collections/{c}/packs"), Some(&b.token)).await.expect(200).json();
    assert!(listed.packs.is_empty());
    let listed: Revisions = srv.get(&format!("/v1/collections/{c}/revisions"), Some(&b.token)).await.expect(200).json();
    assert!(listed.revisions.is_empty() && !listed.more);
    let range =
        send(srv.req(Method::GET, &format!("/v1/packs/{}", pack_id.to_hex()), Some(&b.token)).header("range", "bytes=0-9")).await;
    range.expect_error(404, "not_found");

    // B's keys and usage show nothing of A's.
    let keys: AccountKeys = srv.get("/v1/keys", Some(&b.token)).await.expect(200).json();
    assert!(keys.collection_wraps.is_empty());
    assert_eq!(keys.device_wraps.len(), 1);
    assert!(keys.device_wraps.iter().all(|w| w.id == b.device.id().to_hex()));
    // Nor does B's chain.
    let (b_chain, _) = fetch_chain(&srv, &b.token, b.id).await;
    assert_eq!(b_chain.len(), 1);
    let usage: Usage = srv.get("/v1/usage", Some(&b.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, 0);

    // Writes under A's ids land in B's own namespace and answer as for fresh
    // ids: no cross-account dedup ("200 already there") and no "409 exists".
    let b_wrap = collection_wrap(&b, &coll);
    srv.put_json(&format!("/v1/collections/{c}/keys/0"), Some(&b.token), &PutCollectionKey { wrap: B64(b_wrap) })
        .await
        .expect(201);
    srv.put_bytes(&format!("/v1/packs/{}", pack_id.to_hex()), &b.token, pack.clone()).await.expect(201);
    // Extending A's head from B: the head B sees is absent, and the answer names no head of A's.
    let (_, rev1) = revision(&coll, &a.device, 1, rev0_id, blob_id);
    let r = srv.post_bytes(&format!("/v1/collections/{c}/revisions"), &b.token, rev1).await;
    r.expect_error(409, "head_moved");
    assert!(r.error().error.head.is_none());
    let head: HeadRecord = srv.get(&format!("/v1/collections/{c}/head"), Some(&a.token)).await.expect(200).json();
    assert_eq!(head.seq, 0);

    // A device of A cannot sign in as a device of B's account.
    let challenge: Challenge = challenge_with(&srv, &srv.http, b.id, a.device.id()).await.expect(200).json();
    let challenge: [u8; 32] = challenge.challenge.array().unwrap();
    let sig = a.device.sign_challenge(b.id, &challenge);
    session_with(&srv, &srv.http, b.id, a.device.id(), challenge, sig).await.expect_error(401, "unauthorized");
}

async fn g1_every_authenticated_route_refuses_missing_or_bad_tokens() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let coll = new_collection();
    let c = coll.id.to_hex();
    let (pack_id, pack, blob_id) = pack_of(&coll.keys, b"x");
    let (_, rev0) = revision(&coll, &a.device, 0, GENESIS_PREV, blob_id);
    let wrap = serde_json::to_vec(&PutCollectionKey { wrap: B64(collection_wrap(&a, &coll)) }).unwrap();
    let p = pack_id.to_hex();
    let (_, chain) = fetch_chain(&srv, &a.token, a.id).await;
    let add = serde_json::to_vec(&add_device_body(&a, &chain, &a.root, &DeviceSecret::generate(&mut os_rng()))).unwrap();
    let step = serde_json::to_vec(&PairingStep { data: B64(vec![1; 65]) }).unwrap();
    let attempt = "ab".repeat(16);
    let routes: Vec<(Method, String, Option<(&str, Vec<u8>)>)> = vec![
        (Method::GET, "/v1/keys".into(), None),
        (Method::GET, "/v1/chain".into(), None),
        (Method::POST, "/v1/chain".into(), Some(("application/json", add))),
        (Method::PUT, "/v1/pairings/AB12".into(), None),
        (Method::GET, "/v1/pairings/AB12/attempts".into(), None),
        (Method::PUT, format!("/v1/pairings/AB12/attempts/{attempt}/reply"), Some(("application/json", step.clone()))),
        (Method::PUT, format!("/v1/pairings/AB12/attempts/{attempt}/welcome"), Some(("application/json", step))),
        (Method::DELETE, "/v1/pairings/AB12".into(), None),
        (Method::GET, "/v1/usage".into(), None),
        (Method::PUT, format!("/v1/collections/{c}/keys/0"), Some(("application/json", wrap))),
        (Method::GET, format!("/v1/collections/{c}/head"), None),
        (Method::GET, format!("/v1/collections/{c}/revisions"), None),
        (Method::POST, format!("/v1/collections/{c}/revisions"), Some(("application/octet-stream", rev0))),
        (Method::GET, format!("/v1/collections/{c}/packs"), None),
        (Method::PUT, format!("/v1/packs/{p}"), Some(("application/octet-stream", pack))),
        (Method::GET, format!("/v1/packs/{p}"), None),
    ];
    // A well-formed token that was never issued, one that is almost A's, and junk.
    let mut almost = a.token.clone();
    let last = almost.pop().unwrap();
    almost.push(if last == 'A' { 'E' } else { 'A' });
    assert_ne!(almost, a.token);
    let bad_headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer garbage".into()),
        Some("Bearer ".into()),
        Some(format!("Bearer {}", "A".repeat(43))),
        Some(format!("Bearer {almost}")),
        Some(format!("bearer {}", a.token)),
        Some(format!("Basic {}", a.token)),
        Some(a.token.clone()),
    ];
    for (method, path, body) in &routes {
        for auth in &bad_headers {
            let mut req = srv.req(method.clone(), path, None);
            if let Some(h) = auth {
                req = req.header("authorization", h);
            }
            if let Some((ct, bytes)) = body {
                req = req.header("content-type", *ct).body(bytes.clone());
            }
            let r = send(req).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(r.code(), "unauthorized");
        }
    }
    // Nothing was stored by any of those.
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, 0);
    assert_eq!(fetch_chain(&srv, &a.token, a.id).await.0.len(), 1);
    srv.get(&format!("/v1/collections/{c}/head"), Some(&a.token)).await.expect_error(404, "not_found");
    // The real token works on every route.
    for (method, path, body) in &routes {
        let mut req = srv.req(method.clone(), path, Some(&a.token));
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", *ct).body(bytes.clone());
        }
        let r = send(req).await;
        assert!(r.status != 401, "{method} {path}: {}", r.status);
    }
}

// ---------------------------------------------------------------------------
// G6: ids never become paths.
// ---------------------------------------------------------------------------

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        }
        out.push(path);
    }
}

async fn g6_ids_with_traversal_separators_nul_or_bad_length_are_rejected() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let hex64 = "ab".repeat(32);
    let bad_ids: Vec<String> = vec![
        "..".into(),
        ".".into(),
        "%2e%2e".into(),
        "..%2F..%2F..%2Fetc%2Fpasswd".into(),
        "..%2f..%2fmetadata.sqlite3".into(),
        format!("%2F{}", &hex64[..62]),
        format!("{}%2F{}", &hex64[..32], &hex64[..32]),
        format!("..%5C..%5C{}", &hex64[..58]),
        format!("{}%5C", &hex64[..63]),
        format!("{}%00", &hex64[..63]),
        format!("{}%00{}", &hex64[..32], &hex64[..32]),
        "%00".into(),
        "a".repeat(65),
        "0".repeat(128),
        "f".repeat(4096),
        "a".repeat(63),
        "g".repeat(64),
        "x".repeat(64),
        format!("0x{}", &hex64[..62]),
        format!("{}%20", &hex64[..63]),
        format!("-{}", &hex64[..63]),
        format!("+{}", &hex64[..63]),
        "%C3%A9".repeat(32),
        "%FF%FE".repeat(16),
        "~root".into(),
    ];
    let (json, octets) = ("application/json", "application/octet-stream");
    let enroll = br#"{"chain_entry":"AAAA","device_wrap":"AAAA"}"#;
    let wrap = br#"{"wrap":"AAAA"}"#;
    let hello = serde_json::to_vec(&PairingHello { message: B64(vec![2; 33]) }).unwrap();
    let hello = hello.as_slice();
    let step = br#"{"data":"AAAA"}"#;
    for id in &bad_ids {
        let requests: Vec<(&str, String, &str, &[u8])> = vec![
            ("GET", format!("/v1/packs/{id}"), "", b""),
            ("PUT", format!("/v1/packs/{id}"), octets, b"KHLD pack bytes"),
            ("GET", format!("/v1/collections/{id}/head"), "", b""),
            ("GET", format!("/v1/collections/{id}/revisions"), "", b""),
            ("POST", format!("/v1/collections/{id}/revisions"), octets, b"KHLD revision bytes"),
            ("GET", format!("/v1/collections/{id}/packs"), "", b""),
            ("PUT", format!("/v1/collections/{id}/keys/0"), json, wrap),
            ("GET", format!("/v1/recovery/{id}"), "", b""),
            ("POST", format!("/v1/recovery/{id}/devices"), json, enroll),
            ("PUT", format!("/v1/pairings/{id}"), "", b""),
            ("POST", format!("/v1/pairings/{id}/attempts"), json, hello),
            ("GET", format!("/v1/pairings/{id}/attempts"), "", b""),
            ("GET", format!("/v1/pairings/AB12/attempts/{id}"), "", b""),
            ("PUT", format!("/v1/pairings/AB12/attempts/{id}/joiner"), json, step),
        ];
        for (method, path, content_type, body) in requests {
            let mut request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Length: {}\r\n",
                a.token,
                body.len()
            )
            .into_bytes();
            if !content_type.is_empty() {
                request.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(body);
            let r = raw_exchange(srv.addr, &request).await;
            match r.status {
                // Refused by the id parser (or by hyper for a URI it cannot parse).
                400 => {
                    if let Some(code) = error_code(&r.body) {
                        assert_eq!(code, "bad_request", "{method} {path}");
                    }
                }
                // No route matched: the router's empty 404, never a handler's
                // "no such object" (which would mean the id was accepted).
                404 => assert!(r.body.is_empty(), "{method} {path}: id was accepted as {}", String::from_utf8_lossy(&r.body)),
                other => panic!("{method} {path}: status {other}\n{}", r.head),
            }
        }
    }
    // Ids inside JSON bodies too.
    let (_, device, _, _, mut body) = new_account(None);
    body.account_id = "../../x".into();
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    let r =
        srv.post_json("/v1/auth/challenge", None, &ChallengeRequest { account_id: a.id.to_hex(), device_id: "..".into() }).await;
    r.expect_error(400, "bad_request");
    let r = srv
        .post_json(
            "/v1/auth/challenge",
            None,
            &ChallengeRequest { account_id: format!("{}/..", a.id), device_id: device.id().to_hex() },
        )
        .await;
    r.expect_error(400, "bad_request");

    // One valid pack, to see where blobs do go.
    let coll = new_collection();
    let (pack_id, pack, _) = pack_of(&coll.keys, b"where do I land");
    srv.put_bytes(&format!("/v1/packs/{}", pack_id.to_hex()), &a.token, pack.clone()).await.expect(201);
    let expected = srv.data_dir.join("blobs").join(a.id.to_hex()).join(pack_id.to_hex());
    assert_eq!(std::fs::read(&expected).unwrap(), pack);

    // Nothing beside the data dir; inside it only the database, the
    // deployment's keys and blobs/<account hex>/<pack hex>.
    let beside: Vec<_> = std::fs::read_dir(srv.root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("data")]);
    let mut all = Vec::new();
    walk(&srv.data_dir, &mut all);
    for path in &all {
        let rel = path.strip_prefix(&srv.data_dir).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let ok = match parts.as_slice() {
            [
                "metadata.sqlite3"
                | "metadata.sqlite3-wal"
                | "metadata.sqlite3-shm"
                | "blobs"
                | "deployment.key"
                | "kt-log.key"
                | "kt-vrf.key",
            ] => true,
            ["blobs", account] => is_hex(account, 32) && path.is_dir(),
            ["blobs", account, pack] => is_hex(account, 32) && is_hex(pack, 64) && path.is_file(),
            _ => false,
        };
        assert!(ok, "unexpected file in the data dir: {}", rel.display());
    }
    let blobs: Vec<_> = all.iter().filter(|p| p.is_file() && p.starts_with(srv.data_dir.join("blobs"))).collect();
    assert_eq!(blobs, vec![&expected]);
}

// ---------------------------------------------------------------------------
// G2: oversized bodies are refused before they are buffered.
// ---------------------------------------------------------------------------

const SMALL_BODY_LIMIT: usize = 1 << 20;

async fn g2_announced_oversized_body_is_refused_before_it_is_sent() {
    let srv = start(Limits { max_body_bytes: SMALL_BODY_LIMIT, ..Limits::default() }).await;
    let a = create_account(&srv).await;
    let c = new_collection().id.to_hex();
    for (method, path) in [
        ("PUT", format!("/v1/packs/{}", random_hex_id())),
        ("POST", format!("/v1/collections/{c}/revisions")),
        ("PUT", format!("/v1/collections/{c}/keys/0")),
        ("POST", "/v1/accounts".to_owned()),
    ] {
        let mut stream = TcpStream::connect(srv.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            a.token,
            SMALL_BODY_LIMIT + 1
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The body never comes; the answer must come anyway.
        let r = timeout(PATIENCE, read_response(&mut stream)).await.expect("413 must not wait for the body").unwrap();
        assert_eq!(r.status, 413, "{method} {path}: {}", r.head);
        assert_eq!(error_code(&r.body).as_deref(), Some("too_large"));
    }
    // Exactly at the limit is read (and refused for what it is, not its size).
    let body = random_bytes(SMALL_BODY_LIMIT);
    let r = srv.put_bytes(&format!("/v1/packs/{}", ObjectId::of(&body).to_hex()), &a.token, body).await;
    r.expect_error(400, "bad_request");
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, 0);
}

async fn g2_chunked_body_beyond_the_limit_is_refused() {
    let srv = start(Limits { max_body_bytes: SMALL_BODY_LIMIT, ..Limits::default() }).await;
    let a = create_account(&srv).await;
    let c = new_collection().id.to_hex();
    for (method, path) in [("PUT", format!("/v1/packs/{}", random_hex_id())), ("POST", format!("/v1/collections/{c}/revisions"))]
    {
        let stream = TcpStream::connect(srv.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            a.token
        );
        // The body is sent while the answer is awaited: the server may answer
        // (and close) before it has all of it.
        let sender = tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b'k'; 64 * 1024];
            for _ in 0..(SMALL_BODY_LIMIT / chunk.len() + 2) {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                writer.write_all(&chunk).await?;
                writer.write_all(b"\r\n").await?;
            }
            writer.write_all(b"0\r\n\r\n").await?;
            Ok::<_, std::io::Error>(writer)
        });
        let r = timeout(PATIENCE, read_response(&mut reader)).await.expect("no answer to an oversized chunked body").unwrap();
        assert_eq!(r.status, 413, "{method} {path}: {}", r.head);
        assert_eq!(error_code(&r.body).as_deref(), Some("too_large"));
        drop(sender.await.unwrap());
    }
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, 0);
    // Packs stream to disk as they arrive: a refused one leaves no file.
    assert_eq!(srv.blob_files(), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------
// Malformed uploads and bodies (B1 at the server's door, G8).
// ---------------------------------------------------------------------------

async fn b1_g8_digest_mismatch_non_packs_malformed_json_and_foreign_revisions_are_refused() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let t = a.token.as_str();
    let coll = new_collection();
    let c = coll.id.to_hex();
    let (pack_id, pack, blob_id) = pack_of(&coll.keys, b"content");

    // The body must hash to the id in the URL.
    let other_id = random_hex_id();
    srv.put_bytes(&format!("/v1/packs/{other_id}"), t, pack.clone()).await.expect_error(422, "digest_mismatch");
    let mut flipped = pack.clone();
    flipped[40] ^= 1;
    srv.put_bytes(&format!("/v1/packs/{}", pack_id.to_hex()), t, flipped).await.expect_error(422, "digest_mismatch");

    // Under its right hash, but not a pack: 400.
    let (rev0_id, rev0) = revision(&coll, &a.device, 0, GENESIS_PREV, blob_id);
    for body in [b"just some bytes".to_vec(), Vec::new(), rev0.clone(), pack[..40].to_vec(), pack[..80].to_vec()] {
        srv.put_bytes(&format!("/v1/packs/{}", ObjectId::of(&body).to_hex()), t, body).await.expect_error(400, "bad_request");
    }
    // Uploads stream to disk as they arrive: a refused one leaves no file.
    assert_eq!(srv.blob_files(), Vec::<PathBuf>::new());

    // Malformed JSON bodies: 4xx with a JSON error and a code.
    let bad_json: Vec<(Method, String, Option<&str>, &str, &[u8])> = vec![
        (Method::POST, "/v1/accounts".into(), None, "application/json", b"{"),
        (Method::POST, "/v1/accounts".into(), None, "application/json", b"{\"account_id\": 5}"),
        (Method::POST, "/v1/accounts".into(), None, "application/json", b"[]"),
        (Method::POST, "/v1/accounts".into(), None, "text/plain", b"{}"),
        (Method::POST, "/v1/auth/challenge".into(), None, "application/json", b"null"),
        (Method::POST, "/v1/auth/challenge".into(), None, "application/json", b"\xff\xfe"),
        (Method::POST, "/v1/auth/session".into(), None, "application/json", b"{\"account_id\":\"00\"}"),
        (Method::PUT, format!("/v1/collections/{c}/keys/0"), Some(t), "application/json", b"{\"wrap\": \"not base64!\"}"),
        (Method::PUT, format!("/v1/collections/{c}/keys/0"), Some(t), "application/json", b"{\"wrap\": \"\"}"),
        (Method::PUT, format!("/v1/collections/{c}/keys/0"), Some(t), "application/json", b""),
        (Method::PUT, format!("/v1/collections/{c}/keys/0"), Some(t), "application/octet-stream", b"{\"wrap\":\"AAAA\"}"),
        (Method::PUT, format!("/v1/collections/{c}/keys/minus-one"), Some(t), "application/json", b"{\"wrap\":\"AAAA\"}"),
        (Method::PUT, format!("/v1/collections/{c}/keys/4294967296"), Some(t), "application/json", b"{\"wrap\":\"AAAA\"}"),
        (Method::GET, format!("/v1/collections/{c}/revisions?after=minus-one"), Some(t), "application/json", b""),
        (
            Method::POST,
            format!("/v1/recovery/{}/devices", random_hex_id()),
            None,
            "application/json",
            b"{\"device_public_keys\": 1}",
        ),
    ];
    for (method, path, token, content_type, body) in bad_json {
        let r = send(srv.req(method.clone(), &path, token).header("content-type", content_type).body(body.to_vec())).await;
        assert!((400..500).contains(&r.status), "{method} {path} {body:?}: {}", r.status);
        assert_eq!(r.header("content-type").as_deref(), Some("application/json"), "{method} {path} {body:?}");
        let code = r.code();
        assert!(!code.is_empty());
        assert_eq!(code, "bad_request", "{method} {path} {body:?}");
    }
    // Well-formed JSON with values of the wrong size.
    let (_, _, _, _, mut body) = new_account(None);
    body.recovery_locator = B64(vec![1; 31]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    let (_, _, _, _, mut body) = new_account(None);
    body.chain_entry = B64(vec![7; 100]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    let (_, _, _, _, mut body) = new_account(None);
    body.recovery_wrap = B64(vec![7; 5000]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    // A creation entry for another account: 400.
    let (_, _, _, _, mut body) = new_account(None);
    body.account_id = AccountId::generate(&mut os_rng()).to_hex();
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    // A creation entry whose signature does not verify: 401, no account.
    let (id, device, _, _, mut body) = new_account(None);
    *body.chain_entry.0.last_mut().unwrap() ^= 1;
    srv.post_json("/v1/accounts", None, &body).await.expect_error(401, "unauthorized");
    let ch: Challenge = challenge_with(&srv, &srv.http, id, device.id()).await.expect(200).json();
    let ch: [u8; 32] = ch.challenge.array().unwrap();
    session_with(&srv, &srv.http, id, device.id(), ch, device.sign_challenge(id, &ch)).await.expect_error(401, "unauthorized");
    let r = session_with(&srv, &srv.http, a.id, a.device.id(), [0; 32], [0; 64]).await;
    r.expect_error(401, "unauthorized");
    let r = srv
        .post_json(
            "/v1/auth/session",
            None,
            &SessionRequest {
                account_id: a.id.to_hex(),
                device_id: a.device.id().to_hex(),
                challenge: B64(vec![0; 31]),
                signature: B64(vec![0; 64]),
            },
        )
        .await;
    r.expect_error(400, "bad_request");

    // A revision of another collection, posted here: 400.
    let other = new_collection();
    let (_, foreign) = revision(&other, &a.device, 0, GENESIS_PREV, blob_id);
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, foreign).await.expect_error(400, "bad_request");
    // Not a revision at all, or one with inconsistent links.
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, pack.clone()).await.expect_error(400, "bad_request");
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, rev0[..rev0.len() - 1].to_vec())
        .await
        .expect_error(400, "bad_request");
    // Cleartext header: envelope (7) | collection (16) | seq (8, big endian) | epoch (4) | prev (32).
    const SEQ_AT: usize = 7 + 16;
    const PREV_AT: usize = SEQ_AT + 8 + 4;
    let mut seq1_genesis = rev0.clone();
    seq1_genesis[SEQ_AT + 7] = 1;
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, seq1_genesis).await.expect_error(400, "bad_request");
    let mut seq0_with_parent = rev0.clone();
    seq0_with_parent[PREV_AT] = 1;
    srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, seq0_with_parent).await.expect_error(400, "bad_request");
    // None of it moved anything.
    srv.get(&format!("/v1/collections/{c}/head"), Some(t)).await.expect_error(404, "not_found");
    let usage: Usage = srv.get("/v1/usage", Some(t)).await.expect(200).json();
    assert_eq!(usage.used_bytes, 0);
    // And the honest revision still goes in.
    let head: HeadRecord = srv.post_bytes(&format!("/v1/collections/{c}/revisions"), t, rev0).await.expect(201).json();
    assert_eq!(head.id.0, rev0_id);
}

// ---------------------------------------------------------------------------
// G4: rate limits, and no lock-out.
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_rate_limited(r: &Resp, max_wait: u64) {
    r.expect_error(429, "rate_limited");
    let after: u64 = r.header("retry-after").expect("429 without Retry-After").parse().unwrap();
    assert!((1..=max_wait).contains(&after), "Retry-After: {after}");
}

async fn g4_requests_beyond_the_budget_get_429_with_retry_after() {
    const BURST: u32 = 4;
    let srv = start(Limits { requests_per_second: 1, request_burst: BURST, ..Limits::default() }).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = srv.get("/v1/usage", None).await;
        if r.status == 429 {
            assert_rate_limited(&r, 2);
        } else {
            r.expect_error(401, "unauthorized");
        }
        statuses.push(r.status);
    }
    let allowed = statuses.iter().filter(|s| **s != 429).count();
    let budget = usize::try_from(BURST).unwrap() + usize::try_from(started.elapsed().as_secs()).unwrap() + 1;
    assert!(statuses[0] == 401 && allowed <= budget && statuses.contains(&429), "{statuses:?}");
    // Health checks are not rate limited.
    srv.get("/healthz", None).await.expect(200);
    // The budget is per address: another client address is still served.
    let other = client_from(Some(IpAddr::from([127, 0, 0, 2])));
    send(srv.req_with(&other, Method::GET, "/v1/usage", None)).await.expect_error(401, "unauthorized");
}

async fn g4_failed_authentication_does_not_lock_out_the_device() {
    // 6 authentication attempts per minute per address; the legitimate
    // device signs in from 127.0.0.1, the attacker from 127.0.0.2.
    let srv = start(Limits { auth_per_minute: 6, ..Limits::default() }).await;
    let victim = create_account(&srv).await; // 3 attempts from 127.0.0.1
    let attacker = client_from(Some(IpAddr::from([127, 0, 0, 2])));
    let impostor = DeviceSecret::generate(&mut os_rng());

    // Wrong signatures on the victim's own device id: 401, each consuming the challenge.
    for _ in 0..3 {
        let c: Challenge = challenge_with(&srv, &attacker, victim.id, victim.device.id()).await.expect(200).json();
        let c: [u8; 32] = c.challenge.array().unwrap();
        let sig = impostor.sign_challenge(victim.id, &c);
        session_with(&srv, &attacker, victim.id, victim.device.id(), c, sig).await.expect_error(401, "unauthorized");
    }
    // The attacker's address is out of authentication budget...
    let r = challenge_with(&srv, &attacker, victim.id, victim.device.id()).await;
    assert_rate_limited(&r, 60);
    let r = session_with(&srv, &attacker, victim.id, victim.device.id(), [1; 32], [1; 64]).await;
    assert_rate_limited(&r, 60);
    // ...which is stricter than, and separate from, the general budget.
    send(srv.req_with(&attacker, Method::GET, "/v1/usage", None)).await.expect_error(401, "unauthorized");

    // The victim's session still works, and the device can open new ones.
    srv.get("/v1/usage", Some(&victim.token)).await.expect(200);
    let token = sign_in(&srv, victim.id, &victim.device).await; // attempts 4 and 5
    srv.get("/v1/usage", Some(&token)).await.expect(200);
    // A challenge is single use: replaying a signed one fails even for the device.
    let c: Challenge = challenge_with(&srv, &srv.http, victim.id, victim.device.id()).await.expect(200).json(); // 6
    let c: [u8; 32] = c.challenge.array().unwrap();
    let sig = victim.device.sign_challenge(victim.id, &c);
    // The victim's own address is now out of budget too: limits are per address, nothing more.
    let r = session_with(&srv, &srv.http, victim.id, victim.device.id(), c, sig).await;
    assert_rate_limited(&r, 60);
}

// ---------------------------------------------------------------------------
// G5: quotas.
// ---------------------------------------------------------------------------

fn blob_files(srv: &TestServer, account: AccountId) -> usize {
    match std::fs::read_dir(srv.data_dir.join("blobs").join(account.to_hex())) {
        Ok(dir) => dir.count(),
        Err(_) => 0,
    }
}

async fn g5_uploads_beyond_quota_fail_cleanly() {
    const QUOTA: u64 = 40_000;
    let srv = start(Limits { default_quota_bytes: QUOTA, ..Limits::default() }).await;
    let a = create_account(&srv).await;
    let coll = new_collection();
    let mut stored = Vec::new();
    let mut used = 0u64;
    let refused = loop {
        let (id, bytes) = random_pack(&coll.keys, 9_000);
        let size = u64::try_from(bytes.len()).unwrap();
        let r = srv.put_bytes(&format!("/v1/packs/{}", id.to_hex()), &a.token, bytes.clone()).await;
        if used + size <= QUOTA {
            r.expect(201);
            used += size;
            stored.push((id, bytes));
        } else {
            r.expect_error(507, "quota_exceeded");
            break (id, bytes);
        }
    };
    assert!(stored.len() >= 2);
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!((usage.used_bytes, usage.quota_bytes), (used, QUOTA));

    // The refused pack left nothing behind: not listed, not served, not on disk.
    srv.get(&format!("/v1/packs/{}", refused.0.to_hex()), Some(&a.token)).await.expect_error(404, "not_found");
    let packs: Packs = srv.get(&format!("/v1/collections/{}/packs", coll.id.to_hex()), Some(&a.token)).await.expect(200).json();
    assert_eq!(packs.packs.len(), stored.len());
    assert_eq!(blob_files(&srv, a.id), stored.len());
    // Trying again changes nothing.
    let r = srv.put_bytes(&format!("/v1/packs/{}", refused.0.to_hex()), &a.token, refused.1).await;
    r.expect_error(507, "quota_exceeded");
    assert_eq!(blob_files(&srv, a.id), stored.len());

    // An idempotent retry of a stored pack still answers 200 at the quota.
    let (id, bytes) = &stored[0];
    srv.put_bytes(&format!("/v1/packs/{}", id.to_hex()), &a.token, bytes.clone()).await.expect(200);

    // Revisions and collection key wraps count too: fill the rest with wraps,
    // then a revision no longer fits and the head does not move.
    let mut epoch = 0u32;
    loop {
        let ctx = CollectionWrapContext { account: a.id, collection: coll.id, collection_epoch: epoch, account_epoch: 0 };
        let wrap = wrap_collection_key(&coll.key, &a.root, &ctx, &mut os_rng()).unwrap();
        let r = srv
            .put_json(
                &format!("/v1/collections/{}/keys/{epoch}", coll.id.to_hex()),
                Some(&a.token),
                &PutCollectionKey { wrap: B64(wrap) },
            )
            .await;
        if r.status == 507 {
            r.expect_error(507, "quota_exceeded");
            break;
        }
        r.expect(201);
        epoch += 1;
        assert!(epoch < 1000, "collection key wraps are not counted against the quota");
    }
    let (_, rev0) = revision(&coll, &a.device, 0, GENESIS_PREV, BlobId([0; 32]));
    srv.post_bytes(&format!("/v1/collections/{}/revisions", coll.id.to_hex()), &a.token, rev0)
        .await
        .expect_error(507, "quota_exceeded");
    srv.get(&format!("/v1/collections/{}/head", coll.id.to_hex()), Some(&a.token)).await.expect_error(404, "not_found");
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert!(usage.used_bytes <= QUOTA);
}

async fn g5_parallel_uploads_cannot_together_exceed_the_quota() {
    const QUOTA: u64 = 100_000;
    const UPLOADS: usize = 24;
    let srv = std::sync::Arc::new(start(Limits { default_quota_bytes: QUOTA, ..Limits::default() }).await);
    let a = create_account(&srv).await;
    let coll = new_collection();
    let packs: Vec<(ObjectId, Vec<u8>)> = (0..UPLOADS).map(|_| random_pack(&coll.keys, 9_000)).collect();
    let total: u64 = packs.iter().map(|(_, b)| u64::try_from(b.len()).unwrap()).sum();
    assert!(total > 2 * QUOTA);
    let tasks: Vec<_> = packs
        .into_iter()
        .map(|(id, bytes)| {
            let srv = srv.clone();
            let token = a.token.clone();
            tokio::spawn(async move {
                let size = u64::try_from(bytes.len()).unwrap();
                let r = srv.put_bytes(&format!("/v1/packs/{}", id.to_hex()), &token, bytes).await;
                (r.status, if r.status == 201 { String::new() } else { r.code() }, size)
            })
        })
        .collect();
    let mut accepted = 0u64;
    let mut accepted_count = 0usize;
    for task in tasks {
        let (status, code, size) = task.await.unwrap();
        match status {
            201 => {
                accepted += size;
                accepted_count += 1;
            }
            507 => assert_eq!(code, "quota_exceeded"),
            other => panic!("unexpected status {other} ({code})"),
        }
    }
    assert!(accepted_count > 0 && accepted_count < UPLOADS);
    assert!(accepted <= QUOTA, "accepted {accepted} bytes over a quota of {QUOTA}");
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, accepted);
    let listed: Packs = srv.get(&format!("/v1/collections/{}/packs", coll.id.to_hex()), Some(&a.token)).await.expect(200).json();
    assert_eq!(listed.packs.len(), accepted_count);
    assert_eq!(listed.packs.iter().map(|p| p.size).sum::<u64>(), accepted);
}

// ---------------------------------------------------------------------------
// G3: slow clients.
// ---------------------------------------------------------------------------

/// How a slow client's connection ended.
#[derive(Debug)]
enum Ended {
    /// The server closed (or reset) the connection without answering.
    Closed(Duration),
    /// The server answered with this status.
    Answered(u16, Duration),
    /// Still connected when the test stopped waiting.
    StillOpen,
}

/// How long a slow client waits for the server to cut it off.
const SLOW_PATIENCE: Duration = Duration::from_secs(5);

/// Connects, sends `prefix`, then dribbles `drip` one byte every 200 ms
/// (cycling) until the server answers or closes. Bounded by `SLOW_PATIENCE`.
async fn slow_client(addr: SocketAddr, prefix: Vec<u8>, drip: Vec<u8>) -> Ended {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let dribbler = tokio::spawn(async move {
        writer.write_all(&prefix).await?;
        for byte in drip.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.write_all(&[*byte]).await?;
        }
        // Nothing (more) to send: keep the connection open, never half-close it.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(writer)
    });
    let outcome = timeout(SLOW_PATIENCE, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if find(&buf, b"\r\n\r\n").is_some() {
                break;
            }
        }
        buf
    })
    .await;
    dribbler.abort();
    let elapsed = started.elapsed();
    let Ok(buf) = outcome else { return Ended::StillOpen };
    match String::from_utf8_lossy(&buf).split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(status) => Ended::Answered(status, elapsed),
        None => Ended::Closed(elapsed),
    }
}

async fn g3_slow_clients_are_cut_off_while_normal_clients_are_served() {
    let srv = start(Limits { header_timeout_secs: 1, request_timeout_secs: 2, ..Limits::default() }).await;
    let a = create_account(&srv).await;
    let addr = srv.addr;
    let pack_put = format!(
        "PUT /v1/packs/{} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 100000\r\n\r\n",
        random_hex_id(),
        a.token
    );
    // An idle connection; request headers that never end; an HTTP/2 preface
    // sent a byte at a time; a body that trickles in.
    let idle = tokio::spawn(slow_client(addr, Vec::new(), Vec::new()));
    let headers =
        tokio::spawn(slow_client(addr, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec(), b"X-Slow: y\r\n".to_vec()));
    let preface = tokio::spawn(slow_client(addr, Vec::new(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()));
    let body = tokio::spawn(slow_client(addr, pack_put.into_bytes(), b"slow".to_vec()));

    // Meanwhile, normal clients are served, while the slow ones still hold
    // their connections (they are cut off no sooner than the 1 s timeout).
    srv.get("/healthz", None).await.expect(200);
    srv.get("/v1/usage", Some(&a.token)).await.expect(200);
    assert!(!idle.is_finished() && !headers.is_finished() && !preface.is_finished() && !body.is_finished());

    let outcomes = [
        ("idle", idle.await.unwrap()),
        ("slow headers", headers.await.unwrap()),
        ("slow HTTP/2 preface", preface.await.unwrap()),
        ("slow body", body.await.unwrap()),
    ];
    let [idle, headers, preface, body] = outcomes;
    for (what, outcome) in [idle, headers, preface] {
        match outcome {
            Ended::Closed(after) => {
                assert!(after >= Duration::from_millis(900) && after <= Duration::from_secs(4), "{what}: closed after {after:?}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    match body.1 {
        Ended::Answered(408, after) => assert!(after <= Duration::from_secs(5), "slow body answered after {after:?}"),
        other => panic!("slow body: {other:?}"),
    }
    // And the server is still fine.
    srv.get("/v1/usage", Some(&a.token)).await.expect(200);
}

// ---------------------------------------------------------------------------
// Recovery (E2: the operator cannot enroll a device of its own).
// ---------------------------------------------------------------------------

async fn e2_recovery_enrollment_needs_the_recovery_keys_signature() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let locator = ObjectId(a.recovery.locator()).to_hex();
    let info_path = format!("/v1/recovery/{locator}");
    let enroll_path = format!("/v1/recovery/{locator}/devices");

    // Unknown and malformed locators.
    srv.get(&format!("/v1/recovery/{}", random_hex_id()), None).await.expect_error(404, "not_found");
    srv.get("/v1/recovery/nothex", None).await.expect_error(400, "bad_request");

    // What a recovering device learns from the locator alone: enough to
    // verify the chain and open the root key it commits to.
    let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
    assert_eq!(info.account_id, a.id.to_hex());
    assert_eq!(info.epoch, 0);
    assert_eq!(info.recovery_wrap.0, a.recovery_wrap);
    let chain = DeviceChain::verify(a.id, info.chain.iter().map(|b| b.0.as_slice())).unwrap();
    let root = a.recovery.unwrap(&info.recovery_wrap.0, a.id, info.epoch).unwrap();
    chain.check_root_key(info.epoch, &root).unwrap();

    let mut rng = os_rng();
    let new_device = DeviceSecret::generate(&mut rng);
    let enroll = |entry: Vec<u8>| EnrollDevice {
        chain_entry: B64(entry),
        device_wrap: B64(wrap_to_device(&root, new_device.public(), a.id, 0, &mut os_rng()).unwrap()),
    };
    let add = add_device_change(&new_device, "recovered");

    // Wrong signers: another recovery key, the new device itself posing as
    // the recovery key: 401. An entry signed by a device, or for another
    // account: 400. Nothing is stored.
    let other_recovery = RecoveryKey::generate(&mut rng);
    for by in [other_recovery.device(), DeviceSecret::generate(&mut rng)] {
        let entry = next_entry(&chain, Signer::RecoveryKey, add.clone(), &by);
        srv.post_json(&enroll_path, None, &enroll(entry)).await.expect_error(401, "unauthorized");
    }
    let by_device = next_entry(&chain, Signer::Device(a.device.id()), add.clone(), &a.device);
    srv.post_json(&enroll_path, None, &enroll(by_device)).await.expect_error(400, "bad_request");
    let other = create_account(&srv).await;
    let (_, other_chain) = fetch_chain(&srv, &other.token, other.id).await;
    let foreign = next_entry(&other_chain, Signer::RecoveryKey, add.clone(), &a.recovery.device());
    srv.post_json(&enroll_path, None, &enroll(foreign)).await.expect_error(400, "bad_request");
    // A revocation signed by the recovery key is not for this route.
    let revoke = ChainChange::RevokeDevice { device: a.device.id(), root_commitment: [0; 32], cutoffs: Default::default() };
    let revoke = next_entry(&chain, Signer::RecoveryKey, revoke, &a.recovery.device());
    srv.post_json(&enroll_path, None, &enroll(revoke)).await.expect_error(400, "bad_request");
    assert_eq!(fetch_chain(&srv, &a.token, a.id).await.0.len(), 1);
    let c: Challenge = challenge_with(&srv, &srv.http, a.id, new_device.id()).await.expect(200).json();
    let c: [u8; 32] = c.challenge.array().unwrap();
    let sig = new_device.sign_challenge(a.id, &c);
    session_with(&srv, &srv.http, a.id, new_device.id(), c, sig).await.expect_error(401, "unauthorized");

    // Signed by the recovery key: enrolled.
    let entry = next_entry(&chain, Signer::RecoveryKey, add.clone(), &a.recovery.device());
    srv.post_json(&enroll_path, None, &enroll(entry.clone())).await.expect(201);
    // Replaying it: the chain has moved on.
    srv.post_json(&enroll_path, None, &enroll(entry)).await.expect_error(409, "chain_moved");
    // Enrolling the same device again, at the right place: it is enrolled already.
    let (_, chain) = fetch_chain(&srv, &a.token, a.id).await;
    assert_eq!(chain.head().seq, 1);
    let again = next_entry(&chain, Signer::RecoveryKey, add.clone(), &a.recovery.device());
    srv.post_json(&enroll_path, None, &enroll(again)).await.expect_error(409, "conflict");
    // The served chain now names the device, added by the recovery key.
    let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
    let served = DeviceChain::verify(a.id, info.chain.iter().map(|b| b.0.as_slice())).unwrap();
    assert_eq!(served.device(&new_device.id()).unwrap().added_by, Signer::RecoveryKey);

    // The new device signs in and finds its wrap of the root key, and only its own.
    let token = sign_in(&srv, a.id, &new_device).await;
    let keys: AccountKeys = srv.get("/v1/keys", Some(&token)).await.expect(200).json();
    assert_eq!(keys.device_wraps.len(), 1);
    assert_eq!(keys.device_wraps[0].id, new_device.id().to_hex());
    let opened = unwrap_on_device(&keys.device_wraps[0].wrap.0, &new_device, a.id, 0).unwrap();
    assert_eq!(opened.expose_secret(), a.root.expose_secret());
    // The first device is unaffected.
    srv.get("/v1/usage", Some(&a.token)).await.expect(200);
}

// ---------------------------------------------------------------------------
// The device chain (A2, A7, D1).
// ---------------------------------------------------------------------------

async fn a2_an_enrolled_device_appends_to_the_chain() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (entries, chain) = fetch_chain(&srv, &a.token, a.id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(chain.active_devices().count(), 1);

    let (b, b_token) = add_device(&srv, &a).await;
    let (entries, chain) = fetch_chain(&srv, &b_token, a.id).await;
    assert_eq!(entries.len(), 2);
    let added = chain.device(&b.id()).unwrap();
    assert_eq!((added.added_seq, added.added_by), (1, Signer::Device(a.device.id())));
    // B finds its own wrap of the root key (and only its own); the entry
    // and the wrap are charged to the quota.
    let keys: AccountKeys = srv.get("/v1/keys", Some(&b_token)).await.expect(200).json();
    assert_eq!(keys.device_wraps.len(), 1);
    assert_eq!(keys.device_wraps[0].id, b.id().to_hex());
    let opened = unwrap_on_device(&keys.device_wraps[0].wrap.0, &b, a.id, 0).unwrap();
    chain.check_root_key(0, &opened).unwrap();
    let usage: Usage = srv.get("/v1/usage", Some(&b_token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, u64::try_from(entries[1].len() + keys.device_wraps[0].wrap.0.len()).unwrap());
    // B, now enrolled, appends in turn.
    let c = DeviceSecret::generate(&mut os_rng());
    let b_account = Account {
        id: a.id,
        device: b,
        root: opened,
        recovery: RecoveryKey::generate(&mut os_rng()),
        recovery_wrap: vec![],
        token: b_token,
    };
    srv.post_json("/v1/chain", Some(&b_account.token), &add_device_body(&b_account, &chain, &a.root, &c)).await.expect(201);
    let (_, chain) = fetch_chain(&srv, &a.token, a.id).await;
    assert_eq!(chain.active_devices().count(), 3);

    // The wraps that go with an addition: exactly the new device's, of the current epoch.
    let d = DeviceSecret::generate(&mut os_rng());
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.device_wraps[0].epoch = 1;
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.device_wraps[0].id = a.device.id().to_hex();
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.device_wraps.push(body.device_wraps[0].clone());
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.device_wraps.clear();
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.device_wraps[0].wrap = B64(vec![1; 4097]);
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let mut body = add_device_body(&a, &chain, &a.root, &d);
    body.recovery_wrap = Some(B64(vec![1; 100]));
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    // Adding a device that is in the chain already.
    let again = add_device_body(&a, &chain, &a.root, &c);
    srv.post_json("/v1/chain", Some(&a.token), &again).await.expect_error(409, "conflict");
    assert_eq!(fetch_chain(&srv, &a.token, a.id).await.0.len(), 3);
}

async fn d1_entries_by_unknown_or_revoked_signers_or_off_the_head_are_refused_and_store_nothing() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (b, b_token) = add_device(&srv, &a).await;
    let (entries, chain) = fetch_chain(&srv, &a.token, a.id).await;
    let used: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    let stranger = DeviceSecret::generate(&mut os_rng());
    let new = DeviceSecret::generate(&mut os_rng());

    let mut refused: Vec<(AppendChainEntry, u16, &str)> = Vec::new();
    // Signed by a key the chain does not know, naming itself...
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    body.entry = B64(next_entry(&chain, Signer::Device(stranger.id()), add_device_change(&new, "x"), &stranger));
    refused.push((body, 400, "bad_request"));
    // ...or naming the signed-in device (its signature does not verify).
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    let mut forged = next_entry(&chain, Signer::Device(stranger.id()), add_device_change(&new, "x"), &stranger);
    let at = forged.windows(16).position(|w| w == stranger.id().as_bytes()).unwrap();
    forged[at..at + 16].copy_from_slice(a.device.id().as_bytes());
    body.entry = B64(forged);
    refused.push((body, 400, "bad_request"));
    // Signed by another enrolled device than the signed-in one.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    body.entry = B64(next_entry(&chain, Signer::Device(b.id()), add_device_change(&new, "x"), &b));
    refused.push((body, 400, "bad_request"));
    // Signed by the recovery key: only through the recovery route.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    body.entry = B64(next_entry(&chain, Signer::RecoveryKey, add_device_change(&new, "x"), &a.recovery.device()));
    refused.push((body, 400, "bad_request"));
    // With a wrong prev at the right seq.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    let entry = ChainEntry {
        account: a.id,
        seq: 2,
        prev: ObjectId([7; 32]),
        time_ms: now_ms(),
        account_epoch: 0,
        signer: Signer::Device(a.device.id()),
        change: add_device_change(&new, "x"),
    };
    body.entry = B64(entry.seal(&a.device).unwrap());
    refused.push((body, 400, "bad_request"));
    // With the wrong epoch.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    let entry = ChainEntry { prev: chain.head().id, account_epoch: 1, ..entry };
    body.entry = B64(entry.seal(&a.device).unwrap());
    refused.push((body, 400, "bad_request"));
    // Of another account.
    let other = create_account(&srv).await;
    let (_, other_chain) = fetch_chain(&srv, &other.token, other.id).await;
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    body.entry = B64(next_entry(&other_chain, Signer::Device(a.device.id()), add_device_change(&new, "x"), &a.device));
    refused.push((body, 400, "bad_request"));
    // Stale: the seq of an entry that exists.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    let stale = ChainEntry { seq: 1, prev: ObjectId::of(&entries[0]), account_epoch: 0, ..entry };
    body.entry = B64(stale.seal(&a.device).unwrap());
    refused.push((body, 409, "chain_moved"));
    // Not an entry at all.
    let mut body = add_device_body(&a, &chain, &a.root, &new);
    body.entry = B64(b"not a chain entry".to_vec());
    refused.push((body, 400, "bad_request"));

    for (i, (body, status, code)) in refused.iter().enumerate() {
        let r = srv.post_json("/v1/chain", Some(&a.token), body).await;
        assert_eq!((r.status, r.code()), (*status, code.to_string()), "case {i}");
    }
    // B is revoked; an entry it signed is refused: its session is gone, and
    // through A's session it is not A's.
    let (_, revoke) = revoke_body(&a, &chain, b.id(), &[&a.device]);
    srv.post_json("/v1/chain", Some(&a.token), &revoke).await.expect(201);
    let (entries, chain) = fetch_chain(&srv, &a.token, a.id).await;
    let used: Usage = {
        let _ = used;
        srv.get("/v1/usage", Some(&a.token)).await.expect(200).json()
    };
    let by_revoked = next_entry(&chain, Signer::Device(b.id()), add_device_change(&new, "x"), &b);
    let body = AppendChainEntry { entry: B64(by_revoked), ..add_device_body(&a, &chain, &a.root, &new) };
    srv.post_json("/v1/chain", Some(&b_token), &body).await.expect_error(401, "unauthorized");
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");

    // Nothing of it was stored: the chain, the usage and the devices are as they were.
    let (after, _) = fetch_chain(&srv, &a.token, a.id).await;
    assert_eq!(after, entries);
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(usage.used_bytes, used.used_bytes);
    let c: Challenge = challenge_with(&srv, &srv.http, a.id, new.id()).await.expect(200).json();
    let c: [u8; 32] = c.challenge.array().unwrap();
    session_with(&srv, &srv.http, a.id, new.id(), c, new.sign_challenge(a.id, &c)).await.expect_error(401, "unauthorized");
}

async fn a7_revocation_ends_the_revoked_devices_sessions_at_once() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (b, b_token) = add_device(&srv, &a).await;
    let (c, c_token) = add_device(&srv, &a).await;
    let b_second = sign_in(&srv, a.id, &b).await;
    srv.put_json("/v1/pairings/B0B0", Some(&b_token), &()).await.expect(201);
    srv.get("/v1/usage", Some(&b_token)).await.expect(200);

    let (_, chain) = fetch_chain(&srv, &a.token, a.id).await;
    let (new_root, body) = revoke_body(&a, &chain, b.id(), &[&a.device, &c]);
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect(201);

    // Every session of B ends with the request that revoked it...
    for token in [&b_token, &b_second] {
        srv.get("/v1/usage", Some(token)).await.expect_error(401, "unauthorized");
        srv.get("/v1/keys", Some(token)).await.expect_error(401, "unauthorized");
    }
    // ...it cannot sign in again...
    let ch: Challenge = challenge_with(&srv, &srv.http, a.id, b.id()).await.expect(200).json();
    let ch: [u8; 32] = ch.challenge.array().unwrap();
    session_with(&srv, &srv.http, a.id, b.id(), ch, b.sign_challenge(a.id, &ch)).await.expect_error(401, "unauthorized");
    // ...and its pairing slot is closed (another account may take the name).
    let other = create_account(&srv).await;
    srv.put_json("/v1/pairings/B0B0", Some(&other.token), &()).await.expect(201);

    // The others carry on, in epoch 1.
    let (_, chain) = fetch_chain(&srv, &c_token, a.id).await;
    assert_eq!(chain.epoch(), 1);
    assert!(chain.device(&b.id()).unwrap().revoked.is_some());
    let keys: AccountKeys = srv.get("/v1/keys", Some(&c_token)).await.expect(200).json();
    assert_eq!(keys.account_epoch, 1);
    assert_eq!(keys.device_wraps.iter().map(|w| w.epoch).collect::<Vec<_>>(), vec![0, 1]);
    let root1 = unwrap_on_device(&keys.device_wraps[1].wrap.0, &c, a.id, 1).unwrap();
    chain.check_root_key(1, &root1).unwrap();
    assert_eq!(keys.previous_root_wraps.len(), 1);
    assert_eq!((keys.previous_root_wraps[0].id.as_str(), keys.previous_root_wraps[0].epoch), ("", 1));
    let root0 = unwrap_previous_root(&keys.previous_root_wraps[0].wrap.0, &root1, a.id, 1).unwrap();
    assert_eq!(root0.expose_secret(), a.root.expose_secret());
    assert_eq!(root1.expose_secret(), new_root.expose_secret());
    // Recovery now serves epoch 1's wrap, to the recovery key's device keys.
    let info: RecoveryInfo =
        srv.get(&format!("/v1/recovery/{}", ObjectId(a.recovery.locator()).to_hex()), None).await.expect(200).json();
    assert_eq!((info.epoch, info.chain.len()), (1, 4));
    let recovered = unwrap_on_device(&info.recovery_wrap.0, &a.recovery.device(), a.id, 1).unwrap();
    assert_eq!(recovered.expose_secret(), new_root.expose_secret());
    srv.get("/v1/usage", Some(&a.token)).await.expect(200);
}

async fn a7_a_new_epoch_without_a_wrap_for_every_remaining_device_is_refused() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (b, b_token) = add_device(&srv, &a).await;
    let (c, _) = add_device(&srv, &a).await;
    let (entries, chain) = fetch_chain(&srv, &a.token, a.id).await;

    let mut cases: Vec<AppendChainEntry> = Vec::new();
    // B is left without the new key.
    cases.push(revoke_body(&a, &chain, c.id(), &[&a.device]).1);
    // The revoked device is given it.
    cases.push(revoke_body(&a, &chain, c.id(), &[&a.device, &b, &c]).1);
    // A wrap twice.
    cases.push(revoke_body(&a, &chain, c.id(), &[&a.device, &b, &b]).1);
    // A wrap of the wrong epoch.
    let mut body = revoke_body(&a, &chain, c.id(), &[&a.device, &b]).1;
    body.device_wraps[1].epoch = 0;
    cases.push(body);
    // No recovery wrap; no previous root wrap; a recovery locator with a revocation.
    let mut body = revoke_body(&a, &chain, c.id(), &[&a.device, &b]).1;
    body.recovery_wrap = None;
    cases.push(body);
    let mut body = revoke_body(&a, &chain, c.id(), &[&a.device, &b]).1;
    body.previous_root_wrap = None;
    cases.push(body);
    let mut body = revoke_body(&a, &chain, c.id(), &[&a.device, &b]).1;
    body.recovery_locator = Some(B64(vec![3; 32]));
    cases.push(body);
    // Two wraps for one collection epoch.
    let mut body = revoke_body(&a, &chain, c.id(), &[&a.device, &b]).1;
    let coll = WrapRecord { id: new_collection().id.to_hex(), epoch: 1, wrap: B64(vec![5; 107]) };
    body.collection_wraps = vec![coll.clone(), coll];
    cases.push(body);
    // A device revoking itself.
    let change = ChainChange::RevokeDevice { device: a.device.id(), root_commitment: [1; 32], cutoffs: Default::default() };
    let mut body = revoke_body(&a, &chain, c.id(), &[&b, &c]).1;
    body.entry = B64(next_entry(&chain, Signer::Device(a.device.id()), change, &a.device));
    cases.push(body);
    for (i, body) in cases.iter().enumerate() {
        let r = srv.post_json("/v1/chain", Some(&a.token), body).await;
        assert_eq!((r.status, r.code()), (400, "bad_request".to_string()), "case {i}");
    }
    // Nothing changed: C still signs in, the epoch is 0, the chain as it was.
    sign_in(&srv, a.id, &c).await;
    let keys: AccountKeys = srv.get("/v1/keys", Some(&b_token)).await.expect(200).json();
    assert_eq!((keys.account_epoch, keys.device_wraps.len(), keys.previous_root_wraps.len()), (0, 1, 0));
    assert_eq!(fetch_chain(&srv, &a.token, a.id).await.0, entries);

    // A collection wrap for an epoch that is filed already: 409, nothing stored either.
    let coll = new_collection();
    srv.put_json(
        &format!("/v1/collections/{}/keys/0", coll.id.to_hex()),
        Some(&a.token),
        &PutCollectionKey { wrap: B64(collection_wrap(&a, &coll)) },
    )
    .await
    .expect(201);
    let (root1, mut body) = revoke_body(&a, &chain, c.id(), &[&a.device, &b]);
    let ctx = CollectionWrapContext { account: a.id, collection: coll.id, collection_epoch: 0, account_epoch: 1 };
    body.collection_wraps = vec![WrapRecord {
        id: coll.id.to_hex(),
        epoch: 0,
        wrap: B64(wrap_collection_key(&coll.key, &root1, &ctx, &mut os_rng()).unwrap()),
    }];
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(409, "conflict");
    assert_eq!(fetch_chain(&srv, &a.token, a.id).await.0, entries);
    // With the collection's next epoch instead: accepted, and filed.
    let next = CollectionKey::generate(&mut os_rng());
    let ctx = CollectionWrapContext { collection_epoch: 1, ..ctx };
    body.collection_wraps = vec![WrapRecord {
        id: coll.id.to_hex(),
        epoch: 1,
        wrap: B64(wrap_collection_key(&next, &root1, &ctx, &mut os_rng()).unwrap()),
    }];
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect(201);
    let keys: AccountKeys = srv.get("/v1/keys", Some(&b_token)).await.expect(200).json();
    assert_eq!(keys.collection_wraps.iter().map(|w| w.epoch).collect::<Vec<_>>(), vec![0, 1]);
}

async fn recovery_key_rotation_moves_the_locator() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (_, chain) = fetch_chain(&srv, &a.token, a.id).await;
    let mut rng = os_rng();
    let new_recovery = RecoveryKey::generate(&mut rng);
    let root1 = AccountRootKey::generate(&mut rng);
    let change = ChainChange::RotateRecovery {
        recovery: new_recovery.device().public().clone(),
        root_commitment: root_commitment(&root1, a.id, 1),
    };
    let body = AppendChainEntry {
        entry: B64(next_entry(&chain, Signer::Device(a.device.id()), change, &a.device)),
        device_wraps: vec![WrapRecord {
            id: a.device.id().to_hex(),
            epoch: 1,
            wrap: B64(wrap_to_device(&root1, a.device.public(), a.id, 1, &mut rng).unwrap()),
        }],
        recovery_wrap: Some(B64(new_recovery.wrap(&root1, a.id, 1, KdfParams::FLOOR, &mut rng).unwrap())),
        recovery_locator: None,
        previous_root_wrap: Some(B64(wrap_previous_root(&a.root, &root1, a.id, 1, &mut rng).unwrap())),
        collection_wraps: vec![],
    };
    // The new locator is required; another account's is refused.
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect_error(400, "bad_request");
    let other = create_account(&srv).await;
    let taken = AppendChainEntry { recovery_locator: Some(B64(other.recovery.locator().to_vec())), ..body };
    srv.post_json("/v1/chain", Some(&a.token), &taken).await.expect_error(409, "conflict");
    let body = AppendChainEntry { recovery_locator: Some(B64(new_recovery.locator().to_vec())), ..taken };
    srv.post_json("/v1/chain", Some(&a.token), &body).await.expect(201);

    srv.get(&format!("/v1/recovery/{}", ObjectId(a.recovery.locator()).to_hex()), None).await.expect_error(404, "not_found");
    let info: RecoveryInfo =
        srv.get(&format!("/v1/recovery/{}", ObjectId(new_recovery.locator()).to_hex()), None).await.expect(200).json();
    assert_eq!(info.epoch, 1);
    let root = new_recovery.unwrap(&info.recovery_wrap.0, a.id, 1).unwrap();
    assert_eq!(root.expose_secret(), root1.expose_secret());
    // The new recovery key enrolls a device; the old one no longer can.
    let chain = DeviceChain::verify(a.id, info.chain.iter().map(|b| b.0.as_slice())).unwrap();
    let new = DeviceSecret::generate(&mut rng);
    let path = format!("/v1/recovery/{}/devices", ObjectId(new_recovery.locator()).to_hex());
    let wrap = B64(wrap_to_device(&root1, new.public(), a.id, 1, &mut rng).unwrap());
    let old = next_entry(&chain, Signer::RecoveryKey, add_device_change(&new, "n"), &a.recovery.device());
    srv.post_json(&path, None, &EnrollDevice { chain_entry: B64(old), device_wrap: wrap.clone() })
        .await
        .expect_error(401, "unauthorized");
    let entry = next_entry(&chain, Signer::RecoveryKey, add_device_change(&new, "n"), &new_recovery.device());
    srv.post_json(&path, None, &EnrollDevice { chain_entry: B64(entry), device_wrap: wrap }).await.expect(201);
    sign_in(&srv, a.id, &new).await;
}

async fn concurrent_chain_appends_exactly_one_wins() {
    let srv = std::sync::Arc::new(start_default().await);
    let a = create_account(&srv).await;
    for round in 0..3 {
        let (entries, chain) = fetch_chain(&srv, &a.token, a.id).await;
        let bodies: Vec<AppendChainEntry> =
            (0..4).map(|_| add_device_body(&a, &chain, &a.root, &DeviceSecret::generate(&mut os_rng()))).collect();
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let (srv, token) = (srv.clone(), a.token.clone());
                tokio::spawn(async move {
                    let r = srv.post_json("/v1/chain", Some(&token), &body).await;
                    (r.status, if r.status == 201 { String::new() } else { r.code() })
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 201).count(), 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().all(|(s, c)| *s == 201 || (*s == 409 && c == "chain_moved")), "round {round}: {outcomes:?}");
        let (after, chain) = fetch_chain(&srv, &a.token, a.id).await;
        assert_eq!(after.len(), entries.len() + 1);
        assert_eq!(chain.active_devices().count(), entries.len() + 1);
    }
}

// ---------------------------------------------------------------------------
// The pairing relay.
// ---------------------------------------------------------------------------

async fn post_hello(srv: &TestServer, slot: &str, message: Vec<u8>) -> Resp {
    srv.post_json(&format!("/v1/pairings/{slot}/attempts"), None, &PairingHello { message: B64(message) }).await
}

async fn put_step(srv: &TestServer, slot: &str, attempt: &str, step: &str, token: Option<&str>, data: &[u8]) -> Resp {
    srv.put_json(&format!("/v1/pairings/{slot}/attempts/{attempt}/{step}"), token, &PairingStep { data: B64(data.to_vec()) })
        .await
}

async fn pairing_relay_carries_the_messages_in_order_for_the_slot_owner_only() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let (_, a2_token) = add_device(&srv, &a).await;
    let b = create_account(&srv).await;
    let slot = "7K3Q";

    // Malformed slots.
    for bad in ["7k3q", "7K3", "7K3QQ", "IL0U", "7K3%21", "%00%00%00%00"] {
        srv.put_json(&format!("/v1/pairings/{bad}"), Some(&a.token), &()).await.expect_error(400, "bad_request");
        post_hello(&srv, bad, vec![1; 33]).await.expect_error(400, "bad_request");
    }
    // Nothing there yet.
    post_hello(&srv, slot, vec![1; 33]).await.expect_error(404, "not_found");

    let opened: PairingSlot = srv.put_json(&format!("/v1/pairings/{slot}"), Some(&a.token), &()).await.expect(201).json();
    assert_eq!(opened.expires_in, 600);
    // The name is taken while the slot lives, for everyone.
    srv.put_json(&format!("/v1/pairings/{slot}"), Some(&b.token), &()).await.expect_error(409, "conflict");
    srv.put_json(&format!("/v1/pairings/{slot}"), Some(&a.token), &()).await.expect_error(409, "conflict");

    // The joiner's hello: exactly 33 bytes.
    post_hello(&srv, slot, vec![1; 32]).await.expect_error(400, "bad_request");
    post_hello(&srv, slot, vec![1; 34]).await.expect_error(400, "bad_request");
    let hello = random_bytes(33);
    let id: PairingAttemptId = post_hello(&srv, slot, hello.clone()).await.expect(201).json();
    assert!(is_hex(&id.attempt, 32));
    let attempt = id.attempt.as_str();

    // Only the owning device lists the attempts; to anyone else the slot
    // looks exactly like one that does not exist (G1).
    let list: PairingAttempts = srv.get(&format!("/v1/pairings/{slot}/attempts"), Some(&a.token)).await.expect(200).json();
    assert_eq!(list.attempts.len(), 1);
    assert_eq!((list.attempts[0].attempt.as_str(), &list.attempts[0].hello.0), (attempt, &hello));
    assert!(list.attempts[0].reply.is_none());
    for token in [&b.token, &a2_token] {
        let theirs = srv.get(&format!("/v1/pairings/{slot}/attempts"), Some(token)).await;
        let missing = srv.get("/v1/pairings/ZZZZ/attempts", Some(token)).await;
        theirs.expect_error(404, "not_found");
        assert_eq!(theirs.body, missing.body);
        srv.get(&format!("/v1/pairings/{slot}/attempts"), None).await.expect_error(401, "unauthorized");
    }

    // Steps in order: no joiner step before the reply, no welcome before the joiner step.
    put_step(&srv, slot, attempt, "joiner", None, b"joiner").await.expect_error(409, "conflict");
    put_step(&srv, slot, attempt, "welcome", Some(&a.token), b"welcome").await.expect_error(409, "conflict");
    put_step(&srv, slot, attempt, "bogus", None, b"x").await.expect_error(400, "bad_request");
    // The reply: only by the owning device.
    put_step(&srv, slot, attempt, "reply", None, b"reply").await.expect_error(401, "unauthorized");
    put_step(&srv, slot, attempt, "reply", Some(&b.token), b"reply").await.expect_error(404, "not_found");
    put_step(&srv, slot, attempt, "reply", Some(&a2_token), b"reply").await.expect_error(404, "not_found");
    put_step(&srv, slot, attempt, "reply", Some(&a.token), b"").await.expect_error(400, "bad_request");
    put_step(&srv, slot, attempt, "reply", Some(&a.token), &[0; 4097]).await.expect_error(400, "bad_request");
    put_step(&srv, slot, attempt, "reply", Some(&a.token), b"reply").await.expect(201);
    put_step(&srv, slot, attempt, "reply", Some(&a.token), b"reply").await.expect(200);
    put_step(&srv, slot, attempt, "reply", Some(&a.token), b"other").await.expect_error(409, "conflict");
    // The joiner reads it with the attempt id alone.
    let seen: PairingAttempt = srv.get(&format!("/v1/pairings/{slot}/attempts/{attempt}"), None).await.expect(200).json();
    assert_eq!((seen.reply.unwrap().0, seen.joiner), (b"reply".to_vec(), None));
    srv.get(&format!("/v1/pairings/{slot}/attempts/{}", "ab".repeat(16)), None).await.expect_error(404, "not_found");
    srv.get(&format!("/v1/pairings/{slot}/attempts/nothex"), None).await.expect_error(400, "bad_request");
    put_step(&srv, slot, attempt, "joiner", None, b"joiner").await.expect(201);
    put_step(&srv, slot, attempt, "joiner", None, b"joiner").await.expect(200);
    put_step(&srv, slot, attempt, "joiner", None, b"changed").await.expect_error(409, "conflict");
    // Ten attempts in all; the eleventh finds the slot closed.
    for _ in 1..10 {
        post_hello(&srv, slot, random_bytes(33)).await.expect(201);
    }
    post_hello(&srv, slot, random_bytes(33)).await.expect_error(404, "not_found");
    let list: PairingAttempts = srv.get(&format!("/v1/pairings/{slot}/attempts"), Some(&a.token)).await.expect(200).json();
    assert_eq!(list.attempts.len(), 10);
    assert_eq!(list.attempts[0].attempt, attempt);

    // The welcome: only by the owning device.
    put_step(&srv, slot, attempt, "welcome", None, b"welcome").await.expect_error(401, "unauthorized");
    put_step(&srv, slot, attempt, "welcome", Some(&b.token), b"welcome").await.expect_error(404, "not_found");
    put_step(&srv, slot, attempt, "welcome", Some(&a.token), b"welcome").await.expect(201);
    let seen: PairingAttempt = srv.get(&format!("/v1/pairings/{slot}/attempts/{attempt}"), None).await.expect(200).json();
    assert_eq!(
        (seen.hello.0, seen.reply.unwrap().0, seen.joiner.unwrap().0, seen.welcome.unwrap().0),
        (hello, b"reply".to_vec(), b"joiner".to_vec(), b"welcome".to_vec())
    );

    // Closing: only the owning device; then everything about it is gone.
    for token in [&b.token, &a2_token] {
        let r = send(srv.req(Method::DELETE, &format!("/v1/pairings/{slot}"), Some(token))).await;
        r.expect_error(404, "not_found");
    }
    send(srv.req(Method::DELETE, &format!("/v1/pairings/{slot}"), Some(&a.token))).await.expect(204);
    send(srv.req(Method::DELETE, &format!("/v1/pairings/{slot}"), Some(&a.token))).await.expect_error(404, "not_found");
    srv.get(&format!("/v1/pairings/{slot}/attempts/{attempt}"), None).await.expect_error(404, "not_found");
    srv.get(&format!("/v1/pairings/{slot}/attempts"), Some(&a.token)).await.expect_error(404, "not_found");
    post_hello(&srv, slot, random_bytes(33)).await.expect_error(404, "not_found");
    // And the name is free again.
    srv.put_json(&format!("/v1/pairings/{slot}"), Some(&b.token), &()).await.expect(201);

    // An account holds at most four slots at once.
    for s in ["AAA1", "AAA2", "AAA3", "AAA4"] {
        srv.put_json(&format!("/v1/pairings/{s}"), Some(&a.token), &()).await.expect(201);
    }
    srv.put_json("/v1/pairings/AAA5", Some(&a.token), &()).await.expect_error(409, "conflict");
}

async fn a_completed_pairing_takes_no_new_attempts() {
    // A code works once: after the welcome, the slot answers new hellos as
    // if it were closed, while the joiner can still read its welcome.
    let srv = start_default().await;
    let a = create_account(&srv).await;
    srv.put_json("/v1/pairings/7NCE", Some(&a.token), &()).await.expect(201);
    let id: PairingAttemptId = post_hello(&srv, "7NCE", random_bytes(33)).await.expect(201).json();
    put_step(&srv, "7NCE", &id.attempt, "reply", Some(&a.token), b"reply").await.expect(201);
    put_step(&srv, "7NCE", &id.attempt, "joiner", None, b"joiner").await.expect(201);
    post_hello(&srv, "7NCE", random_bytes(33)).await.expect(201);
    put_step(&srv, "7NCE", &id.attempt, "welcome", Some(&a.token), b"welcome").await.expect(201);
    post_hello(&srv, "7NCE", random_bytes(33)).await.expect_error(404, "not_found");
    let seen: PairingAttempt = srv.get(&format!("/v1/pairings/7NCE/attempts/{}", id.attempt), None).await.expect(200).json();
    assert_eq!(seen.welcome.unwrap().0, b"welcome");
}

async fn pairing_slots_expire() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let b = create_account(&srv).await;
    srv.put_json("/v1/pairings/EX01", Some(&a.token), &()).await.expect(201);
    let id: PairingAttemptId = post_hello(&srv, "EX01", random_bytes(33)).await.expect(201).json();
    put_step(&srv, "EX01", &id.attempt, "reply", Some(&a.token), b"reply").await.expect(201);

    // Ten minutes pass (the test moves the slot's expiry into the past).
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&srv.db_url).await.unwrap();
    sqlx::query("UPDATE pairing_slots SET expires_at = expires_at - 601").execute(&db).await.unwrap();

    // An expired slot answers as a missing one, on every route.
    post_hello(&srv, "EX01", random_bytes(33)).await.expect_error(404, "not_found");
    srv.get(&format!("/v1/pairings/EX01/attempts/{}", id.attempt), None).await.expect_error(404, "not_found");
    srv.get("/v1/pairings/EX01/attempts", Some(&a.token)).await.expect_error(404, "not_found");
    put_step(&srv, "EX01", &id.attempt, "joiner", None, b"joiner").await.expect_error(404, "not_found");
    send(srv.req(Method::DELETE, "/v1/pairings/EX01", Some(&a.token))).await.expect_error(404, "not_found");
    // Its name can be taken again; its attempts are gone with it.
    srv.put_json("/v1/pairings/EX01", Some(&b.token), &()).await.expect(201);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pairing_attempts").fetch_one(&db).await.unwrap();
    assert_eq!(left, 0);
    let list: PairingAttempts = srv.get("/v1/pairings/EX01/attempts", Some(&b.token)).await.expect(200).json();
    assert!(list.attempts.is_empty());
    db.close().await;
}

async fn g4_pairing_attempts_count_against_the_authentication_budget() {
    // 4 per minute: account creation and sign-in take 3.
    let srv = start(Limits { auth_per_minute: 4, ..Limits::default() }).await;
    let a = create_account(&srv).await;
    srv.put_json("/v1/pairings/G4G4", Some(&a.token), &()).await.expect(201);
    post_hello(&srv, "G4G4", random_bytes(33)).await.expect(201);
    assert_rate_limited(&post_hello(&srv, "G4G4", random_bytes(33)).await, 60);
    // The slot owner's routes are not in that budget.
    srv.get("/v1/pairings/G4G4/attempts", Some(&a.token)).await.expect(200);
}

async fn metrics_count_requests_by_route_and_answer_only_the_token() {
    let srv = start_with_metrics(Limits::default(), Some("a-long-random-metrics-token")).await;
    let a = create_account(&srv).await;
    let coll = new_collection();
    let (pack_id, pack, _) = pack_of(&coll.keys, b"counted");
    srv.put_bytes(&format!("/v1/packs/{}", pack_id.to_hex()), &a.token, pack).await.expect(201);
    srv.get("/v1/packs/00", Some(&a.token)).await.expect_error(400, "bad_request");
    for token in [None, Some("wrong")] {
        let mut req = srv.req(Method::GET, "/metrics", None);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(send(req).await.status, 401, "{token:?}");
    }
    let scraped = send(srv.req(Method::GET, "/metrics", None).bearer_auth("a-long-random-metrics-token")).await;
    scraped.expect(200);
    let text = String::from_utf8(scraped.body).unwrap();
    for line in [
        "keyhold_http_requests_total{method=\"PUT\",route=\"/v1/packs/{id}\",status=\"201\"} 1",
        "keyhold_http_requests_total{method=\"GET\",route=\"/v1/packs/{id}\",status=\"400\"} 1",
        "keyhold_accounts{region=\"default\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(text.contains("keyhold_http_request_duration_seconds_bucket{le="), "{text}");
    let stored: u64 =
        text.lines().find_map(|l| l.strip_prefix("keyhold_stored_bytes{region=\"default\"} ")).unwrap().parse().unwrap();
    let usage: Usage = srv.get("/v1/usage", Some(&a.token)).await.expect(200).json();
    assert_eq!(stored, usage.used_bytes);
    // Labels are route templates: no account, pack or token in sight.
    for secret in [a.id.to_hex(), pack_id.to_hex(), a.token.clone()] {
        assert!(!text.contains(&secret), "{secret} in the metrics");
    }
    // Without a configured token there is no /metrics at all.
    let plain = start_default().await;
    assert_eq!(send(plain.req(Method::GET, "/metrics", None).bearer_auth("anything")).await.status, 404);
}

async fn a_shutdown_lets_an_upload_in_flight_finish_and_file_its_pack() {
    let mut srv = start_default().await;
    let a = create_account(&srv).await;
    let coll = new_collection();
    let (pack_id, pack) = random_pack(&coll.keys, 3 << 20);
    // Half the body is sent; then the operator stops the server.
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "PUT /v1/packs/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        pack_id.to_hex(),
        a.token,
        pack.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = pack.split_at(pack.len() / 2);
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = srv.stop.take().unwrap().send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer taken …
    assert!(TcpStream::connect(srv.addr).await.is_err(), "a stopping server took a new connection");
    // … but the upload in flight completes and is filed.
    stream.write_all(rest).await.unwrap();
    let resp = timeout(PATIENCE, read_response(&mut stream)).await.expect("no answer in time").unwrap();
    assert_eq!(resp.status, 201, "{}", resp.head);
    drop(stream);
    let ended = timeout(PATIENCE, srv.task.take().unwrap()).await.expect("the server did not stop after the upload");
    ended.unwrap().unwrap();
    let stored = srv.data_dir.join("blobs").join(a.id.to_hex()).join(pack_id.to_hex());
    assert_eq!(std::fs::read(stored).unwrap(), pack);
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&srv.db_url).await.unwrap();
    let filed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM packs").fetch_one(&db).await.unwrap();
    assert_eq!(filed, 1, "the pack was stored but not filed");
    db.close().await;
}

on_both_engines!(
    a_shutdown_lets_an_upload_in_flight_finish_and_file_its_pack,
    metrics_count_requests_by_route_and_answer_only_the_token,
    healthz_answers,
    happy_path_keys_packs_ranges_revisions_and_head_compare_and_swap,
    g1_another_accounts_objects_look_exactly_like_missing_ones,
    g1_every_authenticated_route_refuses_missing_or_bad_tokens,
    g6_ids_with_traversal_separators_nul_or_bad_length_are_rejected,
    g2_announced_oversized_body_is_refused_before_it_is_sent,
    g2_chunked_body_beyond_the_limit_is_refused,
    b1_g8_digest_mismatch_non_packs_malformed_json_and_foreign_revisions_are_refused,
    g4_requests_beyond_the_budget_get_429_with_retry_after,
    g4_failed_authentication_does_not_lock_out_the_device,
    g5_uploads_beyond_quota_fail_cleanly,
    g5_parallel_uploads_cannot_together_exceed_the_quota,
    g3_slow_clients_are_cut_off_while_normal_clients_are_served,
    e2_recovery_enrollment_needs_the_recovery_keys_signature,
    a2_an_enrolled_device_appends_to_the_chain,
    d1_entries_by_unknown_or_revoked_signers_or_off_the_head_are_refused_and_store_nothing,
    a7_revocation_ends_the_revoked_devices_sessions_at_once,
    a7_a_new_epoch_without_a_wrap_for_every_remaining_device_is_refused,
    recovery_key_rotation_moves_the_locator,
    concurrent_chain_appends_exactly_one_wins,
    pairing_relay_carries_the_messages_in_order_for_the_slot_owner_only,
    a_completed_pairing_takes_no_new_attempts,
    pairing_slots_expire,
    g4_pairing_attempts_count_against_the_authentication_budget,
);
