//! Routes and handlers. Handlers parse and validate, call the stores, and
//! answer with `?`: every failure is an [`ApiError`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use keyhold_core::pack::{PACK_PREFIX_LEN, PACK_TRAILER_LEN};
use keyhold_core::{
    CHALLENGE_LEN, ChainChange, ChainEntry, DeviceChain, DevicePublicKeys, MAX_CHAIN_ENTRY_LEN, ObjectHasher, ObjectType,
    PAIRING_SLOT_LEN, PAKE_MESSAGE_LEN, RevisionHeader, Signer,
};
use keyhold_proto::{
    AccountEvent, AccountEvents, AccountId, AccountKeys, AppendChainEntry, Bytes as B64, Challenge, ChallengeRequest,
    CollectionId, CreateAccount, DeviceChainEntries, DeviceId, DisclosureLog, EnrollDevice, HeadRecord, HexId, ObjectId,
    PackRecord, Packs, PairingAttempt, PairingAttemptId, PairingAttempts, PairingHello, PairingSlot, PairingStep,
    PutCollectionKey, RecoveryInfo, Residency, Revisions, RevisionsQuery, Session, SessionRequest, SignedDisclosure, Usage,
    WrapRecord,
};
use tokio::sync::Semaphore;
use tower_http::trace::TraceLayer;

use crate::blobs::{BlobStore, BlobUpload};
use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::regions::{Region, Regions};
use crate::share_routes::collection_owner;
use crate::store::{
    Appended, AttemptRow, ChainAppend, Commit, MetaStore, NewAccount, NewDevice, NewEpoch, PackAdded, PairingStepKind,
    SlotOpened, StepWritten, WrapFiled,
};

const CHALLENGE_SECS: i64 = 120;
const REVISIONS_PER_PAGE: u32 = 1000;
/// Longest wrapped key of any kind the server files.
const MAX_WRAP_LEN: usize = 4096;
/// Most device wraps one chain entry may bring.
const MAX_DEVICE_WRAPS: usize = 1000;
/// Most collection key wraps one chain entry may bring.
const MAX_COLLECTION_WRAPS: usize = 100_000;
/// Longest device chain of an account.
const MAX_CHAIN_ENTRIES: usize = 10_000;
/// Lifetime of a pairing slot.
const PAIRING_SLOT_SECS: i64 = 600;
/// Attempts a pairing slot takes before it answers as if closed.
const MAX_PAIRING_ATTEMPTS: u32 = 10;
/// Live pairing slots one account may hold at once.
const MAX_PAIRING_SLOTS: u32 = 4;
/// Longest step of a pairing attempt.
const MAX_PAIRING_STEP: usize = 4096;
/// The characters of pairing slot names (Crockford base32, upper case).
const SLOT_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Shared by every handler.
pub struct AppState {
    pub(crate) regions: Regions,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) metrics_token: Option<String>,
    /// Key transparency: the directory and its log (absent in bare test setups).
    pub(crate) transparency: Option<Arc<crate::transparency::Transparency>>,
    upload_slots: Semaphore,
    requests: DefaultKeyedRateLimiter<IpAddr>,
    auth_attempts: DefaultKeyedRateLimiter<IpAddr>,
}

/// The client's address, set per connection by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

type Shared = State<Arc<AppState>>;

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| ApiError::Internal("server randomness unavailable"))?;
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn nonzero(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

pub(crate) fn parse_id<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T, ApiError> {
    // Ids are fixed-length hex: anything else (`..`, `/`, NUL, overlong) is refused here.
    if text.len() > 64 {
        return Err(ApiError::BadRequest("id too long"));
    }
    parse(text).ok_or(ApiError::BadRequest("malformed id"))
}

impl AppState {
    /// Serves `/metrics` to requests bearing `token` (without one it is absent).
    #[must_use]
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty());
        self
    }

    /// Serves key transparency from `kt`.
    #[must_use]
    pub fn with_transparency(mut self, kt: Option<Arc<crate::transparency::Transparency>>) -> Self {
        self.transparency = kt;
        self
    }

    /// Builds the state over two stores.
    pub fn new(regions: Regions, limits: Limits) -> Self {
        let requests =
            RateLimiter::keyed(Quota::per_second(nonzero(limits.requests_per_second)).allow_burst(nonzero(limits.request_burst)));
        let auth_attempts =
            RateLimiter::keyed(Quota::per_minute(nonzero(limits.auth_per_minute)).allow_burst(nonzero(limits.auth_per_minute)));
        AppState {
            regions,
            metrics: Metrics::default(),
            metrics_token: None,
            transparency: None,
            upload_slots: Semaphore::new(limits.max_concurrent_uploads.max(1)),
            limits,
            requests,
            auth_attempts,
        }
    }
}

/// The whole HTTP API.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    let auth_routes = Router::new()
        .route("/v1/accounts", post(create_account))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/session", post(session))
        .route("/v1/recovery/{locator}", get(recovery_info))
        .route("/v1/recovery/{locator}/devices", post(enroll_device))
        // Guessing pairing slots: one guess per attempt (G4).
        .route("/v1/pairings/{slot}/attempts", post(create_attempt))
        .layer(middleware::from_fn_with_state(state.clone(), limit_auth));
    Router::new()
        .merge(auth_routes)
        .route("/v1/keys", get(keys))
        .route("/v1/chain", get(chain).post(append_chain))
        .route("/v1/pairings/{slot}", put(open_slot).delete(close_slot))
        .route("/v1/pairings/{slot}/attempts", get(list_attempts))
        .route("/v1/pairings/{slot}/attempts/{attempt}", get(get_attempt))
        .route("/v1/pairings/{slot}/attempts/{attempt}/{step}", put(put_step))
        .route("/v1/usage", get(usage))
        .route("/residency", get(residency))
        .route("/disclosures", get(disclosures))
        .route("/v1/events", get(events))
        .route("/v1/collections/{collection}/keys/{epoch}", put(put_collection_key))
        .route("/v1/collections/{collection}/head", get(head))
        .route("/v1/collections/{collection}/revisions", get(revisions).post(commit_revision))
        .route("/v1/collections/{collection}/packs", get(packs))
        .route("/v1/packs/{id}", put(put_pack).get(get_pack))
        .merge(crate::kt_routes::routes())
        .merge(crate::links::routes())
        .merge(crate::share_routes::routes())
        .merge(crate::handles::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), limit_requests))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::render))
        .layer(middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn peer_of(req: &Request) -> IpAddr {
    req.extensions().get::<Peer>().map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0)
}

