//! The rows of collections shared between accounts (migration 8): which
//! account owns each shared collection, its member list, its members and
//! what the server lets each do, and the key grants with their answers.
//! All of them live in the owner's region, beside the collection's packs
//! and revisions; a member's own region holds nothing of the share.
//!
//! Like the rest of the store, every query is scoped: by the owner for the
//! owner's rows, by the member for a member's (SECURITY G1). Appends are
//! one transaction each, whose first write to `share_entries` (primary key
//! `(collection, seq)`) is the compare-and-swap.

use keyhold_core::share::Role;
use keyhold_proto::{AccountId, CollectionId, ObjectId};
use sqlx::Row;

use crate::store::{MetaStore, StoreError, array, charge, charge_unchecked, lock_account, to_i64, to_u64};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a member stands, as the server enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Admitted by the member list; its devices have not answered the grant
    /// of its admission yet. May read the member list, not the data.
    Invited,
    /// A device of the member accepted: reads (and, as a writer, writes)
    /// the collection.
    Active,
    /// A device of the member declined: no access.
    Declined,
    /// The member list removed it: no access, from that entry on.
    Removed,
}

impl MemberState {
    fn as_str(self) -> &'static str {
        match self {
            MemberState::Invited => "invited",
            MemberState::Active => "active",
            MemberState::Declined => "declined",
            MemberState::Removed => "removed",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "invited" => Ok(MemberState::Invited),
            "active" => Ok(MemberState::Active),
            "declined" => Ok(MemberState::Declined),
            "removed" => Ok(MemberState::Removed),
            _ => Err(StoreError::Corrupt("member state")),
        }
    }
}

fn role_from(v: i64) -> Result<Role> {
    match v {
        0x01 => Ok(Role::Writer),
        0x02 => Ok(Role::Reader),
        _ => Err(StoreError::Corrupt("member role")),
    }
}

/// One account's standing in one shared collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The collection's owner.
    pub owner: AccountId,
    /// What the server lets the member do.
    pub state: MemberState,
    /// Its role, per the member list.
    pub role: Role,
}

/// What a verified member-list entry changes in `share_members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEffect {
    /// The creation entry: the collection becomes shared.
    Create,
    /// Admits (or admits again) an account, invited until it accepts.
    Add {
        /// The member.
        member: AccountId,
        /// Its role.
        role: Role,
    },
    /// Removes a member: its access ends with this entry.
    Remove {
        /// The member.
        member: AccountId,
    },
    /// A new key epoch; nobody's access changes.
    Rotate,
}

/// A verified entry to append to a member list, with its grants.
pub struct MemberAppend<'a> {
    /// The owner (the signed-in account).
    pub owner: AccountId,
    /// The collection.
    pub collection: CollectionId,
    /// The entry's sequence number: the compare-and-swap.
    pub seq: u64,
    /// Its id.
    pub entry_id: ObjectId,
    /// The stored entry.
    pub body: &'a [u8],
    /// What it changes.
    pub effect: MemberEffect,
    /// Verified grants tied to it: (grant id, member, stored grant).
    pub grants: Vec<(ObjectId, AccountId, &'a [u8])>,
    /// For a removal: the head its cutoff names. The entry is appended only
    /// while the collection's head is still there, so no write of the
    /// removed member can land between the head the owner verified and the
    /// removal (every client would refuse it, for good).
    pub cutoff: Option<u64>,
    /// Bytes to charge to the owner's quota.
    pub charge: u64,
    /// Charge even beyond the quota: removing a member must never be
    /// blocked by a full account (SECURITY A7).
    pub charge_beyond_quota: bool,
}

/// What [`MetaStore::append_member`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberAppended {
    /// Appended, with its grants and its effect on members.
    Appended,
    /// An entry with this sequence number exists already (or, for an entry
    /// past the first, the list does not exist or is not the owner's).
    Moved,
    /// A creation entry for a collection another account shares.
    Taken,
    /// It would exceed the owner's quota.
    OverQuota,
}

