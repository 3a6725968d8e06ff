//! What a connection is made of: its provider, credentials and settings, and the rules that
//! check them. The API validates input with these before anything is stored; the adapters read
//! the same definitions, so the two never disagree on a default.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::providers::{self, Hosts};
pub use super::providers::{Kind, OAuthEndpoints, Problem, text};
use crate::net::is_private_host;
use crate::settings::VendorUrls;

/// The auth types a provider accepts, or `None` for an unknown provider.
pub fn auth_types(provider: &str) -> Option<&'static [&'static str]> {
    providers::get(provider).map(|p| p.auth_types)
}

/// A connection's credentials, as sealed in `connections.credentials`. Debug never shows a
/// secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Credentials {
    None,
    /// A bearer token: a HubSpot private-app token, or an HTTP CRM's API token; for HubSpot,
    /// optionally the app's client secret, which signs its webhooks.
    Token {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
    },
    /// An OAuth client and its refresh token; an access token may be given to start with.
    RefreshToken {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Salesforce's OAuth 2.0 JWT bearer flow: a connected app's consumer key, the integration
    /// user and the private key of the certificate uploaded to the app.
    JwtBearer {
        client_id: String,
        username: String,
        private_key: String,
    },
    /// The OAuth browser flow, not completed yet: the tenant's own client app, or none to use
    /// the operator's. The callback replaces it with `RefreshToken`.
    Oauth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
    },
    Basic {
        username: String,
        password: String,
    },
    /// A fixed header, e.g. `X-Api-Key`.
    Header {
        name: String,
        value: String,
    },
    /// An HMAC-SHA256 of the request body with a shared secret, hex, sent in `header`.
    Hmac {
        secret: String,
        header: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, [redacted])", self.type_name())
    }
}

impl Credentials {
    /// The OAuth app's client secret, where the credentials hold one (it signs HubSpot's
    /// webhooks).
    pub fn client_secret(&self) -> Option<&str> {
        match self {
            Credentials::Token { client_secret, .. } => client_secret.as_deref(),
            Credentials::RefreshToken { client_secret, .. } => Some(client_secret),
            Credentials::Oauth { client_secret, .. } => client_secret.as_deref(),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Token { .. } => "token",
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::JwtBearer { .. } => "jwt_bearer",
            Credentials::Oauth { .. } => "oauth",
            Credentials::Basic { .. } => "basic",
            Credentials::Header { .. } => "header",
            Credentials::Hmac { .. } => "hmac",
        }
    }

    /// Whether a refused token can be replaced without the tenant (refresh or a new assertion).
    pub fn can_refresh(&self) -> bool {
        matches!(
            self,
            Credentials::RefreshToken { .. } | Credentials::JwtBearer { .. }
        )
    }
}

/// How a connection authenticates, as a tenant sends it; `type` decides which other fields
/// are required: `none` (sandbox, http); `token`: `token` (hubspot private app, with its `client_secret` to verify its webhooks;
/// http bearer);
/// `refresh_token`: `client_id`, `client_secret`, `refresh_token`, optionally `access_token`
/// and `expires_at` (hubspot, salesforce, zoho); `jwt_bearer`: `client_id`, `username`,
/// `private_key` (salesforce); `basic`: `username`, `password`; `header`: `name`, `value`;
/// `hmac`: `secret`, `header` (http). Never returned.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInput {
    #[serde(rename = "type")]
    #[schema(example = "token")]
    pub auth_type: Option<String>,
    pub token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub username: Option<String>,
    /// PEM of the certificate's RSA private key (Salesforce JWT bearer flow).
    pub private_key: Option<String>,
    pub password: Option<String>,
    pub name: Option<String>,
    pub value: Option<String>,
    pub secret: Option<String>,
    pub header: Option<String>,
}

impl fmt::Debug for AuthInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthInput({:?}, [redacted])", self.auth_type)
    }
}

/// Checks `auth` for `provider` and builds the credentials; every problem names its field.
pub fn credentials(provider: &str, auth: &AuthInput) -> Result<Credentials, Vec<Problem>> {
    let allowed = auth_types(provider).unwrap_or(&[]);
    let auth_type = auth.auth_type.as_deref().unwrap_or("");
    let mut problems = Vec::new();
    if !allowed.contains(&auth_type) {
        return Err(vec![(
            "auth.type".into(),
            format!("{provider} accepts {}", allowed.join(", ")),
        )]);
    }
    let credentials = build_credentials(auth_type, auth, &mut problems);
    check_foreign_fields(auth_type, auth, &mut problems);
    check_key_formats(auth_type, &credentials, &mut problems);
    if problems.is_empty() {
        Ok(credentials)
    } else {
        Err(problems)
    }
}

