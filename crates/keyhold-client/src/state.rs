//! The device's local state (SQLite): for each synced folder, the tree it
//! last agreed on with the server (the *base* of the three-way merge) with
//! the stat data that lets a scan skip unchanged files; the highest head
//! verified per collection (rollback and fork detection); and where each
//! blob sits in which pack. All of it can be rebuilt from the server: a
//! damaged database is set aside and rebuilt, and an empty base never
//! propagates a deletion (SECURITY F2, F7).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use keyhold_core::{BlobId, BlobRef, CollectionId, Head, ObjectId, ObjectType};

use crate::client::RemoteNode;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::error::{ClientError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heads (collection_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS roots (root TEXT PRIMARY KEY, collection_id BLOB NOT NULL, head_seq INTEGER, head_id BLOB);
CREATE TABLE IF NOT EXISTS base (
    root TEXT NOT NULL, path TEXT NOT NULL, is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL,
    target_epoch INTEGER NOT NULL, target_id BLOB NOT NULL,
    st_size INTEGER, st_mtime_ns INTEGER, st_ino INTEGER, st_ctime_ns INTEGER,
    PRIMARY KEY (root, path));
CREATE TABLE IF NOT EXISTS blobs (collection_id BLOB NOT NULL, blob_id BLOB NOT NULL, kind INTEGER NOT NULL,
    pack_id BLOB NOT NULL, offset INTEGER NOT NULL, len INTEGER NOT NULL, PRIMARY KEY (collection_id, blob_id));
CREATE TABLE IF NOT EXISTS packs (collection_id BLOB NOT NULL, pack_id BLOB NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (collection_id, pack_id));
";

/// A stat snapshot used to recognise unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Size.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Inode.
    pub ino: u64,
    /// Change time, ns.
    pub ctime_ns: i64,
}

/// One entry of a base tree: the node both sides agreed on, and the local
/// stat when the file was known to match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseEntry {
    /// The agreed node.
    pub node: RemoteNode,
    /// Local stat when the file was known to match `node`.
    pub stat: Option<Stat>,
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    /// Its kind.
    pub kind: ObjectType,
    /// The pack.
    pub pack: ObjectId,
    /// Offset in the pack.
    pub offset: u64,
    /// Ciphertext length.
    pub len: u64,
}

/// The state database.
#[derive(Clone)]
pub struct State {
    pool: SqlitePool,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn arr<const N: usize>(v: Vec<u8>) -> Result<[u8; N]> {
    v.try_into().map_err(|_| ClientError::Usage("local state database holds a malformed id; delete it to rebuild".into()))
}

async fn connect(path: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
    for statement in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(&pool).await?;
    }
    sqlx::query("PRAGMA quick_check").fetch_all(&pool).await?;
    Ok(pool)
}

impl State {
    /// Opens the database; a damaged one is moved aside and rebuilt empty.
    pub async fn open(path: &Path) -> Result<(Self, bool)> {
        match connect(path).await {
            Ok(pool) => Ok((State { pool }, false)),
            Err(e) => {
                tracing::warn!(error = %e, "local state database unusable; rebuilding it from the server");
                let aside = path.with_extension(format!("corrupt-{}", std::process::id()));
                for suffix in ["", "-wal", "-shm"] {
                    let from = format!("{}{suffix}", path.display());
                    let _ = std::fs::rename(&from, format!("{}{suffix}", aside.display()));
                }
                Ok((State { pool: connect(path).await? }, true))
            }
        }
    }

    /// The highest head this device verified for a collection.
    pub async fn verified_head(&self, collection: CollectionId) -> Result<Option<Head>> {
        let row = sqlx::query("SELECT seq, id FROM heads WHERE collection_id = ?")
            .bind(collection.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(Head { seq: u64_of(r.get(0)), id: ObjectId(arr(r.get(1))?) })).transpose()
    }

