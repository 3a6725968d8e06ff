//! The partner SOAP API's `merge()` (`POST /services/Soap/u/{version}`), as Salesforce's SOAP
//! API documents it: the session in the `SessionHeader`'s `sessionId` (an OAuth access token
//! serves), `SOAPAction` required, one `MergeRequest` of a `masterRecord` (`type`, `Id`) and
//! `recordToMergeIds`, for Accounts, Contacts and Leads. The master keeps its values and
//! takes the merged record's where it has none; the merged record goes to the recycle bin
//! with `MasterRecordId` naming the master. The answer is a `MergeResult` (`id`,
//! `mergedRecordIds`, `success`, or `errors`); a call the API refuses is a SOAP fault.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use super::{API_USER_ID, State};

const MERGED: &[&str] = &["Account", "Contact", "Lead"];

fn envelope(status: u16, body: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("text/xml; charset=utf-8")
        .body(format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
                r#" xmlns="urn:partner.soap.sforce.com" xmlns:sf="urn:fault.partner.soap.sforce.com""#,
                r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"#
            ),
            body
        ))
}

fn fault(code: &str, message: &str) -> HttpResponse {
    envelope(
        500,
        &format!(
            "<soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring></soapenv:Fault>"
        ),
    )
}

fn result(inner: &str) -> HttpResponse {
    envelope(
        200,
        &format!("<mergeResponse><result>{inner}</result></mergeResponse>"),
    )
}

fn failed(code: &str, message: &str) -> HttpResponse {
    result(&format!(
        r#"<errors><message>{message}</message><statusCode>{code}</statusCode></errors><id xsi:nil="true"/><success>false</success>"#
    ))
}

fn text<'a>(doc: &'a roxmltree::Document<'_>, name: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
}

pub(super) fn call(s: &mut State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    if req.headers().get("soapaction").is_none() {
        return fault("INVALID_SOAP_HEADER", "No SOAPAction header!");
    }
    let Ok(xml) = std::str::from_utf8(body) else {
        return fault("INVALID_XML", "the body is not UTF-8");
    };
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return fault("INVALID_XML", "the body is not XML");
    };
    let session = text(&doc, "sessionId").unwrap_or_default();
    if s.sessions.get(session) != Some(&true) {
        return fault(
            "INVALID_SESSION_ID",
            "Invalid Session ID found in SessionHeader: Illegal Session",
        );
    }
    s.used += 1;
    s.calls += 1;
    let (Some(object), Some(master), Some(merged)) = (
        text(&doc, "type"),
        text(&doc, "Id"),
        text(&doc, "recordToMergeIds"),
    ) else {
        return fault(
            "INVALID_FIELD",
            "a MergeRequest needs masterRecord and recordToMergeIds",
        );
    };
    if !MERGED.contains(&object) {
        return failed(
            "INVALID_TYPE_FOR_OPERATION",
            &format!("{object} records cannot be merged"),
        );
    }
    let (Some(kept), Some(gone)) = (
        s.record_index(object, master),
        s.record_index(object, merged),
    ) else {
        return failed("ENTITY_IS_DELETED", "entity is deleted");
    };
    if kept == gone {
        return failed("INVALID_ID_FIELD", "a record cannot be merged with itself");
    }
    let theirs = s.records[object][gone].clone();
    let own = s.records[object][kept].clone();
    let filled: Map<String, Value> = theirs
        .into_iter()
        .filter(|(name, value)| {
            !matches!(name.as_str(), "Id" | "attributes")
                && !value.is_null()
                && own
                    .get(name)
                    .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        })
        .collect();
    if !filled.is_empty() {
        s.modify(object, kept, filled, API_USER_ID);
    }
    s.modify(
        object,
        gone,
        Map::from_iter([("MasterRecordId".to_string(), json!(master))]),
        API_USER_ID,
    );
    s.recycle(object, gone, API_USER_ID);
    s.merges
        .push((object.to_string(), master.to_string(), merged.to_string()));
    result(&format!(
        "<id>{master}</id><mergedRecordIds>{merged}</mergedRecordIds><success>true</success><updatedRelatedIds/>"
    ))
}
