//! Random secrets and their hashes: API keys (`cvk_…`), refresh tokens (`cvr_…`), ids. A secret of
//! 256 random bits is stored as its SHA-256 (a fast hash is right for it; Argon2id is for
//! passwords, which are guessable).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of personal API keys.
pub const API_KEY_PREFIX: &str = "cvk_";
/// The prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "cvr_";

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// `prefix` followed by 256 random bits, base64url (43 characters).
pub fn random_token(prefix: &str) -> Result<String, getrandom::Error> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// SHA-256 of `secret`, lowercase hex (what is stored and looked up).
pub fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether two byte strings are equal, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `token` has the shape of a secret made by [`random_token`] with `prefix`.
pub fn looks_like(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed_to_hex() {
        let a = random_token(API_KEY_PREFIX).unwrap();
        let b = random_token(API_KEY_PREFIX).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 47);
        assert!(looks_like(&a, API_KEY_PREFIX));
        assert!(!looks_like(&a, REFRESH_PREFIX));
        assert!(!looks_like("cvk_short", API_KEY_PREFIX));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