/// Builds the credentials of `auth_type` from `auth`, naming each required field that is
/// missing in `problems`.
fn build_credentials(
    auth_type: &str,
    auth: &AuthInput,
    problems: &mut Vec<Problem>,
) -> Credentials {
    let mut take = |name: &str, value: &Option<String>| -> String {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => {
                problems.push((
                    format!("auth.{name}"),
                    format!("is required for {auth_type}"),
                ));
                String::new()
            }
        }
    };
    match auth_type {
        "none" => Credentials::None,
        "token" => Credentials::Token {
            token: take("token", &auth.token),
            client_secret: auth.client_secret.clone().filter(|v| !v.trim().is_empty()),
        },
        "refresh_token" => Credentials::RefreshToken {
            client_id: take("client_id", &auth.client_id),
            client_secret: take("client_secret", &auth.client_secret),
            refresh_token: take("refresh_token", &auth.refresh_token),
            access_token: auth.access_token.clone().filter(|t| !t.trim().is_empty()),
            expires_at: auth.expires_at,
        },
        "jwt_bearer" => Credentials::JwtBearer {
            client_id: take("client_id", &auth.client_id),
            username: take("username", &auth.username),
            private_key: take("private_key", &auth.private_key),
        },
        "oauth" => {
            let client_id = auth.client_id.clone().filter(|v| !v.trim().is_empty());
            let client_secret = auth.client_secret.clone().filter(|v| !v.trim().is_empty());
            match (&client_id, &client_secret) {
                (Some(_), None) => problems.push((
                    "auth.client_secret".into(),
                    "is required with client_id (a tenant-owned app)".into(),
                )),
                (None, Some(_)) => problems.push((
                    "auth.client_id".into(),
                    "is required with client_secret (a tenant-owned app)".into(),
                )),
                _ => {}
            }
            Credentials::Oauth {
                client_id,
                client_secret,
            }
        }
        "basic" => Credentials::Basic {
            username: take("username", &auth.username),
            password: take("password", &auth.password),
        },
        "header" => Credentials::Header {
            name: take("name", &auth.name),
            value: take("value", &auth.value),
        },
        "hmac" => Credentials::Hmac {
            secret: take("secret", &auth.secret),
            header: take("header", &auth.header),
        },
        _ => Credentials::None,
    }
}

/// Names in `problems` each field given in `auth` that is not a field of `auth_type`.
fn check_foreign_fields(auth_type: &str, auth: &AuthInput, problems: &mut Vec<Problem>) {
    // Fields of another type are a mistake worth naming (e.g. a token sent as `value`).
    let given: [(&str, bool); 13] = [
        ("token", auth.token.is_some()),
        ("client_id", auth.client_id.is_some()),
        ("client_secret", auth.client_secret.is_some()),
        ("refresh_token", auth.refresh_token.is_some()),
        ("access_token", auth.access_token.is_some()),
        ("expires_at", auth.expires_at.is_some()),
        ("username", auth.username.is_some()),
        ("private_key", auth.private_key.is_some()),
        ("password", auth.password.is_some()),
        ("name", auth.name.is_some()),
        ("value", auth.value.is_some()),
        ("secret", auth.secret.is_some()),
        ("header", auth.header.is_some()),
    ];
    let used = auth_fields(auth_type);
    for (name, present) in given {
        if present && !used.contains(&name) {
            problems.push((
                format!("auth.{name}"),
                format!("is not a field of {auth_type} credentials"),
            ));
        }
    }
}

/// The fields of `auth` each auth type takes (`none` and unknown types take none).
pub fn auth_fields(auth_type: &str) -> &'static [&'static str] {
    match auth_type {
        "token" => &["token", "client_secret"],
        "refresh_token" => &[
            "client_id",
            "client_secret",
            "refresh_token",
            "access_token",
            "expires_at",
        ],
        "jwt_bearer" => &["client_id", "username", "private_key"],
        "oauth" => &["client_id", "client_secret"],
        "basic" => &["username", "password"],
        "header" => &["name", "value"],
        "hmac" => &["secret", "header"],
        _ => &[],
    }
}

