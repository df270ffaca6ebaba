//! The key transparency routes (`/kt/...`, docs/spec/transparency.md,
//! "HTTP"). The log (checkpoints, entries, tiles, consistency proofs) and
//! the directory's audit proofs are public, for witnesses, auditors and
//! monitors; directory lookups need a session, so that only account holders
//! learn whether an id is in the directory.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyhold_proto::{Bytes as B64, KtAudited, KtAuditorCosignature, KtConsistency, KtEntries, KtInfo, KtLabel, KtProof};
use serde::Deserialize;

use crate::app::{ApiJson, ApiPath, ApiQuery, AppState, Authed};
use crate::error::ApiError;
use crate::transparency::{KtServerError, ProveError, Transparency};

type Shared = State<Arc<AppState>>;

/// Most entries one `GET /kt/entries` returns.
const MAX_ENTRIES: u64 = 1000;

/// The routes, merged into the API router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/kt/info", get(info))
        .route("/kt/checkpoint", get(checkpoint))
        .route("/kt/consistency", get(consistency))
        .route("/kt/entries", get(entries))
        .route("/kt/tile/{*path}", get(tile))
        .route("/kt/lookup", post(lookup))
        .route("/kt/history", post(history))
        .route("/kt/audit/{epoch}", get(audit))
        .route("/kt/audited", get(audited).post(add_audited))
}

fn kt(state: &AppState) -> Result<&Arc<Transparency>, ApiError> {
    state.transparency.as_ref().ok_or(ApiError::NotFound)
}

impl From<KtServerError> for ApiError {
    fn from(e: KtServerError) -> Self {
        match e {
            KtServerError::Store(e) => ApiError::Store(e),
            other => {
                tracing::error!(error = %other, "key transparency failure");
                ApiError::Internal("key transparency")
            }
        }
    }
}

fn octets(content_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

async fn info(State(state): Shared) -> Result<axum::Json<KtInfo>, ApiError> {
    Ok(axum::Json(kt(&state)?.info()))
}

async fn checkpoint(State(state): Shared) -> Result<Response, ApiError> {
    let note = kt(&state)?.checkpoint().await?.ok_or(ApiError::NotYetLogged)?;
    Ok(octets("text/plain; charset=utf-8", note))
}

#[derive(Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

async fn consistency(State(state): Shared, ApiQuery(range): ApiQuery<Range>) -> Result<axum::Json<KtConsistency>, ApiError> {
    let proof = kt(&state)?.consistency(range.from, range.to).await?.ok_or(ApiError::NotFound)?;
    Ok(axum::Json(KtConsistency { proof: proof.iter().map(|h| B64(h.to_vec())).collect() }))
}

async fn entries(State(state): Shared, ApiQuery(range): ApiQuery<Range>) -> Result<axum::Json<KtEntries>, ApiError> {
    let entries = kt(&state)?.entries(range.from, range.to, MAX_ENTRIES).await?;
    Ok(axum::Json(KtEntries { entries: entries.into_iter().map(B64).collect() }))
}

async fn tile(State(state): Shared, ApiPath(path): ApiPath<String>) -> Result<Response, ApiError> {
    if path.len() > 64 {
        return Err(ApiError::BadRequest("tile path too long"));
    }
    let data = kt(&state)?.tile(&path).await?.ok_or(ApiError::NotFound)?;
    Ok(octets("application/octet-stream", data))
}

async fn prove(state: &AppState, body: &KtLabel, history: bool) -> Result<axum::Json<KtProof>, ApiError> {
    if body.label.0.len() > 64 {
        return Err(ApiError::BadRequest("label too long"));
    }
    match kt(state)?.prove(&body.label.0, history).await {
        Ok(Some(proof)) => Ok(axum::Json(proof)),
        Ok(None) => Err(ApiError::NotFound),
        Err(ProveError::BadLabel) => Err(ApiError::BadRequest("malformed directory label")),
        Err(ProveError::NotYetLogged) => Err(ApiError::NotYetLogged),
        Err(ProveError::Server(e)) => Err(e.into()),
    }
}

async fn lookup(_who: Authed, State(state): Shared, ApiJson(body): ApiJson<KtLabel>) -> Result<axum::Json<KtProof>, ApiError> {
    prove(&state, &body, false).await
}

async fn history(_who: Authed, State(state): Shared, ApiJson(body): ApiJson<KtLabel>) -> Result<axum::Json<KtProof>, ApiError> {
    prove(&state, &body, true).await
}

async fn audit(State(state): Shared, ApiPath(epoch): ApiPath<u64>) -> Result<Response, ApiError> {
    let proof = kt(&state)?.audit(epoch).await?.ok_or(ApiError::NotFound)?;
    Ok(octets("application/octet-stream", proof))
}

async fn audited(State(state): Shared) -> Result<axum::Json<KtAudited>, ApiError> {
    let notes = kt(&state)?.audited().await?;
    Ok(axum::Json(KtAudited { checkpoints: notes.into_iter().map(B64).collect() }))
}

async fn add_audited(State(state): Shared, ApiJson(body): ApiJson<KtAuditorCosignature>) -> Result<Response, ApiError> {
    if body.line.len() > 512 {
        return Err(ApiError::BadRequest("cosignature line too long"));
    }
    if kt(&state)?.add_audit(body.size, &body.line).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::BadRequest("not a cosignature of that checkpoint by a configured auditor"))
    }
}
