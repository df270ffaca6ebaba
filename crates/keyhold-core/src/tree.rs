//! File manifests and folder listings (spec: `format.md`, "Manifests" and
//! "Listings"). Both are blobs, so they are encrypted, padded inside packs
//! and named by keyed hash; a folder's listing names each child by its blob
//! id, so the tree below a signed revision is a Merkle tree: no entry can be
//! swapped, moved, dropped or altered without changing the root the revision
//! signs (SECURITY C1–C4, D1).

use crate::blob::{MAX_BLOB_PLAINTEXT, SealedBlob};
use crate::chunking::MAX_CHUNK;
use crate::collection::CollectionKeys;
use crate::encoding::{Reader, Writer, len_u32, usize_from};
use crate::envelope::ObjectType;
use crate::error::{Error, Result};
use crate::ids::{BlobId, FileId};

/// Longest entry name in bytes (the common filesystem limit).
pub const MAX_NAME_LEN: usize = 255;

/// Checks that `name` can only ever name one entry inside its folder: not
/// empty, at most 255 bytes, not `.` or `..`, and free of `/`, `\` and NUL
/// (SECURITY G7). Clients still check what their filesystem can hold.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b'\\' || b == 0);
    if ok { Ok(()) } else { Err(Error::InvalidName) }
}

fn read_name(r: &mut Reader<'_>) -> Result<String> {
    let bytes = r.short_bytes(MAX_NAME_LEN, "name too long")?;
    let name = core::str::from_utf8(bytes).map_err(|_| Error::Malformed("name is not UTF-8"))?;
    validate_name(name)?;
    Ok(name.to_owned())
}

/// A reference to a blob of a given collection key epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The collection key epoch the blob was sealed under.
    pub epoch: u32,
    /// The blob id.
    pub id: BlobId,
}

impl BlobRef {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.epoch).bytes(self.id.as_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(BlobRef { epoch: r.u32()?, id: BlobId(r.array()?) })
    }
}

/// One chunk of a file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The chunk's blob id.
    pub id: BlobId,
    /// Plaintext length, 1 to [`MAX_CHUNK`].
    pub len: u32,
}

/// Attributes of a file version or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's stable id.
    pub file_id: FileId,
    /// Version number, counting from 1, per file.
    pub version: u64,
    /// Name within its folder.
    pub name: String,
    /// Unix permission bits (`0o7777` at most).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// One version of one file: its attributes and its chunks in order. The
/// chunks' epoch is the manifest's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Attributes.
    pub meta: FileMeta,
    /// Total plaintext length: the sum of the chunk lengths.
    pub size: u64,
    /// The chunks, in file order.
    pub chunks: Vec<ChunkRef>,
}

const MAX_MODE: u32 = 0o7777;

impl Manifest {
    /// Canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        validate_name(&self.meta.name)?;
        if self.meta.mode > MAX_MODE {
            return Err(Error::Malformed("mode has bits beyond 0o7777"));
        }
        let mut w = Writer::with_capacity(64 + self.meta.name.len() + 36 * self.chunks.len());
        w.bytes(self.meta.file_id.as_bytes()).u64(self.meta.version);
        w.short_bytes(self.meta.name.as_bytes())?;
        w.u32(self.meta.mode).i64(self.meta.mtime_ns).u64(self.size);
        w.u32(len_u32(self.chunks.len(), "too many chunks")?);
        for chunk in &self.chunks {
            w.bytes(chunk.id.as_bytes()).u32(chunk.len);
        }
        if w.len() > MAX_BLOB_PLAINTEXT {
            return Err(Error::LimitExceeded("manifest larger than 16 MiB"));
        }
        Ok(w.into_vec())
    }

    /// Parses and checks a manifest: valid name and mode, every chunk length
    /// in range, and the lengths summing to `size`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let file_id = FileId(r.array()?);
        let version = r.u64()?;
        let name = read_name(&mut r)?;
        let mode = r.u32()?;
        if mode > MAX_MODE {
            return Err(Error::Malformed("mode has bits beyond 0o7777"));
        }
        let mtime_ns = r.i64()?;
        let size = r.u64()?;
        let count = usize_from(r.u32()?);
        if count > r.remaining() / 36 {
            return Err(Error::Truncated);
        }
        let mut chunks = Vec::with_capacity(count);
        let mut total: u64 = 0;
        for _ in 0..count {
            let chunk = ChunkRef { id: BlobId(r.array()?), len: r.u32()? };
            if chunk.len == 0 || usize_from(chunk.len) > MAX_CHUNK {
                return Err(Error::Malformed("chunk length out of range"));
            }
            total = total.checked_add(u64::from(chunk.len)).ok_or(Error::Malformed("size overflows"))?;
            chunks.push(chunk);
        }
        r.finish()?;
        if total != size {
            return Err(Error::Malformed("chunk lengths do not add up to the file size"));
        }
        Ok(Manifest { meta: FileMeta { file_id, version, name, mode, mtime_ns }, size, chunks })
    }
}

/// What a listing entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file; the target is its manifest.
    File = 0x01,
    /// A folder; the target is its listing.
    Folder = 0x02,
}

