//! The integration suite: one binary, so it links once. Every test runs on SQLite and, when
//! configured, on Postgres.

mod accounts;
mod alerts;
mod api_keys;
mod claims;
mod connections;
mod crm_http;
mod crm_hubspot;
mod crm_salesforce;
mod crm_zoho;
mod docs;
mod errors;
mod first_hour;
mod flows;
mod health;
mod hostile_auth;
mod hostile_logs;
mod hostile_oauth;
mod hostile_retention;
mod hostile_retry;
mod hostile_ssrf;
mod hostile_templates;
mod hostile_worker;
mod isolation;
mod oauth;
mod onboarding;
mod openapi;
mod pipeline;
mod secrets;
mod smtp_tls;
mod strict_fakes;
mod stripe_accounts;
mod stripe_api;
mod users;
