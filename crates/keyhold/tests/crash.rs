//! Crash safety (SECURITY F1, F3): the client killed with SIGKILL at random
//! points of a sync, and the server killed mid-commit, over and over. After
//! each crash: every committed version is restorable (`check --read-data`
//! authenticates the whole history), the newest is complete or absent,
//! nothing is lost locally, and the next sync converges.
//!
//! Iterations: `KEYHOLD_CRASH_ITERATIONS` (default 12 per test, for CI);
//! `scripts/crash-test.sh N` runs thousands. Seed: `KEYHOLD_CRASH_SEED`
//! (printed on failure; the schedule of edits and kill delays replays from it,
//! the timing of the processes themselves cannot).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Content, Device, noise, snapshot};

/// A small seeded generator for the test's schedule (edits, delays).
struct Schedule(u64);

impl Schedule {
    fn from_env() -> Self {
        let seed = std::env::var("KEYHOLD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % (1 << 63))
                .unwrap()
        });
        eprintln!("crash schedule seed: KEYHOLD_CRASH_SEED={seed}");
        Schedule(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Each round runs several commands, each of which signs in: at hundreds
/// of rounds they would trip the server's authentication rate limit (G4).
const GENEROUS_LIMITS: &str = "[limits]\nauth_per_minute = 1000000\n";

fn iterations() -> usize {
    std::env::var("KEYHOLD_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(12)
}

/// What the folder should hold: path -> content.
type Model = BTreeMap<String, Vec<u8>>;

/// Applies a few random edits to the folder and the model: new files, a
/// rewritten file, a deleted one, and now and then a multi-megabyte file
/// so that kills land during uploads as well as during commits.
fn edit(device: &Device, model: &mut Model, rng: &mut Schedule, round: usize) {
    for i in 0..1 + rng.below(4) {
        let path = format!("dir{}/file-{round}-{i}.txt", rng.below(3));
        let content = noise(rng.next(), 1 + usize::try_from(rng.below(40_000)).unwrap());
        device.write(&path, &content);
        model.insert(path, content);
    }
    if rng.below(3) == 0 {
        let path = format!("big-{}.bin", rng.below(2));
        let content = noise(rng.next(), 3_000_000 + usize::try_from(rng.below(3_000_000)).unwrap());
        device.write(&path, &content);
        model.insert(path, content);
    }
    let keys: Vec<String> = model.keys().cloned().collect();
    if keys.len() > 4 {
        let victim = &keys[usize::try_from(rng.below(u64::try_from(keys.len()).unwrap())).unwrap()];
        if rng.below(2) == 0 {
            std::fs::remove_file(device.path(victim)).unwrap();
            model.remove(victim);
        } else {
            let content = noise(rng.next(), 1 + usize::try_from(rng.below(20_000)).unwrap());
            device.write(victim, &content);
            model.insert(victim.clone(), content);
        }
    }
}

/// The folder, files only, without the client's own temporary files.
fn files(root: &Path) -> BTreeMap<String, Content> {
    snapshot(root)
        .into_iter()
        .filter(|(path, (is_dir, _, _))| !is_dir && !path.rsplit('/').next().unwrap_or("").starts_with(".keyhold-tmp"))
        .map(|(path, (_, content, _))| (path, content))
        .collect()
}

/// Panics with the paths that differ between the folder and the model.
fn assert_folder(root: &Path, model: &Model, context: &str) {
    let found = files(root);
    let wanted = model_files(model);
    if found != wanted {
        let extra: Vec<&String> = found.keys().filter(|k| !wanted.contains_key(*k)).collect();
        let missing: Vec<&String> = wanted.keys().filter(|k| !found.contains_key(*k)).collect();
        let changed: Vec<&String> = wanted.keys().filter(|k| found.get(*k).is_some_and(|c| Some(c) != wanted.get(*k))).collect();
        panic!("{context}: the folder differs from what was written: extra {extra:?}, missing {missing:?}, changed {changed:?}");
    }
}

fn model_files(model: &Model) -> BTreeMap<String, Content> {
    model.iter().map(|(p, c)| (p.clone(), Content(c.clone()))).collect()
}

fn sync_child(device: &Device) -> Child {
    Command::new(BIN)
        .args(["--quiet", "sync", device.folder.to_str().unwrap()])
        .env("KEYHOLD_HOME", &device.home)
        .env("KEYHOLD_SERVER", &device.server)
        .env("KEYHOLD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every committed version authenticates; the newest one is what the next
/// full sync leaves on a second device.
fn assert_history_intact(device: &Device, context: &str) {
    let out = device.run(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "{context}: a committed version is not restorable: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_export_matches(device: &Device, dir: &Path, model: &Model, context: &str) {
    let dest = dir.join(format!("export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    device.ok(&["export", dest.to_str().unwrap()]);
    assert_eq!(files(&dest), model_files(model), "{context}: the newest version differs from the folder");
    std::fs::remove_dir_all(&dest).unwrap();
}

/// Runs `iterations()` rounds against `a`: edit the folder, start a sync,
/// let `crash` strike after a random delay (it returns what it did), then
/// check that the folder is exactly what was written and every committed
/// version authenticates; every `sync_every` rounds a complete sync must
/// converge on the folder. Returns the model of the folder.
fn crash_rounds(a: &Device, dir: &Path, sync_every: usize, mut crash: impl FnMut(Child) -> String) -> Model {
    let mut rng = Schedule::from_env();
    let mut model = Model::new();
    edit(a, &mut model, &mut rng, 0);
    let started = Instant::now();
    a.sync();
    // Crashes land anywhere from the start to a little past a typical sync.
    let typical = u64::try_from(started.elapsed().as_millis().max(50)).unwrap();
    for round in 1..=iterations() {
        edit(a, &mut model, &mut rng, round);
        let delay = rng.below(typical * 3 / 2);
        let child = sync_child(a);
        std::thread::sleep(Duration::from_millis(delay));
        let what = crash(child);
        let context = format!("round {round} ({what} after {delay} ms)");
        // Nothing is lost locally: the crash never touches what the user wrote.
        assert_folder(&a.folder, &model, &format!("{context}: after the crash"));
        // Whatever was committed is whole: no revision names a blob the
        // server does not have.
        assert_history_intact(a, &context);
        if round % sync_every == 0 {
            a.sync();
            assert_folder(&a.folder, &model, &format!("{context}: after the next sync"));
            assert_export_matches(a, dir, &model, &context);
        }
    }
    a.sync();
    assert_history_intact(a, "final");
    assert_export_matches(a, dir, &model, "final");
    model
}

#[test]
fn f1_killing_the_client_mid_sync_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_with(dir.path(), GENEROUS_LIMITS);
    let a = Device::new(dir.path(), "a", &server);
    a.init(dir.path());
    let model = crash_rounds(&a, dir.path(), 3, |mut child| {
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        "client killed".to_owned()
    });
    // A second device gets exactly the folder.
    let b = Device::new(dir.path(), "b", &server);
    b.recover(&std::fs::read_to_string(dir.path().join("recovery-a-home")).unwrap());
    b.sync();
    assert_folder(&b.folder, &model, "second device");
}

/// A `keyhold serve` on a fixed port, so it can be killed and restarted
/// over the same data.
struct RestartableServer {
    child: Option<Child>,
    listen: String,
    data: PathBuf,
    config: PathBuf,
}

impl RestartableServer {
    fn start(dir: &Path) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap().to_string();
        drop(probe);
        let config = dir.join("keyhold.toml");
        std::fs::write(&config, GENEROUS_LIMITS).unwrap();
        let mut server = RestartableServer { child: None, listen, data: dir.join("server-data"), config };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(BIN)
                .args(["serve", "--listen", &self.listen, "--data"])
                .arg(&self.data)
                .arg("--config")
                .arg(&self.config)
                .env("KEYHOLD_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            if line.starts_with("listening ") {
                self.child = Some(child);
                return;
            }
            // The port may still be held by the killed process for a moment.
            let _ = child.wait();
            assert!(Instant::now() < deadline, "the server did not restart on {}", self.listen);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn f3_killing_the_server_mid_commit_references_no_partial_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RestartableServer::start(dir.path());
    let a =
        Device { name: "a".into(), home: dir.path().join("a-home"), folder: dir.path().join("a-folder"), server: server.url() };
    std::fs::create_dir_all(&a.folder).unwrap();
    a.init(dir.path());
    crash_rounds(&a, dir.path(), 1, |mut child| {
        server.kill();
        let status = child.wait().unwrap();
        server.restart();
        format!("server killed (the sync {status})")
    });
}

#[test]
fn f1_a_crash_between_the_commit_and_saving_the_base_brings_no_deleted_file_back() {
    // Deterministic: the proxy holds back the answer to the commit (the
    // server has already accepted it) until the client has been killed.
    // The user then deletes the file the commit added; the next sync must
    // delete it on the server too, not download it as "new there".
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_with(dir.path(), GENEROUS_LIMITS);
    let proxy = common::proxy::Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    a.init(dir.path());
    a.write("kept.txt", b"synced before");
    a.sync();
    a.write("added.txt", b"committed, then deleted by the user");
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = committed.clone();
    proxy.rewrite_response("POST", "/v1/collections/*/revisions", move |_, _| {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut child = sync_child(&a);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !committed.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the sync never committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    proxy.clear();
    std::fs::remove_file(a.path("added.txt")).unwrap();
    a.sync();
    assert!(!a.path("added.txt").exists(), "a file the user deleted came back from the server");
    let listed = a.ok(&["--json", "ls"]);
    assert!(!listed.contains("added.txt"), "the deletion did not reach the server: {listed}");
    assert!(listed.contains("kept.txt"));
}

#[test]
fn f3_a_sync_cut_off_mid_upload_resumes_without_resending_what_arrived() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path());
    let proxy = common::proxy::Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    a.init(dir.path());
    // Three packs' worth of new data (packs are 16 MiB).
    let big = noise(11, 40 << 20);
    a.write("big.bin", &big);
    // Two pack uploads get through; then the network fails for the rest.
    let uploads = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = uploads.clone();
    proxy.rewrite_response("PUT", "/v1/collections/*/packs/*", move |_, resp| {
        if counter.fetch_add(1, Ordering::SeqCst) >= 2 {
            // Late enough for the two acknowledged packs to be read back.
            std::thread::sleep(Duration::from_secs(3));
            *resp = common::proxy::ResponseParts::error(503, "unavailable", "cut off");
        }
    });
    let out = a.run(&["sync", a.folder.to_str().unwrap()]);
    assert!(!out.status.success(), "the sync should have failed mid-upload");
    let arrived: Vec<usize> = proxy
        .log()
        .matching("PUT", "/v1/collections/*/packs/*")
        .into_iter()
        .filter(|e| e.response.is_success())
        .map(|e| e.request.body.len())
        .collect();
    assert_eq!(arrived.len(), 2, "two uploads were acknowledged");
    let arrived: usize = arrived.iter().sum();
    proxy.clear();
    proxy.log().clear();
    a.sync();
    // Blobs are sealed deterministically, but packs are not: what counts is
    // how much is sent again. Sending everything again would be at least the
    // file's size; resuming leaves out the packs that arrived and were read
    // back (both, unless the machine is so slow that one was still being
    // read back when the sync gave up).
    let resent: usize = proxy.log().matching("PUT", "/v1/collections/*/packs/*").iter().map(|e| e.request.body.len()).sum();
    assert!(
        resent + (4 << 20) < big.len(),
        "the retry sent {} MiB again of a {} MiB file, though {} MiB had arrived",
        resent >> 20,
        big.len() >> 20,
        arrived >> 20
    );
    a.ok(&["check", "--read-data"]);
    let b = Device::new(dir.path(), "b", &server);
    b.recover(&std::fs::read_to_string(dir.path().join("recovery-a-home")).unwrap());
    b.sync();
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), big);
}

#[test]
fn f3_a_connection_cut_mid_transfer_by_a_live_server_loses_nothing_and_resumes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path());
    let proxy = common::proxy::Proxy::start(&server);
    let a = proxy.device(&Device::new(dir.path(), "a", &server));
    let key = a.init(dir.path());
    let big = noise(12, 40 << 20);
    a.write("big.bin", &big);
    // The third pack reaches the server and is stored, but the connection
    // drops before the client hears so: the client sends the same pack
    // again, and the server keeps one copy.
    let uploads = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = uploads.clone();
    let cut = proxy.rewrite_response("PUT", "/v1/collections/*/packs/*", move |_, resp| {
        if counter.fetch_add(1, Ordering::SeqCst) == 2 {
            resp.cut_after = Some(0);
        }
    });
    let out = a.run(&["sync", a.folder.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("pack upload failed; retrying"), "{err}");
    assert!(cut.hits() >= 3, "the cut never happened");
    let puts = proxy.log().matching("PUT", "/v1/collections/*/packs/*");
    let distinct: std::collections::BTreeSet<String> = puts.iter().map(|e| e.request.path.clone()).collect();
    assert!(puts.len() > distinct.len(), "nothing was sent twice");
    assert_eq!(server.count("SELECT count(*) FROM packs"), u64::try_from(distinct.len()).unwrap());

    // Every answer after the second is lost, and so is every read that
    // could confirm what arrived: the sync gives up (a network failure,
    // exit 1), and the next one sends only what never arrived.
    a.write("big2.bin", &noise(13, 40 << 20));
    proxy.clear();
    proxy.log().clear();
    let counter = std::sync::Arc::new(AtomicUsize::new(0));
    proxy.rewrite_response("PUT", "/v1/collections/*/packs/*", move |_, resp| {
        if counter.fetch_add(1, Ordering::SeqCst) >= 2 {
            resp.cut_after = Some(0);
        }
    });
    proxy.rewrite_response("GET", "/v1/collections/*/packs/*", |_, resp| resp.cut_after = Some(0));
    let out = a.run(&["sync", a.folder.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a cut connection is not an integrity failure: {err}");
    assert!(err.contains("cannot reach the server"), "unclear message: {err}");
    let arrived: std::collections::BTreeSet<String> =
        proxy.log().matching("PUT", "/v1/collections/*/packs/*").iter().map(|e| e.request.path.clone()).collect();
    proxy.clear();
    proxy.log().clear();
    a.sync();
    let resent: usize = proxy.log().matching("PUT", "/v1/collections/*/packs/*").iter().map(|e| e.request.body.len()).sum();
    // Packs that arrived, even those whose answer was lost, are listed by
    // the server; the client reads their index instead of sending them.
    assert!(
        resent + (12 << 20) < (40 << 20),
        "the retry sent {} MiB of a 40 MiB file though {} packs had arrived",
        resent >> 20,
        arrived.len()
    );
    a.ok(&["check", "--read-data"]);

    // Downloads: b's reads of a pack are cut halfway through the body.
    let b = proxy.device(&Device::new(dir.path(), "b", &server));
    b.recover(&key);
    std::fs::create_dir_all(&b.folder).unwrap();
    b.write("local.txt", b"b's own file");
    let before = snapshot(&b.folder);
    let cut = proxy.rewrite_response("GET", "/v1/collections/*/packs/*", |req, resp| {
        if req.range().is_some_and(|r| r.end - r.start > 1 << 20) {
            resp.cut_after = Some(resp.body.len() / 2);
        }
    });
    let out = b.run(&["sync", b.folder.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(cut.hits() > 0, "no large read to cut");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(snapshot(&b.folder), before, "a cut download left something behind: {err}");
    proxy.clear();
    b.sync();
    assert_eq!(std::fs::read(b.path("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(b.path("local.txt")).unwrap(), b"b's own file");
}
