use super::*;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_map(&map)
}

#[test]
fn defaults_make_an_embedded_system() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.public_url, "http://127.0.0.1:8080");
    assert_eq!(s.database_url, "sqlite://./data/tributary.db?mode=rwc");
    assert!(s.embedded_worker && s.signup_open && s.auto_migrate);
    assert_eq!(s.retry.max_attempts, 8);
    assert_eq!(s.retry.base_delay, Duration::from_secs(5));
    assert_eq!(s.retry.max_delay, Duration::from_secs(3600));
    assert!(s.encryption_keys.is_none() && s.jwt_secret.is_none());
    assert_eq!(s.limits.max_flows, 100);
    assert_eq!(s.limits.max_steps_per_flow, 50);
    assert_eq!(s.limits.max_connections, 50);
    assert_eq!(s.limits.max_bulk_items, 10_000);
    assert_eq!(
        s.limits.webhook_rate,
        Rate {
            count: 100,
            period: Duration::from_secs(1)
        }
    );
    assert_eq!(s.retention, Duration::from_secs(90 * 86_400));
    assert_eq!(s.audit_retention, Duration::from_secs(365 * 86_400));
    assert_eq!(s.batch_linger, Duration::from_secs(1));
    let off = settings(&[("TRIBUTARY_BATCH_LINGER", "off")]).unwrap();
    assert_eq!(off.batch_linger, Duration::ZERO);
}

#[test]
fn rates_read_per_second_minute_or_hour() {
    let s = settings(&[("TRIBUTARY_WEBHOOK_RATE", "600/minute")]).unwrap();
    assert_eq!(s.limits.webhook_rate.count, 600);
    assert_eq!(s.limits.webhook_rate.period, Duration::from_secs(60));
}

#[test]
fn tenant_urls_are_public_only_unless_any_is_asked_for() {
    assert_eq!(settings(&[]).unwrap().vendor_urls, VendorUrls::Official);
    let s = settings(&[("TRIBUTARY_VENDOR_URLS", "any")]).unwrap();
    assert_eq!(s.vendor_urls, VendorUrls::Any);
}

#[test]
fn every_bad_value_names_its_variable() {
    for (name, value) in [
        ("TRIBUTARY_LISTEN", "localhost"),
        ("TRIBUTARY_PUBLIC_URL", "ftp://x"),
        ("DATABASE_URL", "mysql://x"),
        ("TRIBUTARY_QUEUE_URL", "amqp://x"),
        ("TRIBUTARY_JWT_SECRET", "short"),
        ("TRIBUTARY_EMBEDDED_WORKER", "maybe"),
        ("TRIBUTARY_SIGNUP", "invite"),
        ("TRIBUTARY_LOG_FORMAT", "xml"),
        ("TRIBUTARY_VENDOR_URLS", "some"),
        ("TRIBUTARY_OAUTH_SUCCESS_URL", "not a url"),
        ("TRIBUTARY_RETRY_MAX_ATTEMPTS", "0"),
        ("TRIBUTARY_RETRY_BASE_DELAY", "soon"),
        ("TRIBUTARY_RETRY_MAX_DELAY", "0s"),
        ("TRIBUTARY_WORKER_CONCURRENCY", "0"),
        ("TRIBUTARY_SWEEP_INTERVAL", "often"),
        ("TRIBUTARY_WORKER_LISTEN", "9090"),
        ("TRIBUTARY_ALERT_PERIOD", "hourly"),
        ("TRIBUTARY_STRIPE_API_URL", "api.stripe.com"),
        ("TRIBUTARY_RECONCILE_WINDOW", "60days"),
        ("TRIBUTARY_MAX_FLOWS", "0"),
        ("TRIBUTARY_MAX_STEPS_PER_FLOW", "many"),
        ("TRIBUTARY_MAX_CONNECTIONS", "-1"),
        ("TRIBUTARY_WEBHOOK_RATE", "100"),
        ("TRIBUTARY_WEBHOOK_RATE", "0/second"),
        ("TRIBUTARY_WEBHOOK_RATE", "5/fortnight"),
        ("TRIBUTARY_PREVIEW_RATE", "often"),
        ("TRIBUTARY_RETENTION", "forever"),
        ("TRIBUTARY_AUDIT_RETENTION", "0s"),
        ("TRIBUTARY_RETENTION_INTERVAL", "soon"),
        ("TRIBUTARY_SIGNUP_RATE", "10/fortnight"),
        ("TRIBUTARY_SIGNUP_RATE", "0/hour"),
        ("TRIBUTARY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRIBUTARY_TRUSTED_PROXIES", "ingress"),
        ("TRIBUTARY_BATCH_LINGER", "0s"),
        ("TRIBUTARY_BATCH_LINGER", "a while"),
    ] {
        let err = settings(&[(name, value)]).unwrap_err();
        assert_eq!(err.variable, name, "{value}");
        assert!(err.to_string().starts_with(name), "{err}");
    }
}

