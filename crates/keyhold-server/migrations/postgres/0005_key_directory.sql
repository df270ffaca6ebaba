-- Keyhold server schema (PostgreSQL), version 5: the verifiable key
-- directory (key transparency, akd). Mirrors ../sqlite/ one for one.
-- crates/keyhold-server/src/directory_store.rs reads and writes these
-- tables and documents the encoding of directory_nodes.node;
-- docs/server-data.md documents every column.
-- Append-only: never edit a migration that has shipped.

-- The directory's one aZKS record: the latest published epoch and the
-- tree's node count. `id` is akd's aZKS storage key (always 1).
CREATE TABLE directory_azks (
    id           BIGINT PRIMARY KEY,
    latest_epoch BIGINT NOT NULL,
    num_nodes    BIGINT NOT NULL
);

-- The tree's nodes, by node label (4-byte big-endian bit length, then the
-- 32 label bytes); `node` is the node's latest and previous state.
CREATE TABLE directory_nodes (
    label BYTEA PRIMARY KEY,
    node  BYTEA NOT NULL
);

-- Every value each directory label had, by (label, epoch it was
-- published in). The primary key serves the per-label queries: all of a
-- label's rows are found through it, in epoch order.
CREATE TABLE directory_values (
    akd_label  BYTEA NOT NULL,
    epoch      BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    node_label BYTEA NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (akd_label, epoch)
);
