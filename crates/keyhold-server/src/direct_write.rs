//! Durable, atomic writes of packs into the local blob folder, streamed
//! as they arrive and laid out exactly as `object_store`'s
//! `LocalFileSystem` lays them out (so it reads, lists and deletes them as
//! its own).
//!
//! Why not `LocalFileSystem::put`: it takes the whole object in memory, and
//! a buffered write copies every byte into the page cache before `fsync`
//! writes it out; that copy was the largest single cost of a push (about a
//! CPU-second per GiB here, several on a virtual machine whose memory is
//! touched for the first time). Here an upload goes to a staging file as
//! it is received, through two small reused buffers (so the server's memory
//! is bounded by its upload slots, not by upload sizes), and on Linux with
//! `O_DIRECT`: the disk reads the buffer itself, nothing lands in the page
//! cache, and a pack nobody reads soon evicts nothing useful (MinIO writes
//! objects the same way). Where the filesystem refuses direct I/O (tmpfs,
//! some network filesystems) the writes fall back to buffered I/O. A staged
//! object is synced, renamed into place and its folder synced: readers see
//! all of it or nothing, and a committed row never names a torn pack
//! (SECURITY F3). A staging file never published is removed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Alignment of `O_DIRECT` buffers, offsets and lengths: a page, which is
/// a multiple of every common logical block size.
const ALIGN: usize = 4096;
/// Bytes handed to the disk per write.
const STAGE: usize = 4 << 20;
/// Staging buffers kept for reuse (memory: `KEPT_BUFFERS * STAGE`).
const KEPT_BUFFERS: usize = 8;

/// Writes objects under a root folder.
pub(crate) struct DirectWriter {
    root: PathBuf,
    /// Warm buffers: fresh memory costs a page fault per 4 KiB on first touch.
    buffers: Mutex<Vec<Vec<u8>>>,
}

/// A buffer with a [`STAGE`]-long region aligned to [`ALIGN`].
struct Aligned(Vec<u8>);

impl Aligned {
    fn region(&mut self) -> std::io::Result<&mut [u8]> {
        let offset = self.0.as_ptr().align_offset(ALIGN);
        self.0.get_mut(offset..offset.saturating_add(STAGE)).ok_or_else(|| std::io::Error::other("unaligned buffer"))
    }
}

/// The staging file and whether it is (still) written with `O_DIRECT`.
struct Target {
    file: File,
    direct: bool,
}

impl Target {
    /// Writes `data` at `at`. `O_DIRECT` refused at write time (some
    /// filesystems accept the flag at open) is dropped, and the write redone.
    fn write_at(&mut self, data: &[u8], at: u64) -> std::io::Result<()> {
        match self.file.write_all_at(data, at) {
            Err(e) if self.direct && is_einval(&e) => {
                set_direct(&self.file, false)?;
                self.direct = false;
                self.file.write_all_at(data, at)
            }
            other => other,
        }
    }
}

/// One object being received (see [`DirectWriter::stage`]).
pub(crate) struct Staging {
    writer: Arc<DirectWriter>,
    dest: PathBuf,
    path: PathBuf,
    /// The file, unless a block write has it.
    target: Option<Target>,
    writing: Option<tokio::task::JoinHandle<std::io::Result<(Target, Aligned)>>>,
    /// Filled from the front; `filled` bytes so far.
    fill: Aligned,
    filled: usize,
    spare: Option<Aligned>,
    /// Bytes handed to block writes so far.
    written: u64,
    published: bool,
}

impl DirectWriter {
    pub(crate) fn new(root: PathBuf) -> Self {
        DirectWriter { root, buffers: Mutex::new(Vec::new()) }
    }

    fn buffer(&self) -> Aligned {
        let mut raw = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default();
        raw.resize(STAGE + ALIGN, 0);
        Aligned(raw)
    }

    fn give_back(&self, buffer: Aligned) {
        let mut kept = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < KEPT_BUFFERS {
            kept.push(buffer.0);
        }
    }

