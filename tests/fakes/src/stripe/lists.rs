//! The fake Stripe's lists: the `limit` and cursor parameters, paging, and the events and
//! webhook endpoints lists (the balance transactions list is in `balance`).

use serde_json::{Map, Value, json};

use super::answer::{invalid, no_such, unknown_param};
use super::objects::retention_cutoff;
use super::params::{boolean, glob, integer, string_list, string_param};
use super::{Answer, Endpoint, State, StoredEvent};

/// `limit`: 1 to 100, 10 by default.
pub(super) fn limit_param(params: &Map<String, Value>) -> Result<usize, Answer> {
    let Some(text) = string_param(params, "limit")? else {
        return Ok(10);
    };
    let limit = integer(&text, "limit")?;
    if !(1..=100).contains(&limit) {
        return Err(invalid(
            Some("limit"),
            "Invalid limit: must be between 1 and 100",
        ));
    }
    Ok(limit as usize)
}

pub(super) enum Cursor {
    None,
    After(String),
    Before(String),
}

pub(super) fn cursor_param(params: &Map<String, Value>) -> Result<Cursor, Answer> {
    let after = string_param(params, "starting_after")?.filter(|s| !s.is_empty());
    let before = string_param(params, "ending_before")?.filter(|s| !s.is_empty());
    match (after, before) {
        (Some(_), Some(_)) => Err(invalid(
            None,
            "You may only specify one of these parameters: ending_before, starting_after.",
        )),
        (Some(a), None) => Ok(Cursor::After(a)),
        (None, Some(b)) => Ok(Cursor::Before(b)),
        (None, None) => Ok(Cursor::None),
    }
}

/// One page of `items` (newest first, each with its sort key and id), as Stripe pages:
/// `starting_after` gives the next older items, `ending_before` the newer items closest to
/// the cursor; `has_more` says whether more lie beyond the page in that direction.
/// `all` holds every item's key (for locating the cursor even if filters hide it).
pub(super) fn paginate<T>(
    all: &[((i64, u64), String)],
    items: Vec<((i64, u64), T)>,
    cursor: &Cursor,
    limit: usize,
    kind: &str,
) -> Result<(Vec<T>, bool), Answer> {
    let locate = |id: &str, param: &str| {
        all.iter()
            .find(|(_, i)| i == id)
            .map(|(k, _)| *k)
            .ok_or_else(|| no_such(kind, id, param, 400))
    };
    match cursor {
        Cursor::None => {
            let has_more = items.len() > limit;
            Ok((
                items.into_iter().take(limit).map(|(_, v)| v).collect(),
                has_more,
            ))
        }
        Cursor::After(id) => {
            let at = locate(id, "starting_after")?;
            let older: Vec<T> = items
                .into_iter()
                .filter(|(k, _)| *k < at)
                .map(|(_, v)| v)
                .collect();
            let has_more = older.len() > limit;
            Ok((older.into_iter().take(limit).collect(), has_more))
        }
        Cursor::Before(id) => {
            let at = locate(id, "ending_before")?;
            let newer: Vec<T> = items
                .into_iter()
                .filter(|(k, _)| *k > at)
                .map(|(_, v)| v)
                .collect();
            let has_more = newer.len() > limit;
            let skip = newer.len().saturating_sub(limit);
            Ok((newer.into_iter().skip(skip).collect(), has_more))
        }
    }
}

pub(super) fn list(url: &str, data: Vec<Value>, has_more: bool) -> Answer {
    Answer::ok(json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

pub(super) fn list_events(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "created",
            "delivery_success",
            "ending_before",
            "expand",
            "limit",
            "starting_after",
            "type",
            "types",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let kind = string_param(params, "type")?;
    let kinds = string_list(params.get("types"));
    if kind.is_some() && kinds.is_some() {
        return Err(invalid(
            None,
            "You may only specify one of these parameters: type, types.",
        ));
    }
    if kinds.as_ref().is_some_and(|k| k.len() > 20) {
        return Err(invalid(
            Some("types"),
            "Invalid array: types must have at most 20 elements",
        ));
    }
    // created: an exact time, or a range.
    let mut bounds: Vec<(&str, i64)> = Vec::new();
    match params.get("created") {
        None => {}
        Some(Value::String(exact)) => bounds.push(("eq", integer(exact, "created")?)),
        Some(Value::Object(range)) => {
            for (op, value) in range {
                if !["gt", "gte", "lt", "lte"].contains(&op.as_str()) {
                    return Err(unknown_param(&format!("created[{op}]")));
                }
                let param = format!("created[{op}]");
                let text = value.as_str().unwrap_or("");
                let op = match op.as_str() {
                    "gt" => "gt",
                    "gte" => "gte",
                    "lt" => "lt",
                    _ => "lte",
                };
                bounds.push((op, integer(text, &param)?));
            }
        }
        Some(_) => return Err(invalid(Some("created"), "Invalid created")),
    }
    let delivery = match string_param(params, "delivery_success")? {
        Some(text) => Some(boolean(&text, "delivery_success")?),
        None => None,
    };

    let cutoff = retention_cutoff();
    let mut kept: Vec<&StoredEvent> = s.events.iter().filter(|e| e.created() >= cutoff).collect();
    kept.sort_by_key(|e| std::cmp::Reverse((e.created(), e.seq)));
    let all: Vec<((i64, u64), String)> = kept
        .iter()
        .map(|e| {
            (
                (e.created(), e.seq),
                e.event["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // Only the page's events are copied: a backfill pages through every event.
    let items: Vec<((i64, u64), &Value)> = kept
        .into_iter()
        .filter(|e| {
            let t = e.event["type"].as_str().unwrap_or("");
            let created = e.created();
            kind.as_ref().is_none_or(|k| glob(k, t))
                && kinds.as_ref().is_none_or(|ks| ks.iter().any(|k| k == t))
                && delivery.is_none_or(|d| d == e.delivered)
                && bounds.iter().all(|(op, v)| match *op {
                    "eq" => created == *v,
                    "gt" => created > *v,
                    "gte" => created >= *v,
                    "lt" => created < *v,
                    _ => created <= *v,
                })
        })
        .map(|e| ((e.created(), e.seq), &e.event))
        .collect();
    let (data, has_more) = paginate(&all, items, &cursor, limit, "event")?;
    Ok(list(
        "/v1/events",
        data.into_iter().cloned().collect(),
        has_more,
    ))
}

pub(super) fn list_endpoints(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    for name in params.keys() {
        if !["ending_before", "expand", "limit", "starting_after"].contains(&name.as_str()) {
            return Err(unknown_param(name));
        }
    }
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let mut endpoints: Vec<&Endpoint> = s.endpoints.iter().collect();
    endpoints.sort_by_key(|e| std::cmp::Reverse((e.value["created"].as_i64().unwrap_or(0), e.seq)));
    let key = |e: &Endpoint| (e.value["created"].as_i64().unwrap_or(0), e.seq);
    let all: Vec<((i64, u64), String)> = endpoints
        .iter()
        .map(|e| (key(e), e.value["id"].as_str().unwrap_or("").to_string()))
        .collect();
    let items = endpoints
        .iter()
        .map(|e| (key(e), e.value.clone()))
        .collect();
    let (data, has_more) = paginate(&all, items, &cursor, limit, "webhook endpoint")?;
    Ok(list("/v1/webhook_endpoints", data, has_more))
}
