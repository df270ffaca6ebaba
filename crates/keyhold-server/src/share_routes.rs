//! Sharing a collection between accounts (docs/spec/protocol.md,
//! "Sharing"): contacts' device chains, member lists, key grants and their
//! answers, and who may reach a shared collection's data.
//!
//! The server checks every signed object it stores — a member-list entry
//! against the list and the owner's device chain, a grant against the
//! entry it is tied to, an answer against the member's chain — so that it
//! stores only what an enrolled device signed, and it enforces access from
//! what it verified. None of that is for the clients' safety: they verify
//! the member list, the grants and every revision themselves, and trust
//! nothing of this module (SECURITY A3, D2, D3).
//!
//! A shared collection lives where its owner lives: its member list, grants,
//! packs, revisions and head are the owner's rows, in the owner's region,
//! charged to the owner's quota. A member reaches them through the same
//! collection routes as its own collections ([`collection_owner`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use keyhold_core::share::{
    KeyGrant, MAX_GRANT_LEN, MAX_MEMBER_ENTRY_LEN, MemberChange, MemberEntry, MemberList, Role, SHARE_RESPONSE_LEN, ShareResponse,
};
use keyhold_core::{DeviceChain, DevicePublicKeys};
use keyhold_proto::{
    AccountId, AppendMember, Bytes as B64, CollectionId, DeviceChainEntries, DeviceId, GrantRecord, Grants, HexId, MemberLog,
    ObjectId, PostShareResponse, SharedCollection, SharedCollections,
};

use crate::app::{ApiJson, ApiPath, AppState, Authed, now, parse_id, serve_pack, store_pack};
use crate::error::ApiError;
use crate::regions::Region;
use crate::share_store::{Answered, GrantRow, MemberAppend, MemberAppended, MemberEffect, MemberState};

type Shared = State<Arc<AppState>>;

/// Most grants one member-list entry may bring (one per member at most).
const MAX_GRANTS_PER_ENTRY: usize = 1_000;
/// Longest member list. The core bounds it already (members, key epochs);
/// this only keeps a verification's cost bounded.
const MAX_MEMBER_ENTRIES: usize = 10_000;

/// The routes, merged into the API router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/accounts/{account}/chain", get(account_chain))
        .route("/v1/collections/{collection}/members", get(members).post(append_member))
        .route("/v1/collections/{collection}/packs/{id}", put(put_pack).get(get_pack))
        .route("/v1/grants", get(grants))
        .route("/v1/grants/{grant}/response", post(respond))
        .route("/v1/shared", get(shared))
}

/// Whose collection a request reaches, and where it is stored.
pub(crate) struct Access {
    /// The account whose rows and packs hold the collection.
    pub(crate) owner: AccountId,
    /// The owner's region.
    pub(crate) region: Arc<Region>,
    /// The session's role in another account's shared collection; `None`
    /// for a collection of the session's own account.
    role: Option<Role>,
}

impl Access {
    /// Refuses a write by a reader (`403 read_only`), and a member's write
    /// to a collection whose owner the operator suspended or emptied.
    pub(crate) async fn check_write(&self) -> Result<(), ApiError> {
        match self.role {
            None => Ok(()),
            Some(Role::Reader) => Err(ApiError::ReadOnly),
            Some(Role::Writer) => match self.region.meta.account_blocked(self.owner).await? {
                Some((false, false)) => Ok(()),
                Some((_, true)) => Err(ApiError::AccountBlocked(
                    "the server's operator deleted the data of this collection's owner; nothing can be written to it",
                )),
                Some((true, false)) => Err(ApiError::AccountBlocked(
                    "the server's operator suspended the account that owns this collection: it can be read, not changed",
                )),
                None => Err(ApiError::Internal("the owner of a shared collection is missing")),
            },
        }
    }
}

