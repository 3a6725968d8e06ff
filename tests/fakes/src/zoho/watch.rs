//! The fake Zoho CRM's Notifications API (`/actions/watch`: enable, update, list, disable) and
//! the callbacks its channels get when records of the modules they watch change.

use std::collections::HashMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::answers::whole_error;
use super::{Change, Channel, State};

/// Most channels one request names, and most events one channel lists.
const MAX_ITEMS: usize = 50;
/// Longest `token` (NOTIFICATIONS.md §2: the docs' 50, not the later OAS's 256).
const MAX_TOKEN: usize = 50;
/// Farthest `channel_expiry`, and the expiry given instead of a missing or farther one.
const MAX_EXPIRY_DAYS: i64 = 7;
const DEFAULT_EXPIRY_HOURS: i64 = 1;

fn entry_error(code: &str, message: &str, api_name: &str, index: usize) -> Value {
    json!({"code": code, "message": message, "status": "error",
           "details": {"api_name": api_name, "json_path": format!("$.watch[{index}].{api_name}")}})
}

fn mandatory(api_name: &str, index: usize) -> Value {
    entry_error(
        "MANDATORY_NOT_FOUND",
        "required field not found",
        api_name,
        index,
    )
}

fn invalid(api_name: &str, index: usize) -> Value {
    entry_error("INVALID_DATA", "invalid data", api_name, index)
}

fn not_subscribed(id: &str) -> Value {
    json!({"code": "NOT_SUBSCRIBED", "details": {"channel_id": id},
           "message": "the channel is not subscribed to actions-watch", "status": "error"})
}

impl State {
    /// Drops the channels whose expiry has passed, as Zoho does.
    pub(super) fn purge_expired(&mut self) {
        let now = self.now();
        self.channels.retain(|_, c| c.expiry > now);
    }
}

/// Answers `/actions/watch`.
pub(super) fn watch(
    s: &mut State,
    method: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> HttpResponse {
    s.purge_expired();
    match method {
        "GET" => list(s, query),
        "DELETE" => disable(s, query),
        "POST" | "PUT" | "PATCH" => write(s, method, body),
        _ => whole_error(
            405,
            "INVALID_REQUEST_METHOD",
            "The http request method type is not a valid one",
            json!({}),
        ),
    }
}

/// The HTTP status of a `watch` answer: all good, some good, or none.
fn batch(results: Vec<Value>, ok: StatusCode) -> HttpResponse {
    let good = results.iter().filter(|r| r["status"] == "success").count();
    let status = if good == results.len() {
        ok
    } else if good == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::MULTI_STATUS
    };
    HttpResponse::build(status).json(json!({ "watch": results }))
}

fn write(s: &mut State, method: &str, body: &[u8]) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return whole_error(400, "INVALID_DATA", "body is not valid JSON", json!({}));
    };
    let Some(items) = body.get("watch").and_then(Value::as_array) else {
        return whole_error(
            400,
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "watch"}),
        );
    };
    if items.is_empty() || items.len() > MAX_ITEMS {
        return whole_error(
            400,
            "LIMIT_EXCEEDED",
            "give 1 to 50 channels",
            json!({"api_name": "watch", "limit": MAX_ITEMS}),
        );
    }
    let results = items
        .iter()
        .enumerate()
        .map(|(index, item)| match write_one(s, method, item, index) {
            Ok(entry) | Err(entry) => entry,
        })
        .collect();
    let ok = if method == "POST" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    batch(results, ok)
}

/// A channel id: digits, as a string or a number.
fn channel_id(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_digit()))
        .then_some(text)
}

/// `Module.operation` events naming known modules.
fn events(s: &State, value: &Value, index: usize) -> Result<Vec<String>, Value> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty() && l.len() <= MAX_ITEMS)
        .ok_or_else(|| invalid("events", index))?;
    list.iter()
        .map(|event| {
            let text = event.as_str().unwrap_or("");
            match text.rsplit_once('.') {
                Some((module, "create" | "edit" | "delete" | "all"))
                    if s.modules.contains_key(module) =>
                {
                    Ok(text.to_string())
                }
                _ => Err(invalid("events", index)),
            }
        })
        .collect()
}

fn module_of(event: &str) -> &str {
    event.rsplit_once('.').map_or(event, |(module, _)| module)
}

/// A channel's expiry from `channel_expiry`: as given when within a week, else an hour from now.
fn expiry(s: &State, value: &Value, index: usize) -> Result<DateTime<Utc>, Value> {
    let now = s.now();
    let fallback = now + chrono::Duration::hours(DEFAULT_EXPIRY_HOURS);
    if value.is_null() {
        return Ok(fallback);
    }
    let at = value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|at| *at > now)
        .ok_or_else(|| invalid("channel_expiry", index))?;
    Ok(if at > now + chrono::Duration::days(MAX_EXPIRY_DAYS) {
        fallback
    } else {
        at
    })
}

