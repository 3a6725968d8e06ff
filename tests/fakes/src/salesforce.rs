//! A fake Salesforce: a login server (the OAuth token endpoint, with the refresh-token and JWT
//! bearer grants) and an org instance (sObjects, upsert by external id, SOQL, limits), sharing
//! one state, so a test can tell that calls go to the token response's `instance_url`.
//!
//! Errors are Salesforce's arrays (`[{"message", "errorCode", "fields"}]`); every API answer
//! carries `Sforce-Limit-Info`. A refused write changes nothing.
//!
//! Change capture: every record keeps the system fields `CreatedDate`, `SystemModstamp`,
//! `LastModifiedDate`, `LastModifiedById` and `IsDeleted` (read-only to the API). A delete
//! moves the record to the recycle bin: `query` no longer sees it, `queryAll` does. Results are
//! paged (`done`, `nextRecordsUrl`) with a page size a test may shrink; `describe` lists an
//! object's fields and record types; `RecordType` rows a test adds answer SOQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::{Authorizer, RequestLog, Served};

pub const CLIENT_ID: &str = "3MVG9-fake-consumer-key";
pub const CLIENT_SECRET: &str = "fake-consumer-secret";
pub const USERNAME: &str = "integration@example.com";
/// The integration user; records' default `OwnerId`, and `LastModifiedById` of API writes.
pub const API_USER_ID: &str = "005000000000001AAA";
/// Another user of the org: who [`FakeSalesforce::touch`] and [`FakeSalesforce::delete`] act as.
pub const OTHER_USER_ID: &str = "005000000000002AAA";
/// Rows per page of a query answer unless a test says otherwise (Salesforce's 2000).
pub const DEFAULT_PAGE_SIZE: usize = 2000;
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
    /// API calls admitted (each counted once, whatever it answered).
    calls: u64,
    page_size: usize,
    /// The rows of query answers not yet fetched, by locator.
    pages: HashMap<String, Vec<Value>>,
    /// `RecordType` rows (`Id`, `Name`, `DeveloperName`, `SobjectType`, `IsActive`, …).
    record_types: Vec<Map<String, Value>>,
    /// The org's duplicate rules.
    duplicate_rules: Vec<duplicates::DuplicateRule>,
    /// (object, master id, merged id) of every merge.
    merges: Vec<(String, String, String)>,
    /// Requests in flight, against the concurrent long-running request limit.
    flights: flights::Flights,
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
mod changes;
mod control;
mod duplicates;
mod flights;
mod oauth;
mod query;
mod soap;
mod soql;
mod state;
#[cfg(test)]
mod tests;
