//! Two-way folder sync: a three-way merge of the base (the tree this device
//! last agreed on), the local folder and the verified remote head.
//!
//! Order of work, chosen so that a crash anywhere loses nothing (F1–F4):
//! verify the remote history; scan; plan; upload new blobs in packs; fetch
//! every download into a temporary file and authenticate it completely;
//! commit the merged tree by compare-and-swap (a moved head restarts the
//! round); only then change local files — each temporary file renamed into
//! place only if the local file is still what the scan saw; deletions
//! likewise; finally record the new base. A local deletion is propagated
//! only for paths the base knew (F2).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use keyhold_core::{
    BlobId, BlobRef, CollectionKeys, FileDecryptor, FileEncryptor, FileId, FileMeta, GENESIS_PREV, Manifest, Revision,
    SealedBlob, os_rng, seal_revision, validate_name,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::Serialize;

use crate::api::CommitResult;
use crate::client::{Client, Collection, Pack, Packer, RemoteNode, Tree, Uploader, fetch_located};
use crate::error::{ClientError, Result};
use crate::merge::{self, Action, LocalNode, Sides};
use crate::state::{BaseEntry, Durability, Stat};

const READ_BUF: usize = 8 << 20;
const TMP_PREFIX: &str = ".keyhold-tmp-";
const MAX_ROUNDS: usize = 8;

/// What a sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// Files uploaded (new or changed).
    pub uploaded: Vec<String>,
    /// Files downloaded.
    pub downloaded: Vec<String>,
    /// Local files deleted because they were deleted elsewhere.
    pub deleted_locally: Vec<String>,
    /// Paths whose deletion was propagated to the server.
    pub deleted_remotely: Vec<String>,
    /// Conflict copies created.
    pub conflicts: Vec<String>,
    /// Paths left alone, and why.
    pub skipped: Vec<(String, String)>,
    /// Head after the sync.
    pub head: Option<u64>,
    /// Bytes of new ciphertext uploaded.
    pub bytes_uploaded: u64,
}

#[cfg(unix)]
fn stat_of(meta: &std::fs::Metadata) -> (Stat, u32, i64) {
    use std::os::unix::fs::MetadataExt;
    let (mtime_ns, ctime_ns) = (time_ns(meta.mtime(), meta.mtime_nsec()), time_ns(meta.ctime(), meta.ctime_nsec()));
    (Stat { size: meta.len(), mtime_ns, ino: meta.ino(), ctime_ns }, meta.mode() & 0o7777, mtime_ns)
}

/// A file time as nanoseconds since the epoch, from `stat`'s seconds and nanoseconds.
fn time_ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// `rel` below `root`, a component at a time (so that no part of `rel`
/// can replace `root`), in one allocation.
fn local_path(root: &Path, rel: &str) -> PathBuf {
    let mut path = PathBuf::with_capacity(root.as_os_str().len() + rel.len() + 1);
    path.push(root);
    for part in rel.split('/') {
        path.push(part);
    }
    path
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What a scan skipped: (path, why).
type Skipped = Vec<(String, String)>;

/// Walks the folder. Names no collection can hold are reported in the
/// second list, not mangled.
///
/// The top-level subfolders are walked on every core: a scan is mostly
/// one `statx` per entry, and at the start of a sync nothing else keeps the
/// second core busy (20,000 files in 100 folders: 45 ms on one core).
fn scan(root: &Path) -> Result<(BTreeMap<String, LocalNode>, Skipped)> {
    let dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ClientError::io(root)(e.into()))?;
    let mut top = Walk::default();
    let subfolders = list_folder(root, &dir, "", &mut top)?;
    let next = AtomicUsize::new(0);
    let walk_some = || -> Result<Walk> {
        let mut walk = Walk::default();
        while let Some((name, rel)) = subfolders.get(next.fetch_add(1, Ordering::Relaxed)) {
            scan_subfolder(root, &dir, name, rel, &mut walk)?;
        }
        Ok(walk)
    };
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).min(subfolders.len());
    let walks = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..workers).map(|_| s.spawn(walk_some)).collect();
        let mut walks = vec![walk_some()];
        walks.extend(
            helpers.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(ClientError::Protocol("a folder scan stopped".into())))),
        );
        walks
    });
    let Walk { mut found, mut skipped } = top;
    for walk in walks {
        let walk = walk?;
        found.extend(walk.found);
        skipped.extend(walk.skipped);
    }
    // Sorted by path, so the map is built in one pass.
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok((found.into_iter().collect(), skipped))
}

/// What one thread of a scan found.
#[derive(Default)]
struct Walk {
    found: Vec<(String, LocalNode)>,
    skipped: Skipped,
}

const SUBFOLDER_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// A folder that cannot be read is an error, not a skip: its files would
/// otherwise look deleted here and be deleted everywhere.
fn unreadable(path: &Path, e: rustix::io::Errno) -> ClientError {
    ClientError::Usage(format!(
        "cannot read folder {}: {}; fix its permissions or move it out of the synced folder",
        path.display(),
        std::io::Error::from(e)
    ))
}

/// Walks the subfolder `name` (relative path `rel`) of the open folder
/// `parent` and everything below it.
fn scan_subfolder(parent_path: &Path, parent: &OwnedFd, name: &[u8], rel: &str, walk: &mut Walk) -> Result<()> {
    let path = parent_path.join(std::ffi::OsStr::from_bytes(name));
    let dir = match rustix::fs::openat(parent, name, SUBFOLDER_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        // Deleted since it was listed: as if never seen.
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(unreadable(&path, e)),
    };
    for (sub, sub_rel) in list_folder(&path, &dir, rel, walk)? {
        scan_subfolder(&path, &dir, &sub, &sub_rel, walk)?;
    }
    Ok(())
}

