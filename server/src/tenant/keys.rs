//! Secret keys: generation, and sealing at rest under the master key (XChaCha20-Poly1305). A database dump
//! holds only sealed keys and SHA1(SHA1(key)) verifiers; the master key stays in a 0600 file.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

use crate::ids::DevId;

/// Length of a generated secret key (docs/compatibility.md §1: 64 characters of `[A-Za-z0-9]`).
pub(crate) const KEY_LEN: usize = 64;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key file {path}: {reason}")]
    MasterKey { path: String, reason: String },
    #[error("a sealed key could not be opened (wrong master key or tampered row)")]
    Unseal,
}

pub fn generate_key() -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(KEY_LEN)
        .map(char::from)
        .collect()
}

/// A tenant's public Pusher app key: 20 lowercase hex characters, the shape pusher-js and Laravel's
/// configuration expect. Public, so only uniqueness matters; drawn from the OS like the secret keys so that
/// two never meet in practice (the unique index refuses the one in 2^80 that would).
pub fn generate_app_key() -> String {
    let bytes: [u8; 10] = OsRng.gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The master key, able to seal and open tenants' keys. Holds no other state.
#[derive(Clone)]
pub struct KeyBox {
    cipher: XChaCha20Poly1305,
    /// Kept only to derive other secrets from (`derive`), so a deployment has one secret file to protect.
    master: [u8; 32],
}

impl std::fmt::Debug for KeyBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBox(..)")
    }
}

impl KeyBox {
    pub fn from_bytes(key: &[u8; 32]) -> KeyBox {
        KeyBox {
            cipher: XChaCha20Poly1305::new(key.into()),
            master: *key,
        }
    }

    /// Reads the master key (64 hex digits) from `path`, creating it with mode 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<KeyBox, KeyError> {
        let err = |reason: String| KeyError::MasterKey {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(
                            path = %path.display(),
                            "the master key file is readable by other users: chmod 600 it"
                        );
                    }
                }
                let bytes = decode_hex(text.trim())
                    .ok_or_else(|| err("expected 64 hexadecimal digits".into()))?;
                Ok(KeyBox::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                write_private(path, encode_hex(&key).as_bytes()).map_err(|e| err(e.to_string()))?;
                Ok(KeyBox::from_bytes(&key))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// A 32-byte secret for another purpose, HMAC-SHA256(master key, label): each label gives an independent
    /// key, and nodes that share the master key agree on it without another file.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.master)
            .expect("HMAC accepts a key of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The tenant's id is bound into the ciphertext so a sealed key cannot be moved to another tenant's row.
    pub fn seal(&self, dev_id: DevId, key: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(dev_id);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a short buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, dev_id: DevId, sealed: &[u8]) -> Result<String, KeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyError::Unseal);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let aad = aad(dev_id);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| KeyError::Unseal)?;
        String::from_utf8(plain).map_err(|_| KeyError::Unseal)
    }
}

fn aad(dev_id: DevId) -> Vec<u8> {
    format!("halley-tenant-key:{}", dev_id.0).into_bytes()
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_and_alphanumeric() {
        let k = generate_key();
        assert_eq!(k.len(), KEY_LEN);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(k, generate_key());
    }

    #[test]
    fn app_keys_are_twenty_lowercase_hex_characters() {
        let k = generate_app_key();
        assert_eq!(k.len(), 20);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(k, generate_app_key());
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let kb = KeyBox::from_bytes(&[7; 32]);
        let sealed = kb.seal(DevId(1), "secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(kb.open(DevId(1), &sealed).unwrap(), "secret");
        assert!(kb.open(DevId(2), &sealed).is_err(), "bound to its tenant");
        assert!(KeyBox::from_bytes(&[8; 32])
            .open(DevId(1), &sealed)
            .is_err());
        assert!(kb.open(DevId(1), &sealed[..10]).is_err());
    }

    #[test]
    fn master_key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("halley-mk-{}", generate_key()));
        let path = dir.join("master.key");
        let a = KeyBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = KeyBox::load_or_create(&path).unwrap();
        assert_eq!(b.open(DevId(3), &a.seal(DevId(3), "k")).unwrap(), "k");
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        std::fs::write(&path, "zz").unwrap();
        assert!(KeyBox::load_or_create(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
