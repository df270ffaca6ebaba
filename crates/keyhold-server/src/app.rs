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
use keyhold_core::{CHALLENGE_LEN, DevicePublicKeys, ObjectHasher, ObjectType, RevisionHeader, verify_enrollment};
use keyhold_proto::{
    AccountId, AccountKeys, Bytes as B64, Challenge, ChallengeRequest, CollectionId, CreateAccount, DeviceId, DeviceRecord,
    EnrollDevice, HeadRecord, HexId, ObjectId, PackRecord, Packs, PutCollectionKey, RecoveryInfo, Revisions, RevisionsQuery,
    Session, SessionRequest, Usage, WrapRecord,
};
use tokio::sync::Semaphore;
use tower_http::trace::TraceLayer;

use crate::blobs::BlobStore;
use crate::config::Limits;
use crate::error::ApiError;
use crate::store::{Commit, MetaStore, NewAccount, NewDevice, PackAdded, WrapFiled};

const CHALLENGE_SECS: i64 = 120;
const REVISIONS_PER_PAGE: u32 = 1000;

/// Shared by every handler.
pub struct AppState {
    pub(crate) meta: MetaStore,
    pub(crate) blobs: BlobStore,
    pub(crate) limits: Limits,
    upload_slots: Semaphore,
    requests: DefaultKeyedRateLimiter<IpAddr>,
    auth_attempts: DefaultKeyedRateLimiter<IpAddr>,
}

/// The client's address, set per connection by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

type Shared = State<Arc<AppState>>;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random32() -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out).map_err(|_| ApiError::BadRequest("server randomness unavailable"))?;
    Ok(out)
}

fn nonzero(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

fn parse_id<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T, ApiError> {
    // Ids are fixed-length hex: anything else (`..`, `/`, NUL, overlong) is refused here.
    if text.len() > 64 {
        return Err(ApiError::BadRequest("id too long"));
    }
    parse(text).ok_or(ApiError::BadRequest("malformed id"))
}

impl AppState {
    /// Builds the state over two stores.
    pub fn new(meta: MetaStore, blobs: BlobStore, limits: Limits) -> Self {
        let requests =
            RateLimiter::keyed(Quota::per_second(nonzero(limits.requests_per_second)).allow_burst(nonzero(limits.request_burst)));
        let auth_attempts =
            RateLimiter::keyed(Quota::per_minute(nonzero(limits.auth_per_minute)).allow_burst(nonzero(limits.auth_per_minute)));
        AppState {
            meta,
            blobs,
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
        .layer(middleware::from_fn_with_state(state.clone(), limit_auth));
    Router::new()
        .merge(auth_routes)
        .route("/v1/keys", get(keys))
        .route("/v1/usage", get(usage))
        .route("/v1/collections/{collection}/keys/{epoch}", put(put_collection_key))
        .route("/v1/collections/{collection}/head", get(head))
        .route("/v1/collections/{collection}/revisions", get(revisions).post(commit_revision))
        .route("/v1/collections/{collection}/packs", get(packs))
        .route("/v1/packs/{id}", put(put_pack).get(get_pack))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), limit_requests))
        .route("/healthz", get(|| async { "ok" }))
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
    account: AccountId,
    #[allow(dead_code)] // kept for audit logs and per-device limits
    device: DeviceId,
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let (account, device) = state.meta.session(&hash, now()).await?.ok_or(ApiError::Unauthorized)?;
        Ok(Authed { account, device })
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

async fn create_account(State(state): Shared, ApiJson(body): ApiJson<CreateAccount>) -> Result<StatusCode, ApiError> {
    let account = parse_id(&body.account_id, AccountId::from_hex)?;
    let device = device_keys(&body.device_public_keys.0)?;
    let auth_key = array::<32>(&body.recovery_auth_key, "recovery auth key")?;
    let locator = array::<32>(&body.recovery_locator, "recovery locator")?;
    check_len(&body.device_certificate, 64, "device certificate")?;
    check_len(&body.device_wrap, 4096, "device wrap")?;
    check_len(&body.recovery_wrap, 4096, "recovery wrap")?;
    device
        .verify_account_creation(account, &auth_key, &locator, &array(&body.signature, "signature")?)
        .map_err(|_| ApiError::Unauthorized)?;
    let new = NewAccount {
        account,
        locator,
        recovery_auth_key: auth_key,
        quota_bytes: state.limits.default_quota_bytes,
        recovery_wrap: &body.recovery_wrap.0,
        device: NewDevice {
            id: device.id(),
            public_keys: &body.device_public_keys.0,
            certificate: &body.device_certificate.0,
            wrap: &body.device_wrap.0,
            epoch: 0,
        },
    };
    if !state.meta.create_account(&new, now()).await? {
        return Err(ApiError::Conflict("account exists"));
    }
    tracing::info!(account = %account, "account created");
    Ok(StatusCode::CREATED)
}

async fn new_challenge(state: &AppState) -> Result<Challenge, ApiError> {
    let challenge = random32()?;
    state.meta.put_challenge(&challenge, now() + CHALLENGE_SECS).await?;
    Ok(Challenge { challenge: B64(challenge.to_vec()), expires_in: CHALLENGE_SECS.unsigned_abs() })
}

async fn challenge(State(state): Shared, ApiJson(body): ApiJson<ChallengeRequest>) -> Result<Json<Challenge>, ApiError> {
    // The answer is the same whether or not the account exists (G1).
    parse_id(&body.account_id, AccountId::from_hex)?;
    parse_id(&body.device_id, DeviceId::from_hex)?;
    Ok(Json(new_challenge(&state).await?))
}

async fn session(State(state): Shared, ApiJson(body): ApiJson<SessionRequest>) -> Result<Json<Session>, ApiError> {
    let account = parse_id(&body.account_id, AccountId::from_hex)?;
    let device = parse_id(&body.device_id, DeviceId::from_hex)?;
    let challenge = array::<CHALLENGE_LEN>(&body.challenge, "challenge")?;
    let signature = array::<64>(&body.signature, "signature")?;
    if !state.meta.take_challenge(&challenge, now()).await? {
        return Err(ApiError::Unauthorized);
    }
    let keys = state.meta.device_keys(account, device).await?.ok_or(ApiError::Unauthorized)?;
    device_keys(&keys)?.verify_challenge(account, &challenge, &signature).map_err(|_| ApiError::Unauthorized)?;
    let token = URL_SAFE_NO_PAD.encode(random32()?);
    let lifetime = state.limits.session_secs;
    let expires = now().saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    state.meta.put_session(blake3::hash(token.as_bytes()).as_bytes(), account, device, expires).await?;
    Ok(Json(Session { token, expires_in: lifetime }))
}

async fn recovery_info(State(state): Shared, ApiPath(locator): ApiPath<String>) -> Result<Json<RecoveryInfo>, ApiError> {
    let locator: [u8; 32] = parse_id(&locator, ObjectId::from_hex)?.0;
    let row = state.meta.recovery(&locator).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(RecoveryInfo {
        account_id: row.account.to_hex(),
        recovery_wrap: B64(row.wrap),
        epoch: row.epoch,
        challenge: new_challenge(&state).await?.challenge,
    }))
}

