//! Link shares (docs/spec/links.md, "HTTP"): an account files a sealed
//! link object (`POST /v1/links`), lists its links, revokes one; anyone
//! holding a link's URL fetches the object (`GET /v1/links/{id}/object`,
//! no session) and opens it with the key in the URL's fragment, which never
//! reaches this server (SECURITY E1). `GET /l/{id}` serves the static page
//! that opens a link in a browser; its script and styles are embedded in
//! the binary and served under `/l/assets/`.
//!
//! The server reads only the object's cleartext header (its id and shape)
//! and keeps the expiry it is told: it answers `410 Gone` once the link
//! expired or was revoked (the opener also checks the encrypted expiry),
//! and deletes the object on revocation, or lazily once the link expired.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use keyhold_core::{LinkHeader, LinkId, ObjectId};
use keyhold_proto::links::{CreateLinkQuery, LinkCreated, LinkRecord, Links};

use crate::app::{ApiPath, ApiQuery, AppState, Authed};
use crate::blobs::BlobError;
use crate::error::ApiError;
use crate::links_store::{LinkAdded, LinkRow};
use crate::regions::Region;

type Shared = State<Arc<AppState>>;

/// The longest a link may live: a year and a day (clients offer a year).
const MAX_LINK_SECS: i64 = 366 * 86_400;

/// The page, its script and styles, and the vendored Argon2id (hash-wasm
/// 4.13.0's `dist/argon2.umd.min.js`, MIT, sha256 acfe11b0…5f03; its
/// licence is served beside it).
const PAGE: &str = include_str!("../assets/link/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    ("link.js", "text/javascript; charset=utf-8", include_str!("../assets/link/link.js")),
    ("link.css", "text/css; charset=utf-8", include_str!("../assets/link/link.css")),
    ("hash-wasm-argon2.umd.min.js", "text/javascript; charset=utf-8", include_str!("../assets/link/hash-wasm-argon2.umd.min.js")),
    ("LICENSE-hash-wasm", "text/plain; charset=utf-8", include_str!("../assets/link/LICENSE-hash-wasm")),
];

/// The page's Content-Security-Policy: its own script and styles only (no
/// inline script), WebAssembly for Argon2id, requests to this origin only,
/// no frames, forms or base URL.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes, merged into the API router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/links", post(create).get(list))
        .route("/v1/links/{id}", axum::routing::delete(revoke))
        .route("/v1/links/{id}/object", get(object))
        .route("/l/{id}", get(page))
        .route("/l/assets/{name}", get(asset))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn link_id(text: &str) -> Result<LinkId, ApiError> {
    // Fixed-length hex: `..`, `/`, NUL or anything overlong is refused here (G6).
    if text.len() != 32 {
        return Err(ApiError::BadRequest("malformed link id"));
    }
    LinkId::from_hex(text).ok_or(ApiError::BadRequest("malformed link id"))
}

/// Headers every link answer carries: never cached, never sniffed, no
/// referrer leaves the page.
fn harden(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
}

fn static_response(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    harden(headers);
    response
}

/// Deletes the objects of `who`'s links that expired: they stop counting
/// against the quota without the user having to revoke them.
async fn purge_expired(who: &Authed, now: i64) -> Result<(), ApiError> {
    for link in who.region.meta.expired_links(who.account, now).await? {
        if let Some(Some(object)) = who.region.meta.release_link(who.account, link, false, now).await? {
            who.region.blobs.delete(who.account, object).await?;
        }
    }
    Ok(())
}

