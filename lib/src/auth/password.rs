//! Passwords and the emails they go with: Argon2id hashing (RustCrypto's `argon2`), the rules a new
//! password follows, and the one normal form of an email address.
//!
//! Argon2id v19, m = 19456 KiB, t = 2, p = 1, a 16-byte random salt, a 32-byte hash, stored as a
//! PHC string — the parameters OWASP's Password Storage Cheat Sheet recommends. Hashing takes
//! ~19 MiB and tens of milliseconds of CPU, so it runs on the blocking pool.

use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use unicode_normalization::UnicodeNormalization;

/// Memory cost in KiB.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Passes.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest password accepted, in bytes (Argon2 would take more; nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest email accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// What is wrong with a password or an email, in words for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

fn argon2id() -> Result<Argon2<'static>, argon2::Error> {
    Ok(Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)?,
    ))
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes.
pub fn check_new_password(password: &str) -> Result<(), Rejected> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Rejected(format!(
            "The password is too long: at most {MAX_PASSWORD_BYTES} bytes."
        )));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Rejected(format!(
            "The password is too short: at least {MIN_PASSWORD_CHARS} characters."
        )));
    }
    Ok(())
}

/// The Argon2id hash of `password` (PHC string), computed on the blocking pool.
pub async fn hash(password: &str) -> Result<String, String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| format!("password hashing task failed: {e}"))?
}

fn hash_now(password: &str) -> Result<String, String> {
    argon2id()
        .map_err(|e| e.to_string())?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `stored` (a PHC string), on the blocking pool; `None` for `stored`
/// still spends the same work on a fixed hash, so a missing account takes as long as a wrong
/// password.
pub async fn verify(password: &str, stored: Option<&str>) -> bool {
    let password = password.to_owned();
    let stored = stored.map(str::to_owned);
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify_now(&password, &stored),
        None => {
            if let Some(dummy) = dummy_hash() {
                let _ = verify_now(&password, dummy);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn verify_now(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2id().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Whether `stored` was made with other parameters than today's (it is re-hashed at the next
/// sign-in).
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let current = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).ok();
    parsed.algorithm.as_str() != "argon2id"
        || Params::try_from(&parsed)
            .ok()
            .map(|p| (p.m_cost(), p.t_cost(), p.p_cost()))
            != current.map(|p| (p.m_cost(), p.t_cost(), p.p_cost()))
}

/// A hash of a password nobody has, made once, for sign-ins with an unknown email.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_now("not a password anyone has").ok())
        .as_deref()
}

/// The one form of an email address: trimmed, Unicode NFKC (so full-width letters and the Kelvin
/// sign become ASCII), lowercase. Dots and `+tags` stay (their meaning is the mail provider's).
/// Refused: no `@` or more than one, an empty part, a domain without a dot, whitespace or control
/// characters, more than [`MAX_EMAIL_BYTES`] bytes.
pub fn normalize_email(raw: &str) -> Result<String, Rejected> {
    let email: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    let bad = || Rejected("That is not an email address.".into());
    if email.len() > MAX_EMAIL_BYTES {
        return Err(Rejected(format!(
            "The email address is too long: at most {MAX_EMAIL_BYTES} bytes."
        )));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn emails_have_one_form() {
        for (typed, want) in [
            ("alice@example.com", "alice@example.com"),
            ("  Alice@Example.COM ", "alice@example.com"),
            ("\u{FF21}lice@\u{FF25}xample.com", "alice@example.com"),
            ("\u{212A}im@example.com", "kim@example.com"),
            ("a.b+tag@example.co.uk", "a.b+tag@example.co.uk"),
            ("ﬁnn@example.com", "finn@example.com"),
        ] {
            assert_eq!(normalize_email(typed).unwrap(), want, "{typed:?}");
        }
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a@b@example.com",
            "al ice@example.com",
            "alice@exa\u{0}mple.com",
            "alice@.com",
            "alice@example.com.",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalize_email(&long).unwrap_err().0.contains("too long"));
    }

    #[test]
    fn passwords_have_a_length_range() {
        assert!(check_new_password("123456789").is_err());
        assert!(check_new_password("1234567890").is_ok());
        assert!(
            check_new_password("ééééééééé").is_err(),
            "characters, not bytes"
        );
        assert!(check_new_password(&"x".repeat(1024)).is_ok());
        assert!(check_new_password(&"x".repeat(1025))
            .unwrap_err()
            .0
            .contains("too long"));
    }

    #[tokio::test]
    async fn hashes_verify_with_the_stated_parameters() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", Some(&h)).await);
        assert!(!verify("correct horse battery!", Some(&h)).await);
        assert!(!verify("correct horse battery", None).await);
        assert!(!verify("x", Some("not a hash")).await);
        assert!(!needs_rehash(&h));
        assert!(needs_rehash(
            "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
        ));
        let again = hash("correct horse battery").await.unwrap();
        assert_ne!(h, again, "a fresh salt each time");
    }
}
