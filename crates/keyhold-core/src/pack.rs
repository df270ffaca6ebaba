//! Packs (spec: `format.md`, "Packs"): many sealed blobs in one stored
//! object, with an encrypted index and padding, so the server sees neither
//! how many blobs a pack holds nor their sizes, and uploads need few requests.
//!
//! ```text
//! prefix  = header(Pack) | collection id (16) | epoch (4) | salt (32)
//! pack    = prefix | blob ciphertexts … | sealed index | sealed trailer (24)
//! ```
//! The index (entry count, entries, then zero padding up to the Padmé length
//! of the whole pack) and the trailer (index offset and length) are sealed
//! under a key unique to the pack, with the prefix as associated data. Every
//! byte of a pack is therefore authenticated, and a reader can fetch the
//! trailer, then the index, then single blobs, by range.

use rand_core::CryptoRng;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::blob::{Plaintext, SealedBlob};
use crate::collection::CollectionKeys;
use crate::encoding::{Reader, Writer, len_u32, usize_from};
use crate::envelope::{HEADER_LEN, ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ObjectId};
use crate::kdf::{context, derive};
use crate::padding::padme;

/// Length of a pack's cleartext prefix.
pub const PACK_PREFIX_LEN: usize = HEADER_LEN + 16 + 4 + 32;
/// Length of a pack's sealed trailer.
pub const PACK_TRAILER_LEN: usize = 8 + TAG_LEN;
/// A writer closes a pack once its blobs reach this size.
pub const PACK_TARGET_LEN: usize = 16 * 1024 * 1024;
/// No pack may be larger than this (a reader refuses bigger ones).
pub const MAX_PACK_LEN: usize = 64 * 1024 * 1024;
const INDEX_ENTRY_LEN: usize = 1 + 32 + 4 + 4;
const INDEX_NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];
const TRAILER_NONCE: [u8; NONCE_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Where one blob sits in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Chunk, manifest or listing.
    pub kind: ObjectType,
    /// The blob id.
    pub id: BlobId,
    /// Offset of the blob's ciphertext from the start of the pack.
    pub offset: u32,
    /// Length of the blob's ciphertext (plaintext + 16).
    pub len: u32,
}

impl PackEntry {
    /// The blob's bytes within a whole pack.
    pub fn slice<'a>(&self, pack: &'a [u8]) -> Result<&'a [u8]> {
        let start = usize_from(self.offset);
        pack.get(start..start + usize_from(self.len)).ok_or(Error::Truncated)
    }
}

/// Collects sealed blobs into one pack.
pub struct PackBuilder {
    prefix: Vec<u8>,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

fn pack_key(keys: &CollectionKeys, salt: &[u8; 32]) -> crate::secret::SubKey {
    derive(context::PACK_KEY, &[keys.pack_key_root.expose_secret(), salt])
}

impl PackBuilder {
    /// Starts an empty pack with a fresh random salt.
    pub fn new(keys: &CollectionKeys, rng: &mut impl CryptoRng) -> Self {
        Self::with_buffer(keys, rng, Vec::new())
    }

    /// Starts an empty pack in `buffer` (its contents are dropped, its
    /// capacity kept): a writer that reuses the buffers of packs it sent
    /// spares the page faults of fresh memory.
    pub fn with_buffer(keys: &CollectionKeys, rng: &mut impl CryptoRng, mut buffer: Vec<u8>) -> Self {
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        let mut w = Writer::with_capacity(PACK_PREFIX_LEN);
        write_header(&mut w, ObjectType::Pack);
        w.bytes(keys.collection.as_bytes()).u32(keys.epoch).bytes(&salt);
        let prefix = w.into_vec();
        buffer.clear();
        buffer.reserve(PACK_TARGET_LEN + MAX_PACK_LEN / 16);
        buffer.extend_from_slice(&prefix);
        PackBuilder { prefix, bytes: buffer, entries: Vec::new() }
    }

    /// Appends a sealed blob. Fails if the pack would exceed its maximum.
    pub fn push(&mut self, blob: &SealedBlob) -> Result<()> {
        self.push_parts(blob.kind, blob.id, &blob.ciphertext)
    }

    /// Appends a sealed blob given as its parts (see [`PackBuilder::blobs`]).
    pub fn push_parts(&mut self, kind: ObjectType, id: BlobId, ciphertext: &[u8]) -> Result<()> {
        if !kind.is_blob() {
            return Err(Error::Malformed("not a blob type"));
        }
        let entry = self.entry(kind, id, ciphertext.len())?;
        self.bytes.extend_from_slice(ciphertext);
        self.entries.push(entry);
        Ok(())
    }

