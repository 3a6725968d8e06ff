//! The CRM a budget run delivers to: a stateful fake of HubSpot, Salesforce or Zoho, the
//! connection and upsert flow for it, and how its request log reads as calls and records.

use serde_json::{Value, json};
use tributary_fakes::Logged;
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};

/// The external id field Salesforce upserts accounts by.
const SF_KEY: &str = "Stripe_Customer_ID__c";

pub enum Crm {
    /// Enforces `max` per rolling `interval_ms` itself; the limit is learned from its headers.
    HubSpot(FakeHubSpot),
    /// Daily allocation only; the connection's `rate_limit` setting paces it.
    Salesforce(FakeSalesforce),
    /// Credits only; the connection's `rate_limit` setting paces it.
    Zoho(FakeZoho),
}

impl Crm {
    pub fn start(name: &str, max: u64, interval_ms: u64) -> Crm {
        match name {
            "salesforce" => {
                let fake = FakeSalesforce::start();
                fake.define_field("Account", SF_KEY, true);
                fake.set_api_usage(0, 5_000_000);
                Crm::Salesforce(fake)
            }
            "zoho" => Crm::Zoho(FakeZoho::start()),
            _ => {
                let fake = FakeHubSpot::start();
                fake.set_rate_limits(max, interval_ms, 100_000_000);
                Crm::HubSpot(fake)
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Crm::HubSpot(_) => "HubSpot",
            Crm::Salesforce(_) => "Salesforce",
            Crm::Zoho(_) => "Zoho",
        }
    }

    /// The connection to create; Salesforce and Zoho are paced at `max` per `interval_ms` by
    /// their `rate_limit` setting, HubSpot learns its limit from the fake's headers.
    pub fn connection(&self, max: u64, interval_ms: u64) -> Value {
        let paced = json!({"requests": max, "per_seconds": (interval_ms / 1000).max(1)});
        match self {
            Crm::HubSpot(fake) => json!({"name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}}),
            Crm::Salesforce(fake) => json!({"name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "api_version": "60.0",
                             "edition": "unlimited", "rate_limit": paced}}),
            Crm::Zoho(fake) => json!({"name": "Zoho CRM", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8",
                             "edition": "enterprise", "rate_limit": paced}}),
        }
    }

    /// An upsert flow by a unique key, so the backlog goes out in batch calls.
    pub fn flow(&self, connection_id: &str) -> Value {
        let (object, key, fields) = match self {
            Crm::HubSpot(_) => (
                "contacts",
                json!({"email": "{{ object.billing_details.email }}"}),
                json!({"firstname": "{{ object.billing_details.name }}"}),
            ),
            Crm::Salesforce(_) => (
                "Account",
                json!({SF_KEY: "{{ object.billing_details.email }}"}),
                json!({"Name": "{{ object.billing_details.name }}"}),
            ),
            Crm::Zoho(_) => (
                "Contacts",
                json!({"Email": "{{ object.billing_details.email }}"}),
                json!({"Last_Name": "{{ object.billing_details.name }}"}),
            ),
        };
        json!({"name": "Backlog", "connection_id": connection_id,
               "trigger": {"events": ["charge.succeeded"]},
               "steps": [{"id": "record", "action": "upsert", "object": object,
                          "match": key, "fields": fields}]})
    }

    pub fn log(&self) -> Vec<Logged> {
        match self {
            Crm::HubSpot(fake) => fake.log.all(),
            Crm::Salesforce(fake) => fake.log.all(),
            Crm::Zoho(fake) => fake.log.all(),
        }
    }

    /// The records a request wrote: a batch call's array, 1 for a single upsert, 0 for the
    /// rest (tokens, descriptions).
    pub fn records_in(&self, logged: &Logged) -> usize {
        let (batch, array) = match self {
            Crm::HubSpot(_) => ("/crm/v3/objects/contacts/batch/upsert", "inputs"),
            Crm::Salesforce(_) => (
                "/composite/sobjects/Account/Stripe_Customer_ID__c",
                "records",
            ),
            Crm::Zoho(_) => ("/Contacts/upsert", "data"),
        };
        if logged.path.ends_with(batch) {
            return serde_json::from_str::<Value>(&logged.body)
                .ok()
                .and_then(|body| body[array].as_array().map(Vec::len))
                .unwrap_or(0);
        }
        let single = match self {
            Crm::Salesforce(_) => {
                logged.method == "PATCH" && logged.path.contains("/sobjects/Account/Stripe_")
            }
            _ => false,
        };
        usize::from(single)
    }

    /// Requests that arrived inside an announced `Retry-After` (HubSpot's fake counts them).
    pub fn early(&self) -> Option<u64> {
        match self {
            Crm::HubSpot(fake) => Some(fake.early_requests()),
            _ => None,
        }
    }

    /// The distinct keys written to the CRM.
    pub fn written(&self) -> Vec<String> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut keys: Vec<String> = match self {
            Crm::HubSpot(fake) => fake
                .records("contacts")
                .iter()
                .map(|r| text(&r.properties["email"]))
                .collect(),
            Crm::Salesforce(fake) => fake
                .records("Account")
                .iter()
                .map(|r| text(&r[SF_KEY]))
                .collect(),
            Crm::Zoho(fake) => fake
                .records("Contacts")
                .iter()
                .map(|r| text(&r["Email"]))
                .collect(),
        };
        keys.sort();
        keys.dedup();
        keys
    }
}
