//! Disclosure transparency: `keyhold serve admin disclose` writes out what a
//! compelled operator could hand over for one account — and that is
//! ciphertext, ids and counts, nothing of another account — records it in
//! the public disclosure log, signed by the deployment key and hash-linked,
//! and in the account's event log, which the account's devices show. So are
//! the other administrative actions: quota, suspension, deletion.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Device, Server, walkdir};

fn admin(dir: &Path, args: &[&str]) -> std::process::Output {
    // The config file the harness wrote (two processes share the stores on
    // the postgres-s3 backend; either one's file will do).
    let config = match common::backend() {
        common::Backend::Embedded => "keyhold.toml",
        common::Backend::PostgresS3 => "keyhold-one.toml",
    };
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.join(config))
        .arg("admin")
        .args(args)
        .env("KEYHOLD_LOG", "warn")
        .output()
        .unwrap()
}

fn account_hex(device: &Device) -> String {
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(device.home.join("config.json")).unwrap()).unwrap();
    config["account_id"].as_str().unwrap().to_owned()
}

fn everything_in(dir: &Path) -> Vec<u8> {
    walkdir(dir).into_iter().flat_map(|f| std::fs::read(f).unwrap()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_disclosure_hands_over_only_ciphertext_of_one_account_and_is_logged_where_everyone_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "a", &server);
    let b = Device::new(dir.path(), "b", &server);
    a.init(dir.path());
    b.ok(&["init", "--name", "b", "--recovery-key-file", dir.path().join("b-key").to_str().unwrap()]);
    a.write("CANARY-A-NAME.txt", b"CANARY-A-CONTENT the plans");
    a.write("big.bin", &common::noise(4, 2_000_000));
    a.sync();
    b.write("CANARY-B-NAME.txt", b"CANARY-B-CONTENT other plans");
    b.sync();
    let (a_id, b_id) = (account_hex(&a), account_hex(&b));

    // Refused without a legal basis, or into a folder that holds something.
    let out = admin(dir.path(), &["disclose", &a_id, "--out", dir.path().join("x").to_str().unwrap(), "--legal-basis", " "]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("legal basis"));

    let export = dir.path().join("export");
    let out = admin(dir.path(), &["disclose", &a_id, "--out", export.to_str().unwrap(), "--legal-basis", "Court order 2026/117"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let handed = everything_in(&export);
    // What was handed over is a's: its rows and its packs …
    assert!(contains(&handed, a_id.as_bytes()));
    let packs = walkdir(&export.join("packs"));
    let stored = match common::backend() {
        common::Backend::Embedded => server.count(&format!("SELECT count(*) FROM packs WHERE hex(account_id) = upper('{a_id}')")),
        common::Backend::PostgresS3 => {
            server.count(&format!("SELECT count(*) FROM packs WHERE encode(account_id, 'hex') = '{a_id}'"))
        }
    };
    assert_eq!(u64::try_from(packs.len()).unwrap(), stored);
    assert!(!packs.is_empty());
    // … and no plaintext of it, and nothing of b.
    for needle in ["CANARY-A-NAME", "CANARY-A-CONTENT", "CANARY-B", "the plans"] {
        assert!(!contains(&handed, needle.as_bytes()), "{needle} in the disclosure");
    }
    assert!(!contains(&handed, b_id.as_bytes()), "b's account id in a's disclosure");
    assert!(!contains(&handed, &hex::decode(&b_id).unwrap()), "b's account id (raw) in a's disclosure");

    // The public log names it, verified against the deployment key.
    let listed = b.ok(&["disclosures"]);
    assert!(listed.contains("#0 ") && listed.contains(&format!("account {a_id}")), "{listed}");
    assert!(listed.contains("legal basis: Court order 2026/117"), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&b.ok(&["--json", "disclosures"])).unwrap();
    assert!(json[0]["objects"].as_u64().unwrap() > 5, "{json}");

    // a's devices are told on their next run, once; b's are not.
    let out = a.run(&["status"]);
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(told.contains("notice: the server's operator acted on this account (disclose"), "{told}");
    assert!(told.contains("Court order 2026/117"), "{told}");
    assert!(!String::from_utf8_lossy(&a.run(&["status"]).stderr).contains("operator acted"));
    assert!(!String::from_utf8_lossy(&b.run(&["status"]).stderr).contains("operator acted"));

    // A quota change is an event of the account too.
    let out = admin(dir.path(), &["quota", &b_id, "123456789"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = b.run(&["status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("quota set to 123456789 bytes"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("of 123456789 bytes"));

    // A suspended account can be read, not changed, and its devices are
    // told why; reinstated, it is written to again.
    let out = admin(dir.path(), &["suspend", &b_id, "--reason", "Unpaid invoice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.write("after-suspension.txt", b"not yet");
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("suspended this account"), "{err}");
    assert!(err.contains("reason stated: Unpaid invoice"), "{err}");
    assert!(b.ok(&["ls"]).contains("CANARY-B-NAME.txt"));
    assert!(admin(dir.path(), &["reinstate", &b_id]).status.success());
    b.sync();
    assert!(b.ok(&["ls"]).contains("after-suspension.txt"));

    // Deleting an account's data removes its packs; its devices are told.
    let out = admin(dir.path(), &["delete", &a_id, "--reason", "Closed at the owner's request"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let left = match common::backend() {
        common::Backend::Embedded => server.count(&format!("SELECT count(*) FROM packs WHERE hex(account_id) = upper('{a_id}')")),
        common::Backend::PostgresS3 => {
            server.count(&format!("SELECT count(*) FROM packs WHERE encode(account_id, 'hex') = '{a_id}'"))
        }
    };
    assert_eq!(left, 0);
    if common::backend() == common::Backend::Embedded {
        assert!(!server.packs().iter().any(|p| p.to_string_lossy().contains(&a_id)), "a's pack files remain");
    }
    let out = a.run(&["status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("account data deleted; reason stated: Closed at the owner's request"));

    // A second disclosure links to the first; an entry the operator edits
    // afterwards no longer verifies.
    let out = admin(
        dir.path(),
        &["disclose", &b_id, "--out", dir.path().join("export-b").to_str().unwrap(), "--legal-basis", "Warrant 9"],
    );
    assert!(out.status.success());
    assert!(b.ok(&["disclosures"]).contains("#1 "));
    server.sql(match common::backend() {
        common::Backend::Embedded => {
            "UPDATE disclosure_log SET body = CAST(replace(CAST(body AS TEXT), 'Court order', 'Court ORDER') AS BLOB) WHERE seq = 0"
        }
        common::Backend::PostgresS3 => {
            "UPDATE disclosure_log SET body = convert_to(replace(convert_from(body, 'UTF8'), 'Court order', 'Court ORDER'), 'UTF8') \
             WHERE seq = 0"
        }
    });
    let out = b.run(&["disclosures"]);
    assert_eq!(out.status.code(), Some(3), "an edited log entry passed: {}", String::from_utf8_lossy(&out.stdout));
}
