//! The HTTP side of the client. Every answer is treated as hostile: bodies
//! are parsed into wire types, then verified by the core before use.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use keyhold_core::{AccountId, CollectionId, DeviceSecret, ObjectId};
use keyhold_proto::{
    AccountKeys, AppendChainEntry, Bytes as B64, Challenge, ChallengeRequest, CreateAccount, DeviceChainEntries, EnrollDevice,
    ErrorBody, HeadRecord, Packs, PairingAttempt, PairingAttemptId, PairingAttempts, PairingHello, PairingSlot, PairingStep,
    PutCollectionKey, RecoveryInfo, Revisions, Session, SessionRequest,
};
use reqwest::{Method, RequestBuilder, StatusCode};

use crate::error::{ClientError, Result};

/// Largest response the client accepts for JSON bodies.
const MAX_JSON: u64 = 64 << 20;

/// A connection to one server.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// What a commit attempt did.
pub enum CommitResult {
    /// Committed.
    Committed,
    /// Someone else moved the head first.
    HeadMoved,
}

fn install_crypto_provider() {
    // reqwest is built without a bundled provider: use ring, as the server does.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Api {
    /// A client for `server` (e.g. `http://127.0.0.1:8420`).
    pub fn new(server: &str) -> Result<Self> {
        install_crypto_provider();
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!("server URL must start with http:// or https://, got {server:?}")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(16)
            .build()?;
        Ok(Api { http, base, token: None })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send(&self, rb: RequestBuilder) -> Result<reqwest::Response> {
        let response = rb.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => ("unknown".to_owned(), String::from_utf8_lossy(&body).chars().take(200).collect()),
        };
        Err(ClientError::Server { status, code, message })
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let response = self.send(rb).await?;
        if response.content_length().is_some_and(|l| l > MAX_JSON) {
            return Err(ClientError::Protocol("response too large".into()));
        }
        let body = response.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("malformed response: {e}")))
    }

    /// Creates an account.
    pub async fn create_account(&self, body: &CreateAccount) -> Result<()> {
        self.send(self.request(Method::POST, "/v1/accounts").json(body)).await.map(drop)
    }

    /// Opens a session for `device` of `account`.
    pub async fn sign_in(&mut self, account: AccountId, device: &DeviceSecret) -> Result<()> {
        let ids = ChallengeRequest { account_id: account.to_hex(), device_id: device.id().to_hex() };
        let challenge: Challenge = self.json(self.request(Method::POST, "/v1/auth/challenge").json(&ids)).await?;
        let bytes: [u8; 32] = challenge.challenge.array().ok_or_else(|| ClientError::Protocol("challenge length".into()))?;
        let body = SessionRequest {
            account_id: ids.account_id,
            device_id: ids.device_id,
            challenge: B64(bytes.to_vec()),
            signature: B64(device.sign_challenge(account, &bytes).to_vec()),
        };
        let session: Session = self.json(self.request(Method::POST, "/v1/auth/session").json(&body)).await?;
        self.token = Some(session.token);
        Ok(())
    }

    /// The deployment's signed residency statement (no session needed).
    pub async fn residency(&self) -> Result<keyhold_proto::Residency> {
        self.json(self.request(Method::GET, "/residency")).await
    }

    /// The deployment's public disclosure log (no session needed).
    pub async fn disclosures(&self) -> Result<keyhold_proto::DisclosureLog> {
        self.json(self.request(Method::GET, "/disclosures")).await
    }

    /// The newest signed checkpoint of the key transparency log.
    pub async fn kt_checkpoint(&self) -> Result<Vec<u8>> {
        let response = self.send(self.request(Method::GET, "/kt/checkpoint")).await?;
        if response.content_length().is_some_and(|l| l > MAX_JSON) {
            return Err(ClientError::Protocol("checkpoint too large".into()));
        }
        Ok(response.bytes().await?.to_vec())
    }

    /// A consistency proof between two sizes of the log.
    pub async fn kt_consistency(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let proof: keyhold_proto::KtConsistency =
            self.json(self.request(Method::GET, "/kt/consistency").query(&[("from", from), ("to", to)])).await?;
        Ok(proof.proof.into_iter().map(|h| h.0).collect())
    }

    /// A directory proof for `label`: its latest value (`history == false`)
    /// or every version; `None` if the directory has no such label. Retries
    /// briefly while the newest epoch is not logged yet.
    pub async fn kt_proof(&self, label: &[u8], history: bool) -> Result<Option<keyhold_proto::KtProof>> {
        let path = if history { "/kt/history" } else { "/kt/lookup" };
        let body = keyhold_proto::KtLabel { label: B64(label.to_vec()) };
        let mut attempts = 0u32;
        loop {
            match self.json(self.request(Method::POST, path).json(&body)).await {
                Ok(proof) => return Ok(Some(proof)),
                Err(ClientError::Server { status: 404, .. }) => return Ok(None),
                // The newest epoch is logged once its checkpoint is signed
                // and cosigned: seconds, longer with a slow witness.
                Err(ClientError::Server { status: 503, .. }) if attempts < 60 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Auditors' newest cosigned checkpoints.
    pub async fn kt_audited(&self) -> Result<Vec<Vec<u8>>> {
        let audited: keyhold_proto::KtAudited = self.json(self.request(Method::GET, "/kt/audited")).await?;
        Ok(audited.checkpoints.into_iter().map(|c| c.0).collect())
    }

    /// What the operator did to this account.
    pub async fn events(&self) -> Result<keyhold_proto::AccountEvents> {
        self.json(self.request(Method::GET, "/v1/events")).await
    }

    /// The recovery entry point for a locator.
    pub async fn recovery_info(&self, locator: &[u8; 32]) -> Result<RecoveryInfo> {
        self.json(self.request(Method::GET, &format!("/v1/recovery/{}", ObjectId(*locator).to_hex()))).await
    }

    /// Enrolls a device with the recovery key's signature.
    pub async fn enroll(&self, locator: &[u8; 32], body: &EnrollDevice) -> Result<()> {
        let path = format!("/v1/recovery/{}/devices", ObjectId(*locator).to_hex());
        self.send(self.request(Method::POST, &path).json(body)).await.map(drop)
    }

    /// The account's device chain, first entry first.
    pub async fn chain(&self) -> Result<Vec<Vec<u8>>> {
        let chain: DeviceChainEntries = self.json(self.request(Method::GET, "/v1/chain")).await?;
        Ok(chain.entries.into_iter().map(|e| e.0).collect())
    }

    /// Appends an entry to the device chain; `false` if another entry was
    /// appended first.
    pub async fn append_chain(&self, body: &AppendChainEntry) -> Result<bool> {
        match self.send(self.request(Method::POST, "/v1/chain").json(body)).await {
            Ok(_) => Ok(true),
            Err(ClientError::Server { status: 409, code, .. }) if code == keyhold_proto::code::CHAIN_MOVED => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens a pairing slot; `false` if the slot is taken.
    pub async fn open_pairing(&self, slot: &str) -> Result<Option<PairingSlot>> {
        match self.json(self.request(Method::PUT, &format!("/v1/pairings/{slot}"))).await {
            Ok(s) => Ok(Some(s)),
            Err(ClientError::Server { status: 409, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes a pairing slot.
    pub async fn close_pairing(&self, slot: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/pairings/{slot}"))).await.map(drop)
    }

    /// The attempts at a slot this device opened.
    pub async fn pairing_attempts(&self, slot: &str) -> Result<Vec<PairingAttempt>> {
        let list: PairingAttempts = self.json(self.request(Method::GET, &format!("/v1/pairings/{slot}/attempts"))).await?;
        Ok(list.attempts)
    }

    /// Starts an attempt at a slot (joiner); `None` if no such slot is open.
    pub async fn start_pairing(&self, slot: &str, message: &[u8]) -> Result<Option<String>> {
        let body = PairingHello { message: B64(message.to_vec()) };
        match self
            .json::<PairingAttemptId>(self.request(Method::POST, &format!("/v1/pairings/{slot}/attempts")).json(&body))
            .await
        {
            Ok(a) => Ok(Some(a.attempt)),
            Err(ClientError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One attempt (joiner).
    pub async fn pairing_attempt(&self, slot: &str, attempt: &str) -> Result<PairingAttempt> {
        self.json(self.request(Method::GET, &format!("/v1/pairings/{slot}/attempts/{attempt}"))).await
    }

    /// Writes one step of an attempt.
    pub async fn pairing_step(&self, slot: &str, attempt: &str, step: &str, data: Vec<u8>) -> Result<()> {
        let path = format!("/v1/pairings/{slot}/attempts/{attempt}/{step}");
        self.send(self.request(Method::PUT, &path).json(&PairingStep { data: B64(data) })).await.map(drop)
    }

    /// The account's key material.
    pub async fn keys(&self) -> Result<AccountKeys> {
        self.json(self.request(Method::GET, "/v1/keys")).await
    }

    /// Files a collection key wrap; `false` if another one is filed already.
    pub async fn put_collection_key(&self, collection: CollectionId, epoch: u32, wrap: Vec<u8>) -> Result<bool> {
        let path = format!("/v1/collections/{collection}/keys/{epoch}");
        match self.send(self.request(Method::PUT, &path).json(&PutCollectionKey { wrap: B64(wrap) })).await {
            Ok(_) => Ok(true),
            Err(ClientError::Server { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The collection's head, if it has one.
    pub async fn head(&self, collection: CollectionId) -> Result<Option<HeadRecord>> {
        match self.json(self.request(Method::GET, &format!("/v1/collections/{collection}/head"))).await {
            Ok(head) => Ok(Some(head)),
            Err(ClientError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All stored revisions after `after`, in order.
    pub async fn revisions(&self, collection: CollectionId, mut after: Option<u64>) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let mut rb = self.request(Method::GET, &format!("/v1/collections/{collection}/revisions"));
            if let Some(seq) = after {
                rb = rb.query(&[("after", seq)]);
            }
            let page: Revisions = self.json(rb).await?;
            let got = page.revisions.len();
            for r in page.revisions {
                out.push(r.0);
            }
            if !page.more || got == 0 {
                return Ok(out);
            }
            let last = out.last().and_then(|r| keyhold_core::RevisionHeader::parse(r).ok());
            let next = last.ok_or_else(|| ClientError::Protocol("unparsable revision in listing".into()))?.seq;
            // Each page must move forward, or a server could keep us paging forever.
            if after.is_some_and(|a| next <= a) {
                return Err(ClientError::Protocol("revision pages do not advance".into()));
            }
            after = Some(next);
        }
    }

    /// Commits a revision by compare-and-swap.
    pub async fn commit(&self, collection: CollectionId, stored: Vec<u8>) -> Result<CommitResult> {
        let rb = self.request(Method::POST, &format!("/v1/collections/{collection}/revisions")).body(stored);
        match self.send(rb).await {
            Ok(_) => Ok(CommitResult::Committed),
            Err(ClientError::Server { status: 409, .. }) => Ok(CommitResult::HeadMoved),
            Err(e) => Err(e),
        }
    }

    /// Usage and quota.
    pub async fn usage(&self) -> Result<keyhold_proto::Usage> {
        self.json(self.request(Method::GET, "/v1/usage")).await
    }

    /// Every pack of a collection.
    pub async fn packs(&self, collection: CollectionId) -> Result<Packs> {
        self.json(self.request(Method::GET, &format!("/v1/collections/{collection}/packs"))).await
    }

    /// Uploads a pack of `collection` (idempotent). Packs go through the
    /// collection's path so that a shared collection's packs reach its
    /// owner's store.
    pub async fn put_pack(&self, collection: CollectionId, id: ObjectId, bytes: Bytes) -> Result<()> {
        self.send(self.request(Method::PUT, &format!("/v1/collections/{collection}/packs/{id}")).body(bytes)).await.map(drop)
    }

    /// Downloads a pack, or a byte range of it; a range answer must have
    /// exactly the requested length.
    pub async fn get_pack(&self, collection: CollectionId, id: ObjectId, range: Option<Range<u64>>) -> Result<Bytes> {
        let mut rb = self.request(Method::GET, &format!("/v1/collections/{collection}/packs/{id}"));
        if let Some(r) = &range {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={}-{}", r.start, r.end.saturating_sub(1)));
        }
        let response = self.send(rb).await?;
        let expect_partial = range.is_some();
        if expect_partial && response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(ClientError::Protocol("server ignored a range request".into()));
        }
        let bytes = response.bytes().await?;
        if let Some(r) = range {
            if u64::try_from(bytes.len()).ok() != Some(r.end - r.start) {
                return Err(ClientError::Integrity(keyhold_core::Error::Malformed("range answer of the wrong length")));
            }
        } else if ObjectId::of(&bytes) != id {
            return Err(ClientError::Integrity(keyhold_core::Error::ContentMismatch));
        }
        Ok(bytes)
    }

    /// A suffix range (the last `n` bytes) of a pack of known size.
    pub async fn get_pack_tail(&self, collection: CollectionId, id: ObjectId, size: u64, n: u64) -> Result<Bytes> {
        self.get_pack(collection, id, Some(size.saturating_sub(n)..size)).await
    }
}

/// Sharing between accounts.
impl Api {
    /// Another account's device chain, as the server shows it (checked
    /// against key transparency before use).
    pub async fn account_chain(&self, account: AccountId) -> Result<Vec<Vec<u8>>> {
        let path = format!("/v1/accounts/{}/chain", account.to_hex());
        let body: DeviceChainEntries = self.json(self.request(Method::GET, &path)).await?;
        Ok(body.entries.into_iter().map(|e| e.0).collect())
    }

    /// A shared collection's member list; `None` if the collection is not
    /// shared (or not visible to this account).
    pub async fn members(&self, collection: CollectionId) -> Result<Option<keyhold_proto::MemberLog>> {
        match self.json(self.request(Method::GET, &format!("/v1/collections/{collection}/members"))).await {
            Ok(log) => Ok(Some(log)),
            Err(ClientError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Appends a member-list entry with its grants; `false` if the list
    /// moved since it was read.
    pub async fn append_member(&self, collection: CollectionId, entry: Vec<u8>, grants: Vec<Vec<u8>>) -> Result<bool> {
        let body = keyhold_proto::AppendMember { entry: B64(entry), grants: grants.into_iter().map(B64).collect() };
        let rb = self.request(Method::POST, &format!("/v1/collections/{collection}/members")).json(&body);
        match self.send(rb).await {
            Ok(_) => Ok(true),
            Err(ClientError::Server { status: 409, code, .. }) if code == keyhold_proto::code::MEMBERS_MOVED => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key grant addressed to this account.
    pub async fn grants(&self) -> Result<Vec<keyhold_proto::GrantRecord>> {
        let body: keyhold_proto::Grants = self.json(self.request(Method::GET, "/v1/grants")).await?;
        Ok(body.grants)
    }

    /// Files this device's signed answer to a grant.
    pub async fn respond_to_grant(&self, grant: ObjectId, response: Vec<u8>) -> Result<()> {
        let body = keyhold_proto::PostShareResponse { response: B64(response) };
        let path = format!("/v1/grants/{}/response", grant.to_hex());
        self.send(self.request(Method::POST, &path).json(&body)).await.map(drop)
    }

    /// The shared collections this account owns or has joined (the
    /// server's claim).
    pub async fn shared(&self) -> Result<Vec<keyhold_proto::SharedCollection>> {
        let body: keyhold_proto::SharedCollections = self.json(self.request(Method::GET, "/v1/shared")).await?;
        Ok(body.collections)
    }
}

/// Link shares (docs/spec/links.md, "HTTP").
impl Api {
    /// Files a sealed link object that the server serves until
    /// `expires_at` (Unix seconds).
    pub async fn create_link(&self, object: Vec<u8>, expires_at: i64) -> Result<()> {
        let rb = self
            .request(Method::POST, "/v1/links")
            .query(&[("expires_at", expires_at)])
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(object);
        self.send(rb).await.map(drop)
    }

    /// The account's links, newest first.
    pub async fn links(&self) -> Result<Vec<keyhold_proto::links::LinkRecord>> {
        let body: keyhold_proto::links::Links = self.json(self.request(Method::GET, "/v1/links")).await?;
        Ok(body.links)
    }

    /// Revokes one of the account's links; `false` if it has none of that id.
    pub async fn revoke_link(&self, id: keyhold_core::LinkId) -> Result<bool> {
        match self.send(self.request(Method::DELETE, &format!("/v1/links/{id}"))).await {
            Ok(_) => Ok(true),
            Err(ClientError::Server { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts fetching a link's object (no session needed): the response,
    /// whose body the caller reads chunk by chunk.
    pub async fn link_object(&self, id: keyhold_core::LinkId) -> Result<reqwest::Response> {
        self.send(self.request(Method::GET, &format!("/v1/links/{id}/object"))).await
    }
}

/// Handles.
impl Api {
    /// Claims a handle for the signed-in account; `false` if it is taken
    /// (or the account has another).
    pub async fn put_handle(&self, handle: &str, claim: Vec<u8>) -> Result<std::result::Result<(), String>> {
        let body = keyhold_proto::PutHandle { claim: B64(claim) };
        match self.send(self.request(Method::PUT, &format!("/v1/handles/{handle}")).json(&body)).await {
            Ok(_) => Ok(Ok(())),
            Err(ClientError::Server { status: 409, message, .. }) => Ok(Err(message)),
            Err(e) => Err(e),
        }
    }

    /// Who claimed a handle (checked against the key directory by the caller).
    pub async fn handle(&self, handle: &str) -> Result<Option<keyhold_proto::HandleRecord>> {
        match self.json(self.request(Method::GET, &format!("/v1/handles/{handle}"))).await {
            Ok(record) => Ok(Some(record)),
            Err(ClientError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
