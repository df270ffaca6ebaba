//! Read-side commands: list, history, restore, export, status (`check` has
//! its own module).

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use keyhold_core::{BlobId, BlobRef, EntryKind, VerifiedRevision};
use serde::Serialize;

use crate::client::{Client, Collection, RemoteNode, Tree};
use crate::error::{ClientError, Result};
use crate::sync::download;

/// One line of `keyhold ls`.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// Path in the collection.
    pub path: String,
    /// Folder or file.
    pub is_dir: bool,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Mode bits.
    pub mode: u32,
}

/// The verified tree at the head (empty before the first sync).
pub async fn head_tree(client: &Client, coll: &mut Collection) -> Result<(Option<VerifiedRevision>, Tree)> {
    let head = client.verified_head(coll).await?;
    let tree = match &head {
        Some(h) => client.read_tree(coll, h.revision.root).await?,
        None => Tree::new(),
    };
    Ok((head, tree))
}

/// Lists the collection under `prefix`.
pub async fn ls(client: &Client, coll: &mut Collection, prefix: &str) -> Result<Vec<Listed>> {
    let prefix = prefix.trim_matches('/');
    let (_, tree) = head_tree(client, coll).await?;
    if !prefix.is_empty() && !tree.contains_key(prefix) {
        return Err(ClientError::Usage(format!("{prefix}: no such file or folder in the collection")));
    }
    Ok(tree
        .iter()
        .filter(|(p, _)| prefix.is_empty() || p.as_str() == prefix || p.starts_with(&format!("{prefix}/")))
        .map(|(p, n)| Listed { path: p.clone(), is_dir: n.is_dir, size: n.size, mtime_ns: n.mtime_ns, mode: n.mode })
        .collect())
}

/// One version of a file, as `keyhold log` shows it.
#[derive(Debug, Serialize, Clone)]
pub struct Version {
    /// 1 for the oldest version in history, counting up.
    pub version: usize,
    /// The revision that introduced it.
    pub revision: u64,
    /// When the writing device says it wrote that revision (ms).
    pub time_ms: i64,
    /// Writing device.
    pub device: String,
    /// Size.
    pub size: u64,
    /// Whether the file was deleted in this revision (no content).
    pub deleted: bool,
    #[serde(skip)]
    node: Option<RemoteNode>,
}

/// Looks `path` up in the tree under `root`, reading only the listings on the way.
async fn lookup(client: &Client, coll: &mut Collection, root: BlobRef, path: &str) -> Result<Option<RemoteNode>> {
    let mut at = root;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let ct =
            client.fetch_blobs(coll, &[at.id]).await?.remove(&at.id).ok_or_else(|| ClientError::MissingBlob(at.id.to_hex()))?;
        let listing = coll.keys_for(at.epoch)?.open_listing(&at.id, ct)?;
        let Some(entry) = listing.get(part) else { return Ok(None) };
        let node = RemoteNode {
            is_dir: entry.kind == EntryKind::Folder,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            target: entry.target,
        };
        if i + 1 == parts.len() {
            return Ok(Some(node));
        }
        if !node.is_dir {
            return Ok(None);
        }
        at = entry.target;
    }
    Ok(None)
}

/// The versions of one file across the verified history.
pub async fn log(client: &Client, coll: &mut Collection, path: &str) -> Result<Vec<Version>> {
    let history = client.full_history(coll).await?;
    let mut versions: Vec<Version> = Vec::new();
    let mut last: Option<BlobId> = None;
    for rev in history {
        let node = lookup(client, coll, rev.revision.root, path).await?.filter(|n| !n.is_dir);
        let id = node.as_ref().map(|n| n.target.id);
        if id == last {
            continue;
        }
        if node.is_none() && last.is_none() {
            continue;
        }
        last = id;
        versions.push(Version {
            version: versions.len() + 1,
            revision: rev.revision.seq,
            time_ms: rev.revision.time_ms,
            device: rev.revision.author.to_hex(),
            size: node.as_ref().map_or(0, |n| n.size),
            deleted: node.is_none(),
            node,
        });
    }
    if versions.is_empty() {
        return Err(ClientError::Usage(format!("{path}: this file has no history in the collection")));
    }
    Ok(versions)
}

