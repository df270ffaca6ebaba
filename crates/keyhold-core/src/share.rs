//! Sharing a collection between accounts (spec: `sharing.md`).
//!
//! Three signed objects, all cleartext to the server except the keys and the
//! collection's name:
//! - the **member list** ([`MemberEntry`], verified by [`MemberList`]): a
//!   hash-chained log per shared collection, every entry signed by a device
//!   of the owning account. It names the members and their roles, and
//!   commits to every collection key epoch, so a member accepts a key only if
//!   the owner committed to it (HPKE base mode lets anyone wrap a key of their
//!   choosing: the wrap alone proves nothing; SECURITY A1);
//! - a **key grant** ([`KeyGrant`]): the collection's keys and name sealed
//!   with HPKE (X-Wing) to each device of one member, signed by the owner's
//!   device and tied to the member-list entry that admitted the member or
//!   started the key epoch (invitations and key updates alike);
//! - a **share response** ([`ShareResponse`]): the member's device accepts or
//!   declines a grant, signed, so nothing appears on a member's side that one
//!   of its devices did not accept (SECURITY D2).
//!
//! Which devices a member has is never taken from the server: the owner
//! wraps to the devices of the member's device chain as key transparency
//! proves it, and records the chain head it used in the `Add` entry
//! (SECURITY A3).

use std::collections::BTreeMap;

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::XWing;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::aead::{self, NONCE_LEN, TAG_LEN};
use crate::chain::ChainHead;
use crate::device::{DevicePublicKeys, DeviceSecret, SIGNATURE_LEN};
use crate::encoding::{Reader, Writer, len_u32, usize_from};
use crate::envelope::{ObjectType, read_header, write_header};
use crate::error::{Error, Result};
use crate::ids::{AccountId, CollectionId, DeviceId, ObjectId};
use crate::kdf::{context, derive};
use crate::secret::CollectionKey;
use crate::wrap::ENCAPSULATED_KEY_LEN;

/// Signature context of member-list entries. FROZEN.
const MEMBER_SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-12 member list entry\0";
/// Signature context of key grants. FROZEN.
const GRANT_SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-12 key grant\0";
/// Signature context of handle claims. FROZEN.
const HANDLE_SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-12 handle claim\0";
/// Signature context of share responses. FROZEN.
const RESPONSE_SIGNATURE_CONTEXT: &[u8] = b"keyhold v1 2026-12 share response\0";
/// HPKE `info` of every key grant wrap. FROZEN.
const GRANT_WRAP_INFO: &[u8] = b"keyhold v1 2026-12 key grant wrap";

/// Most members (besides the owner) one collection may have.
pub const MAX_MEMBERS: usize = 1_000;
/// Most collection key epochs one collection may have.
pub const MAX_KEY_EPOCHS: usize = 4_096;
/// Most devices one grant may wrap to.
pub const MAX_GRANT_DEVICES: usize = 64;
/// Longest collection name, in bytes of UTF-8.
pub const MAX_SHARED_NAME: usize = 255;
/// Longest stored member-list entry.
pub const MAX_MEMBER_ENTRY_LEN: usize = 256 + 4 + MAX_KEY_EPOCHS * 32 + 2 + NONCE_LEN + MAX_SHARED_NAME + TAG_LEN;
/// Longest stored key grant.
pub const MAX_GRANT_LEN: usize =
    256 + MAX_GRANT_DEVICES * (16 + ENCAPSULATED_KEY_LEN + 4 + 2 + MAX_SHARED_NAME + 4 + MAX_KEY_EPOCHS * 32 + TAG_LEN);
/// `prev` of a member list's first entry.
pub const MEMBER_GENESIS_PREV: ObjectId = ObjectId([0u8; 32]);

const KIND_CREATE: u8 = 0x01;
const KIND_ADD: u8 = 0x02;
const KIND_REMOVE: u8 = 0x03;
const KIND_ROTATE: u8 = 0x04;

/// Commitment to the key of one collection key epoch:
/// `BLAKE3-derive_key("keyhold v1 2026-12 collection key commitment", key ‖ collection ‖ epoch)`.
pub fn key_commitment(key: &CollectionKey, collection: CollectionId, epoch: u32) -> [u8; 32] {
    *derive(context::COLLECTION_KEY_COMMITMENT, &[key.expose_secret(), collection.as_bytes(), &epoch.to_be_bytes()])
        .expose_secret()
}

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Role {
    /// Reads and writes.
    Writer = 0x01,
    /// Reads only: every client and the server refuse its revisions.
    Reader = 0x02,
}

impl Role {
    /// The role byte.
    #[allow(clippy::as_conversions)] // a `repr(u8)` discriminant: lossless
    pub fn byte(self) -> u8 {
        self as u8
    }

    fn from_byte(b: u8) -> Result<Self> {
        match b {
            0x01 => Ok(Role::Writer),
            0x02 => Ok(Role::Reader),
            _ => Err(Error::Malformed("member role")),
        }
    }
}

/// What a member-list entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Makes the collection shared (seq 0): commits to every key epoch so
    /// far and carries the collection's name sealed under epoch 0's key.
    Create {
        /// Commitments to epochs `0..=key_epoch`, in order.
        commitments: Vec<[u8; 32]>,
        /// [`seal_shared_name`]'s output.
        sealed_name: Vec<u8>,
    },
    /// Admits an account.
    Add {
        /// The new member.
        account: AccountId,
        /// Its role.
        role: Role,
        /// The head of the member's device chain the owner verified (and
        /// wrapped the keys to).
        chain: ChainHead,
    },
    /// Removes a member and starts a new key epoch.
    Remove {
        /// The member.
        account: AccountId,
        /// The last revision of the collection the removed member's writes
        /// count up to (the head the owner verified).
        cutoff: u64,
        /// Commitment to the new epoch's key.
        commitment: [u8; 32],
    },
    /// Starts a new key epoch (a member's device was revoked).
    Rotate {
        /// Commitment to the new epoch's key.
        commitment: [u8; 32],
    },
}

