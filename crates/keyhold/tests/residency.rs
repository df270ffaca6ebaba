//! Residency regions: each region has its own stores, an account lives in
//! the one it chose at `keyhold init --region`, and not one row or pack of
//! it reaches another region's stores (the test reads the stores' files
//! directly). `GET /residency` states the regions, signed by the
//! deployment's key; `keyhold residency` checks and pins it, and reports a
//! change.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use common::{Device, Server, walkdir};

/// Regions `ru` (the default: the top-level stores) and `eu`, each with its
/// own SQLite database and blob folder. `extra` adds config lines.
fn two_regions(dir: &Path, extra: &str) -> Server {
    let eu = dir.join("eu-data");
    Server::start_with(dir, &format!("region = \"ru\"\n{extra}\n[[regions]]\nname = \"eu\"\ndata_dir = \"{}\"\n", eu.display()))
}

fn account_id(device: &Device) -> Vec<u8> {
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(device.home.join("config.json")).unwrap()).unwrap();
    hex::decode(config["account_id"].as_str().unwrap()).unwrap()
}

/// Whether any file under `dir` holds `needle`.
fn holds(dir: &Path, needle: &[u8]) -> Vec<String> {
    walkdir(dir)
        .into_iter()
        .filter(|f| std::fs::read(f).unwrap().windows(needle.len()).any(|w| w == needle))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn an_account_leaves_no_row_and_no_pack_in_another_regions_stores() {
    let dir = tempfile::tempdir().unwrap();
    let server = two_regions(dir.path(), "");
    let ru = Device::new(dir.path(), "ru-phone", &server);
    let eu = Device::new(dir.path(), "eu-phone", &server);
    ru.ok(&["init", "--name", "ru-phone", "--region", "ru", "--recovery-key-file", dir.path().join("ru-key").to_str().unwrap()]);
    eu.ok(&["init", "--name", "eu-phone", "--region", "eu", "--recovery-key-file", dir.path().join("eu-key").to_str().unwrap()]);
    // Each account does everything that writes: files, a second device
    // (pairing), a revocation (key rotation), a recovery.
    for (d, what) in [(&ru, "RU-CANARY"), (&eu, "EU-CANARY")] {
        d.write("notes.txt", what.as_bytes());
        d.write("big.bin", &common::noise(3, 3_000_000));
        d.sync();
        let second = Device::new(dir.path(), &format!("{}-laptop", d.name), &server);
        let (inviter, joiner) = d.pair(&second);
        assert!(inviter.status.success() && joiner.status.success(), "{}", String::from_utf8_lossy(&joiner.stderr));
        second.sync();
        d.ok(&["devices", "revoke", &second.name]);
        d.write("after.txt", b"after the rotation");
        d.sync();
    }
    let key = std::fs::read_to_string(dir.path().join("eu-key")).unwrap();
    let eu_again = Device::new(dir.path(), "eu-recovered", &server);
    eu_again.recover(key.trim());
    eu_again.sync();
    assert_eq!(std::fs::read(eu_again.path("notes.txt")).unwrap(), b"EU-CANARY");
    assert!(ru.ok(&["status"]).contains("in region ru"));
    assert!(eu.ok(&["status"]).contains("in region eu"));

    // The stores, read directly: each account's id appears only in its own
    // region's files, and its packs only in its own region's blob folder.
    let (ru_data, eu_data) = (dir.path().join("server-data"), dir.path().join("eu-data"));
    let (ru_id, eu_id) = (account_id(&ru), account_id(&eu));
    assert!(!holds(&ru_data, &ru_id).is_empty(), "the test cannot find ru's account in its own region");
    assert!(!holds(&eu_data, &eu_id).is_empty(), "the test cannot find eu's account in its own region");
    assert_eq!(holds(&eu_data, &ru_id), Vec::<String>::new(), "ru's account id in eu's stores");
    assert_eq!(holds(&ru_data, &eu_id), Vec::<String>::new(), "eu's account id in ru's stores");
    let packs_of = |data: &Path, id: &[u8]| walkdir(&data.join("blobs").join(hex::encode(id))).len();
    assert!(packs_of(&ru_data, &ru_id) >= 2 && packs_of(&eu_data, &eu_id) >= 2);
    assert_eq!(packs_of(&eu_data, &ru_id) + packs_of(&ru_data, &eu_id), 0);

    // A region the server does not offer is refused, saying which it does.
    let nowhere = Device::new(dir.path(), "nowhere", &server);
    let out = nowhere.run(&[
        "init",
        "--name",
        "nowhere",
        "--region",
        "us",
        "--recovery-key-file",
        dir.path().join("us-key").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no region \"us\"") && err.contains("ru, eu"), "{err}");
    assert!(!nowhere.home.join("device.key").exists());
}

#[test]
fn the_residency_statement_is_signed_pinned_and_its_changes_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = two_regions(dir.path(), "");
    let a = Device::new(dir.path(), "a", &server);
    a.ok(&["init", "--name", "a", "--region", "eu", "--recovery-key-file", dir.path().join("key").to_str().unwrap()]);
    let out = a.ok(&["residency"]);
    assert!(out.contains("region ru (default): metadata in SQLite on the server's disk"), "{out}");
    assert!(out.contains("region eu (your account)"), "{out}");
    assert!(out.contains("First statement seen"), "{out}");
    let again = a.run(&["residency"]);
    assert!(again.status.success() && !String::from_utf8_lossy(&again.stderr).contains("WARNING"));

    // The operator adds a region and replaces the deployment key: a device
    // that pinned the old statement reports both.
    drop(server);
    std::fs::remove_file(dir.path().join("server-data/deployment.key")).unwrap();
    let us = dir.path().join("us-data");
    let server = Server::start_with(
        dir.path(),
        &format!(
            "region = \"ru\"\n[[regions]]\nname = \"eu\"\ndata_dir = \"{}\"\n[[regions]]\nname = \"us\"\ndata_dir = \"{}\"\n",
            dir.path().join("eu-data").display(),
            us.display()
        ),
    );
    let watcher = Device { server: server.url.clone(), ..Device::new(dir.path(), "a", &server) };
    let out = watcher.run(&["residency", "--server", &server.url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("WARNING residency changed: the statement is signed by another deployment key"), "{err}");
    assert!(err.contains("WARNING residency changed: new region us"), "{err}");
}
