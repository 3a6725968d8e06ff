//! The OpenAPI document: the info, security schemes and shared schemas here; the paths are
//! collected from the routes themselves (see [`crate::routes::configure`]).
//!
//! Conventions every route follows (the tests and the lint in `tests/clients` check them): an
//! `operation_id` `resource.verb`; a doc comment whose first line is the summary and whose
//! next paragraph is the description; a `tag` declared below; `security(("bearer_jwt" = []),
//! ("api_key" = []))`, or `security(())` for the few public routes; every response described,
//! errors with a [`responses`](crate::routes::responses) problem; request bodies with examples.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary",
        description = "Stripe payment events into CRM records, per tenant. Authenticate with `Authorization: Bearer <access token or API key>`: an access token (a JWT from `/v1/signup`, `/v1/login` or `/v1/token/refresh`) or an API key (`trb_…`, from `/v1/api-keys`). Errors are RFC 9457 problem documents (`application/problem+json`); lists are cursor-paginated with `limit` and `starting_after` and answer `{data, has_more}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/", description = "The Tributary installation serving this document")),
    components(schemas(Problem, FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-up, login, tokens"),
        (name = "users", description = "People in a tenant and their roles"),
        (name = "api-keys", description = "Keys for machines"),
        (name = "environments", description = "Environments inside a tenant (development, staging, production), chosen per request by the Tributary-Environment header"),
        (name = "stripe-accounts", description = "Stripe accounts, webhook URLs and signing secrets"),
        (name = "connections", description = "CRM connections and the sandbox CRM's records"),
        (name = "flows", description = "Mapping flows, their versions, validation, preview and templates"),
        (name = "events", description = "The inbox of received Stripe events, and replay"),
        (name = "deliveries", description = "Every step's attempts; the dead-letter queue"),
        (name = "bulk-jobs", description = "Bulk retries and replays, and their progress"),
        (name = "webhooks", description = "Stripe's ingress"),
        (name = "notification-channels", description = "Where alerts go (Slack or a signed webhook), and the alerts sent"),
        (name = "audit-log", description = "Who changed what"),
        (name = "incidents", description = "Anomalies found in the tenant's own activity"),
        (name = "reviews", description = "CRM writes held for a person because their record is in doubt"),
        (name = "erasures", description = "Erasing a person's data on request"),
        (name = "health", description = "Probes")
    )
)]
pub struct ApiDoc;

/// Two ways to authenticate, both sent as `Authorization: Bearer …`; every protected
/// operation accepts either.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A person's access token: the `access_token` of /v1/signup, /v1/login or \
                         /v1/token/refresh, valid for 15 minutes by default.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("trb_{prefix}_{secret}")
                    .description(Some(
                        "An API key for machines (`trb_…`, from POST /v1/api-keys), sent as a \
                         bearer token: `Authorization: Bearer trb_…`. It has the role it was \
                         created with and lasts until revoked.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Routes annotated `security(())` need no credentials: say so with an empty requirement list
/// (`security: []`), not an optional one (`[{}]`).
struct PublicOperations;

impl Modify for PublicOperations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(security) = &mut operation.security
                    && security
                        .iter()
                        .all(|r| *r == SecurityRequirement::default())
                {
                    security.clear();
                }
            }
        }
    }
}

/// `ListResponse_X`'s `data` items point at `X` instead of repeating it inline, so generated
/// clients have one type per resource (utoipa inlines a generic's argument).
struct ListItemRefs;

impl Modify for ListItemRefs {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ArrayItems, Schema};
        use utoipa::openapi::{Ref, RefOr};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let names: Vec<String> = components.schemas.keys().cloned().collect();
        for name in names {
            let Some(item) = name.strip_prefix("ListResponse_") else {
                continue;
            };
            if !components.schemas.contains_key(item) {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(list))) = components.schemas.get_mut(&name)
                && let Some(RefOr::T(Schema::Array(data))) = list.properties.get_mut("data")
            {
                data.items =
                    ArrayItems::RefOrSchema(Box::new(RefOr::Ref(Ref::from_schema_name(item))));
            }
        }
    }
}

/// A response that flattens a request type (`FlowOut` holds a `FlowSpec`) is an `allOf` of the
/// two; when the request type refuses unknown fields (`additionalProperties: false`) no response
/// could satisfy it. Such an `allOf` becomes one object with the properties and requirements of
/// all its parts, open to none but those.
struct FlattenClosedParts;

