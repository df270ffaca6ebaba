-- Keyhold server schema, version 9: human handles (docs/spec/protocol.md,
-- "Handles"). One row per claimed handle, in the claimant's region: the
-- account's signed claim, which the key directory publishes under the
-- handle's label. One handle per account, one account per handle.
-- Append-only: never edit a migration that has shipped. docs/server-data.md
-- documents every column (a test compares the two).

-- The primary key makes a handle one account's (in this region; every
-- region is looked at before a claim is stored); the unique account gives
-- an account one handle.
CREATE TABLE handles (
    handle     TEXT PRIMARY KEY,
    account_id BLOB NOT NULL UNIQUE REFERENCES accounts(account_id),
    claim      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
