-- Groups and the conversation index, durable like the history: no process
-- rebuilds them from the log at start, so the log's retention is an
-- operator's choice, and they survive a move to a new log (a new epoch).
-- Both are projections of the event log, written by projections/groups and
-- projections/conversations with their progress in the same transaction.

-- A group and its member count (the size limit is checked against it when
-- an add is applied: an add that would pass 500 members changes nothing).
CREATE TABLE groups (
    group_id text    PRIMARY KEY,
    name     text    NOT NULL,
    owner    text    NOT NULL,
    members  integer NOT NULL
);

CREATE TABLE group_members (
    group_id text NOT NULL REFERENCES groups (group_id),
    account  text NOT NULL,
    PRIMARY KEY (group_id, account)
);

-- The groups of an account.
CREATE INDEX group_members_by_account ON group_members (account, group_id);

-- Each conversation's newest message. Only a newer msgid moves it, so
-- replaying the log changes nothing (I4).
CREATE TABLE conversations (
    conversation  text        PRIMARY KEY, -- "d:<a>:<b>" or "g:<group>"
    latest_msg_id bigint      NOT NULL,
    latest_time   timestamptz NOT NULL
);

-- The direct conversations of an account (both of its accounts have a
-- row); a group's conversation reaches its members through group_members.
CREATE TABLE account_conversations (
    account      text NOT NULL,
    conversation text NOT NULL,
    PRIMARY KEY (account, conversation)
);
