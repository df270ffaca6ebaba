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

// ---------------------------------------------------------------------------
// G7: whatever names the server's listings hold, nothing is written or
// deleted outside the sync root. Names with `/`, `..`, NUL and the like do
// not even parse (core: `g7_names_that_could_escape_a_folder_never_parse`);
// these are the names that do parse.

/// A folder beside the sync folders, with a file in it, and a symlink to it
/// at `link` inside `device`'s sync folder.
fn outside_linked_from(dir: &std::path::Path, device: &Device, link: &str) -> std::path::PathBuf {
    let outside = dir.join(format!("outside-{}", device.name));
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("keep.txt"), b"not Keyhold's to touch").unwrap();
    std::fs::create_dir_all(&device.folder).unwrap();
    std::os::unix::fs::symlink(&outside, device.path(link)).unwrap();
    outside
}

#[test]
fn g7_remote_files_are_never_written_through_a_local_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    a.write("docs/keep.txt", b"the server's version");
    a.write("docs/new.txt", b"would land outside");
    a.write("elsewhere.txt", b"fine");
    a.sync();
    let outside = outside_linked_from(dir.path(), &b, "docs");
    let before = snapshot(&outside);
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the sync wrote below a symlink: {err}");
    assert!(err.contains("is not a folder; not writing below it"), "{err}");
    assert_eq!(snapshot(&outside), before, "a file outside the sync folder changed");
    assert!(std::fs::symlink_metadata(b.path("docs")).unwrap().is_symlink(), "the link was replaced");
    // Once the link is gone, the folder syncs.
    std::fs::remove_file(b.path("docs")).unwrap();
    b.sync();
    assert_eq!(std::fs::read(b.path("docs/new.txt")).unwrap(), b"would land outside");
}

#[test]
fn g7_a_remote_deletion_never_reaches_through_a_local_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    std::fs::create_dir_all(a.path("docs/sub")).unwrap();
    a.write("docs/keep.txt", b"synced");
    a.sync();
    b.sync();
    // On b, something replaces the synced folder with a link to a folder
    // that happens to hold the same names; then a deletes the folder. (The
    // scan does not follow links, so b plans no deletion below one; the
    // apply step refuses one anyway, for a link made after the scan.)
    std::fs::remove_dir_all(b.path("docs")).unwrap();
    let outside = outside_linked_from(dir.path(), &b, "docs");
    let before = snapshot(&outside);
    std::fs::remove_dir_all(a.path("docs")).unwrap();
    a.sync();
    let _ = b.run(&["sync", b.folder.to_str().unwrap()]);
    assert_eq!(snapshot(&outside), before, "a deletion reached outside the sync folder");
}

#[test]
fn g7_names_equal_but_for_case_or_unicode_normalisation_stay_apart_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    let names = [
        ("Report.txt", "capital"),
        ("report.txt", "lower case"),
        ("caf\u{e9}.txt", "composed é (NFC)"),
        ("cafe\u{301}.txt", "e + combining accent (NFD)"),
        ("Ordner/a.txt", "folder, capital"),
        ("ordner/a.txt", "folder, lower case"),
    ];
    for (name, content) in names {
        a.write(name, content.as_bytes());
    }
    a.sync();
    let top =
        || std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<std::collections::BTreeSet<_>>();
    let beside = top();
    b.sync();
    // Each name is its own file, with its own content, inside b's folder;
    // nothing appeared beside it.
    for (name, content) in names {
        assert_eq!(std::fs::read_to_string(b.path(name)).unwrap(), content, "{name}");
    }
    assert_eq!(snapshot(&b.folder), snapshot(&a.folder));
    assert_eq!(top(), beside, "something was written beside the sync folder");
    // Deleting one of a pair deletes that one only.
    std::fs::remove_file(a.path("report.txt")).unwrap();
    std::fs::remove_file(a.path("cafe\u{301}.txt")).unwrap();
    a.sync();
    b.sync();
    assert!(!b.path("report.txt").exists() && !b.path("cafe\u{301}.txt").exists());
    assert_eq!(std::fs::read_to_string(b.path("Report.txt")).unwrap(), "capital");
    assert_eq!(std::fs::read_to_string(b.path("caf\u{e9}.txt")).unwrap(), "composed é (NFC)");
}

// ---------------------------------------------------------------------------
// F2: the local state store under torn and lost writes

/// The state database's files, copied aside (or put back).
fn copy_state(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("state.sqlite3{suffix}");
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn f2_torn_pages_in_the_state_database_are_noticed_and_propagate_no_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    // Enough files for the state to span many pages.
    for i in 0..300 {
        a.write(&format!("many/file-{i:03}.txt"), format!("file {i}").as_bytes());
    }
    a.sync();
    b.sync();
    // Every page but the first written halfway: its second half never
    // reached the disk (zeros), as a power cut mid-write can leave it.
    let db = a.home.join("state.sqlite3");
    let _ = std::fs::remove_file(a.home.join("state.sqlite3-wal"));
    let mut bytes = std::fs::read(&db).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() >= 4 * page, "the state database is only {} bytes", bytes.len());
    for start in (page..bytes.len()).step_by(page) {
        bytes[start + page / 2..start + page].fill(0);
    }
    std::fs::write(&db, bytes).unwrap();
    std::fs::remove_file(a.path("many/file-007.txt")).unwrap();
    a.sync();
    // No base to trust: the missing file is restored, not deleted anywhere.
    assert_eq!(std::fs::read(a.path("many/file-007.txt")).unwrap(), b"file 7");
    b.sync();
    assert_eq!(std::fs::read(b.path("many/file-007.txt")).unwrap(), b"file 7");
    assert_eq!(snapshot(&a.folder), snapshot(&b.folder));
    // The damaged copy is kept aside for a look, not silently reused.
    let aside = std::fs::read_dir(&a.home)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("corrupt"))
        .count();
    assert_eq!(aside, 1, "the torn database was not set aside");
}

#[test]
fn f2_a_state_database_rolled_back_to_an_older_copy_resurrects_deletes_and_conflicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (a, b) = two_devices(dir.path(), &server);
    a.write("doc.txt", b"version one");
    a.write("old.txt", b"will be deleted");
    a.write("stays.txt", b"unchanged throughout");
    a.sync();
    b.sync();
    let saved = dir.path().join("b-state-then");
    copy_state(&b.home, &saved);
    // Since then: an edit, a deletion and a new file, everywhere.
    a.write("doc.txt", b"version two");
    std::fs::remove_file(a.path("old.txt")).unwrap();
    a.write("new.txt", b"added later");
    a.sync();
    b.sync();
    let settled = snapshot(&a.folder);
    assert_eq!(snapshot(&b.folder), settled);
    // b's writes since the copy are lost: its state is the old one again.
    copy_state(&saved, &b.home);
    b.sync();
    a.sync();
    // Both devices still hold exactly the settled tree: the deleted file did
    // not come back, nothing was deleted, no conflict copy was made.
    assert_eq!(snapshot(&b.folder), settled, "the rolled-back state changed b's folder");
    assert_eq!(snapshot(&a.folder), settled, "the rolled-back state reached a");
    let listed = a.ok(&["--json", "ls"]);
    assert!(!listed.contains("old.txt") && !listed.contains("conflict"), "{listed}");
}
