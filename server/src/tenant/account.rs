//! Dashboard accounts: sign-up with an email and a password (argon2id, the `argon2` crate's recommended
//! parameters), password checks, and the owner's management of its keys.

use super::password::{hash_password, verify_password};
use super::{unix_now, valid_email, TenantError, Tenants};
use crate::ids::DevId;
use crate::storage::{AccountRow, StorageError};

/// A dashboard account as the domain hands it to the doors: dev_id, email, password hash, creation time.
pub use crate::storage::AccountRow as Account;

pub(crate) const MIN_PASSWORD_CHARS: usize = 10;
/// argon2 accepts any length; a cap keeps a megabyte "password" from being a cheap way to burn CPU.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
pub(crate) const MAX_KEY_NAME_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid email address")]
    InvalidEmail,
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters long")]
    PasswordTooShort,
    #[error("the password must be at most {MAX_PASSWORD_BYTES} bytes long")]
    PasswordTooLong,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("wrong email or password")]
    BadCredentials,
    #[error("a key name is 1 to {MAX_KEY_NAME_CHARS} printable characters")]
    BadKeyName,
    #[error("no such key")]
    NoSuchKey,
    #[error("this is the last active key")]
    LastKey,
    #[error("too many password checks are waiting; try again in a moment")]
    Busy,
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl From<StorageError> for AccountError {
    fn from(e: StorageError) -> Self {
        AccountError::Tenant(TenantError::Storage(e))
    }
}

/// A key as its owner sees it in a list: never the key itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Emails are compared as typed but without case or surrounding spaces: `Ann@Example.com ` is `ann@example.com`.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(crate) fn check_password_rules(password: &str) -> Result<(), AccountError> {
    if password.len() > MAX_PASSWORD_BYTES {
        Err(AccountError::PasswordTooLong)
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        Err(AccountError::PasswordTooShort)
    } else {
        Ok(())
    }
}

fn check_key_name(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_KEY_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AccountError::BadKeyName);
    }
    Ok(name.to_owned())
}

impl Tenants {
    /// Whether the session `sid` was ended by a logout (its cookie is refused from then on).
    pub async fn session_ended(&self, sid: &str) -> Result<bool, AccountError> {
        Ok(self.storage.session_ended(sid).await?)
    }

    /// Records a logout; the record is kept until `expires_at`, when the token dies anyway.
    pub async fn end_session(&self, sid: &str, expires_at: i64) -> Result<(), AccountError> {
        Ok(self.storage.end_session(sid, expires_at).await?)
    }

    /// The allowed origins as stored, for the owner to edit (the upgrade path reads the cached list).
    pub async fn stored_origins(&self, dev_id: DevId) -> Result<Vec<String>, AccountError> {
        Ok(self.storage.allowed_origins(dev_id).await?)
    }

    /// A new tenant with a password and its first key ("default").
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(AccountRow, String), AccountError> {
        let email = normalize_email(email);
        if !valid_email(&email) {
            return Err(AccountError::InvalidEmail);
        }
        check_password_rules(password)?;
        let hash = hash_password(&self.argon2, password.to_owned()).await?;
        let created = match self.create(&email, Some(&hash)).await {
            Err(TenantError::Storage(StorageError::Conflict(_))) => {
                return Err(AccountError::EmailTaken)
            }
            other => other?,
        };
        let account = self
            .storage
            .account(created.dev_id)
            .await?
            .ok_or(AccountError::BadCredentials)?;
        Ok((account, created.key))
    }

    /// The account whose email and password these are. Every failure is the same error and costs one argon2
    /// verification, so neither the answer nor its timing tells whether the email exists.
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<AccountRow, AccountError> {
        let email = normalize_email(email);
        let account = if password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.storage.account_by_email(&email).await?
        };
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        if verify_password(&self.argon2, password.to_owned(), hash).await? {
            account.ok_or(AccountError::BadCredentials)
        } else {
            Err(AccountError::BadCredentials)
        }
    }

    /// Replaces the password after checking the current one; returns the account with its new hash.
    pub async fn change_password(
        &self,
        dev_id: DevId,
        current: &str,
        new: &str,
    ) -> Result<AccountRow, AccountError> {
        let account = self.account(dev_id).await?;
        if !verify_password(
            &self.argon2,
            current.to_owned(),
            account.password_hash.clone(),
        )
        .await?
        {
            return Err(AccountError::BadCredentials);
        }
        check_password_rules(new)?;
        let hash = hash_password(&self.argon2, new.to_owned()).await?;
        self.storage.set_password_hash(dev_id, &hash).await?;
        Ok(AccountRow {
            password_hash: Some(hash),
            ..account
        })
    }

    /// The tenant's account; `BadCredentials` once the tenant is gone.
    pub async fn account(&self, dev_id: DevId) -> Result<AccountRow, AccountError> {
        self.storage
            .account(dev_id)
            .await?
            .ok_or(AccountError::BadCredentials)
    }

    pub async fn list_keys(&self, dev_id: DevId) -> Result<Vec<KeyInfo>, AccountError> {
        Ok(self
            .storage
            .active_keys(dev_id)
            .await?
            .into_iter()
            .map(|k| KeyInfo {
                id: k.id,
                name: k.name,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
            })
            .collect())
    }

    /// A new named key: its listing and its value in clear.
    pub async fn create_key(
        &self,
        dev_id: DevId,
        name: &str,
    ) -> Result<(KeyInfo, String), AccountError> {
        let name = check_key_name(name)?;
        let key = super::generate_key();
        let now = unix_now();
        let id = self.store_key(dev_id, &name, &key, now).await?;
        let info = KeyInfo {
            id,
            name,
            created_at: now,
            last_used_at: None,
        };
        Ok((info, key))
    }

    /// An active key's value, for its owner only.
    pub async fn reveal_key(&self, dev_id: DevId, key_id: i64) -> Result<String, AccountError> {
        let row = self
            .storage
            .active_key(dev_id, key_id)
            .await?
            .ok_or(AccountError::NoSuchKey)?;
        Ok(self
            .keys
            .open(dev_id, &row.sealed)
            .map_err(TenantError::Key)?)
    }

    /// Revokes a key. The last active key goes only with `confirm_last`, so that an owner never locks their
    /// backend out by accident. The caller closes the CometQL sessions that used it.
    pub async fn revoke_key(
        &self,
        dev_id: DevId,
        key_id: i64,
        confirm_last: bool,
    ) -> Result<(), AccountError> {
        if self
            .storage
            .revoke_key(dev_id, key_id, confirm_last, unix_now())
            .await?
        {
            self.forget_signing_keys(dev_id);
            return Ok(());
        }
        match self.storage.active_key(dev_id, key_id).await? {
            Some(_) => Err(AccountError::LastKey),
            None => Err(AccountError::NoSuchKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert!(matches!(
            check_password_rules("short"),
            Err(AccountError::PasswordTooShort)
        ));
        // Ten characters, counted as characters not bytes.
        assert!(check_password_rules("éééééééééé").is_ok());
        assert!(check_password_rules(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn emails_are_normalized_and_key_names_checked() {
        assert_eq!(normalize_email(" Ann@Example.COM "), "ann@example.com");
        assert_eq!(check_key_name("  prod ").unwrap(), "prod");
        assert!(check_key_name("").is_err());
        assert!(check_key_name("a\nb").is_err());
        assert!(check_key_name(&"k".repeat(65)).is_err());
    }
}
