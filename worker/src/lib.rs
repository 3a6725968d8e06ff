//! The worker: runs tenants' flows for queued events against CRM adapters. For now it holds
//! the job contract the api will push; the pipeline that consumes it comes with the event
//! pipeline (jobs, flow engine, CRM adapters).

pub mod queue;