/// Lists one folder, relative to its open handle, into `walk`, and returns
/// its subfolders (name, relative path) for the caller to walk. Each entry
/// is stat'ed by name in its folder (`fstatat`), not by a path the kernel
/// walks again from the root (a third of a scan's time).
fn list_folder(path: &Path, dir: &OwnedFd, prefix: &str, walk: &mut Walk) -> Result<Vec<(Vec<u8>, String)>> {
    let mut subfolders = Vec::new();
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| unreadable(path, e))? {
        let name = entry.map_err(|e| unreadable(path, e))?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    for name in names {
        let Some(text) = std::str::from_utf8(&name).ok().filter(|n| validate_name(n).is_ok()) else {
            walk.skipped.push((
                path.join(std::ffi::OsStr::from_bytes(&name)).display().to_string(),
                "name is not valid UTF-8 or cannot be synced".into(),
            ));
            continue;
        };
        if text.starts_with(TMP_PREFIX) {
            continue;
        }
        let rel = if prefix.is_empty() { text.to_owned() } else { format!("{prefix}/{text}") };
        let st = match rustix::fs::statat(dir, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Deleted since it was listed: as if never seen.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                return Err(ClientError::Usage(format!(
                    "cannot stat {}: {}",
                    path.join(text).display(),
                    std::io::Error::from(e)
                )));
            }
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile && kind != FileType::Directory {
            walk.skipped.push((rel, "not a regular file or folder (symlinks and devices are not synced)".into()));
            continue;
        }
        let mtime_ns = time_ns(st.st_mtime, i64::try_from(st.st_mtime_nsec).unwrap_or(0));
        let ctime_ns = time_ns(st.st_ctime, i64::try_from(st.st_ctime_nsec).unwrap_or(0));
        let stat = Stat { size: u64::try_from(st.st_size).unwrap_or(0), mtime_ns, ino: st.st_ino, ctime_ns };
        let is_dir = kind == FileType::Directory;
        walk.found.push((rel.clone(), LocalNode { is_dir, mode: st.st_mode & 0o7777, mtime_ns, stat }));
        if is_dir {
            subfolders.push((name, rel));
        }
    }
    Ok(subfolders)
}

/// A stat worth recording now (see [`merge::trusted_stat`]).
fn trusted_stat(stat: Stat) -> Option<Stat> {
    merge::trusted_stat(stat, now_ns())
}

/// A local file to encrypt as a new version.
struct EncryptJob {
    path: PathBuf,
    node: LocalNode,
    identity: (FileId, u64),
    name: String,
    /// No earlier version exists, so the manifest is uploaded whatever the
    /// merge decides: the worker queues it itself.
    new_file: bool,
}

/// A file's sealed manifest: queued by the worker that sealed it, or
/// handed back to be queued if the merge keeps it.
enum ManifestBlob {
    Queued(BlobRef),
    Sealed(SealedBlob),
}

impl ManifestBlob {
    /// Where the manifest is (queueing it first if it was not).
    fn queue(self, keys: &CollectionKeys, uploader: &mut Uploader) -> Result<BlobRef> {
        match self {
            ManifestBlob::Queued(target) => Ok(target),
            ManifestBlob::Sealed(blob) => {
                let target = keys.blob_ref(&blob);
                uploader.push(blob)?;
                Ok(target)
            }
        }
    }
}

/// A manifest and its blob, or `None` for a file that changed while it
/// was read (it is retried on the next sync).
type Encrypted = Option<(Manifest, ManifestBlob)>;

/// What an encryption worker hands to the uploader in one message: full
/// packs and finished files. Batching keeps the channel from costing a
/// thread wake-up per small file.
#[derive(Default)]
struct EncryptBatch {
    packs: Vec<Pack>,
    /// A worker's last, partly filled pack, for the uploader to merge.
    partial: Option<Pack>,
    files: Vec<(usize, Result<Encrypted>)>,
}

/// A worker's side of the channel: packs its blobs itself (so sealing,
/// copying and dedup run on every core) and sends full packs and results
/// in batches.
struct Outbox {
    packer: Packer,
    batch: EncryptBatch,
    tx: tokio::sync::mpsc::Sender<EncryptBatch>,
}

impl keyhold_core::BlobSink for Outbox {
    type Error = ClientError;

    /// Seals a new chunk straight into the worker's pack. Before a new pack
    /// waits for memory, the full one and the batch so far go to the
    /// uploader, whose uploads free it.
    fn blob(&mut self, _keys: &CollectionKeys, blob: keyhold_core::Plaintext<'_>) -> Result<()> {
        let Outbox { packer, batch, tx } = self;
        packer.seal_waiting(blob, |full| {
            batch.packs.extend(full);
            Outbox::send(tx, batch)
        })
    }
}

impl Outbox {
    const FLUSH_FILES: usize = 256;

    /// Sends the packs filled so far, if any.
    fn send_full(&mut self) -> Result<()> {
        if self.batch.packs.is_empty() { Ok(()) } else { self.flush() }
    }

    /// Packs a sealed blob (a manifest) like a chunk.
    fn push(&mut self, blob: &SealedBlob) -> Result<()> {
        if let Some(full) = self.packer.push(blob)? {
            self.batch.packs.push(full);
        }
        Ok(())
    }

