-- Keyhold server schema, version 5: the verifiable key directory (key
-- transparency, akd). crates/keyhold-server/src/directory_store.rs reads
-- and writes these tables and documents the encoding of
-- directory_nodes.node; docs/server-data.md documents every column.
-- Append-only: never edit a migration that has shipped.

-- The directory's one aZKS record: the latest published epoch and the
-- tree's node count. `id` is akd's aZKS storage key (always 1).
CREATE TABLE directory_azks (
    id           INTEGER PRIMARY KEY,
    latest_epoch INTEGER NOT NULL,
    num_nodes    INTEGER NOT NULL
);

-- The tree's nodes, by node label (4-byte big-endian bit length, then the
-- 32 label bytes); `node` is the node's latest and previous state.
CREATE TABLE directory_nodes (
    label BLOB PRIMARY KEY,
    node  BLOB NOT NULL
) WITHOUT ROWID;

-- Every value each directory label had, by (label, epoch it was
-- published in). The primary key serves the per-label queries: all of a
-- label's rows are adjacent, in epoch order.
CREATE TABLE directory_values (
    akd_label  BLOB NOT NULL,
    epoch      INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    node_label BLOB NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (akd_label, epoch)
) WITHOUT ROWID;
