//! The console: web pages for tenants, served by the api under `/console/` from templates and
//! assets compiled into the binary (no other process, no other host). Pages read through the
//! same services as the API, as the signed-in user (their tenant, their role); every change a
//! page makes is a documented `/v1` request sent by its script with the session cookie and the
//! CSRF token. `GET /` redirects here.

mod admin;
mod connection_form;
mod environments;
mod flow_pages;
mod html;
mod overview;
mod pages;
pub mod session;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use html::redirect;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "designer.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/designer.js"),
    ),
];

async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name.as_str())
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(*body))
}

async fn to_console() -> HttpResponse {
    redirect("/console/")
}

/// Mounts the console's pages and assets, and `/` → `/console/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(to_console))
        .route("/console", web::get().to(to_console))
        .route("/console/assets/{file}", web::get().to(asset))
        .route("/console/login", web::get().to(session::sign_in_page))
        .route("/console/login", web::post().to(session::sign_in))
        .route("/console/signup", web::get().to(session::sign_up_page))
        .route("/console/signup", web::post().to(session::sign_up))
        .route("/console/logout", web::post().to(session::sign_out))
        .route("/console/refresh", web::post().to(session::refresh))
        .route("/console/switch", web::post().to(session::switch))
        .route(
            "/console/environment",
            web::post().to(environments::switch_environment),
        )
        .route(
            "/console/environments",
            web::get().to(environments::environment_list),
        )
        .route("/console/", web::get().to(overview::overview))
        .configure(pages::configure)
        .configure(admin::configure)
        .configure(flow_pages::configure)
        .configure(connection_form::configure);
}
