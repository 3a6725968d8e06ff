//! JWT access tokens: HS256 only, with `exp`, `iat`, `aud` and `iss` required and checked.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "tributary";
pub const AUDIENCE: &str = "tributary-api";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's tenant.
    pub tid: String,
    /// The session (refresh-token family) the token belongs to; revoking the session stops
    /// the token at its next request.
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Fails only for an empty secret, which the settings already refuse.
    pub fn new(secret: &SecretString, ttl: Duration) -> anyhow::Result<Self> {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        validation.leeway = 5;
        Ok(JwtKeys {
            encoding: EncodingKey::from_secret(bytes).context("the JWT secret")?,
            decoding: DecodingKey::from_secret(bytes).context("the JWT secret")?,
            validation,
            ttl,
        })
    }

    /// A signed access token for a user's session and its lifetime in seconds.
    pub fn issue(
        &self,
        user_id: &str,
        tenant_id: &str,
        session_id: &str,
    ) -> anyhow::Result<(String, u64)> {
        let now = chrono::Utc::now().timestamp();
        let ttl = self.ttl.as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            tid: tenant_id.to_string(),
            sid: session_id.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + ttl as i64,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, ttl))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret), Duration::from_secs(900)).unwrap()
    }

    fn forge(secret: &str, claims: serde_json::Value, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut base = serde_json::json!({
            "sub": "u", "tid": "t", "sid": "s", "iss": ISSUER, "aud": AUDIENCE,
            "iat": now, "exp": now + 600, "jti": "j"
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify() {
        let k = keys(SECRET);
        let (token, ttl) = k.issue("user-1", "tenant-1", "session-1").unwrap();
        assert_eq!(ttl, 900);
        let c = k.verify(&token).unwrap();
        assert_eq!((c.sub.as_str(), c.tid.as_str()), ("user-1", "tenant-1"));
        assert_eq!(c.sid, "session-1");
    }

    #[test]
    fn alg_none_wrong_key_expired_wrong_audience_issuer_and_missing_claims_fail() {
        let k = keys(SECRET);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string());
        assert!(k.verify(&format!("{header}.{body}.")).is_err(), "alg=none");
        assert!(
            k.verify(&forge(
                "another-secret-another-secret-xx",
                claims(serde_json::json!({})),
                Algorithm::HS256
            ))
            .is_err(),
            "wrong key"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({})),
                Algorithm::HS512
            ))
            .is_err(),
            "other algorithm"
        );
        let past = chrono::Utc::now().timestamp() - 3600;
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"exp": past})),
                Algorithm::HS256
            ))
            .is_err(),
            "expired"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"aud": "other"})),
                Algorithm::HS256
            ))
            .is_err(),
            "audience"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"iss": "other"})),
                Algorithm::HS256
            ))
            .is_err(),
            "issuer"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"iat": null})),
                Algorithm::HS256
            ))
            .is_err(),
            "no iat"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"exp": null})),
                Algorithm::HS256
            ))
            .is_err(),
            "no exp"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({"sid": null})),
                Algorithm::HS256
            ))
            .is_err(),
            "no session"
        );
        assert!(
            k.verify(&forge(
                SECRET,
                claims(serde_json::json!({})),
                Algorithm::HS256
            ))
            .is_ok(),
            "control"
        );
    }
}
