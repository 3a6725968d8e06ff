//! The flow's data model: the spec a tenant writes, the operation a step renders to, and the
//! errors both can produce. Plain data only; parsing rules live in `validate`, rendering in
//! `mod.rs` and `template`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A tenant's mapping from Stripe events to CRM writes, as stored and as sent to the API.
///
/// Unknown keys are refused everywhere so that a typo (`"stpes"`) is an error instead of a
/// silently ignored setting. Build one with [`parse_flow`](super::parse_flow) to get every
/// problem reported with its path; plain `serde` deserialization only checks the shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Shown in lists and logs.
    #[schema(value_type = crate::schema::Name)]
    pub name: String,
    /// The CRM connection every step writes to.
    pub connection_id: String,
    /// Disabled flows are kept and can be previewed, but never run.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Which events start the flow.
    pub trigger: Trigger,
    /// Run against the object's current state at Stripe instead of the event's snapshot
    /// (Stripe's advice for events that may arrive out of order). Needs the account's secret
    /// key; the fetched object is recorded as the flow's `_refetch` delivery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refetch: bool,
    /// The writes, in order; later steps may use `steps.<id>.id` of earlier ones.
    pub steps: Vec<Step>,
}

fn enabled_by_default() -> bool {
    true
}

/// Which events start a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Where the events come from: `stripe` (the default), or the CRM of the flow's connection
    /// (`hubspot`, `salesforce`, `zoho`), whose changes then start the flow.
    #[serde(default = "stripe_source", skip_serializing_if = "is_stripe")]
    #[schema(default = "stripe")]
    pub source: String,
    /// Event type patterns: exact (`charge.succeeded`), `*`, or a prefix (`customer.subscription.*`).
    pub events: Vec<String>,
    /// An expression over the template context; the flow runs only when it is truthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Also run on events Tributary's own writes caused (a Stripe event from its own request,
    /// a CRM change made by its integration user or app). Off by default, so a two-way sync
    /// cannot chase its own tail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub echoes: bool,
}

fn stripe_source() -> String {
    "stripe".into()
}

fn is_stripe(source: &String) -> bool {
    source == "stripe"
}

/// One CRM write. String values of `match`, `fields`, `record_id` and `associate[].id` are
/// templates; `when` is an expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the flow, an identifier, so later steps can say `steps.<id>.id`.
    pub id: String,
    /// What to do with the record.
    pub action: Action,
    /// The vendor's own object name (`contacts`, `Opportunity`, `Contacts`, …); none for
    /// `email`, `http`, `assert` and `notify` steps.
    #[serde(default)]
    pub object: String,
    /// The lookup key of `upsert`, and the fallback lookup of `update`.
    #[serde(default, rename = "match", skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub match_fields: Map<String, Value>,
    /// The values written.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub fields: Map<String, Value>,
    /// For `update`: the record to write, tried before `match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// An expression; the step runs only when it is truthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// An expression giving a list (at most 1000 items): the step runs once per item, which
    /// its templates (and `when`) read as `item`; each run is a delivery of its own, named
    /// `<id>[<item.id>]` (or `<id>[#<position>]` for items without one). Later steps read
    /// `steps.<id>.items`: each run's `id` and answer, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// `find`: the fields to read of each record found (templates), besides its id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
    /// When the CRM refuses unknown properties, retry once with `match` plus these fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_fields: Vec<String>,
    /// Records to link the written record to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate: Vec<Association>,
    /// HTTP connections only: the request method (`POST`, `PUT`, `PATCH`, `DELETE`); by
    /// default `POST` for create and upsert, `PATCH` for update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP connections only: the path under the connection's `base_url` (a template); by
    /// default `/<object>`, and `/<object>/<record_id>` for an update with a record id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `stripe.*` steps: the Stripe account to call (its id in `/v1/stripe-accounts`); by
    /// default the account the event came from, else the tenant's only account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_account_id: Option<String>,
    /// `stripe.retrieve` only: related objects Stripe should expand (`expand[]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expand: Vec<String>,
    /// The connection this step uses instead of the flow's: an `smtp` connection for `email`,
    /// an optional `http` connection (base URL, auth, HMAC signature) for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// `http` without a connection: the absolute URL to call (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `http`: request headers (templates).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub headers: Map<String, Value>,
    /// `assert`: the expression that must be true for the flow to go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// `assert`: why the flow stopped, shown on the skipped delivery; `log`: what is recorded;
    /// `notify`: what is sent (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `upsert` and `create`: what a doubtful match is and what happens to one (see
    /// [`Review`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// What a CRM write does when the record it would write is in doubt: its `match` finds several
