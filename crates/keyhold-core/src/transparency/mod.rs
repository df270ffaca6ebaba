//! Key transparency (spec: `docs/spec/transparency.md`): the pure part.
//!
//! The server keeps an akd verifiable key directory whose labels are
//! accounts (their device chain head) and collections (their committed
//! head), and appends every akd epoch root to a C2SP transparency log
//! (tlog-checkpoint, signed-note, RFC 6962 hashing). Witnesses cosign the
//! log's checkpoints (tlog-cosignature `cosignature/v1`) only when they
//! extend what they saw before (tlog-witness), auditors cosign once they have
//! checked that every akd epoch step was append-only, and clients accept a
//! key only with a lookup proof against an epoch root that is in a
//! checkpoint with a quorum of witness cosignatures, consistent with the last
//! checkpoint they saw and fresh.
//!
//! This module holds the formats and every check (`TRANSPARENCY.md` K1–K7,
//! K10): no I/O, no clock, no randomness of its own. Callers pass bytes and
//! times. Server-side helpers ([`MerkleLog`], [`tile_data`],
//! [`witness_add_checkpoint`]) are here too, so that the log, the witness
//! and the client share one implementation of every format.

mod akd;
mod entry;
mod evidence;
mod note;
mod tree;
mod witness;

pub use akd::{decode_audit_proof, encode_audit_proof, encode_history_proof, encode_lookup_proof, verify_history, verify_lookup};
pub use entry::{
    DirectoryLabel, DirectoryValue, ENTRY_HEADER, EPOCH_ENTRY_LEN, HEARTBEAT_ENTRY_LEN, KeyholdDomain, KtConfig, LogEntry,
    check_epoch, check_epoch_order, check_version,
};
pub use evidence::{Evidence, evidence, parse_evidence};
pub use note::{
    Checkpoint, CosignatureVerifier, NoteKey, Policy, VerifiedCheckpoint, add_signature_lines, check_audited, check_fresh,
    cosign, sign_checkpoint, verify_checkpoint, verify_cosignature_line, verify_log_signature,
};
pub use tree::{
    MAX_PROOF_LEN, MerkleLog, TILE_WIDTH, check_consistency, check_inclusion, consistency_proof, inclusion_proof, leaf_hash,
    parse_tile_path, tile_data, tree_root,
};
pub use witness::{AddCheckpoint, WitnessRefusal, WitnessState, witness_add_checkpoint};

/// Everything a key transparency check can refuse. Variants name what failed;
/// the `K…` ids are those of `TRANSPARENCY.md`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KtError {
    /// Bytes that do not parse as the format they claim to be.
    #[error("malformed key transparency data: {0}")]
    Malformed(&'static str),
    /// A pinned policy that cannot be used (bad key, bad quorum, duplicates).
    #[error("invalid key transparency policy: {0}")]
    BadPolicy(&'static str),
    /// The checkpoint carries no valid signature by the pinned log key (K1).
    #[error("checkpoint is not signed by the pinned log key")]
    BadLogSignature,
    /// The checkpoint names another log than the pinned one (K1).
    #[error("checkpoint is for another log (origin {found:?})")]
    UnknownOrigin {
        /// The origin line found in the checkpoint.
        found: String,
    },
    /// A pinned witness or auditor key signed, but its signature is invalid
    /// (K2): never ignored.
    #[error("invalid cosignature by pinned key {name}")]
    BadCosignature {
        /// The key name of the signature line.
        name: String,
    },
    /// Fewer distinct pinned witnesses cosigned than the policy requires (K2).
    #[error("witness quorum not met: {have} of {need} cosignatures")]
    NoQuorum {
        /// Distinct pinned witnesses with a valid cosignature.
        have: usize,
        /// The policy's quorum.
        need: usize,
    },
    /// Two checkpoints that cannot both be honest: same size and another
    /// root, or a consistency proof that does not verify (K3). Keep both as
    /// evidence.
    #[error("checkpoints are inconsistent (split view or bad consistency proof)")]
    Inconsistent,
    /// The served checkpoint is smaller than one already verified (K3).
    #[error("log rollback: have size {have}, served size {served}")]
    Rollback {
        /// The size already verified.
        have: u64,
        /// The size served now.
        served: u64,
    },
    /// The newest witness time is older than allowed (K4).
    #[error("checkpoint is stale: newest witness cosignature is {age_secs} s old")]
    Stale {
        /// Seconds between the newest witness time and now.
        age_secs: u64,
    },
    /// A witness time lies further in the future than the allowed skew (K4).
    #[error("checkpoint cosigned in the future")]
    FromFuture,
    /// No pinned auditor cosigned recently enough (K6).
    #[error("no recent auditor cosignature")]
    NotAudited,
    /// An entry is not in the checkpoint's tree at that index (K5).
    #[error("log entry is not included in the checkpoint")]
    BadInclusion,
    /// A tile, proof or entry index beyond the tree's size.
    #[error("beyond the end of the log")]
    BeyondTree,
    /// An akd lookup proof does not verify (K7).
    #[error("akd lookup proof does not verify: {0}")]
    BadLookupProof(String),
    /// An akd history proof does not verify (K10).
    #[error("akd history proof does not verify: {0}")]
    BadHistoryProof(String),
    /// An akd append-only (audit) proof does not parse.
    #[error("malformed akd audit proof: {0}")]
    BadAuditProof(String),
    /// An akd epoch older than (or equal to, with another root) one already
    /// verified (K5), or epochs in the log out of order.
    #[error("akd epoch rollback")]
    EpochRollback,
    /// An epoch entry skips akd epochs: each must follow the previous one.
    #[error("akd epoch {found} where epoch {expected} comes next")]
    EpochGap {
        /// The epoch that should have come next.
        expected: u64,
        /// The epoch found.
        found: u64,
    },
    /// A label's akd version is lower than one already verified (K7).
    #[error("akd version rollback")]
    VersionRollback,
}
