-- Per-tenant recovery window ([recovery] window_messages / window_secs); NULL keeps the node's value.
ALTER TABLE tenant_limits ADD COLUMN window_messages BIGINT;
ALTER TABLE tenant_limits ADD COLUMN window_secs BIGINT;
