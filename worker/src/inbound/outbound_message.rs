//! Salesforce Outbound Messages (SOAP push) and Flow HTTP callouts: a per-connection URL a
//! tenant gives Salesforce, for those who prefer push to polling.
//!
//! An Outbound Message is a SOAP 1.1 envelope with the organization's id, then 1 to 100
//! `Notification`s, each with its own id (the dedupe key) and an `sObject` holding `Id` and
//! the fields chosen in setup, latest values only. Salesforce signs nothing: the URL's token
//! and the `OrganizationId`, checked against the connection's `organization_id` setting, are
//! what make it the tenant's org. The answer Salesforce expects is [`ACK`]; anything else and
//! it retries for up to a day.
//!
//! A Flow HTTP callout sends the JSON the tenant designs in Flow Builder; Tributary takes
//! `{"object": "Opportunity", "records": [{"Id": "…", …}]}` with an optional `event` (`updated`
//! by default) and `id` per record for deduplication.

use serde_json::{Map, Value};

use super::CrmEvent;

/// The acknowledgement Salesforce waits for (HTTP 200, `text/xml`); one covers every
/// notification of the message.
pub const ACK: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
    r#"<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
    r#"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
);

const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";

/// Most notifications one message carries.
pub const MAX_NOTIFICATIONS: usize = 100;

/// An Outbound Message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub organization_id: String,
    pub events: Vec<CrmEvent>,
}

