//! A mail server for `email` steps; not a CRM.

use serde_json::Value;

use super::spec::{Hosts, Kind, Provider, no_check, url_setting};

pub static PROVIDER: Provider = Provider {
    name: "smtp",
    auth_types: &["none", "basic"],
    settings: &[
        ("host", Kind::Host),
        ("port", Kind::Port),
        ("tls", Kind::TlsMode),
        ("from", Kind::Email),
        ("from_name", Kind::Text),
        ("timeout_seconds", Kind::Seconds),
    ],
    required: &[
        ("host", "is required for an smtp connection"),
        ("from", "is required for an smtp connection"),
    ],
    check: no_check,
    check_all: None,
    hosts: Hosts::Domains(&[]),
    stores_records: false,
    api_version: None,
    auth_scheme: "Bearer",
    pasted_token_is_session: false,
    oauth: None,
    destinations: |settings| {
        vec![
            url_setting(settings, "host", None),
            ("port", settings.get("port").map(Value::to_string)),
        ]
    },
    record_link: super::spec::no_link,
};
