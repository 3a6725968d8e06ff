use super::*;
use serde_json::json;

fn input(value: Value) -> AuthInput {
    serde_json::from_value(value).unwrap()
}

#[test]
fn credentials_name_missing_and_foreign_fields() {
    let err = credentials(
        "hubspot",
        &input(json!({"type": "refresh_token", "client_id": "c", "token": "x"})),
    )
    .unwrap_err();
    let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
    assert!(fields.contains(&"auth.client_secret"), "{err:?}");
    assert!(fields.contains(&"auth.refresh_token"), "{err:?}");
    assert!(fields.contains(&"auth.token"), "{err:?}");
    let err = credentials("zoho", &input(json!({"type": "token", "token": "x"}))).unwrap_err();
    assert_eq!(err[0].0, "auth.type");
    assert!(err[0].1.contains("refresh_token"), "{err:?}");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let creds = credentials(
        "hubspot",
        &input(json!({"type": "token", "token": "pat-na1-secret-value"})),
    )
    .unwrap();
    assert!(!format!("{creds:?}").contains("secret-value"));
}

#[test]
fn settings_refuse_unknown_keys_and_bad_values() {
    let problems = check_settings(
        "salesforce",
        json!({"login_url": "ftp://x", "api_version": "60", "wonstage": "x"})
            .as_object()
            .unwrap(),
        VendorUrls::Any,
    );
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "settings.api_version",
            "settings.login_url",
            "settings.wonstage"
        ]
    );
}