async fn create(
    State(state): Shared,
    who: Authed,
    ApiQuery(query): ApiQuery<CreateLinkQuery>,
    req: Request,
) -> Result<(StatusCode, axum::Json<LinkCreated>), ApiError> {
    who.may_write()?;
    // Read first (within the upload slots and the body limit), so that a
    // refusal below reaches a client still sending rather than a closed
    // connection.
    let body = crate::app::read_body(&state, req.into_body()).await?;
    let now = now();
    if query.expires_at <= now || query.expires_at > now.saturating_add(MAX_LINK_SECS) {
        return Err(ApiError::BadRequest("expires_at must be in the future and at most 366 days away"));
    }
    let size = u64::try_from(body.len()).map_err(|_| ApiError::TooLarge)?;
    let header = LinkHeader::parse(&body).map_err(|_| ApiError::BadRequest("not a link object"))?;
    if !header.plausible_len(size) {
        return Err(ApiError::BadRequest("not a link object"));
    }
    let link = header.id;
    let object = ObjectId::of(&body);
    purge_expired(&who, now).await?;
    // Link ids are unique across regions: a public fetch looks in each.
    for region in state.regions.all() {
        if let Some(existing) = region.meta.link(link).await? {
            // The same object again (a retry after a lost answer) is fine.
            if existing.account == who.account && existing.object == Some(object) {
                return Ok((StatusCode::OK, axum::Json(LinkCreated { link_id: link.to_hex() })));
            }
            return Err(ApiError::Conflict("a link with this id exists; make a new one"));
        }
    }
    // Refuse what cannot fit before writing it (G5); `add_link` charges
    // the quota again, atomically.
    let (used, quota) = who.region.meta.usage(who.account).await?;
    if used.saturating_add(size) > quota {
        return Err(ApiError::QuotaExceeded);
    }
    // Blob first, then the row: a row never names a missing blob.
    who.region.blobs.put(who.account, object, vec![body]).await?;
    match who.region.meta.add_link(who.account, link, object, size, query.expires_at, now).await? {
        LinkAdded::Added => {
            tracing::info!(account = %who.account, "link created");
            Ok((StatusCode::CREATED, axum::Json(LinkCreated { link_id: link.to_hex() })))
        }
        // The object names this link id, which no other row names: it is
        // this request's alone, so it goes again.
        LinkAdded::Exists => {
            who.region.blobs.delete(who.account, object).await?;
            Err(ApiError::Conflict("a link with this id exists; make a new one"))
        }
        LinkAdded::OverQuota => {
            who.region.blobs.delete(who.account, object).await?;
            Err(ApiError::QuotaExceeded)
        }
    }
}

fn record(row: &LinkRow) -> LinkRecord {
    LinkRecord {
        link_id: row.link.to_hex(),
        size: if row.object.is_some() { row.size } else { 0 },
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

async fn list(who: Authed) -> Result<axum::Json<Links>, ApiError> {
    if who.may_write().is_ok() {
        purge_expired(&who, now()).await?;
    }
    let rows = who.region.meta.links(who.account).await?;
    Ok(axum::Json(Links { links: rows.iter().map(record).collect() }))
}

async fn revoke(who: Authed, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    let link = link_id(&id)?;
    // Revoking is allowed to a suspended account: it only takes away.
    match who.region.meta.release_link(who.account, link, true, now()).await? {
        // Not there, or another account's: indistinguishable (G1).
        None => Err(ApiError::NotFound),
        Some(object) => {
            if let Some(object) = object {
                who.region.blobs.delete(who.account, object).await?;
            }
            tracing::info!(account = %who.account, "link revoked");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// The region and row of `link`, in whichever region holds it.
async fn find(state: &AppState, link: LinkId) -> Result<Option<(Arc<Region>, LinkRow)>, ApiError> {
    for region in state.regions.all() {
        if let Some(row) = region.meta.link(link).await? {
            return Ok(Some((region.clone(), row)));
        }
    }
    Ok(None)
}

async fn object(State(state): Shared, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let link = link_id(&id).map_err(|_| ApiError::NotFound)?;
    let (region, row) = find(&state, link).await?.ok_or(ApiError::NotFound)?;
    let object = match row.object {
        Some(object) if row.is_live(now()) => object,
        _ => return Err(ApiError::Gone),
    };
    // Streamed from the blob store: a large link is never held in memory.
    let (size, stream) = match region.blobs.stream(row.account, object).await {
        Ok(found) => found,
        // Revoked between the row and the read.
        Err(BlobError::NotFound) => return Err(ApiError::Gone),
        Err(e) => return Err(e.into()),
    };
    let mut response = Response::new(Body::from_stream(stream.map_err(std::io::Error::other)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(len) = HeaderValue::from_str(&size.to_string()) {
        headers.insert(header::CONTENT_LENGTH, len);
    }
    harden(headers);
    Ok(response)
}

async fn page(ApiPath(id): ApiPath<String>) -> Response {
    // The same static page for every link: it reads the id from its own
    // address, and the key from the fragment, which never arrives here.
    match link_id(&id) {
        Ok(_) => static_response("text/html; charset=utf-8", PAGE),
        Err(_) => ApiError::NotFound.into_response(),
    }
}

async fn asset(ApiPath(name): ApiPath<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => static_response(content_type, body),
        None => ApiError::NotFound.into_response(),
    }
}
