//! Reusable problem responses for the OpenAPI document.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};

use crate::error::PROBLEM_CONTENT_TYPE;

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

macro_rules! problem_response {
    ($name:ident, $description:literal) => {
        pub struct $name;
        impl<'a> utoipa::ToResponse<'a> for $name {
            fn response() -> (&'a str, RefOr<Response>) {
                (stringify!($name), problem($description))
            }
        }
    };
}

problem_response!(
    BadRequest,
    "The request is malformed (not JSON, bad query string)."
);
problem_response!(Unauthorized, "No valid access token or API key.");
problem_response!(Forbidden, "Your role does not allow this.");
problem_response!(NotFound, "No such resource in your tenant.");
problem_response!(Conflict, "The change conflicts with existing state.");
problem_response!(
    PreconditionFailed,
    "`If-Match` names a version that is no longer current: read the resource again."
);
problem_response!(Invalid, "A field is invalid; `errors` names each one.");
problem_response!(
    TooManyRequests,
    "Too many attempts; retry after `Retry-After` seconds."
);
problem_response!(TooLarge, "The body is larger than the limit.");
problem_response!(Unavailable, "A dependency is not reachable.");
problem_response!(
    BadGateway,
    "Stripe refused or failed; `detail` says what it answered."
);
problem_response!(
    UnsupportedMediaType,
    "The body is not of a content type this operation reads (send `content-type: application/json`)."
);