impl MemberChange {
    fn kind(&self) -> u8 {
        match self {
            MemberChange::Create { .. } => KIND_CREATE,
            MemberChange::Add { .. } => KIND_ADD,
            MemberChange::Remove { .. } => KIND_REMOVE,
            MemberChange::Rotate { .. } => KIND_ROTATE,
        }
    }
}

/// One entry of a collection's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    /// The collection.
    pub collection: CollectionId,
    /// The owning account; every entry is signed by one of its devices.
    pub owner: AccountId,
    /// 0 for the creation entry, then +1 each.
    pub seq: u64,
    /// Id of the previous stored entry ([`MEMBER_GENESIS_PREV`] for seq 0).
    pub prev: ObjectId,
    /// When the signer made it, ms since the Unix epoch (its claim).
    pub time_ms: i64,
    /// The collection key epoch in force after this entry.
    pub key_epoch: u32,
    /// The owner's device that signed it.
    pub signer: DeviceId,
    /// What it does.
    pub change: MemberChange,
}

impl MemberEntry {
    fn encode_unsigned(&self) -> Result<Writer> {
        let mut w = Writer::with_capacity(256);
        write_header(&mut w, ObjectType::MemberListEntry);
        w.bytes(self.collection.as_bytes()).bytes(self.owner.as_bytes()).u64(self.seq).bytes(self.prev.as_bytes());
        w.i64(self.time_ms).u32(self.key_epoch).bytes(self.signer.as_bytes()).u8(self.change.kind());
        match &self.change {
            MemberChange::Create { commitments, sealed_name } => {
                if commitments.is_empty() || commitments.len() > MAX_KEY_EPOCHS {
                    return Err(Error::LimitExceeded("key epochs"));
                }
                if sealed_name.len() > NONCE_LEN + MAX_SHARED_NAME + TAG_LEN {
                    return Err(Error::LimitExceeded("collection name"));
                }
                w.u32(len_u32(commitments.len(), "key epochs")?);
                for c in commitments {
                    w.bytes(c);
                }
                w.short_bytes(sealed_name)?;
            }
            MemberChange::Add { account, role, chain } => {
                w.bytes(account.as_bytes()).u8(role.byte()).u64(chain.seq).bytes(chain.id.as_bytes());
            }
            MemberChange::Remove { account, cutoff, commitment } => {
                w.bytes(account.as_bytes()).u64(*cutoff).bytes(commitment);
            }
            MemberChange::Rotate { commitment } => {
                w.bytes(commitment);
            }
        }
        Ok(w)
    }

    /// Encodes and signs the entry with the owner's device `signer`.
    pub fn seal(&self, signer: &DeviceSecret) -> Result<Vec<u8>> {
        if self.signer != signer.id() {
            return Err(Error::ContextMismatch("signer"));
        }
        let mut w = self.encode_unsigned()?;
        let signature = signer.sign(&signed(MEMBER_SIGNATURE_CONTEXT, w.as_slice()));
        w.bytes(&signature);
        Ok(w.into_vec())
    }

    /// Parses a stored entry without checking its signature or its place in
    /// the list ([`MemberList::append`] does).
    pub fn parse(stored: &[u8]) -> Result<(MemberEntry, [u8; SIGNATURE_LEN])> {
        if stored.len() > MAX_MEMBER_ENTRY_LEN {
            return Err(Error::LimitExceeded("member list entry too long"));
        }
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::MemberListEntry)?;
        let collection = CollectionId(r.array()?);
        let owner = AccountId(r.array()?);
        let seq = r.u64()?;
        let prev = ObjectId(r.array()?);
        let time_ms = r.i64()?;
        let key_epoch = r.u32()?;
        let signer = DeviceId(r.array()?);
        let change = match r.u8()? {
            KIND_CREATE => {
                let count = usize_from(r.u32()?);
                if count == 0 || count > MAX_KEY_EPOCHS || count.saturating_mul(32) > r.remaining() {
                    return Err(Error::Malformed("key epochs"));
                }
                let commitments = (0..count).map(|_| r.array::<32>()).collect::<Result<Vec<_>>>()?;
                let sealed_name = r.short_bytes(NONCE_LEN + MAX_SHARED_NAME + TAG_LEN, "collection name")?.to_vec();
                MemberChange::Create { commitments, sealed_name }
            }
            KIND_ADD => MemberChange::Add {
                account: AccountId(r.array()?),
                role: Role::from_byte(r.u8()?)?,
                chain: ChainHead { seq: r.u64()?, id: ObjectId(r.array()?) },
            },
            KIND_REMOVE => MemberChange::Remove { account: AccountId(r.array()?), cutoff: r.u64()?, commitment: r.array()? },
            KIND_ROTATE => MemberChange::Rotate { commitment: r.array()? },
            _ => return Err(Error::Malformed("unknown member list entry kind")),
        };
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        Ok((MemberEntry { collection, owner, seq, prev, time_ms, key_epoch, signer, change }, signature))
    }
}

fn signed(context: &[u8], unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + unsigned.len());
    m.extend_from_slice(context);
    m.extend_from_slice(unsigned);
    m
}

/// A member as the verified list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// The member-list entry that admitted it (most recently).
    pub added: u64,
    /// The device chain head the owner verified when admitting it.
    pub chain: ChainHead,
    /// Set once removed: the last revision its writes count up to.
    pub cutoff: Option<u64>,
    /// Earlier memberships (before a removal and a new add): the role and
    /// the cutoff of each, so writes made then keep counting.
    pub earlier: Vec<(Role, u64)>,
}

/// The verifier of one collection's member list, and what it proves.
#[derive(Debug, Clone)]
pub struct MemberList {
    collection: CollectionId,
    owner: AccountId,
    head: ChainHead,
    key_epoch: u32,
    commitments: Vec<[u8; 32]>,
    sealed_name: Vec<u8>,
    members: BTreeMap<AccountId, Member>,
    epoch_started_ms: i64,
}