impl EntryKind {
    /// The kind byte.
    #[allow(clippy::as_conversions)] // a `repr(u8)` discriminant: lossless
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name within the folder.
    pub name: String,
    /// File or folder.
    pub kind: EntryKind,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// File size (0 for folders).
    pub size: u64,
    /// The manifest (file) or listing (folder) blob.
    pub target: BlobRef,
}

impl Entry {
    /// Checks a file entry against the manifest it points to (SECURITY C3):
    /// name, mode, mtime and size must agree.
    pub fn check_manifest(&self, manifest: &Manifest) -> Result<()> {
        let agrees = self.kind == EntryKind::File
            && self.name == manifest.meta.name
            && self.mode == manifest.meta.mode
            && self.mtime_ns == manifest.meta.mtime_ns
            && self.size == manifest.size;
        if agrees { Ok(()) } else { Err(Error::Malformed("listing entry disagrees with its manifest")) }
    }

    /// The entry that names `manifest`, sealed as `target`.
    pub fn for_file(manifest: &Manifest, target: BlobRef) -> Self {
        Entry {
            name: manifest.meta.name.clone(),
            kind: EntryKind::File,
            mode: manifest.meta.mode,
            mtime_ns: manifest.meta.mtime_ns,
            size: manifest.size,
            target,
        }
    }
}

/// A folder: all of its entries, authenticated as a whole. Entries are
/// strictly sorted by the bytes of their names, so each name appears once
/// and the encoding is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    entries: Vec<Entry>,
}

impl Listing {
    /// Builds a listing; sorts the entries and rejects duplicate or invalid names.
    pub fn new(mut entries: Vec<Entry>) -> Result<Self> {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for pair in entries.windows(2) {
            if let [a, b] = pair {
                if a.name == b.name {
                    return Err(Error::Malformed("duplicate name in listing"));
                }
            }
        }
        for e in &entries {
            validate_name(&e.name)?;
            if e.mode > MAX_MODE {
                return Err(Error::Malformed("mode has bits beyond 0o7777"));
            }
            if e.kind == EntryKind::Folder && e.size != 0 {
                return Err(Error::Malformed("folder entry with a size"));
            }
        }
        Ok(Listing { entries })
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Looks an entry up by exact name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.name.as_bytes().cmp(name.as_bytes())).ok().and_then(|i| self.entries.get(i))
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(4 + self.entries.len() * 80);
        w.u32(len_u32(self.entries.len(), "too many entries")?);
        for e in &self.entries {
            w.u8(e.kind.byte());
            w.short_bytes(e.name.as_bytes())?;
            w.u32(e.mode).i64(e.mtime_ns).u64(e.size);
            e.target.write(&mut w);
        }
        if w.len() > MAX_BLOB_PLAINTEXT {
            return Err(Error::LimitExceeded("listing larger than 16 MiB"));
        }
        Ok(w.into_vec())
    }

    /// Parses a listing; rejects unsorted or duplicate names, unknown kinds,
    /// invalid names, folders with a size, and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let count = usize_from(r.u32()?);
        if count > r.remaining() / 60 {
            return Err(Error::Truncated);
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = match r.u8()? {
                0x01 => EntryKind::File,
                0x02 => EntryKind::Folder,
                _ => return Err(Error::Malformed("unknown entry kind")),
            };
            let name = read_name(&mut r)?;
            let mode = r.u32()?;
            if mode > MAX_MODE {
                return Err(Error::Malformed("mode has bits beyond 0o7777"));
            }
            let mtime_ns = r.i64()?;
            let size = r.u64()?;
            if kind == EntryKind::Folder && size != 0 {
                return Err(Error::Malformed("folder entry with a size"));
            }
            let target = BlobRef::read(&mut r)?;
            if let Some(prev) = entries.last() {
                if prev.name.as_bytes() >= name.as_bytes() {
                    return Err(Error::Malformed("listing entries not strictly sorted"));
                }
            }
            entries.push(Entry { name, kind, mode, mtime_ns, size, target });
        }
        r.finish()?;
        Ok(Listing { entries })
    }
}

impl CollectionKeys {
    /// Seals a manifest as a blob.
    pub fn seal_manifest(&self, manifest: &Manifest) -> Result<SealedBlob> {
        self.seal_blob(ObjectType::Manifest, &manifest.encode()?)
    }

    /// Opens and parses a manifest blob fetched under `id`.
    pub fn open_manifest(&self, id: &BlobId, ciphertext: Vec<u8>) -> Result<Manifest> {
        Manifest::decode(&self.open_blob(ObjectType::Manifest, id, ciphertext)?)
    }

    /// Seals a listing as a blob.
    pub fn seal_listing(&self, listing: &Listing) -> Result<SealedBlob> {
        self.seal_blob(ObjectType::Listing, &listing.encode()?)
    }

    /// Opens and parses a listing blob fetched under `id`.
    pub fn open_listing(&self, id: &BlobId, ciphertext: Vec<u8>) -> Result<Listing> {
        Listing::decode(&self.open_blob(ObjectType::Listing, id, ciphertext)?)
    }

    /// A reference to a blob sealed under these keys.
    pub fn blob_ref(&self, blob: &SealedBlob) -> BlobRef {
        BlobRef { epoch: self.epoch, id: blob.id }
    }
}
