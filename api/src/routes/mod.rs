//! HTTP routes, one module per resource. Handlers are thin: extract, call a service, map.
//! Every route is added with `.service(…)` so the OpenAPI document collects it.

pub mod api_keys;
pub mod audit_log;
pub mod bulk;
pub mod connections;
pub mod crm_webhooks;
pub mod environments;
pub mod erasures;
pub mod events;
pub mod flow_history;
pub mod flows;
pub mod health;
pub mod incidents;
pub mod notification_channels;
pub mod oauth;
pub mod responses;
pub mod reviews;
pub mod sessions;
pub mod stripe_accounts;
pub mod users;
pub mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

/// Mounts every documented route. The server, the spec export and the tests all call this.
pub fn configure(cfg: &mut ServiceConfig) {
    health::configure(cfg);
    sessions::configure(cfg);
    users::configure(cfg);
    api_keys::configure(cfg);
    environments::configure(cfg);
    stripe_accounts::configure(cfg);
    audit_log::configure(cfg);
    connections::configure(cfg);
    oauth::configure(cfg);
    flow_history::configure(cfg);
    flows::configure(cfg);
    // Before events: `POST /v1/events/replay` is not an event's id.
    bulk::configure(cfg);
    events::configure(cfg);
    erasures::configure(cfg);
    notification_channels::configure(cfg);
    incidents::configure(cfg);
    reviews::configure(cfg);
    webhooks::configure(cfg);
    crm_webhooks::configure(cfg);
}
