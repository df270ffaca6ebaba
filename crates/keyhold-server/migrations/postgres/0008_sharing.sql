-- Keyhold server schema, version 8: collections shared between accounts
-- (docs/spec/protocol.md, "Sharing"). Each shared collection has a member
-- list of signed, hash-chained entries (its owner's), a member row per
-- account ever admitted, and key grants: the collection's keys sealed to a
-- member's devices, with the member's signed answer. All of it lives in
-- the owner's region, beside the collection's packs and revisions.
-- Append-only: never edit a migration that has shipped. docs/server-data.md
-- documents every column (a test compares the two).

-- One row per shared collection: which account owns it. The primary key
-- makes a collection id shared by one account only (in this region; other
-- regions are looked at before a member list is created).
CREATE TABLE shared_collections (
    collection_id BYTEA PRIMARY KEY,
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    created_at    BIGINT NOT NULL
);
CREATE INDEX shared_collections_by_owner ON shared_collections (account_id);

-- The member list: stored entries, seq 0 first. The primary key is the
-- compare-and-swap of appends.
CREATE TABLE share_entries (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL REFERENCES shared_collections(collection_id),
    seq           BIGINT NOT NULL,
    entry_id      BYTEA NOT NULL,
    body          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (collection_id, seq)
);

-- Every account the member list admitted, with what the server lets it do.
-- `member_id` may be an account of another region: no foreign key.
CREATE TABLE share_members (
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL REFERENCES shared_collections(collection_id),
    member_id     BYTEA NOT NULL,
    role          BIGINT NOT NULL,
    state         TEXT NOT NULL,
    added_seq     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (collection_id, member_id)
);
CREATE INDEX share_members_by_member ON share_members (member_id);

-- Key grants, each with its member's answer once given.
CREATE TABLE share_grants (
    grant_id      BYTEA PRIMARY KEY,
    account_id    BYTEA NOT NULL REFERENCES accounts(account_id),
    collection_id BYTEA NOT NULL REFERENCES shared_collections(collection_id),
    member_id     BYTEA NOT NULL,
    entry_seq     BIGINT NOT NULL,
    body          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    response      BYTEA,
    responded_at  BIGINT
);
CREATE INDEX share_grants_by_member ON share_grants (member_id, created_at);
