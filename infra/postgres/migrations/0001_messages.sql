-- Message history (R5): every accepted message, kept forever. The tables
-- are a projection of the event log, written by projections/store; a row is
-- never updated or deleted, and replaying the log inserts nothing new (I4).
--
-- 1:1 and group conversations live in separate tables so that each is keyed
-- by its natural identity (the account pair, the group id) with msg_id last:
-- the primary key is then exactly the index sync reads,
--   WHERE <conversation> AND msg_id > $after ORDER BY msg_id LIMIT $n,
-- a single range scan in msgid order (I2).
--
-- body is bytea, not text: it holds whatever the log holds. PostgreSQL text
-- cannot store U+0000, which is valid UTF-8 and which the domain accepts; a
-- text column would make such a message fail to store forever and stall its
-- partition.
--
-- Conversation list (latest message per conversation of an account): no
-- index here serves it, on purpose. Reading it from the history would scan
-- all of an account's messages however few conversations it has; it belongs
-- in a small table with one row per (account, conversation) holding the
-- latest msg_id and time, written by the conversations projection beside
-- these tables. Until then direct conversations are reachable from one side
-- through the primary key (account_a = $1) and from the other only by a
-- scan; (account_b, account_a, msg_id) would be the index to add for that,
-- at a write cost on every message.

CREATE TABLE direct_messages (
    -- the two accounts in order (account_a <= account_b), one conversation
    -- for both directions (R4); equal for notes to self
    account_a      text        NOT NULL,
    account_b      text        NOT NULL,
    -- the msgid the event log assigned: increasing within the conversation,
    -- gaps allowed
    msg_id         bigint      NOT NULL,
    -- the server's message id, unique for every message ever accepted
    message_id     uuid        NOT NULL,
    client_msg_id  text        NOT NULL,
    sender_account text        NOT NULL,
    sender_device  text        NOT NULL,
    kind           text        NOT NULL,
    body           bytea       NOT NULL,
    server_time    timestamptz NOT NULL,
    PRIMARY KEY (account_a, account_b, msg_id),
    -- a record appended twice (a producer retry) is one message, not two
    UNIQUE (message_id),
    CHECK (account_a <= account_b)
);

CREATE TABLE group_messages (
    group_id       text        NOT NULL,
    msg_id         bigint      NOT NULL,
    message_id     uuid        NOT NULL,
    client_msg_id  text        NOT NULL,
    sender_account text        NOT NULL,
    sender_device  text        NOT NULL,
    kind           text        NOT NULL,
    body           bytea       NOT NULL,
    server_time    timestamptz NOT NULL,
    PRIMARY KEY (group_id, msg_id),
    UNIQUE (message_id)
);

-- Idempotency lookup across both tables: the message an account sent with
-- a client message id (I4). Written in the same statement as the message,
-- and only when the message was stored; the first message for a key wins.
-- message_id leads to the message row through the UNIQUE indexes above;
-- conversation and msg_id are the ack itself, readable without a join.
CREATE TABLE client_msg_ids (
    sender_account text   NOT NULL,
    client_msg_id  text   NOT NULL,
    conversation   text   NOT NULL, -- "d:<a>:<b>" or "g:<group>"
    msg_id         bigint NOT NULL,
    message_id     uuid   NOT NULL,
    PRIMARY KEY (sender_account, client_msg_id)
);

-- How far each projection kept in this database has applied each partition
-- of the event log: the offset after the last applied record. It only moves
-- forward, and it never leads the data it describes (it is written after
-- the records are applied), so a reader in any process that sees
-- next_offset >= end knows the tables hold every record below end (I3).
CREATE TABLE projection_progress (
    projection  text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partition)
);
