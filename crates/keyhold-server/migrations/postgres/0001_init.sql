-- Keyhold server schema (PostgreSQL), version 1. Mirrors ../sqlite/ one for one. Append-only: never edit a migration
-- that has shipped; add a new one. docs/server-data.md documents every
-- column (a test compares the two).
CREATE TABLE accounts (
    account_id        BYTEA PRIMARY KEY,
    recovery_locator  BYTEA NOT NULL UNIQUE,
    recovery_auth_key BYTEA NOT NULL,
    account_epoch     BIGINT NOT NULL,
    quota_bytes       BIGINT NOT NULL,
    used_bytes        BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);

CREATE TABLE devices (
    account_id  BYTEA NOT NULL REFERENCES accounts(account_id),
    device_id   BYTEA NOT NULL,
    public_keys BYTEA NOT NULL,
    certificate BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

CREATE TABLE device_wraps (
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    device_id  BYTEA NOT NULL,
    epoch      BIGINT NOT NULL,
    wrap       BYTEA NOT NULL,
    PRIMARY KEY (account_id, device_id, epoch)
);

CREATE TABLE recovery_wraps (
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    epoch      BIGINT NOT NULL,
    wrap       BYTEA NOT NULL,
    PRIMARY KEY (account_id, epoch)
);

CREATE TABLE collection_wraps (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL,
    epoch         BIGINT NOT NULL,
    wrap          BYTEA NOT NULL,
    PRIMARY KEY (account_id, collection_id, epoch)
);

CREATE TABLE challenges (
    challenge  BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    account_id BYTEA NOT NULL,
    device_id  BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE packs (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL,
    pack_id       BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, pack_id)
);
CREATE INDEX packs_by_collection ON packs (account_id, collection_id);

CREATE TABLE revisions (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL,
    seq           BIGINT NOT NULL,
    revision_id   BYTEA NOT NULL,
    body          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, collection_id, seq)
);

CREATE TABLE heads (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL,
    seq           BIGINT NOT NULL,
    revision_id   BYTEA NOT NULL,
    PRIMARY KEY (account_id, collection_id)
);
