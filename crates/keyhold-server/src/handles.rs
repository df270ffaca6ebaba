//! Human handles (docs/spec/protocol.md, "Handles"): an account claims one
//! handle with a [`HandleClaim`] signed by one of its devices; the server
//! stores the claim in the claimant's region (table `handles`, migration 9)
//! and the key directory publishes its id under the handle's label
//! ([`DirectoryLabel::Handle`](keyhold_core::transparency::DirectoryLabel),
//! `transparency.rs`), so that who holds a handle is the log's word, the
//! same for everyone, and not this server's answer of the moment.
//!
//! One handle per account and one account per handle. The server checks
//! the claim against the claimant's device chain before storing it, so
//! that it stores only what an enrolled device signed; clients trust none
//! of it and check a handle's claim against the key directory.
//!
//! Handles are public to every signed-in account: finding an account by
//! its handle is what they are for (`GET /v1/handles/{handle}`).
//!
//! **Regions.** The primary key and the unique account of `handles` make a
//! claim atomic within one region. Across regions a claim first looks at
//! every region, stores its row, then looks at the other regions again and
//! withdraws its row (`409`) if another account's row for the handle
//! appeared meanwhile: of two accounts racing for one handle in two
//! regions, at most one keeps it (both may lose, and retry). What remains
//! of the race: the publisher may read one region's row before the other's
//! is stored and publish the claim that is withdrawn a moment later, so the
//! directory's history of the handle shows that claim for an epoch before
//! the winner's. A withdrawn or deleted claim is never taken out of the
//! directory: the label keeps its last published value until another claim
//! of the handle is published as its next version.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use keyhold_core::DeviceChain;
use keyhold_core::share::{HandleClaim, validate_handle};
use keyhold_proto::{AccountId, Bytes as B64, DeviceId, HandleRecord, PutHandle};
use sqlx::Row;

use crate::app::{ApiJson, ApiPath, AppState, Authed, now};
use crate::error::ApiError;
use crate::store::{MetaStore, StoreError, array};

type Shared = State<Arc<AppState>>;

/// Longest stored claim the server takes: a claim of the longest handle is
/// 144 bytes.
pub const MAX_CLAIM_LEN: usize = 256;
/// Longest body of `PUT /v1/handles/{handle}` (the claim in base64, in JSON).
const MAX_BODY: usize = 1024;

/// The routes, merged into the API router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/handles/{handle}", put(put_handle).get(get_handle)).layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A stored handle claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleRow {
    /// The handle.
    pub handle: String,
    /// The account holding it.
    pub account: AccountId,
    /// Its stored, signed claim.
    pub claim: Vec<u8>,
}

fn handle_row(r: &sqlx::any::AnyRow) -> Result<HandleRow, StoreError> {
    Ok(HandleRow { handle: r.get(0), account: AccountId(array(r.get(1), "account id")?), claim: r.get(2) })
}

impl MetaStore {
    /// The claim of `handle`, if this region holds it.
    pub async fn handle(&self, handle: &str) -> Result<Option<HandleRow>, StoreError> {
        sqlx::query("SELECT handle, account_id, claim FROM handles WHERE handle = $1")
            .bind(handle)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(handle_row)
            .transpose()
    }

