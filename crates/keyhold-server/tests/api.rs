//! The server over real HTTP: each test starts `keyhold serve` in-process on
//! 127.0.0.1 port 0 with a fresh data folder and talks to it as a client (or
//! as a hostile client, byte by byte). Named after the SECURITY.md property
//! each test pins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::type_complexity, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyhold_core::pack::{PackBuilder, open_pack};
use keyhold_core::{
    AccountId, AccountRootKey, BlobId, BlobRef, CollectionId, CollectionKey, CollectionKeys, CollectionWrapContext, DeviceId,
    DeviceSecret, GENESIS_PREV, KdfParams, ObjectId, ObjectType, REVISION_LEN, RecoveryKey, Revision, certify_device,
    open_revision, os_rng, seal_revision, unwrap_collection_key, unwrap_on_device, wrap_collection_key, wrap_to_device,
};
use keyhold_proto::{
    AccountKeys, Bytes as B64, Challenge, ChallengeRequest, CreateAccount, EnrollDevice, ErrorBody, HeadRecord, Packs,
    PutCollectionKey, RecoveryInfo, Revisions, Session, SessionRequest, Usage,
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

struct TestServer {
    addr: SocketAddr,
    /// Holds `data/` (the server's data dir) and nothing else, so a test can
    /// check that nothing was written beside it.
    root: TempDir,
    data_dir: PathBuf,
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
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), data_dir: data_dir.clone(), tls: None, limits };
    // Bound before spawning: the listener accepts from here on, no waiting.
    let server = keyhold_server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    TestServer { addr, root, data_dir, http: client_from(None), stop: Some(stop), task: Some(task) }
}

async fn start_default() -> TestServer {
    start(Limits::default()).await
}

