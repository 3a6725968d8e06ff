//! Where each record a flow wrote is seen in its vendor's own UI: the CRM's page of the record
//! (each provider says how, from its connection: Salesforce's org host, a HubSpot account's
//! `portal_id`) or Stripe's Dashboard for what a `stripe.*` step wrote.

use std::collections::HashMap;

use entity::{TenantOwned, connections, deliveries};
use sea_orm::{ColumnTrait, QueryFilter};
use serde_json::{Map, Value};
use tributary_worker::crm::providers;

use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;

/// Stripe's Dashboard path of each object a step can write or read.
const DASHBOARD: &[(&str, &str)] = &[
    ("customer", "customers"),
    ("subscription", "subscriptions"),
    ("invoice", "invoices"),
    ("price", "prices"),
    ("product", "products"),
    ("payout", "payouts"),
    ("payment_intent", "payments"),
    ("charge", "payments"),
];

/// A record in Stripe's Dashboard, in test mode unless `livemode`.
fn dashboard(object: &str, id: &str, livemode: bool) -> Option<String> {
    let (_, path) = DASHBOARD.iter().find(|(name, _)| *name == object)?;
    let id = providers::path_segment(id)?;
    let mode = if livemode { "" } else { "test/" };
    Some(format!("https://dashboard.stripe.com/{mode}{path}/{id}"))
}

/// The link of each delivery that wrote a record its vendor shows, by delivery id. `livemode`
/// is the event's: Stripe's Dashboard keeps test objects apart.
pub async fn for_deliveries(
    state: &AppState,
    ctx: &TenantContext,
    livemode: bool,
    list: &[deliveries::Model],
) -> Result<HashMap<String, String>, ApiError> {
    let mut ids: Vec<&str> = list
        .iter()
        .filter(|d| d.crm_record_id.is_some() && !d.action.starts_with("stripe."))
        .map(|d| d.connection_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let found = if ids.is_empty() {
        Vec::new()
    } else {
        connections::Entity::find_in_tenant(&ctx.tenant_id)
            .filter(connections::Column::Id.is_in(ids))
            .all(&state.db)
            .await?
    };
    let read =
        |text: &str| -> Map<String, Value> { serde_json::from_str(text).unwrap_or_default() };
    // Each connection's provider, settings and vendor info.
    type Known<'a> = (&'a str, Map<String, Value>, Map<String, Value>);
    let known: HashMap<&str, Known<'_>> = found
        .iter()
        .map(|c| {
            let entry = (c.provider.as_str(), read(&c.settings), read(&c.vendor_info));
            (c.id.as_str(), entry)
        })
        .collect();
    let mut links = HashMap::new();
    for d in list {
        let Some(record) = d.crm_record_id.as_deref() else {
            continue;
        };
        let link = if d.action.starts_with("stripe.") {
            dashboard(&d.object, record, livemode)
        } else {
            known
                .get(d.connection_id.as_str())
                .and_then(|(provider, settings, info)| {
                    let provider = providers::get(provider)?;
                    (provider.record_link)(settings, info, &d.object, record)
                })
        };
        if let Some(link) = link {
            links.insert(d.id.clone(), link);
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_objects_link_to_the_dashboard_in_their_mode() {
        assert_eq!(
            dashboard("customer", "cus_123", false).as_deref(),
            Some("https://dashboard.stripe.com/test/customers/cus_123")
        );
        assert_eq!(
            dashboard("subscription", "sub_9", true).as_deref(),
            Some("https://dashboard.stripe.com/subscriptions/sub_9")
        );
        assert_eq!(dashboard("billing_portal.session", "bps_1", true), None);
        assert_eq!(dashboard("customer", "cus_1/../../x", true), None);
    }
}