    fn file(&mut self, index: usize, result: Result<Encrypted>) -> Result<()> {
        self.batch.files.push((index, result));
        if self.batch.files.len() >= Self::FLUSH_FILES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is collected; fails once the uploader has stopped.
    fn flush(&mut self) -> Result<()> {
        Outbox::send(&self.tx, &mut self.batch)
    }

    fn send(tx: &tokio::sync::mpsc::Sender<EncryptBatch>, batch: &mut EncryptBatch) -> Result<()> {
        if batch.packs.is_empty() && batch.partial.is_none() && batch.files.is_empty() {
            return Ok(());
        }
        tx.blocking_send(std::mem::take(batch)).map_err(|_| ClientError::Protocol("sync stopped".into()))
    }

    /// Sends the last, partly filled pack and everything pending.
    fn close(mut self) -> Result<()> {
        self.batch.partial = self.packer.take();
        self.flush()
    }
}

/// Encrypts one local file, sealing each new chunk into `out`'s pack as
/// soon as it is cut (so a file of any size takes bounded memory).
fn encrypt_file(
    job: &EncryptJob,
    keys: &CollectionKeys,
    progress: &ProgressBar,
    buf: &mut keyhold_fs::PageAligned,
    out: &mut Outbox,
) -> Result<Encrypted> {
    let path = job.path.as_path();
    let mut file = std::fs::File::open(path).map_err(ClientError::io(path))?;
    let mut encryptor = FileEncryptor::new(keys);
    // One buffer per worker, sized to the largest file read so far.
    let want = usize::try_from(job.node.stat.size.saturating_add(1)).unwrap_or(READ_BUF).min(READ_BUF);
    let buf = buf.reserve(want);
    let mut total = 0u64;
    // Reading stops at the scanned size; the check below catches a file
    // that changed size meanwhile, so no extra read is spent on EOF.
    while total < job.node.stat.size {
        let n = file.read(buf).map_err(ClientError::io(path))?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        encryptor.update(buf.get(..n).unwrap_or_default(), out)?;
        progress.inc(u64::try_from(n).unwrap_or(0));
        out.send_full()?;
    }
    let after = stat_of(&file.metadata().map_err(ClientError::io(path))?).0;
    if after != job.node.stat || total != job.node.stat.size {
        return Ok(None);
    }
    let meta = FileMeta {
        file_id: job.identity.0,
        version: job.identity.1,
        name: job.name.clone(),
        mode: job.node.mode,
        mtime_ns: job.node.mtime_ns,
    };
    let (manifest, blob) = encryptor.finish(meta, out)?;
    let blob = if job.new_file {
        out.push(&blob)?;
        ManifestBlob::Queued(keys.blob_ref(&blob))
    } else {
        ManifestBlob::Sealed(blob)
    };
    out.send_full()?;
    Ok(Some((manifest, blob)))
}

/// Encrypts files on every core, queueing their chunks for upload as they
/// are sealed, and hands each file's result to `done` (with the index of
/// its job) as it arrives: the merge's bookkeeping runs while later files
/// are read, not after all of them. A worker opening a pack waits for
/// one of the uploader's slots, so memory stays bounded however slow the
/// link or the server is.
async fn encrypt_all(
    jobs: Vec<EncryptJob>,
    keys: Arc<CollectionKeys>,
    uploader: &mut Uploader,
    bar: &ProgressBar,
    mut done: impl FnMut(usize, Encrypted, &mut Uploader) -> Result<()>,
) -> Result<()> {
    let count = jobs.len();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).min(count);
    for _ in 0..workers {
        let (jobs, next, keys, bar) = (jobs.clone(), next.clone(), keys.clone(), bar.clone());
        let mut outbox = Outbox { packer: uploader.packer(), batch: EncryptBatch::default(), tx: tx.clone() };
        tokio::task::spawn_blocking(move || {
            let mut buf = keyhold_fs::PageAligned::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let result = encrypt_file(job, &keys, &bar, &mut buf, &mut outbox);
                if outbox.file(i, result).is_err() {
                    return;
                }
            }
            let _ = outbox.close();
        });
    }
    drop(tx);
    let mut finished = 0;
    // Dropping the receiver on an error stops every worker at its next send.
    while let Some(batch) = rx.recv().await {
        for pack in batch.packs {
            uploader.upload(pack);
        }
        if let Some(partial) = batch.partial {
            uploader.absorb(&partial)?;
        }
        for (i, result) in batch.files {
            done(i, result?, uploader)?;
            finished += 1;
        }
        uploader.reap()?;
    }
    if finished < count {
        return Err(ClientError::Protocol("an encryption worker stopped".into()));
    }
    Ok(())
}

fn progress_bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A walk of a folder to be synced, started before the sync that takes
/// it: it needs nothing but the folder, so it can run while the client
/// signs in and verifies the account (20,000 files: the scan took ~35 ms,
/// of which ~20 ms used to come after the head was verified).
pub struct FolderScan {
    root: PathBuf,
    walk: tokio::task::JoinHandle<Result<(BTreeMap<String, LocalNode>, Skipped)>>,
}

impl FolderScan {
    /// Starts walking `dir` on the runtime's blocking threads.
    pub fn start(dir: &Path) -> Result<Self> {
        let root = std::fs::canonicalize(dir).map_err(ClientError::io(dir))?;
        if !root.is_dir() {
            return Err(ClientError::Usage(format!("{} is not a folder", root.display())));
        }
        let walk = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || scan(&root))
        };
        Ok(FolderScan { root, walk })
    }

    async fn finish(self) -> Result<(BTreeMap<String, LocalNode>, Skipped)> {
        self.walk.await.map_err(|e| ClientError::Protocol(format!("folder scan stopped: {e}")))?
    }
}

/// Syncs a folder (being walked by `scan`) with the collection
/// `collection`, both ways.
pub async fn sync(client: &mut Client, scan: FolderScan, collection: &str, show_progress: bool) -> Result<SyncReport> {
    let root = scan.root.clone();
    let root_key = root.display().to_string();
    let mut coll = client.collection(collection).await?;
    // A folder's base is the tree it last agreed on with *its* collection.
    // Merged against another collection, every file of the folder would
    // look deleted there and be deleted here.
    if client.state.root_collection(&root_key)?.is_some_and(|id| id != coll.id) {
        return Err(ClientError::Usage(format!(
            "{} is synced with another collection; sync it with the --collection it was first synced with, or sync a different folder",
            root.display()
        )));
    }
    let mut scan = Some(scan);
    for _ in 0..MAX_ROUNDS {
        // A round merged again walks the folder again.
        let scanning = match scan.take() {
            Some(scan) => scan,
            None => FolderScan::start(&root)?,
        };
        if let Some(report) = sync_round(client, scanning, &root_key, &mut coll, show_progress).await? {
            return Ok(report);
        }
        tracing::info!("the collection changed during sync; merging again");
    }
    Err(ClientError::Usage("other devices kept changing the collection; try again".into()))
}