/// Names in `problems` a private key that is not an RSA key in PEM, or a header name that is
/// not a valid HTTP header name.
fn check_key_formats(auth_type: &str, credentials: &Credentials, problems: &mut Vec<Problem>) {
    if let Credentials::JwtBearer { private_key, .. } = credentials
        && !private_key.is_empty()
        && jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).is_err()
    {
        problems.push((
            "auth.private_key".into(),
            "must be the connected app certificate's RSA private key in PEM".into(),
        ));
    }
    if let Credentials::Header { name, .. } | Credentials::Hmac { header: name, .. } = credentials
        && !name.is_empty()
        && reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        let field = if auth_type == "hmac" {
            "header"
        } else {
            "name"
        };
        problems.push((
            format!("auth.{field}"),
            "must be a valid HTTP header name".into(),
        ));
    }
}

/// Hosts a connection may point at under `TRIBUTARY_VENDOR_URLS=official`.
fn official_host(provider: &str, host: &str) -> bool {
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    match providers::get(provider).map(|p| &p.hosts) {
        Some(Hosts::Domains(domains)) => domains.iter().any(|d| under(d)),
        _ => false,
    }
}

/// Checks a vendor URL: http(s), a host, and under `official` a vendor host over https (an
/// HTTP CRM may be any host, but over https and not a private address).
pub fn check_url(provider: &str, url: &str, vendor_urls: VendorUrls) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let Some(host) = parsed.host_str() else {
        return Err("must name a host".into());
    };
    if vendor_urls == VendorUrls::Official {
        if parsed.scheme() != "https" {
            return Err("must use https (TRIBUTARY_VENDOR_URLS=official)".into());
        }
        if matches!(
            providers::get(provider).map(|p| &p.hosts),
            Some(Hosts::AnyPublic)
        ) {
            if is_private_host(host) {
                return Err(
                    "must not be a private or loopback address (TRIBUTARY_VENDOR_URLS=official)"
                        .into(),
                );
            }
        } else if !official_host(provider, host) {
            return Err(format!(
                "must be a {provider} host (TRIBUTARY_VENDOR_URLS=official)"
            ));
        }
    }
    Ok(())
}

/// Checks a provider's settings; unknown keys are refused so typos surface.
pub fn check_settings(
    provider: &str,
    settings: &Map<String, Value>,
    vendor_urls: VendorUrls,
) -> Vec<Problem> {
    let spec = providers::get(provider);
    if let Some(check_all) = spec.and_then(|p| p.check_all) {
        return check_all(settings);
    }
    let kinds = spec.map_or(&[][..], |p| p.settings);
    let mut problems = Vec::new();
    for (key, value) in settings {
        let field = format!("settings.{key}");
        let Some((_, kind)) = kinds.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = kinds.iter().map(|(name, _)| *name).collect();
            problems.push((
                field,
                format!(
                    "unknown setting for {provider}; known: {}",
                    known.join(", ")
                ),
            ));
            continue;
        };
        if let Some(message) = check_value(provider, spec, kind, value, vendor_urls) {
            problems.push((field, message));
        }
    }
    if let Some(spec) = spec {
        for (key, message) in spec.required {
            if !settings.contains_key(*key) {
                problems.push((format!("settings.{key}"), (*message).into()));
            }
        }
        (spec.check)(settings, &mut problems);
    }
    problems
}

