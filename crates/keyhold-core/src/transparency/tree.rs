//! The log's Merkle tree (RFC 6962 hashing, as `tlog_tiles` implements it):
//! proofs for the server, K3 and K5 for clients, and C2SP hash tiles (spec:
//! `transparency.md`, "The log").

use tlog_tiles::{
    Error as TlogError, Hash, HashReader, Tile, check_record, check_tree, prove_record, prove_tree, record_hash,
    stored_hash_index, stored_hashes_for_record_hash, tree_hash,
};

use super::KtError;
use super::note::Checkpoint;

/// The most hashes a proof may hold: a consistency proof of a tree of up to
/// 2^64 entries has at most 2 × 64 hashes, an inclusion proof at most 64.
/// Longer proofs are refused before any hashing.
pub const MAX_PROOF_LEN: usize = 128;
/// Hashes in a full C2SP tile (tiles have height 8).
pub const TILE_WIDTH: u64 = 256;
const TILE_HEIGHT: u8 = 8;

/// The RFC 6962 leaf hash of a log entry: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    record_hash(entry).0
}

/// A log's tree held in memory: every stored hash (tlog's Crosby–Wallach
/// layout, about two hashes per entry), appended one leaf at a time. Answers
/// roots, proofs and tiles for every size up to its own in O(log n).
#[derive(Clone, Debug, Default)]
pub struct MerkleLog {
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for MerkleLog {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|i| usize::try_from(*i).ok().and_then(|i| self.stored.get(i)).copied().ok_or(TlogError::IndexesNotInTree))
            .collect()
    }
}

impl MerkleLog {
    /// An empty log.
    pub fn new() -> Self {
        MerkleLog::default()
    }

    /// A log holding these leaf hashes, in order.
    pub fn from_leaf_hashes(leaf_hashes: &[[u8; 32]]) -> Self {
        let mut log = MerkleLog::new();
        for h in leaf_hashes {
            log.append_leaf_hash(*h);
        }
        log
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf by its hash ([`leaf_hash`] of the entry); returns its index.
    pub fn append_leaf_hash(&mut self, leaf: [u8; 32]) -> u64 {
        let index = self.size;
        // Reads only hashes already stored: cannot fail on our own reader.
        if let Ok(new) = stored_hashes_for_record_hash(index, Hash(leaf), self) {
            self.stored.extend(new);
            self.size = index.saturating_add(1);
        }
        index
    }

    /// Appends an entry; returns its index.
    pub fn append(&mut self, entry: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(entry))
    }

    /// The root of the tree of the first `size` leaves (`size <= self.size()`).
    pub fn root(&self, size: u64) -> Result<[u8; 32], KtError> {
        if size > self.size {
            return Err(KtError::BeyondTree);
        }
        tree_hash(size, self).map(|h| h.0).map_err(|_| KtError::BeyondTree)
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Result<[u8; 32], KtError> {
        if index >= self.size {
            return Err(KtError::BeyondTree);
        }
        self.read_hashes(&[stored_hash_index(0, index)])
            .ok()
            .and_then(|v| v.first().copied())
            .map(|h| h.0)
            .ok_or(KtError::BeyondTree)
    }

    /// The RFC 6962 consistency proof from the tree of `old_size` leaves to
    /// the tree of `new_size` leaves (`old_size <= new_size <= self.size()`);
    /// empty if `old_size` is 0 or equals `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<[u8; 32]>, KtError> {
        if old_size > new_size || new_size > self.size {
            return Err(KtError::BeyondTree);
        }
        if old_size == 0 {
            return Ok(Vec::new());
        }
        let proof = prove_tree(new_size, old_size, self).map_err(|_| KtError::BeyondTree)?;
        Ok(proof.into_iter().map(|h| h.0).collect())
    }

    /// The RFC 6962 inclusion proof of leaf `index` in the tree of `size`
    /// leaves (`index < size <= self.size()`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, KtError> {
        if index >= size || size > self.size {
            return Err(KtError::BeyondTree);
        }
        let proof = prove_record(size, index, self).map_err(|_| KtError::BeyondTree)?;
        Ok(proof.into_iter().map(|h| h.0).collect())
    }

    /// The C2SP tlog-tiles hash tile at `level`, `index`, holding `width`
    /// hashes (1 to 256): the hashes at tree level `8 × level`, positions
    /// `256 × index` to `256 × index + width − 1`, concatenated. Every one of
    /// them must be a complete subtree of the current tree (`BeyondTree`).
    pub fn tile(&self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, KtError> {
        if level >= 64 || width == 0 || width > TILE_WIDTH {
            return Err(KtError::Malformed("tile coordinates"));
        }
        // The last hash of the tile covers leaves up to
        // (index * 256 + width) << (8 * level), which must not pass the size.
        let end = index
            .checked_mul(TILE_WIDTH)
            .and_then(|s| s.checked_add(width))
            .and_then(|e| e.checked_mul(1u64.checked_shl(u32::from(level).saturating_mul(8))?))
            .ok_or(KtError::BeyondTree)?;
        if end > self.size {
            return Err(KtError::BeyondTree);
        }
        let width = u32::try_from(width).map_err(|_| KtError::Malformed("tile width"))?;
        Tile::new(TILE_HEIGHT, level, index, width, false).read_data(self).map_err(|_| KtError::BeyondTree)
    }
}

