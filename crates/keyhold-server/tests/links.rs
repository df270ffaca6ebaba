//! The link routes (docs/spec/links.md, "HTTP") against an in-process
//! server, on SQLite and on PostgreSQL: what `POST /v1/links` refuses,
//! idempotent retries and id conflicts, tenant isolation (G1), quotas (G5),
//! `410 Gone` for revoked and expired links, and that a deleted object's
//! blob is gone. The end-to-end behaviour (CLI, browser, captures) is in
//! `crates/keyhold/tests/links.rs`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::new_account;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyhold_core::{LinkEntry, LinkEntryKind, LinkFragment, LinkId, LinkKind, LinkMeta, os_rng, seal_link};
use keyhold_proto::links::{LinkCreated, Links};
use keyhold_proto::{Bytes as B64, Challenge, ChallengeRequest, ErrorBody, Session, SessionRequest, Usage};
use keyhold_server::{Config, Limits};
use reqwest::{Client, Method};
use tokio::sync::oneshot;

#[path = "support/postgres.rs"]
mod postgres_cluster;

#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Postgres).await
                }
            )*
        }
    };
}

on_both_engines!(
    g1_g5_links_are_filed_listed_served_and_revoked,
    g5_a_link_over_quota_is_refused_and_not_kept,
    expired_links_are_gone_and_purged
);

struct Srv {
    addr: SocketAddr,
    _root: tempfile::TempDir,
    data_dir: PathBuf,
    db_url: String,
    http: Client,
    _stop: oneshot::Sender<()>,
}

async fn start(engine: Engine, limits: Limits) -> Srv {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let database_url = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(tokio::task::spawn_blocking(postgres_cluster::database).await.unwrap()),
    };
    let db_url = database_url.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("metadata.sqlite3").display()));
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.clone(),
        database_url,
        limits,
        ..Config::default()
    };
    let server = keyhold_server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let http = Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    Srv { addr, _root: root, data_dir, db_url, http, _stop: stop }
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        assert_eq!(serde_json::from_slice::<ErrorBody>(&self.body).unwrap().error.code, code);
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Srv {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Resp {
        let mut rb = self.http.request(method, format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/octet-stream").body(b);
        }
        let r = rb.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        Resp { status, headers, body: r.bytes().await.unwrap().to_vec() }
    }

    async fn post_link(&self, token: &str, expires_at: i64, object: Vec<u8>) -> Resp {
        self.call(Method::POST, &format!("/v1/links?expires_at={expires_at}"), Some(token), Some(object)).await
    }

    async fn used(&self, token: &str) -> u64 {
        self.call(Method::GET, "/v1/usage", Some(token), None).await.expect(200).json::<Usage>().used_bytes
    }

    /// Every file under the blob store.
    fn blobs(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.is_dir() { walk(&p, out) } else { out.push(p) }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir.join("blobs"), &mut out);
        out
    }
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Creates an account and signs its device in; returns the session token.
async fn account(srv: &Srv) -> String {
    let (id, device, _, _, body) = new_account(None);
    let url = |p: &str| format!("http://{}{p}", srv.addr);
    assert_eq!(srv.http.post(url("/v1/accounts")).json(&body).send().await.unwrap().status(), 201);
    let ids = ChallengeRequest { account_id: id.to_hex(), device_id: device.id().to_hex() };
    let challenge: Challenge = srv.http.post(url("/v1/auth/challenge")).json(&ids).send().await.unwrap().json().await.unwrap();
    let challenge: [u8; 32] = challenge.challenge.array().unwrap();
    let request = SessionRequest {
        account_id: ids.account_id,
        device_id: ids.device_id,
        challenge: B64(challenge.to_vec()),
        signature: B64(device.sign_challenge(id, &challenge).to_vec()),
    };
    let session: Session = srv.http.post(url("/v1/auth/session")).json(&request).send().await.unwrap().json().await.unwrap();
    session.token
}

/// A key link of `size` bytes, sealed as a client would.
fn link(id: LinkId, size: usize) -> Vec<u8> {
    let meta = LinkMeta {
        expires_ms: (now() + 3600) * 1000,
        kind: LinkKind::File,
        name: "f".into(),
        entries: vec![LinkEntry { path: "f".into(), kind: LinkEntryKind::File, size: u64::try_from(size).unwrap(), mode: 0o644 }],
    };
    let fragment = LinkFragment::generate(false, &mut os_rng());
    seal_link(id, &fragment, None, &meta, &[&vec![7u8; size]]).unwrap()
}

