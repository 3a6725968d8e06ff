//! What a provider is made of: the [`Provider`] description every provider file fills in, and
//! the helpers they share. A leaf: it knows no provider.

use serde_json::{Map, Value};

/// A (field, message) pair for the API's problem response.
pub type Problem = (String, String);

/// Connection settings as stored.
pub type Settings = Map<String, Value>;

/// A setting that says where credentials are sent, with the value it has in effect.
pub type Destination = (&'static str, Option<String>);

/// A rule for `api_version` values, and how a valid one looks.
pub type VersionRule = (fn(&str) -> bool, &'static str);

/// One provider.
pub struct Provider {
    /// The `provider` of a connection.
    pub name: &'static str,
    /// The auth types it accepts (DESIGN.md, Connections).
    pub auth_types: &'static [&'static str],
    /// Its settings and what each holds; any other key is refused.
    pub settings: &'static [(&'static str, Kind)],
    /// Settings a connection must have, with the message when one is missing.
    pub required: &'static [(&'static str, &'static str)],
    /// Checks beyond each setting's own (settings that exclude each other).
    pub check: fn(&Map<String, Value>, &mut Vec<Problem>),
    /// A provider that checks its settings entirely itself (the sandbox's failure switches).
    pub check_all: Option<fn(&Settings) -> Vec<Problem>>,
    /// Where its URL settings may point under `TRIBUTARY_VENDOR_URLS=official`.
    pub hosts: Hosts,
    /// Whether its connections store records (CRM writes go there).
    pub stores_records: bool,
    /// Its `api_version` setting: the rule and how a valid one looks.
    pub api_version: Option<VersionRule>,
    /// The scheme of its `Authorization` header with an access token.
    pub auth_scheme: &'static str,
    /// Whether a pasted access token is used as is while it is fresh (HubSpot's private-app
    /// tokens), rather than exchanged.
    pub pasted_token_is_session: bool,
    /// Its browser authorization flow, if it has one.
    pub oauth: Option<&'static OAuth>,
    /// The settings that say where its stored credentials are sent, with the value each has in
    /// effect (defaults filled in); a change to one needs the credentials re-entered.
    pub destinations: fn(&Settings) -> Vec<Destination>,
    /// Where a record this provider wrote is seen in the vendor's own UI, from the connection's
    /// settings, what the vendor told about the account (`vendor_info`), the object and the
    /// record id; `None` when the vendor has no such page or the account's address is unknown.
    pub record_link: fn(&Settings, &Map<String, Value>, &str, &str) -> Option<String>,
}

/// For providers with no UI of their own to link to.
pub fn no_link(_: &Settings, _: &Map<String, Value>, _: &str, _: &str) -> Option<String> {
    None
}

/// A record id or object name as one URL path segment: only what vendors' ids are made of, so
/// a value a CRM answered can never turn a link into another address.
pub fn path_segment(text: &str) -> Option<&str> {
    (!text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    .then_some(text)
}

/// Where a provider's URL settings may point under `TRIBUTARY_VENDOR_URLS=official`.
pub enum Hosts {
    /// Only these domains and their subdomains.
    Domains(&'static [&'static str]),
    /// Any host that is not a private or loopback address (an HTTP CRM is anyone's).
    AnyPublic,
}

/// A provider's OAuth: endpoints, scopes, token endpoint, revocation and the operator's app.
pub struct OAuth {
    /// The authorize and token endpoints, scopes and parameters for a connection's settings.
    pub endpoints: fn(&Map<String, Value>) -> OAuthEndpoints,
    /// The setting that says where tokens come from (`token_url`, `login_url`, `accounts_url`).
    pub token_setting: &'static str,
    /// The setting to name instead when the token setting is absent and its default comes
    /// from another (Zoho's `data_center`).
    pub token_setting_from: Option<&'static str>,
    /// The value of the token setting a connection uses: its own, else the vendor's default.
    pub token_endpoint: fn(&Map<String, Value>) -> String,
    /// The token URL a value of the token setting leads to.
    pub token_url: fn(&str) -> String,
    /// The vendor's own values of the token setting: the only ones, with the operator's
    /// configured one, that the operator's OAuth app is ever sent to.
    pub official_token_endpoints: &'static [&'static str],
    /// The field of the token answer that names the API host, when the vendor says it there.
    pub api_host_field: Option<&'static str>,
    /// Accounts servers a callback may name (`accounts-server`), switching the connection to
    /// it: Zoho's data centres.
    pub callback_servers: &'static [&'static str],
    /// The refresh-token revocation request for a connection's settings and token.
    pub revoke: fn(&Map<String, Value>, &str) -> Revoke,
    /// The operator's app: the variables of its client id, secret and token endpoint.
    pub operator_env: [&'static str; 3],
    /// How to ask the vendor which of its accounts an access token acts in (HubSpot's hub
    /// id), kept as the connection's `vendor_account` when a token is issued; `None` for
    /// vendors whose webhooks are not routed by account.
    pub account: Option<AccountLookup>,
}