/// A stored key grant.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// Its id: the hash of `body`.
    pub id: ObjectId,
    /// The collection's owner.
    pub owner: AccountId,
    /// The collection.
    pub collection: CollectionId,
    /// The member it is addressed to.
    pub member: AccountId,
    /// The member-list entry it is tied to.
    pub entry_seq: u64,
    /// The stored grant.
    pub body: Vec<u8>,
    /// The member's stored answer, once given.
    pub response: Option<Vec<u8>>,
    /// Server clock when it was filed.
    pub created_at: i64,
}

/// What [`MetaStore::answer_grant`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Stored now.
    Stored,
    /// The same answer was stored before.
    Same,
    /// Another answer was stored before.
    Other,
}

const GRANT_COLUMNS: &str = "grant_id, account_id, collection_id, member_id, entry_seq, body, response, created_at";

fn grant_row(r: &sqlx::any::AnyRow) -> Result<GrantRow> {
    Ok(GrantRow {
        id: ObjectId(array(r.get(0), "grant id")?),
        owner: AccountId(array(r.get(1), "account id")?),
        collection: CollectionId(array(r.get(2), "collection id")?),
        member: AccountId(array(r.get(3), "member id")?),
        entry_seq: to_u64(r.get(4), "entry seq")?,
        body: r.get(5),
        response: r.get(6),
        created_at: r.get(7),
    })
}

