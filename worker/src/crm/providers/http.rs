//! Any HTTP CRM: a base URL, optional headers, and the auth the tenant's endpoint wants.

use super::spec::{Hosts, Kind, Provider, no_check, url_setting};

pub static PROVIDER: Provider = Provider {
    name: "http",
    auth_types: &["none", "token", "basic", "header", "hmac"],
    settings: &[
        ("base_url", Kind::Url),
        ("headers", Kind::Headers),
        ("id_pointer", Kind::Pointer),
        ("timeout_seconds", Kind::Seconds),
        ("rate_limit", Kind::RateLimit),
    ],
    required: &[("base_url", "is required for an HTTP CRM")],
    check: no_check,
    check_all: None,
    hosts: Hosts::AnyPublic,
    stores_records: true,
    api_version: None,
    auth_scheme: "Bearer",
    pasted_token_is_session: false,
    oauth: None,
    destinations: |settings| vec![url_setting(settings, "base_url", None)],
    record_link: super::spec::no_link,
};
