-- Read cursors and unread counts (projections/conversations, reads.go).
-- Counting must not scan history nor touch every member of a group on each
-- message: a conversation keeps its message count, an (account,
-- conversation) its cursor, and each message its place in the conversation
-- and among its sender's, so that a read up to an older msgid is two index
-- seeks. Conversations indexed before this migration count their messages
-- from here on (older ones are not counted as unread); rebuilding the
-- index from the log into empty tables counts them all.

ALTER TABLE conversations ADD COLUMN message_count bigint NOT NULL DEFAULT 0;

-- An account's place in a conversation: unread =
-- (message_count - read_seq) - (sent - sent_at_read).
CREATE TABLE conversation_reads (
    conversation text   NOT NULL,
    account      text   NOT NULL,
    read_msg_id  bigint NOT NULL, -- the highest msgid read, 0 for none
    read_seq     bigint NOT NULL, -- the conversation's messages up to read_msg_id
    sent         bigint NOT NULL, -- the account's own messages in the conversation
    sent_at_read bigint NOT NULL, -- of those, the ones up to read_msg_id
    PRIMARY KEY (conversation, account)
);

-- Each message's place: seq among the conversation's messages, sender_seq
-- among its sender's. Only a read up to an older msgid looks here.
CREATE TABLE conversation_messages (
    conversation text   NOT NULL,
    msg_id       bigint NOT NULL,
    seq          bigint NOT NULL,
    sender       text   NOT NULL,
    sender_seq   bigint NOT NULL,
    PRIMARY KEY (conversation, msg_id)
);

CREATE INDEX conversation_messages_by_sender ON conversation_messages (conversation, sender, msg_id);