/// The root of the tree of these leaves (the empty tree's root is
/// SHA-256 of nothing). O(n); a server should keep a [`MerkleLog`].
pub fn tree_root(leaf_hashes: &[[u8; 32]]) -> [u8; 32] {
    let log = MerkleLog::from_leaf_hashes(leaf_hashes);
    log.root(log.size()).unwrap_or(tlog_tiles::EMPTY_HASH.0)
}

fn len_u64(leaf_hashes: &[[u8; 32]]) -> Result<u64, KtError> {
    u64::try_from(leaf_hashes.len()).map_err(|_| KtError::BeyondTree)
}

/// [`MerkleLog::consistency_proof`] over the first leaves of `leaf_hashes`
/// (`new_size <= leaf_hashes.len()`). O(n); a server should keep a [`MerkleLog`].
pub fn consistency_proof(leaf_hashes: &[[u8; 32]], old_size: u64, new_size: u64) -> Result<Vec<[u8; 32]>, KtError> {
    if new_size > len_u64(leaf_hashes)? {
        return Err(KtError::BeyondTree);
    }
    let n = usize::try_from(new_size).map_err(|_| KtError::BeyondTree)?;
    MerkleLog::from_leaf_hashes(leaf_hashes.get(..n).ok_or(KtError::BeyondTree)?).consistency_proof(old_size, new_size)
}

/// [`MerkleLog::inclusion_proof`] over the first leaves of `leaf_hashes`
/// (`size <= leaf_hashes.len()`). O(n); a server should keep a [`MerkleLog`].
pub fn inclusion_proof(leaf_hashes: &[[u8; 32]], index: u64, size: u64) -> Result<Vec<[u8; 32]>, KtError> {
    if size > len_u64(leaf_hashes)? {
        return Err(KtError::BeyondTree);
    }
    let n = usize::try_from(size).map_err(|_| KtError::BeyondTree)?;
    MerkleLog::from_leaf_hashes(leaf_hashes.get(..n).ok_or(KtError::BeyondTree)?).inclusion_proof(index, size)
}

/// [`MerkleLog::tile`] of the tree of all of `leaf_hashes`. O(n); a server
/// should keep a [`MerkleLog`].
pub fn tile_data(leaf_hashes: &[[u8; 32]], level: u8, index: u64, width: u64) -> Result<Vec<u8>, KtError> {
    MerkleLog::from_leaf_hashes(leaf_hashes).tile(level, index, width)
}

/// Parses a C2SP tlog-tiles hash tile path `tile/<L>/<N>[.p/<W>]` (the
/// leading `tile/` may be left out): `N` in groups of three digits, all but
/// the last prefixed with `x` (`x001/234`); `W` from 1 to 255 for a partial
/// tile. Returns `(level, index, width)`, width 256 for a full tile. Only
/// the canonical encoding is accepted; data (`entries`) tiles are not hash
/// tiles and are refused.
pub fn parse_tile_path(path: &str) -> Result<(u8, u64, u64), KtError> {
    let bad = KtError::Malformed("tile path");
    let rest = path.strip_prefix("tile/").unwrap_or(path);
    let (level, n_part) = rest.split_once('/').ok_or(bad.clone())?;
    // Pre-checks so that `Tile::from_path` (whose `Tile::new` asserts on
    // out-of-range values) only ever sees values it accepts.
    if level.is_empty() || level.len() > 2 || !level.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let l: u8 = level.parse().map_err(|_| bad.clone())?;
    if l >= 64 {
        return Err(bad);
    }
    if let Some((_, w)) = n_part.split_once(".p/") {
        let w: u32 = w.parse().map_err(|_| bad.clone())?;
        if w == 0 || u64::from(w) >= TILE_WIDTH || !n_part.bytes().all(|b| b.is_ascii_digit() || b"x./p".contains(&b)) {
            return Err(bad);
        }
    } else if !n_part.bytes().all(|b| b.is_ascii_digit() || b"x/".contains(&b)) {
        return Err(bad);
    }
    let tile = Tile::from_path(&format!("tile/{TILE_HEIGHT}/{rest}")).map_err(|_| bad.clone())?;
    if tile.is_data() || tile.height() != TILE_HEIGHT || tile.level() != l {
        return Err(bad);
    }
    Ok((tile.level(), tile.level_index(), u64::from(tile.width())))
}

fn to_hashes(proof: &[[u8; 32]]) -> Result<Vec<Hash>, KtError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(KtError::Malformed("proof too long"));
    }
    Ok(proof.iter().map(|h| Hash(*h)).collect())
}

