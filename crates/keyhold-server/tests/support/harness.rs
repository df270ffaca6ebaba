//! An in-process `keyhold serve` over real HTTP for the API suites
//! (`sharing_api.rs`, `handles_api.rs`): started per test on a loopback
//! port, on SQLite or — inside `on_both_engines!`'s `postgres::` tests — a
//! throwaway PostgreSQL cluster (`postgres.rs`), with accounts created and
//! signed in the way a client does it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use keyhold_core::{AccountRootKey, DeviceSecret, RecoveryKey};
use keyhold_proto::{AccountId, Bytes as B64, Challenge, ChallengeRequest, ErrorBody, Session, SessionRequest};
use keyhold_server::config::RegionConfig;
use keyhold_server::{Config, Limits};
use reqwest::{Client, Method, RequestBuilder};
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::sync::oneshot;

#[path = "postgres.rs"]
mod postgres_cluster;

#[path = "fixtures.rs"]
mod fixtures;

#[allow(unused_imports)] // each suite takes what it needs
pub use fixtures::{Coll, new_account, new_collection, now_ms, pack_of, revision};

pub const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
pub enum Engine {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    pub static ENGINE: Engine;
}

/// Defines `sqlite::<name>` and `postgres::<name>` for each test body.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::harness::ENGINE.scope($crate::harness::Engine::Sqlite, super::$name()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::harness::ENGINE.scope($crate::harness::Engine::Postgres, super::$name()).await
                }
            )*
        }
    };
}

/// A server under test; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The configuration it runs with (tests open its stores with it).
    pub config: Config,
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

pub async fn start() -> TestServer {
    start_with(&[], |_| {}).await
}

/// A server with the default region and one more region per name.
pub async fn start_with_regions(names: &[&str]) -> TestServer {
    start_with(names, |_| {}).await
}

/// A server with the default region, one more per name, and `adjust`
/// applied to its configuration.
pub async fn start_with(names: &[&str], adjust: impl FnOnce(&mut Config)) -> TestServer {
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
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        database_url: database_url().await,
        regions,
        limits: Limits::default(),
        ..Config::default()
    };
    adjust(&mut config);
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
    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.http.request(method, format!("http://{}{path}", self.addr));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        send(self.req(Method::GET, path, Some(token))).await
    }

    pub async fn put_bytes(&self, path: &str, token: &str, body: Vec<u8>) -> Resp {
        send(self.req(Method::PUT, path, Some(token)).header("content-type", "application/octet-stream").body(body)).await
    }

    pub async fn post_bytes(&self, path: &str, token: &str, body: Vec<u8>) -> Resp {
        send(self.req(Method::POST, path, Some(token)).header("content-type", "application/octet-stream").body(body)).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &impl serde::Serialize) -> Resp {
        send(self.req(Method::POST, path, token).json(body)).await
    }
}

/// An answer: status and body.
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

pub async fn send(builder: RequestBuilder) -> Resp {
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    Resp { status, body }
}

impl Resp {
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    /// Checks the status and error code; returns the error's message.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        self.expect(status);
        let error = self.json::<ErrorBody>().error;
        assert_eq!(error.code, code, "message: {}", error.message);
        error.message
    }
}

/// An account with its first device, signed in.
pub struct Account {
    pub id: AccountId,
    pub device: DeviceSecret,
    pub root: AccountRootKey,
    pub recovery: RecoveryKey,
    pub token: String,
}

pub async fn create_account(srv: &TestServer) -> Account {
    create_account_in(srv, None).await
}

pub async fn create_account_in(srv: &TestServer, region: Option<&str>) -> Account {
    let (id, device, root, recovery, body) = new_account(region);
    srv.post_json("/v1/accounts", None, &body).await.expect(201);
    let token = sign_in(srv, id, &device).await;
    Account { id, device, root, recovery, token }
}

pub async fn sign_in(srv: &TestServer, account: AccountId, device: &DeviceSecret) -> String {
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
pub async fn contact_chain(srv: &TestServer, token: &str, account: AccountId) -> keyhold_core::DeviceChain {
    let entries: keyhold_proto::DeviceChainEntries =
        srv.get(&format!("/v1/accounts/{}/chain", account.to_hex()), token).await.expect(200).json();
    keyhold_core::DeviceChain::verify(account, entries.entries.iter().map(|b| b.0.as_slice())).unwrap()
}
