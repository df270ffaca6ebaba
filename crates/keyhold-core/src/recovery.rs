//! The recovery key (spec: `keys.md`, "Recovery key"): 256 random bits shown
//! once to the user as 14 groups of 4 Crockford base32 characters (the last
//! 24 bits a checksum that catches typing mistakes). The account root key is
//! wrapped under `Argon2id(recovery secret)`; the Argon2id parameters travel
//! with the wrap but are checked against a floor and a ceiling pinned here,
//! before any work is done (SECURITY A4).

use data_encoding::{BitOrder, Encoding, Specification, Translate, Wrap};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::encoding::{Reader, Writer};
use crate::envelope::{HEADER_LEN, ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::kdf::{context, derive};
use crate::secret::AccountRootKey;

const SALT_LEN: usize = 16;
const CHECKSUM_LEN: usize = 3;
const RECOVERY_WRAP_AAD_LEN: usize = HEADER_LEN + 16 + 4 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN;
/// Length of a stored recovery key wrap.
pub const RECOVERY_WRAP_LEN: usize = RECOVERY_WRAP_AAD_LEN + 32 + TAG_LEN;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What this client writes: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };
    /// The weakest parameters this client accepts from stored data.
    pub const FLOOR: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 2, parallelism: 1 };
    /// The costliest parameters this client accepts (a server must not be able
    /// to make a client burn gigabytes or minutes).
    /// (At the ceiling one unwrap takes ~0.5 GiB and a few seconds.)
    pub const CEILING: KdfParams = KdfParams { memory_kib: 512 * 1024, iterations: 8, parallelism: 4 };

    /// Checks the parameters against the pinned floor and ceiling.
    pub fn check(&self) -> Result<()> {
        let (floor, ceiling) = (Self::FLOOR, Self::CEILING);
        if self.memory_kib < floor.memory_kib || self.iterations < floor.iterations || self.parallelism < floor.parallelism {
            return Err(Error::KdfTooWeak);
        }
        if self.memory_kib > ceiling.memory_kib || self.iterations > ceiling.iterations || self.parallelism > ceiling.parallelism
        {
            return Err(Error::KdfTooCostly);
        }
        Ok(())
    }
}

/// A recovery key: 32 secret bytes. Zeroized on drop, redacted in `Debug`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RecoveryKey([u8; 32]);

impl core::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RecoveryKey([REDACTED])")
    }
}

fn crockford() -> Result<Encoding> {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.bit_order = BitOrder::MostSignificantFirst;
    spec.check_trailing_bits = true;
    // Crockford's decoding rules: case-insensitive, O reads as 0, I and L as 1.
    spec.translate = Translate { from: "abcdefghjkmnpqrstvwxyzoOiIlL".into(), to: "ABCDEFGHJKMNPQRSTVWXYZ000111".into() };
    spec.wrap = Wrap { width: 0, separator: String::new() };
    spec.ignore.push_str("- \t\r\n");
    spec.encoding().map_err(|_| Error::InvalidRecoveryKey("encoding table"))
}

fn checksum(secret: &[u8; 32]) -> [u8; CHECKSUM_LEN] {
    let digest = derive(context::RECOVERY_CHECKSUM, &[secret]);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest.expose_secret()[..CHECKSUM_LEN]);
    out
}

impl RecoveryKey {
    /// Draws a fresh recovery key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        RecoveryKey(bytes)
    }

    /// Wraps existing secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RecoveryKey(bytes)
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The form shown to the user: `XXXX-XXXX-…` (14 groups of 4).
    pub fn display(&self) -> Result<Zeroizing<String>> {
        let mut raw = Zeroizing::new(Vec::with_capacity(32 + CHECKSUM_LEN));
        raw.extend_from_slice(&self.0);
        raw.extend_from_slice(&checksum(&self.0));
        let plain = Zeroizing::new(crockford()?.encode(raw.as_ref()));
        let mut out = Zeroizing::new(String::with_capacity(70));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Parses what the user typed: case, dashes and spaces do not matter,
    /// and O/I/L are read as 0/1/1. The checksum must match.
    pub fn parse(text: &str) -> Result<Self> {
        let raw = Zeroizing::new(
            crockford()?
                .decode(text.trim().as_bytes())
                .map_err(|_| Error::InvalidRecoveryKey("unexpected character or length"))?,
        );
        let (Some(secret), Some(sum)) = (raw.first_chunk::<32>(), raw.get(32..)) else {
            return Err(Error::InvalidRecoveryKey("wrong length"));
        };
        if raw.len() != 32 + CHECKSUM_LEN {
            return Err(Error::InvalidRecoveryKey("wrong length"));
        }
        let key = RecoveryKey(*secret);
        if checksum(&key.0)[..] != *sum {
            return Err(Error::InvalidRecoveryKey("checksum mismatch"));
        }
        Ok(key)
    }

    fn wrapping_key(&self, salt: &[u8; SALT_LEN], params: &KdfParams) -> Result<crate::secret::SubKey> {
        params.check()?;
        let argon_params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
            .map_err(|_| Error::Malformed("Argon2id parameters"))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
        let mut stretched = Zeroizing::new([0u8; 32]);
        argon.hash_password_into(&self.0, salt, stretched.as_mut()).map_err(|_| Error::Malformed("Argon2id parameters"))?;
        Ok(derive(context::RECOVERY_WRAP, &[stretched.as_ref()]))
    }

    /// Wraps the account root key under this recovery key.
    pub fn wrap(
        &self,
        root: &AccountRootKey,
        account: AccountId,
        epoch: u32,
        params: KdfParams,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut nonce);
        let kek = self.wrapping_key(&salt, &params)?;
        let mut w = Writer::with_capacity(RECOVERY_WRAP_LEN);
        write_header(&mut w, ObjectType::RecoveryKeyWrap);
        w.bytes(account.as_bytes())
            .u32(epoch)
            .u32(params.memory_kib)
            .u32(params.iterations)
            .u32(params.parallelism)
            .bytes(&salt)
            .bytes(&nonce);
        let mut sealed = root.expose_secret().to_vec();
        aead::seal(kek.expose_secret(), nonce, w.as_slice(), &mut sealed)?;
        w.bytes(&sealed);
        Ok(w.into_vec())
    }

    /// Opens a recovery wrap for the expected account and epoch. The stored
    /// Argon2id parameters are checked before Argon2id runs.
    pub fn unwrap(&self, stored: &[u8], account: AccountId, epoch: u32) -> Result<AccountRootKey> {
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::RecoveryKeyWrap)?;
        if r.array::<16>()? != *account.as_bytes() {
            return Err(Error::ContextMismatch("account"));
        }
        if r.u32()? != epoch {
            return Err(Error::ContextMismatch("epoch"));
        }
        let params = KdfParams { memory_kib: r.u32()?, iterations: r.u32()?, parallelism: r.u32()? };
        let salt = r.array::<SALT_LEN>()?;
        let nonce = r.array::<NONCE_LEN>()?;
        let mut sealed = Zeroizing::new(r.take(32 + TAG_LEN)?.to_vec());
        r.finish()?;
        params.check()?;
        let aad = stored.get(..RECOVERY_WRAP_AAD_LEN).ok_or(Error::Truncated)?;
        let kek = self.wrapping_key(&salt, &params)?;
        let plaintext = aead::open(kek.expose_secret(), nonce, aad, &mut sealed)?;
        let bytes: [u8; 32] = (&*plaintext).try_into().map_err(|_| Error::DecryptionFailed)?;
        Ok(AccountRootKey::from_bytes(bytes))
    }
}
