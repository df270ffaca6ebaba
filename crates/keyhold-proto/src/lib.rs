//! The HTTP protocol between Keyhold clients and servers (spec:
//! `docs/spec/protocol.md`). Version 1 lives under `/v1/`. Bodies are JSON;
//! byte strings are standard base64, ids lower-case hex. Stored objects
//! (packs, revisions) travel as raw `application/octet-stream` bodies.
//!
//! Everything here is data: both sides validate what they receive.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

pub use keyhold_core::{AccountId, CollectionId, DeviceId, ObjectId};

pub mod links;

/// Prefix of every versioned route.
pub const API_PREFIX: &str = "/v1";
/// The header that carries a session token.
pub const AUTHORIZATION: &str = "authorization";

/// Base64 byte strings in JSON bodies.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl core::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map(Bytes).map_err(serde::de::Error::custom)
    }
}

impl Bytes {
    /// The bytes as a fixed-size array, if the length matches.
    pub fn array<const N: usize>(&self) -> Option<[u8; N]> {
        self.0.as_slice().try_into().ok()
    }
}

/// `POST /v1/accounts`: create an account with its first device.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateAccount {
    /// New account id (hex).
    pub account_id: String,
    /// The device chain's creation entry, signed by the first device; it
    /// carries the device's and the recovery key's public keys.
    pub chain_entry: Bytes,
    /// The account root key wrapped to that device, epoch 0.
    pub device_wrap: Bytes,
    /// Where to file the recovery wrap.
    pub recovery_locator: Bytes,
    /// The account root key wrapped under the recovery key.
    pub recovery_wrap: Bytes,
    /// The residency region that is to hold every row and pack of the
    /// account (`GET /residency` lists them); absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `POST /v1/auth/challenge`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// Account id (hex).
    pub account_id: String,
    /// Device id (hex).
    pub device_id: String,
}

/// A fresh, single-use challenge.
#[derive(Debug, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes.
    pub challenge: Bytes,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// `POST /v1/auth/session`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Account id (hex).
    pub account_id: String,
    /// Device id (hex).
    pub device_id: String,
    /// The challenge received.
    pub challenge: Bytes,
    /// The device's signature over it.
    pub signature: Bytes,
}

/// A session token; send as `Authorization: Bearer <token>`.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// Opaque token.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Session([REDACTED], {}s)", self.expires_in)
    }
}

/// `GET /v1/recovery/{locator}`: what a recovering device needs first.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecoveryInfo {
    /// Account id (hex).
    pub account_id: String,
    /// The recovery wrap of the current account key epoch: an Argon2id
    /// recovery wrap, or an HPKE wrap to the recovery key's device keys.
    pub recovery_wrap: Bytes,
    /// That epoch.
    pub epoch: u32,
    /// The account's device chain, first entry first.
    pub chain: Vec<Bytes>,
}

/// `POST /v1/recovery/{locator}/devices`: enroll a device with the recovery key.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollDevice {
    /// The chain entry adding the device, signed by the recovery key.
    pub chain_entry: Bytes,
    /// The root key of the current epoch wrapped to the new device.
    pub device_wrap: Bytes,
}

/// A wrapped key filed by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrapRecord {
    /// Device (device wraps) or collection (collection wraps), hex.
    pub id: String,
    /// Key epoch.
    pub epoch: u32,
    /// The stored wrap.
    pub wrap: Bytes,
}

/// `GET /v1/keys`: the account's wrapped keys (all opaque to the server).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountKeys {
    /// Current account key epoch (the server's claim; the chain decides).
    pub account_epoch: u32,
    /// Root key wraps to the signed-in device, one per epoch it was given.
    pub device_wraps: Vec<WrapRecord>,
    /// Collection key wraps (`id` = collection, `epoch` = collection epoch).
    pub collection_wraps: Vec<WrapRecord>,
    /// Root key of epoch `epoch - 1` wrapped under that of `epoch`
    /// (`id` is empty).
    pub previous_root_wraps: Vec<WrapRecord>,
}

/// `GET /v1/chain`: the signed-in account's device chain.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceChainEntries {
    /// Stored entries, first entry first.
    pub entries: Vec<Bytes>,
}

