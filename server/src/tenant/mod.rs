//! Who is calling: tenant creation, CometQL credential checks and the keys behind browser JWTs.
//! The failure of a login is one error whatever its cause, and costs the same work whatever its cause.

pub(crate) mod account;
pub(crate) mod argon2_gate;
pub(crate) mod jwt;
pub(crate) mod keys;
pub(crate) mod leases;
pub(crate) mod limits;
mod origins;
mod password;
pub(crate) mod quota;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::DevId;
use crate::mysql::auth::{check_scramble, verifier};
use crate::storage::{KeyRow, NewTenantRow, Storage, StorageError};
pub use account::{Account, AccountError, KeyInfo};
pub use keys::{generate_app_key, generate_key, KeyBox, KeyError};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("invalid email address")]
    InvalidEmail,
    #[error("password hashing failed")]
    Hashing,
    #[error("a tenant may have at most {0} active keys; revoke one first")]
    TooManyKeys(usize),
}

/// Any login failure: wrong key, unknown dev_id, non-numeric user, empty password. Deliberately one variant.
#[derive(Debug, thiserror::Error)]
#[error("Authentication failure")]
pub struct AuthFailure;

/// A successful CometQL login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub dev_id: DevId,
    pub key_id: i64,
}

/// A freshly created tenant, with its first key in clear (shown once to whoever created it).
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub dev_id: DevId,
    pub key: String,
    /// The public Pusher app key (`/app/{key}`, the HTTP API's `auth_key`).
    pub app_key: String,
}

#[derive(Clone, Debug)]
pub struct Tenants {
    storage: Storage,
    keys: KeyBox,
    /// Tenants known to exist. Only positive answers are kept: a dev_id is never reused, so "exists" stays
    /// true, while a tenant created by another process must still be found on its first connect.
    known: std::sync::Arc<std::sync::RwLock<std::collections::HashSet<DevId>>>,
    origins: origins::OriginsCache,
    /// Bounds the argon2 work of sign-ups, dashboard logins and password changes together.
    argon2: std::sync::Arc<argon2_gate::Argon2Gate>,
    /// Active keys a tenant may hold (`[limits] keys_per_tenant`).
    keys_per_tenant: usize,
    /// Pusher app keys of tenants looked up (both ways); app keys never change, and only found ones are
    /// kept, so that made-up keys in URLs cannot grow it.
    app_keys: std::sync::Arc<std::sync::RwLock<AppKeys>>,
    /// Secret keys in clear of tenants whose Pusher signatures were checked lately (see
    /// [`Tenants::signing_keys`]).
    signing: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<DevId, SigningKeys>>>,
}

/// How long the keys a Pusher signature is checked against are reused: a subscription is not worth a
/// database read, and a revoked key stops being accepted within this.
const SIGNING_KEYS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug)]
struct SigningKeys {
    keys: std::sync::Arc<[String]>,
    read_at: std::time::Instant,
}

