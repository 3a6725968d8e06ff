//! The service layer: every operation on tenant data, each taking a [`TenantContext`] (or, for
//! sign-up and login, creating one). Writes run in a transaction with their audit entry, so a
//! failure leaves nothing half-written.
//!
//! [`TenantContext`]: crate::extract::TenantContext

pub mod account_cache;
pub mod api_keys;
pub mod audit;
pub mod backfills;
pub mod bulk_jobs;
pub mod connections;
pub mod crm_ingress;
pub mod dry_run;
pub mod environments;
pub mod erasures;
pub mod event_search;
pub mod events;
pub mod fields;
pub mod flow_history;
pub mod flows;
pub mod idempotency;
pub mod incidents;
pub mod ingress;
pub mod limits;
pub mod notification_channels;
pub mod oauth;
pub mod promotion;
pub mod record_links;
pub mod reviews;
pub mod schema;
pub mod sessions;
pub mod stripe_accounts;
pub mod template_runs;
pub mod test_events;
pub mod users;
pub mod watches;
pub mod webhook_endpoints;

use crate::error::FieldError;

pub use fields::{check_name, check_password, parse_email};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let first = new_id();
        let second = new_id();
        assert!(first < second);
    }
}