/// Resolves whose collection `collection` is for the session: another
/// account's, in that account's region, if the session's account is an
/// active member of it; `404` if the account was admitted to it but is
/// not active (invited, declined or removed: its access ends at once);
/// otherwise the session's own.
pub(crate) async fn collection_owner(state: &AppState, who: &Authed, collection: CollectionId) -> Result<Access, ApiError> {
    // An account's own collection stays its own: a list another account
    // made for the same id never redirects it.
    if who.region.meta.collection_in_use(collection, who.account, false).await? {
        return Ok(Access { owner: who.account, region: who.region.clone(), role: None });
    }
    for region in state.regions.all() {
        if let Some(m) = region.meta.membership(collection, who.account).await? {
            return match m.state {
                MemberState::Active => Ok(Access { owner: m.owner, region: region.clone(), role: Some(m.role) }),
                MemberState::Invited | MemberState::Declined | MemberState::Removed => Err(ApiError::NotFound),
            };
        }
    }
    Ok(Access { owner: who.account, region: who.region.clone(), role: None })
}

/// `GET /v1/accounts/{account}/chain`: any account's device chain, for a
/// client to look a contact's devices up and check them against key
/// transparency.
async fn account_chain(
    State(state): Shared,
    _who: Authed,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<DeviceChainEntries>, ApiError> {
    let account = parse_id(&account, AccountId::from_hex)?;
    let region = state.regions.of_account(account).await?.ok_or(ApiError::NotFound)?;
    let entries = region.meta.chain(account).await?;
    Ok(Json(DeviceChainEntries { entries: entries.into_iter().map(B64).collect() }))
}

/// The region holding `collection`'s member list and its owner, if any
/// region holds one.
async fn share_of(state: &AppState, collection: CollectionId) -> Result<Option<(Arc<Region>, AccountId)>, ApiError> {
    for region in state.regions.all() {
        if let Some(owner) = region.meta.share_owner(collection).await? {
            return Ok(Some((region.clone(), owner)));
        }
    }
    Ok(None)
}

/// `GET /v1/collections/{collection}/members`: the member list, for its
/// owner and its invited and active members; `404` for everyone else.
async fn members(State(state): Shared, who: Authed, ApiPath(collection): ApiPath<String>) -> Result<Json<MemberLog>, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let (region, owner) = if who.region.meta.share_owner(collection).await? == Some(who.account) {
        (who.region.clone(), who.account)
    } else {
        let mut found = None;
        for region in state.regions.all() {
            if let Some(m) = region.meta.membership(collection, who.account).await? {
                if matches!(m.state, MemberState::Invited | MemberState::Active) {
                    found = Some((region.clone(), m.owner));
                }
                break;
            }
        }
        found.ok_or(ApiError::NotFound)?
    };
    let entries = region.meta.share_entries(owner, collection).await?;
    if entries.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(MemberLog { owner: owner.to_hex(), entries: entries.into_iter().map(B64).collect() }))
}

/// A verified entry and its verified grants.
struct CheckedAppend {
    entry: MemberEntry,
    /// (grant id, member) of each grant, in the order sent.
    grants: Vec<(ObjectId, AccountId)>,
}

/// Maps a core error of a signed object the client sent to an answer.
fn refused(e: &keyhold_core::Error, signature: &'static str, other: &'static str) -> ApiError {
    match e {
        keyhold_core::Error::BadSignature | keyhold_core::Error::UnknownAuthor => ApiError::BadRequest(signature),
        _ => ApiError::BadRequest(other),
    }
}

