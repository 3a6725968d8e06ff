//! The providers a connection can be of, each described once in its own file: the auth types
//! it accepts, its settings and their rules, the hosts it may be pointed at, its OAuth
//! endpoints, scopes, token endpoint and revoke request, where its credentials are sent, and
//! how requests authenticate. Settings validation, the OAuth flow and revocation, sessions,
//! the operator's OAuth apps and the API schema read [`ALL`] instead of naming a vendor. It
//! knows no adapter.
//!
//! Adding a provider: a file here with its [`Provider`], its line in [`ALL`], and (for a CRM)
//! its adapter in `crm/<name>.rs` with its line in `crm::adapter`.

pub mod http;
pub mod hubspot;
pub mod salesforce;
pub mod sandbox;
pub mod smtp;
mod spec;
pub mod zoho;

pub use spec::{
    AccountLookup, Hosts, Kind, OAuth, OAuthEndpoints, Problem, Provider, Revoke, form, no_check,
    path_segment, scopes, text, url_setting,
};

/// Every provider, in the order the docs list them.
pub static ALL: &[&Provider] = &[
    &sandbox::PROVIDER,
    &hubspot::PROVIDER,
    &salesforce::PROVIDER,
    &zoho::PROVIDER,
    &http::PROVIDER,
    &smtp::PROVIDER,
];

/// The provider of this name.
pub fn get(name: &str) -> Option<&'static Provider> {
    ALL.iter().copied().find(|provider| provider.name == name)
}

/// The token URLs the operator's OAuth app for `provider` may be sent to: the vendor's own,
/// and the one the operator configured (`configured`, a value of the provider's token
/// endpoint setting).
pub fn operator_token_urls(provider: &str, configured: Option<&str>) -> Vec<String> {
    let oauth = get(provider).and_then(|p| p.oauth);
    let official = oauth.map_or(&[][..], |o| o.official_token_endpoints);
    official
        .iter()
        .copied()
        .chain(configured)
        .map(|endpoint| match oauth {
            Some(oauth) => (oauth.token_url)(endpoint),
            None => endpoint.trim_end_matches('/').to_string(),
        })
        .collect()
}

/// Whether a provider's connections store records (CRM writes go there); `smtp` only sends
/// mail.
pub fn stores_records(provider: &str) -> bool {
    get(provider).is_none_or(|provider| provider.stores_records)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn names_are_unique_and_oauth_providers_name_their_settings() {
        let mut names: Vec<&str> = ALL.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for provider in ALL {
            assert!(!provider.auth_types.is_empty(), "{}", provider.name);
            if let Some(oauth) = provider.oauth {
                assert!(provider.auth_types.contains(&"oauth"), "{}", provider.name);
                let known = |key: &str| provider.settings.iter().any(|(name, _)| *name == key);
                assert!(known(oauth.token_setting), "{}", provider.name);
                assert!(
                    oauth.token_setting_from.is_none_or(known),
                    "{}",
                    provider.name
                );
                let endpoints = (oauth.endpoints)(&Map::new());
                assert_eq!(
                    endpoints.token_url,
                    (oauth.token_url)(&(oauth.token_endpoint)(&Map::new())),
                    "{}: the default token endpoint leads to the token URL",
                    provider.name
                );
            }
        }
    }

    /// The link `provider` makes for a record, from settings and vendor info given as JSON.
    fn link(
        provider: &str,
        settings: serde_json::Value,
        info: serde_json::Value,
        object: &str,
        id: &str,
    ) -> Option<String> {
        let map = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        (get(provider).unwrap().record_link)(&map(settings), &map(info), object, id)
    }

    #[test]
    fn salesforce_links_to_the_orgs_lightning_page_and_nowhere_else() {
        use serde_json::json;
        let org = json!({"api_base": "https://acme.my.salesforce.com"});
        assert_eq!(
            link(
                "salesforce",
                json!({}),
                org.clone(),
                "Opportunity",
                "006xx0000012345AAA"
            )
            .as_deref(),
            Some("https://acme.my.salesforce.com/lightning/r/Opportunity/006xx0000012345AAA/view")
        );
        // An id or object a CRM answered cannot make the link point elsewhere.
        assert_eq!(
            link("salesforce", json!({}), org.clone(), "Account", "../../x?y"),
            None
        );
        assert_eq!(
            link("salesforce", json!({}), org, "Account/../x", "001"),
            None
        );
        // The org's address unknown (no token issued yet), or not https: no link.
        assert_eq!(
            link("salesforce", json!({}), json!({}), "Account", "001"),
            None
        );
        let plain = json!({"api_base": "http://x.test"});
        assert_eq!(link("salesforce", json!({}), plain, "Account", "001"), None);
    }

    #[test]
    fn hubspot_links_need_the_portal_and_other_providers_make_none() {
        use serde_json::json;
        let portal = json!({"portal_id": "62515"});
        assert_eq!(
            link("hubspot", portal.clone(), json!({}), "deals", "901").as_deref(),
            Some("https://app.hubspot.com/contacts/62515/record/0-3/901")
        );
        let eu = json!({"portal_id": "7", "base_url": "https://api.hubapi.eu"});
        assert_eq!(
            link("hubspot", eu, json!({}), "2-1234", "5").as_deref(),
            Some("https://app-eu1.hubspot.com/contacts/7/record/2-1234/5")
        );
        assert_eq!(link("hubspot", json!({}), json!({}), "contacts", "1"), None);
        let forged = json!({"portal_id": "evil.com"});
        assert_eq!(link("hubspot", forged, json!({}), "contacts", "1"), None);
        assert_eq!(link("hubspot", portal, json!({}), "notes", "1"), None);
        for quiet in ["sandbox", "http", "zoho", "smtp"] {
            let info = json!({"api_base": "https://x.test"});
            assert_eq!(
                link(quiet, json!({}), info, "contacts", "1"),
                None,
                "{quiet}"
            );
        }
    }
}