async fn sync_round(
    client: &mut Client,
    scanning: FolderScan,
    root_key: &str,
    coll: &mut Collection,
    show: bool,
) -> Result<Option<SyncReport>> {
    let mut report = SyncReport::default();
    // Phase timings, for `KEYHOLD_LOG=keyhold_client=debug` and profiling.
    let mut started = std::time::Instant::now();
    let mut phase = |name: &str| {
        tracing::debug!(phase = name, ms = started.elapsed().as_secs_f64() * 1e3, "sync phase done");
        started = std::time::Instant::now();
    };
    // The folder is being walked (`scanning`) while the head is verified
    // and the base loaded: neither depends on the other, and each takes
    // tens of milliseconds for a few thousand files.
    let root_path = scanning.root.clone();
    let root = root_path.as_path();
    let committed = client.committed_head(coll).await?;
    let head = client.verified_head(coll).await?;
    client.check_committed_head(coll, committed.as_ref(), head.as_ref()).await?;
    phase("verified head");
    adopt_pending(client, coll, root_key, head.as_ref()).await?;
    let (base_head, base) = client.state.base(root_key)?;
    let remote = match &head {
        // Nothing new on the server: the base *is* the verified remote tree.
        Some(h) if base_head == Some(h.head()) => base.iter().map(|(p, b)| (p.clone(), b.node.clone())).collect(),
        Some(h) => client.read_tree(coll, h.revision.root).await?,
        None => Tree::new(),
    };
    phase("remote tree");
    let (local, skipped) = scanning.finish().await?;
    report.skipped.extend(skipped);
    phase("scan (what was left of it)");

    // Plan (`merge`): decide from stats and remote targets, then read the
    // files to upload and those changed on both sides, and resolve by content.
    let mut plan = merge::plan(Sides { base: &base, local: &local, remote: &remote }, &client.config.device_id, now_ns());
    let to_upload = plan.to_upload.clone();
    let both_files = plan.both_files.clone();
    phase("plan");

    // Encrypt and queue what changed locally. Every pack the server lists is
    // known first, so that a sync cut off after some packs arrived (and
    // before this device recorded them) resumes instead of sending them
    // again (F3). Those packs' indexes are authenticated like any other.
    if !to_upload.is_empty() || !both_files.is_empty() {
        client.refresh_index(coll).await?;
    }
    let mut uploader = Uploader::new(client, coll)?;
    let identities = identities(client, coll, &to_upload, &both_files, &base, &remote).await?;
    let upload_bytes: u64 = to_upload.iter().chain(&both_files).filter_map(|p| local.get(p)).map(|l| l.stat.size).sum();
    let bar = progress_bar(show, upload_bytes, "upload");
    let keys = coll.current()?.clone();
    // A changed file keeps its identity and takes the next version number;
    // a new one gets a fresh id.
    let new_files = to_upload.iter().chain(&both_files).filter(|p| !identities.contains_key(*p)).count();
    let mut fresh_ids = FileId::generate_many(&mut os_rng(), new_files).into_iter();
    let mut next_identity = |p: &String| match identities.get(p) {
        Some((m, _)) => (m.meta.file_id, m.meta.version + 1),
        None => (fresh_ids.next().unwrap_or_else(|| FileId::generate(&mut os_rng())), 1),
    };
    let mut jobs = Vec::new();
    let mut job_paths = Vec::new();
    for p in &to_upload {
        let source = plan.source(p);
        let Some(l) = local.get(source) else { continue };
        let identity = next_identity(p);
        let name = p.rsplit('/').next().unwrap_or(p).to_owned();
        let new_file = !identities.contains_key(p);
        jobs.push(EncryptJob { path: local_path(root, source), node: l.clone(), identity, name, new_file });
        job_paths.push((p, l));
    }
    phase("identities");
    encrypt_all(jobs, keys.clone(), &mut uploader, &bar, |i, result, uploader| {
        let &(p, l) = job_paths.get(i).ok_or_else(|| ClientError::Protocol("a result for no file".into()))?;
        let previous = identities.get(p).map(|(m, node)| (m, node));
        match result {
            Some((manifest, blob)) => plan.upload_read(p, l, &manifest, previous, now_ns(), || blob.queue(&keys, uploader)),
            None => {
                plan.upload_changed(p);
                Ok(())
            }
        }
    })
    .await?;
    phase("encrypt");
    // Both sides changed a file: equal content is no conflict; otherwise the
    // remote version keeps the name and the local one becomes a copy.
    let remote_manifests = {
        let nodes: Vec<&RemoteNode> = both_files.iter().filter_map(|p| remote.get(p)).collect();
        client.manifests(coll, &nodes).await?
    };
    let base_nodes: Vec<RemoteNode> =
        both_files.iter().filter_map(|p| base.get(p).filter(|b| !b.node.is_dir)).map(|b| b.node.clone()).collect();
    let base_manifests = client.manifests(coll, &base_nodes.iter().collect::<Vec<_>>()).await?;
    let mut jobs = Vec::new();
    let mut job_paths = Vec::new();
    for p in &both_files {
        let (Some(l), Some(r)) = (local.get(p), remote.get(p)) else { continue };
        let identity = next_identity(p);
        let name = p.rsplit('/').next().unwrap_or(p).to_owned();
        // Its manifest is uploaded only as a conflict copy, if at all.
        jobs.push(EncryptJob { path: local_path(root, p), node: l.clone(), identity, name, new_file: false });
        job_paths.push((p, l, r));
    }
    encrypt_all(jobs, keys.clone(), &mut uploader, &bar, |i, result, uploader| {
        let &(p, l, r) = job_paths.get(i).ok_or_else(|| ClientError::Protocol("a result for no file".into()))?;
        let Some((manifest, blob)) = result else {
            plan.both_changed(p, r);
            return Ok(());
        };
        let remote_manifest = remote_manifests.get(&r.target.id);
        let base_manifest = base.get(p).and_then(|b| base_manifests.get(&b.node.target.id));
        plan.both_read(p, l, r, &manifest, remote_manifest, base_manifest, now_ns(), || blob.queue(&keys, uploader))
    })
    .await?;
    bar.finish_and_clear();
    phase("changed on both sides");

    plan.add_parents();
    let merge::Plan { new_tree, mut new_base, actions, mut notes, .. } = plan;
    // Files finish encrypting in any order; the report lists them by path.
    notes.uploaded.sort_unstable();
    notes.conflicts.sort_unstable();
    report.uploaded.extend(notes.uploaded);
    report.deleted_remotely.extend(notes.deleted_remotely);
    report.conflicts.extend(notes.conflicts);
    report.skipped.extend(notes.skipped);

    // Fetch and authenticate every download before committing or touching
    // the folder: a lying server is caught while nothing has changed.
    let mut fetched = prefetch(client, coll, root, &actions, show).await?;
    phase("download and verify");

    // Commit, having first recorded the base this commit leads to: only
    // the effects already true in the folder (what was uploaded or is
    // unchanged), with the base as it was for every path still to be
    // downloaded, renamed or deleted here.
    let committed = match &head {
        // Nothing changed on either side: the head stands as it is, with
        // no tree to seal and no pending base to record.
        Some(h) if to_upload.is_empty() && both_files.is_empty() && actions.is_empty() && new_tree == remote => {
            Ok(Some(Some(h.head())))
        }
        _ => {
            let intent = Intent { root_key, base: &base, new_base: &new_base, actions: &actions };
            commit(client, coll, &head, &new_tree, uploader, &mut report, &intent).await
        }
    };
    phase("commit");
    let committed = match committed {
        Ok(Some(c)) => c,
        other => {
            discard(&fetched);
            return other.map(|_| None);
        }
    };
    report.head = committed.map(|h| h.seq);

    // A new revision had its pending commit synced to the disk first; if
    // the folder is left as it was, that record stands for the base saved
    // below, which then need not wait for the disk.
    let durability = if actions.is_empty() && committed.is_some() && committed != head.as_ref().map(|h| h.head()) {
        Durability::Deferred
    } else {
        Durability::Now
    };
    // Now change local files.
    apply(root, actions, &mut fetched, &mut new_base, &mut report)?;
    phase("apply");
    // Folders: record them as they now stand; files the folder does not
    // hold in their merged version keep their old entry. The head is
    // recorded only with a base that mirrors its tree exactly (which lets an
    // unchanged head skip reading the tree).
    let mirrors = merge::finish_base(&base, &new_tree, &mut new_base);
    let recorded = committed.filter(|_| mirrors);
    let tree_changed = new_base != base;
    if tree_changed || recorded != base_head {
        client.state.save_base(root_key, coll.id, recorded, tree_changed.then_some(&new_base), durability)?;
    }
    phase("save local state");
    // The trees of every path are freed by a thread of their own (20,000
    // files: ~15 ms the caller need not wait for); if none can be started,
    // the failed spawn drops them here.
    let trees = (base, local, remote, new_tree, new_base);
    let _ = std::thread::Builder::new().name("free-trees".into()).spawn(move || drop(trees));
    Ok(Some(report))
}

