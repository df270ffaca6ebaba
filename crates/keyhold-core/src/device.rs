//! Device keys: an Ed25519 signing key and an X-Wing (X25519 + ML-KEM-768)
//! key-encapsulation key (spec: `keys.md`, "Device keys").

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::kem::XWing;
use hpke::{Deserializable, Kem, Serializable};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::encoding::{Reader, Writer};
use crate::error::{Error, Result};
use crate::ids::DeviceId;
use crate::kdf::{context, derive};

/// Length of an encoded X-Wing public key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1216;
/// Length of encoded device public keys (Ed25519 then X-Wing).
pub const DEVICE_PUBLIC_KEYS_LEN: usize = 32 + KEM_PUBLIC_KEY_LEN;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

pub(crate) type KemPrivateKey = <XWing as Kem>::PrivateKey;
pub(crate) type KemPublicKey = <XWing as Kem>::PublicKey;

/// A device's secret keys. Never leaves the device; zeroized on drop.
pub struct DeviceSecret {
    signing: SigningKey,
    kem_seed: Zeroizing<[u8; 32]>,
    public: DevicePublicKeys,
}

impl DeviceSecret {
    /// Generates fresh device keys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut signing_seed = Zeroizing::new([0u8; 32]);
        let mut kem_seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(signing_seed.as_mut());
        rng.fill_bytes(kem_seed.as_mut());
        Self::from_seeds(&signing_seed, &kem_seed)
    }

    /// Rebuilds device keys from their two 32-byte seeds (the Ed25519 secret
    /// key and the X-Wing decapsulation key, both in their standard encodings).
    pub fn from_seeds(signing_seed: &[u8; 32], kem_seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(signing_seed);
        let kem_private = kem_private_from_seed(kem_seed);
        let public = DevicePublicKeys { signing: signing.verifying_key(), kem: XWing::sk_to_pk(&kem_private) };
        DeviceSecret { signing, kem_seed: Zeroizing::new(*kem_seed), public }
    }

    /// The two seeds, for the client's encrypted local key store only.
    pub fn expose_seeds(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        (Zeroizing::new(self.signing.to_bytes()), Zeroizing::new(*self.kem_seed))
    }

    /// This device's public keys.
    pub fn public(&self) -> &DevicePublicKeys {
        &self.public
    }

    /// This device's id.
    pub fn id(&self) -> DeviceId {
        self.public.id()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    pub(crate) fn kem_private(&self) -> KemPrivateKey {
        kem_private_from_seed(&self.kem_seed)
    }
}

impl core::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DeviceSecret({}, [REDACTED])", self.id())
    }
}

fn kem_private_from_seed(seed: &[u8; 32]) -> KemPrivateKey {
    // An X-Wing decapsulation key *is* its 32-byte seed, so every seed is valid.
    match KemPrivateKey::from_bytes(seed) {
        Ok(key) => key,
        Err(_) => unreachable!("X-Wing accepts every 32-byte seed"),
    }
}

/// A device's public keys, as published in the account's device chain.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePublicKeys {
    signing: VerifyingKey,
    kem: KemPublicKey,
}

impl DevicePublicKeys {
    /// Canonical encoding: Ed25519 public key (32) then X-Wing public key (1216).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(DEVICE_PUBLIC_KEYS_LEN);
        w.bytes(self.signing.as_bytes());
        w.bytes(&self.kem.to_bytes());
        w.into_vec()
    }

    /// Parses the canonical encoding. Rejects weak (small-order) Ed25519 keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let signing = VerifyingKey::from_bytes(&r.array::<32>()?).map_err(|_| Error::Malformed("Ed25519 public key"))?;
        // Only the canonical encoding of a point is accepted, so one key has
        // exactly one device id (`as_bytes` echoes the input, so re-compress).
        if signing.is_weak() || bytes.get(..32) != Some(signing.to_edwards().compress().as_bytes().as_slice()) {
            return Err(Error::Malformed("weak Ed25519 public key"));
        }
        let kem = KemPublicKey::from_bytes(r.take(KEM_PUBLIC_KEY_LEN)?).map_err(|_| Error::Malformed("X-Wing public key"))?;
        r.finish()?;
        Ok(DevicePublicKeys { signing, kem })
    }

    /// The device id: the first 16 bytes of
    /// `BLAKE3-derive_key("keyhold v1 2026-11 device id", public keys)`.
    pub fn id(&self) -> DeviceId {
        let mut digest = *derive(context::DEVICE_ID, &[&self.to_bytes()]).expose_secret();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        digest.zeroize();
        DeviceId(id)
    }

    /// Verifies an Ed25519 signature with strict (non-malleable) rules.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<()> {
        self.signing.verify_strict(message, &Signature::from_bytes(signature)).map_err(|_| Error::BadSignature)
    }

    pub(crate) fn kem(&self) -> &KemPublicKey {
        &self.kem
    }
}

impl core::fmt::Debug for DevicePublicKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DevicePublicKeys({})", self.id())
    }
}