/// Verifies `body` appended to the stored member list of `owner`'s
/// `collection`, and every grant against it. The stored entries were
/// verified when they were appended: they may be signed by any device the
/// owner's chain ever enrolled (one revoked since included); the new entry
/// and its grants only by a device enrolled now. CPU-bound (one signature
/// per entry and grant): run off the async workers.
fn check_append(
    owner: AccountId,
    collection: CollectionId,
    chain: &[Vec<u8>],
    stored: &[Vec<u8>],
    body: &[u8],
    grants: &[B64],
) -> Result<CheckedAppend, ApiError> {
    let chain = DeviceChain::verify(owner, chain.iter().map(Vec::as_slice)).map_err(|e| {
        tracing::error!(account = %owner, error = %e, "stored device chain does not verify");
        ApiError::Internal("stored device chain does not verify")
    })?;
    let any_device = |id: &DeviceId| chain.device(id).map(|d| d.public.clone());
    let enrolled = |id: &DeviceId| -> Option<DevicePublicKeys> {
        chain.device(id).filter(|d| d.revoked.is_none()).map(|d| d.public.clone())
    };
    const BAD_SIGNATURE: &str =
        "the entry's signature does not verify: it must be signed by an enrolled device of the signed-in account";
    const BAD_ENTRY: &str = "the entry does not extend the member list";
    let (list, entry) = if stored.is_empty() {
        let list = MemberList::genesis(collection, owner, body, enrolled).map_err(|e| refused(&e, BAD_SIGNATURE, BAD_ENTRY))?;
        let (entry, _) = MemberEntry::parse(body).map_err(|_| ApiError::BadRequest("malformed member list entry"))?;
        (list, entry)
    } else {
        let mut list = MemberList::verify(collection, owner, stored.iter().map(Vec::as_slice), any_device).map_err(|e| {
            tracing::error!(account = %owner, collection = %collection, error = %e, "stored member list does not verify");
            ApiError::Internal("stored member list does not verify")
        })?;
        let entry = list.append(body, enrolled).map_err(|e| refused(&e, BAD_SIGNATURE, BAD_ENTRY))?;
        (list, entry)
    };
    let head = list.head();
    let mut checked = Vec::with_capacity(grants.len());
    let mut seen = BTreeSet::new();
    for stored_grant in grants {
        let grant = KeyGrant::verify(&stored_grant.0, enrolled).map_err(|e| {
            refused(
                &e,
                "a grant's signature does not verify: it must be signed by an enrolled device of the signed-in account",
                "malformed grant",
            )
        })?;
        if grant.collection != collection || grant.owner != owner {
            return Err(ApiError::BadRequest("a grant of another collection or owner"));
        }
        if grant.entry != head {
            return Err(ApiError::BadRequest("a grant tied to another member list entry"));
        }
        if grant.key_epoch != list.key_epoch() {
            return Err(ApiError::BadRequest("a grant of another key epoch than the entry's"));
        }
        let for_member = match &entry.change {
            MemberChange::Create { .. } => false,
            MemberChange::Add { account, .. } => grant.member == *account,
            MemberChange::Remove { .. } | MemberChange::Rotate { .. } => list.is_member(&grant.member),
        };
        if !for_member {
            return Err(ApiError::BadRequest("a grant for an account the entry gives no keys to"));
        }
        if list.role(&grant.member) != Some(grant.role) {
            return Err(ApiError::BadRequest("a grant of another role than the member's"));
        }
        if !seen.insert(grant.member) {
            return Err(ApiError::BadRequest("two grants for one member"));
        }
        checked.push((ObjectId::of(&stored_grant.0), grant.member));
    }
    if matches!(entry.change, MemberChange::Add { .. }) && checked.len() != 1 {
        return Err(ApiError::BadRequest("an addition takes exactly one grant: the new member's"));
    }
    Ok(CheckedAppend { entry, grants: checked })
}

