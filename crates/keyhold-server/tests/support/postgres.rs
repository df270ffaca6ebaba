//! A real PostgreSQL for the tests: one throwaway cluster per test process,
//! started on first use from the PostgreSQL binaries on this machine
//! (`initdb` and `postgres` on the PATH or under /usr/lib/postgresql/*/bin;
//! Debian's `postgresql` package, which `.ci/run` installs), listening on a
//! Unix socket in its own data folder only, and a fresh database for each
//! caller. Nothing is mocked: the server under test talks to it over the
//! PostgreSQL protocol like it would to any other.
//!
//! PostgreSQL refuses to run as root; under root the cluster runs as the
//! `postgres` user (or `nobody`). A watchdog stops the cluster and removes
//! its folder once the test process is gone, so nothing outlives the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "keyhold";

struct Cluster {
    /// Runs until the test process is gone (the cluster is never dropped:
    /// it lives in a static), then stops PostgreSQL and removes `dir`.
    _watchdog: std::process::Child,
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database on the test cluster: its URL for the server.
pub fn database() -> String {
    let cluster = CLUSTER.get_or_init(Cluster::start);
    let name = format!("keyhold_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
    let out = Command::new(cluster.bin.join("createdb"))
        .args(["-h", path_str(&cluster.data), "-U", ROLE, &name])
        .output()
        .expect("createdb");
    assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
    // sqlx reads a socket folder from `host`, percent-encoded.
    format!("postgres://{ROLE}@localhost/{name}?host={}", path_str(&cluster.data).replace('/', "%2F"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// The folder holding `initdb` and `postgres`.
fn binaries() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file() && d.join("createdb").is_file());
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect())
        .unwrap_or_default();
    installed.sort_by_key(|b| b.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()?.parse::<u32>().ok()));
    on_path.or_else(|| installed.pop()).expect(
        "PostgreSQL is not installed: the tests run the metadata store on a real PostgreSQL \
         (Debian: apt-get install postgresql; .ci/run does it)",
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program args…`, as an unprivileged user when the tests run as root.
fn command(program: &Path, user: Option<&str>) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Cluster {
    fn start() -> Cluster {
        let bin = binaries();
        let dir = tempfile::Builder::new().prefix("keyhold-pg-").tempdir().expect("temporary folder");
        let data = dir.path().join("data");
        let user = is_root().then(|| {
            let exists = |u: &str| {
                Command::new("id").arg(u).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
            };
            if exists("postgres") { "postgres" } else { "nobody" }
        });
        if let Some(user) = user {
            let uid = |flag: &str| -> u32 {
                let out = Command::new("id").args([flag, user]).output().expect("id");
                String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
            };
            std::os::unix::fs::chown(dir.path(), Some(uid("-u")), Some(uid("-g"))).expect("chown the cluster folder");
        }
        let init = command(&bin.join("initdb"), user)
            .args(["-D", path_str(&data), "-U", ROLE, "--auth=trust", "--no-sync", "-E", "UTF8", "--no-instructions"])
            .output()
            .expect("initdb");
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        // Only the socket, no TCP port: nothing to collide with. fsync off:
        // a test cluster need not survive a power cut, and it is 10x faster.
        let script = format!(
            "\"$0\" \"$@\" & pg=$!; \
             while [ -d /proc/{test} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{dir}'",
            test = std::process::id(),
            dir = path_str(dir.path()),
        );
        let mut watchdog = match user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh", "-c", &script]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", &script]);
                c
            }
        };
        let watchdog = watchdog
            .arg(bin.join("postgres"))
            .args(["-D", path_str(&data), "-k", path_str(&data), "-c", "listen_addresses=", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).expect("log file"))
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        // postmaster.pid ends in "ready" once connections are accepted.
        while !std::fs::read_to_string(data.join("postmaster.pid")).is_ok_and(|pid| pid.lines().any(|l| l.trim() == "ready")) {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster { _watchdog: watchdog, _dir: dir, data, bin }
    }
}
