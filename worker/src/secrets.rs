//! Secrets at rest: an AES-256-GCM keyring and the generated key files of the embedded mode.
//!
//! A sealed value is `{key_id}:{base64(nonce || ciphertext || tag)}`. The associated data binds
//! it to its tenant, purpose and row, so a ciphertext copied anywhere else fails to open.
//! Nothing here logs or formats a plaintext.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("encryption key '{0}' is not in the keyring (TRIBUTARY_ENCRYPTION_KEYS)")]
    UnknownKey(String),
    #[error("a sealed secret failed to decrypt: wrong key, or it belongs to another row")]
    Tampered,
    #[error("a sealed secret is malformed")]
    Malformed,
}

/// Where a sealed secret belongs. Part of the AEAD's associated data.
pub struct SecretContext<'a> {
    pub tenant_id: &'a str,
    /// What the secret is, e.g. `stripe_account.secret_key`.
    pub purpose: &'a str,
    /// The row that holds it.
    pub row_id: &'a str,
}

impl SecretContext<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "tributary/v1|{}|{}|{}",
            self.tenant_id, self.purpose, self.row_id
        )
        .into_bytes()
    }
}

/// Keys by id; the first configured key seals, all of them open.
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `id1:base64key,id2:base64key`; each key is 32 bytes, the first is current.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| format!("entry {} is not of the form id:base64key", index + 1))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "entry {}: key id must be 1-32 letters, digits, '-' or '_'",
                    index + 1
                ));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("key '{id}' is not valid base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "key '{id}' is {} bytes; AES-256 needs exactly 32",
                    bytes.len()
                ));
            }
            if keys.iter().any(|(existing, _)| existing == id) {
                return Err(format!("key id '{id}' appears twice"));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| "bad key length")?;
            keys.push((id.to_string(), cipher));
        }
        if keys.is_empty() {
            return Err("no keys given".into());
        }
        Ok(Keyring { keys })
    }

    pub fn current_key_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Encrypts under the current key with a fresh random nonce.
    pub fn seal(&self, plaintext: &str, context: &SecretContext<'_>) -> String {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = context.aad();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{id}:{}", STANDARD.encode(blob))
    }

    pub fn open(
        &self,
        sealed: &str,
        context: &SecretContext<'_>,
    ) -> Result<SecretString, SecretError> {
        let (id, encoded) = sealed.split_once(':').ok_or(SecretError::Malformed)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(key_id, _)| key_id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_string()))?;
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let aad = context.aad();
        let plaintext = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Tampered)?;
        let text = String::from_utf8(plaintext).map_err(|_| SecretError::Malformed)?;
        Ok(SecretString::from(text))
    }

    /// The id of the key a sealed value was made with.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split_once(':').map(|(id, _)| id)
    }
}

/// The last four characters of a secret: all the API ever shows of it.
pub fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A URL-safe random token with `N` bytes of entropy.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// A secret made on first start in the data directory because configuration gave none.
pub struct GeneratedFile {
    pub path: PathBuf,
    pub created: bool,
}

/// Reads the key file in `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create_keyring_file(
    data_dir: &Path,
) -> std::io::Result<(SecretString, GeneratedFile)> {
    load_or_create(data_dir, "encryption.keys", || {
        let id = format!("k{}", chrono::Utc::now().format("%Y%m%d"));
        format!("{id}:{}", STANDARD.encode(random_bytes::<32>()))
    })
}

/// Reads the JWT secret file in `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create_jwt_file(data_dir: &Path) -> std::io::Result<(SecretString, GeneratedFile)> {
    load_or_create(data_dir, "jwt.secret", || {
        URL_SAFE_NO_PAD.encode(random_bytes::<48>())
    })
}

