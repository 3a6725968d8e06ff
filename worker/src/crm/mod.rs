//! CRM adapters and the one classification of their errors that the retry policy reads.
//!
//! Every vendor implements [`Adapter`]; the CRM-write step kinds (`steps/crm_write.rs`) and
//! `http` steps call [`apply`] with one of the three [`Write`]s, and `find` steps call
//! [`find`], and never learn which vendor they talk to. What each provider is (settings, OAuth, hosts) lives in [`providers`]. The
//! sandbox is the exception that proves the rule: its records live in Tributary's own
//! database, so the engine writes them inside its own transaction.

pub mod config;
mod error;
mod fields;
pub mod http_crm;
pub mod hubspot;
pub mod limits;
mod object_fields;
pub mod providers;
pub mod salesforce;
pub mod sandbox;
pub mod session;
pub mod zoho;

use entity::connections;
use serde_json::{Map, Value};

use crate::flow::Operation;
pub use error::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Write};
pub use fields::{as_text, fallback_fields, fallback_warning, is_blank, known_ids, merged};
pub use object_fields::{
    FieldInfo, FieldSource, OBJECT_NAME_PATTERN, has_schema, is_object_name, sorted, unknown_object,
};
pub use session::{
    Adapter, Call, Connector, Exchanged, FIND_LIMIT, Found, Reply, Request, Session, Trail, pacing,
};

/// The adapter of a provider that talks to a vendor (not the sandbox).
pub fn adapter(provider: &str) -> Option<&'static dyn Adapter> {
    match provider {
        "hubspot" => Some(&hubspot::HubSpot),
        "salesforce" => Some(&salesforce::Salesforce),
        "zoho" => Some(&zoho::Zoho),
        "http" => Some(&http_crm::HttpCrm),
        _ => None,
    }
}

fn adapter_of(connection: &connections::Model) -> Result<&'static dyn Adapter, CrmError> {
    adapter(&connection.provider).ok_or_else(|| {
        CrmError::new(
            ErrorKind::Permanent,
            format!("the {} provider has no vendor adapter", connection.provider),
        )
    })
}

/// Executes one write against the connection's vendor; says too which requests it sent
/// (for the delivery's history).
pub async fn apply(
    connector: &Connector,
    connection: &connections::Model,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
) -> (Result<CrmOutcome, CrmError>, Trail) {
    let opened = adapter_of(connection)
        .and_then(|adapter| Ok((adapter, Call::open(connector, connection, adapter)?)));
    let (adapter, mut call) = match opened {
        Ok(opened) => opened,
        Err(error) => return (Err(error), Trail::default()),
    };
    let result = adapter.apply(&mut call, kind, op, linked).await;
    call.finish().await;
    (result, std::mem::take(&mut call.trail))
}

/// Finds the records of `op.object` whose fields equal every `match` value, reading the
/// `select` fields: the sandbox's in Tributary's database (a read, so outside the engine's
/// transaction), any other provider's at its vendor. The outcome's record is the first record
/// found ("" when none) and its answer `{"records": [...], "count": n}`.
pub async fn find(
    connector: &Connector,
    connection: &connections::Model,
    op: &Operation,
) -> (Result<CrmOutcome, CrmError>, Trail) {
    if connection.provider == "sandbox" {
        let found = sandbox::find(&connector.db, connection, op).await;
        return (
            found.map(|found| found_outcome(op, found)),
            Trail::default(),
        );
    }
    let opened = adapter_of(connection)
        .and_then(|adapter| Ok((adapter, Call::open(connector, connection, adapter)?)));
    let (adapter, mut call) = match opened {
        Ok(opened) => opened,
        Err(error) => return (Err(error), Trail::default()),
    };
    let result = adapter.find(&mut call, op).await;
    call.finish().await;
    let trail = std::mem::take(&mut call.trail);
    (result.map(|found| found_outcome(op, found)), trail)
}

/// A find's outcome: the first record's id, and the records (at most [`FIND_LIMIT`]) with
/// their count as the answer later steps read.
fn found_outcome(op: &Operation, mut found: Found) -> CrmOutcome {
    let mut warnings = Vec::new();
    if found.more || found.records.len() > FIND_LIMIT {
        found.records.truncate(FIND_LIMIT);
        warnings.push(format!(
            "more than {FIND_LIMIT} {} records match; the first {FIND_LIMIT} were read",
            op.object
        ));
    }
    let record_id = found
        .records
        .first()
        .and_then(|record| record.get("id"))
        .map(as_text)
        .unwrap_or_default();
    let count = found.records.len();
    let records: Vec<Value> = found.records.into_iter().map(Value::Object).collect();
    CrmOutcome {
        record_id,
        warnings,
        response: Some(serde_json::json!({ "records": records, "count": count })),
    }
}

/// Whether the connection's CRM merges records of `object`: the sandbox always, a vendor
/// where its API does (HubSpot contacts and deals; Salesforce Accounts, Contacts and Leads).
pub fn merges(connection: &connections::Model, object: &str) -> bool {
    connection.provider == "sandbox"
        || adapter(&connection.provider).is_some_and(|adapter| adapter.merges(object))
}

