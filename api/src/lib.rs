//! Tributary's REST API: tenants, people and credentials, Stripe accounts, the OpenAPI
//! document, and the HTTP server that serves them.

pub mod app;
pub mod auth;
pub mod commands;
pub mod console;
pub mod docs;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod services;
pub mod state;
pub mod stripe;
