-- A tenant may refuse plaintext CometQL logins (issue 13): a login with a valid key over a connection
-- without TLS gets ERROR 3159. 0 (off, the default) or 1; an integer like the other columns, so that both
-- backends read it the same way. Set with `halley tenant limits --require-tls` or the dashboard's settings.
-- Keep in step with the other variant.
ALTER TABLE tenant_limits ADD COLUMN require_tls BIGINT NOT NULL DEFAULT 0 CHECK (require_tls IN (0, 1));
