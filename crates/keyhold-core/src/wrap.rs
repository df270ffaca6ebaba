//! Key wraps (spec: `keys.md`, "Wraps"): the account root key wrapped to a
//! device with HPKE (X-Wing), and a collection key wrapped under the account
//! root key with AES-256-GCM. Every wrap binds its full context (account,
//! device or collection, purpose, epochs) as associated data (SECURITY A1).

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::XWing;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::device::{DevicePublicKeys, DeviceSecret};
use crate::encoding::{Reader, Writer};
use crate::envelope::{HEADER_LEN, ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{AccountId, CollectionId, DeviceId};
use crate::kdf::{context, derive};
use crate::secret::{AccountRootKey, CollectionKey};

/// HPKE `info` for every device wrap. FROZEN.
const DEVICE_WRAP_INFO: &[u8] = b"keyhold v1 2026-11 device key wrap";
/// Length of an X-Wing encapsulated key.
pub const ENCAPSULATED_KEY_LEN: usize = 1120;
const DEVICE_WRAP_AAD_LEN: usize = HEADER_LEN + 16 + 16 + 1 + 4;
/// Length of a stored device key wrap.
pub const DEVICE_WRAP_LEN: usize = DEVICE_WRAP_AAD_LEN + ENCAPSULATED_KEY_LEN + 32 + TAG_LEN;
const COLLECTION_WRAP_AAD_LEN: usize = HEADER_LEN + 16 + 16 + 4 + 4 + NONCE_LEN;
/// Length of a stored collection key wrap.
pub const COLLECTION_WRAP_LEN: usize = COLLECTION_WRAP_AAD_LEN + 32 + TAG_LEN;

/// What a device wrap carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WrapPurpose {
    /// The account root key of one account key epoch.
    AccountRootKey = 0x01,
}

impl WrapPurpose {
    /// The purpose byte.
    #[allow(clippy::as_conversions)] // a `repr(u8)` discriminant: lossless
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// The context a device wrap is bound to; the opener states what it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWrapContext {
    /// The account whose key is wrapped.
    pub account: AccountId,
    /// The device it is wrapped to.
    pub device: DeviceId,
    /// What the key is.
    pub purpose: WrapPurpose,
    /// The account key epoch of the wrapped key.
    pub epoch: u32,
}

impl DeviceWrapContext {
    fn encode_aad(&self) -> Writer {
        let mut w = Writer::with_capacity(DEVICE_WRAP_LEN);
        write_header(&mut w, ObjectType::DeviceKeyWrap);
        w.bytes(self.account.as_bytes()).bytes(self.device.as_bytes()).u8(self.purpose.byte()).u32(self.epoch);
        w
    }
}