async fn g1_g5_links_are_filed_listed_served_and_revoked(engine: Engine) {
    let srv = start(engine, Limits::default()).await;
    let alice = account(&srv).await;
    let mallory = account(&srv).await;
    let id = LinkId::generate(&mut os_rng());
    let object = link(id, 100_000);
    let expires = now() + 3600;

    // Refused: no session, a past or too distant expiry, not a link object.
    // (Refused before the body is read: a small one, or the server's early
    // answer can race the client still sending a large one.)
    let small = link(LinkId::generate(&mut os_rng()), 10);
    srv.call(Method::POST, &format!("/v1/links?expires_at={expires}"), None, Some(small.clone())).await.expect(401);
    srv.post_link(&alice, now() - 1, small.clone()).await.expect_error(400, "bad_request");
    srv.post_link(&alice, now() + 367 * 86_400, small).await.expect_error(400, "bad_request");
    srv.post_link(&alice, expires, b"not a link".to_vec()).await.expect_error(400, "bad_request");
    let mut pack = object.clone();
    pack[6] = 0x01;
    srv.post_link(&alice, expires, pack).await.expect_error(400, "bad_request");
    // Cut inside a segment's tag: no STREAM has that length.
    let content_start = 40 + usize::try_from(u32::from_be_bytes(object[36..40].try_into().unwrap())).unwrap();
    let short = object[..content_start + 65_552 + 5].to_vec();
    srv.post_link(&alice, expires, short).await.expect_error(400, "bad_request");
    assert!(srv.blobs().is_empty(), "nothing refused was kept");

    // Filed and charged; a retry of the same bytes is fine, another object
    // under the same id (even from another account) is not.
    let before = srv.used(&alice).await;
    let created = srv.post_link(&alice, expires, object.clone()).await;
    assert_eq!(created.expect(201).json::<LinkCreated>().link_id, id.to_hex());
    assert_eq!(srv.used(&alice).await, before + u64::try_from(object.len()).unwrap());
    srv.post_link(&alice, expires, object.clone()).await.expect(200);
    srv.post_link(&alice, expires, link(id, 10)).await.expect_error(409, "conflict");
    srv.post_link(&mallory, expires, link(id, 10)).await.expect_error(409, "conflict");
    assert_eq!(srv.blobs().len(), 1);

    // Listed to its owner only; served to anyone.
    let links: Links = srv.call(Method::GET, "/v1/links", Some(&alice), None).await.expect(200).json();
    assert_eq!(links.links.len(), 1);
    assert_eq!(
        (links.links[0].link_id.as_str(), links.links[0].size, links.links[0].expires_at),
        (id.to_hex().as_str(), u64::try_from(object.len()).unwrap(), expires)
    );
    let theirs: Links = srv.call(Method::GET, "/v1/links", Some(&mallory), None).await.expect(200).json();
    assert!(theirs.links.is_empty());
    let path = format!("/v1/links/{id}/object");
    let served = srv.call(Method::GET, &path, None, None).await;
    assert_eq!(served.expect(200).body, object);
    assert_eq!(served.headers["cache-control"], "no-store");
    let unknown = LinkId::generate(&mut os_rng());
    srv.call(Method::GET, &format!("/v1/links/{unknown}/object"), None, None).await.expect_error(404, "not_found");

    // Another account cannot revoke it, nor tell it exists (G1).
    srv.call(Method::DELETE, &format!("/v1/links/{id}"), Some(&mallory), None).await.expect_error(404, "not_found");
    srv.call(Method::DELETE, &format!("/v1/links/{unknown}"), Some(&mallory), None).await.expect_error(404, "not_found");
    srv.call(Method::DELETE, "/v1/links/..%2f..%2fetc", Some(&alice), None).await.expect_error(400, "bad_request");
    srv.call(Method::GET, &path, None, None).await.expect(200);

    // Revoked: gone at once, its blob deleted, its bytes freed.
    srv.call(Method::DELETE, &format!("/v1/links/{id}"), Some(&alice), None).await.expect(204);
    srv.call(Method::GET, &path, None, None).await.expect_error(410, "gone");
    assert_eq!(srv.used(&alice).await, before);
    assert!(srv.blobs().is_empty(), "the revoked object is deleted");
    srv.call(Method::DELETE, &format!("/v1/links/{id}"), Some(&alice), None).await.expect(204);
    assert_eq!(srv.used(&alice).await, before, "revoking twice frees once");
    let links: Links = srv.call(Method::GET, "/v1/links", Some(&alice), None).await.expect(200).json();
    assert!(links.links[0].revoked_at.is_some());
    assert_eq!(links.links[0].size, 0);
    srv.post_link(&alice, expires, object).await.expect_error(409, "conflict");
}

async fn g5_a_link_over_quota_is_refused_and_not_kept(engine: Engine) {
    let srv = start(engine, Limits { default_quota_bytes: 60_000, ..Limits::default() }).await;
    let alice = account(&srv).await;
    let before = srv.used(&alice).await;
    let big = link(LinkId::generate(&mut os_rng()), 70_000);
    srv.post_link(&alice, now() + 60, big).await.expect_error(507, "quota_exceeded");
    assert!(srv.blobs().is_empty());
    assert_eq!(srv.used(&alice).await, before);
    let small = link(LinkId::generate(&mut os_rng()), 1000);
    srv.post_link(&alice, now() + 60, small).await.expect(201);
}

async fn expired_links_are_gone_and_purged(engine: Engine) {
    let srv = start(engine, Limits::default()).await;
    let alice = account(&srv).await;
    let before = srv.used(&alice).await;
    let id = LinkId::generate(&mut os_rng());
    srv.post_link(&alice, now() + 3600, link(id, 5000)).await.expect(201);
    // The server's clock moves past the expiry, as far as this link goes.
    let db = sqlx::AnyPool::connect(&srv.db_url).await.unwrap();
    sqlx::query("UPDATE links SET expires_at = $1").bind(now() - 1).execute(&db).await.unwrap();
    srv.call(Method::GET, &format!("/v1/links/{id}/object"), None, None).await.expect_error(410, "gone");
    // Listing purges the object and frees its bytes; the row stays (410, not 404).
    let links: Links = srv.call(Method::GET, "/v1/links", Some(&alice), None).await.expect(200).json();
    assert_eq!((links.links.len(), links.links[0].size), (1, 0));
    assert_eq!(srv.used(&alice).await, before);
    assert!(srv.blobs().is_empty());
    srv.call(Method::GET, &format!("/v1/links/{id}/object"), None, None).await.expect_error(410, "gone");
}
