//! The device chain (spec: `devices.md`): an account's device set as an
//! append-only, hash-linked list of signed entries. The first entry creates
//! the account; later ones add a device, revoke one, or replace the recovery
//! key. Each entry is signed by a device enrolled at that point or by the
//! recovery key, so a server can neither add a device of its own (SECURITY
//! A2, D1) nor drop or reorder entries without breaking the links.
//!
//! Entries that start a new account key epoch (creation, revocation, a new
//! recovery key) carry a commitment to that epoch's root key. A device
//! accepts a root key only if it matches the signed commitment: HPKE base
//! mode lets anyone wrap a key of their choosing to a device, so the wrap
//! alone proves nothing (SECURITY A1).
//!
//! [`DeviceChain`] is the verifier. It starts from the creation entry, takes
//! entries one at a time, and keeps what a client needs: the devices (with
//! who added or revoked them, and when), the recovery key's public keys, the
//! epoch commitments, and the head it has verified.

use std::collections::BTreeMap;

use crate::device::{DEVICE_PUBLIC_KEYS_LEN, DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::encoding::{Reader, Writer};
use crate::envelope::{ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{AccountId, CollectionId, DeviceId, ObjectId};
use crate::kdf::{context, derive};
use crate::secret::AccountRootKey;

/// Signature context of chain entries. FROZEN.
const SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-11 device chain entry\0";
/// Longest device name, in bytes of UTF-8.
pub const MAX_DEVICE_NAME: usize = 64;
/// Most collections one revocation may list.
pub const MAX_CUTOFFS: usize = 100_000;
/// `prev` of the creation entry.
pub const CHAIN_GENESIS_PREV: ObjectId = ObjectId([0u8; 32]);
/// Longest stored chain entry.
pub const MAX_CHAIN_ENTRY_LEN: usize = 128 + 2 * DEVICE_PUBLIC_KEYS_LEN + MAX_DEVICE_NAME + 64 + MAX_CUTOFFS * 24;

const KIND_CREATE: u8 = 0x01;
const KIND_ADD_DEVICE: u8 = 0x02;
const KIND_REVOKE_DEVICE: u8 = 0x03;
const KIND_ROTATE_RECOVERY: u8 = 0x04;
const SIGNER_DEVICE: u8 = 0x01;
const SIGNER_RECOVERY: u8 = 0x02;

/// Commitment to the root key of one account key epoch:
/// `BLAKE3-derive_key("keyhold v1 2026-11 root key commitment", root ‖ account ‖ epoch)`.
/// It reveals nothing about the key, and binds it to its account and epoch.
pub fn root_commitment(root: &AccountRootKey, account: AccountId, epoch: u32) -> [u8; 32] {
    *derive(context::ROOT_COMMITMENT, &[root.expose_secret(), account.as_bytes(), &epoch.to_be_bytes()]).expose_secret()
}

/// Who signed an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signer {
    /// A device enrolled at that point of the chain.
    Device(DeviceId),
    /// The account's recovery key in force at that point.
    RecoveryKey,
}

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a handful of entries per account, verified once: size does not matter
pub enum ChainChange {
    /// Creates the account with its first device (signed by that device).
    Create {
        /// The first device.
        device: DevicePublicKeys,
        /// Its name.
        name: String,
        /// The recovery key's public keys ([`crate::RecoveryKey::device`]).
        recovery: DevicePublicKeys,
        /// Commitment to the root key of epoch 0.
        root_commitment: [u8; 32],
    },
    /// Enrolls a device.
    AddDevice {
        /// Its public keys.
        device: DevicePublicKeys,
        /// Its name.
        name: String,
    },
    /// Revokes a device and starts a new account key epoch.
    RevokeDevice {
        /// The device.
        device: DeviceId,
        /// Commitment to the new epoch's root key.
        root_commitment: [u8; 32],
        /// For each collection, the last revision the revoked device may
        /// have written (the head the revoking device verified). Revisions it
        /// signs beyond these, or in collections not listed, are refused.
        cutoffs: BTreeMap<CollectionId, u64>,
    },
    /// Replaces the recovery key and starts a new account key epoch.
    RotateRecovery {
        /// The new recovery key's public keys.
        recovery: DevicePublicKeys,
        /// Commitment to the new epoch's root key.
        root_commitment: [u8; 32],
    },
}

impl ChainChange {
    fn kind(&self) -> u8 {
        match self {
            ChainChange::Create { .. } => KIND_CREATE,
            ChainChange::AddDevice { .. } => KIND_ADD_DEVICE,
            ChainChange::RevokeDevice { .. } => KIND_REVOKE_DEVICE,
            ChainChange::RotateRecovery { .. } => KIND_ROTATE_RECOVERY,
        }
    }

    /// Whether this change starts a new account key epoch.
    pub fn starts_epoch(&self) -> bool {
        !matches!(self, ChainChange::AddDevice { .. })
    }
}

/// One entry of a device chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// The account.
    pub account: AccountId,
    /// 0 for the creation entry, then +1 each.
    pub seq: u64,
    /// Id of the previous stored entry ([`CHAIN_GENESIS_PREV`] for seq 0).
    pub prev: ObjectId,
    /// When the signer made it, ms since the Unix epoch (its claim).
    pub time_ms: i64,
    /// The account key epoch in force after this entry.
    pub account_epoch: u32,
    /// Who signs it.
    pub signer: Signer,
    /// What it does.
    pub change: ChainChange,
}

