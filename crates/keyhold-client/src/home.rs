//! The device's home folder (`$KEYHOLD_HOME`, default: the platform data
//! directory + `keyhold`): `config.json` (server, account and device ids —
//! nothing secret), `device.key` (the device's seeds and the newest account
//! root key it holds; mode 0600, written atomically) and `chain.json` (the
//! device chain this device verified, which it pins: a server that later
//! shows a chain not extending it is caught), `heads.json` (the collection
//! heads it verified, kept outside the state database so that losing the
//! database does not lose rollback protection) and `state.sqlite3`.

use std::io::Write;
use std::path::{Path, PathBuf};

use keyhold_core::{AccountId, AccountRootKey, DeviceSecret};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

const KEY_FILE_MAGIC: &[u8; 8] = b"KHDEVK1\0";
const KEY_FILE_LEN: usize = 8 + 16 + 4 + 32 + 32 + 32;

/// Where this device keeps its files.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// Non-secret settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Server base URL.
    pub server: String,
    /// Account id (hex).
    pub account_id: String,
    /// This device's id (hex).
    pub device_id: String,
    /// This device's name, as the device chain records it.
    #[serde(default)]
    pub device_name: String,
}

/// The device chain as this device verified it, and how much of it the
/// user has been shown.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PinnedChain {
    /// Stored entries, first entry first; every one verified.
    pub entries: Vec<keyhold_proto::Bytes>,
    /// Entries up to this sequence number were shown to the user.
    pub seen: u64,
}

/// The device's secrets, loaded.
pub struct DeviceKeys {
    /// Account.
    pub account: AccountId,
    /// Account key epoch of `root`.
    pub epoch: u32,
    /// The account root key.
    pub root: AccountRootKey,
    /// Device keys.
    pub device: DeviceSecret,
}

impl DeviceConfig {
    /// Parses `config.json`.
    pub fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

impl PinnedChain {
    /// Parses `chain.json` (its entries are verified by whoever uses them).
    pub fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

impl DeviceKeys {
    /// The `device.key` file: magic `KHDEVK1\0`, account id (16 bytes),
    /// epoch (u32 big-endian), root key, signing seed, KEM seed (32 bytes
    /// each).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut raw = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
        let (signing, kem) = self.device.expose_seeds();
        raw.extend_from_slice(KEY_FILE_MAGIC);
        raw.extend_from_slice(self.account.as_bytes());
        raw.extend_from_slice(&self.epoch.to_be_bytes());
        raw.extend_from_slice(self.root.expose_secret());
        raw.extend_from_slice(signing.as_ref());
        raw.extend_from_slice(kem.as_ref());
        raw
    }

    /// Reads a `device.key` file; `None` if it is not exactly one.
    pub fn decode(raw: &[u8]) -> Option<Self> {
        if raw.len() != KEY_FILE_LEN || raw.get(..8) != Some(KEY_FILE_MAGIC.as_slice()) {
            return None;
        }
        let field = |at: usize| -> Option<Zeroizing<[u8; 32]>> { raw.get(at..at + 32)?.try_into().ok().map(Zeroizing::new) };
        let account = AccountId(raw.get(8..24)?.try_into().ok()?);
        let epoch = u32::from_be_bytes(raw.get(24..28)?.try_into().ok()?);
        let root = AccountRootKey::from_bytes(*field(28)?);
        let (signing, kem) = (field(60)?, field(92)?);
        let device = DeviceSecret::from_seeds(&signing, &kem);
        Some(DeviceKeys { account, epoch, root, device })
    }
}

impl Home {
    /// `$KEYHOLD_HOME`, or the platform's data directory.
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self> {
        let dir = explicit
            .or_else(|| std::env::var_os("KEYHOLD_HOME").map(PathBuf::from))
            .or_else(|| dirs::data_dir().map(|d| d.join("keyhold")))
            .ok_or_else(|| ClientError::Usage("cannot find a data directory; set KEYHOLD_HOME".into()))?;
        Ok(Home { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn chain_path(&self) -> PathBuf {
        self.dir.join("chain.json")
    }

    /// The pinned device chain, if this device has one.
    pub fn load_chain(&self) -> Result<Option<PinnedChain>> {
        let path = self.chain_path();
        match std::fs::read(&path) {
            Ok(bytes) => PinnedChain::parse(&bytes).map(Some).map_err(|e| {
                ClientError::Usage(format!("{} is damaged ({e}); move it away to trust the server's chain again", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::io(path)(e)),
        }
    }

    /// Pins a verified device chain.
    pub fn save_chain(&self, chain: &PinnedChain) -> Result<()> {
        let json = serde_json::to_vec(chain).map_err(|e| ClientError::Usage(e.to_string()))?;
        std::fs::create_dir_all(&self.dir).map_err(ClientError::io(&self.dir))?;
        write_private(&self.chain_path(), &json)
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("device.key")
    }

    /// The local state database's path.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.sqlite3")
    }

    /// Whether an account is set up here.
    pub fn is_initialized(&self) -> bool {
        self.key_path().exists()
    }

    /// Loads config and keys.
    pub fn load(&self) -> Result<(DeviceConfig, DeviceKeys)> {
        if !self.is_initialized() {
            return Err(ClientError::NotInitialized(self.dir.clone()));
        }
        let bytes = std::fs::read(self.config_path()).map_err(ClientError::io(self.config_path()))?;
        let config =
            DeviceConfig::parse(&bytes).map_err(|e| ClientError::Usage(format!("{}: {e}", self.config_path().display())))?;
        let raw = Zeroizing::new(std::fs::read(self.key_path()).map_err(ClientError::io(self.key_path()))?);
        match DeviceKeys::decode(&raw) {
            Some(keys) if keys.device.id().to_hex() == config.device_id && keys.account.to_hex() == config.account_id => {
                Ok((config, keys))
            }
            _ => Err(ClientError::Usage(format!(
                "{} is damaged or belongs to another account; restore it from backup or run `keyhold recover`",
                self.key_path().display()
            ))),
        }
    }

    /// Writes config and keys for a new account or device.
    pub fn save(&self, config: &DeviceConfig, keys: &DeviceKeys) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(ClientError::io(&self.dir))?;
        let raw = keys.encode();
        write_private(&self.key_path(), &raw)?;
        let json = serde_json::to_vec_pretty(config).map_err(|e| ClientError::Usage(e.to_string()))?;
        write_private(&self.config_path(), &json)
    }
}

/// Writes a file atomically (temp file, fsync, rename, fsync dir), mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(ClientError::io(&tmp))?;
    file.write_all(bytes).map_err(ClientError::io(&tmp))?;
    file.sync_all().map_err(ClientError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ClientError::io(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
