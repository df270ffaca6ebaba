//! Link shares' rows in the metadata store (migration 7, table `links`):
//! which account made each link, the stored object's id and size, and the
//! link's expiry and revocation. The object's bytes are in the blob store.
//! A live object's size counts against its account's quota, charged in the
//! same transaction as the row (SECURITY G5) and freed when the object is
//! deleted (revoked, or purged after its expiry). Rows stay after that, so
//! the link answers `410 Gone` rather than `404`.

use keyhold_core::LinkId;
use keyhold_proto::{AccountId, ObjectId};
use sqlx::Row;

use crate::store::{MetaStore, StoreError, array, lock_account, to_i64, to_u64};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`MetaStore::add_link`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkAdded {
    /// Filed and counted against the quota.
    Added,
    /// A link of that id exists already (here).
    Exists,
    /// It would exceed the account's quota.
    OverQuota,
}

/// One link, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// Its id.
    pub link: LinkId,
    /// The account that made it.
    pub account: AccountId,
    /// The stored object, until it is deleted.
    pub object: Option<ObjectId>,
    /// The object's length.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
    /// The operator deleted the account's data (`admin delete`).
    pub account_deleted: bool,
}

impl LinkRow {
    /// Whether the link still opens at `now`: not revoked, not expired, its
    /// object there and its account's data not deleted.
    pub fn is_live(&self, now: i64) -> bool {
        self.object.is_some() && self.revoked_at.is_none() && now < self.expires_at && !self.account_deleted
    }
}

const COLUMNS: &str = "l.link_id, l.account_id, l.object_id, l.size, l.created_at, l.expires_at, l.revoked_at, a.deleted_at";

fn row(r: &sqlx::any::AnyRow) -> Result<LinkRow> {
    Ok(LinkRow {
        link: LinkId(array(r.get(0), "link id")?),
        account: AccountId(array(r.get(1), "account id")?),
        object: r.get::<Option<Vec<u8>>, _>(2).map(|o| array(o, "object id").map(ObjectId)).transpose()?,
        size: to_u64(r.get(3), "link size")?,
        created_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        account_deleted: r.get::<Option<i64>, _>(7).is_some(),
    })
}

impl MetaStore {
    /// Files a link whose object (`size` bytes, already in the blob store)
    /// is `object`, and charges it to the account, atomically.
    pub async fn add_link(
        &self,
        account: AccountId,
        link: LinkId,
        object: ObjectId,
        size: u64,
        expires_at: i64,
        now: i64,
    ) -> Result<LinkAdded> {
        let size = to_i64(size, "link size")?;
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO links (link_id, account_id, object_id, size, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING",
        )
        .bind(link.as_bytes().as_slice())
        .bind(account.as_bytes().as_slice())
        .bind(object.as_bytes().as_slice())
        .bind(size)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(LinkAdded::Exists);
        }
        // One conditional statement: it holds under concurrent uploads.
        let charged = sqlx::query(
            "UPDATE accounts SET used_bytes = used_bytes + $1 WHERE account_id = $2 AND used_bytes + $3 <= quota_bytes",
        )
        .bind(size)
        .bind(account.as_bytes().as_slice())
        .bind(size)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if charged != 1 {
            return Ok(LinkAdded::OverQuota);
        }
        tx.commit().await?;
        Ok(LinkAdded::Added)
    }

    /// The link `link`, whoever made it.
    pub async fn link(&self, link: LinkId) -> Result<Option<LinkRow>> {
        let sql = format!("SELECT {COLUMNS} FROM links l JOIN accounts a ON a.account_id = l.account_id WHERE l.link_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(link.as_bytes().as_slice())
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(row)
            .transpose()
    }

    /// Every link of `account`, newest first.
    pub async fn links(&self, account: AccountId) -> Result<Vec<LinkRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM links l JOIN accounts a ON a.account_id = l.account_id WHERE l.account_id = $1 \
             ORDER BY l.created_at DESC, l.link_id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account.as_bytes().as_slice())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(row)
            .collect()
    }

    /// Lets go of the object of `account`'s link `link`: the row forgets
    /// it and its size is freed from the quota, in one transaction; with
    /// `revoke`, the link is also marked revoked at `now`. Returns `None`
    /// if the account has no such link (another account's link is not
    /// told apart, SECURITY G1), else the object to delete from the blob
    /// store (`None` if it was deleted before). The caller deletes the
    /// blob afterwards: a row never names a missing blob.
    pub async fn release_link(
        &self,
        account: AccountId,
        link: LinkId,
        revoke: bool,
        now: i64,
    ) -> Result<Option<Option<ObjectId>>> {
        let mut tx = self.pool().begin().await?;
        // Write first (see `share_store::append_member`).
        lock_account(&mut tx, account).await?;
        let found = sqlx::query("SELECT object_id, size FROM links WHERE link_id = $1 AND account_id = $2")
            .bind(link.as_bytes().as_slice())
            .bind(account.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(found) = found else { return Ok(None) };
        let object = found.get::<Option<Vec<u8>>, _>(0).map(|o| array(o, "object id").map(ObjectId)).transpose()?;
        let size: i64 = found.get(1);
        if revoke {
            sqlx::query("UPDATE links SET revoked_at = $1 WHERE link_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(link.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?;
        }
        if object.is_some() {
            let cleared = sqlx::query("UPDATE links SET object_id = NULL WHERE link_id = $1 AND object_id IS NOT NULL")
                .bind(link.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Only the transaction that cleared the object frees its size.
            if cleared == 1 {
                sqlx::query(
                    "UPDATE accounts SET used_bytes = CASE WHEN used_bytes > $1 THEN used_bytes - $2 ELSE 0 END WHERE account_id = $3",
                )
                .bind(size)
                .bind(size)
                .bind(account.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Some(object))
    }

    /// The links of `account` whose objects are still stored although they
    /// expired before `now`: to be purged.
    pub async fn expired_links(&self, account: AccountId, now: i64) -> Result<Vec<LinkId>> {
        sqlx::query("SELECT link_id FROM links WHERE account_id = $1 AND object_id IS NOT NULL AND expires_at <= $2")
            .bind(account.as_bytes().as_slice())
            .bind(now)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok(LinkId(array(r.get(0), "link id")?)))
            .collect()
    }

    /// Deletes every link row of `account` (the operator deleted its data);
    /// returns the objects to delete from the blob store.
    pub async fn delete_account_links(&self, account: AccountId) -> Result<Vec<ObjectId>> {
        let mut tx = self.pool().begin().await?;
        lock_account(&mut tx, account).await?;
        let objects = sqlx::query("SELECT object_id FROM links WHERE account_id = $1 AND object_id IS NOT NULL")
            .bind(account.as_bytes().as_slice())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| Ok(ObjectId(array(r.get(0), "object id")?)))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM links WHERE account_id = $1").bind(account.as_bytes().as_slice()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(objects)
    }
}
