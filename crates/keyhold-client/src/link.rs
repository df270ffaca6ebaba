//! Link shares (spec: `docs/spec/links.md`): `keyhold link create` seals a
//! local file or folder into a link object under keys only its URL's
//! fragment carries, files it with the server and prints the URL; `list`
//! and `revoke` manage the account's links; `fetch` opens a URL without
//! any account, streaming: each segment is authenticated before it is
//! written, into a temporary file or folder beside the destination that is
//! moved into place only once the whole link verified (SECURITY B5), and
//! removed otherwise. Nothing derived from opening a link is sent back to
//! the server (A6); the fragment never leaves this process (E1).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyhold_core::{
    KdfParams, LINK_HEADER_LEN, LinkEntry, LinkEntryKind, LinkFragment, LinkHeader, LinkId, LinkKeys, LinkKind, LinkMeta,
    LinkMode, LinkWriter, MAX_LINK_ENTRIES, os_rng, validate_link_path,
};
use serde::Serialize;
pub use zeroize::Zeroizing;

use crate::api::Api;
use crate::client::Client;
use crate::error::{ClientError, Result};

/// Largest link object the client makes: what a server accepts in one
/// request by default (`max_body_bytes`, 64 MiB).
pub const MAX_LINK_OBJECT: u64 = 64 << 20;
/// The longest a link may live.
pub const MAX_LINK_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// A link just made.
#[derive(Debug, Serialize)]
pub struct CreatedLink {
    /// Its id (32 hex digits).
    pub id: String,
    /// The URL to hand on: it carries the key, in its fragment.
    pub url: String,
    /// Whether it needs a password too.
    pub password: bool,
    /// Unix seconds.
    pub expires_at: i64,
    /// `file` or `folder`.
    pub kind: &'static str,
    /// Files in it.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes stored on the server (padded and sealed).
    pub stored: u64,
    /// What was left out (symbolic links, special files, names that cannot
    /// travel), with why.
    pub skipped: Vec<(String, String)>,
}

/// One of the account's links, as the server lists it.
#[derive(Debug, Serialize)]
pub struct LinkInfo {
    /// Its id.
    pub id: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    /// Stored bytes (0 once the object is deleted).
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub revoked_at: Option<i64>,
}

/// A link opened and written out.
#[derive(Debug, Serialize)]
pub struct Fetched {
    /// Where it was written.
    pub path: PathBuf,
    /// `file` or `folder`.
    pub kind: &'static str,
    /// The shared file's or folder's name.
    pub name: String,
    /// Files written.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// When the link expires (Unix milliseconds, from its encrypted metadata).
    pub expires_ms: i64,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A link's URL: `{server}/l/{id}#{fragment}`.
pub struct LinkUrl {
    /// The server's base URL (what precedes `/l/`).
    pub base: String,
    /// The link id.
    pub id: LinkId,
    /// The fragment: the key material.
    pub fragment: LinkFragment,
}

impl core::fmt::Debug for LinkUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LinkUrl({}/l/{}#[REDACTED])", self.base, self.id)
    }
}

impl LinkUrl {
    /// The URL's text.
    pub fn to_text(&self) -> String {
        format!("{}/l/{}#{}", self.base, self.id.to_hex(), self.fragment.encode().as_str())
    }

    /// Parses a link URL as `link create` prints it.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (address, fragment) =
            text.split_once('#').ok_or_else(|| usage("this URL has no key (the part after `#`); copy the whole link"))?;
        let fragment = LinkFragment::parse(fragment).map_err(|e| usage(&e.to_string()))?;
        let (base, id) = address.rsplit_once("/l/").ok_or_else(|| usage("not a Keyhold link URL (no /l/ in its path)"))?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(usage("a link URL starts with http:// or https://"));
        }
        let id = (id.len() == 32)
            .then(|| LinkId::from_hex(id))
            .flatten()
            .ok_or_else(|| usage("not a Keyhold link URL (malformed link id)"))?;
        Ok(LinkUrl { base: base.to_owned(), id, fragment })
    }
}

