//! Credentials: argon2id passwords, JWT access tokens, rotating refresh tokens, API keys and
//! the failed-login throttle. Nothing here knows about HTTP.

pub mod api_keys;
pub mod passwords;
pub mod seats;
pub mod throttle;
pub mod tokens;

use sha2::{Digest, Sha256};

/// SHA-256 of a high-entropy token, hex. Tokens are random 256-bit values, so a fast hash is
/// enough; passwords, which are not, use argon2id.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
