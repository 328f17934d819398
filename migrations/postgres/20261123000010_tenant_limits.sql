-- Per-tenant overrides of the global limits ([limits] in the configuration); NULL keeps the global value.
CREATE TABLE tenant_limits (
    dev_id                BIGINT NOT NULL PRIMARY KEY,
    publishes_per_sec     BIGINT,
    publish_burst         BIGINT,
    websocket_connections BIGINT,
    queue_ttl_secs        BIGINT
);