impl Modify for FlattenClosedParts {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let closed = |schema: &Schema| {
            matches!(schema, Schema::Object(o) if matches!(
                o.additional_properties.as_deref(),
                Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false))
            ))
        };
        let lookup = |r: &RefOr<Schema>| -> Option<Schema> {
            match r {
                RefOr::T(schema) => Some(schema.clone()),
                RefOr::Ref(r) => {
                    let name = r.ref_location.rsplit('/').next()?;
                    match components.schemas.get(name)? {
                        RefOr::T(schema) => Some(schema.clone()),
                        RefOr::Ref(_) => None,
                    }
                }
            }
        };
        let mut merged = Vec::new();
        for (name, schema) in &components.schemas {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            let parts: Option<Vec<Schema>> = all.items.iter().map(lookup).collect();
            let Some(parts) = parts else { continue };
            if !parts.iter().any(closed) {
                continue;
            }
            let mut object = ObjectBuilder::new().schema_type(Type::Object);
            let mut whole = true;
            for part in &parts {
                let Schema::Object(part) = part else {
                    whole = false;
                    break;
                };
                for (property, schema) in &part.properties {
                    let required = part.required.contains(property);
                    object = object.property(property.clone(), schema.clone());
                    if required {
                        object = object.required(property.clone());
                    }
                }
                if part.description.is_some() {
                    object = object.description(part.description.clone());
                }
            }
            if whole {
                merged.push((name.clone(), object.build()));
            }
        }
        for (name, object) in merged {
            components
                .schemas
                .insert(name, RefOr::T(Schema::Object(object)));
        }
    }
}

/// The flow bodies' examples are the built-in templates, with a connection filled in: one per
/// CRM, always in step with what `GET /v1/flow-templates` serves.
struct FlowExamples;

/// The connection id the flow examples use.
const EXAMPLE_CONNECTION_ID: &str = "0190f5c2-7a3e-7c4e-9b1a-3f6d2e8a9c10";

