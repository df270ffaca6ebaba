//! The key directory's SQL storage (`DirectoryStore`): akd's own storage
//! conformance suite, then a directory published, proven and audited over
//! it, on SQLite and on PostgreSQL alike.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::errors::StorageError;
use akd::storage::types::{DbRecord, ValueState, ValueStateKey, ValueStateRetrievalFlag};
use akd::storage::{Database, DbSetState, StorageManager};
use akd::tree_node::{NodeKey, TreeNode, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, AzksValue, Directory, EpochHash, HistoryParams, HistoryVerificationParams, NodeLabel};
use keyhold_server::directory_store::DirectoryStore;
use keyhold_server::store::MetaStore;
use tempfile::TempDir;

#[path = "support/postgres.rs"]
mod postgres_cluster;

type Config = akd::ExperimentalConfiguration<akd::ExampleLabel>;
type Dir = Directory<Config, DirectoryStore, HardCodedAkdVRF>;

/// A fresh database of the engine: its URL (and the folder holding it).
async fn database(engine: &str) -> (String, Option<TempDir>) {
    match engine {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("metadata.sqlite3").display());
            (url, Some(dir))
        }
        _ => (tokio::task::spawn_blocking(postgres_cluster::database).await.unwrap(), None),
    }
}

async fn store(url: &str) -> DirectoryStore {
    DirectoryStore::new(&MetaStore::connect(url).await.unwrap())
}

/// Raw SQL on the store's database (for tests that corrupt or break it).
async fn raw(url: &str, sql: &'static str) {
    MetaStore::connect(url).await.unwrap(); // installs the drivers, migrates
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Defines `sqlite::<name>` and `postgres::<name>` for each test body.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("sqlite").await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("postgres").await
                }
            )*
        }
    };
}

on_both_engines!(
    akd_storage_conformance_suite,
    large_batches_are_chunked_deduplicated_and_read_back,
    a_failed_batch_writes_nothing,
    malformed_rows_are_refused_not_panicked_on,
    a_directory_publishes_proves_audits_and_reopens,
);

async fn akd_storage_conformance_suite(engine: &str) {
    let (url, _dir) = database(engine).await;
    akd::storage::tests::run_test_cases_for_storage_impl(store(&url).await).await;
}

fn node_label(i: u32, len: u32) -> NodeLabel {
    let mut val = [0u8; 32];
    val[..4].copy_from_slice(&i.to_be_bytes());
    NodeLabel::new(val, len)
}

fn leaf(i: u32, epoch: u64) -> TreeNodeWithPreviousValue {
    let label = node_label(i, 256);
    TreeNodeWithPreviousValue {
        label,
        latest_node: TreeNode {
            label,
            last_epoch: epoch,
            min_descendant_epoch: epoch,
            parent: node_label(0, 0),
            node_type: TreeNodeType::Leaf,
            left_child: None,
            right_child: None,
            hash: AzksValue(*blake3::hash(&i.to_be_bytes()).as_bytes()),
        },
        previous_node: None,
    }
}

fn value_state(i: u32, epoch: u64, version: u64) -> ValueState {
    let username = AkdLabel(i.to_be_bytes().to_vec());
    DbRecord::build_user_state(
        username.0,
        vec![u8::try_from(epoch % 256).unwrap(); 32],
        version,
        256,
        node_label(i, 256).label_val,
        epoch,
    )
}