/// What is wrong with one setting's value, held to the rule of its `kind`; `None` if nothing.
fn check_value(
    provider: &str,
    spec: Option<&providers::Provider>,
    kind: &Kind,
    value: &Value,
    vendor_urls: VendorUrls,
) -> Option<String> {
    let text = value.as_str();
    match kind {
        Kind::Url => match text {
            Some(url) => check_url(provider, url, vendor_urls).err(),
            None => Some("must be a URL string".into()),
        },
        Kind::Text => match text {
            Some(t) if !t.trim().is_empty() => None,
            _ => Some("must be a non-empty string".into()),
        },
        Kind::Bool => (!value.is_boolean()).then(|| "must be true or false".into()),
        Kind::Seconds => match value.as_u64() {
            Some(1..=300) => None,
            _ => Some("must be a whole number of seconds from 1 to 300".into()),
        },
        Kind::ApiVersion => match spec.and_then(|p| p.api_version) {
            Some((valid, _)) if text.is_some_and(valid) => None,
            Some((_, example)) => Some(example.into()),
            None => Some("is not versioned".into()),
        },
        Kind::DataCenter => check_data_center(text),
        Kind::Headers => check_headers(value),
        Kind::Scopes => check_scopes(value),
        Kind::Pointer => match text {
            Some(p) if p.is_empty() || p.starts_with('/') => None,
            _ => Some("must be a JSON pointer such as /id or /data/id".into()),
        },
        Kind::Host => match text {
            Some(host) if url::Host::parse(host).is_ok() && !host.contains(':') => {
                (vendor_urls == VendorUrls::Official && is_private_host(host)).then(|| {
                    "must not be a private or loopback address (TRIBUTARY_VENDOR_URLS=official)"
                        .into()
                })
            }
            _ => Some("must be a host name or IP address, without a port".into()),
        },
        Kind::Port => match value.as_u64() {
            Some(1..=65_535) => None,
            _ => Some("must be a port number from 1 to 65535".into()),
        },
        Kind::TlsMode => match text {
            Some("none") if vendor_urls == VendorUrls::Official => {
                Some("must be starttls or tls (TRIBUTARY_VENDOR_URLS=official)".into())
            }
            Some("starttls" | "tls" | "none") => None,
            _ => Some("must be starttls, tls or none".into()),
        },
        Kind::Email => match text {
            Some(address) if address.parse::<lettre::Address>().is_ok() => None,
            _ => Some("must be an email address such as billing@example.com".into()),
        },
        Kind::Objects => check_objects(value),
        Kind::PriceTable => check_price_table(value),
        Kind::Currency => (!text.is_some_and(is_currency))
            .then(|| "must be a three-letter currency code such as usd".into()),
        Kind::RateTable => check_rate_table(value),
        Kind::PollInterval => match value.as_u64() {
            Some(10..=86_400) => None,
            _ => Some("must be a whole number of seconds from 10 to 86400".into()),
        },
        Kind::RateLimit => rate_limit(value).err(),
        Kind::Edition => crate::crm::limits::check_edition(provider, value),
        Kind::Licenses => in_range(value, 0, crate::crm::limits::MAX_LICENSES),
        Kind::DailyLimit => in_range(value, 1, crate::crm::limits::MAX_DAILY_LIMIT),
        Kind::ReservePercent => in_range(value, 0, crate::crm::limits::MAX_RESERVE_PERCENT),
        Kind::Concurrency => in_range(value, 1, crate::crm::limits::MAX_CONCURRENT),
    }
}

/// What is wrong with a whole number that must lie from `low` to `high`.
fn in_range(value: &Value, low: u64, high: u64) -> Option<String> {
    match value.as_u64() {
        Some(n) if (low..=high).contains(&n) => None,
        _ => Some(format!("must be a whole number from {low} to {high}")),
    }
}

/// A `rate_limit` setting, `{"requests": 1..=100000, "per_seconds": 1..=86400}`.
pub fn rate_limit(value: &Value) -> Result<crate::budget::Rate, String> {
    let wrong = || {
        "must be {\"requests\": 1 to 100000, \"per_seconds\": 1 to 86400}, e.g. \
         {\"requests\": 100, \"per_seconds\": 10}"
            .to_string()
    };
    let map = value.as_object().ok_or_else(wrong)?;
    if map.keys().any(|k| k != "requests" && k != "per_seconds") {
        return Err(wrong());
    }
    let requests = map.get("requests").and_then(Value::as_u64);
    let seconds = map.get("per_seconds").and_then(Value::as_u64);
    match (requests, seconds) {
        (Some(r @ 1..=100_000), Some(s @ 1..=86_400)) => {
            Ok(crate::budget::Rate::new(r as u32, s * 1000))
        }
        _ => Err(wrong()),
    }
}

/// What is wrong with a Zoho data centre setting: it must name one of the data centres.
fn check_data_center(text: Option<&str>) -> Option<String> {
    let centres = providers::zoho::DATA_CENTERS;
    match text {
        Some(dc) if centres.iter().any(|(name, _)| *name == dc) => None,
        _ => {
            let names: Vec<&str> = centres.iter().map(|(name, _)| *name).collect();
            Some(format!("must be one of {}", names.join(", ")))
        }
    }
}

/// What is wrong with a headers setting: it must map valid header names to strings.
fn check_headers(value: &Value) -> Option<String> {
    match value.as_object() {
        Some(map) => map.iter().find_map(|(name, v)| {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                Some(format!("'{name}' is not a valid header name"))
            } else if !v.is_string() {
                Some(format!("the value of '{name}' must be a string"))
            } else {
                None
            }
        }),
        None => Some("must map header names to values".into()),
    }
}

/// What is wrong with a scopes setting: it must be a non-empty list of scope names.
fn check_scopes(value: &Value) -> Option<String> {
    match value.as_array() {
        Some(items)
            if !items.is_empty()
                && items.iter().all(|i| {
                    i.as_str()
                        .is_some_and(|t| !t.is_empty() && !t.contains(char::is_whitespace))
                }) =>
        {
            None
        }
        _ => Some("must be a list of scope names".into()),
    }
}

