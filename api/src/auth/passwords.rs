//! argon2id password hashing, off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use secrecy::{ExposeSecret, SecretString};

pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose_secret()))
        .await
        .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))?
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// Verifies `password` against a PHC string. Always does the full argon2 work, so callers
/// can pass a dummy hash for unknown accounts and take the same time.
pub async fn verify(password: SecretString, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password with the same parameters as real ones, verified against
/// when an email is unknown so that a miss costs what a wrong password costs.
pub fn dummy_hash() -> String {
    let random = crate::secrets::random_token::<24>();
    hash_blocking(&random).expect("argon2 with default parameters cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let phc = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify(SecretString::from("correct horse battery"), phc.clone()).await);
        assert!(!verify(SecretString::from("wrong"), phc).await);
        assert!(!verify(SecretString::from("x"), "not a phc".into()).await);
    }
}
