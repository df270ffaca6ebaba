//! The verifiable key directory's storage: akd's [`Database`] over the
//! metadata database (SQLite or PostgreSQL, through the same `Any` pool as
//! [`MetaStore`]), in three tables (migration `0005_key_directory.sql`):
//!
//! - `directory_azks (id, latest_epoch, num_nodes)`: akd's one aZKS record,
//!   under its storage key (always 1).
//! - `directory_nodes (label, node)`: the tree's nodes. `label` is the node
//!   label as 36 bytes: its bit length (`u32`, big-endian), then its 32
//!   label bytes. `node` is the node's state in the encoding below.
//! - `directory_values (akd_label, epoch, version, node_label, value)`:
//!   every value state, under (the directory label's bytes, the epoch it was
//!   published in); `node_label` is the value's leaf label (36 bytes, as
//!   above).
//!
//! Integers are stored as `BIGINT`s: a `u64` above `i64::MAX` is refused on
//! the way in (`try_from`) and a negative one on the way out.
//!
//! ## Node encoding (format 1)
//!
//! ```text
//! node      = format:u8 (= 1) state has_previous:u8 (0 or 1) [state]
//! state     = last_epoch:u64 min_descendant_epoch:u64 parent:label
//!             node_type:u8 (1 leaf, 2 root, 3 interior)
//!             children:u8 (bit 0: left present, bit 1: right present)
//!             [left:label] [right:label] hash:[u8; 32]
//! label     = bit_length:u32 bytes:[u8; 32]
//! ```
//!
//! Integers are big-endian. The first state is the node's latest, the
//! optional second its previous one (akd reads the previous state when the
//! latest one belongs to an epoch not yet published). A node's own label is
//! the row's key and is not repeated: both states carry it, as akd's
//! builder ([`DbRecord::build_tree_node_with_previous_value`]) requires. A
//! node whose bytes do not parse exactly (unknown format, node type or
//! child bits, short, or trailing bytes) or a label longer than 256 bits is
//! refused with [`StorageError::Other`]: a corrupted database, never a
//! panic.
//!
//! ## Writes
//!
//! [`Database::batch_set`] writes a whole batch in one SQL transaction
//! (akd's commit of an epoch: nodes, values, then the aZKS record that makes
//! the epoch current, so readers see all of an epoch or none of it), as
//! multi-row `INSERT … ON CONFLICT … DO UPDATE` statements of at most
//! [`ROWS_PER_STATEMENT`] rows (well under SQLite's 32,766 and PostgreSQL's
//! 65,535 bound parameters). A record given twice in a batch is written
//! once, the last one given winning (as akd's in-memory store does). Reads
//! by many keys use `IN` lists of the same size.
//!
//! akd's directory assumes one writer: of several server processes on one
//! PostgreSQL database, one publishes at a time.
//!
//! ## Reads
//!
//! akd preloads the tree nodes a publish, a proof or an audit visits with
//! [`Database::batch_get`] (one query a tree level) only when its
//! `StorageManager` has a cache (`StorageManager::new`); over
//! `StorageManager::new_no_cache` it reads each node with its own
//! [`Database::get`], about three per updated label (measured on SQLite:
//! 32,000 single reads, 5.6 s, for a publish of 10,000 updated labels,
//! against 34 batch reads, 0.4 s, with a cache).

use std::collections::{BTreeMap, HashMap};

use akd::errors::StorageError;
use akd::storage::types::{DbRecord, KeyData, StorageType, ValueState, ValueStateRetrievalFlag};
use akd::storage::{Database, DbSetState, Storable};
use akd::tree_node::{TreeNode, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, Azks, NodeLabel};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::store::MetaStore;

/// Rows per multi-row statement, and keys per `IN` list: at most five bound
/// parameters a row, so at most 2,500 a statement. Larger statements are
/// slower on SQLite (it looks `$N` parameters up by name, each against all
/// before it), and barely faster on PostgreSQL.
pub const ROWS_PER_STATEMENT: usize = 500;

/// The format byte that starts every stored node.
const NODE_FORMAT: u8 = 1;
/// A stored node label: bit length and label bytes.
const LABEL_BYTES: usize = 36;
/// The longest label akd builds (a leaf's).
const MAX_LABEL_BITS: u32 = 256;