/// `POST /v1/chain`: append an entry signed by the signed-in device, with
/// the wraps it needs, in one step.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppendChainEntry {
    /// The stored entry.
    pub entry: Bytes,
    /// Root key wraps: for an added device, its wrap of the current epoch;
    /// for an entry that starts an epoch, one for every device that stays
    /// enrolled (`id` = device, `epoch` = the new epoch).
    pub device_wraps: Vec<WrapRecord>,
    /// For an entry that starts an epoch: the new root key wrapped for the
    /// recovery key (HPKE to its device keys after a revocation, Argon2id
    /// under the new recovery key after a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_wrap: Option<Bytes>,
    /// For a recovery-key rotation: where to file the new recovery wrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_locator: Option<Bytes>,
    /// For an entry that starts an epoch: the previous root key wrapped
    /// under the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_root_wrap: Option<Bytes>,
    /// New collection key epochs, wrapped under the new root key.
    #[serde(default)]
    pub collection_wraps: Vec<WrapRecord>,
}

/// `PUT /v1/pairings/{slot}`: an enrolled device opens a pairing slot.
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingSlot {
    /// Seconds until the slot closes.
    pub expires_in: u64,
}

/// `POST /v1/pairings/{slot}/attempts`: a new device's first SPAKE2 message.
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingHello {
    /// The joiner's SPAKE2 message (33 bytes).
    pub message: Bytes,
}

/// The relay's answer to [`PairingHello`].
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingAttemptId {
    /// The attempt (32 hex digits, random; the joiner's handle).
    pub attempt: String,
}

/// `PUT /v1/pairings/{slot}/attempts/{attempt}/{step}`, step one of
/// `reply` (inviter: its SPAKE2 message ‖ key confirmation), `joiner`
/// (joiner: its key confirmation ‖ sealed introduction) and `welcome`
/// (inviter: sealed welcome). Each step is written once.
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingStep {
    /// Opaque bytes.
    pub data: Bytes,
}

/// One attempt as the relay holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingAttempt {
    /// Its id.
    pub attempt: String,
    /// The joiner's SPAKE2 message.
    pub hello: Bytes,
    /// The inviter's reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Bytes>,
    /// The joiner's confirmation and introduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joiner: Option<Bytes>,
    /// The inviter's welcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Bytes>,
}

/// `GET /v1/pairings/{slot}/attempts`: the slot owner's view.
#[derive(Debug, Serialize, Deserialize)]
pub struct PairingAttempts {
    /// Every attempt, oldest first.
    pub attempts: Vec<PairingAttempt>,
}

/// `PUT /v1/collections/{id}/keys/{epoch}`: file a collection key wrap (once).
#[derive(Debug, Serialize, Deserialize)]
pub struct PutCollectionKey {
    /// The wrap.
    pub wrap: Bytes,
}

/// A collection's head.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeadRecord {
    /// Sequence number.
    pub seq: u64,
    /// Revision object id (hex).
    pub id: HexId,
}

/// A 32-byte id in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexId(pub ObjectId);

impl Serialize for HexId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_hex())
    }
}

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ObjectId::from_hex(&text).map(HexId).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// `GET /v1/collections/{id}/revisions?after=N`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Revisions {
    /// Stored revisions, in order.
    pub revisions: Vec<Bytes>,
    /// Whether more follow (ask again with `after` = last seq).
    pub more: bool,
}

/// Query of the revision listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevisionsQuery {
    /// Only revisions with a greater sequence number (all when absent).
    pub after: Option<u64>,
}

/// A pack of a collection.
#[derive(Debug, Serialize, Deserialize)]
pub struct PackRecord {
    /// Object id.
    pub id: HexId,
    /// Stored size in bytes.
    pub size: u64,
}

/// `GET /v1/collections/{id}/packs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Packs {
    /// Every pack filed under the collection.
    pub packs: Vec<PackRecord>,
}

/// Usage and quota.
#[derive(Debug, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes stored.
    pub used_bytes: u64,
    /// Quota in bytes.
    pub quota_bytes: u64,
    /// The residency region that holds the account.
    #[serde(default)]
    pub region: String,
}

/// `GET /residency`: a statement of where data is kept, signed by the
/// deployment's Ed25519 key. The signature covers the statement's bytes as
/// sent (`statement`, a JSON [`ResidencyStatement`]), prefixed by
/// [`RESIDENCY_CONTEXT`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Residency {
    /// A JSON [`ResidencyStatement`], exactly as signed.
    pub statement: Bytes,
    /// Ed25519 signature of `RESIDENCY_CONTEXT || statement`.
    pub signature: Bytes,
    /// The deployment's Ed25519 public key.
    pub public_key: Bytes,
}