fn usage(text: &str) -> ClientError {
    ClientError::Usage(text.to_owned())
}

/// What a link will hold: its metadata, and the local file of each file
/// entry, in entry order.
struct Source {
    meta: LinkMeta,
    files: Vec<PathBuf>,
    skipped: Vec<(String, String)>,
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

fn name_of(path: &Path) -> Result<String> {
    let canonical = std::fs::canonicalize(path).map_err(ClientError::io(path))?;
    let name = canonical
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| usage(&format!("{}: a link needs a file or folder whose name is valid UTF-8", path.display())))?;
    keyhold_core::validate_name(name).map_err(|_| usage(&format!("{}: this name cannot travel in a link", path.display())))?;
    Ok(name.to_owned())
}

/// Scans `path` (a file or a folder) into a link's metadata.
fn scan(path: &Path, expires_ms: i64) -> Result<Source> {
    let meta = std::fs::symlink_metadata(path).map_err(ClientError::io(path))?;
    let name = name_of(path)?;
    if meta.is_file() {
        let entry = LinkEntry { path: name.clone(), kind: LinkEntryKind::File, size: meta.len(), mode: mode_of(&meta) };
        let meta = LinkMeta { expires_ms, kind: LinkKind::File, name, entries: vec![entry] };
        return Ok(Source { meta, files: vec![path.to_path_buf()], skipped: Vec::new() });
    }
    if !meta.is_dir() {
        return Err(usage(&format!("{} is neither a file nor a folder", path.display())));
    }
    let mut found: Vec<(LinkEntry, Option<PathBuf>)> = Vec::new();
    let mut skipped = Vec::new();
    let mut walker = walkdir::WalkDir::new(path).min_depth(1).follow_links(false).into_iter();
    while let Some(item) = walker.next() {
        let item = item.map_err(|e| usage(&format!("reading {}: {e}", path.display())))?;
        let rel = item.path().strip_prefix(path).unwrap_or(item.path());
        let shown = rel.to_string_lossy().into_owned();
        let Some(rel_text) = rel.to_str().map(|r| r.replace(std::path::MAIN_SEPARATOR, "/")) else {
            skipped.push((shown, "its name is not valid UTF-8".into()));
            if item.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        };
        if validate_link_path(&rel_text).is_err() {
            skipped.push((shown, "its name cannot travel in a link".into()));
            if item.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        let meta = item.metadata().map_err(|e| usage(&format!("reading {}: {e}", item.path().display())))?;
        if item.file_type().is_dir() {
            found.push((LinkEntry { path: rel_text, kind: LinkEntryKind::Folder, size: 0, mode: mode_of(&meta) }, None));
        } else if item.file_type().is_file() {
            let entry = LinkEntry { path: rel_text, kind: LinkEntryKind::File, size: meta.len(), mode: mode_of(&meta) };
            found.push((entry, Some(item.path().to_path_buf())));
        } else {
            skipped.push((shown, "not a regular file or folder (a symbolic link or a special file)".into()));
        }
        if found.len() > MAX_LINK_ENTRIES {
            return Err(usage(&format!("{} holds more than {MAX_LINK_ENTRIES} entries; share a smaller folder", path.display())));
        }
    }
    // The format lists entries by the bytes of their paths.
    found.sort_by(|a, b| a.0.path.as_bytes().cmp(b.0.path.as_bytes()));
    let files = found.iter().filter_map(|(_, p)| p.clone()).collect();
    let meta = LinkMeta { expires_ms, kind: LinkKind::Folder, name, entries: found.into_iter().map(|(e, _)| e).collect() };
    Ok(Source { meta, files, skipped })
}

/// Seals `source` into a link object (in memory: at most
/// [`MAX_LINK_OBJECT`] bytes), reading each file once.
fn seal(source: &Source, id: LinkId, fragment: &LinkFragment, password: Option<&[u8]>) -> Result<Vec<u8>> {
    let kdf = password.map(|p| (p, KdfParams::DEFAULT));
    let (mut writer, mut out) = LinkWriter::new(id, fragment, kdf, &source.meta)?;
    let total = writer.object_len().unwrap_or(u64::MAX);
    if total > MAX_LINK_OBJECT {
        return Err(usage(&format!(
            "too large for a link: {} bytes of content make a {total}-byte link, and a link holds at most {} MiB",
            source.meta.content_len()?,
            MAX_LINK_OBJECT >> 20
        )));
    }
    out.reserve(usize::try_from(total).unwrap_or(0).saturating_sub(out.len()));
    let sizes = source.meta.entries.iter().filter(|e| e.kind == LinkEntryKind::File).map(|e| e.size);
    let mut buf = vec![0u8; 1 << 16];
    for (path, size) in source.files.iter().zip(sizes) {
        let mut file = std::fs::File::open(path).map_err(ClientError::io(path))?;
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(ClientError::io(path))?;
            if n == 0 {
                break;
            }
            read = read.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            if read > size {
                break;
            }
            writer.update(buf.get(..n).unwrap_or_default(), &mut out)?;
        }
        if read != size {
            return Err(usage(&format!("{} changed while it was being read; try again", path.display())));
        }
    }
    writer.finish(&mut out)?;
    Ok(out)
}

