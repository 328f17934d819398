-- The tenant's public Pusher app key (issue 16): what pusher-js and Laravel Echo put in the WebSocket URL
-- (`/app/{key}`) and the HTTP API's `auth_key`. Public like dev_id (it is in every page), so it needs to be
-- unique, not secret; new tenants get 20 hex characters from the server's random source, tenants created
-- before get one here. Keep in step with the other variant.
ALTER TABLE tenants ADD COLUMN app_key TEXT;
UPDATE tenants SET app_key = lower(hex(randomblob(10))) WHERE app_key IS NULL;
CREATE UNIQUE INDEX tenants_app_key ON tenants (app_key);
