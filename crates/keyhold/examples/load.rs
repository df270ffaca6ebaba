//! Load generator for `keyhold serve` (issue "Scale out", run by
//! `scripts/load-bench.sh`): N concurrent clients for S seconds against a
//! real server on loopback, on one of two backends —
//!
//! - `embedded`: one process on its defaults (SQLite and a blob folder);
//! - `postgres-s3`: two processes over one PostgreSQL and one Garage bucket
//!   (started here, as the tests start them), clients spread over both.
//!
//! Each client is a device of one of eight accounts (made with the client
//! library, as `keyhold init` makes them), signs in, then loops over a mix
//! like a syncing device's: read a collection head (60%), upload a 64 KiB
//! pack (20%), read a range of a pack it uploaded (20%). Prints requests/s,
//! p50/p99 latency per operation, errors, and each server's peak memory
//! (VmHWM). Exits non-zero if any request failed.
//!
//! `cargo run --release -p keyhold --example load -- embedded 64 60`

// Rates and percentiles are float arithmetic on counts: `as` is what they need.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::as_conversions, missing_docs)]

#[path = "../../keyhold-server/tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres_cluster;

#[path = "../../keyhold-server/tests/support/garage.rs"]
#[allow(dead_code)]
mod garage;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyhold_client::api::Api;
use keyhold_client::home::Home;
use keyhold_core::pack::PackBuilder;
use keyhold_core::{CollectionId, CollectionKey, CollectionKeys, ObjectType, os_rng};

const ACCOUNTS: usize = 8;
const PACK_PLAINTEXT: usize = 64 << 10;

struct Server {
    child: Child,
    url: String,
}

/// `keyhold` beside this example's folder (target/<profile>/examples/..).
fn keyhold_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("keyhold")).unwrap();
    assert!(bin.is_file(), "{} is missing: cargo build --release -p keyhold first", bin.display());
    bin
}

impl Server {
    fn start(dir: &Path, name: &str, config: &str) -> Server {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}\n[limits]\ndefault_quota_bytes = 1099511627776\n\
                 requests_per_second = 1000000\nrequest_burst = 1000000\nauth_per_minute = 100000\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(keyhold_binary())
            .args(["serve", "--config"])
            .arg(&file)
            .env("KEYHOLD_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening ").expect("server did not start").to_owned();
        Server { child, url }
    }

    /// Peak resident memory so far, MiB.
    fn peak_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
            / 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Tally {
    head: Vec<Duration>,
    put: Vec<Duration>,
    get: Vec<Duration>,
    errors: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at].as_secs_f64() * 1000.0
}

async fn client(url: String, home: std::path::PathBuf, until: Instant, seed: u64) -> Tally {
    let mut tally = Tally::default();
    let (_, keys) = Home::locate(Some(home)).unwrap().load().unwrap();
    let mut api = Api::new(&url).unwrap();
    if let Err(e) = api.sign_in(keys.account, &keys.device).await {
        tally.errors.push(format!("sign-in: {e}"));
        return tally;
    }
    let mut rng = os_rng();
    let collection = CollectionId::generate(&mut rng);
    let coll_keys = CollectionKeys::derive(&CollectionKey::generate(&mut rng), collection, 0);
    let mut mine: Vec<(keyhold_core::ObjectId, u64)> = Vec::new();
    let mut x = seed | 1;
    let mut plaintext = vec![0u8; PACK_PLAINTEXT];
    while Instant::now() < until {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let roll = x % 10;
        let started = Instant::now();
        if roll < 6 || (roll >= 8 && mine.is_empty()) {
            match api.head(collection).await {
                Ok(_) => tally.head.push(started.elapsed()),
                Err(e) => tally.errors.push(format!("head: {e}")),
            }
        } else if roll < 8 {
            plaintext[..8].copy_from_slice(&x.to_le_bytes());
            let blob = coll_keys.seal_blob(ObjectType::Chunk, &plaintext).unwrap();
            let mut builder = PackBuilder::new(&coll_keys, &mut rng);
            builder.push(&blob).unwrap();
            let (id, bytes, _) = builder.finish(&coll_keys).unwrap();
            let size = bytes.len() as u64;
            let started = Instant::now();
            match api.put_pack(collection, id, bytes.into()).await {
                Ok(()) => {
                    tally.put.push(started.elapsed());
                    mine.push((id, size));
                }
                Err(e) => tally.errors.push(format!("put: {e}")),
            }
        } else {
            let (id, size) = mine[(x as usize / 10) % mine.len()];
            let start = (x / 100) % (size / 2);
            match api.get_pack(collection, id, Some(start..start + 4096.min(size - start))).await {
                Ok(_) => tally.get.push(started.elapsed()),
                Err(e) => tally.errors.push(format!("get: {e}")),
            }
        }
    }
    tally
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("embedded", String::as_str).to_owned();
    let clients: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(64);
    let secs: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Server> = match backend.as_str() {
        "embedded" => vec![Server::start(dir.path(), "one", "")],
        "postgres-s3" => {
            let config = format!("database_url = \"{}\"\n{}", postgres_cluster::database(), garage::bucket().toml());
            vec![Server::start(dir.path(), "one", &config), Server::start(dir.path(), "two", &config)]
        }
        other => panic!("unknown backend {other:?}: embedded or postgres-s3"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Eight accounts, made as `keyhold init` makes them (the devices of
    // each account's clients share its home: they sign in as one device).
    let homes: Vec<std::path::PathBuf> = (0..ACCOUNTS)
        .map(|i| {
            let home = dir.path().join(format!("home-{i}"));
            let url = servers[i % servers.len()].url.clone();
            runtime
                .block_on(keyhold_client::account::init(
                    &Home::locate(Some(home.clone())).unwrap(),
                    &url,
                    &format!("load-{i}"),
                    None,
                ))
                .unwrap();
            home
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tallies: Vec<Tally> = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let url = servers[i % servers.len()].url.clone();
                tokio::spawn(client(url, homes[i % ACCOUNTS].clone(), until, i as u64 + 1))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for t in tallies {
        all.head.extend(t.head);
        all.put.extend(t.put);
        all.get.extend(t.get);
        all.errors.extend(t.errors);
    }
    let total = all.head.len() + all.put.len() + all.get.len();
    let peaks: Vec<String> = servers.iter().map(|s| format!("{} MiB", s.peak_mib())).collect();
    println!("backend {backend}: {} server process(es), {clients} clients, {elapsed:.0} s", servers.len());
    println!("  requests/s   {:>10.0}   ({total} requests)", total as f64 / elapsed);
    for (name, samples) in [("head", &mut all.head), ("put 64 KiB", &mut all.put), ("get range", &mut all.get)] {
        samples.sort();
        println!(
            "  {name:<12} {:>10.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            samples.len() as f64 / elapsed,
            percentile(samples, 0.50),
            percentile(samples, 0.99)
        );
    }
    println!("  errors       {:>10}", all.errors.len());
    println!("  server peak  {:>10}", peaks.join(", "));
    if !all.errors.is_empty() {
        for e in all.errors.iter().take(5) {
            eprintln!("  error: {e}");
        }
        std::process::exit(1);
    }
}
