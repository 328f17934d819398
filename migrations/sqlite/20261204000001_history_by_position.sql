-- Trim by position (issue 17): a pipe that numbers its history keeps the rows above `top - length`, deleted
-- on an index range once per batch of writes instead of a NOT IN subquery per message. Rows stored before
-- positions existed are numbered 0, -1, -2... (newest first) below the pipe's first offset, so that the trim
-- counts them too; offsets 0 and below are never sent to clients. trust_ pipes have no settings and are not
-- numbered (their trim walks the id index). The numbers are worked out first, then written, so that the
-- update never reads rows it has already numbered. Keep in step with the other variant.
CREATE TEMPORARY TABLE legacy_pos AS
    SELECT id, 1 - ROW_NUMBER() OVER (PARTITION BY dev_id, pipe ORDER BY id DESC) AS n
    FROM pipe_history
    WHERE pos IS NULL AND substr(pipe, 1, 6) <> 'trust_';
UPDATE pipe_history SET pos = (SELECT n FROM legacy_pos WHERE legacy_pos.id = pipe_history.id)
WHERE id IN (SELECT id FROM legacy_pos);
DROP TABLE legacy_pos;
CREATE INDEX pipe_history_by_pos ON pipe_history (dev_id, pipe, pos);