/// akd's storage over the metadata database. Clones share the pool.
#[derive(Clone, Debug)]
pub struct DirectoryStore {
    pool: AnyPool,
}

impl DirectoryStore {
    /// The key directory in `meta`'s database (migrated with it).
    pub fn new(meta: &MetaStore) -> Self {
        DirectoryStore { pool: meta.pool().clone() }
    }
}

// ---------------------------------------------------------------------------
// Errors and integers.
// ---------------------------------------------------------------------------

fn db_error(e: sqlx::Error) -> StorageError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StorageError::Connection(format!("key directory store: {e}"))
        }
        e => StorageError::Other(format!("key directory store: {e}")),
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Other(format!("key directory store holds an invalid {what}"))
}

/// A `u64` to store: refused above `i64::MAX`.
fn stored(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Other(format!("key directory store: {what} {v} is too large to store")))
}

/// A stored integer back: refused when negative.
fn loaded(v: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn column<'r, T>(row: &'r AnyRow, index: usize, what: &str) -> Result<T, StorageError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(index).map_err(|_| corrupt(what))
}

// ---------------------------------------------------------------------------
// The encoding.
// ---------------------------------------------------------------------------

fn put_label(out: &mut Vec<u8>, label: &NodeLabel) {
    out.extend_from_slice(&label.label_len.to_be_bytes());
    out.extend_from_slice(&label.label_val);
}

fn label_bytes(label: &NodeLabel) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL_BYTES);
    put_label(&mut out, label);
    out
}

fn node_type_code(t: TreeNodeType) -> u8 {
    match t {
        TreeNodeType::Leaf => 1,
        TreeNodeType::Root => 2,
        TreeNodeType::Interior => 3,
    }
}

fn put_state(out: &mut Vec<u8>, node: &TreeNode) {
    out.extend_from_slice(&node.last_epoch.to_be_bytes());
    out.extend_from_slice(&node.min_descendant_epoch.to_be_bytes());
    put_label(out, &node.parent);
    out.push(node_type_code(node.node_type));
    out.push(u8::from(node.left_child.is_some()) | (u8::from(node.right_child.is_some()) << 1));
    for child in [&node.left_child, &node.right_child].into_iter().flatten() {
        put_label(out, child);
    }
    out.extend_from_slice(&node.hash.0);
}

/// A node's stored bytes (format 1, see the module documentation).
fn encode_node(node: &TreeNodeWithPreviousValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 * (8 + 8 + LABEL_BYTES + 2 + 2 * LABEL_BYTES + 32));
    out.push(NODE_FORMAT);
    put_state(&mut out, &node.latest_node);
    match &node.previous_node {
        Some(previous) => {
            out.push(1);
            put_state(&mut out, previous);
        }
        None => out.push(0),
    }
    out
}

/// Reads stored bytes front to back; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| corrupt("tree node (too short)"))?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        self.take(N)?.try_into().map_err(|_| corrupt("tree node"))
    }

    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn label(&mut self) -> Result<NodeLabel, StorageError> {
        let len = u32::from_be_bytes(self.array()?);
        let val: [u8; 32] = self.array()?;
        if len > MAX_LABEL_BITS {
            return Err(corrupt("node label (too long)"));
        }
        Ok(NodeLabel::new(val, len))
    }
}

/// A stored node label (the key of `directory_nodes`, `node_label` of
/// `directory_values`).
fn decode_label(bytes: &[u8]) -> Result<NodeLabel, StorageError> {
    let mut reader = Reader(bytes);
    let label = reader.label()?;
    if !reader.0.is_empty() {
        return Err(corrupt("node label (trailing bytes)"));
    }
    Ok(label)
}

/// The fields of one stored node state.
struct State {
    last_epoch: u64,
    min_descendant_epoch: u64,
    parent: NodeLabel,
    node_type: u8,
    left: Option<NodeLabel>,
    right: Option<NodeLabel>,
    hash: [u8; 32],
}

