//! The built-in flow recipes served by `GET /v1/flow-templates`: one per pipeline of the seeds,
//! written with each vendor's own object and field names, kept as data in
//! `worker/src/flow/recipes/*.yaml` and compiled in. A recipe's `flow` has no
//! `connection_id`; [`FlowTemplate::instantiate`] adds the tenant's, and the result passes
//! [`validate`](super::validate). Data only: nothing here talks to a CRM.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Trigger;
use utoipa::ToSchema;

/// A ready-made flow for one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FlowTemplate {
    /// Stable id, e.g. `hubspot-contact-and-deal`.
    pub id: String,
    /// Short title.
    pub name: String,
    /// What it does, and what the tenant must set up in the CRM (custom fields, settings).
    pub description: String,
    /// The connection provider it is written for: `sandbox`, `hubspot`, `salesforce`, `zoho`.
    #[schema(value_type = crate::schema::Provider)]
    pub provider: String,
    /// The Stripe event types (or patterns) it reacts to, to subscribe the webhook to.
    pub events: Vec<String>,
    /// The flow, without `connection_id`.
    #[schema(value_type = FlowRecipe)]
    pub flow: Value,
}

/// The schema of a recipe's flow: a [`FlowSpec`](super::FlowSpec) whose `connection_id` is
/// left to the tenant.
pub struct FlowRecipe;

impl utoipa::PartialSchema for FlowRecipe {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{RefOr, schema::Schema};
        let mut schema = <super::FlowSpec as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.retain(|name| name != "connection_id");
            object.description = Some(
                "A flow as `POST /v1/flows` takes it, without `connection_id`: add yours.".into(),
            );
        }
        schema
    }
}

impl ToSchema for FlowRecipe {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <super::FlowSpec as ToSchema>::schemas(schemas);
    }
}

impl FlowTemplate {
    /// The recipe's flow with the tenant's connection, ready for `POST /v1/flows`.
    pub fn instantiate(&self, connection_id: &str) -> Value {
        let mut flow = self.flow.clone();
        if let Value::Object(map) = &mut flow {
            map.insert(
                "connection_id".into(),
                Value::String(connection_id.to_owned()),
            );
        }
        flow
    }
}

/// The recipes, as data (`worker/src/flow/recipes/<id>.yaml`), in the order they are served.
/// Each holds `id`, `name`, `provider`, `description`, and the flow's `trigger` and `steps`.
const RECIPES: &[&str] = &[
    include_str!("recipes/zoho-contact-from-charge.yaml"),
    include_str!("recipes/hubspot-contact-and-deal.yaml"),
    include_str!("recipes/salesforce-opportunity-closed-won.yaml"),
    include_str!("recipes/salesforce-subscription-status.yaml"),
    include_str!("recipes/salesforce-payment-failed-task.yaml"),
    include_str!("recipes/sandbox-lead-from-checkout.yaml"),
    include_str!("recipes/onboarding-from-checkout.yaml"),
    include_str!("recipes/zoho-lead-from-checkout.yaml"),
    include_str!("recipes/salesforce-closed-won-to-stripe.yaml"),
    include_str!("recipes/salesforce-payout-reconciliation.yaml"),
    include_str!("recipes/salesforce-payment-record.yaml"),
    include_str!("recipes/salesforce-refunds-and-disputes.yaml"),
    include_str!("recipes/salesforce-failed-payments-and-cancellations.yaml"),
    include_str!("recipes/hubspot-payment-intent-contact.yaml"),
    include_str!("recipes/hubspot-deal-won-to-stripe.yaml"),
];

/// A recipe file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    id: String,
    name: String,
    provider: String,
    description: String,
    trigger: Trigger,
    steps: Value,
}

/// Every built-in recipe, in a stable order.
pub fn builtin() -> Vec<FlowTemplate> {
    static BUILTIN: OnceLock<Vec<FlowTemplate>> = OnceLock::new();
    BUILTIN
        .get_or_init(|| {
            RECIPES
                .iter()
                .map(|text| {
                    let recipe: Recipe = yaml_serde::from_str(text)
                        .unwrap_or_else(|e| panic!("a built-in recipe does not parse: {e}"));
                    from_recipe(recipe)
                })
                .collect()
        })
        .clone()
}

/// The template a recipe file describes: its flow is enabled and named as the recipe.
fn from_recipe(recipe: Recipe) -> FlowTemplate {
    let trigger = serde_json::to_value(&recipe.trigger).unwrap_or(Value::Null);
    FlowTemplate {
        flow: json!({
            "name": recipe.name,
            "enabled": true,
            "trigger": trigger,
            "steps": recipe.steps,
        }),
        id: recipe.id,
        name: recipe.name,
        description: recipe.description,
        provider: recipe.provider,
        events: recipe.trigger.events,
    }
}

#[cfg(test)]
mod tests;
