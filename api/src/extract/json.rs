//! `ValidJson<T>`: a JSON body read up to the configured limit, deserialized with the path of
//! any bad field, then checked by the type's own [`Validate`]. Errors are problems: 415 for a
//! non-JSON content type, 413 over the limit, 400 for malformed JSON, 422 naming the field.

use actix_web::dev::Payload;
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// Checks a deserialized request beyond what its types say.
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, content_type_ok, declared_length) = body_facts(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType(
                    "the request body must be JSON (Content-Type: application/json)".into(),
                ));
            }
            let body = read_body(&mut payload, declared_length, limit).await?;
            let value = parse_json::<T>(&body)?;
            value.validate().map_err(ApiError::Validation)?;
            Ok(ValidJson(value))
        })
    }
}

/// An optional JSON body: no body at all, or `null`, is `None`; anything else is checked like
/// [`ValidJson`], so a typo or a wrong type is a 422, never silently ignored.
pub struct MaybeJson<T>(pub Option<T>);

impl<T: DeserializeOwned + Validate + 'static> FromRequest for MaybeJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, content_type_ok, declared) = body_facts(req);
        let mut payload = payload.take();
        Box::pin(async move {
            let body = read_body(&mut payload, declared, limit).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(MaybeJson(None));
            }
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType(
                    "the request body must be JSON (Content-Type: application/json)".into(),
                ));
            }
            let value = parse_json::<Option<T>>(&body)?;
            if let Some(value) = &value {
                value.validate().map_err(ApiError::Validation)?;
            }
            Ok(MaybeJson(value))
        })
    }
}

/// Reads a request body up to `limit` bytes, refusing larger ones with 413.
pub async fn read_body(
    payload: &mut Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A webhook's body as sent, up to `limit` bytes (a larger declared or sent body is 413):
/// what the vendor signed, read before anything is parsed.
pub async fn webhook_body(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.into_inner();
    read_body(&mut payload, declared, limit).await
}

/// The body limit, whether the content type is JSON, and the declared length.
fn body_facts(req: &HttpRequest) -> (usize, bool, Option<usize>) {
    let limit = req
        .app_data::<Data<AppState>>()
        .map(|state| state.settings.max_body_bytes)
        .unwrap_or(256 * 1024);
    let json = match req.mime_type() {
        Ok(Some(mime)) => {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        }
        _ => false,
    };
    (limit, json, declared_length(req))
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// A flow document: JSON, or YAML with `Content-Type: application/yaml`, as a JSON value.
pub struct JsonOrYaml(pub serde_json::Value);

impl FromRequest for JsonOrYaml {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<Data<AppState>>()
            .map(|state| state.settings.max_body_bytes)
            .unwrap_or(256 * 1024);
        let kind = match req.mime_type() {
            Ok(Some(mime))
                if mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json") =>
            {
                Some(false)
            }
            Ok(Some(mime)) if mime.subtype() == "yaml" || mime.subtype() == "x-yaml" => Some(true),
            _ => None,
        };
        let declared = declared_length(req);
        let mut payload = payload.take();
        Box::pin(async move {
            let Some(is_yaml) = kind else {
                return Err(ApiError::UnsupportedMediaType(
                    "send the flow as application/json or application/yaml".into(),
                ));
            };
            let body = read_body(&mut payload, declared, limit).await?;
            if is_yaml {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ApiError::BadRequest("the YAML body is not UTF-8".into()))?;
                yaml_serde::from_str::<serde_json::Value>(text)
                    .map(JsonOrYaml)
                    .map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")))
            } else {
                parse_value(&body).map(JsonOrYaml)
            }
        })
    }
}

/// Reads a JSON document as it is: 400 when it is empty or not JSON.
fn parse_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        ApiError::BadRequest(format!(
            "the body is not valid JSON: {}",
            strip_position(&err.to_string())
        ))
    })
}

/// A number with no fraction (`138.0`) is an integer, as JSON Schema counts it: written as one,
/// so an integer field takes it.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.007_199_254_740_992e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Deserializes JSON, naming the path of the first bad field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut value = parse_value(body)?;
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.inner();
        let message = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let mut path = err.path().to_string();
                if path == "." {
                    path.clear();
                }
                // serde reports a missing field at its parent; name the field itself.
                if let Some(name) =
                    backticked(&message).filter(|_| message.starts_with("missing field"))
                {
                    path = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                }
                let message = if message.starts_with("unknown field") {
                    "unknown field".to_string()
                } else if message.starts_with("missing field") {
                    "is required".to_string()
                } else {
                    message
                };
                ApiError::Validation(vec![FieldError::new(
                    if path.is_empty() {
                        "body".to_string()
                    } else {
                        path
                    },
                    message,
                )])
            }
            _ => ApiError::BadRequest(format!("the body is not valid JSON: {message}")),
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(&message[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        amount: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    fn field_of(body: &str) -> (String, String) {
        match parse_json::<Outer>(body.as_bytes()).unwrap_err() {
            ApiError::Validation(errors) => (errors[0].field.clone(), errors[0].message.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(field_of(r#"{"items": []}"#).0, "name");
        assert_eq!(field_of(r#"{"name": 1, "items": []}"#).0, "name");
        assert_eq!(
            field_of(r#"{"name": "x", "items": [{"amount": 1}, {"amount": "2"}]}"#).0,
            "items[1].amount"
        );
        assert_eq!(
            field_of(r#"{"name": "x", "items": [], "nmae": 1}"#),
            ("nmae".into(), "unknown field".into())
        );
    }

    #[test]
    fn whole_numbers_are_integers() {
        let outer: Outer =
            parse_json(br#"{"name": "x", "items": [{"amount": 138.0}, {"amount": 2}]}"#).unwrap();
        assert_eq!(outer.items[0].amount, 138);
        assert_eq!(
            field_of(r#"{"name": "x", "items": [{"amount": 1.5}]}"#).0,
            "items[0].amount"
        );
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            parse_json::<Outer>(b"{\"name\": "),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(b""),
            Err(ApiError::BadRequest(_))
        ));
    }
}