    /// Seals a blob straight into the pack: the plaintext is copied once,
    /// into place, and encrypted there. `keys` must be the pack's.
    pub fn seal(&mut self, keys: &CollectionKeys, blob: &Plaintext<'_>) -> Result<()> {
        if keys.collection.as_bytes().as_slice() != self.prefix.get(HEADER_LEN..HEADER_LEN + 16).unwrap_or_default()
            || keys.epoch.to_be_bytes().as_slice() != self.prefix.get(HEADER_LEN + 16..HEADER_LEN + 20).unwrap_or_default()
        {
            return Err(Error::ContextMismatch("pack of another collection or epoch"));
        }
        let entry = self.entry(blob.kind(), blob.id(), blob.sealed_len())?;
        if let Err(e) = keys.seal_into(blob, &mut self.bytes) {
            self.bytes.truncate(usize_from(entry.offset));
            return Err(e);
        }
        self.entries.push(entry);
        Ok(())
    }

    /// The index entry of a blob of `len` ciphertext bytes appended next,
    /// if the pack can take it.
    fn entry(&self, kind: ObjectType, id: BlobId, len: usize) -> Result<PackEntry> {
        let projected = self.bytes.len() + len + INDEX_ENTRY_LEN * (self.entries.len() + 1) + 4;
        if projected + TAG_LEN + PACK_TRAILER_LEN > MAX_PACK_LEN * 7 / 8 {
            return Err(Error::LimitExceeded("pack full"));
        }
        Ok(PackEntry { kind, id, offset: len_u32(self.bytes.len(), "pack too large")?, len: len_u32(len, "blob too large")? })
    }

    /// The blobs added so far, as (kind, id, ciphertext): an unfinished
    /// pack's blobs can move to another pack.
    pub fn blobs(&self) -> impl Iterator<Item = (ObjectType, BlobId, &[u8])> {
        self.entries.iter().map(|e| (e.kind, e.id, e.slice(&self.bytes).unwrap_or_default()))
    }

