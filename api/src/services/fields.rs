//! The rules for the text fields tenants send, each stated once: the check the validation runs
//! and the schema the OpenAPI document shows are built from the same constants, so the spec
//! says exactly what the server accepts. A field keeps its Rust type and points at its rule's
//! schema with `#[schema(value_type = Name)]` (or `Option<Name>`); its own doc comment and
//! example stay. Lengths count characters (Unicode scalar values), as JSON Schema does.
//!
//! Must not: read the database or the settings. A rule that depends on them (a URL policy, a
//! referenced id) belongs to the service, and says so in its field's description.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use crate::error::FieldError;

pub use tributary_worker::schema::{MAX_NAME_CHARS, Name};
use tributary_worker::schema::{WHITE_SPACE, not_blank_pattern};

/// Declares a named string schema for a rule: `text_schema!(Name, "description", builder)`.
macro_rules! text_schema {
    ($(#[$meta:meta])* $name:ident, $schema:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// Control characters (Unicode `Cc`), as a class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// Whether `value` is empty or only white space.
pub fn is_blank(value: &str) -> bool {
    value.trim().is_empty()
}

// --- names ---------------------------------------------------------------------------------

/// Checks a free-text name: not blank, at most 200 characters.
pub fn check_name(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if is_blank(value) {
        errors.push(FieldError::new(field, "must not be blank"));
    } else if value.chars().count() > MAX_NAME_CHARS {
        errors.push(FieldError::new(field, "must be at most 200 characters"));
    }
}

// --- email addresses -----------------------------------------------------------------------

/// The longest email address.
pub const MAX_EMAIL_CHARS: usize = 320;

/// `local@domain.tld`: one `@`, no white space inside, a domain with a dot that neither starts
/// nor ends with one; white space around it is dropped.
fn email_pattern() -> String {
    let w = WHITE_SPACE;
    format!("^[{w}]*[^@{w}]+@[^@.{w}][^@{w}]*\\.[^@{w}]*[^@.{w}][{w}]*$")
}

text_schema!(
    /// An email address, as [`parse_email`] accepts it.
    Email,
    text("An email address (at most 320 characters); compared without regard to case.")
        .max_length(Some(MAX_EMAIL_CHARS))
        .pattern(Some(email_pattern()))
        .examples(["ada@example.com"])
);

/// Normalises an email address (trimmed, lower-case) or explains what is wrong with it.
pub fn parse_email(value: &str) -> Result<String, &'static str> {
    if value.chars().count() > MAX_EMAIL_CHARS {
        return Err("must be at most 320 characters");
    }
    let email = value.trim().to_lowercase();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must be an email address");
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@');
    if local.is_empty() || !domain_ok || email.chars().any(char::is_whitespace) {
        return Err("must be an email address");
    }
    Ok(email)
}

text_schema!(
    /// The email address a login names: anything not blank, up to 320 characters.
    LoginEmail,
    text("The email address signed up with (at most 320 characters).")
        .min_length(Some(1))
        .max_length(Some(MAX_EMAIL_CHARS))
        .pattern(Some(not_blank_pattern()))
        .examples(["ada@example.com"])
);

/// Checks the email of a login: present and of bounded size (its shape is the account's).
pub fn check_login_email(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if is_blank(value) {
        errors.push(FieldError::new(field, "must not be blank"));
    } else if value.chars().count() > MAX_EMAIL_CHARS {
        errors.push(FieldError::new(field, "must be at most 320 characters"));
    }
}

// --- passwords -----------------------------------------------------------------------------

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 1024;

text_schema!(
    /// A new password: 10 to 1024 characters.
    Password,
    text("A new password: 10 to 1024 characters.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(MIN_PASSWORD_CHARS))
        .max_length(Some(MAX_PASSWORD_CHARS))
);

pub fn check_password(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    let count = value.chars().count();
    if count < MIN_PASSWORD_CHARS {
        errors.push(FieldError::new(field, "must be at least 10 characters"));
    } else if count > MAX_PASSWORD_CHARS {
        errors.push(FieldError::new(field, "must be at most 1024 characters"));
    }
}

// --- Stripe credentials and versions -------------------------------------------------------

/// The longest Stripe key or signing secret accepted (Stripe's are around 110 characters).
pub const MAX_STRIPE_SECRET_CHARS: usize = 255;

text_schema!(
    /// A Stripe secret or restricted API key.
    StripeSecretKey,
    text("A Stripe secret (`sk_…`) or restricted (`rk_…`) API key: `sk_test_`, `sk_live_`, `rk_test_` or `rk_live_` (the account's `livemode`), with at least 9 letters, digits or underscores after `sk_` or `rk_` (at most 255 characters).")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(12))
        .max_length(Some(MAX_STRIPE_SECRET_CHARS))
        .pattern(Some("^(sk|rk)_(test|live)_[A-Za-z0-9_]{4,}$"))
        .examples(["sk_test_51Hx0000000000000000"])
);

/// Whether `key` has the shape of a Stripe secret or restricted key of either mode.
pub fn is_stripe_secret_key(key: &str) -> bool {
    tributary_worker::stripe::key_livemode(key).is_some()
        && (12..=MAX_STRIPE_SECRET_CHARS).contains(&key.len())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

text_schema!(
    /// A Stripe webhook signing secret.
    WebhookSigningSecret,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A Stripe webhook signing secret: `whsec_` and then at least 8 characters without \
             white space or control characters (at most 255 characters in all)."
        ))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(14))
        .max_length(Some(MAX_STRIPE_SECRET_CHARS))
        .pattern(Some(format!("^whsec_[^{WHITE_SPACE}{CONTROL}]{{8,}}$")))
        .examples(["whsec_0123456789abcdef"])
);

