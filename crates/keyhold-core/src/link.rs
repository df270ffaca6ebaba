//! Link shares (spec: `links.md`): a file or a folder sealed under keys
//! derived from a 32-byte secret that travels only in the link's URL
//! fragment, which browsers and the CLI never send to a server (SECURITY
//! E1). A password link derives its keys from Argon2id(password) *and* that
//! secret, so the server, which never sees the fragment, holds nothing it
//! could brute-force.
//!
//! A link object is a cleartext header (envelope type 0x0a, link id, key
//! mode, Argon2id parameters, sealed metadata length), the sealed metadata
//! (expiry, kind, name, entries: path, kind, size, mode) and the content of
//! every file entry, concatenated, Padmé-padded, and encrypted as a STREAM
//! (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption
//! and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015) of 64 KiB segments
//! with AES-256-GCM, nonces built as in age (an 11-byte segment counter and
//! a last-segment flag). The header is the associated data of every AEAD.
//!
//! The key schedule uses HKDF-SHA256 rather than BLAKE3 so that a browser
//! can open a link with WebCrypto alone. Nothing here reads a clock: the
//! caller passes the time against which the encrypted expiry is checked.
//!
//! The creator of a link is untrusted by whoever opens it: entry paths are
//! checked (SECURITY G7) like every name the core decodes, and the content
//! is released segment by segment only once authenticated (B5).

use data_encoding::BASE64URL_NOPAD;
use ring::hkdf;
use zeroize::Zeroizing;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::encoding::{Reader, Writer};
use crate::envelope::{ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::LinkId;
use crate::padding::padme;
use crate::recovery::KdfParams;
use crate::secret::{LinkSecret, SubKey};
use crate::tree::{MAX_NAME_LEN, validate_name};

/// Length of a link object's cleartext header.
pub const LINK_HEADER_LEN: usize = 7 + 16 + 1 + 4 + 4 + 4 + 4;
/// Plaintext bytes per content segment (every segment but the last holds
/// exactly this many).
pub const LINK_SEGMENT_LEN: usize = 64 * 1024;
/// Largest padded metadata plaintext.
pub const MAX_LINK_METADATA: usize = 16 * 1024 * 1024;
/// Most entries one link may hold.
pub const MAX_LINK_ENTRIES: usize = 100_000;
/// Longest entry path, in bytes.
pub const MAX_LINK_PATH: usize = 4096;
/// Largest content (sum of the file sizes) a link may describe: 1 TiB.
pub const MAX_LINK_CONTENT: u64 = 1 << 40;
/// Length of the secret a link's fragment carries.
pub const LINK_SECRET_LEN: usize = 32;

const SEGMENT_U64: u64 = 64 * 1024;
/// Bytes of the smallest sealed metadata: the shortest encoding (an empty
/// folder with a one-byte name), padded, plus the tag.
const MIN_SEALED_METADATA: usize = 8 + 1 + 2 + 1 + 4 + TAG_LEN;
const MODE_KEY: u8 = 0x01;
const MODE_PASSWORD: u8 = 0x02;
const KIND_FILE: u8 = 0x01;
const KIND_FOLDER: u8 = 0x02;
const ARGON2_SALT_LEN: usize = 16;

/// HKDF-SHA256 `info` strings, one per purpose. FROZEN: part of format
/// version 1 (spec: README, "Frozen context strings").
pub(crate) mod context {
    pub const PASSWORD_SALT: &str = "keyhold v1 2026-12 link password salt";
    pub const METADATA_KEY: &str = "keyhold v1 2026-12 link metadata key";
    pub const CONTENT_KEY: &str = "keyhold v1 2026-12 link content key";
}

/// How a link's keys are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// From the fragment's secret alone.
    Key,
    /// From Argon2id(password) with these parameters and the fragment's secret.
    Password(KdfParams),
}

/// What a link shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// One file: the link's single entry.
    File,
    /// A folder: the entries are its contents, by path below it.
    Folder,
}

/// What one entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEntryKind {
    /// A file, whose bytes are part of the content.
    File,
    /// A folder (listed so that empty folders survive).
    Folder,
}

impl LinkKind {
    fn byte(self) -> u8 {
        match self {
            LinkKind::File => KIND_FILE,
            LinkKind::Folder => KIND_FOLDER,
        }
    }
}

impl LinkEntryKind {
    fn byte(self) -> u8 {
        match self {
            LinkEntryKind::File => KIND_FILE,
            LinkEntryKind::Folder => KIND_FOLDER,
        }
    }
}

/// One file or folder of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    /// For a file link, the file's name; for a folder link, the path below
    /// the folder: names joined by `/`, each a valid name (SECURITY G7).
    pub path: String,
    /// File or folder.
    pub kind: LinkEntryKind,
    /// Bytes of content (0 for a folder).
    pub size: u64,
    /// Permission bits (at most `0o777`).
    pub mode: u32,
}

/// A link's metadata, sealed in the object: only whoever holds the
/// fragment (and the password) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMeta {
    /// When the link stops opening, in Unix milliseconds. Checked by every
    /// opener against its own clock, whatever the server says.
    pub expires_ms: i64,
    /// File or folder.
    pub kind: LinkKind,
    /// The file's or folder's name.
    pub name: String,
    /// A file link: exactly one file entry, named `name`. A folder link:
    /// its contents, sorted by the bytes of their paths, each folder listed
    /// before what it holds.
    pub entries: Vec<LinkEntry>,
}

