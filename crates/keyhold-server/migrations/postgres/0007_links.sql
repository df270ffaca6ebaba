-- Keyhold server schema, version 7: link shares (docs/spec/links.md), in
-- the region of the account that made them. Append-only: never edit a
-- migration that has shipped. docs/server-data.md documents every column
-- (a test compares the two).

-- One row per link; the link object itself is in the blob store, named by
-- `object_id`, until it is revoked or purged after its expiry. The row
-- stays, so that the link answers 410 Gone rather than 404.
CREATE TABLE links (
    link_id    BYTEA PRIMARY KEY,
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    object_id  BYTEA,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX links_by_account ON links (account_id);
