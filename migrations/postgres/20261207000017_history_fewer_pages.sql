-- Fewer index pages per history commit (issue 17): pipe_history_by_pipe (dev_id, pipe, id) goes, and
-- pipe_history_by_pos takes the id as its last column, so that it serves every read and trim of a pipe in
-- (pos, id) order: a numbered pipe by its offsets, a trust_ pipe (no offsets, pos NULL) by id (SQLite's
-- index entries end with the id of themselves). The SQLite variant also drops AUTOINCREMENT (a page per
-- commit there); the identity's sequence here logs once per 32 values, so it stays. Keep in step with the
-- other variant.
CREATE INDEX pipe_history_by_pos_id ON pipe_history (dev_id, pipe, pos, id);
DROP INDEX pipe_history_by_pos;
DROP INDEX pipe_history_by_pipe;
ALTER INDEX pipe_history_by_pos_id RENAME TO pipe_history_by_pos;