/// The OAuth endpoints of a provider's connection, from its settings; `None` for providers
/// without a browser flow.
pub fn oauth_endpoints(provider: &str, settings: &Map<String, Value>) -> Option<OAuthEndpoints> {
    let oauth = providers::get(provider)?.oauth?;
    Some((oauth.endpoints)(settings))
}

/// Checks that a connection using the operator's OAuth app (`app`) gets its tokens only where
/// that app may be sent; the problem names the setting.
pub fn check_operator_endpoint(
    app: &crate::settings::OAuthApp,
    settings: &Map<String, Value>,
) -> Result<(), Problem> {
    let Some(oauth) = providers::get(&app.provider).and_then(|p| p.oauth) else {
        return Ok(());
    };
    let endpoint = (oauth.token_endpoint)(settings);
    if app.may_send_to(&(oauth.token_url)(&endpoint)) {
        return Ok(());
    }
    let field = match oauth.token_setting_from {
        Some(from) if !settings.contains_key(oauth.token_setting) => from,
        _ => oauth.token_setting,
    };
    Err((
        format!("settings.{field}"),
        format!(
            "this server's {} OAuth app is only sent to {}'s own endpoints; to use {endpoint}, \
             bring your own app (auth.client_id and auth.client_secret)",
            app.provider, app.provider
        ),
    ))
}

/// The settings that say where a provider's stored credentials are sent, with the value each
/// has in effect (defaults filled in); a change to one needs the credentials re-entered.
pub fn credential_destinations(
    provider: &str,
    settings: &Map<String, Value>,
) -> Vec<(&'static str, Option<String>)> {
    providers::get(provider).map_or_else(Vec::new, |p| (p.destinations)(settings))
}

/// How long one vendor request may take (`timeout_seconds`, default 30 s).
pub fn timeout(settings: &Map<String, Value>) -> Duration {
    Duration::from_secs(
        settings
            .get("timeout_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(30)
            // Validation allows 1 to 300; a row from before that rule gets no more.
            .clamp(1, 300),
    )
}

fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic())
}

/// Exchange rates: currency → currency → a positive number (or its text), 50 × 50 at most.
fn check_rate_table(value: &Value) -> Option<String> {
    let usage = "must map currencies to currencies to rates, e.g. {\"eur\": {\"usd\": 1.08}}";
    let Some(table) = value.as_object().filter(|t| !t.is_empty() && t.len() <= 50) else {
        return Some(usage.into());
    };
    for (from, row) in table {
        let Some(row) = row.as_object().filter(|r| !r.is_empty() && r.len() <= 50) else {
            return Some(format!("{usage}; {from} has no rates"));
        };
        for (to, rate) in row {
            let number = rate
                .as_f64()
                .or_else(|| rate.as_str().and_then(|t| t.trim().parse::<f64>().ok()));
            let ok = is_currency(from)
                && is_currency(to)
                && number.is_some_and(|n| n.is_finite() && n > 0.0);
            if !ok {
                return Some(format!("{usage}; {from} → {to}: {rate} is not one"));
            }
        }
    }
    None
}

/// Product names to Stripe price ids: text keys, `price_…` values, 1 to 100 of them.
fn check_price_table(value: &Value) -> Option<String> {
    let usage = "must be an object from product names to Stripe price ids, e.g. {\"Pro\": \"price_1PabcDEF\"}";
    let Some(table) = value
        .as_object()
        .filter(|t| !t.is_empty() && t.len() <= 100)
    else {
        return Some(usage.into());
    };
    for (name, price) in table {
        let ok = name.len() <= 255
            && price.as_str().is_some_and(|p| {
                p.starts_with("price_")
                    && p.len() <= 255
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !ok {
            return Some(format!("{usage}; {name:?} → {price} is not one"));
        }
    }
    None
}

/// A list of object names to watch: identifiers (letters, digits, `_`), 1 to 10 of them.
fn check_objects(value: &Value) -> Option<String> {
    let usage = "must be a list of 1 to 10 object names such as [\"Opportunity\", \"Account\"]";
    let Some(items) = value.as_array() else {
        return Some(usage.into());
    };
    if items.is_empty() || items.len() > 10 {
        return Some(usage.into());
    }
    for item in items {
        let ok = item.as_str().is_some_and(|name| {
            !name.is_empty()
                && name.len() <= 80
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !ok {
            return Some(format!("{usage}; {item} is not one"));
        }
    }
    None
}

#[cfg(test)]
mod tests;