/// What a commit leads to: the base before it, the merged base and the
/// actions still to apply here, from which the base recorded before the
/// commit is sent is derived ([`merge::pending_changes`]).
struct Intent<'a> {
    root_key: &'a str,
    base: &'a BTreeMap<String, BaseEntry>,
    new_base: &'a BTreeMap<String, BaseEntry>,
    actions: &'a [Action],
}

/// After a crash between a commit and saving the base: if the server has
/// this device's pending revision, the base it recorded becomes the base
/// (else a file deleted here since would come back from the server as
/// "new there"); if not, the record is dropped.
async fn adopt_pending(
    client: &Client,
    coll: &Collection,
    root_key: &str,
    head: Option<&keyhold_core::VerifiedRevision>,
) -> Result<()> {
    let Some((pending, delta)) = client.state.pending(root_key)? else { return Ok(()) };
    let landed = match head {
        Some(h) if h.head() == pending => true,
        Some(h) if h.revision.seq > pending.seq => {
            let stored = client.api.revisions(coll.id, pending.seq.checked_sub(1)).await?;
            stored.first().is_some_and(|s| keyhold_core::ObjectId::of(s) == pending.id)
        }
        _ => false,
    };
    if landed {
        let (_, base) = client.state.base(root_key)?;
        let mut adopted = base.clone();
        for (path, entry) in delta {
            match entry {
                Some(e) => adopted.insert(path, e),
                None => adopted.remove(&path),
            };
        }
        tracing::info!(
            seq = pending.seq,
            "the last sync committed but stopped before saving its state; resuming from its commit"
        );
        // Recorded without its head: the adopted base keeps old entries for
        // what the stopped sync had still to change here, so it does not
        // mirror the head's tree, and the next round must read that tree.
        client.state.save_base(root_key, coll.id, None, Some(&adopted), Durability::Now)?;
    } else {
        client.state.clear_pending(root_key)?;
    }
    Ok(())
}

/// Uploads and commits; `Ok(None)` if the head moved (merge again).
async fn commit(
    client: &Client,
    coll: &mut Collection,
    head: &Option<keyhold_core::VerifiedRevision>,
    new_tree: &Tree,
    mut uploader: Uploader,
    report: &mut SyncReport,
    intent: &Intent<'_>,
) -> Result<Option<Option<keyhold_core::Head>>> {
    let root_ref = client.seal_tree(coll, new_tree, &mut uploader)?;
    // Every pack is on its way before the pending base is derived and
    // written, so that this work overlaps the last uploads rather than
    // following them (20,000 new files: ~40 ms).
    uploader.flush();
    let revision = match &head {
        Some(h) if h.revision.root == root_ref => None,
        _ => {
            let keys = coll.current()?.clone();
            let revision = Revision {
                collection: coll.id,
                seq: head.as_ref().map_or(0, |h| h.revision.seq + 1),
                prev: head.as_ref().map_or(GENESIS_PREV, |h| h.id),
                epoch: keys.epoch(),
                root: root_ref,
                author: client.keys.device.id(),
                time_ms: now_ns() / 1_000_000,
            };
            let (id, stored) = seal_revision(&keys, &revision, &client.keys.device, &mut os_rng())?;
            let new_head = keyhold_core::Head { seq: revision.seq, id };
            // The uploads are tasks of their own and go on meanwhile.
            off_the_runtime(|| {
                let changes = merge::pending_changes(intent.base, new_tree, intent.new_base, intent.actions);
                client.state.save_pending(intent.root_key, new_head, &changes)
            })?;
            Some((new_head, stored))
        }
    };
    report.bytes_uploaded = uploader.finish(coll).await?;
    let committed = match revision {
        None => head.as_ref().map(keyhold_core::VerifiedRevision::head),
        Some((new_head, stored)) => match client.api.commit(coll.id, stored).await? {
            CommitResult::HeadMoved => return Ok(None),
            CommitResult::Committed => {
                client.state.set_verified_head(coll.id, new_head)?;
                Some(new_head)
            }
        },
    };
    Ok(Some(committed))
}

