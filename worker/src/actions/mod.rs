//! Flow steps that are not CRM writes and talk to something of their own: `email` (SMTP).
//! `http` steps go through the HTTP adapter, `stripe.retrieve` through `stripe`, and `assert`
//! is the engine's alone.

pub mod email;
