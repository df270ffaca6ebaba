-- Keyhold server schema, version 6: the key transparency log over the key
-- directory's epoch roots (docs/spec/transparency.md), in the default
-- region's database. Append-only: never edit a migration that has shipped.
-- docs/server-data.md documents every column (a test compares the two).

-- The log's entries (leaves): directory epoch roots and heartbeats.
CREATE TABLE kt_log (
    idx        INTEGER PRIMARY KEY,
    entry      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Signed checkpoints of the log, with the witnesses' cosignatures.
CREATE TABLE kt_checkpoints (
    size       INTEGER PRIMARY KEY,
    note       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- What the directory last published for each label (to find what changed).
CREATE TABLE kt_published (
    label BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    epoch INTEGER NOT NULL
);

-- Each auditor's newest cosignature: of the checkpoint of size `size`.
CREATE TABLE kt_audits (
    auditor    TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    line       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Which server process publishes (one at a time), until when.
CREATE TABLE kt_lease (
    id         INTEGER PRIMARY KEY,
    holder     BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
