//! Streaming file encryption and decryption in constant memory (spec:
//! `format.md`, "Files"). The encryptor holds at most one maximum chunk of
//! plaintext; the decryptor releases a chunk only after it authenticated it
//! and checked that it is the chunk the manifest lists at that position
//! (SECURITY B1–B5). A file is complete only when `finish` succeeds.

use crate::blob::{BlobSink, SealedBlob};
use crate::chunking::MAX_CHUNK;
use crate::collection::CollectionKeys;
use crate::encoding::len_u32;
use crate::envelope::ObjectType;
use crate::error::{Error, Result};
use crate::tree::{ChunkRef, FileMeta, Manifest};

/// Chunks, hashes and seals a file as it is read.
pub struct FileEncryptor<'k> {
    keys: &'k CollectionKeys,
    /// Bytes not yet cut, from `start` on; fewer than [`MAX_CHUNK`] between calls.
    pending: Vec<u8>,
    start: usize,
    sealed: SealedChunks,
}

/// What the encryptor has produced so far.
struct SealedChunks {
    chunks: Vec<ChunkRef>,
    size: u64,
}

impl SealedChunks {
    fn seal<S: BlobSink + ?Sized>(&mut self, keys: &CollectionKeys, chunk: &[u8], out: &mut S) -> Result<(), S::Error> {
        let blob = keys.identify(ObjectType::Chunk, chunk)?;
        self.chunks.push(ChunkRef { id: blob.id(), len: len_u32(chunk.len(), "chunk too long")? });
        self.size += u64::try_from(chunk.len()).map_err(|_| Error::LimitExceeded("file too large"))?;
        out.blob(keys, blob)
    }
}

impl<'k> FileEncryptor<'k> {
    /// Starts a file under the given collection keys.
    pub fn new(keys: &'k CollectionKeys) -> Self {
        FileEncryptor {
            keys,
            // Grown on demand: most files are far smaller than a chunk.
            pending: Vec::new(),
            start: 0,
            sealed: SealedChunks { chunks: Vec::new(), size: 0 },
        }
    }

    /// Feeds the next bytes of the file; every chunk completed by them goes
    /// to `out` (a `Vec<SealedBlob>` collects them sealed).
    ///
    /// Chunks are cut straight from `data` whenever nothing is buffered, so
    /// large reads are never copied; only the bytes after the last boundary
    /// found are kept for the next call. Boundaries are the same however the
    /// file is fed: a cut looks at no more than `MAX_CHUNK` bytes, and a
    /// boundary found in fewer is one that more bytes could not move.
    pub fn update<S: BlobSink + ?Sized>(&mut self, mut data: &[u8], out: &mut S) -> Result<(), S::Error> {
        while !data.is_empty() {
            if self.start == self.pending.len() {
                self.pending.clear();
                self.start = 0;
                while !data.is_empty() {
                    let len = self.keys.chunker.cut(data);
                    // A cut that ran to the end of fewer than MAX_CHUNK
                    // bytes found no boundary yet: wait for more. Keeping
                    // only this tail, rather than everything short of
                    // MAX_CHUNK, spares copying and re-copying megabytes
                    // of every read below.
                    if len >= data.len() && data.len() < MAX_CHUNK {
                        break;
                    }
                    let (chunk, rest) = data.split_at(len);
                    self.sealed.seal(self.keys, chunk, out)?;
                    data = rest;
                }
                self.pending.extend_from_slice(data);
                return Ok(());
            }
            // Top the buffer up to one maximum chunk, cut once, then hand the
            // bytes of `data` that the cut did not consume back to `data`.
            if self.start > 0 {
                self.pending.drain(..self.start);
                self.start = 0;
            }
            let take = (MAX_CHUNK - self.pending.len()).min(data.len());
            let head = data.get(..take).unwrap_or_default();
            self.pending.extend_from_slice(head);
            if self.pending.len() < MAX_CHUNK {
                return Ok(());
            }
            let len = self.keys.chunker.cut(&self.pending);
            let chunk = self.pending.get(..len).ok_or(Error::Malformed("chunker cut beyond its input"))?;
            self.sealed.seal(self.keys, chunk, out)?;
            self.start = len;
            let given_back = (self.pending.len() - self.start).min(take);
            self.pending.truncate(self.pending.len() - given_back);
            data = data.get(take - given_back..).unwrap_or_default();
        }
        Ok(())
    }

    /// Seals the remaining chunks and returns the file's manifest together
    /// with the sealed manifest blob.
    pub fn finish<S: BlobSink + ?Sized>(mut self, meta: FileMeta, out: &mut S) -> Result<(Manifest, SealedBlob), S::Error> {
        let mut rest = self.pending.get(self.start..).unwrap_or_default();
        while !rest.is_empty() {
            let len = self.keys.chunker.cut(rest);
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            self.sealed.seal(self.keys, chunk, out)?;
            rest = tail;
        }
        let manifest = Manifest { meta, size: self.sealed.size, chunks: self.sealed.chunks };
        let sealed = self.keys.seal_manifest(&manifest)?;
        Ok((manifest, sealed))
    }
}

/// Authenticates and decrypts a file's chunks, strictly in manifest order.
pub struct FileDecryptor<'k> {
    keys: &'k CollectionKeys,
    manifest: Manifest,
    next: usize,
}

impl<'k> FileDecryptor<'k> {
    /// Starts decrypting the file described by an authenticated manifest.
    pub fn new(keys: &'k CollectionKeys, manifest: Manifest) -> Self {
        FileDecryptor { keys, manifest, next: 0 }
    }

    /// The chunk expected next, if any: fetch this blob id.
    pub fn expected(&self) -> Option<&ChunkRef> {
        self.manifest.chunks.get(self.next)
    }

    /// The manifest being followed.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Opens the next chunk. Its plaintext is returned only if it
    /// authenticates as the chunk the manifest lists at this position.
    pub fn open_next(&mut self, ciphertext: Vec<u8>) -> Result<Vec<u8>> {
        let index = self.next;
        let expected = *self.expected().ok_or(Error::UnexpectedChunk { index })?;
        let plaintext = self.keys.open_blob(ObjectType::Chunk, &expected.id, ciphertext)?;
        if plaintext.len() != crate::encoding::usize_from(expected.len) {
            return Err(Error::ContentMismatch);
        }
        self.next += 1;
        Ok(plaintext)
    }

    /// Confirms that every chunk was read. A caller writing to a temporary
    /// file moves it into place only after this succeeds.
    pub fn finish(self) -> Result<Manifest> {
        let missing = self.manifest.chunks.len() - self.next;
        if missing > 0 {
            return Err(Error::MissingChunks { missing });
        }
        Ok(self.manifest)
    }
}
