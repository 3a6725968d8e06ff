//! Extractors that do the work before a handler runs: who is calling (and for which tenant),
//! a validated JSON body, list parameters.

mod client;
mod json;
mod pagination;
mod preconditions;
mod tenant;

pub use client::ClientAddress;
pub use json::{JsonOrYaml, MaybeJson, ValidJson, Validate, read_body, webhook_body};
pub use pagination::{ListQuery, ListResponse, Page, ValidQuery};
pub use preconditions::{IfMatch, tag_of, tag_of_bytes, tags_match};
pub use tenant::{Actor, TenantContext};
