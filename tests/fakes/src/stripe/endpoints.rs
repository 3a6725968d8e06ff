//! The fake Stripe's webhook endpoint writes: create and update, with their validation.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answer::{invalid, missing_param, no_such, unknown_param};
use super::params::{
    apply_metadata, boolean, is_api_version, string_list, string_param, stripe_id,
};
use super::{Answer, Endpoint, MAX_WEBHOOK_ENDPOINTS, State};

pub(super) fn enabled_events(
    s: &State,
    params: &Map<String, Value>,
) -> Result<Option<Vec<String>>, Answer> {
    let Some(given) = params.get("enabled_events") else {
        return Ok(None);
    };
    let Some(events) = string_list(Some(given)) else {
        return Err(invalid(
            Some("enabled_events"),
            "Invalid array: enabled_events must be an array of strings",
        ));
    };
    if events.is_empty() {
        return Err(invalid(
            Some("enabled_events"),
            "Invalid array: enabled_events must not be empty",
        ));
    }
    for (i, event) in events.iter().enumerate() {
        if event != "*" && !s.event_types.contains(event) {
            let mut known: Vec<&String> = s.event_types.iter().collect();
            known.sort();
            let known: Vec<&str> = std::iter::once("*")
                .chain(known.into_iter().map(String::as_str))
                .collect();
            return Err(invalid(
                Some(&format!("enabled_events[{i}]")),
                &format!(
                    "Invalid enabled_events[{i}]: must be one of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(Some(events))
}

pub(super) fn check_url(url: &str) -> Result<(), Answer> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        _ => Err(invalid(Some("url"), &format!("Invalid URL: {url}"))),
    }
}

pub(super) fn create_endpoint(
    s: &mut State,
    params: &Map<String, Value>,
    livemode: bool,
) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "api_version",
            "connect",
            "description",
            "enabled_events",
            "expand",
            "metadata",
            "url",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let Some(url) = string_param(params, "url")?.filter(|u| !u.is_empty()) else {
        return Err(missing_param("url"));
    };
    let Some(events) = enabled_events(s, params)? else {
        return Err(missing_param("enabled_events"));
    };
    check_url(&url)?;
    let api_version = string_param(params, "api_version")?;
    if let Some(version) = &api_version
        && !is_api_version(version)
    {
        return Err(invalid(
            Some("api_version"),
            &format!("Invalid api_version: {version}"),
        ));
    }
    if let Some(connect) = string_param(params, "connect")? {
        boolean(&connect, "connect")?;
    }
    if s.endpoints.len() >= MAX_WEBHOOK_ENDPOINTS {
        let mode = if livemode { "live" } else { "test" };
        return Err(invalid(
            None,
            &format!(
                "You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} {mode} webhook endpoints on this account. Delete an endpoint before creating another."
            ),
        ));
    }
    let mut metadata = json!({});
    if let Some(given) = params.get("metadata") {
        apply_metadata(&mut metadata, given)?;
    }
    let description = string_param(params, "description")?.filter(|d| !d.is_empty());
    let id = stripe_id("we_");
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let value = json!({
        "id": id,
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": null,
        "created": Utc::now().timestamp(),
        "description": description,
        "enabled_events": events,
        "livemode": livemode,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
    });
    let seq = s.next_seq();
    s.endpoints.push(Endpoint {
        seq,
        value: value.clone(),
        secret: secret.clone(),
    });
    let mut answer = value;
    answer["secret"] = json!(secret);
    Ok(Answer::ok(answer))
}

pub(super) fn update_endpoint(
    s: &mut State,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "description",
            "disabled",
            "enabled_events",
            "expand",
            "metadata",
            "url",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let Some(index) = s.endpoints.iter().position(|e| e.value["id"] == id) else {
        return Err(no_such("webhook endpoint", id, "id", 404));
    };
    let events = enabled_events(s, params)?;
    let url = string_param(params, "url")?;
    if let Some(url) = &url {
        check_url(url)?;
    }
    let disabled = match string_param(params, "disabled")? {
        Some(text) => Some(boolean(&text, "disabled")?),
        None => None,
    };
    let description = string_param(params, "description")?;
    let mut value = s.endpoints[index].value.clone();
    if let Some(given) = params.get("metadata") {
        apply_metadata(&mut value["metadata"], given)?;
    }
    if let Some(events) = events {
        value["enabled_events"] = json!(events);
    }
    if let Some(url) = url {
        value["url"] = json!(url);
    }
    if let Some(disabled) = disabled {
        value["status"] = json!(if disabled { "disabled" } else { "enabled" });
    }
    if let Some(description) = description {
        value["description"] = if description.is_empty() {
            Value::Null
        } else {
            json!(description)
        };
    }
    s.endpoints[index].value = value.clone();
    Ok(Answer::ok(value))
}
