//! Key transparency on the server (docs/spec/transparency.md): a key
//! directory (akd) maps every account to the head of its device chain,
//! every collection to its committed head and every handle to the id of
//! its claim (`handles.rs`); each directory epoch's root is
//! appended to a C2SP log whose checkpoints the log key signs and
//! independent witnesses cosign. One process publishes at a time (a lease
//! in the database); every process serves what was published.
//!
//! Nothing here is trusted by a client: it checks every answer against the
//! log key, witness keys and auditor keys it pinned itself.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use akd::directory::Directory;
use akd::ecvrf::{VRFKeyStorage, VrfError};
use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, AzksParallelismConfig};
use keyhold_core::share::validate_handle;
use keyhold_core::transparency::{
    self as kt, AddCheckpoint, Checkpoint, DirectoryLabel, DirectoryValue, KtConfig, LogEntry, MerkleLog, NoteKey,
};
use keyhold_proto::ObjectId;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::config::{Config, TransparencyConfig};
use crate::directory_store::DirectoryStore;
use crate::kt_store::Lease;
use crate::regions::{Regions, seed_file};
use crate::serve::ServeError;
use crate::store::{MetaStore, StoreError};

/// The directory's VRF key, kept in memory for akd.
#[derive(Clone)]
pub struct VrfKey(Arc<Zeroizing<[u8; 32]>>);

impl VrfKey {
    /// The VRF key of a 32-byte secret seed.
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        VrfKey(Arc::new(seed))
    }
}

#[async_trait::async_trait]
impl VRFKeyStorage for VrfKey {
    async fn retrieve(&self) -> Result<Vec<u8>, VrfError> {
        Ok(self.0.to_vec())
    }
}

type Akd = Directory<KtConfig, DirectoryStore, VrfKey>;

/// Memory the publisher's directory cache may take.
const WRITER_CACHE_BYTES: usize = 256 << 20;