async fn enroll_device(
    State(state): Shared,
    ApiPath(locator): ApiPath<String>,
    ApiJson(body): ApiJson<EnrollDevice>,
) -> Result<StatusCode, ApiError> {
    let locator: [u8; 32] = parse_id(&locator, ObjectId::from_hex)?.0;
    let device = device_keys(&body.device_public_keys.0)?;
    let challenge = array::<CHALLENGE_LEN>(&body.challenge, "challenge")?;
    let signature = array::<64>(&body.signature, "signature")?;
    check_len(&body.device_certificate, 64, "device certificate")?;
    check_len(&body.device_wrap, 4096, "device wrap")?;
    let row = state.meta.recovery(&locator).await?.ok_or(ApiError::NotFound)?;
    if !state.meta.take_challenge(&challenge, now()).await? {
        return Err(ApiError::Unauthorized);
    }
    verify_enrollment(&row.auth_key, row.account, &device, &challenge, &signature).map_err(|_| ApiError::Unauthorized)?;
    let new = NewDevice {
        id: device.id(),
        public_keys: &body.device_public_keys.0,
        certificate: &body.device_certificate.0,
        wrap: &body.device_wrap.0,
        epoch: row.epoch,
    };
    if !state.meta.add_device(row.account, &new, now()).await? {
        return Err(ApiError::Conflict("device already enrolled"));
    }
    tracing::info!(account = %row.account, device = %device.id(), "device enrolled with the recovery key");
    Ok(StatusCode::CREATED)
}

async fn keys(State(state): Shared, who: Authed) -> Result<Json<AccountKeys>, ApiError> {
    let row = state.meta.keys(who.account).await?;
    Ok(Json(AccountKeys {
        account_epoch: row.account_epoch,
        devices: row
            .devices
            .into_iter()
            .map(|(pk, cert, created_at)| DeviceRecord { public_keys: B64(pk), certificate: B64(cert), created_at })
            .collect(),
        device_wraps: row
            .device_wraps
            .into_iter()
            .map(|(id, epoch, wrap)| WrapRecord { id: id.to_hex(), epoch, wrap: B64(wrap) })
            .collect(),
        collection_wraps: row
            .collection_wraps
            .into_iter()
            .map(|(id, epoch, wrap)| WrapRecord { id: id.to_hex(), epoch, wrap: B64(wrap) })
            .collect(),
    }))
}

async fn usage(State(state): Shared, who: Authed) -> Result<Json<Usage>, ApiError> {
    let (used_bytes, quota_bytes) = state.meta.usage(who.account).await?;
    Ok(Json(Usage { used_bytes, quota_bytes }))
}

