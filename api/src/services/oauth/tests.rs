//! The OAuth callback's Zoho accounts-server rule.

use serde_json::json;

use super::*;

fn zoho(settings: Value) -> connections::Model {
    let now = chrono::Utc::now();
    connections::Model {
        id: "conn_1".into(),
        tenant_id: "ten_1".into(),
        name: "Zoho".into(),
        provider: "zoho".into(),
        auth_type: "oauth".into(),
        credentials: None,
        settings: settings.to_string(),
        status: "pending_authorization".into(),
        status_reason: None,
        paused_until: None,
        session: None,
        refresh_lease_until: None,
        vendor_info: "{}".into(),
        inbound_token: None,
        vendor_account: None,
        created_at: now,
        updated_at: now,
    }
}

fn naming(server: &str) -> CallbackQuery {
    serde_json::from_value(json!({"code": "c", "state": "s", "accounts-server": server}))
        .expect("a callback query")
}

/// Zoho names the user's data centre in its callback: one of its own accounts servers
/// moves the code exchange (and later refreshes) there; any other server is refused.
#[test]
fn a_zoho_callback_moves_the_exchange_to_the_official_accounts_server_it_names() {
    let oauth = providers::get("zoho").and_then(|p| p.oauth).unwrap();
    let us = zoho(json!({"data_center": "us", "api_version": "v8"}));

    let settings = callback_settings(&naming("https://accounts.zoho.eu/"), &us, oauth)
        .unwrap_or_else(|Refused(why)| panic!("refused: {why}"));
    assert_eq!(settings["accounts_url"], "https://accounts.zoho.eu");
    assert!(settings.get("data_center").is_none(), "{settings:?}");
    assert_eq!(settings["api_version"], "v8");
    assert_eq!(
        (oauth.endpoints)(&settings).token_url,
        "https://accounts.zoho.eu/oauth/v2/token"
    );

    let same = callback_settings(&naming("https://accounts.zoho.com"), &us, oauth)
        .unwrap_or_else(|Refused(why)| panic!("refused: {why}"));
    assert_eq!(same, settings_of(&us), "its own server changes nothing");

    for other in [
        "https://accounts.zoho.evil.example",
        "http://accounts.zoho.eu",
    ] {
        match callback_settings(&naming(other), &us, oauth) {
            Err(Refused(why)) => assert!(why.contains("not zoho's"), "{why}"),
            Ok(settings) => panic!("{other} was believed: {settings:?}"),
        }
    }
}
