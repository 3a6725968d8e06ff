//! Zoho CRM: refresh tokens or OAuth, at the accounts server of the org's data centre; the API
//! at the domain the token answer names, or that domain's sandbox or developer twin
//! (`environment`). Changes come back through the Notifications API (`notifications: true`,
//! a channel per connection) or by polling `Modified_Time` (`watch`, `poll_seconds`).

use serde_json::{Map, Value};

use super::spec::{
    Hosts, Kind, OAuth, OAuthEndpoints, Problem, Provider, Revoke, form, scopes, text,
};

/// One Zoho data centre, as the official CRM SDK lists it: its `location` code, accounts
/// server, and the API domains of its production, sandbox and developer environments.
pub struct DataCentre {
    pub name: &'static str,
    pub accounts: &'static str,
    pub production: &'static str,
    pub sandbox: &'static str,
    pub developer: &'static str,
}

const fn centre(
    name: &'static str,
    accounts: &'static str,
    production: &'static str,
    sandbox: &'static str,
    developer: &'static str,
) -> DataCentre {
    DataCentre {
        name,
        accounts,
        production,
        sandbox,
        developer,
    }
}

/// Zoho's data centres (NOTIFICATIONS.md §6; CA's accounts server is `zohocloud.ca`).
pub const CENTRES: &[DataCentre] = &[
    centre(
        "us",
        "https://accounts.zoho.com",
        "https://www.zohoapis.com",
        "https://sandbox.zohoapis.com",
        "https://developer.zohoapis.com",
    ),
    centre(
        "eu",
        "https://accounts.zoho.eu",
        "https://www.zohoapis.eu",
        "https://sandbox.zohoapis.eu",
        "https://developer.zohoapis.eu",
    ),
    centre(
        "in",
        "https://accounts.zoho.in",
        "https://www.zohoapis.in",
        "https://sandbox.zohoapis.in",
        "https://developer.zohoapis.in",
    ),
    centre(
        "au",
        "https://accounts.zoho.com.au",
        "https://www.zohoapis.com.au",
        "https://sandbox.zohoapis.com.au",
        "https://developer.zohoapis.com.au",
    ),
    centre(
        "jp",
        "https://accounts.zoho.jp",
        "https://www.zohoapis.jp",
        "https://sandbox.zohoapis.jp",
        "https://developer.zohoapis.jp",
    ),
    centre(
        "ca",
        "https://accounts.zohocloud.ca",
        "https://www.zohoapis.ca",
        "https://sandbox.zohoapis.ca",
        "https://developer.zohoapis.ca",
    ),
    centre(
        "cn",
        "https://accounts.zoho.com.cn",
        "https://www.zohoapis.com.cn",
        "https://sandbox.zohoapis.com.cn",
        "https://developer.zohoapis.com.cn",
    ),
    centre(
        "sa",
        "https://accounts.zoho.sa",
        "https://www.zohoapis.sa",
        "https://sandbox.zohoapis.sa",
        "https://developer.zohoapis.sa",
    ),
];

/// Zoho data centres: name → accounts server.
pub const DATA_CENTERS: &[(&str, &str)] = &[
    (CENTRES[0].name, CENTRES[0].accounts),
    (CENTRES[1].name, CENTRES[1].accounts),
    (CENTRES[2].name, CENTRES[2].accounts),
    (CENTRES[3].name, CENTRES[3].accounts),
    (CENTRES[4].name, CENTRES[4].accounts),
    (CENTRES[5].name, CENTRES[5].accounts),
    (CENTRES[6].name, CENTRES[6].accounts),
    (CENTRES[7].name, CENTRES[7].accounts),
];

/// The accounts servers of [`DATA_CENTERS`], in the same order.
const ACCOUNTS_SERVERS: &[&str] = &[
    CENTRES[0].accounts,
    CENTRES[1].accounts,
    CENTRES[2].accounts,
    CENTRES[3].accounts,
    CENTRES[4].accounts,
    CENTRES[5].accounts,
    CENTRES[6].accounts,
    CENTRES[7].accounts,
];

/// The values of the `environment` setting; the first is the default.
pub const ENVIRONMENTS: &[&str] = &["production", "sandbox", "developer"];

pub static PROVIDER: Provider = Provider {
    name: "zoho",
    auth_types: &["refresh_token", "oauth"],
    settings: &[
        ("data_center", Kind::DataCenter),
        ("accounts_url", Kind::Url),
        ("api_version", Kind::ApiVersion),
        ("environment", Kind::Text),
        ("search_before_write", Kind::Bool),
        ("scopes", Kind::Scopes),
        ("timeout_seconds", Kind::Seconds),
        ("rate_limit", Kind::RateLimit),
        ("edition", Kind::Edition),
        ("licenses", Kind::Licenses),
        ("daily_limit", Kind::DailyLimit),
        ("daily_reserve_percent", Kind::ReservePercent),
        ("corporate_currency", Kind::Currency),
        ("exchange_rates", Kind::RateTable),
        ("watch", Kind::Objects),
        ("notifications", Kind::Bool),
        ("poll_seconds", Kind::PollInterval),
        ("integration_user_id", Kind::Text),
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
        "zoho.sa",
        "zohoapis.com",
        "zohoapis.eu",
        "zohoapis.in",
        "zohoapis.com.au",
        "zohoapis.jp",
        "zohoapis.ca",
        "zohoapis.com.cn",
        "zohoapis.sa",
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
        account: None,
    }),
    // `data_center` and `accounts_url` name the same thing: compared as one, the accounts
    // server in effect. The environment says which API host the access tokens go to, and a
    // refresh token is minted for one environment: a change needs the credentials again.
    destinations: |settings| {
        vec![
            ("accounts_url", Some(accounts_url(settings))),
            ("environment", Some(environment(settings).to_string())),
        ]
    },
    record_link: super::spec::no_link,
};

