-- Durable positions (issue 14): a pipe that keeps history numbers its messages 1, 2, 3... within an epoch,
-- so that a page that reconnects after a restart can be sent what it missed from the history.
-- `top` is the last offset given; `epoch` is set by the first positioned publish or subscribe and cleared
-- when the history is switched off (length 0), so that a pipe whose history was off for a while (messages
-- not stored, not numbered) never resumes an old epoch with a hole in it. A row made anew starts a new epoch.
-- `pos` is the row's offset (NULL for rows stored before this, and for trust_ pipes, which have no settings);
-- `sender` is the web_pipe2 sender's id (NULL for a CometQL publish), so that a replayed frame is the one
-- sent live (a relay has `user_id`, a CometQL publish none). Keep in step with the other variant.
ALTER TABLE pipe_settings ADD COLUMN epoch TEXT NULL;
ALTER TABLE pipe_settings ADD COLUMN top BIGINT NOT NULL DEFAULT 0;
ALTER TABLE pipe_history ADD COLUMN pos BIGINT NULL;
ALTER TABLE pipe_history ADD COLUMN sender BIGINT NULL;