impl MemberList {
    /// Verifies a whole list, first entry first. `owner_device` returns the
    /// public keys of a device the owner's verified chain has enrolled (and
    /// not revoked); the caller decides, from key transparency.
    pub fn verify<'a>(
        collection: CollectionId,
        owner: AccountId,
        entries: impl IntoIterator<Item = &'a [u8]>,
        owner_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>,
    ) -> Result<Self> {
        let mut entries = entries.into_iter();
        let first = entries.next().ok_or(Error::Malformed("empty member list"))?;
        let mut list = MemberList::genesis(collection, owner, first, &owner_device)?;
        for stored in entries {
            list.append(stored, &owner_device)?;
        }
        Ok(list)
    }

    /// Verifies the creation entry.
    pub fn genesis(
        collection: CollectionId,
        owner: AccountId,
        stored: &[u8],
        owner_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>,
    ) -> Result<Self> {
        let (entry, signature) = MemberEntry::parse(stored)?;
        check_context(&entry, collection, owner)?;
        if entry.seq != 0 || entry.prev != MEMBER_GENESIS_PREV {
            return Err(Error::Malformed("member list does not start with its creation entry"));
        }
        let MemberChange::Create { commitments, sealed_name } = &entry.change else {
            return Err(Error::Malformed("member list does not start with its creation entry"));
        };
        if usize_from(entry.key_epoch).checked_add(1) != Some(commitments.len()) {
            return Err(Error::ContextMismatch("key epoch"));
        }
        check_signature(&entry, stored, &signature, &owner_device)?;
        Ok(MemberList {
            collection,
            owner,
            head: ChainHead { seq: 0, id: ObjectId::of(stored) },
            key_epoch: entry.key_epoch,
            commitments: commitments.clone(),
            sealed_name: sealed_name.clone(),
            members: BTreeMap::new(),
            epoch_started_ms: entry.time_ms,
        })
    }

    /// Verifies the next entry and applies it.
    pub fn append(&mut self, stored: &[u8], owner_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>) -> Result<MemberEntry> {
        let (entry, signature) = MemberEntry::parse(stored)?;
        check_context(&entry, self.collection, self.owner)?;
        if Some(entry.seq) != self.head.seq.checked_add(1) || entry.prev != self.head.id {
            return Err(Error::Malformed("member list entry does not extend the list"));
        }
        let next_epoch = self.key_epoch.checked_add(1).ok_or(Error::LimitExceeded("key epochs"))?;
        match &entry.change {
            MemberChange::Create { .. } => return Err(Error::Malformed("a second creation entry")),
            MemberChange::Add { account, .. } => {
                if entry.key_epoch != self.key_epoch {
                    return Err(Error::ContextMismatch("key epoch"));
                }
                if *account == self.owner || self.is_member(account) {
                    return Err(Error::Malformed("adds an account that is already a member"));
                }
                let current = self.members.values().filter(|m| m.cutoff.is_none()).count();
                if current >= MAX_MEMBERS {
                    return Err(Error::LimitExceeded("members"));
                }
            }
            MemberChange::Remove { account, .. } => {
                if entry.key_epoch != next_epoch {
                    return Err(Error::ContextMismatch("key epoch"));
                }
                if !self.is_member(account) {
                    return Err(Error::Malformed("removes an account that is not a member"));
                }
            }
            MemberChange::Rotate { .. } => {
                if entry.key_epoch != next_epoch {
                    return Err(Error::ContextMismatch("key epoch"));
                }
            }
        }
        if self.commitments.len() >= MAX_KEY_EPOCHS && entry.key_epoch != self.key_epoch {
            return Err(Error::LimitExceeded("key epochs"));
        }
        check_signature(&entry, stored, &signature, &owner_device)?;
        match &entry.change {
            MemberChange::Create { .. } => {}
            MemberChange::Add { account, role, chain } => {
                let mut earlier = Vec::new();
                if let Some(before) = self.members.remove(account) {
                    earlier = before.earlier;
                    if let Some(cutoff) = before.cutoff {
                        earlier.push((before.role, cutoff));
                    }
                }
                self.members.insert(*account, Member { role: *role, added: entry.seq, chain: *chain, cutoff: None, earlier });
            }
            MemberChange::Remove { account, cutoff, commitment } => {
                if let Some(m) = self.members.get_mut(account) {
                    m.cutoff = Some(*cutoff);
                }
                self.commitments.push(*commitment);
            }
            MemberChange::Rotate { commitment } => self.commitments.push(*commitment),
        }
        if entry.key_epoch != self.key_epoch {
            self.epoch_started_ms = entry.time_ms;
        }
        self.key_epoch = entry.key_epoch;
        self.head = ChainHead { seq: entry.seq, id: ObjectId::of(stored) };
        Ok(entry)
    }

    /// The collection.
    pub fn collection(&self) -> CollectionId {
        self.collection
    }

    /// The owning account.
    pub fn owner(&self) -> AccountId {
        self.owner
    }

    /// The last entry verified.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// The current collection key epoch.
    pub fn key_epoch(&self) -> u32 {
        self.key_epoch
    }

    /// Every account ever admitted, with its standing.
    pub fn members(&self) -> &BTreeMap<AccountId, Member> {
        &self.members
    }

    /// Whether `account` is a member now (the owner is not listed).
    pub fn is_member(&self, account: &AccountId) -> bool {
        self.members.get(account).is_some_and(|m| m.cutoff.is_none())
    }

    /// The role of `account` now: `None` for the owner (who may do
    /// everything) and for non-members.
    pub fn role(&self, account: &AccountId) -> Option<Role> {
        self.members.get(account).filter(|m| m.cutoff.is_none()).map(|m| m.role)
    }

    /// When the entry that started the current key epoch was signed (the
    /// owner's claim): a member device revoked after it may hold the key.
    pub fn epoch_started_ms(&self) -> i64 {
        self.epoch_started_ms
    }

    /// The sealed collection name of the creation entry.
    pub fn sealed_name(&self) -> &[u8] {
        &self.sealed_name
    }

    /// Whether a revision at `seq` written by a device of `account` counts:
    /// the owner's always; a writer's while a member, and up to the cutoff
    /// of its removal after; a reader's never (SECURITY D3, A7).
    pub fn may_write(&self, account: &AccountId, seq: u64) -> bool {
        if *account == self.owner {
            return true;
        }
        let Some(member) = self.members.get(account) else { return false };
        let now = match (member.role, member.cutoff) {
            (Role::Writer, None) => true,
            (Role::Writer, Some(cutoff)) => seq <= cutoff,
            (Role::Reader, _) => false,
        };
        now || member.earlier.iter().any(|(role, cutoff)| *role == Role::Writer && seq <= *cutoff)
    }

    /// Checks a collection key against the owner's commitment to its epoch.
    pub fn check_key(&self, epoch: u32, key: &CollectionKey) -> Result<()> {
        let committed = self.commitments.get(usize_from(epoch)).ok_or(Error::ContextMismatch("unknown key epoch"))?;
        if key_commitment(key, self.collection, epoch) != *committed {
            return Err(Error::ContextMismatch("collection key does not match the owner's commitment"));
        }
        Ok(())
    }
}