/// Merges record `loser` into `winner`, and moves the record links that led to the loser to
/// the survivor; answers the survivor's id.
pub async fn merge(
    connector: &Connector,
    connection: &connections::Model,
    object: &str,
    winner: &str,
    loser: &str,
) -> (Result<String, CrmError>, Trail) {
    let (result, trail) = if connection.provider == "sandbox" {
        let merged = sandbox::merge(&connector.db, connection, object, winner, loser).await;
        (merged, Trail::default())
    } else {
        match adapter_of(connection)
            .and_then(|adapter| Ok((adapter, Call::open(connector, connection, adapter)?)))
        {
            Ok((adapter, mut call)) => {
                let merged = adapter.merge(&mut call, object, winner, loser).await;
                call.finish().await;
                (merged, std::mem::take(&mut call.trail))
            }
            Err(error) => (Err(error), Trail::default()),
        }
    };
    if let Ok(survivor) = &result {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let moved = entity::record_links::Entity::update_many()
            .col_expr(
                entity::record_links::Column::CrmRecordId,
                Expr::value(survivor.as_str()),
            )
            .filter(entity::record_links::Column::ConnectionId.eq(connection.id.as_str()))
            .filter(entity::record_links::Column::CrmObject.eq(object))
            .filter(entity::record_links::Column::CrmRecordId.eq(loser))
            .exec(&connector.db)
            .await;
        if let Err(error) = moved {
            tracing::warn!(connection_id = %connection.id, %error, "record links of a merged record were not moved");
        }
    }
    (result, trail)
}

/// The fields of `object` in the connection's CRM, required first, then by label: the
/// vendor's description of it, or for the sandbox the fields its stored records hold. An
/// invalid object name is invalid, an object the vendor does not know not found.
pub async fn fields(
    connector: &Connector,
    connection: &connections::Model,
    object: &str,
) -> Result<(FieldSource, Vec<FieldInfo>), CrmError> {
    if !is_object_name(object) {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            format!("object names match {OBJECT_NAME_PATTERN}"),
        ));
    }
    if connection.provider == "sandbox" {
        let found = object_fields::sandbox_fields(&connector.db, connection, object).await?;
        return Ok((FieldSource::Seen, sorted(found)));
    }
    let adapter = adapter_of(connection)?;
    let mut call = Call::open(connector, connection, adapter)?;
    let result = adapter.fields(&mut call, object).await;
    call.finish().await;
    Ok((FieldSource::Vendor, sorted(result?)))
}

/// One cheap authenticated call to the connection's vendor.
pub async fn check(
    connector: &Connector,
    connection: &connections::Model,
) -> Result<String, CrmError> {
    if connection.provider == "smtp" {
        return crate::actions::email::check(connector, connection).await;
    }
    let adapter = adapter_of(connection)?;
    let mut call = Call::open(connector, connection, adapter)?;
    let result = adapter.check(&mut call).await;
    call.finish().await;
    result
}

/// The settings templates see: the connection's own, plus what the adapter discovers; says
/// too which requests discovering them sent.
pub async fn template_settings(
    connector: &Connector,
    connection: &connections::Model,
) -> (Result<Value, CrmError>, Trail) {
    let mut settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let mut trail = Trail::default();
    if let Some(adapter) = adapter(&connection.provider) {
        let mut call = match Call::open(connector, connection, adapter) {
            Ok(call) => call,
            Err(error) => return (Err(error), trail),
        };
        let discovered = adapter.template_settings(&mut call).await;
        call.finish().await;
        trail = std::mem::take(&mut call.trail);
        match discovered {
            Ok(discovered) => {
                for (key, value) in discovered {
                    settings.entry(key).or_insert(value);
                }
            }
            Err(error) => return (Err(error), trail),
        }
    }
    (Ok(Value::Object(settings)), trail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op() -> Operation {
        serde_json::from_value(json!({
            "step": "known", "action": "find", "object": "Contact", "match": {"Email": "a@b.c"},
            "fields": {}, "fallback_fields": [], "associate": []
        }))
        .expect("an operation")
    }

    fn records(n: usize) -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| {
                json!({"id": i, "Name": format!("n{i}")})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn a_find_answers_the_first_records_id_and_at_most_a_hundred_records() {
        let none = found_outcome(&op(), Found::default());
        assert_eq!(none.record_id, "");
        assert_eq!(none.response, Some(json!({"records": [], "count": 0})));
        assert!(none.warnings.is_empty());

        let two = found_outcome(
            &op(),
            Found {
                records: records(2),
                more: false,
            },
        );
        assert_eq!(two.record_id, "0", "ids read as text");
        assert_eq!(two.response.as_ref().unwrap()["count"], 2);
        assert_eq!(two.response.as_ref().unwrap()["records"][1]["Name"], "n1");

        for found in [
            Found {
                records: records(FIND_LIMIT + 3),
                more: false,
            },
            Found {
                records: records(FIND_LIMIT),
                more: true,
            },
        ] {
            let many = found_outcome(&op(), found);
            assert_eq!(many.response.as_ref().unwrap()["count"], FIND_LIMIT);
            assert_eq!(many.warnings.len(), 1, "{:?}", many.warnings);
            assert!(many.warnings[0].contains("more than 100 Contact records"));
        }
    }
}
