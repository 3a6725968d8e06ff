//! Step kinds: each `action` of a flow step is one kind in its own file, implementing
//! [`StepKind`] — how a step is validated, rendered (and previewed) and executed. The engine
//! keeps each step's delivery (claim, lease, attempts, retries, dead letters) and asks the
//! kind what one attempt does; CRM adapters only ever see the three writes and `find`.
//!
//! Adding a kind: a variant of [`Action`] (and its name in `Action::as_str` and
//! `Action::ALL`), a file here implementing [`StepKind`], and its arm in [`kind`].

mod assert;
mod crm_write;
mod email;
mod find;
mod http;
mod kind;
mod log;
mod notify;
mod stripe_retrieve;
mod stripe_write;

pub use assert::STOPPED;
pub use email::EMAIL_FIELDS;
pub use kind::{Done, Exec, Runs, Shape, StepKind, Templates, Wants};
pub use notify::NOTICE_KIND;

use crate::flow::Action;

/// The kind that runs steps of `action`.
pub fn kind(action: Action) -> &'static dyn StepKind {
    match action {
        Action::Upsert => &crm_write::UPSERT,
        Action::Create => &crm_write::CREATE,
        Action::Update => &crm_write::UPDATE,
        Action::StripeRetrieve => &stripe_retrieve::StripeRetrieve,
        Action::StripeCreate => &stripe_write::CREATE,
        Action::StripeUpdate => &stripe_write::UPDATE,
        Action::Email => &email::Email,
        Action::Find => &find::Find,
        Action::Http => &http::Http,
        Action::Assert => &assert::Assert,
        Action::Log => &log::Log,
        Action::Notify => &notify::Notify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_own_kind_and_is_listed() {
        // The schema lists every variant serde knows; `Action::ALL` must list them all.
        let schema = serde_json::to_value(<Action as utoipa::PartialSchema>::schema())
            .expect("the schema serializes");
        let mut names: Vec<String> = serde_json::from_value(schema["enum"].clone())
            .expect("Action's schema is an enum of names");
        let mut listed: Vec<String> = Action::ALL.iter().map(|a| a.to_string()).collect();
        names.sort();
        listed.sort();
        assert_eq!(listed, names, "Action::ALL lists every variant");
        for action in Action::ALL {
            assert_eq!(
                kind(action).action(),
                action,
                "{action} runs as its own kind"
            );
            let parsed: Action = serde_json::from_value(serde_json::json!(action.as_str()))
                .expect("the name parses");
            assert_eq!(parsed, action);
        }
    }

    #[test]
    fn stripe_kinds_name_the_objects_they_can_reach_and_crm_kinds_leave_it_to_the_crm() {
        let objects = |action| kind(action).objects().unwrap_or_default();
        let retrieve = objects(Action::StripeRetrieve);
        assert!(
            retrieve.contains(&"customer") && retrieve.contains(&"customer_search"),
            "{retrieve:?}"
        );
        assert!(objects(Action::StripeCreate).contains(&"billing_portal.session"));
        assert!(!objects(Action::StripeUpdate).contains(&"billing_portal.session"));
        for action in [Action::Upsert, Action::Find, Action::Email, Action::Http] {
            assert!(kind(action).objects().is_none(), "{action}");
        }
    }
}