fn load_or_create(
    data_dir: &Path,
    name: &str,
    generate: impl FnOnce() -> String,
) -> std::io::Result<(SecretString, GeneratedFile)> {
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok((
            SecretString::from(content.trim().to_string()),
            GeneratedFile {
                path,
                created: false,
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let value = generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path)?;
            file.write_all(value.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((
                SecretString::from(value),
                GeneratedFile {
                    path,
                    created: true,
                },
            ))
        }
        Err(e) => Err(e),
    }
}

/// Exposes a secret's text for the one place that needs it (signing, calling a vendor).
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

/// A secret from its setting, or else from its generated file in the data directory, with
/// one warning that production must supply it.
pub fn configured_or_generated(
    configured: &Option<SecretString>,
    settings: &crate::settings::Settings,
    what: &str,
    variable: &str,
    load: fn(&std::path::Path) -> std::io::Result<(SecretString, GeneratedFile)>,
) -> anyhow::Result<(SecretString, String)> {
    if let Some(secret) = configured {
        return Ok((secret.clone(), variable.to_string()));
    }
    let (secret, file) = anyhow::Context::with_context(load(&settings.data_dir), || {
        format!(
            "TRIBUTARY_DATA_DIR: cannot read or create the {what} file in {}",
            settings.data_dir.display()
        )
    })?;
    let verb = if file.created {
        "generated"
    } else {
        "using generated"
    };
    tracing::warn!(
        "{verb} {what} file {}; production must set {variable} instead",
        file.path.display()
    );
    Ok((secret, file.path.display().to_string()))
}

/// Loads the keyring from `TRIBUTARY_ENCRYPTION_KEYS`, or the generated key file.
pub fn load_keyring(settings: &crate::settings::Settings) -> anyhow::Result<Keyring> {
    let (spec, source) = configured_or_generated(
        &settings.encryption_keys,
        settings,
        "encryption key",
        "TRIBUTARY_ENCRYPTION_KEYS",
        load_or_create_keyring_file,
    )?;
    Keyring::parse(expose(&spec)).map_err(|e| anyhow::anyhow!("{source}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn ctx<'a>(tenant: &'a str, row: &'a str) -> SecretContext<'a> {
        SecretContext {
            tenant_id: tenant,
            purpose: "stripe_account.secret_key",
            row_id: row,
        }
    }

    #[test]
    fn seal_then_open_round_trips_and_nonces_differ() {
        let ring = Keyring::parse(&format!("a:{}", key(1))).unwrap();
        let one = ring.seal("sk_test_123", &ctx("t1", "r1"));
        let two = ring.seal("sk_test_123", &ctx("t1", "r1"));
        assert_ne!(one, two, "a fresh nonce per value");
        assert!(one.starts_with("a:"));
        assert!(!one.contains("sk_test_123"));
        let opened = ring.open(&one, &ctx("t1", "r1")).unwrap();
        assert_eq!(opened.expose_secret(), "sk_test_123");
    }

    #[test]
    fn another_tenant_row_or_purpose_fails() {
        let ring = Keyring::parse(&format!("a:{}", key(1))).unwrap();
        let sealed = ring.seal("whsec_abc", &ctx("t1", "r1"));
        assert!(matches!(
            ring.open(&sealed, &ctx("t2", "r1")),
            Err(SecretError::Tampered)
        ));
        assert!(matches!(
            ring.open(&sealed, &ctx("t1", "r2")),
            Err(SecretError::Tampered)
        ));
        let other_purpose = SecretContext {
            tenant_id: "t1",
            purpose: "webhook_secret.secret",
            row_id: "r1",
        };
        assert!(matches!(
            ring.open(&sealed, &other_purpose),
            Err(SecretError::Tampered)
        ));
    }

    #[test]
    fn old_keys_open_and_a_removed_key_fails_loudly() {
        let old = Keyring::parse(&format!("old:{}", key(1))).unwrap();
        let sealed = old.seal("sk_live_x", &ctx("t", "r"));
        let both = Keyring::parse(&format!("new:{},old:{}", key(2), key(1))).unwrap();
        assert_eq!(both.current_key_id(), "new");
        assert_eq!(
            both.open(&sealed, &ctx("t", "r")).unwrap().expose_secret(),
            "sk_live_x"
        );
        let resealed = both.seal("sk_live_x", &ctx("t", "r"));
        assert_eq!(Keyring::key_id_of(&resealed), Some("new"));
        let only_new = Keyring::parse(&format!("new:{}", key(2))).unwrap();
        let err = only_new.open(&sealed, &ctx("t", "r")).unwrap_err();
        assert!(err.to_string().contains("'old'"), "{err}");
    }

    #[test]
    fn keyring_spec_errors_are_explained() {
        assert!(Keyring::parse("").is_err());
        assert!(
            Keyring::parse("nokey")
                .unwrap_err()
                .contains("id:base64key")
        );
        assert!(Keyring::parse("a:!!!").unwrap_err().contains("base64"));
        assert!(
            Keyring::parse(&format!("a:{}", STANDARD.encode([0u8; 16])))
                .unwrap_err()
                .contains("32")
        );
        assert!(
            Keyring::parse(&format!("a:{},a:{}", key(1), key(2)))
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::parse(&format!("a:{}", key(7))).unwrap();
        let debug = format!("{ring:?}");
        assert!(debug.contains("\"a\""));
        assert!(!debug.contains(&key(7)));
    }

    #[test]
    fn last4_of_short_and_long() {
        assert_eq!(last4("sk_test_abcd1234"), "1234");
        assert_eq!(last4("ab"), "ab");
    }
}