async fn limit_requests(State(state): Shared, req: Request, next: Next) -> Response {
    if let Err(not_until) = state.requests.check_key(&peer_of(&req)) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.as_secs().saturating_add(1)).into_response();
    }
    // Refuse an announced oversized body before reading any of it (G2).
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > state.limits.max_body_bytes) {
        return ApiError::TooLarge.into_response();
    }
    next.run(req).await
}

async fn limit_auth(State(state): Shared, req: Request, next: Next) -> Response {
    if let Err(not_until) = state.auth_attempts.check_key(&peer_of(&req)) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.as_secs().saturating_add(1)).into_response();
    }
    next.run(req).await
}

/// `Json`, whose rejections are [`ApiError`]s: every error answer is a JSON
/// body with a stable code, malformed bodies included.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest("expected Content-Type: application/json")),
            Err(_) => Err(ApiError::BadRequest("malformed JSON body")),
        }
    }
}

/// `Path`, whose rejections are [`ApiError`]s.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| ApiError::BadRequest("malformed path"))
    }
}

/// `Query`, whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|_| ApiError::BadRequest("malformed query"))
    }
}

/// An authenticated device, from `Authorization: Bearer <token>`.
pub struct Authed {
    pub(crate) account: AccountId,
    pub(crate) device: DeviceId,
    /// The region that holds the account: every read and write of its own
    /// goes there (a shared collection's go to its owner's, `share_routes`).
    pub(crate) region: Arc<Region>,
    /// The operator suspended the account or deleted its data (read with the
    /// session, so checking it costs no query of its own).
    suspended: bool,
    deleted: bool,
}

impl Authed {
    /// Refuses a write to an account the operator suspended or emptied.
    pub(crate) fn may_write(&self) -> Result<(), ApiError> {
        match (self.suspended, self.deleted) {
            (_, true) => Err(ApiError::AccountBlocked(
                "the server's operator deleted this account's data; nothing can be written to it (see `keyhold status`)",
            )),
            (true, _) => Err(ApiError::AccountBlocked(
                "the server's operator suspended this account: it can be read, not changed (see `keyhold status`)",
            )),
            (false, false) => Ok(()),
        }
    }
}

/// Checks the session named by the `Authorization` header.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    // Tokens are `<region>.<secret>`: the region's database holds the session.
    let (name, _) = token.split_once('.').ok_or(ApiError::Unauthorized)?;
    let region = state.regions.named(name).ok_or(ApiError::Unauthorized)?.clone();
    let hash = *blake3::hash(token.as_bytes()).as_bytes();
    let session = region.meta.session(&hash, now()).await?.ok_or(ApiError::Unauthorized)?;
    Ok(Authed {
        account: session.account,
        device: session.device,
        region,
        suspended: session.suspended,
        deleted: session.deleted,
    })
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers).await
    }
}

fn device_keys(bytes: &[u8]) -> Result<DevicePublicKeys, ApiError> {
    DevicePublicKeys::from_bytes(bytes).map_err(|_| ApiError::BadRequest("device public keys"))
}

fn array<const N: usize>(b: &B64, what: &'static str) -> Result<[u8; N], ApiError> {
    b.array().ok_or(ApiError::BadRequest(what))
}

fn check_len(b: &B64, max: usize, what: &'static str) -> Result<(), ApiError> {
    if b.0.is_empty() || b.0.len() > max { Err(ApiError::BadRequest(what)) } else { Ok(()) }
}

fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// The recovery key's Ed25519 public key: the first 32 bytes of its device
/// public keys.
fn recovery_auth_key(recovery: &DevicePublicKeys) -> Result<[u8; 32], ApiError> {
    recovery.to_bytes().get(..32).and_then(|b| b.try_into().ok()).ok_or(ApiError::Internal("recovery public keys"))
}

