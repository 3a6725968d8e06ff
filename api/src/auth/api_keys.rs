//! API keys: `trb_{prefix}_{secret}` with a 12-character lookup prefix and 256 random bits.

use subtle::ConstantTimeEq;

pub const KEY_SCHEME: &str = "trb_";

pub struct NewKey {
    pub prefix: String,
    /// The whole key, shown to its creator once.
    pub key: String,
    pub hash: String,
}

pub fn generate() -> NewKey {
    let prefix = hex::encode(tributary_worker::secrets::random_bytes::<6>());
    let secret = tributary_worker::secrets::random_token::<32>();
    let key = format!("{KEY_SCHEME}{prefix}_{secret}");
    let hash = super::token_hash(&key);
    NewKey { prefix, key, hash }
}

/// The lookup prefix of a presented key, if it has the right shape.
pub fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_SCHEME)?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && secret.len() >= 43).then_some(prefix)
}

/// Compares a presented key with a stored hash in constant time.
pub fn matches(key: &str, stored_hash: &str) -> bool {
    super::token_hash(key)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match() {
        let k = generate();
        assert!(k.key.starts_with("trb_"));
        assert_eq!(prefix_of(&k.key), Some(k.prefix.as_str()));
        assert!(matches(&k.key, &k.hash));
        assert!(!matches(&format!("{}x", k.key), &k.hash));
        assert_ne!(generate().key, k.key);
        assert_eq!(prefix_of("trb_short"), None);
        assert_eq!(prefix_of("Bearer"), None);
    }
}
