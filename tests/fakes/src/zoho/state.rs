//! The fake Zoho CRM's state: its modules and fields, its clock, and how records are checked,
//! stamped and stored.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value, json};

use super::answers::record_error;
use super::{Change, Field, State};
use crate::Authorizer;

pub(super) fn field(data_type: &str, mandatory: bool, unique: bool) -> Field {
    Field {
        data_type: data_type.to_string(),
        mandatory,
        unique,
    }
}

pub(super) fn default_modules() -> HashMap<String, HashMap<String, Field>> {
    let mut modules = HashMap::new();
    let contacts: HashMap<String, Field> = [
        ("First_Name", field("text", false, false)),
        ("Last_Name", field("text", true, false)),
        ("Email", field("email", false, true)),
        ("Phone", field("phone", false, false)),
        ("Mobile", field("phone", false, false)),
        ("Account_Name", field("lookup", false, false)),
        ("Description", field("textarea", false, false)),
        ("Mailing_City", field("text", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let leads: HashMap<String, Field> = [
        ("First_Name", field("text", false, false)),
        ("Last_Name", field("text", true, false)),
        ("Company", field("text", false, false)),
        ("Email", field("email", false, true)),
        ("Phone", field("phone", false, false)),
        ("Lead_Status", field("picklist", false, false)),
        ("Lead_Source", field("picklist", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let deals: HashMap<String, Field> = [
        ("Deal_Name", field("text", true, false)),
        ("Stage", field("picklist", true, false)),
        ("Amount", field("double", false, false)),
        ("Closing_Date", field("date", false, false)),
        ("Contact_Name", field("lookup", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    modules.insert("Contacts".to_string(), contacts);
    modules.insert("Leads".to_string(), leads);
    modules.insert("Deals".to_string(), deals);
    modules
}

pub(super) fn looks_like_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && domain.contains('.'))
}

pub(super) fn same(field: &str, a: &Value, b: &str) -> bool {
    match a.as_str() {
        Some(a) if field == "Email" => a.eq_ignore_ascii_case(b),
        Some(a) => a == b,
        None => matches!(a, Value::Number(n) if n.to_string() == b),
    }
}

impl State {
    pub(super) fn new() -> Self {
        State {
            next_id: 5725767000000500000,
            modules: default_modules(),
            records: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            ttl: 3600,
            throttle: 0,
            retry_after: 1,
            api_domain: String::new(),
            accounts_url: String::new(),
            auth: Authorizer::default(),
            revoked: Vec::new(),
            credits: 50_000,
            used: 0,
            day_start: Utc::now(),
            tokens_per_refresh: 30,
            minted_by: HashMap::new(),
            channels: HashMap::new(),
            changes: Vec::new(),
            callbacks: Default::default(),
            clock: chrono::Duration::zero(),
            zone: FixedOffset::east_opt(0).expect("UTC is an offset"),
        }
    }

    /// The fake's time: the real clock moved by what the test said.
    pub(super) fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock
    }

    /// A time as Zoho writes it: to the second, in the org's time zone.
    pub(super) fn text(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// Notes a change for the channels watching `module`.
    pub(super) fn changed(
        &mut self,
        module: &str,
        operation: &'static str,
        id: &str,
        fields: Map<String, Value>,
    ) {
        self.changes.push(Change {
            module: module.to_string(),
            operation,
            id: id.to_string(),
            fields,
        });
    }

    /// Sets a record's modification fields (and creation fields when `created`), as `user`.
    pub(super) fn stamp(&self, record: &mut Map<String, Value>, user: Value, created: bool) {
        let at = self.text(self.now());
        if created {
            record.insert("Created_Time".into(), json!(at));
            record.insert("Created_By".into(), user.clone());
        }
        record.insert("Modified_Time".into(), json!(at));
        record.insert("Modified_By".into(), user);
    }

    pub(super) fn find(&self, module: &str, field: &str, value: &str) -> Option<usize> {
        self.records
            .get(module)?
            .iter()
            .position(|r| r.get(field).is_some_and(|v| same(field, v, value)))
    }

    pub(super) fn by_id(&self, module: &str, id: &str) -> Option<usize> {
        self.records
            .get(module)?
            .iter()
            .position(|r| r.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Checks one record's fields; `Err` is its per-record error entry.
    pub(super) fn check(
        &self,
        module: &str,
        record: &Map<String, Value>,
        index: usize,
        inserting: bool,
    ) -> Result<Map<String, Value>, Value> {
        let fields = &self.modules[module];
        let mut clean = Map::new();
        for (name, value) in record {
            if name == "id" {
                continue;
            }
            let Some(def) = fields.get(name) else {
                // Zoho ignores fields a module does not have.
                continue;
            };
            let ok = match def.data_type.as_str() {
                "double" | "currency" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "email" => value.as_str().is_some_and(looks_like_email),
                "date" => value
                    .as_str()
                    .is_some_and(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()),
                "lookup" => value.is_object() || value.is_string(),
                _ => value.is_string() || value.is_null(),
            };
            if !ok {
                return Err(record_error(
                    "INVALID_DATA",
                    "invalid data",
                    name,
                    index,
                    json!({"expected_data_type": def.data_type}),
                ));
            }
            clean.insert(name.clone(), value.clone());
        }
        if inserting {
            for (name, def) in fields {
                if def.mandatory && clean.get(name).is_none_or(|v| v.is_null() || v == "") {
                    return Err(record_error(
                        "MANDATORY_NOT_FOUND",
                        "required field not found",
                        name,
                        index,
                        json!({}),
                    ));
                }
            }
        }
        Ok(clean)
    }

    /// A unique field of `record` another record already holds: (field, existing id).
    pub(super) fn duplicate(
        &self,
        module: &str,
        record: &Map<String, Value>,
        except: Option<&str>,
    ) -> Option<(String, String)> {
        for (name, def) in &self.modules[module] {
            if !def.unique {
                continue;
            }
            if let Some(value) = record.get(name).and_then(Value::as_str)
                && let Some(i) = self.find(module, name, value)
            {
                let id = self.records[module][i]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if Some(id.as_str()) != except {
                    return Some((name.clone(), id));
                }
            }
        }
        None
    }

    /// Deletes a record; says whether there was one. The channels hear of it.
    pub(super) fn remove(&mut self, module: &str, id: &str) -> bool {
        let Some(i) = self.by_id(module, id) else {
            return false;
        };
        self.records.get_mut(module).unwrap().remove(i);
        self.changed(module, "delete", id, Map::new());
        true
    }

    pub(super) fn insert(&mut self, module: &str, mut record: Map<String, Value>) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        record.insert("id".into(), json!(id));
        self.records
            .entry(module.to_string())
            .or_default()
            .push(record);
        id
    }
}