fn read_state(reader: &mut Reader<'_>) -> Result<State, StorageError> {
    let last_epoch = reader.u64()?;
    let min_descendant_epoch = reader.u64()?;
    let parent = reader.label()?;
    let node_type = reader.u8()?;
    if !(1..=3).contains(&node_type) {
        return Err(corrupt("tree node (node type)"));
    }
    let children = reader.u8()?;
    if children & !0b11 != 0 {
        return Err(corrupt("tree node (child flags)"));
    }
    let left = if children & 1 != 0 { Some(reader.label()?) } else { None };
    let right = if children & 2 != 0 { Some(reader.label()?) } else { None };
    let hash = reader.array()?;
    Ok(State { last_epoch, min_descendant_epoch, parent, node_type, left, right, hash })
}

/// A node from its key and stored bytes, built by akd's builder.
fn decode_node(label: NodeLabel, bytes: &[u8]) -> Result<TreeNodeWithPreviousValue, StorageError> {
    let mut reader = Reader(bytes);
    if reader.u8()? != NODE_FORMAT {
        return Err(corrupt("tree node (format)"));
    }
    let latest = read_state(&mut reader)?;
    let previous = match reader.u8()? {
        0 => None,
        1 => Some(read_state(&mut reader)?),
        _ => return Err(corrupt("tree node (previous flag)")),
    };
    if !reader.0.is_empty() {
        return Err(corrupt("tree node (trailing bytes)"));
    }
    let p = previous.as_ref();
    Ok(DbRecord::build_tree_node_with_previous_value(
        label.label_val,
        label.label_len,
        latest.last_epoch,
        latest.min_descendant_epoch,
        latest.parent.label_val,
        latest.parent.label_len,
        latest.node_type,
        latest.left,
        latest.right,
        latest.hash,
        p.map(|s| s.last_epoch),
        p.map(|s| s.min_descendant_epoch),
        p.map(|s| s.parent.label_val),
        p.map(|s| s.parent.label_len),
        p.map(|s| s.node_type),
        p.and_then(|s| s.left),
        p.and_then(|s| s.right),
        p.map(|s| s.hash),
    ))
}

// ---------------------------------------------------------------------------
// Rows.
// ---------------------------------------------------------------------------

const VALUE_COLUMNS: &str = "akd_label, epoch, version, node_label, value";

fn value_state(row: &AnyRow) -> Result<ValueState, StorageError> {
    let username: Vec<u8> = column(row, 0, "value state label")?;
    let epoch = loaded(column(row, 1, "value state epoch")?, "value state epoch")?;
    let version = loaded(column(row, 2, "value state version")?, "value state version")?;
    let label = decode_label(&column::<Vec<u8>>(row, 3, "value state node label")?)?;
    let value: Vec<u8> = column(row, 4, "value state value")?;
    Ok(DbRecord::build_user_state(username, value, version, label.label_len, label.label_val, epoch))
}

fn azks(row: &AnyRow) -> Result<Azks, StorageError> {
    let latest_epoch = loaded(column(row, 0, "aZKS epoch")?, "aZKS epoch")?;
    let num_nodes = loaded(column(row, 1, "aZKS node count")?, "aZKS node count")?;
    Ok(DbRecord::build_azks(latest_epoch, num_nodes))
}