/// `GET /disclosures`: the deployment's public log of compelled
/// disclosures, every entry signed by the deployment key and linked to the
/// one before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisclosureLog {
    /// The deployment's Ed25519 public key (the one `GET /residency` names).
    pub public_key: Bytes,
    /// Oldest first.
    pub entries: Vec<SignedDisclosure>,
}

/// One log entry as stored and signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedDisclosure {
    /// A JSON [`Disclosure`], exactly as signed.
    pub body: Bytes,
    /// Ed25519 signature of `DISCLOSURE_CONTEXT || body`.
    pub signature: Bytes,
}

/// Domain separation of disclosure log signatures.
pub const DISCLOSURE_CONTEXT: &[u8] = b"keyhold disclosure log v1\n";

/// What one compelled disclosure handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// Position in the log, from 0.
    pub seq: u64,
    /// BLAKE3 of the previous entry's body followed by its signature (hex);
    /// 64 zeros for the first.
    pub prev: String,
    /// When, seconds since the Unix epoch.
    pub at: u64,
    /// The account (its pseudonymous id, hex), unless the deployment logs
    /// counts only.
    pub account: Option<String>,
    /// How many accounts (1 per entry today).
    pub accounts: u64,
    /// The legal basis the operator states.
    pub legal_basis: String,
    /// Rows and packs handed over.
    pub objects: u64,
    /// Bytes handed over (packs and rows).
    pub bytes: u64,
}

/// `GET /v1/events`: administrative actions on the caller's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountEvents {
    /// Oldest first.
    pub events: Vec<AccountEvent>,
}

/// One administrative action on an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountEvent {
    /// Its number, per account, from 0.
    pub seq: u64,
    /// `disclose` or `quota`.
    pub kind: String,
    /// What it did, in words.
    pub detail: String,
    /// When, seconds since the Unix epoch.
    pub at: i64,
}

/// Domain separation of residency statement signatures.
pub const RESIDENCY_CONTEXT: &[u8] = b"keyhold residency statement v1\n";

/// What a deployment states about where it keeps data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidencyStatement {
    /// The server software and version.
    pub server: String,
    /// When the statement was made, seconds since the Unix epoch.
    pub issued_at: u64,
    /// The region a new account goes to when it names none.
    pub default_region: String,
    /// Every region, in the order the operator configured them.
    pub regions: Vec<RegionStatement>,
}

/// One region of a [`ResidencyStatement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStatement {
    /// Its name (what `keyhold init --region` takes).
    pub name: String,
    /// Where its metadata is kept (engine and host, never credentials).
    pub metadata: String,
    /// Where its packs are kept (store and host or bucket).
    pub blobs: String,
}

/// Every error answer: a stable machine code and a human message.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `head_moved`, `quota_exceeded`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// For `head_moved`: the current head.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub head: Option<HeadRecord>,
}

/// `GET /kt/info`: what the server says its log and directory are. A client
/// pins these from its transparency policy, never from this answer; the
/// answer helps an operator write that policy and a witness its first
/// state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtInfo {
    /// The log's origin line.
    pub origin: String,
    /// The log's verifier key (C2SP signed-note).
    pub log_vkey: String,
    /// The directory's VRF public key.
    pub vrf_public_key: Bytes,
    /// Seconds between directory epochs.
    pub epoch_secs: u64,
}

/// `POST /kt/lookup` and `POST /kt/history`: which directory label.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtLabel {
    /// The label (`docs/spec/transparency.md`, "Directory labels").
    pub label: Bytes,
}

/// A directory proof, with everything needed to tie it to a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtProof {
    /// The signed checkpoint (with its cosignatures) the proof is under.
    pub checkpoint: Bytes,
    /// The directory epoch of the proof.
    pub epoch: u64,
    /// The index of that epoch's log entry.
    pub entry_index: u64,
    /// The log entry.
    pub entry: Bytes,
    /// Its inclusion proof in the checkpoint's tree.
    pub inclusion: Vec<Bytes>,
    /// akd's lookup or history proof (protobuf).
    pub proof: Bytes,
}

/// `GET /kt/consistency?from=A&to=B`: a consistency proof between two tree sizes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtConsistency {
    /// The proof's hashes.
    pub proof: Vec<Bytes>,
}

