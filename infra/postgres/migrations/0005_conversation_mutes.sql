-- Offline notifications: the conversations each account has muted
-- (projections/notify). Written by the mute request, not by the log.
--   until_ms  when the mute ends, Unix milliseconds; 0 for a mute without end
CREATE TABLE conversation_mutes (
    account      text   NOT NULL,
    conversation text   NOT NULL,
    until_ms     bigint NOT NULL,
    PRIMARY KEY (account, conversation)
);