/// Makes a link to the local file or folder `path` that expires after
/// `lifetime`, protected by `password` too if one is given, and files it
/// with the server. Sealing (Argon2id included) runs off the async workers.
pub async fn create(
    client: &Client,
    path: &Path,
    lifetime: Duration,
    password: Option<Zeroizing<String>>,
) -> Result<CreatedLink> {
    if lifetime.is_zero() || lifetime > MAX_LINK_LIFETIME {
        return Err(usage("a link lives between one second and 365 days"));
    }
    if password.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(usage("the password is empty"));
    }
    let expires_at = now_secs().saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    let source = scan(path, expires_at.saturating_mul(1000))?;
    let mut rng = os_rng();
    let id = LinkId::generate(&mut rng);
    let fragment = LinkFragment::generate(password.is_some(), &mut rng);
    let url = LinkUrl { base: client.config.server.trim_end_matches('/').to_owned(), id, fragment };
    let (object, source, url) = tokio::task::spawn_blocking(move || {
        let object = seal(&source, id, &url.fragment, password.as_ref().map(|p| p.as_bytes()));
        (object, source, url)
    })
    .await
    .map_err(|e| ClientError::Protocol(format!("sealing the link failed: {e}")))?;
    let object = object?;
    let stored = u64::try_from(object.len()).unwrap_or(u64::MAX);
    client.api.create_link(object, expires_at).await?;
    let files = source.files.len();
    Ok(CreatedLink {
        id: id.to_hex(),
        url: url.to_text(),
        password: url.fragment.needs_password(),
        expires_at,
        kind: if source.meta.kind == LinkKind::File { "file" } else { "folder" },
        files,
        bytes: source.meta.content_len()?,
        stored,
        skipped: source.skipped,
    })
}

/// The account's links, newest first.
pub async fn list(client: &Client) -> Result<Vec<LinkInfo>> {
    let now = now_secs();
    Ok(client
        .api
        .links()
        .await?
        .into_iter()
        .map(|l| LinkInfo {
            state: match (l.revoked_at, now >= l.expires_at) {
                (Some(_), _) => "revoked",
                (None, true) => "expired",
                (None, false) => "active",
            },
            id: l.link_id,
            size: l.size,
            created_at: l.created_at,
            expires_at: l.expires_at,
            revoked_at: l.revoked_at,
        })
        .collect())
}