/// Checks a device name: 1 to [`MAX_DEVICE_NAME`] bytes of UTF-8 with no
/// control characters.
pub fn validate_device_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_DEVICE_NAME || name.chars().any(char::is_control) {
        return Err(Error::Malformed("device name"));
    }
    Ok(())
}

impl ChainEntry {
    /// The creation entry (`seq` 0) of `account`: `first` is its first
    /// device (and signs it), `recovery` the recovery key's device keys, and
    /// the entry commits to `root` as the root key of epoch 0.
    pub fn create(
        account: AccountId,
        first: &DeviceSecret,
        name: &str,
        recovery: &DevicePublicKeys,
        root: &AccountRootKey,
        time_ms: i64,
    ) -> Self {
        ChainEntry {
            account,
            seq: 0,
            prev: CHAIN_GENESIS_PREV,
            time_ms,
            account_epoch: 0,
            signer: Signer::Device(first.id()),
            change: ChainChange::Create {
                device: first.public().clone(),
                name: name.to_owned(),
                recovery: recovery.clone(),
                root_commitment: root_commitment(root, account, 0),
            },
        }
    }

    fn encode_unsigned(&self) -> Result<Writer> {
        let mut w = Writer::with_capacity(512 + DEVICE_PUBLIC_KEYS_LEN * 2);
        write_header(&mut w, ObjectType::DeviceChainEntry);
        w.bytes(self.account.as_bytes()).u64(self.seq).bytes(self.prev.as_bytes()).i64(self.time_ms).u32(self.account_epoch);
        w.u8(self.change.kind());
        match self.signer {
            Signer::Device(id) => w.u8(SIGNER_DEVICE).bytes(id.as_bytes()),
            Signer::RecoveryKey => w.u8(SIGNER_RECOVERY).bytes(&[0u8; 16]),
        };
        match &self.change {
            ChainChange::Create { device, name, recovery, root_commitment } => {
                validate_device_name(name)?;
                w.bytes(&device.to_bytes());
                w.short_bytes(name.as_bytes())?;
                w.bytes(&recovery.to_bytes()).bytes(root_commitment);
            }
            ChainChange::AddDevice { device, name } => {
                validate_device_name(name)?;
                w.bytes(&device.to_bytes());
                w.short_bytes(name.as_bytes())?;
            }
            ChainChange::RevokeDevice { device, root_commitment, cutoffs } => {
                if cutoffs.len() > MAX_CUTOFFS {
                    return Err(Error::LimitExceeded("too many collections in one revocation"));
                }
                w.bytes(device.as_bytes()).bytes(root_commitment);
                w.u32(u32::try_from(cutoffs.len()).map_err(|_| Error::LimitExceeded("cutoffs"))?);
                for (collection, seq) in cutoffs {
                    w.bytes(collection.as_bytes()).u64(*seq);
                }
            }
            ChainChange::RotateRecovery { recovery, root_commitment } => {
                w.bytes(&recovery.to_bytes()).bytes(root_commitment);
            }
        }
        Ok(w)
    }

