//! Entity tags and `If-Match`. A resource's tag is made from its JSON representation (strong:
//! any change to what GET shows changes it), so the tag a GET gave and the one a PATCH checks
//! are computed the same way. `If-Match` is optional: without it a change applies as before.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures::future::{Ready, ready};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The strong entity tag of a JSON body.
pub fn tag_of_bytes(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// The entity tag of a representation, as GET answers it.
pub fn tag_of<T: Serialize>(value: &T) -> String {
    tag_of_bytes(&serde_json::to_vec(value).unwrap_or_default())
}

/// Whether a list of tags (`If-Match` / `If-None-Match`) names `current` or is `*`. Weak tags
/// compare by value: a proxy that compresses may have weakened the tag it passed on.
pub fn tags_match(list: &str, current: &str) -> bool {
    let current = current.strip_prefix("W/").unwrap_or(current);
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current)
}

/// The request's `If-Match`, if any.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(pub Option<String>);

impl IfMatch {
    /// Refuses with 412 when `If-Match` was sent and does not name `current`'s tag.
    pub fn check<T: Serialize>(&self, current: &T, what: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(list) if !tags_match(list, &tag_of(current)) => {
                Err(ApiError::PreconditionFailed(format!(
                    "the {what} changed since the version If-Match names: GET it again (its \
                     ETag), then send the change"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // A header that is not text matches nothing.
        ready(Ok(IfMatch(
            req.headers()
                .get(header::IF_MATCH)
                .map(|v| v.to_str().unwrap_or("\u{0}").to_string()),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_compare_by_value() {
        let tag = tag_of(&serde_json::json!({"a": 1}));
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34);
        assert_eq!(tag, tag_of_bytes(br#"{"a":1}"#));
        assert!(tags_match(&tag, &tag));
        assert!(tags_match(&format!("W/{tag}"), &tag));
        assert!(tags_match(&format!("\"x\", {tag}"), &tag));
        assert!(tags_match("*", &tag));
        assert!(!tags_match("\"x\"", &tag));
        let stale = IfMatch(Some("\"x\"".into()));
        assert!(stale.check(&1, "thing").is_err());
        assert!(IfMatch(None).check(&1, "thing").is_ok());
        assert!(IfMatch(Some(tag_of(&1))).check(&1, "thing").is_ok());
    }
}