async fn create_account(State(state): Shared, ApiJson(body): ApiJson<CreateAccount>) -> Result<StatusCode, ApiError> {
    let account = parse_id(&body.account_id, AccountId::from_hex)?;
    let locator = array::<32>(&body.recovery_locator, "recovery locator")?;
    // The account's home for good: nothing of it is ever written elsewhere.
    let region = match &body.region {
        None => state.regions.default_region().clone(),
        Some(name) => state.regions.named(name).cloned().ok_or_else(|| {
            ApiError::BadRequestOwned(format!("no region {name:?} here; this server offers {}", state.regions.names().join(", ")))
        })?,
    };
    check_len(&body.chain_entry, MAX_CHAIN_ENTRY_LEN, "chain entry")?;
    check_len(&body.device_wrap, MAX_WRAP_LEN, "device wrap")?;
    check_len(&body.recovery_wrap, MAX_WRAP_LEN, "recovery wrap")?;
    // The creation entry must be signed by the device it enrolls: whoever
    // sends it holds that device's key.
    let chain = DeviceChain::genesis(account, &body.chain_entry.0).map_err(|e| match e {
        keyhold_core::Error::BadSignature => ApiError::Unauthorized,
        _ => ApiError::BadRequest("chain entry: not a valid creation entry for this account"),
    })?;
    let device = chain.devices().values().next().ok_or(ApiError::Internal("creation entry without a device"))?;
    let public_keys = device.public.to_bytes();
    let new = NewAccount {
        account,
        locator,
        recovery_auth_key: recovery_auth_key(chain.recovery())?,
        quota_bytes: state.limits.default_quota_bytes,
        chain_entry: &body.chain_entry.0,
        recovery_wrap: &body.recovery_wrap.0,
        device: NewDevice { id: device.public.id(), public_keys: &public_keys, wrap: &body.device_wrap.0, epoch: 0 },
    };
    // Ids and locators are unique across regions, not only within one.
    if state.regions.of_account(account).await?.is_some() || state.regions.of_locator(&locator).await?.is_some() {
        return Err(ApiError::Conflict("account exists"));
    }
    if !region.meta.create_account(&new, now()).await? {
        return Err(ApiError::Conflict("account exists"));
    }
    tracing::info!(account = %account, region = %region.name, "account created");
    Ok(StatusCode::CREATED)
}

async fn new_challenge(region: &Region) -> Result<Challenge, ApiError> {
    let challenge = random::<32>()?;
    region.meta.put_challenge(&challenge, now() + CHALLENGE_SECS).await?;
    Ok(Challenge { challenge: B64(challenge.to_vec()), expires_in: CHALLENGE_SECS.unsigned_abs() })
}

async fn challenge(State(state): Shared, ApiJson(body): ApiJson<ChallengeRequest>) -> Result<Json<Challenge>, ApiError> {
    // The answer is the same whether or not the account exists (G1).
    let account = parse_id(&body.account_id, AccountId::from_hex)?;
    parse_id(&body.device_id, DeviceId::from_hex)?;
    // Kept where the session will be checked: the account's region.
    let region = state.regions.of_account(account).await?.unwrap_or_else(|| state.regions.default_region().clone());
    Ok(Json(new_challenge(&region).await?))
}

async fn session(State(state): Shared, ApiJson(body): ApiJson<SessionRequest>) -> Result<Json<Session>, ApiError> {
    let account = parse_id(&body.account_id, AccountId::from_hex)?;
    let device = parse_id(&body.device_id, DeviceId::from_hex)?;
    let challenge = array::<CHALLENGE_LEN>(&body.challenge, "challenge")?;
    let signature = array::<64>(&body.signature, "signature")?;
    let region = state.regions.of_account(account).await?.ok_or(ApiError::Unauthorized)?;
    if !region.meta.take_challenge(&challenge, now()).await? {
        return Err(ApiError::Unauthorized);
    }
    // Revoked devices are not listed: they cannot sign in again (A7).
    let keys = region.meta.device_keys(account, device).await?.ok_or(ApiError::Unauthorized)?;
    device_keys(&keys)?.verify_challenge(account, &challenge, &signature).map_err(|_| ApiError::Unauthorized)?;
    let token = format!("{}.{}", region.name, URL_SAFE_NO_PAD.encode(random::<32>()?));
    let lifetime = state.limits.session_secs;
    let expires = now().saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    region.meta.put_session(blake3::hash(token.as_bytes()).as_bytes(), account, device, expires).await?;
    Ok(Json(Session { token, expires_in: lifetime }))
}

/// Who may sign the entry a route appends.
#[derive(Debug, Clone, Copy)]
enum EntrySigner {
    /// The recovery key, adding a device (`POST /v1/recovery/{locator}/devices`).
    RecoveryKey,
    /// The signed-in device (`POST /v1/chain`).
    Session(DeviceId),
}

/// An entry that extends an account's verified chain.
struct CheckedEntry {
    /// The stored entry.
    body: Vec<u8>,
    /// What it says.
    entry: ChainEntry,
    /// The chain with it appended.
    chain: DeviceChain,
}

/// Verifies the stored chain of `account` and `body` appended to it.
/// CPU-bound (one signature per entry): run off the async workers.
fn check_entry(account: AccountId, stored: &[Vec<u8>], body: Vec<u8>, signer: EntrySigner) -> Result<CheckedEntry, ApiError> {
    if stored.len() >= MAX_CHAIN_ENTRIES {
        return Err(ApiError::BadRequest("the device chain has reached its maximum length"));
    }
    let mut chain = DeviceChain::verify(account, stored.iter().map(Vec::as_slice)).map_err(|e| {
        tracing::error!(account = %account, error = %e, "stored device chain does not verify");
        ApiError::Internal("stored device chain does not verify")
    })?;
    let (entry, _) = ChainEntry::parse(&body).map_err(|_| ApiError::BadRequest("malformed chain entry"))?;
    if entry.account != account {
        return Err(ApiError::BadRequest("chain entry of another account"));
    }
    let head = chain.head();
    if Some(entry.seq) != head.seq.checked_add(1) {
        return Err(ApiError::ChainMoved);
    }
    if entry.prev != head.id {
        return Err(ApiError::BadRequest("chain entry does not link to the chain's head"));
    }
    match signer {
        EntrySigner::RecoveryKey => {
            if entry.signer != Signer::RecoveryKey || !matches!(entry.change, ChainChange::AddDevice { .. }) {
                return Err(ApiError::BadRequest("expected a device addition signed by the recovery key"));
            }
        }
        EntrySigner::Session(device) => {
            if entry.signer != Signer::Device(device) {
                return Err(ApiError::BadRequest("the entry must be signed by the signed-in device"));
            }
        }
    }
    if let ChainChange::AddDevice { device, .. } = &entry.change {
        if chain.device(&device.id()).is_some() {
            return Err(ApiError::Conflict("device already in the chain"));
        }
    }
    let entry = chain.append(&body).map_err(|e| match (e, signer) {
        (keyhold_core::Error::BadSignature | keyhold_core::Error::UnknownAuthor, EntrySigner::RecoveryKey) => {
            ApiError::Unauthorized
        }
        (keyhold_core::Error::BadSignature | keyhold_core::Error::UnknownAuthor, EntrySigner::Session(_)) => {
            ApiError::BadRequest("the entry's signature does not verify")
        }
        _ => ApiError::BadRequest("the entry does not extend the device chain"),
    })?;
    Ok(CheckedEntry { body, entry, chain })
}