/// The fragment of a link's URL: whether a password is needed, and the
/// secret. Encoded `k.` or `p.` followed by the secret in unpadded base64url.
pub struct LinkFragment {
    password: bool,
    secret: LinkSecret,
}

impl core::fmt::Debug for LinkFragment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LinkFragment(password: {}, [REDACTED])", self.password)
    }
}

impl LinkFragment {
    /// A fragment with a fresh secret.
    pub fn generate(password: bool, rng: &mut impl rand_core::CryptoRng) -> Self {
        LinkFragment { password, secret: LinkSecret::generate(rng) }
    }

    /// A fragment of known secret bytes.
    pub fn new(password: bool, secret: LinkSecret) -> Self {
        LinkFragment { password, secret }
    }

    /// Whether the link needs a password.
    pub fn needs_password(&self) -> bool {
        self.password
    }

    /// The secret.
    pub fn secret(&self) -> &LinkSecret {
        &self.secret
    }

    /// The fragment's text (without `#`).
    pub fn encode(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(45));
        out.push_str(if self.password { "p." } else { "k." });
        out.push_str(&BASE64URL_NOPAD.encode(self.secret.expose_secret()));
        out
    }

    /// Parses a fragment (without `#`): exactly `k.` or `p.` and 43
    /// characters of canonical unpadded base64url.
    pub fn parse(text: &str) -> Result<Self> {
        let (password, rest) = match text.split_at_checked(2) {
            Some(("k.", rest)) => (false, rest),
            Some(("p.", rest)) => (true, rest),
            _ => return Err(Error::InvalidLink("the fragment must start with k. or p.")),
        };
        let bytes = Zeroizing::new(
            BASE64URL_NOPAD.decode(rest.as_bytes()).map_err(|_| Error::InvalidLink("the fragment is not base64url"))?,
        );
        let secret: [u8; LINK_SECRET_LEN] =
            bytes.as_slice().try_into().map_err(|_| Error::InvalidLink("the fragment has the wrong length"))?;
        Ok(LinkFragment { password, secret: LinkSecret::from_bytes(secret) })
    }
}

/// A link object's cleartext header: everything the server can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHeader {
    /// The link's id (also in its URL's path).
    pub id: LinkId,
    /// How its keys are made.
    pub mode: LinkMode,
    /// Length of the sealed metadata that follows the header.
    pub sealed_metadata_len: u32,
}

impl LinkHeader {
    /// The header's bytes: the associated data of every AEAD of the link.
    pub fn encode(&self) -> [u8; LINK_HEADER_LEN] {
        let mut w = Writer::with_capacity(LINK_HEADER_LEN);
        write_header(&mut w, ObjectType::Link);
        w.bytes(self.id.as_bytes());
        let params = match self.mode {
            LinkMode::Key => {
                w.u8(MODE_KEY);
                KdfParams { memory_kib: 0, iterations: 0, parallelism: 0 }
            }
            LinkMode::Password(params) => {
                w.u8(MODE_PASSWORD);
                params
            }
        };
        w.u32(params.memory_kib).u32(params.iterations).u32(params.parallelism).u32(self.sealed_metadata_len);
        let mut out = [0u8; LINK_HEADER_LEN];
        out.copy_from_slice(w.as_slice());
        out
    }

    /// Parses the header at the start of `stored` (the rest is not looked
    /// at). Checks, in order: envelope; mode (`Malformed`); the Argon2id
    /// parameters (all zero for a key link, else `Malformed`; within the
    /// pinned floor and ceiling for a password link, SECURITY A4); the
    /// sealed metadata length (`Malformed` outside its bounds).
    pub fn parse(stored: &[u8]) -> Result<Self> {
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::Link)?;
        let id = LinkId(r.array::<16>()?);
        let mode = r.u8()?;
        let params = KdfParams { memory_kib: r.u32()?, iterations: r.u32()?, parallelism: r.u32()? };
        let sealed_metadata_len = r.u32()?;
        let mode = match mode {
            MODE_KEY if params == (KdfParams { memory_kib: 0, iterations: 0, parallelism: 0 }) => LinkMode::Key,
            MODE_KEY => return Err(Error::Malformed("Argon2id parameters of a key link")),
            MODE_PASSWORD => {
                params.check()?;
                LinkMode::Password(params)
            }
            _ => return Err(Error::Malformed("link key mode")),
        };
        let sealed = crate::encoding::usize_from(sealed_metadata_len);
        if !(MIN_SEALED_METADATA..=MAX_LINK_METADATA + TAG_LEN).contains(&sealed) {
            return Err(Error::Malformed("sealed link metadata length"));
        }
        Ok(LinkHeader { id, mode, sealed_metadata_len })
    }

    /// Length of a whole link object with this header whose padded
    /// content is `padded_content_len` bytes.
    pub fn object_len(&self, padded_content_len: u64) -> Option<u64> {
        let prefix = u64::try_from(LINK_HEADER_LEN).ok()?.checked_add(u64::from(self.sealed_metadata_len))?;
        prefix.checked_add(sealed_content_len(padded_content_len)?)
    }

    /// Whether an object of `total_len` bytes with this header is shaped
    /// like a link object (what a server can check without any key): the
    /// content part is the length of some STREAM ciphertext.
    pub fn plausible_len(&self, total_len: u64) -> bool {
        let prefix = u64::try_from(LINK_HEADER_LEN).unwrap_or(u64::MAX).saturating_add(u64::from(self.sealed_metadata_len));
        let Some(content) = total_len.checked_sub(prefix) else { return false };
        let full = SEGMENT_U64 + 16;
        let last = content % full;
        content >= 16 && (last == 0 || last >= 16)
    }
}