/// Runs blocking work (a large SQLite write) from async code without
/// stalling the runtime's other tasks where the runtime can move them.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn discard(fetched: &HashMap<String, PathBuf>) {
    for tmp in fetched.values() {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Downloads every file the plan needs into verified temporary files in
/// the sync root (same filesystem, so moving them into place is a rename).
/// Small files are fetched in batches, so many of them cost few requests.
async fn prefetch(
    client: &Client,
    coll: &mut Collection,
    root: &Path,
    actions: &[Action],
    show: bool,
) -> Result<HashMap<String, PathBuf>> {
    let wanted: Vec<(&String, &RemoteNode)> = actions
        .iter()
        .filter_map(|a| if let Action::Download { path, node, .. } = a { Some((path, node)) } else { None })
        .collect();
    let bar = progress_bar(show, wanted.iter().map(|(_, n)| n.size).sum(), "download");
    let mut fetched = HashMap::new();
    let mut result = fetch_all(client, coll, root, &wanted, &bar, &mut fetched).await;
    if result.is_ok() && !fetched.is_empty() {
        // Every temporary file is on disk before any is renamed into place.
        result = make_durable(root, fetched.values().map(PathBuf::as_path));
    }
    bar.finish_and_clear();
    match result {
        Ok(()) => Ok(fetched),
        Err(e) => {
            discard(&fetched);
            Err(e)
        }
    }
}

const BATCH_BYTES: u64 = 16 << 20;

async fn fetch_all(
    client: &Client,
    coll: &mut Collection,
    root: &Path,
    wanted: &[(&String, &RemoteNode)],
    bar: &ProgressBar,
    fetched: &mut HashMap<String, PathBuf>,
) -> Result<()> {
    let nodes: Vec<&RemoteNode> = wanted.iter().map(|(_, n)| *n).collect();
    let manifests = client.manifests(coll, &nodes).await?;
    let mut batches: Vec<Vec<(&String, &RemoteNode, Manifest)>> = vec![Vec::new()];
    let mut batch_bytes = 0;
    for (path, node) in wanted {
        let manifest =
            manifests.get(&node.target.id).cloned().ok_or_else(|| ClientError::MissingBlob(node.target.id.to_hex()))?;
        if node.size > BATCH_BYTES / 4 {
            // Large files stream a few chunks at a time.
            let (tmp, file) = tempfile_in(root)?;
            fetched.insert((*path).clone(), tmp.clone());
            let file = write_verified(client, coll, node, manifest, file, &tmp, bar).await?;
            finish_file(&tmp, &file, node)?;
            continue;
        }
        if batch_bytes >= BATCH_BYTES {
            batches.push(Vec::new());
            batch_bytes = 0;
        }
        batch_bytes += node.size;
        if let Some(batch) = batches.last_mut() {
            batch.push((path, node, manifest));
        }
    }
    // Small files: the next batch downloads while this one is written.
    let mut located = Vec::with_capacity(batches.len());
    for batch in &batches {
        let ids: Vec<BlobId> = batch.iter().flat_map(|(_, _, m)| m.chunks.iter().map(|c| c.id)).collect();
        located.push(client.locate(coll, &ids).await?);
    }
    let downloads = located.into_iter().map(|run| {
        let (api, collection) = (client.api.clone(), coll.id);
        tokio::spawn(async move { fetch_located(&api, collection, run).await })
    });
    let mut downloads = futures::stream::iter(downloads).buffered(2);
    for batch in batches {
        let Some(blobs) = downloads.next().await else { break };
        let mut blobs = blobs.map_err(|e| ClientError::Protocol(e.to_string()))??;
        let mut uses = count_uses(batch.iter().flat_map(|(_, _, m)| m.chunks.iter().map(|c| c.id)));
        for (path, node, manifest) in batch {
            let keys = coll.keys_for(node.target.epoch)?.clone();
            let (tmp, mut file) = tempfile_in(root)?;
            fetched.insert(path.clone(), tmp.clone());
            let count = manifest.chunks.len();
            let mut decryptor = FileDecryptor::new(&keys, manifest);
            write_chunks(&mut decryptor, count, &mut blobs, &mut uses, &mut file, &tmp, bar)?;
            decryptor.finish()?;
            finish_file(&tmp, &file, node)?;
        }
    }
    Ok(())
}

/// Sets mode and mtime. The data reaches the disk in [`make_durable`],
/// once for the whole batch, before anything is renamed into place.
fn finish_file(path: &Path, file: &std::fs::File, node: &RemoteNode) -> Result<()> {
    set_mode(path, node.mode);
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(u64::try_from(node.mtime_ns).unwrap_or(0)))
        .map_err(ClientError::io(path))
}

/// Puts `paths` (files or folders under `root`) on disk. On Linux one
/// `syncfs` flushes the whole filesystem at once, which costs about as much
/// as a single `fsync`; thousands of small downloads then cost one flush
/// instead of one each. Elsewhere each path is synced in turn.
fn make_durable<'a>(root: &Path, paths: impl Iterator<Item = &'a Path>) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = paths;
        let dir = std::fs::File::open(root).map_err(ClientError::io(root))?;
        rustix::fs::syncfs(&dir).map_err(|e| ClientError::io(root)(e.into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = root;
        for path in paths {
            std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(ClientError::io(path))?;
        }
        Ok(())
    }
}

fn base_entry(node: &RemoteNode, stat: Option<Stat>) -> BaseEntry {
    BaseEntry { node: node.clone(), stat }
}

