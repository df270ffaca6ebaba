//! One error type for every handler: a stable code and status per variant,
//! a message that tells the client what to do, details only in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyhold_proto::{ErrorBody, ErrorDetail, HeadRecord, HexId, code};

use crate::blobs::BlobError;
use crate::store::StoreError;

/// What a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request asks for something this server does not offer (say, an
    /// unknown residency region); the message says what it offers.
    #[error("bad request: {0}")]
    BadRequestOwned(String),
    /// No valid session (or a failed authentication; all look alike).
    #[error("unauthorized")]
    Unauthorized,
    /// Not there, or not this account's: the two are indistinguishable (G1).
    #[error("not found")]
    NotFound,
    /// Exists already with other content.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Exists already with other content; the message names what (say,
    /// the handle an account holds already).
    #[error("conflict: {0}")]
    ConflictOwned(String),
    /// The operator suspended the account or deleted its data.
    #[error("account blocked: {0}")]
    AccountBlocked(&'static str),
    /// The collection head moved.
    #[error("head moved")]
    HeadMoved(Option<(u64, keyhold_proto::ObjectId)>),
    /// The device chain moved: the entry does not extend its current head.
    #[error("chain moved")]
    ChainMoved,
    /// The signed-in account may read this shared collection, not write it.
    #[error("read only")]
    ReadOnly,
    /// The member list moved: the entry does not extend its current head.
    #[error("members moved")]
    MembersMoved,
    /// A link that expired or was revoked (`410 Gone`).
    #[error("gone")]
    Gone,
    /// The body does not hash to its id.
    #[error("digest mismatch")]
    DigestMismatch,
    /// Over quota.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// Body too large.
    #[error("payload too large")]
    TooLarge,
    /// Rate limited; retry after this many seconds.
    #[error("rate limited")]
    RateLimited(u64),
    /// Metadata store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Blob store failure.
    #[error(transparent)]
    Blob(BlobError),
    /// The key directory's newest epoch is not in a checkpoint yet.
    #[error("not yet logged")]
    NotYetLogged,
    /// Any other server-side failure (details in the log).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => ApiError::NotFound,
            other => ApiError::Blob(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message): (StatusCode, &str, String) = match &self {
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, code::BAD_REQUEST, format!("malformed request: {why}")),
            ApiError::AccountBlocked(why) => (StatusCode::FORBIDDEN, code::ACCOUNT_BLOCKED, (*why).to_owned()),
            ApiError::BadRequestOwned(why) => (StatusCode::BAD_REQUEST, code::BAD_REQUEST, why.clone()),
            ApiError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, "authentication required or failed; sign in again".into())
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, code::NOT_FOUND, "no such object".into()),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, code::CONFLICT, format!("conflict: {why}")),
            ApiError::ConflictOwned(why) => (StatusCode::CONFLICT, code::CONFLICT, format!("conflict: {why}")),
            ApiError::HeadMoved(_) => {
                (StatusCode::CONFLICT, code::HEAD_MOVED, "the collection changed; fetch the new head and retry".into())
            }
            ApiError::ChainMoved => {
                (StatusCode::CONFLICT, code::CHAIN_MOVED, "the device chain changed; fetch it again, verify it and retry".into())
            }
            ApiError::ReadOnly => (
                StatusCode::FORBIDDEN,
                code::READ_ONLY,
                "this shared collection is read-only for this account: its owner admitted it as a reader".into(),
            ),
            ApiError::MembersMoved => {
                (StatusCode::CONFLICT, code::MEMBERS_MOVED, "the member list changed; fetch it again, verify it and retry".into())
            }
            ApiError::Gone => {
                (StatusCode::GONE, code::GONE, "this link has expired or was revoked by the person who shared it".into())
            }
            ApiError::DigestMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, code::DIGEST_MISMATCH, "the body does not hash to the id in the URL".into())
            }
            ApiError::QuotaExceeded => (
                StatusCode::INSUFFICIENT_STORAGE,
                code::QUOTA_EXCEEDED,
                "storage quota exceeded; delete data or ask for more".into(),
            ),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, code::TOO_LARGE, "request body too large".into()),
            ApiError::RateLimited(_) => {
                (StatusCode::TOO_MANY_REQUESTS, code::RATE_LIMITED, "too many requests; retry later".into())
            }
            ApiError::Store(e) => {
                tracing::error!(error = %chain(e), "metadata store failure");
                (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "internal error; retry later".into())
            }
            ApiError::Blob(e) => {
                tracing::error!(error = %chain(e), "blob store failure");
                (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "internal error; retry later".into())
            }
            ApiError::NotYetLogged => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::NOT_YET_LOGGED,
                "the key directory's newest epoch is not in a checkpoint yet; retry shortly".into(),
            ),
            ApiError::Internal(what) => {
                tracing::error!(error = what, "internal failure");
                (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, "internal error; retry later".into())
            }
        };
        let head = match &self {
            ApiError::HeadMoved(Some((seq, id))) => Some(HeadRecord { seq: *seq, id: HexId(*id) }),
            _ => None,
        };
        let mut response = (status, Json(ErrorBody { error: ErrorDetail { code: code.into(), message, head } })).into_response();
        if let ApiError::RateLimited(secs) = self {
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let ApiError::NotYetLogged = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// An error and its sources on one line, for the log (variants with a
/// source do not repeat it in their own message).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