/// Revokes the link `id_or_url` names (its id, or its URL): the server
/// deletes its object and answers `410 Gone` from then on.
pub async fn revoke(client: &Client, id_or_url: &str) -> Result<String> {
    let text = id_or_url.trim();
    let id = match LinkId::from_hex(text).filter(|_| text.len() == 32) {
        Some(id) => id,
        None => LinkUrl::parse(text)?.id,
    };
    if !client.api.revoke_link(id).await? {
        return Err(usage(&format!("this account has no link {id} (see `keyhold link list`)")));
    }
    Ok(id.to_hex())
}

/// Where a fetched link goes: into `dest` if it is a folder, else `dest`
/// itself, which must not exist. Never over anything that exists.
fn target(dest: &Path, name: &str) -> Result<PathBuf> {
    let target = if dest.is_dir() { dest.join(name) } else { dest.to_path_buf() };
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(usage(&format!("{} exists; name a new path (nothing was written)", target.display())));
    }
    match target.parent() {
        Some(p) if p.as_os_str().is_empty() || p.is_dir() => Ok(target),
        _ => Err(usage(&format!("{} is not in an existing folder", target.display()))),
    }
}

/// A link being written out: everything goes into `tmp`, a new file or
/// folder beside the target, moved into place by [`Output::install`].
struct Output {
    tmp: PathBuf,
    folder: bool,
    /// The open file of the current file entry, with its index.
    open: Option<(usize, std::fs::File)>,
    /// Files and modes to set at the end (folders last, deepest first).
    modes: Vec<(PathBuf, u32)>,
}

fn tmp_name(parent: &Path) -> PathBuf {
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    parent.join(format!(".keyhold-link-{}.tmp", data_encoding::HEXLOWER.encode(&random)))
}

impl Output {
    fn start(target: &Path, meta: &LinkMeta) -> Result<Self> {
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tmp_name(parent);
        let folder = meta.kind == LinkKind::Folder;
        let mut out = Output { tmp, folder, open: None, modes: Vec::new() };
        if folder {
            std::fs::create_dir(&out.tmp).map_err(ClientError::io(&out.tmp))?;
            for entry in &meta.entries {
                let path = out.entry_path(entry);
                match entry.kind {
                    // Parents come first (the format's order); every path is
                    // new inside a folder this process just made.
                    LinkEntryKind::Folder => std::fs::create_dir(&path).map_err(|e| collision(e, &path))?,
                    LinkEntryKind::File => {
                        std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| collision(e, &path))?;
                    }
                }
                let floor = if entry.kind == LinkEntryKind::Folder { 0o700 } else { 0o600 };
                out.modes.push((path, (entry.mode & 0o777) | floor));
            }
        } else {
            std::fs::OpenOptions::new().write(true).create_new(true).open(&out.tmp).map_err(ClientError::io(&out.tmp))?;
            let mode = meta.entries.first().map_or(0o600, |e| (e.mode & 0o777) | 0o600);
            out.modes.push((out.tmp.clone(), mode));
        }
        Ok(out)
    }

    fn entry_path(&self, entry: &LinkEntry) -> PathBuf {
        if !self.folder {
            return self.tmp.clone();
        }
        // Each name was checked by the core (no `..`, `/`, `\`, NUL; G7).
        entry.path.split('/').fold(self.tmp.clone(), |p, name| p.join(name))
    }

    fn write(&mut self, meta: &LinkMeta, entry: usize, bytes: &[u8]) -> Result<()> {
        if self.open.as_ref().is_none_or(|(i, _)| *i != entry) {
            self.close()?;
            let e = meta.entries.get(entry).ok_or_else(|| ClientError::Protocol("link entry out of range".into()))?;
            let path = self.entry_path(e);
            let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(ClientError::io(&path))?;
            self.open = Some((entry, file));
        }
        if let Some((_, file)) = &mut self.open {
            file.write_all(bytes).map_err(ClientError::io(&self.tmp))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((_, file)) = self.open.take() {
            file.sync_all().map_err(ClientError::io(&self.tmp))?;
        }
        Ok(())
    }

    /// Sets the modes, then moves the finished file or folder to `target`,
    /// refusing to replace anything that appeared there meanwhile.
    fn install(mut self, target: &Path) -> Result<()> {
        self.close()?;
        for (path, mode) in self.modes.iter().rev() {
            set_mode(path, *mode);
        }
        rename_new(&self.tmp, target)?;
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Output {
    /// Whatever did not complete is removed: nothing partial stays (B5).
    fn drop(&mut self) {
        self.open = None;
        if self.tmp.as_os_str().is_empty() {
            return;
        }
        let _ = if self.folder { std::fs::remove_dir_all(&self.tmp) } else { std::fs::remove_file(&self.tmp) };
    }
}

fn collision(e: std::io::Error, path: &Path) -> ClientError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        usage(&format!(
            "two entries of this link name the same path on this file system ({}); nothing was written",
            path.display()
        ))
    } else {
        ClientError::io(path)(e)
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

/// Renames `from` to `to` unless `to` exists (atomically on Linux).
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                return Err(usage(&format!("{} appeared while the link was fetched; nothing was replaced", to.display())));
            }
            // File systems without RENAME_NOREPLACE: check, then rename.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(ClientError::io(to)(e.into())),
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(usage(&format!("{} appeared while the link was fetched; nothing was replaced", to.display())));
    }
    std::fs::rename(from, to).map_err(ClientError::io(to))
}