    /// Records a newly verified head.
    pub async fn set_verified_head(&self, collection: CollectionId, head: Head) -> Result<()> {
        sqlx::query("INSERT INTO heads (collection_id, seq, id) VALUES (?, ?, ?) ON CONFLICT (collection_id) DO UPDATE SET seq = excluded.seq, id = excluded.id")
            .bind(collection.as_bytes().as_slice())
            .bind(i64_of(head.seq))
            .bind(head.id.as_bytes().as_slice())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The base tree of a synced folder and the head it corresponds to.
    pub async fn base(&self, root: &str) -> Result<(Option<Head>, std::collections::BTreeMap<String, BaseEntry>)> {
        let head =
            sqlx::query("SELECT head_seq, head_id FROM roots WHERE root = ?").bind(root).fetch_optional(&self.pool).await?;
        let head = match head {
            Some(r) => match (r.get::<Option<i64>, _>(0), r.get::<Option<Vec<u8>>, _>(1)) {
                (Some(seq), Some(id)) => Some(Head { seq: u64_of(seq), id: ObjectId(arr(id)?) }),
                _ => None,
            },
            None => None,
        };
        let rows = sqlx::query(
            "SELECT path, is_dir, size, mtime_ns, mode, target_epoch, target_id, st_size, st_mtime_ns, st_ino, st_ctime_ns FROM base WHERE root = ?",
        )
        .bind(root)
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::BTreeMap::new();
        for r in rows {
            let stat = match (
                r.get::<Option<i64>, _>(7),
                r.get::<Option<i64>, _>(8),
                r.get::<Option<i64>, _>(9),
                r.get::<Option<i64>, _>(10),
            ) {
                (Some(size), Some(mtime_ns), Some(ino), Some(ctime_ns)) => {
                    Some(Stat { size: u64_of(size), mtime_ns, ino: u64_of(ino), ctime_ns })
                }
                _ => None,
            };
            out.insert(
                r.get::<String, _>(0),
                BaseEntry {
                    node: RemoteNode {
                        is_dir: r.get::<i64, _>(1) != 0,
                        size: u64_of(r.get(2)),
                        mtime_ns: r.get(3),
                        mode: u32::try_from(r.get::<i64, _>(4)).unwrap_or(0),
                        target: BlobRef { epoch: u32::try_from(r.get::<i64, _>(5)).unwrap_or(0), id: BlobId(arr(r.get(6))?) },
                    },
                    stat,
                },
            );
        }
        Ok((head, out))
    }

    /// Replaces a synced folder's base tree and head in one transaction.
    pub async fn save_base(
        &self,
        root: &str,
        collection: CollectionId,
        head: Option<Head>,
        entries: &std::collections::BTreeMap<String, BaseEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO roots (root, collection_id, head_seq, head_id) VALUES (?, ?, ?, ?) ON CONFLICT (root) DO UPDATE SET collection_id = excluded.collection_id, head_seq = excluded.head_seq, head_id = excluded.head_id")
            .bind(root)
            .bind(collection.as_bytes().as_slice())
            .bind(head.map(|h| i64_of(h.seq)))
            .bind(head.map(|h| h.id.as_bytes().to_vec()))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM base WHERE root = ?").bind(root).execute(&mut *tx).await?;
        for (path, e) in entries {
            sqlx::query("INSERT INTO base (root, path, is_dir, size, mtime_ns, mode, target_epoch, target_id, st_size, st_mtime_ns, st_ino, st_ctime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(root)
                .bind(path)
                .bind(i64::from(e.node.is_dir))
                .bind(i64_of(e.node.size))
                .bind(e.node.mtime_ns)
                .bind(i64::from(e.node.mode))
                .bind(i64::from(e.node.target.epoch))
                .bind(e.node.target.id.as_bytes().as_slice())
                .bind(e.stat.map(|s| i64_of(s.size)))
                .bind(e.stat.map(|s| s.mtime_ns))
                .bind(e.stat.map(|s| i64_of(s.ino)))
                .bind(e.stat.map(|s| s.ctime_ns))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Synced folders: (root, collection).
    pub async fn roots(&self) -> Result<Vec<(String, CollectionId, Option<u64>)>> {
        sqlx::query("SELECT root, collection_id, head_seq FROM roots ORDER BY root")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.get(0), CollectionId(arr(r.get(1))?), r.get::<Option<i64>, _>(2).map(u64_of))))
            .collect()
    }

    /// Packs whose index is loaded.
    pub async fn known_packs(&self, collection: CollectionId) -> Result<std::collections::HashSet<ObjectId>> {
        sqlx::query("SELECT pack_id FROM packs WHERE collection_id = ?")
            .bind(collection.as_bytes().as_slice())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok(ObjectId(arr(r.get(0))?)))
            .collect()
    }

    /// Records a pack and its verified index.
    pub async fn add_pack(
        &self,
        collection: CollectionId,
        pack: ObjectId,
        size: u64,
        entries: &[keyhold_core::pack::PackEntry],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for e in entries {
            sqlx::query("INSERT INTO blobs (collection_id, blob_id, kind, pack_id, offset, len) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(collection.as_bytes().as_slice())
                .bind(e.id.as_bytes().as_slice())
                .bind(i64::from(e.kind.byte()))
                .bind(pack.as_bytes().as_slice())
                .bind(i64::from(e.offset))
                .bind(i64::from(e.len))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO packs (collection_id, pack_id, size) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(collection.as_bytes().as_slice())
            .bind(pack.as_bytes().as_slice())
            .bind(i64_of(size))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The whole blob index of a collection.
    pub async fn blob_index(&self, collection: CollectionId) -> Result<std::collections::HashMap<BlobId, BlobLocation>> {
        let rows = sqlx::query("SELECT blob_id, kind, pack_id, offset, len FROM blobs WHERE collection_id = ?")
            .bind(collection.as_bytes().as_slice())
            .fetch_all(&self.pool)
            .await?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let kind = u8::try_from(r.get::<i64, _>(1)).ok().and_then(ObjectType::from_byte).unwrap_or(ObjectType::Chunk);
            out.insert(
                BlobId(arr(r.get(0))?),
                BlobLocation { kind, pack: ObjectId(arr(r.get(2))?), offset: u64_of(r.get(3)), len: u64_of(r.get(4)) },
            );
        }
        Ok(out)
    }
}
