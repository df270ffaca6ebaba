//! Blobs: chunks, manifests and listings, each sealed on its own so it can
//! live in (and move between) packs (spec: `format.md`, "Blobs").
//!
//! A blob's id is a keyed hash of its type and plaintext; its key is derived
//! from the id, so each key encrypts exactly one plaintext and a fixed nonce
//! is safe; its associated data binds format, suite, type, collection, epoch
//! and id. Equal plaintexts dedup inside one collection epoch only.

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::collection::CollectionKeys;
use crate::encoding::Writer;
use crate::envelope::{FORMAT_VERSION, MAGIC, ObjectType, Suite};
use crate::error::{Error, Result};
use crate::ids::BlobId;
use crate::kdf::{context, derive};

/// Largest blob plaintext (a manifest of a very large file, or a listing of a
/// very large folder). Chunks are at most [`crate::chunking::MAX_CHUNK`].
pub const MAX_BLOB_PLAINTEXT: usize = 16 * 1024 * 1024;
/// Nonce of every blob: its key is unique to its content.
const BLOB_NONCE: [u8; NONCE_LEN] = [0u8; NONCE_LEN];

/// A sealed blob, ready to be put into a pack.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// Chunk, manifest or listing.
    pub kind: ObjectType,
    /// Keyed hash of kind and plaintext.
    pub id: BlobId,
    /// AES-256-GCM ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl core::fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SealedBlob({:?}, {}, {} bytes)", self.kind, self.id, self.ciphertext.len())
    }
}

fn check_blob_kind(kind: ObjectType) -> Result<()> {
    if kind.is_blob() { Ok(()) } else { Err(Error::Malformed("not a blob type")) }
}

impl CollectionKeys {
    /// The id a blob of `kind` with this plaintext gets.
    pub fn blob_id(&self, kind: ObjectType, plaintext: &[u8]) -> BlobId {
        let mut hasher = blake3::Hasher::new_keyed(self.blob_id.expose_secret());
        hasher.update(&[kind.byte()]).update(plaintext);
        BlobId(*hasher.finalize().as_bytes())
    }

    fn blob_aad(&self, kind: ObjectType, id: &BlobId) -> Writer {
        let mut w = Writer::with_capacity(59);
        w.bytes(&MAGIC)
            .u8(FORMAT_VERSION)
            .u8(Suite::V1.byte())
            .u8(kind.byte())
            .bytes(self.collection.as_bytes())
            .u32(self.epoch)
            .bytes(id.as_bytes());
        w
    }

    pub(crate) fn blob_key(&self, kind: ObjectType, id: &BlobId) -> crate::secret::SubKey {
        derive(context::BLOB_KEY, &[self.blob_key_root.expose_secret(), &[kind.byte()], id.as_bytes()])
    }

    /// Seals a blob.
    pub fn seal_blob(&self, kind: ObjectType, plaintext: &[u8]) -> Result<SealedBlob> {
        check_blob_kind(kind)?;
        if plaintext.len() > MAX_BLOB_PLAINTEXT {
            return Err(Error::LimitExceeded("blob larger than 16 MiB"));
        }
        let id = self.blob_id(kind, plaintext);
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
        ciphertext.extend_from_slice(plaintext);
        aead::seal(self.blob_key(kind, &id).expose_secret(), BLOB_NONCE, self.blob_aad(kind, &id).as_slice(), &mut ciphertext)?;
        Ok(SealedBlob { kind, id, ciphertext })
    }

    /// Opens a blob fetched under `id`: authenticates it, then checks that
    /// the plaintext hashes to `id`. Nothing is released on failure.
    pub fn open_blob(&self, kind: ObjectType, id: &BlobId, mut ciphertext: Vec<u8>) -> Result<Vec<u8>> {
        check_blob_kind(kind)?;
        if ciphertext.len() > MAX_BLOB_PLAINTEXT + TAG_LEN {
            return Err(Error::LimitExceeded("blob larger than 16 MiB"));
        }
        let len =
            aead::open(self.blob_key(kind, id).expose_secret(), BLOB_NONCE, self.blob_aad(kind, id).as_slice(), &mut ciphertext)?
                .len();
        ciphertext.truncate(len);
        if self.blob_id(kind, &ciphertext) != *id {
            return Err(Error::ContentMismatch);
        }
        Ok(ciphertext)
    }
}
