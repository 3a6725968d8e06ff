//! The fake Zoho CRM's accounts server: the OAuth token, revoke and authorization endpoints.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::json;

use super::records::api;
use super::{CLIENT_ID, CLIENT_SECRET, Shared};
use crate::{RequestLog, Served, query_map, token};

fn token_endpoint(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    // Zoho takes the parameters in the query string or a form body.
    let mut form: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    form.extend(serde_urlencoded::from_bytes::<HashMap<String, String>>(body).unwrap_or_default());
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut s = state.lock().unwrap();
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return HttpResponse::Ok().json(json!({"error": "invalid_client"}));
    }
    let mut new_refresh = None;
    let minting = match get("grant_type") {
        "refresh_token" => get("refresh_token").to_string(),
        _ => String::new(),
    };
    match get("grant_type") {
        "refresh_token" if s.refresh_tokens.iter().any(|t| t == get("refresh_token")) => {
            let now = Utc::now();
            let live = s
                .minted_by
                .iter()
                .filter(|(access, by)| {
                    **by == minting && s.access_tokens.get(*access).is_some_and(|e| *e > now)
                })
                .count();
            if live >= s.tokens_per_refresh {
                return HttpResponse::BadRequest().json(json!({
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously. Please try again after some time.",
                    "status": "failure",
                }));
            }
        }
        "authorization_code" => {
            if let Err(reason) = s.auth.redeem(&form) {
                let error = if reason == crate::REDIRECT_MISMATCH {
                    "invalid_redirect_uri"
                } else {
                    "invalid_code"
                };
                return HttpResponse::Ok().json(json!({ "error": error }));
            }
            let refresh = token("1000.fake-refresh.");
            s.refresh_tokens.push(refresh.clone());
            new_refresh = Some(refresh);
        }
        _ => return HttpResponse::Ok().json(json!({"error": "invalid_code"})),
    }
    let access = token("1000.fake-access.");
    let expiry = Utc::now() + chrono::Duration::seconds(s.ttl);
    s.access_tokens.insert(access.clone(), expiry);
    if !minting.is_empty() {
        s.minted_by.insert(access.clone(), minting);
    }
    let mut answer = json!({
        "access_token": access,
        "scope": "ZohoCRM.modules.ALL ZohoCRM.users.READ",
        "api_domain": s.api_domain,
        "token_type": "Bearer",
        "expires_in": s.ttl,
    });
    if let Some(refresh) = new_refresh {
        answer["refresh_token"] = json!(refresh);
    }
    HttpResponse::Ok().json(answer)
}

pub(super) fn serve(state: Shared, log: RequestLog, is_accounts: bool) -> Served {
    Served::answering(log, move |req, body| {
        if !is_accounts {
            return api(&state, req, body);
        }
        match (req.method().as_str(), req.path()) {
            ("POST", "/oauth/v2/token") => token_endpoint(&state, req, body),
            ("POST", "/oauth/v2/token/revoke") => {
                let token = query_map(req).remove("token").unwrap_or_default();
                let mut s = state.lock().unwrap();
                s.refresh_tokens.retain(|t| *t != token);
                s.revoked.push(token);
                HttpResponse::Ok().json(json!({"status": "success"}))
            }
            ("GET", "/oauth/v2/auth") => {
                let mut s = state.lock().unwrap();
                let accounts = s.accounts_url.clone();
                s.auth.authorize(
                    query_map(req),
                    CLIENT_ID,
                    &[("location", "us"), ("accounts-server", &accounts)],
                )
            }
            _ => HttpResponse::NotFound().finish(),
        }
    })
}