impl MetaStore {
    /// Whether `account` stores data of its own under `collection` (a head
    /// or a pack; a member's key wraps of a joined collection do not
    /// count), or, with `others`, whether any other account stores a head,
    /// a pack or a key wrap under it.
    pub async fn collection_in_use(&self, collection: CollectionId, account: AccountId, others: bool) -> Result<bool> {
        const OWN: [&str; 2] = [
            "SELECT 1 FROM heads WHERE collection_id = $1 AND account_id = $2 LIMIT 1",
            "SELECT 1 FROM packs WHERE collection_id = $1 AND account_id = $2 LIMIT 1",
        ];
        const OTHERS: [&str; 3] = [
            "SELECT 1 FROM heads WHERE collection_id = $1 AND account_id <> $2 LIMIT 1",
            "SELECT 1 FROM packs WHERE collection_id = $1 AND account_id <> $2 LIMIT 1",
            "SELECT 1 FROM collection_wraps WHERE collection_id = $1 AND account_id <> $2 LIMIT 1",
        ];
        let statements: &[&'static str] = if others { &OTHERS } else { &OWN };
        let (c, a) = (collection.as_bytes().as_slice(), account.as_bytes().as_slice());
        for statement in statements {
            if sqlx::query(*statement).bind(c).bind(a).fetch_optional(self.pool()).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The owner of a shared collection, if this region holds its member list.
    pub async fn share_owner(&self, collection: CollectionId) -> Result<Option<AccountId>> {
        sqlx::query("SELECT account_id FROM shared_collections WHERE collection_id = $1")
            .bind(collection.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .map(|r| Ok(AccountId(array(r.get(0), "account id")?)))
            .transpose()
    }

    /// The stored member list of `owner`'s shared collection, seq 0 first
    /// (empty if it is not shared, or not `owner`'s).
    pub async fn share_entries(&self, owner: AccountId, collection: CollectionId) -> Result<Vec<Vec<u8>>> {
        Ok(sqlx::query("SELECT body FROM share_entries WHERE account_id = $1 AND collection_id = $2 ORDER BY seq")
            .bind(owner.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// `member`'s standing in a shared collection of this region, if the
    /// member list ever admitted it.
    pub async fn membership(&self, collection: CollectionId, member: AccountId) -> Result<Option<Membership>> {
        sqlx::query("SELECT account_id, state, role FROM share_members WHERE collection_id = $1 AND member_id = $2")
            .bind(collection.as_bytes().as_slice())
            .bind(member.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .map(|r| {
                Ok(Membership {
                    owner: AccountId(array(r.get(0), "account id")?),
                    state: MemberState::parse(&r.get::<String, _>(1))?,
                    role: role_from(r.get(2))?,
                })
            })
            .transpose()
    }

    /// Appends a verified member-list entry, files its grants, applies its
    /// effect on members and charges the owner, all in one transaction.
    pub async fn append_member(&self, append: &MemberAppend<'_>, now: i64) -> Result<MemberAppended> {
        let (a, c) = (append.owner.as_bytes().as_slice(), append.collection.as_bytes().as_slice());
        let mut tx = self.pool().begin().await?;
        // Write first: a SQLite transaction that reads before its first
        // write fails at once ("database is locked") when another
        // connection wrote meanwhile, where a writer waits its turn.
        lock_account(&mut tx, append.owner).await?;
        if append.effect == MemberEffect::Create {
            let created = sqlx::query(
                "INSERT INTO shared_collections (collection_id, account_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(c)
            .bind(a)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if created != 1 {
                let owner: Vec<u8> = sqlx::query("SELECT account_id FROM shared_collections WHERE collection_id = $1")
                    .bind(c)
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                return Ok(if owner.as_slice() == a { MemberAppended::Moved } else { MemberAppended::Taken });
            }
        } else {
            let owned = sqlx::query("SELECT 1 FROM shared_collections WHERE collection_id = $1 AND account_id = $2")
                .bind(c)
                .bind(a)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !owned {
                return Ok(MemberAppended::Moved);
            }
        }
        if let Some(cutoff) = append.cutoff {
            let head: Option<i64> = sqlx::query("SELECT seq FROM heads WHERE account_id = $1 AND collection_id = $2")
                .bind(a)
                .bind(c)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            let at_cutoff = match head {
                Some(seq) => u64::try_from(seq).ok() == Some(cutoff),
                None => cutoff == 0,
            };
            if !at_cutoff {
                return Ok(MemberAppended::Moved);
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO share_entries (account_id, collection_id, seq, entry_id, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(a)
        .bind(c)
        .bind(to_i64(append.seq, "entry seq")?)
        .bind(append.entry_id.as_bytes().as_slice())
        .bind(append.body)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(MemberAppended::Moved);
        }
        let seq = to_i64(append.seq, "entry seq")?;
        match append.effect {
            MemberEffect::Create | MemberEffect::Rotate => {}
            MemberEffect::Add { member, role } => {
                sqlx::query(
                    "INSERT INTO share_members (account_id, collection_id, member_id, role, state, added_seq, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (collection_id, member_id) DO UPDATE SET \
                     role = excluded.role, state = excluded.state, added_seq = excluded.added_seq, updated_at = excluded.updated_at",
                )
                .bind(a)
                .bind(c)
                .bind(member.as_bytes().as_slice())
                .bind(i64::from(role.byte()))
                .bind(MemberState::Invited.as_str())
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            MemberEffect::Remove { member } => {
                sqlx::query(
                    "UPDATE share_members SET state = $1, updated_at = $2 WHERE account_id = $3 AND collection_id = $4 AND member_id = $5",
                )
                .bind(MemberState::Removed.as_str())
                .bind(now)
                .bind(a)
                .bind(c)
                .bind(member.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?;
            }
        }
        for (id, member, body) in &append.grants {
            // A grant's id is the hash of its bytes, which name this entry:
            // the same id again is the same grant.
            sqlx::query(
                "INSERT INTO share_grants (grant_id, account_id, collection_id, member_id, entry_seq, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(id.as_bytes().as_slice())
            .bind(a)
            .bind(c)
            .bind(member.as_bytes().as_slice())
            .bind(seq)
            .bind(*body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if append.charge > 0 {
            if append.charge_beyond_quota {
                charge_unchecked(&mut tx, append.owner, append.charge).await?;
            } else if !charge(&mut tx, append.owner, append.charge).await? {
                return Ok(MemberAppended::OverQuota);
            }
        }
        tx.commit().await?;
        Ok(MemberAppended::Appended)
    }

    /// Every grant of this region addressed to `member`, oldest first.
    pub async fn grants_to(&self, member: AccountId) -> Result<Vec<GrantRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM share_grants WHERE member_id = $1 ORDER BY created_at, collection_id, entry_seq, grant_id"
        )))
        .bind(member.as_bytes().as_slice())
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(grant_row)
        .collect()
    }

    /// The grant `grant`, if this region holds it and it is addressed to `member`.
    pub async fn grant_to(&self, member: AccountId, grant: ObjectId) -> Result<Option<GrantRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM share_grants WHERE grant_id = $1 AND member_id = $2"
        )))
        .bind(grant.as_bytes().as_slice())
        .bind(member.as_bytes().as_slice())
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(grant_row)
        .transpose()
    }

    /// Stores the member's verified answer to `grant`, once. An answer to
    /// the grant of the member's latest admission, while it is invited,
    /// makes it active (accept) or declined, in the same transaction.
    pub async fn answer_grant(&self, grant: &GrantRow, response: &[u8], accept: bool, now: i64) -> Result<Answered> {
        let (g, m) = (grant.id.as_bytes().as_slice(), grant.member.as_bytes().as_slice());
        let mut tx = self.pool().begin().await?;
        let stored =
            sqlx::query("UPDATE share_grants SET response = $1, responded_at = $2 WHERE grant_id = $3 AND member_id = $4 AND response IS NULL")
                .bind(response)
                .bind(now)
                .bind(g)
                .bind(m)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if stored != 1 {
            let existing: Option<Vec<u8>> =
                sqlx::query("SELECT response FROM share_grants WHERE grant_id = $1 AND member_id = $2")
                    .bind(g)
                    .bind(m)
                    .fetch_optional(&mut *tx)
                    .await?
                    .and_then(|r| r.get(0));
            return Ok(if existing.as_deref() == Some(response) { Answered::Same } else { Answered::Other });
        }
        let state = if accept { MemberState::Active } else { MemberState::Declined };
        sqlx::query(
            "UPDATE share_members SET state = $1, updated_at = $2 \
             WHERE account_id = $3 AND collection_id = $4 AND member_id = $5 AND added_seq = $6 AND state = $7",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(grant.owner.as_bytes().as_slice())
        .bind(grant.collection.as_bytes().as_slice())
        .bind(m)
        .bind(to_i64(grant.entry_seq, "entry seq")?)
        .bind(MemberState::Invited.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Answered::Stored)
    }

    /// The collections `owner` shares (has a member list for), oldest first.
    pub async fn owned_shares(&self, owner: AccountId) -> Result<Vec<CollectionId>> {
        sqlx::query("SELECT collection_id FROM shared_collections WHERE account_id = $1 ORDER BY created_at, collection_id")
            .bind(owner.as_bytes().as_slice())
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok(CollectionId(array(r.get(0), "collection id")?)))
            .collect()
    }

    /// The shared collections of this region `member` is an active member
    /// of: (collection, owner).
    pub async fn joined_shares(&self, member: AccountId) -> Result<Vec<(CollectionId, AccountId)>> {
        sqlx::query(
            "SELECT collection_id, account_id FROM share_members WHERE member_id = $1 AND state = $2 \
             ORDER BY updated_at, collection_id",
        )
        .bind(member.as_bytes().as_slice())
        .bind(MemberState::Active.as_str())
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| Ok((CollectionId(array(r.get(0), "collection id")?), AccountId(array(r.get(1), "account id")?))))
        .collect()
    }

    /// Whether `account`'s device chain has entry `seq` with id `id`.
    pub async fn chain_has(&self, account: AccountId, seq: u64, id: ObjectId) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM device_chain WHERE account_id = $1 AND seq = $2 AND entry_id = $3")
            .bind(account.as_bytes().as_slice())
            .bind(to_i64(seq, "chain seq")?)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    /// The size of a pack of `account`, if filed under `collection`.
    pub async fn pack_size_in(&self, account: AccountId, collection: CollectionId, pack: ObjectId) -> Result<Option<u64>> {
        sqlx::query("SELECT size FROM packs WHERE account_id = $1 AND collection_id = $2 AND pack_id = $3")
            .bind(account.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .bind(pack.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .map(|r| to_u64(r.get(0), "size"))
            .transpose()
    }

    /// Whether the operator suspended `account` or deleted its data:
    /// (suspended, deleted); `None` if this region does not hold it.
    pub async fn account_blocked(&self, account: AccountId) -> Result<Option<(bool, bool)>> {
        Ok(sqlx::query("SELECT suspended_at, deleted_at FROM accounts WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .map(|r| (r.get::<Option<i64>, _>(0).is_some(), r.get::<Option<i64>, _>(1).is_some())))
    }
}
