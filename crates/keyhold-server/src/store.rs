//! The metadata store: accounts, device chains, devices, wrapped keys,
//! sessions, pairing slots, packs, revisions and heads, behind one type over
//! two engines: SQLite (embedded, the default) and PostgreSQL (for several
//! server processes over one database). One set of queries serves both,
//! through sqlx's `Any` driver: placeholders are `$1`, `$2`, … in order of
//! first use (SQLite reads them by number too), and the SQL is what both
//! engines share. Each engine has its own migrations, one for one.
//!
//! Every query is scoped by account: no method can reach another account's
//! rows (SECURITY G1). Multi-statement changes run in one transaction, and
//! every check-then-write either is one statement (a conditional `UPDATE`,
//! `INSERT … ON CONFLICT DO NOTHING`) or first locks the account's row, so
//! that it holds under PostgreSQL's concurrent transactions as under
//! SQLite's single writer.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use keyhold_proto::{AccountId, CollectionId, DeviceId, ObjectId};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};

/// Store failures. Details go to the log, never to clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("metadata store")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("metadata store migration")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names an engine the store does not run on.
    #[error("metadata store: unsupported database {0:?}; use postgres://… or sqlite://…")]
    Unsupported(String),
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
    /// The device chain's creation entry (seq 0), verified.
    pub chain_entry: &'a [u8],
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
    /// The root key wrapped to it.
    pub wrap: &'a [u8],
    /// Account epoch of the wrap.
    pub epoch: u32,
}

/// A verified entry to append to an account's device chain, with every row
/// it changes.
pub struct ChainAppend<'a> {
    /// Its sequence number: the compare-and-swap (the previous entry is
    /// `seq - 1`, and no entry `seq` may exist yet).
    pub seq: u64,
    /// Its id.
    pub entry_id: ObjectId,
    /// The stored entry.
    pub body: &'a [u8],
    /// A device the entry enrolls, with its wrap of the current epoch.
    pub add: Option<NewDevice<'a>>,
    /// A device the entry revokes.
    pub revoke: Option<DeviceId>,
    /// The epoch the entry starts, with its wraps.
    pub epoch: Option<NewEpoch<'a>>,
    /// Bytes to charge against the quota (0: not charged).
    pub charge: u64,
    /// Charge even beyond the quota: revoking a lost device must never be
    /// blocked by a full account.
    pub charge_beyond_quota: bool,
}

/// The wrapped keys of a new account key epoch.
pub struct NewEpoch<'a> {
    /// The epoch.
    pub epoch: u32,
    /// The new root key wrapped to every device that stays enrolled.
    pub device_wraps: Vec<(DeviceId, &'a [u8])>,
    /// The new root key wrapped for the recovery key.
    pub recovery_wrap: &'a [u8],
    /// The previous root key wrapped under the new one.
    pub previous_root_wrap: &'a [u8],
    /// A new recovery key: (locator, Ed25519 public key).
    pub recovery: Option<([u8; 32], [u8; 32])>,
    /// Collection key wraps: (collection, collection epoch, wrap).
    pub collection_wraps: Vec<(CollectionId, u32, &'a [u8])>,
}

/// What [`MetaStore::append_chain`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// Appended, with every row it changes.
    Appended,
    /// An entry with this sequence number exists already.
    ChainMoved,
    /// It would exceed the account's quota.
    OverQuota,
    /// Another account has the new recovery locator.
    LocatorTaken,
    /// A collection key wrap is filed already for one of the collection epochs.
    CollectionWrapExists,
}

/// An account's recovery entry point.
pub struct RecoveryRow {
    /// The account.
    pub account: AccountId,
    /// Its current epoch.
    pub epoch: u32,
    /// The recovery wrap of that epoch.
    pub wrap: Vec<u8>,
}

/// Keys of an account, as stored, for one of its devices.
pub struct KeysRow {
    /// Current account epoch.
    pub account_epoch: u32,
    /// (epoch, wrap) of the device's own root key wraps.
    pub device_wraps: Vec<(u32, Vec<u8>)>,
    /// (collection id, epoch, wrap).
    pub collection_wraps: Vec<(CollectionId, u32, Vec<u8>)>,
    /// (epoch, wrap) of the previous-root wraps.
    pub previous_root_wraps: Vec<(u32, Vec<u8>)>,
}

/// One pairing attempt, as stored.
pub struct AttemptRow {
    /// Its id.
    pub id: [u8; 16],
    /// The joiner's first message.
    pub hello: Vec<u8>,
    /// The inviter's reply.
    pub reply: Option<Vec<u8>>,
    /// The joiner's confirmation and introduction.
    pub joiner: Option<Vec<u8>>,
    /// The inviter's welcome.
    pub welcome: Option<Vec<u8>>,
}

/// A live session: who it acts for, and what the operator did to the account.
#[derive(Debug, Clone, Copy)]
pub struct SessionRow {
    /// The account.
    pub account: AccountId,
    /// The device.
    pub device: DeviceId,
    /// The operator suspended the account: it may be read, not changed.
    pub suspended: bool,
    /// The operator deleted the account's data.
    pub deleted: bool,
}

