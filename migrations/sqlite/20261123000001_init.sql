-- Halley schema, SQLite variant. Keep in step with ../postgres/ (same tables, same columns, same meaning).

-- A tenant: dev_id is the CometQL user name and the browser's dev_id. AUTOINCREMENT so ids are never reused.
CREATE TABLE tenants (
    dev_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    BIGINT  NOT NULL
);

-- Secret keys: sealed = AEAD(master key, nonce || ciphertext); verifier = SHA1(SHA1(key)) for mysql_native_password.
CREATE TABLE tenant_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dev_id       BIGINT  NOT NULL REFERENCES tenants (dev_id),
    name         TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    verifier     BLOB    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX tenant_keys_by_dev ON tenant_keys (dev_id);

-- Pipe history. `id` only grows, so ordering by it within a pipe is the per-pipe publish order (not the
-- second, which ties), and trimming to the newest N keeps exactly N.
CREATE TABLE pipe_history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    dev_id  BIGINT NOT NULL,
    pipe    TEXT   NOT NULL,
    uuid    TEXT   NOT NULL,
    event   TEXT   NOT NULL,
    message TEXT   NOT NULL,
    user_id BIGINT NOT NULL,
    sent_at BIGINT NOT NULL
);
CREATE INDEX pipe_history_by_pipe ON pipe_history (dev_id, pipe, id);
CREATE INDEX pipe_history_by_uuid ON pipe_history (dev_id, uuid);

CREATE TABLE pipe_settings (
    dev_id BIGINT NOT NULL,
    pipe   TEXT   NOT NULL,
    length BIGINT NOT NULL,
    PRIMARY KEY (dev_id, pipe)
);

CREATE TABLE users_auth (
    dev_id  BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    hash    TEXT   NOT NULL,
    PRIMARY KEY (dev_id, user_id)
);

CREATE TABLE users_data (
    dev_id  BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    data    TEXT   NOT NULL,
    PRIMARY KEY (dev_id, user_id)
);

CREATE TABLE users_time (
    dev_id      BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    last_online BIGINT NOT NULL,
    PRIMARY KEY (dev_id, user_id)
);

CREATE TABLE user_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    dev_id     BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    uuid       TEXT   NOT NULL,
    event      TEXT   NOT NULL,
    message    TEXT   NOT NULL,
    sent_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX user_messages_by_user ON user_messages (dev_id, user_id, id);

CREATE TABLE revoked_tokens (
    dev_id     BIGINT NOT NULL,
    token      TEXT   NOT NULL,
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (dev_id, token)
);

CREATE TABLE usage_daily (
    dev_id   BIGINT NOT NULL,
    day      BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (dev_id, day)
);
