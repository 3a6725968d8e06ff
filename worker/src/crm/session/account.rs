//! Which of the vendor's accounts a connection's token acts in, asked of the vendor where its
//! webhooks are routed by account (HubSpot's token metadata: the portal's hub id). Kept as the
//! connection's `vendor_account`.

use std::time::Duration;

use serde_json::{Map, Value};

/// The largest answer read: token metadata is a few hundred bytes.
const ANSWER_LIMIT: usize = 64 * 1024;

/// The account `access_token` acts in, as the vendor of `connection` says it; `None` for a
/// vendor Tributary does not ask, or when the vendor does not say (logged as a warning: the
/// caller leaves the account unknown, to be asked again at the next token).
pub async fn account_of(
    http: &reqwest::Client,
    connection: &entity::connections::Model,
    settings: &Map<String, Value>,
    access_token: &str,
    timeout: Duration,
) -> Option<String> {
    match ask(http, &connection.provider, settings, access_token, timeout).await {
        Ok(account) => account,
        Err(error) => {
            tracing::warn!(connection_id = %connection.id, %error, "the vendor did not say which account the token acts in");
            None
        }
    }
}

/// The `GET` of `provider`'s [`crate::crm::providers::AccountLookup`]; `Ok(None)` for a vendor
/// Tributary does not ask. Errors never name the token, which the URL carries.
async fn ask(
    http: &reqwest::Client,
    provider: &str,
    settings: &Map<String, Value>,
    access_token: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let Some(lookup) = crate::crm::providers::get(provider)
        .and_then(|p| p.oauth)
        .and_then(|o| o.account)
    else {
        return Ok(None);
    };
    let response = http
        .get((lookup.url)(settings, access_token))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("the vendor could not be asked ({})", e.without_url()))?;
    let status = response.status();
    let body = crate::net::read_limited(response, ANSWER_LIMIT)
        .await
        .map_err(|_| "the vendor's answer could not be read to the end".to_string())?;
    if !status.is_success() {
        return Err(format!("the vendor answered {status}"));
    }
    let answer: Value =
        serde_json::from_slice(&body).map_err(|_| "the vendor's answer is not JSON".to_string())?;
    (lookup.read)(&answer)
        .map(Some)
        .ok_or_else(|| "the vendor's answer names no account".to_string())
}