    /// The handle `account` holds, if any (an account's handle is in its region).
    pub async fn handle_of(&self, account: AccountId) -> Result<Option<HandleRow>, StoreError> {
        sqlx::query("SELECT handle, account_id, claim FROM handles WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(handle_row)
            .transpose()
    }

    /// Stores a verified claim; `false` if this region holds the handle or
    /// a handle of the account already.
    pub async fn insert_handle(&self, handle: &str, account: AccountId, claim: &[u8], now: i64) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO handles (handle, account_id, claim, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(handle)
        .bind(account.as_bytes().as_slice())
        .bind(claim)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Removes the claim [`MetaStore::insert_handle`] stored, when another
    /// region turned out to hold the handle too.
    pub async fn withdraw_handle(&self, handle: &str, account: AccountId, claim: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM handles WHERE handle = $1 AND account_id = $2 AND claim = $3")
            .bind(handle)
            .bind(account.as_bytes().as_slice())
            .bind(claim)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every handle of this region with its claim, for the key directory's
    /// publisher.
    pub async fn kt_handles(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(sqlx::query("SELECT handle, claim FROM handles")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }
}

fn check_handle(handle: &str) -> Result<(), ApiError> {
    validate_handle(handle).map_err(|_| {
        ApiError::BadRequest("not a handle: 3 to 32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or a digit")
    })
}

const TAKEN: &str = "handle taken: another account holds it";

/// What the stored rows say of `who` claiming `handle` with `stored`:
/// `Some(200)` if it holds the handle with this very claim, an error if
/// the handle or the account is taken, `None` if the claim may be stored.
async fn held(state: &AppState, who: &Authed, handle: &str, stored: &[u8]) -> Result<Option<StatusCode>, ApiError> {
    for region in state.regions.all() {
        if let Some(row) = region.meta.handle(handle).await? {
            if row.account != who.account {
                return Err(ApiError::Conflict(TAKEN));
            }
            if row.claim != stored {
                return Err(ApiError::Conflict(
                    "this account holds this handle already, under another claim (GET /v1/handles/{handle} returns it)",
                ));
            }
            return Ok(Some(StatusCode::OK));
        }
    }
    if let Some(row) = who.region.meta.handle_of(who.account).await? {
        return Err(ApiError::ConflictOwned(format!(
            "this account already has handle {}: an account has one handle",
            row.handle
        )));
    }
    Ok(None)
}

/// `PUT /v1/handles/{handle}`: the signed-in account claims `handle`.
async fn put_handle(
    State(state): Shared,
    who: Authed,
    ApiPath(handle): ApiPath<String>,
    ApiJson(body): ApiJson<PutHandle>,
) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    check_handle(&handle)?;
    let PutHandle { claim: B64(stored) } = body;
    if stored.is_empty() || stored.len() > MAX_CLAIM_LEN {
        return Err(ApiError::BadRequest("handle claim empty or too long"));
    }
    let (claim, _) = HandleClaim::parse(&stored).map_err(|_| ApiError::BadRequest("malformed handle claim"))?;
    if claim.handle != handle {
        return Err(ApiError::BadRequest("the claim names another handle than the path"));
    }
    if claim.account != who.account || claim.device != who.device {
        return Err(ApiError::BadRequest("the claim must be signed by the signed-in device, for its account"));
    }
    let chain = who.region.meta.chain(who.account).await?;
    let account = who.account;
    let stored = tokio::task::spawn_blocking(move || {
        let chain = DeviceChain::verify(account, chain.iter().map(Vec::as_slice)).map_err(|e| {
            tracing::error!(account = %account, error = %e, "stored device chain does not verify");
            ApiError::Internal("stored device chain does not verify")
        })?;
        let enrolled = |id: &DeviceId| chain.device(id).filter(|d| d.revoked.is_none()).map(|d| d.public.clone());
        HandleClaim::verify(&stored, enrolled).map_err(|_| {
            ApiError::BadRequest(
                "the claim's signature does not verify: it must be signed by an enrolled device of the signed-in account",
            )
        })?;
        Ok::<_, ApiError>(stored)
    })
    .await
    .map_err(|_| ApiError::Internal("handle claim verification task failed"))??;
    if let Some(status) = held(&state, &who, &handle, &stored).await? {
        return Ok(status);
    }
    if !who.region.meta.insert_handle(&handle, who.account, &stored, now()).await? {
        // Another claim of the handle, or by the account, in this region
        // since `held` looked: answer as if it had been there before.
        return match held(&state, &who, &handle, &stored).await? {
            Some(status) => Ok(status),
            None => Err(ApiError::Conflict("another claim was stored meanwhile and is gone again; retry")),
        };
    }
    // Another region may have stored a claim of the handle since `held`
    // looked: then this one is withdrawn (see the module's documentation).
    for region in state.regions.all() {
        if region.name == who.region.name {
            continue;
        }
        if region.meta.handle(&handle).await?.is_some_and(|row| row.account != who.account) {
            who.region.meta.withdraw_handle(&handle, who.account, &stored).await?;
            return Err(ApiError::Conflict(TAKEN));
        }
    }
    tracing::info!(account = %who.account, handle = %handle, "handle claimed");
    Ok(StatusCode::CREATED)
}

/// `GET /v1/handles/{handle}`: the account holding `handle` and its claim,
/// to any signed-in account (handles are public by purpose).
async fn get_handle(
    State(state): Shared,
    _who: Authed,
    ApiPath(handle): ApiPath<String>,
) -> Result<Json<HandleRecord>, ApiError> {
    check_handle(&handle)?;
    for region in state.regions.all() {
        if let Some(row) = region.meta.handle(&handle).await? {
            return Ok(Json(HandleRecord { account: row.account.to_hex(), claim: B64(row.claim) }));
        }
    }
    Err(ApiError::NotFound)
}
