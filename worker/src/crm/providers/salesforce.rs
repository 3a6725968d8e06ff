//! Salesforce: refresh tokens, the JWT bearer flow, or OAuth; the API at the org's instance
//! URL, which the token answer names.

use serde_json::{Map, Value};

use super::spec::{
    Hosts, Kind, OAuth, OAuthEndpoints, Provider, Revoke, form, no_check, scopes, text, url_setting,
};

/// Salesforce's production login host.
pub const LOGIN_URL: &str = "https://login.salesforce.com";
/// The Salesforce sandbox login server, the other endpoint Salesforce runs for every org.
pub const TEST_LOGIN_URL: &str = "https://test.salesforce.com";

pub static PROVIDER: Provider = Provider {
    name: "salesforce",
    auth_types: &["refresh_token", "jwt_bearer", "oauth"],
    settings: &[
        ("login_url", Kind::Url),
        ("api_version", Kind::ApiVersion),
        ("won_stage", Kind::Text),
        ("record_type_id", Kind::Text),
        ("record_type", Kind::Text),
        ("scopes", Kind::Scopes),
        ("timeout_seconds", Kind::Seconds),
        ("rate_limit", Kind::RateLimit),
        ("edition", Kind::Edition),
        ("licenses", Kind::Licenses),
        ("daily_limit", Kind::DailyLimit),
        ("daily_reserve_percent", Kind::ReservePercent),
        ("max_concurrent_requests", Kind::Concurrency),
        ("corporate_currency", Kind::Currency),
        ("exchange_rates", Kind::RateTable),
        ("stripe_prices", Kind::PriceTable),
        ("watch", Kind::Objects),
        ("poll_seconds", Kind::PollInterval),
        ("integration_user_id", Kind::Text),
        ("organization_id", Kind::Text),
        ("csm_field", Kind::Text),
    ],
    required: &[],
    check: no_check,
    check_all: None,
    hosts: Hosts::Domains(&["salesforce.com", "force.com", "salesforce.mil"]),
    stores_records: true,
    api_version: Some((valid_version, "must look like 60.0")),
    auth_scheme: "Bearer",
    pasted_token_is_session: false,
    // Salesforce My Domain hosts are not among the official token endpoints: a My Domain is
    // named by the tenant and serves the org's own code (Apex REST, Sites) under paths the
    // tenant chooses, so a tenant on one brings their own connected app.
    oauth: Some(&OAuth {
        endpoints,
        token_setting: "login_url",
        token_setting_from: None,
        token_endpoint,
        token_url: |endpoint| format!("{}/services/oauth2/token", endpoint.trim_end_matches('/')),
        official_token_endpoints: &[LOGIN_URL, TEST_LOGIN_URL],
        api_host_field: Some("instance_url"),
        callback_servers: &[],
        revoke,
        operator_env: [
            "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_ID",
            "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET",
            "TRIBUTARY_OAUTH_SALESFORCE_LOGIN_URL",
        ],
        account: None,
    }),
    destinations: |settings| vec![url_setting(settings, "login_url", Some(LOGIN_URL))],
    record_link,
};

fn valid_version(v: &str) -> bool {
    v.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty() && major.chars().all(|c| c.is_ascii_digit()) && minor == "0"
    })
}

fn token_endpoint(settings: &Map<String, Value>) -> String {
    text(settings, "login_url").unwrap_or(LOGIN_URL).to_string()
}

fn endpoints(settings: &Map<String, Value>) -> OAuthEndpoints {
    let login = token_endpoint(settings);
    OAuthEndpoints {
        authorize_url: format!("{login}/services/oauth2/authorize"),
        token_url: format!("{login}/services/oauth2/token"),
        scopes: scopes(settings, &["api", "refresh_token", "offline_access"]),
        pkce: true,
        extra: Vec::new(),
    }
}

fn revoke(settings: &Map<String, Value>, refresh_token: &str) -> Revoke {
    Revoke {
        delete: false,
        url: format!("{}/services/oauth2/revoke", token_endpoint(settings)),
        form: Some(form("token", refresh_token)),
    }
}

/// A record in Lightning Experience, on the org's own host (the token answer's
/// `instance_url`, kept as `vendor_info.api_base` when a token is issued).
fn record_link(
    _settings: &super::spec::Settings,
    info: &Map<String, Value>,
    object: &str,
    id: &str,
) -> Option<String> {
    let base = info.get("api_base").and_then(Value::as_str)?;
    let url = reqwest::Url::parse(base).ok()?;
    let host = url.host_str().filter(|_| url.scheme() == "https")?;
    let (object, id) = (
        super::spec::path_segment(object)?,
        super::spec::path_segment(id)?,
    );
    Some(format!("https://{host}/lightning/r/{object}/{id}/view"))
}