#[derive(Debug, Default)]
struct AppKeys {
    by_key: std::collections::HashMap<String, DevId>,
    by_dev: std::collections::HashMap<DevId, String>,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Tenants {
    pub fn new(storage: Storage, keys: KeyBox) -> Tenants {
        Tenants {
            storage,
            keys,
            known: Default::default(),
            origins: Default::default(),
            argon2: Default::default(),
            keys_per_tenant: crate::config::LimitsConfig::default().keys_per_tenant,
            app_keys: Default::default(),
            signing: Default::default(),
        }
    }

    /// The configured bounds: argon2 computations at once and waiting, and active keys per tenant.
    pub fn with_limits(mut self, config: &crate::config::Config) -> Tenants {
        let d = &config.dashboard;
        self.argon2 = std::sync::Arc::new(argon2_gate::Argon2Gate::new(
            d.argon2_concurrency,
            d.argon2_queue,
        ));
        self.keys_per_tenant = config.limits.keys_per_tenant;
        self
    }

    pub async fn create(
        &self,
        email: &str,
        password_hash: Option<&str>,
    ) -> Result<NewTenant, TenantError> {
        if !valid_email(email) {
            return Err(TenantError::InvalidEmail);
        }
        let key = generate_key();
        let app_key = generate_app_key();
        let new = NewTenantRow {
            email,
            password_hash,
            app_key: &app_key,
            key_name: "default",
            verifier: &verifier(key.as_bytes()),
            now: unix_now(),
        };
        let (dev_id, _key_id) = self
            .storage
            .create_tenant_with_key(new, |dev_id| self.keys.seal(dev_id, &key))
            .await?;
        Ok(NewTenant {
            dev_id,
            key,
            app_key,
        })
    }

    /// Creates and stores a new key, returning it in clear; refused past `keys_per_tenant` active keys.
    pub async fn add_key(&self, dev_id: DevId, name: &str) -> Result<String, TenantError> {
        let key = generate_key();
        self.store_key(dev_id, name, &key, unix_now()).await?;
        Ok(key)
    }

    /// Seals and stores `key`, unless the tenant already has `keys_per_tenant` active keys; its id.
    async fn store_key(
        &self,
        dev_id: DevId,
        name: &str,
        key: &str,
        now: i64,
    ) -> Result<i64, TenantError> {
        let sealed = self.keys.seal(dev_id, key);
        let cap = self.keys_per_tenant;
        self.storage
            .add_key(dev_id, name, &sealed, &verifier(key.as_bytes()), now, cap)
            .await?
            .ok_or(TenantError::TooManyKeys(cap))
    }

    /// mysql_native_password check of `scramble` (computed by the client over `salt`) against every active key
    /// of the tenant named by `user`.
    pub async fn login(
        &self,
        user: &[u8],
        salt: &[u8; 20],
        scramble: &[u8],
    ) -> Result<Login, AuthFailure> {
        let dev_id = parse_dev_id(user);
        // Unknown and malformed users still cost one lookup and one check, so timing does not tell them apart.
        let keys = self
            .storage
            .active_keys(dev_id.unwrap_or(DevId(0)))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "key lookup failed during CometQL login");
                AuthFailure
            })?;
        let found = match_key(&keys, salt, scramble);
        match (dev_id, found) {
            (Some(dev_id), Some(key_id)) if !scramble.is_empty() => {
                if let Err(e) = self.storage.touch_key(key_id, unix_now()).await {
                    tracing::warn!(error = %e, "could not record key use");
                }
                Ok(Login { dev_id, key_id })
            }
            _ => Err(AuthFailure),
        }
    }

    /// A secret key sent in clear (the HTTP API's bearer key) checked against every active key of the
    /// tenant named by `user`, as [`login`](Self::login) checks a scramble: unknown and malformed tenants
    /// cost one lookup and one comparison too, every key is compared (in constant time) even after a
    /// match, and a revoked key is not among the active ones. The key's last use is recorded at most once
    /// a minute: an HTTP caller logs in with every request.
    pub async fn check_key(&self, user: &[u8], key: &[u8]) -> Result<Login, AuthFailure> {
        use subtle::ConstantTimeEq;
        const DUMMY: [u8; 20] = [0x5a; 20];
        let dev_id = parse_dev_id(user);
        let keys = self
            .storage
            .active_keys(dev_id.unwrap_or(DevId(0)))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "key lookup failed during an HTTP API request");
                AuthFailure
            })?;
        let given = verifier(key);
        let mut found = None;
        if keys.is_empty() {
            let _ = given.ct_eq(&DUMMY);
        }
        for k in &keys {
            if bool::from(given.ct_eq(k.verifier.as_slice())) && found.is_none() {
                found = Some(k);
            }
        }
        match (dev_id, found) {
            (Some(dev_id), Some(k)) if !key.is_empty() => {
                let now = unix_now();
                if k.last_used_at.is_none_or(|t| now - t >= 60) {
                    if let Err(e) = self.storage.touch_key(k.id, now).await {
                        tracing::warn!(error = %e, "could not record key use");
                    }
                }
                Ok(Login {
                    dev_id,
                    key_id: k.id,
                })
            }
            _ => Err(AuthFailure),
        }
    }

    /// Whether the tenant exists; every WebSocket connect asks, so known tenants cost no query.
    pub async fn exists(&self, dev_id: DevId) -> Result<bool, TenantError> {
        if self.is_known(dev_id) {
            return Ok(true);
        }
        let exists = self.storage.tenant_exists(dev_id).await?;
        if exists {
            self.known
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(dev_id);
        }
        Ok(exists)
    }

    /// The origins allowed to open WebSockets for the tenant (empty: any). Kept in memory for known tenants
    /// only, so that made-up dev_ids in URLs cannot grow the cache.
    pub async fn allowed_origins(
        &self,
        dev_id: DevId,
    ) -> Result<std::sync::Arc<[String]>, StorageError> {
        if let Some(list) = self.origins.get(dev_id) {
            return Ok(list);
        }
        let list: std::sync::Arc<[String]> = self.storage.allowed_origins(dev_id).await?.into();
        if self.is_known(dev_id) {
            self.origins.put(dev_id, list.clone());
        }
        Ok(list)
    }

    pub async fn set_allowed_origins(
        &self,
        dev_id: DevId,
        origins: &[String],
    ) -> Result<(), TenantError> {
        self.storage.set_allowed_origins(dev_id, origins).await?;
        self.origins.put(dev_id, origins.into());
        Ok(())
    }

    /// Whether the tenant refuses plaintext CometQL logins, as stored.
    pub async fn require_tls(&self, dev_id: DevId) -> Result<bool, TenantError> {
        Ok(self.storage.tenant_requires_tls(dev_id).await?)
    }

    /// Stores the tenant's require-TLS setting and applies it to this node's logins at once (other nodes
    /// read it with their next reload of the limits, within a minute).
    pub async fn set_require_tls(
        &self,
        dev_id: DevId,
        require: bool,
        limits: &limits::Limits,
    ) -> Result<(), TenantError> {
        self.storage.set_tenant_require_tls(dev_id, require).await?;
        limits.set_require_tls(dev_id, require);
        Ok(())
    }

    /// The tenant whose Pusher app key this is (the `/app/{key}` of pusher-js).
    pub async fn by_app_key(&self, app_key: &str) -> Result<Option<DevId>, TenantError> {
        if let Some(dev_id) = self.read_app_keys().by_key.get(app_key) {
            return Ok(Some(*dev_id));
        }
        let found = self.storage.tenant_by_app_key(app_key).await?;
        if let Some(dev_id) = found {
            self.remember_app_key(dev_id, app_key);
        }
        Ok(found)
    }

    /// The tenant's Pusher app key (the HTTP API's `auth_key`); None for no such tenant.
    pub async fn app_key(&self, dev_id: DevId) -> Result<Option<String>, TenantError> {
        if let Some(key) = self.read_app_keys().by_dev.get(&dev_id) {
            return Ok(Some(key.clone()));
        }
        let found = self.storage.app_key(dev_id).await?;
        if let Some(key) = &found {
            self.remember_app_key(dev_id, key);
        }
        Ok(found)
    }

    /// The tenant's active keys in clear, for checking Pusher signatures (channel authorizations, sign-ins,
    /// HTTP API requests): read at most once per [`SIGNING_KEYS_TTL`] per tenant. Only tenants with an app
    /// key found get here, so the map holds real tenants only.
    pub async fn signing_keys(
        &self,
        dev_id: DevId,
    ) -> Result<std::sync::Arc<[String]>, TenantError> {
        {
            let cache = self.signing.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = cache.get(&dev_id) {
                if k.read_at.elapsed() < SIGNING_KEYS_TTL {
                    return Ok(k.keys.clone());
                }
            }
        }
        let keys: std::sync::Arc<[String]> = self.secret_keys(dev_id).await?.into();
        let mut cache = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, k| k.read_at.elapsed() < SIGNING_KEYS_TTL);
        cache.insert(
            dev_id,
            SigningKeys {
                keys: keys.clone(),
                read_at: std::time::Instant::now(),
            },
        );
        Ok(keys)
    }

    /// Drops the tenant's cached signing keys (a key was revoked here: it stops working at once on this
    /// node, within [`SIGNING_KEYS_TTL`] on others).
    pub fn forget_signing_keys(&self, dev_id: DevId) {
        self.signing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&dev_id);
    }

    fn read_app_keys(&self) -> std::sync::RwLockReadGuard<'_, AppKeys> {
        self.app_keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn remember_app_key(&self, dev_id: DevId, key: &str) {
        let mut keys = self.app_keys.write().unwrap_or_else(|e| e.into_inner());
        keys.by_key.insert(key.to_owned(), dev_id);
        keys.by_dev.insert(dev_id, key.to_owned());
    }

    /// Whether the tenant's Pusher connections may send client events, as stored.
    pub async fn client_events(&self, dev_id: DevId) -> Result<bool, TenantError> {
        Ok(self
            .storage
            .tenant_flag(dev_id, crate::storage::TenantFlag::ClientEvents)
            .await?)
    }

    /// Stores the tenant's client-events setting and applies it to this node at once (others within a
    /// minute, with their next reload of the limits).
    pub async fn set_client_events(
        &self,
        dev_id: DevId,
        on: bool,
        limits: &limits::Limits,
    ) -> Result<(), TenantError> {
        self.storage
            .set_tenant_flag(dev_id, crate::storage::TenantFlag::ClientEvents, on)
            .await?;
        limits.set_client_events(dev_id, on);
        Ok(())
    }

    fn is_known(&self, dev_id: DevId) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dev_id)
    }

    /// The tenant's active keys in clear: the HMAC keys of its users' JWTs.
    pub async fn secret_keys(&self, dev_id: DevId) -> Result<Vec<String>, TenantError> {
        let rows = self.storage.active_keys(dev_id).await?;
        rows.iter()
            .map(|r| Ok(self.keys.open(dev_id, &r.sealed)?))
            .collect()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// A secret derived from the master key for another purpose (see `KeyBox::derive`).
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        self.keys.derive(label)
    }
}