fn check_context(entry: &MemberEntry, collection: CollectionId, owner: AccountId) -> Result<()> {
    if entry.collection != collection {
        return Err(Error::ContextMismatch("collection"));
    }
    if entry.owner != owner {
        return Err(Error::ContextMismatch("owner"));
    }
    Ok(())
}

fn check_signature(
    entry: &MemberEntry,
    stored: &[u8],
    signature: &[u8; SIGNATURE_LEN],
    owner_device: &impl Fn(&DeviceId) -> Option<DevicePublicKeys>,
) -> Result<()> {
    let device = owner_device(&entry.signer).ok_or(Error::UnknownAuthor)?;
    let unsigned = stored.get(..stored.len().saturating_sub(SIGNATURE_LEN)).ok_or(Error::Truncated)?;
    device.verify(&signed(MEMBER_SIGNATURE_CONTEXT, unsigned), signature)
}

/// Seals a shared collection's name under the key of epoch 0, for the
/// creation entry: AES-256-GCM, key `derive("keyhold v1 2026-12 shared
/// collection name", key ‖ collection)`, AAD `collection ‖ owner`; output
/// `nonce ‖ ciphertext ‖ tag`.
pub fn seal_shared_name(
    key: &CollectionKey,
    collection: CollectionId,
    owner: AccountId,
    name: &str,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>> {
    validate_shared_name(name)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let k = derive(context::SHARED_NAME, &[key.expose_secret(), collection.as_bytes()]);
    let mut buf = name.as_bytes().to_vec();
    aead::seal(k.expose_secret(), nonce, &name_aad(collection, owner), &mut buf)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens [`seal_shared_name`]'s output with the key of epoch 0.
pub fn open_shared_name(key: &CollectionKey, collection: CollectionId, owner: AccountId, sealed: &[u8]) -> Result<String> {
    let (nonce, ciphertext) = sealed.split_first_chunk::<NONCE_LEN>().ok_or(Error::Truncated)?;
    let k = derive(context::SHARED_NAME, &[key.expose_secret(), collection.as_bytes()]);
    let mut buf = ciphertext.to_vec();
    let name = aead::open(k.expose_secret(), *nonce, &name_aad(collection, owner), &mut buf)?;
    let name = core::str::from_utf8(name).map_err(|_| Error::Malformed("collection name"))?.to_owned();
    validate_shared_name(&name)?;
    Ok(name)
}

fn name_aad(collection: CollectionId, owner: AccountId) -> Vec<u8> {
    let mut aad = collection.as_bytes().to_vec();
    aad.extend_from_slice(owner.as_bytes());
    aad
}

/// A collection name: 1 to [`MAX_SHARED_NAME`] bytes of UTF-8, no control
/// characters.
pub fn validate_shared_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_SHARED_NAME || name.chars().any(char::is_control) {
        return Err(Error::Malformed("collection name"));
    }
    Ok(())
}

/// A grant of a collection's keys to the devices of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// The collection.
    pub collection: CollectionId,
    /// The owning account.
    pub owner: AccountId,
    /// The owner's device that signed it.
    pub signer: DeviceId,
    /// The member it is for.
    pub member: AccountId,
    /// The member-list entry it belongs to: the `Add` that admitted the
    /// member, or the entry that started `key_epoch`.
    pub entry: ChainHead,
    /// The member's role.
    pub role: Role,
    /// The newest key epoch granted; keys of epochs `0..=key_epoch` are
    /// inside every wrap.
    pub key_epoch: u32,
    /// One HPKE wrap per device, in ascending device id order.
    pub wraps: Vec<(DeviceId, Vec<u8>)>,
}

/// What a device finds in its wrap of a grant.
pub struct GrantedKeys {
    /// The collection's name, as the owner calls it.
    pub name: String,
    /// The keys of epochs `0..=key_epoch`, in order.
    pub keys: Vec<CollectionKey>,
}

impl core::fmt::Debug for GrantedKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GrantedKeys({:?}, {} keys, [REDACTED])", self.name, self.keys.len())
    }
}

impl KeyGrant {
    fn encode_prefix(&self) -> Writer {
        let mut w = Writer::with_capacity(256 + self.wraps.len() * (16 + ENCAPSULATED_KEY_LEN + 64));
        write_header(&mut w, ObjectType::KeyGrant);
        w.bytes(self.collection.as_bytes()).bytes(self.owner.as_bytes()).bytes(self.signer.as_bytes());
        w.bytes(self.member.as_bytes()).u64(self.entry.seq).bytes(self.entry.id.as_bytes());
        w.u8(self.role.byte()).u32(self.key_epoch);
        w
    }

