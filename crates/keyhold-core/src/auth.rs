//! What devices sign to the server, and what binds a device to an account
//! (spec: `protocol.md`, "Authentication").
//!
//! - A device proves itself by signing a fresh server challenge; the message
//!   names the purpose, the account and the device, so a signature cannot be
//!   replayed elsewhere.
//! - The recovery key has its own Ed25519 key (derived from the recovery
//!   secret) that the server knows only by its public half; it signs the
//!   enrollment of a recovering device. Its `locator` lets a device find its
//!   account from the recovery key alone, without telling the server anything
//!   a guess could confirm (the secret has 256 bits).
//! - A device certificate is a MAC under a key derived from the account root
//!   key over the account id and the device's public keys: the server, which
//!   never holds the root key, cannot certify a device of its own (SECURITY
//!   A2, D1). It is the interim anchor until the signed device chain.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::device::{DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::encoding::Writer;
use crate::error::{Error, Result};
use crate::ids::{AccountId, DeviceId};
use crate::kdf::{context, derive};
use crate::recovery::RecoveryKey;
use crate::secret::AccountRootKey;

/// Signature contexts. FROZEN.
const AUTH_CONTEXT: &[u8] = b"keyhold v1 2026-11 device authentication\0";
const CREATE_CONTEXT: &[u8] = b"keyhold v1 2026-11 account creation\0";
const ENROLL_CONTEXT: &[u8] = b"keyhold v1 2026-11 recovery enrollment\0";

/// Length of a server challenge.
pub const CHALLENGE_LEN: usize = 32;

fn auth_message(account: AccountId, device: DeviceId, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut w = Writer::with_capacity(AUTH_CONTEXT.len() + 64);
    w.bytes(AUTH_CONTEXT).bytes(account.as_bytes()).bytes(device.as_bytes()).bytes(challenge);
    w.into_vec()
}

fn create_message(account: AccountId, device: &DevicePublicKeys, recovery_auth_key: &[u8; 32], locator: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::with_capacity(CREATE_CONTEXT.len() + 1400);
    w.bytes(CREATE_CONTEXT).bytes(account.as_bytes()).bytes(&device.to_bytes()).bytes(recovery_auth_key).bytes(locator);
    w.into_vec()
}

fn enroll_message(account: AccountId, device: &DevicePublicKeys, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut w = Writer::with_capacity(ENROLL_CONTEXT.len() + 1400);
    w.bytes(ENROLL_CONTEXT).bytes(account.as_bytes()).bytes(&device.to_bytes()).bytes(challenge);
    w.into_vec()
}

impl DeviceSecret {
    /// Signs a server challenge to open a session.
    pub fn sign_challenge(&self, account: AccountId, challenge: &[u8; CHALLENGE_LEN]) -> [u8; SIGNATURE_LEN] {
        self.sign(&auth_message(account, self.id(), challenge))
    }

    /// Signs the creation of `account` with this device as its first device.
    pub fn sign_account_creation(
        &self,
        account: AccountId,
        recovery_auth_key: &[u8; 32],
        locator: &[u8; 32],
    ) -> [u8; SIGNATURE_LEN] {
        self.sign(&create_message(account, self.public(), recovery_auth_key, locator))
    }
}

impl DevicePublicKeys {
    /// Checks a challenge signature (server side).
    pub fn verify_challenge(
        &self,
        account: AccountId,
        challenge: &[u8; CHALLENGE_LEN],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<()> {
        self.verify(&auth_message(account, self.id(), challenge), signature)
    }

    /// Checks an account-creation signature (server side).
    pub fn verify_account_creation(
        &self,
        account: AccountId,
        recovery_auth_key: &[u8; 32],
        locator: &[u8; 32],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<()> {
        self.verify(&create_message(account, self, recovery_auth_key, locator), signature)
    }
}

impl RecoveryKey {
    fn auth_signing_key(&self) -> SigningKey {
        let seed = Zeroizing::new(*derive(context::RECOVERY_AUTH, &[self.expose_secret()]).expose_secret());
        SigningKey::from_bytes(&seed)
    }

    /// The public half of the recovery key's signing key, registered with the
    /// server at account creation.
    pub fn auth_public_key(&self) -> [u8; 32] {
        self.auth_signing_key().verifying_key().to_bytes()
    }

    /// Where the server files this account's recovery wrap.
    pub fn locator(&self) -> [u8; 32] {
        *derive(context::RECOVERY_LOCATOR, &[self.expose_secret()]).expose_secret()
    }

    /// Signs the enrollment of a recovering device.
    pub fn sign_enrollment(
        &self,
        account: AccountId,
        device: &DevicePublicKeys,
        challenge: &[u8; CHALLENGE_LEN],
    ) -> [u8; SIGNATURE_LEN] {
        self.auth_signing_key().sign(&enroll_message(account, device, challenge)).to_bytes()
    }
}

/// Checks a recovery-key enrollment signature (server side).
pub fn verify_enrollment(
    recovery_auth_key: &[u8; 32],
    account: AccountId,
    device: &DevicePublicKeys,
    challenge: &[u8; CHALLENGE_LEN],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<()> {
    let key = VerifyingKey::from_bytes(recovery_auth_key).map_err(|_| Error::Malformed("recovery auth key"))?;
    key.verify_strict(&enroll_message(account, device, challenge), &Signature::from_bytes(signature))
        .map_err(|_| Error::BadSignature)
}

/// Certifies that `device` belongs to `account` at account key epoch `epoch`
/// (only holders of that epoch's root key can).
pub fn certify_device(root: &AccountRootKey, account: AccountId, epoch: u32, device: &DevicePublicKeys) -> [u8; 32] {
    let key = derive(context::DEVICE_CERTIFICATE, &[root.expose_secret(), account.as_bytes(), &epoch.to_be_bytes()]);
    *blake3::keyed_hash(key.expose_secret(), &device.to_bytes()).as_bytes()
}

/// Checks a device certificate in constant time.
pub fn check_device_certificate(
    root: &AccountRootKey,
    account: AccountId,
    epoch: u32,
    device: &DevicePublicKeys,
    certificate: &[u8],
) -> Result<()> {
    let expected = certify_device(root, account, epoch, device);
    if bool::from(expected.as_slice().ct_eq(certificate)) { Ok(()) } else { Err(Error::BadSignature) }
}
