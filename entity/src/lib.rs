//! sea-orm entities for every Tributary table, one module per table, plus the small value
//! types stored in them. Tenant-owned tables implement [`TenantOwned`], the only way the
//! service layer reaches their rows, so no query can forget the tenant.

pub mod activity;
pub mod alerts;
pub mod api_keys;
pub mod audit_log;
pub mod backfills;
pub mod bulk_job_items;
pub mod bulk_jobs;
pub mod connections;
pub mod crm_versions;
pub mod crm_watches;
pub mod deliveries;
pub mod delivery_attempts;
pub mod email_sends;
pub mod event_keys;
pub mod event_seeds;
pub mod events;
pub mod flow_versions;
pub mod flows;
pub mod idempotency_keys;
pub mod incidents;
pub mod leases;
pub mod login_throttle;
pub mod memberships;
pub mod notification_channels;
pub mod oauth_states;
pub mod record_links;
pub mod refresh_tokens;
pub mod reviews;
pub mod sandbox_records;
pub mod stripe_accounts;
pub mod tenants;
pub mod users;
pub mod webhook_secrets;

mod role;
mod scope;

pub use role::Role;
pub use scope::TenantOwned;