    /// Seals `keys` (epochs `0..=key_epoch`) and `name` to every device in
    /// `recipients` — devices the caller verified through key transparency
    /// and the member's device chain, never keys taken from the server as is
    /// — and signs the grant with the owner's device `signer`.
    #[allow(clippy::too_many_arguments)] // one field each of a signed object
    pub fn seal(
        collection: CollectionId,
        owner: AccountId,
        signer: &DeviceSecret,
        member: AccountId,
        entry: ChainHead,
        role: Role,
        keys: &[&CollectionKey],
        name: &str,
        recipients: &[&DevicePublicKeys],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>> {
        validate_shared_name(name)?;
        if keys.is_empty() || keys.len() > MAX_KEY_EPOCHS {
            return Err(Error::LimitExceeded("key epochs"));
        }
        if recipients.is_empty() || recipients.len() > MAX_GRANT_DEVICES {
            return Err(Error::LimitExceeded("devices in one grant"));
        }
        let key_epoch = u32::try_from(keys.len() - 1).map_err(|_| Error::LimitExceeded("key epochs"))?;
        let mut sorted: Vec<&DevicePublicKeys> = recipients.to_vec();
        sorted.sort_by_key(|d| d.id());
        sorted.dedup_by_key(|d| d.id());
        let grant = KeyGrant { collection, owner, signer: signer.id(), member, entry, role, key_epoch, wraps: Vec::new() };
        let prefix = grant.encode_prefix();
        let mut payload = Writer::with_capacity(2 + name.len() + 4 + keys.len() * 32);
        payload.short_bytes(name.as_bytes())?.u32(len_u32(keys.len(), "key epochs")?);
        for key in keys {
            payload.bytes(key.expose_secret());
        }
        let payload = Zeroizing::new(payload.into_vec());
        let mut w = prefix;
        w.u16(u16::try_from(sorted.len()).map_err(|_| Error::LimitExceeded("devices in one grant"))?);
        for device in sorted {
            let aad = grant_wrap_aad(&grant, device.id());
            let (encapsulated, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, XWing>(
                &OpModeS::Base,
                device.kem(),
                GRANT_WRAP_INFO,
                &payload,
                &aad,
                rng,
            )
            .map_err(|_| Error::Random)?;
            w.bytes(device.id().as_bytes()).bytes(&encapsulated.to_bytes());
            w.u32(len_u32(ciphertext.len(), "grant wrap")?).bytes(&ciphertext);
        }
        let signature = signer.sign(&signed(GRANT_SIGNATURE_CONTEXT, w.as_slice()));
        w.bytes(&signature);
        Ok(w.into_vec())
    }

    /// Parses a stored grant and checks its signature against the public
    /// keys `owner_device` returns for its signer (a device of the owner's
    /// verified chain).
    pub fn verify(stored: &[u8], owner_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>) -> Result<KeyGrant> {
        let (grant, signature) = KeyGrant::parse(stored)?;
        let device = owner_device(&grant.signer).ok_or(Error::UnknownAuthor)?;
        let unsigned = stored.get(..stored.len().saturating_sub(SIGNATURE_LEN)).ok_or(Error::Truncated)?;
        device.verify(&signed(GRANT_SIGNATURE_CONTEXT, unsigned), &signature)?;
        Ok(grant)
    }

    /// Parses a stored grant without checking its signature.
    pub fn parse(stored: &[u8]) -> Result<(KeyGrant, [u8; SIGNATURE_LEN])> {
        if stored.len() > MAX_GRANT_LEN {
            return Err(Error::LimitExceeded("key grant too long"));
        }
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::KeyGrant)?;
        let collection = CollectionId(r.array()?);
        let owner = AccountId(r.array()?);
        let signer = DeviceId(r.array()?);
        let member = AccountId(r.array()?);
        let entry = ChainHead { seq: r.u64()?, id: ObjectId(r.array()?) };
        let role = Role::from_byte(r.u8()?)?;
        let key_epoch = r.u32()?;
        let count = usize::from(r.u16()?);
        if count == 0 || count > MAX_GRANT_DEVICES {
            return Err(Error::Malformed("devices in one grant"));
        }
        let max_wrap = 2 + MAX_SHARED_NAME + 4 + MAX_KEY_EPOCHS * 32 + TAG_LEN;
        let mut wraps: Vec<(DeviceId, Vec<u8>)> = Vec::with_capacity(count);
        for _ in 0..count {
            let device = DeviceId(r.array()?);
            // Strictly ascending: one encoding per grant, one wrap per device.
            if wraps.last().is_some_and(|(last, _)| *last >= device) {
                return Err(Error::Malformed("grant wraps out of order"));
            }
            let encapsulated = r.take(ENCAPSULATED_KEY_LEN)?;
            let len = usize_from(r.u32()?);
            if len > max_wrap {
                return Err(Error::Malformed("grant wrap too long"));
            }
            let mut wrap = encapsulated.to_vec();
            wrap.extend_from_slice(r.take(len)?);
            wraps.push((device, wrap));
        }
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        Ok((KeyGrant { collection, owner, signer, member, entry, role, key_epoch, wraps }, signature))
    }

    /// Opens this device's wrap of a (verified) grant: the collection's
    /// name and keys. The caller then checks each key against the member
    /// list's commitments ([`MemberList::check_key`]).
    pub fn open(&self, device: &DeviceSecret, member: AccountId) -> Result<GrantedKeys> {
        if self.member != member {
            return Err(Error::ContextMismatch("member"));
        }
        let id = device.id();
        let (_, wrap) = self.wraps.iter().find(|(d, _)| *d == id).ok_or(Error::ContextMismatch("no wrap for this device"))?;
        let (encapsulated, ciphertext) = wrap.split_at_checked(ENCAPSULATED_KEY_LEN).ok_or(Error::Truncated)?;
        let encapsulated =
            <XWing as Kem>::EncappedKey::from_bytes(encapsulated).map_err(|_| Error::Malformed("encapsulated key"))?;
        let payload = Zeroizing::new(
            hpke::single_shot_open::<AesGcm256, HkdfSha256, XWing>(
                &OpModeR::Base,
                &device.kem_private(),
                &encapsulated,
                GRANT_WRAP_INFO,
                ciphertext,
                &grant_wrap_aad(self, id),
            )
            .map_err(|_| Error::DecryptionFailed)?,
        );
        let mut r = Reader::new(&payload);
        let name = core::str::from_utf8(r.short_bytes(MAX_SHARED_NAME, "collection name")?)
            .map_err(|_| Error::Malformed("collection name"))?
            .to_owned();
        validate_shared_name(&name)?;
        let count = usize_from(r.u32()?);
        if usize_from(self.key_epoch).checked_add(1) != Some(count) {
            return Err(Error::ContextMismatch("key epoch"));
        }
        let keys = (0..count).map(|_| r.array::<32>().map(CollectionKey::from_bytes)).collect::<Result<Vec<_>>>()?;
        r.finish()?;
        Ok(GrantedKeys { name, keys })
    }
}

fn grant_wrap_aad(grant: &KeyGrant, device: DeviceId) -> Vec<u8> {
    let mut w = grant.encode_prefix();
    w.bytes(device.as_bytes());
    w.into_vec()
}

/// A member device's answer to a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareResponse {
    /// The collection.
    pub collection: CollectionId,
    /// The owning account.
    pub owner: AccountId,
    /// The member answering.
    pub member: AccountId,
    /// The member's device that signed it.
    pub device: DeviceId,
    /// The id of the stored grant it answers.
    pub grant: ObjectId,
    /// Accepted (true) or declined.
    pub accept: bool,
    /// When, ms since the Unix epoch (the device's claim).
    pub time_ms: i64,
}

