//! Devices (issue "Devices"): pairing through the server as a relay, the
//! signed device chain against a server that adds, hides or rewrites
//! entries, and revocation that rotates keys (SECURITY A1, A2, A7, D1, G4).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::proxy::{Log, Proxy};
use common::{Device, Server, read_code, snapshot};
use keyhold_core::{
    ChainChange, ChainEntry, CollectionId, CollectionKeys, CollectionWrapContext, DeviceSecret, ObjectId, Revision, Signer,
    os_rng, seal_revision, unwrap_collection_key,
};

const INTEGRITY_EXIT: i32 = 3;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hex_of(sql_answer: &str) -> String {
    sql_answer.chars().filter(char::is_ascii_hexdigit).collect()
}

fn device_names(device: &Device) -> Vec<(String, bool)> {
    let out = device.ok(&["--json", "devices"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list.as_array().unwrap().iter().map(|d| (d["name"].as_str().unwrap().to_owned(), d["revoked"].is_null())).collect()
}

/// The pinned chain of a device, as stored bytes.
fn pinned_chain(device: &Device) -> Vec<Vec<u8>> {
    let home = keyhold_client::Home::locate(Some(device.home.clone())).unwrap();
    home.load_chain().unwrap().unwrap().entries.into_iter().map(|e| e.0).collect()
}

fn keys_of(device: &Device) -> keyhold_client::home::DeviceKeys {
    keyhold_client::Home::locate(Some(device.home.clone())).unwrap().load().unwrap().1
}

#[test]
fn pairing_enrolls_a_device_and_both_sync() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "laptop", &server);
    let b = Device::new(dir.path(), "phone", &server);
    a.init(dir.path());
    let (inviter, joiner) = a.pair(&b);
    assert!(inviter.status.success(), "inviter: {}", stderr(&inviter));
    assert!(joiner.status.success(), "joiner: {}", stderr(&joiner));
    // Both screens showed the same safety string.
    let safety = |s: &str| s.lines().find_map(|l| l.split("Safety string: ").nth(1).map(str::to_owned)).unwrap();
    assert_eq!(safety(&stderr(&inviter)), safety(&stderr(&joiner)));
    a.write("shared.txt", b"from the laptop");
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("shared.txt")).unwrap(), b"from the laptop");
    let names = device_names(&b);
    assert_eq!(names, vec![("laptop".to_owned(), true), ("phone".to_owned(), true)]);
}

#[test]
fn a_pairing_code_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "laptop", &server);
    let b = Device::new(dir.path(), "phone", &server);
    let c = Device::new(dir.path(), "intruder", &server);
    a.init(dir.path());
    let mut inviter = a.spawn(&["--json", "devices", "add", "--yes"]);
    let code = read_code(&mut inviter);
    let joined = b.run(&["join", "--code", &code, "--name", "phone", "--yes"]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert!(inviter.wait_with_output().unwrap().status.success());
    let again = c.run(&["join", "--code", &code, "--name", "intruder", "--yes"]);
    assert!(!again.status.success(), "a used code enrolled another device");
    assert!(stderr(&again).contains("no device is waiting"), "{}", stderr(&again));
    assert_eq!(device_names(&a).len(), 2);
}

#[test]
fn g4_a_wrong_code_fails_and_does_not_lock_out_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "laptop", &server);
    let b = Device::new(dir.path(), "phone", &server);
    let mallory = Device::new(dir.path(), "mallory", &server);
    a.init(dir.path());
    let mut inviter = a.spawn(&["--json", "devices", "add", "--yes"]);
    let code = read_code(&mut inviter);
    // Same slot (the first four characters), wrong secret part.
    let mut wrong: Vec<char> = code.chars().collect();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == '7' { '8' } else { '7' };
    let wrong: String = wrong.into_iter().collect();
    let out = mallory.run(&["join", "--code", &wrong, "--name", "mallory", "--yes"]);
    assert!(!out.status.success(), "a wrong code must not enroll");
    assert!(stderr(&out).contains("pairing failed"), "{}", stderr(&out));
    assert!(!mallory.home.join("device.key").exists());
    let joined = b.run(&["join", "--code", &code, "--name", "phone", "--yes"]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert!(inviter.wait_with_output().unwrap().status.success());
    let names: Vec<String> = device_names(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["laptop", "phone"]);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    /// Replace the inviter's SPAKE2 message with the joiner's own (a relay
    /// swapping the parties' messages).
    SwapMessages,
    /// The relay runs SPAKE2 itself against the inviter (a guessed code).
    ManInTheMiddle,
}

