//! The fake HubSpot's `GET /crm/v3/properties/{objectType}`: every property of the object
//! type, as `CollectionResponsePropertyNoPaging` (`results`, each with `name`, `label`,
//! `type`, `fieldType`, `groupName`, `description`, `options`, `hasUniqueValue` and
//! `modificationMetadata`). The properties HubSpot maintains itself (`hs_object_id`,
//! `createdate`, `lastmodifieddate`) are listed with a read-only value.

use actix_web::HttpResponse;
use serde_json::{Value, json};

use super::State;

/// A property's (`type`, `fieldType`), from its name.
fn types_of(name: &str) -> (&'static str, &'static str) {
    match name {
        "amount" | "hs_object_id" => ("number", "number"),
        "closedate" | "createdate" | "lastmodifieddate" => ("datetime", "date"),
        "dealstage" | "pipeline" | "lifecyclestage" => ("enumeration", "select"),
        "description" => ("string", "textarea"),
        _ => ("string", "text"),
    }
}

/// A label as HubSpot's defaults read: `deal_currency_code` as `Deal currency code`.
fn label_of(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn property(object: &str, name: &str, unique: bool, read_only: bool) -> Value {
    let (kind, field_type) = types_of(name);
    let group = match object {
        "contacts" => "contactinformation",
        "companies" => "companyinformation",
        _ => "dealinformation",
    };
    json!({
        "name": name,
        "label": label_of(name),
        "type": kind,
        "fieldType": field_type,
        "groupName": group,
        "description": "",
        "options": [],
        "displayOrder": -1,
        "hasUniqueValue": unique,
        "hidden": false,
        "formField": !read_only,
        "calculated": false,
        "externalOptions": false,
        "archived": false,
        "modificationMetadata": {
            "archivable": !read_only,
            "readOnlyDefinition": read_only,
            "readOnlyValue": read_only,
        },
    })
}

/// `GET /crm/v3/properties/{object}` for a known (plural) object type.
pub(super) fn list(s: &State, object: &str) -> HttpResponse {
    let mut own: Vec<(&String, bool)> = s
        .properties
        .get(object)
        .map(|p| p.iter().map(|(name, p)| (name, p.unique)).collect())
        .unwrap_or_default();
    own.sort();
    let mut results: Vec<Value> = ["hs_object_id", "createdate", "lastmodifieddate"]
        .iter()
        .map(|name| property(object, name, *name == "hs_object_id", true))
        .collect();
    results.extend(
        own.into_iter()
            .map(|(name, unique)| property(object, name, unique, false)),
    );
    HttpResponse::Ok().json(json!({ "results": results }))
}
