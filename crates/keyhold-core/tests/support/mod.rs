//! Shared test fixtures: deterministic keys and an in-memory "server" that
//! stores blobs by id, so tests can play the hostile operator on its stores.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use chacha20::ChaCha20Rng;
use keyhold_core::{
    BlobId, BlobRef, CollectionId, CollectionKey, CollectionKeys, DeviceSecret, Entry, EntryKind, FileDecryptor, FileEncryptor,
    FileId, FileMeta, Listing, Manifest, ObjectType, SealedBlob,
};
use rand_core::SeedableRng;

pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

pub fn keys(epoch: u32) -> CollectionKeys {
    CollectionKeys::derive(&CollectionKey::from_bytes([0x42; 32]), CollectionId([0x24; 16]), epoch)
}

pub fn device(seed: u8) -> DeviceSecret {
    DeviceSecret::from_seeds(&[seed; 32], &[seed.wrapping_add(1); 32])
}

/// Deterministic pseudo-random content.
pub fn data(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(label.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// A plaintext tree: folders map names to nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { content: Vec<u8>, mode: u32, mtime_ns: i64 },
    Folder(BTreeMap<String, Node>),
}

/// Blob ciphertexts by id, as a server would hold them (packs aside).
#[derive(Default, Clone)]
pub struct BlobStore {
    pub blobs: BTreeMap<BlobId, (ObjectType, Vec<u8>)>,
}

impl BlobStore {
    pub fn put(&mut self, blob: SealedBlob) {
        self.blobs.insert(blob.id, (blob.kind, blob.ciphertext));
    }

    pub fn get(&self, id: &BlobId) -> Vec<u8> {
        self.blobs.get(id).map(|(_, c)| c.clone()).unwrap_or_default()
    }
}

pub fn encrypt_file(
    keys: &CollectionKeys,
    name: &str,
    content: &[u8],
    mode: u32,
    mtime_ns: i64,
    store: &mut BlobStore,
) -> (Manifest, BlobRef) {
    let mut enc = FileEncryptor::new(keys);
    let mut out = Vec::new();
    for piece in content.chunks(1 << 20) {
        enc.update(piece, &mut out).unwrap();
    }
    let meta = FileMeta {
        file_id: FileId(*blake3::hash(name.as_bytes()).as_bytes().first_chunk().unwrap()),
        version: 1,
        name: name.into(),
        mode,
        mtime_ns,
    };
    let (manifest, sealed) = enc.finish(meta, &mut out).unwrap();
    let target = keys.blob_ref(&sealed);
    for blob in out.into_iter().chain([sealed]) {
        store.put(blob);
    }
    (manifest, target)
}

/// Seals a folder bottom-up; returns its listing's reference.
pub fn seal_folder(keys: &CollectionKeys, folder: &BTreeMap<String, Node>, store: &mut BlobStore) -> BlobRef {
    let mut entries = Vec::new();
    for (name, node) in folder {
        entries.push(match node {
            Node::File { content, mode, mtime_ns } => {
                let (manifest, target) = encrypt_file(keys, name, content, *mode, *mtime_ns, store);
                Entry::for_file(&manifest, target)
            }
            Node::Folder(children) => Entry {
                name: name.clone(),
                kind: EntryKind::Folder,
                mode: 0o755,
                mtime_ns: 0,
                size: 0,
                target: seal_folder(keys, children, store),
            },
        });
    }
    let sealed = keys.seal_listing(&Listing::new(entries).unwrap()).unwrap();
    let target = keys.blob_ref(&sealed);
    store.put(sealed);
    target
}

/// Reads and authenticates a whole tree, as a client restoring it would.
pub fn read_folder(keys: &CollectionKeys, root: &BlobRef, store: &BlobStore) -> keyhold_core::Result<BTreeMap<String, Node>> {
    let listing = keys.open_listing(&root.id, store.get(&root.id))?;
    let mut out = BTreeMap::new();
    for entry in listing.entries() {
        let node = match entry.kind {
            EntryKind::Folder => Node::Folder(read_folder(keys, &entry.target, store)?),
            EntryKind::File => {
                let manifest = keys.open_manifest(&entry.target.id, store.get(&entry.target.id))?;
                entry.check_manifest(&manifest)?;
                let mut dec = FileDecryptor::new(keys, manifest);
                let mut content = Vec::new();
                while let Some(chunk) = dec.expected().copied() {
                    content.extend_from_slice(&dec.open_next(store.get(&chunk.id))?);
                }
                let manifest = dec.finish()?;
                Node::File { content, mode: manifest.meta.mode, mtime_ns: manifest.meta.mtime_ns }
            }
        };
        out.insert(entry.name.clone(), node);
    }
    Ok(out)
}

pub fn file(content: &[u8]) -> Node {
    Node::File { content: content.to_vec(), mode: 0o644, mtime_ns: 1_700_000_000_000_000_000 }
}

pub fn folder(entries: Vec<(&str, Node)>) -> Node {
    Node::Folder(entries.into_iter().map(|(n, node)| (n.to_owned(), node)).collect())
}