/// Number of content segments for `padded_len` bytes of padded content.
fn segment_count(padded_len: u64) -> u64 {
    padded_len.div_ceil(SEGMENT_U64).max(1)
}

/// Sealed length of `padded_len` bytes of padded content (a tag per segment).
pub fn sealed_content_len(padded_len: u64) -> Option<u64> {
    padded_len.checked_add(segment_count(padded_len).checked_mul(u64::try_from(TAG_LEN).ok()?)?)
}

/// The nonce of content segment `index`: 11-byte big-endian counter, then
/// `0x01` for the last segment and `0x00` for every other (as in age).
fn segment_nonce(index: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    for (slot, byte) in nonce.iter_mut().skip(3).zip(index.to_be_bytes()) {
        *slot = byte;
    }
    if let Some(flag) = nonce.last_mut() {
        *flag = u8::from(last);
    }
    nonce
}

/// The `ring` HKDF output-length adapter.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869): extract with `salt`, expand with `info` to fill `out`.
fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &str, out: &mut [u8]) -> Result<()> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info.as_bytes()];
    prk.expand(&info, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| Error::LimitExceeded("HKDF output length"))
}

fn hkdf_key(salt: &[u8], ikm: &[u8], info: &str) -> Result<SubKey> {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf_sha256(salt, ikm, info, out.as_mut())?;
    Ok(SubKey::from_bytes(*out))
}

/// A link's two keys: one seals the metadata, one the content.
pub struct LinkKeys {
    metadata: SubKey,
    content: SubKey,
}

impl core::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LinkKeys([REDACTED])")
    }
}

impl LinkKeys {
    /// Derives the keys of the link `header` describes from its fragment
    /// (and, for a password link, the password's bytes). The fragment's
    /// kind must match the header's mode (`ContextMismatch`), a password
    /// link needs a password and a key link takes none (`ContextMismatch`).
    /// For a password link this runs Argon2id: seconds of CPU, call it off
    /// an async executor.
    pub fn derive(header: &LinkHeader, fragment: &LinkFragment, password: Option<&[u8]>) -> Result<Self> {
        let secret = fragment.secret.expose_secret();
        let salt = header.id.as_bytes();
        let ikm = match (header.mode, fragment.password, password) {
            (LinkMode::Key, false, None) => Zeroizing::new(secret.to_vec()),
            (LinkMode::Password(params), true, Some(password)) => {
                params.check()?;
                let mut argon_salt = Zeroizing::new([0u8; ARGON2_SALT_LEN]);
                hkdf_sha256(salt, secret, context::PASSWORD_SALT, argon_salt.as_mut())?;
                let argon_params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
                    .map_err(|_| Error::Malformed("Argon2id parameters"))?;
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
                let mut ikm = Zeroizing::new(vec![0u8; 64]);
                let (stretched, tail) = ikm.split_at_mut(32);
                argon
                    .hash_password_into(password, argon_salt.as_ref(), stretched)
                    .map_err(|_| Error::Malformed("Argon2id parameters"))?;
                tail.copy_from_slice(secret);
                ikm
            }
            (LinkMode::Key, true, _) | (LinkMode::Password(_), false, _) => {
                return Err(Error::ContextMismatch("the fragment and the link disagree on whether a password is needed"));
            }
            (LinkMode::Key, false, Some(_)) | (LinkMode::Password(_), true, None) => {
                return Err(Error::ContextMismatch("link password"));
            }
        };
        Ok(LinkKeys {
            metadata: hkdf_key(salt, &ikm, context::METADATA_KEY)?,
            content: hkdf_key(salt, &ikm, context::CONTENT_KEY)?,
        })
    }

    /// Opens the sealed metadata that follows `header` (exactly
    /// `header.sealed_metadata_len` bytes), then checks its encrypted expiry
    /// against `now_ms` (`LinkExpired` at or after it).
    pub fn open_metadata(&self, header: &LinkHeader, sealed: &[u8], now_ms: i64) -> Result<LinkMeta> {
        if sealed.len() != crate::encoding::usize_from(header.sealed_metadata_len) {
            return Err(Error::Truncated);
        }
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plaintext = aead::open(self.metadata.expose_secret(), [0u8; NONCE_LEN], &header.encode(), &mut buf)?;
        let meta = LinkMeta::decode_padded(plaintext)?;
        if now_ms >= meta.expires_ms {
            return Err(Error::LinkExpired);
        }
        Ok(meta)
    }

    /// A content opener for the link whose (opened) metadata is `meta`.
    pub fn content_opener(&self, header: &LinkHeader, meta: &LinkMeta) -> Result<ContentOpener> {
        let content_len = meta.content_len()?;
        let padded_len = padme(content_len);
        let files =
            meta.entries.iter().enumerate().filter(|(_, e)| e.kind == LinkEntryKind::File).map(|(i, e)| (i, e.size)).collect();
        Ok(ContentOpener {
            key: SubKey::from_bytes(*self.content.expose_secret()),
            aad: header.encode(),
            segments: segment_count(padded_len),
            padded_len,
            content_len,
            next: 0,
            position: 0,
            buf: Zeroizing::new(Vec::new()),
            files,
            file: 0,
            offset: 0,
        })
    }
}