/// [`OAuth::account`]: a `GET` of `url` (for the connection's settings and the access token),
/// whose JSON answer `read` turns into the account's id.
#[derive(Clone, Copy)]
pub struct AccountLookup {
    pub url: fn(&Map<String, Value>, &str) -> String,
    pub read: fn(&Value) -> Option<String>,
}

/// Where and how a vendor runs the OAuth authorization-code flow for a connection.
#[derive(Debug, Clone)]
pub struct OAuthEndpoints {
    pub authorize_url: String,
    pub token_url: String,
    /// Scopes asked for: `settings.scopes`, else what the recipes need.
    pub scopes: Vec<String>,
    /// Whether the vendor takes PKCE (S256).
    pub pkce: bool,
    /// Extra authorization parameters (Zoho: offline access, always a refresh token).
    pub extra: Vec<(&'static str, &'static str)>,
}

/// A revocation request: `DELETE url`, or `POST url` with a form body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub delete: bool,
    pub url: String,
    pub form: Option<String>,
}

/// What a setting holds.
#[derive(Clone, Copy)]
pub enum Kind {
    Url,
    Text,
    Bool,
    Seconds,
    ApiVersion,
    DataCenter,
    Headers,
    Pointer,
    Scopes,
    Host,
    Port,
    TlsMode,
    Email,
    /// A list of the vendor's object names (`["Opportunity", "Account"]`), at most 10.
    Objects,
    /// A polling interval in seconds, 10 to 86,400.
    PollInterval,
    /// A lookup table from the CRM's product or plan names to Stripe price ids
    /// (`{"Pro": "price_1Pab…"}`), at most 100 entries.
    PriceTable,
    /// A three-letter ISO currency code (`usd`), stored as given, compared without case.
    Currency,
    /// Exchange rates, `{"eur": {"usd": 1.08}}`: 1 EUR is 1.08 USD.
    RateTable,
    /// A rate limit, `{"requests": 100, "per_seconds": 10}`: over the vendor's default and
    /// what its headers say.
    RateLimit,
    /// The vendor's plan (`professional`), one of [`crate::crm::limits::editions`].
    Edition,
    /// A count of user licenses, 0 to [`crate::crm::limits::MAX_LICENSES`].
    Licenses,
    /// A daily request allocation, 1 to [`crate::crm::limits::MAX_DAILY_LIMIT`].
    DailyLimit,
    /// The share of a daily allocation kept for the account's other apps, 0 to
    /// [`crate::crm::limits::MAX_RESERVE_PERCENT`] percent.
    ReservePercent,
    /// The most requests in flight at once, 1 to [`crate::crm::limits::MAX_CONCURRENT`].
    Concurrency,
}

/// A setting as text, if present.
pub fn text<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings
        .get(key)
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty())
}

/// `settings.scopes`, else `default`.
pub fn scopes(settings: &Map<String, Value>, default: &[&str]) -> Vec<String> {
    settings
        .get("scopes")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
}

/// A destination setting holding a URL: its value, else the default.
pub fn url_setting(
    settings: &Map<String, Value>,
    key: &'static str,
    default: Option<&str>,
) -> (&'static str, Option<String>) {
    (key, text(settings, key).or(default).map(str::to_string))
}

/// No checks beyond each setting's own.
pub fn no_check(_: &Map<String, Value>, _: &mut Vec<Problem>) {}

/// A form body of one pair.
pub fn form(key: &str, value: &str) -> String {
    serde_urlencoded::to_string([(key, value)]).unwrap_or_default()
}
