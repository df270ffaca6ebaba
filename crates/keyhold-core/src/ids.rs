//! Identifiers. Random 128-bit ids name accounts, collections and files;
//! 256-bit ids name blobs (keyed hashes of their plaintext) and stored objects
//! (hashes of their bytes). Ids are opaque to the server and carry no meaning.

use rand_core::CryptoRng;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = $len;

            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lower-case hex, as used in logs, paths of the client's own
            /// state and the spec's vectors.
            pub fn to_hex(&self) -> String {
                data_encoding::HEXLOWER.encode(&self.0)
            }

            /// Parses lower- or upper-case hex of exactly the right length.
            pub fn from_hex(s: &str) -> Option<Self> {
                let bytes = data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()?;
                Some($name(bytes.try_into().ok()?))
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

macro_rules! random_id {
    ($name:ident) => {
        impl $name {
            /// A fresh random id.
            pub fn generate(rng: &mut impl CryptoRng) -> Self {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                $name(bytes)
            }

            /// `n` fresh random ids from one draw of `rng`: with the OS
            /// generator, one system call rather than `n` (a first sync of
            /// 20,000 files spent 10 ms in `getrandom`).
            pub fn generate_many(rng: &mut impl CryptoRng, n: usize) -> Vec<Self> {
                let mut bytes = vec![0u8; n.saturating_mul(16)];
                rng.fill_bytes(&mut bytes);
                bytes
                    .chunks_exact(16)
                    .map(|c| {
                        let mut id = [0u8; 16];
                        id.copy_from_slice(c);
                        $name(id)
                    })
                    .collect()
            }
        }
    };
}

id_type!(
    /// An account: random, chosen by the account's first device.
    AccountId, 16
);
id_type!(
    /// A device: the first 16 bytes of a hash of its public keys.
    DeviceId, 16
);
id_type!(
    /// A collection (a synced folder, a record set, a stream): random.
    CollectionId, 16
);
id_type!(
    /// A file, stable across its versions and renames: random.
    FileId, 16
);
id_type!(
    /// A blob (chunk, manifest or listing): keyed BLAKE3 of its type and
    /// plaintext, so equal blobs dedup inside one collection key epoch and
    /// nothing can be learned across epochs or accounts.
    BlobId, 32
);
id_type!(
    /// A stored object (pack, revision, key wrap): unkeyed BLAKE3 of its
    /// exact stored bytes, which the server can check and the client verifies
    /// on download.
    ObjectId, 32
);

id_type!(
    /// A link share: random, chosen by the device that creates the link.
    LinkId, 16
);

random_id!(AccountId);
random_id!(LinkId);
random_id!(CollectionId);
random_id!(FileId);

impl CollectionId {
    /// The id of the collection an account names `name`: a keyed hash under
    /// the account root key, so every device of the account finds the same
    /// collection and the server learns nothing about the name.
    pub fn named(root: &crate::secret::AccountRootKey, name: &str) -> Self {
        let digest = crate::kdf::derive(crate::kdf::context::NAMED_COLLECTION_ID, &[root.expose_secret(), name.as_bytes()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.expose_secret().first_chunk::<16>().unwrap_or(&[0; 16]));
        CollectionId(id)
    }
}

impl ObjectId {
    /// The id of a stored object: BLAKE3-256 of its bytes.
    pub fn of(stored: &[u8]) -> Self {
        ObjectId(*blake3::hash(stored).as_bytes())
    }
}

/// Computes an [`ObjectId`] over bytes that arrive in pieces (an upload, a
/// pack being built); equal to [`ObjectId::of`] of their concatenation.
///
/// BLAKE3 hashes many 1 KiB chunks at once only within one `update`, in
/// subtrees aligned to what it has already hashed. Small pieces of
/// arbitrary length (HTTP body frames of a few KiB) leave it hashing most
/// chunks one at a time: a server receiving 20,000 small files' packs spent
/// 5% of all CPU there. So small pieces are gathered into runs of
/// [`Self::RUN`] bytes first; large ones go to BLAKE3 as they are (copying
/// them would cost more than their few unaligned chunks).
#[derive(Clone, Default)]
pub struct ObjectHasher {
    hasher: blake3::Hasher,
    /// Small pieces gathered so far; fewer than [`Self::RUN`] bytes.
    pending: Vec<u8>,
}

impl ObjectHasher {
    /// Bytes handed to BLAKE3 at a time: 64 chunks, enough for every SIMD
    /// width it uses.
    const RUN: usize = 64 * 1024;

    /// A hasher over no bytes yet.
    pub fn new() -> Self {
        ObjectHasher::default()
    }

    /// Appends bytes.
    pub fn update(&mut self, mut bytes: &[u8]) -> &mut Self {
        while !bytes.is_empty() {
            if self.pending.is_empty() && bytes.len() >= Self::RUN {
                self.hasher.update(bytes);
                break;
            }
            let take = (Self::RUN - self.pending.len()).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.pending.reserve_exact(Self::RUN);
            self.pending.extend_from_slice(head);
            bytes = rest;
            if self.pending.len() == Self::RUN {
                self.hasher.update(&self.pending);
                self.pending.clear();
            }
        }
        self
    }

    /// The id of everything appended.
    pub fn finish(&self) -> ObjectId {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        ObjectId(*hasher.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn ids_drawn_together_are_distinct() {
        assert!(FileId::generate_many(&mut crate::os_rng(), 0).is_empty());
        let ids = FileId::generate_many(&mut crate::os_rng(), 1000);
        let distinct: std::collections::HashSet<[u8; 16]> = ids.iter().map(|id| id.0).collect();
        assert_eq!((ids.len(), distinct.len()), (1000, 1000));
    }

    #[test]
    fn object_hasher_equals_one_hash_however_fed() {
        let mut data = vec![0u8; 3 * ObjectHasher::RUN + 4321];
        blake3::Hasher::new().update(b"pieces").finalize_xof().fill(&mut data);
        let whole = ObjectId::of(&data);
        let pieces: [&[usize]; 5] = [&[], &[1], &[1000, 1], &[ObjectHasher::RUN], &[16_377, 65_536, 3, ObjectHasher::RUN - 1]];
        for sizes in pieces {
            let mut hasher = ObjectHasher::new();
            let mut rest = &data[..];
            for &size in sizes.iter().cycle().take(if sizes.is_empty() { 0 } else { 10_000 }) {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at(size.min(rest.len()));
                hasher.update(piece);
                rest = tail;
            }
            hasher.update(rest);
            assert_eq!(hasher.finish(), whole, "pieces {sizes:?}");
            // Finishing leaves the hasher as it was.
            assert_eq!(hasher.finish(), whole);
        }
        assert_eq!(ObjectHasher::new().finish(), ObjectId::of(&[]));
    }
}