/// Length of a stored share response.
pub const SHARE_RESPONSE_LEN: usize = 7 + 16 + 16 + 16 + 16 + 32 + 1 + 8 + SIGNATURE_LEN;

impl ShareResponse {
    fn encode_unsigned(&self) -> Writer {
        let mut w = Writer::with_capacity(SHARE_RESPONSE_LEN);
        write_header(&mut w, ObjectType::ShareResponse);
        w.bytes(self.collection.as_bytes()).bytes(self.owner.as_bytes()).bytes(self.member.as_bytes());
        w.bytes(self.device.as_bytes()).bytes(self.grant.as_bytes()).u8(u8::from(self.accept)).i64(self.time_ms);
        w
    }

    /// Encodes and signs the response with the member's device.
    pub fn seal(&self, device: &DeviceSecret) -> Result<Vec<u8>> {
        if self.device != device.id() {
            return Err(Error::ContextMismatch("signer"));
        }
        let mut w = self.encode_unsigned();
        let signature = device.sign(&signed(RESPONSE_SIGNATURE_CONTEXT, w.as_slice()));
        w.bytes(&signature);
        Ok(w.into_vec())
    }

    /// Parses a stored response without checking its signature.
    pub fn parse(stored: &[u8]) -> Result<(ShareResponse, [u8; SIGNATURE_LEN])> {
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::ShareResponse)?;
        let collection = CollectionId(r.array()?);
        let owner = AccountId(r.array()?);
        let member = AccountId(r.array()?);
        let device = DeviceId(r.array()?);
        let grant = ObjectId(r.array()?);
        let accept = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Error::Malformed("share response")),
        };
        let time_ms = r.i64()?;
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        Ok((ShareResponse { collection, owner, member, device, grant, accept, time_ms }, signature))
    }

    /// Parses a stored response and checks its signature against the
    /// public keys `member_device` returns for its device (a device of the
    /// member's verified chain).
    pub fn verify(stored: &[u8], member_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>) -> Result<ShareResponse> {
        let (response, signature) = ShareResponse::parse(stored)?;
        let device = member_device(&response.device).ok_or(Error::UnknownAuthor)?;
        let unsigned = stored.get(..stored.len().saturating_sub(SIGNATURE_LEN)).ok_or(Error::Truncated)?;
        device.verify(&signed(RESPONSE_SIGNATURE_CONTEXT, unsigned), &signature)?;
        Ok(response)
    }
}

/// Shortest handle, in bytes.
pub const MIN_HANDLE: usize = 3;
/// Longest handle, in bytes.
pub const MAX_HANDLE: usize = 32;
/// Length of a stored handle claim, without its handle.
const HANDLE_CLAIM_FIXED_LEN: usize = 7 + 1 + 16 + 16 + 8 + SIGNATURE_LEN;

/// A handle: 3 to 32 bytes of lower-case ASCII letters, digits, `.`, `_`
/// and `-`, starting with a letter or digit. One spelling per handle, so a
/// look-alike cannot claim another's name.
pub fn validate_handle(handle: &str) -> Result<()> {
    let bytes = handle.as_bytes();
    let ok = (MIN_HANDLE..=MAX_HANDLE).contains(&bytes.len())
        && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(Error::Malformed("handle")) }
}

/// An account's claim of a human handle, signed by one of its devices; the
/// key directory publishes its id under [`crate::transparency::DirectoryLabel::Handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleClaim {
    /// The handle.
    pub handle: String,
    /// The account claiming it.
    pub account: AccountId,
    /// The account's device that signs.
    pub device: DeviceId,
    /// When, ms since the Unix epoch (the device's claim).
    pub time_ms: i64,
}

impl HandleClaim {
    fn encode_unsigned(&self) -> Result<Writer> {
        validate_handle(&self.handle)?;
        let mut w = Writer::with_capacity(HANDLE_CLAIM_FIXED_LEN + self.handle.len());
        write_header(&mut w, ObjectType::HandleClaim);
        w.u8(u8::try_from(self.handle.len()).map_err(|_| Error::Malformed("handle"))?).bytes(self.handle.as_bytes());
        w.bytes(self.account.as_bytes()).bytes(self.device.as_bytes()).i64(self.time_ms);
        Ok(w)
    }

    /// Encodes and signs the claim with the account's device.
    pub fn seal(&self, device: &DeviceSecret) -> Result<Vec<u8>> {
        if self.device != device.id() {
            return Err(Error::ContextMismatch("signer"));
        }
        let mut w = self.encode_unsigned()?;
        let signature = device.sign(&signed(HANDLE_SIGNATURE_CONTEXT, w.as_slice()));
        w.bytes(&signature);
        Ok(w.into_vec())
    }

