//! The fake Salesforce's login server: the token endpoint (refresh token, authorization code and JWT bearer grants) and revocation.

use std::collections::HashMap;

use actix_web::HttpResponse;
use chrono::Utc;
use serde_json::{Value, json};

use super::answers::oauth_error;
use super::{API_USER_ID, CLIENT_ID, CLIENT_SECRET, Shared, TEST_PUBLIC_KEY_PEM, USERNAME};
use crate::token;

pub(super) fn login(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut s = state.lock().unwrap();
    let mut new_refresh = None;
    let scope = match get("grant_type") {
        "refresh_token" => {
            if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if !s.refresh_tokens.iter().any(|t| t == get("refresh_token")) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
            if s.rotate {
                // Refresh token rotation: the old one is spent, a new one comes back.
                let old = get("refresh_token").to_string();
                s.refresh_tokens.retain(|t| *t != old);
                let refresh = token("5Aep861-fake-rotated-");
                s.refresh_tokens.push(refresh.clone());
                new_refresh = Some(refresh);
            }
            "api refresh_token"
        }
        "authorization_code" => {
            if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if let Err(reason) = s.auth.redeem(&form) {
                if reason == crate::REDIRECT_MISMATCH {
                    return oauth_error(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                return oauth_error("invalid_grant", &reason);
            }
            let refresh = token("5Aep861-fake-refresh-");
            s.refresh_tokens.push(refresh.clone());
            new_refresh = Some(refresh);
            "api refresh_token offline_access"
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            if let Err(response) = check_assertion(get("assertion"), &s.login_url) {
                return response;
            }
            "api"
        }
        other => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("grant type not supported: {other}"),
            );
        }
    };
    let access = token("00D000000000001!fake-session-");
    s.sessions.insert(access.clone(), true);
    let issued = Utc::now().timestamp_millis().to_string();
    let mut answer = json!({
        "access_token": access,
        "instance_url": s.instance_url,
        "id": format!("{}/id/00D000000000001AAA/{API_USER_ID}", s.login_url),
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": "ZmFrZS1zaWduYXR1cmU=",
        "scope": scope,
    });
    if let Some(refresh) = new_refresh {
        answer["refresh_token"] = json!(refresh);
    }
    HttpResponse::Ok().json(answer)
}

pub(super) fn revoke(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let token = form.get("token").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.refresh_tokens.retain(|t| *t != token);
    s.sessions.remove(&token);
    s.revoked.push(token);
    HttpResponse::Ok().finish()
}

fn check_assertion(assertion: &str, login_url: &str) -> Result<(), HttpResponse> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes()).expect("the test key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims = match decode::<Value>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(oauth_error(
                "invalid_grant",
                &format!("invalid assertion: {e}"),
            ));
        }
    };
    if claims.get("iss").and_then(Value::as_str) != Some(CLIENT_ID) {
        return Err(oauth_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(login_url) {
        return Err(oauth_error("invalid_grant", "audience is invalid"));
    }
    if claims.get("sub").and_then(Value::as_str) != Some(USERNAME) {
        return Err(oauth_error(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp > Utc::now().timestamp() + 185 {
        return Err(oauth_error(
            "invalid_grant",
            "expiration time is too far in the future",
        ));
    }
    Ok(())
}
