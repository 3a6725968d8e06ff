//! Stripe's parameters: ids, form bodies in bracket notation, typed parameters, API versions, type filters and metadata updates.

use serde_json::{Map, Value, json};

use super::Answer;
use super::answer::invalid;

/// A Stripe-looking id: `prefix` and 24 alphanumerics.
pub fn stripe_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let tail: String = bytes
        .iter()
        .take(23)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}1{tail}")
}

/// Parses a form body (or query string) in Stripe's bracket notation into a JSON tree of
/// strings: `a[]=x&a[]=y` and `a[0]=x&a[1]=y` → arrays, `a[b]=v` → objects, nested as deep as
/// the keys go.
pub fn parse_form(input: &str) -> Result<Map<String, Value>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(input).map_err(|e| e.to_string())?;
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let (base, segments) = split_key(&key);
        let slot = root
            .as_object_mut()
            .unwrap()
            .entry(base)
            .or_insert(Value::Null);
        insert(slot, &segments, value);
    }
    compact(&mut root);
    match root {
        Value::Object(map) => Ok(map),
        _ => unreachable!(),
    }
}

pub(super) fn split_key(key: &str) -> (String, Vec<String>) {
    let Some(open) = key.find('[') else {
        return (key.to_string(), Vec::new());
    };
    let base = key[..open].to_string();
    let mut segments = Vec::new();
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            // Not bracket notation after all: keep the key whole.
            return (key.to_string(), Vec::new());
        };
        segments.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    if !rest.is_empty() {
        return (key.to_string(), Vec::new());
    }
    (base, segments)
}

pub(super) fn insert(slot: &mut Value, segments: &[String], value: String) {
    let Some((first, rest)) = segments.split_first() else {
        *slot = Value::String(value);
        return;
    };
    let index = first.parse::<usize>().ok();
    if first.is_empty() || (index.is_some() && !slot.is_object()) {
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        let array = slot.as_array_mut().unwrap();
        let at = match index {
            Some(i) => {
                if array.len() <= i {
                    array.resize(i + 1, Value::Null);
                }
                i
            }
            None => {
                array.push(Value::Null);
                array.len() - 1
            }
        };
        insert(&mut array[at], rest, value);
    } else {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let child = slot
            .as_object_mut()
            .unwrap()
            .entry(first.clone())
            .or_insert(Value::Null);
        insert(child, rest, value);
    }
}

/// Drops the holes sparse indexes left in arrays.
pub(super) fn compact(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(compact);
        }
        Value::Object(map) => map.values_mut().for_each(compact),
        _ => {}
    }
}

/// A parameter given as `a[]=x`, `a[0]=x` or `a=x`, as a list of strings.
pub(super) fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Value::String(s) if s.is_empty() => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

pub(super) fn string_param(
    params: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, Answer> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            Some(name),
            &format!("Invalid {name}: must be a string"),
        )),
    }
}

pub(super) fn integer(text: &str, param: &str) -> Result<i64, Answer> {
    text.parse()
        .map_err(|_| invalid(Some(param), &format!("Invalid integer: {text}")))
}

pub(super) fn boolean(text: &str, param: &str) -> Result<bool, Answer> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(Some(param), &format!("Invalid boolean: {text}"))),
    }
}

/// `YYYY-MM-DD`, optionally with a release name (`2024-09-30.acacia`).
pub(super) fn is_api_version(text: &str) -> bool {
    let date = text.split('.').next().unwrap_or("");
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        && text
            .split('.')
            .nth(1)
            .is_none_or(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Matches an event type against a `type` filter with `*` wildcards (`invoice.*`).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// JSON merge: objects merge key by key, anything else replaces.
pub(super) fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Stripe's metadata limits: keys per object, characters per key and per value.
pub(super) const METADATA_KEYS: usize = 50;
pub(super) const METADATA_KEY_CHARS: usize = 40;
pub(super) const METADATA_VALUE_CHARS: usize = 500;

/// Stripe's metadata update rules: `metadata=` clears it, `metadata[k]=` drops `k`; keys are
/// at most 40 characters without square brackets, values at most 500, and an object keeps at
/// most 50 keys.
pub(super) fn apply_metadata(current: &mut Value, given: &Value) -> Result<(), Answer> {
    match given {
        Value::String(s) if s.is_empty() => {
            *current = json!({});
            Ok(())
        }
        Value::Object(map) => {
            let mut target = current.as_object().cloned().unwrap_or_default();
            for (key, value) in map {
                let param = format!("metadata[{key}]");
                check_metadata_entry(key, value, &param)?;
                match value.as_str() {
                    Some("") => {
                        target.remove(key);
                    }
                    Some(v) => {
                        target.insert(key.clone(), json!(v));
                    }
                    None => unreachable!("checked above"),
                }
            }
            if target.len() > METADATA_KEYS {
                return Err(invalid(
                    Some("metadata"),
                    &format!(
                        "Invalid metadata: metadata can have at most {METADATA_KEYS} keys; this request would leave {}.",
                        target.len()
                    ),
                ));
            }
            *current = Value::Object(target);
            Ok(())
        }
        _ => Err(invalid(
            Some("metadata"),
            "Invalid object: metadata must be a hash",
        )),
    }
}

fn check_metadata_entry(key: &str, value: &Value, param: &str) -> Result<(), Answer> {
    if key.contains(['[', ']']) {
        return Err(invalid(
            Some(param),
            "Invalid metadata: keys may not contain square brackets ('[' or ']').",
        ));
    }
    if key.chars().count() > METADATA_KEY_CHARS {
        return Err(invalid(
            Some(param),
            &format!(
                "Invalid metadata: keys can be at most {METADATA_KEY_CHARS} characters long ('{key}')."
            ),
        ));
    }
    let Some(text) = value.as_str() else {
        return Err(invalid(
            Some(param),
            "Invalid metadata: values must be strings",
        ));
    };
    if text.chars().count() > METADATA_VALUE_CHARS {
        return Err(invalid(
            Some(param),
            &format!(
                "Invalid metadata: values can be at most {METADATA_VALUE_CHARS} characters long."
            ),
        ));
    }
    Ok(())
}