async fn large_batches_are_chunked_deduplicated_and_read_back(engine: &str) {
    let (url, _dir) = database(engine).await;
    let db = store(&url).await;
    const N: u32 = 2_500;
    // Every record twice, the second one winning; then the same batch again
    // (all updates).
    let mut records = Vec::new();
    for i in 0..N {
        records.push(DbRecord::TreeNode(leaf(i, 1)));
        records.push(DbRecord::ValueState(value_state(i, 1, 7)));
    }
    for i in 0..N {
        let mut node = leaf(i, 2);
        node.previous_node = Some(leaf(i, 1).latest_node);
        records.push(DbRecord::TreeNode(node));
        records.push(DbRecord::ValueState(value_state(i, 1, 1)));
        records.push(DbRecord::ValueState(value_state(i, 2, 2)));
    }
    records.push(DbRecord::Azks(DbRecord::build_azks(1, 1)));
    records.push(DbRecord::Azks(DbRecord::build_azks(2, u64::from(N))));
    db.batch_set(records.clone(), DbSetState::TransactionCommit).await.unwrap();
    db.batch_set(records, DbSetState::General).await.unwrap();

    let keys: Vec<NodeKey> = (0..N + 10).map(|i| NodeKey(node_label(i, 256))).collect();
    let mut got = db.batch_get::<TreeNodeWithPreviousValue>(&keys).await.unwrap();
    assert_eq!(got.len(), usize::try_from(N).unwrap(), "missing keys are skipped");
    got.sort();
    for (i, record) in (0..N).zip(got) {
        let DbRecord::TreeNode(node) = record else { panic!("not a node") };
        assert_eq!(node.label, node_label(i, 256));
        assert_eq!(node.latest_node, leaf(i, 2).latest_node);
        assert_eq!(node.previous_node, Some(leaf(i, 1).latest_node));
    }

    let keys: Vec<ValueStateKey> = (0..N).map(|i| ValueStateKey(i.to_be_bytes().to_vec(), 1)).collect();
    let got = db.batch_get::<ValueState>(&keys).await.unwrap();
    assert_eq!(got.len(), usize::try_from(N).unwrap());
    assert!(got.iter().all(|r| matches!(r, DbRecord::ValueState(s) if s.version == 1 && s.epoch == 1)));

    let labels: Vec<AkdLabel> = (0..N + 10).map(|i| AkdLabel(i.to_be_bytes().to_vec())).collect();
    for (flag, version) in [
        (ValueStateRetrievalFlag::MaxEpoch, 2),
        (ValueStateRetrievalFlag::MinEpoch, 1),
        (ValueStateRetrievalFlag::LeqEpoch(1), 1),
        (ValueStateRetrievalFlag::LeqEpoch(u64::MAX), 2),
        (ValueStateRetrievalFlag::SpecificEpoch(2), 2),
        (ValueStateRetrievalFlag::SpecificVersion(1), 1),
    ] {
        let versions = db.get_user_state_versions(&labels, flag).await.unwrap();
        assert_eq!(versions.len(), usize::try_from(N).unwrap(), "{flag:?}");
        assert!(
            versions.values().all(|(v, value)| *v == version && value.0 == vec![u8::try_from(version).unwrap(); 32]),
            "{flag:?}"
        );
    }
    for flag in [
        ValueStateRetrievalFlag::LeqEpoch(0),
        ValueStateRetrievalFlag::SpecificEpoch(3),
        ValueStateRetrievalFlag::SpecificEpoch(u64::MAX),
        ValueStateRetrievalFlag::SpecificVersion(7),
    ] {
        assert!(db.get_user_state_versions(&labels, flag).await.unwrap().is_empty(), "{flag:?}");
        assert!(matches!(db.get_user_state(&labels[0], flag).await, Err(StorageError::NotFound(_))), "{flag:?}");
    }
    let DbRecord::Azks(azks) = db.get::<akd::Azks>(&akd::append_only_zks::DEFAULT_AZKS_KEY).await.unwrap() else { panic!() };
    assert_eq!((azks.latest_epoch, azks.num_nodes), (2, u64::from(N)));
}

async fn a_failed_batch_writes_nothing(engine: &str) {
    let (url, _dir) = database(engine).await;
    let db = store(&url).await;
    // Refused before anything is written: a number too large to store.
    let mut records: Vec<DbRecord> = (0..1500).map(|i| DbRecord::TreeNode(leaf(i, 1))).collect();
    records.push(DbRecord::ValueState(value_state(1, u64::MAX, 1)));
    assert!(matches!(db.batch_set(records.clone(), DbSetState::General).await, Err(StorageError::Other(_))));
    assert!(db.batch_get::<TreeNodeWithPreviousValue>(&[NodeKey(node_label(3, 256))]).await.unwrap().is_empty());

    // Refused by the database at the last statement (the aZKS record):
    // the nodes and values written before it in the transaction are gone.
    raw(
        &url,
        if engine == "sqlite" {
            "CREATE TRIGGER no_azks BEFORE INSERT ON directory_azks BEGIN SELECT RAISE(ABORT, 'refused'); END;"
        } else {
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER no_azks BEFORE INSERT ON directory_azks FOR EACH ROW EXECUTE FUNCTION refuse();"
        },
    )
    .await;
    records.pop();
    records.push(DbRecord::ValueState(value_state(1, 1, 1)));
    records.push(DbRecord::Azks(DbRecord::build_azks(1, 1500)));
    assert!(db.batch_set(records, DbSetState::TransactionCommit).await.is_err());
    assert!(db.batch_get::<TreeNodeWithPreviousValue>(&[NodeKey(node_label(3, 256))]).await.unwrap().is_empty());
    assert!(matches!(db.get_user_data(&AkdLabel(1u32.to_be_bytes().to_vec())).await, Err(StorageError::NotFound(_))));
    assert!(matches!(db.get::<akd::Azks>(&1).await, Err(StorageError::NotFound(_))));
}

