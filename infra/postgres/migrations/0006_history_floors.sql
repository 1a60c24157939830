-- History retention (--retention). The retention job removes each
-- conversation's oldest messages once they are older than the retention,
-- and records how far the history is gone:
--   history_floors  one row per conversation that lost history: every
--                   message at or below gone_through was removed. Sync
--                   reports it to a client whose cursor is below it (no
--                   silent gap), and the store projection skips a message
--                   at or below it, so that a replay of the log does not
--                   bring a removed message back. It only rises.
-- The job finds old messages through the server_time indexes below, a
-- bounded range scan per step instead of a scan of every conversation.
-- Building them on an existing history makes writes to the message tables
-- wait for the build, once, during this migration.
CREATE TABLE history_floors (
    conversation text        PRIMARY KEY, -- "d:<a>:<b>" or "g:<group>"
    gone_through bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX direct_messages_server_time ON direct_messages (server_time);
CREATE INDEX group_messages_server_time ON group_messages (server_time);