/// records, or none but records that look like the same one (`similar`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// `create` (the default: write as if there were no doubt), `pause` (hold the delivery for
    /// a person, `GET /v1/reviews`) or `merge` (merge the candidates by `winner` and `copy`,
    /// then write to the survivor; where the CRM cannot merge, `pause`).
    #[serde(default)]
    pub policy: ReviewPolicy,
    /// Field → value (templates): when `match` finds nothing, the CRM's records with all these
    /// values (compared ignoring case, accents, spaces and punctuation) are candidates, e.g.
    /// the same name and company under another email.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub similar: Map<String, Value>,
    /// Count a `similar` record only when each `match` value differs from the event's by at
    /// most this many edits (a typo); without it any `similar` record counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub typos: Option<u8>,
    /// `merge`: which candidate survives: `most_complete` (the most non-empty values; ties go
    /// to the CRM's first) or `first` (the CRM's first).
    #[serde(default)]
    pub winner: MergeWinner,
    /// `merge`: fields copied from the other candidates into the survivor where its own are
    /// empty, before they are merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<String>,
    /// `pause`: a review item waiting longer than this many minutes alerts the tenant's
    /// channels (`review.waiting`). Default 1440 (a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 525600)]
    pub alert_after_minutes: Option<u32>,
}

/// What a doubtful match leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewPolicy {
    #[default]
    Create,
    Pause,
    Merge,
}

/// Which candidate a merge keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeWinner {
    #[default]
    MostComplete,
    First,
}

/// What a step does with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Find by `match`, update it, else create it with `match` and `fields`.
    Upsert,
    /// Always make a new record.
    Create,
    /// Write an existing record found by `record_id`, else by `match`; none found is an error.
    Update,
    /// Fetch a Stripe object (`object`: customer, subscription, invoice, payment_intent,
    /// charge, checkout.session, price, product) by `record_id`; later steps read it as
    /// `steps.<id>.object`. Writes nothing.
    #[serde(rename = "stripe.retrieve")]
    StripeRetrieve,
    /// Create a Stripe object (`object`: customer, subscription, invoiceitem,
    /// billing_portal.session) from `fields`, form-encoded, with an `Idempotency-Key` derived
    /// from the event and step; later steps read it as `steps.<id>.object`.
    #[serde(rename = "stripe.create")]
    StripeCreate,
    /// Update a Stripe object (`object`: customer, subscription) found by `record_id` with
    /// `fields` (e.g. `metadata`).
    #[serde(rename = "stripe.update")]
    StripeUpdate,
    /// Send an email through the step's `smtp` connection: `fields` `to`, `subject`, `text`
    /// and/or `html` (and optional `cc`, `bcc`, `reply_to`), all templates. Sent once per
    /// event and step, whatever the retries.
    Email,
    /// Call any endpoint: `method` (POST), `url` or the step's `http` connection with `path`,
    /// `headers`, and `fields` as the JSON body. The answer is `steps.<id>.response`.
    Http,
    /// Stop the flow unless `check` is true; the step is recorded as skipped with `message`.
    Assert,
    /// Record `message` (a template) on the delivery; later steps read it as
    /// `steps.<id>.response.message`.
    Log,
    /// Find records of `object` in the flow's CRM whose fields equal every `match` value,
    /// reading the `select` fields; writes nothing. Later steps read the first record's id
    /// as `steps.<id>.id` and the records as `steps.<id>.response.records` (at most 100;
    /// `response.count`). Finding none is not an error: `steps.<id>.id` is then undefined.
    Find,
    /// Send `message` (a template), titled by the optional `fields.subject`, to every enabled
    /// notification channel of the tenant (the Slack or webhook channels its alerts go to);
    /// other `fields` travel in a webhook channel's JSON. Sent once per event, step and
    /// channel, whatever the retries and replays.
    Notify,
}

