-- Keyhold server schema, version 4: an operator may suspend an account
-- (it can still sign in and read, not write) or delete its data (its
-- devices can still sign in to learn so). Both are account events too.
-- Append-only: never edit a migration that has shipped.
ALTER TABLE accounts ADD COLUMN suspended_at INTEGER;
ALTER TABLE accounts ADD COLUMN deleted_at INTEGER;
