-- Keyhold server schema, version 7: link shares (docs/spec/links.md), in
-- the region of the account that made them. Append-only: never edit a
-- migration that has shipped. docs/server-data.md documents every column
-- (a test compares the two).

-- One row per link; the link object itself is in the blob store, named by
-- `object_id`, until it is revoked or purged after its expiry. The row
-- stays, so that the link answers 410 Gone rather than 404.
CREATE TABLE links (
    link_id    BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES accounts(account_id),
    object_id  BLOB,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX links_by_account ON links (account_id);
