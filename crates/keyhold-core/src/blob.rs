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

/// A blob's plaintext with the id it hashes to, not sealed yet. Only
/// [`CollectionKeys::identify`] makes one, so its id is always right.
#[derive(Clone, Copy)]
pub struct Plaintext<'a> {
    kind: ObjectType,
    id: BlobId,
    bytes: &'a [u8],
}

impl Plaintext<'_> {
    /// Chunk, manifest or listing.
    pub fn kind(&self) -> ObjectType {
        self.kind
    }

    /// The keyed hash of kind and plaintext.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// Plaintext length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Its ciphertext's length, once sealed.
    pub fn sealed_len(&self) -> usize {
        self.bytes.len() + TAG_LEN
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl core::fmt::Debug for Plaintext<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Plaintext({:?}, {}, {} bytes)", self.kind, self.id, self.bytes.len())
    }
}

/// Takes the blobs a [`crate::FileEncryptor`] cuts, each once identified:
/// collecting them sealed (`Vec<SealedBlob>`), or sealing only the new ones
/// straight into a pack ([`crate::pack::PackBuilder::seal`]).
pub trait BlobSink {
    /// What the sink's own work can fail with (a pack upload that stopped,
    /// say), besides the encryptor's errors.
    type Error: From<Error>;
    /// Receives the next blob.
    fn blob(&mut self, keys: &CollectionKeys, blob: Plaintext<'_>) -> core::result::Result<(), Self::Error>;
}

impl BlobSink for Vec<SealedBlob> {
    type Error = Error;
    fn blob(&mut self, keys: &CollectionKeys, blob: Plaintext<'_>) -> Result<()> {
        let mut ciphertext = Vec::with_capacity(blob.len() + TAG_LEN);
        keys.seal_into(&blob, &mut ciphertext)?;
        self.push(SealedBlob { kind: blob.kind, id: blob.id, ciphertext });
        Ok(())
    }
}

fn check_blob_kind(kind: ObjectType) -> Result<()> {
    if kind.is_blob() { Ok(()) } else { Err(Error::Malformed("not a blob type")) }
}

/// Below this length a blob's id is computed from a copy that holds the
/// type byte and the plaintext together (see [`CollectionKeys::blob_id`]).
const CONTIGUOUS_ID_LEN: usize = 64 * 1024;

impl CollectionKeys {
    /// The id a blob of `kind` with this plaintext gets.
    pub fn blob_id(&self, kind: ObjectType, plaintext: &[u8]) -> BlobId {
        let mut hasher = blake3::Hasher::new_keyed(self.blob_id.expose_secret());
        // BLAKE3 hashes 1 KiB chunks several at a time only within one
        // `update`; after a separate one-byte update, the first chunk goes
        // block by block. For a small blob (a small file's only chunk) that
        // chunk is a large share of the work, so prefix and plaintext are
        // hashed from one buffer: 178 MB in 21,747 blobs of 1-16 KiB took
        // 146 ms of CPU in two updates and 99 ms from one buffer, copy
        // included. Same bytes, same id.
        if plaintext.len() < CONTIGUOUS_ID_LEN {
            let mut input = Vec::with_capacity(plaintext.len() + 1);
            input.push(kind.byte());
            input.extend_from_slice(plaintext);
            hasher.update(&input);
        } else {
            hasher.update(&[kind.byte()]).update(plaintext);
        }
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
        let blob = self.identify(kind, plaintext)?;
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
        self.seal_into(&blob, &mut ciphertext)?;
        Ok(SealedBlob { kind, id: blob.id, ciphertext })
    }

    /// Hashes a blob's plaintext to its id, without sealing it yet: a
    /// writer that already stores the id skips the sealing altogether.
    pub fn identify<'a>(&self, kind: ObjectType, plaintext: &'a [u8]) -> Result<Plaintext<'a>> {
        check_blob_kind(kind)?;
        if plaintext.len() > MAX_BLOB_PLAINTEXT {
            return Err(Error::LimitExceeded("blob larger than 16 MiB"));
        }
        Ok(Plaintext { kind, id: self.blob_id(kind, plaintext), bytes: plaintext })
    }

    /// Seals `blob` and appends its ciphertext and tag to `out` (into a
    /// pack's buffer, say, with no copy of its own). The blob must come
    /// from these keys' [`CollectionKeys::identify`].
    pub(crate) fn seal_into(&self, blob: &Plaintext<'_>, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(blob.bytes);
        let key = self.blob_key(blob.kind, &blob.id);
        aead::seal_tail(key.expose_secret(), BLOB_NONCE, self.blob_aad(blob.kind, &blob.id).as_slice(), out, start)
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
