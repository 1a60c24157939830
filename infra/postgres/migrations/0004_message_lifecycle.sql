-- Message lifecycle (edit, delete for everyone). A message row is now
-- updated in place by the MessageEdited.v1 and MessageDeleted.v1 events
-- that follow it in the log:
--   edited_at  when its body was last replaced (NULL: never edited)
--   deleted    a tombstone: body is empty, the ids and times remain so that
--              cursors and gap detection stay exact
--   revision   the log position (as a msgid) of the last change applied; a
--              change at or below it is applied already, so replaying any
--              part of the log changes nothing (I4)
ALTER TABLE direct_messages
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN deleted   boolean NOT NULL DEFAULT false,
    ADD COLUMN revision  bigint  NOT NULL DEFAULT 0;

ALTER TABLE group_messages
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN deleted   boolean NOT NULL DEFAULT false,
    ADD COLUMN revision  bigint  NOT NULL DEFAULT 0;
