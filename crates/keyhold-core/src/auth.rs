//! What devices sign to the server (spec: `protocol.md`, "Authentication"),
//! and the recovery key's public identity (spec: `devices.md`).
//!
//! - A device proves itself by signing a fresh server challenge; the message
//!   names the purpose, the account and the device, so a signature cannot be
//!   replayed elsewhere.
//! - The recovery key acts as a device of its own ([`RecoveryKey::device`]):
//!   its Ed25519 key signs device-chain entries (a recovering device's
//!   enrollment), its X-Wing key receives the root keys of later epochs. Its
//!   `locator` lets a device find its account from the recovery key alone,
//!   without telling the server anything a guess could confirm (the secret
//!   has 256 bits).

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::device::{DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::encoding::Writer;
use crate::error::Result;
use crate::ids::{AccountId, DeviceId};
use crate::kdf::{context, derive};
use crate::recovery::RecoveryKey;

/// Signature contexts. FROZEN.
const AUTH_CONTEXT: &[u8] = b"keyhold v1 2026-11 device authentication\0";

/// Length of a server challenge.
pub const CHALLENGE_LEN: usize = 32;

fn auth_message(account: AccountId, device: DeviceId, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let mut w = Writer::with_capacity(AUTH_CONTEXT.len() + 64);
    w.bytes(AUTH_CONTEXT).bytes(account.as_bytes()).bytes(device.as_bytes()).bytes(challenge);
    w.into_vec()
}

impl DeviceSecret {
    /// Signs a server challenge to open a session.
    pub fn sign_challenge(&self, account: AccountId, challenge: &[u8; CHALLENGE_LEN]) -> [u8; SIGNATURE_LEN] {
        self.sign(&auth_message(account, self.id(), challenge))
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
}

impl RecoveryKey {
    /// The recovery key as a device: its Ed25519 key (the same as
    /// [`RecoveryKey::auth_public_key`]'s) signs device-chain entries, and its
    /// X-Wing key receives the root keys of epochs started after the
    /// recovery key was made (spec: `devices.md`, "Recovery").
    pub fn device(&self) -> DeviceSecret {
        let signing = Zeroizing::new(*derive(context::RECOVERY_AUTH, &[self.expose_secret()]).expose_secret());
        let kem = Zeroizing::new(*derive(context::RECOVERY_KEM, &[self.expose_secret()]).expose_secret());
        DeviceSecret::from_seeds(&signing, &kem)
    }

    /// The public half of the recovery key's signing key, registered with the
    /// server at account creation.
    pub fn auth_public_key(&self) -> [u8; 32] {
        let seed = Zeroizing::new(*derive(context::RECOVERY_AUTH, &[self.expose_secret()]).expose_secret());
        SigningKey::from_bytes(&seed).verifying_key().to_bytes()
    }

    /// Where the server files this account's recovery wrap.
    pub fn locator(&self) -> [u8; 32] {
        *derive(context::RECOVERY_LOCATOR, &[self.expose_secret()]).expose_secret()
    }
}
