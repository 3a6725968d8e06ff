//! "Did you mean": the closest known Stripe event type to a misspelt one.

/// Why a well-formed trigger pattern names nothing in Stripe's catalogue of event types (a
/// misspelled type would validate and never fire), with the closest type as a hint.
pub(super) fn unknown_event_type(pattern: &str) -> Option<String> {
    use crate::stripe::event_types::EVENT_TYPES;
    let known = match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => EVENT_TYPES.iter().any(|t| {
            t.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        }),
        None => EVENT_TYPES.contains(&pattern),
    };
    if known {
        return None;
    }
    let closest = EVENT_TYPES
        .iter()
        .map(|t| (edit_distance(pattern, t), *t))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    Some(match closest {
        Some((_, candidate)) => {
            format!("'{pattern}' is not a Stripe event type; did you mean '{candidate}'?")
        }
        None => format!(
            "'{pattern}' is not a Stripe event type (see GET /v1/flow-templates for examples, or \
             Stripe's list of event types)"
        ),
    })
}

/// Levenshtein distance, for "did you mean" hints on short keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
