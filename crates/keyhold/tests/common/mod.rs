//! Test harness: a real `keyhold serve` on a loopback port chosen by the OS,
//! and devices that each run the real binary with their own KEYHOLD_HOME.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod kt;
pub mod proxy;

#[path = "../../../keyhold-server/tests/support/postgres.rs"]
pub mod postgres_cluster;

#[path = "../../../keyhold-server/tests/support/garage.rs"]
pub mod garage;

/// The stores the end-to-end tests run the server on: the embedded
/// defaults, or — with `KEYHOLD_TEST_BACKEND=postgres-s3`, as `.ci/run`'s
/// second pass sets it — two server processes over a real PostgreSQL and a
/// real Garage bucket, with devices spread over both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    PostgresS3,
}

pub fn backend() -> Backend {
    match std::env::var("KEYHOLD_TEST_BACKEND").as_deref() {
        Ok("postgres-s3") => Backend::PostgresS3,
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("KEYHOLD_TEST_BACKEND={other:?}: use embedded or postgres-s3"),
    }
}

/// For a test that reads or edits the embedded stores directly (the
/// operator's SQL, the blob files): true, after saying so, when the tests
/// run on another backend, where it has nothing to read. Its place is the
/// embedded pass, which runs it.
pub fn needs_embedded_stores(test: &str) -> bool {
    let other = backend() != Backend::Embedded;
    if other {
        eprintln!("{test}: reads the embedded stores directly; it runs in the embedded pass");
    }
    other
}

pub const BIN: &str = env!("CARGO_BIN_EXE_keyhold");

pub struct Server {
    child: Child,
    /// The other processes over the same stores (the postgres-s3 backend).
    others: Vec<Server>,
    pub url: String,
    /// Every process's URL; devices take them in turn.
    pub urls: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    /// The PostgreSQL database (the postgres-s3 backend).
    database_url: Option<String>,
    pub data: PathBuf,
    /// What the server wrote to its standard error.
    pub log: PathBuf,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, "")
    }

    /// Starts the server with extra TOML config (e.g. `[limits]` lines).
    pub fn start_with(dir: &Path, config: &str) -> Server {
        Server::start_logging(dir, config, "warn")
    }

    /// Starts the server logging at `level` (a `KEYHOLD_LOG` filter) to
    /// [`Server::log`].
    pub fn start_logging(dir: &Path, config: &str, level: &str) -> Server {
        match backend() {
            Backend::Embedded => Server::start_instance(dir, "", config, level),
            Backend::PostgresS3 => {
                // Top-level keys first: `config` may open TOML tables.
                let bucket = garage::bucket();
                let database = postgres_cluster::database();
                let config = format!("database_url = \"{database}\"\n{config}\n{}", bucket.toml());
                let mut one = Server::start_instance(dir, "one", &config, level);
                one.database_url = Some(database);
                let two = Server::start_instance(dir, "two", &config, level);
                one.urls.push(two.url.clone());
                one.others.push(two);
                one
            }
        }
    }

    /// The URL the next device uses: processes in turn.
    pub fn next_url(&self) -> String {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.urls[i % self.urls.len()].clone()
    }

    /// Starts one of several server processes over the same stores: each
    /// `instance` has its own config file and log, all share `server-data`
    /// (and whatever database `config` names).
    pub fn start_instance(dir: &Path, instance: &str, config: &str, level: &str) -> Server {
        let data = dir.join("server-data");
        let (file, log) = match instance {
            "" => (dir.join("keyhold.toml"), dir.join("server.log")),
            name => (dir.join(format!("keyhold-{name}.toml")), dir.join(format!("server-{name}.log"))),
        };
        // A config naming its own address (a restart on the same port) keeps it.
        let listen = if config.starts_with("listen") { "" } else { "listen = \"127.0.0.1:0\"\n" };
        std::fs::write(&file, format!("{listen}data_dir = \"{}\"\n{config}", data.display())).unwrap();
        let log_path = log;
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&file)
            .env("KEYHOLD_LOG", level)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // The server prints its address once it is listening: no sleeps.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening ").expect("server did not start").to_owned();
        Server {
            child,
            others: Vec::new(),
            urls: vec![url.clone()],
            next: Default::default(),
            database_url: None,
            url,
            log: log_path,
            data,
        }
    }

    /// Stops the server (every process) as an operator would (SIGTERM: it
    /// finishes what is in flight); dropping it again is harmless.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        for other in &mut self.others {
            other.stop();
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every file the server stores, by path.
    pub fn files(&self) -> Vec<PathBuf> {
        walkdir(&self.data)
    }

    pub fn db(&self) -> PathBuf {
        self.data.join("metadata.sqlite3")
    }

    pub fn packs(&self) -> Vec<PathBuf> {
        walkdir(&self.data.join("blobs"))
    }

    /// A number the server's database answers (`SELECT count(*) …`), on
    /// either engine.
    pub fn count(&self, statement: &str) -> u64 {
        let out = self.sql(statement);
        out.trim().trim_start_matches("[(").trim_end_matches(",)]").parse().unwrap_or_else(|_| panic!("not a number: {out}"))
    }

    /// Runs SQL against the server's database (the hostile operator's view;
    /// on the postgres-s3 backend through psql, so only SQL both engines read).
    /// A byte-string literal of the metadata store's SQL dialect.
    pub fn blob_literal(&self, hex: &str) -> String {
        if self.database_url.is_some() { format!("'\\x{hex}'::bytea") } else { format!("x'{hex}'") }
    }

    /// An expression giving `column`'s bytes as hex, in the store's dialect.
    pub fn hex_of(&self, column: &str) -> String {
        if self.database_url.is_some() { format!("encode({column}, 'hex')") } else { format!("hex({column})") }
    }

    /// The single value a query returned, without the SQLite helper's
    /// `[('…',)]` framing.
    pub fn sql_value(&self, statement: &str) -> String {
        let out = self.sql(statement);
        out.trim().trim_start_matches("[('").trim_end_matches("',)]").trim().to_owned()
    }

    pub fn sql(&self, statement: &str) -> String {
        if let Some(url) = &self.database_url {
            // PostgreSQL (postgres-s3 backend): only SQL both engines read.
            let out = Command::new("psql").args([url.as_str(), "-At", "-c", statement]).output().unwrap();
            assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print(r)",
            ])
            .arg(self.db())
            .arg(statement)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub struct Device {
    pub name: String,
    pub home: PathBuf,
    pub folder: PathBuf,
    pub server: String,
}