    /// Encodes and signs the entry. `signer` must hold the keys the entry's
    /// `signer` field names (for [`Signer::RecoveryKey`], the recovery key's
    /// [`crate::RecoveryKey::device`]).
    pub fn seal(&self, signer: &DeviceSecret) -> Result<Vec<u8>> {
        if let Signer::Device(id) = self.signer {
            if id != signer.id() {
                return Err(Error::ContextMismatch("signer"));
            }
        }
        let mut w = self.encode_unsigned()?;
        let signature = signer.sign(&signed_message(w.as_slice()));
        w.bytes(&signature);
        Ok(w.into_vec())
    }

    /// Parses a stored entry without verifying its signature or its place in
    /// a chain (that is [`DeviceChain::append`]'s job). Returns the entry and
    /// its signature.
    pub fn parse(stored: &[u8]) -> Result<(ChainEntry, [u8; SIGNATURE_LEN])> {
        if stored.len() > MAX_CHAIN_ENTRY_LEN {
            return Err(Error::LimitExceeded("chain entry too long"));
        }
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::DeviceChainEntry)?;
        let account = AccountId(r.array()?);
        let seq = r.u64()?;
        let prev = ObjectId(r.array()?);
        let time_ms = r.i64()?;
        let account_epoch = r.u32()?;
        let kind = r.u8()?;
        let signer_kind = r.u8()?;
        let signer_id = r.array::<16>()?;
        let signer = match signer_kind {
            SIGNER_DEVICE => Signer::Device(DeviceId(signer_id)),
            SIGNER_RECOVERY if signer_id == [0u8; 16] => Signer::RecoveryKey,
            _ => return Err(Error::Malformed("chain entry signer")),
        };
        let name = |r: &mut Reader<'_>| -> Result<String> {
            let raw = r.short_bytes(MAX_DEVICE_NAME, "device name")?;
            let name = core::str::from_utf8(raw).map_err(|_| Error::Malformed("device name"))?.to_owned();
            validate_device_name(&name)?;
            Ok(name)
        };
        let change = match kind {
            KIND_CREATE => ChainChange::Create {
                device: DevicePublicKeys::from_bytes(r.take(DEVICE_PUBLIC_KEYS_LEN)?)?,
                name: name(&mut r)?,
                recovery: DevicePublicKeys::from_bytes(r.take(DEVICE_PUBLIC_KEYS_LEN)?)?,
                root_commitment: r.array()?,
            },
            KIND_ADD_DEVICE => ChainChange::AddDevice {
                device: DevicePublicKeys::from_bytes(r.take(DEVICE_PUBLIC_KEYS_LEN)?)?,
                name: name(&mut r)?,
            },
            KIND_REVOKE_DEVICE => {
                let device = DeviceId(r.array()?);
                let root_commitment = r.array()?;
                let count = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
                if count > MAX_CUTOFFS || count.saturating_mul(24) > r.remaining() {
                    return Err(Error::Truncated);
                }
                let mut cutoffs = BTreeMap::new();
                let mut last: Option<CollectionId> = None;
                for _ in 0..count {
                    let collection = CollectionId(r.array()?);
                    // Strictly ascending: one encoding per set.
                    if last.is_some_and(|l| l >= collection) {
                        return Err(Error::Malformed("revocation cutoffs out of order"));
                    }
                    last = Some(collection);
                    cutoffs.insert(collection, r.u64()?);
                }
                ChainChange::RevokeDevice { device, root_commitment, cutoffs }
            }
            KIND_ROTATE_RECOVERY => ChainChange::RotateRecovery {
                recovery: DevicePublicKeys::from_bytes(r.take(DEVICE_PUBLIC_KEYS_LEN)?)?,
                root_commitment: r.array()?,
            },
            _ => return Err(Error::Malformed("unknown chain entry kind")),
        };
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        Ok((ChainEntry { account, seq, prev, time_ms, account_epoch, signer, change }, signature))
    }
}

fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + unsigned.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(unsigned);
    m
}