fn read_kind(r: &mut Reader<'_>, what: &'static str) -> Result<u8> {
    match r.u8()? {
        b @ (KIND_FILE | KIND_FOLDER) => Ok(b),
        _ => Err(Error::Malformed(what)),
    }
}

/// Checks a path below a link's folder: at most [`MAX_LINK_PATH`] bytes,
/// names joined by `/`, each a valid name (no empty name, `.`, `..`, `\`
/// or NUL; SECURITY G7).
pub fn validate_link_path(path: &str) -> Result<()> {
    if path.len() > MAX_LINK_PATH {
        return Err(Error::InvalidName);
    }
    path.split('/').try_for_each(validate_name)
}

impl LinkMeta {
    /// Checks every rule the format sets (spec: `links.md`, "Metadata").
    fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.entries.len() > MAX_LINK_ENTRIES {
            return Err(Error::LimitExceeded("too many link entries"));
        }
        let mut previous: Option<&str> = None;
        let mut folders = std::collections::BTreeSet::new();
        for entry in &self.entries {
            validate_link_path(&entry.path)?;
            if entry.mode > 0o777 {
                return Err(Error::Malformed("link entry mode"));
            }
            if entry.kind == LinkEntryKind::Folder && entry.size != 0 {
                return Err(Error::Malformed("a folder entry with a size"));
            }
            if previous.is_some_and(|p| p.as_bytes() >= entry.path.as_bytes()) {
                return Err(Error::Malformed("link entries out of order or repeated"));
            }
            if let Some((parent, _)) = entry.path.rsplit_once('/') {
                if !folders.contains(parent) {
                    return Err(Error::Malformed("a link entry whose folder is not listed before it"));
                }
            }
            if entry.kind == LinkEntryKind::Folder {
                folders.insert(entry.path.as_str());
            }
            previous = Some(&entry.path);
        }
        if self.kind == LinkKind::File {
            match self.entries.as_slice() {
                [only] if only.kind == LinkEntryKind::File && only.path == self.name => {}
                _ => return Err(Error::Malformed("a file link must hold exactly its one file")),
            }
        }
        self.content_len()?;
        Ok(())
    }

    /// The sum of the file sizes: the content's length before padding.
    pub fn content_len(&self) -> Result<u64> {
        let total = self.entries.iter().try_fold(0u64, |sum, e| sum.checked_add(e.size));
        total.filter(|t| *t <= MAX_LINK_CONTENT).ok_or(Error::LimitExceeded("link content larger than 1 TiB"))
    }

    /// The unpadded encoding.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut w = Writer::default();
        w.i64(self.expires_ms).u8(self.kind.byte());
        w.short_bytes(self.name.as_bytes())?;
        w.u32(crate::encoding::len_u32(self.entries.len(), "too many link entries")?);
        for e in &self.entries {
            w.u8(e.kind.byte());
            w.short_bytes(e.path.as_bytes())?;
            w.u64(e.size).u32(e.mode);
        }
        Ok(w.into_vec())
    }

    /// The encoding followed by zero bytes up to its Padmé length: the
    /// plaintext that is sealed.
    pub fn encode_padded(&self) -> Result<Vec<u8>> {
        let mut out = self.encode()?;
        let padded = padme(u64::try_from(out.len()).map_err(|_| Error::LimitExceeded("link metadata"))?);
        let padded = usize::try_from(padded).map_err(|_| Error::LimitExceeded("link metadata"))?;
        if padded > MAX_LINK_METADATA {
            return Err(Error::LimitExceeded("link metadata larger than 16 MiB"));
        }
        out.resize(padded, 0);
        Ok(out)
    }

    /// Decodes a padded metadata plaintext: the encoding, then zero bytes
    /// up to its Padmé length exactly (`Malformed` otherwise).
    pub fn decode_padded(plaintext: &[u8]) -> Result<Self> {
        if plaintext.len() > MAX_LINK_METADATA {
            return Err(Error::LimitExceeded("link metadata larger than 16 MiB"));
        }
        let mut r = Reader::new(plaintext);
        let expires_ms = r.i64()?;
        let kind = match read_kind(&mut r, "link kind")? {
            KIND_FILE => LinkKind::File,
            _ => LinkKind::Folder,
        };
        let name = utf8(r.short_bytes(MAX_NAME_LEN, "link name too long")?)?;
        let count = crate::encoding::usize_from(r.u32()?);
        // The smallest entry: kind, empty path length, size, mode.
        if count > MAX_LINK_ENTRIES || count.saturating_mul(1 + 2 + 8 + 4) > r.remaining() {
            return Err(if count > MAX_LINK_ENTRIES { Error::LimitExceeded("too many link entries") } else { Error::Truncated });
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = match read_kind(&mut r, "link entry kind")? {
                KIND_FILE => LinkEntryKind::File,
                _ => LinkEntryKind::Folder,
            };
            let path = utf8(r.short_bytes(MAX_LINK_PATH, "link entry path too long")?)?;
            entries.push(LinkEntry { path, kind, size: r.u64()?, mode: r.u32()? });
        }
        let used = plaintext.len() - r.remaining();
        let padding = r.rest();
        let expected = padme(u64::try_from(used).map_err(|_| Error::LimitExceeded("link metadata"))?);
        if u64::try_from(plaintext.len()).ok() != Some(expected) || padding.iter().any(|b| *b != 0) {
            return Err(Error::Malformed("link metadata padding"));
        }
        let meta = LinkMeta { expires_ms, kind, name, entries };
        meta.validate()?;
        Ok(meta)
    }
}

