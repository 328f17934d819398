-- Per-tenant allowed origins for WebSocket connections, set in the dashboard. No row for a tenant means any
-- origin may connect. Keep in step with ../sqlite/.
CREATE TABLE tenant_origins (
    dev_id BIGINT NOT NULL REFERENCES tenants (dev_id),
    origin TEXT   NOT NULL,
    PRIMARY KEY (dev_id, origin)
);