/// A proxy in front of the real server that records what passes through
/// the relay; `tamper` rewrites the inviter's reply on the way.
fn relay(server: &Server, tamper: Tamper) -> Proxy {
    let proxy = Proxy::start(server);
    if tamper != Tamper::None {
        let log = proxy.log();
        proxy.rewrite_request("PUT", "/v1/pairings/*/attempts/*/reply", move |req| {
            let mut step: keyhold_proto::PairingStep = serde_json::from_slice(&req.body).unwrap();
            let hello = joiner_hello(&log).unwrap();
            match tamper {
                Tamper::SwapMessages => step.data.0[..33].copy_from_slice(&hello),
                Tamper::ManInTheMiddle => {
                    let guess = keyhold_core::PairingCode::parse("ZZZZZZZZZZ").unwrap();
                    let (keys, message) = keyhold_core::inviter_respond(&guess, &hello, &mut os_rng()).unwrap();
                    step.data.0 = [message.as_slice(), &keys.inviter_confirmation()].concat();
                }
                Tamper::None => {}
            }
            req.body = serde_json::to_vec(&step).unwrap();
        });
    }
    proxy
}

/// The joiner's SPAKE2 message, as the relay saw it.
fn joiner_hello(log: &Log) -> Option<Vec<u8>> {
    let hello = log.last("POST", "/v1/pairings/*/attempts")?;
    Some(serde_json::from_slice::<keyhold_proto::PairingHello>(&hello.request.body).unwrap().message.0)
}

/// The inviter's reply (SPAKE2 message ‖ confirmation), as the relay passed it on.
fn inviter_reply(log: &Log) -> Option<Vec<u8>> {
    let reply = log.last("PUT", "/v1/pairings/*/attempts/*/reply")?;
    Some(serde_json::from_slice::<keyhold_proto::PairingStep>(&reply.request.body).unwrap().data.0)
}

#[test]
fn the_relay_learns_no_key_and_cannot_finish_the_exchange_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let relay = relay(&server, Tamper::None);
    let a = relay.device(&Device::new(dir.path(), "laptop", &server));
    let b = relay.device(&Device::new(dir.path(), "phone", &server));
    let recovery = a.init(dir.path());
    let mut inviter = a.spawn(&["--json", "devices", "add", "--yes"]);
    let code = read_code(&mut inviter);
    let joined = b.run(&["join", "--code", &code, "--name", "phone", "--yes"]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert!(inviter.wait_with_output().unwrap().status.success());
    let a_keys = keys_of(&a);
    let b_keys = keys_of(&b);
    let (b_sign, b_kem) = b_keys.device.expose_seeds();
    let log = relay.log();
    let bodies: Vec<Vec<u8>> = log.all().into_iter().flat_map(|e| [e.request.body, e.response.body]).collect();
    let raw_code: String = code.chars().filter(|c| *c != '-').collect();
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("account root key", a_keys.root.expose_secret().to_vec()),
        ("new device's signing seed", b_sign.to_vec()),
        ("new device's KEM seed", b_kem.to_vec()),
        ("pairing code", raw_code.as_bytes().to_vec()),
        ("pairing code (shown form)", code.as_bytes().to_vec()),
        ("recovery key", recovery.as_bytes().to_vec()),
    ];
    assert!(bodies.len() > 10, "the proxy saw the exchange");
    for message in &bodies {
        let decoded = base64_fields(message);
        for (what, needle) in &needles {
            for hay in std::iter::once(message).chain(decoded.iter()) {
                assert!(!hay.windows(needle.len()).any(|w| w == needle.as_slice()), "the relay saw the {what}");
            }
        }
    }
    // Even knowing the code, the relay cannot derive the session's keys from
    // what it recorded: SPAKE2 needs one party's secret scalar.
    let hello = joiner_hello(&log).unwrap();
    let reply = inviter_reply(&log).unwrap();
    let code = keyhold_core::PairingCode::parse(&code).unwrap();
    let (keys, _) = keyhold_core::inviter_respond(&code, &hello, &mut os_rng()).unwrap();
    assert_ne!(keys.inviter_confirmation().as_slice(), &reply[33..], "the relay reproduced the session key");
    let (joiner, _) = keyhold_core::JoinerPake::start(&code, &mut os_rng());
    assert!(joiner.finish(&reply[..33], &reply[33..]).is_err(), "the relay finished the exchange");
}

