-- A group's name is any UTF-8 of up to 128 bytes, NUL included, and
-- PostgreSQL's text takes no NUL: a group created with one failed its
-- insert, and the groups projection retried that record for good, so no
-- later group change applied. The name is kept as its UTF-8 bytes in
-- name_bytes, like a message's body (0001). The text column stays, for
-- processes of the version before during a rolling deploy: it is written
-- too, with U+FFFD for each NUL, and read where name_bytes is NULL (rows
-- such a process wrote). Additive: nothing is rewritten.
ALTER TABLE groups ADD COLUMN name_bytes bytea;
