-- Trim by position (issue 17): a pipe that numbers its history keeps the rows above `top - length`, deleted
-- on an index range once per batch of writes instead of a NOT IN subquery per message. Rows stored before
-- positions existed are numbered 0, -1, -2... (newest first) below the pipe's first offset, so that the trim
-- counts them too; offsets 0 and below are never sent to clients. trust_ pipes have no settings and are not
-- numbered (their trim walks the id index). Keep in step with the other variant.
UPDATE pipe_history SET pos = -(
    SELECT COUNT(*) FROM pipe_history newer
    WHERE newer.dev_id = pipe_history.dev_id AND newer.pipe = pipe_history.pipe
      AND newer.pos IS NULL AND newer.id > pipe_history.id
)
WHERE pos IS NULL AND substr(pipe, 1, 6) <> 'trust_';
CREATE INDEX pipe_history_by_pos ON pipe_history (dev_id, pipe, pos);