/// The version each path about to be written replaces (remote first, then
/// base): its manifest gives the file id and version to continue.
async fn identities(
    client: &Client,
    coll: &mut Collection,
    uploads: &[String],
    both: &[String],
    base: &BTreeMap<String, BaseEntry>,
    remote: &Tree,
) -> Result<HashMap<String, (Manifest, RemoteNode)>> {
    let mut wanted: Vec<(String, RemoteNode)> = Vec::new();
    for p in uploads.iter().chain(both) {
        let previous = remote
            .get(p)
            .filter(|r| !r.is_dir)
            .cloned()
            .or_else(|| base.get(p).filter(|b| !b.node.is_dir).map(|b| b.node.clone()));
        if let Some(prev) = previous {
            wanted.push((p.clone(), prev));
        }
    }
    let manifests = client.manifests(coll, &wanted.iter().map(|(_, n)| n).collect::<Vec<_>>()).await?;
    Ok(wanted.into_iter().filter_map(|(p, node)| Some((p, (manifests.get(&node.target.id)?.clone(), node)))).collect())
}

fn current_stat(path: &Path) -> Option<Stat> {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map(|m| stat_of(&m).0)
}

/// Refuses to write below anything but a real folder (G7). `checked` holds
/// folders already found real during this apply, so each is looked at once.
fn check_ancestors(root: &Path, rel: &str, checked: &mut std::collections::HashSet<PathBuf>) -> Result<()> {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        at = at.join(part);
        if checked.contains(&at) {
            continue;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&at) {
            if meta.is_dir() {
                checked.insert(at.clone());
            }
            if !meta.is_dir() {
                return Err(ClientError::Usage(format!("{} is not a folder; not writing below it", at.display())));
            }
        }
    }
    Ok(())
}

fn apply(
    root: &Path,
    mut actions: Vec<Action>,
    fetched: &mut HashMap<String, PathBuf>,
    new_base: &mut BTreeMap<String, BaseEntry>,
    report: &mut SyncReport,
) -> Result<()> {
    merge::order(&mut actions);
    // Folders whose entries changed; their new entries are made durable together.
    let mut touched = std::collections::BTreeSet::new();
    let mut checked = std::collections::HashSet::new();
    let result = (|| -> Result<()> {
        for action in actions {
            let parent = |p: &str| local_path(root, p.rsplit_once('/').map_or("", |(d, _)| d));
            match &action {
                Action::RenameAside { to: p, .. } | Action::Download { path: p, .. } => touched.insert(parent(p)),
                Action::MakeDir { .. } | Action::DeleteFile { .. } | Action::DeleteDir { .. } => false,
            };
            match action {
                Action::RenameAside { from, to, expect } => {
                    let (src, dst) = (local_path(root, &from), local_path(root, &to));
                    check_ancestors(root, &to, &mut checked)?;
                    // The copy gets no base entry: the next sync finds it equal to
                    // what was uploaded under its name and records it then.
                    if current_stat(&src) == Some(expect) && !dst.exists() {
                        std::fs::rename(&src, &dst).map_err(ClientError::io(&src))?;
                    }
                }
                Action::MakeDir { path, mode } => {
                    check_ancestors(root, &path, &mut checked)?;
                    let dir = local_path(root, &path);
                    std::fs::create_dir_all(&dir).map_err(ClientError::io(&dir))?;
                    set_mode(&dir, mode.max(0o700));
                }
                Action::Download { path, node, expect } => {
                    check_ancestors(root, &path, &mut checked)?;
                    let Some(tmp) = fetched.remove(&path) else { continue };
                    match install(&tmp, &local_path(root, &path), expect, &checked)? {
                        Some(stat) => {
                            new_base.insert(path.clone(), base_entry(&node, trusted_stat(stat)));
                            report.downloaded.push(path);
                        }
                        None => report.skipped.push((path, "changed locally during sync; kept, will be synced next time".into())),
                    }
                }
                // The scan does not descend through links, so no deletion is
                // planned below one; but a folder swapped for a link since the
                // scan must not let a deletion out of the root either.
                Action::DeleteFile { path, .. } | Action::DeleteDir { path }
                    if check_ancestors(root, &path, &mut checked).is_err() =>
                {
                    report.skipped.push((path, "below something that is no longer a folder; not deleted".into()));
                }
                Action::DeleteFile { path, expect } => {
                    let file = local_path(root, &path);
                    if current_stat(&file) == Some(expect) {
                        std::fs::remove_file(&file).map_err(ClientError::io(&file))?;
                        report.deleted_locally.push(path);
                    } else {
                        report.skipped.push((path, "deleted elsewhere but changed here; kept".into()));
                    }
                }
                Action::DeleteDir { path } => {
                    let dir = local_path(root, &path);
                    if std::fs::remove_dir(&dir).is_ok() {
                        report.deleted_locally.push(path);
                    }
                }
            }
        }
        Ok(())
    })();
    discard(fetched);
    // A push changes no folder here, and then has nothing to flush.
    result.and_then(|()| if touched.is_empty() { Ok(()) } else { make_durable(root, touched.iter().map(PathBuf::as_path)) })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Downloads and authenticates one file version into a temporary file
/// in `dir`, with its mode and mtime set and its data on disk.
async fn fetch_verified(
    client: &Client,
    coll: &mut Collection,
    dir: &Path,
    node: &RemoteNode,
    bar: &ProgressBar,
) -> Result<PathBuf> {
    let manifest = client
        .manifests(coll, &[node])
        .await?
        .remove(&node.target.id)
        .ok_or_else(|| ClientError::MissingBlob(node.target.id.to_hex()))?;
    let (path, file) = tempfile_in(dir)?;
    let written = write_verified(client, coll, node, manifest, file, &path, bar).await;
    let finished = written.and_then(|file| {
        finish_file(&path, &file, node)?;
        file.sync_all().map_err(ClientError::io(&path))
    });
    match finished {
        Ok(()) => Ok(path),
        Err(e) => {
            // B5: no unauthenticated or partial file is left behind.
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Moves a verified temporary file into place, but only over what the scan
/// saw (`expect`; `None`: nothing). Anything newer stays (F4).
fn install(tmp: &Path, dest: &Path, expect: Option<Stat>, existing: &std::collections::HashSet<PathBuf>) -> Result<Option<Stat>> {
    let unchanged = match expect {
        Some(stat) => current_stat(dest) == Some(stat),
        None => std::fs::symlink_metadata(dest).is_err(),
    };
    if !unchanged {
        let _ = std::fs::remove_file(tmp);
        return Ok(None);
    }
    if let Some(parent) = dest.parent().filter(|p| !existing.contains(*p)) {
        std::fs::create_dir_all(parent).map_err(ClientError::io(parent))?;
    }
    std::fs::rename(tmp, dest).map_err(ClientError::io(dest))?;
    Ok(current_stat(dest))
}

/// Downloads one file version to `root/rel`, which must not exist.
pub(crate) async fn download(
    client: &Client,
    coll: &mut Collection,
    root: &Path,
    rel: &str,
    node: &RemoteNode,
    bar: &ProgressBar,
) -> Result<Option<Stat>> {
    let dest = local_path(root, rel);
    let parent = dest.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(ClientError::io(&parent))?;
    let tmp = fetch_verified(client, coll, &parent, node, bar).await?;
    let stat = install(&tmp, &dest, None, &std::collections::HashSet::new())?;
    make_durable(&parent, std::iter::once(parent.as_path()))?;
    Ok(stat)
}

/// Creates a new temporary file in `dir`. Names are a random per-process
/// prefix and a counter: unique without a random draw per file, and never
/// taken over (`create_new`).
fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{TMP_PREFIX}{prefix}-{n}"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ClientError::io(&path)(e)),
        }
    }
}

/// Streams a file's authenticated chunks, in order, into `file` (new and
/// empty, at `path`), and returns it: a few runs of chunks are in flight
/// while earlier ones are decrypted and written, so memory stays bounded
/// and the network never waits. The writes spare the page cache (see
/// [`keyhold_fs`]): a large download would otherwise cost more CPU in
/// copying than in decrypting, and evict what the user works on.
pub(crate) async fn write_verified(
    client: &Client,
    coll: &mut Collection,
    node: &RemoteNode,
    manifest: Manifest,
    file: std::fs::File,
    path: &Path,
    bar: &ProgressBar,
) -> Result<std::fs::File> {
    const RUN: usize = 4;
    const IN_FLIGHT: usize = 4;
    let keys = coll.keys_for(node.target.epoch)?.clone();
    let ids: Vec<BlobId> = manifest.chunks.iter().map(|c| c.id).collect();
    let located = client.locate(coll, &ids).await?;
    let mut decryptor = FileDecryptor::new(&keys, manifest);
    let mut out = keyhold_fs::DirectAppender::new(file, write_buffers());
    // Spawned, so downloads progress while this task decrypts and writes.
    let runs = located.chunks(RUN).map(|run| {
        let (api, wanted, collection) = (client.api.clone(), run.to_vec(), coll.id);
        tokio::spawn(async move { fetch_located(&api, collection, wanted).await }).map(move |r| (run, r))
    });
    let mut runs = futures::stream::iter(runs).buffered(IN_FLIGHT);
    while let Some((run, fetched)) = runs.next().await {
        let mut blobs = fetched.map_err(|e| ClientError::Protocol(e.to_string()))??;
        let mut uses = count_uses(run.iter().map(|(id, _)| *id));
        for _ in 0..run.len() {
            let Some(plain) = open_next_chunk(&mut decryptor, &mut blobs, &mut uses)? else { break };
            out.write(&plain).await.map_err(ClientError::io(path))?;
            bar.inc(u64::try_from(plain.len()).unwrap_or(0));
        }
    }
    decryptor.finish()?;
    out.finish().await.map_err(ClientError::io(path))
}

/// Write buffers for large downloads, shared by every download of this
/// process (two per file being written; a few kept warm).
fn write_buffers() -> Arc<keyhold_fs::BufferPool> {
    static POOL: std::sync::OnceLock<Arc<keyhold_fs::BufferPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| keyhold_fs::BufferPool::new(2)).clone()
}

