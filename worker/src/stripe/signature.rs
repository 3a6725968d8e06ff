//! The `Stripe-Signature` check and signer, byte-for-byte as Stripe's official SDKs do it; owns
//! header parsing, secret rotation and the timestamp tolerance, never parses the body, and never
//! puts a secret or an expected signature into an error.
//!
//! The recipe: `v1 = lowercase hex(HMAC-SHA256(key = whole secret incl. "whsec_", msg = "{t}.{raw
//! body}"))`. Where the SDKs disagree we follow stripe-python and stripe-node (the majority, and
//! the two the project's vectors were checked with):
//!
//! - **Future timestamps are accepted.** python, node and go only reject `t` older than
//!   `now - tolerance`; only the unofficial async-stripe rejects the future. Replays are stopped
//!   by the inbox's unique Stripe event id, not by this check.
//! - **A zero tolerance disables the age check** (python's `if tolerance and …`, node's
//!   `tolerance > 0 && …`). Ingress passes [`DEFAULT_TOLERANCE`]; zero is for re-verifying stored
//!   deliveries and fixed test vectors.
//! - **Age equal to the tolerance passes**; one second more is stale (`age > tolerance`).
//! - **Signature before age**: a stale request with a wrong signature is reported as not matching.
//! - **Header parsing**: split on `,`, each element at its first `=`; keys are compared exactly
//!   (so `t=…, v1=…` with a space has no `v1` and is rejected, as every SDK does); elements
//!   without `=` (except a bare `t` or `v1`, which is malformed) and unknown schemes (`v0`, …)
//!   are ignored; the first `t` wins (python); its
//!   value may carry surrounding whitespace and is re-printed canonically (`t=0012` signs as
//!   `12.`), as python's `int()` and node's `parseInt` do. `v1` values are compared exactly, so
//!   uppercase hex does not match (python, node). Whitespace around the whole header is HTTP
//!   optional whitespace and is trimmed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// Stripe's own default tolerance (`DEFAULT_TOLERANCE = 300` in every official SDK): how old a
/// signed timestamp may be before the delivery is refused as a possible replay.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const EXPECTED_SCHEME: &str = "v1";

/// Why a webhook delivery failed verification. Every message is fit for a problem+json `detail`
/// shown to whoever sent the request: none names a secret or the signature we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or an empty one.
    #[error(
        "no Stripe-Signature header value was provided; \
         is this request really from Stripe?"
    )]
    MissingHeader,
    /// The header has no usable timestamp.
    #[error(
        "the Stripe-Signature header is malformed: {reason}; \
         expected `t=<unix seconds>,v1=<hex signature>`"
    )]
    MalformedHeader {
        /// What is wrong with it, without echoing the header.
        reason: &'static str,
    },
    /// The header has a timestamp but no signature with the `v1` scheme (e.g. only `v0`).
    #[error("the Stripe-Signature header has no signature with the expected scheme v1")]
    NoV1Signature,
    /// The Stripe account has no signing secret to check against.
    #[error(
        "no webhook signing secret is configured for this Stripe account; \
         add the endpoint's `whsec_…` secret to verify deliveries"
    )]
    NoSigningSecret,
    /// The signature matches but its timestamp is older than the tolerance.
    #[error(
        "the Stripe-Signature timestamp is {age_secs} seconds old, \
         outside the tolerance of {tolerance_secs} seconds"
    )]
    TimestampOutsideTolerance {
        /// How many seconds before "now" the request was signed.
        age_secs: i64,
        /// The tolerance it was checked against, in whole seconds.
        tolerance_secs: u64,
    },
    /// No `v1` signature matches the payload under any configured secret.
    #[error(
        "no signature in the Stripe-Signature header matches the payload under the configured \
         signing secret(s); check the endpoint's secret and that the body is passed unmodified"
    )]
    NoMatchingSignature,
}

/// Verifies a delivery the way Stripe's SDKs do and returns the signed timestamp `t`.
///
/// `payload` must be the raw request body, before any JSON parsing: re-serialising changes the
/// bytes and breaks the signature. The delivery is genuine if any `v1` value matches any of
/// `secrets` (several during rotation; empty strings are ignored). See the module docs for
/// future timestamps (accepted), a zero `tolerance` (no age check) and whitespace.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[&str],
    tolerance: Duration,
    now_unix: i64,
) -> Result<i64, SignatureError> {
    let parsed = parse_header(header)?;

    let mut secrets = secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .peekable();
    if secrets.peek().is_none() {
        return Err(SignatureError::NoSigningSecret);
    }
    let mut matched = Choice::from(0);
    for secret in secrets {
        let expected = compute_signature(parsed.timestamp, payload, secret);
        for candidate in &parsed.signatures {
            matched |= expected.as_bytes().ct_eq(candidate.as_bytes());
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatchingSignature);
    }

    if !tolerance.is_zero() {
        let age = now_unix.saturating_sub(parsed.timestamp);
        if let Ok(age_secs) = u64::try_from(age)
            && Duration::from_secs(age_secs) > tolerance
        {
            return Err(SignatureError::TimestampOutsideTolerance {
                age_secs: age,
                tolerance_secs: tolerance.as_secs(),
            });
        }
    }
    Ok(parsed.timestamp)
}

/// Signs `payload` at time `t` exactly as Stripe does, giving the `Stripe-Signature` value
/// `t={t},v1={hex}` (no `v0`, like the SDKs' test-header helpers). Used by tests and by "send a
/// test event", so those deliveries go through the real verification path, and to sign alert
/// webhooks, so tenants verify them with the code they have for Stripe.
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    format!(
        "t={t},{EXPECTED_SCHEME}={}",
        compute_signature(t, payload, secret)
    )
}

struct ParsedHeader<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

fn parse_header(header: Option<&str>) -> Result<ParsedHeader<'_>, SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|header| !header.is_empty())
        .ok_or(SignatureError::MissingHeader)?;

    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in header.split(',') {
        let Some((key, value)) = element.split_once('=') else {
            match element {
                "t" => {
                    return Err(SignatureError::MalformedHeader {
                        reason: "its timestamp `t` has no value",
                    });
                }
                EXPECTED_SCHEME => {
                    return Err(SignatureError::MalformedHeader {
                        reason: "a `v1` element has no value",
                    });
                }
                _ => continue,
            }
        };
        match key {
            "t" if timestamp.is_none() => timestamp = Some(parse_timestamp(value)?),
            EXPECTED_SCHEME => signatures.push(value),
            _ => {}
        }
    }

    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader {
        reason: "it has no timestamp `t=`",
    })?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

fn parse_timestamp(value: &str) -> Result<i64, SignatureError> {
    value
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedHeader {
            reason: "its timestamp `t` is not a whole number of seconds",
        })
}

fn compute_signature(t: i64, payload: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests;