impl Device {
    pub fn new(dir: &Path, name: &str, server: &Server) -> Device {
        let folder = dir.join(format!("{name}-folder"));
        std::fs::create_dir_all(&folder).unwrap();
        Device { name: name.to_owned(), home: dir.join(format!("{name}-home")), folder, server: server.next_url() }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("KEYHOLD_HOME", &self.home)
            .env("KEYHOLD_SERVER", &self.server)
            .env("KEYHOLD_LOG", "warn")
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keyhold {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sync(&self) -> String {
        self.ok(&["sync", self.folder.to_str().unwrap()])
    }

    /// Creates the account; returns the recovery key.
    pub fn init(&self, dir: &Path) -> String {
        let file = dir.join(format!("recovery-{}", self.home.file_name().unwrap().to_string_lossy()));
        self.ok(&["init", "--name", &self.name, "--recovery-key-file", file.to_str().unwrap()]);
        std::fs::read_to_string(file).unwrap().trim().to_owned()
    }

    pub fn recover(&self, key: &str) {
        let out = Command::new(BIN)
            .args(["recover", "--name", &self.name])
            .env("KEYHOLD_HOME", &self.home)
            .env("KEYHOLD_SERVER", &self.server)
            .env("KEYHOLD_RECOVERY_KEY", key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Enrolls `joiner` through this device's pairing code; returns both
    /// outputs (inviter, joiner).
    pub fn pair(&self, joiner: &Device) -> (Output, Output) {
        let mut inviter = self.spawn(&["--json", "devices", "add", "--yes"]);
        let code = read_code(&mut inviter);
        let joined = joiner.run(&["join", "--code", &code, "--name", &joiner.name, "--yes"]);
        (inviter.wait_with_output().unwrap(), joined)
    }

    /// Starts the binary without waiting; stdout is piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(args)
            .env("KEYHOLD_HOME", &self.home)
            .env("KEYHOLD_SERVER", &self.server)
            .env("KEYHOLD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.folder.join(rel)
    }

    pub fn write(&self, rel: &str, content: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// Reads the pairing code `devices add --json` prints first.
pub fn read_code(inviter: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(inviter.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("no code line ({e}): {line:?}"));
    value["code"].as_str().unwrap().to_owned()
}

/// One account with two devices, "a" (which created it) and "b" (recovered).
pub fn two_devices(dir: &Path, server: &Server) -> (Device, Device) {
    let a = Device::new(dir, "a", server);
    let b = Device::new(dir, "b", server);
    let key = a.init(dir);
    b.recover(&key);
    (a, b)
}

/// Content, shortened to a digest in assertion messages.
#[derive(PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest = self.0.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
        write!(f, "{} bytes, fnv {digest:016x}", self.0.len())
    }
}

/// Path -> (is_dir, content, mode) of a whole folder, for comparisons
/// (a symlink: its target, and mode 0o120000).
pub fn snapshot(root: &Path) -> BTreeMap<String, (bool, Content, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel, (true, Content(Vec::new()), 0));
                stack.push(p);
            } else if meta.is_symlink() {
                // A link is its target, not what it points to.
                let target = std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes();
                out.insert(rel, (false, Content(target), 0o120_000));
            } else {
                out.insert(rel, (false, Content(std::fs::read(&p).unwrap()), meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for 200 MiB.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