/// K3: `new` extends `old`. A smaller `new` is `Rollback`; an equal size
/// with another root, or a consistency proof that does not verify, is
/// `Inconsistent` (keep both checkpoints as evidence). From an empty `old`
/// (size 0, root SHA-256 of nothing) the proof must be empty.
pub fn check_consistency(old: &Checkpoint, new: &Checkpoint, proof: &[[u8; 32]]) -> Result<(), KtError> {
    if old.origin != new.origin {
        return Err(KtError::UnknownOrigin { found: new.origin.clone() });
    }
    if new.size < old.size {
        return Err(KtError::Rollback { have: old.size, served: new.size });
    }
    let proof = to_hashes(proof)?;
    if old.size == new.size {
        return if old.root == new.root && proof.is_empty() { Ok(()) } else { Err(KtError::Inconsistent) };
    }
    if old.size == 0 {
        return if old.root == tlog_tiles::EMPTY_HASH.0 && proof.is_empty() { Ok(()) } else { Err(KtError::Inconsistent) };
    }
    check_tree(&proof, new.size, Hash(new.root), old.size, Hash(old.root)).map_err(|_| KtError::Inconsistent)
}

/// K5: `entry` is the leaf at `index` of `cp`'s tree (`BadInclusion`).
pub fn check_inclusion(cp: &Checkpoint, index: u64, entry: &[u8], proof: &[[u8; 32]]) -> Result<(), KtError> {
    if index >= cp.size {
        return Err(KtError::BadInclusion);
    }
    let proof = to_hashes(proof)?;
    check_record(&proof, cp.size, Hash(cp.root), index, record_hash(entry)).map_err(|_| KtError::BadInclusion)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::as_conversions)]
    use super::*;

    fn leaves(n: u64) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// RFC 6962's recursive definition, written out independently.
    fn reference_root(l: &[[u8; 32]]) -> [u8; 32] {
        use tlog_tiles::node_hash;
        match l.len() {
            0 => tlog_tiles::EMPTY_HASH.0,
            1 => l[0],
            n => {
                // The largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(Hash(reference_root(&l[..k])), Hash(reference_root(&l[k..]))).0
            }
        }
    }

    #[test]
    fn roots_match_the_rfc_definition() {
        for n in 0..70u64 {
            let l = leaves(n);
            assert_eq!(tree_root(&l), reference_root(&l), "size {n}");
        }
    }

    #[test]
    fn tiles_hold_the_stored_hashes() {
        let l = leaves(600);
        let log = MerkleLog::from_leaf_hashes(&l);
        let t = log.tile(0, 0, 256).unwrap();
        assert_eq!(t.len(), 256 * 32);
        assert_eq!(&t[..32], &l[0]);
        assert_eq!(&t[255 * 32..], &l[255]);
        let p = log.tile(0, 2, 88).unwrap();
        assert_eq!(&p[..32], &l[512]);
        assert_eq!(log.tile(0, 2, 89), Err(KtError::BeyondTree));
        let up = log.tile(1, 0, 2).unwrap();
        assert_eq!(&up[..32], &reference_root(&l[..256]));
        assert_eq!(&up[32..], &reference_root(&l[256..512]));
        assert_eq!(log.tile(1, 0, 3), Err(KtError::BeyondTree));
        assert!(log.tile(0, 0, 0).is_err());
        assert!(log.tile(0, 0, 257).is_err());
        assert!(log.tile(64, 0, 1).is_err());
        assert_eq!(log.tile(7, u64::MAX, 256), Err(KtError::BeyondTree));
        assert_eq!(tile_data(&l, 0, 1, 256).unwrap(), log.tile(0, 1, 256).unwrap());
    }

    #[test]
    fn tile_paths() {
        assert_eq!(parse_tile_path("tile/0/000").unwrap(), (0, 0, 256));
        assert_eq!(parse_tile_path("0/000").unwrap(), (0, 0, 256));
        assert_eq!(parse_tile_path("tile/1/x001/234.p/5").unwrap(), (1, 1234, 5));
        assert_eq!(parse_tile_path("tile/2/x001/x234/067").unwrap(), (2, 1_234_067, 256));
        for bad in [
            "tile/0/0",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/05",
            "tile/64/000",
            "tile/200/000",
            "tile/entries/000",
            "tile/data/000",
            "tile/0/x000/001",
            "tile/0/-01",
            "tile/+1/000",
            "tile/0/000/",
            "tile//000",
            "",
            "tile/",
        ] {
            assert!(parse_tile_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlong_proofs_are_refused_before_hashing() {
        let cp = Checkpoint { origin: "o".into(), size: 3, root: [0; 32] };
        assert_eq!(check_inclusion(&cp, 0, b"x", &[[0; 32]; 200]), Err(KtError::Malformed("proof too long")));
    }
}
