//! A fake Salesforce: a login server (the OAuth token endpoint, with the refresh-token and JWT
//! bearer grants) and an org instance (sObjects, upsert by external id, SOQL, limits), sharing
//! one state, so a test can tell that calls go to the token response's `instance_url`.
//!
//! Errors are Salesforce's arrays (`[{"message", "errorCode", "fields"}]`); every API answer
//! carries `Sforce-Limit-Info`. A refused write changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::{Authorizer, RequestLog, Served};

pub const CLIENT_ID: &str = "3MVG9-fake-consumer-key";
pub const CLIENT_SECRET: &str = "fake-consumer-secret";
pub const USERNAME: &str = "integration@example.com";
/// The integration user; records' default `OwnerId`.
pub const API_USER_ID: &str = "005000000000001AAA";
/// The connected app certificate's private key (a throwaway test key).
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../keys/salesforce-test-key.pem");
/// Its public key, which the fake verifies JWT assertions with.
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../keys/salesforce-test-key.pub.pem");

const TASK_PRIORITIES: &[&str] = &["High", "Normal", "Low"];
const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

struct Field {
    external_id: bool,
}

struct Stage {
    name: String,
    closed: bool,
    won: bool,
}

struct State {
    next_id: u64,
    fields: HashMap<String, HashMap<String, Field>>,
    records: HashMap<String, Vec<Map<String, Value>>>,
    stages: Vec<Stage>,
    sessions: HashMap<String, bool>,
    refresh_tokens: Vec<String>,
    limit_exhausted: bool,
    rotate: bool,
    used: u64,
    max: u64,
    login_url: String,
    instance_url: String,
    auth: Authorizer,
    revoked: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeSalesforce {
    pub login_url: String,
    pub instance_url: String,
    pub log: RequestLog,
    state: Shared,
    login: Served,
    instance: Served,
}

mod answers;
mod api;
mod control;
mod oauth;
mod soql;
mod state;