async fn verify_entry(
    meta: &MetaStore,
    account: AccountId,
    body: Vec<u8>,
    signer: EntrySigner,
) -> Result<CheckedEntry, ApiError> {
    let stored = meta.chain(account).await?;
    tokio::task::spawn_blocking(move || check_entry(account, &stored, body, signer))
        .await
        .map_err(|_| ApiError::Internal("chain verification task failed"))?
}

async fn recovery_info(State(state): Shared, ApiPath(locator): ApiPath<String>) -> Result<Json<RecoveryInfo>, ApiError> {
    let locator: [u8; 32] = parse_id(&locator, ObjectId::from_hex)?.0;
    let (region, row) = state.regions.of_locator(&locator).await?.ok_or(ApiError::NotFound)?;
    let chain = region.meta.chain(row.account).await?;
    Ok(Json(RecoveryInfo {
        account_id: row.account.to_hex(),
        recovery_wrap: B64(row.wrap),
        epoch: row.epoch,
        chain: chain.into_iter().map(B64).collect(),
    }))
}

async fn enroll_device(
    State(state): Shared,
    ApiPath(locator): ApiPath<String>,
    ApiJson(body): ApiJson<EnrollDevice>,
) -> Result<StatusCode, ApiError> {
    let locator: [u8; 32] = parse_id(&locator, ObjectId::from_hex)?.0;
    check_len(&body.chain_entry, MAX_CHAIN_ENTRY_LEN, "chain entry")?;
    check_len(&body.device_wrap, MAX_WRAP_LEN, "device wrap")?;
    let (region, row) = state.regions.of_locator(&locator).await?.ok_or(ApiError::NotFound)?;
    let checked = verify_entry(&region.meta, row.account, body.chain_entry.0, EntrySigner::RecoveryKey).await?;
    let ChainChange::AddDevice { device, .. } = &checked.entry.change else {
        return Err(ApiError::Internal("recovery entry is not a device addition"));
    };
    let public_keys = device.to_bytes();
    let append = ChainAppend {
        seq: checked.entry.seq,
        entry_id: checked.chain.head().id,
        body: &checked.body,
        add: Some(NewDevice {
            id: device.id(),
            public_keys: &public_keys,
            wrap: &body.device_wrap.0,
            epoch: checked.chain.epoch(),
        }),
        revoke: None,
        epoch: None,
        // Not charged: recovery must work on a full account. Bounded by
        // the chain's maximum length.
        charge: 0,
        charge_beyond_quota: false,
    };
    match region.meta.append_chain(row.account, &append, now()).await? {
        Appended::Appended => {}
        Appended::ChainMoved => return Err(ApiError::ChainMoved),
        _ => return Err(ApiError::Internal("unexpected outcome of a recovery enrollment")),
    }
    tracing::info!(account = %row.account, device = %device.id(), "device enrolled with the recovery key");
    Ok(StatusCode::CREATED)
}

async fn chain(who: Authed) -> Result<Json<DeviceChainEntries>, ApiError> {
    let entries = who.region.meta.chain(who.account).await?;
    Ok(Json(DeviceChainEntries { entries: entries.into_iter().map(B64).collect() }))
}

fn optional_wrap<'a>(wrap: Option<&'a B64>, what: &'static str) -> Result<Option<&'a [u8]>, ApiError> {
    wrap.map(|w| check_len(w, MAX_WRAP_LEN, what).map(|()| w.0.as_slice())).transpose()
}

