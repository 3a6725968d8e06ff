//! Doubtful matches: whether the record a CRM write would write is in doubt, and the rules that
//! settle one without a person.
//!
//! A write whose step has a `review` policy other than `create` asks its CRM first:
//!
//! - **several**: an upsert's `match` finds more than one record;
//! - **similar**: it finds none (or the step creates), but records with every `review.similar`
//!   value exist. Values are compared ignoring case, accents, spaces and punctuation; with
//!   `review.typos` a record counts only when each `match` value is within that many edits of
//!   the event's (a typo), else any such record counts (the same person under another email).
//!
//! A write found in doubt is held for a person (`pause`), or merged by the `merge` rules: the
//! winner is the candidate with the most non-empty values (or the CRM's first), takes the
//! `copy` fields the others have and it lacks, and the others are merged into it.

use serde_json::{Map, Value};
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use crate::crm::{self, Connector, CrmError, Trail, as_text, is_blank};
use crate::flow::{Action, MergeWinner, Operation, Review};
use entity::connections;

/// Why a write is in doubt.
pub mod reason {
    pub const SEVERAL: &str = "several";
    pub const SIMILAR: &str = "similar";
    /// The vendor's own duplicate rules refused the write (Salesforce's `DUPLICATES_DETECTED`).
    pub const DUPLICATES: &str = "duplicates";
}

pub use crate::statuses::decision;

/// How long a paused item waits before it alerts, unless the step says.
pub const DEFAULT_ALERT_MINUTES: u32 = 1440;

/// Most candidates a review item shows.
pub const MAX_CANDIDATES: usize = 20;

/// A write in doubt: why, in a sentence, and the records it could mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Doubt {
    pub reason: &'static str,
    pub summary: String,
    pub candidates: Vec<Map<String, Value>>,
}

