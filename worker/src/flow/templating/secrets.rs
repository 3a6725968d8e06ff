//! The generated secrets of a render: `password()` and `token(n)`, derived from the run's seed.

use std::sync::Mutex;

use minijinja::value::Value;
use minijinja::{Error, ErrorKind, State};

/// Where `password()` and `token(n)` find their seed in the context; templates cannot name it
/// (validation refuses unknown variables).
pub(super) const GENERATOR: &str = "__generator";
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// The generated secrets of one render: derived from the run's seed and a name, so the same
/// name gives the same value in every step and on every attempt, and nothing is stored.
#[derive(Debug)]
pub(super) struct Generator {
    pub(super) seed: Option<String>,
    pub(super) made: Mutex<Vec<String>>,
}

impl minijinja::value::Object for Generator {}

impl Generator {
    fn bytes(&self, kind: &str, name: &str, len: usize) -> Option<Vec<u8>> {
        use hmac::{Hmac, Mac};
        let seed = self.seed.as_deref()?;
        let mut out = Vec::with_capacity(len);
        let mut block = 0u32;
        while out.len() < len {
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(seed.as_bytes()).expect("any key length");
            mac.update(format!("{kind}|{name}|{block}").as_bytes());
            out.extend_from_slice(&mac.finalize().into_bytes());
            block += 1;
        }
        out.truncate(len);
        Some(out)
    }

    fn keep(&self, value: String) -> String {
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(value.clone());
        value
    }
}

fn generator(state: &State) -> Option<Value> {
    state.lookup(GENERATOR)
}

/// `password(name='password')`: 20 letters and digits, without look-alikes.
pub(super) fn password(state: &State, name: Option<String>) -> Result<String, Error> {
    let name = name.unwrap_or_else(|| "password".into());
    let Some(value) = generator(state) else {
        return Ok("[generated password]".into());
    };
    let Some(generator) = value.downcast_object_ref::<Generator>() else {
        return Ok("[generated password]".into());
    };
    match generator.bytes("password", &name, 20) {
        Some(bytes) => Ok(generator.keep(
            bytes
                .iter()
                .map(|b| PASSWORD_ALPHABET[*b as usize % PASSWORD_ALPHABET.len()] as char)
                .collect(),
        )),
        None => Ok("[generated password]".into()),
    }
}

/// `token(n=32, name='token')`: `n` hex characters (8 to 128).
pub(super) fn token(state: &State, n: Option<u32>, name: Option<String>) -> Result<String, Error> {
    let n = n.unwrap_or(32);
    if !(8..=128).contains(&n) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("token(n): n must be from 8 to 128, not {n}"),
        ));
    }
    let name = name.unwrap_or_else(|| "token".into());
    let placeholder = || "[generated token]".to_string();
    let Some(value) = generator(state) else {
        return Ok(placeholder());
    };
    let Some(generator) = value.downcast_object_ref::<Generator>() else {
        return Ok(placeholder());
    };
    match generator.bytes("token", &name, (n as usize).div_ceil(2)) {
        Some(bytes) => {
            let mut text = hex::encode(bytes);
            text.truncate(n as usize);
            Ok(generator.keep(text))
        }
        None => Ok(placeholder()),
    }
}

/// The secrets `password()` and `token(n)` made while rendering against `root` (a context from
/// [`context`](super::context)), to keep them out of what is stored.
pub fn generated(root: &Value) -> Vec<String> {
    root.get_attr(GENERATOR)
        .ok()
        .and_then(|value| {
            value
                .downcast_object_ref::<Generator>()
                .map(|g| g.made.lock().unwrap_or_else(|e| e.into_inner()).clone())
        })
        .unwrap_or_default()
}
