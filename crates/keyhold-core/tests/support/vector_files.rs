//! What the vector tests share (`src/vectors.rs`, and the
//! sharing, link and transparency vectors): hex helpers, an RNG that records
//! what it hands out and one that replays it, and the generation direction
//! (the files on disk are exactly what the code generates).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;

use chacha20::ChaCha20Rng;
use rand_core::utils::next_word_via_fill;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};
use serde_json::Value;

pub fn h(b: &[u8]) -> String {
    hex::encode(b)
}

pub fn unh(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

pub fn unh16(v: &Value) -> [u8; 16] {
    unh(v).try_into().unwrap()
}

pub fn unh32(v: &Value) -> [u8; 32] {
    unh(v).try_into().unwrap()
}

/// Hands out ChaCha20 output from a fixed seed and records every byte.
pub struct RecordingRng {
    inner: ChaCha20Rng,
    drawn: Vec<u8>,
}

impl RecordingRng {
    pub fn new(seed: u8) -> Self {
        RecordingRng { inner: ChaCha20Rng::from_seed([seed; 32]), drawn: Vec::new() }
    }

    /// What was drawn since the last call, as hex.
    pub fn take(&mut self) -> String {
        hex::encode(std::mem::take(&mut self.drawn))
    }
}

impl TryRng for RecordingRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        next_word_via_fill(self)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        next_word_via_fill(self)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.try_fill_bytes(dst)?;
        self.drawn.extend_from_slice(dst);
        Ok(())
    }
}
impl TryCryptoRng for RecordingRng {}

/// Hands out exactly a vector's recorded bytes; panics if asked for more.
pub struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRng {
    pub fn new(recorded: &Value) -> Self {
        ReplayRng { bytes: unh(recorded), pos: 0 }
    }

    pub fn from_hex(recorded: &str) -> Self {
        ReplayRng { bytes: hex::decode(recorded).unwrap(), pos: 0 }
    }
}

impl TryRng for ReplayRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        next_word_via_fill(self)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        next_word_via_fill(self)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let end = self.pos + dst.len();
        assert!(end <= self.bytes.len(), "vector's recorded randomness exhausted");
        dst.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }
}
impl TryCryptoRng for ReplayRng {}

/// The generation direction: every generated vector is on disk byte for
/// byte (or, with `KEYHOLD_UPDATE_VECTORS=1`, is written there), and the
/// folder holds no other file.
pub fn check_generated(dir: &Path, generated: &BTreeMap<&'static str, Value>) {
    let update = std::env::var_os("KEYHOLD_UPDATE_VECTORS").is_some();
    for (name, value) in generated {
        let path = dir.join(name);
        let rendered = serde_json::to_string_pretty(value).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&path, rendered).unwrap();
        } else {
            let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {name}: KEYHOLD_UPDATE_VECTORS=1"));
            assert_eq!(on_disk, rendered, "{name} differs from what the code generates");
        }
    }
    let mut files: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    let names: Vec<String> = generated.keys().map(|k| (*k).to_owned()).collect();
    assert_eq!(files, names, "{} holds exactly the generated files", dir.display());
}