/// Whether `secret` has the shape of a Stripe webhook signing secret.
pub fn is_signing_secret(secret: &str) -> bool {
    let count = secret.chars().count();
    secret.starts_with("whsec_")
        && (14..=MAX_STRIPE_SECRET_CHARS).contains(&count)
        && !secret.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The longest Stripe API version accepted.
pub const MAX_API_VERSION_CHARS: usize = 64;

text_schema!(
    /// A Stripe API version.
    StripeApiVersion,
    text("A Stripe API version: a date, optionally with its release name (`2024-06-20`, `2025-03-31.basil`).")
        .max_length(Some(MAX_API_VERSION_CHARS))
        .pattern(Some(
            "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(\\.[a-z]+)?$"
        ))
        .examples(["2024-06-20"])
);

/// Whether `version` has the shape of a Stripe API version (see [`StripeApiVersion`]).
pub fn is_api_version(version: &str) -> bool {
    if version.len() > MAX_API_VERSION_CHARS {
        return false;
    }
    let (date, release) = match version.split_once('.') {
        Some((date, release)) => (date, Some(release)),
        None => (version, None),
    };
    let b = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let date_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && (1..=12).contains(&date[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&date[8..10].parse::<u32>().unwrap_or(0));
    let release_ok =
        release.is_none_or(|r| !r.is_empty() && r.bytes().all(|c| c.is_ascii_lowercase()));
    date_ok && release_ok
}

// --- enums --------------------------------------------------------------------------------

/// Checks a value that must be one of an enum's (its schema is the enum's): a filter naming
/// another would match nothing, silently.
pub fn check_one_of(
    field: &str,
    value: Option<&str>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    if let Some(value) = value
        && !allowed.contains(&value)
    {
        errors.push(FieldError::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(parse_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            ".@.x.",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
        assert!(parse_email(&format!("a@{}.com", "b".repeat(320))).is_err());
    }

    #[test]
    fn names_count_characters_and_refuse_blank_ones() {
        let mut errors = Vec::new();
        check_name("name", &"é".repeat(200), &mut errors);
        assert!(errors.is_empty());
        for bad in ["", " \t\u{3000}", &"x".repeat(201)] {
            let mut errors = Vec::new();
            check_name("name", bad, &mut errors);
            assert_eq!(errors.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn stripe_shapes() {
        assert!(is_stripe_secret_key("sk_test_123456789"));
        assert!(is_stripe_secret_key("rk_live_abcdefghi"));
        assert!(!is_stripe_secret_key("sk_test_123"));
        assert!(!is_stripe_secret_key("sk_abcdefghijkl"), "no mode");
        assert!(!is_stripe_secret_key("pk_live_abcdefghi"));
        assert!(!is_stripe_secret_key(&format!("sk_{}", "a".repeat(253))));
        assert!(is_signing_secret("whsec_12345678"));
        assert!(is_signing_secret("whsec_éééééééé"));
        assert!(!is_signing_secret("whsec_1234 5678"));
        assert!(is_api_version("2024-06-20"));
        assert!(is_api_version("2025-03-31.basil"));
        for bad in [
            "2024-6-20",
            "2024-13-01",
            "2024-06-20.",
            "2024-06-20.Basil",
            "v1",
        ] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }
}