/// Restores a version (default: the newest with content) of `path` to `dest`,
/// which must not exist yet.
pub async fn restore(client: &Client, coll: &mut Collection, path: &str, version: Option<usize>, dest: &Path) -> Result<Version> {
    let versions = log(client, coll, path).await?;
    let chosen = match version {
        Some(n) => versions
            .iter()
            .find(|v| v.version == n)
            .cloned()
            .ok_or_else(|| ClientError::Usage(format!("{path} has no version {n}; see `keyhold log {path}`")))?,
        None => versions
            .iter()
            .rev()
            .find(|v| !v.deleted)
            .cloned()
            .ok_or_else(|| ClientError::Usage(format!("{path} has no version with content")))?,
    };
    let node = chosen
        .node
        .clone()
        .ok_or_else(|| ClientError::Usage(format!("version {} of {path} is a deletion; choose another", chosen.version)))?;
    if dest.exists() {
        return Err(ClientError::Usage(format!("{} exists; choose another --to, or move it away first", dest.display())));
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name =
        dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| ClientError::Usage("destination needs a file name".into()))?;
    let stat = download(client, coll, &parent, name, &node, &ProgressBar::hidden()).await?;
    if stat.is_none() {
        return Err(ClientError::Usage(format!("{} appeared while restoring; nothing was overwritten", dest.display())));
    }
    Ok(chosen)
}

/// Decrypts the whole collection at its head into `dest` (empty or new).
pub async fn export(client: &Client, coll: &mut Collection, dest: &Path, progress: bool) -> Result<usize> {
    if dest.exists() && std::fs::read_dir(dest).map_err(ClientError::io(dest))?.next().is_some() {
        return Err(ClientError::Usage(format!("{} is not empty; export into a new or empty folder", dest.display())));
    }
    std::fs::create_dir_all(dest).map_err(ClientError::io(dest))?;
    let (_, tree) = head_tree(client, coll).await?;
    let total: u64 = tree.values().map(|n| n.size).sum();
    let bar = if progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    let mut files = 0;
    for (path, node) in &tree {
        let target = path.split('/').fold(dest.to_path_buf(), |p, c| p.join(c));
        if node.is_dir {
            std::fs::create_dir_all(&target).map_err(ClientError::io(&target))?;
            continue;
        }
        let parent = target.parent().unwrap_or(dest).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(ClientError::io(&parent))?;
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if download(client, coll, &parent, &name, node, &bar).await?.is_none() {
            return Err(ClientError::Usage(format!("{} appeared during export", target.display())));
        }
        files += 1;
    }
    bar.finish_and_clear();
    Ok(files)
}

/// What `keyhold status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Server URL.
    pub server: String,
    /// Account id.
    pub account: String,
    /// This device.
    pub device: String,
    /// Enrolled devices of the account.
    pub devices: usize,
    /// Synced folders and the revision each is at.
    pub folders: Vec<(String, Option<u64>)>,
    /// Bytes stored / quota.
    pub used_bytes: u64,
    /// Quota.
    pub quota_bytes: u64,
    /// The residency region that holds the account.
    pub region: String,
}

/// Summarises this device's account and folders.
pub async fn status(client: &Client) -> Result<Status> {
    let usage: keyhold_proto::Usage = client.api.usage().await?;
    Ok(Status {
        server: client.config.server.clone(),
        account: client.config.account_id.clone(),
        device: client.config.device_id.clone(),
        devices: client.chain.active_devices().count(),
        folders: client.state.roots()?.into_iter().map(|(root, _, seq)| (root, seq)).collect(),
        used_bytes: usage.used_bytes,
        quota_bytes: usage.quota_bytes,
        region: usage.region,
    })
}

/// Where a local path sits: the synced folder containing it and the path
/// inside the collection.
pub async fn locate(client: &Client, path: &Path) -> Result<Option<(PathBuf, String)>> {
    let absolute = std::path::absolute(path).map_err(ClientError::io(path))?;
    for (root, _, _) in client.state.roots()? {
        let root = PathBuf::from(root);
        if let Ok(rel) = absolute.strip_prefix(&root) {
            let rel = rel.components().filter_map(|c| c.as_os_str().to_str()).collect::<Vec<_>>().join("/");
            return Ok(Some((root, rel)));
        }
    }
    Ok(None)
}