async fn append_chain(who: Authed, ApiJson(body): ApiJson<AppendChainEntry>) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let AppendChainEntry { entry, device_wraps, recovery_wrap, recovery_locator, previous_root_wrap, collection_wraps } = body;
    check_len(&entry, MAX_CHAIN_ENTRY_LEN, "chain entry")?;
    if device_wraps.len() > MAX_DEVICE_WRAPS {
        return Err(ApiError::BadRequest("too many device wraps"));
    }
    if collection_wraps.len() > MAX_COLLECTION_WRAPS {
        return Err(ApiError::BadRequest("too many collection wraps"));
    }
    let mut devices = Vec::with_capacity(device_wraps.len());
    for w in &device_wraps {
        check_len(&w.wrap, MAX_WRAP_LEN, "device wrap")?;
        devices.push((parse_id(&w.id, DeviceId::from_hex)?, w.epoch, w.wrap.0.as_slice()));
    }
    let mut collections = Vec::with_capacity(collection_wraps.len());
    let mut seen = std::collections::BTreeSet::new();
    for w in &collection_wraps {
        check_len(&w.wrap, MAX_WRAP_LEN, "collection wrap")?;
        let id = parse_id(&w.id, CollectionId::from_hex)?;
        if !seen.insert((id, w.epoch)) {
            return Err(ApiError::BadRequest("two collection wraps for one collection epoch"));
        }
        collections.push((id, w.epoch, w.wrap.0.as_slice()));
    }
    let recovery_wrap = optional_wrap(recovery_wrap.as_ref(), "recovery wrap")?;
    let previous_root_wrap = optional_wrap(previous_root_wrap.as_ref(), "previous root wrap")?;
    let recovery_locator = recovery_locator.as_ref().map(|l| array::<32>(l, "recovery locator")).transpose()?;

    let checked = verify_entry(&who.region.meta, who.account, entry.0, EntrySigner::Session(who.device)).await?;
    let epoch = checked.entry.account_epoch;
    let charge =
        [len_u64(&checked.body), len_u64(recovery_wrap.unwrap_or_default()), len_u64(previous_root_wrap.unwrap_or_default())]
            .into_iter()
            .chain(devices.iter().map(|(_, _, w)| len_u64(w)))
            .chain(collections.iter().map(|(_, _, w)| len_u64(w)))
            .fold(0u64, u64::saturating_add);
    let public_keys;
    let mut append = ChainAppend {
        seq: checked.entry.seq,
        entry_id: checked.chain.head().id,
        body: &checked.body,
        add: None,
        revoke: None,
        epoch: None,
        charge,
        charge_beyond_quota: matches!(checked.entry.change, ChainChange::RevokeDevice { .. }),
    };
    match &checked.entry.change {
        ChainChange::Create { .. } => return Err(ApiError::BadRequest("an account is created only once")),
        ChainChange::AddDevice { device, .. } => {
            if recovery_wrap.is_some() || previous_root_wrap.is_some() || recovery_locator.is_some() || !collections.is_empty() {
                return Err(ApiError::BadRequest("a device addition takes only the new device's wrap"));
            }
            let [(id, wrap_epoch, wrap)] = devices.as_slice() else {
                return Err(ApiError::BadRequest("a device addition takes exactly one device wrap"));
            };
            if *id != device.id() || *wrap_epoch != epoch {
                return Err(ApiError::BadRequest("the device wrap must be the new device's, of the current epoch"));
            }
            public_keys = device.to_bytes();
            append.add = Some(NewDevice { id: *id, public_keys: &public_keys, wrap, epoch });
        }
        change @ (ChainChange::RevokeDevice { .. } | ChainChange::RotateRecovery { .. }) => {
            // Every device that stays enrolled gets the new root key, and no
            // other device does: none is left without its key (and no
            // revoked device is given it).
            let active: std::collections::BTreeSet<DeviceId> = checked.chain.active_devices().map(|d| d.public.id()).collect();
            let given: std::collections::BTreeSet<DeviceId> = devices.iter().map(|(id, _, _)| *id).collect();
            if given.len() != devices.len() || given != active || devices.iter().any(|(_, e, _)| *e != epoch) {
                return Err(ApiError::BadRequest(
                    "a new epoch needs one wrap of its root key for every enrolled device, and no other",
                ));
            }
            let (Some(recovery_wrap), Some(previous_root_wrap)) = (recovery_wrap, previous_root_wrap) else {
                return Err(ApiError::BadRequest("a new epoch needs a recovery wrap and a previous root wrap"));
            };
            let recovery = match change {
                ChainChange::RotateRecovery { recovery, .. } => {
                    let locator =
                        recovery_locator.ok_or(ApiError::BadRequest("a new recovery key needs its recovery locator"))?;
                    Some((locator, recovery_auth_key(recovery)?))
                }
                ChainChange::RevokeDevice { device, .. } => {
                    if recovery_locator.is_some() {
                        return Err(ApiError::BadRequest("a revocation keeps the recovery locator"));
                    }
                    append.revoke = Some(*device);
                    None
                }
                _ => None,
            };
            append.epoch = Some(NewEpoch {
                epoch,
                device_wraps: devices.iter().map(|(id, _, w)| (*id, *w)).collect(),
                recovery_wrap,
                previous_root_wrap,
                recovery,
                collection_wraps: std::mem::take(&mut collections),
            });
        }
    }
    match who.region.meta.append_chain(who.account, &append, now()).await? {
        Appended::Appended => {}
        Appended::ChainMoved => return Err(ApiError::ChainMoved),
        Appended::OverQuota => return Err(ApiError::QuotaExceeded),
        Appended::LocatorTaken => return Err(ApiError::Conflict("recovery locator in use")),
        Appended::CollectionWrapExists => return Err(ApiError::Conflict("a key for this collection epoch exists")),
    }
    match &checked.entry.change {
        ChainChange::AddDevice { device, .. } => {
            tracing::info!(account = %who.account, device = %device.id(), "device added to the chain");
        }
        ChainChange::RevokeDevice { device, .. } => {
            tracing::info!(account = %who.account, device = %device, epoch, "device revoked");
        }
        _ => tracing::info!(account = %who.account, epoch, "recovery key replaced"),
    }
    Ok(StatusCode::CREATED)
}

async fn keys(who: Authed) -> Result<Json<AccountKeys>, ApiError> {
    let row = who.region.meta.keys(who.account, who.device).await?;
    let device = who.device.to_hex();
    Ok(Json(AccountKeys {
        account_epoch: row.account_epoch,
        device_wraps: row
            .device_wraps
            .into_iter()
            .map(|(epoch, wrap)| WrapRecord { id: device.clone(), epoch, wrap: B64(wrap) })
            .collect(),
        collection_wraps: row
            .collection_wraps
            .into_iter()
            .map(|(id, epoch, wrap)| WrapRecord { id: id.to_hex(), epoch, wrap: B64(wrap) })
            .collect(),
        previous_root_wraps: row
            .previous_root_wraps
            .into_iter()
            .map(|(epoch, wrap)| WrapRecord { id: String::new(), epoch, wrap: B64(wrap) })
            .collect(),
    }))
}

