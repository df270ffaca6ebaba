-- Keyhold server schema, version 2: the signed device chain replaces device
-- certificates, root keys of earlier epochs stay readable through
-- previous-root wraps, and a relay carries device pairing. Append-only:
-- never edit a migration that has shipped. docs/server-data.md documents
-- every column (a test compares the two). Portable SQL (SQLite 3.35+,
-- PostgreSQL).
--
-- Accounts created before this migration have no device chain. Clients
-- from this version on verify the chain, so they cannot use such accounts
-- (and the server refuses appends to them as a corrupt chain). There are
-- no deployed users: such accounts are left as they are, not converted.

-- The device chain of each account: stored entries, seq 0 first. The
-- primary key is the compare-and-swap of appends.
CREATE TABLE device_chain (
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    seq        BIGINT NOT NULL,
    entry_id   BYTEA NOT NULL,
    body       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- Devices are vouched for by the chain now, not by a certificate; a
-- revoked device keeps its row (the chain names it) with the time of its
-- revocation.
ALTER TABLE devices DROP COLUMN certificate;
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;

-- The root key of epoch `epoch - 1`, wrapped under that of `epoch`.
CREATE TABLE previous_root_wraps (
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    epoch      BIGINT NOT NULL,
    wrap       BYTEA NOT NULL,
    PRIMARY KEY (account_id, epoch)
);

-- Pairing relay: a slot opened by an enrolled device, and the attempts of
-- new devices to pair through it (opaque bytes, each step written once).
CREATE TABLE pairing_slots (
    slot       TEXT PRIMARY KEY,
    account_id BYTEA NOT NULL REFERENCES accounts(account_id),
    device_id  BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE pairing_attempts (
    slot       TEXT NOT NULL REFERENCES pairing_slots(slot),
    attempt_id BYTEA NOT NULL,
    number     BIGINT NOT NULL,
    hello      BYTEA NOT NULL,
    reply      BYTEA,
    joiner     BYTEA,
    welcome    BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (slot, attempt_id)
);