impl Action {
    /// Whether steps of this action call Stripe (with a Stripe account's key).
    pub fn is_stripe(self) -> bool {
        matches!(
            self,
            Action::StripeRetrieve | Action::StripeCreate | Action::StripeUpdate
        )
    }

    /// Every action, in the order the docs list them.
    pub const ALL: [Action; 12] = [
        Action::Upsert,
        Action::Create,
        Action::Update,
        Action::Find,
        Action::StripeRetrieve,
        Action::StripeCreate,
        Action::StripeUpdate,
        Action::Email,
        Action::Http,
        Action::Assert,
        Action::Log,
        Action::Notify,
    ];

    /// The name used in flows and deliveries.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upsert => "upsert",
            Action::Create => "create",
            Action::Update => "update",
            Action::Find => "find",
            Action::StripeRetrieve => "stripe.retrieve",
            Action::StripeCreate => "stripe.create",
            Action::StripeUpdate => "stripe.update",
            Action::Email => "email",
            Action::Http => "http",
            Action::Assert => "assert",
            Action::Log => "log",
            Action::Notify => "notify",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link from a step's record to another record; `id` is a template, usually
/// `{{ steps.<id>.id }}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Association {
    /// The other record's object name.
    pub object: String,
    /// The other record's id (a template).
    pub id: String,
}

/// A step rendered against one event: what an adapter executes, and what preview shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// The step id it came from.
    pub step: String,
    /// What to do.
    pub action: Action,
    /// The vendor's object name.
    pub object: String,
    /// Lookup values; fields that rendered null or undefined are left out.
    #[serde(rename = "match")]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub match_fields: Map<String, Value>,
    /// Values to write; fields that rendered null or undefined are left out.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub fields: Map<String, Value>,
    /// For `update`: the record to write, if the template gave one.
    pub record_id: Option<String>,
    /// Field names to keep when the CRM refuses unknown properties.
    pub fallback_fields: Vec<String>,
    /// Links to make; links whose id rendered empty are left out.
    pub associate: Vec<RenderedAssociation>,
    /// HTTP connections: the request method, if the step set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP connections: the rendered request path, if the step set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `stripe.retrieve`: what Stripe is asked to expand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expand: Vec<String>,
    /// `find`: the rendered field names to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
    /// The step's own connection, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// `http`: the rendered absolute URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `http`: the rendered headers.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub headers: Map<String, Value>,
    /// The step's review policy, its `similar` values rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The decision about a doubtful match this write carries out: `pick`, `create` or
    /// `merge` (a person's in a review item, or the `merge` policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<String>,
    /// Values `password()` and `token(n)` made for this operation: sent, never stored.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

/// What stands in a stored delivery where a generated secret was.
pub const REDACTED: &str = "[generated secret]";

impl Operation {
    /// The operation as a delivery keeps it: generated secrets replaced by [`REDACTED`].
    pub fn stored_json(&self) -> Option<String> {
        serde_json::to_string(self)
            .ok()
            .map(|text| self.redact(&text))
    }

    /// `text` with this operation's generated secrets replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), REDACTED);
        }
        text
    }
}

/// An association with its id rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RenderedAssociation {
    /// The other record's object name.
    pub object: String,
    /// The other record's id.
    pub id: String,
}

/// One problem in a flow, with the JSON path of the value at fault
/// (`steps[1].fields.amount`; empty for the flow as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidationError {
    /// Where, e.g. `steps[1].fields.amount`.
    pub path: String,
    /// What, e.g. `unknown filter 'amout'`.
    pub message: String,
}