/// A point in a device chain: the number of the last entry and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last entry.
    pub seq: u64,
    /// Its id (BLAKE3 of the stored entry).
    pub id: ObjectId,
}

/// How a device was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The entry that revoked it.
    pub seq: u64,
    /// When (the signer's claim, ms).
    pub time_ms: i64,
    /// Who revoked it.
    pub by: Signer,
    /// The first account key epoch it never held.
    pub epoch: u32,
    /// The last revision it may have written, per collection.
    pub cutoffs: BTreeMap<CollectionId, u64>,
}

/// A device as the verified chain describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDevice {
    /// Its public keys.
    pub public: DevicePublicKeys,
    /// Its name.
    pub name: String,
    /// The entry that added it.
    pub added_seq: u64,
    /// When (the signer's claim, ms).
    pub added_ms: i64,
    /// Who added it (itself, for the account's first device).
    pub added_by: Signer,
    /// Set once revoked.
    pub revoked: Option<Revocation>,
}

/// A verified device chain.
#[derive(Debug, Clone)]
pub struct DeviceChain {
    account: AccountId,
    head: ChainHead,
    time_ms: Vec<i64>,
    devices: BTreeMap<DeviceId, ChainDevice>,
    recovery: DevicePublicKeys,
    commitments: Vec<[u8; 32]>,
}