fn utf8(bytes: &[u8]) -> Result<String> {
    core::str::from_utf8(bytes).map(str::to_owned).map_err(|_| Error::Malformed("link name or path is not UTF-8"))
}

/// Seals a link as it is read: the caller feeds the content of every file
/// entry, in entry order, and appends what comes out to the object.
pub struct LinkWriter {
    key: SubKey,
    aad: [u8; LINK_HEADER_LEN],
    buf: Zeroizing<Vec<u8>>,
    next: u64,
    fed: u64,
    content_len: u64,
    padded_len: u64,
}

impl core::fmt::Debug for LinkWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LinkWriter({} of {} bytes)", self.fed, self.content_len)
    }
}

impl LinkWriter {
    /// Starts link `id`: returns the writer and the object's first bytes
    /// (header and sealed metadata). `password` is the password's bytes and
    /// the Argon2id parameters to store; it must be given exactly when the
    /// fragment says so, and must not be empty.
    pub fn new(
        id: LinkId,
        fragment: &LinkFragment,
        password: Option<(&[u8], KdfParams)>,
        meta: &LinkMeta,
    ) -> Result<(Self, Vec<u8>)> {
        if password.is_some_and(|(p, _)| p.is_empty()) {
            return Err(Error::Malformed("empty link password"));
        }
        let plaintext = Zeroizing::new(meta.encode_padded()?);
        let sealed_len = crate::encoding::len_u32(plaintext.len() + TAG_LEN, "link metadata")?;
        let mode = password.map_or(LinkMode::Key, |(_, params)| LinkMode::Password(params));
        let header = LinkHeader { id, mode, sealed_metadata_len: sealed_len };
        let keys = LinkKeys::derive(&header, fragment, password.map(|(p, _)| p))?;
        let aad = header.encode();
        let mut sealed = plaintext.to_vec();
        aead::seal(keys.metadata.expose_secret(), [0u8; NONCE_LEN], &aad, &mut sealed)?;
        let mut prefix = Vec::with_capacity(LINK_HEADER_LEN + sealed.len());
        prefix.extend_from_slice(&aad);
        prefix.extend_from_slice(&sealed);
        let content_len = meta.content_len()?;
        let writer = LinkWriter {
            key: SubKey::from_bytes(*keys.content.expose_secret()),
            aad,
            buf: Zeroizing::new(Vec::with_capacity(LINK_SEGMENT_LEN)),
            next: 0,
            fed: 0,
            content_len,
            padded_len: padme(content_len),
        };
        Ok((writer, prefix))
    }

    /// Length of the whole object this writer produces.
    pub fn object_len(&self) -> Option<u64> {
        LinkHeader::parse(&self.aad).ok()?.object_len(self.padded_len)
    }

    fn seal_segment(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        self.buf.clear();
        let mut sealed = out.split_off(start);
        aead::seal(self.key.expose_secret(), segment_nonce(self.next, last), &self.aad, &mut sealed)?;
        out.extend_from_slice(&sealed);
        self.next += 1;
        Ok(())
    }

    /// Whether the segment being filled is the last one.
    fn filling_last(&self) -> bool {
        self.next + 1 >= segment_count(self.padded_len)
    }

    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !data.is_empty() {
            let take = (LINK_SEGMENT_LEN - self.buf.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buf.extend_from_slice(head);
            data = rest;
            if self.buf.len() == LINK_SEGMENT_LEN && !self.filling_last() {
                self.seal_segment(false, out)?;
            }
        }
        Ok(())
    }

    /// Feeds the next content bytes; every segment they complete is
    /// appended to `out`, sealed.
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let len = u64::try_from(data.len()).map_err(|_| Error::LimitExceeded("link content"))?;
        match self.fed.checked_add(len) {
            Some(fed) if fed <= self.content_len => self.fed = fed,
            _ => return Err(Error::LimitExceeded("more link content than the metadata lists")),
        }
        self.push(data, out)
    }

    /// Pads the content and seals the last segment(s). Fails unless exactly
    /// the content the metadata lists was fed.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.fed != self.content_len {
            return Err(Error::LimitExceeded("less link content than the metadata lists"));
        }
        let zeros = [0u8; LINK_SEGMENT_LEN];
        let mut padding = self.padded_len - self.content_len;
        while padding > 0 {
            let n = usize::try_from(padding).unwrap_or(usize::MAX).min(LINK_SEGMENT_LEN);
            self.push(zeros.get(..n).unwrap_or_default(), out)?;
            padding -= u64::try_from(n).unwrap_or(padding);
        }
        self.seal_segment(true, out)
    }
}

/// Authenticates and decrypts a link's content, segment by segment, and
/// hands out each file entry's bytes: nothing is released before its
/// segment authenticated (SECURITY B5), and the link is complete only when
/// [`ContentOpener::finish`] succeeds.
pub struct ContentOpener {
    key: SubKey,
    aad: [u8; LINK_HEADER_LEN],
    segments: u64,
    padded_len: u64,
    content_len: u64,
    next: u64,
    /// Plaintext position of the next segment.
    position: u64,
    buf: Zeroizing<Vec<u8>>,
    /// (entry index, size) of each file entry, in order.
    files: Vec<(usize, u64)>,
    /// The file entry being filled, and how much of it is.
    file: usize,
    offset: u64,
}