/// What [`MetaStore::open_pairing_slot`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotOpened {
    /// The slot is open.
    Opened,
    /// A live slot has that name.
    Taken,
    /// The account has as many live slots as it may.
    TooMany,
}

/// A step of a pairing attempt, written once each, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingStepKind {
    /// The inviter's reply (slot owner).
    Reply,
    /// The joiner's confirmation and introduction (anyone with the attempt id).
    Joiner,
    /// The inviter's welcome (slot owner).
    Welcome,
}

/// What [`MetaStore::put_pairing_step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum StepWritten {
    /// Written now.
    Written,
    /// Written before, with the same bytes.
    Same,
    /// Written before with other bytes, or the previous step is missing.
    Conflict(&'static str),
    /// No such live attempt (or, for the owner's steps, not the caller's slot).
    NotFound,
}

pub(crate) fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

pub(crate) fn to_u64(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

pub(crate) fn to_u32(v: i64, what: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

pub(crate) fn array<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N]> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

pub(crate) fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// The database engines the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, embedded: one server process.
    Sqlite,
    /// PostgreSQL: any number of server processes.
    Postgres,
}

/// One migration: its version, what it does, and its SQL for each engine.
/// Append only: never edit one that has shipped.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "initial schema",
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "device chain and pairing relay",
        include_str!("../migrations/sqlite/0002_device_chain.sql"),
        include_str!("../migrations/postgres/0002_device_chain.sql"),
    ),
    (
        3,
        "account events and the disclosure log",
        include_str!("../migrations/sqlite/0003_disclosure.sql"),
        include_str!("../migrations/postgres/0003_disclosure.sql"),
    ),
    (
        4,
        "suspended and deleted accounts",
        include_str!("../migrations/sqlite/0004_account_state.sql"),
        include_str!("../migrations/postgres/0004_account_state.sql"),
    ),
    (
        5,
        "the verifiable key directory",
        include_str!("../migrations/sqlite/0005_key_directory.sql"),
        include_str!("../migrations/postgres/0005_key_directory.sql"),
    ),
    (
        6,
        "key transparency log",
        include_str!("../migrations/sqlite/0006_transparency_log.sql"),
        include_str!("../migrations/postgres/0006_transparency_log.sql"),
    ),
    (
        7,
        "link shares",
        include_str!("../migrations/sqlite/0007_links.sql"),
        include_str!("../migrations/postgres/0007_links.sql"),
    ),
    (
        8,
        "collections shared between accounts",
        include_str!("../migrations/sqlite/0008_sharing.sql"),
        include_str!("../migrations/postgres/0008_sharing.sql"),
    ),
    (
        9,
        "human handles",
        include_str!("../migrations/sqlite/0009_handles.sql"),
        include_str!("../migrations/postgres/0009_handles.sql"),
    ),
];

fn migrator(engine: Engine) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sqlite, postgres)| {
                let sql = match engine {
                    Engine::Sqlite => sqlite,
                    Engine::Postgres => postgres,
                };
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// Makes the `Any` driver able to open SQLite and PostgreSQL URLs (once per process).
fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// The metadata store.
#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    engine: Engine,
}