/// A pairing slot name: exactly 4 upper-case Crockford base32 characters.
fn parse_slot(text: &str) -> Result<&str, ApiError> {
    if text.len() == PAIRING_SLOT_LEN && text.bytes().all(|b| SLOT_ALPHABET.contains(&b)) {
        Ok(text)
    } else {
        Err(ApiError::BadRequest("malformed pairing slot"))
    }
}

/// A pairing attempt id: 32 hex digits.
fn parse_attempt(text: &str) -> Result<[u8; 16], ApiError> {
    // Any parser of 16-byte hex ids will do.
    parse_id(text, AccountId::from_hex).map(|id| id.0)
}

fn attempt_record(row: AttemptRow) -> PairingAttempt {
    PairingAttempt {
        attempt: hex(&row.id),
        hello: B64(row.hello),
        reply: row.reply.map(B64),
        joiner: row.joiner.map(B64),
        welcome: row.welcome.map(B64),
    }
}

async fn open_slot(
    State(state): Shared,
    who: Authed,
    ApiPath(slot): ApiPath<String>,
) -> Result<(StatusCode, Json<PairingSlot>), ApiError> {
    who.may_write()?;
    let slot = parse_slot(&slot)?;
    let now = now();
    // Slot names are one namespace across regions: the joiner finds the
    // slot by name alone.
    if state.regions.of_slot(slot, now).await?.is_some_and(|r| r.name != who.region.name) {
        return Err(ApiError::Conflict("this pairing slot is in use; draw another code"));
    }
    match who
        .region
        .meta
        .open_pairing_slot(slot, who.account, who.device, now, now + PAIRING_SLOT_SECS, MAX_PAIRING_SLOTS)
        .await?
    {
        SlotOpened::Opened => Ok((StatusCode::CREATED, Json(PairingSlot { expires_in: PAIRING_SLOT_SECS.unsigned_abs() }))),
        SlotOpened::Taken => Err(ApiError::Conflict("this pairing slot is in use; draw another code")),
        SlotOpened::TooMany => Err(ApiError::Conflict("too many pairing slots open; close one first")),
    }
}

async fn close_slot(who: Authed, ApiPath(slot): ApiPath<String>) -> Result<StatusCode, ApiError> {
    let slot = parse_slot(&slot)?;
    if who.region.meta.close_pairing_slot(slot, who.account, who.device, now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn create_attempt(
    State(state): Shared,
    ApiPath(slot): ApiPath<String>,
    ApiJson(body): ApiJson<PairingHello>,
) -> Result<(StatusCode, Json<PairingAttemptId>), ApiError> {
    let slot = parse_slot(&slot)?;
    if body.message.0.len() != PAKE_MESSAGE_LEN {
        return Err(ApiError::BadRequest("a pairing message is 33 bytes"));
    }
    let attempt = random::<16>()?;
    // A slot that has taken its attempts answers as a closed one.
    let region = state.regions.of_slot(slot, now()).await?.ok_or(ApiError::NotFound)?;
    if !region.meta.add_pairing_attempt(slot, &attempt, &body.message.0, now(), MAX_PAIRING_ATTEMPTS).await? {
        return Err(ApiError::NotFound);
    }
    Ok((StatusCode::CREATED, Json(PairingAttemptId { attempt: hex(&attempt) })))
}

async fn list_attempts(who: Authed, ApiPath(slot): ApiPath<String>) -> Result<Json<PairingAttempts>, ApiError> {
    let slot = parse_slot(&slot)?;
    let rows = who.region.meta.pairing_attempts(slot, who.account, who.device, now()).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(PairingAttempts { attempts: rows.into_iter().map(attempt_record).collect() }))
}

async fn get_attempt(
    State(state): Shared,
    ApiPath((slot, attempt)): ApiPath<(String, String)>,
) -> Result<Json<PairingAttempt>, ApiError> {
    let slot = parse_slot(&slot)?;
    let attempt = parse_attempt(&attempt)?;
    let region = state.regions.of_slot(slot, now()).await?.ok_or(ApiError::NotFound)?;
    let row = region.meta.pairing_attempt(slot, &attempt, now()).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(attempt_record(row)))
}

async fn put_step(
    State(state): Shared,
    ApiPath((slot, attempt, step)): ApiPath<(String, String, String)>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let step = match step.as_str() {
        "reply" => PairingStepKind::Reply,
        "joiner" => PairingStepKind::Joiner,
        "welcome" => PairingStepKind::Welcome,
        _ => return Err(ApiError::BadRequest("unknown pairing step")),
    };
    // The inviter's steps need its session; the joiner's needs only the
    // attempt id, its capability.
    let slot = parse_slot(&slot)?;
    let attempt = parse_attempt(&attempt)?;
    let (owner, region) = match step {
        PairingStepKind::Joiner => (None, state.regions.of_slot(slot, now()).await?.ok_or(ApiError::NotFound)?),
        PairingStepKind::Reply | PairingStepKind::Welcome => {
            let who = authenticate(&state, req.headers()).await?;
            (Some((who.account, who.device)), who.region)
        }
    };
    let ApiJson(body) = ApiJson::<PairingStep>::from_request(req, &state).await?;
    check_len(&body.data, MAX_PAIRING_STEP, "pairing step")?;
    match region.meta.put_pairing_step(slot, &attempt, step, owner, &body.data.0, now()).await? {
        StepWritten::Written => Ok(StatusCode::CREATED),
        StepWritten::Same => Ok(StatusCode::OK),
        StepWritten::Conflict(why) => Err(ApiError::Conflict(why)),
        StepWritten::NotFound => Err(ApiError::NotFound),
    }
}

