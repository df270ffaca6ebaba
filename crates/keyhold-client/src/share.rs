//! Sharing collections with other accounts (spec: `sharing.md`).
//!
//! Everything another account's keys touch comes through key transparency
//! first: a contact's devices are the devices of the device chain whose head
//! the key directory proves ([`Client::proven_contact`]), never the
//! server's bare answer (SECURITY A3). The owner signs the member list and
//! every key grant; a member's device verifies both, checks every key
//! against the owner's commitments, and signs its acceptance before the
//! collection appears on its side (D2). Revisions of a shared collection
//! count only when a device of a member that may write signed them (D3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keyhold_core::share::{
    KeyGrant, MEMBER_GENESIS_PREV, MemberChange, MemberEntry, MemberList, Role, ShareResponse, key_commitment, open_shared_name,
    seal_shared_name,
};
use keyhold_core::{
    AccountId, ChainHead, CollectionId, CollectionKey, CollectionWrapContext, DeviceChain, DeviceId, DevicePublicKeys, ObjectId,
    os_rng, wrap_collection_key,
};
use serde::Serialize;

use crate::client::{Client, Collection};
use crate::error::{ClientError, Result};

/// A contact's device chain, as far as key transparency proves it.
pub struct ProvenContact {
    /// The account.
    pub account: AccountId,
    /// Its verified device chain, up to the head the key directory proves.
    pub chain: DeviceChain,
    /// The safety number of this account and the contact.
    pub safety_number: String,
}

/// A shared collection's verified member list and the device chains of
/// everyone who may have written to it.
#[derive(Debug)]
pub struct SharedView {
    /// The verified member list.
    pub list: MemberList,
    /// Device chains of the owner and of every member ever admitted.
    pub chains: BTreeMap<AccountId, DeviceChain>,
}

