//! The realistic Stripe events behind "send a test event". No I/O and no database here; the
//! `Stripe-Signature` check and the event envelope are the worker's (`tributary_worker::stripe`).

pub mod fixtures;
