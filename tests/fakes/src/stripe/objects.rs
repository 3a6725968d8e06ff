//! The fake Stripe's objects and events by id, with `expand[]`.

use chrono::Utc;
use serde_json::{Map, Value};

use super::answer::{invalid, no_such};
use super::catalog::expandable;
use super::params::string_list;
use super::{Answer, EVENT_RETENTION_DAYS, State};

pub(super) fn expand_paths(params: &Map<String, Value>) -> Vec<String> {
    string_list(params.get("expand")).unwrap_or_default()
}

/// Expands `path` (`customer`, `latest_charge.customer`) in `object` from the store.
pub(super) fn expand(s: &State, object: &mut Value, path: &str, param: &str) -> Result<(), Answer> {
    let (field, rest) = match path.split_once('.') {
        Some((field, rest)) => (field, Some(rest)),
        None => (path, None),
    };
    let kind = object["object"].as_str().unwrap_or("").to_string();
    if let Some(fields) = expandable(&kind)
        && !fields.contains(&field)
    {
        return Err(invalid(
            Some(param),
            &format!("This property cannot be expanded ({field})."),
        ));
    }
    let Some(slot) = object.get_mut(field) else {
        return Err(invalid(
            Some(param),
            &format!("This property cannot be expanded ({field})."),
        ));
    };
    if let Some(id) = slot.as_str()
        && let Some(found) = s.objects.get(id)
    {
        *slot = found.clone();
    }
    if let Some(rest) = rest
        && slot.is_object()
    {
        expand(s, slot, rest, param)?;
    }
    Ok(())
}

pub(super) fn retrieve_object(
    s: &State,
    kind: &str,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    let mut object = match s.objects.get(id) {
        Some(o) if o["object"] == kind => o.clone(),
        _ => return Err(no_such(kind, id, "id", 404)),
    };
    for (i, path) in expand_paths(params).iter().enumerate() {
        expand(s, &mut object, path, &format!("expand[{i}]"))?;
    }
    Ok(Answer::ok(object))
}

pub(super) fn retention_cutoff() -> i64 {
    Utc::now().timestamp() - EVENT_RETENTION_DAYS * 86_400
}

pub(super) fn retrieve_event(
    s: &State,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    let cutoff = retention_cutoff();
    let mut event = match s.events.iter().find(|e| e.event["id"] == id) {
        Some(e) if e.created() >= cutoff => e.event.clone(),
        _ => return Err(no_such("event", id, "id", 404)),
    };
    for (i, path) in expand_paths(params).iter().enumerate() {
        expand(s, &mut event, path, &format!("expand[{i}]"))?;
    }
    Ok(Answer::ok(event))
}