    /// Starts the object at `relative` (a path of parsed ids): a staging
    /// file beside it, to be written and then published.
    pub(crate) async fn stage(self: &Arc<Self>, relative: &str) -> std::io::Result<Staging> {
        let dest = self.root.join(relative);
        let root = self.root.clone();
        let (path, target) = tokio::task::spawn_blocking({
            let dest = dest.clone();
            move || create_staged(&root, &dest)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Staging {
            writer: self.clone(),
            dest,
            path,
            target: Some(target),
            writing: None,
            fill: self.buffer(),
            filled: 0,
            spare: None,
            written: 0,
            published: false,
        })
    }
}

impl Staging {
    /// Appends bytes; full blocks go to the disk while the next fills.
    pub(crate) async fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let region = self.fill.region()?;
            let take = data.len().min(STAGE - self.filled);
            let (head, rest) = data.split_at(take);
            region
                .get_mut(self.filled..self.filled + take)
                .ok_or_else(|| std::io::Error::other("stage overrun"))?
                .copy_from_slice(head);
            self.filled += take;
            data = rest;
            if self.filled == STAGE {
                self.write_block().await?;
            }
        }
        Ok(())
    }

    /// Sends the filled buffer to the disk on a blocking thread, once the
    /// previous block is written, and goes on filling the other buffer.
    async fn write_block(&mut self) -> std::io::Result<()> {
        self.settle().await?;
        let mut target = self.target.take().ok_or_else(|| std::io::Error::other("staging file lost"))?;
        let next = self.spare.take().unwrap_or_else(|| self.writer.buffer());
        let mut full = std::mem::replace(&mut self.fill, next);
        let at = self.written;
        self.written += u64::try_from(STAGE).unwrap_or(0);
        self.filled = 0;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            target.write_at(full.region()?, at)?;
            Ok((target, full))
        }));
        Ok(())
    }

    /// Waits for the block being written, if any.
    async fn settle(&mut self) -> std::io::Result<()> {
        if let Some(writing) = self.writing.take() {
            let (target, buffer) = writing.await.map_err(std::io::Error::other)??;
            self.target = Some(target);
            self.spare = Some(buffer);
        }
        Ok(())
    }

    /// Writes the rest, syncs, and moves the object into place.
    pub(crate) async fn publish(mut self) -> std::io::Result<()> {
        self.settle().await?;
        let mut target = self.target.take().ok_or_else(|| std::io::Error::other("staging file lost"))?;
        let mut last = std::mem::replace(&mut self.fill, Aligned(Vec::new()));
        let (filled, at) = (self.filled, self.written);
        let (path, dest) = (self.path.clone(), self.dest.clone());
        let (result, last) = tokio::task::spawn_blocking(move || {
            let result = (|| {
                if filled > 0 {
                    // With O_DIRECT the last block is padded to the
                    // alignment, then the file is cut back to its length.
                    let len = if target.direct { filled.next_multiple_of(ALIGN) } else { filled };
                    let region = last.region()?;
                    region.get_mut(filled..len).unwrap_or_default().fill(0);
                    target.write_at(region.get(..len).unwrap_or_default(), at)?;
                    if len != filled {
                        target.file.set_len(at + u64::try_from(filled).unwrap_or(0))?;
                    }
                }
                target.file.sync_all()?;
                drop(target);
                std::fs::rename(&path, &dest)?;
                sync_dir(dest.parent().unwrap_or(Path::new("/")))
            })();
            (result, last)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.writer.give_back(last);
        if result.is_ok() {
            self.published = true;
        }
        result
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            self.writer.give_back(spare);
        }
        if !self.fill.0.is_empty() {
            self.writer.give_back(std::mem::replace(&mut self.fill, Aligned(Vec::new())));
        }
        if !self.published {
            // An upload refused or cut off leaves nothing behind. A block
            // write still running holds the file open; unlinking is fine.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates a fresh staging file beside `dest` (and its folder, if new),
/// named as `object_store` names its own (`NAME#DIGITS`, which its listings
/// skip); with `O_DIRECT` where the filesystem takes it.
fn create_staged(root: &Path, dest: &Path) -> std::io::Result<(PathBuf, Target)> {
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
        match open_new(&staging) {
            Ok(file) => {
                // Direct I/O is only a way to spare the page cache.
                let direct = set_direct(&file, true).is_ok();
                return Ok((staging, Target { file, direct }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn open_new(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on { flags | OFlags::DIRECT } else { flags - OFlags::DIRECT };
    Ok(rustix::fs::fcntl_setfl(file, flags)?)
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> std::io::Result<()> {
    if on { Err(std::io::Error::from(std::io::ErrorKind::Unsupported)) } else { Ok(()) }
}

fn is_einval(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    async fn put(writer: &Arc<DirectWriter>, relative: &str, data: &[u8]) {
        let mut staging = writer.stage(relative).await.unwrap();
        staging.write(data).await.unwrap();
        staging.publish().await.unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_any_length_in_any_pieces_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(DirectWriter::new(dir.path().to_owned()));
        for (i, len) in [0usize, 1, 4095, 4096, 4097, STAGE - 1, STAGE, STAGE + 12_345, 3 * STAGE + 7].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| u8::try_from((j * 31 + i) % 251).unwrap()).collect();
            let name = format!("acct/obj{i}");
            let mut staging = writer.stage(&name).await.unwrap();
            let mut at = 0;
            for piece in [1000, 65_536, 7, 3 << 20].into_iter().cycle() {
                if at >= len {
                    break;
                }
                let end = (at + piece).min(len);
                staging.write(&data[at..end]).await.unwrap();
                at = end;
            }
            staging.publish().await.unwrap();
            assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), data, "length {len}");
        }
        assert!(listing(&dir.path().join("acct")).iter().all(|n| !n.contains('#')));
        assert!(writer.buffers.lock().unwrap().len() <= KEPT_BUFFERS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unpublished_upload_leaves_nothing_and_a_published_one_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(DirectWriter::new(dir.path().to_owned()));
        put(&writer, "a/b", b"first version, longer").await;
        let mut cut_off = writer.stage("a/b").await.unwrap();
        cut_off.write(&vec![9u8; STAGE + 5]).await.unwrap();
        drop(cut_off);
        assert_eq!(listing(&dir.path().join("a")), ["b"]);
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"first version, longer");
        put(&writer, "a/b", b"second").await;
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"second");
    }
}