    /// Parses a stored claim without checking its signature.
    pub fn parse(stored: &[u8]) -> Result<(HandleClaim, [u8; SIGNATURE_LEN])> {
        let mut r = Reader::new(stored);
        read_header(&mut r, ObjectType::HandleClaim)?;
        let len = usize::from(r.u8()?);
        let handle = core::str::from_utf8(r.take(len)?).map_err(|_| Error::Malformed("handle"))?.to_owned();
        validate_handle(&handle)?;
        let claim = HandleClaim { handle, account: AccountId(r.array()?), device: DeviceId(r.array()?), time_ms: r.i64()? };
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        Ok((claim, signature))
    }

    /// Parses a stored claim and checks its signature against the public
    /// keys `account_device` returns for its device (a device of the
    /// account's verified chain).
    pub fn verify(stored: &[u8], account_device: impl Fn(&DeviceId) -> Option<DevicePublicKeys>) -> Result<HandleClaim> {
        let (claim, signature) = HandleClaim::parse(stored)?;
        let device = account_device(&claim.device).ok_or(Error::UnknownAuthor)?;
        let unsigned = stored.get(..stored.len().saturating_sub(SIGNATURE_LEN)).ok_or(Error::Truncated)?;
        device.verify(&signed(HANDLE_SIGNATURE_CONTEXT, unsigned), &signature)?;
        Ok(claim)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    struct World {
        rng: ChaCha20Rng,
        collection: CollectionId,
        alice: AccountId,
        alice_phone: DeviceSecret,
        bob: AccountId,
        bob_laptop: DeviceSecret,
        bob_phone: DeviceSecret,
        mallory_device: DeviceSecret,
        keys: Vec<CollectionKey>,
    }

    impl World {
        fn new() -> World {
            let mut rng = ChaCha20Rng::from_seed([7; 32]);
            World {
                collection: CollectionId([1; 16]),
                alice: AccountId([0xa1; 16]),
                alice_phone: DeviceSecret::generate(&mut rng),
                bob: AccountId([0xb0; 16]),
                bob_laptop: DeviceSecret::generate(&mut rng),
                bob_phone: DeviceSecret::generate(&mut rng),
                mallory_device: DeviceSecret::generate(&mut rng),
                keys: vec![CollectionKey::generate(&mut rng)],
                rng,
            }
        }

        fn owner_device(&self) -> impl Fn(&DeviceId) -> Option<DevicePublicKeys> + '_ {
            |id| (*id == self.alice_phone.id()).then(|| self.alice_phone.public().clone())
        }

        fn entry(&self, seq: u64, prev: ObjectId, key_epoch: u32, change: MemberChange) -> MemberEntry {
            MemberEntry {
                collection: self.collection,
                owner: self.alice,
                seq,
                prev,
                time_ms: 1_765_000_000_000,
                key_epoch,
                signer: self.alice_phone.id(),
                change,
            }
        }

        fn create(&mut self) -> Vec<u8> {
            let sealed_name = seal_shared_name(&self.keys[0], self.collection, self.alice, "Photos", &mut self.rng).unwrap();
            let commitments = vec![key_commitment(&self.keys[0], self.collection, 0)];
            self.entry(0, MEMBER_GENESIS_PREV, 0, MemberChange::Create { commitments, sealed_name })
                .seal(&self.alice_phone)
                .unwrap()
        }

        fn add_bob(&self, prev: &[u8], role: Role) -> Vec<u8> {
            let chain = ChainHead { seq: 3, id: ObjectId([3; 32]) };
            self.entry(1, ObjectId::of(prev), 0, MemberChange::Add { account: self.bob, role, chain })
                .seal(&self.alice_phone)
                .unwrap()
        }
    }

    #[test]
    fn a_member_list_verifies_and_tracks_members_roles_and_epochs() {
        let mut w = World::new();
        let create = w.create();
        let add = w.add_bob(&create, Role::Writer);
        let new_key = CollectionKey::generate(&mut w.rng);
        let commitment = key_commitment(&new_key, w.collection, 1);
        let remove = w
            .entry(2, ObjectId::of(&add), 1, MemberChange::Remove { account: w.bob, cutoff: 9, commitment })
            .seal(&w.alice_phone)
            .unwrap();
        let list = MemberList::verify(w.collection, w.alice, [&create[..], &add[..], &remove[..]], w.owner_device()).unwrap();
        assert_eq!(list.key_epoch(), 1);
        assert!(!list.is_member(&w.bob));
        assert!(list.may_write(&w.bob, 9));
        assert!(!list.may_write(&w.bob, 10));
        assert!(list.may_write(&w.alice, 10));
        list.check_key(0, &w.keys[0]).unwrap();
        list.check_key(1, &new_key).unwrap();
        assert!(list.check_key(1, &w.keys[0]).is_err());
        assert_eq!(open_shared_name(&w.keys[0], w.collection, w.alice, list.sealed_name()).unwrap(), "Photos");
    }

    #[test]
    fn a_member_removed_and_added_again_as_reader_keeps_its_earlier_writes() {
        let mut w = World::new();
        let create = w.create();
        let add = w.add_bob(&create, Role::Writer);
        let key = CollectionKey::generate(&mut w.rng);
        let remove = w
            .entry(
                2,
                ObjectId::of(&add),
                1,
                MemberChange::Remove { account: w.bob, cutoff: 4, commitment: key_commitment(&key, w.collection, 1) },
            )
            .seal(&w.alice_phone)
            .unwrap();
        let chain = ChainHead { seq: 3, id: ObjectId([3; 32]) };
        let again = w
            .entry(3, ObjectId::of(&remove), 1, MemberChange::Add { account: w.bob, role: Role::Reader, chain })
            .seal(&w.alice_phone)
            .unwrap();
        let list = MemberList::verify(w.collection, w.alice, [&create[..], &add[..], &remove[..], &again[..]], w.owner_device())
            .unwrap();
        assert!(list.may_write(&w.bob, 4), "a write made as a writer before the removal");
        assert!(!list.may_write(&w.bob, 5));
        assert_eq!(list.role(&w.bob), Some(Role::Reader));
    }

