//! What steps that are not CRM writes talk to besides the vendors' APIs: the SMTP sender of
//! `email` steps (the step kind itself is `steps/email.rs`).

pub mod email;
