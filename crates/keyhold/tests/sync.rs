//! End to end: two devices, one real server on loopback, the real binary.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Device, Server, noise, snapshot, two_devices};

#[test]
fn two_devices_converge_and_history_restores() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);

    // Every kind of entry.
    a.write("notes/todo.txt", b"buy milk\n");
    a.write("empty.txt", b"");
    a.write("bin/blob.bin", &noise(1, 70_000));
    a.write("Отчёт/日記 2026.md", "unicode names ✓".as_bytes());
    a.write("tool.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(a.path("tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(a.path("deep/er/empty-folder")).unwrap();
    let big = noise(2, 200 << 20);
    a.write("big/200MiB.bin", &big);
    a.sync();
    b.sync();
    assert_eq!(snapshot(&a.folder), snapshot(&b.folder), "after first sync");

    // Edit, rename, delete on b; a follows.
    b.write("notes/todo.txt", b"buy milk\nand bread\n");
    std::fs::rename(b.path("bin/blob.bin"), b.path("bin/renamed.bin")).unwrap();
    std::fs::remove_file(b.path("empty.txt")).unwrap();
    std::fs::set_permissions(b.path("tool.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    b.sync();
    a.sync();
    assert_eq!(snapshot(&a.folder), snapshot(&b.folder), "after edits");
    assert!(!a.path("empty.txt").exists());
    assert_eq!(std::fs::read(a.path("bin/renamed.bin")).unwrap(), noise(1, 70_000));

    // History: the first version of todo.txt comes back.
    let log = a.ok(&["log", "notes/todo.txt"]);
    assert!(log.lines().count() >= 3, "{log}");
    let restored = dir.path().join("todo-v1.txt");
    a.ok(&["restore", "notes/todo.txt", "--version", "1", "--to", restored.to_str().unwrap()]);
    assert_eq!(std::fs::read(&restored).unwrap(), b"buy milk\n");
    // A deleted file stays in history.
    let gone = dir.path().join("empty-again.txt");
    a.ok(&["restore", "empty.txt", "--to", gone.to_str().unwrap()]);
    assert_eq!(std::fs::read(&gone).unwrap(), b"");

    // Export reproduces the tree with the client alone.
    let export = dir.path().join("export");
    a.ok(&["export", export.to_str().unwrap()]);
    assert_eq!(snapshot(&export), snapshot(&a.folder));

    // An unchanged re-sync commits nothing new.
    let before = a.ok(&["--json", "status"]);
    a.sync();
    assert_eq!(a.ok(&["--json", "status"]), before);
    a.ok(&["check", "--read-data"]);
}

#[test]
fn concurrent_edits_keep_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    a.write("shared.txt", b"original\n");
    a.sync();
    b.sync();
    a.write("shared.txt", b"edited on a\n");
    b.write("shared.txt", b"edited on b, longer\n");
    a.sync();
    b.sync();
    a.sync();
    assert_eq!(snapshot(&a.folder), snapshot(&b.folder));
    let files = snapshot(&a.folder);
    assert_eq!(files["shared.txt"].1.0, b"edited on a\n", "the first commit keeps the name");
    let copies: Vec<_> = files.iter().filter(|(p, _)| p.contains("(conflict ")).collect();
    assert_eq!(copies.len(), 1, "{files:?}");
    assert_eq!(copies[0].1.1.0, b"edited on b, longer\n");
}

#[test]
fn a_lost_state_database_propagates_no_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = Device::new(dir.path(), "a", &server);
    a.init(dir.path());
    a.write("keep/one.txt", b"1");
    a.write("keep/two.txt", b"2");
    a.sync();
    // The state is corrupted, and meanwhile a file vanished locally.
    std::fs::write(a.home.join("state.sqlite3"), b"this is not a database").unwrap();
    let _ = std::fs::remove_file(a.home.join("state.sqlite3-wal"));
    std::fs::remove_file(a.path("keep/two.txt")).unwrap();
    a.sync();
    // Without a trustworthy base the missing file is restored, not deleted.
    assert_eq!(std::fs::read(a.path("keep/two.txt")).unwrap(), b"2");
}

#[test]
fn f7_a_deleted_state_database_is_rebuilt_and_propagates_no_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    a.write("keep/one.txt", b"1");
    a.write("keep/two.txt", b"2");
    a.sync();
    b.sync();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(a.home.join(format!("state.sqlite3{suffix}")));
    }
    std::fs::remove_file(a.path("keep/two.txt")).unwrap();
    b.write("from-b.txt", b"new on b");
    b.sync();
    a.sync();
    // Nothing was deleted on the strength of an empty base; b's new file
    // arrived; and the next round trip works as usual.
    assert_eq!(std::fs::read(a.path("keep/two.txt")).unwrap(), b"2");
    assert_eq!(std::fs::read(a.path("from-b.txt")).unwrap(), b"new on b");
    b.sync();
    assert_eq!(std::fs::read(b.path("keep/two.txt")).unwrap(), b"2");
    a.write("after.txt", b"after the rebuild");
    a.sync();
    b.sync();
    assert_eq!(std::fs::read(b.path("after.txt")).unwrap(), b"after the rebuild");
}

#[test]
fn a_folder_stays_with_its_collection() {
    // Syncing a folder with a second collection would merge it against a
    // base from the first: every file would look deleted remotely.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, _b) = two_devices(dir.path(), &server);
    a.write("keep.txt", b"precious\n");
    a.sync();
    let before = snapshot(&a.folder);
    let out = a.run(&["sync", a.folder.to_str().unwrap(), "--collection", "other"]);
    assert!(!out.status.success(), "a folder was synced with a second collection");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("synced with another collection"), "unclear error: {err}");
    assert_eq!(snapshot(&a.folder), before, "the folder changed");
}