impl DeviceChain {
    /// Verifies a chain from its creation entry.
    pub fn verify<'a>(account: AccountId, entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Self> {
        let mut entries = entries.into_iter();
        let first = entries.next().ok_or(Error::Malformed("empty device chain"))?;
        let mut chain = DeviceChain::genesis(account, first)?;
        for stored in entries {
            chain.append(stored)?;
        }
        Ok(chain)
    }

    /// Verifies an account's creation entry: self-signed by the first device.
    pub fn genesis(account: AccountId, stored: &[u8]) -> Result<Self> {
        let (entry, signature) = ChainEntry::parse(stored)?;
        if entry.account != account {
            return Err(Error::ContextMismatch("account"));
        }
        let ChainChange::Create { device, name, recovery, root_commitment } = &entry.change else {
            return Err(Error::Malformed("a device chain must start with the account's creation"));
        };
        if entry.seq != 0 || entry.prev != CHAIN_GENESIS_PREV || entry.account_epoch != 0 {
            return Err(Error::Malformed("creation entry out of place"));
        }
        if entry.signer != Signer::Device(device.id()) {
            return Err(Error::Malformed("the creation entry must be signed by the first device"));
        }
        device.verify(&signed_message(unsigned_part(stored)?), &signature)?;
        let mut devices = BTreeMap::new();
        devices.insert(
            device.id(),
            ChainDevice {
                public: device.clone(),
                name: name.clone(),
                added_seq: 0,
                added_ms: entry.time_ms,
                added_by: entry.signer,
                revoked: None,
            },
        );
        Ok(DeviceChain {
            account,
            head: ChainHead { seq: 0, id: ObjectId::of(stored) },
            time_ms: vec![entry.time_ms],
            devices,
            recovery: recovery.clone(),
            commitments: vec![*root_commitment],
        })
    }

    /// Verifies one more entry and applies it. On error the chain is
    /// unchanged.
    pub fn append(&mut self, stored: &[u8]) -> Result<ChainEntry> {
        let (entry, signature) = ChainEntry::parse(stored)?;
        if entry.account != self.account {
            return Err(Error::ContextMismatch("account"));
        }
        let next = self.head.seq.checked_add(1).ok_or(Error::LimitExceeded("chain length"))?;
        if entry.seq != next || entry.prev != self.head.id {
            return Err(Error::ChainFork { seq: entry.seq });
        }
        let signing_key = match entry.signer {
            Signer::RecoveryKey => &self.recovery,
            Signer::Device(id) => match self.devices.get(&id) {
                Some(d) if d.revoked.is_none() => &d.public,
                _ => return Err(Error::UnknownAuthor),
            },
        };
        signing_key.verify(&signed_message(unsigned_part(stored)?), &signature)?;
        let epoch = self.epoch();
        let expected_epoch = if entry.change.starts_epoch() { epoch.checked_add(1) } else { Some(epoch) };
        if Some(entry.account_epoch) != expected_epoch {
            return Err(Error::Malformed("chain entry has the wrong account key epoch"));
        }
        match &entry.change {
            ChainChange::Create { .. } => return Err(Error::Malformed("an account is created only once")),
            ChainChange::AddDevice { device, name } => {
                if self.devices.contains_key(&device.id()) {
                    return Err(Error::Malformed("device is already in the chain"));
                }
                self.devices.insert(
                    device.id(),
                    ChainDevice {
                        public: device.clone(),
                        name: name.clone(),
                        added_seq: entry.seq,
                        added_ms: entry.time_ms,
                        added_by: entry.signer,
                        revoked: None,
                    },
                );
            }
            ChainChange::RevokeDevice { device, root_commitment, cutoffs } => {
                if entry.signer == Signer::Device(*device) {
                    return Err(Error::Malformed("a device cannot revoke itself"));
                }
                let target = match self.devices.get_mut(device) {
                    Some(d) if d.revoked.is_none() => d,
                    _ => return Err(Error::Malformed("revokes a device that is not enrolled")),
                };
                target.revoked = Some(Revocation {
                    seq: entry.seq,
                    time_ms: entry.time_ms,
                    by: entry.signer,
                    epoch: entry.account_epoch,
                    cutoffs: cutoffs.clone(),
                });
                self.commitments.push(*root_commitment);
            }
            ChainChange::RotateRecovery { recovery, root_commitment } => {
                self.recovery = recovery.clone();
                self.commitments.push(*root_commitment);
            }
        }
        self.time_ms.push(entry.time_ms);
        self.head = ChainHead { seq: entry.seq, id: ObjectId::of(stored) };
        Ok(entry)
    }

    /// The account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The last verified entry.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The current account key epoch.
    pub fn epoch(&self) -> u32 {
        u32::try_from(self.commitments.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Every device ever enrolled, revoked ones included.
    pub fn devices(&self) -> &BTreeMap<DeviceId, ChainDevice> {
        &self.devices
    }

    /// A device, if the chain ever enrolled it.
    pub fn device(&self, id: &DeviceId) -> Option<&ChainDevice> {
        self.devices.get(id)
    }

    /// Devices enrolled and not revoked: the only ones a key may be wrapped to.
    pub fn active_devices(&self) -> impl Iterator<Item = &ChainDevice> {
        self.devices.values().filter(|d| d.revoked.is_none())
    }

    /// The recovery key's public keys in force.
    pub fn recovery(&self) -> &DevicePublicKeys {
        &self.recovery
    }

    /// Whether `device` may have signed revision `seq` of `collection`: an
    /// enrolled device always; a revoked one only up to its cutoff.
    pub fn may_author(&self, device: &DeviceId, collection: CollectionId, seq: u64) -> bool {
        match self.devices.get(device) {
            None => false,
            Some(d) => match &d.revoked {
                None => true,
                Some(r) => r.cutoffs.get(&collection).is_some_and(|cutoff| seq <= *cutoff),
            },
        }
    }

    /// Checks that `root` is the root key the chain committed to for `epoch`.
    pub fn check_root_key(&self, epoch: u32, root: &AccountRootKey) -> Result<()> {
        let committed =
            self.commitments.get(usize::try_from(epoch).unwrap_or(usize::MAX)).ok_or(Error::ContextMismatch("epoch"))?;
        let actual = root_commitment(root, self.account, epoch);
        if bool::from(subtle::ConstantTimeEq::ct_eq(committed.as_slice(), actual.as_slice())) {
            Ok(())
        } else {
            Err(Error::ContextMismatch("root key does not match the chain's commitment"))
        }
    }

    /// The signer's claimed time of entry `seq`.
    pub fn time_of(&self, seq: u64) -> Option<i64> {
        self.time_ms.get(usize::try_from(seq).ok()?).copied()
    }
}

fn unsigned_part(stored: &[u8]) -> Result<&[u8]> {
    stored.get(..stored.len().checked_sub(SIGNATURE_LEN).ok_or(Error::Truncated)?).ok_or(Error::Truncated)
}
