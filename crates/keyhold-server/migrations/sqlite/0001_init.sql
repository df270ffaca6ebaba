-- Keyhold server schema, version 1. Append-only: never edit a migration
-- that has shipped; add a new one. docs/server-data.md documents every
-- column (a test compares the two).
CREATE TABLE accounts (
    account_id        BLOB PRIMARY KEY,
    recovery_locator  BLOB NOT NULL UNIQUE,
    recovery_auth_key BLOB NOT NULL,
    account_epoch     INTEGER NOT NULL,
    quota_bytes       INTEGER NOT NULL,
    used_bytes        INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
);

CREATE TABLE devices (
    account_id  BLOB NOT NULL REFERENCES accounts(account_id),
    device_id   BLOB NOT NULL,
    public_keys BLOB NOT NULL,
    certificate BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

CREATE TABLE device_wraps (
    account_id BLOB NOT NULL REFERENCES accounts(account_id),
    device_id  BLOB NOT NULL,
    epoch      INTEGER NOT NULL,
    wrap       BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, epoch)
);

CREATE TABLE recovery_wraps (
    account_id BLOB NOT NULL REFERENCES accounts(account_id),
    epoch      INTEGER NOT NULL,
    wrap       BLOB NOT NULL,
    PRIMARY KEY (account_id, epoch)
);

CREATE TABLE collection_wraps (
    account_id    BLOB NOT NULL REFERENCES accounts(account_id),
    collection_id BLOB NOT NULL,
    epoch         INTEGER NOT NULL,
    wrap          BLOB NOT NULL,
    PRIMARY KEY (account_id, collection_id, epoch)
);

CREATE TABLE challenges (
    challenge  BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE packs (
    account_id    BLOB NOT NULL REFERENCES accounts(account_id),
    collection_id BLOB NOT NULL,
    pack_id       BLOB NOT NULL,
    size          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, pack_id)
);
CREATE INDEX packs_by_collection ON packs (account_id, collection_id);

CREATE TABLE revisions (
    account_id    BLOB NOT NULL REFERENCES accounts(account_id),
    collection_id BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    revision_id   BLOB NOT NULL,
    body          BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, collection_id, seq)
);

CREATE TABLE heads (
    account_id    BLOB NOT NULL REFERENCES accounts(account_id),
    collection_id BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    revision_id   BLOB NOT NULL,
    PRIMARY KEY (account_id, collection_id)
);
