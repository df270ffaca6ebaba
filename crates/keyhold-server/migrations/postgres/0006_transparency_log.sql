-- Keyhold server schema, version 6: the key transparency log over the key
-- directory's epoch roots (docs/spec/transparency.md), in the default
-- region's database. Append-only: never edit a migration that has shipped.
-- docs/server-data.md documents every column (a test compares the two).

-- The log's entries (leaves): directory epoch roots and heartbeats.
CREATE TABLE kt_log (
    idx        BIGINT PRIMARY KEY,
    entry      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Signed checkpoints of the log, with the witnesses' cosignatures.
CREATE TABLE kt_checkpoints (
    size       BIGINT PRIMARY KEY,
    note       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- What the directory last published for each label (to find what changed).
CREATE TABLE kt_published (
    label BYTEA PRIMARY KEY,
    value BYTEA NOT NULL,
    epoch BIGINT NOT NULL
);

-- Each auditor's newest cosignature: of the checkpoint of size `size`.
CREATE TABLE kt_audits (
    auditor    TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    line       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Which server process publishes (one at a time), until when.
CREATE TABLE kt_lease (
    id         BIGINT PRIMARY KEY,
    holder     BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
