//! The service layer: every operation on tenant data, each taking a [`TenantContext`] (or, for
//! sign-up and login, creating one). Writes run in a transaction with their audit entry, so a
//! failure leaves nothing half-written.
//!
//! [`TenantContext`]: crate::extract::TenantContext

pub mod api_keys;
pub mod audit;
pub mod backfills;
pub mod connections;
pub mod erasures;
pub mod events;
pub mod flows;
pub mod idempotency;
pub mod ingress;
pub mod limits;
pub mod notification_channels;
pub mod oauth;
pub mod sessions;
pub mod stripe_accounts;
pub mod template_runs;
pub mod test_events;
pub mod users;
pub mod webhook_endpoints;

use crate::error::FieldError;

pub use tributary_worker::{new_id, now};

use entity::TenantOwned;
use sea_orm::ConnectionTrait;

use crate::error::ApiError;
use crate::extract::TenantContext;

/// One row of the caller's tenant, or 404: another tenant's id is as absent as a made-up one.
pub async fn owned<E, C>(db: &C, ctx: &TenantContext, id: &str) -> Result<E::Model, ApiError>
where
    E: TenantOwned,
    C: ConnectionTrait,
{
    E::find_by_id_in_tenant(&ctx.tenant_id, id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// One row of the caller's tenant, or 404, locked until `txn` ends (Postgres `FOR UPDATE`;
/// on SQLite the write transaction already holds every other writer off): what a change
/// checked (`If-Match`) is what it changes.
pub async fn owned_for_update<E, C>(
    txn: &C,
    ctx: &TenantContext,
    id: &str,
) -> Result<E::Model, ApiError>
where
    E: TenantOwned,
    C: ConnectionTrait,
{
    use sea_orm::QuerySelect;
    E::find_by_id_in_tenant(&ctx.tenant_id, id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The result of collecting field errors: valid when there are none.
pub fn valid(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks a free-text name: present, not blank, at most 200 characters.
pub fn check_name(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "must not be blank"));
    } else if trimmed.chars().count() > 200 {
        errors.push(FieldError::new(field, "must be at most 200 characters"));
    }
}

/// Normalises an email address (trimmed, lower-case) or explains what is wrong with it.
pub fn parse_email(value: &str) -> Result<String, &'static str> {
    let email = value.trim().to_lowercase();
    if email.len() > 320 {
        return Err("must be at most 320 characters");
    }
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

pub const MIN_PASSWORD_CHARS: usize = 10;

pub fn check_password(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    let count = value.chars().count();
    if count < MIN_PASSWORD_CHARS {
        errors.push(FieldError::new(field, "must be at least 10 characters"));
    } else if count > 1024 {
        errors.push(FieldError::new(field, "must be at most 1024 characters"));
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
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = new_id();
        let second = new_id();
        assert!(first < second);
    }
}
