//! Middleware for the conventions every route follows: `Idempotency-Key` on the tenant API's
//! POSTs, and `ETag` / `If-None-Match` on what GETs answer. Each is written once here, not per
//! route.

pub mod etag;
pub mod idempotency;
