//! Key directory benchmark (issue #5): publish time, proof sizes and
//! verification times at 10k and 100k labels, on the embedded SQLite store,
//! as `keyhold serve` runs it (akd over `DirectoryStore`, with the
//! publisher's cache). Run with `scripts/kt-bench.sh` (release build).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::as_conversions)]

use std::time::{Duration, Instant};

use akd::ecvrf::VRFKeyStorage;
use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, AzksParallelismConfig, Directory};
use keyhold_core::transparency::{self as kt, DirectoryLabel, DirectoryValue, KtConfig};
use keyhold_core::{AccountId, CollectionId};
use keyhold_server::directory_store::DirectoryStore;
use keyhold_server::store::MetaStore;
use keyhold_server::transparency::VrfKey;
use zeroize::Zeroizing;

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Half accounts, half collections, as a deployment's directory holds.
fn label(i: u64) -> DirectoryLabel {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    if i.is_multiple_of(2) {
        DirectoryLabel::Account(AccountId(id))
    } else {
        DirectoryLabel::Collection(AccountId(id), CollectionId(id))
    }
}

fn updates(range: std::ops::Range<u64>, seq: u64) -> Vec<(AkdLabel, AkdValue)> {
    range
        .map(|i| {
            let value = DirectoryValue { seq, hash: *blake3::hash(&[i.to_be_bytes(), seq.to_be_bytes()].concat()).as_bytes() };
            (AkdLabel(label(i).to_bytes()), AkdValue(value.to_bytes()))
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn run(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("metadata.sqlite3")).await.unwrap();
    let vrf = VrfKey::from_seed(Zeroizing::new([7u8; 32]));
    let storage = StorageManager::new(
        DirectoryStore::new(&store),
        Some(Duration::from_secs(3600)),
        Some(256 << 20),
        Some(Duration::from_secs(60)),
    );
    let akd = Directory::<KtConfig, _, _>::new(storage, vrf.clone(), AzksParallelismConfig::default()).await.unwrap();
    let started = Instant::now();
    let before = akd.publish(updates(0..n, 0)).await.unwrap();
    let first = started.elapsed();
    let changed = (n / 100).max(1);
    let started = Instant::now();
    let epoch = akd.publish(updates(0..changed, 1)).await.unwrap();
    let update = started.elapsed();

    let vrf_pk = vrf.get_vrf_public_key().await.unwrap().to_bytes().to_vec();
    let target = label(0);
    let (lookup, _) = akd.lookup(AkdLabel(target.to_bytes())).await.unwrap();
    let lookup_bytes = kt::encode_lookup_proof(&lookup);
    let (history, _) = akd.key_history(&AkdLabel(target.to_bytes()), akd::HistoryParams::default()).await.unwrap();
    let history_bytes = kt::encode_history_proof(&history);
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        kt::verify_lookup(&vrf_pk, epoch.1, epoch.0, &target, &lookup_bytes).unwrap();
    }
    let lookup_verify = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        kt::verify_history(&vrf_pk, epoch.1, epoch.0, &target, &history_bytes).unwrap();
    }
    let history_verify = started.elapsed() / rounds;
    let started = Instant::now();
    let audit = akd.audit(before.0, epoch.0).await.unwrap();
    let audit_make = started.elapsed();
    let audit_bytes = kt::encode_audit_proof(&audit.proofs[0]);
    let started = Instant::now();
    akd::auditor::audit_verify::<KtConfig>(vec![before.1, epoch.1], audit).await.unwrap();
    let audit_verify = started.elapsed();
    println!("{n:>7} labels");
    println!("  publish, first epoch      {:>12}  ({:.0} labels/s)", ms(first), n as f64 / first.as_secs_f64());
    println!("  publish, {changed:>5} changes     {:>12}", ms(update));
    println!("  lookup proof              {:>9} B   verify {}", lookup_bytes.len(), ms(lookup_verify));
    println!("  history proof (2 versions){:>9} B   verify {}", history_bytes.len(), ms(history_verify));
    println!(
        "  append-only proof         {:>9} B   made in {}, verified in {}",
        audit_bytes.len(),
        ms(audit_make),
        ms(audit_verify)
    );
    println!("  peak memory (process)     {:>9} MiB", peak_rss_mib());
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![10_000, 100_000] } else { sizes };
    println!("key directory on SQLite (akd 0.13, BLAKE3 configuration), one process on this machine:");
    for n in sizes {
        run(n).await;
    }
}
