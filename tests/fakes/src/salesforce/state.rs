//! The fake Salesforce's state: standard objects and fields, and how writes are checked and stored.

use std::collections::HashMap;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use super::answers::sf_error;
use super::changes::{SYSTEM_FIELDS, is_deleted, now_stamp};
use super::{API_USER_ID, DEFAULT_PAGE_SIZE, Field, Stage, State, TASK_PRIORITIES, TASK_STATUSES};
use crate::Authorizer;

fn prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "Lead" => "00Q",
        "Task" => "00T",
        "User" => "005",
        "RecordType" => "012",
        "OpportunityStage" => "01J",
        "OpportunityLineItem" => "00k",
        _ => "a00",
    }
}

fn standard_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &[
            "Name",
            "OwnerId",
            "Phone",
            "Website",
            "Type",
            "Description",
            "AccountNumber",
        ],
        "Contact" => &[
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "AccountId",
            "OwnerId",
        ],
        "Lead" => &[
            "FirstName",
            "LastName",
            "Email",
            "Company",
            "Status",
            "OwnerId",
        ],
        "Opportunity" => &[
            "Name",
            "StageName",
            "CloseDate",
            "Amount",
            "AccountId",
            "OwnerId",
            "RecordTypeId",
            "Description",
            "Probability",
        ],
        // An Opportunity's products; ProductCode and Name come from its Product2.
        "OpportunityLineItem" => &[
            "OpportunityId",
            "PricebookEntryId",
            "Product2Id",
            "ProductCode",
            "Name",
            "Quantity",
            "UnitPrice",
            "TotalPrice",
            "Description",
        ],
        "Task" => &[
            "Subject",
            "Description",
            "Priority",
            "Status",
            "ActivityDate",
            "WhatId",
            "WhoId",
            "OwnerId",
        ],
        _ => &[],
    }
}

pub(super) fn required_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &["Name"],
        "Contact" => &["LastName"],
        "Lead" => &["LastName", "Company"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        "OpportunityLineItem" => &["OpportunityId", "Quantity"],
        _ => &[],
    }
}

/// A field of a record, by case-insensitive name.
pub(super) fn get_field<'a>(
    record: &'a Map<String, Value>,
    name: &str,
) -> Option<(&'a String, &'a Value)> {
    record.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))
}

impl State {
    pub(super) fn new() -> Self {
        let stages = [
            ("Prospecting", false, false),
            ("Qualification", false, false),
            ("Needs Analysis", false, false),
            ("Proposal/Price Quote", false, false),
            ("Negotiation/Review", false, false),
            ("Closed Won", true, true),
            ("Closed Lost", true, false),
        ]
        .iter()
        .map(|(name, closed, won)| Stage {
            name: name.to_string(),
            closed: *closed,
            won: *won,
        })
        .collect();
        let mut fields = HashMap::new();
        for object in [
            "Account",
            "Contact",
            "Lead",
            "Opportunity",
            "OpportunityLineItem",
            "Task",
        ] {
            fields.insert(
                object.to_string(),
                standard_fields(object)
                    .iter()
                    .map(|f| (f.to_string(), Field { external_id: false }))
                    .collect(),
            );
        }
        State {
            next_id: 100,
            fields,
            records: HashMap::new(),
            stages,
            sessions: HashMap::new(),
            refresh_tokens: Vec::new(),
            limit_exhausted: false,
            rotate: false,
            used: 0,
            max: 15000,
            login_url: String::new(),
            instance_url: String::new(),
            auth: Authorizer::default(),
            revoked: Vec::new(),
            calls: 0,
            page_size: DEFAULT_PAGE_SIZE,
            pages: HashMap::new(),
            record_types: Vec::new(),
            duplicate_rules: Vec::new(),
            merges: Vec::new(),
            flights: Default::default(),
        }
    }

    pub(super) fn new_id(&mut self, object: &str) -> String {
        self.next_id += 1;
        format!("{}{:012}AAA", prefix(object), self.next_id)
    }

    pub(super) fn known_object(&self, object: &str) -> bool {
        self.fields.contains_key(object)
    }

    /// The canonical name of a field of `object`, if it has one.
    pub(super) fn field_name(&self, object: &str, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("Id") {
            return Some("Id".into());
        }
        let fields = self.fields.get(object)?;
        if let Some(system) = SYSTEM_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(name)) {
            return Some(system.to_string());
        }
        fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// The index of a live (not deleted) record of `object`.
    pub(super) fn record_index(&self, object: &str, id: &str) -> Option<usize> {
        self.records
            .get(object)?
            .iter()
            .position(|r| r.get("Id").and_then(Value::as_str) == Some(id) && !is_deleted(r))
    }

    pub(super) fn exists_anywhere(&self, id: &str) -> bool {
        id == API_USER_ID
            || self
                .records
                .values()
                .flatten()
                .any(|r| r.get("Id").and_then(Value::as_str) == Some(id))
    }

