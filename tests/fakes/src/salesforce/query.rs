//! Running the fake Salesforce's SOQL: `query` (live records) and `queryAll` (the recycle bin
//! too), over records, opportunity stages and record types; answers paged with `done` and
//! `nextRecordsUrl` (which says `query` for both, as Salesforce's does).

use std::cmp::Ordering;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use super::State;
use super::answers::sf_error;
use super::changes::{RECORD_TYPE_FIELDS, is_deleted, parse_stamp};
use super::soql::{Condition, Literal, Op, parse_soql};
use super::state::get_field;

const STAGE_FIELDS: &[&str] = &[
    "Id",
    "ApiName",
    "MasterLabel",
    "IsActive",
    "IsClosed",
    "IsWon",
    "SortOrder",
    "DefaultProbability",
];

fn values_equal(actual: Option<&Value>, wanted: &Value) -> bool {
    match (actual, wanted) {
        (None | Some(Value::Null), Value::Null) => true,
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

/// How two values of one type compare; `None` across types.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn holds(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
    }
}

fn matches(record: &Map<String, Value>, condition: &Condition) -> bool {
    let actual = get_field(record, &condition.field).map(|(_, v)| v);
    match &condition.value {
        // Salesforce compares datetimes at whole seconds: milliseconds are ignored.
        Literal::DateTime(at) => actual
            .and_then(Value::as_str)
            .and_then(parse_stamp)
            .is_some_and(|actual| holds(condition.op, actual.timestamp().cmp(&at.timestamp()))),
        Literal::Value(wanted) => match condition.op {
            Op::Eq => values_equal(actual, wanted),
            Op::Ne => !values_equal(actual, wanted),
            op => actual
                .and_then(|a| compare(a, wanted))
                .is_some_and(|ordering| holds(op, ordering)),
        },
    }
}

/// Sort order of two field values: nulls first, then by value.
fn sort_order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => compare(a, b).unwrap_or_else(|| a.to_string().cmp(&b.to_string())),
    }
}

/// The rows `object` has for a query, and whether a field name is one of its fields.
fn rows_of(s: &State, object: &str, all: bool) -> Option<Vec<Map<String, Value>>> {
    if object.eq_ignore_ascii_case("OpportunityStage") {
        Some(s.stage_records())
    } else if object.eq_ignore_ascii_case("RecordType") {
        Some(s.record_types.clone())
    } else if s.known_object(object) {
        let records = s.records.get(object).cloned().unwrap_or_default();
        Some(
            records
                .into_iter()
                .filter(|r| all || !is_deleted(r))
                .collect(),
        )
    } else {
        None
    }
}

fn known_field(s: &State, object: &str, name: &str) -> bool {
    let listed = |fields: &[&str]| fields.iter().any(|f| f.eq_ignore_ascii_case(name));
    if object.eq_ignore_ascii_case("OpportunityStage") {
        listed(STAGE_FIELDS)
    } else if object.eq_ignore_ascii_case("RecordType") {
        listed(RECORD_TYPE_FIELDS)
    } else {
        s.field_name(object, name).is_some()
    }
}

/// `GET /query?q=` (`all`: `/queryAll?q=`): the first page of the answer.
pub(super) fn run_query(s: &mut State, soql: &str, version: &str, all: bool) -> HttpResponse {
    let query = match parse_soql(soql) {
        Ok(q) => q,
        Err(message) => return sf_error(400, "MALFORMED_QUERY", &message, &[]),
    };
    let object = query.object.clone();
    let Some(records) = rows_of(s, &object, all) else {
        return sf_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{object}' is not supported."),
            &[],
        );
    };
    let named = query
        .fields
        .iter()
        .chain(query.conditions.iter().map(|c| &c.field))
        .chain(query.order.iter().map(|(f, _)| f));
    for field in named {
        if !known_field(s, &object, field) {
            return sf_error(
                400,
                "INVALID_FIELD",
                &format!("No such column '{field}' on entity '{object}'."),
                &[],
            );
        }
    }
    let mut found: Vec<Map<String, Value>> = records
        .into_iter()
        .filter(|r| query.conditions.iter().all(|c| matches(r, c)))
        .collect();
    found.sort_by(|a, b| {
        query
            .order
            .iter()
            .fold(Ordering::Equal, |so_far, (field, ascending)| {
                so_far.then_with(|| {
                    let ordering = sort_order(
                        get_field(a, field).map(|(_, v)| v),
                        get_field(b, field).map(|(_, v)| v),
                    );
                    if *ascending {
                        ordering
                    } else {
                        ordering.reverse()
                    }
                })
            })
    });
    if let Some(limit) = query.limit {
        found.truncate(limit);
    }
    let rows: Vec<Value> = found
        .iter()
        .map(|r| {
            let id = r.get("Id").and_then(Value::as_str).unwrap_or("");
            let mut row = Map::new();
            row.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}),
            );
            for field in &query.fields {
                match get_field(r, field) {
                    Some((name, value)) => row.insert(name.clone(), value.clone()),
                    None => row.insert(field.clone(), Value::Null),
                };
            }
            Value::Object(row)
        })
        .collect();
    s.next_id += 1;
    let locator = format!("01gFAKE{:011}", s.next_id);
    page(s, &locator, rows, 0, version)
}

/// One page of `rows` from `offset`; the rest is kept under `locator` for `nextRecordsUrl`.
fn page(
    s: &mut State,
    locator: &str,
    rows: Vec<Value>,
    offset: usize,
    version: &str,
) -> HttpResponse {
    let size = s.page_size.max(1);
    let total = rows.len();
    let end = (offset + size).min(total);
    let records = rows.get(offset..end).unwrap_or_default().to_vec();
    let mut answer = json!({ "totalSize": total, "done": end >= total, "records": records });
    if end < total {
        answer["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{locator}-{end}"));
        s.pages.insert(locator.to_string(), rows);
    } else {
        s.pages.remove(locator);
    }
    HttpResponse::Ok().json(answer)
}

/// `GET /query/{locator}-{offset}`: the next page of an earlier answer (`query` or `queryAll`).
pub(super) fn next_page(s: &mut State, cursor: &str, version: &str) -> HttpResponse {
    let parsed = cursor
        .rsplit_once('-')
        .and_then(|(locator, offset)| Some((locator.to_string(), offset.parse::<usize>().ok()?)));
    let Some((locator, offset)) = parsed else {
        return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator", &[]);
    };
    match s.pages.get(&locator).cloned() {
        Some(rows) if offset <= rows.len() => page(s, &locator, rows, offset, version),
        _ => sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator", &[]),
    }
}
