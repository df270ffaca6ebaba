//! Keys of one collection key epoch (spec: `keys.md`, "Collection keys"):
//! everything that protects a collection's blobs, packs and revisions is
//! derived from the epoch's collection key, the collection id and the epoch,
//! each under its own context string (SECURITY A5).

use zeroize::Zeroize;

use crate::chunking::Chunker;
use crate::ids::CollectionId;
use crate::kdf::{context, derive};
use crate::secret::{CollectionKey, SubKey};

/// The derived keys of one collection at one key epoch.
pub struct CollectionKeys {
    pub(crate) collection: CollectionId,
    pub(crate) epoch: u32,
    pub(crate) blob_id: SubKey,
    pub(crate) blob_key_root: SubKey,
    pub(crate) pack_key_root: SubKey,
    pub(crate) revision: SubKey,
    pub(crate) chunker: Chunker,
}

impl CollectionKeys {
    /// Derives every key of `collection` at `epoch` from its collection key.
    pub fn derive(key: &CollectionKey, collection: CollectionId, epoch: u32) -> Self {
        let secret = key.expose_secret();
        let ids = collection.as_bytes();
        let epoch_bytes = epoch.to_be_bytes();
        let sub = |ctx: &str| derive(ctx, &[secret, ids, &epoch_bytes]);
        let mut gear_seed = [0u8; 256 * 8];
        let mut xof = blake3::Hasher::new_derive_key(context::CHUNKER_GEAR);
        xof.update(secret).update(ids).update(&epoch_bytes);
        xof.finalize_xof().fill(&mut gear_seed);
        let chunker = Chunker::from_gear_seed(&gear_seed);
        gear_seed.zeroize();
        CollectionKeys {
            collection,
            epoch,
            blob_id: sub(context::BLOB_ID),
            blob_key_root: sub(context::BLOB_KEY_ROOT),
            pack_key_root: sub(context::PACK_KEY_ROOT),
            revision: sub(context::REVISION_KEY),
            chunker,
        }
    }

    /// The collection these keys belong to.
    pub fn collection(&self) -> CollectionId {
        self.collection
    }

    /// The collection key epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The keyed content-defined chunker of this epoch.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
}

impl core::fmt::Debug for CollectionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CollectionKeys({}, epoch {}, [REDACTED])", self.collection, self.epoch)
    }
}
