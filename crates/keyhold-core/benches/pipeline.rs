//! Single-core throughput of the write and read pipelines of keyhold-core:
//! keyed FastCDC, keyed BLAKE3, AES-256-GCM, and the whole
//! chunk -> hash -> derive key -> seal -> pack path, plus the reverse.
//!
//! Run: `cargo bench -p keyhold-core --bench pipeline` (optionally
//! `-- --mib 1024`). Prints MB/s per core for each stage and the ratio to
//! the 1 GB/s-per-core goal and to the measured ceilings of this machine
//! class (FastCDC + keyed BLAKE3 + AES-256-GCM: ~1.07 GB/s with aws-lc-rs,
//! ~1.23 GB/s with ring).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::as_conversions, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyhold_core::pack::{PACK_TARGET_LEN, PackBuilder};
use keyhold_core::{
    CollectionId, CollectionKey, CollectionKeys, FileDecryptor, FileEncryptor, FileId, FileMeta, ObjectType, os_rng,
};

const GOAL_MB_S: f64 = 1000.0;
const CEILING_RING_MB_S: f64 = 1230.0;
const CEILING_AWS_LC_MB_S: f64 = 1070.0;
const ROUNDS: usize = 3;

fn best_of(bytes: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed());
    }
    bytes as f64 / best.as_secs_f64() / 1e6
}

fn row(stage: &str, mb_s: f64) {
    println!(
        "{stage:<44} {mb_s:>9.0} MB/s   {:>5.2}x goal   {:>5.2}x ring ceiling   {:>5.2}x aws-lc ceiling",
        mb_s / GOAL_MB_S,
        mb_s / CEILING_RING_MB_S,
        mb_s / CEILING_AWS_LC_MB_S
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib =
        args.iter().position(|a| a == "--mib").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(256usize);
    let len = mib << 20;
    let mut data = vec![0u8; len];
    blake3::Hasher::new().update(b"keyhold bench").finalize_xof().fill(&mut data);
    let keys = CollectionKeys::derive(&CollectionKey::from_bytes([7; 32]), CollectionId([1; 16]), 1);
    let meta = || FileMeta { file_id: FileId([2; 16]), version: 1, name: "bench".into(), mode: 0o644, mtime_ns: 0 };

    println!("keyhold-core pipeline, one core, {mib} MiB of random data, best of {ROUNDS}");
    let chunk_lengths = keys.chunker().chunk_lengths(&data);
    println!("chunks: {} (average {:.0} KiB)", chunk_lengths.len(), len as f64 / chunk_lengths.len() as f64 / 1024.0);

    row(
        "keyed FastCDC 2020 (boundaries only)",
        best_of(len, || {
            black_box(keys.chunker().chunk_lengths(black_box(&data)));
        }),
    );
    let id_key = [9u8; 32];
    row(
        "keyed BLAKE3 (per 1 MiB)",
        best_of(len, || {
            for c in data.chunks(1 << 20) {
                black_box(blake3::keyed_hash(&id_key, c));
            }
        }),
    );
    row(
        "seal blob: BLAKE3 id + AES-256-GCM (1 MiB)",
        best_of(len, || {
            for c in data.chunks(1 << 20) {
                black_box(keys.seal_blob(ObjectType::Chunk, c).unwrap());
            }
        }),
    );
    row(
        "encrypt file: chunk + hash + seal",
        best_of(len, || {
            let mut enc = FileEncryptor::new(&keys);
            let mut out = Vec::new();
            for piece in data.chunks(8 << 20) {
                enc.update(piece, &mut out).unwrap();
                out.clear();
            }
            black_box(enc.finish(meta(), &mut out).unwrap());
        }),
    );
    let mut rng = os_rng();
    row(
        "encrypt file + build packs",
        best_of(len, || {
            let mut enc = FileEncryptor::new(&keys);
            let mut out = Vec::new();
            let mut pack = PackBuilder::new(&keys, &mut rng);
            for piece in data.chunks(8 << 20) {
                enc.update(piece, &mut out).unwrap();
                for blob in out.drain(..) {
                    if pack.blob_bytes() + blob.ciphertext.len() > PACK_TARGET_LEN && !pack.is_empty() {
                        let full = std::mem::replace(&mut pack, PackBuilder::new(&keys, &mut rng));
                        black_box(full.finish(&keys).unwrap());
                    }
                    pack.push(&blob).unwrap();
                }
            }
            black_box(enc.finish(meta(), &mut out).unwrap());
            black_box(pack.finish(&keys).unwrap());
        }),
    );

    // Read path: authenticate + decrypt + re-hash every chunk, in order.
    let mut enc = FileEncryptor::new(&keys);
    let mut sealed = Vec::new();
    enc.update(&data, &mut sealed).unwrap();
    let (manifest, _) = enc.finish(meta(), &mut sealed).unwrap();
    drop(data);
    row(
        "decrypt file: open + verify id, in order",
        best_of(len, || {
            let mut dec = FileDecryptor::new(&keys, manifest.clone());
            for blob in &sealed {
                black_box(dec.open_next(blob.ciphertext.clone()).unwrap());
            }
            dec.finish().unwrap();
        }),
    );
    println!(
        "goal: >= {GOAL_MB_S:.0} MB/s per core for \"encrypt file\" (the decrypt row includes one ciphertext copy per chunk)"
    );
}