/// Text as the review compares it: lower case, accents, spaces and punctuation taken out.
pub fn normalised(value: &Value) -> String {
    as_text(value)
        .nfd()
        .filter(|c| !is_combining_mark(*c) && c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The longest match value compared for typos: an e-mail address is at most 254 characters,
/// and the comparison's cost grows with the product of the two lengths.
const MAX_TYPO_TEXT: usize = 320;

/// The edits between two match values (case and surrounding spaces aside); longer values than
/// [`MAX_TYPO_TEXT`] are never a typo of each other.
fn edits(ours: &Value, theirs: &Value) -> usize {
    let text = |v: &Value| as_text(v).trim().to_lowercase();
    let (ours, theirs) = (text(ours), text(theirs));
    if ours.chars().count() > MAX_TYPO_TEXT || theirs.chars().count() > MAX_TYPO_TEXT {
        return usize::MAX;
    }
    crate::flow::edit_distance(&ours, &theirs)
}

/// The fields whose values differ between the incoming write and a candidate (compared as the
/// review compares them), in the incoming order: what a person looks at first.
pub fn differing(incoming: &Map<String, Value>, candidate: &Map<String, Value>) -> Vec<String> {
    incoming
        .iter()
        .filter(|(name, value)| {
            candidate
                .get(name.as_str())
                .is_none_or(|theirs| normalised(theirs) != normalised(value))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The records of `found` that look like the one `op` would write: equal on every `similar`
/// value and, with `typos`, each match value within that many edits (but not equal).
pub fn similar(
    op: &Operation,
    review: &Review,
    found: Vec<Map<String, Value>>,
) -> Vec<Map<String, Value>> {
    found
        .into_iter()
        .filter(|record| {
            review.similar.iter().all(|(name, wanted)| {
                record
                    .get(name)
                    .is_some_and(|value| normalised(value) == normalised(wanted))
            })
        })
        .filter(|record| match review.typos {
            None => true,
            Some(typos) => op.match_fields.iter().all(|(name, ours)| {
                record.get(name).is_some_and(|theirs| {
                    let n = edits(ours, theirs);
                    n > 0 && n <= usize::from(typos)
                })
            }),
        })
        .collect()
}

/// The candidate the `merge` rules keep: the one with the most non-empty values, the CRM's
/// first among equals, or simply the first.
pub fn winner(candidates: &[Map<String, Value>], rule: MergeWinner) -> usize {
    match rule {
        MergeWinner::First => 0,
        MergeWinner::MostComplete => {
            let filled = |record: &Map<String, Value>| {
                record
                    .iter()
                    .filter(|(name, value)| *name != "id" && !is_blank(value))
                    .count()
            };
            let mut best = 0;
            for (i, record) in candidates.iter().enumerate() {
                if filled(record) > filled(&candidates[best]) {
                    best = i;
                }
            }
            best
        }
    }
}

/// The `copy` fields the winner lacks, from the first other candidate that has them.
pub fn copied(
    candidates: &[Map<String, Value>],
    kept: usize,
    copy: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    for name in copy {
        if candidates[kept].get(name).is_some_and(|v| !is_blank(v)) {
            continue;
        }
        let theirs = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != kept)
            .filter_map(|(_, record)| record.get(name))
            .find(|value| !is_blank(value));
        if let Some(value) = theirs {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// The fields a lookup reads of each candidate: every name the write and its review use.
fn selected(op: &Operation, review: &Review) -> Vec<String> {
    let mut names: Vec<String> = op
        .match_fields
        .keys()
        .chain(op.fields.keys())
        .chain(review.similar.keys())
        .chain(review.copy.iter())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A `find` of `op.object` by `values`, reading `select`.
fn lookup(op: &Operation, values: &Map<String, Value>, select: &[String]) -> Operation {
    Operation {
        action: Action::Find,
        match_fields: values.clone(),
        fields: Map::new(),
        record_id: None,
        select: select.to_vec(),
        review: None,
        decided: None,
        associate: Vec::new(),
        ..op.clone()
    }
}

/// The records a lookup found.
fn records(found: Result<crm::CrmOutcome, CrmError>) -> Result<Vec<Map<String, Value>>, CrmError> {
    let answer = found?.response.unwrap_or(Value::Null);
    Ok(answer
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|record| record.as_object().cloned())
        .collect())
}

/// Whether the write `op` is in doubt (see the module docs); says too which requests asking
/// sent. `None` when its record is certain: one match, or nothing like it.
pub async fn doubt(
    connector: &Connector,
    connection: &connections::Model,
    op: &Operation,
    review: &Review,
) -> (Result<Option<Doubt>, CrmError>, Trail) {
    let mut trail = Trail::default();
    let select = selected(op, review);
    if op.action == Action::Upsert && !op.match_fields.is_empty() {
        let (found, sent) = crm::find(
            connector,
            connection,
            &lookup(op, &op.match_fields, &select),
        )
        .await;
        trail.append(sent);
        match records(found) {
            Err(error) => return (Err(error), trail),
            Ok(found) if found.len() > 1 => {
                let summary = format!(
                    "{} {} records match {}",
                    found.len(),
                    op.object,
                    described(&op.match_fields)
                );
                return (Ok(Some(doubt_of(reason::SEVERAL, summary, found))), trail);
            }
            Ok(found) if found.len() == 1 => return (Ok(None), trail),
            Ok(_) => {}
        }
    }
    if review.similar.is_empty() {
        return (Ok(None), trail);
    }
    let (found, sent) =
        crm::find(connector, connection, &lookup(op, &review.similar, &select)).await;
    trail.append(sent);
    let found = match records(found) {
        Ok(found) => similar(op, review, found),
        Err(error) => return (Err(error), trail),
    };
    if found.is_empty() {
        return (Ok(None), trail);
    }
    let unmatched = if op.match_fields.is_empty() {
        String::new()
    } else {
        format!(
            "no {} record has {}, but ",
            op.object,
            described(&op.match_fields)
        )
    };
    let how = match review.typos {
        Some(typos) => format!(" and a match value within {typos} edits of the event's"),
        None => String::new(),
    };
    let summary = format!(
        "{unmatched}{} {} records have the same {}{how}",
        found.len(),
        op.object,
        review
            .similar
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    (Ok(Some(doubt_of(reason::SIMILAR, summary, found))), trail)
}

/// A write the vendor's duplicate rules refused, as a doubt: the records they named.
pub fn refused_as_duplicate(provider: &str, op: &Operation, error: &CrmError) -> Option<Doubt> {
    if error.duplicates.is_empty() {
        return None;
    }
    let summary = format!(
        "{provider}'s duplicate rules found {} {} records like this one: {}",
        error.duplicates.len(),
        op.object,
        error.message
    );
    Some(doubt_of(
        reason::DUPLICATES,
        summary,
        error.duplicates.clone(),
    ))
}

fn doubt_of(
    reason: &'static str,
    summary: String,
    mut candidates: Vec<Map<String, Value>>,
) -> Doubt {
    candidates.truncate(MAX_CANDIDATES);
    Doubt {
        reason,
        summary,
        candidates,
    }
}

/// `email ana@acme.io` or `email ana@acme.io and name Ana`.
fn described(values: &Map<String, Value>) -> String {
    values
        .iter()
        .map(|(name, value)| format!("{name} {}", as_text(value)))
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn op(match_fields: Value) -> Operation {
        serde_json::from_value(json!({
            "step": "contact", "action": "upsert", "object": "contacts", "match": match_fields,
            "fields": {}, "record_id": null, "fallback_fields": [], "associate": []
        }))
        .unwrap()
    }

    fn review(similar: Value, typos: Option<u8>) -> Review {
        let mut review: Review = serde_json::from_value(json!({"policy": "pause"})).unwrap();
        review.similar = map(similar);
        review.typos = typos;
        review
    }

    #[test]
    fn names_compare_without_case_accents_spaces_or_punctuation() {
        assert_eq!(normalised(&json!("  José  O'Neil ")), "joseoneil");
        assert_eq!(
            normalised(&json!("ACME, Inc.")),
            normalised(&json!("Acme Inc"))
        );
        assert_ne!(normalised(&json!("Acme")), normalised(&json!("Acne")));
        assert_eq!(normalised(&json!(42)), "42");
    }

    #[test]
    fn similar_records_share_every_similar_value_and_typos_bound_the_match() {
        let found = vec![
            map(
                json!({"id": "1", "email": "ana@acme.com", "lastname": "Lopez", "company": "Acme"}),
            ),
            map(
                json!({"id": "2", "email": "ana.lopez@gmail.com", "lastname": "López", "company": "ACME"}),
            ),
            map(
                json!({"id": "3", "email": "ana@acme.co", "lastname": "Lopez", "company": "Other"}),
            ),
        ];
        let op = op(json!({"email": "ana@acme.co"}));
        let same = review(json!({"lastname": "lopez", "company": "Acme"}), None);
        let ids = |records: Vec<Map<String, Value>>| -> Vec<String> {
            records.iter().map(|r| as_text(&r["id"])).collect()
        };
        assert_eq!(ids(similar(&op, &same, found.clone())), ["1", "2"]);
        // Within one edit only the typo remains; the other address is another email.
        let typo = review(json!({"lastname": "lopez", "company": "Acme"}), Some(1));
        assert_eq!(ids(similar(&op, &typo, found.clone())), ["1"]);
        // A tenant's megabyte-long value is no typo of anything, and costs nothing to say so.
        let long = "a".repeat(1_000_000);
        assert_eq!(
            edits(&json!(long.clone()), &json!(format!("{long}b"))),
            usize::MAX
        );
        let none = review(json!({"lastname": "Smith"}), None);
        assert!(similar(&op, &none, found).is_empty());
    }

    #[test]
    fn the_winner_is_the_most_complete_and_takes_the_copied_fields_it_lacks() {
        let candidates = vec![
            map(json!({"id": "1", "email": "a@x.io", "phone": "", "city": null})),
            map(json!({"id": "2", "email": "b@x.io", "phone": "555", "city": null})),
            map(json!({"id": "3", "email": "c@x.io", "phone": "777", "city": "Lyon"})),
        ];
        assert_eq!(winner(&candidates, MergeWinner::MostComplete), 2);
        assert_eq!(winner(&candidates, MergeWinner::First), 0);
        let copy = ["phone".to_string(), "city".to_string(), "fax".to_string()];
        assert_eq!(
            copied(&candidates, 0, &copy),
            map(json!({"phone": "555", "city": "Lyon"}))
        );
        assert!(copied(&candidates, 2, &copy).is_empty());
        // Ties keep the CRM's first.
        let tied = vec![
            map(json!({"id": "1", "a": "x"})),
            map(json!({"id": "2", "b": "y"})),
        ];
        assert_eq!(winner(&tied, MergeWinner::MostComplete), 0);
    }

    #[test]
    fn the_differing_fields_are_those_a_person_must_look_at() {
        let incoming = map(json!({"email": "ana@acme.co", "lastname": "Lopez", "phone": "1"}));
        let candidate = map(json!({"id": "1", "email": "ana@acme.com", "lastname": "LOPEZ"}));
        assert_eq!(differing(&incoming, &candidate), ["email", "phone"]);
    }
}
