-- Fewer pages per history commit (issue 17): every commit writes each page it dirtied as a WAL frame, and a
-- history append dirtied the table's leaf, sqlite_sequence (AUTOINCREMENT) and three index leaves. Now:
-- - no AUTOINCREMENT: a new row's id is one more than the largest id there is, so ids still follow the
--   order rows were written among the rows that exist (all that reads and trims need); an id may be used
--   again once the rows above it are gone, and no id is kept or shown anywhere outside this table;
-- - no pipe_history_by_pipe (dev_id, pipe, id): pipe_history_by_pos serves every read and trim of a pipe.
--   SQLite's index entries end with the row's id, so (dev_id, pipe, pos) is ordered by (pos, id): a
--   numbered pipe by its offsets, a trust_ pipe (no offsets, pos NULL) by id.
-- The table is rebuilt (SQLite cannot drop AUTOINCREMENT in place), ids kept. Keep in step with the other
-- variant (which drops the index only: PostgreSQL writes no page per sequence value).
CREATE TABLE pipe_history_new (
    id      INTEGER PRIMARY KEY,
    dev_id  BIGINT NOT NULL,
    pipe    TEXT   NOT NULL,
    uuid    TEXT   NOT NULL,
    event   TEXT   NOT NULL,
    message TEXT   NOT NULL,
    user_id BIGINT NOT NULL,
    sent_at BIGINT NOT NULL,
    pos     BIGINT NULL,
    sender  BIGINT NULL
);
INSERT INTO pipe_history_new (id, dev_id, pipe, uuid, event, message, user_id, sent_at, pos, sender)
    SELECT id, dev_id, pipe, uuid, event, message, user_id, sent_at, pos, sender FROM pipe_history;
DROP TABLE pipe_history;
ALTER TABLE pipe_history_new RENAME TO pipe_history;
DELETE FROM sqlite_sequence WHERE name = 'pipe_history';
CREATE INDEX pipe_history_by_uuid ON pipe_history (dev_id, uuid);
CREATE INDEX pipe_history_by_pos ON pipe_history (dev_id, pipe, pos);
