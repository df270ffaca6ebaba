//! Keyhold's pure core: the key hierarchy, the encrypted formats and the
//! verification state machines that let a hostile server store everything
//! and learn nothing. No I/O, no async, no clock: callers supply bytes,
//! randomness and time. Everything is specified byte for byte in
//! `docs/spec/`, with test vectors in `docs/spec/vectors/`.
//!
//! The hierarchy, top down:
//! - a device's keys ([`DeviceSecret`]): Ed25519 for signing, X-Wing
//!   (X25519 + ML-KEM-768) for receiving wrapped keys;
//! - the account root key ([`AccountRootKey`]), per account key epoch,
//!   wrapped to each device with HPKE ([`wrap_to_device`]) and to the
//!   recovery key with Argon2id ([`RecoveryKey::wrap`]);
//! - collection keys ([`CollectionKey`]), per collection key epoch, wrapped
//!   under the root key ([`wrap_collection_key`]), from which every key of a
//!   collection is derived ([`CollectionKeys`]);
//! - per-blob keys, derived from the blob's keyed-hash id.
//!
//! Data, bottom up: file content is cut into chunks by a keyed FastCDC
//! ([`Chunker`]) and sealed as blobs ([`FileEncryptor`]); a file version is
//! a [`Manifest`] blob; a folder is a [`Listing`] blob naming its children by
//! id; blobs travel in padded [`pack`]s; a signed [`Revision`] names the root
//! listing, and a [`HistoryVerifier`] accepts only revisions that extend the
//! last one a device saw.
//!
//! Link shares ([`LinkWriter`], [`LinkKeys`]) seal a file or folder under
//! keys derived from a secret that travels only in the link's URL fragment.

mod aead;
mod auth;
mod blob;
mod chain;
mod chunking;
mod collection;
mod device;
mod encoding;
mod envelope;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod ids;
mod kdf;
mod link;
pub mod pack;
mod padding;
mod pairing;
mod recovery;
mod revision;
mod secret;
pub mod share;
mod stream;
pub mod transparency;
mod tree;
#[cfg(test)]
mod vectors;
mod wrap;

pub use auth::CHALLENGE_LEN;
pub use blob::{BlobSink, MAX_BLOB_PLAINTEXT, Plaintext, SealedBlob};
pub use chain::{
    CHAIN_GENESIS_PREV, ChainChange, ChainDevice, ChainEntry, ChainHead, DeviceChain, MAX_CHAIN_ENTRY_LEN, MAX_DEVICE_NAME,
    Revocation, Signer, root_commitment, validate_device_name,
};
pub use chunking::{AVG_CHUNK, Chunker, MAX_CHUNK, MIN_CHUNK};
pub use collection::CollectionKeys;
pub use device::{DEVICE_PUBLIC_KEYS_LEN, DevicePublicKeys, DeviceSecret};
pub use envelope::{FORMAT_VERSION, MAGIC, ObjectType, Suite, peek_type};
pub use error::{Error, Result};
pub use ids::{AccountId, BlobId, CollectionId, DeviceId, FileId, LinkId, ObjectHasher, ObjectId};
pub use link::{
    ContentOpener, LINK_HEADER_LEN, LINK_SECRET_LEN, LINK_SEGMENT_LEN, LinkEntry, LinkEntryKind, LinkFragment, LinkHeader,
    LinkKeys, LinkKind, LinkMeta, LinkMode, LinkPiece, LinkWriter, MAX_LINK_CONTENT, MAX_LINK_ENTRIES, MAX_LINK_METADATA,
    MAX_LINK_PATH, open_link, seal_link, sealed_content_len, validate_link_path,
};
pub use padding::padme;
pub use pairing::{
    CONFIRMATION_LEN, JoinerHello, JoinerPake, PAIRING_CODE_LEN, PAIRING_SLOT_LEN, PAKE_MESSAGE_LEN, PairingCode, PairingKeys,
    Welcome, inviter_respond,
};
pub use recovery::{KdfParams, RecoveryKey};
pub use revision::{
    GENESIS_PREV, Head, HistoryVerifier, REVISION_LEN, Revision, RevisionHeader, VerifiedRevision, open_revision, seal_revision,
};
pub use secret::{AccountRootKey, CollectionKey, LinkSecret};
pub use stream::{FileDecryptor, FileEncryptor};
pub use tree::{BlobRef, ChunkRef, Entry, EntryKind, FileMeta, Listing, MAX_NAME_LEN, Manifest, validate_name};
pub use wrap::{
    CollectionWrapContext, collection_wrap_account_epoch, unwrap_collection_key, unwrap_on_device, unwrap_previous_root,
    wrap_collection_key, wrap_previous_root, wrap_to_device,
};

/// The operating system's cryptographic RNG, for callers that do not need
/// reproducible randomness.
pub fn os_rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}
