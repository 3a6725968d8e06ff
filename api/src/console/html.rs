//! How the console answers: its pages' headers, templates (compiled into the binary) and
//! redirects.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use minijinja::Environment;

use crate::error::ApiError;

/// The browser may load from, connect to and post forms to this origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The headers every console page carries.
pub fn security_headers() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// A 200 HTML page's response, with the console's headers.
pub fn page() -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response.content_type("text/html; charset=utf-8");
    for header in security_headers() {
        response.insert_header(header);
    }
    response
}

/// A 303 to `location` (after a form, or to sign in).
pub fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("signup.html", include_str!("templates/signup.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("events.html", include_str!("templates/events.html")),
    ("event.html", include_str!("templates/event.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    ("flows.html", include_str!("templates/flows.html")),
    ("designer.html", include_str!("templates/designer.html")),
    ("flow.html", include_str!("templates/flow.html")),
    (
        "connections.html",
        include_str!("templates/connections.html"),
    ),
    (
        "connection_new.html",
        include_str!("templates/connection_new.html"),
    ),
    (
        "stripe_accounts.html",
        include_str!("templates/stripe_accounts.html"),
    ),
    ("not_found.html", include_str!("templates/not_found.html")),
    ("users.html", include_str!("templates/users.html")),
    ("api_keys.html", include_str!("templates/api_keys.html")),
    (
        "environments.html",
        include_str!("templates/environments.html"),
    ),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("incidents.html", include_str!("templates/incidents.html")),
    ("reviews.html", include_str!("templates/reviews.html")),
];

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("console template {name}: {e}"));
    }
    env.add_filter("pretty", |value: minijinja::Value| {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    });
    env
});

/// Renders a page's template (HTML-escaped, as its name ends in `.html`).
pub fn render(name: &str, context: minijinja::Value) -> Result<String, ApiError> {
    ENVIRONMENT
        .get_template(name)
        .and_then(|template| template.render(context))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("console page {name}: {e}")))
}
