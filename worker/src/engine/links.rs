//! Record links: which CRM record a Stripe object was written to, and which event wrote it
//! last, so an older event never overwrites a newer one.

use super::core::*;

/// The Stripe object whose record link an upsert or update follows, if any.
pub(super) fn linked_object<'e>(event: &'e events::Model, op: &Operation) -> Option<&'e str> {
    // The items of a `for_each` step are records of their own, found by their own `match`,
    // never the event's object's link.
    if crate::flow::each::is_item(&op.step) {
        return None;
    }
    match (&event.stripe_object_id, op.action) {
        (Some(id), Action::Upsert | Action::Update) => Some(id.as_str()),
        // A record a person chose to create for a doubtful match is the object's from then on.
        (Some(id), Action::Create) if op.decided.is_some() => Some(id.as_str()),
        _ => None,
    }
}

/// The record this Stripe object was written to before in `op.object`, if any.
pub(super) async fn find_link<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    op: &Operation,
    stripe_object_id: Option<&str>,
) -> Result<Option<record_links::Model>, sea_orm::DbErr> {
    let Some(object_id) = stripe_object_id else {
        return Ok(None);
    };
    record_links::Entity::find()
        .filter(record_links::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(record_links::Column::CrmObject.eq(op.object.as_str()))
        .filter(record_links::Column::StripeObjectId.eq(object_id))
        .one(db)
        .await
}

/// Where an event falls in an object's life within one second: Stripe's `created` has
/// one-second resolution, so `*.created` comes before any change and `*.deleted` after it.
pub(super) fn lifecycle_rank(event_type: &str) -> u8 {
    if event_type.ends_with(".created") {
        0
    } else if event_type.ends_with(".deleted") {
        2
    } else {
        1
    }
}

/// Whether the event last applied to a linked record supersedes `event`: it is newer, or of the
/// same second and later in the object's life (created, changed, deleted), or of the same stage
/// and not provably after it (see [`follows`]): ties nothing decides keep the first applied. A
/// replay of the event that was applied is never superseded by itself.
pub(super) async fn superseded<C: ConnectionTrait>(
    db: &C,
    link: &record_links::Model,
    event: &events::Model,
) -> Result<bool, sea_orm::DbErr> {
    if link.last_event_id == event.id || link.last_event_created < event.event_created {
        return Ok(false);
    }
    if link.last_event_created > event.event_created {
        return Ok(true);
    }
    let Some(applied) = events::Entity::find_by_id(link.last_event_id.clone())
        .one(db)
        .await?
    else {
        return Ok(true);
    };
    let (theirs, ours) = (
        lifecycle_rank(&applied.event_type),
        lifecycle_rank(&event.event_type),
    );
    if theirs != ours {
        return Ok(theirs > ours);
    }
    // Same second, same stage: an update whose `previous_attributes` are the other event's
    // values came after it. Undecided, the first applied is kept.
    let parse = |payload: &str| serde_json::from_str::<Value>(payload).unwrap_or(Value::Null);
    let (applied, this) = (parse(&applied.payload), parse(&event.payload));
    Ok(!follows(&this, &applied))
}

/// Whether update event `later` continues from event `earlier`: every attribute `later` says it
/// changed had, before the change, the value `earlier` left it with.
pub(super) fn follows(later: &Value, earlier: &Value) -> bool {
    let Some(previous) = later
        .pointer("/data/previous_attributes")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
    else {
        return false;
    };
    let Some(before) = earlier.pointer("/data/object") else {
        return false;
    };
    previous
        .iter()
        .all(|(key, value)| before.get(key) == Some(value))
}

/// Why a delivery whose record a newer event already wrote is skipped.
pub(super) fn stale_warning(
    link: &record_links::Model,
    op: &Operation,
    event_created: i64,
) -> String {
    if link.last_event_created == event_created {
        format!(
            "an event of the same second ({}) was already applied to {} {}; the first applied is kept",
            link.last_event_id, op.object, link.crm_record_id
        )
    } else {
        format!(
            "a newer event ({}) was already applied to {} {}",
            link.last_event_id, op.object, link.crm_record_id
        )
    }
}

/// A delivery whose record a newer event already wrote: skipped as `stale`, pointing at it.
pub(super) fn mark_stale(
    active: &mut deliveries::ActiveModel,
    link: &record_links::Model,
    op: &Operation,
    attempts: i32,
    warning: &str,
) {
    active.status = Set(ds::SKIPPED.into());
    active.reason = Set(Some("stale".into()));
    active.attempts = Set(attempts);
    active.crm_record_id = Set(Some(link.crm_record_id.clone()));
    active.operation = Set(op.stored_json());
    active.warnings = Set(serde_json::json!([warning]).to_string());
    active.next_attempt_at = Set(None);
}

pub(super) async fn upsert_link<C: ConnectionTrait>(
    db: &C,
    event: &events::Model,
    connection: &connections::Model,
    object: &str,
    stripe_object_id: &str,
    record_id: &str,
    existing: Option<record_links::Model>,
) -> anyhow::Result<()> {
    match existing {
        Some(link) => {
            let newest = link.last_event_created.max(event.event_created);
            let mut active: record_links::ActiveModel = link.into();
            active.crm_record_id = Set(record_id.to_string());
            active.last_event_created = Set(newest);
            active.last_event_id = Set(event.id.clone());
            active.updated_at = Set(crate::now());
            active.update(db).await?;
        }
        None => {
            record_links::Entity::insert(record_links::ActiveModel {
                id: Set(crate::new_id()),
                tenant_id: Set(event.tenant_id.clone()),
                connection_id: Set(connection.id.clone()),
                crm_object: Set(object.to_string()),
                stripe_object_id: Set(stripe_object_id.to_string()),
                crm_record_id: Set(record_id.to_string()),
                last_event_created: Set(event.event_created),
                last_event_id: Set(event.id.clone()),
                updated_at: Set(crate::now()),
            })
            .exec(db)
            .await?;
        }
    }
    Ok(())
}