impl TestServer {
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

/// A fresh account and the body that creates it (all crypto done here, client side).
fn new_account() -> (AccountId, DeviceSecret, AccountRootKey, RecoveryKey, CreateAccount) {
    let mut rng = os_rng();
    let id = AccountId::generate(&mut rng);
    let device = DeviceSecret::generate(&mut rng);
    let root = AccountRootKey::generate(&mut rng);
    let recovery = RecoveryKey::generate(&mut rng);
    let auth = recovery.auth_public_key();
    let locator = recovery.locator();
    let body = CreateAccount {
        account_id: id.to_hex(),
        device_public_keys: B64(device.public().to_bytes()),
        device_certificate: B64(certify_device(&root, id, 0, device.public()).to_vec()),
        device_wrap: B64(wrap_to_device(&root, device.public(), id, 0, &mut rng).unwrap()),
        recovery_auth_key: B64(auth.to_vec()),
        recovery_locator: B64(locator.to_vec()),
        // The cheapest parameters a client accepts: the server never runs Argon2id.
        recovery_wrap: B64(recovery.wrap(&root, id, 0, KdfParams::FLOOR, &mut rng).unwrap()),
        signature: B64(device.sign_account_creation(id, &auth, &locator).to_vec()),
    };
    (id, device, root, recovery, body)
}

async fn create_account(srv: &TestServer) -> Account {
    let (id, device, root, recovery, body) = new_account();
    srv.post_json("/v1/accounts", None, &body).await.expect(201);
    let token = sign_in(srv, id, &device).await;
    Account { id, device, root, recovery, recovery_wrap: body.recovery_wrap.0, token }
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

struct Coll {
    id: CollectionId,
    key: CollectionKey,
    keys: CollectionKeys,
}

fn new_collection() -> Coll {
    let mut rng = os_rng();
    let id = CollectionId::generate(&mut rng);
    let key = CollectionKey::generate(&mut rng);
    let keys = CollectionKeys::derive(&key, id, 0);
    Coll { id, key, keys }
}

fn collection_wrap(account: &Account, coll: &Coll) -> Vec<u8> {
    let ctx = CollectionWrapContext { account: account.id, collection: coll.id, collection_epoch: 0, account_epoch: 0 };
    wrap_collection_key(&coll.key, &account.root, &ctx, &mut os_rng()).unwrap()
}

/// A real pack holding one chunk blob of `plaintext`.
fn pack_of(keys: &CollectionKeys, plaintext: &[u8]) -> (ObjectId, Vec<u8>, BlobId) {
    let blob = keys.seal_blob(ObjectType::Chunk, plaintext).unwrap();
    let mut builder = PackBuilder::new(keys, &mut os_rng());
    builder.push(&blob).unwrap();
    let (id, bytes, _) = builder.finish(keys).unwrap();
    (id, bytes, blob.id)
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

fn revision(coll: &Coll, author: &DeviceSecret, seq: u64, prev: ObjectId, root: BlobId) -> (ObjectId, Vec<u8>) {
    let time_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let revision =
        Revision { collection: coll.id, seq, prev, epoch: 0, root: BlobRef { epoch: 0, id: root }, author: author.id(), time_ms };
    seal_revision(&coll.keys, &revision, author, &mut os_rng()).unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers() {
    let srv = start_default().await;
    let r = srv.get("/healthz", None).await;
    r.expect(200);
    assert_eq!(r.body, b"ok");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_keys_packs_ranges_revisions_and_head_compare_and_swap() {
    let srv = start_default().await;
    let (id, device, root, recovery, body) = new_account();
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
    assert_eq!(keys.devices.len(), 1);
    assert_eq!(keys.devices[0].public_keys.0, acct.device.public().to_bytes());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    assert_eq!(keys.devices.len(), 1);
    assert_eq!(keys.devices[0].public_keys.0, b.device.public().to_bytes());
    assert!(keys.device_wraps.iter().all(|w| w.id == b.device.id().to_hex()));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_every_authenticated_route_refuses_missing_or_bad_tokens() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let coll = new_collection();
    let c = coll.id.to_hex();
    let (pack_id, pack, blob_id) = pack_of(&coll.keys, b"x");
    let (_, rev0) = revision(&coll, &a.device, 0, GENESIS_PREV, blob_id);
    let wrap = serde_json::to_vec(&PutCollectionKey { wrap: B64(collection_wrap(&a, &coll)) }).unwrap();
    let p = pack_id.to_hex();
    let routes: Vec<(Method, String, Option<(&str, Vec<u8>)>)> = vec![
        (Method::GET, "/v1/keys".into(), None),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let enroll = br#"{"device_public_keys":"","device_certificate":"","device_wrap":"","challenge":"","signature":""}"#;
    let wrap = br#"{"wrap":"AAAA"}"#;
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
    let (_, device, _, _, mut body) = new_account();
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

    // Nothing beside the data dir; inside it only the database and
    // blobs/<account hex>/<pack hex>.
    let beside: Vec<_> = std::fs::read_dir(srv.root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("data")]);
    let mut all = Vec::new();
    walk(&srv.data_dir, &mut all);
    for path in &all {
        let rel = path.strip_prefix(&srv.data_dir).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let ok = match parts.as_slice() {
            ["metadata.sqlite3" | "metadata.sqlite3-wal" | "metadata.sqlite3-shm" | "blobs"] => true,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
}

// ---------------------------------------------------------------------------
// Malformed uploads and bodies (B1 at the server's door, G8).
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let (_, device, _, _, mut body) = new_account();
    body.recovery_locator = B64(vec![1; 31]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    let (_, _, _, _, mut body) = new_account();
    body.device_public_keys = B64(vec![7; 100]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    let (_, _, _, _, mut body) = new_account();
    body.recovery_wrap = B64(vec![7; 5000]);
    srv.post_json("/v1/accounts", None, &body).await.expect_error(400, "bad_request");
    // A valid body with a signature by another device: 401, no account.
    let (id, _, _, _, mut body) = new_account();
    body.signature = B64(device.sign_account_creation(id, &[0; 32], &[0; 32]).to_vec());
    srv.post_json("/v1/accounts", None, &body).await.expect_error(401, "unauthorized");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_recovery_enrollment_needs_the_recovery_keys_signature() {
    let srv = start_default().await;
    let a = create_account(&srv).await;
    let locator = ObjectId(a.recovery.locator()).to_hex();
    let info_path = format!("/v1/recovery/{locator}");
    let enroll_path = format!("/v1/recovery/{locator}/devices");

    // Unknown and malformed locators.
    srv.get(&format!("/v1/recovery/{}", random_hex_id()), None).await.expect_error(404, "not_found");
    srv.get("/v1/recovery/nothex", None).await.expect_error(400, "bad_request");

    // What a recovering device learns from the locator alone.
    let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
    assert_eq!(info.account_id, a.id.to_hex());
    assert_eq!(info.epoch, 0);
    assert_eq!(info.recovery_wrap.0, a.recovery_wrap);
    let challenge: [u8; 32] = info.challenge.array().unwrap();
    let root = a.recovery.unwrap(&info.recovery_wrap.0, a.id, info.epoch).unwrap();
    assert_eq!(root.expose_secret(), a.root.expose_secret());

    let mut rng = os_rng();
    let new_device = DeviceSecret::generate(&mut rng);
    let enroll = |challenge: [u8; 32], signature: [u8; 64]| EnrollDevice {
        device_public_keys: B64(new_device.public().to_bytes()),
        device_certificate: B64(certify_device(&root, a.id, 0, new_device.public()).to_vec()),
        device_wrap: B64(wrap_to_device(&root, new_device.public(), a.id, 0, &mut os_rng()).unwrap()),
        challenge: B64(challenge.to_vec()),
        signature: B64(signature.to_vec()),
    };

    // Wrong signatures: by another recovery key, by the device itself, for another device, junk.
    let other_recovery = RecoveryKey::generate(&mut rng);
    let other_device = DeviceSecret::generate(&mut rng);
    let wrong = [
        other_recovery.sign_enrollment(a.id, new_device.public(), &challenge),
        new_device.sign_challenge(a.id, &challenge),
        a.recovery.sign_enrollment(a.id, other_device.public(), &challenge),
        a.recovery.sign_enrollment(AccountId([0; 16]), new_device.public(), &challenge),
        [0; 64],
    ];
    let mut c = challenge;
    for sig in wrong {
        srv.post_json(&enroll_path, None, &enroll(c, sig)).await.expect_error(401, "unauthorized");
        let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
        c = info.challenge.array().unwrap();
    }
    // The right signature on the first (already consumed) challenge: still refused.
    let stale = a.recovery.sign_enrollment(a.id, new_device.public(), &challenge);
    srv.post_json(&enroll_path, None, &enroll(challenge, stale)).await.expect_error(401, "unauthorized");
    let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
    c = info.challenge.array().unwrap();
    // The right signature on a fresh challenge: enrolled.
    let sig = a.recovery.sign_enrollment(a.id, new_device.public(), &c);
    srv.post_json(&enroll_path, None, &enroll(c, sig)).await.expect(201);
    // Replaying the same request: the challenge is spent.
    srv.post_json(&enroll_path, None, &enroll(c, sig)).await.expect_error(401, "unauthorized");
    // Enrolling it again with a fresh challenge: it is enrolled already.
    let info: RecoveryInfo = srv.get(&info_path, None).await.expect(200).json();
    let c2: [u8; 32] = info.challenge.array().unwrap();
    let sig2 = a.recovery.sign_enrollment(a.id, new_device.public(), &c2);
    srv.post_json(&enroll_path, None, &enroll(c2, sig2)).await.expect_error(409, "conflict");
    // None of the refused devices can sign in.
    let c: Challenge = challenge_with(&srv, &srv.http, a.id, other_device.id()).await.expect(200).json();
    let c: [u8; 32] = c.challenge.array().unwrap();
    let sig = other_device.sign_challenge(a.id, &c);
    session_with(&srv, &srv.http, a.id, other_device.id(), c, sig).await.expect_error(401, "unauthorized");

    // The new device signs in and finds its wrap of the root key.
    let token = sign_in(&srv, a.id, &new_device).await;
    let keys: AccountKeys = srv.get("/v1/keys", Some(&token)).await.expect(200).json();
    assert_eq!(keys.devices.len(), 2);
    assert!(keys.devices.iter().any(|d| d.public_keys.0 == new_device.public().to_bytes()));
    let wrap = keys.device_wraps.iter().find(|w| w.id == new_device.id().to_hex()).unwrap();
    let opened = unwrap_on_device(&wrap.wrap.0, &new_device, a.id, 0).unwrap();
    assert_eq!(opened.expose_secret(), a.root.expose_secret());
    // The first device is unaffected.
    srv.get("/v1/usage", Some(&a.token)).await.expect(200);
}