async fn malformed_rows_are_refused_not_panicked_on(engine: &str) {
    let (url, _dir) = database(engine).await;
    let db = store(&url).await;
    db.set(DbRecord::TreeNode(leaf(1, 1))).await.unwrap();
    db.set(DbRecord::ValueState(value_state(1, 1, 1))).await.unwrap();
    // A node cut short, a node label cut short, a negative epoch.
    raw(
        &url,
        "UPDATE directory_nodes SET node = substr(node, 1, 20); \
         UPDATE directory_values SET node_label = substr(node_label, 1, 35); \
         INSERT INTO directory_azks (id, latest_epoch, num_nodes) VALUES (1, -1, 0);",
    )
    .await;
    let key = NodeKey(node_label(1, 256));
    assert!(matches!(db.get::<TreeNodeWithPreviousValue>(&key).await, Err(StorageError::Other(_))));
    assert!(matches!(db.batch_get::<TreeNodeWithPreviousValue>(&[key]).await, Err(StorageError::Other(_))));
    let label = AkdLabel(1u32.to_be_bytes().to_vec());
    assert!(matches!(db.get_user_data(&label).await, Err(StorageError::Other(_))));
    assert!(matches!(db.get_user_state(&label, ValueStateRetrievalFlag::MaxEpoch).await, Err(StorageError::Other(_))));
    assert!(matches!(db.get::<akd::Azks>(&1).await, Err(StorageError::Other(_))));
}

/// A 16-byte id, as account and collection ids are.
fn id(i: u8) -> AkdLabel {
    AkdLabel(blake3::hash(&[b'l', i]).as_bytes()[..16].to_vec())
}

/// A 32-byte head hash for a label at an epoch.
fn head(i: u8, epoch: u64) -> AkdValue {
    let mut input = vec![b'v', i];
    input.extend_from_slice(&epoch.to_be_bytes());
    AkdValue(blake3::hash(&input).as_bytes().to_vec())
}

async fn open(url: &str) -> Dir {
    let storage = StorageManager::new_no_cache(store(url).await);
    Directory::new(storage, HardCodedAkdVRF {}, AzksParallelismConfig::default()).await.unwrap()
}

async fn a_directory_publishes_proves_audits_and_reopens(engine: &str) {
    let (url, _dir) = database(engine).await;
    let directory = open(&url).await;
    // Epoch 1: 50 labels. Epoch 2: 25 of them change. Epoch 3: 30 change,
    // 5 are new.
    let epochs: [Vec<u8>; 3] = [(0..50).collect(), (0..25).collect(), (10..40).chain(50..55).collect()];
    let mut hashes = Vec::new();
    for (epoch, labels) in (1u64..).zip(&epochs) {
        let updates = labels.iter().map(|&i| (id(i), head(i, epoch))).collect();
        let EpochHash(published, hash) = directory.publish(updates).await.unwrap();
        assert_eq!(published, epoch);
        hashes.push(hash);
    }
    let vrf_key = directory.get_public_key().await.unwrap();

    // Label 12 changed in every epoch: version 3, with a history of three.
    let (proof, EpochHash(epoch, hash)) = directory.lookup(id(12)).await.unwrap();
    assert_eq!((epoch, hash), (3, hashes[2]));
    let found = akd::client::lookup_verify::<Config>(vrf_key.as_bytes(), hash, epoch, id(12), proof).unwrap();
    assert_eq!((found.epoch, found.version, found.value), (3, 3, head(12, 3)));

    let (proof, EpochHash(epoch, hash)) = directory.key_history(&id(12), HistoryParams::default()).await.unwrap();
    let history = akd::client::key_history_verify::<Config>(
        vrf_key.as_bytes(),
        hash,
        epoch,
        id(12),
        proof,
        HistoryVerificationParams::default(),
    )
    .unwrap();
    let seen: Vec<_> = history.iter().map(|r| (r.epoch, r.version, r.value.clone())).collect();
    assert_eq!(seen, vec![(3, 3, head(12, 3)), (2, 2, head(12, 2)), (1, 1, head(12, 1))]);

    // A label new in epoch 3, and one unchanged since epoch 1.
    for (label, version, since) in [(52, 1, 3), (45, 1, 1)] {
        let (proof, EpochHash(epoch, hash)) = directory.lookup(id(label)).await.unwrap();
        let found = akd::client::lookup_verify::<Config>(vrf_key.as_bytes(), hash, epoch, id(label), proof).unwrap();
        assert_eq!((found.version, found.value), (version, head(label, since)));
    }

    let audit = directory.audit(1, 3).await.unwrap();
    akd::auditor::audit_verify::<Config>(hashes.clone(), audit).await.unwrap();
    let audit = directory.audit(1, 3).await.unwrap();
    let mut wrong = hashes.clone();
    wrong[1][0] ^= 1;
    assert!(akd::auditor::audit_verify::<Config>(wrong, audit).await.is_err());
    drop(directory);

    // A new directory over the same database: the same epoch and root, and
    // it proves what the first one published.
    let reopened = open(&url).await;
    let EpochHash(epoch, hash) = reopened.get_epoch_hash().await.unwrap();
    assert_eq!((epoch, hash), (3, hashes[2]));
    let (proof, EpochHash(epoch, hash)) = reopened.lookup(id(7)).await.unwrap();
    let found = akd::client::lookup_verify::<Config>(vrf_key.as_bytes(), hash, epoch, id(7), proof).unwrap();
    assert_eq!((found.version, found.value), (2, head(7, 2)));
    let EpochHash(epoch, _) = reopened.publish(vec![(id(7), head(7, 4))]).await.unwrap();
    assert_eq!(epoch, 4);
}
