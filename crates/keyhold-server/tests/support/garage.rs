//! A real S3-compatible server for the tests: Garage (a Rust object store,
//! <https://garagehq.deuxfleurs.fr>), one single-node instance per test
//! process on loopback ports, started on first use, and a fresh bucket with
//! its own access key for each caller. Nothing is mocked: the server under
//! test speaks S3 (SigV4, path-style) to it as to any other store.
//!
//! The binary is `$KEYHOLD_TEST_GARAGE`, else `garage` on the PATH or in
//! `~/.cargo/bin` (`.ci/run` installs it with `cargo install garage`). A
//! watchdog stops it and removes its folder once the test process is gone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A bucket on the test Garage, and the key that may use it.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Bucket {
    /// The `[s3]` table of a `keyhold serve` config file.
    pub fn toml(&self) -> String {
        format!(
            "[s3]\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            self.bucket, self.endpoint, self.region, self.access_key_id, self.secret_access_key
        )
    }
}

struct Node {
    _watchdog: std::process::Child,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    endpoint: String,
}

static NODE: OnceLock<Node> = OnceLock::new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);
const REGION: &str = "garage";

/// A new, empty bucket with a key allowed to read and write it.
pub fn bucket() -> Bucket {
    let node = NODE.get_or_init(Node::start);
    let name = format!("keyhold-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::SeqCst));
    node.retry(&["bucket", "create", &name]);
    let created = node.retry(&["key", "create", &name]);
    let field = |label: &str| {
        created
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label:?} in `garage key create`'s output:\n{created}"))
    };
    let (access_key_id, secret_access_key) = (field("Key ID:"), field("Secret key:"));
    node.retry(&["bucket", "allow", "--read", "--write", "--owner", &name, "--key", &name]);
    Bucket { endpoint: node.endpoint.clone(), region: REGION.into(), bucket: name, access_key_id, secret_access_key }
}

/// Every object of `bucket`, by key (for tests that inspect the store).
pub fn objects(bucket: &Bucket) -> Vec<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&bucket.bucket)
            .with_endpoint(&bucket.endpoint)
            .with_allow_http(true)
            .with_region(&bucket.region)
            .with_access_key_id(&bucket.access_key_id)
            .with_secret_access_key(&bucket.secret_access_key)
            .build()
            .unwrap();
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        listed.into_iter().map(|m| m.location.to_string()).collect()
    })
}

fn binary() -> PathBuf {
    if let Some(explicit) = std::env::var_os("KEYHOLD_TEST_GARAGE") {
        return PathBuf::from(explicit);
    }
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("garage")).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/garage"));
    }
    candidates.into_iter().find(|p| p.is_file()).expect(
        "Garage is not installed: the S3 tests run against a real S3-compatible server \
         (cargo install garage --locked; .ci/run does it), or set KEYHOLD_TEST_GARAGE",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Node {
    fn start() -> Node {
        let bin = binary();
        let dir = tempfile::Builder::new().prefix("keyhold-garage-").tempdir().expect("temporary folder");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("randomness");
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .expect("write garage.toml");
        let script = format!(
            "\"$0\" \"$@\" & g=$!; \
             while [ -d /proc/{test} ] && kill -0 $g 2>/dev/null; do sleep 0.5; done; \
             kill $g 2>/dev/null; wait $g; rm -rf '{dir}'",
            test = std::process::id(),
            dir = dir.path().display(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .arg(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("garage.log")).expect("log file"))
            .spawn()
            .expect("start garage");
        let node = Node { _watchdog: watchdog, _dir: dir, bin, config, endpoint: format!("http://127.0.0.1:{s3}") };
        // `node id` reads a local file; `status` needs the RPC server up.
        let id = node.retry(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_owned();
        node.retry(&["status"]);
        // Then a one-node layout.
        node.retry(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        node.retry(&["layout", "apply", "--version", "1"]);
        node
    }

    /// Runs a CLI command until it succeeds: right after start, and under a
    /// loaded machine, Garage may refuse RPC or report its database busy.
    fn retry(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.try_cli(args) {
                Ok(out) => return out,
                Err(e) => {
                    assert!(Instant::now() < deadline, "garage {args:?} kept failing: {e}\n{}", self.log());
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("garage.log")).unwrap_or_default()
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }
}