fn write_one(s: &mut State, method: &str, item: &Value, index: usize) -> Result<Value, Value> {
    let get = |key: &str| item.get(key).filter(|v| !v.is_null());
    let id = match get("channel_id") {
        None => return Err(mandatory("channel_id", index)),
        Some(value) => channel_id(value).ok_or_else(|| invalid("channel_id", index))?,
    };
    let existing = s.channels.get(&id).cloned();
    if method != "POST" && existing.is_none() {
        return Err(not_subscribed(&id));
    }
    let patch = method == "PATCH";
    if patch && get("_delete_events") == Some(&json!(true)) {
        let dropped = events(s, get("events").unwrap_or(&Value::Null), index)?;
        let channel = s.channels.get_mut(&id).expect("checked above");
        channel.events.retain(|e| !dropped.contains(e));
        if channel.events.is_empty() {
            s.channels.remove(&id);
        }
        return Ok(json!({"code": "SUCCESS", "details": {"channel_id": id},
                         "message": "Successfully un-subscribed from actions-watch",
                         "status": "success"}));
    }
    let mut channel = match existing.filter(|_| patch) {
        Some(channel) => channel,
        None => Channel {
            id: id.clone(),
            events: Vec::new(),
            notify_url: String::new(),
            token: None,
            expiry: expiry(s, &Value::Null, index)?,
            affected_values: false,
            related: true,
            condition: None,
        },
    };
    match get("events") {
        None if !patch => return Err(mandatory("events", index)),
        None => {}
        Some(value) => {
            let given = events(s, value, index)?;
            // An update replaces the events of the modules it names.
            channel
                .events
                .retain(|e| !given.iter().any(|g| module_of(g) == module_of(e)));
            channel.events.extend(given);
        }
    }
    match get("notify_url") {
        None if !patch => return Err(mandatory("notify_url", index)),
        None => {}
        Some(value) => {
            let url = value.as_str().and_then(|u| url::Url::parse(u).ok());
            match url.filter(|u| ["http", "https"].contains(&u.scheme())) {
                Some(_) => channel.notify_url = value.as_str().unwrap_or("").to_string(),
                None => return Err(invalid("notify_url", index)),
            }
        }
    }
    if let Some(value) = get("token") {
        match value.as_str() {
            Some(token) if token.chars().count() <= MAX_TOKEN => {
                channel.token = Some(token.to_string())
            }
            _ => return Err(invalid("token", index)),
        }
    }
    if let Some(value) = get("channel_expiry") {
        channel.expiry = expiry(s, value, index)?;
    }
    for (key, field) in [
        ("return_affected_field_values", &mut channel.affected_values),
        ("notify_on_related_action", &mut channel.related),
    ] {
        if let Some(value) = get(key) {
            *field = value.as_bool().ok_or_else(|| invalid(key, index))?;
        }
    }
    if let Some(value) = get("notification_condition") {
        channel.condition = Some(value.clone());
    }
    let answer = subscribed(s, &channel, method);
    s.channels.insert(id, channel);
    Ok(answer)
}

