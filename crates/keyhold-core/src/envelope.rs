//! The header every stored object starts with: magic, format version, cipher
//! suite, object type (spec: `format.md`, "Envelope"). A reader accepts exactly
//! the current version and suite; there is no legacy path (SECURITY A4), and
//! the type byte is checked before anything else is parsed (A5).

use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};

/// The four bytes every stored Keyhold object starts with.
pub const MAGIC: [u8; 4] = *b"KHLD";
/// The only format version this implementation reads or writes.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the encoded envelope header.
pub const HEADER_LEN: usize = 7;

/// Cipher suites. Suite 1 is the only one: AES-256-GCM for data,
/// BLAKE3 for hashing and key derivation, Ed25519 signatures, HPKE with
/// X-Wing (X25519 + ML-KEM-768), HKDF-SHA256 and AES-256-GCM for wrapping
/// keys to devices, Argon2id for the recovery key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Suite {
    /// See the type's documentation.
    V1 = 0x01,
}

impl Suite {
    /// The suite byte.
    #[allow(clippy::as_conversions)] // a `repr(u8)` discriminant: lossless
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// What a stored object (or a blob inside a pack) is. The value is bound into
/// every AEAD's associated data and every derived key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ObjectType {
    /// A pack of blobs with its encrypted index.
    Pack = 0x01,
    /// A signed collection revision.
    Revision = 0x02,
    /// A key wrapped to a device with HPKE.
    DeviceKeyWrap = 0x03,
    /// The account root key wrapped under the recovery key.
    RecoveryKeyWrap = 0x04,
    /// A collection key wrapped under the account root key.
    CollectionKeyWrap = 0x05,
    /// An entry of an account's device chain.
    DeviceChainEntry = 0x06,
    /// The previous epoch's account root key wrapped under the current one.
    PreviousRootKeyWrap = 0x07,
    /// A message between two devices pairing over the server's relay.
    PairingMessage = 0x08,
    /// A link share: a file or folder sealed under a key that travels only
    /// in the link's URL fragment (spec: `links.md`).
    Link = 0x0a,
    /// An entry of a shared collection's member list.
    MemberListEntry = 0x0C,
    /// A collection's keys granted to one member's devices.
    KeyGrant = 0x0D,
    /// A member device's acceptance or refusal of a key grant.
    ShareResponse = 0x0E,
    /// An account's signed claim of a human handle.
    HandleClaim = 0x0F,
    /// A blob holding one chunk of file content.
    Chunk = 0x10,
    /// A blob holding one file version's manifest.
    Manifest = 0x11,
    /// A blob holding one folder's listing.
    Listing = 0x12,
}

impl ObjectType {
    /// The type byte.
    #[allow(clippy::as_conversions)] // a `repr(u8)` discriminant: lossless
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Parses a type byte; `None` for unknown values.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => ObjectType::Pack,
            0x02 => ObjectType::Revision,
            0x03 => ObjectType::DeviceKeyWrap,
            0x04 => ObjectType::RecoveryKeyWrap,
            0x05 => ObjectType::CollectionKeyWrap,
            0x06 => ObjectType::DeviceChainEntry,
            0x07 => ObjectType::PreviousRootKeyWrap,
            0x08 => ObjectType::PairingMessage,
            0x0a => ObjectType::Link,
            0x0C => ObjectType::MemberListEntry,
            0x0D => ObjectType::KeyGrant,
            0x0E => ObjectType::ShareResponse,
            0x0F => ObjectType::HandleClaim,
            0x10 => ObjectType::Chunk,
            0x11 => ObjectType::Manifest,
            0x12 => ObjectType::Listing,
            _ => return None,
        })
    }

    /// Whether this type lives inside packs rather than as its own object.
    pub fn is_blob(self) -> bool {
        matches!(self, ObjectType::Chunk | ObjectType::Manifest | ObjectType::Listing)
    }
}

/// Writes the envelope header for `object_type` under the current suite.
pub(crate) fn write_header(w: &mut Writer, object_type: ObjectType) {
    w.bytes(&MAGIC).u8(FORMAT_VERSION).u8(Suite::V1.byte()).u8(object_type.byte());
}

/// Reads and checks an envelope header, in order: magic, version, suite, type.
pub(crate) fn read_header(r: &mut Reader<'_>, expected: ObjectType) -> Result<()> {
    if r.array::<4>()? != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let suite = r.u8()?;
    if suite != Suite::V1.byte() {
        return Err(Error::UnsupportedSuite(suite));
    }
    let found = r.u8()?;
    if found != expected.byte() {
        return Err(Error::WrongObjectType { expected, found });
    }
    Ok(())
}

/// Peeks at a stored object's type without checking anything else.
pub fn peek_type(stored: &[u8]) -> Option<ObjectType> {
    match stored {
        [m0, m1, m2, m3, _, _, t, ..] if [*m0, *m1, *m2, *m3] == MAGIC => ObjectType::from_byte(*t),
        _ => None,
    }
}
