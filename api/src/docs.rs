//! The interactive API reference at `/docs`: Swagger UI, whose files are embedded in the binary
//! at build time (the crate `utoipa-swagger-ui-vendored`), reading the spec from `/openapi.json`.
//! Nothing it serves points the browser at another host, and its Content-Security-Policy keeps
//! the browser on this one, so the reference works on an install with no internet access.

use std::sync::{Arc, LazyLock};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// The page's title, in place of Swagger UI's own.
pub const TITLE: &str = "Tributary API";

/// Only this origin, for every kind of request the page can make; inline styles because Swagger
/// UI's components set them, `data:` images for its icons.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What Swagger UI is told at start-up (`swagger-initializer.js`): the spec by path; no
/// validator badge (by default an image from a public validator); no spec URL taken from the
/// query string or typed into a top bar, so the page shows this installation's API and no other.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            .validator_url("none")
            .query_config_enabled(false)
            .use_base_layout()
            .display_operation_id(true),
    )
});

/// Mounts `/docs` (a redirect to `/docs/`, so the page's relative links resolve) and its files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/docs", web::get().to(index_redirect))
        .route("/docs/{file:.*}", web::get().to(file));
}

async fn index_redirect() -> HttpResponse {
    // Relative, so it also holds behind a proxy that mounts Tributary under a path.
    HttpResponse::TemporaryRedirect()
        .insert_header((header::LOCATION, "docs/"))
        .finish()
}

async fn file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let served = utoipa_swagger_ui::serve(&path, CONFIG.clone())
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("the API reference: {err}")))?;
    let Some(file) = served else {
        return Err(ApiError::NotFound);
    };
    let mut content_type = file.content_type;
    if content_type.starts_with("text/") {
        content_type.push_str("; charset=utf-8");
    }
    let body = if content_type.starts_with("text/html") {
        String::from_utf8_lossy(&file.bytes)
            .replace(
                "<title>Swagger UI</title>",
                &format!("<title>{TITLE}</title>"),
            )
            .into_bytes()
    } else {
        file.bytes.into_owned()
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if file.gzpipped {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response.body(body))
}