/// `$first, $first+1, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first.saturating_add(n)).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `($1, …, $k), ($k+1, …)` for `rows` rows of `per_row` parameters.
fn value_rows(rows: usize, per_row: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(r.saturating_mul(per_row).saturating_add(1), per_row)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key a storable's id names, in the table its type lives in.
enum Key {
    Azks(i64),
    Node(Vec<u8>),
    Value(Vec<u8>, i64),
}

/// Parses akd's full binary id of a key (its type byte, then the key).
fn key_of<St: Storable>(id: &St::StorageKey) -> Result<Key, StorageError> {
    let bin = St::get_full_binary_key_id(id);
    let bad = || StorageError::Other(format!("key directory store: malformed {:?} key", St::data_type()));
    let (&kind, rest) = bin.split_first().ok_or_else(bad)?;
    match St::data_type() {
        StorageType::Azks if kind == 1 => Ok(Key::Azks(i64::from(*rest.first().ok_or_else(bad)?))),
        StorageType::TreeNode if kind == 2 && rest.len() == LABEL_BYTES => Ok(Key::Node(rest.to_vec())),
        StorageType::ValueState if kind == 4 => {
            let (epoch, username) = rest.split_at_checked(8).ok_or_else(bad)?;
            let epoch = u64::from_be_bytes(epoch.try_into().map_err(|_| bad())?);
            Ok(Key::Value(username.to_vec(), stored(epoch, "epoch")?))
        }
        _ => Err(bad()),
    }
}

/// How to pick, of each label's rows, the one state a flag names: the row
/// whose epoch is `aggregate` over the label's rows that meet `condition`
/// (`$1` in it is `number`).
struct Pick {
    aggregate: &'static str,
    condition: &'static str,
    number: Option<i64>,
}

/// `None`: the flag names a number above `i64::MAX`, which no stored row
/// has.
fn pick(flag: ValueStateRetrievalFlag) -> Option<Pick> {
    let pick = |aggregate, condition, number| Pick { aggregate, condition, number };
    match flag {
        ValueStateRetrievalFlag::MaxEpoch => Some(pick("MAX", "", None)),
        ValueStateRetrievalFlag::MinEpoch => Some(pick("MIN", "", None)),
        // At most: every stored epoch is at most i64::MAX.
        ValueStateRetrievalFlag::LeqEpoch(e) => {
            Some(pick("MAX", " AND w.epoch <= $1", Some(i64::try_from(e).unwrap_or(i64::MAX))))
        }
        ValueStateRetrievalFlag::SpecificEpoch(e) => i64::try_from(e).ok().map(|e| pick("MAX", " AND w.epoch = $1", Some(e))),
        // The first state with that version, as akd's in-memory store.
        ValueStateRetrievalFlag::SpecificVersion(v) => i64::try_from(v).ok().map(|v| pick("MIN", " AND w.version = $1", Some(v))),
    }
}

impl DirectoryStore {
    /// The states `flag` names of each of `labels` that has one, with the
    /// columns `columns` (at most one state per label).
    async fn states_by_flag(
        &self,
        labels: &[AkdLabel],
        flag: ValueStateRetrievalFlag,
        columns: &str,
    ) -> Result<Vec<AnyRow>, StorageError> {
        let Some(Pick { aggregate, condition, number }) = pick(flag) else {
            return Ok(Vec::new());
        };
        let first = if number.is_some() { 2 } else { 1 };
        let mut rows = Vec::new();
        for chunk in labels.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT {columns} FROM directory_values v WHERE v.akd_label IN ({}) AND v.epoch = \
                 (SELECT {aggregate}(w.epoch) FROM directory_values w WHERE w.akd_label = v.akd_label{condition})",
                placeholders(first, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == ROWS_PER_STATEMENT || chunk.len() == 1);
            if let Some(n) = number {
                query = query.bind(n);
            }
            for label in chunk {
                query = query.bind(label.0.as_slice());
            }
            rows.extend(query.fetch_all(&self.pool).await.map_err(db_error)?);
        }
        Ok(rows)
    }
}

// ---------------------------------------------------------------------------
// akd's Database.
// ---------------------------------------------------------------------------

#[async_trait]
impl Database for DirectoryStore {
    async fn set(&self, record: DbRecord) -> Result<(), StorageError> {
        self.batch_set(vec![record], DbSetState::General).await
    }

