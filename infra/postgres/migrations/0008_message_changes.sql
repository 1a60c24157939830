-- Changes for sync (issue #16). A device that held a message when it was
-- edited, deleted or erased, and was offline then, learns of it at its
-- next sync: sync with changes asks for the messages of a conversation
-- with msg_id <= the device's cursor and revision > it, in revision order.
-- revision (0004) is the log position of a message's last change, 0 for a
-- message never changed, so these partial indexes hold only the changed
-- messages: a write to an unchanged message does not touch them. The
-- queries repeat "revision > 0" so that the planner can use them with a
-- parameter for the cursor.
CREATE INDEX direct_messages_changes ON direct_messages (account_a, account_b, revision) WHERE revision > 0;
CREATE INDEX group_messages_changes ON group_messages (group_id, revision) WHERE revision > 0;
