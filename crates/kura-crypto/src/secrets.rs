//! Passwords (Argon2id) and bearer secrets (sessions, API tokens, bootstrap).
//!
//! Argon2id parameters follow OWASP's password storage guidance
//! (m = 19 MiB, t = 2, p = 1 is the minimum; we use m = 19 MiB, t = 2, p = 1).
//! Bearer secrets carry 256 bits of randomness, so a single SHA-256 is enough
//! to store them: only the digest is kept, never the secret.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hash,
}

fn argon2() -> Argon2<'static> {
    // Parameters are constants within argon2's accepted ranges.
    let params = Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password into a PHC string. CPU-heavy: call from a blocking pool.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Verify a password against a PHC string. A malformed hash verifies as false.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A fresh 256-bit secret, URL-safe base64 without padding, with a prefix
/// naming its kind (so leaked secrets are recognizable by scanners).
pub fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// The digest under which a bearer secret is stored and looked up.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of a session, derived from the session secret so that
/// server-rendered pages can embed it without storing it: only someone who
/// holds the (HttpOnly) session cookie can compute it.
pub fn csrf_for(session_token: &str) -> String {
    let d = Sha256::digest([b"kura-csrf-v1\0".as_slice(), session_token.as_bytes()].concat());
    format!(
        "kcsrf_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
    )
}

/// Constant-time equality for secrets.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not-a-hash"));
    }

    #[test]
    fn tokens_are_random_and_digested() {
        let a = random_token("kst");
        let b = random_token("kst");
        assert_ne!(a, b);
        assert!(a.starts_with("kst_"));
        assert_eq!(token_digest(&a).len(), 64);
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
    }
}