#[test]
fn an_operator_token_endpoint_belongs_to_an_operator_app() {
    for (name, value) in [
        ("TRIBUTARY_OAUTH_HUBSPOT_TOKEN_URL", "not a url"),
        (
            "TRIBUTARY_OAUTH_ZOHO_ACCOUNTS_URL",
            "https://accounts.example",
        ),
    ] {
        let err = settings(&[(name, value)]).unwrap_err();
        assert_eq!(err.variable, name, "{value}");
    }
    let s = settings(&[
        ("TRIBUTARY_OAUTH_SALESFORCE_CLIENT_ID", "id"),
        ("TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET", "secret"),
        (
            "TRIBUTARY_OAUTH_SALESFORCE_LOGIN_URL",
            "https://sso.example.com/",
        ),
    ])
    .unwrap();
    let app = &s.oauth_apps[0];
    assert_eq!(
        app.token_endpoint.as_deref(),
        Some("https://sso.example.com")
    );
    assert!(app.may_send_to("https://sso.example.com/services/oauth2/token"));
    assert!(app.may_send_to("https://login.salesforce.com/services/oauth2/token"));
    assert!(!app.may_send_to("https://evil.example/services/oauth2/token"));
}

#[test]
fn signup_rate_and_trusted_proxies_parse() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.signup_rate.count, 10);
    assert_eq!(s.signup_rate.period, Duration::from_secs(3600));
    assert!(s.trusted_proxies.is_empty());
    let s = settings(&[
        ("TRIBUTARY_SIGNUP_RATE", "3/minute"),
        (
            "TRIBUTARY_TRUSTED_PROXIES",
            "10.0.0.0/8, 192.168.1.7,fd00::/8",
        ),
    ])
    .unwrap();
    assert_eq!(
        (s.signup_rate.count, s.signup_rate.period.as_secs()),
        (3, 60)
    );
    let trusted = |a: &str| {
        s.trusted_proxies
            .iter()
            .any(|c| c.contains(a.parse().unwrap()))
    };
    assert!(trusted("10.200.3.4") && trusted("192.168.1.7") && trusted("fd12::1"));
    assert!(trusted("::ffff:10.1.1.1"));
    assert!(!trusted("11.0.0.1") && !trusted("192.168.1.8") && !trusted("fe80::1"));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
}

#[test]
fn extra_ca_certs_are_read_at_start_up_or_stop_it() {
    assert!(settings(&[]).unwrap().extra_ca_certs.is_empty());
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fakes/certs/ca.pem");
    let s = settings(&[("TRIBUTARY_EXTRA_CA_CERTS", ca)]).unwrap();
    assert_eq!(s.extra_ca_certs.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fakes/certs/server.key"
    );
    for path in ["/nonexistent/ca.pem", empty.to_str().unwrap(), key] {
        let err = settings(&[("TRIBUTARY_EXTRA_CA_CERTS", path)]).unwrap_err();
        assert_eq!(err.variable, "TRIBUTARY_EXTRA_CA_CERTS", "{path}");
        assert!(err.to_string().contains(path), "{err}");
    }
}

#[test]
fn public_url_follows_listen_and_loses_trailing_slash() {
    let s = settings(&[("TRIBUTARY_LISTEN", "0.0.0.0:9000")]).unwrap();
    assert_eq!(s.public_url, "http://0.0.0.0:9000");
    let s = settings(&[("TRIBUTARY_PUBLIC_URL", "https://hooks.example.com/")]).unwrap();
    assert_eq!(s.public_url, "https://hooks.example.com");
}

#[test]
fn debug_output_hides_secrets() {
    let s = settings(&[
        (
            "TRIBUTARY_JWT_SECRET",
            "a-very-long-jwt-secret-value-1234567890",
        ),
        (
            "TRIBUTARY_ENCRYPTION_KEYS",
            "k1:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
        ),
    ])
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("a-very-long-jwt-secret"));
    let with_password = settings(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
    assert!(!format!("{with_password:?}").contains("hunter2"));
    assert!(!debug.contains("MDEyMzQ1"));
}
