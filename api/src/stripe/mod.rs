//! Stripe webhooks as Stripe sends them: the `Stripe-Signature` check, the event envelope,
//! and the realistic events behind "send a test event". No I/O and no database here.

pub mod envelope;
pub mod fixtures;
pub mod signature;