/// `POST /v1/collections/{collection}/members`: the signed-in account
/// appends an entry to the member list of its collection (creating it with
/// the first), with the grants tied to it.
async fn append_member(
    State(state): Shared,
    who: Authed,
    ApiPath(collection): ApiPath<String>,
    ApiJson(body): ApiJson<AppendMember>,
) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let AppendMember { entry: B64(body), grants } = body;
    if body.is_empty() || body.len() > MAX_MEMBER_ENTRY_LEN {
        return Err(ApiError::BadRequest("member list entry empty or too long"));
    }
    if grants.len() > MAX_GRANTS_PER_ENTRY {
        return Err(ApiError::BadRequest("too many grants"));
    }
    if grants.iter().any(|g| g.0.is_empty() || g.0.len() > MAX_GRANT_LEN) {
        return Err(ApiError::BadRequest("grant empty or too long"));
    }
    let (entry, _) = MemberEntry::parse(&body).map_err(|_| ApiError::BadRequest("malformed member list entry"))?;
    if entry.owner != who.account {
        return Err(ApiError::BadRequest("a member list entry of another owner than the signed-in account"));
    }
    if entry.collection != collection {
        return Err(ApiError::BadRequest("a member list entry of another collection"));
    }
    let create = matches!(entry.change, MemberChange::Create { .. });
    // Another account's collection under this id (ids are keyed hashes, but
    // device revocations list them): never turned into a share of this one.
    if create {
        for region in state.regions.all() {
            if region.meta.collection_in_use(collection, who.account, true).await? {
                return Err(ApiError::Conflict("this collection id is not available"));
            }
        }
    }
    // A collection id is shared by one account: another's list answers a
    // creation with 409, and anything else as if there were no list.
    let stored = match share_of(&state, collection).await? {
        Some((_, owner)) if owner != who.account => {
            if create {
                return Err(ApiError::Conflict("another account shares a collection with this id"));
            }
            Vec::new()
        }
        Some((region, _)) if region.name != who.region.name => {
            return Err(ApiError::Internal("a member list outside its owner's region"));
        }
        Some(_) => who.region.meta.share_entries(who.account, collection).await?,
        None => Vec::new(),
    };
    let id = ObjectId::of(&body);
    // The same entry again (a retry after a lost answer): done already.
    let at = usize::try_from(entry.seq).unwrap_or(usize::MAX);
    if stored.get(at).is_some_and(|s| ObjectId::of(s) == id) {
        return Ok(StatusCode::OK);
    }
    let prev = stored.last().map_or(keyhold_core::share::MEMBER_GENESIS_PREV, |s| ObjectId::of(s));
    if at != stored.len() || entry.prev != prev {
        return Err(ApiError::MembersMoved);
    }
    if stored.len() >= MAX_MEMBER_ENTRIES {
        return Err(ApiError::BadRequest("the member list has reached its maximum length"));
    }
    let chain = who.region.meta.chain(who.account).await?;
    let owner = who.account;
    let (checked, body, grants) = tokio::task::spawn_blocking(move || {
        check_append(owner, collection, &chain, &stored, &body, &grants).map(|c| (c, body, grants))
    })
    .await
    .map_err(|_| ApiError::Internal("member list verification task failed"))??;
    let effect = match &checked.entry.change {
        MemberChange::Create { .. } => MemberEffect::Create,
        MemberChange::Add { account, role, chain } => {
            // The new member must be an account of this server, and the
            // chain head the owner verified one of its chain.
            let region = state.regions.of_account(*account).await?.ok_or(ApiError::NotFound)?;
            if !region.meta.chain_has(*account, chain.seq, chain.id).await? {
                return Err(ApiError::BadRequest("the addition names a device chain head the member's account does not have"));
            }
            MemberEffect::Add { member: *account, role: *role }
        }
        MemberChange::Remove { account, .. } => MemberEffect::Remove { member: *account },
        MemberChange::Rotate { .. } => MemberEffect::Rotate,
    };
    let len = |b: &[u8]| u64::try_from(b.len()).unwrap_or(u64::MAX);
    let charge = grants.iter().map(|g| len(&g.0)).fold(len(&body), u64::saturating_add);
    let append = MemberAppend {
        owner,
        collection,
        seq: checked.entry.seq,
        entry_id: id,
        body: &body,
        effect,
        grants: checked.grants.iter().zip(&grants).map(|((id, member), g)| (*id, *member, g.0.as_slice())).collect(),
        cutoff: match checked.entry.change {
            MemberChange::Remove { cutoff, .. } => Some(cutoff),
            _ => None,
        },
        charge,
        charge_beyond_quota: matches!(effect, MemberEffect::Remove { .. }),
    };
    match who.region.meta.append_member(&append, now()).await? {
        MemberAppended::Appended => {}
        MemberAppended::Moved => return Err(ApiError::MembersMoved),
        MemberAppended::Taken => return Err(ApiError::Conflict("another account shares a collection with this id")),
        MemberAppended::OverQuota => return Err(ApiError::QuotaExceeded),
    }
    tracing::info!(account = %owner, collection = %collection, seq = checked.entry.seq, "member list entry appended");
    Ok(StatusCode::CREATED)
}

fn grant_record(row: GrantRow) -> GrantRecord {
    GrantRecord {
        id: HexId(row.id),
        collection: row.collection.to_hex(),
        owner: row.owner.to_hex(),
        grant: B64(row.body),
        response: row.response.map(B64),
    }
}

/// `GET /v1/grants`: every grant addressed to the signed-in account, in
/// every region, oldest first, each with its answer if given.
async fn grants(State(state): Shared, who: Authed) -> Result<Json<Grants>, ApiError> {
    let mut rows = Vec::new();
    for region in state.regions.all() {
        rows.extend(region.meta.grants_to(who.account).await?);
    }
    // Stable: each region's rows are in order already.
    rows.sort_by_key(|r| r.created_at);
    Ok(Json(Grants { grants: rows.into_iter().map(grant_record).collect() }))
}