    #[test]
    fn a_reader_may_not_write() {
        let mut w = World::new();
        let create = w.create();
        let add = w.add_bob(&create, Role::Reader);
        let list = MemberList::verify(w.collection, w.alice, [&create[..], &add[..]], w.owner_device()).unwrap();
        assert_eq!(list.role(&w.bob), Some(Role::Reader));
        assert!(!list.may_write(&w.bob, 1));
    }

    #[test]
    fn a_member_inserted_by_anyone_but_the_owner_is_refused() {
        let mut w = World::new();
        let create = w.create();
        let mut forged = w.entry(
            1,
            ObjectId::of(&create),
            0,
            MemberChange::Add {
                account: AccountId([0xee; 16]),
                role: Role::Writer,
                chain: ChainHead { seq: 0, id: ObjectId([0; 32]) },
            },
        );
        forged.signer = w.mallory_device.id();
        let forged = forged.seal(&w.mallory_device).unwrap();
        let mut list = MemberList::verify(w.collection, w.alice, [&create[..]], w.owner_device()).unwrap();
        assert_eq!(list.append(&forged, w.owner_device()), Err(Error::UnknownAuthor));
        // A bit flipped in a genuine entry breaks its signature.
        let mut flipped = w.add_bob(&create, Role::Reader);
        let at = flipped.len() - SIGNATURE_LEN - 41;
        flipped[at] ^= 1;
        assert!(list.append(&flipped, w.owner_device()).is_err());
        assert!(!list.is_member(&AccountId([0xee; 16])));
    }

    #[test]
    fn entries_out_of_order_or_from_another_collection_are_refused() {
        let mut w = World::new();
        let create = w.create();
        let add = w.add_bob(&create, Role::Writer);
        assert!(MemberList::verify(w.collection, w.alice, [&add[..]], w.owner_device()).is_err());
        assert!(MemberList::verify(CollectionId([2; 16]), w.alice, [&create[..]], w.owner_device()).is_err());
        assert!(MemberList::verify(w.collection, w.bob, [&create[..]], w.owner_device()).is_err());
        let mut list = MemberList::verify(w.collection, w.alice, [&create[..]], w.owner_device()).unwrap();
        list.append(&add, w.owner_device()).unwrap();
        assert!(list.append(&add, w.owner_device()).is_err(), "replayed");
    }

    #[test]
    fn a_grant_opens_on_each_named_device_only_and_its_keys_match_the_commitments() {
        let mut w = World::new();
        let create = w.create();
        let add = w.add_bob(&create, Role::Writer);
        let list = MemberList::verify(w.collection, w.alice, [&create[..], &add[..]], w.owner_device()).unwrap();
        let keys: Vec<&CollectionKey> = w.keys.iter().collect();
        let stored = KeyGrant::seal(
            w.collection,
            w.alice,
            &w.alice_phone,
            w.bob,
            list.head(),
            Role::Writer,
            &keys,
            "Photos",
            &[w.bob_laptop.public(), w.bob_phone.public()],
            &mut w.rng,
        )
        .unwrap();
        let grant = KeyGrant::verify(&stored, w.owner_device()).unwrap();
        for device in [&w.bob_laptop, &w.bob_phone] {
            let granted = grant.open(device, w.bob).unwrap();
            assert_eq!(granted.name, "Photos");
            list.check_key(0, &granted.keys[0]).unwrap();
        }
        assert!(grant.open(&w.mallory_device, w.bob).is_err());
        assert!(grant.open(&w.bob_laptop, w.alice).is_err());
        // Signed by a device that is not the owner's: refused.
        let forged = KeyGrant::seal(
            w.collection,
            w.alice,
            &w.mallory_device,
            w.bob,
            list.head(),
            Role::Writer,
            &keys,
            "Photos",
            &[w.bob_laptop.public()],
            &mut w.rng,
        )
        .unwrap();
        assert_eq!(KeyGrant::verify(&forged, w.owner_device()), Err(Error::UnknownAuthor));
    }

    #[test]
    fn a_substituted_key_fails_the_owners_commitment() {
        let mut w = World::new();
        let create = w.create();
        let list = MemberList::verify(w.collection, w.alice, [&create[..]], w.owner_device()).unwrap();
        let chosen = CollectionKey::generate(&mut w.rng);
        assert!(list.check_key(0, &chosen).is_err());
    }

    #[test]
    fn a_handle_claim_is_signed_and_spelled_one_way() {
        let w = World::new();
        let claim = HandleClaim { handle: "bob.smith".into(), account: w.bob, device: w.bob_phone.id(), time_ms: 5 };
        let stored = claim.seal(&w.bob_phone).unwrap();
        let bob_devices = |id: &DeviceId| (*id == w.bob_phone.id()).then(|| w.bob_phone.public().clone());
        assert_eq!(HandleClaim::verify(&stored, bob_devices).unwrap(), claim);
        assert_eq!(HandleClaim::verify(&stored, |_| None), Err(Error::UnknownAuthor));
        for bad in ["Bob", "b", "-bob", "bob smith", "bób", &"x".repeat(33)] {
            assert!(validate_handle(bad).is_err(), "{bad}");
        }
        let mut tampered = stored.clone();
        tampered[8] = b'c';
        assert!(HandleClaim::verify(&tampered, bob_devices).is_err());
    }

    #[test]
    fn a_share_response_is_bound_to_its_grant_and_device() {
        let w = World::new();
        let response = ShareResponse {
            collection: w.collection,
            owner: w.alice,
            member: w.bob,
            device: w.bob_phone.id(),
            grant: ObjectId([9; 32]),
            accept: true,
            time_ms: 1,
        };
        let stored = response.seal(&w.bob_phone).unwrap();
        assert_eq!(stored.len(), SHARE_RESPONSE_LEN);
        let bob_devices = |id: &DeviceId| (*id == w.bob_phone.id()).then(|| w.bob_phone.public().clone());
        assert_eq!(ShareResponse::verify(&stored, bob_devices).unwrap(), response);
        let mut tampered = stored.clone();
        tampered[7 + 16 * 4] ^= 1;
        assert!(ShareResponse::verify(&tampered, bob_devices).is_err());
    }
}