/// Every base64 string inside a JSON body, decoded.
fn base64_fields(body: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                    out.push(b);
                }
            }
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => stack.extend(o.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    out
}

fn tampered_pairing_fails(tamper: Tamper) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let relay = relay(&server, tamper);
    let a = relay.device(&Device::new(dir.path(), "laptop", &server));
    let b = relay.device(&Device::new(dir.path(), "phone", &server));
    a.init(dir.path());
    let before = pinned_chain(&a);
    let mut inviter = a.spawn(&["--json", "devices", "add", "--yes"]);
    let code = read_code(&mut inviter);
    let joined = b.run(&["join", "--code", &code, "--name", "phone", "--yes"]);
    let _ = inviter.kill();
    let _ = inviter.wait();
    assert!(!joined.status.success(), "a tampering relay completed the pairing");
    assert!(stderr(&joined).contains("pairing failed"), "{}", stderr(&joined));
    assert!(!stderr(&joined).contains("Safety string"), "the joiner got as far as the safety string");
    assert!(!b.home.join("device.key").exists());
    assert_eq!(pinned_chain(&a), before, "a device was added");
    assert_eq!(device_names(&a).len(), 1);
}

#[test]
fn a_relay_that_swaps_the_parties_messages_fails_the_ceremony() {
    tampered_pairing_fails(Tamper::SwapMessages);
}

#[test]
fn a_relay_in_the_middle_without_the_code_fails_the_ceremony() {
    tampered_pairing_fails(Tamper::ManInTheMiddle);
}

/// a and b (recovered) with a synced folder.
fn account(dir: &std::path::Path, server: &Server) -> (Device, Device) {
    let (a, b) = common::two_devices(dir, server);
    a.write("notes.txt", b"hello");
    a.sync();
    b.sync();
    (a, b)
}

/// Appends a forged entry to the server's chain, as the operator can.
fn inject_entry(server: &Server, seq: u64, entry: &[u8]) {
    server.sql(&format!(
        "INSERT INTO device_chain (account_id, seq, entry_id, body, created_at) SELECT account_id, {seq}, x'{}', x'{}', 0 FROM accounts",
        hex::encode(ObjectId::of(entry).0),
        hex::encode(entry)
    ));
}

fn assert_alarm_and_still_working(device: &Device, what: &str) {
    let before_names = device_names(device);
    device.write(&format!("after-{}.txt", what.replace(' ', "-")), what.as_bytes());
    let out = device.run(&["sync", device.folder.to_str().unwrap()]);
    assert!(out.status.success(), "{what}: the client stopped working: {}", stderr(&out));
    assert!(stderr(&out).contains("ALARM"), "{what}: no alarm: {}", stderr(&out));
    assert_eq!(device_names(device), before_names, "{what}: the device list changed");
    let add = device.run(&["devices", "add", "--yes"]);
    assert!(!add.status.success(), "{what}: a key-changing action went ahead");
}

