//! What every step kind implements, and what it is given: the shape of a step for validation,
//! template access for rendering, and the context of one execution. A leaf of the step kinds:
//! it knows no kind, and the engine records whatever a kind's execution ends in.

use entity::connections;
use serde_json::{Map, Value};

use crate::crm::{BoxFuture, Connector, CrmError, CrmOutcome, Trail, Write};
use crate::flow::{Action, Operation, Step, ValidationError};
use crate::stripe::StripeApi;

/// One step kind: how a step of it is checked, rendered and run. The engine owns the delivery
/// (claim, lease, attempts, retries, dead letters); a kind only says what one attempt does.
pub trait StepKind: Sync {
    /// The `action` that selects this kind.
    fn action(&self) -> Action;

    /// The keys a step of this kind may have, when it refuses the others; `None` accepts every
    /// step key.
    fn keys(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Whether a step of this kind names an `object`.
    fn needs_object(&self) -> bool {
        true
    }

    /// The objects a step of this kind can name, when the kind knows them (Stripe's); `None`
    /// when they are the CRM's own (or the kind names none).
    fn objects(&self) -> Option<Vec<&'static str>> {
        None
    }

    /// What this kind needs of a step, beyond the checks every step gets (keys, types,
    /// templates); each problem's path is its field under the step (`fields.to`).
    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>);

    /// Checks and completes an operation rendered from a step: values that rendered empty
    /// where the kind cannot do without them are an error naming the field.
    fn render(
        &self,
        _step: &Step,
        _op: &mut Operation,
        _templates: &dyn Templates,
    ) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Where an attempt runs; `own_connection` says whether the step names its own connection.
    fn runs(&self, own_connection: bool) -> Runs;

    /// The connection a step that runs at an [`Runs::Endpoint`] makes for itself from its
    /// operation (the `url` of an `http` step), adjusting the operation to it.
    fn endpoint(
        &self,
        _op: &mut Operation,
        _tenant_id: &str,
        _vendor_urls: crate::settings::VendorUrls,
    ) -> Result<connections::Model, CrmError> {
        Err(CrmError::new(
            crate::crm::ErrorKind::Permanent,
            format!("{} steps do not name an endpoint", self.action()),
        ))
    }

    /// The CRM write this kind is, if it is one: the sandbox CRM performs it inside the
    /// engine's own transaction.
    fn write(&self) -> Option<Write> {
        None
    }

    /// Fixes what every attempt of one delivery must send alike (an email's Message-ID).
    fn prepare(&self, _op: &mut Operation, _delivery_id: &str, _connection: &connections::Model) {}

    /// Whether a rendered operation ends the flow where it stands (a failed `assert`); preview
    /// stops there too.
    fn stops(&self, _op: &Operation) -> bool {
        false
    }

    /// One attempt. Says too which requests it sent, for the delivery's history.
    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)>;
}

/// Where a step's attempts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Inside Tributary, on the event's data only: recorded at once, no lease.
    Here,
    /// At Stripe, with the event's account key.
    Stripe,
    /// At an address the step names itself ([`StepKind::endpoint`]), without credentials.
    Endpoint,
    /// Through a connection: the step's own, else the flow's.
    Connection(Wants),
}

/// The connection a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    /// A CRM: any provider that stores records.
    Crm,
    /// A connection of exactly this provider, and how to name one in a sentence.
    Provider {
        provider: &'static str,
        named: &'static str,
    },
}

impl Wants {
    /// Whether a connection of `provider` serves the step; `None` when it does, else what the
    /// step needs ("an smtp connection").
    pub fn refuses(self, provider: &str) -> Option<&'static str> {
        match self {
            Wants::Crm => {
                (!crate::crm::providers::stores_records(provider)).then_some("a CRM connection")
            }
            Wants::Provider {
                provider: wanted,
                named,
            } => (provider != wanted).then_some(named),
        }
    }
}

/// What one attempt ended in, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// The step did its work: the record written (or fetched, or sent) and the answer later
    /// steps read.
    Wrote(CrmOutcome),
    /// The step ends the flow for this event, for this reason; recorded as skipped.
    Stopped(String),
}

/// Everything one attempt may use.
pub struct Exec<'a> {
    pub connector: &'a Connector,
    pub stripe: &'a StripeApi,
    /// The Stripe account a `stripe.*` step calls: the step's, else the event's.
    pub account: &'a str,
    /// The id of the step's delivery (one per event, flow and step, kept across retries and
    /// replays): what `Idempotency-Key`s of writes to Stripe are derived from.
    pub delivery_id: &'a str,
    /// The connection the step runs through, when it runs through one.
    pub connection: Option<&'a connections::Model>,
    pub op: &'a Operation,
    /// The CRM record the event's object is already linked to, if any.
    pub linked: Option<&'a str>,
}

impl Exec<'_> {
    /// The connection, or the error of a kind that was given none.
    pub fn connection(&self) -> Result<&connections::Model, CrmError> {
        self.connection.ok_or_else(|| {
            CrmError::new(
                crate::crm::ErrorKind::Permanent,
                format!("{} steps run through a connection", self.op.action),
            )
        })
    }
}

/// A step as the tenant sent it, before it is known to be well-formed.
pub struct Shape<'a> {
    pub map: &'a Map<String, Value>,
}

impl Shape<'_> {
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    /// Whether the key holds text that is not blank.
    pub fn has_text(&self, key: &str) -> bool {
        self.text(key).is_some_and(|t| !t.trim().is_empty())
    }

    /// The object under `key`, if it is one.
    pub fn object(&self, key: &str) -> Option<&Map<String, Value>> {
        self.map.get(key).and_then(Value::as_object)
    }

    /// Whether the key holds an object with at least one entry.
    pub fn has_entries(&self, key: &str) -> bool {
        self.object(key).is_some_and(|m| !m.is_empty())
    }
}

/// The step's templates against the event being rendered.
pub trait Templates {
    /// Evaluates an expression; whether it is true.
    fn condition(&self, source: &str) -> Result<bool, String>;
    /// Renders a template to text; empty text, null and undefined are `None`.
    fn text(&self, source: &str) -> Result<Option<String>, String>;
}
