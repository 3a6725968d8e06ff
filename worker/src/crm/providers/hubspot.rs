//! HubSpot: private-app tokens, refresh tokens, or OAuth; the API at `api.hubapi.com`.

use serde_json::{Map, Value};

use super::spec::{
    AccountLookup, Hosts, Kind, OAuth, OAuthEndpoints, Provider, Revoke, no_check, scopes, text,
    url_setting,
};

/// HubSpot's API.
pub const BASE_URL: &str = "https://api.hubapi.com";
/// HubSpot's OAuth token endpoint.
pub const TOKEN_URL: &str = "https://api.hubapi.com/oauth/v1/token";

pub static PROVIDER: Provider = Provider {
    name: "hubspot",
    auth_types: &["token", "refresh_token", "oauth"],
    settings: &[
        ("base_url", Kind::Url),
        ("authorize_url", Kind::Url),
        ("token_url", Kind::Url),
        ("scopes", Kind::Scopes),
        ("timeout_seconds", Kind::Seconds),
        ("rate_limit", Kind::RateLimit),
        ("edition", Kind::Edition),
        ("daily_limit", Kind::DailyLimit),
        ("daily_reserve_percent", Kind::ReservePercent),
        ("corporate_currency", Kind::Currency),
        ("exchange_rates", Kind::RateTable),
        ("stripe_prices", Kind::PriceTable),
        ("app_id", Kind::Text),
        ("won_stage", Kind::Text),
        ("portal_id", Kind::Text),
    ],
    required: &[],
    check: no_check,
    check_all: None,
    hosts: Hosts::Domains(&["hubapi.com", "hubspot.com", "hubapi.eu"]),
    stores_records: true,
    api_version: None,
    auth_scheme: "Bearer",
    pasted_token_is_session: true,
    oauth: Some(&OAuth {
        endpoints,
        token_setting: "token_url",
        token_setting_from: None,
        token_endpoint,
        token_url: |endpoint| endpoint.trim_end_matches('/').to_string(),
        official_token_endpoints: &[TOKEN_URL],
        api_host_field: None,
        callback_servers: &[],
        revoke,
        operator_env: [
            "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID",
            "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET",
            "TRIBUTARY_OAUTH_HUBSPOT_TOKEN_URL",
        ],
        account: Some(ACCOUNT),
    }),
    destinations: |settings| {
        vec![
            url_setting(settings, "base_url", Some(BASE_URL)),
            url_setting(settings, "token_url", Some(TOKEN_URL)),
        ]
    },
    record_link,
};

/// The HubSpot account (portal, "hub") an OAuth access token acts in, as HubSpot says it:
/// `GET {base_url}/oauth/v1/access-tokens/{token}` answers the token's `hub_id`. Tributary
/// learns it when a connection is authorized and routes a shared app's webhooks by it; a
/// portal id a tenant typed could name another tenant's account, this one cannot.
const ACCOUNT: AccountLookup = AccountLookup {
    url: |settings, access_token| {
        let base = text(settings, "base_url").unwrap_or(BASE_URL);
        let token: String = url::form_urlencoded::byte_serialize(access_token.as_bytes()).collect();
        format!(
            "{}/oauth/v1/access-tokens/{token}",
            base.trim_end_matches('/')
        )
    },
    read: |answer| match &answer["hub_id"] {
        Value::Number(n) if n.as_u64().is_some() => Some(n.to_string()),
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(s.clone())
        }
        _ => None,
    },
};

fn endpoints(settings: &Map<String, Value>) -> OAuthEndpoints {
    OAuthEndpoints {
        authorize_url: text(settings, "authorize_url")
            .unwrap_or("https://app.hubspot.com/oauth/authorize")
            .to_string(),
        token_url: token_endpoint(settings),
        scopes: scopes(
            settings,
            &[
                "oauth",
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.objects.deals.read",
                "crm.objects.deals.write",
                "crm.objects.companies.read",
                "crm.objects.companies.write",
            ],
        ),
        pkce: false,
        extra: Vec::new(),
    }
}

fn token_endpoint(settings: &Map<String, Value>) -> String {
    text(settings, "token_url").unwrap_or(TOKEN_URL).to_string()
}

fn revoke(settings: &Map<String, Value>, refresh_token: &str) -> Revoke {
    let base = text(settings, "base_url").unwrap_or(BASE_URL);
    let token: String = url::form_urlencoded::byte_serialize(refresh_token.as_bytes()).collect();
    Revoke {
        delete: true,
        url: format!("{base}/oauth/v1/refresh-tokens/{token}"),
        form: None,
    }
}

/// A record in HubSpot's app: the account's `portal_id` setting, the object's type id
/// (`contacts` 0-1, `companies` 0-2, `deals` 0-3, `tickets` 0-5, or a custom object's `2-…`),
/// on the EU app when the API is HubSpot's EU one.
fn record_link(
    settings: &super::spec::Settings,
    _info: &Map<String, Value>,
    object: &str,
    id: &str,
) -> Option<String> {
    let portal = settings
        .get("portal_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))?;
    let kind = match object {
        "contacts" | "contact" => "0-1",
        "companies" | "company" => "0-2",
        "deals" | "deal" => "0-3",
        "tickets" | "ticket" => "0-5",
        custom
            if custom.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
            }) =>
        {
            custom
        }
        _ => return None,
    };
    let id = super::spec::path_segment(id)?;
    let eu = text(settings, "base_url").is_some_and(|base| base.contains("hubapi.eu"));
    let app = if eu {
        "https://app-eu1.hubspot.com"
    } else {
        "https://app.hubspot.com"
    };
    Some(format!("{app}/contacts/{portal}/record/{kind}/{id}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The token metadata is asked at the connection's API host, with the token escaped, and
    /// only a whole-number `hub_id` is believed.
    #[test]
    fn the_portal_is_read_from_hubspots_token_metadata() {
        let settings = json!({"base_url": "https://api.hubapi.eu/"});
        let settings = settings.as_object().unwrap();
        assert_eq!(
            (ACCOUNT.url)(settings, "CN/a+b"),
            "https://api.hubapi.eu/oauth/v1/access-tokens/CN%2Fa%2Bb"
        );
        assert_eq!(
            (ACCOUNT.url)(&Map::new(), "t"),
            "https://api.hubapi.com/oauth/v1/access-tokens/t"
        );
        assert_eq!(
            (ACCOUNT.read)(&json!({"hub_id": 62515})),
            Some("62515".into())
        );
        assert_eq!(
            (ACCOUNT.read)(&json!({"hub_id": "62515"})),
            Some("62515".into())
        );
        for refused in [
            json!({}),
            json!({"hub_id": -1}),
            json!({"hub_id": "62515 OR 1"}),
            json!({"hub_id": ""}),
        ] {
            assert_eq!((ACCOUNT.read)(&refused), None, "{refused}");
        }
    }
}
