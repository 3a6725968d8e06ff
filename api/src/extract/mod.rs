//! Extractors that do the work before a handler runs: who is calling (and for which tenant),
//! a validated JSON body, list parameters.

mod client;
pub mod environment;
mod json;
mod pagination;
mod preconditions;
pub mod session_cookie;
mod tenant;

pub use client::{ClientAddress, from_request_parts as request_address};
pub use json::{JsonOrYaml, MaybeJson, ValidJson, Validate, read_body, webhook_body};
pub use pagination::{ListQuery, ListResponse, Page, ValidQuery};
pub use preconditions::{IfMatch, tag_of, tag_of_bytes, tags_match};
pub use tenant::{Actor, TenantContext, authenticate};
