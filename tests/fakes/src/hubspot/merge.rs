//! `POST /crm/v3/objects/{contacts|0-3}/merge` as HubSpot documents it (`PublicMergeInput`:
//! `primaryObjectId`, `objectIdToMerge`): the primary keeps its values and takes the other's
//! where it has none, the other's associations move to it, and the other is gone. Answers
//! the primary as a `SimplePublicObject`.

use actix_web::HttpResponse;
use serde_json::Value;

use super::State;
use super::answers::{error, object_json};

/// The objects HubSpot's API merges.
const MERGED: &[&str] = &["contacts", "deals"];

pub(super) fn merge(s: &mut State, object: &str, body: &Value) -> HttpResponse {
    if !MERGED.contains(&object) {
        return error(404, "NOT_FOUND", &format!("{object} cannot be merged"));
    }
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    let (primary, other) = (text("primaryObjectId"), text("objectIdToMerge"));
    if primary.is_empty() || other.is_empty() {
        return error(
            400,
            "VALIDATION_ERROR",
            "primaryObjectId and objectIdToMerge are required",
        );
    }
    if primary == other {
        return error(
            400,
            "VALIDATION_ERROR",
            "A record cannot be merged with itself",
        );
    }
    let (Some(kept), Some(gone)) = (s.by_id(object, primary), s.by_id(object, other)) else {
        return error(404, "OBJECT_NOT_FOUND", "resource not found");
    };
    let records = s.records.get_mut(object).expect("the object has records");
    let theirs = records[gone].properties.clone();
    for (name, value) in theirs {
        let own = records[kept].properties.get(&name);
        if own.is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
            records[kept].properties.insert(name, value);
        }
    }
    let answer = object_json(&records[kept]);
    records.remove(gone);
    for link in s.associations.iter_mut() {
        if link.0 == object && link.1 == other {
            link.1 = primary.to_string();
        }
        if link.2 == object && link.3 == other {
            link.3 = primary.to_string();
        }
    }
    s.merges
        .push((object.to_string(), primary.to_string(), other.to_string()));
    HttpResponse::Ok().json(answer)
}
