//! OpenAPI schemas for string fields that take one of a fixed set of values. Each is built from
//! the constants the code itself checks against, so the documented enum cannot drift from what
//! the API accepts and returns. Fields keep their Rust `String` type and their JSON; they point
//! at these with `#[schema(value_type = Provider)]`.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::crm::{ErrorKind, providers};
use crate::statuses::{delivery_status, status};

/// A string schema with exactly `values`, described by `description`.
pub fn string_enum<'a>(
    description: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> RefOr<Schema> {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(seen))
        .into()
}

/// Declares a named string-enum schema: `string_enum_schema!(Name, "description", values_expr)`.
#[macro_export]
macro_rules! string_enum_schema {
    ($(#[$meta:meta])* $name:ident, $description:expr, $values:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::schema::string_enum($description, $values)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The characters Rust's `char::is_whitespace` (and so `str::trim`) takes for white space, as a
/// regular-expression class body. Written out rather than `\s`, whose meaning differs between
/// ECMAScript, Python and Rust engines.
pub const WHITE_SPACE: &str =
    r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A pattern matching text with at least one character that is not white space.
pub fn not_blank_pattern() -> String {
    format!("[^{WHITE_SPACE}]")
}

/// The longest free-text name (of a tenant, a key, an account, a connection, a flow, …).
pub const MAX_NAME_CHARS: usize = 200;

/// A free-text name: 1 to 200 characters, not only white space. Fields point at it with
/// `#[schema(value_type = Name)]`; the validation checks the same constants.
pub struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A name: 1 to 200 characters, not only white space."))
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(not_blank_pattern()))
            .into()
    }
}

impl utoipa::ToSchema for Name {}

string_enum_schema!(
    /// A connection's CRM.
    Provider,
    "The CRM a connection talks to.",
    providers::ALL.iter().map(|p| p.name)
);

string_enum_schema!(
    /// The kinds of credentials, over every provider.
    AuthType,
    "The kind of credentials; each provider accepts some (see `AuthInput`).",
    providers::ALL
        .iter()
        .flat_map(|p| p.auth_types.iter().copied())
);

string_enum_schema!(
    /// A connection's status.
    ConnectionStatus,
    "`active`; `pending_authorization` until the OAuth consent completes; `needs_reauth` when \
     the vendor refused the credentials; `paused` while a rate limit holds it; `disabled` by \
     the tenant.",
    providers::CONNECTION_STATUSES.iter().copied()
);

string_enum_schema!(
    /// An event's status.
    EventStatus,
    "`received`, `queued`, `processed`, `failed` (a delivery is dead) or `ignored` (no flow \
     matched).",
    status::ALL.iter().copied()
);

string_enum_schema!(
    /// Where an event came from.
    EventSource,
    "`stripe`, or the CRM whose change it is: `hubspot`, `salesforce`, `zoho`.",
    crate::inbound::ALL_SOURCES.iter().copied()
);

string_enum_schema!(
    /// A delivery's status.
    DeliveryStatus,
    "`pending`, `succeeded`, `retrying`, `waiting` (for its connection), `dead` (the \
     dead-letter queue) or `skipped`.",
    delivery_status::ALL.iter().copied()
);

string_enum_schema!(
    /// What became of one attempt of a delivery.
    AttemptOutcome,
    "`succeeded`; `retrying` (another attempt is scheduled); `throttled` (the vendor's rate \
     limit refused it; tried again when the vendor says, outside the retry budget); `waiting` \
     (the vendor refused the credentials); `dead` (dead-lettered); `skipped` (a newer event was \
     already applied, or an assert did not hold).",
    crate::history::outcome::ALL.iter().copied()
);

string_enum_schema!(
    /// How a failed CRM call was classified.
    CrmErrorKind,
    "How a failed CRM call is handled: `auth`, `rate_limited` and `transient` are retried or \
     wait; `invalid`, `not_found` and `permanent` are dead-lettered.",
    ErrorKind::ALL.iter().map(|kind| kind.as_str())
);

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    fn values(schema: RefOr<Schema>) -> Vec<String> {
        let json = serde_json::to_value(schema).unwrap();
        json["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn enums_list_the_codes_values() {
        assert_eq!(
            values(Provider::schema()),
            ["sandbox", "hubspot", "salesforce", "zoho", "http", "smtp"]
        );
        assert_eq!(
            values(AuthType::schema()),
            [
                "none",
                "token",
                "refresh_token",
                "oauth",
                "jwt_bearer",
                "basic",
                "header",
                "hmac"
            ]
        );
        assert_eq!(values(EventStatus::schema()).len(), 5);
        assert_eq!(values(DeliveryStatus::schema()).len(), 6);
        assert_eq!(
            values(CrmErrorKind::schema()),
            [
                "auth",
                "rate_limited",
                "invalid",
                "not_found",
                "transient",
                "permanent"
            ]
        );
    }
}
