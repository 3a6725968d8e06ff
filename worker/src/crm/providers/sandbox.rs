//! The built-in sandbox CRM: records in Tributary's own database, no credentials; its only
//! setting switches on simulated failures per object.

use serde_json::{Map, Value};

use super::spec::{Hosts, Problem, Provider, no_check};
use crate::crm::error::ErrorKind;

pub static PROVIDER: Provider = Provider {
    name: "sandbox",
    auth_types: &["none"],
    settings: &[],
    required: &[],
    check: no_check,
    check_all: Some(check_settings),
    hosts: Hosts::Domains(&[]),
    stores_records: true,
    api_version: None,
    auth_scheme: "Bearer",
    pasted_token_is_session: false,
    oauth: None,
    destinations: |_| Vec::new(),
    record_link: super::spec::no_link,
};

/// Checks sandbox settings: only `simulate_failure`, an object of object names to error kinds.
fn check_settings(settings: &Map<String, Value>) -> Vec<Problem> {
    let mut errors = Vec::new();
    for (key, value) in settings {
        if key != "simulate_failure" {
            errors.push((
                format!("settings.{key}"),
                "unknown setting for the sandbox provider".into(),
            ));
            continue;
        }
        match value.as_object() {
            Some(map) => {
                for (object, kind) in map {
                    if kind.as_str().and_then(ErrorKind::parse).is_none() {
                        let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
                        errors.push((
                            format!("settings.simulate_failure.{object}"),
                            format!("must be one of {}", kinds.join(", ")),
                        ));
                    }
                }
            }
            None => errors.push((
                "settings.simulate_failure".into(),
                "must map object names to error kinds".into(),
            )),
        }
    }
    errors
}