#[test]
fn a2_d1_a_ghost_device_entry_no_enrolled_device_signed_is_refused() {
    if common::needs_embedded_stores("a2_d1_a_ghost_device_entry_no_enrolled_device_signed_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = account(dir.path(), &server);
    let chain = pinned_chain(&a);
    let ghost = DeviceSecret::generate(&mut os_rng());
    let keys = keys_of(&a);
    let entry = ChainEntry {
        account: keys.account,
        seq: u64::try_from(chain.len()).unwrap(),
        prev: ObjectId::of(chain.last().unwrap()),
        time_ms: 0,
        account_epoch: 0,
        signer: Signer::Device(ghost.id()),
        change: ChainChange::AddDevice { device: ghost.public().clone(), name: "ghost".into() },
    }
    .seal(&ghost)
    .unwrap();
    inject_entry(&server, u64::try_from(chain.len()).unwrap(), &entry);
    server.sql(&format!(
        "INSERT INTO devices (account_id, device_id, public_keys, created_at) SELECT account_id, x'{}', x'{}', 0 FROM accounts",
        hex::encode(ghost.id().0),
        hex::encode(ghost.public().to_bytes())
    ));
    assert_alarm_and_still_working(&a, "ghost device");
    assert_alarm_and_still_working(&b, "ghost device on b");
    assert!(!device_names(&a).iter().any(|(n, _)| n == "ghost"));
    // The genuine devices still converge.
    a.sync();
    assert!(b.path("after-ghost-device.txt").exists());
}

#[test]
fn a2_a_chain_without_its_last_entry_is_a_rollback() {
    if common::needs_embedded_stores("a2_a_chain_without_its_last_entry_is_a_rollback") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = account(dir.path(), &server);
    server.sql("DELETE FROM device_chain WHERE seq = (SELECT max(seq) FROM device_chain)");
    assert_alarm_and_still_working(&a, "dropped entry");
    let out = a.run(&["sync", a.folder.to_str().unwrap()]);
    assert!(stderr(&out).contains("rollback"), "{}", stderr(&out));
}

#[test]
fn a2_a_rewritten_chain_entry_is_a_fork() {
    if common::needs_embedded_stores("a2_a_rewritten_chain_entry_is_a_fork") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = account(dir.path(), &server);
    // Re-serve an older chain with a different second entry: a device the
    // recovery key never signed in.
    let chain = pinned_chain(&a);
    let mut forged = chain[1].clone();
    let at = forged.len() - 10;
    forged[at] ^= 1;
    server.sql(&format!("UPDATE device_chain SET body = x'{}' WHERE seq = 1", hex::encode(&forged)));
    assert_alarm_and_still_working(&a, "rewritten entry");
    let out = a.run(&["sync", a.folder.to_str().unwrap()]);
    assert!(stderr(&out).contains("fork"), "{}", stderr(&out));
}

#[test]
fn a7_revocation_rotates_keys_and_refuses_the_revoked_device() {
    if common::needs_embedded_stores("a7_revocation_rotates_keys_and_refuses_the_revoked_device") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = account(dir.path(), &server);
    let c = Device::new(dir.path(), "stolen", &server);
    let (inviter, joiner) = a.pair(&c);
    assert!(inviter.status.success() && joiner.status.success(), "{}", stderr(&joiner));
    c.sync();
    let c_keys = keys_of(&c);
    let revoked = a.ok(&["--json", "devices", "revoke", "stolen"]);
    assert!(revoked.contains("revoked"), "{revoked}");
    // b learns on its next run.
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("\"stolen\" was revoked"), "{}", stderr(&out));
    // C is refused at once.
    let out = c.run(&["sync", c.folder.to_str().unwrap()]);
    assert!(!out.status.success(), "the revoked device still syncs");
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // A file written afterwards...
    a.write("after-revocation.txt", b"C must never read this");
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("after-revocation.txt")).unwrap(), b"C must never read this");
    // ...uses a collection key epoch C cannot open with anything it holds.
    let revision = hex::decode(hex_of(&server.sql("SELECT hex(body) FROM revisions ORDER BY seq DESC LIMIT 1"))).unwrap();
    let header = keyhold_core::RevisionHeader::parse(&revision).unwrap();
    let wraps = server.sql("SELECT hex(collection_id) || ':' || epoch || ':' || hex(wrap) FROM collection_wraps");
    let mut c_epochs = Vec::new();
    for row in wraps.split('\'').filter(|s| s.contains(':')) {
        let parts: Vec<&str> = row.split(':').collect();
        let collection = CollectionId(hex::decode(parts[0]).unwrap().try_into().unwrap());
        let epoch: u32 = parts[1].parse().unwrap();
        let wrap = hex::decode(parts[2]).unwrap();
        let account_epoch = keyhold_core::collection_wrap_account_epoch(&wrap).unwrap();
        let ctx = CollectionWrapContext { account: c_keys.account, collection, collection_epoch: epoch, account_epoch };
        // C holds the root key of its epoch only; try it on every wrap.
        let opened = unwrap_collection_key(&wrap, &c_keys.root, &ctx);
        if account_epoch > c_keys.epoch {
            assert!(opened.is_err(), "C opened a collection key of a later epoch");
        } else if let Ok(key) = opened {
            c_epochs.push((epoch, key));
        }
    }
    assert!(!c_epochs.is_empty(), "C should still hold the old collection key");
    assert!(c_epochs.iter().all(|(e, _)| *e < header.epoch), "the new revision uses an epoch C holds");
    for (epoch, key) in &c_epochs {
        let keys = CollectionKeys::derive(key, header.collection, header.epoch);
        assert!(keyhold_core::open_revision(&keys, &revision, |_| None).is_err(), "C opened the new revision (epoch {epoch})");
    }
    // The new root key of the account was never wrapped to C.
    let c_id = hex::encode(c_keys.device.id().0).to_uppercase();
    let c_wraps = server.sql(&format!("SELECT epoch FROM device_wraps WHERE hex(device_id) = '{c_id}'"));
    assert_eq!(c_wraps.trim(), "[(0,)]", "C got a wrap of a later epoch");
    // A revision C signs with its old keys, slipped in by the server, is
    // refused by every client.
    let (old_epoch, old_key) = c_epochs.iter().max_by_key(|(e, _)| *e).unwrap();
    let keys = CollectionKeys::derive(old_key, header.collection, *old_epoch);
    let forged = Revision {
        collection: header.collection,
        seq: header.seq + 1,
        prev: ObjectId::of(&revision),
        epoch: *old_epoch,
        root: keyhold_core::BlobRef { id: keyhold_core::BlobId([7; 32]), epoch: *old_epoch },
        author: c_keys.device.id(),
        time_ms: 0,
    };
    let (id, stored) = seal_revision(&keys, &forged, &c_keys.device, &mut os_rng()).unwrap();
    server.sql(&format!(
        "INSERT INTO revisions (account_id, collection_id, seq, revision_id, body, created_at) \
         SELECT account_id, x'{}', {}, x'{}', x'{}', 0 FROM accounts",
        hex::encode(header.collection.0),
        forged.seq,
        hex::encode(id.0),
        hex::encode(&stored)
    ));
    server.sql(&format!("UPDATE heads SET seq = {}, revision_id = x'{}'", forged.seq, hex::encode(id.0)));
    let before = snapshot(&b.folder);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(INTEGRITY_EXIT), "a revoked device's write was accepted: {}", stderr(&out));
    assert_eq!(snapshot(&b.folder), before);
}

#[test]
fn rotating_the_recovery_key_retires_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "laptop", &server);
    let old = a.init(dir.path());
    a.write("kept.txt", b"written before the rotation");
    a.sync();
    let file = dir.path().join("new-recovery");
    a.ok(&["recovery-key", "rotate", "--recovery-key-file", file.to_str().unwrap()]);
    let new = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_ne!(old, new);
    let stale = Device::new(dir.path(), "stale", &server);
    let out = std::process::Command::new(common::BIN)
        .args(["recover", "--name", "stale"])
        .env("KEYHOLD_HOME", &stale.home)
        .env("KEYHOLD_SERVER", &server.url)
        .env("KEYHOLD_RECOVERY_KEY", &old)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the old recovery key still works");
    let fresh = Device::new(dir.path(), "fresh", &server);
    fresh.recover(&new);
    // The recovered device reads data of the epoch before the rotation.
    fresh.sync();
    assert_eq!(std::fs::read(fresh.path("kept.txt")).unwrap(), b"written before the rotation");
}
