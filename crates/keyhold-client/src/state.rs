//! The device's local state (SQLite): for each synced folder, the tree it
//! last agreed on with the server (the *base* of the three-way merge) with
//! the stat data that lets a scan skip unchanged files; the highest head
//! verified per collection (rollback and fork detection); and where each
//! blob sits in which pack. All of it can be rebuilt from the server: a
//! damaged database is set aside and rebuilt, and an empty base never
//! propagates a deletion (SECURITY F2, F7).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keyhold_core::{BlobId, BlobRef, CollectionId, Head, ObjectId, ObjectType};
use rusqlite::{Connection, OptionalExtension, params};

use crate::client::RemoteNode;
use crate::error::{ClientError, Result};
use crate::merge::BaseChange;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heads (collection_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS member_heads (collection_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS roots (root TEXT PRIMARY KEY, collection_id BLOB NOT NULL, head_seq INTEGER, head_id BLOB);
CREATE TABLE IF NOT EXISTS base_tree (root TEXT PRIMARY KEY, entries BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending_commit (root TEXT PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL,
    changes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pack_index (collection_id BLOB NOT NULL, pack_id BLOB NOT NULL, size INTEGER NOT NULL,
    entries BLOB NOT NULL, PRIMARY KEY (collection_id, pack_id));
";

/// Schema version 1 keeps a pack's index as one row (version 0 had a row
/// per blob: 40,000 inserts for 20,000 small files). Both are caches of
/// what the server's packs say, so the upgrade drops the old tables and
/// the indexes are fetched again when next needed.
///
/// Version 2 keeps a pending commit's changes to the base as one row
/// (`pending_commit.changes`, see [`encode_changes`]); version 1 had a row
/// per changed path (`pending` and `pending_base`), written and deleted
/// again on every commit. The upgrade carries a pending commit over.
///
/// Version 3 keeps a folder's base as one row (`base_tree.entries`, in the
/// same encoding, every entry present); version 2 had a row per path in
/// `base`. A first sync of 20,000 files spent ~30 ms of CPU inserting
/// those rows, on the critical path after the commit, and wrote ~1,600
/// pages of table and index (twice: log, then checkpoint); the encoded
/// tree is ~2 MB written in sequence. A sync now rewrites the whole base
/// when any entry changes, which is linear in the folder's size like the
/// scan and the base's loading that every sync already does (and far
/// cheaper per file than the scan's `stat`). The upgrade carries every
/// base over.
const SCHEMA_VERSION: i64 = 3;
const UPGRADE_FROM_0: &str = "DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS packs;";

/// One pack index entry in the `entries` column: kind (1 byte), blob id
/// (32), offset (4, big-endian), length (4, big-endian).
const ENTRY_LEN: usize = 41;

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

/// The state database. A local, embedded cache that sync reads and writes
/// in tight loops, so it is synchronous and in-process (rusqlite): every
/// call is a few microseconds of work, with no thread hop per row.
#[derive(Clone)]
pub struct State {
    db: Arc<Mutex<Connection>>,
    /// A copy of the verified heads outside the database, so losing the
    /// database does not lose rollback protection (SECURITY C5, F7).
    pins: Option<PathBuf>,
}

/// How soon a write must be on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the call returns (SQLite's `synchronous = FULL`).
    Now,
    /// With the next durable write or checkpoint (`synchronous = NORMAL`,
    /// which in WAL mode still survives a crash of this process): for what
    /// a power cut may take without harm, because the server or a durable
    /// record already holds it. Each sync in the disk's queue costs the
    /// end of a sync several milliseconds on this kind of machine.
    Deferred,
}

/// A verified head as pinned on disk.
#[derive(serde::Serialize, serde::Deserialize)]
struct PinnedHead {
    seq: u64,
    id: String,
}

/// Reads `heads.json`: collection id (hex) → newest verified head. Entries
/// whose ids are not hex of the right length are skipped (a pin can only
/// add protection, never remove it).
pub fn decode_pins(bytes: &[u8]) -> serde_json::Result<Vec<(CollectionId, Head)>> {
    let pinned: BTreeMap<String, PinnedHead> = serde_json::from_slice(bytes)?;
    Ok(pinned
        .into_iter()
        .filter_map(|(collection, head)| {
            Some((CollectionId::from_hex(&collection)?, Head { seq: head.seq, id: ObjectId::from_hex(&head.id)? }))
        })
        .collect())
}

/// Reads one pack's row of the pack index: entries of kind (1 byte), blob
/// id (32), offset and length (u32 big-endian each). `None` if malformed.
pub fn decode_pack_entries(pack: ObjectId, entries: &[u8]) -> Option<Vec<(BlobId, BlobLocation)>> {
    if !entries.len().is_multiple_of(ENTRY_LEN) {
        return None;
    }
    entries
        .chunks_exact(ENTRY_LEN)
        .map(|entry| {
            let (kind, rest) = entry.split_first()?;
            let (id, rest) = rest.split_first_chunk::<32>()?;
            let (offset, rest) = rest.split_first_chunk::<4>()?;
            let len = rest.first_chunk::<4>()?;
            let location = BlobLocation {
                kind: ObjectType::from_byte(*kind)?,
                pack,
                offset: u64::from(u32::from_be_bytes(*offset)),
                len: u64::from(u32::from_be_bytes(*len)),
            };
            Some((BlobId(*id), location))
        })
        .collect()
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

fn connect(path: &Path) -> Result<Connection> {
    let mut db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(30))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    // Up to 64 MiB of page cache, so a large base is written without
    // spilling pages to the log mid-transaction (used only as needed).
    db.pragma_update(None, "cache_size", -65536)?;
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < SCHEMA_VERSION {
        let tx = db.transaction()?;
        tx.execute_batch(UPGRADE_FROM_0)?;
        tx.execute_batch(SCHEMA)?;
        upgrade_pending_rows(&tx)?;
        upgrade_base_rows(&tx)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    db.execute_batch(SCHEMA)?;
    // Damage is found here, once, rather than halfway through a sync.
    let verdict: String = db.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(ClientError::Usage(format!("local state database is damaged: {verdict}")));
    }
    Ok(db)
}

/// Reads a base entry from columns `at..at + 10` (is_dir, size, mtime_ns,
/// mode, target_epoch, target_id, st_size, st_mtime_ns, st_ino, st_ctime_ns).
fn read_entry(r: &rusqlite::Row<'_>, at: usize) -> Result<BaseEntry> {
    let stat = match (
        r.get::<_, Option<i64>>(at + 6)?,
        r.get::<_, Option<i64>>(at + 7)?,
        r.get::<_, Option<i64>>(at + 8)?,
        r.get::<_, Option<i64>>(at + 9)?,
    ) {
        (Some(size), Some(mtime_ns), Some(ino), Some(ctime_ns)) => {
            Some(Stat { size: u64_of(size), mtime_ns, ino: u64_of(ino), ctime_ns })
        }
        _ => None,
    };
    let node = RemoteNode {
        is_dir: r.get::<_, i64>(at)? != 0,
        size: u64_of(r.get(at + 1)?),
        mtime_ns: r.get(at + 2)?,
        mode: u32::try_from(r.get::<_, i64>(at + 3)?).unwrap_or(0),
        target: BlobRef { epoch: u32::try_from(r.get::<_, i64>(at + 4)?).unwrap_or(0), id: BlobId(arr(r.get(at + 5)?)?) },
    };
    Ok(BaseEntry { node, stat })
}

/// Changes to a base: each path with its new entry, or `None` if removed.
type Changes = Vec<(String, Option<BaseEntry>)>;

/// Encodes a pending commit's changes, or a whole base with every entry
/// present (a local cache format, never sent): per path, its length (u32
/// BE) and UTF-8 bytes, then 0 (removed) or 1 and the entry: is_dir (u8),
/// size (u64), mtime_ns (i64), mode (u32), target epoch (u32), target id
/// (32 bytes), then 0, or 1 and the stat's size (u64), mtime_ns (i64), ino
/// (u64), ctime_ns (i64); all big-endian.
fn encode_changes<'a>(changes: impl Iterator<Item = (&'a str, Option<&'a BaseEntry>)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, entry) in changes {
        out.extend_from_slice(&u32::try_from(path.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
        let Some(e) = entry else {
            out.push(0);
            continue;
        };
        out.push(1);
        out.push(u8::from(e.node.is_dir));
        out.extend_from_slice(&e.node.size.to_be_bytes());
        out.extend_from_slice(&e.node.mtime_ns.to_be_bytes());
        out.extend_from_slice(&e.node.mode.to_be_bytes());
        out.extend_from_slice(&e.node.target.epoch.to_be_bytes());
        out.extend_from_slice(e.node.target.id.as_bytes());
        match &e.stat {
            None => out.push(0),
            Some(st) => {
                out.push(1);
                out.extend_from_slice(&st.size.to_be_bytes());
                out.extend_from_slice(&st.mtime_ns.to_be_bytes());
                out.extend_from_slice(&st.ino.to_be_bytes());
                out.extend_from_slice(&st.ctime_ns.to_be_bytes());
            }
        }
    }
    out
}

/// Reads what [`encode_changes`] wrote; `None` if it is malformed.
fn decode_changes(mut bytes: &[u8]) -> Option<Changes> {
    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn array<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
        take(bytes, N)?.try_into().ok()
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::try_from(u32::from_be_bytes(array(&mut bytes)?)).ok()?;
        let path = std::str::from_utf8(take(&mut bytes, len)?).ok()?.to_owned();
        let entry = match array::<1>(&mut bytes)? {
            [0] => None,
            [1] => {
                let is_dir = match array::<1>(&mut bytes)? {
                    [0] => false,
                    [1] => true,
                    _ => return None,
                };
                let node = RemoteNode {
                    is_dir,
                    size: u64::from_be_bytes(array(&mut bytes)?),
                    mtime_ns: i64::from_be_bytes(array(&mut bytes)?),
                    mode: u32::from_be_bytes(array(&mut bytes)?),
                    target: BlobRef { epoch: u32::from_be_bytes(array(&mut bytes)?), id: BlobId(array(&mut bytes)?) },
                };
                let stat = match array::<1>(&mut bytes)? {
                    [0] => None,
                    [1] => Some(Stat {
                        size: u64::from_be_bytes(array(&mut bytes)?),
                        mtime_ns: i64::from_be_bytes(array(&mut bytes)?),
                        ino: u64::from_be_bytes(array(&mut bytes)?),
                        ctime_ns: i64::from_be_bytes(array(&mut bytes)?),
                    }),
                    _ => return None,
                };
                Some(BaseEntry { node, stat })
            }
            _ => return None,
        };
        out.push((path, entry));
    }
    Some(out)
}

/// Whether the database has a table of this name (one an upgrade replaces).
fn table_exists(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)", [name], |r| r.get(0))?)
}

/// Carries a pending commit of schema version 1 (a row per changed path)
/// over to `pending_commit`, then drops the old tables.
fn upgrade_pending_rows(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    if !table_exists(tx, "pending_base")? {
        return Ok(());
    }
    let heads: Vec<(String, i64, Vec<u8>)> = {
        let mut statement = tx.prepare("SELECT root, seq, id FROM pending")?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (root, seq, id) in heads {
        let mut statement = tx.prepare(
            "SELECT path, present, is_dir, size, mtime_ns, mode, target_epoch, target_id, st_size, st_mtime_ns, st_ino, st_ctime_ns FROM pending_base WHERE root = ?",
        )?;
        let mut rows = statement.query([&root])?;
        let mut changes = Vec::new();
        while let Some(r) = rows.next()? {
            let present = r.get::<_, i64>(1)? != 0;
            changes.push((r.get::<_, String>(0)?, if present { Some(read_entry(r, 2)?) } else { None }));
        }
        let encoded = encode_changes(changes.iter().map(|(p, e)| (p.as_str(), e.as_ref())));
        tx.execute(
            "INSERT OR REPLACE INTO pending_commit (root, seq, id, changes) VALUES (?, ?, ?, ?)",
            params![root, seq, id, encoded],
        )?;
    }
    tx.execute_batch("DROP TABLE pending_base; DROP TABLE IF EXISTS pending;")?;
    Ok(())
}

/// Carries the bases of schema version 2 and earlier (a row per path in
/// `base`) over to `base_tree`, then drops the old table.
fn upgrade_base_rows(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    if !table_exists(tx, "base")? {
        return Ok(());
    }
    let roots: Vec<String> = {
        let mut statement = tx.prepare("SELECT DISTINCT root FROM base")?;
        let rows = statement.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for root in roots {
        let mut statement = tx.prepare(
            "SELECT path, is_dir, size, mtime_ns, mode, target_epoch, target_id, st_size, st_mtime_ns, st_ino, st_ctime_ns FROM base WHERE root = ?",
        )?;
        let mut rows = statement.query([&root])?;
        let mut entries = BTreeMap::new();
        while let Some(r) = rows.next()? {
            entries.insert(r.get::<_, String>(0)?, read_entry(r, 1)?);
        }
        tx.execute("INSERT OR REPLACE INTO base_tree (root, entries) VALUES (?, ?)", params![root, encode_base(&entries)])?;
    }
    tx.execute_batch("DROP TABLE base;")?;
    Ok(())
}

/// A whole base, in [`encode_changes`]'s encoding (in path order, every
/// entry present).
fn encode_base(entries: &BTreeMap<String, BaseEntry>) -> Vec<u8> {
    encode_changes(entries.iter().map(|(p, e)| (p.as_str(), Some(e))))
}

/// Reads what [`encode_base`] wrote; `None` if it is malformed or lists a
/// removal.
fn decode_base(bytes: &[u8]) -> Option<BTreeMap<String, BaseEntry>> {
    decode_changes(bytes)?.into_iter().map(|(path, entry)| entry.map(|e| (path, e))).collect()
}

impl State {
    /// Opens the database; a damaged one is moved aside and rebuilt empty.
    pub fn open(path: &Path) -> Result<(Self, bool)> {
        let wrap = |db| State { db: Arc::new(Mutex::new(db)), pins: None };
        match connect(path) {
            Ok(db) => Ok((wrap(db), false)),
            Err(e) => {
                tracing::warn!(error = %e, "local state database unusable; rebuilding it from the server");
                let aside = path.with_extension(format!("corrupt-{}", std::process::id()));
                for suffix in ["", "-wal", "-shm"] {
                    let from = format!("{}{suffix}", path.display());
                    let _ = std::fs::rename(&from, format!("{}{suffix}", aside.display()));
                }
                Ok((wrap(connect(path)?), true))
            }
        }
    }

    /// Runs `write` in one transaction, committed with `durability`.
    fn write<T>(&self, durability: Durability, write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut db = self.db();
        let deferred = durability == Durability::Deferred;
        if deferred {
            db.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let result = (|| {
            let tx = db.transaction()?;
            let out = write(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        if deferred {
            // Every other write waits for the disk again.
            db.pragma_update(None, "synchronous", "FULL")?;
        }
        result
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent
        // (the transaction rolls back on drop), so the poison is moot.
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The highest head this device verified for a collection.
    pub fn verified_head(&self, collection: CollectionId) -> Result<Option<Head>> {
        let row = self
            .db()
            .query_row("SELECT seq, id FROM heads WHERE collection_id = ?", [collection.as_bytes().as_slice()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        row.map(|(seq, id)| Ok(Head { seq: u64_of(seq), id: ObjectId(arr(id)?) })).transpose()
    }

    /// The newest entry of a shared collection's member list this device
    /// verified: every list the server serves later must contain it.
    pub fn member_list_head(&self, collection: CollectionId) -> Result<Option<Head>> {
        let row = self
            .db()
            .query_row("SELECT seq, id FROM member_heads WHERE collection_id = ?", [collection.as_bytes().as_slice()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        row.map(|(seq, id)| Ok(Head { seq: u64_of(seq), id: ObjectId(arr(id)?) })).transpose()
    }

    /// Records the newest verified member-list entry.
    pub fn set_member_list_head(&self, collection: CollectionId, head: Head) -> Result<()> {
        self.db().execute(
            "INSERT INTO member_heads (collection_id, seq, id) VALUES (?, ?, ?) ON CONFLICT (collection_id) DO UPDATE SET seq = excluded.seq, id = excluded.id",
            params![collection.as_bytes().as_slice(), i64_of(head.seq), head.id.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    /// Records a newly verified head (and pins it, see [`State::with_pins`]).
    pub fn set_verified_head(&self, collection: CollectionId, head: Head) -> Result<()> {
        self.db().execute(
            "INSERT INTO heads (collection_id, seq, id) VALUES (?, ?, ?) ON CONFLICT (collection_id) DO UPDATE SET seq = excluded.seq, id = excluded.id",
            params![collection.as_bytes().as_slice(), i64_of(head.seq), head.id.as_bytes().as_slice()],
        )?;
        self.write_pins()
    }

    /// Keeps a copy of the verified heads in `path` (a small file beside
    /// the database): heads pinned there and missing from the database, or
    /// older in it (a database rebuilt or restored from a backup), are taken
    /// back into it now, so a server cannot roll a collection back past
    /// what this device saw just because the database was lost.
    pub fn with_pins(mut self, path: PathBuf) -> Result<Self> {
        let pinned = match std::fs::read(&path) {
            Ok(bytes) => decode_pins(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, path = %path.display(), "pinned heads unreadable; keeping the database's");
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ClientError::io(&path)(e)),
        };
        for (collection, head) in pinned {
            if self.verified_head(collection)?.is_none_or(|h| h.seq < head.seq) {
                self.db().execute(
                    "INSERT INTO heads (collection_id, seq, id) VALUES (?, ?, ?) ON CONFLICT (collection_id) DO UPDATE SET seq = excluded.seq, id = excluded.id",
                    params![collection.as_bytes().as_slice(), i64_of(head.seq), head.id.as_bytes().as_slice()],
                )?;
            }
        }
        self.pins = Some(path);
        self.write_pins()?;
        Ok(self)
    }

    fn write_pins(&self) -> Result<()> {
        let Some(path) = &self.pins else { return Ok(()) };
        let mut heads = BTreeMap::new();
        {
            let db = self.db();
            let mut statement = db.prepare_cached("SELECT collection_id, seq, id FROM heads")?;
            let mut rows = statement.query([])?;
            while let Some(r) = rows.next()? {
                let collection = CollectionId(arr(r.get(0)?)?);
                let id = ObjectId(arr(r.get(2)?)?);
                heads.insert(collection.to_hex(), PinnedHead { seq: u64_of(r.get(1)?), id: id.to_hex() });
            }
        }
        let json = serde_json::to_vec(&heads).map_err(|e| ClientError::Usage(e.to_string()))?;
        crate::home::write_private(path, &json)
    }

    /// The base tree of a synced folder and the head it corresponds to.
    pub fn base(&self, root: &str) -> Result<(Option<Head>, BTreeMap<String, BaseEntry>)> {
        let db = self.db();
        let head = db
            .query_row("SELECT head_seq, head_id FROM roots WHERE root = ?", [root], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
            })
            .optional()?;
        let head = match head {
            Some((Some(seq), Some(id))) => Some(Head { seq: u64_of(seq), id: ObjectId(arr(id)?) }),
            _ => None,
        };
        let encoded =
            db.query_row("SELECT entries FROM base_tree WHERE root = ?", [root], |r| r.get::<_, Vec<u8>>(0)).optional()?;
        let Some(encoded) = encoded else { return Ok((head, BTreeMap::new())) };
        let base = decode_base(&encoded)
            .ok_or_else(|| ClientError::Usage("local state database holds a malformed base; delete it to rebuild".into()))?;
        Ok((head, base))
    }

    /// Records, before a commit is sent, the base the folder will have if
    /// it lands: the changes to the current base, and the revision. A crash
    /// after the server committed but before [`State::save_base`] then
    /// loses nothing: the next sync finds its own revision on the server and
    /// adopts this base (see [`State::pending`]).
    pub fn save_pending(&self, root: &str, head: Head, changes: &[BaseChange<'_>]) -> Result<()> {
        // One row, however many paths changed: a commit of 20,000 new
        // files used to write (and later delete) 20,000 rows here.
        let changes = encode_changes(changes.iter().map(|(p, e)| (*p, e.as_deref())));
        self.db().execute(
            "INSERT OR REPLACE INTO pending_commit (root, seq, id, changes) VALUES (?, ?, ?, ?)",
            params![root, i64_of(head.seq), head.id.as_bytes().as_slice(), changes],
        )?;
        Ok(())
    }

    /// A commit recorded by [`State::save_pending`] whose outcome is not
    /// known: its revision, and the changes to the base (`None` = removed).
    pub fn pending(&self, root: &str) -> Result<Option<(Head, Changes)>> {
        let row = self
            .db()
            .query_row("SELECT seq, id, changes FROM pending_commit WHERE root = ?", [root], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
            })
            .optional()?;
        let Some((seq, id, changes)) = row else { return Ok(None) };
        let head = Head { seq: u64_of(seq), id: ObjectId(arr(id)?) };
        let changes = decode_changes(&changes).ok_or_else(|| {
            ClientError::Usage("local state database holds a malformed pending commit; delete it to rebuild".into())
        })?;
        Ok(Some((head, changes)))
    }

    /// Forgets a pending commit (it landed and the base was saved, or it
    /// never landed).
    pub fn clear_pending(&self, root: &str) -> Result<()> {
        self.db().execute("DELETE FROM pending_commit WHERE root = ?", [root])?;
        Ok(())
    }

    /// Records a synced folder's head and, unless `tree` is `None` (the
    /// tree did not change), its base tree, in one transaction. [`Durability::Deferred`]
    /// only where a pending commit already on the disk stands for the same
    /// files (the sync committed and changed nothing in the folder): a power
    /// cut that loses this write leaves that record, which the next sync
    /// adopts.
    pub fn save_base(
        &self,
        root: &str,
        collection: CollectionId,
        head: Option<Head>,
        tree: Option<&BTreeMap<String, BaseEntry>>,
        durability: Durability,
    ) -> Result<()> {
        self.write(durability, |tx| {
            tx.execute("DELETE FROM pending_commit WHERE root = ?", [root])?;
            tx.execute(
                "INSERT INTO roots (root, collection_id, head_seq, head_id) VALUES (?, ?, ?, ?) ON CONFLICT (root) DO UPDATE SET collection_id = excluded.collection_id, head_seq = excluded.head_seq, head_id = excluded.head_id",
                params![root, collection.as_bytes().as_slice(), head.map(|h| i64_of(h.seq)), head.map(|h| h.id.as_bytes().to_vec())],
            )?;
            if let Some(tree) = tree {
                tx.execute("INSERT OR REPLACE INTO base_tree (root, entries) VALUES (?, ?)", params![root, encode_base(tree)])?;
            }
            Ok(())
        })
    }

    /// The collection a synced folder belongs to, if it was synced before.
    pub fn root_collection(&self, root: &str) -> Result<Option<CollectionId>> {
        let id = self
            .db()
            .query_row("SELECT collection_id FROM roots WHERE root = ?", [root], |r| r.get::<_, Vec<u8>>(0))
            .optional()?;
        id.map(|id| Ok(CollectionId(arr(id)?))).transpose()
    }

    /// Synced folders: (root, collection).
    pub fn roots(&self) -> Result<Vec<(String, CollectionId, Option<u64>)>> {
        let db = self.db();
        let mut statement = db.prepare("SELECT root, collection_id, head_seq FROM roots ORDER BY root")?;
        let rows =
            statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Option<i64>>(2)?)))?;
        rows.map(|r| {
            let (root, id, seq) = r?;
            Ok((root, CollectionId(arr(id)?), seq.map(u64_of)))
        })
        .collect()
    }

    /// Packs whose index is loaded.
    pub fn known_packs(&self, collection: CollectionId) -> Result<HashSet<ObjectId>> {
        let db = self.db();
        let mut statement = db.prepare_cached("SELECT pack_id FROM pack_index WHERE collection_id = ?")?;
        let rows = statement.query_map([collection.as_bytes().as_slice()], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|r| Ok(ObjectId(arr(r?)?))).collect()
    }

    /// Records packs and their verified indexes, in one transaction. Not
    /// waited onto the disk ([`Durability::Deferred`]): what a power cut
    /// takes, the server's pack listing gives back (a sync reads the
    /// indexes of listed packs it does not know), and the pending commit
    /// written before any revision names these packs syncs the log they
    /// are in. A push used to wait for a sync per pack.
    pub fn add_packs<'a>(
        &self,
        collection: CollectionId,
        packs: impl IntoIterator<Item = (ObjectId, u64, &'a [keyhold_core::pack::PackEntry])>,
    ) -> Result<()> {
        self.write(Durability::Deferred, |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO pack_index (collection_id, pack_id, size, entries) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )?;
            for (pack, size, entries) in packs {
                let mut encoded = Vec::with_capacity(entries.len() * ENTRY_LEN);
                for e in entries {
                    encoded.push(e.kind.byte());
                    encoded.extend_from_slice(e.id.as_bytes());
                    encoded.extend_from_slice(&e.offset.to_be_bytes());
                    encoded.extend_from_slice(&e.len.to_be_bytes());
                }
                insert.execute(params![collection.as_bytes().as_slice(), pack.as_bytes().as_slice(), i64_of(size), encoded])?;
            }
            Ok(())
        })
    }

    /// The whole blob index of a collection.
    pub fn blob_index(&self, collection: CollectionId) -> Result<HashMap<BlobId, BlobLocation>> {
        let db = self.db();
        let mut statement = db.prepare_cached("SELECT pack_id, entries FROM pack_index WHERE collection_id = ?")?;
        let mut rows = statement.query([collection.as_bytes().as_slice()])?;
        let mut packs = Vec::new();
        while let Some(r) = rows.next()? {
            packs.push((ObjectId(arr(r.get(0)?)?), r.get::<_, Vec<u8>>(1)?));
        }
        // Sized once: grown pack by pack, the map rehashed every entry
        // several times (a tenth of an unchanged sync of 20,000 files).
        let mut out = HashMap::with_capacity(packs.iter().map(|(_, entries)| entries.len() / ENTRY_LEN).sum());
        for (pack, entries) in packs {
            let decoded = decode_pack_entries(pack, &entries).ok_or_else(|| {
                ClientError::Usage("local state database holds a malformed pack index; delete it to rebuild".into())
            })?;
            out.extend(decoded);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_core::pack::PackEntry;
    use std::borrow::Cow;

    #[test]
    fn pack_indexes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (state, rebuilt) = State::open(&dir.path().join("state.sqlite3")).unwrap();
        assert!(!rebuilt);
        let collection = CollectionId([7; 16]);
        let entries = [
            PackEntry { kind: ObjectType::Chunk, id: BlobId([1; 32]), offset: 59, len: 4096 },
            PackEntry { kind: ObjectType::Manifest, id: BlobId([2; 32]), offset: 4155, len: 300 },
        ];
        state.add_packs(collection, [(ObjectId([9; 32]), 8000, entries.as_slice())]).unwrap();
        let index = state.blob_index(collection).unwrap();
        assert_eq!(index.len(), 2);
        let manifest = index.get(&BlobId([2; 32])).unwrap();
        assert_eq!(
            (manifest.kind, manifest.pack, manifest.offset, manifest.len),
            (ObjectType::Manifest, ObjectId([9; 32]), 4155, 300)
        );
        assert_eq!(state.known_packs(collection).unwrap(), HashSet::from([ObjectId([9; 32])]));
        assert!(state.blob_index(CollectionId([8; 16])).unwrap().is_empty());
    }

    /// A state database of an older schema, made by `schema` and `fill`.
    fn old_database(schema: &str, fill: impl FnOnce(&Connection)) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite3");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(schema).unwrap();
        fill(&old);
        (dir, path)
    }

    #[test]
    fn upgrading_from_rows_per_blob_keeps_the_verified_heads() {
        let (_dir, path) = old_database(
            "CREATE TABLE heads (collection_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL);
             CREATE TABLE blobs (collection_id BLOB NOT NULL, blob_id BLOB NOT NULL, kind INTEGER NOT NULL,
                 pack_id BLOB NOT NULL, offset INTEGER NOT NULL, len INTEGER NOT NULL);
             CREATE TABLE packs (collection_id BLOB NOT NULL, pack_id BLOB NOT NULL, size INTEGER NOT NULL);
             INSERT INTO packs VALUES (x'07070707070707070707070707070707', x'00', 1);",
            |old| {
                old.execute("INSERT INTO heads VALUES (?, 5, ?)", params![[7u8; 16].as_slice(), [3u8; 32].as_slice()]).unwrap();
            },
        );
        let (state, rebuilt) = State::open(&path).unwrap();
        assert!(!rebuilt, "an upgrade is not a rebuild");
        assert_eq!(state.verified_head(CollectionId([7; 16])).unwrap(), Some(Head { seq: 5, id: ObjectId([3; 32]) }));
        // The old per-blob cache is gone: its packs are indexed again on demand.
        assert!(state.known_packs(CollectionId([7; 16])).unwrap().is_empty());
    }

    fn entry(size: u64, stat: bool) -> BaseEntry {
        BaseEntry {
            node: RemoteNode {
                is_dir: false,
                size,
                mtime_ns: -5,
                mode: 0o644,
                target: BlobRef { epoch: 3, id: BlobId([4; 32]) },
            },
            stat: stat.then_some(Stat { size, mtime_ns: 7, ino: 8, ctime_ns: -9 }),
        }
    }

    #[test]
    fn a_pending_commit_round_trips_as_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = State::open(&dir.path().join("state.sqlite3")).unwrap();
        let (new, changed) = (entry(3, false), entry(4, true));
        let changes = [("changed", Some(Cow::Borrowed(&changed))), ("gone", None), ("new/ünï", Some(Cow::Borrowed(&new)))];
        let head = Head { seq: 9, id: ObjectId([5; 32]) };
        state.save_pending("/root", head, &changes).unwrap();
        let (got_head, mut changes) = state.pending("/root").unwrap().unwrap();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got_head, head);
        assert_eq!(
            changes,
            vec![
                ("changed".to_owned(), Some(entry(4, true))),
                ("gone".to_owned(), None),
                ("new/ünï".to_owned(), Some(entry(3, false))),
            ]
        );
        assert!(state.pending("/other").unwrap().is_none());
        state.clear_pending("/root").unwrap();
        assert!(state.pending("/root").unwrap().is_none());
    }

    #[test]
    fn a_malformed_pending_commit_is_an_error_not_a_panic() {
        let encoded = encode_changes([("p", Some(&entry(1, true)))].into_iter());
        for cut in 0..encoded.len() {
            let decoded = decode_changes(encoded.get(..cut).unwrap());
            assert!(cut == 0 || decoded.is_none(), "a pending commit cut at {cut} bytes was accepted");
        }
        let mut bad_flag = encoded.clone();
        if let Some(b) = bad_flag.get_mut(5) {
            *b = 7;
        }
        assert!(decode_changes(&bad_flag).is_none());
    }

    #[test]
    fn a_base_round_trips_and_a_new_head_alone_keeps_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = State::open(&dir.path().join("state.sqlite3")).unwrap();
        let collection = CollectionId([7; 16]);
        assert_eq!(state.base("/root").unwrap(), (None, BTreeMap::new()));
        let first = BTreeMap::from([("a/ünï".to_owned(), entry(1, true)), ("b".to_owned(), entry(2, false))]);
        let head = Head { seq: 3, id: ObjectId([5; 32]) };
        state.save_base("/root", collection, Some(head), Some(&first), Durability::Now).unwrap();
        assert_eq!(state.base("/root").unwrap(), (Some(head), first.clone()));
        assert_eq!(state.root_collection("/root").unwrap(), Some(collection));
        // A new head over the same tree keeps the tree.
        let next = Head { seq: 4, id: ObjectId([6; 32]) };
        state.save_base("/root", collection, Some(next), None, Durability::Deferred).unwrap();
        assert_eq!(state.base("/root").unwrap(), (Some(next), first.clone()));
        let second = BTreeMap::from([("b".to_owned(), entry(9, true))]);
        state.save_base("/root", collection, None, Some(&second), Durability::Now).unwrap();
        assert_eq!(state.base("/root").unwrap(), (None, second));
        assert_eq!(state.base("/other").unwrap(), (None, BTreeMap::new()));
    }

    #[test]
    fn a_malformed_base_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = State::open(&dir.path().join("state.sqlite3")).unwrap();
        // A removal has no place in a base.
        let removal = encode_changes([("p", None)].into_iter());
        let truncated = encode_base(&BTreeMap::from([("p".to_owned(), entry(1, true))]));
        for bad in [removal, truncated.get(..truncated.len() - 1).unwrap().to_vec()] {
            state.db().execute("INSERT OR REPLACE INTO base_tree (root, entries) VALUES ('/root', ?)", [bad]).unwrap();
            assert!(matches!(state.base("/root"), Err(ClientError::Usage(_))));
        }
    }

    #[test]
    fn upgrading_from_a_row_per_base_path_keeps_every_base_and_head() {
        let (_dir, path) = old_database(
            "CREATE TABLE roots (root TEXT PRIMARY KEY, collection_id BLOB NOT NULL, head_seq INTEGER, head_id BLOB);
             CREATE TABLE base (
                 root TEXT NOT NULL, path TEXT NOT NULL, is_dir INTEGER NOT NULL,
                 size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL,
                 target_epoch INTEGER NOT NULL, target_id BLOB NOT NULL,
                 st_size INTEGER, st_mtime_ns INTEGER, st_ino INTEGER, st_ctime_ns INTEGER,
                 PRIMARY KEY (root, path));
             PRAGMA user_version = 2;",
            |old| {
                let root = "INSERT INTO roots VALUES (?, ?, ?, ?)";
                old.execute(root, params!["/one", [7u8; 16].as_slice(), 4, [5u8; 32].as_slice()]).unwrap();
                old.execute(root, params!["/two", [8u8; 16].as_slice(), None::<i64>, None::<Vec<u8>>]).unwrap();
                let row = "INSERT INTO base VALUES (?, ?, 0, ?, -5, 420, 3, ?, ?, ?, ?, ?)";
                let id = [4u8; 32];
                old.execute(row, params!["/one", "b", 1, id.as_slice(), 1, 7, 8, -9]).unwrap();
                old.execute(row, params!["/one", "a/ünï", 2, id.as_slice(), None::<i64>, None::<i64>, None::<i64>, None::<i64>])
                    .unwrap();
                old.execute(row, params!["/two", "c", 3, id.as_slice(), 3, 7, 8, -9]).unwrap();
            },
        );
        let (state, rebuilt) = State::open(&path).unwrap();
        assert!(!rebuilt, "an upgrade is not a rebuild");
        let one = BTreeMap::from([("a/ünï".to_owned(), entry(2, false)), ("b".to_owned(), entry(1, true))]);
        assert_eq!(state.base("/one").unwrap(), (Some(Head { seq: 4, id: ObjectId([5; 32]) }), one));
        assert_eq!(state.base("/two").unwrap(), (None, BTreeMap::from([("c".to_owned(), entry(3, true))])));
        let has_old: bool =
            state.db().query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'base')", [], |r| r.get(0)).unwrap();
        assert!(!has_old, "the row-per-path table is dropped");
    }

    #[test]
    fn upgrading_from_a_row_per_pending_path_keeps_the_pending_commit() {
        let (_dir, path) = old_database(
            "CREATE TABLE pending (root TEXT PRIMARY KEY, seq INTEGER NOT NULL, id BLOB NOT NULL);
             CREATE TABLE pending_base (
                 root TEXT NOT NULL, path TEXT NOT NULL, present INTEGER NOT NULL, is_dir INTEGER NOT NULL,
                 size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL,
                 target_epoch INTEGER NOT NULL, target_id BLOB NOT NULL,
                 st_size INTEGER, st_mtime_ns INTEGER, st_ino INTEGER, st_ctime_ns INTEGER,
                 PRIMARY KEY (root, path));
             PRAGMA user_version = 1;",
            |old| {
                old.execute("INSERT INTO pending VALUES ('/root', 9, ?)", [[5u8; 32].as_slice()]).unwrap();
                let row = "INSERT INTO pending_base VALUES ('/root', ?, ?, 0, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)";
                old.execute(row, params!["kept", 1, 3, -5, 420, 3, [4u8; 32].as_slice()]).unwrap();
                old.execute(row, params!["gone", 0, 0, 0, 0, 0, [0u8; 32].as_slice()]).unwrap();
            },
        );
        let (state, rebuilt) = State::open(&path).unwrap();
        assert!(!rebuilt, "an upgrade is not a rebuild");
        let (head, mut changes) = state.pending("/root").unwrap().unwrap();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(head, Head { seq: 9, id: ObjectId([5; 32]) });
        assert_eq!(changes, vec![("gone".to_owned(), None), ("kept".to_owned(), Some(entry(3, false)))]);
    }
}