/// `POST /v1/grants/{grant}/response`: a device of the grant's member
/// accepts or declines it, signed.
async fn respond(
    State(state): Shared,
    who: Authed,
    ApiPath(grant): ApiPath<String>,
    ApiJson(body): ApiJson<PostShareResponse>,
) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let grant = parse_id(&grant, ObjectId::from_hex)?;
    if body.response.0.len() != SHARE_RESPONSE_LEN {
        return Err(ApiError::BadRequest("not a share response"));
    }
    let mut found = None;
    for region in state.regions.all() {
        if let Some(row) = region.meta.grant_to(who.account, grant).await? {
            found = Some((region.clone(), row));
            break;
        }
    }
    let (region, row) = found.ok_or(ApiError::NotFound)?;
    let chain = who.region.meta.chain(who.account).await?;
    let (member, stored) = (who.account, body.response.0);
    let (response, stored) = tokio::task::spawn_blocking(move || {
        let chain = DeviceChain::verify(member, chain.iter().map(Vec::as_slice)).map_err(|e| {
            tracing::error!(account = %member, error = %e, "stored device chain does not verify");
            ApiError::Internal("stored device chain does not verify")
        })?;
        let enrolled = |id: &DeviceId| chain.device(id).filter(|d| d.revoked.is_none()).map(|d| d.public.clone());
        let response = ShareResponse::verify(&stored, enrolled).map_err(|e| {
            refused(
                &e,
                "the response's signature does not verify: it must be signed by an enrolled device of the signed-in account",
                "malformed share response",
            )
        })?;
        Ok::<_, ApiError>((response, stored))
    })
    .await
    .map_err(|_| ApiError::Internal("share response verification task failed"))??;
    if response.member != who.account || response.device != who.device {
        return Err(ApiError::BadRequest("the response must be signed by the signed-in device, for its account"));
    }
    if response.grant != grant || response.collection != row.collection || response.owner != row.owner {
        return Err(ApiError::BadRequest("the response answers another grant"));
    }
    match region.meta.answer_grant(&row, &stored, response.accept, now()).await? {
        Answered::Stored => {
            tracing::info!(account = %who.account, grant = %grant, accept = response.accept, "grant answered");
            Ok(StatusCode::CREATED)
        }
        Answered::Same => Ok(StatusCode::OK),
        Answered::Other => Err(ApiError::Conflict("this grant was answered already")),
    }
}

/// `GET /v1/shared`: the shared collections the signed-in account owns,
/// then those it is an active member of.
async fn shared(State(state): Shared, who: Authed) -> Result<Json<SharedCollections>, ApiError> {
    let owner = who.account.to_hex();
    let mut collections: Vec<SharedCollection> = who
        .region
        .meta
        .owned_shares(who.account)
        .await?
        .into_iter()
        .map(|c| SharedCollection { collection: c.to_hex(), owner: owner.clone() })
        .collect();
    for region in state.regions.all() {
        for (collection, owner) in region.meta.joined_shares(who.account).await? {
            collections.push(SharedCollection { collection: collection.to_hex(), owner: owner.to_hex() });
        }
    }
    Ok(Json(SharedCollections { collections }))
}

/// `PUT /v1/collections/{collection}/packs/{id}`: a pack of this
/// collection, filed under its owner's account.
async fn put_pack(
    State(state): Shared,
    who: Authed,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    who.may_write()?;
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let id = parse_id(&id, ObjectId::from_hex)?;
    let access = collection_owner(&state, &who, collection).await?;
    access.check_write().await?;
    store_pack(&state, access.owner, &access.region, Some(collection), id, req.into_body()).await
}

/// `GET /v1/collections/{collection}/packs/{id}`: a pack of this
/// collection, whole or a range.
async fn get_pack(
    State(state): Shared,
    who: Authed,
    ApiPath((collection, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let collection = parse_id(&collection, CollectionId::from_hex)?;
    let id = parse_id(&id, ObjectId::from_hex)?;
    let access = collection_owner(&state, &who, collection).await?;
    serve_pack(access.owner, &access.region, Some(collection), id, &headers).await
}