/// Turns what the core refused into what the user reads. A wrong password
/// and an expired link are the user's to fix; anything else means the
/// link's bytes do not verify.
fn opening_error(e: keyhold_core::Error, password: bool) -> ClientError {
    match e {
        keyhold_core::Error::DecryptionFailed if password => {
            usage("the password is wrong, or the link was altered; nothing was written")
        }
        keyhold_core::Error::LinkExpired => usage("this link has expired; nothing was written"),
        other => ClientError::Integrity(other),
    }
}

/// Opens the link at `url` and writes it to `dest` (see [`target`]). The
/// password, for a password link, comes from `password`, asked before
/// anything is fetched. Needs no account.
pub async fn fetch(url: &str, dest: &Path, password: impl FnOnce() -> Result<Zeroizing<String>>) -> Result<Fetched> {
    let url = LinkUrl::parse(url)?;
    if std::fs::symlink_metadata(dest).is_ok() && !dest.is_dir() {
        return Err(usage(&format!("{} exists; name a new path (nothing was written)", dest.display())));
    }
    let password = if url.fragment.needs_password() { Some(password()?) } else { None };
    if password.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(usage("the password is empty"));
    }
    let needs_password = url.fragment.needs_password();
    let api = Api::new(&url.base)?;
    let mut response = match api.link_object(url.id).await {
        Ok(r) => r,
        Err(ClientError::Server { status: 410, .. }) => {
            return Err(usage("this link has expired or was revoked by the person who shared it; nothing was written"));
        }
        Err(ClientError::Server { status: 404, .. }) => {
            return Err(usage("the server has no such link (check the URL); nothing was written"));
        }
        Err(e) => return Err(e),
    };

    // The header, then the keys (Argon2id off the async workers), then the
    // sealed metadata: nothing is created before it opened and is in date.
    let mut pending: Vec<u8> = Vec::new();
    while pending.len() < LINK_HEADER_LEN {
        match response.chunk().await? {
            Some(chunk) => pending.extend_from_slice(&chunk),
            None => return Err(ClientError::Integrity(keyhold_core::Error::Truncated)),
        }
    }
    let header = LinkHeader::parse(&pending).map_err(|e| opening_error(e, needs_password))?;
    if header.id != url.id {
        return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("link id")));
    }
    if matches!(header.mode, LinkMode::Password(_)) != needs_password {
        return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("link password")));
    }
    let fragment = url.fragment;
    let keys = tokio::task::spawn_blocking(move || LinkKeys::derive(&header, &fragment, password.as_ref().map(|p| p.as_bytes())))
        .await
        .map_err(|e| ClientError::Protocol(format!("deriving the link's keys failed: {e}")))?
        .map_err(|e| opening_error(e, needs_password))?;
    let metadata_end = LINK_HEADER_LEN.saturating_add(usize::try_from(header.sealed_metadata_len).unwrap_or(usize::MAX));
    while pending.len() < metadata_end {
        match response.chunk().await? {
            Some(chunk) => pending.extend_from_slice(&chunk),
            None => return Err(ClientError::Integrity(keyhold_core::Error::Truncated)),
        }
    }
    let sealed = pending.get(LINK_HEADER_LEN..metadata_end).unwrap_or_default();
    let meta = keys.open_metadata(&header, sealed, now_ms()).map_err(|e| opening_error(e, needs_password))?;
    let target = target(dest, &meta.name)?;

    // The content, segment by segment, into a temporary file or folder.
    let mut opener = keys.content_opener(&header, &meta)?;
    let mut output = Output::start(&target, &meta)?;
    let mut pieces = Vec::new();
    let mut next = pending.split_off(metadata_end);
    loop {
        opener.push(&next, &mut pieces).map_err(|e| opening_error(e, false))?;
        for (entry, bytes) in pieces.drain(..) {
            let bytes = Zeroizing::new(bytes);
            output.write(&meta, entry, &bytes)?;
        }
        match response.chunk().await? {
            Some(chunk) => next = chunk.to_vec(),
            None => break,
        }
    }
    opener.finish().map_err(|e| opening_error(e, false))?;
    output.install(&target)?;
    let files = meta.entries.iter().filter(|e| e.kind == LinkEntryKind::File).count();
    Ok(Fetched {
        path: target,
        kind: if meta.kind == LinkKind::File { "file" } else { "folder" },
        files,
        bytes: meta.content_len()?,
        expires_ms: meta.expires_ms,
        name: meta.name,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    const FRAGMENT: &str = "k.QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";

    #[test]
    fn urls_parse_strictly_and_print_back() {
        let text = format!("https://keyhold.example/prefix/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#{FRAGMENT}");
        let url = LinkUrl::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(url.base, "https://keyhold.example/prefix");
        assert_eq!(url.id, LinkId([0x5a; 16]));
        assert!(!url.fragment.needs_password());
        assert_eq!(url.to_text(), text);
        assert!(!format!("{url:?}").contains(&FRAGMENT[2..]), "Debug shows no key");
        for bad in [
            "https://keyhold.example/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a".to_owned(),
            format!("https://keyhold.example/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#{FRAGMENT}"),
            format!("https://keyhold.example/x/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#{FRAGMENT}"),
            format!("ftp://keyhold.example/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#{FRAGMENT}"),
            format!("https://keyhold.example/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#{}", &FRAGMENT[..44]),
            "https://keyhold.example/l/5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a#x.QkJC".to_owned(),
        ] {
            assert!(matches!(LinkUrl::parse(&bad), Err(ClientError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn g7_a_fetch_never_writes_over_anything() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken");
        std::fs::write(&taken, b"mine").unwrap();
        assert!(target(&taken, "x").is_err());
        assert_eq!(target(dir.path(), "new").unwrap(), dir.path().join("new"));
        assert!(target(dir.path(), "taken").is_err(), "into a folder, by name: taken too");
        assert!(target(&dir.path().join("no/such/folder"), "x").is_err());
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        assert!(rename_new(&from, &to).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
    }

    #[test]
    fn scanning_sorts_by_bytes_and_leaves_out_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/b"), b"1").unwrap();
        std::fs::write(root.join("a-b"), b"22").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("a-b", root.join("c")).unwrap();
        let source = scan(&root, 1).unwrap();
        let paths: Vec<&str> = source.meta.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a-b", "a/b"]);
        assert_eq!(source.files, [root.join("a-b"), root.join("a/b")]);
        assert_eq!(source.meta.name, "share");
        #[cfg(unix)]
        assert_eq!(source.skipped.len(), 1);
        assert!(source.meta.encode().is_ok());
    }
}
