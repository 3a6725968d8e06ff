//! The fake HubSpot's state: object types and their properties, and how records are checked and stored.

use std::collections::HashMap;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use super::answers::{correlation, now_text};
use super::{Limits, Property, Record, State};
use crate::Authorizer;

pub(super) fn plural(object: &str) -> Option<&'static str> {
    match object {
        "contacts" | "contact" | "0-1" => Some("contacts"),
        "companies" | "company" | "0-2" => Some("companies"),
        "deals" | "deal" | "0-3" => Some("deals"),
        "line_items" | "line_item" | "0-8" => Some("line_items"),
        _ => None,
    }
}

pub(super) fn default_properties() -> HashMap<String, HashMap<String, Property>> {
    let mut all = HashMap::new();
    for (object, names, unique) in [
        (
            "contacts",
            &[
                "email",
                "firstname",
                "lastname",
                "phone",
                "company",
                "website",
                "lifecyclestage",
                "jobtitle",
                "city",
                "country",
            ][..],
            "email",
        ),
        (
            "companies",
            &["name", "domain", "phone", "city"][..],
            "domain",
        ),
        (
            "deals",
            &[
                "dealname",
                "dealstage",
                "pipeline",
                "amount",
                "closedate",
                "deal_currency_code",
                "description",
            ][..],
            "",
        ),
        (
            "line_items",
            &["name", "hs_product_id", "hs_sku", "quantity", "price"][..],
            "",
        ),
    ] {
        let map: HashMap<String, Property> = names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Property {
                        unique: *n == unique,
                    },
                )
            })
            .collect();
        all.insert(object.to_string(), map);
    }
    all
}

pub(super) fn singular(object: &str) -> &'static str {
    match object {
        "contacts" => "Contact",
        "companies" => "Company",
        "line_items" => "Line item",
        _ => "Deal",
    }
}

impl State {
    pub(super) fn new() -> Self {
        State {
            next_id: 1000,
            properties: default_properties(),
            records: HashMap::new(),
            associations: Vec::new(),
            merges: Vec::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            ttl: 1800,
            throttle: 0,
            retry_after: 1,
            auth: Authorizer::default(),
            revoked: Vec::new(),
            limits: Limits::new(),
            scopes: None,
            portal: super::PORTAL_ID,
            token_portals: HashMap::new(),
        }
    }

    /// Checks a write's properties: known and string-valued. `Err` holds one (name, code,
    /// message) per refused property.
    pub(super) fn check_properties(
        &self,
        object: &str,
        properties: &Map<String, Value>,
    ) -> Result<(), Vec<(String, &'static str, String)>> {
        let known = &self.properties[object];
        let mut refused = Vec::new();
        for (name, value) in properties {
            if !known.contains_key(name) {
                let message = format!("Property \"{name}\" does not exist");
                refused.push((name.clone(), "PROPERTY_DOESNT_EXIST", message));
            } else if !value.is_string() {
                let message =
                    format!("{value} is not a valid value for {name}: it must be a string");
                refused.push((name.clone(), "INVALID_STRING", message));
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// A single-object write's refusal: 400, the invalid properties as JSON in `message`.
    pub(super) fn validate(
        &self,
        object: &str,
        properties: &Map<String, Value>,
    ) -> Result<(), HttpResponse> {
        let refused = self.check_properties(object, properties).err();
        let Some(refused) = refused else {
            return Ok(());
        };
        let invalid: Vec<Value> = refused
            .iter()
            .map(|(name, code, message)| {
                json!({"isValid": false, "message": message, "error": code, "name": name,
                       "localizedErrorMessage": message})
            })
            .collect();
        Err(HttpResponse::BadRequest().json(json!({
            "status": "error",
            "message": format!("Property values were not valid: {}", Value::Array(invalid)),
            "correlationId": correlation(),
            "category": "VALIDATION_ERROR",
        })))
    }

    pub(super) fn find(&self, object: &str, property: &str, value: &str) -> Option<usize> {
        self.records.get(object)?.iter().position(|r| {
            r.properties
                .get(property)
                .and_then(Value::as_str)
                .is_some_and(|v| {
                    if property == "email" {
                        v.eq_ignore_ascii_case(value)
                    } else {
                        v == value
                    }
                })
        })
    }

    pub(super) fn by_id(&self, object: &str, id: &str) -> Option<usize> {
        self.records.get(object)?.iter().position(|r| r.id == id)
    }

    /// A unique property whose value another record already holds.
    pub(super) fn conflict(
        &self,
        object: &str,
        properties: &Map<String, Value>,
        except: Option<&str>,
    ) -> Option<String> {
        for (name, def) in &self.properties[object] {
            if !def.unique {
                continue;
            }
            if let Some(value) = properties.get(name).and_then(Value::as_str)
                && let Some(i) = self.find(object, name, value)
            {
                let id = &self.records[object][i].id;
                if Some(id.as_str()) != except {
                    return Some(id.clone());
                }
            }
        }
        None
    }

    pub(super) fn insert(&mut self, object: &str, properties: Map<String, Value>) -> Record {
        self.next_id += 1;
        let mut properties = properties;
        properties.insert("createdate".into(), json!(now_text()));
        let record = Record {
            id: self.next_id.to_string(),
            properties,
        };
        self.records
            .entry(object.to_string())
            .or_default()
            .push(record.clone());
        record
    }
}