/// Wraps the account root key to a device's X-Wing key (HPKE base mode,
/// suite X-Wing / HKDF-SHA256 / AES-256-GCM). The recipient must be a device
/// whose keys the caller verified, never a key taken from the server as is.
pub fn wrap_to_device(
    key: &AccountRootKey,
    recipient: &DevicePublicKeys,
    account: AccountId,
    epoch: u32,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>> {
    let ctx = DeviceWrapContext { account, device: recipient.id(), purpose: WrapPurpose::AccountRootKey, epoch };
    let mut w = ctx.encode_aad();
    let aad = w.as_slice().to_vec();
    let (encapsulated, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, XWing>(
        &OpModeS::Base,
        recipient.kem(),
        DEVICE_WRAP_INFO,
        key.expose_secret(),
        &aad,
        rng,
    )
    .map_err(|_| Error::Random)?;
    w.bytes(&encapsulated.to_bytes()).bytes(&ciphertext);
    Ok(w.into_vec())
}

/// Opens a device wrap of the account root key, checking that it was made for
/// exactly the expected account, device and epoch.
pub fn unwrap_on_device(stored: &[u8], device: &DeviceSecret, account: AccountId, epoch: u32) -> Result<AccountRootKey> {
    let expected = DeviceWrapContext { account, device: device.id(), purpose: WrapPurpose::AccountRootKey, epoch };
    let mut r = Reader::new(stored);
    read_header(&mut r, ObjectType::DeviceKeyWrap)?;
    if r.array::<16>()? != *account.as_bytes() {
        return Err(Error::ContextMismatch("account"));
    }
    if r.array::<16>()? != *expected.device.as_bytes() {
        return Err(Error::ContextMismatch("device"));
    }
    if r.u8()? != expected.purpose.byte() {
        return Err(Error::ContextMismatch("purpose"));
    }
    if r.u32()? != epoch {
        return Err(Error::ContextMismatch("epoch"));
    }
    let encapsulated = <XWing as Kem>::EncappedKey::from_bytes(r.take(ENCAPSULATED_KEY_LEN)?)
        .map_err(|_| Error::Malformed("encapsulated key"))?;
    let ciphertext = r.take(32 + TAG_LEN)?;
    r.finish()?;
    let aad = expected.encode_aad().into_vec();
    let plaintext = Zeroizing::new(
        hpke::single_shot_open::<AesGcm256, HkdfSha256, XWing>(
            &OpModeR::Base,
            &device.kem_private(),
            &encapsulated,
            DEVICE_WRAP_INFO,
            ciphertext,
            &aad,
        )
        .map_err(|_| Error::DecryptionFailed)?,
    );
    let bytes: [u8; 32] = plaintext.as_slice().try_into().map_err(|_| Error::DecryptionFailed)?;
    Ok(AccountRootKey::from_bytes(bytes))
}

/// The context a collection key wrap is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionWrapContext {
    /// The account that owns the wrapping root key.
    pub account: AccountId,
    /// The collection whose key is wrapped.
    pub collection: CollectionId,
    /// The collection key epoch of the wrapped key.
    pub collection_epoch: u32,
    /// The account key epoch of the wrapping root key.
    pub account_epoch: u32,
}

/// Wraps a collection key under the account root key (AES-256-GCM with a
/// random nonce, key derived from the root key for this purpose only).
pub fn wrap_collection_key(
    key: &CollectionKey,
    root: &AccountRootKey,
    ctx: &CollectionWrapContext,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut w = Writer::with_capacity(COLLECTION_WRAP_LEN);
    write_header(&mut w, ObjectType::CollectionKeyWrap);
    w.bytes(ctx.account.as_bytes())
        .bytes(ctx.collection.as_bytes())
        .u32(ctx.collection_epoch)
        .u32(ctx.account_epoch)
        .bytes(&nonce);
    let kek = derive(context::COLLECTION_KEY_WRAP, &[root.expose_secret()]);
    let mut sealed = key.expose_secret().to_vec();
    aead::seal(kek.expose_secret(), nonce, w.as_slice(), &mut sealed)?;
    w.bytes(&sealed);
    Ok(w.into_vec())
}

/// Opens a collection key wrap made for exactly the expected context.
pub fn unwrap_collection_key(stored: &[u8], root: &AccountRootKey, ctx: &CollectionWrapContext) -> Result<CollectionKey> {
    let mut r = Reader::new(stored);
    read_header(&mut r, ObjectType::CollectionKeyWrap)?;
    if r.array::<16>()? != *ctx.account.as_bytes() {
        return Err(Error::ContextMismatch("account"));
    }
    if r.array::<16>()? != *ctx.collection.as_bytes() {
        return Err(Error::ContextMismatch("collection"));
    }
    if r.u32()? != ctx.collection_epoch {
        return Err(Error::ContextMismatch("collection epoch"));
    }
    if r.u32()? != ctx.account_epoch {
        return Err(Error::ContextMismatch("account epoch"));
    }
    let nonce = r.array::<NONCE_LEN>()?;
    let mut sealed = Zeroizing::new(r.take(32 + TAG_LEN)?.to_vec());
    r.finish()?;
    let aad = stored.get(..COLLECTION_WRAP_AAD_LEN).ok_or(Error::Truncated)?;
    let kek = derive(context::COLLECTION_KEY_WRAP, &[root.expose_secret()]);
    let plaintext = aead::open(kek.expose_secret(), nonce, aad, &mut sealed)?;
    let bytes: [u8; 32] = (&*plaintext).try_into().map_err(|_| Error::DecryptionFailed)?;
    Ok(CollectionKey::from_bytes(bytes))
}

const PREVIOUS_ROOT_WRAP_AAD_LEN: usize = HEADER_LEN + 16 + 4 + NONCE_LEN;
/// Length of a stored previous-root-key wrap.
pub const PREVIOUS_ROOT_WRAP_LEN: usize = PREVIOUS_ROOT_WRAP_AAD_LEN + 32 + TAG_LEN;

/// Wraps the root key of epoch `epoch - 1` under the root key of `epoch`, so
/// a device that holds only the newest root key can still read data written
/// under older epochs (and a revoked device, which never holds the newer
/// key, cannot follow the chain forward).
pub fn wrap_previous_root(
    previous: &AccountRootKey,
    current: &AccountRootKey,
    account: AccountId,
    epoch: u32,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>> {
    if epoch == 0 {
        return Err(Error::ContextMismatch("epoch 0 has no previous root key"));
    }
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut w = Writer::with_capacity(PREVIOUS_ROOT_WRAP_LEN);
    write_header(&mut w, ObjectType::PreviousRootKeyWrap);
    w.bytes(account.as_bytes()).u32(epoch).bytes(&nonce);
    let kek = derive(context::PREVIOUS_ROOT_WRAP, &[current.expose_secret()]);
    let mut sealed = previous.expose_secret().to_vec();
    aead::seal(kek.expose_secret(), nonce, w.as_slice(), &mut sealed)?;
    w.bytes(&sealed);
    Ok(w.into_vec())
}

/// Opens a previous-root-key wrap made under `current`, the root key of
/// `epoch`; returns the root key of `epoch - 1`.
pub fn unwrap_previous_root(stored: &[u8], current: &AccountRootKey, account: AccountId, epoch: u32) -> Result<AccountRootKey> {
    let mut r = Reader::new(stored);
    read_header(&mut r, ObjectType::PreviousRootKeyWrap)?;
    if r.array::<16>()? != *account.as_bytes() {
        return Err(Error::ContextMismatch("account"));
    }
    if r.u32()? != epoch {
        return Err(Error::ContextMismatch("epoch"));
    }
    let nonce = r.array::<NONCE_LEN>()?;
    let mut sealed = Zeroizing::new(r.take(32 + TAG_LEN)?.to_vec());
    r.finish()?;
    let aad = stored.get(..PREVIOUS_ROOT_WRAP_AAD_LEN).ok_or(Error::Truncated)?;
    let kek = derive(context::PREVIOUS_ROOT_WRAP, &[current.expose_secret()]);
    let plaintext = aead::open(kek.expose_secret(), nonce, aad, &mut sealed)?;
    let bytes: [u8; 32] = (&*plaintext).try_into().map_err(|_| Error::DecryptionFailed)?;
    Ok(AccountRootKey::from_bytes(bytes))
}

/// The account key epoch a stored collection key wrap was made under (a
/// cleartext field; opening the wrap authenticates it).
pub fn collection_wrap_account_epoch(stored: &[u8]) -> Option<u32> {
    let at = HEADER_LEN + 16 + 16 + 4;
    stored.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
}
