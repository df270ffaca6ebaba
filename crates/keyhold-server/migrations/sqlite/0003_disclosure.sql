-- Keyhold server schema, version 3: what the operator does to accounts is
-- recorded where the affected users and the public can see it. Append-only:
-- never edit a migration that has shipped. docs/server-data.md documents
-- every column (a test compares the two).

-- Every administrative action on one account (disclosure, quota change),
-- in the account's own region; its devices show them.
CREATE TABLE account_events (
    account_id BLOB NOT NULL REFERENCES accounts(account_id),
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- The public, signed, hash-linked log of compelled disclosures (in the
-- default region's database).
CREATE TABLE disclosure_log (
    seq        INTEGER PRIMARY KEY,
    body       BLOB NOT NULL,
    signature  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