impl core::fmt::Debug for ContentOpener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ContentOpener(segment {} of {})", self.next, self.segments)
    }
}

/// A piece of a file entry's content: the entry's index in
/// [`LinkMeta::entries`] and the next bytes of it.
pub type LinkPiece = (usize, Vec<u8>);

impl ContentOpener {
    /// Ciphertext length of the segment expected next.
    fn expected_len(&self) -> usize {
        let last = self.next + 1 == self.segments;
        let plain = if last { self.padded_len - self.next * SEGMENT_U64 } else { SEGMENT_U64 };
        usize::try_from(plain).unwrap_or(usize::MAX).saturating_add(TAG_LEN)
    }

    /// Feeds the next bytes of the sealed content; appends to `out` the
    /// file bytes of every segment they complete and that authenticates.
    /// Bytes beyond the last segment fail with `TrailingBytes`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<LinkPiece>) -> Result<()> {
        while !data.is_empty() {
            if self.next >= self.segments {
                return Err(Error::TrailingBytes);
            }
            let want = self.expected_len();
            let take = want.saturating_sub(self.buf.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buf.extend_from_slice(head);
            data = rest;
            if self.buf.len() == want {
                let last = self.next + 1 == self.segments;
                let plain = aead::open(self.key.expose_secret(), segment_nonce(self.next, last), &self.aad, &mut self.buf)?;
                let plain = Zeroizing::new(plain.to_vec());
                self.buf.clear();
                self.next += 1;
                self.release(&plain, out)?;
            }
        }
        Ok(())
    }

