//! Scaled out: several stateless `keyhold serve` processes over one
//! PostgreSQL and one S3-compatible bucket (real ones: a throwaway
//! PostgreSQL cluster and a Garage node, `keyhold-server/tests/support/`)
//! serve the same accounts. Sessions, the pairing relay, revocations and the
//! revision head's compare-and-swap live in the database, packs in the
//! bucket, so any process can answer any request.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{Device, Server, garage, postgres_cluster, snapshot};

/// Two server processes over one fresh PostgreSQL database and one fresh
/// bucket.
fn two_servers(dir: &Path) -> (Server, Server, garage::Bucket) {
    let bucket = garage::bucket();
    let config = format!("database_url = \"{}\"\n{}", postgres_cluster::database(), bucket.toml());
    let one = Server::start_instance(dir, "one", &config, "warn");
    let two = Server::start_instance(dir, "two", &config, "warn");
    (one, two, bucket)
}

#[test]
fn two_server_processes_over_one_database_and_bucket_serve_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, bucket) = two_servers(dir.path());
    let a = Device::new(dir.path(), "a", &one);
    let b = Device::new(dir.path(), "b", &two);
    a.init(dir.path());
    // The pairing relay: a opens the slot on one process, b joins on the other.
    let (inviter, joiner) = a.pair(&b);
    assert!(inviter.status.success() && joiner.status.success(), "{}", String::from_utf8_lossy(&joiner.stderr));
    a.write("from-a.txt", b"written through server one");
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("from-a.txt")).unwrap(), b"written through server one");
    b.write("from-b.txt", b"written through server two");
    b.sync();
    a.sync();
    assert_eq!(snapshot(&a.folder), snapshot(&b.folder));
    // A revocation filed with one process ends b's sessions on the other.
    a.ok(&["devices", "revoke", "b"]);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"), "{}", String::from_utf8_lossy(&out.stderr));
    a.write("after.txt", b"a carries on");
    a.sync();
    // Every pack is in the bucket, under <account>/<pack>, and none on the
    // servers' disk; a reads everything back from it.
    let objects = garage::objects(&bucket);
    assert!(objects.len() >= 3, "{objects:?}");
    let account = std::fs::read_to_string(a.home.join("config.json")).unwrap();
    for key in &objects {
        let (owner, pack) = key.split_once('/').unwrap();
        assert!(account.contains(owner) && pack.len() == 64, "{key}");
    }
    assert!(one.packs().is_empty(), "packs on the server's disk: {:?}", one.packs());
    a.ok(&["check", "--read-data"]);
}

/// Contents of `shared.txt` and of its conflict copies.
fn shared_versions(folder: &Path) -> BTreeSet<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("shared"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn four_devices_through_two_server_processes_converge_with_no_lost_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, _) = two_servers(dir.path());
    let devices: Vec<Device> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, name)| Device::new(dir.path(), name, if i % 2 == 0 { &one } else { &two }))
        .collect();
    let key = devices[0].init(dir.path());
    for d in &devices[1..] {
        d.recover(&key);
    }
    devices[0].write("shared.txt", b"the first version");
    devices[0].sync();
    for d in &devices[1..] {
        d.sync();
    }
    for round in 0..3 {
        // Every device edits the shared file and adds one of its own, then
        // all four sync at once: two through each process.
        for d in &devices {
            d.write("shared.txt", format!("{} in round {round}", d.name).as_bytes());
            d.write(&format!("own-{}-{round}.txt", d.name), d.name.as_bytes());
        }
        let running: Vec<_> = devices.iter().map(|d| d.spawn(&["sync", d.folder.to_str().unwrap()])).collect();
        for (d, child) in devices.iter().zip(running) {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{} in round {round}: {}", d.name, String::from_utf8_lossy(&out.stderr));
        }
        // Settle: two sequential passes bring every device to the head.
        for _ in 0..2 {
            for d in &devices {
                d.sync();
            }
        }
        let settled = snapshot(&devices[0].folder);
        for d in &devices[1..] {
            assert_eq!(snapshot(&d.folder), settled, "{} differs after round {round}", d.name);
        }
        // No edit was lost: each device's version of the shared file is the
        // file itself or one of its conflict copies; every own file is there.
        let versions = shared_versions(&devices[0].folder);
        for d in &devices {
            assert!(
                versions.contains(&format!("{} in round {round}", d.name)),
                "{}'s edit of round {round} was lost: {versions:?}",
                d.name
            );
            assert!(devices[0].path(&format!("own-{}-{round}.txt", d.name)).exists());
        }
    }
}
