//! Keyed content-defined chunking (spec: `format.md`, "Chunking"): FastCDC
//! 2020 (normalization level 1) from the `fastcdc` crate, with its gear table
//! replaced by 256 words drawn from the collection key, so chunk boundaries
//! reveal nothing an attacker can compare across accounts or epochs.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use zeroize::Zeroize;

/// No chunk is shorter than this, except a file's last (or only) chunk.
/// Half of [`AVG_CHUNK`] (as restic's): the cut hashes no byte before it.
pub const MIN_CHUNK: usize = 512 * 1024;
/// Target average chunk length.
pub const AVG_CHUNK: usize = 1024 * 1024;
/// No chunk is longer than this.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// A FastCDC chunker with a secret gear table.
pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    /// Builds the chunker from 2048 secret bytes: gear word `i` is bytes
    /// `8i..8i+8` read big-endian.
    pub(crate) fn from_gear_seed(seed: &[u8; 256 * 8]) -> Self {
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, word) in seed.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            if let (Some(g), Some(gl)) = (gear.get_mut(i), gear_ls.get_mut(i)) {
                *g = u64::from_be_bytes(b);
                *gl = *g << 1;
            }
            b.zeroize();
        }
        let (mask_s, mask_l) = select_masks(AVG_CHUNK, Normalization::Level1);
        Chunker { gear, gear_ls, mask_s, mask_l }
    }

    /// The length of the chunk that starts at `data[0]`.
    ///
    /// `data` must hold at least [`MAX_CHUNK`] bytes unless it is the rest of
    /// the file: the cut depends only on the first `MAX_CHUNK` bytes, so a
    /// streaming caller gets the same boundaries however it is fed.
    pub fn cut(&self, data: &[u8]) -> usize {
        let (_, len) = cut_gear(
            data,
            MIN_CHUNK,
            AVG_CHUNK,
            MAX_CHUNK,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            self.gear.as_slice(),
            self.gear_ls.as_slice(),
        );
        len
    }

    #[cfg(test)]
    pub(crate) fn gear_words(&self) -> &[u64; 256] {
        &self.gear
    }

    /// Splits a whole in-memory file into chunk lengths.
    pub fn chunk_lengths(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::with_capacity(data.len() / AVG_CHUNK + 1);
        while !data.is_empty() {
            let len = self.cut(data);
            out.push(len);
            data = data.get(len..).unwrap_or_default();
        }
        out
    }
}

impl Drop for Chunker {
    fn drop(&mut self) {
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

impl core::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Chunker([REDACTED])")
    }
}
