//! Durable, atomic writes of whole packs into the local blob folder, laid
//! out exactly as `object_store`'s `LocalFileSystem` lays them out (so it
//! reads, lists and deletes them as its own).
//!
//! Why not `LocalFileSystem::put`: a buffered write copies every byte into
//! the page cache and `fsync` then writes it out, and that copy was the
//! largest single cost of a push (about a CPU-second per GiB here, several
//! on a virtual machine whose memory is touched for the first time). On
//! Linux a pack is written with `O_DIRECT` instead, from a small reused,
//! aligned buffer: the disk reads it from there, nothing lands in the page
//! cache, and a pack nobody reads soon evicts nothing useful (MinIO writes
//! objects the same way). Where `O_DIRECT` is refused (tmpfs, some network
//! filesystems) the write falls back to buffered I/O. Either way the pack
//! goes to a staging file first, is synced, then renamed into place and its
//! folder synced: readers see all of it or nothing, and a committed row
//! never names a torn pack (SECURITY F3).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

/// Alignment of `O_DIRECT` buffers, offsets and lengths: a page, which is
/// a multiple of every common logical block size.
const ALIGN: usize = 4096;
/// Bytes handed to the disk per write.
const STAGE: usize = 4 << 20;
/// Staging buffers kept for reuse (memory: `KEPT_BUFFERS * STAGE`).
const KEPT_BUFFERS: usize = 4;

/// Writes whole objects under a root folder.
pub(crate) struct DirectWriter {
    root: PathBuf,
    /// Warm buffers: fresh memory costs a page fault per 4 KiB on first touch.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl DirectWriter {
    pub(crate) fn new(root: PathBuf) -> Self {
        DirectWriter { root, buffers: Mutex::new(Vec::new()) }
    }

    /// Writes `frames` as the object at `relative` (a path of parsed ids),
    /// durably and atomically. Blocking: run it on a blocking thread.
    pub(crate) fn put(&self, relative: &str, frames: &[Bytes]) -> std::io::Result<()> {
        let dest = self.root.join(relative);
        let dir = dest.parent().ok_or_else(|| std::io::Error::other("object path without a folder"))?;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)?;
            sync_dir(&self.root)?;
        }
        match self.publish(&dest, dir, frames, true) {
            // A filesystem may take O_DIRECT at open and refuse it at write.
            Err(e) if is_einval(&e) => self.publish(&dest, dir, frames, false),
            other => other,
        }
    }

    fn publish(&self, dest: &Path, dir: &Path, frames: &[Bytes], try_direct: bool) -> std::io::Result<()> {
        let (staging, file, direct) = create_staged(dest, try_direct)?;
        let written = if direct { self.write_direct(&file, frames) } else { write_buffered(&file, frames) };
        let published = written.and_then(|()| file.sync_all()).and_then(|()| {
            drop(file);
            std::fs::rename(&staging, dest)?;
            sync_dir(dir)
        });
        if published.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        published
    }

    fn write_direct(&self, mut file: &File, frames: &[Bytes]) -> std::io::Result<()> {
        let mut raw = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default();
        raw.resize(STAGE + ALIGN, 0);
        let result = (|| {
            let offset = raw.as_ptr().align_offset(ALIGN);
            let stage = raw.get_mut(offset..offset + STAGE).ok_or_else(|| std::io::Error::other("unaligned buffer"))?;
            let mut filled = 0;
            let mut total = 0u64;
            for frame in frames {
                let mut rest = frame.as_ref();
                while !rest.is_empty() {
                    let take = rest.len().min(STAGE - filled);
                    let (head, tail) = rest.split_at(take);
                    stage
                        .get_mut(filled..filled + take)
                        .ok_or_else(|| std::io::Error::other("stage overrun"))?
                        .copy_from_slice(head);
                    filled += take;
                    rest = tail;
                    if filled == STAGE {
                        file.write_all(stage)?;
                        total += u64::try_from(STAGE).unwrap_or(0);
                        filled = 0;
                    }
                }
            }
            if filled > 0 {
                // The last block is padded to the alignment, then cut back.
                let padded = filled.next_multiple_of(ALIGN);
                let last = stage.get_mut(..padded).ok_or_else(|| std::io::Error::other("stage overrun"))?;
                last.get_mut(filled..).unwrap_or_default().fill(0);
                file.write_all(last)?;
                total += u64::try_from(filled).unwrap_or(0);
                file.set_len(total)?;
            }
            Ok(())
        })();
        let mut kept = self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < KEPT_BUFFERS {
            kept.push(raw);
        }
        result
    }
}

fn write_buffered(mut file: &File, frames: &[Bytes]) -> std::io::Result<()> {
    frames.iter().try_for_each(|frame| file.write_all(frame))
}

/// Creates a fresh staging file beside `dest`, named as `object_store` names
/// its own (`NAME#DIGITS`, which its listings skip); opened with `O_DIRECT`
/// where the filesystem takes it (the third value says whether it did).
fn create_staged(dest: &Path, try_direct: bool) -> std::io::Result<(PathBuf, File, bool)> {
    loop {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{}", u64::from_le_bytes(suffix)));
        let staging = PathBuf::from(name);
        if try_direct {
            match open_new(&staging, true) {
                Ok(file) => return Ok((staging, file, true)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // This filesystem does not do direct I/O.
                Err(e) if is_einval(&e) => {}
                Err(e) => return Err(e),
            }
        }
        match open_new(&staging, false) {
            Ok(file) => return Ok((staging, file, false)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(target_os = "linux")]
fn open_new(path: &Path, direct: bool) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    if direct {
        flags |= OFlags::DIRECT;
    }
    Ok(File::from(rustix::fs::open(path, flags, Mode::from_raw_mode(0o644))?))
}

#[cfg(not(target_os = "linux"))]
fn open_new(path: &Path, direct: bool) -> std::io::Result<File> {
    if direct {
        return Err(std::io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error()));
    }
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
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

    fn frames_of(data: &[u8], sizes: &[usize]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut at = 0;
        for &s in sizes.iter().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + s).min(data.len());
            out.push(Bytes::copy_from_slice(&data[at..end]));
            at = end;
        }
        out
    }

    #[test]
    fn writes_any_length_whole_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let writer = DirectWriter::new(dir.path().to_owned());
        for (i, len) in [0usize, 1, 4095, 4096, 4097, STAGE - 1, STAGE, STAGE + 12_345, 3 * STAGE + 7].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| u8::try_from((j * 31 + i) % 251).unwrap()).collect();
            let name = format!("acct/obj{i}");
            writer.put(&name, &frames_of(&data, &[1000, 65_536, 7, 3 << 20])).unwrap();
            assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), data, "length {len}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("acct")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.iter().all(|n| !n.to_string_lossy().contains('#')), "{left:?}");
        assert!(writer.buffers.lock().unwrap().len() <= KEPT_BUFFERS);
    }

    #[test]
    fn replaces_an_object_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let writer = DirectWriter::new(dir.path().to_owned());
        writer.put("a/b", &[Bytes::from_static(b"first version, longer")]).unwrap();
        writer.put("a/b", &[Bytes::from_static(b"second")]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"second");
    }
}