/// The modules a channel watches, in the order its events name them.
fn modules(channel: &Channel) -> Vec<&str> {
    let mut modules: Vec<&str> = Vec::new();
    for event in &channel.events {
        let module = module_of(event);
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    modules
}

fn resource(s: &State, channel: &Channel, module: &str) -> Value {
    let resource_id =
        5_725_767_000_000_000_000u64 + module.bytes().map(u64::from).sum::<u64>() * 1000;
    json!({"channel_expiry": s.text(channel.expiry),
           "resource_uri": format!("{}/crm/v8/{module}", s.api_domain),
           "resource_id": resource_id.to_string(), "resource_name": module,
           "channel_id": channel.id})
}

fn subscribed(s: &State, channel: &Channel, method: &str) -> Value {
    let events: Vec<Value> = modules(channel)
        .into_iter()
        .map(|m| resource(s, channel, m))
        .collect();
    let message = if method == "POST" {
        "Successfully subscribed for actions-watch of the given module"
    } else {
        "Successfully updated the subscribe details"
    };
    json!({"code": "SUCCESS", "status": "success", "message": message,
           "details": {"events": events}})
}

/// `GET /actions/watch[?channel_id=…&module=…]`: one entry per channel and module.
fn list(s: &State, query: &HashMap<String, String>) -> HttpResponse {
    let mut channels: Vec<&Channel> = s
        .channels
        .values()
        .filter(|c| query.get("channel_id").is_none_or(|id| *id == c.id))
        .collect();
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    let mut entries = Vec::new();
    for channel in channels {
        for module in modules(channel) {
            if query.get("module").is_some_and(|m| m != module) {
                continue;
            }
            let events: Vec<&String> = channel
                .events
                .iter()
                .filter(|e| module_of(e) == module)
                .collect();
            entries.push(json!({
                "channel_id": channel.id, "events": events, "resource_name": module,
                "channel_expiry": s.text(channel.expiry), "notify_url": channel.notify_url,
                "token": channel.token,
                "return_affected_field_values": channel.affected_values,
                "notify_on_related_action": channel.related,
                "notification_condition": channel.condition,
            }));
        }
    }
    if entries.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    let count = entries.len();
    HttpResponse::Ok().json(json!({"watch": entries,
        "info": {"page": 1, "per_page": 200, "count": count, "more_records": false}}))
}

/// `DELETE /actions/watch?channel_ids=…`.
fn disable(s: &mut State, query: &HashMap<String, String>) -> HttpResponse {
    let Some(ids) = query.get("channel_ids").filter(|ids| !ids.is_empty()) else {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "channel_ids"}),
        );
    };
    let results = ids
        .split(',')
        .map(|id| match s.channels.remove(id) {
            Some(_) => json!({"code": "SUCCESS", "details": {"channel_id": id},
                              "message": "Successfully un-subscribed from actions-watch",
                              "status": "success"}),
            None => not_subscribed(id),
        })
        .collect();
    batch(results, StatusCode::OK)
}

/// The field names a `notification_condition` lists.
fn condition_fields(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("field")
                .and_then(|f| f.get("api_name"))
                .and_then(Value::as_str)
            {
                names.push(name.to_string());
            }
            map.values().for_each(|v| condition_fields(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| condition_fields(v, names)),
        _ => {}
    }
}

/// Whether `channel` hears of `change`.
fn hears(channel: &Channel, change: &Change) -> bool {
    let op = match change.operation {
        "insert" => "create",
        "update" => "edit",
        other => other,
    };
    let watched = channel
        .events
        .iter()
        .any(|e| *e == format!("{}.all", change.module) || *e == format!("{}.{op}", change.module));
    let mut names = Vec::new();
    if let Some(condition) = &channel.condition {
        condition_fields(condition, &mut names);
    }
    watched
        && (change.operation != "update"
            || names.is_empty()
            || change.fields.keys().any(|k| names.contains(k)))
}

/// The query parameters of a notify URL, as an object.
fn query_params(url: &str) -> Value {
    let pairs: Map<String, Value> = url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(pairs)
}

/// The callback of `changes` (one module, one operation) for `channel`.
fn callback(s: &State, channel: &Channel, changes: &[&Change]) -> Value {
    let first = changes[0];
    let ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    let affected: Vec<Value> = match first.operation {
        "update" if channel.affected_values => changes
            .iter()
            .map(|c| json!({ c.id.clone(): c.fields }))
            .collect(),
        "update" => {
            let mut names: Vec<&String> = changes.iter().flat_map(|c| c.fields.keys()).collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| json!(n)).collect()
        }
        _ => Vec::new(),
    };
    let mut body = json!({
        "server_time": s.now().timestamp_millis(),
        "query_params": query_params(&channel.notify_url),
        "module": first.module,
        "resource_uri": format!("{}/crm/v2/{}", s.api_domain, first.module),
        "ids": ids,
        "affected_fields": affected,
        "operation": first.operation,
        "channel_id": channel.id,
    });
    if let Some(token) = &channel.token {
        body["token"] = json!(token);
    }
    body
}

/// Tells every live channel watching them of the changes made since the last call: one
/// callback per channel, module and operation, naming every record id.
pub(super) fn notify_changes(s: &mut State) {
    let changes = std::mem::take(&mut s.changes);
    if changes.is_empty() {
        return;
    }
    s.purge_expired();
    let mut groups: Vec<Vec<&Change>> = Vec::new();
    for change in &changes {
        match groups
            .iter_mut()
            .find(|g| g[0].module == change.module && g[0].operation == change.operation)
        {
            Some(group) => group.push(change),
            None => groups.push(vec![change]),
        }
    }
    let mut channels: Vec<&Channel> = s.channels.values().collect();
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    for group in &groups {
        for channel in &channels {
            let heard: Vec<&Change> = group
                .iter()
                .copied()
                .filter(|c| hears(channel, c))
                .collect();
            if heard.is_empty() {
                continue;
            }
            let body = callback(s, channel, &heard);
            super::deliver::send(s.callbacks.clone(), channel.notify_url.clone(), body);
        }
    }
}
