//! Domain-separated key derivation (spec: `keys.md`, "Derivations").
//!
//! Every derived key is `BLAKE3-derive_key(context, input)` with a context
//! string unique to its purpose; `input` is a concatenation of fixed-length
//! fields, so it has a single parse. The context strings are frozen: changing
//! one changes every key derived with it.

use crate::secret::SubKey;

/// Context strings, one per purpose. FROZEN: part of format version 1.
pub(crate) mod context {
    pub const COLLECTION_KEY_WRAP: &str = "keyhold v1 2026-11 collection key wrap";
    pub const RECOVERY_WRAP: &str = "keyhold v1 2026-11 recovery key wrap";
    pub const RECOVERY_CHECKSUM: &str = "keyhold v1 2026-11 recovery key checksum";
    pub const BLOB_ID: &str = "keyhold v1 2026-11 blob id";
    pub const BLOB_KEY_ROOT: &str = "keyhold v1 2026-11 blob key root";
    pub const BLOB_KEY: &str = "keyhold v1 2026-11 blob key";
    pub const CHUNKER_GEAR: &str = "keyhold v1 2026-11 chunker gear table";
    pub const PACK_KEY_ROOT: &str = "keyhold v1 2026-11 pack key root";
    pub const PACK_KEY: &str = "keyhold v1 2026-11 pack key";
    pub const REVISION_KEY: &str = "keyhold v1 2026-11 revision key";
    pub const DEVICE_ID: &str = "keyhold v1 2026-11 device id";
    pub const RECOVERY_AUTH: &str = "keyhold v1 2026-11 recovery auth key";
    pub const RECOVERY_LOCATOR: &str = "keyhold v1 2026-11 recovery locator";
    pub const NAMED_COLLECTION_ID: &str = "keyhold v1 2026-11 named collection id";
    pub const ROOT_COMMITMENT: &str = "keyhold v1 2026-11 root key commitment";
    pub const RECOVERY_KEM: &str = "keyhold v1 2026-11 recovery kem key";
    pub const PREVIOUS_ROOT_WRAP: &str = "keyhold v1 2026-11 previous root key wrap";
    pub const PAIRING_INVITER_CONFIRMATION: &str = "keyhold v1 2026-11 pairing inviter confirmation";
    pub const PAIRING_JOINER_CONFIRMATION: &str = "keyhold v1 2026-11 pairing joiner confirmation";
    pub const PAIRING_TO_INVITER: &str = "keyhold v1 2026-11 pairing key to inviter";
    pub const PAIRING_TO_JOINER: &str = "keyhold v1 2026-11 pairing key to joiner";
    pub const PAIRING_SAFETY: &str = "keyhold v1 2026-11 pairing safety string";
    pub const COLLECTION_KEY_COMMITMENT: &str = "keyhold v1 2026-12 collection key commitment";
    pub const SHARED_NAME: &str = "keyhold v1 2026-12 shared collection name";
}

/// Derives a 32-byte key from `parts` (each of fixed length) under `context`.
pub(crate) fn derive(context: &str, parts: &[&[u8]]) -> SubKey {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for part in parts {
        hasher.update(part);
    }
    SubKey::from_bytes(*hasher.finalize().as_bytes())
}
