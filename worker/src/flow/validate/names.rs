//! How paths and names in a flow are spelled: `steps.<id>`-safe identifiers, event patterns,
//! and the paths errors are reported at.

use serde_json::Value;

/// `prefix.key`, or `prefix["key"]` when the key is not an identifier.
pub(crate) fn key_path(prefix: &str, key: &str) -> String {
    if is_identifier(key) {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}[{}]", Value::String(key.to_owned()))
    }
}

/// Letters, digits and `_`, not starting with a digit: usable as `steps.<id>` in templates.
pub(crate) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a trigger pattern is well formed: `*`, an event type (`charge.succeeded`), or a
/// prefix followed by `.*` (`customer.subscription.*`).
pub(crate) fn is_event_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let segments: Vec<&str> = pattern.split('.').collect();
    let (last, head) = match segments.split_last() {
        Some(split) => split,
        None => return false,
    };
    let word = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    head.iter().all(word) && (word(last) || (*last == "*" && !head.is_empty()))
}

/// `key` under `path` (`path.key`), or just `key` at the top.
pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        if is_identifier(key) {
            key.to_owned()
        } else {
            format!("[{}]", Value::String(key.to_owned()))
        }
    } else {
        key_path(path, key)
    }
}
