//! Dashboard password hashes: argon2id with the `argon2` crate's recommended parameters, in PHC string form,
//! computed through the [`Argon2Gate`] in the memory it lends (so that hashing memory stays bounded).

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::account::AccountError;
use super::argon2_gate::Argon2Gate;
use super::TenantError;

/// The hash of `password` under `salt` with `argon2`'s algorithm, version and `params`, in `memory` (grown
/// to the parameters' size once; the gate keeps it for the next hash).
fn compute<'a>(
    (algorithm, version, params): (Algorithm, Version, Params),
    password: &[u8],
    salt: Salt<'a>,
    memory: &mut Vec<Block>,
) -> password_hash::Result<PasswordHash<'a>> {
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let hash = Output::init_with(out_len, |out| {
        Ok(argon2.hash_password_into_with_memory(
            password,
            salt_bytes,
            out,
            &mut memory[..blocks],
        )?)
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: (&params).try_into()?,
        salt: Some(salt),
        hash: Some(hash),
    })
}

fn new_hash(password: &[u8], memory: &mut Vec<Block>) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    let how = (Algorithm::Argon2id, Version::V0x13, Params::default());
    compute(how, password, salt.as_salt(), memory)
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `hash` (compared in constant time by `Output`).
fn matches(password: &[u8], hash: &str, memory: &mut Vec<Block>) -> bool {
    let mut check = || -> password_hash::Result<bool> {
        let parsed = PasswordHash::new(hash)?;
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v)?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let computed = compute((algorithm, version, params), password, salt, memory)?;
        Ok(computed.hash == Some(expected))
    };
    check().unwrap_or(false)
}

/// A hash of no one's password, checked when the email is unknown so that the answer takes as long.
fn dummy_hash(memory: &mut Vec<Block>) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| new_hash(super::generate_key().as_bytes(), memory).unwrap_or_default())
}

/// argon2 takes tens of milliseconds of CPU and ~19 MiB on purpose: off the async workers, through the gate.
pub(super) async fn hash_password(
    gate: &Argon2Gate,
    password: String,
) -> Result<String, AccountError> {
    gate.run(move |memory| new_hash(password.as_bytes(), memory))
        .await
        .map_err(|_| AccountError::Busy)?
        .flatten()
        .ok_or(AccountError::Tenant(TenantError::Hashing))
}

/// Busy when the gate's queue is full: the caller learns nothing about the password then.
pub(super) async fn verify_password(
    gate: &Argon2Gate,
    password: String,
    hash: Option<String>,
) -> Result<bool, AccountError> {
    let checked = gate.run(move |memory| {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash(memory).to_owned());
        matches(password.as_bytes(), &hash, memory) && known
    });
    Ok(checked
        .await
        .map_err(|_| AccountError::Busy)?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let gate = Argon2Gate::default();
        let hash = hash_password(&gate, "correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let check = |p: &str, h: Option<String>| verify_password(&gate, p.into(), h);
        assert!(check("correct horse", Some(hash.clone())).await.unwrap());
        assert!(!check("wrong horse!", Some(hash.clone())).await.unwrap());
        assert!(!check("anything at all", None).await.unwrap());
        assert!(!check("correct horse", Some("not a hash".into()))
            .await
            .unwrap());
        // The same scheme as the crate's own hasher: stored hashes of either verify with the other.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"other password", &salt)
            .unwrap()
            .to_string();
        assert!(check("other password", Some(theirs)).await.unwrap());
    }
}