/// Reads an Outbound Message. `integration_user_id`, when set, marks as echoes the records
/// it modified last (`LastModifiedById`, when the message carries it).
pub fn parse(
    body: &[u8],
    integration_user_id: Option<&str>,
    now_ms: i64,
) -> Result<OutboundMessage, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 100_000,
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| format!("the body is not XML: {e}"))?;
    let notifications = doc
        .descendants()
        .find(|n| n.has_tag_name((OUTBOUND_NS, "notifications")))
        .ok_or("no notifications element: not a Salesforce Outbound Message")?;
    let child_text = |name: &str| {
        notifications
            .children()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let organization_id = child_text("OrganizationId");
    if organization_id.is_empty() {
        return Err("the message has no OrganizationId".into());
    }
    let items: Vec<_> = notifications
        .children()
        .filter(|n| n.tag_name().name() == "Notification")
        .collect();
    if items.is_empty() || items.len() > MAX_NOTIFICATIONS {
        return Err(format!(
            "a message holds 1 to {MAX_NOTIFICATIONS} notifications, this one {}",
            items.len()
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .children()
            .find(|n| n.tag_name().name() == "Id")
            .and_then(|n| n.text())
            .map(str::trim)
            .unwrap_or_default();
        let Some(object) = item.children().find(|n| n.tag_name().name() == "sObject") else {
            return Err(format!("notification {id} has no sObject"));
        };
        let object_type = object
            .attributes()
            .find(|a| a.name() == "type")
            .map(|a| a.value().rsplit(':').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let mut record = Map::new();
        for field in object.children().filter(|n| n.is_element()) {
            let nil = field
                .attributes()
                .any(|a| a.name() == "nil" && a.value() == "true");
            let value = match (nil, field.text()) {
                (true, _) | (false, None) => Value::Null,
                (false, Some(text)) => Value::String(text.trim().to_string()),
            };
            record.insert(field.tag_name().name().to_string(), value);
        }
        let record_id = record
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if id.is_empty() || record_id.is_empty() || object_type.is_empty() {
            return Err(
                "a notification lacks its Id, its sObject's type or the record's Id".into(),
            );
        }
        events.push(event_of(
            &object_type,
            "updated",
            &format!("om:{id}"),
            record,
            integration_user_id,
            now_ms,
        ));
    }
    Ok(OutboundMessage {
        organization_id,
        events,
    })
}

/// Reads a Flow HTTP callout's JSON: `{"object", "records": [...], "event"?}`.
pub fn parse_callout(
    body: &[u8],
    integration_user_id: Option<&str>,
    now_ms: i64,
) -> Result<Vec<CrmEvent>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let object = value
        .get("object")
        .and_then(Value::as_str)
        .filter(|o| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or("object: the Salesforce object name is required, e.g. \"Opportunity\"")?;
    let change = value
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("updated");
    if !matches!(change, "created" | "updated" | "deleted") {
        return Err("event: must be created, updated or deleted".into());
    }
    let records = value
        .get("records")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty() && r.len() <= MAX_NOTIFICATIONS)
        .ok_or(format!(
            "records: a list of 1 to {MAX_NOTIFICATIONS} records is required"
        ))?;
    let mut events = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let Some(record) = record.as_object() else {
            return Err(format!("records[{i}]: must be an object"));
        };
        let Some(record_id) = record.get("Id").and_then(Value::as_str) else {
            return Err(format!("records[{i}].Id: is required"));
        };
        let stamp = record
            .get("SystemModstamp")
            .or_else(|| record.get("LastModifiedDate"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = match value.get("id").and_then(Value::as_str) {
            Some(id) => format!("callout:{id}:{record_id}"),
            None => format!("callout:{object}:{record_id}@{stamp}"),
        };
        events.push(event_of(
            object,
            change,
            &key,
            record.clone(),
            integration_user_id,
            now_ms,
        ));
    }
    Ok(events)
}

fn event_of(
    object: &str,
    change: &str,
    key: &str,
    record: Map<String, Value>,
    integration_user_id: Option<&str>,
    now_ms: i64,
) -> CrmEvent {
    let record_id = record
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let occurred_at_ms = record
        .get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(super::parse_stamp)
        .map_or(now_ms, |t| t.timestamp_millis());
    let echo = integration_user_id
        .is_some_and(|user| record.get("LastModifiedById").and_then(Value::as_str) == Some(user));
    CrmEvent {
        source: "salesforce",
        key: key.to_string(),
        event_type: format!("{object}.{change}"),
        object: object.to_string(),
        record_id,
        occurred_at_ms,
        vendor: Value::Object(record.clone()),
        record,
        previous: Map::new(),
        echo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D000000000001EAA</OrganizationId>
   <ActionId>04k000000000001AAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0/00D000000000001</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0/00D000000000001</PartnerUrl>
   <Notification>
    <Id>04l000000000001AAA</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>006000000000001AAA</sf:Id>
     <sf:StageName>Closed Won</sf:StageName>
     <sf:Amount>1200.0</sf:Amount>
     <sf:CloseDate xsi:nil="true"/>
     <sf:SystemModstamp>2026-01-02T03:04:05.000Z</sf:SystemModstamp>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#;

    #[test]
    fn an_outbound_message_becomes_one_event_per_notification() {
        let message = parse(MESSAGE.as_bytes(), None, 0).expect("parses");
        assert_eq!(message.organization_id, "00D000000000001EAA");
        let [event] = message.events.as_slice() else {
            panic!("one event, got {:?}", message.events);
        };
        assert_eq!(event.event_type, "Opportunity.updated");
        assert_eq!(event.key, "om:04l000000000001AAA");
        assert_eq!(event.record_id, "006000000000001AAA");
        assert_eq!(event.record["StageName"], "Closed Won");
        assert_eq!(event.record["CloseDate"], Value::Null);
        assert_eq!(event.occurred_at_ms, 1_767_323_045_000);
        assert!(!event.echo);
    }

    #[test]
    fn what_is_not_an_outbound_message_is_refused_with_a_reason() {
        for (body, says) in [
            ("not xml", "not XML"),
            ("<a/>", "no notifications element"),
            (r#"<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>"#, "not XML"),
        ] {
            let error = parse(body.as_bytes(), None, 0).unwrap_err();
            assert!(error.contains(says), "{body}: {error}");
        }
        let no_org = MESSAGE.replace("00D000000000001EAA", "");
        assert!(
            parse(no_org.as_bytes(), None, 0)
                .unwrap_err()
                .contains("OrganizationId")
        );
    }

    #[test]
    fn a_flow_callout_names_its_object_and_records() {
        let body = br#"{"object": "Opportunity", "records": [{"Id": "006A", "StageName": "Closed Won",
            "LastModifiedById": "005INTEGRATION", "SystemModstamp": "2026-01-02T03:04:05.000+0000"}]}"#;
        let events = parse_callout(body, Some("005INTEGRATION"), 0).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "Opportunity.updated");
        assert_eq!(
            events[0].key,
            "callout:Opportunity:006A@2026-01-02T03:04:05.000+0000"
        );
        assert!(
            events[0].echo,
            "the integration user's own change is an echo"
        );
        let error = parse_callout(br#"{"records": []}"#, None, 0).unwrap_err();
        assert!(error.starts_with("object:"), "{error}");
        let error =
            parse_callout(br#"{"object": "Opportunity", "records": [{}]}"#, None, 0).unwrap_err();
        assert_eq!(error, "records[0].Id: is required");
    }
}