    /// Bytes of blob ciphertext so far (close the pack at [`PACK_TARGET_LEN`]).
    pub fn blob_bytes(&self) -> usize {
        self.bytes.len() - PACK_PREFIX_LEN
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the index and trailer, pads, and returns the pack's id, bytes
    /// and index. The id is hashed here, over the whole pack at once, which
    /// BLAKE3 does several times faster than blob by blob (and lets a caller
    /// move this step off its packing thread).
    pub fn finish(self, keys: &CollectionKeys) -> Result<(ObjectId, Vec<u8>, Vec<PackEntry>)> {
        let PackBuilder { prefix, mut bytes, entries } = self;
        let salt: [u8; 32] = prefix.get(HEADER_LEN + 20..).and_then(|s| s.try_into().ok()).ok_or(Error::Truncated)?;
        let key = pack_key(keys, &salt);
        let mut index = Writer::with_capacity(4 + entries.len() * INDEX_ENTRY_LEN);
        index.u32(len_u32(entries.len(), "too many blobs")?);
        for e in &entries {
            index.u8(e.kind.byte()).bytes(e.id.as_bytes()).u32(e.offset).u32(e.len);
        }
        let unpadded = bytes.len() + index.len() + TAG_LEN + PACK_TRAILER_LEN;
        let padded = usize::try_from(padme(u64::try_from(unpadded).map_err(|_| Error::LimitExceeded("pack too large"))?))
            .map_err(|_| Error::LimitExceeded("pack too large"))?;
        let mut index = index.into_vec();
        index.resize(index.len() + (padded - unpadded), 0);
        let index_offset = len_u32(bytes.len(), "pack too large")?;
        aead::seal(key.expose_secret(), INDEX_NONCE, &prefix, &mut index)?;
        let mut trailer = Writer::with_capacity(PACK_TRAILER_LEN);
        trailer.u32(index_offset).u32(len_u32(index.len(), "index too large")?);
        let mut trailer = trailer.into_vec();
        aead::seal(key.expose_secret(), TRAILER_NONCE, &prefix, &mut trailer)?;
        bytes.extend_from_slice(&index);
        bytes.extend_from_slice(&trailer);
        Ok((ObjectId::of(&bytes), bytes, entries))
    }
}

/// Checks a pack's prefix against the expected collection and epoch and
/// returns its salt.
fn check_prefix(keys: &CollectionKeys, prefix: &[u8]) -> Result<[u8; 32]> {
    let mut r = Reader::new(prefix);
    read_header(&mut r, ObjectType::Pack)?;
    if r.array::<16>()? != *keys.collection.as_bytes() {
        return Err(Error::ContextMismatch("collection"));
    }
    if r.u32()? != keys.epoch {
        return Err(Error::ContextMismatch("epoch"));
    }
    let salt = r.array::<32>()?;
    r.finish()?;
    Ok(salt)
}

/// Opens a pack's trailer (its last [`PACK_TRAILER_LEN`] bytes), given the
/// pack's prefix and total length; returns the index's offset and length.
pub fn open_trailer(keys: &CollectionKeys, prefix: &[u8], trailer: &[u8], pack_len: usize) -> Result<(usize, usize)> {
    let salt = check_prefix(keys, prefix)?;
    if trailer.len() != PACK_TRAILER_LEN || pack_len > MAX_PACK_LEN {
        return Err(Error::Malformed("pack trailer or length"));
    }
    let mut buf = trailer.to_vec();
    let plain = aead::open(pack_key(keys, &salt).expose_secret(), TRAILER_NONCE, prefix, &mut buf)?;
    let mut r = Reader::new(plain);
    let (offset, len) = (usize_from(r.u32()?), usize_from(r.u32()?));
    r.finish()?;
    if offset < PACK_PREFIX_LEN || offset.checked_add(len).and_then(|end| end.checked_add(PACK_TRAILER_LEN)) != Some(pack_len) {
        return Err(Error::Malformed("pack index out of place"));
    }
    Ok((offset, len))
}

/// Opens a pack's sealed index (found with [`open_trailer`]) and checks that
/// its entries tile the pack body exactly, in order, with zero padding.
pub fn open_index(keys: &CollectionKeys, prefix: &[u8], sealed_index: &[u8], index_offset: usize) -> Result<Vec<PackEntry>> {
    let salt = check_prefix(keys, prefix)?;
    let mut buf = sealed_index.to_vec();
    let plain = aead::open(pack_key(keys, &salt).expose_secret(), INDEX_NONCE, prefix, &mut buf)?;
    let mut r = Reader::new(plain);
    let count = usize_from(r.u32()?);
    if count > r.remaining() / INDEX_ENTRY_LEN {
        return Err(Error::Truncated);
    }
    let mut entries = Vec::with_capacity(count);
    let mut expected_offset = PACK_PREFIX_LEN;
    for _ in 0..count {
        let kind = ObjectType::from_byte(r.u8()?).filter(|k| k.is_blob()).ok_or(Error::Malformed("pack entry type"))?;
        let entry = PackEntry { kind, id: BlobId(r.array()?), offset: r.u32()?, len: r.u32()? };
        if usize_from(entry.offset) != expected_offset || usize_from(entry.len) < TAG_LEN {
            return Err(Error::Malformed("pack entries do not tile the pack"));
        }
        expected_offset += usize_from(entry.len);
        entries.push(entry);
    }
    if expected_offset != index_offset {
        return Err(Error::Malformed("pack entries do not tile the pack"));
    }
    if r.rest().iter().any(|&b| b != 0) {
        return Err(Error::Malformed("non-zero pack padding"));
    }
    Ok(entries)
}

/// Opens a whole pack: prefix, trailer, index. The pack's bytes must first
/// have been checked against the object id they were fetched under.
pub fn open_pack(keys: &CollectionKeys, pack: &[u8]) -> Result<Vec<PackEntry>> {
    if pack.len() > MAX_PACK_LEN {
        return Err(Error::LimitExceeded("pack larger than 64 MiB"));
    }
    let prefix = pack.get(..PACK_PREFIX_LEN).ok_or(Error::Truncated)?;
    let trailer_start = pack.len().checked_sub(PACK_TRAILER_LEN).filter(|&s| s >= PACK_PREFIX_LEN).ok_or(Error::Truncated)?;
    let trailer = pack.get(trailer_start..).ok_or(Error::Truncated)?;
    let (offset, len) = open_trailer(keys, prefix, trailer, pack.len())?;
    let index = pack.get(offset..offset + len).ok_or(Error::Truncated)?;
    open_index(keys, prefix, index, offset)
}
