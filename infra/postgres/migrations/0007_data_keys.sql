-- Data keys for crypto-shredding (infra/keys): every message body on the
-- event log is sealed with AES-256-GCM under a key of its sender's
-- account, and erasing the account deletes its row here, after which no
-- reader of the log can open those bodies again. One live key per
-- account; a send after an erasure creates a new one.
--
-- A deleted row stays in the table's dead tuples until vacuum and in
-- backups taken before: see docs/operations.md, "Erasure".
CREATE TABLE data_keys (
    key_id     text        PRIMARY KEY, -- 32 hex digits, the events' bodyKey
    account    text        NOT NULL UNIQUE,
    secret     bytea       NOT NULL,    -- 32 bytes
    created_at timestamptz NOT NULL DEFAULT now()
);
