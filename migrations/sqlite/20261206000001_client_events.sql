-- Pusher client events (`client-*` frames, issue 16) are off unless the tenant turns them on: browsers then
-- send to each other through the server, which a tenant should choose. 0 (off, the default) or 1, like
-- require_tls. Set with `halley tenant limits --client-events` or the dashboard's settings.
-- Keep in step with the other variant.
ALTER TABLE tenant_limits ADD COLUMN client_events BIGINT NOT NULL DEFAULT 0 CHECK (client_events IN (0, 1));
