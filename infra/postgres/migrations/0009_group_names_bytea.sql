-- A group's name is any UTF-8 of up to 128 bytes, NUL included, and
-- PostgreSQL's text takes no NUL: a group created with one failed its
-- insert, and the groups projection retried that record for good, so no
-- later group change applied. The name is kept as its UTF-8 bytes, like a
-- message's body (0001). The rewrite locks the table for as long as it
-- takes: one row per group.
ALTER TABLE groups ALTER COLUMN name TYPE bytea USING convert_to(name, 'UTF8');
