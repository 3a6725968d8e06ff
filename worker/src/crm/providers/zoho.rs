//! Zoho CRM: refresh tokens or OAuth, at the accounts server of the org's data centre; the API
//! at the domain the token answer names.

use serde_json::{Map, Value};

use super::spec::{
    Hosts, Kind, OAuth, OAuthEndpoints, Problem, Provider, Revoke, form, scopes, text,
};

/// Zoho data centres: name → accounts server.
pub const DATA_CENTERS: &[(&str, &str)] = &[
    ("us", "https://accounts.zoho.com"),
    ("eu", "https://accounts.zoho.eu"),
    ("in", "https://accounts.zoho.in"),
    ("au", "https://accounts.zoho.com.au"),
    ("jp", "https://accounts.zoho.jp"),
    ("ca", "https://accounts.zohocloud.ca"),
    ("cn", "https://accounts.zoho.com.cn"),
];

/// The accounts servers of [`DATA_CENTERS`], in the same order.
const ACCOUNTS_SERVERS: &[&str] = &[
    DATA_CENTERS[0].1,
    DATA_CENTERS[1].1,
    DATA_CENTERS[2].1,
    DATA_CENTERS[3].1,
    DATA_CENTERS[4].1,
    DATA_CENTERS[5].1,
    DATA_CENTERS[6].1,
];
pub static PROVIDER: Provider = Provider {
    name: "zoho",
    auth_types: &["refresh_token", "oauth"],
    settings: &[
        ("data_center", Kind::DataCenter),
        ("accounts_url", Kind::Url),
        ("api_version", Kind::ApiVersion),
        ("search_before_write", Kind::Bool),
        ("scopes", Kind::Scopes),
        ("timeout_seconds", Kind::Seconds),
    ],
    required: &[],
    check,
    check_all: None,
    hosts: Hosts::Domains(&[
        "zoho.com",
        "zoho.eu",
        "zoho.in",
        "zoho.com.au",
        "zoho.jp",
        "zohocloud.ca",
        "zoho.com.cn",
        "zohoapis.com",
        "zohoapis.eu",
        "zohoapis.in",
        "zohoapis.com.au",
        "zohoapis.jp",
        "zohoapis.ca",
        "zohoapis.com.cn",
    ]),
    stores_records: true,
    api_version: Some((valid_version, "must look like v8")),
    auth_scheme: "Zoho-oauthtoken",
    pasted_token_is_session: false,
    oauth: Some(&OAuth {
        endpoints,
        token_setting: "accounts_url",
        token_setting_from: Some("data_center"),
        token_endpoint: accounts_url,
        token_url: |endpoint| format!("{}/oauth/v2/token", endpoint.trim_end_matches('/')),
        official_token_endpoints: ACCOUNTS_SERVERS,
        api_host_field: Some("api_domain"),
        callback_servers: ACCOUNTS_SERVERS,
        revoke,
        operator_env: [
            "TRIBUTARY_OAUTH_ZOHO_CLIENT_ID",
            "TRIBUTARY_OAUTH_ZOHO_CLIENT_SECRET",
            "TRIBUTARY_OAUTH_ZOHO_ACCOUNTS_URL",
        ],
    }),
    // `data_center` and `accounts_url` name the same thing: compared as one, the accounts
    // server in effect.
    destinations: |settings| vec![("accounts_url", Some(accounts_url(settings)))],
};

fn check(settings: &Map<String, Value>, problems: &mut Vec<Problem>) {
    if settings.contains_key("data_center") && settings.contains_key("accounts_url") {
        problems.push((
            "settings.accounts_url".into(),
            "give either data_center or accounts_url, not both".into(),
        ));
    }
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// A Zoho connection's accounts server: `accounts_url`, else its `data_center`'s.
pub fn accounts_url(settings: &Map<String, Value>) -> String {
    if let Some(url) = text(settings, "accounts_url") {
        return url.to_string();
    }
    text(settings, "data_center")
        .and_then(|dc| DATA_CENTERS.iter().find(|(name, _)| *name == dc))
        .map_or(DATA_CENTERS[0].1, |(_, url)| url)
        .to_string()
}

fn endpoints(settings: &Map<String, Value>) -> OAuthEndpoints {
    let accounts = accounts_url(settings);
    OAuthEndpoints {
        authorize_url: format!("{accounts}/oauth/v2/auth"),
        token_url: format!("{accounts}/oauth/v2/token"),
        scopes: scopes(settings, &["ZohoCRM.modules.ALL", "ZohoCRM.users.READ"]),
        pkce: true,
        extra: vec![("access_type", "offline"), ("prompt", "consent")],
    }
}

fn revoke(settings: &Map<String, Value>, refresh_token: &str) -> Revoke {
    Revoke {
        delete: false,
        url: format!(
            "{}/oauth/v2/token/revoke?{}",
            accounts_url(settings),
            form("token", refresh_token)
        ),
        form: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_data_centre_is_an_accounts_server() {
        let servers: Vec<&str> = super::DATA_CENTERS.iter().map(|(_, url)| *url).collect();
        assert_eq!(servers, super::ACCOUNTS_SERVERS);
    }
}
