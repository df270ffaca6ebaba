//! The local blob folder's own fast paths, beside `object_store`'s
//! `LocalFileSystem` (which still lists, deletes and streams whole
//! objects): durable, atomic pack writes streamed as they arrive, and
//! page-aligned range reads. Packs are laid out exactly as
//! `LocalFileSystem` lays them out, so it takes them as its own.
//!
//! Why not `LocalFileSystem::put`: it takes the whole object in memory, and
//! a buffered write copies every byte into the page cache before `fsync`
//! writes it out; that copy was the largest single cost of a push (about a
//! CPU-second per GiB here, several on a virtual machine whose memory is
//! touched for the first time). Here an upload goes to a staging file as
//! it is received, through a [`DirectAppender`] (two small reused buffers,
//! `O_DIRECT` where the filesystem takes it), so the server's memory is
//! bounded by its upload slots, not by upload sizes, and a pack nobody
//! reads soon evicts nothing useful. A staged object is synced, renamed
//! into place and its folder synced: readers see all of it or nothing, and
//! a committed row never names a torn pack (SECURITY F3). A staging file
//! never published is removed.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use keyhold_fs::{BufferPool, DirectAppender};

/// Write buffers kept for reuse (memory: this many times [`keyhold_fs::BLOCK`]).
const KEPT_BUFFERS: usize = 8;

/// Writes objects under a root folder, and reads ranges of them.
pub(crate) struct LocalPacks {
    root: PathBuf,
    buffers: Arc<BufferPool>,
}

/// One object being received (see [`LocalPacks::stage`]).
pub(crate) struct Staging {
    dest: PathBuf,
    path: PathBuf,
    /// Until published.
    out: Option<DirectAppender>,
    published: bool,
}

impl LocalPacks {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalPacks { root, buffers: BufferPool::new(KEPT_BUFFERS) }
    }

    /// Starts the object at `relative` (a path of parsed ids): a staging
    /// file beside it, to be written and then published.
    pub(crate) async fn stage(self: &Arc<Self>, relative: &str) -> std::io::Result<Staging> {
        let dest = self.root.join(relative);
        let root = self.root.clone();
        let (path, file) = tokio::task::spawn_blocking({
            let dest = dest.clone();
            move || create_staged(&root, &dest)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Staging { dest, path, out: Some(DirectAppender::new(file, self.buffers.clone())), published: false })
    }

    /// Reads bytes `range` of the object at `relative` so that they land on
    /// a page boundary (see [`keyhold_fs::PageAligned`]: into
    /// `object_store`'s buffers, 16 bytes off a page, the same read costs
    /// several times the CPU). The caller checked the range against the
    /// object's size.
    pub(crate) async fn read_range(&self, relative: &str, range: Range<u64>) -> std::io::Result<Bytes> {
        let path = self.root.join(relative);
        tokio::task::spawn_blocking(move || {
            let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(std::io::Error::other)?;
            let (buf, start) = keyhold_fs::read_aligned(&std::fs::File::open(&path)?, range.start, len)?;
            Ok(Bytes::from(buf).slice(start..))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl Staging {
    /// Appends bytes; what has filled goes to the disk while more arrives.
    pub(crate) async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.out.as_mut().ok_or_else(|| std::io::Error::other("staging file already published"))?.write(data).await
    }

    /// Writes the rest, syncs, and moves the object into place.
    pub(crate) async fn publish(mut self) -> std::io::Result<()> {
        let out = self.out.take().ok_or_else(|| std::io::Error::other("staging file already published"))?;
        let file = out.finish().await?;
        let (path, dest) = (self.path.clone(), self.dest.clone());
        tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            drop(file);
            std::fs::rename(&path, &dest)?;
            sync_dir(dest.parent().unwrap_or(Path::new("/")))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.published = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            // An upload refused or cut off leaves nothing behind. A block
            // write still running holds the file open; unlinking is fine.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates a fresh staging file beside `dest` (and its folder, if new),
/// named as `object_store` names its own (`NAME#DIGITS`, which its listings
/// skip).
fn create_staged(root: &Path, dest: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let dir = dest.parent().ok_or_else(|| std::io::Error::other("object path without a folder"))?;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        sync_dir(root)?;
    }
    loop {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{}", u64::from_le_bytes(suffix)));
        let staging = PathBuf::from(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&staging) {
            Ok(file) => return Ok((staging, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    async fn put(writer: &Arc<LocalPacks>, relative: &str, data: &[u8]) {
        let mut staging = writer.stage(relative).await.unwrap();
        staging.write(data).await.unwrap();
        staging.publish().await.unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    // How the bytes reach the file (any length, in any pieces) is
    // keyhold-fs's to test; here, that objects land whole, where
    // object_store looks for them, and that no staging file stays behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_whole_objects_readable_by_range_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(LocalPacks::new(dir.path().to_owned()));
        for (i, len) in [0usize, 1, 4097, keyhold_fs::BLOCK + 12_345].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| u8::try_from((j * 31 + i) % 251).unwrap()).collect();
            let name = format!("acct/obj{i}");
            put(&writer, &name, &data).await;
            assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), data, "length {len}");
            let from = u64::try_from(len / 3).unwrap();
            let to = u64::try_from(len).unwrap();
            assert_eq!(writer.read_range(&name, from..to).await.unwrap(), data[len / 3..], "length {len}");
        }
        assert!(listing(&dir.path().join("acct")).iter().all(|n| !n.contains('#')));
        assert!(writer.buffers.kept() <= KEPT_BUFFERS);
        let missing = writer.read_range("acct/none", 0..1).await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unpublished_upload_leaves_nothing_and_a_published_one_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(LocalPacks::new(dir.path().to_owned()));
        put(&writer, "a/b", b"first version, longer").await;
        let mut cut_off = writer.stage("a/b").await.unwrap();
        cut_off.write(&vec![9u8; keyhold_fs::BLOCK + 5]).await.unwrap();
        drop(cut_off);
        assert_eq!(listing(&dir.path().join("a")), ["b"]);
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"first version, longer");
        put(&writer, "a/b", b"second").await;
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"second");
    }
}
