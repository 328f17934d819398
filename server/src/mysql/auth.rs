//! `mysql_native_password`: the client proves it knows the key without sending it.
//!
//! `scramble = SHA1(key) XOR SHA1(salt + SHA1(SHA1(key)))`. The server keeps only the verifier
//! `SHA1(SHA1(key))`: from the scramble it recovers a candidate `SHA1(key)` and checks that hashing it
//! gives the verifier.

use rand::Rng;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::packet::PacketWriter;
use super::wire::put_nul_str;
use super::{NATIVE_PASSWORD, SALT_LEN};

/// What the server stores for a key: `SHA1(SHA1(key))`.
pub fn verifier(key: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[key])])
}

/// Whether `response` is the scramble of the key behind `verifier` for this `salt`. The comparison is
/// constant time; only a response or a verifier that is not 20 bytes long is refused early. The verifier
/// is a slice so that one read from storage (`Vec<u8>`) can be passed as is.
pub fn check_scramble(salt: &[u8; SALT_LEN], response: &[u8], verifier: &[u8]) -> bool {
    let (Ok(response), true) = (<&[u8; 20]>::try_from(response), verifier.len() == 20) else {
        return false;
    };
    let mask = sha1(&[salt, verifier]);
    let mut candidate = [0u8; 20];
    for (c, (m, r)) in candidate.iter_mut().zip(mask.iter().zip(response)) {
        *c = m ^ r;
    }
    sha1(&[&candidate]).ct_eq(verifier).into()
}

/// What a client sends for `password` (an empty password is sent as an empty response, not this).
pub fn scramble(salt: &[u8; SALT_LEN], password: &[u8]) -> [u8; 20] {
    let stage1 = sha1(&[password]);
    let mask = sha1(&[salt, &sha1(&[&stage1])]);
    let mut out = [0u8; 20];
    for (o, (s, m)) in out.iter_mut().zip(stage1.iter().zip(mask)) {
        *o = s ^ m;
    }
    out
}

/// A fresh random salt. Bytes are 1..=127, as MySQL does, so clients that copy it as a C string (or as
/// text) keep all 20 bytes.
pub fn new_salt() -> [u8; SALT_LEN] {
    let mut rng = rand::thread_rng();
    let mut salt = [0u8; SALT_LEN];
    for b in &mut salt {
        *b = rng.gen_range(1..=127);
    }
    salt
}

/// AuthSwitchRequest: asks the client to answer with a `mysql_native_password` scramble of `salt`.
pub fn auth_switch_request(w: &mut PacketWriter, salt: &[u8; SALT_LEN]) {
    w.packet_with(|out| {
        out.push(0xFE);
        put_nul_str(out, NATIVE_PASSWORD.as_bytes());
        put_nul_str(out, salt);
    });
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8; 20] = b"ABCDEFGHIJKLMNOPQRST";

    #[test]
    fn verifier_is_double_sha1() {
        // mysql_native_password of "password" is the well-known *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19.
        let known: String = verifier(b"password")
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(known, "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
    }

    #[test]
    fn scramble_checks_against_the_verifier() {
        let v = verifier(b"secret-key");
        let s = scramble(SALT, b"secret-key");
        assert!(check_scramble(SALT, &s, &v));
        assert!(!check_scramble(SALT, &scramble(SALT, b"secret-kez"), &v));
        assert!(!check_scramble(b"ABCDEFGHIJKLMNOPQRSU", &s, &v));
        assert!(!check_scramble(SALT, &s[..19], &v));
        assert!(!check_scramble(SALT, b"", &v));
        assert!(!check_scramble(SALT, &s, &v[..19]));
        let stored: Vec<u8> = v.to_vec(); // as read from storage
        assert!(check_scramble(SALT, &s, &stored));
        let mut flipped = s;
        flipped[7] ^= 1;
        assert!(!check_scramble(SALT, &flipped, &v));
    }

    #[test]
    fn scramble_matches_a_literal_vector() {
        // Computed independently: python3 -c "import pymysql; print(pymysql._auth.scramble_native_password(
        //   b'secret-key', b'ABCDEFGHIJKLMNOPQRST').hex())"
        let hex: String = scramble(SALT, b"secret-key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, PYMYSQL_VECTOR);
    }

    const PYMYSQL_VECTOR: &str = "d73e224a97036c68bbf0dd30bc0375c5c7c103b5";

    #[test]
    fn salts_are_fresh_printable_and_never_nul() {
        let a = new_salt();
        let b = new_salt();
        assert_ne!(a, b);
        assert!(a.iter().chain(&b).all(|&x| (1..=127).contains(&x)));
    }

    #[test]
    fn auth_switch_request_bytes() {
        let mut w = PacketWriter::new();
        w.set_seq(2);
        auth_switch_request(&mut w, SALT);
        let mut want = b"\x2c\x00\x00\x02\xfemysql_native_password\x00".to_vec();
        want.extend_from_slice(SALT);
        want.push(0);
        assert_eq!(w.as_bytes(), &want[..]);
    }
}