    async fn batch_set(&self, records: Vec<DbRecord>, _state: DbSetState) -> Result<(), StorageError> {
        // Last one given wins; sorted keys write B-trees in order.
        let mut azks_record: Option<Azks> = None;
        let mut nodes: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut values: BTreeMap<(Vec<u8>, i64), (i64, Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for record in records {
            match record {
                DbRecord::Azks(azks) => azks_record = Some(azks),
                DbRecord::TreeNode(node) => {
                    nodes.insert(label_bytes(&node.label), encode_node(&node));
                }
                DbRecord::ValueState(state) => {
                    let key = (state.username.0, stored(state.epoch, "epoch")?);
                    values.insert(key, (stored(state.version, "version")?, label_bytes(&state.label), state.value.0));
                }
            }
        }
        if azks_record.is_none() && nodes.is_empty() && values.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db_error)?;

        let nodes: Vec<_> = nodes.into_iter().collect();
        for chunk in nodes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO directory_nodes (label, node) VALUES {} \
                 ON CONFLICT (label) DO UPDATE SET node = excluded.node",
                value_rows(chunk.len(), 2)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == ROWS_PER_STATEMENT || chunk.len() == 1);
            for (label, node) in chunk {
                query = query.bind(label.as_slice()).bind(node.as_slice());
            }
            query.execute(&mut *tx).await.map_err(db_error)?;
        }

        let values: Vec<_> = values.into_iter().collect();
        for chunk in values.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO directory_values ({VALUE_COLUMNS}) VALUES {} \
                 ON CONFLICT (akd_label, epoch) DO UPDATE SET \
                 version = excluded.version, node_label = excluded.node_label, value = excluded.value",
                value_rows(chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == ROWS_PER_STATEMENT || chunk.len() == 1);
            for ((username, epoch), (version, node_label, value)) in chunk {
                query = query
                    .bind(username.as_slice())
                    .bind(*epoch)
                    .bind(*version)
                    .bind(node_label.as_slice())
                    .bind(value.as_slice());
            }
            query.execute(&mut *tx).await.map_err(db_error)?;
        }

        // Last: the record that makes a new epoch current.
        if let Some(azks) = azks_record {
            sqlx::query(
                "INSERT INTO directory_azks (id, latest_epoch, num_nodes) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET latest_epoch = excluded.latest_epoch, num_nodes = excluded.num_nodes",
            )
            .bind(i64::from(azks.get_id()))
            .bind(stored(azks.latest_epoch, "epoch")?)
            .bind(stored(azks.num_nodes, "node count")?)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn get<St: Storable>(&self, id: &St::StorageKey) -> Result<DbRecord, StorageError> {
        let not_found = || StorageError::NotFound(format!("{:?} {id:?}", St::data_type()));
        match key_of::<St>(id)? {
            Key::Azks(key) => {
                let row = sqlx::query("SELECT latest_epoch, num_nodes FROM directory_azks WHERE id = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(not_found)?;
                Ok(DbRecord::Azks(azks(&row)?))
            }
            Key::Node(label) => {
                let row = sqlx::query("SELECT node FROM directory_nodes WHERE label = $1")
                    .bind(label.as_slice())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(not_found)?;
                let node: Vec<u8> = column(&row, 0, "tree node")?;
                Ok(DbRecord::TreeNode(decode_node(decode_label(&label)?, &node)?))
            }
            Key::Value(username, epoch) => {
                let row = sqlx::query(
                    "SELECT akd_label, epoch, version, node_label, value FROM directory_values WHERE akd_label = $1 AND epoch = $2",
                )
                .bind(username.as_slice())
                .bind(epoch)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
                .ok_or_else(not_found)?;
                Ok(DbRecord::ValueState(value_state(&row)?))
            }
        }
    }

    async fn batch_get<St: Storable>(&self, ids: &[St::StorageKey]) -> Result<Vec<DbRecord>, StorageError> {
        let mut azks_keys = Vec::new();
        let mut node_keys = Vec::new();
        let mut value_keys = Vec::new();
        for id in ids {
            match key_of::<St>(id)? {
                Key::Azks(key) => azks_keys.push(key),
                Key::Node(label) => node_keys.push(label),
                Key::Value(username, epoch) => value_keys.push((username, epoch)),
            }
        }
        node_keys.sort_unstable();
        node_keys.dedup();
        value_keys.sort_unstable();
        value_keys.dedup();
        azks_keys.sort_unstable();
        azks_keys.dedup();

        let mut records = Vec::with_capacity(ids.len());
        for chunk in node_keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!("SELECT label, node FROM directory_nodes WHERE label IN ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == ROWS_PER_STATEMENT || chunk.len() == 1);
            for label in chunk {
                query = query.bind(label.as_slice());
            }
            for row in query.fetch_all(&self.pool).await.map_err(db_error)? {
                let label = decode_label(&column::<Vec<u8>>(&row, 0, "tree node label")?)?;
                let node: Vec<u8> = column(&row, 1, "tree node")?;
                records.push(DbRecord::TreeNode(decode_node(label, &node)?));
            }
        }
        // Two parameters a key: half as many keys a statement.
        for chunk in value_keys.chunks(ROWS_PER_STATEMENT / 2) {
            let condition = (0..chunk.len())
                .map(|i| format!("(akd_label = ${} AND epoch = ${})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!("SELECT {VALUE_COLUMNS} FROM directory_values WHERE {condition}");
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(chunk.len() == ROWS_PER_STATEMENT / 2 || chunk.len() == 1);
            for (username, epoch) in chunk {
                query = query.bind(username.as_slice()).bind(*epoch);
            }
            for row in query.fetch_all(&self.pool).await.map_err(db_error)? {
                records.push(DbRecord::ValueState(value_state(&row)?));
            }
        }
        for key in azks_keys {
            let row = sqlx::query("SELECT latest_epoch, num_nodes FROM directory_azks WHERE id = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
            if let Some(row) = row {
                records.push(DbRecord::Azks(azks(&row)?));
            }
        }
        Ok(records)
    }

    async fn get_user_data(&self, username: &AkdLabel) -> Result<KeyData, StorageError> {
        let rows = sqlx::query(
            "SELECT akd_label, epoch, version, node_label, value FROM directory_values WHERE akd_label = $1 ORDER BY epoch",
        )
        .bind(username.0.as_slice())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            return Err(StorageError::NotFound(format!("ValueState {username:?}")));
        }
        let states = rows.iter().map(value_state).collect::<Result<Vec<_>, _>>()?;
        Ok(KeyData { states })
    }

    async fn get_user_state(&self, username: &AkdLabel, flag: ValueStateRetrievalFlag) -> Result<ValueState, StorageError> {
        let rows = self.states_by_flag(std::slice::from_ref(username), flag, VALUE_COLUMNS).await?;
        match rows.first() {
            Some(row) => value_state(row),
            None => Err(StorageError::NotFound(format!("ValueState {username:?}"))),
        }
    }

    async fn get_user_state_versions(
        &self,
        usernames: &[AkdLabel],
        flag: ValueStateRetrievalFlag,
    ) -> Result<HashMap<AkdLabel, (u64, AkdValue)>, StorageError> {
        let rows = self.states_by_flag(usernames, flag, "v.akd_label, v.version, v.value").await?;
        let mut map = HashMap::with_capacity(rows.len());
        for row in rows {
            let username: Vec<u8> = column(&row, 0, "value state label")?;
            let version = loaded(column(&row, 1, "value state version")?, "value state version")?;
            let value: Vec<u8> = column(&row, 2, "value state value")?;
            map.insert(AkdLabel(username), (version, AkdValue(value)));
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use akd::AzksValue;

    fn label(byte: u8, len: u32) -> NodeLabel {
        NodeLabel::new([byte; 32], len)
    }

    fn state(children: (bool, bool)) -> TreeNode {
        TreeNode {
            label: label(7, 256),
            last_epoch: 9,
            min_descendant_epoch: 3,
            parent: label(1, 12),
            node_type: TreeNodeType::Interior,
            left_child: children.0.then(|| label(2, 13)),
            right_child: children.1.then(|| label(3, 13)),
            hash: AzksValue([5; 32]),
        }
    }

    #[test]
    fn nodes_round_trip_with_and_without_children_and_previous_state() {
        for (left, right) in [(false, false), (true, false), (false, true), (true, true)] {
            for previous in [None, Some(state((right, left)))] {
                let node = TreeNodeWithPreviousValue {
                    label: label(7, 256),
                    latest_node: state((left, right)),
                    previous_node: previous,
                };
                let bytes = encode_node(&node);
                assert_eq!(decode_node(node.label, &bytes).unwrap(), node);
                // Every strict prefix and any trailing byte is refused.
                for cut in 0..bytes.len() {
                    assert!(decode_node(node.label, &bytes[..cut]).is_err(), "prefix {cut}");
                }
                let mut longer = bytes.clone();
                longer.push(0);
                assert!(decode_node(node.label, &longer).is_err());
            }
        }
    }

    #[test]
    fn malformed_nodes_are_refused() {
        let node = TreeNodeWithPreviousValue { label: label(7, 256), latest_node: state((true, true)), previous_node: None };
        let bytes = encode_node(&node);
        let at_type = 1 + 8 + 8 + LABEL_BYTES;
        for (at, byte) in [(0, 2), (at_type, 0), (at_type, 4), (at_type + 1, 4), (bytes.len() - 1, 2), (1 + 16, 0xff)] {
            let mut bad = bytes.clone();
            bad[at] = byte;
            assert!(matches!(decode_node(node.label, &bad), Err(StorageError::Other(_))), "byte {at} = {byte}");
        }
        assert!(decode_label(&[0; 35]).is_err());
        assert!(
            decode_label(&[
                0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ])
            .is_err()
        );
    }
}
