//! Stripe webhooks as Stripe sends them: the `Stripe-Signature` check, the event envelope,
//! and the realistic events behind "send a test event". No I/O and no database here.

pub use tributary_worker::stripe::{envelope, signature};
pub mod fixtures;