impl ValidationError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything templates can see while one event runs through one flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RenderContext {
    /// The whole Stripe event; `object` and `previous` are taken from it.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub event: Value,
    /// Step id → CRM record id, for the steps that already wrote.
    pub steps: BTreeMap<String, String>,
    /// Step id → the vendor's JSON answer to that step's write, where it gave one.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub responses: BTreeMap<String, serde_json::Value>,
    /// Step id → the Stripe object a `stripe.retrieve` step fetched.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub objects: BTreeMap<String, serde_json::Value>,
    /// The connection's settings (e.g. Salesforce `won_stage`).
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub settings: Value,
    /// The run's clock, so a run renders the same on every attempt it is given the same time.
    pub now: DateTime<Utc>,
    /// What `password()` and `token(n)` derive their values from (one per event and flow);
    /// without it they render placeholders, as in a preview.
    #[serde(skip)]
    pub secret_seed: Option<String>,
    /// The item a `for_each` step is running for, read as `item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub item: Option<Value>,
    /// Step id → what each run of a `for_each` step gave, read as `steps.<id>.items`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = std::collections::HashMap<String, Vec<serde_json::Value>>)]
    pub items: BTreeMap<String, Vec<Value>>,
}

impl RenderContext {
    /// Keeps what a finished step gave for later steps: its record id as `steps.<id>.id`, and
    /// its answer — a `stripe.retrieve` step's object as `steps.<id>.object`, a write's vendor
    /// answer as `steps.<id>.response`.
    pub fn finished(&mut self, step: &Step, record_id: Option<String>, answer: Option<Value>) {
        if let Some(record_id) = record_id {
            self.steps.insert(step.id.clone(), record_id);
        }
        if let Some(answer) = answer {
            match step.action {
                Action::StripeRetrieve | Action::StripeCreate | Action::StripeUpdate => {
                    self.objects.insert(step.id.clone(), answer)
                }
                _ => self.responses.insert(step.id.clone(), answer),
            };
        }
    }
}

/// What a flow would do with an event, computed without writing anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// Whether the trigger (types and filter) accepts the event.
    pub matched: bool,
    /// The operations, in step order; record ids of earlier steps appear as placeholders
    /// such as `{{steps.contact.id}}`.
    pub operations: Vec<Operation>,
    /// Steps left out because their `when` was false.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Why nothing would run, when `matched` is false or every step was skipped: the event's
    /// type is not one the trigger listens to, or the trigger's filter is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a flow could not be evaluated against an event. The message names where
/// (`steps[1].fields.amount: …`), so it can be shown to the tenant as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// A step could not be rendered: a template failed, or the result cannot be executed
    /// (an upsert without any match value, an update with nothing to find the record by).
    #[error("{}: {message}", step_path(.step, *.index, .field))]
    Step {
        /// The step id.
        step: String,
        /// The step's position in the flow, when the caller knows it.
        index: Option<usize>,
        /// The path inside the step, e.g. `fields.amount`.
        field: String,
        /// What went wrong.
        message: String,
    },
    /// The trigger filter expression failed.
    #[error("trigger.filter: {message}")]
    Trigger {
        /// What went wrong.
        message: String,
    },
}

impl FlowError {
    /// The same error, naming the step by its position (`steps[1]…`) rather than by id.
    pub fn at_index(self, position: usize) -> Self {
        match self {
            FlowError::Step {
                step,
                field,
                message,
                ..
            } => FlowError::Step {
                step,
                index: Some(position),
                field,
                message,
            },
            other => other,
        }
    }

    /// Where the error is, e.g. `steps[1].fields.amount` or `trigger.filter`.
    pub fn path(&self) -> String {
        match self {
            FlowError::Step {
                step, index, field, ..
            } => step_path(step, *index, field),
            FlowError::Trigger { .. } => "trigger.filter".into(),
        }
    }

    /// What went wrong, without the path.
    pub fn message(&self) -> &str {
        match self {
            FlowError::Step { message, .. } | FlowError::Trigger { message } => message,
        }
    }
}

fn step_path(step: &str, index: Option<usize>, field: &str) -> String {
    let head = match index {
        Some(i) => format!("steps[{i}]"),
        None => format!("steps.{step}"),
    };
    if field.is_empty() {
        head
    } else {
        format!("{head}.{field}")
    }
}

/// The JSON type name of a value, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