fn check(settings: &Map<String, Value>, problems: &mut Vec<Problem>) {
    if settings.contains_key("data_center") && settings.contains_key("accounts_url") {
        problems.push((
            "settings.accounts_url".into(),
            "give either data_center or accounts_url, not both".into(),
        ));
    }
    if let Some(value) = settings.get("environment")
        && !value.as_str().is_some_and(|e| ENVIRONMENTS.contains(&e))
    {
        problems.push((
            "settings.environment".into(),
            format!("must be one of {}", ENVIRONMENTS.join(", ")),
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

/// A connection's `environment`: `production` (the default), `sandbox` or `developer`.
pub fn environment(settings: &Map<String, Value>) -> &str {
    text(settings, "environment")
        .filter(|e| ENVIRONMENTS.contains(e))
        .unwrap_or(ENVIRONMENTS[0])
}

/// Whether the connection hears of changes through a notification channel rather than by
/// polling.
pub fn notifications(settings: &Map<String, Value>) -> bool {
    settings
        .get("notifications")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The API domain of `environment` in the data centre whose production API domain is
/// `api_domain` (the token answer's). Production keeps `api_domain` as it is; a sandbox or
/// developer environment needs `api_domain` to be one of Zoho's production domains, and
/// `None` says it is not.
pub fn environment_domain(api_domain: &str, environment: &str) -> Option<String> {
    let api_domain = api_domain.trim_end_matches('/');
    if environment == ENVIRONMENTS[0] {
        return Some(api_domain.to_string());
    }
    let centre = CENTRES
        .iter()
        .find(|c| c.production == api_domain || [c.sandbox, c.developer].contains(&api_domain))?;
    match environment {
        "sandbox" => Some(centre.sandbox.to_string()),
        "developer" => Some(centre.developer.to_string()),
        _ => None,
    }
}

fn endpoints(settings: &Map<String, Value>) -> OAuthEndpoints {
    let accounts = accounts_url(settings);
    OAuthEndpoints {
        authorize_url: format!("{accounts}/oauth/v2/auth"),
        token_url: format!("{accounts}/oauth/v2/token"),
        scopes: scopes(
            settings,
            &[
                "ZohoCRM.modules.ALL",
                "ZohoCRM.users.READ",
                "ZohoCRM.settings.fields.READ",
                "ZohoCRM.notifications.ALL",
            ],
        ),
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
    use serde_json::json;

    use super::*;

    #[test]
    fn every_data_centre_is_an_accounts_server() {
        let servers: Vec<&str> = super::DATA_CENTERS.iter().map(|(_, url)| *url).collect();
        assert_eq!(servers, super::ACCOUNTS_SERVERS);
        assert_eq!(CENTRES.len(), DATA_CENTERS.len());
        for (c, (name, accounts)) in CENTRES.iter().zip(DATA_CENTERS) {
            assert_eq!((c.name, c.accounts), (*name, *accounts));
        }
    }

    #[test]
    fn the_environment_picks_the_data_centres_api_host() {
        let eu = "https://www.zohoapis.eu";
        assert_eq!(environment_domain(eu, "production").as_deref(), Some(eu));
        assert_eq!(
            environment_domain(eu, "sandbox").as_deref(),
            Some("https://sandbox.zohoapis.eu")
        );
        assert_eq!(
            environment_domain("https://www.zohoapis.com.au/", "developer").as_deref(),
            Some("https://developer.zohoapis.com.au")
        );
        assert_eq!(
            environment_domain("https://www.zohoapis.ca", "sandbox").as_deref(),
            Some("https://sandbox.zohoapis.ca")
        );
        // Every data centre has its own sandbox and developer hosts.
        for c in CENTRES {
            let tld = c.production.trim_start_matches("https://www.zohoapis.");
            assert_eq!(c.sandbox, format!("https://sandbox.zohoapis.{tld}"));
            assert_eq!(c.developer, format!("https://developer.zohoapis.{tld}"));
            assert_eq!(
                environment_domain(c.sandbox, "production").unwrap(),
                c.sandbox
            );
        }
        // Not a Zoho API domain: no sandbox to be found for it.
        assert_eq!(environment_domain("http://127.0.0.1:9", "sandbox"), None);
        assert_eq!(
            environment_domain("http://127.0.0.1:9", "production").as_deref(),
            Some("http://127.0.0.1:9")
        );
    }

    #[test]
    fn the_environment_setting_is_checked_and_defaults_to_production() {
        let settings = |v: Value| v.as_object().cloned().unwrap();
        let mut problems = Vec::new();
        check(&settings(json!({"environment": "sandbox"})), &mut problems);
        check(
            &settings(json!({"environment": "developer"})),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        check(&settings(json!({"environment": "staging"})), &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "settings.environment");
        assert_eq!(environment(&Map::new()), "production");
        assert_eq!(
            environment(&settings(json!({"environment": "sandbox"}))),
            "sandbox"
        );
        let destinations = (PROVIDER.destinations)(&settings(json!({"environment": "sandbox"})));
        assert_ne!(destinations, (PROVIDER.destinations)(&Map::new()));
        assert!(!notifications(&Map::new()));
        assert!(notifications(&settings(json!({"notifications": true}))));
    }
}