impl Modify for FlowExamples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::example::ExampleBuilder;
        let templates = crate::services::flows::templates();
        let examples: Vec<(String, RefOr<utoipa::openapi::example::Example>)> = templates
            .iter()
            .map(|template| {
                let example = ExampleBuilder::new()
                    .summary(&template.name)
                    .value(Some(template.instantiate(EXAMPLE_CONNECTION_ID)))
                    .build();
                (template.id.clone(), RefOr::T(example))
            })
            .collect();
        let sandbox = templates
            .iter()
            .find(|t| t.provider == "sandbox")
            .map(|t| t.instantiate(EXAMPLE_CONNECTION_ID));
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.put].into_iter().flatten() {
                let id = operation.operation_id.clone().unwrap_or_default();
                let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
                    continue;
                };
                for (content_type, content) in body.content.iter_mut() {
                    let RefOr::T(content) = content else { continue };
                    match (id.as_str(), content_type.as_str()) {
                        ("flows.create" | "flows.replace", "application/json") => {
                            content.examples = examples.iter().cloned().collect();
                        }
                        ("flows.validate", "application/json") => {
                            content.example = sandbox.clone();
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The conventions the middleware applies to many routes at once, written onto each operation
/// they apply to so generated clients know them: `Idempotency-Key` on the tenant API's POSTs,
/// `ETag` and `If-None-Match` on JSON GETs, `Location` on every 201.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use actix_web::http::Method;

        use crate::middleware::{etag, idempotency};

        let idempotency_key = Conventions::idempotency_key();
        let if_none_match = Conventions::if_none_match();
        let not_modified = Conventions::not_modified();

        for (path, item) in openapi.paths.paths.iter_mut() {
            if let Some(operation) = item.post.as_mut()
                && idempotency::applies(&Method::POST, path)
            {
                Conventions::add_idempotency(operation, &idempotency_key);
            }
            Conventions::add_location(item);
            Conventions::add_changed_etag(item);
            if let Some(operation) = item.get.as_mut()
                && etag::applies(&Method::GET, path)
            {
                Conventions::add_read_etag(operation, &if_none_match, &not_modified);
            }
        }
    }
}

impl Conventions {
    /// A response header with its description and example.
    fn header(
        description: &str,
        example: serde_json::Value,
    ) -> utoipa::openapi::RefOr<utoipa::openapi::Header> {
        use serde_json::json;
        use utoipa::openapi::RefOr;

        let value =
            json!({"schema": {"type": "string", "example": example}, "description": description});
        RefOr::T(serde_json::from_value(value).expect("a header object"))
    }

    /// The `Idempotency-Key` request header of the tenant API's POSTs.
    fn idempotency_key() -> utoipa::openapi::path::Parameter {
        use serde_json::json;

        use crate::services::idempotency::{MAX_KEY_CHARS, TTL_HOURS};

        serde_json::from_value(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": format!(
                "Makes a retry safe: the same caller sending the same request (method, path, \
                 query and body) with the same key within {TTL_HOURS} h gets the first answer \
                 again, with `Idempotent-Replayed: true`, and nothing runs twice. The same key \
                 with another request answers 409; while the first request still runs, 409 \
                 with `Retry-After`. Kept answers are the 2xx and the 400, 404, 410, 413, 415 \
                 and 422 ones; after any other the key is free again."
            ),
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
                       "pattern": "^[!-~]+$", "example": "0b9f6c2e-5d7a-4f1e-9c3b-8a6d2e4f1a70"}
        }))
        .expect("a parameter object")
    }

    /// The `If-None-Match` request header of JSON GETs.
    fn if_none_match() -> utoipa::openapi::path::Parameter {
        use serde_json::json;

        serde_json::from_value(json!({
            "name": "If-None-Match",
            "in": "header",
            "required": false,
            "description": "An `ETag` this operation gave before: when it still names the current version, the answer is 304 with no body.",
            "schema": {"type": "string", "example": "\"3f1c9a0b7d2e4c5f8a6b1d0e9c7f2a4b\""}
        }))
        .expect("a parameter object")
    }

    /// The 304 answer of JSON GETs.
    fn not_modified() -> utoipa::openapi::Response {
        use serde_json::json;

        serde_json::from_value(json!({
            "description": "Unchanged since the `ETag` sent in `If-None-Match`.",
            "headers": {"ETag": {"schema": {"type": "string"}, "description": "The current version's entity tag."}}
        }))
        .expect("a response object")
    }

    /// On a POST the idempotency middleware applies to: the `Idempotency-Key` parameter, the
    /// `Idempotent-Replayed` header on every 2xx, and the 409 and 422 answers.
    fn add_idempotency(
        operation: &mut utoipa::openapi::path::Operation,
        idempotency_key: &utoipa::openapi::path::Parameter,
    ) {
        use serde_json::json;
        use utoipa::ToResponse;
        use utoipa::openapi::RefOr;

        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(idempotency_key.clone()));
        for (status, response) in operation.responses.responses.iter_mut() {
            if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                response.headers.insert(
                    "Idempotent-Replayed".into(),
                    Conventions::header(
                        "`true` when this is the first answer to an earlier request with the same `Idempotency-Key`, given again.",
                        json!("true"),
                    ),
                );
            }
        }
        operation
            .responses
            .responses
            .entry("409".into())
            .or_insert_with(|| crate::routes::responses::Conflict::response().1);
        // A malformed key is refused naming it.
        operation
            .responses
            .responses
            .entry("422".into())
            .or_insert_with(|| crate::routes::responses::Invalid::response().1);
    }

    /// The `Location` header on every 201 of a POST or PUT.
    fn add_location(item: &mut utoipa::openapi::PathItem) {
        use serde_json::json;
        use utoipa::openapi::RefOr;

        for operation in [&mut item.post, &mut item.put].into_iter().flatten() {
            if let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") {
                created.headers.insert(
                    "Location".into(),
                    Conventions::header(
                        "Where the created resource is read (`GET`).",
                        json!("/v1/connections/0190f5c2-7a3e-7c4e-9b1a-3f6d2e8a9c10"),
                    ),
                );
            }
        }
    }

    /// The `ETag` header on the 200 of a PUT or PATCH.
    fn add_changed_etag(item: &mut utoipa::openapi::PathItem) {
        use serde_json::json;
        use utoipa::openapi::RefOr;

        for operation in [&mut item.put, &mut item.patch].into_iter().flatten() {
            if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") {
                ok.headers.insert(
                    "ETag".into(),
                    Conventions::header(
                        "The new version's entity tag, for the next `If-Match`.",
                        json!("\"3f1c9a0b7d2e4c5f8a6b1d0e9c7f2a4b\""),
                    ),
                );
            }
        }
    }

    /// On a GET the ETag middleware applies to and that answers JSON: the `ETag` header, the
    /// `If-None-Match` parameter and the 304 answer.
    fn add_read_etag(
        operation: &mut utoipa::openapi::path::Operation,
        if_none_match: &utoipa::openapi::path::Parameter,
        not_modified: &utoipa::openapi::Response,
    ) {
        use serde_json::json;
        use utoipa::openapi::RefOr;

        let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else {
            return;
        };
        if !ok.content.contains_key("application/json") {
            return;
        }
        ok.headers.insert(
            "ETag".into(),
            Conventions::header(
                "The version of what this answer shows; send it back as `If-None-Match` (304 when unchanged) or, on a change, as `If-Match` (412 when someone changed it meanwhile).",
                json!("\"3f1c9a0b7d2e4c5f8a6b1d0e9c7f2a4b\""),
            ),
        );
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(if_none_match.clone()));
        operation
            .responses
            .responses
            .insert("304".into(), RefOr::T(not_modified.clone()));
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
    // The routes' operations exist only now, after `configure`.
    PublicOperations.modify(&mut spec);
    ListItemRefs.modify(&mut spec);
    FlattenClosedParts.modify(&mut spec);
    FlowExamples.modify(&mut spec);
    Conventions.modify(&mut spec);
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
