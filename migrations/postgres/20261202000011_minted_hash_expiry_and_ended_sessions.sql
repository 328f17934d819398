-- A users_auth hash minted by a JWT login expires with that token; NULL (a hash the backend stored) never does.
ALTER TABLE users_auth ADD COLUMN expires_at BIGINT;

-- Dashboard sessions ended by logout before their expiry. A row goes once its session would have expired anyway.
CREATE TABLE dashboard_ended_sessions (
    sid        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_ended_sessions_by_expiry ON dashboard_ended_sessions (expires_at);