impl SharedView {
    /// The account whose chain enrolled `device`: the owner's chain first;
    /// otherwise the one member chain that lists it. A device no chain
    /// lists, or several members' chains list (adding a device needs no
    /// proof that one holds its keys), is nobody's.
    pub fn account_of(&self, device: &DeviceId) -> Option<(&AccountId, &DeviceChain)> {
        let owner = self.list.owner();
        if let Some((account, chain)) = self.chains.get_key_value(&owner).filter(|(_, c)| c.device(device).is_some()) {
            return Some((account, chain));
        }
        let mut listing = self.chains.iter().filter(|(a, chain)| **a != owner && chain.device(device).is_some());
        match (listing.next(), listing.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// Whether `device` may have signed revision `seq`: a device of an
    /// account that may write at `seq`, enrolled in that account's chain
    /// (or revoked after it).
    pub fn may_author(&self, device: &DeviceId, collection: CollectionId, seq: u64) -> bool {
        self.account_of(device)
            .is_some_and(|(account, chain)| self.list.may_write(account, seq) && chain.may_author(device, collection, seq))
    }

    /// The public keys of `device`, if a chain of the view enrolled it.
    pub fn device(&self, device: &DeviceId) -> Option<&DevicePublicKeys> {
        self.account_of(device).and_then(|(_, chain)| chain.device(device)).map(|d| &d.public)
    }
}

/// What `keyhold share` did.
#[derive(Debug, Serialize)]
pub struct ShareReport {
    /// The collection (hex).
    pub collection: String,
    /// The new member (hex).
    pub member: String,
    /// Its role.
    pub role: String,
    /// The member's devices the keys were sealed to: (id, name).
    pub devices: Vec<(String, String)>,
    /// The safety number to compare with the member out of band.
    pub safety_number: String,
}

/// An invitation as this device verified it.
#[derive(Debug, Serialize)]
pub struct Invitation {
    /// The grant's id (hex): what `accept` and `decline` take.
    pub id: String,
    /// The collection (hex).
    pub collection: String,
    /// The owner (hex).
    pub owner: String,
    /// The collection's name, as the owner calls it.
    pub name: String,
    /// The role offered.
    pub role: String,
    /// `pending`, `accepted` or `declined`.
    pub status: String,
    /// The safety number of this account and the owner.
    pub safety_number: String,
}

/// A collection this account can reach, as `keyhold collections` lists it.
#[derive(Debug, Serialize)]
pub struct CollectionSummary {
    /// The name to give `sync --collection`.
    pub name: String,
    /// The collection (hex).
    pub collection: String,
    /// The owner (hex).
    pub owner: String,
    /// This account's role: owner, writer or reader.
    pub role: String,
    /// Members (hex) and their roles (the owner's own collections: every
    /// current member).
    pub members: Vec<(String, String)>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Writer => "writer",
        Role::Reader => "reader",
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_account(text: &str) -> Result<AccountId> {
    AccountId::from_hex(text.trim())
        .ok_or_else(|| ClientError::Usage(format!("{text:?} is not an account id (32 hex digits; `keyhold status` shows one)")))
}

/// The name under which a member syncs a collection someone else owns:
/// `NAME@OWNER`, so an owner cannot slip its collection in under a name the
/// member already uses (like `default`).
pub fn qualified_name(name: &str, owner: &AccountId) -> String {
    format!("{name}@{}", owner.to_hex())
}

impl Client {
    /// A contact's device chain, proven by key transparency: the key
    /// directory's history of the account (fresh, witnessed, no reset; see
    /// [`Client::verify_contact`]) names the chain head, and the chain the
    /// server serves must verify up to exactly that head.
    pub async fn proven_contact(&self, account: AccountId) -> Result<ProvenContact> {
        if account == self.keys.account {
            return Err(ClientError::Usage("that is this account".into()));
        }
        let report = self.verify_contact(account).await?;
        let newest = report.history.last().ok_or_else(|| ClientError::Usage("the contact has no directory entry".into()))?;
        let entries = self.api.account_chain(account).await?;
        let upto = usize::try_from(newest.seq).ok().and_then(|s| s.checked_add(1)).unwrap_or(usize::MAX);
        let proven = entries.get(..upto).ok_or_else(|| {
            ClientError::Withheld(format!("entries of {}'s device chain that the key directory proves", account.to_hex()))
        })?;
        let chain = DeviceChain::verify(account, proven.iter().map(Vec::as_slice))?;
        if chain.head().id.to_hex() != newest.head {
            return Err(ClientError::Transparency {
                reason: format!(
                    "the server's device chain of {} is not the one the key directory proves: the server substitutes keys",
                    account.to_hex()
                ),
                evidence: None,
            });
        }
        Ok(ProvenContact { account, chain, safety_number: report.safety_number })
    }

    /// The device chain of `account` for verifying what it signed: this
    /// account's own, or a contact's proven one.
    async fn chain_of(&self, account: AccountId) -> Result<DeviceChain> {
        if account == self.keys.account { Ok(self.chain.clone()) } else { Ok(self.proven_contact(account).await?.chain) }
    }

    /// The verified member list of `collection`, owned by `owner`, and the
    /// chains of everyone in it; `None` if the collection is not shared. The
    /// list must contain the newest entry this device verified before (a
    /// server cannot roll a removal back).
    pub async fn shared_view(&self, collection: CollectionId, owner: AccountId) -> Result<Option<SharedView>> {
        let Some(log) = self.api.members(collection).await? else { return Ok(None) };
        if log.owner != owner.to_hex() {
            return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("member list owner")));
        }
        let owner_chain = self.chain_of(owner).await?;
        let list = MemberList::verify(collection, owner, log.entries.iter().map(|e| e.0.as_slice()), |d| {
            owner_chain.device(d).map(|d| d.public.clone())
        })?;
        if let Some(pinned) = self.state.member_list_head(collection)? {
            let at = usize::try_from(pinned.seq).ok().and_then(|i| log.entries.get(i));
            if at.map(|e| ObjectId::of(&e.0)) != Some(pinned.id) {
                return Err(ClientError::Integrity(keyhold_core::Error::Rollback { seen: pinned.seq, served: list.head().seq }));
            }
        }
        self.state.set_member_list_head(collection, keyhold_core::Head { seq: list.head().seq, id: list.head().id })?;
        let mut chains = BTreeMap::new();
        chains.insert(owner, owner_chain);
        for account in list.members().keys() {
            chains.insert(*account, self.chain_of(*account).await?);
        }
        Ok(Some(SharedView { list, chains }))
    }

    /// The raw keys of every epoch of a collection this account holds.
    fn raw_keys(&self, collection: CollectionId) -> Result<Vec<CollectionKey>> {
        let keys = self.collection_raw_keys(collection)?;
        let count = keys.len();
        let ordered: Vec<CollectionKey> = keys.into_values().collect();
        // Epochs are contiguous from 0, or some wrap is withheld.
        if ordered.is_empty() || self.collection_raw_epochs(collection).iter().copied().ne(0..u32::try_from(count).unwrap_or(0)) {
            return Err(ClientError::Withheld(format!("key epochs of collection {collection}")));
        }
        Ok(ordered)
    }

    /// Shares the collection this account calls `name` with `contact`.
    pub async fn share(&mut self, name: &str, contact: AccountId, role: Role) -> Result<ShareReport> {
        keyhold_core::share::validate_shared_name(name)?;
        let coll = self.collection(name).await?;
        if let Some(view) = &coll.shared {
            if view.list.owner() != self.keys.account {
                return Err(ClientError::Usage("only the collection's owner can share it".into()));
            }
            if view.list.is_member(&contact) {
                return Err(ClientError::Usage(format!("{} is already a member", contact.to_hex())));
            }
        }
        let proven = self.proven_contact(contact).await?;
        let mut keys = self.raw_keys(coll.id)?;
        let mut list = match coll.shared.as_ref() {
            Some(view) => view.list.clone(),
            None => self.create_member_list(coll.id, name, &keys).await?,
        };
        // A key of an epoch the list has not started (a rotation that did
        // not finish) is not the member's to have.
        keys.truncate(usize::try_from(list.key_epoch()).unwrap_or(usize::MAX).saturating_add(1));
        let recipients: Vec<&DevicePublicKeys> = proven.chain.active_devices().map(|d| &d.public).collect();
        let entry = MemberEntry {
            collection: coll.id,
            owner: self.keys.account,
            seq: list.head().seq.saturating_add(1),
            prev: list.head().id,
            time_ms: now_ms(),
            key_epoch: list.key_epoch(),
            signer: self.keys.device.id(),
            change: MemberChange::Add { account: contact, role, chain: proven.chain.head() },
        };
        let stored = entry.seal(&self.keys.device)?;
        let at = ChainHead { seq: entry.seq, id: ObjectId::of(&stored) };
        let key_refs: Vec<&CollectionKey> = keys.iter().collect();
        let grant = KeyGrant::seal(
            coll.id,
            self.keys.account,
            &self.keys.device,
            contact,
            at,
            role,
            &key_refs,
            name,
            &recipients,
            &mut os_rng(),
        )?;
        list.append(&stored, |d| self.chain.device(d).map(|d| d.public.clone()))?;
        if !self.api.append_member(coll.id, stored, vec![grant]).await? {
            return Err(ClientError::Usage("the member list changed meanwhile; run the command again".into()));
        }
        Ok(ShareReport {
            collection: coll.id.to_hex(),
            member: contact.to_hex(),
            role: role_name(role).into(),
            devices: proven.chain.active_devices().map(|d| (d.public.id().to_hex(), d.name.clone())).collect(),
            safety_number: proven.safety_number,
        })
    }

    async fn create_member_list(&self, collection: CollectionId, name: &str, keys: &[CollectionKey]) -> Result<MemberList> {
        let first = keys.first().ok_or_else(|| ClientError::Withheld("the collection's first key".into()))?;
        let commitments = keys
            .iter()
            .enumerate()
            .map(|(epoch, key)| {
                Ok(key_commitment(
                    key,
                    collection,
                    u32::try_from(epoch).map_err(|_| keyhold_core::Error::LimitExceeded("key epochs"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let key_epoch =
            u32::try_from(keys.len().saturating_sub(1)).map_err(|_| keyhold_core::Error::LimitExceeded("key epochs"))?;
        let entry = MemberEntry {
            collection,
            owner: self.keys.account,
            seq: 0,
            prev: MEMBER_GENESIS_PREV,
            time_ms: now_ms(),
            key_epoch,
            signer: self.keys.device.id(),
            change: MemberChange::Create {
                commitments,
                sealed_name: seal_shared_name(first, collection, self.keys.account, name, &mut os_rng())?,
            },
        };
        let stored = entry.seal(&self.keys.device)?;
        let list =
            MemberList::genesis(collection, self.keys.account, &stored, |d| self.chain.device(d).map(|d| d.public.clone()))?;
        if !self.api.append_member(collection, stored, Vec::new()).await? {
            return Err(ClientError::Usage("the member list changed meanwhile; run the command again".into()));
        }
        Ok(list)
    }

    /// Removes `contact` from the collection this account calls `name`, and
    /// moves the collection to a new key epoch wrapped to the remaining
    /// members' devices only (SECURITY A7).
    pub async fn unshare(&mut self, name: &str, contact: AccountId) -> Result<()> {
        let coll = self.collection(name).await?;
        let view = coll.shared.clone().ok_or_else(|| ClientError::Usage(format!("collection {name} is not shared")))?;
        if view.list.owner() != self.keys.account {
            return Err(ClientError::Usage("only the collection's owner can remove members".into()));
        }
        if !view.list.is_member(&contact) {
            return Err(ClientError::Usage(format!("{} is not a member of {name}", contact.to_hex())));
        }
        let (mut coll, mut view) = (coll, view);
        // A member's write that lands after the head read here moves the
        // head: the server refuses the removal then, and it is made again
        // with the new head as its cutoff.
        for _ in 0..3 {
            if self.start_shared_epoch(&coll, &view, Some(contact)).await? {
                return Ok(());
            }
            coll = self.collection(name).await?;
            view = coll.shared.clone().ok_or_else(|| ClientError::Withheld("the member list".into()))?;
            if !view.list.is_member(&contact) {
                return Ok(());
            }
        }
        Err(ClientError::Usage("the collection kept changing while removing the member; run the command again".into()))
    }

    /// Whether a device of a current member was revoked after the current
    /// key epoch began: it may hold the key, so the owner starts a new one.
    ///
    /// Times are the signers' claims: a revocation dated in the future counts
    /// only once that time has come, so a member cannot make the owner
    /// rotate on every open. The owner's own chain counts too (a rotation
    /// the revoking device could not finish is finished here).
    pub(crate) fn member_device_revoked_since_epoch(&self, view: &SharedView) -> bool {
        let now = now_ms();
        let owner = view.list.owner();
        view.chains.iter().filter(|(account, _)| **account == owner || view.list.is_member(account)).any(|(_, chain)| {
            chain
                .devices()
                .values()
                .any(|d| d.revoked.as_ref().is_some_and(|r| r.time_ms > view.list.epoch_started_ms() && r.time_ms <= now))
        })
    }

    /// Starts a new key epoch of a collection this account owns and shares:
    /// a fresh key, filed under this account's root key first (a retry
    /// reuses it), committed to in a remove entry (when `removed` names a
    /// member, whose writes then count up to the head verified now) or a
    /// rotate entry, and sealed to every remaining member's proven active
    /// devices. Whoever is not among them never holds it (SECURITY A7).
    /// `false` if the member list or the head moved meanwhile.
    pub(crate) async fn start_shared_epoch(
        &mut self,
        coll: &Collection,
        view: &SharedView,
        removed: Option<AccountId>,
    ) -> Result<bool> {
        let epoch = view.list.key_epoch().checked_add(1).ok_or(keyhold_core::Error::LimitExceeded("key epochs"))?;
        self.new_epoch_key(coll.id, epoch).await?;
        let keys = self.raw_keys(coll.id)?;
        let newest = keys.last().ok_or_else(|| ClientError::Withheld("the new key".into()))?;
        if keys.len() != usize::try_from(epoch).unwrap_or(usize::MAX).saturating_add(1) {
            return Err(ClientError::Withheld(format!("key epochs of collection {}", coll.id)));
        }
        let commitment = key_commitment(newest, coll.id, epoch);
        let first = keys.first().ok_or_else(|| ClientError::Withheld("the first key".into()))?;
        let name = open_shared_name(first, coll.id, self.keys.account, view.list.sealed_name())?;
        let change = match removed {
            Some(account) => {
                let cutoff = self.verified_head(coll).await?.map_or(0, |r| r.revision.seq);
                MemberChange::Remove { account, cutoff, commitment }
            }
            None => MemberChange::Rotate { commitment },
        };
        let entry = MemberEntry {
            collection: coll.id,
            owner: self.keys.account,
            seq: view.list.head().seq.saturating_add(1),
            prev: view.list.head().id,
            time_ms: now_ms(),
            key_epoch: epoch,
            signer: self.keys.device.id(),
            change,
        };
        let stored = entry.seal(&self.keys.device)?;
        let at = ChainHead { seq: entry.seq, id: ObjectId::of(&stored) };
        let key_refs: Vec<&CollectionKey> = keys.iter().collect();
        let mut grants = Vec::new();
        for (member, standing) in view.list.members() {
            if Some(*member) == removed || standing.cutoff.is_some() {
                continue;
            }
            let proven = self.proven_contact(*member).await?;
            let recipients: Vec<&DevicePublicKeys> = proven.chain.active_devices().map(|d| &d.public).collect();
            if recipients.is_empty() {
                tracing::warn!(member = %member.to_hex(), "a member with no active device gets no key of the new epoch");
                continue;
            }
            grants.push(KeyGrant::seal(
                coll.id,
                self.keys.account,
                &self.keys.device,
                *member,
                at,
                standing.role,
                &key_refs,
                &name,
                &recipients,
                &mut os_rng(),
            )?);
        }
        self.api.append_member(coll.id, stored, grants).await
    }

    /// The collections this account holds keys of that are shared, split
    /// into those it owns and those it joined, from verified member lists
    /// (and, for a list the server no longer shows, from this device's pin).
    pub(crate) async fn shared_collection_ids(&self) -> Result<(Vec<CollectionId>, Vec<CollectionId>)> {
        let joined: HashMap<CollectionId, AccountId> = self.joined_collections().await?.into_iter().collect();
        let (mut owned, mut others) = (Vec::new(), Vec::new());
        for collection in self.collection_ids().into_keys() {
            if let Some(owner) = joined.get(&collection) {
                self.shared_view(collection, *owner).await?;
                others.push(collection);
            } else if self.api.members(collection).await?.is_some() {
                // Listed as shared: it must be a list of this account's.
                self.shared_view(collection, self.keys.account).await?;
                owned.push(collection);
            } else if self.state.member_list_head(collection)?.is_some() {
                // Shared once, no longer shown (a removal): never mint its epochs.
                others.push(collection);
            }
        }
        Ok((owned, others))
    }

    /// Starts a new key epoch of each of `owned`, collections this account
    /// owns and shares (after one of its devices was revoked).
    pub(crate) async fn rotate_owned_shared(&mut self, owned: &[CollectionId]) -> Result<()> {
        for collection in owned {
            let coll = self.open_collection_by_id(*collection).await?;
            let view = coll.shared.clone().ok_or_else(|| ClientError::Withheld(format!("the member list of {collection}")))?;
            if !self.start_shared_epoch(&coll, &view, None).await? {
                return Err(ClientError::Usage(format!(
                    "the member list of {collection} changed meanwhile: its new key epoch is started when it is next synced"
                )));
            }
        }
        Ok(())
    }

    /// The key of a new collection epoch, filed under this account's root
    /// key first (a retry after a failed step reuses the filed one).
    async fn new_epoch_key(&mut self, collection: CollectionId, epoch: u32) -> Result<CollectionKey> {
        let key = CollectionKey::generate(&mut os_rng());
        if self.file_collection_key(collection, epoch, &key).await? {
            return Ok(key);
        }
        self.load_account_keys().await?;
        let mut raw = self.collection_raw_keys(collection)?;
        raw.remove(&epoch).ok_or_else(|| ClientError::Withheld(format!("the key of epoch {epoch} of collection {collection}")))
    }

    /// Files `key` of `epoch` under this account's root key; `false` if a
    /// key of that epoch is filed already.
    async fn file_collection_key(&mut self, collection: CollectionId, epoch: u32, key: &CollectionKey) -> Result<bool> {
        let ctx = CollectionWrapContext {
            account: self.keys.account,
            collection,
            collection_epoch: epoch,
            account_epoch: self.keys.epoch,
        };
        let wrap = wrap_collection_key(key, self.current_root(), &ctx, &mut os_rng())?;
        if !self.api.put_collection_key(collection, epoch, wrap.clone()).await? {
            return Ok(false);
        }
        self.add_collection_wrap(collection, epoch, wrap);
        Ok(true)
    }

    /// Every grant addressed to this account that verifies, with what it
    /// offers; grants that do not verify are returned as alarms.
    pub async fn invitations(&self) -> Result<(Vec<Invitation>, Vec<String>)> {
        let mut out = Vec::new();
        let mut alarms = Vec::new();
        for record in self.api.grants().await? {
            let status = match record
                .response
                .as_ref()
                .map(|r| ShareResponse::verify(&r.0, |d| self.chain.device(d).map(|d| d.public.clone())))
            {
                None => "pending",
                Some(Ok(r)) if r.accept => "accepted",
                Some(Ok(_)) => "declined",
                Some(Err(_)) => {
                    alarms.push(format!(
                        "the answer on record for invitation {} was not signed by a device of this account",
                        record.id.0.to_hex()
                    ));
                    "pending"
                }
            };
            match self.verify_grant(&record).await {
                Ok(verified) => out.push(Invitation {
                    id: record.id.0.to_hex(),
                    collection: verified.grant.collection.to_hex(),
                    owner: verified.grant.owner.to_hex(),
                    name: verified.name,
                    role: role_name(verified.grant.role).into(),
                    status: status.into(),
                    safety_number: verified.safety_number,
                }),
                Err(e @ (ClientError::Http(_) | ClientError::Io { .. } | ClientError::State(_))) => return Err(e),
                Err(e) => alarms.push(format!(
                    "an invitation the server shows ({}) does not verify and is ignored: {e}",
                    record.id.0.to_hex()
                )),
            }
        }
        Ok((out, alarms))
    }

    /// Verifies a grant addressed to this account: signed by a device of the
    /// owner's proven chain, this account a current member of the verified
    /// member list with the grant's role, and every key the one the owner
    /// committed to.
    async fn verify_grant(&self, record: &keyhold_proto::GrantRecord) -> Result<VerifiedGrant> {
        let owner = parse_account(&record.owner).map_err(|_| ClientError::Protocol("grant owner".into()))?;
        if ObjectId::of(&record.grant.0) != record.id.0 {
            return Err(ClientError::Integrity(keyhold_core::Error::ContentMismatch));
        }
        let proven = self.proven_contact(owner).await?;
        let grant = KeyGrant::verify(&record.grant.0, |d| proven.chain.device(d).map(|d| d.public.clone()))?;
        if grant.owner != owner || grant.member != self.keys.account || grant.collection.to_hex() != record.collection {
            return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("grant")));
        }
        let view =
            self.shared_view(grant.collection, owner).await?.ok_or_else(|| ClientError::Withheld("the member list".into()))?;
        let list = view.list;
        if list.role(&self.keys.account) != Some(grant.role) {
            return Err(ClientError::Usage("the owner withdrew this invitation (or changed its role)".into()));
        }
        let granted = grant.open(&self.keys.device, self.keys.account)?;
        for (epoch, key) in granted.keys.iter().enumerate() {
            list.check_key(u32::try_from(epoch).map_err(|_| keyhold_core::Error::LimitExceeded("key epochs"))?, key)?;
        }
        Ok(VerifiedGrant { grant, name: granted.name, keys: granted.keys, safety_number: proven.safety_number, list })
    }

    async fn find_grant(&self, id: &str) -> Result<keyhold_proto::GrantRecord> {
        let id = id.trim().to_ascii_lowercase();
        let matching: Vec<_> = self.api.grants().await?.into_iter().filter(|g| g.id.0.to_hex().starts_with(&id)).collect();
        match <[_; 1]>::try_from(matching) {
            Ok([one]) if id.len() >= 8 => Ok(one),
            Ok(_) => Err(ClientError::Usage("give at least 8 hex digits of the invitation id".into())),
            Err(v) if v.is_empty() => Err(ClientError::Usage(format!("no invitation {id} (see `keyhold invitations`)"))),
            Err(_) => Err(ClientError::Usage(format!("{id} names several invitations; give more digits"))),
        }
    }

    /// Accepts an invitation: verifies it, files its keys under this
    /// account's root key (so every device of the account can read the
    /// collection) and signs the acceptance. Returns the name to sync it by.
    pub async fn accept(&mut self, id: &str) -> Result<String> {
        let record = self.find_grant(id).await?;
        let verified = self.verify_grant(&record).await?;
        let collection = verified.grant.collection;
        let own = self.collection_raw_epochs(collection);
        // Keys this account already holds under that id must be the
        // owner's (a re-accept): another collection of its own is refused.
        for (epoch, key) in &self.collection_raw_keys(collection)? {
            verified.list.check_key(*epoch, key).map_err(|_| {
                ClientError::Usage("this account already has a collection with that id; the invitation is refused".into())
            })?;
        }
        for (epoch, key) in verified.keys.iter().enumerate() {
            let epoch = u32::try_from(epoch).map_err(|_| keyhold_core::Error::LimitExceeded("key epochs"))?;
            if !own.contains(&epoch) {
                self.file_collection_key(collection, epoch, key).await?;
            }
        }
        self.respond(&record, &verified.grant, true).await?;
        Ok(qualified_name(&verified.name, &verified.grant.owner))
    }

    /// Declines an invitation (signed, so the owner sees it).
    pub async fn decline(&self, id: &str) -> Result<()> {
        let record = self.find_grant(id).await?;
        let (grant, _) = KeyGrant::parse(&record.grant.0)?;
        if grant.member != self.keys.account {
            return Err(ClientError::Integrity(keyhold_core::Error::ContextMismatch("member")));
        }
        self.respond(&record, &grant, false).await
    }

    async fn respond(&self, record: &keyhold_proto::GrantRecord, grant: &KeyGrant, accept: bool) -> Result<()> {
        let response = ShareResponse {
            collection: grant.collection,
            owner: grant.owner,
            member: self.keys.account,
            device: self.keys.device.id(),
            grant: record.id.0,
            accept,
            time_ms: now_ms(),
        };
        self.api.respond_to_grant(record.id.0, response.seal(&self.keys.device)?).await
    }

    /// The shared collections this account joined, by id, with their
    /// owners — only those whose keys one of this account's devices filed
    /// after accepting (the server's list alone proves nothing).
    pub async fn joined_collections(&self) -> Result<Vec<(CollectionId, AccountId)>> {
        let mut out = Vec::new();
        for shared in self.api.shared().await? {
            let (Some(collection), Some(owner)) =
                (CollectionId::from_hex(&shared.collection), AccountId::from_hex(&shared.owner))
            else {
                return Err(ClientError::Protocol("shared collection ids".into()));
            };
            if owner != self.keys.account && !self.collection_raw_epochs(collection).is_empty() {
                out.push((collection, owner));
            }
        }
        Ok(out)
    }

    /// Opens a collection someone else owns, by its `NAME@OWNER` name;
    /// `None` if no joined collection has that name. Keys of epochs this
    /// account lacks are taken from the owner's grants (checked against the
    /// owner's commitments) and filed under this account's root key.
    pub(crate) async fn joined_collection(&mut self, qualified: &str) -> Result<Option<Collection>> {
        let Some((name, owner_hex)) = qualified.rsplit_once('@') else { return Ok(None) };
        let Some(owner) = AccountId::from_hex(owner_hex) else { return Ok(None) };
        for (collection, o) in self.joined_collections().await? {
            if o != owner {
                continue;
            }
            let view = self.shared_view(collection, owner).await?.ok_or_else(|| {
                ClientError::Usage(format!("{qualified}: the server no longer shows this collection's member list"))
            })?;
            let first =
                self.collection_raw_keys(collection)?.remove(&0).ok_or_else(|| ClientError::Withheld("key epoch 0".into()))?;
            view.list.check_key(0, &first)?;
            if open_shared_name(&first, collection, owner, view.list.sealed_name())? != name {
                continue;
            }
            if !view.list.is_member(&self.keys.account) {
                return Err(ClientError::Usage(format!(
                    "{qualified}: the owner removed this account from the collection; it can no longer be synced"
                )));
            }
            self.take_new_epochs(collection, &view).await?;
            let mut coll = self.collection_by_id(collection)?;
            for (epoch, keys) in &self.collection_raw_keys(collection)? {
                view.list.check_key(*epoch, keys)?;
            }
            coll.current_epoch = view.list.key_epoch();
            coll.shared = Some(Arc::new(view));
            return Ok(Some(coll));
        }
        Ok(None)
    }

    /// Files the keys of epochs the member list started after this account
    /// last filed one, from the owner's newest grant to this account.
    async fn take_new_epochs(&mut self, collection: CollectionId, view: &SharedView) -> Result<()> {
        let held = self.collection_raw_epochs(collection);
        if held.last().is_some_and(|e| *e >= view.list.key_epoch()) {
            return Ok(());
        }
        let owner_chain = view.chains.get(&view.list.owner()).ok_or_else(|| ClientError::Withheld("the owner's chain".into()))?;
        let mut newest: Option<(KeyGrant, Vec<CollectionKey>)> = None;
        for record in self.api.grants().await? {
            let Ok(grant) = KeyGrant::verify(&record.grant.0, |d| owner_chain.device(d).map(|d| d.public.clone())) else {
                continue;
            };
            if grant.collection != collection || grant.member != self.keys.account || grant.owner != view.list.owner() {
                continue;
            }
            if newest.as_ref().is_some_and(|(n, _)| n.key_epoch >= grant.key_epoch) {
                continue;
            }
            let Ok(granted) = grant.open(&self.keys.device, self.keys.account) else { continue };
            newest = Some((grant, granted.keys));
        }
        let Some((_, keys)) = newest else {
            return Err(ClientError::Withheld(format!(
                "the key of epoch {} of this shared collection (another device of this account may hold it: sync there)",
                view.list.key_epoch()
            )));
        };
        for (epoch, key) in keys.iter().enumerate() {
            let epoch = u32::try_from(epoch).map_err(|_| keyhold_core::Error::LimitExceeded("key epochs"))?;
            view.list.check_key(epoch, key)?;
            if !held.contains(&epoch) {
                self.file_collection_key(collection, epoch, key).await?;
            }
        }
        Ok(())
    }

    /// Every collection this account owns or joined, with members.
    pub async fn collections(&mut self) -> Result<Vec<CollectionSummary>> {
        let mut out = Vec::new();
        let joined: HashMap<CollectionId, AccountId> = self.joined_collections().await?.into_iter().collect();
        for (collection, _) in self.collection_ids() {
            let owner = joined.get(&collection).copied().unwrap_or(self.keys.account);
            let view = self.shared_view(collection, owner).await?;
            let first = self.collection_raw_keys(collection)?.remove(&0);
            let (name, owner, role) = match (&view, joined.get(&collection)) {
                (Some(view), Some(owner)) => {
                    let Some(first) = first else { continue };
                    let name = open_shared_name(&first, collection, *owner, view.list.sealed_name())?;
                    let role = view.list.role(&self.keys.account).map_or("removed", role_name);
                    (qualified_name(&name, owner), *owner, role)
                }
                (Some(view), None) if view.list.owner() == self.keys.account => {
                    let Some(first) = first else { continue };
                    (
                        open_shared_name(&first, collection, self.keys.account, view.list.sealed_name())?,
                        self.keys.account,
                        "owner",
                    )
                }
                // Own, unshared collections are known by their names only
                // through the folders that sync them.
                _ => (String::new(), self.keys.account, "owner"),
            };
            let members = view
                .as_ref()
                .map(|v| {
                    v.list
                        .members()
                        .iter()
                        .filter(|(_, m)| m.cutoff.is_none())
                        .map(|(a, m)| (a.to_hex(), role_name(m.role).to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(CollectionSummary {
                name,
                collection: collection.to_hex(),
                owner: owner.to_hex(),
                role: role.into(),
                members,
            });
        }
        Ok(out)
    }
}

struct VerifiedGrant {
    list: MemberList,
    grant: KeyGrant,
    name: String,
    keys: Vec<CollectionKey>,
    safety_number: String,
}
