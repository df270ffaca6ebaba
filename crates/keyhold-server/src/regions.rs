//! Residency regions. Each region has its own metadata database and blob
//! store; an account lives wholly in the region it chose when it was
//! created, so every row and pack of it goes to that region's stores and
//! nowhere else. Authenticated requests find their region in the session
//! token (`<region>.<secret>`); the few anonymous ones (sign-in, recovery,
//! a joining device) look the account, locator or pairing slot up in each
//! region in turn. `GET /residency` states, signed by the deployment's key,
//! which regions exist and what holds each one's data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use keyhold_proto::{AccountId, Bytes as B64, RESIDENCY_CONTEXT, RegionStatement, Residency, ResidencyStatement};
use zeroize::Zeroizing;

use crate::blobs::BlobStore;
use crate::config::{Config, RegionConfig};
use crate::serve::ServeError;
use crate::store::{MetaStore, RecoveryRow, StoreError};

type StoreResult<T> = Result<T, StoreError>;

/// One region's stores.
pub struct Region {
    /// Its name.
    pub name: String,
    /// Its metadata database.
    pub meta: MetaStore,
    /// Its blob store.
    pub blobs: BlobStore,
    statement: RegionStatement,
}

/// Every region; the first is the default.
pub struct Regions {
    default: Arc<Region>,
    list: Vec<Arc<Region>>,
    residency: Residency,
    key: SigningKey,
}

impl Region {
    async fn open(config: &RegionConfig) -> Result<Region, ServeError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ServeError::Setup(format!("{}: {e}", config.data_dir.display())))?;
        let (meta, metadata) = match &config.database_url {
            Some(url) => (MetaStore::connect(url).await?, format!("PostgreSQL at {}", host_of(url))),
            None => (MetaStore::open(&config.data_dir.join("metadata.sqlite3")).await?, "SQLite on the server's disk".to_owned()),
        };
        let (blobs, where_blobs) = match &config.s3 {
            Some(s3) => (
                BlobStore::s3(s3)?,
                format!("S3 bucket {} at {}", s3.bucket, s3.endpoint.as_deref().map_or("AWS".to_owned(), host_of)),
            ),
            None => (BlobStore::local(&config.data_dir.join("blobs"))?, "a folder on the server's disk".to_owned()),
        };
        let statement = RegionStatement { name: config.name.clone(), metadata, blobs: where_blobs };
        Ok(Region { name: config.name.clone(), meta, blobs, statement })
    }
}

/// The host (and port) of a URL, without scheme, credentials or path: what
/// a residency statement may name.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    rest.rsplit_once('@').map_or(rest, |(_, host)| host).to_owned()
}

impl Regions {
    /// Opens every region's stores and signs the residency statement.
    pub async fn open(config: &Config) -> Result<Regions, ServeError> {
        config.check_regions().map_err(ServeError::Setup)?;
        let mut list = Vec::new();
        for region in config.all_regions() {
            list.push(Arc::new(Region::open(&region).await?));
        }
        // `all_regions` lists the default region first.
        let default = list.first().cloned().ok_or_else(|| ServeError::Setup("no region configured".into()))?;
        let key = deployment_key(config)?;
        let statement = ResidencyStatement {
            server: format!("keyhold {}", env!("CARGO_PKG_VERSION")),
            issued_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            default_region: config.region.clone(),
            regions: list.iter().map(|r| r.statement.clone()).collect(),
        };
        let bytes = serde_json::to_vec(&statement).map_err(|e| ServeError::Setup(e.to_string()))?;
        let signature = key.sign(&[RESIDENCY_CONTEXT, &bytes].concat());
        let residency = Residency {
            statement: B64(bytes),
            signature: B64(signature.to_bytes().to_vec()),
            public_key: B64(key.verifying_key().to_bytes().to_vec()),
        };
        Ok(Regions { default, list, residency, key })
    }

    /// The default region.
    pub fn default_region(&self) -> &Arc<Region> {
        &self.default
    }

    /// The region called `name`.
    pub fn named(&self, name: &str) -> Option<&Arc<Region>> {
        self.list.iter().find(|r| r.name == name)
    }

    /// Every region.
    pub fn all(&self) -> &[Arc<Region>] {
        &self.list
    }

    /// The names, for error messages.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|r| r.name.clone()).collect()
    }

    /// The signed residency statement.
    pub fn residency(&self) -> &Residency {
        &self.residency
    }

    /// Signs `message` with the deployment key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The deployment's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The region that holds `account`, if any does.
    pub async fn of_account(&self, account: AccountId) -> StoreResult<Option<Arc<Region>>> {
        for region in &self.list {
            if region.meta.has_account(account).await? {
                return Ok(Some(region.clone()));
            }
        }
        Ok(None)
    }

    /// The region and recovery row of a recovery locator, if any region has it.
    pub async fn of_locator(&self, locator: &[u8; 32]) -> StoreResult<Option<(Arc<Region>, RecoveryRow)>> {
        for region in &self.list {
            if let Some(row) = region.meta.recovery(locator).await? {
                return Ok(Some((region.clone(), row)));
            }
        }
        Ok(None)
    }

    /// The region holding a live pairing slot of that name, if any.
    pub async fn of_slot(&self, slot: &str, now: i64) -> StoreResult<Option<Arc<Region>>> {
        for region in &self.list {
            if region.meta.slot_is_live(slot, now).await? {
                return Ok(Some(region.clone()));
            }
        }
        Ok(None)
    }
}

fn deployment_key(config: &Config) -> Result<SigningKey, ServeError> {
    let path: PathBuf = config.deployment_key.clone().unwrap_or_else(|| config.data_dir.join("deployment.key"));
    let seed = seed_file(&path, "deployment key")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads the 32-byte secret seed in `path`, or creates the file (owner-only)
/// with a fresh one when there is none.
pub(crate) fn seed_file(path: &Path, what: &str) -> Result<Zeroizing<[u8; 32]>, ServeError> {
    let setup = |e: std::io::Error| ServeError::Setup(format!("{what} {}: {e}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => Ok(Zeroizing::new(
            bytes.as_slice().try_into().map_err(|_| ServeError::Setup(format!("{} is not a 32-byte key", path.display())))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|e| ServeError::Setup(format!("randomness: {e}")))?;
            write_private(path, seed.as_ref()).map_err(setup)?;
            Ok(seed)
        }
        Err(e) => Err(setup(e)),
    }
}

/// Creates `path` readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
