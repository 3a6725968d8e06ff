//! What Tributary knows of each provider before talking to it: the providers and their auth
//! types, connection statuses, the vendors' own hosts and token endpoints. A leaf: settings,
//! the schema, the adapters and the api read it, and it reads nothing of theirs.

/// HubSpot's API.
pub const HUBSPOT_BASE_URL: &str = "https://api.hubapi.com";
/// HubSpot's OAuth token endpoint.
pub const HUBSPOT_TOKEN_URL: &str = "https://api.hubapi.com/oauth/v1/token";
/// Salesforce's production login host.
pub const SALESFORCE_LOGIN_URL: &str = "https://login.salesforce.com";
/// The Salesforce sandbox login server, the other endpoint Salesforce runs for every org.
pub const SALESFORCE_TEST_LOGIN_URL: &str = "https://test.salesforce.com";

/// Providers and the auth types each accepts (DESIGN.md, Connections).
pub const PROVIDERS: &[(&str, &[&str])] = &[
    ("sandbox", &["none"]),
    ("hubspot", &["token", "refresh_token", "oauth"]),
    ("salesforce", &["refresh_token", "jwt_bearer", "oauth"]),
    ("zoho", &["refresh_token", "oauth"]),
    ("http", &["none", "token", "basic", "header", "hmac"]),
    // Not a CRM: the mail server of `email` flow steps.
    ("smtp", &["none", "basic"]),
];

/// Whether a provider's connections store records (CRM writes go there); `smtp` only sends mail.
pub fn stores_records(provider: &str) -> bool {
    provider != "smtp"
}

/// A connection's statuses: `active`; `pending_authorization` until an OAuth consent completes;
/// `needs_reauth` when the vendor refused its credentials; `paused` while a rate limit holds it;
/// `disabled` by the tenant.
pub const CONNECTION_STATUSES: &[&str] = &[
    "active",
    "pending_authorization",
    "needs_reauth",
    "paused",
    "disabled",
];

/// Zoho data centres: name → accounts server.
pub const ZOHO_DATA_CENTERS: &[(&str, &str)] = &[
    ("us", "https://accounts.zoho.com"),
    ("eu", "https://accounts.zoho.eu"),
    ("in", "https://accounts.zoho.in"),
    ("au", "https://accounts.zoho.com.au"),
    ("jp", "https://accounts.zoho.jp"),
    ("ca", "https://accounts.zohocloud.ca"),
    ("cn", "https://accounts.zoho.com.cn"),
];

/// The token URL a value of that setting leads to (what `oauth_endpoints` and the adapters'
/// refreshes post to).
pub fn token_url_of(provider: &str, endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    match provider {
        "salesforce" => format!("{endpoint}/services/oauth2/token"),
        "zoho" => format!("{endpoint}/oauth/v2/token"),
        _ => endpoint.to_string(),
    }
}

/// The vendor's own values of that setting: the only ones, with the operator's configured
/// one, that the operator's OAuth app is ever sent to. Salesforce My Domain hosts are not
/// among them: a My Domain is named by the tenant and serves the org's own code (Apex REST,
/// Sites) under paths the tenant chooses, so a tenant on one brings their own connected app.
pub fn official_token_endpoints(provider: &str) -> Vec<&'static str> {
    match provider {
        "hubspot" => vec![HUBSPOT_TOKEN_URL],
        "salesforce" => vec![SALESFORCE_LOGIN_URL, SALESFORCE_TEST_LOGIN_URL],
        "zoho" => ZOHO_DATA_CENTERS.iter().map(|(_, url)| *url).collect(),
        _ => Vec::new(),
    }
}

/// The token URLs the operator's OAuth app for `provider` may be sent to: the vendor's own,
/// and the one the operator configured (`configured`, a value of the provider's token
/// endpoint setting).
pub fn operator_token_urls(provider: &str, configured: Option<&str>) -> Vec<String> {
    official_token_endpoints(provider)
        .into_iter()
        .chain(configured)
        .map(|endpoint| token_url_of(provider, endpoint))
        .collect()
}
