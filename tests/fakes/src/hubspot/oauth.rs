//! The fake HubSpot's OAuth token endpoint, and its access-token metadata.

use std::collections::HashMap;

use actix_web::HttpResponse;
use chrono::Utc;
use serde_json::json;

use super::{CLIENT_ID, CLIENT_SECRET, Shared};
use crate::token;

pub(super) fn token_endpoint(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return HttpResponse::BadRequest()
            .json(json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}));
    }
    let mut s = state.lock().unwrap();
    let refresh = match get("grant_type") {
        "refresh_token" => {
            let refresh = get("refresh_token").to_string();
            if !s.refresh_tokens.contains(&refresh) {
                return HttpResponse::BadRequest().json(json!({
                    "status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"
                }));
            }
            refresh
        }
        "authorization_code" => {
            if let Err(reason) = s.auth.redeem(&form) {
                let status = if reason == crate::REDIRECT_MISMATCH {
                    "BAD_REDIRECT_URI"
                } else {
                    "BAD_AUTH_CODE"
                };
                return HttpResponse::BadRequest()
                    .json(json!({"status": status, "message": reason}));
            }
            let refresh = token("na1-fake-refresh-");
            s.refresh_tokens.push(refresh.clone());
            refresh
        }
        _ => {
            return HttpResponse::BadRequest()
                .json(json!({"status": "BAD_GRANT_TYPE", "message": "unsupported grant_type"}));
        }
    };
    // A refreshed token acts in its refresh token's portal; a new install in the one picked.
    let portal = s.token_portals.get(&refresh).copied().unwrap_or(s.portal);
    s.token_portals.insert(refresh.clone(), portal);
    let access = token("CN-fake-access-");
    s.token_portals.insert(access.clone(), portal);
    // Any `expires_in` can be announced (even absurd ones); the fake's own clock saturates.
    let expiry = chrono::TimeDelta::try_seconds(s.ttl)
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    s.access_tokens.insert(access.clone(), expiry);
    HttpResponse::Ok().json(json!({
        "token_type": "bearer",
        "refresh_token": refresh,
        "access_token": access,
        "expires_in": s.ttl,
    }))
}

/// `GET /oauth/v1/access-tokens/{token}`: what HubSpot says of an access token — the portal
/// (`hub_id`) it acts in, the app, the scopes, the seconds left. An unknown or expired token is
/// 404.
pub(super) fn token_metadata(state: &Shared, access: &str) -> HttpResponse {
    let s = state.lock().unwrap();
    let (Some(expiry), Some(portal)) = (s.access_tokens.get(access), s.token_portals.get(access))
    else {
        return HttpResponse::NotFound()
            .json(json!({"status": "error", "message": "access token not found", "category": "OBJECT_NOT_FOUND"}));
    };
    let left = (*expiry - Utc::now()).num_seconds();
    if left <= 0 {
        return HttpResponse::NotFound()
            .json(json!({"status": "error", "message": "access token not found", "category": "OBJECT_NOT_FOUND"}));
    }
    HttpResponse::Ok().json(json!({
        "token": access,
        "user": "installer@example.com",
        "user_id": 123456,
        "hub_domain": format!("portal-{portal}.hubspot.com"),
        "hub_id": portal,
        "app_id": super::webhooks::APP_ID,
        "scopes": s.scopes.clone().unwrap_or_else(|| vec!["oauth".to_string()]),
        "token_type": "access",
        "expires_in": left,
    }))
}