    /// Checks a write; returns the fields with canonical names.
    pub(super) fn validate(
        &self,
        object: &str,
        body: &Map<String, Value>,
        creating: bool,
    ) -> Result<Map<String, Value>, HttpResponse> {
        let mut fields = Map::new();
        for (name, value) in body {
            if name == "attributes" {
                continue;
            }
            let Some(canonical) = self.field_name(object, name).filter(|n| n != "Id") else {
                return Err(sf_error(
                    400,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on sobject of type {object}"),
                    &[],
                ));
            };
            if SYSTEM_FIELDS.contains(&canonical.as_str()) {
                return Err(sf_error(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    &format!("Unable to create/update fields: {canonical}."),
                    &[canonical.as_str()],
                ));
            }
            fields.insert(canonical, value.clone());
        }
        for (name, value) in &fields {
            self.check_value(object, name, value)?;
        }
        if creating {
            let missing: Vec<&str> = required_fields(object)
                .iter()
                .copied()
                .filter(|f| fields.get(*f).is_none_or(Value::is_null))
                .collect();
            if !missing.is_empty() {
                return Err(sf_error(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    &format!("Required fields are missing: [{}]", missing.join(", ")),
                    &missing,
                ));
            }
        }
        // Numbers sent as text are stored as numbers, as Salesforce does.
        for name in ["Amount", "Probability"] {
            if let Some(Value::String(text)) = fields.get(name)
                && let Ok(number) = text.parse::<f64>()
            {
                fields.insert(name.into(), json!(number));
            }
        }
        Ok(fields)
    }

    /// Checks one field's value: picklists, dates, numbers and ids.
    fn check_value(&self, object: &str, name: &str, value: &Value) -> Result<(), HttpResponse> {
        let text = value.as_str();
        let bad = |code: &str, message: String| sf_error(400, code, &message, &[name]);
        let picklist = |allowed: bool, label: &str| {
            (!allowed).then(|| {
                bad(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!("{label}: bad value for restricted picklist field: {value}"),
                )
            })
        };
        let refused = match name {
            "StageName" => picklist(
                text.is_some_and(|t| self.stages.iter().any(|s| s.name == t)),
                "Stage",
            ),
            "Priority" if object == "Task" => picklist(
                text.is_some_and(|t| TASK_PRIORITIES.contains(&t)),
                "Priority",
            ),
            "Status" if object == "Task" => {
                picklist(text.is_some_and(|t| TASK_STATUSES.contains(&t)), "Status")
            }
            "CloseDate" | "ActivityDate" => text
                .is_none_or(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err())
                .then(|| {
                    bad(
                        "JSON_PARSER_ERROR",
                        format!(
                            "Cannot deserialize instance of date from VALUE_STRING value {value}"
                        ),
                    )
                }),
            "Amount" | "Probability" => {
                let numeric = value.is_number() || text.is_some_and(|t| t.parse::<f64>().is_ok());
                (!numeric).then(|| {
                    bad(
                        "JSON_PARSER_ERROR",
                        format!("Cannot deserialize instance of double from {value}"),
                    )
                })
            }
            _ => None,
        };
        if let Some(response) = refused {
            return Err(response);
        }
        match name {
            "WhatId" | "WhoId" | "AccountId" | "OwnerId" | "RecordTypeId" => {
                let Some(id) = text else {
                    return Err(bad(
                        "MALFORMED_ID",
                        format!("{name}: id value of incorrect type: {value}"),
                    ));
                };
                if id.len() != 15 && id.len() != 18 {
                    return Err(bad(
                        "MALFORMED_ID",
                        format!("{name}: id value of incorrect type: {id}"),
                    ));
                }
                let valid = match name {
                    "OwnerId" => id.starts_with("005"),
                    "RecordTypeId" => id.starts_with("012"),
                    _ => self.exists_anywhere(id),
                };
                if !valid {
                    return Err(bad(
                        "FIELD_INTEGRITY_EXCEPTION",
                        format!("{name}: id value of incorrect type: {id}"),
                    ));
                }
                if name == "RecordTypeId" && !self.record_type_allowed(object, id) {
                    return Err(bad(
                        "INVALID_CROSS_REFERENCE_KEY",
                        format!("Record Type ID: this ID value isn't valid for the user: {id}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores a new record made by the API user; the system fields a seed gives are kept.
    pub(super) fn create(&mut self, object: &str, mut fields: Map<String, Value>) -> String {
        let id = self.new_id(object);
        fields.insert("Id".into(), json!(id));
        if object != "User" && !fields.contains_key("OwnerId") {
            fields.insert("OwnerId".into(), json!(API_USER_ID));
        }
        let stamp = fields
            .get("SystemModstamp")
            .cloned()
            .unwrap_or_else(|| json!(now_stamp()));
        for (name, value) in [
            ("CreatedDate", stamp.clone()),
            ("SystemModstamp", stamp.clone()),
            ("LastModifiedDate", stamp),
            ("CreatedById", json!(API_USER_ID)),
            ("LastModifiedById", json!(API_USER_ID)),
            ("IsDeleted", json!(false)),
        ] {
            fields.entry(name).or_insert(value);
        }
        self.records
            .entry(object.to_string())
            .or_default()
            .push(fields);
        id
    }

    pub(super) fn stage_records(&self) -> Vec<Map<String, Value>> {
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut m = Map::new();
                m.insert("Id".into(), json!(format!("01J{:012}AAA", i + 1)));
                m.insert("ApiName".into(), json!(s.name));
                m.insert("MasterLabel".into(), json!(s.name));
                m.insert("IsActive".into(), json!(true));
                m.insert("IsClosed".into(), json!(s.closed));
                m.insert("IsWon".into(), json!(s.won));
                m.insert("SortOrder".into(), json!(i + 1));
                m.insert(
                    "DefaultProbability".into(),
                    json!(if s.won {
                        100
                    } else if s.closed {
                        0
                    } else {
                        10 * (i + 1)
                    }),
                );
                m
            })
            .collect()
    }
}