async fn put_collection_key(
    State(state): Shared,
    who: Authed,
    ApiPath((collection, epoch)): ApiPath<(String, u32)>,
    ApiJson(body): ApiJson<PutCollectionKey>,
) -> Result<StatusCode, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    check_len(&body.wrap, 4096, "collection wrap")?;
    match state.meta.put_collection_wrap(who.account, collection, epoch, &body.wrap.0).await? {
        WrapFiled::Filed => Ok(StatusCode::CREATED),
        WrapFiled::Exists(existing) if existing == body.wrap.0 => Ok(StatusCode::OK),
        WrapFiled::Exists(_) => Err(ApiError::Conflict("a key for this collection epoch exists")),
        WrapFiled::OverQuota => Err(ApiError::QuotaExceeded),
    }
}

async fn head(State(state): Shared, who: Authed, ApiPath(collection): ApiPath<String>) -> Result<Json<HeadRecord>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let (seq, id) = state.meta.head(who.account, collection).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(HeadRecord { seq, id: HexId(id) }))
}

async fn revisions(
    State(state): Shared,
    who: Authed,
    ApiPath(collection): ApiPath<String>,
    ApiQuery(query): ApiQuery<RevisionsQuery>,
) -> Result<Json<Revisions>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let mut list = state.meta.revisions(who.account, collection, query.after, REVISIONS_PER_PAGE + 1).await?;
    let more = list.len() > usize::try_from(REVISIONS_PER_PAGE).unwrap_or(usize::MAX);
    list.truncate(usize::try_from(REVISIONS_PER_PAGE).unwrap_or(usize::MAX));
    Ok(Json(Revisions { revisions: list.into_iter().map(B64).collect(), more }))
}

/// Reads a request body within the upload slots that bound server memory.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let _slot = state.upload_slots.acquire().await.map_err(|_| ApiError::BadRequest("server shutting down"))?;
    axum::body::to_bytes(body, state.limits.max_body_bytes).await.map_err(|_| ApiError::TooLarge)
}

/// An object upload as it arrived: its frames (never copied into one
/// buffer), hashed while they stream in, and a copy of its first bytes.
struct Upload {
    frames: Vec<Bytes>,
    len: usize,
    id: ObjectId,
    head: Vec<u8>,
}

async fn receive(state: &AppState, body: Body, head_len: usize) -> Result<Upload, ApiError> {
    let _slot = state.upload_slots.acquire().await.map_err(|_| ApiError::BadRequest("server shutting down"))?;
    let mut stream = body.into_data_stream();
    let (mut frames, mut len, mut head) = (Vec::new(), 0usize, Vec::with_capacity(head_len));
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
        frames.push(frame);
    }
    Ok(Upload { frames, len, id: hasher.finish(), head })
}

async fn commit_revision(
    State(state): Shared,
    who: Authed,
    ApiPath(collection): ApiPath<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
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
    match state.meta.commit_revision(who.account, collection, header.seq, prev, id, &body, now()).await? {
        Commit::Committed => Ok((StatusCode::CREATED, Json(HeadRecord { seq: header.seq, id: HexId(id) })).into_response()),
        Commit::HeadMoved(current) => Err(ApiError::HeadMoved(current)),
        Commit::OverQuota => Err(ApiError::QuotaExceeded),
    }
}

async fn packs(State(state): Shared, who: Authed, ApiPath(collection): ApiPath<String>) -> Result<Json<Packs>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let packs = state.meta.packs(who.account, collection).await?;
    Ok(Json(Packs { packs: packs.into_iter().map(|(id, size)| PackRecord { id: HexId(id), size }).collect() }))
}

async fn put_pack(State(state): Shared, who: Authed, ApiPath(id): ApiPath<String>, req: Request) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ObjectId::from_hex)?;
    let upload = receive(&state, req.into_body(), PACK_PREFIX_LEN).await?;
    if upload.id != id {
        return Err(ApiError::DigestMismatch);
    }
    if keyhold_core::peek_type(&upload.head) != Some(ObjectType::Pack) || upload.len < PACK_PREFIX_LEN + PACK_TRAILER_LEN {
        return Err(ApiError::BadRequest("not a pack"));
    }
    let collection =
        upload.head.get(7..23).and_then(|b| b.try_into().ok()).map(CollectionId).ok_or(ApiError::BadRequest("not a pack"))?;
    let size = u64::try_from(upload.len).map_err(|_| ApiError::TooLarge)?;
    if state.meta.pack_size(who.account, id).await?.is_some() {
        return Ok(StatusCode::OK);
    }
    // Refuse what cannot fit before writing it: an over-quota pack must not
    // stay behind as an uncounted blob (G5). `add_pack` checks again,
    // atomically, for concurrent uploads.
    let (used, quota) = state.meta.usage(who.account).await?;
    if used.saturating_add(size) > quota {
        return Err(ApiError::QuotaExceeded);
    }
    // Blob first, then the row: a row never names a missing blob (F3). A
    // crash in between leaves an unreferenced blob, reclaimed later.
    state.blobs.put(who.account, id, upload.frames).await?;
    match state.meta.add_pack(who.account, collection, id, size, now()).await? {
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

async fn get_pack(
    State(state): Shared,
    who: Authed,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ObjectId::from_hex)?;
    let size = state.meta.pack_size(who.account, id).await?.ok_or(ApiError::NotFound)?;
    let range = parse_range(&headers, size)?;
    let bytes = state.blobs.get(who.account, id, range.clone()).await?;
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
