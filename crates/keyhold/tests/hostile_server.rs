//! The operator attacks its own stores; every client must notice, exit
//! with the integrity code (3), and leave its folder exactly as it was.
//! Also: what a seizure of the server yields (SECURITY E2).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{Device, Server, noise, snapshot, two_devices};

const INTEGRITY_EXIT: i32 = 3;

/// a and b in sync on some files; then a pushes `change`; returns (a, b).
fn setup(dir: &std::path::Path, server: &Server) -> (Device, Device) {
    let (a, b) = two_devices(dir, server);
    a.write("doc.txt", b"version one");
    a.write("other.txt", b"another file");
    a.write("folder/inner.txt", b"inside a folder");
    a.write("big.bin", &noise(7, 9_000_000));
    a.sync();
    b.sync();
    a.write("doc.txt", b"version two, longer");
    a.write("folder/new.txt", b"new in folder");
    a.write("big.bin", &noise(8, 9_000_000));
    a.sync();
    (a, b)
}

/// b syncs against the tampered server: must fail closed, change nothing.
fn assert_detected(b: &Device, what: &str) {
    let before = snapshot(&b.folder);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(INTEGRITY_EXIT), "{what}: expected an integrity failure, got {:?}: {stderr}", out.status);
    assert!(stderr.contains("integrity check failed"), "{what}: unclear message: {stderr}");
    assert_eq!(snapshot(&b.folder), before, "{what}: the sync folder changed");
}

fn newest_pack(server: &Server) -> std::path::PathBuf {
    let mut packs = server.packs();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    packs.pop().unwrap()
}

#[test]
fn b1_a_flipped_byte_in_a_pack_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_a, b) = setup(dir.path(), &server);
    for pack in server.packs() {
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&pack, bytes).unwrap();
    }
    assert_detected(&b, "flipped byte");
}

#[test]
fn b4_a_truncated_pack_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_a, b) = setup(dir.path(), &server);
    for pack in server.packs() {
        let bytes = std::fs::read(&pack).unwrap();
        // 1000 bytes off, or half of a pack smaller than 2000 bytes.
        let cut = bytes.len().saturating_sub(1000).max(bytes.len() / 2);
        std::fs::write(&pack, &bytes[..cut]).unwrap();
    }
    let before = snapshot(&b.folder);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert!(!out.status.success(), "a truncated pack was accepted");
    assert_eq!(snapshot(&b.folder), before, "the sync folder changed");
}

#[test]
fn b2_b3_c1_c2_packs_swapped_between_ids_are_detected() {
    // Swapping stored objects is how a server without keys would swap
    // chunks, names or folders: every piece is bound to its id.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_a, b) = setup(dir.path(), &server);
    let packs = server.packs();
    assert!(packs.len() >= 2);
    let first = std::fs::read(&packs[0]).unwrap();
    let second = std::fs::read(&packs[1]).unwrap();
    std::fs::write(&packs[0], &second).unwrap();
    std::fs::write(&packs[1], &first).unwrap();
    // The server may itself fail on the swapped sizes (a 500): either way
    // the client refuses and changes nothing.
    let before = snapshot(&b.folder);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert!(!out.status.success(), "swapped packs went unnoticed");
    assert_eq!(snapshot(&b.folder), before);
}

#[test]
fn c5_an_older_revision_head_restored_by_the_server_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = setup(dir.path(), &server);
    // a has seen revision 1. The server rolls back to revision 0.
    server.sql("UPDATE heads SET seq = 0, revision_id = (SELECT revision_id FROM revisions WHERE seq = 0)");
    server.sql("DELETE FROM revisions WHERE seq = 1");
    assert_detected(&a, "rollback");
}

#[test]
fn c5_f7_a_rollback_is_detected_even_after_the_state_database_is_deleted() {
    // The device loses its state database (deleted, not just damaged); the
    // server seizes the moment to roll the collection back. The heads the
    // device verified are pinned beside the database, so it still knows.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = setup(dir.path(), &server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(a.home.join(format!("state.sqlite3{suffix}")));
    }
    server.sql("UPDATE heads SET seq = 0, revision_id = (SELECT revision_id FROM revisions WHERE seq = 0)");
    server.sql("DELETE FROM revisions WHERE seq = 1");
    assert_detected(&a, "rollback after the state database was deleted");
}

#[test]
fn c6_a_forked_history_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = setup(dir.path(), &server);
    // b (which saw revision 0) is shown a history where revision 1 is b's
    // own later write, while a saw a different revision 1: the server
    // hides a's revision 1 from b and keeps it for a.
    let a_rev1 = server.sql("SELECT hex(body), hex(revision_id) FROM revisions WHERE seq = 1");
    server.sql("DELETE FROM revisions WHERE seq = 1");
    server.sql("UPDATE heads SET seq = 0, revision_id = (SELECT revision_id FROM revisions WHERE seq = 0)");
    b.write("b-only.txt", b"written on b");
    b.sync();
    assert!(a_rev1.len() > 10);
    // a, which had accepted its own revision 1, now meets b's revision 1.
    assert_detected(&a, "fork");
}

#[test]
fn d1_a_revision_the_server_wrote_itself_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_a, b) = setup(dir.path(), &server);
    // The server replaces the newest revision's encrypted body with bytes
    // of its own (keeping the cleartext header so the chain still links).
    let body = server.sql("SELECT hex(body) FROM revisions WHERE seq = 1");
    let hex: String = body.chars().filter(char::is_ascii_hexdigit).collect();
    let header_hex = &hex[..(7 + 16 + 8 + 4 + 32 + 12) * 2];
    let forged = format!("{header_hex}{}", "ab".repeat(hex.len() / 2 - (7 + 16 + 8 + 4 + 32 + 12)));
    server.sql(&format!("UPDATE revisions SET body = x'{forged}' WHERE seq = 1"));
    assert_detected(&b, "server-made revision");
}