/// What went wrong publishing or serving the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KtServerError {
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// akd failed.
    #[error("key directory: {0}")]
    Directory(String),
    /// A format could not be made or read.
    #[error("key transparency: {0}")]
    Format(#[from] kt::KtError),
    /// The log in the database is not one this code wrote.
    #[error("key transparency log: {0}")]
    Corrupt(&'static str),
}

fn akd_err(e: impl std::fmt::Display) -> KtServerError {
    KtServerError::Directory(e.to_string())
}

/// What a process knows of the log, refreshed from the database.
#[derive(Default)]
struct LogCache {
    entries: Vec<Vec<u8>>,
    /// The tree over the entries: roots and proofs in O(log n).
    tree: MerkleLog,
    /// Directory epoch → index of its entry.
    epochs: HashMap<u64, u64>,
    /// The newest checkpoint: (size, signed note with cosignatures).
    checkpoint: Option<(u64, Vec<u8>)>,
}

/// The key directory, its log and the publisher.
pub struct Transparency {
    config: TransparencyConfig,
    origin: String,
    log_key: NoteKey,
    vrf_public_key: Vec<u8>,
    vrf: VrfKey,
    /// Reads the directory straight from the database: right whichever
    /// process published last.
    reader: Arc<Akd>,
    /// Publishes with akd's cache (several times faster); exists only
    /// while this process holds the publisher's lease, and is rebuilt when
    /// it takes the lease over (another process may have published).
    writer: std::sync::RwLock<Option<Arc<Akd>>>,
    store: MetaStore,
    cache: Mutex<LogCache>,
    /// Serialises publishing within this process (the lease does it across processes).
    publishing: Mutex<()>,
    /// Held shared while a proof is computed and exclusively while akd
    /// publishes. akd 0.13 lets proofs run during a publish (its own lock
    /// is taken shared by both), and a proof read through the publisher's
    /// storage in the middle of its transaction mixes two epochs and does
    /// not verify (seen as a failed history proof under load).
    directory_lock: tokio::sync::RwLock<()>,
    /// The size each witness last told us it knows.
    witness_sizes: Mutex<HashMap<String, u64>>,
    http: reqwest::Client,
    holder: [u8; 16],
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Transparency {
    /// Opens the directory (in the default region's metadata store) and
    /// the log keys, creating them on first start.
    pub async fn open(config: &Config, regions: &Regions) -> Result<Transparency, ServeError> {
        let tc = config.transparency.clone();
        let setup = |e: &dyn std::fmt::Display| ServeError::Setup(format!("key transparency: {e}"));
        let log_seed =
            seed_file(&tc.log_key.clone().unwrap_or_else(|| config.data_dir.join("kt-log.key")), "transparency log key")?;
        let vrf_seed =
            seed_file(&tc.vrf_key.clone().unwrap_or_else(|| config.data_dir.join("kt-vrf.key")), "transparency VRF key")?;
        let origin = match &tc.origin {
            Some(origin) => origin.clone(),
            None => {
                let id = blake3::hash(&regions.public_key());
                format!("keyhold.invalid/kt/{}", hex(id.as_bytes().get(..4).unwrap_or_default()))
            }
        };
        let log_key = NoteKey::from_seed(&origin, *log_seed).map_err(|e| setup(&e))?;
        let vrf = VrfKey(Arc::new(vrf_seed));
        let vrf_public_key = vrf.get_vrf_public_key().await.map_err(|e| setup(&e))?.to_bytes().to_vec();
        let store = regions.default_region().meta.clone();
        let storage = StorageManager::new_no_cache(DirectoryStore::new(&store));
        let reader = Arc::new(Akd::new(storage, vrf.clone(), AzksParallelismConfig::default()).await.map_err(|e| setup(&e))?);
        let mut holder = [0u8; 16];
        getrandom::fill(&mut holder).map_err(|e| setup(&e))?;
        // reqwest is built without a bundled TLS provider: use ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| setup(&e))?;
        Ok(Transparency {
            config: tc,
            origin,
            log_key,
            vrf_public_key,
            vrf,
            reader,
            writer: std::sync::RwLock::new(None),
            store,
            cache: Mutex::new(LogCache::default()),
            publishing: Mutex::new(()),
            directory_lock: tokio::sync::RwLock::new(()),
            witness_sizes: Mutex::new(HashMap::new()),
            http,
            holder,
        })
    }

    /// `GET /kt/info`.
    pub fn info(&self) -> keyhold_proto::KtInfo {
        keyhold_proto::KtInfo {
            origin: self.origin.clone(),
            log_vkey: self.log_key.log_vkey(),
            vrf_public_key: keyhold_proto::Bytes(self.vrf_public_key.clone()),
            epoch_secs: self.config.epoch_secs,
        }
    }

    /// Seconds between epochs.
    pub fn epoch_interval(&self) -> Duration {
        Duration::from_secs(self.config.epoch_secs.max(1))
    }

    /// Whether this process may publish (it still needs the lease).
    pub fn publishes(&self) -> bool {
        self.config.publish
    }

    /// Reads log entries and the newest checkpoint that other processes
    /// (or an earlier run) wrote.
    async fn refresh(&self) -> Result<tokio::sync::MutexGuard<'_, LogCache>, KtServerError> {
        let mut cache = self.cache.lock().await;
        let known = u64::try_from(cache.entries.len()).map_err(|_| KtServerError::Corrupt("log too long"))?;
        for (idx, entry) in self.store.kt_entries(known).await? {
            if idx != u64::try_from(cache.entries.len()).map_err(|_| KtServerError::Corrupt("log too long"))? {
                return Err(KtServerError::Corrupt("log entries are not consecutive"));
            }
            if let LogEntry::Epoch { epoch, .. } = LogEntry::decode(&entry)? {
                cache.epochs.insert(epoch, idx);
            }
            cache.tree.append(&entry);
            cache.entries.push(entry);
        }
        cache.checkpoint = self.store.kt_latest_checkpoint().await?;
        Ok(cache)
    }

    /// One publishing step: publish what changed as a new directory epoch
    /// (or a heartbeat when nothing did), then sign a checkpoint and have
    /// the witnesses cosign it. Does nothing without the lease.
    pub async fn tick(&self, regions: &Regions) -> Result<(), KtServerError> {
        let _one = self.publishing.lock().await;
        // Three epochs, and at least 30 s (a slow witness or a large epoch
        // must not outlast it): a publisher that died is replaced within that.
        let lease = Duration::from_secs(self.config.epoch_secs.max(1).saturating_mul(3).max(30));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let akd = match self.store.kt_take_lease(&self.holder, now_ms(), lease_ms).await? {
            Lease::Other => {
                self.set_writer(None);
                return Ok(());
            }
            Lease::Renewed => match self.current_writer() {
                Some(writer) => writer,
                None => self.new_writer().await?,
            },
            Lease::Acquired => self.new_writer().await?,
        };
        let logged = {
            let cache = self.refresh().await?;
            cache.epochs.keys().max().copied()
        };
        let current = akd.get_epoch_hash().await.map_err(akd_err)?;
        let mut appended = Vec::new();
        // A crash between publishing an epoch and logging it: log it now
        // (this is also how epoch 0, the empty directory, enters the log).
        if logged.is_none_or(|e| e < current.0) {
            appended.push(LogEntry::Epoch { epoch: current.0, root: current.1, time_ms: now_ms() });
        }
        let changes = self.changes(regions).await?;
        if !changes.is_empty() {
            let updates: Vec<(AkdLabel, AkdValue)> =
                changes.iter().map(|(l, v)| (AkdLabel(l.to_bytes()), AkdValue(v.to_bytes()))).collect();
            let publishing = self.directory_lock.write().await;
            let published = akd.publish(updates).await;
            drop(publishing);
            let published = match published {
                Ok(published) => published,
                Err(e) => {
                    // Its cache may hold half an epoch: start the next one afresh.
                    self.set_writer(None);
                    return Err(akd_err(e));
                }
            };
            let rows: Vec<(Vec<u8>, Vec<u8>)> = changes.iter().map(|(l, v)| (l.to_bytes(), v.to_bytes())).collect();
            self.store.kt_set_published(&rows, published.0).await?;
            // akd answers its current epoch when nothing really changed (a
            // re-publish after a crash): each epoch enters the log once.
            if logged.is_none_or(|e| e < published.0)
                && appended.iter().all(|a| !matches!(a, LogEntry::Epoch { epoch, .. } if *epoch >= published.0))
            {
                appended.push(LogEntry::Epoch { epoch: published.0, root: published.1, time_ms: now_ms() });
            }
            tracing::info!(epoch = published.0, labels = rows.len(), "published a key directory epoch");
        }
        if appended.is_empty() {
            appended.push(LogEntry::Heartbeat { time_ms: now_ms() });
        }
        // Still ours? (Publishing may have taken long; another process
        // that took the lease over must not see entries appended under it.)
        if self.store.kt_take_lease(&self.holder, now_ms(), lease_ms).await? != Lease::Renewed {
            self.set_writer(None);
            return Ok(());
        }
        let mut cache = self.refresh().await?;
        for entry in appended {
            let bytes = entry.encode();
            let idx = u64::try_from(cache.entries.len()).map_err(|_| KtServerError::Corrupt("log too long"))?;
            if !self.store.kt_append(idx, &bytes, now_ms()).await? {
                // Another publisher took the lease meanwhile: leave it to them.
                return Ok(());
            }
            if let LogEntry::Epoch { epoch, .. } = entry {
                cache.epochs.insert(epoch, idx);
            }
            cache.tree.append(&bytes);
            cache.entries.push(bytes);
        }
        let size = cache.tree.size();
        let checkpoint = Checkpoint { origin: self.origin.clone(), size, root: cache.tree.root(size)? };
        let tree = cache.tree.clone();
        drop(cache);
        let mut note = kt::sign_checkpoint(&checkpoint, &self.log_key)?;
        let lines = self.cosignatures(&note, &tree, size).await;
        note = kt::add_signature_lines(&note, &lines)?;
        self.store.kt_put_checkpoint(size, &note, now_ms()).await?;
        let mut cache = self.cache.lock().await;
        cache.checkpoint = Some((size, note));
        Ok(())
    }

    /// Asks every configured witness to cosign `note` (size `size`),
    /// returning the cosignature lines of those that did.
    async fn cosignatures(&self, note: &[u8], tree: &MerkleLog, size: u64) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for url in &self.config.witnesses {
            match self.ask_witness(url, note, tree, size).await {
                // Only a well-formed line is kept: a reply that is not one
                // must not stop the checkpoint from being stored.
                Ok(line) if kt::add_signature_lines(note, std::slice::from_ref(&line)).is_ok() => lines.push(line),
                Ok(_) => tracing::warn!(witness = %url, "a witness answered something that is not a signature line"),
                Err(why) => tracing::warn!(witness = %url, %why, "a witness did not cosign the checkpoint"),
            }
        }
        lines
    }

    async fn ask_witness(&self, url: &str, note: &[u8], tree: &MerkleLog, size: u64) -> Result<Vec<u8>, String> {
        let mut old = self.witness_sizes.lock().await.get(url).copied().unwrap_or(0);
        // At most twice: the second time from the size the witness said it knows.
        for _ in 0..2 {
            let proof =
                if old == 0 || old > size { Vec::new() } else { tree.consistency_proof(old, size).map_err(|e| e.to_string())? };
            let body = AddCheckpoint { old_size: old, proof, note: note.to_vec() }.encode();
            let response = self
                .http
                .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
                .body(body)
                .send()
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            let status = response.status();
            let text = response.bytes().await.map_err(|e| format!("unreadable answer: {e}"))?;
            if status.is_success() {
                self.witness_sizes.lock().await.insert(url.to_owned(), size);
                return Ok(text.to_vec());
            }
            if status == reqwest::StatusCode::CONFLICT {
                let known = std::str::from_utf8(&text).ok().and_then(|t| t.trim().parse::<u64>().ok());
                match known {
                    Some(known) if known != old && known <= size => {
                        old = known;
                        continue;
                    }
                    _ => return Err(format!("refused (409): it knows a tree this one does not extend ({:?})", known)),
                }
            }
            return Err(format!("refused ({status}): {}", String::from_utf8_lossy(&text).trim()));
        }
        Err("refused twice".into())
    }

    /// Labels whose value differs from what the directory last published:
    /// every account's device chain head, every collection's head and
    /// every handle's claim, in every region.
    async fn changes(&self, regions: &Regions) -> Result<Vec<(DirectoryLabel, DirectoryValue)>, KtServerError> {
        let published: HashMap<Vec<u8>, Vec<u8>> = self.store.kt_published().await?.into_iter().collect();
        let mut out = Vec::new();
        // Handle → id of its claim; `None` for a handle two regions hold
        // (a claim being withdrawn, handles.rs): published once one is left.
        let mut handles: BTreeMap<String, Option<[u8; 32]>> = BTreeMap::new();
        for region in regions.all() {
            for (account, seq, id) in region.meta.kt_chain_heads().await? {
                let label = DirectoryLabel::Account(account);
                let value = DirectoryValue { seq, hash: id };
                if published.get(&label.to_bytes()) != Some(&value.to_bytes()) {
                    out.push((label, value));
                }
            }
            for (account, collection, seq, id) in region.meta.kt_collection_heads().await? {
                let label = DirectoryLabel::Collection(account, collection);
                let value = DirectoryValue { seq, hash: id };
                if published.get(&label.to_bytes()) != Some(&value.to_bytes()) {
                    out.push((label, value));
                }
            }
            for (handle, claim) in region.meta.kt_handles().await? {
                if validate_handle(&handle).is_err() {
                    tracing::error!(region = %region.name, "a stored handle is not a valid handle; not published");
                    continue;
                }
                match handles.entry(handle) {
                    Entry::Vacant(e) => {
                        e.insert(Some(ObjectId::of(&claim).0));
                    }
                    Entry::Occupied(mut e) => {
                        tracing::warn!(handle = %e.key(), "two regions hold one handle; not published until one does");
                        e.insert(None);
                    }
                }
            }
        }
        for (handle, hash) in handles {
            let Some(hash) = hash else { continue };
            let label = DirectoryLabel::Handle(handle);
            let value = DirectoryValue { seq: 0, hash };
            if published.get(&label.to_bytes()) != Some(&value.to_bytes()) {
                out.push((label, value));
            }
        }
        Ok(out)
    }

    fn current_writer(&self) -> Option<Arc<Akd>> {
        self.writer.read().ok().and_then(|w| w.clone())
    }

    fn set_writer(&self, writer: Option<Arc<Akd>>) {
        if let Ok(mut slot) = self.writer.write() {
            *slot = writer;
        }
    }

    async fn new_writer(&self) -> Result<Arc<Akd>, KtServerError> {
        let storage = StorageManager::new(
            DirectoryStore::new(&self.store),
            Some(Duration::from_secs(self.config.epoch_secs.max(1).saturating_mul(10).max(600))),
            Some(WRITER_CACHE_BYTES),
            Some(Duration::from_secs(60)),
        );
        let writer = Arc::new(Akd::new(storage, self.vrf.clone(), AzksParallelismConfig::default()).await.map_err(akd_err)?);
        self.set_writer(Some(writer.clone()));
        Ok(writer)
    }

    /// The directory to read: the publisher's own (cached, and current:
    /// nobody else writes while it holds the lease), else the database.
    fn directory(&self) -> Arc<Akd> {
        self.current_writer().unwrap_or_else(|| self.reader.clone())
    }

    /// Gives the publisher's lease up, on shutdown.
    pub async fn release(&self) {
        if let Err(e) = self.store.kt_release_lease(&self.holder).await {
            tracing::warn!(error = %e, "key transparency: could not release the publisher's lease");
        }
    }

    /// `GET /kt/checkpoint`: the newest signed checkpoint.
    pub async fn checkpoint(&self) -> Result<Option<Vec<u8>>, KtServerError> {
        Ok(self.refresh().await?.checkpoint.as_ref().map(|(_, note)| note.clone()))
    }

    /// `GET /kt/consistency`: a proof that the tree of `to` leaves extends
    /// the tree of `from`.
    pub async fn consistency(&self, from: u64, to: u64) -> Result<Option<Vec<[u8; 32]>>, KtServerError> {
        let cache = self.refresh().await?;
        if from == 0 || from > to || to > cache.tree.size() {
            return Ok(None);
        }
        Ok(Some(cache.tree.consistency_proof(from, to)?))
    }

    /// `GET /kt/entries`: entries `from..to` (at most `limit`).
    pub async fn entries(&self, from: u64, to: u64, limit: u64) -> Result<Vec<Vec<u8>>, KtServerError> {
        let cache = self.refresh().await?;
        let to = to.min(from.saturating_add(limit)).min(u64::try_from(cache.entries.len()).unwrap_or(u64::MAX));
        let range = usize::try_from(from).unwrap_or(usize::MAX)..usize::try_from(to).unwrap_or(usize::MAX);
        Ok(cache.entries.get(range).map(<[Vec<u8>]>::to_vec).unwrap_or_default())
    }

    /// `GET /kt/tile/...`: a C2SP tlog-tiles hash tile (`<L>/<N>[.p/<W>]`)
    /// or entry bundle (`entries/<N>[.p/<W>]`: each entry as a big-endian
    /// `u16` length and its bytes).
    pub async fn tile(&self, path: &str) -> Result<Option<Vec<u8>>, KtServerError> {
        if let Some(rest) = path.strip_prefix("entries/") {
            // Same index and width encoding as a level-0 hash tile.
            let Ok((_, index, width)) = kt::parse_tile_path(&format!("0/{rest}")) else { return Ok(None) };
            let cache = self.refresh().await?;
            let start = index.checked_mul(kt::TILE_WIDTH).and_then(|s| usize::try_from(s).ok());
            let end = start.zip(usize::try_from(width).ok()).and_then(|(s, w)| s.checked_add(w));
            let Some(entries) = start.zip(end).and_then(|(s, e)| cache.entries.get(s..e)) else { return Ok(None) };
            let full = width == kt::TILE_WIDTH || end == Some(cache.entries.len());
            if !full {
                // A partial bundle exists only for the log's current end.
                return Ok(None);
            }
            let mut bundle = Vec::new();
            for entry in entries {
                let len = u16::try_from(entry.len()).map_err(|_| KtServerError::Corrupt("entry too long"))?;
                bundle.extend_from_slice(&len.to_be_bytes());
                bundle.extend_from_slice(entry);
            }
            return Ok(Some(bundle));
        }
        let Ok((level, index, width)) = kt::parse_tile_path(path) else { return Ok(None) };
        let cache = self.refresh().await?;
        Ok(cache.tree.tile(level, index, width).ok())
    }

    /// A lookup (`history == false`) or history proof for `label`, tied to
    /// the newest checkpoint. `None` when the directory has no such label.
    pub async fn prove(&self, label: &[u8], history: bool) -> Result<Option<keyhold_proto::KtProof>, ProveError> {
        DirectoryLabel::from_bytes(label).map_err(|_| ProveError::BadLabel)?;
        let label = AkdLabel(label.to_vec());
        let reading = self.directory_lock.read().await;
        let (epoch, proof) = if history {
            match self.directory().key_history(&label, akd::HistoryParams::default()).await {
                Ok((proof, hash)) => (hash.0, kt::encode_history_proof(&proof)),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(ProveError::Server(akd_err(e))),
            }
        } else {
            match self.directory().lookup(label).await {
                Ok((proof, hash)) => (hash.0, kt::encode_lookup_proof(&proof)),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(ProveError::Server(akd_err(e))),
            }
        };
        drop(reading);
        let cache = self.refresh().await?;
        let (Some(&index), Some((size, note))) = (cache.epochs.get(&epoch), cache.checkpoint.as_ref()) else {
            return Err(ProveError::NotYetLogged);
        };
        if index >= *size {
            return Err(ProveError::NotYetLogged);
        }
        let entry = cache
            .entries
            .get(usize::try_from(index).map_err(|_| ProveError::NotYetLogged)?)
            .cloned()
            .ok_or(ProveError::NotYetLogged)?;
        let inclusion = cache.tree.inclusion_proof(index, *size).map_err(KtServerError::from)?;
        Ok(Some(keyhold_proto::KtProof {
            checkpoint: keyhold_proto::Bytes(note.clone()),
            epoch,
            entry_index: index,
            entry: keyhold_proto::Bytes(entry),
            inclusion: inclusion.iter().map(|h| keyhold_proto::Bytes(h.to_vec())).collect(),
            proof: keyhold_proto::Bytes(proof),
        }))
    }

    /// `GET /kt/audit/{epoch}`: akd's append-only proof from `epoch - 1`
    /// to `epoch` (protobuf `SingleAppendOnlyProof`).
    pub async fn audit(&self, epoch: u64) -> Result<Option<Vec<u8>>, KtServerError> {
        let _reading = self.directory_lock.read().await;
        let akd = self.directory();
        let latest = akd.get_epoch_hash().await.map_err(akd_err)?.0;
        if epoch == 0 || epoch > latest {
            return Ok(None);
        }
        let proof = akd.audit(epoch - 1, epoch).await.map_err(akd_err)?;
        let single = proof.proofs.first().ok_or(KtServerError::Directory("empty audit proof".into()))?;
        Ok(Some(kt::encode_audit_proof(single)))
    }

    /// `POST /kt/audited`: keeps an auditor's cosignature of the checkpoint
    /// of `size` if it verifies under one of the configured auditor keys.
    pub async fn add_audit(&self, size: u64, line: &str) -> Result<bool, KtServerError> {
        let Some(note) = self.store.kt_checkpoint(size).await? else { return Ok(false) };
        let Some(name) = kt::verify_cosignature_line(&note, line.as_bytes(), &self.config.auditors) else {
            return Ok(false);
        };
        self.store.kt_put_audit(&name, size, line.as_bytes(), now_ms()).await?;
        Ok(true)
    }

    /// `GET /kt/audited`: per auditor, the newest checkpoint it cosigned,
    /// with its cosignature.
    pub async fn audited(&self) -> Result<Vec<Vec<u8>>, KtServerError> {
        let mut out = Vec::new();
        for (size, line) in self.store.kt_audits().await? {
            if let Some(note) = self.store.kt_checkpoint(size).await? {
                out.push(kt::add_signature_lines(&note, &[line])?);
            }
        }
        Ok(out)
    }
}

/// Why a proof could not be given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// Not a directory label.
    #[error("malformed directory label")]
    BadLabel,
    /// The directory's newest epoch is not in a checkpoint yet.
    #[error("not yet logged")]
    NotYetLogged,
    /// The server failed.
    #[error(transparent)]
    Server(#[from] KtServerError),
}

fn is_not_found(e: &akd::errors::AkdError) -> bool {
    matches!(e, akd::errors::AkdError::Storage(akd::errors::StorageError::NotFound(_)))
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
