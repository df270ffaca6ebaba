//! Errors of the core.
//!
//! Policy: one typed, `#[non_exhaustive]` enum for the whole crate, because
//! every operation here is a parse-or-verify of untrusted bytes and callers
//! need to tell the failure classes apart (a test vector names the variant it
//! expects). Variants say *what* failed, never *which secret* was involved.
//! Per SECURITY.md A6, callers must not echo these errors back to the server:
//! to the server every failure looks alike.

use crate::envelope::ObjectType;

/// Everything that can go wrong while building, parsing or verifying a
/// Keyhold object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not start with the Keyhold magic bytes.
    #[error("not a Keyhold object (bad magic bytes)")]
    BadMagic,
    /// The format version is not one this client implements; there is no
    /// fallback to older versions.
    #[error("unsupported format version {0}; upgrade Keyhold")]
    UnsupportedVersion(u8),
    /// The cipher suite is unknown or retired; there is no legacy path.
    #[error("unsupported cipher suite {0:#04x}")]
    UnsupportedSuite(u8),
    /// The object is of another type than the one expected here (SECURITY A5).
    #[error("wrong object type: expected {expected:?}, found type byte {found:#04x}")]
    WrongObjectType {
        /// What the caller asked for.
        expected: ObjectType,
        /// The type byte found in the header.
        found: u8,
    },
    /// The object ended before a field was complete.
    #[error("object is truncated")]
    Truncated,
    /// Bytes follow the end of a structure that must end there.
    #[error("unexpected trailing bytes after the object")]
    TrailingBytes,
    /// A field holds a value the format does not allow.
    #[error("malformed object: {0}")]
    Malformed(&'static str),
    /// A cleartext header field names another account, device, collection,
    /// epoch or sequence number than the caller expected.
    #[error("object belongs to another context ({0})")]
    ContextMismatch(&'static str),
    /// Authenticated decryption failed: wrong key, wrong context, or tampering.
    #[error("authenticated decryption failed: the object was altered or is not ours")]
    DecryptionFailed,
    /// A decrypted object does not hash to the id it was fetched under.
    #[error("content does not match its id")]
    ContentMismatch,
    /// A signature does not verify under the claimed author's key.
    #[error("signature verification failed")]
    BadSignature,
    /// A revision was written by a device the caller does not recognise.
    #[error("revision signed by an unknown or unauthorised device")]
    UnknownAuthor,
    /// More chunks were presented than the manifest lists. (Chunks out of
    /// order or from another file fail to decrypt: `DecryptionFailed`.)
    #[error("chunk {index} does not belong at this position of the file")]
    UnexpectedChunk {
        /// The position at which the wrong chunk was presented.
        index: usize,
    },
    /// The file ended before every chunk listed in its manifest was read.
    #[error("file is incomplete: {missing} of its chunks are missing")]
    MissingChunks {
        /// How many chunks were never presented.
        missing: usize,
    },
    /// The server offered an older head than this device already accepted.
    #[error("rollback detected: the server offers revision {served} but this device has seen {seen}")]
    Rollback {
        /// Highest sequence number this device accepted.
        seen: u64,
        /// Sequence number of the offered head.
        served: u64,
    },
    /// Two different revisions claim the same place in a collection's history.
    #[error("fork detected at revision {seq}: the server shows diverging histories")]
    Fork {
        /// The sequence number at which histories diverge.
        seq: u64,
    },
    /// A history skips revisions: the server withheld some.
    #[error("history is incomplete: revisions after {after:?} are missing")]
    MissingRevisions {
        /// The last sequence number that connects, if any.
        after: Option<u64>,
    },
    /// A device chain entry does not extend the chain where it claims to:
    /// the server shows diverging device chains.
    #[error(
        "device chain fork at entry {seq}: the server shows a device chain that does not extend the one this device verified"
    )]
    ChainFork {
        /// The entry's sequence number.
        seq: u64,
    },
    /// The server shows a shorter device chain than this device verified.
    #[error("device chain rollback: the server shows {served} entries but this device verified {pinned}")]
    ChainRollback {
        /// Entries this device verified.
        pinned: u64,
        /// Entries the server shows.
        served: u64,
    },
    /// A pairing code was mistyped or is not one.
    #[error("not a valid pairing code ({0}); it is 10 letters and digits, as shown on the other device")]
    InvalidPairingCode(&'static str),
    /// The pairing exchange failed: a wrong code, or interference by the relay.
    #[error("pairing failed: the code is wrong or expired, or someone interfered; start again with a new code")]
    PairingFailed,
    /// Key-derivation parameters below the pinned floor (SECURITY A4).
    #[error("key-derivation parameters are weaker than this client's pinned minimum")]
    KdfTooWeak,
    /// Key-derivation parameters above the pinned ceiling (SECURITY A4).
    #[error("key-derivation parameters exceed this client's pinned maximum")]
    KdfTooCostly,
    /// A recovery key was mistyped or is not a Keyhold recovery key.
    #[error("not a valid recovery key ({0}); check for typing mistakes")]
    InvalidRecoveryKey(&'static str),
    /// A name that no filesystem path may be built from (SECURITY G7).
    #[error("unsafe or invalid entry name")]
    InvalidName,
    /// A link's URL or fragment is not one Keyhold writes.
    #[error("not a valid Keyhold link ({0}); copy the whole URL, including the part after `#`")]
    InvalidLink(&'static str),
    /// A link's encrypted expiry has passed (whatever the server says).
    #[error("this link has expired")]
    LinkExpired,
    /// A caller-supplied value exceeds a format limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
