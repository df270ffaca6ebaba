//! Streaming file encryption and decryption in constant memory (spec:
//! `format.md`, "Files"). The encryptor holds at most one maximum chunk of
//! plaintext; the decryptor releases a chunk only after it authenticated it
//! and checked that it is the chunk the manifest lists at that position
//! (SECURITY B1–B5). A file is complete only when `finish` succeeds.

use crate::blob::SealedBlob;
use crate::chunking::MAX_CHUNK;
use crate::collection::CollectionKeys;
use crate::encoding::len_u32;
use crate::envelope::ObjectType;
use crate::error::{Error, Result};
use crate::tree::{ChunkRef, FileMeta, Manifest};

/// Chunks, hashes and seals a file as it is read.
pub struct FileEncryptor<'k> {
    keys: &'k CollectionKeys,
    pending: Vec<u8>,
    start: usize,
    chunks: Vec<ChunkRef>,
    size: u64,
}

impl<'k> FileEncryptor<'k> {
    /// Starts a file under the given collection keys.
    pub fn new(keys: &'k CollectionKeys) -> Self {
        FileEncryptor { keys, pending: Vec::with_capacity(2 * MAX_CHUNK), start: 0, chunks: Vec::new(), size: 0 }
    }

    /// Feeds the next bytes of the file; every chunk completed by them is
    /// appended to `out`, sealed.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<SealedBlob>) -> Result<()> {
        while !data.is_empty() {
            if self.start > 0 {
                self.pending.drain(..self.start);
                self.start = 0;
            }
            let room = (2 * MAX_CHUNK).saturating_sub(self.pending.len()).max(1);
            let (head, tail) = data.split_at(room.min(data.len()));
            self.pending.extend_from_slice(head);
            data = tail;
            while self.pending.len() - self.start >= MAX_CHUNK {
                self.seal_next(out)?;
            }
        }
        Ok(())
    }

    fn seal_next(&mut self, out: &mut Vec<SealedBlob>) -> Result<()> {
        let rest = self.pending.get(self.start..).unwrap_or_default();
        let len = self.keys.chunker.cut(rest);
        let chunk = rest.get(..len).ok_or(Error::Malformed("chunker cut beyond its input"))?;
        let sealed = self.keys.seal_blob(ObjectType::Chunk, chunk)?;
        self.chunks.push(ChunkRef { id: sealed.id, len: len_u32(len, "chunk too long")? });
        self.size += u64::try_from(len).map_err(|_| Error::LimitExceeded("file too large"))?;
        self.start += len;
        out.push(sealed);
        Ok(())
    }

    /// Seals the remaining chunks and returns the file's manifest together
    /// with the sealed manifest blob.
    pub fn finish(mut self, meta: FileMeta, out: &mut Vec<SealedBlob>) -> Result<(Manifest, SealedBlob)> {
        while self.start < self.pending.len() {
            self.seal_next(out)?;
        }
        let manifest = Manifest { meta, size: self.size, chunks: self.chunks };
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
