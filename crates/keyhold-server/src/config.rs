//! `keyhold serve` configuration: a TOML file, overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Server configuration. Every field has a default that runs on one machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder for the embedded stores (SQLite database and blob folder).
    pub data_dir: PathBuf,
    /// The metadata database, when it is not the embedded SQLite file:
    /// `postgres://user:password@host:port/database` (several server
    /// processes may share one). The environment variable
    /// `KEYHOLD_DATABASE_URL` overrides it, so a password need not sit in
    /// the file.
    pub database_url: Option<String>,
    /// Packs in an S3-compatible bucket instead of the blob folder.
    pub s3: Option<S3Config>,
    /// The name of the residency region the stores above (`data_dir`,
    /// `database_url`, `s3`) hold: the default region of new accounts.
    pub region: String,
    /// More residency regions, each with its own stores. An account lives
    /// wholly in the region it chose at creation.
    pub regions: Vec<RegionConfig>,
    /// The deployment's Ed25519 signing key (a 32-byte seed file) for
    /// `GET /residency`; default `data_dir/deployment.key`, created on
    /// first start.
    pub deployment_key: Option<PathBuf>,
    /// Whether disclosure log entries name the account (its pseudonymous
    /// id) or give a count only.
    pub disclosure_log_names_accounts: bool,
    /// Serve `/metrics` (Prometheus) to requests with
    /// `Authorization: Bearer <this>`; without it there is no `/metrics`.
    /// `KEYHOLD_METRICS_TOKEN` overrides it.
    pub metrics_token: Option<String>,
    /// TLS certificate chain and key (PEM). Plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Limits.
    pub limits: Limits,
    /// Key transparency: the key directory, its log and the witnesses.
    pub transparency: TransparencyConfig,
}

/// Key transparency (docs/spec/transparency.md): every account's device
/// chain head and every collection's head go into a verifiable key
/// directory (akd) whose epoch roots are appended to a signed log that
/// independent witnesses cosign.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransparencyConfig {
    /// Publish directory epochs and log checkpoints from this process. Of
    /// several processes sharing one database, one publishes at a time (a
    /// lease in the database decides which); `false` serves what others
    /// published.
    pub publish: bool,
    /// The log's origin line: a name that says whose log this is (no
    /// spaces or `+`). Default: `keyhold.invalid/kt/<deployment key id>`.
    pub origin: Option<String>,
    /// Seconds between directory epochs (and heartbeats when nothing
    /// changed).
    pub epoch_secs: u64,
    /// The log's Ed25519 signing key (a 32-byte seed file); default
    /// `data_dir/kt-log.key`, created on first start.
    pub log_key: Option<PathBuf>,
    /// The directory's VRF key (a 32-byte seed file); default
    /// `data_dir/kt-vrf.key`, created on first start.
    pub vrf_key: Option<PathBuf>,
    /// Witnesses to send each new checkpoint to (C2SP tlog-witness): their
    /// base URLs (`POST <url>/add-checkpoint`).
    pub witnesses: Vec<String>,
    /// Verifier keys of auditors whose cosignatures this server accepts and
    /// serves (`POST /kt/audited`).
    pub auditors: Vec<String>,
}

impl Default for TransparencyConfig {
    fn default() -> Self {
        TransparencyConfig {
            publish: true,
            origin: None,
            epoch_secs: 120,
            log_key: None,
            vrf_key: None,
            witnesses: Vec::new(),
            auditors: Vec::new(),
        }
    }
}

/// An S3-compatible bucket (Garage, MinIO, Ceph, a cloud's). Credentials
/// and anything left out here come from the usual environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT`, …), so that secrets need not sit in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL, for a store that is not AWS (`http://` is allowed:
    /// every pack is encrypted and authenticated end to end).
    pub endpoint: Option<String>,
    /// Region name.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

/// The name of the region of the top-level stores when the config names none.
pub const DEFAULT_REGION: &str = "default";

/// A residency region beyond the default one: its own metadata database and
/// blob store, which hold every row and pack of the accounts in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Its name: 1 to 32 of `a-z`, `0-9` and `-`.
    pub name: String,
    /// Its folder for the embedded stores (SQLite and blob folder).
    pub data_dir: PathBuf,
    /// Its PostgreSQL database, instead of SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Its S3-compatible bucket, instead of the blob folder in `data_dir`.
    pub s3: Option<S3Config>,
}

impl Config {
    /// Every region (the default one first): name, folder, database, bucket.
    pub fn all_regions(&self) -> Vec<RegionConfig> {
        let default = RegionConfig {
            name: self.region.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            s3: self.s3.clone(),
        };
        std::iter::once(default).chain(self.regions.iter().cloned()).collect()
    }

    /// Region names must be well formed and distinct.
    pub fn check_regions(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for r in self.all_regions() {
            let ok = (1..=32).contains(&r.name.len())
                && r.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(format!("region name {:?}: use 1 to 32 of a-z, 0-9 and -", r.name));
            }
            if !seen.insert(r.name.clone()) {
                return Err(format!("region {:?} is configured twice", r.name));
            }
        }
        Ok(())
    }
}

/// TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Limits that protect the server and its other users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (a pack), bytes.
    pub max_body_bytes: usize,
    /// Storage quota of a new account, bytes.
    pub default_quota_bytes: u64,
    /// Time allowed to send request headers, seconds (slowloris).
    pub header_timeout_secs: u64,
    /// Time allowed for a whole request, seconds.
    pub request_timeout_secs: u64,
    /// Concurrent uploads buffered at once (bounds memory: this times
    /// `max_body_bytes`).
    pub max_concurrent_uploads: usize,
    /// Requests per second per client address, sustained.
    pub requests_per_second: u32,
    /// Burst allowance on top of that.
    pub request_burst: u32,
    /// Authentication and account-creation attempts per minute per address.
    pub auth_per_minute: u32,
    /// Session lifetime, seconds.
    pub session_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8420)),
            data_dir: PathBuf::from("keyhold-data"),
            database_url: None,
            s3: None,
            metrics_token: None,
            region: DEFAULT_REGION.to_owned(),
            disclosure_log_names_accounts: true,
            regions: Vec::new(),
            deployment_key: None,
            tls: None,
            limits: Limits::default(),
            transparency: TransparencyConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: keyhold_core::pack::MAX_PACK_LEN,
            default_quota_bytes: 100 << 30,
            header_timeout_secs: 10,
            request_timeout_secs: 300,
            max_concurrent_uploads: 16,
            requests_per_second: 2000,
            request_burst: 4000,
            auth_per_minute: 120,
            session_secs: 3600,
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_owned(), Box::new(e)))
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read config {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// Not valid TOML for this schema.
    #[error("invalid config {0}")]
    Parse(PathBuf, #[source] Box<toml::de::Error>),
}
