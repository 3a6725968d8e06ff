//! Schema migrations, written once with sea-query so they run on SQLite and Postgres alike.
//! One file per change; never edit a migration that has shipped, add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_platform;
mod m20261122_000002_pipeline;
mod m20261122_000003_adapters;
mod m20261122_000004_oauth;
mod m20261201_000005_alerts;
mod m20261201_000006_stripe_api;
mod m20261201_000007_email_sends;
mod m20261201_000008_event_seeds;
mod m20261206_000009_retention;
mod m20261206_000010_audit_client;
mod m20261206_000011_delivery_attempts;
mod m20261206_000012_event_search;
mod m20261206_000013_idempotency;
mod m20261206_000014_duplicate_index;
mod m20261206_000015_crm_events;
mod m20261207_000016_delivery_text;
mod m20261207_000017_memberships;
mod m20261207_000018_stripe_livemode;
mod m20261207_000019_environments;
mod m20261208_000020_environment_modes;
mod m20261208_000021_dry_run_jobs;
mod m20261208_000022_rate_budgets;
mod m20261208_000023_event_priority;
mod m20261209_000024_vendor_account;
mod m20261209_000025_anomalies;
mod m20261210_000026_reviews;
mod m20261210_000027_anomaly_sensitivity;
mod m20261211_000028_request_leases;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_platform::Migration),
            Box::new(m20261122_000002_pipeline::Migration),
            Box::new(m20261122_000003_adapters::Migration),
            Box::new(m20261122_000004_oauth::Migration),
            Box::new(m20261201_000005_alerts::Migration),
            Box::new(m20261201_000006_stripe_api::Migration),
            Box::new(m20261201_000007_email_sends::Migration),
            Box::new(m20261201_000008_event_seeds::Migration),
            Box::new(m20261206_000009_retention::Migration),
            Box::new(m20261206_000010_audit_client::Migration),
            Box::new(m20261206_000011_delivery_attempts::Migration),
            Box::new(m20261206_000012_event_search::Migration),
            Box::new(m20261206_000013_idempotency::Migration),
            Box::new(m20261206_000014_duplicate_index::Migration),
            Box::new(m20261206_000015_crm_events::Migration),
            Box::new(m20261207_000016_delivery_text::Migration),
            Box::new(m20261207_000017_memberships::Migration),
            Box::new(m20261207_000018_stripe_livemode::Migration),
            Box::new(m20261207_000019_environments::Migration),
            Box::new(m20261208_000020_environment_modes::Migration),
            Box::new(m20261208_000021_dry_run_jobs::Migration),
            Box::new(m20261208_000022_rate_budgets::Migration),
            Box::new(m20261208_000023_event_priority::Migration),
            Box::new(m20261209_000024_vendor_account::Migration),
            Box::new(m20261209_000025_anomalies::Migration),
            Box::new(m20261210_000026_reviews::Migration),
            Box::new(m20261210_000027_anomaly_sensitivity::Migration),
            Box::new(m20261211_000028_request_leases::Migration),
        ]
    }
}
