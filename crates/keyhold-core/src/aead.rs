//! AES-256-GCM through `ring`, the fastest reviewed implementation on the
//! target machines (~7 GB/s per core with AES-NI). Every key used here is
//! either unique per message (blob keys, pack keys) or used with random
//! 96-bit nonces for a small number of messages (key wraps, revisions); the
//! spec's "Nonces" section argues each case.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::{Error, Result};

/// Tag length of AES-256-GCM.
pub const TAG_LEN: usize = 16;
/// Nonce length of AES-256-GCM.
pub const NONCE_LEN: usize = 12;

fn key(key: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key).map(LessSafeKey::new).map_err(|_| Error::DecryptionFailed)
}

/// Encrypts `buf[start..]` in place and appends the tag, leaving the bytes
/// before `start` as they are (a blob sealed straight into its pack).
pub(crate) fn seal_tail(k: &[u8; 32], nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>, start: usize) -> Result<()> {
    let tail = buf.get_mut(start..).ok_or(Error::Truncated)?;
    let tag = key(k)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), tail)
        .map_err(|_| Error::LimitExceeded("message too long for AES-GCM"))?;
    buf.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Encrypts `buf` in place and appends the tag.
pub(crate) fn seal(k: &[u8; 32], nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    key(k)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
        .map_err(|_| Error::LimitExceeded("message too long for AES-GCM"))
}

/// Decrypts `buf` (ciphertext with tag) in place; on success returns the
/// plaintext prefix. On failure the buffer holds no usable plaintext.
pub(crate) fn open<'a>(k: &[u8; 32], nonce: [u8; NONCE_LEN], aad: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8]> {
    key(k)?.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf).map_err(|_| Error::DecryptionFailed)
}
