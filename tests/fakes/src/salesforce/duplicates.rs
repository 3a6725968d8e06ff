//! Duplicate rules, as Salesforce's Duplicate Management applies them to a created record: a
//! rule names an object and the fields whose equal values (ignoring case) make a record a
//! duplicate, and whether it alerts or blocks. A create it finds duplicates for is refused
//! with 400 `DUPLICATES_DETECTED` (`DuplicateResult` → `MatchResult` → `MatchRecord`), unless
//! the rule only alerts and the request's `Sforce-Duplicate-Rule-Header` says `allowSave=true`.
//! The duplicates' fields are in the answer when the header says `includeRecordDetails=true`,
//! else only their ids.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use super::State;

/// One duplicate rule of the org.
pub(super) struct DuplicateRule {
    pub(super) object: String,
    pub(super) fields: Vec<String>,
    /// Alert (a save may be allowed) rather than block.
    pub(super) alert: bool,
}

/// The header's `name=true` option.
fn option(req: &HttpRequest, name: &str) -> bool {
    req.headers()
        .get("sforce-duplicate-rule-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|header| {
            header
                .split(';')
                .any(|part| part.trim().eq_ignore_ascii_case(&format!("{name}=true")))
        })
}

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.and_then(Value::as_str), b.and_then(Value::as_str)) {
        (Some(a), Some(b)) => !a.trim().is_empty() && a.trim().eq_ignore_ascii_case(b.trim()),
        _ => false,
    }
}

/// The refusal of a create of `fields` into `object`, if a rule finds duplicates of it.
pub(super) fn refusal(
    s: &State,
    req: &HttpRequest,
    version: &str,
    object: &str,
    fields: &Map<String, Value>,
) -> Option<HttpResponse> {
    let rule = s.duplicate_rules.iter().find(|rule| {
        rule.object == object
            && s.records.get(object).is_some_and(|records| {
                records
                    .iter()
                    .any(|r| rule.fields.iter().all(|f| same(r.get(f), fields.get(f))))
            })
    })?;
    if rule.alert && option(req, "allowSave") {
        return None;
    }
    let details = option(req, "includeRecordDetails");
    let matched: Vec<Value> = s.records[object]
        .iter()
        .filter(|r| rule.fields.iter().all(|f| same(r.get(f), fields.get(f))))
        .map(|r| {
            let id = r.get("Id").cloned().unwrap_or(Value::Null);
            let mut record = Map::new();
            record.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{}", id.as_str().unwrap_or(""))}),
            );
            if details {
                record.extend(r.clone());
            }
            record.insert("Id".into(), id);
            json!({"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 100.0, "record": record})
        })
        .collect();
    let rule_name = format!("Standard_{object}_Duplicate_Rule");
    Some(HttpResponse::BadRequest().json(json!([{
        "duplicateResult": {
            "allowSave": rule.alert,
            "duplicateRule": rule_name,
            "duplicateRuleEntityType": object,
            "errorMessage": "Use one of these records?",
            "matchResults": [{
                "entityType": object,
                "errors": [],
                "matchEngine": "ExactMatchEngine",
                "matchRecords": matched,
                "rule": format!("Standard_{object}_Match_Rule"),
                "size": matched.len(),
                "success": true
            }]
        },
        "errorCode": "DUPLICATES_DETECTED",
        "message": "Use one of these records?",
        "fields": []
    }])))
}
