//! The fake Salesforce's SOQL: a tokenizer, a parser for the subset the adapters send, and the query runner.

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use super::State;
use super::answers::sf_error;
use super::state::get_field;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Eq,
    Ne,
    Comma,
}

fn tokenize(soql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = soql.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        if let Some(next) = chars.get(i + 1) {
                            text.push(*next);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if c == '=' {
            out.push(Tok::Eq);
            i += 1;
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            out.push(Tok::Ne);
            i += 2;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "_.-".contains(chars[i])) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected token: '{c}'"));
        }
    }
    Ok(out)
}

struct Query {
    fields: Vec<String>,
    object: String,
    conditions: Vec<(String, bool, Value)>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

fn keyword(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn parse_soql(soql: &str) -> Result<Query, String> {
    let toks = tokenize(soql)?;
    let mut i = 0;
    if !keyword(toks.get(i), "SELECT") {
        return Err("expecting SELECT".into());
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        match toks.get(i) {
            Some(Tok::Word(w)) => fields.push(w.clone()),
            _ => return Err("expecting a field name".into()),
        }
        i += 1;
        if toks.get(i) == Some(&Tok::Comma) {
            i += 1;
        } else {
            break;
        }
    }
    if !keyword(toks.get(i), "FROM") {
        return Err("expecting FROM".into());
    }
    i += 1;
    let object = match toks.get(i) {
        Some(Tok::Word(w)) => w.clone(),
        _ => return Err("expecting an object name".into()),
    };
    i += 1;
    let mut conditions = Vec::new();
    if keyword(toks.get(i), "WHERE") {
        i += 1;
        loop {
            let field = match toks.get(i) {
                Some(Tok::Word(w)) => w.clone(),
                _ => return Err("expecting a field in WHERE".into()),
            };
            let equal = match toks.get(i + 1) {
                Some(Tok::Eq) => true,
                Some(Tok::Ne) => false,
                _ => return Err(format!("unexpected token after {field}")),
            };
            let value = match toks.get(i + 2) {
                Some(Tok::Str(s)) => json!(s),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => json!(true),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => json!(false),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
                Some(Tok::Word(w)) => match w.parse::<f64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Err(format!("unexpected value: {w}")),
                },
                _ => return Err("expecting a value".into()),
            };
            conditions.push((field, equal, value));
            i += 3;
            if keyword(toks.get(i), "AND") {
                i += 1;
            } else {
                break;
            }
        }
    }
    let mut order = None;
    if keyword(toks.get(i), "ORDER") && keyword(toks.get(i + 1), "BY") {
        let field = match toks.get(i + 2) {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err("expecting a field in ORDER BY".into()),
        };
        i += 3;
        let mut ascending = true;
        if keyword(toks.get(i), "ASC") {
            i += 1;
        } else if keyword(toks.get(i), "DESC") {
            ascending = false;
            i += 1;
        }
        order = Some((field, ascending));
    }
    let mut limit = None;
    if keyword(toks.get(i), "LIMIT") {
        limit = match toks.get(i + 1) {
            Some(Tok::Word(w)) => Some(w.parse().map_err(|_| "bad LIMIT".to_string())?),
            _ => return Err("expecting a number after LIMIT".into()),
        };
        i += 2;
    }
    if i != toks.len() {
        return Err(format!("unexpected token at position {i}"));
    }
    Ok(Query {
        fields,
        object,
        conditions,
        order,
        limit,
    })
}

fn values_equal(actual: Option<&Value>, wanted: &Value) -> bool {
    match (actual, wanted) {
        (None | Some(Value::Null), Value::Null) => true,
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

pub(super) fn run_query(s: &State, soql: &str, version: &str) -> HttpResponse {
    let query = match parse_soql(soql) {
        Ok(q) => q,
        Err(message) => return sf_error(400, "MALFORMED_QUERY", &message, &[]),
    };
    let object = query.object.clone();
    let records = if object.eq_ignore_ascii_case("OpportunityStage") {
        s.stage_records()
    } else if s.known_object(&object) {
        s.records.get(&object).cloned().unwrap_or_default()
    } else {
        return sf_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{object}' is not supported."),
            &[],
        );
    };
    let check_field = |name: &str| -> Result<(), HttpResponse> {
        let known = if object.eq_ignore_ascii_case("OpportunityStage") {
            [
                "Id",
                "ApiName",
                "MasterLabel",
                "IsActive",
                "IsClosed",
                "IsWon",
                "SortOrder",
                "DefaultProbability",
            ]
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        } else {
            s.field_name(&object, name).is_some()
        };
        if known {
            Ok(())
        } else {
            Err(sf_error(
                400,
                "INVALID_FIELD",
                &format!("No such column '{name}' on entity '{object}'."),
                &[],
            ))
        }
    };
    for field in query
        .fields
        .iter()
        .chain(query.conditions.iter().map(|(f, _, _)| f))
        .chain(query.order.iter().map(|(f, _)| f))
    {
        if let Err(response) = check_field(field) {
            return response;
        }
    }
    let mut found: Vec<Map<String, Value>> = records
        .into_iter()
        .filter(|r| {
            query.conditions.iter().all(|(field, equal, wanted)| {
                values_equal(get_field(r, field).map(|(_, v)| v), wanted) == *equal
            })
        })
        .collect();
    if let Some((field, ascending)) = &query.order {
        found.sort_by(|a, b| {
            let key = |r: &Map<String, Value>| get_field(r, field).map(|(_, v)| v.to_string());
            let ordering = key(a).cmp(&key(b));
            if *ascending {
                ordering
            } else {
                ordering.reverse()
            }
        });
    }
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
    HttpResponse::Ok().json(json!({ "totalSize": rows.len(), "done": true, "records": rows }))
}
