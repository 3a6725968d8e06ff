//! The console's session cookie as the API reads it: the names of the cookies, and the one rule
//! a request authenticated by the cookie meets — a change carries the session's CSRF token as
//! `X-CSRF-Token` (double submit: the page's script reads it from its own cookie).

use actix_web::HttpRequest;
use actix_web::http::Method;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The access token (a JWT, as `Authorization: Bearer` carries it).
pub const ACCESS: &str = "tributary_access";
/// The refresh token, with which a console page renews an expired session.
pub const REFRESH: &str = "tributary_refresh";
/// The CSRF token the page's script sends back as `X-CSRF-Token`.
pub const CSRF: &str = "tributary_csrf";
/// The header a change made with the session cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The access token of the session cookie, for a request that sent no `Authorization`. A
/// change (any method but GET, HEAD and OPTIONS) must carry the CSRF cookie's value as the
/// `X-CSRF-Token` header, or it is refused with 403.
pub fn cookie_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(access) = read_cookie(req, ACCESS) else {
        return Ok(None);
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let header = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !safe && !csrf_matches(req, header) {
        return Err(ApiError::Forbidden(
            "a change made with the console's session needs its X-CSRF-Token header".into(),
        ));
    }
    Ok(Some(access))
}

/// Whether `presented` is the session's CSRF token (its cookie), compared in constant time.
pub fn csrf_matches(req: &HttpRequest, presented: &str) -> bool {
    read_cookie(req, CSRF).is_some_and(|expected| {
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    })
}

/// Whether a browser's form post comes from this site: no `Origin` (not a browser's
/// cross-site post) or one naming the host the request was sent to, and no
/// `Sec-Fetch-Site: cross-site`. Refuses signing a visitor in to someone else's account.
pub fn same_site(req: &HttpRequest) -> bool {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header("sec-fetch-site").is_some_and(|site| site == "cross-site") {
        return false;
    }
    match (header("origin"), header("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host.as_str())
        }
        (Some(_), None) => false,
    }
}

/// A request's cookie by name. Values are the tokens this module sets (URL-safe characters).
pub fn read_cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}