/// `GET /kt/entries?from=A&to=B`: log entries `A..B` (at most 1000).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtEntries {
    /// The entries, in order.
    pub entries: Vec<Bytes>,
}

/// `POST /kt/audited`: an auditor's cosignature of the checkpoint of `size`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtAuditorCosignature {
    /// The tree size of the checkpoint the auditor verified.
    pub size: u64,
    /// The cosignature line (`— <name> <base64>`).
    pub line: String,
}

/// `GET /kt/audited`: for each auditor, the newest checkpoint it cosigned,
/// with its cosignature added.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KtAudited {
    /// Signed checkpoints.
    pub checkpoints: Vec<Bytes>,
}

/// `GET /v1/collections/{id}/members`: a shared collection's member list
/// (owner, members and invited accounts may read it; others get 404).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberLog {
    /// The owning account (hex).
    pub owner: String,
    /// Stored member-list entries, first entry first.
    pub entries: Vec<Bytes>,
}

/// `POST /v1/collections/{id}/members`: the owner appends one member-list
/// entry and, in the same step, the key grants it needs (the new member's
/// for an `Add`; every remaining member's for an entry that starts a key
/// epoch).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppendMember {
    /// The stored entry, signed by a device of the signed-in account.
    pub entry: Bytes,
    /// Stored key grants tied to this entry.
    #[serde(default)]
    pub grants: Vec<Bytes>,
}

/// One key grant addressed to the signed-in account, with its answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant's object id (hex).
    pub id: HexId,
    /// The collection (hex).
    pub collection: String,
    /// The owning account (hex).
    pub owner: String,
    /// The stored grant.
    pub grant: Bytes,
    /// The member's signed answer, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Bytes>,
}

/// `GET /v1/grants`: every key grant addressed to the signed-in account,
/// oldest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grants {
    /// The grants.
    pub grants: Vec<GrantRecord>,
}

/// `POST /v1/grants/{id}/response`: a device of the grant's member accepts
/// or declines it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PostShareResponse {
    /// The stored, signed response.
    pub response: Bytes,
}

/// `GET /v1/shared`: the shared collections the signed-in account owns or
/// is an (accepted) member of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedCollections {
    /// The collections.
    pub collections: Vec<SharedCollection>,
}

/// One shared collection as the server records it (its claim: clients
/// verify the member list).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharedCollection {
    /// The collection (hex).
    pub collection: String,
    /// The owning account (hex).
    pub owner: String,
}

/// `PUT /v1/handles/{handle}`: the signed-in account claims a handle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutHandle {
    /// The stored claim, signed by the signed-in device.
    pub claim: Bytes,
}

/// `GET /v1/handles/{handle}`: who claimed a handle (the server's claim:
/// clients check it against the key directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HandleRecord {
    /// The claiming account (hex).
    pub account: String,
    /// The stored, signed claim.
    pub claim: Bytes,
}

/// Stable error codes.
pub mod code {
    /// Malformed request.
    pub const BAD_REQUEST: &str = "bad_request";
    /// Missing or expired session.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Nothing there (or not yours: the two look alike).
    pub const NOT_FOUND: &str = "not_found";
    /// The collection head moved since the client read it.
    pub const HEAD_MOVED: &str = "head_moved";
    /// Already exists with other content.
    pub const CONFLICT: &str = "conflict";
    /// Body too large.
    pub const TOO_LARGE: &str = "too_large";
    /// Over quota.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// Too many requests; see `Retry-After`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The body does not hash to the id in the URL.
    pub const DIGEST_MISMATCH: &str = "digest_mismatch";
    /// The device chain moved since the client read it.
    pub const CHAIN_MOVED: &str = "chain_moved";
    /// The operator suspended the account, or deleted its data: it may be
    /// read, not changed (its event log, `GET /v1/events`, says why).
    pub const ACCOUNT_BLOCKED: &str = "account_blocked";
    /// The key directory has not yet logged the epoch asked for: retry
    /// after `Retry-After`.
    pub const NOT_YET_LOGGED: &str = "not_yet_logged";
    /// The signed-in account may read this collection but not write it
    /// (a reader of a shared collection).
    pub const READ_ONLY: &str = "read_only";
    /// The member list moved since the client read it.
    pub const MEMBERS_MOVED: &str = "members_moved";
    /// The link expired or was revoked.
    pub const GONE: &str = "gone";
    /// Server-side failure.
    pub const INTERNAL: &str = "internal";
}