fn match_key(keys: &[KeyRow], salt: &[u8; 20], scramble: &[u8]) -> Option<i64> {
    const DUMMY: [u8; 20] = [0x5a; 20];
    if keys.is_empty() {
        check_scramble(salt, scramble, &DUMMY);
        return None;
    }
    let mut found = None;
    for k in keys {
        // Every key is checked even after a match, so the position of the matching key does not show in timing.
        if check_scramble(salt, scramble, &k.verifier) && found.is_none() {
            found = Some(k.id);
        }
    }
    found
}

/// `"15"` → dev 15. Anything else (root, `abc`, `0`, leading `+`, 20 digits) is not a tenant.
pub fn parse_dev_id(user: &[u8]) -> Option<DevId> {
    if user.is_empty() || user.len() > 18 || !user.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(user).ok()?;
    match text.parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(DevId(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_id_from_user_name() {
        assert_eq!(parse_dev_id(b"15"), Some(DevId(15)));
        assert_eq!(parse_dev_id(b"root"), None);
        assert_eq!(parse_dev_id(b"0"), None);
        assert_eq!(parse_dev_id(b""), None);
        assert_eq!(parse_dev_id(b"+5"), None);
        assert_eq!(parse_dev_id(b"1234567890123456789"), None);
    }

    #[test]
    fn email_shape() {
        assert!(valid_email("a@example.com"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@example.com"));
        assert!(!valid_email("a b@example.com"));
    }
}