/// `GET /disclosures`: the public, signed log of compelled disclosures.
async fn disclosures(State(state): Shared) -> Result<Json<DisclosureLog>, ApiError> {
    let entries = state.regions.default_region().meta.disclosures().await?;
    Ok(Json(DisclosureLog {
        public_key: B64(state.regions.public_key().to_vec()),
        entries: entries
            .into_iter()
            .map(|(_, body, signature)| SignedDisclosure { body: B64(body), signature: B64(signature) })
            .collect(),
    }))
}

/// `GET /v1/events`: what the operator did to the caller's account.
async fn events(who: Authed) -> Result<Json<AccountEvents>, ApiError> {
    let events = who.region.meta.account_events(who.account).await?;
    Ok(Json(AccountEvents {
        events: events.into_iter().map(|(seq, kind, detail, at)| AccountEvent { seq, kind, detail, at }).collect(),
    }))
}

/// `GET /residency`: the deployment's signed statement of its regions.
async fn residency(State(state): Shared) -> Json<Residency> {
    Json(state.regions.residency().clone())
}

async fn usage(who: Authed) -> Result<Json<Usage>, ApiError> {
    let (used_bytes, quota_bytes) = who.region.meta.usage(who.account).await?;
    Ok(Json(Usage { used_bytes, quota_bytes, region: who.region.name.clone() }))
}

async fn put_collection_key(
    who: Authed,
    ApiPath((collection, epoch)): ApiPath<(String, u32)>,
    ApiJson(body): ApiJson<PutCollectionKey>,
) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    check_len(&body.wrap, 4096, "collection wrap")?;
    match who.region.meta.put_collection_wrap(who.account, collection, epoch, &body.wrap.0).await? {
        WrapFiled::Filed => Ok(StatusCode::CREATED),
        WrapFiled::Exists(existing) if existing == body.wrap.0 => Ok(StatusCode::OK),
        WrapFiled::Exists(_) => Err(ApiError::Conflict("a key for this collection epoch exists")),
        WrapFiled::OverQuota => Err(ApiError::QuotaExceeded),
    }
}

async fn head(State(state): Shared, who: Authed, ApiPath(collection): ApiPath<String>) -> Result<Json<HeadRecord>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let access = collection_owner(&state, &who, collection).await?;
    let (seq, id) = access.region.meta.head(access.owner, collection).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(HeadRecord { seq, id: HexId(id) }))
}

async fn revisions(
    State(state): Shared,
    who: Authed,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<RevisionsQuery>,
) -> Result<Json<Revisions>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let access = collection_owner(&state, &who, collection).await?;
    let mut list = access.region.meta.revisions(access.owner, collection, query.after, REVISIONS_PER_PAGE + 1).await?;
    let more = list.len() > usize::try_from(REVISIONS_PER_PAGE).unwrap_or(usize::MAX);
    list.truncate(usize::try_from(REVISIONS_PER_PAGE).unwrap_or(usize::MAX));
    Ok(Json(Revisions { revisions: list.into_iter().map(B64).collect(), more }))
}

/// Reads a request body within the upload slots that bound server memory.
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let _slot = state.upload_slots.acquire().await.map_err(|_| ApiError::BadRequest("server shutting down"))?;
    axum::body::to_bytes(body, state.limits.max_body_bytes).await.map_err(|_| ApiError::TooLarge)
}

/// An object upload as it arrived: its frames (never copied into one
/// buffer), hashed while they stream in, and a copy of its first bytes.
struct Upload {
    blob: BlobUpload,
    len: usize,
    id: ObjectId,
    head: Vec<u8>,
}

/// Receives an upload into `blobs` as it arrives (a local folder writes it
/// to disk meanwhile), hashing it on the way; nothing is visible until the
/// caller publishes it.
async fn receive(
    state: &AppState,
    blobs: &BlobStore,
    owner: AccountId,
    id: ObjectId,
    body: Body,
    head_len: usize,
) -> Result<Upload, ApiError> {
    let _slot = state.upload_slots.acquire().await.map_err(|_| ApiError::BadRequest("server shutting down"))?;
    let mut stream = body.into_data_stream();
    let mut blob = blobs.begin(owner, id).await?;
    let (mut len, mut head) = (0usize, Vec::with_capacity(head_len));
    let mut hasher = ObjectHasher::new();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|_| ApiError::BadRequest("upload body could not be read"))?;
        len = len.saturating_add(frame.len());
        if len > state.limits.max_body_bytes {
            return Err(ApiError::TooLarge);
        }
        hasher.update(&frame);
        let wanted = head_len.saturating_sub(head.len()).min(frame.len());
        head.extend_from_slice(frame.get(..wanted).unwrap_or_default());
        blob.write(frame).await?;
    }
    Ok(Upload { blob, len, id: hasher.finish(), head })
}