    /// Splits an authenticated segment's plaintext over the file entries;
    /// what lies past the content must be zero padding.
    fn release(&mut self, plain: &[u8], out: &mut Vec<LinkPiece>) -> Result<()> {
        let len = u64::try_from(plain.len()).map_err(|_| Error::LimitExceeded("segment"))?;
        let content_here = self.content_len.saturating_sub(self.position).min(len);
        self.position += len;
        let (mut content, padding) = plain.split_at(usize::try_from(content_here).unwrap_or(plain.len()).min(plain.len()));
        if padding.iter().any(|b| *b != 0) {
            return Err(Error::Malformed("link content padding"));
        }
        while !content.is_empty() {
            let Some(&(entry, size)) = self.files.get(self.file) else {
                return Err(Error::Malformed("link content beyond its files"));
            };
            let room = size - self.offset;
            if room == 0 {
                self.file += 1;
                self.offset = 0;
                continue;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(content.len());
            let (piece, rest) = content.split_at(n);
            out.push((entry, piece.to_vec()));
            self.offset += u64::try_from(n).unwrap_or(room);
            content = rest;
        }
        Ok(())
    }

    /// Confirms that every segment was read. A caller writing files moves
    /// them into place only after this succeeds.
    pub fn finish(self) -> Result<()> {
        if self.next < self.segments || !self.buf.is_empty() {
            return Err(Error::Truncated);
        }
        Ok(())
    }
}

/// Seals a whole link in memory: header, sealed metadata, then the sealed
/// content of `contents` (one per file entry, in entry order).
pub fn seal_link(
    id: LinkId,
    fragment: &LinkFragment,
    password: Option<(&[u8], KdfParams)>,
    meta: &LinkMeta,
    contents: &[&[u8]],
) -> Result<Vec<u8>> {
    let (mut writer, mut out) = LinkWriter::new(id, fragment, password, meta)?;
    for content in contents {
        writer.update(content, &mut out)?;
    }
    writer.finish(&mut out)?;
    Ok(out)
}

/// Opens a whole link object fetched as link `id`, in the order a
/// streaming reader does: header (and its id: `ContextMismatch`), keys,
/// metadata (with its expiry against `now_ms`), content. Returns the
/// metadata and each entry's content (empty for folders).
pub fn open_link(
    stored: &[u8],
    id: LinkId,
    fragment: &LinkFragment,
    password: Option<&[u8]>,
    now_ms: i64,
) -> Result<(LinkMeta, Vec<Vec<u8>>)> {
    let header = LinkHeader::parse(stored)?;
    if header.id != id {
        return Err(Error::ContextMismatch("link id"));
    }
    let keys = LinkKeys::derive(&header, fragment, password)?;
    let sealed_end = LINK_HEADER_LEN + crate::encoding::usize_from(header.sealed_metadata_len);
    let sealed = stored.get(LINK_HEADER_LEN..sealed_end).ok_or(Error::Truncated)?;
    let meta = keys.open_metadata(&header, sealed, now_ms)?;
    let mut opener = keys.content_opener(&header, &meta)?;
    let mut pieces = Vec::new();
    opener.push(stored.get(sealed_end..).unwrap_or_default(), &mut pieces)?;
    opener.finish()?;
    let mut contents = vec![Vec::new(); meta.entries.len()];
    for (entry, bytes) in pieces {
        if let Some(c) = contents.get_mut(entry) {
            c.extend_from_slice(&bytes);
        }
    }
    Ok((meta, contents))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    const ID: LinkId = LinkId([0x5a; 16]);
    const NOW: i64 = 1_800_000_000_000;

    fn fragment(password: bool) -> LinkFragment {
        LinkFragment::new(password, LinkSecret::from_bytes([0x42; 32]))
    }

    fn file_meta(size: u64) -> LinkMeta {
        LinkMeta {
            expires_ms: NOW + 1000,
            kind: LinkKind::File,
            name: "report.pdf".into(),
            entries: vec![LinkEntry { path: "report.pdf".into(), kind: LinkEntryKind::File, size, mode: 0o644 }],
        }
    }

    fn folder_meta() -> LinkMeta {
        let e = |path: &str, kind, size| LinkEntry { path: path.into(), kind, size, mode: 0o755 };
        LinkMeta {
            expires_ms: NOW + 1000,
            kind: LinkKind::Folder,
            name: "photos".into(),
            entries: vec![
                e("a.txt", LinkEntryKind::File, 3),
                e("empty", LinkEntryKind::Folder, 0),
                e("sub", LinkEntryKind::Folder, 0),
                e("sub/b.bin", LinkEntryKind::File, 70_000),
                e("sub/zero", LinkEntryKind::File, 0),
            ],
        }
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 251).unwrap() ^ seed).collect()
    }

    #[test]
    fn round_trips_for_every_size_around_segment_boundaries() {
        for size in [0usize, 1, 65_535, 65_536, 65_537, 131_072, 200_000] {
            let content = bytes(size, 7);
            let meta = file_meta(u64::try_from(size).unwrap());
            let stored = seal_link(ID, &fragment(false), None, &meta, &[&content]).unwrap();
            let header = LinkHeader::parse(&stored).unwrap();
            let padded = padme(u64::try_from(size).unwrap());
            assert_eq!(header.object_len(padded), Some(u64::try_from(stored.len()).unwrap()));
            assert!(header.plausible_len(u64::try_from(stored.len()).unwrap()));
            let (opened, contents) = open_link(&stored, ID, &fragment(false), None, NOW).unwrap();
            assert_eq!(opened, meta);
            assert_eq!(contents, vec![content]);
        }
    }

    #[test]
    fn folders_split_content_over_their_files_whatever_the_feed() {
        let meta = folder_meta();
        let (a, b) = (b"abc".to_vec(), bytes(70_000, 3));
        let stored = seal_link(ID, &fragment(false), None, &meta, &[&a, &b]).unwrap();
        let (_, contents) = open_link(&stored, ID, &fragment(false), None, NOW).unwrap();
        assert_eq!(contents, vec![a.clone(), vec![], vec![], b.clone(), vec![]]);
        // Fed one byte at a time, the same object comes out.
        let (mut writer, mut out) = LinkWriter::new(ID, &fragment(false), None, &meta).unwrap();
        for byte in a.iter().chain(&b) {
            writer.update(&[*byte], &mut out).unwrap();
        }
        writer.finish(&mut out).unwrap();
        assert_eq!(out, stored);
        // Opened in odd pieces, the same content comes out.
        let header = LinkHeader::parse(&stored).unwrap();
        let keys = LinkKeys::derive(&header, &fragment(false), None).unwrap();
        let start = LINK_HEADER_LEN + usize::try_from(header.sealed_metadata_len).unwrap();
        let meta = keys.open_metadata(&header, &stored[LINK_HEADER_LEN..start], NOW).unwrap();
        let mut opener = keys.content_opener(&header, &meta).unwrap();
        let mut pieces = Vec::new();
        for piece in stored[start..].chunks(999) {
            opener.push(piece, &mut pieces).unwrap();
        }
        opener.finish().unwrap();
        let joined: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(joined, [a, b].concat());
    }

    #[test]
    fn writer_refuses_more_or_less_content_than_listed() {
        let meta = file_meta(5);
        let (mut w, mut out) = LinkWriter::new(ID, &fragment(false), None, &meta).unwrap();
        assert!(w.update(b"123456", &mut out).is_err());
        let (mut w, mut out) = LinkWriter::new(ID, &fragment(false), None, &meta).unwrap();
        w.update(b"1234", &mut out).unwrap();
        assert!(w.finish(&mut out).is_err());
    }

    #[test]
    fn b1_b4_any_flipped_truncated_or_extended_byte_fails() {
        let content = bytes(140_000, 1);
        let stored = seal_link(ID, &fragment(false), None, &file_meta(140_000), &[&content]).unwrap();
        for at in [8, 23, 39, 40, 60, stored.len() - 70_000, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 1;
            assert!(open_link(&bad, ID, &fragment(false), None, NOW).is_err(), "flip at {at}");
        }
        let cut = &stored[..stored.len() - 16];
        assert_eq!(open_link(cut, ID, &fragment(false), None, NOW).unwrap_err(), Error::Truncated);
        let mut long = stored.clone();
        long.push(0);
        assert_eq!(open_link(&long, ID, &fragment(false), None, NOW).unwrap_err(), Error::TrailingBytes);
    }

    #[test]
    fn b2_swapped_segments_fail() {
        let content = bytes(3 * LINK_SEGMENT_LEN, 9);
        let stored = seal_link(ID, &fragment(false), None, &file_meta(3 * 65_536), &[&content]).unwrap();
        let header = LinkHeader::parse(&stored).unwrap();
        let start = LINK_HEADER_LEN + usize::try_from(header.sealed_metadata_len).unwrap();
        let seg = LINK_SEGMENT_LEN + TAG_LEN;
        let mut swapped = stored.clone();
        let (first, second) = (stored[start..start + seg].to_vec(), stored[start + seg..start + 2 * seg].to_vec());
        swapped[start..start + seg].copy_from_slice(&second);
        swapped[start + seg..start + 2 * seg].copy_from_slice(&first);
        assert_eq!(open_link(&swapped, ID, &fragment(false), None, NOW).unwrap_err(), Error::DecryptionFailed);
    }

    #[test]
    fn e1_expiry_id_mode_and_password_are_checked() {
        let stored = seal_link(ID, &fragment(false), None, &file_meta(1), &[b"x"]).unwrap();
        assert_eq!(open_link(&stored, ID, &fragment(false), None, NOW + 1000).unwrap_err(), Error::LinkExpired);
        assert!(matches!(open_link(&stored, LinkId([1; 16]), &fragment(false), None, NOW), Err(Error::ContextMismatch(_))));
        assert!(matches!(open_link(&stored, ID, &fragment(true), Some(b"pw"), NOW), Err(Error::ContextMismatch(_))));
        let other = LinkFragment::new(false, LinkSecret::from_bytes([0x43; 32]));
        assert_eq!(open_link(&stored, ID, &other, None, NOW).unwrap_err(), Error::DecryptionFailed);

        let params = KdfParams::FLOOR;
        let stored = seal_link(ID, &fragment(true), Some((b"correct horse", params)), &file_meta(1), &[b"x"]).unwrap();
        assert_eq!(LinkHeader::parse(&stored).unwrap().mode, LinkMode::Password(params));
        assert!(open_link(&stored, ID, &fragment(true), Some(b"correct horse"), NOW).is_ok());
        assert_eq!(open_link(&stored, ID, &fragment(true), Some(b"wrong horse"), NOW).unwrap_err(), Error::DecryptionFailed);
        assert!(matches!(open_link(&stored, ID, &fragment(true), None, NOW), Err(Error::ContextMismatch(_))));
        // The server cannot weaken or inflate the parameters (A4).
        let mut weak = stored.clone();
        weak[24..28].copy_from_slice(&1024u32.to_be_bytes());
        assert_eq!(open_link(&weak, ID, &fragment(true), Some(b"correct horse"), NOW).unwrap_err(), Error::KdfTooWeak);
        let mut costly = stored;
        costly[24..28].copy_from_slice(&(4u32 << 20).to_be_bytes());
        assert_eq!(open_link(&costly, ID, &fragment(true), Some(b"correct horse"), NOW).unwrap_err(), Error::KdfTooCostly);
    }

    #[test]
    fn g7_unsafe_paths_and_shapes_are_refused() {
        for path in ["..", "a/../b", "/abs", "a//b", "a/", "back\\slash", "nul\0", ".", ""] {
            let mut meta = folder_meta();
            meta.entries = vec![LinkEntry { path: path.into(), kind: LinkEntryKind::File, size: 0, mode: 0o644 }];
            assert!(meta.encode().is_err(), "{path:?}");
        }
        let mut meta = folder_meta();
        meta.entries.swap(0, 1);
        assert!(meta.encode().is_err(), "unsorted");
        let mut meta = folder_meta();
        meta.entries.remove(2); // "sub" itself
        assert!(meta.encode().is_err(), "parent missing");
        let mut meta = file_meta(1);
        meta.entries[0].path = "other".into();
        assert!(meta.encode().is_err(), "file link naming another file");
        let mut meta = file_meta(1);
        meta.entries[0].mode = 0o4755;
        assert!(meta.encode().is_err(), "setuid");
    }

    #[test]
    fn metadata_has_one_encoding() {
        let meta = folder_meta();
        let padded = meta.encode_padded().unwrap();
        assert_eq!(LinkMeta::decode_padded(&padded).unwrap(), meta);
        let mut bad = padded.clone();
        *bad.last_mut().unwrap() = 1;
        assert!(LinkMeta::decode_padded(&bad).is_err());
        let mut short = padded;
        short.pop();
        assert!(LinkMeta::decode_padded(&short).is_err());
    }

    #[test]
    fn fragments_are_canonical() {
        let f = fragment(true);
        let text = f.encode();
        assert!(text.starts_with("p."));
        assert_eq!(text.len(), 45);
        let back = LinkFragment::parse(&text).unwrap();
        assert!(back.needs_password());
        assert_eq!(back.secret().expose_secret(), f.secret().expose_secret());
        for bad in ["", "k.", "x.QkJC", &text[..44], &format!("{}A", &*text), &text.replace("p.", "k:")] {
            assert!(matches!(LinkFragment::parse(bad), Err(Error::InvalidLink(_))), "{bad:?}");
        }
        // A non-canonical last character (unused bits set) is refused.
        let mut loose = text.to_string();
        let last = loose.pop().unwrap();
        let bumped = if last == 'A' { 'B' } else { 'A' };
        loose.push(bumped);
        assert!(
            LinkFragment::parse(&loose).is_err()
                || LinkFragment::parse(&loose).unwrap().secret().expose_secret() != f.secret().expose_secret()
        );
    }

    #[test]
    fn hkdf_matches_rustcrypto() {
        let mut ours = [0u8; 42];
        hkdf_sha256(b"salt", b"input key material", "info", &mut ours).unwrap();
        let mut theirs = [0u8; 42];
        ::hkdf::Hkdf::<sha2::Sha256>::new(Some(b"salt"), b"input key material").expand(b"info", &mut theirs).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn nonces_follow_age() {
        assert_eq!(segment_nonce(0, false), [0; 12]);
        assert_eq!(segment_nonce(1, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(segment_nonce(0x0102, false)[9..], [1, 2, 0]);
    }
}