#[test]
fn d1_a_device_the_server_adds_itself_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (_a, b) = setup(dir.path(), &server);
    // A ghost device row with no signed chain entry: clients ignore it.
    let pk = server.sql("SELECT hex(public_keys) FROM devices LIMIT 1");
    let pk: String = pk.chars().filter(char::is_ascii_hexdigit).collect();
    let mut ghost = pk.clone();
    ghost.replace_range(0..2, if &pk[0..2] == "00" { "01" } else { "00" });
    server.sql(&format!(
        "INSERT INTO devices (account_id, device_id, public_keys, created_at) SELECT account_id, x'{}', x'{ghost}', 0 FROM accounts",
        "ee".repeat(16),
    ));
    let out = b.ok(&["--json", "status"]);
    assert!(out.contains("\"devices\": 2"), "{out}");
    b.sync();
}

#[test]
fn f6_check_reports_corrupt_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = setup(dir.path(), &server);
    a.ok(&["check", "--read-data"]);
    let pack = newest_pack(&server);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    let out = a.run(&["check", "--read-data"]);
    assert!(!out.status.success(), "check must fail on corrupt data");
}

#[test]
fn e2_a_seized_server_holds_no_plaintext_name_key_or_exact_size() {
    let dir = tempfile::tempdir().unwrap();
    // Logging everything it can: a seizure takes the logs too.
    let server = Server::start_logging(dir.path(), "", "trace");
    let a = Device::new(dir.path(), "a", &server);
    let key = a.init(dir.path());
    let canary_content = b"CANARY-CONTENT-7f3a9c-the-secret-plans";
    let canary_name = "CANARY-NAME-b81e44.txt";
    let canary_folder = "CANARY-FOLDER-5d20aa";
    a.write(&format!("{canary_folder}/{canary_name}"), canary_content);
    let odd_len = 123_457usize;
    let mut odd = noise(3, odd_len);
    odd[..canary_content.len()].copy_from_slice(canary_content);
    a.write("odd-size.bin", &odd);
    a.sync();
    let device_key = std::fs::read(a.home.join("device.key")).unwrap();
    let root_key = &device_key[28..60];
    let signing_seed = &device_key[60..92];
    let kem_seed = &device_key[92..124];
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("content canary", canary_content.to_vec()),
        ("file name", canary_name.as_bytes().to_vec()),
        ("folder name", canary_folder.as_bytes().to_vec()),
        ("recovery key", key.as_bytes().to_vec()),
        ("account root key", root_key.to_vec()),
        ("device signing seed", signing_seed.to_vec()),
        ("device KEM seed", kem_seed.to_vec()),
    ];
    let log_len = std::fs::metadata(&server.log).unwrap().len();
    assert!(log_len > 10_000, "the server logged only {log_len} bytes at trace level");
    for file in server.files().into_iter().chain([server.log.clone()]) {
        let bytes = std::fs::read(&file).unwrap();
        for (what, needle) in &needles {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "{what} found in {}", file.display());
        }
    }
    // No stored size equals a plaintext size: packs are padded.
    for pack in server.packs() {
        let len = std::fs::metadata(&pack).unwrap().len();
        assert_ne!(len, u64::try_from(odd_len).unwrap());
        assert_eq!(len, keyhold_core::padme(len), "pack length is not a Padmé length");
    }
    let sizes = server.sql("SELECT size FROM packs");
    assert!(!sizes.contains(&odd_len.to_string()), "{sizes}");
}

#[test]
fn c6_a_revision_beyond_an_unchanged_head_must_link_to_it() {
    // The server keeps the head where b last saw it but lists one more
    // revision, signed by an enrolled device yet not linked to that head
    // (a fork of its making). b must refuse it, not build on it.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = setup(dir.path(), &server);
    b.sync();
    let keys = keyhold_client::Home::locate(Some(a.home.clone())).unwrap().load().unwrap().1;
    let wrap = server.sql("SELECT hex(collection_id) || ':' || hex(wrap) FROM collection_wraps WHERE epoch = 0");
    let row: Vec<&str> = wrap.split('\'').find(|s| s.contains(':')).unwrap().split(':').collect();
    let collection = keyhold_core::CollectionId(hex::decode(row[0]).unwrap().try_into().unwrap());
    let ctx = keyhold_core::CollectionWrapContext { account: keys.account, collection, collection_epoch: 0, account_epoch: 0 };
    let key = keyhold_core::unwrap_collection_key(&hex::decode(row[1]).unwrap(), &keys.root, &ctx).unwrap();
    let coll_keys = keyhold_core::CollectionKeys::derive(&key, collection, 0);
    let head: u64 = server.sql("SELECT seq FROM heads").trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap();
    let forged = keyhold_core::Revision {
        collection,
        seq: head + 1,
        prev: keyhold_core::ObjectId([9; 32]),
        epoch: 0,
        root: keyhold_core::BlobRef { id: keyhold_core::BlobId([7; 32]), epoch: 0 },
        author: keys.device.id(),
        time_ms: 0,
    };
    let (id, stored) = keyhold_core::seal_revision(&coll_keys, &forged, &keys.device, &mut keyhold_core::os_rng()).unwrap();
    server.sql(&format!(
        "INSERT INTO revisions (account_id, collection_id, seq, revision_id, body, created_at) \
         SELECT account_id, x'{}', {}, x'{}', x'{}', 0 FROM accounts",
        row[0],
        head + 1,
        hex::encode(id.0),
        hex::encode(&stored)
    ));
    assert_detected(&b, "unlinked revision beyond the head");
}