async fn commit_revision(
    State(state): Shared,
    who: Authed,
    ApiPath(collection): ApiPath<String>,
    req: Request,
) -> Result<Response, ApiError> {
    who.may_write()?;
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    // A shared collection's head is its owner's: members commit to it,
    // through the same compare-and-swap.
    let access = collection_owner(&state, &who, collection).await?;
    access.check_write().await?;
    let body = read_body(&state, req.into_body()).await?;
    if body.len() != keyhold_core::REVISION_LEN {
        return Err(ApiError::BadRequest("not a revision"));
    }
    let header = RevisionHeader::parse(&body).map_err(|_| ApiError::BadRequest("not a revision"))?;
    if header.collection != collection {
        return Err(ApiError::BadRequest("revision of another collection"));
    }
    let prev = match (header.seq, header.prev == keyhold_core::GENESIS_PREV) {
        (0, true) => None,
        (s, false) if s > 0 => Some(header.prev),
        _ => return Err(ApiError::BadRequest("revision links are inconsistent")),
    };
    let id = ObjectId::of(&body);
    match access.region.meta.commit_revision(access.owner, collection, header.seq, prev, id, &body, now()).await? {
        Commit::Committed => Ok((StatusCode::CREATED, Json(HeadRecord { seq: header.seq, id: HexId(id) })).into_response()),
        Commit::HeadMoved(current) => Err(ApiError::HeadMoved(current)),
        Commit::OverQuota => Err(ApiError::QuotaExceeded),
    }
}

async fn packs(State(state): Shared, who: Authed, ApiPath(collection): ApiPath<String>) -> Result<Json<Packs>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let access = collection_owner(&state, &who, collection).await?;
    let packs = access.region.meta.packs(access.owner, collection).await?;
    Ok(Json(Packs { packs: packs.into_iter().map(|(id, size)| PackRecord { id: HexId(id), size }).collect() }))
}

async fn put_pack(State(state): Shared, who: Authed, ApiPath(id): ApiPath<String>, req: Request) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let id = parse_id(&id, ObjectId::from_hex)?;
    store_pack(&state, who.account, &who.region, None, id, req.into_body()).await
}

/// Files pack `id` from `body` under `owner`'s account in `region` (the
/// owner's), charged to its quota: "Pack uploads" in protocol.md. With
/// `scope`, the pack must be of that collection.
pub(crate) async fn store_pack(
    state: &AppState,
    owner: AccountId,
    region: &Region,
    scope: Option<CollectionId>,
    id: ObjectId,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let upload = receive(state, &region.blobs, owner, id, body, PACK_PREFIX_LEN).await?;
    if upload.id != id {
        return Err(ApiError::DigestMismatch);
    }
    if keyhold_core::peek_type(&upload.head) != Some(ObjectType::Pack) || upload.len < PACK_PREFIX_LEN + PACK_TRAILER_LEN {
        return Err(ApiError::BadRequest("not a pack"));
    }
    let collection =
        upload.head.get(7..23).and_then(|b| b.try_into().ok()).map(CollectionId).ok_or(ApiError::BadRequest("not a pack"))?;
    if scope.is_some_and(|c| c != collection) {
        return Err(ApiError::BadRequest("a pack of another collection"));
    }
    let size = u64::try_from(upload.len).map_err(|_| ApiError::TooLarge)?;
    if region.meta.pack_size(owner, id).await?.is_some() {
        return Ok(StatusCode::OK);
    }
    // Refuse what cannot fit before writing it: an over-quota pack must not
    // stay behind as an uncounted blob (G5). `add_pack` checks again,
    // atomically, for concurrent uploads.
    let (used, quota) = region.meta.usage(owner).await?;
    if used.saturating_add(size) > quota {
        return Err(ApiError::QuotaExceeded);
    }
    // Blob first, then the row: a row never names a missing blob (F3). A
    // crash in between leaves an unreferenced blob, reclaimed later.
    upload.blob.publish().await?;
    match region.meta.add_pack(owner, collection, id, size, now()).await? {
        PackAdded::Added => Ok(StatusCode::CREATED),
        PackAdded::AlreadyThere => Ok(StatusCode::OK),
        PackAdded::OverQuota => Err(ApiError::QuotaExceeded),
    }
}

/// Parses a single `Range: bytes=…` header against an object of `size` bytes.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let spec = value.to_str().ok().and_then(|v| v.strip_prefix("bytes=")).ok_or(ApiError::BadRequest("range"))?;
    let (start, end) = spec.split_once('-').ok_or(ApiError::BadRequest("range"))?;
    let range = match (start.parse::<u64>().ok(), end.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e && s < size => s..e.saturating_add(1).min(size),
        (Some(s), None) if end.is_empty() && s < size => s..size,
        (None, Some(n)) if start.is_empty() && n > 0 => size.saturating_sub(n)..size,
        _ => return Err(ApiError::BadRequest("unsatisfiable range")),
    };
    Ok(Some(range))
}

async fn get_pack(who: Authed, ApiPath(id): ApiPath<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = parse_id(&id, ObjectId::from_hex)?;
    serve_pack(who.account, &who.region, None, id, &headers).await
}

/// Answers pack `id` of `owner`'s account in `region` (with `scope`, only
/// if filed under that collection), whole or the range `headers` ask for:
/// "Pack reads" in protocol.md.
pub(crate) async fn serve_pack(
    owner: AccountId,
    region: &Region,
    scope: Option<CollectionId>,
    id: ObjectId,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let size = match scope {
        Some(collection) => region.meta.pack_size_in(owner, collection, id).await?,
        None => region.meta.pack_size(owner, id).await?,
    };
    let size = size.ok_or(ApiError::NotFound)?;
    let range = parse_range(headers, size)?;
    let bytes = region.blobs.get(owner, id, range.clone()).await?;
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    if let Some(r) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Used by the accept loop to tag requests with the peer address.
pub fn tag_peer(peer: IpAddr) -> Extension<Peer> {
    Extension(Peer(peer))
}

/// Idle time after which the rate limiters forget a client.
pub const LIMITER_RETENTION: Duration = Duration::from_secs(600);

impl AppState {
    /// Drops rate-limiter state of clients idle for a while (bounded memory).
    pub fn forget_idle_clients(&self) {
        self.requests.retain_recent();
        self.auth_attempts.retain_recent();
    }
}