#[test]
fn the_two_way_settings_are_checked_by_kind() {
    let good = json!({"watch": ["Opportunity", "Account"], "poll_seconds": 60,
        "integration_user_id": "005A", "organization_id": "00DA",
        "stripe_prices": {"Pro": "price_1Pab"}, "corporate_currency": "usd",
        "exchange_rates": {"eur": {"usd": 1.08, "gbp": "0.86"}}});
    let problems = check_settings("salesforce", good.as_object().unwrap(), VendorUrls::Any);
    assert!(problems.is_empty(), "{problems:?}");
    let bad = json!({"watch": [], "poll_seconds": 5, "stripe_prices": {"Pro": "prod_1"},
        "corporate_currency": "dollars", "exchange_rates": {"eur": {"usd": -1}}});
    let problems = check_settings("salesforce", bad.as_object().unwrap(), VendorUrls::Any);
    let mut fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "settings.corporate_currency",
            "settings.exchange_rates",
            "settings.poll_seconds",
            "settings.stripe_prices",
            "settings.watch"
        ]
    );
    let wrong_shape = json!({"exchange_rates": [1], "watch": ["Bad Name"]});
    let problems = check_settings(
        "salesforce",
        wrong_shape.as_object().unwrap(),
        VendorUrls::Any,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

fn operator_app(provider: &str, configured: Option<&str>) -> crate::settings::OAuthApp {
    crate::settings::OAuthApp {
        provider: provider.into(),
        client_id: "id".into(),
        client_secret: "secret".to_string().into(),
        token_endpoint: configured.map(str::to_string),
    }
}

/// The token URL a value of a provider's token setting leads to.
fn token_url_of(provider: &str, endpoint: &str) -> String {
    let oauth = providers::get(provider).and_then(|p| p.oauth).unwrap();
    (oauth.token_url)(endpoint)
}

#[test]
fn the_operators_app_goes_only_to_vendor_or_operator_endpoints() {
    let hubspot = operator_app("hubspot", None);
    assert!(hubspot.may_send_to("https://api.hubapi.com/oauth/v1/token"));
    assert!(!hubspot.may_send_to("https://evil.example/oauth/v1/token"));
    assert!(!hubspot.may_send_to("https://api.hubapi.com.evil.example/oauth/v1/token"));
    let salesforce = operator_app("salesforce", None);
    for ok in [
        "https://login.salesforce.com",
        "https://test.salesforce.com",
    ] {
        assert!(
            salesforce.may_send_to(&token_url_of("salesforce", ok)),
            "{ok}"
        );
    }
    // A My Domain is the tenant's: its org's own code answers under paths it chooses.
    for refused in [
        "https://acme.my.salesforce.com",
        "https://acme.my.salesforce.com/services/apexrest/x",
        "https://login.salesforce.com/services/apexrest/x",
    ] {
        let settings = json!({"login_url": refused});
        let err = check_operator_endpoint(&salesforce, settings.as_object().unwrap());
        assert_eq!(err.unwrap_err().0, "settings.login_url", "{refused}");
    }
    let zoho = operator_app("zoho", Some("http://127.0.0.1:9"));
    for (_, url) in providers::zoho::DATA_CENTERS {
        assert!(zoho.may_send_to(&token_url_of("zoho", url)));
    }
    assert!(zoho.may_send_to("http://127.0.0.1:9/oauth/v2/token"));
    assert!(
        check_operator_endpoint(&zoho, json!({"data_center": "eu"}).as_object().unwrap()).is_ok()
    );
    let err = check_operator_endpoint(
        &zoho,
        json!({"accounts_url": "https://evil.example"})
            .as_object()
            .unwrap(),
    );
    assert_eq!(err.unwrap_err().0, "settings.accounts_url");
}

#[test]
fn credential_destinations_fill_in_defaults() {
    let empty = Map::new();
    let explicit = json!({"base_url": "https://api.hubapi.com/"});
    assert_eq!(
        credential_destinations("hubspot", &empty),
        credential_destinations("hubspot", explicit.as_object().unwrap())
    );
    let eu = json!({"data_center": "eu"});
    let eu_url = json!({"accounts_url": "https://accounts.zoho.eu"});
    assert_eq!(
        credential_destinations("zoho", eu.as_object().unwrap()),
        credential_destinations("zoho", eu_url.as_object().unwrap())
    );
    assert_ne!(
        credential_destinations("zoho", eu.as_object().unwrap()),
        credential_destinations("zoho", &empty)
    );
}

#[test]
fn official_mode_allows_only_vendor_hosts() {
    assert!(check_url("hubspot", "https://api.hubapi.com", VendorUrls::Official).is_ok());
    assert!(check_url("hubspot", "https://evil.example", VendorUrls::Official).is_err());
    assert!(
        check_url(
            "salesforce",
            "https://acme.my.salesforce.com",
            VendorUrls::Official
        )
        .is_ok()
    );
    assert!(check_url("http", "https://10.0.0.1/api", VendorUrls::Official).is_err());
    for private in [
        "https://0.0.0.0/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://100.64.1.2/x",
        "https://db.localhost/x",
    ] {
        assert!(
            check_url("http", private, VendorUrls::Official).is_err(),
            "{private}"
        );
    }
    assert!(check_url("http", "https://93.184.216.34/x", VendorUrls::Official).is_ok());
    assert!(check_url("http", "http://127.0.0.1:9", VendorUrls::Any).is_ok());
}

#[test]
fn only_public_addresses_are_public() {
    for address in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "100.100.100.200",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.192",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.1.2.3",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::808:808",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "2002:c0a8:101::5",
        "2001::1",
        "2001:db8::1",
        "3fff::1",
        "100::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
    ] {
        let ip: std::net::IpAddr = address.parse().unwrap();
        assert!(crate::net::is_private(ip), "{address} counted as public");
    }
    for address in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.0.1.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.254",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82a::200e",
        "2001:4860:4860::8888",
    ] {
        let ip: std::net::IpAddr = address.parse().unwrap();
        assert!(!crate::net::is_private(ip), "{address} counted as private");
    }
}

#[test]
fn literal_hosts_in_every_spelling_are_judged() {
    for url in [
        "https://localhost./x",
        "https://LOCALHOST/x",
        "https://127.0.0.1./x",
        "https://2130706433/x",
        "https://0x7f.1/x",
        "https://[::ffff:7f00:1]/x",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "https://169.254.169.254/latest/meta-data",
    ] {
        assert!(
            check_url("http", url, VendorUrls::Official).is_err(),
            "{url}"
        );
    }
    for host in [
        "localhost.",
        "LOCALHOST",
        "db.localhost",
        "127.1",
        "2130706433",
        "[::1]",
        "0.0.0.0",
    ] {
        assert!(is_private_host(host), "{host}");
    }
    assert!(!is_private_host("smtp.example.com"));
}
