//! The metadata store: accounts, devices, wrapped keys, sessions, packs,
//! revisions and heads, behind one type so a second backend (PostgreSQL)
//! can follow with the same suite. SQL is kept portable: no SQLite-only
//! syntax beyond `ON CONFLICT`, which PostgreSQL shares.
//!
//! Every query is scoped by account: no method can reach another account's
//! rows (SECURITY G1). Multi-statement changes run in one transaction.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use keyhold_proto::{AccountId, CollectionId, DeviceId, ObjectId};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlSafeStr, SqlitePool};

/// Store failures. Details go to the log, never to clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("metadata store: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("metadata store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not fit its type (a corrupted database).
    #[error("metadata store holds an invalid value in {0}")]
    Corrupt(&'static str),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`MetaStore::add_pack`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum PackAdded {
    /// Filed and counted against the quota.
    Added,
    /// Already filed (an idempotent retry).
    AlreadyThere,
    /// It would exceed the account's quota.
    OverQuota,
}

/// What [`MetaStore::commit_revision`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// The head moved to the new revision.
    Committed,
    /// The head is not the one the revision extends.
    HeadMoved(Option<(u64, ObjectId)>),
    /// It would exceed the account's quota.
    OverQuota,
}

/// What [`MetaStore::put_collection_wrap`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum WrapFiled {
    /// Filed and counted against the quota.
    Filed,
    /// A wrap is filed already for this collection and epoch: this one.
    Exists(Vec<u8>),
    /// It would exceed the account's quota.
    OverQuota,
}

/// A new account's first rows.
pub struct NewAccount<'a> {
    /// Account id.
    pub account: AccountId,
    /// Recovery locator.
    pub locator: [u8; 32],
    /// Recovery key's Ed25519 public key.
    pub recovery_auth_key: [u8; 32],
    /// Quota in bytes.
    pub quota_bytes: u64,
    /// First device.
    pub device: NewDevice<'a>,
    /// Recovery wrap (epoch 0).
    pub recovery_wrap: &'a [u8],
}

/// A device to enroll.
pub struct NewDevice<'a> {
    /// Its id.
    pub id: DeviceId,
    /// Its encoded public keys.
    pub public_keys: &'a [u8],
    /// Its certificate.
    pub certificate: &'a [u8],
    /// The root key wrapped to it.
    pub wrap: &'a [u8],
    /// Account epoch of the wrap.
    pub epoch: u32,
}

/// An account's recovery entry point.
pub struct RecoveryRow {
    /// The account.
    pub account: AccountId,
    /// Its current epoch.
    pub epoch: u32,
    /// The recovery wrap of that epoch.
    pub wrap: Vec<u8>,
    /// The recovery key's public key.
    pub auth_key: [u8; 32],
}

/// Keys of an account, as stored.
pub struct KeysRow {
    /// Current account epoch.
    pub account_epoch: u32,
    /// (public keys, certificate, created_at).
    pub devices: Vec<(Vec<u8>, Vec<u8>, i64)>,
    /// (device id, epoch, wrap).
    pub device_wraps: Vec<(DeviceId, u32, Vec<u8>)>,
    /// (collection id, epoch, wrap).
    pub collection_wraps: Vec<(CollectionId, u32, Vec<u8>)>,
}

fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn to_u64(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn to_u32(v: i64, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn array<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N]> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

/// The migrations, oldest first. Append only.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "initial schema".into(),
        MigrationType::Simple,
        include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

/// The SQLite metadata store.
#[derive(Clone)]
pub struct MetaStore {
    pool: SqlitePool,
}

impl MetaStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        migrator().run(&pool).await?;
        Ok(MetaStore { pool })
    }

    /// The column names of every table, for the data-inventory test.
    pub async fn schema(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE '\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1, p.cid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))).collect())
    }

    /// Creates an account with its first device. `false` if the id or
    /// locator is taken.
    pub async fn create_account(&self, new: &NewAccount<'_>, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (account_id, recovery_locator, recovery_auth_key, account_epoch, quota_bytes, used_bytes, created_at) \
             VALUES (?, ?, ?, 0, ?, 0, ?) ON CONFLICT DO NOTHING",
        )
        .bind(new.account.as_bytes().as_slice())
        .bind(new.locator.as_slice())
        .bind(new.recovery_auth_key.as_slice())
        .bind(to_i64(new.quota_bytes, "quota")?)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO recovery_wraps (account_id, epoch, wrap) VALUES (?, 0, ?)")
            .bind(new.account.as_bytes().as_slice())
            .bind(new.recovery_wrap)
            .execute(&mut *tx)
            .await?;
        insert_device(&mut tx, new.account, &new.device, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Enrolls another device. `false` if it is already enrolled.
    pub async fn add_device(&self, account: AccountId, device: &NewDevice<'_>, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM devices WHERE account_id = ? AND device_id = ?")
            .bind(account.as_bytes().as_slice())
            .bind(device.id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        insert_device(&mut tx, account, device, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A device's encoded public keys, if it is enrolled in `account`.
    pub async fn device_keys(&self, account: AccountId, device: DeviceId) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query("SELECT public_keys FROM devices WHERE account_id = ? AND device_id = ?")
            .bind(account.as_bytes().as_slice())
            .bind(device.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// The recovery entry point filed under `locator`.
    pub async fn recovery(&self, locator: &[u8; 32]) -> Result<Option<RecoveryRow>> {
        let row = sqlx::query(
            "SELECT a.account_id, a.account_epoch, a.recovery_auth_key, r.wrap FROM accounts a \
             JOIN recovery_wraps r ON r.account_id = a.account_id AND r.epoch = a.account_epoch \
             WHERE a.recovery_locator = ?",
        )
        .bind(locator.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(RecoveryRow {
                account: AccountId(array(r.get(0), "account id")?),
                epoch: to_u32(r.get(1), "epoch")?,
                auth_key: array(r.get(2), "recovery auth key")?,
                wrap: r.get(3),
            })
        })
        .transpose()
    }

    /// Everything key-related of an account.
    pub async fn keys(&self, account: AccountId) -> Result<KeysRow> {
        let id = account.as_bytes().as_slice();
        let epoch: i64 =
            sqlx::query("SELECT account_epoch FROM accounts WHERE account_id = ?").bind(id).fetch_one(&self.pool).await?.get(0);
        let devices = sqlx::query(
            "SELECT public_keys, certificate, created_at FROM devices WHERE account_id = ? ORDER BY created_at, device_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        let device_wraps =
            sqlx::query("SELECT device_id, epoch, wrap FROM device_wraps WHERE account_id = ? ORDER BY device_id, epoch")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| Ok((DeviceId(array(r.get(0), "device id")?), to_u32(r.get(1), "epoch")?, r.get(2))))
                .collect::<Result<_>>()?;
        let collection_wraps = sqlx::query(
            "SELECT collection_id, epoch, wrap FROM collection_wraps WHERE account_id = ? ORDER BY collection_id, epoch",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((CollectionId(array(r.get(0), "collection id")?), to_u32(r.get(1), "epoch")?, r.get(2))))
        .collect::<Result<_>>()?;
        Ok(KeysRow { account_epoch: to_u32(epoch, "epoch")?, devices, device_wraps, collection_wraps })
    }

    /// Files a collection key wrap once and counts it against the quota
    /// (wraps are client-chosen bytes too: uncounted, they would be free
    /// storage, SECURITY G5).
    pub async fn put_collection_wrap(
        &self,
        account: AccountId,
        collection: CollectionId,
        epoch: u32,
        wrap: &[u8],
    ) -> Result<WrapFiled> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO collection_wraps (account_id, collection_id, epoch, wrap) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_bytes().as_slice())
        .bind(collection.as_bytes().as_slice())
        .bind(i64::from(epoch))
        .bind(wrap)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            if !charge(&mut tx, account, u64::try_from(wrap.len()).unwrap_or(u64::MAX)).await? {
                return Ok(WrapFiled::OverQuota);
            }
            tx.commit().await?;
            return Ok(WrapFiled::Filed);
        }
        let existing = sqlx::query("SELECT wrap FROM collection_wraps WHERE account_id = ? AND collection_id = ? AND epoch = ?")
            .bind(account.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .bind(i64::from(epoch))
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        Ok(WrapFiled::Exists(existing))
    }

    /// Files a single-use challenge.
    pub async fn put_challenge(&self, challenge: &[u8; 32], expires_at: i64) -> Result<()> {
        sqlx::query("DELETE FROM challenges WHERE expires_at < ?").bind(expires_at - 3600).execute(&self.pool).await?;
        sqlx::query("INSERT INTO challenges (challenge, expires_at) VALUES (?, ?)")
            .bind(challenge.as_slice())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Consumes a challenge: `true` if it existed and had not expired.
    pub async fn take_challenge(&self, challenge: &[u8; 32], now: i64) -> Result<bool> {
        let row = sqlx::query("DELETE FROM challenges WHERE challenge = ? RETURNING expires_at")
            .bind(challenge.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) >= now))
    }

    /// Files a session under the hash of its token.
    pub async fn put_session(&self, token_hash: &[u8; 32], account: AccountId, device: DeviceId, expires_at: i64) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?").bind(expires_at - 86_400).execute(&self.pool).await?;
        sqlx::query("INSERT INTO sessions (token_hash, account_id, device_id, expires_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash.as_slice())
            .bind(account.as_bytes().as_slice())
            .bind(device.as_bytes().as_slice())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live session filed under a token hash.
    pub async fn session(&self, token_hash: &[u8; 32], now: i64) -> Result<Option<(AccountId, DeviceId)>> {
        let row = sqlx::query("SELECT account_id, device_id, expires_at FROM sessions WHERE token_hash = ?")
            .bind(token_hash.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) if r.get::<i64, _>(2) >= now => {
                Ok(Some((AccountId(array(r.get(0), "account id")?), DeviceId(array(r.get(1), "device id")?))))
            }
            _ => Ok(None),
        }
    }

    /// Files a pack and counts it against the quota, atomically.
    pub async fn add_pack(
        &self,
        account: AccountId,
        collection: CollectionId,
        pack: ObjectId,
        size: u64,
        now: i64,
    ) -> Result<PackAdded> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO packs (account_id, collection_id, pack_id, size, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_bytes().as_slice())
        .bind(collection.as_bytes().as_slice())
        .bind(pack.as_bytes().as_slice())
        .bind(to_i64(size, "size")?)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(PackAdded::AlreadyThere);
        }
        if !charge(&mut tx, account, size).await? {
            return Ok(PackAdded::OverQuota);
        }
        tx.commit().await?;
        Ok(PackAdded::Added)
    }

    /// The size of a pack of `account`, if filed.
    pub async fn pack_size(&self, account: AccountId, pack: ObjectId) -> Result<Option<u64>> {
        sqlx::query("SELECT size FROM packs WHERE account_id = ? AND pack_id = ?")
            .bind(account.as_bytes().as_slice())
            .bind(pack.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| to_u64(r.get(0), "size"))
            .transpose()
    }

    /// Every pack of a collection.
    pub async fn packs(&self, account: AccountId, collection: CollectionId) -> Result<Vec<(ObjectId, u64)>> {
        sqlx::query("SELECT pack_id, size FROM packs WHERE account_id = ? AND collection_id = ? ORDER BY created_at, pack_id")
            .bind(account.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((ObjectId(array(r.get(0), "pack id")?), to_u64(r.get(1), "size")?)))
            .collect()
    }

    /// A collection's head.
    pub async fn head(&self, account: AccountId, collection: CollectionId) -> Result<Option<(u64, ObjectId)>> {
        sqlx::query("SELECT seq, revision_id FROM heads WHERE account_id = ? AND collection_id = ?")
            .bind(account.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok((to_u64(r.get(0), "seq")?, ObjectId(array(r.get(1), "revision id")?))))
            .transpose()
    }

    /// Up to `limit` stored revisions after `after`, in order.
    pub async fn revisions(
        &self,
        account: AccountId,
        collection: CollectionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let from = match after {
            Some(seq) => to_i64(seq, "seq")?.checked_add(1).ok_or(StoreError::Corrupt("seq"))?,
            None => 0,
        };
        Ok(sqlx::query("SELECT body FROM revisions WHERE account_id = ? AND collection_id = ? AND seq >= ? ORDER BY seq LIMIT ?")
            .bind(account.as_bytes().as_slice())
            .bind(collection.as_bytes().as_slice())
            .bind(from)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Appends a revision if, and only if, it extends the current head
    /// (compare-and-swap: concurrent writers get `HeadMoved`, never a lost
    /// update).
    #[allow(clippy::too_many_arguments)] // each is one field of a single, documented step
    pub async fn commit_revision(
        &self,
        account: AccountId,
        collection: CollectionId,
        seq: u64,
        prev: Option<ObjectId>,
        id: ObjectId,
        body: &[u8],
        now: i64,
    ) -> Result<Commit> {
        let mut tx = self.pool.begin().await?;
        let (a, c) = (account.as_bytes().as_slice(), collection.as_bytes().as_slice());
        let moved = match prev {
            None => sqlx::query("INSERT INTO heads (account_id, collection_id, seq, revision_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(a)
                .bind(c)
                .bind(to_i64(seq, "seq")?)
                .bind(id.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Some(prev) => sqlx::query(
                "UPDATE heads SET seq = ?, revision_id = ? WHERE account_id = ? AND collection_id = ? AND seq = ? AND revision_id = ?",
            )
            .bind(to_i64(seq, "seq")?)
            .bind(id.as_bytes().as_slice())
            .bind(a)
            .bind(c)
            .bind(to_i64(seq.checked_sub(1).ok_or(StoreError::Corrupt("seq"))?, "seq")?)
            .bind(prev.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if moved != 1 {
            drop(tx);
            return Ok(Commit::HeadMoved(self.head(account, collection).await?));
        }
        sqlx::query(
            "INSERT INTO revisions (account_id, collection_id, seq, revision_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(a)
        .bind(c)
        .bind(to_i64(seq, "seq")?)
        .bind(id.as_bytes().as_slice())
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if !charge(&mut tx, account, u64::try_from(body.len()).unwrap_or(u64::MAX)).await? {
            return Ok(Commit::OverQuota);
        }
        tx.commit().await?;
        Ok(Commit::Committed)
    }

    /// Usage and quota.
    pub async fn usage(&self, account: AccountId) -> Result<(u64, u64)> {
        let r = sqlx::query("SELECT used_bytes, quota_bytes FROM accounts WHERE account_id = ?")
            .bind(account.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await?;
        Ok((to_u64(r.get(0), "used")?, to_u64(r.get(1), "quota")?))
    }
}

async fn insert_device(tx: &mut sqlx::SqliteConnection, account: AccountId, device: &NewDevice<'_>, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO devices (account_id, device_id, public_keys, certificate, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(account.as_bytes().as_slice())
        .bind(device.id.as_bytes().as_slice())
        .bind(device.public_keys)
        .bind(device.certificate)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO device_wraps (account_id, device_id, epoch, wrap) VALUES (?, ?, ?, ?)")
        .bind(account.as_bytes().as_slice())
        .bind(device.id.as_bytes().as_slice())
        .bind(i64::from(device.epoch))
        .bind(device.wrap)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds `bytes` to the account's usage if it stays within quota.
async fn charge(tx: &mut sqlx::SqliteConnection, account: AccountId, bytes: u64) -> Result<bool> {
    let bytes = to_i64(bytes, "size")?;
    let charged =
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + ? WHERE account_id = ? AND used_bytes + ? <= quota_bytes")
            .bind(bytes)
            .bind(account.as_bytes().as_slice())
            .bind(bytes)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    Ok(charged == 1)
}
