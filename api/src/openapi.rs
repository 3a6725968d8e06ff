//! The OpenAPI document: the info, security scheme and shared schemas here; the paths are
//! collected from the routes themselves (see [`crate::routes::configure`]).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary",
        description = "Stripe payment events into CRM records, per tenant. Authenticate with `Authorization: Bearer <access token or API key>`. Errors are RFC 9457 problem documents; lists are cursor-paginated with `limit` and `starting_after`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, login, tokens"),
        (name = "users", description = "People in a tenant and their roles"),
        (name = "api-keys", description = "Keys for machines"),
        (name = "stripe-accounts", description = "Stripe accounts, webhook URLs and signing secrets"),
        (name = "connections", description = "CRM connections and the sandbox CRM's records"),
        (name = "flows", description = "Mapping flows, their versions, validation, preview and templates"),
        (name = "events", description = "The inbox of received Stripe events, and replay"),
        (name = "deliveries", description = "Every step's attempts; the dead-letter queue"),
        (name = "webhooks", description = "Stripe's ingress"),
        (name = "notification-channels", description = "Where alerts go (Slack or a signed webhook), and the alerts sent"),
        (name = "audit-log", description = "Who changed what"),
        (name = "health", description = "Probes")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT access token from /v1/login, or an API key (trb_…).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served at `/openapi.json` and committed in `openapi/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, mut spec) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    spec.info.version = env!("CARGO_PKG_VERSION").to_string();
    spec
}

/// The committed form: pretty JSON with a trailing newline.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}
