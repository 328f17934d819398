-- Per-tenant storage quotas ([limits] history_bytes_per_tenant ... revoked_tokens_per_tenant); NULL keeps the
-- global value. Keep in step with the other variant.
ALTER TABLE tenant_limits ADD COLUMN history_bytes BIGINT;
ALTER TABLE tenant_limits ADD COLUMN history_rows BIGINT;
ALTER TABLE tenant_limits ADD COLUMN queued_per_user BIGINT;
ALTER TABLE tenant_limits ADD COLUMN queued_per_tenant BIGINT;
ALTER TABLE tenant_limits ADD COLUMN users_data BIGINT;
ALTER TABLE tenant_limits ADD COLUMN revoked_tokens BIGINT;