impl MetaStore {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url).await
    }

    /// Connects to the database at `url` (`postgres://…` or `sqlite://…`)
    /// and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        install_drivers();
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(StoreError::Unsupported(url.split(':').next().unwrap_or_default().to_owned()));
        };
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            // A pooled SQLite connection is a file in this process that
            // nothing can break between uses, so checking it before each
            // use (a round trip to its thread per query) buys nothing. A
            // PostgreSQL connection can drop while idle: it is checked.
            .test_before_acquire(engine != Engine::Sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // Durable commits, readers beside the writer, a
                        // writer that waits its turn, and the schema's
                        // foreign keys enforced.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrator(engine).run(&pool).await?;
        Ok(MetaStore { pool, engine })
    }

    /// For `keyhold serve --check-config`: reaches the database at `url`
    /// without changing it, and says which migrations it has of those this
    /// server knows (the server applies the rest when it starts).
    pub async fn probe(url: &str) -> Result<(Engine, usize, usize)> {
        install_drivers();
        let engine = if url.starts_with("sqlite:") { Engine::Sqlite } else { Engine::Postgres };
        let pool = AnyPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        // No migrations table yet: a new, empty database.
        let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        pool.close().await;
        Ok((engine, usize::try_from(applied).unwrap_or(0), MIGRATIONS.len()))
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The connection pool, for the stores that share this database
    /// (`directory_store`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The column names of every table, for the data-inventory test.
    pub async fn schema(&self) -> Result<Vec<(String, String)>> {
        let sql = match self.engine {
            Engine::Sqlite => {
                "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE '\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite%' ORDER BY 1, p.cid"
            }
            Engine::Postgres => {
                "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_%' ESCAPE '\\' \
                 ORDER BY table_name, ordinal_position"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))).collect())
    }

    /// Creates an account with its first device and the creation entry of
    /// its device chain. `false` if the id or locator is taken.
    pub async fn create_account(&self, new: &NewAccount<'_>, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (account_id, recovery_locator, recovery_auth_key, account_epoch, quota_bytes, used_bytes, created_at) \
             VALUES ($1, $2, $3, 0, $4, 0, $5) ON CONFLICT DO NOTHING",
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
        insert_chain_entry(&mut tx, new.account, 0, ObjectId::of(new.chain_entry), new.chain_entry, now).await?;
        sqlx::query("INSERT INTO recovery_wraps (account_id, epoch, wrap) VALUES ($1, 0, $2)")
            .bind(new.account.as_bytes().as_slice())
            .bind(new.recovery_wrap)
            .execute(&mut *tx)
            .await?;
        insert_device(&mut tx, new.account, &new.device, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The stored entries of an account's device chain, seq 0 first.
    pub async fn chain(&self, account: AccountId) -> Result<Vec<Vec<u8>>> {
        Ok(sqlx::query("SELECT body FROM device_chain WHERE account_id = $1 ORDER BY seq")
            .bind(account.as_bytes().as_slice())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Appends a verified chain entry and applies it, all in one
    /// transaction whose first write is the entry's row: its primary key
    /// `(account, seq)` is the compare-and-swap, so of two concurrent
    /// appends at the same `seq` exactly one commits.
    pub async fn append_chain(&self, account: AccountId, append: &ChainAppend<'_>, now: i64) -> Result<Appended> {
        let mut tx = self.pool.begin().await?;
        let a = account.as_bytes().as_slice();
        let inserted = sqlx::query(
            "INSERT INTO device_chain (account_id, seq, entry_id, body, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(a)
        .bind(to_i64(append.seq, "seq")?)
        .bind(append.entry_id.as_bytes().as_slice())
        .bind(append.body)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(Appended::ChainMoved);
        }
        if let Some(device) = &append.add {
            insert_device(&mut tx, account, device, now).await?;
        }
        if let Some(device) = append.revoke {
            let d = device.as_bytes().as_slice();
            sqlx::query("UPDATE devices SET revoked_at = $1 WHERE account_id = $2 AND device_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(a)
                .bind(d)
                .execute(&mut *tx)
                .await?;
            // Its sessions end now, not when they expire (SECURITY A7).
            sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND device_id = $2")
                .bind(a)
                .bind(d)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM pairing_attempts WHERE slot IN \
                 (SELECT slot FROM pairing_slots WHERE account_id = $1 AND device_id = $2)",
            )
            .bind(a)
            .bind(d)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM pairing_slots WHERE account_id = $1 AND device_id = $2")
                .bind(a)
                .bind(d)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(epoch) = &append.epoch {
            let e = i64::from(epoch.epoch);
            if let Some((locator, auth_key)) = &epoch.recovery {
                let moved =
                    sqlx::query("UPDATE accounts SET recovery_locator = $1, recovery_auth_key = $2 WHERE account_id = $3")
                        .bind(locator.as_slice())
                        .bind(auth_key.as_slice())
                        .bind(a)
                        .execute(&mut *tx)
                        .await;
                match moved {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(Appended::LocatorTaken),
                    other => {
                        other?;
                    }
                }
            }
            sqlx::query("UPDATE accounts SET account_epoch = $1 WHERE account_id = $2").bind(e).bind(a).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO recovery_wraps (account_id, epoch, wrap) VALUES ($1, $2, $3)")
                .bind(a)
                .bind(e)
                .bind(epoch.recovery_wrap)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO previous_root_wraps (account_id, epoch, wrap) VALUES ($1, $2, $3)")
                .bind(a)
                .bind(e)
                .bind(epoch.previous_root_wrap)
                .execute(&mut *tx)
                .await?;
            for (device, wrap) in &epoch.device_wraps {
                sqlx::query("INSERT INTO device_wraps (account_id, device_id, epoch, wrap) VALUES ($1, $2, $3, $4)")
                    .bind(a)
                    .bind(device.as_bytes().as_slice())
                    .bind(e)
                    .bind(*wrap)
                    .execute(&mut *tx)
                    .await?;
            }
            for (collection, collection_epoch, wrap) in &epoch.collection_wraps {
                let filed = sqlx::query(
                    "INSERT INTO collection_wraps (account_id, collection_id, epoch, wrap) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(a)
                .bind(collection.as_bytes().as_slice())
                .bind(i64::from(*collection_epoch))
                .bind(*wrap)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if filed != 1 {
                    return Ok(Appended::CollectionWrapExists);
                }
            }
        }
        if append.charge > 0 {
            if append.charge_beyond_quota {
                charge_unchecked(&mut tx, account, append.charge).await?;
            } else if !charge(&mut tx, account, append.charge).await? {
                return Ok(Appended::OverQuota);
            }
        }
        tx.commit().await?;
        Ok(Appended::Appended)
    }

    /// A device's encoded public keys, if it is enrolled in `account` and
    /// not revoked.
    pub async fn device_keys(&self, account: AccountId, device: DeviceId) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query("SELECT public_keys FROM devices WHERE account_id = $1 AND device_id = $2 AND revoked_at IS NULL")
            .bind(account.as_bytes().as_slice())
            .bind(device.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// The recovery entry point filed under `locator`.
    pub async fn recovery(&self, locator: &[u8; 32]) -> Result<Option<RecoveryRow>> {
        let row = sqlx::query(
            "SELECT a.account_id, a.account_epoch, r.wrap FROM accounts a \
             JOIN recovery_wraps r ON r.account_id = a.account_id AND r.epoch = a.account_epoch \
             WHERE a.recovery_locator = $1",
        )
        .bind(locator.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(RecoveryRow {
                account: AccountId(array(r.get(0), "account id")?),
                epoch: to_u32(r.get(1), "epoch")?,
                wrap: r.get(2),
            })
        })
        .transpose()
    }

    /// The wrapped keys of an account that `device` may read: its own root
    /// key wraps, every collection key wrap and every previous-root wrap.
    pub async fn keys(&self, account: AccountId, device: DeviceId) -> Result<KeysRow> {
        let id = account.as_bytes().as_slice();
        let epoch: i64 =
            sqlx::query("SELECT account_epoch FROM accounts WHERE account_id = $1").bind(id).fetch_one(&self.pool).await?.get(0);
        let device_wraps =
            sqlx::query("SELECT epoch, wrap FROM device_wraps WHERE account_id = $1 AND device_id = $2 ORDER BY epoch")
                .bind(id)
                .bind(device.as_bytes().as_slice())
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| Ok((to_u32(r.get(0), "epoch")?, r.get(1))))
                .collect::<Result<_>>()?;
        let collection_wraps = sqlx::query(
            "SELECT collection_id, epoch, wrap FROM collection_wraps WHERE account_id = $1 ORDER BY collection_id, epoch",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((CollectionId(array(r.get(0), "collection id")?), to_u32(r.get(1), "epoch")?, r.get(2))))
        .collect::<Result<_>>()?;
        let previous_root_wraps = sqlx::query("SELECT epoch, wrap FROM previous_root_wraps WHERE account_id = $1 ORDER BY epoch")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((to_u32(r.get(0), "epoch")?, r.get(1))))
            .collect::<Result<_>>()?;
        Ok(KeysRow { account_epoch: to_u32(epoch, "epoch")?, device_wraps, collection_wraps, previous_root_wraps })
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
            "INSERT INTO collection_wraps (account_id, collection_id, epoch, wrap) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(account.as_bytes().as_slice())
        .bind(collection.as_bytes().as_slice())
        .bind(i64::from(epoch))
        .bind(wrap)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            if !charge(&mut tx, account, len_u64(wrap)).await? {
                return Ok(WrapFiled::OverQuota);
            }
            tx.commit().await?;
            return Ok(WrapFiled::Filed);
        }
        let existing =
            sqlx::query("SELECT wrap FROM collection_wraps WHERE account_id = $1 AND collection_id = $2 AND epoch = $3")
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
        sqlx::query("DELETE FROM challenges WHERE expires_at < $1").bind(expires_at - 3600).execute(&self.pool).await?;
        sqlx::query("INSERT INTO challenges (challenge, expires_at) VALUES ($1, $2)")
            .bind(challenge.as_slice())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Consumes a challenge: `true` if it existed and had not expired.
    pub async fn take_challenge(&self, challenge: &[u8; 32], now: i64) -> Result<bool> {
        let row = sqlx::query("DELETE FROM challenges WHERE challenge = $1 RETURNING expires_at")
            .bind(challenge.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) >= now))
    }

    /// Files a session under the hash of its token.
    pub async fn put_session(&self, token_hash: &[u8; 32], account: AccountId, device: DeviceId, expires_at: i64) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(expires_at - 86_400).execute(&self.pool).await?;
        sqlx::query("INSERT INTO sessions (token_hash, account_id, device_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash.as_slice())
            .bind(account.as_bytes().as_slice())
            .bind(device.as_bytes().as_slice())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live session filed under a token hash.
    pub async fn session(&self, token_hash: &[u8; 32], now: i64) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT s.account_id, s.device_id, s.expires_at, a.suspended_at, a.deleted_at FROM sessions s \
             JOIN devices d ON d.account_id = s.account_id AND d.device_id = s.device_id \
             JOIN accounts a ON a.account_id = s.account_id \
             WHERE s.token_hash = $1 AND d.revoked_at IS NULL",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) if r.get::<i64, _>(2) >= now => Ok(Some(SessionRow {
                account: AccountId(array(r.get(0), "account id")?),
                device: DeviceId(array(r.get(1), "device id")?),
                suspended: r.get::<Option<i64>, _>(3).is_some(),
                deleted: r.get::<Option<i64>, _>(4).is_some(),
            })),
            _ => Ok(None),
        }
    }

    /// Opens a pairing slot for `(account, device)` until `expires_at`, if
    /// no live slot has that name and the account holds fewer than
    /// `max_open` live slots. Expired slots, and their attempts, are purged
    /// first.
    pub async fn open_pairing_slot(
        &self,
        slot: &str,
        account: AccountId,
        device: DeviceId,
        now: i64,
        expires_at: i64,
        max_open: u32,
    ) -> Result<SlotOpened> {
        let mut tx = self.pool.begin().await?;
        purge_pairing(&mut tx, now).await?;
        lock_account(&mut tx, account).await?;
        let open: i64 = sqlx::query("SELECT COUNT(*) FROM pairing_slots WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if open >= i64::from(max_open) {
            return Ok(SlotOpened::TooMany);
        }
        let inserted = sqlx::query(
            "INSERT INTO pairing_slots (slot, account_id, device_id, expires_at, attempts) VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING",
        )
        .bind(slot)
        .bind(account.as_bytes().as_slice())
        .bind(device.as_bytes().as_slice())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(SlotOpened::Taken);
        }
        tx.commit().await?;
        Ok(SlotOpened::Opened)
    }

    /// Closes a live slot of `(account, device)` with its attempts. `false`
    /// if there is none.
    pub async fn close_pairing_slot(&self, slot: &str, account: AccountId, device: DeviceId, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let (a, d) = (account.as_bytes().as_slice(), device.as_bytes().as_slice());
        sqlx::query(
            "DELETE FROM pairing_attempts WHERE slot = $1 AND EXISTS (SELECT 1 FROM pairing_slots s \
             WHERE s.slot = $2 AND s.account_id = $3 AND s.device_id = $4 AND s.expires_at >= $5)",
        )
        .bind(slot)
        .bind(slot)
        .bind(a)
        .bind(d)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let deleted =
            sqlx::query("DELETE FROM pairing_slots WHERE slot = $1 AND account_id = $2 AND device_id = $3 AND expires_at >= $4")
                .bind(slot)
                .bind(a)
                .bind(d)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Files a new attempt on a live slot that has had fewer than
    /// `max_attempts` and has not completed a pairing (a code works once).
    /// `false` if there is no such slot.
    pub async fn add_pairing_attempt(
        &self,
        slot: &str,
        attempt: &[u8; 16],
        hello: &[u8],
        now: i64,
        max_attempts: u32,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        purge_pairing(&mut tx, now).await?;
        let number = sqlx::query(
            "UPDATE pairing_slots SET attempts = attempts + 1 WHERE slot = $1 AND expires_at >= $2 AND attempts < $3 \
             AND NOT EXISTS (SELECT 1 FROM pairing_attempts WHERE slot = $4 AND welcome IS NOT NULL) RETURNING attempts",
        )
        .bind(slot)
        .bind(now)
        .bind(i64::from(max_attempts))
        .bind(slot)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(number) = number else {
            tx.commit().await?;
            return Ok(false);
        };
        sqlx::query("INSERT INTO pairing_attempts (slot, attempt_id, number, hello, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(slot)
            .bind(attempt.as_slice())
            .bind(number.get::<i64, _>(0))
            .bind(hello)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every attempt of a live slot of `(account, device)`, oldest first;
    /// `None` if there is no such slot.
    pub async fn pairing_attempts(
        &self,
        slot: &str,
        account: AccountId,
        device: DeviceId,
        now: i64,
    ) -> Result<Option<Vec<AttemptRow>>> {
        let owned = sqlx::query(
            "SELECT 1 FROM pairing_slots WHERE slot = $1 AND account_id = $2 AND device_id = $3 AND expires_at >= $4",
        )
        .bind(slot)
        .bind(account.as_bytes().as_slice())
        .bind(device.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        if !owned {
            return Ok(None);
        }
        sqlx::query("SELECT attempt_id, hello, reply, joiner, welcome FROM pairing_attempts WHERE slot = $1 ORDER BY number")
            .bind(slot)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(attempt_row)
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// One attempt of a live slot.
    pub async fn pairing_attempt(&self, slot: &str, attempt: &[u8; 16], now: i64) -> Result<Option<AttemptRow>> {
        sqlx::query(
            "SELECT a.attempt_id, a.hello, a.reply, a.joiner, a.welcome FROM pairing_attempts a \
             JOIN pairing_slots s ON s.slot = a.slot WHERE a.slot = $1 AND a.attempt_id = $2 AND s.expires_at >= $3",
        )
        .bind(slot)
        .bind(attempt.as_slice())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .map(attempt_row)
        .transpose()
    }

    /// Writes one step of an attempt of a live slot, once, after the step
    /// before it. `owner` is required for the inviter's steps (`reply`,
    /// `welcome`): the slot must be theirs.
    pub async fn put_pairing_step(
        &self,
        slot: &str,
        attempt: &[u8; 16],
        step: PairingStepKind,
        owner: Option<(AccountId, DeviceId)>,
        data: &[u8],
        now: i64,
    ) -> Result<StepWritten> {
        let (sql, needs_owner) = match step {
            PairingStepKind::Reply => (
                "UPDATE pairing_attempts SET reply = $1 WHERE slot = $2 AND attempt_id = $3 AND reply IS NULL \
                 AND EXISTS (SELECT 1 FROM pairing_slots s WHERE s.slot = $4 AND s.expires_at >= $5 AND s.account_id = $6 AND s.device_id = $7)",
                true,
            ),
            PairingStepKind::Joiner => (
                "UPDATE pairing_attempts SET joiner = $1 WHERE slot = $2 AND attempt_id = $3 AND joiner IS NULL AND reply IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM pairing_slots s WHERE s.slot = $4 AND s.expires_at >= $5)",
                false,
            ),
            PairingStepKind::Welcome => (
                "UPDATE pairing_attempts SET welcome = $1 WHERE slot = $2 AND attempt_id = $3 AND welcome IS NULL AND joiner IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM pairing_slots s WHERE s.slot = $4 AND s.expires_at >= $5 AND s.account_id = $6 AND s.device_id = $7)",
                true,
            ),
        };
        let owner = match (needs_owner, owner) {
            (true, None) => return Ok(StepWritten::NotFound),
            (true, Some(o)) => Some(o),
            (false, _) => None,
        };
        let mut query = sqlx::query(sql).bind(data).bind(slot).bind(attempt.as_slice()).bind(slot).bind(now);
        if let Some((account, device)) = owner {
            query = query.bind(account.as_bytes().as_slice()).bind(device.as_bytes().as_slice());
        }
        if query.execute(&self.pool).await?.rows_affected() == 1 {
            return Ok(StepWritten::Written);
        }
        // Not written: find out why.
        let row = sqlx::query(
            "SELECT a.reply, a.joiner, a.welcome, s.account_id, s.device_id FROM pairing_attempts a \
             JOIN pairing_slots s ON s.slot = a.slot WHERE a.slot = $1 AND a.attempt_id = $2 AND s.expires_at >= $3",
        )
        .bind(slot)
        .bind(attempt.as_slice())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(StepWritten::NotFound) };
        if let Some((account, device)) = owner {
            let (a, d): (Vec<u8>, Vec<u8>) = (row.get(3), row.get(4));
            if a.as_slice() != account.as_bytes().as_slice() || d.as_slice() != device.as_bytes().as_slice() {
                return Ok(StepWritten::NotFound);
            }
        }
        let reply: Option<Vec<u8>> = row.get(0);
        let joiner: Option<Vec<u8>> = row.get(1);
        let welcome: Option<Vec<u8>> = row.get(2);
        let (this, before) = match step {
            PairingStepKind::Reply => (reply, true),
            PairingStepKind::Joiner => (joiner, reply.is_some()),
            PairingStepKind::Welcome => (welcome, joiner.is_some()),
        };
        Ok(match this {
            Some(existing) if existing == data => StepWritten::Same,
            Some(_) => StepWritten::Conflict("this step was written already"),
            None if !before => StepWritten::Conflict("the step before this one is missing"),
            // Raced with a write that has just committed: report it as such.
            None => StepWritten::Conflict("this step is being written"),
        })
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
            "INSERT INTO packs (account_id, collection_id, pack_id, size, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
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
        sqlx::query("SELECT size FROM packs WHERE account_id = $1 AND pack_id = $2")
            .bind(account.as_bytes().as_slice())
            .bind(pack.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| to_u64(r.get(0), "size"))
            .transpose()
    }

    /// Every pack of a collection.
    pub async fn packs(&self, account: AccountId, collection: CollectionId) -> Result<Vec<(ObjectId, u64)>> {
        sqlx::query("SELECT pack_id, size FROM packs WHERE account_id = $1 AND collection_id = $2 ORDER BY created_at, pack_id")
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
        sqlx::query("SELECT seq, revision_id FROM heads WHERE account_id = $1 AND collection_id = $2")
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
        Ok(sqlx::query(
            "SELECT body FROM revisions WHERE account_id = $1 AND collection_id = $2 AND seq >= $3 ORDER BY seq LIMIT $4",
        )
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
            None => sqlx::query("INSERT INTO heads (account_id, collection_id, seq, revision_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(a)
                .bind(c)
                .bind(to_i64(seq, "seq")?)
                .bind(id.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Some(prev) => sqlx::query(
                "UPDATE heads SET seq = $1, revision_id = $2 WHERE account_id = $3 AND collection_id = $4 AND seq = $5 AND revision_id = $6",
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
            "INSERT INTO revisions (account_id, collection_id, seq, revision_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a)
        .bind(c)
        .bind(to_i64(seq, "seq")?)
        .bind(id.as_bytes().as_slice())
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if !charge(&mut tx, account, len_u64(body)).await? {
            return Ok(Commit::OverQuota);
        }
        tx.commit().await?;
        Ok(Commit::Committed)
    }

    /// Whether this database holds `account`.
    pub async fn has_account(&self, account: AccountId) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM accounts WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Whether a pairing slot of that name is live here.
    pub async fn slot_is_live(&self, slot: &str, now: i64) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM pairing_slots WHERE slot = $1 AND expires_at >= $2")
            .bind(slot)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Everything stored about `account`, table by table, each row as a map
    /// of column to value (bytes as hex): what a compelled operator could
    /// hand over. Challenges hold nothing about any account and are left out.
    pub async fn export_account(
        &self,
        account: AccountId,
    ) -> Result<Vec<(&'static str, Vec<serde_json::Map<String, serde_json::Value>>)>> {
        const BY_ACCOUNT: &[&str] = &[
            "accounts",
            "devices",
            "device_chain",
            "device_wraps",
            "recovery_wraps",
            "previous_root_wraps",
            "collection_wraps",
            "sessions",
            "pairing_slots",
            "packs",
            "revisions",
            "heads",
            "account_events",
            "links",
            "shared_collections",
            "share_entries",
            "share_members",
            "share_grants",
            "handles",
        ];
        let mut out = Vec::new();
        let queries = BY_ACCOUNT.iter().map(|t| (*t, format!("SELECT * FROM {t} WHERE account_id = $1"))).chain([
            (
                "pairing_attempts",
                "SELECT * FROM pairing_attempts WHERE slot IN (SELECT slot FROM pairing_slots WHERE account_id = $1)".to_owned(),
            ),
            // Other accounts' shared collections this one was admitted to,
            // and the grants addressed to it (in this region).
            ("share_memberships", "SELECT * FROM share_members WHERE member_id = $1".to_owned()),
            ("share_grants_received", "SELECT * FROM share_grants WHERE member_id = $1".to_owned()),
        ]);
        for (table, sql) in queries {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.as_bytes().as_slice()).fetch_all(&self.pool).await?;
            out.push((table, rows.iter().map(row_json).collect()));
        }
        Ok(out)
    }

    /// Records an administrative action on `account`; returns its number.
    pub async fn add_account_event(&self, account: AccountId, kind: &str, detail: &str, now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, account).await?;
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), -1) + 1 FROM account_events WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        sqlx::query("INSERT INTO account_events (account_id, seq, kind, detail, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(account.as_bytes().as_slice())
            .bind(seq)
            .bind(kind)
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        to_u64(seq, "event seq")
    }

    /// The administrative actions on `account`, oldest first: (seq, kind, detail, time).
    pub async fn account_events(&self, account: AccountId) -> Result<Vec<(u64, String, String, i64)>> {
        sqlx::query("SELECT seq, kind, detail, created_at FROM account_events WHERE account_id = $1 ORDER BY seq")
            .bind(account.as_bytes().as_slice())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((to_u64(r.get(0), "event seq")?, r.get(1), r.get(2), r.get(3))))
            .collect()
    }

    /// Suspends (`Some(time)`) or reinstates (`None`) an account.
    pub async fn set_suspended(&self, account: AccountId, since: Option<i64>) -> Result<bool> {
        let updated = sqlx::query("UPDATE accounts SET suspended_at = $1 WHERE account_id = $2")
            .bind(since)
            .bind(account.as_bytes().as_slice())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// Deletes an account's data — packs, revisions, heads, collection
    /// wraps, pairing slots, the member lists and grants of the collections
    /// it shares, its handle — in one transaction, and marks it deleted. The
    /// account row, its devices, device chain and event log stay, so that its
    /// devices can still sign in and learn what happened. Returns the ids of
    /// the packs whose blobs are to be removed.
    pub async fn delete_account_data(&self, account: AccountId, now: i64) -> Result<Vec<ObjectId>> {
        let a = account.as_bytes().as_slice();
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, account).await?;
        let packs = sqlx::query("SELECT pack_id FROM packs WHERE account_id = $1")
            .bind(a)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| Ok(ObjectId(array(r.get(0), "pack id")?)))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM pairing_attempts WHERE slot IN (SELECT slot FROM pairing_slots WHERE account_id = $1)")
            .bind(a)
            .execute(&mut *tx)
            .await?;
        // The collections it shares go with their member lists and grants
        // (children first): their members lose access with them.
        for table in [
            "pairing_slots",
            "packs",
            "revisions",
            "heads",
            "collection_wraps",
            "share_grants",
            "share_members",
            "share_entries",
            "shared_collections",
            // Its handle is free again; the key directory keeps the last
            // claim it published for it (handles.rs).
            "handles",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE account_id = $1")))
                .bind(a)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE accounts SET used_bytes = 0, deleted_at = $1 WHERE account_id = $2")
            .bind(now)
            .bind(a)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(packs)
    }

    /// Sets an account's quota. `false` if there is no such account here.
    pub async fn set_quota(&self, account: AccountId, bytes: u64) -> Result<bool> {
        let updated = sqlx::query("UPDATE accounts SET quota_bytes = $1 WHERE account_id = $2")
            .bind(to_i64(bytes, "quota")?)
            .bind(account.as_bytes().as_slice())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// The disclosure log, oldest first: (seq, body, signature).
    pub async fn disclosures(&self) -> Result<Vec<(u64, Vec<u8>, Vec<u8>)>> {
        sqlx::query("SELECT seq, body, signature FROM disclosure_log ORDER BY seq")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((to_u64(r.get(0), "log seq")?, r.get(1), r.get(2))))
            .collect()
    }

    /// Appends entry `seq` of the disclosure log; `false` if `seq` is taken
    /// (another append won: read the tail again and retry).
    pub async fn append_disclosure(&self, seq: u64, body: &[u8], signature: &[u8], now: i64) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO disclosure_log (seq, body, signature, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(to_i64(seq, "log seq")?)
        .bind(body)
        .bind(signature)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// For `/metrics`: the number of accounts and the bytes charged to them.
    pub async fn totals(&self) -> Result<(u64, u64)> {
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
        let r = sqlx::query("SELECT COUNT(*), CAST(COALESCE(SUM(used_bytes), 0) AS BIGINT) FROM accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok((to_u64(r.get(0), "count")?, to_u64(r.get(1), "used")?))
    }

    /// Usage and quota.
    pub async fn usage(&self, account: AccountId) -> Result<(u64, u64)> {
        let r = sqlx::query("SELECT used_bytes, quota_bytes FROM accounts WHERE account_id = $1")
            .bind(account.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await?;
        Ok((to_u64(r.get(0), "used")?, to_u64(r.get(1), "quota")?))
    }
}

async fn insert_device(tx: &mut sqlx::AnyConnection, account: AccountId, device: &NewDevice<'_>, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO devices (account_id, device_id, public_keys, created_at) VALUES ($1, $2, $3, $4)")
        .bind(account.as_bytes().as_slice())
        .bind(device.id.as_bytes().as_slice())
        .bind(device.public_keys)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO device_wraps (account_id, device_id, epoch, wrap) VALUES ($1, $2, $3, $4)")
        .bind(account.as_bytes().as_slice())
        .bind(device.id.as_bytes().as_slice())
        .bind(i64::from(device.epoch))
        .bind(device.wrap)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn insert_chain_entry(
    tx: &mut sqlx::AnyConnection,
    account: AccountId,
    seq: u64,
    id: ObjectId,
    body: &[u8],
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO device_chain (account_id, seq, entry_id, body, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(account.as_bytes().as_slice())
        .bind(to_i64(seq, "seq")?)
        .bind(id.as_bytes().as_slice())
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Deletes expired pairing slots and their attempts.
async fn purge_pairing(tx: &mut sqlx::AnyConnection, now: i64) -> Result<()> {
    sqlx::query("DELETE FROM pairing_attempts WHERE slot IN (SELECT slot FROM pairing_slots WHERE expires_at < $1)")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM pairing_slots WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
    Ok(())
}

fn attempt_row(r: sqlx::any::AnyRow) -> Result<AttemptRow> {
    Ok(AttemptRow { id: array(r.get(0), "attempt id")?, hello: r.get(1), reply: r.get(2), joiner: r.get(3), welcome: r.get(4) })
}

/// One exported row: column → value (bytes as lower-case hex, NULL as null).
fn row_json(row: &sqlx::any::AnyRow) -> serde_json::Map<String, serde_json::Value> {
    use sqlx::Column;
    row.columns()
        .iter()
        .map(|c| {
            let i = c.ordinal();
            let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                v.map_or(serde_json::Value::Null, serde_json::Value::from)
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                v.map_or(serde_json::Value::Null, serde_json::Value::from)
            } else {
                let bytes: Option<Vec<u8>> = row.try_get(i).unwrap_or_default();
                bytes.map_or(serde_json::Value::Null, |b| {
                    serde_json::Value::from(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                })
            };
            (c.name().to_owned(), value)
        })
        .collect()
}

/// Takes the account's row lock for the rest of the transaction, so that a
/// count-then-insert on its rows is not raced by another server process
/// (PostgreSQL; SQLite's writer lock does the same).
pub(crate) async fn lock_account(tx: &mut sqlx::AnyConnection, account: AccountId) -> Result<()> {
    sqlx::query("UPDATE accounts SET quota_bytes = quota_bytes WHERE account_id = $1")
        .bind(account.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds `bytes` to the account's usage, whatever the quota.
pub(crate) async fn charge_unchecked(tx: &mut sqlx::AnyConnection, account: AccountId, bytes: u64) -> Result<()> {
    sqlx::query("UPDATE accounts SET used_bytes = used_bytes + $1 WHERE account_id = $2")
        .bind(to_i64(bytes, "size")?)
        .bind(account.as_bytes().as_slice())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds `bytes` to the account's usage if it stays within quota.
pub(crate) async fn charge(tx: &mut sqlx::AnyConnection, account: AccountId, bytes: u64) -> Result<bool> {
    let bytes = to_i64(bytes, "size")?;
    let charged =
        sqlx::query("UPDATE accounts SET used_bytes = used_bytes + $1 WHERE account_id = $2 AND used_bytes + $3 <= quota_bytes")
            .bind(bytes)
            .bind(account.as_bytes().as_slice())
            .bind(bytes)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    Ok(charged == 1)
}