/// How many times each blob is used, so [`write_chunks`] can move each
/// ciphertext out at its last use instead of cloning it.
fn count_uses(ids: impl Iterator<Item = BlobId>) -> HashMap<BlobId, usize> {
    let mut uses = HashMap::new();
    for id in ids {
        *uses.entry(id).or_default() += 1;
    }
    uses
}

/// Authenticates and writes the decryptor's next `count` chunks (fewer if
/// the file ends first), taking their ciphertexts from `blobs`.
fn write_chunks(
    decryptor: &mut FileDecryptor<'_>,
    count: usize,
    blobs: &mut HashMap<BlobId, Vec<u8>>,
    uses: &mut HashMap<BlobId, usize>,
    out: &mut impl Write,
    out_path: &Path,
    bar: &ProgressBar,
) -> Result<()> {
    for _ in 0..count {
        let Some(plain) = open_next_chunk(decryptor, blobs, uses)? else { break };
        out.write_all(&plain).map_err(ClientError::io(out_path))?;
        bar.inc(u64::try_from(plain.len()).unwrap_or(0));
    }
    Ok(())
}

/// Authenticates the decryptor's next chunk, taking its ciphertext from
/// `blobs`; `None` once the file is complete.
fn open_next_chunk(
    decryptor: &mut FileDecryptor<'_>,
    blobs: &mut HashMap<BlobId, Vec<u8>>,
    uses: &mut HashMap<BlobId, usize>,
) -> Result<Option<Vec<u8>>> {
    let Some(chunk) = decryptor.expected().copied() else { return Ok(None) };
    let left = uses.get_mut(&chunk.id).map(|n| {
        *n = n.saturating_sub(1);
        *n
    });
    // Identical files and repeated chunks share a ciphertext.
    let ciphertext = if left == Some(0) { blobs.remove(&chunk.id) } else { blobs.get(&chunk.id).cloned() };
    Ok(Some(decryptor.open_next(ciphertext.ok_or_else(|| ClientError::MissingBlob(chunk.id.to_hex()))?)?))
}
