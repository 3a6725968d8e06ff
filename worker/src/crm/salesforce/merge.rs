//! Merging records, which Salesforce offers only through its SOAP API: the partner endpoint
//! (`POST {instance}/services/Soap/u/{version}`, `SOAPAction: merge`) with the OAuth access
//! token as the `SessionHeader`'s `sessionId`, and one `MergeRequest`: the `masterRecord`
//! (its `type` and `Id`) and a `recordToMergeIds`. Accounts, Contacts and Leads merge. The
//! answer's `MergeResult` says `success`, the survivor's `id`, or `errors` (`statusCode`,
//! `message`); a SOAP fault says what went wrong with the call itself.

use reqwest::Method;

use crate::crm::session::{Call, Request, xml_escape};
use crate::crm::{CrmError, ErrorKind};

/// The objects Salesforce merges.
pub(super) const MERGED: &[&str] = &["Account", "Contact", "Lead"];

/// The SOAP envelope of one merge of `loser` into `winner`.
fn envelope(object: &str, winner: &str, loser: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
            r#" xmlns:urn="urn:partner.soap.sforce.com" xmlns:sobj="urn:sobject.partner.soap.sforce.com">"#,
            "<soapenv:Header><urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader></soapenv:Header>",
            "<soapenv:Body><urn:merge><urn:request>",
            "<urn:masterRecord><sobj:type>{object}</sobj:type><sobj:Id>{winner}</sobj:Id></urn:masterRecord>",
            "<urn:recordToMergeIds>{loser}</urn:recordToMergeIds>",
            "</urn:request></urn:merge></soapenv:Body></soapenv:Envelope>"
        ),
        session = crate::crm::session::SESSION_SLOT,
        object = xml_escape(object),
        winner = xml_escape(winner),
        loser = xml_escape(loser),
    )
}

/// The text of the first element named `name` (any namespace).
fn text_of<'a>(doc: &'a roxmltree::Document<'_>, name: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
}

/// Merges `loser` into `winner` at API `version`; answers the survivor's id.
pub(super) async fn merge(
    call: &mut Call<'_>,
    version: String,
    object: &str,
    winner: &str,
    loser: &str,
) -> Result<String, CrmError> {
    let request = Request::new(Method::POST, format!("/services/Soap/u/{version}"))
        .at_host()
        .header("SOAPAction", "merge")
        .xml(envelope(object, winner, loser));
    let reply = super::reply::send(call, request).await?;
    let Ok(doc) = roxmltree::Document::parse(&reply.body) else {
        return Err(reply.error(
            crate::crm::session::kind_of_status(reply.status),
            format!("Salesforce's merge answered {} without SOAP", reply.status),
        ));
    };
    if let Some(fault) = text_of(&doc, "faultcode") {
        let message = text_of(&doc, "faultstring").unwrap_or_default();
        // A refused session is renewed by the next REST call, which comes first in a retry.
        let kind = if fault.ends_with("INVALID_SESSION_ID") {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        return Err(reply.error(kind, format!("Salesforce merge {fault}: {message}")));
    }
    if text_of(&doc, "success") == Some("true") {
        return Ok(text_of(&doc, "id").unwrap_or(winner).to_string());
    }
    let code = text_of(&doc, "statusCode").unwrap_or("ERROR");
    let message = text_of(&doc, "message").unwrap_or_default();
    let kind = match code {
        "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" => ErrorKind::NotFound,
        "UNABLE_TO_LOCK_ROW" => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    };
    Err(reply.error(kind, format!("Salesforce merge {code}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_names_the_master_and_the_merged_record_escaped() {
        let xml = envelope("Contact", "003A", "003<B>");
        assert!(xml.contains(crate::crm::session::SESSION_SLOT));
        // As sent: the session's token in the slot.
        let sent = xml.replace(crate::crm::session::SESSION_SLOT, "00Dxx!token");
        let doc = roxmltree::Document::parse(&sent).expect("well-formed");
        assert_eq!(text_of(&doc, "sessionId"), Some("00Dxx!token"));
        assert_eq!(text_of(&doc, "type"), Some("Contact"));
        assert_eq!(text_of(&doc, "Id"), Some("003A"));
        assert_eq!(text_of(&doc, "recordToMergeIds"), Some("003<B>"));
    }
}
