//! CRM-side webhooks: HubSpot's signed batches, Zoho's notifications, Salesforce's Outbound
//! Messages and Flow callouts, each to its connection's own URL (`inbound_url`). Each is
//! verified the vendor's way, split into events and stored in the inbox — beside Stripe's,
//! deduplicated per connection — before the answer; the worker runs the flows whose trigger
//! names the CRM.

use entity::connections;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use serde_json::{Map, Value};
use tributary_worker::inbound::{self, CrmEvent};
use tributary_worker::inbox::{StoreError, Stored};
use tributary_worker::secrets::expose;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// What a CRM webhook stored.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CrmIngressOut {
    /// Events stored now.
    pub received: usize,
    /// Events stored before (the vendor sent them again); not processed again.
    pub duplicates: usize,
    /// Tributary's ids of the events, stored now or before, in the order sent.
    pub event_ids: Vec<String>,
    /// Items that were not events Tributary can keep, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// The connection of `provider` whose inbound URL has `token`.
async fn connection_of(
    state: &AppState,
    provider: &str,
    token: &str,
) -> Result<connections::Model, ApiError> {
    if token.is_empty() || token.len() > 64 {
        return Err(ApiError::NotFound);
    }
    let connection = connections::Entity::find()
        .filter(connections::Column::InboundToken.eq(token))
        .filter(connections::Column::Provider.eq(provider))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    if connection.status == "disabled" {
        return Err(ApiError::NotFound);
    }
    Ok(connection)
}

fn settings_of(connection: &connections::Model) -> Map<String, Value> {
    serde_json::from_str(&connection.settings).unwrap_or_default()
}

fn setting<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// Most events one CRM webhook may carry (HubSpot sends at most 100, Salesforce 100).
pub const MAX_EVENTS: usize = 1_000;

/// Over the connection's share of `TRIBUTARY_WEBHOOK_RATE` (each event counts): 429, nothing
/// stored; the vendor retries.
fn take_rate(
    state: &AppState,
    connection: &connections::Model,
    events: usize,
) -> Result<(), ApiError> {
    if events > MAX_EVENTS {
        return Err(ApiError::BadRequest(format!(
            "{events} events in one request; at most {MAX_EVENTS} are taken"
        )));
    }
    state.webhook_rate.take_n(&connection.id, events).map_err(|seconds| {
        tracing::warn!(connection_id = %connection.id, retry_after = seconds, "CRM webhook rate exceeded (TRIBUTARY_WEBHOOK_RATE)");
        ApiError::TooManyRequests(seconds)
    })
}

/// Stores each event (those arriving together share a commit) and says what was stored.
async fn store_all(
    state: &AppState,
    connection: &connections::Model,
    events: Vec<CrmEvent>,
    skipped: Vec<String>,
) -> Result<CrmIngressOut, ApiError> {
    let rows: Vec<_> = events
        .iter()
        .map(|event| inbound::new_row(&connection.tenant_id, &connection.id, event))
        .collect();
    let results =
        futures::future::join_all(rows.into_iter().map(|row| state.inbox.store(row))).await;
    let mut out = CrmIngressOut {
        skipped,
        ..Default::default()
    };
    for result in results {
        match result {
            Ok(Stored::New(id)) => {
                out.received += 1;
                out.event_ids.push(id);
            }
            Ok(Stored::Duplicate(id)) => {
                out.duplicates += 1;
                out.event_ids.push(id);
            }
            // Some may be stored already: the vendor's retry finds them as duplicates.
            Err(StoreError::Busy) | Err(StoreError::Backlogged(_)) => {
                return Err(ApiError::Unavailable(
                    "the inbox is full; not every event was stored, send the batch again shortly"
                        .into(),
                ));
            }
            Err(StoreError::Failed(e)) => return Err(ApiError::Internal(e)),
        }
    }
    tracing::info!(connection_id = %connection.id, provider = %connection.provider,
        received = out.received, duplicates = out.duplicates, skipped = out.skipped.len(), "CRM webhook received");
    Ok(out)
}

/// HubSpot's app webhooks: `X-HubSpot-Signature-v3` over method, the URL HubSpot called
/// (this install's public URL, the path and query), body and timestamp, with the app's client
/// secret (the connection's, else the operator's HubSpot app). Property changes get the
/// property's previous value from the last one seen. A connection whose HubSpot account is
/// known (`vendor_account`) keeps that account's events only: another portal's are skipped
/// and named.
pub async fn hubspot(
    state: &AppState,
    token: &str,
    path_and_query: &str,
    headers: &actix_web::http::header::HeaderMap,
    body: &[u8],
) -> Result<CrmIngressOut, ApiError> {
    let connection = connection_of(state, "hubspot", token).await?;
    let mut secrets: Vec<String> = Vec::new();
    if let Ok(credentials) =
        tributary_worker::crm::session::open_credentials(&state.keyring, &connection)
        && let Some(secret) = credentials.client_secret()
    {
        secrets.push(secret.to_string());
    }
    if let Some(app) = operator_hubspot_app(state) {
        secrets.push(expose(&app.client_secret).to_string());
    }
    if secrets.is_empty() {
        return Err(ApiError::Unauthorized(
            "this connection has no HubSpot client secret to verify webhooks with; add auth.client_secret".into(),
        ));
    }
    verify_hubspot(state, path_and_query, headers, body, &secrets)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let settings = settings_of(&connection);
    let mut batch = inbound::hubspot::parse_batch(body, setting(&settings, "app_id"))
        .map_err(ApiError::BadRequest)?;
    if let Some(account) = &connection.vendor_account {
        let (own, other): (Vec<_>, Vec<_>) = batch
            .events
            .into_iter()
            .partition(|e| inbound::hubspot::portal_of(e).as_ref() == Some(account));
        batch.events = own;
        batch.skipped.extend(other.iter().map(|e| {
            format!(
                "event {}: from portal {}, not this connection's ({account})",
                e.key,
                inbound::hubspot::portal_of(e).unwrap_or_default()
            )
        }));
    }
    accept(state, &connection, (batch.events, batch.skipped), "id").await
}

/// The operator's HubSpot app, if one is configured.
fn operator_hubspot_app(state: &AppState) -> Option<&tributary_worker::settings::OAuthApp> {
    state
        .settings
        .oauth_apps
        .iter()
        .find(|a| a.provider == "hubspot")
}

/// Checks HubSpot's v3 signature of a request to `path_and_query` under any of `secrets`.
fn verify_hubspot(
    state: &AppState,
    path_and_query: &str,
    headers: &actix_web::http::header::HeaderMap,
    body: &[u8],
    secrets: &[String],
) -> Result<(), inbound::hubspot::SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let uri = format!("{}{path_and_query}", state.settings.public_url);
    let plain: Vec<&str> = secrets.iter().map(String::as_str).collect();
    inbound::hubspot::verify_v3(
        "POST",
        &uri,
        body,
        header("x-hubspot-request-timestamp"),
        header("x-hubspot-signature-v3"),
        &plain,
        chrono::Utc::now().timestamp_millis(),
    )
}

/// Takes a connection's events in: within its webhook rate, with their previous values
/// (`skip` is the field of a record that is not its own, see [`previous_values`]), stored, and
/// the records' versions remembered.
async fn accept(
    state: &AppState,
    connection: &connections::Model,
    (mut events, skipped): (Vec<CrmEvent>, Vec<String>),
    skip: &str,
) -> Result<CrmIngressOut, ApiError> {
    take_rate(state, connection, events.len())?;
    let versions = previous_values(state, connection, &mut events, skip).await?;
    let out = store_all(state, connection, events, skipped).await?;
    remember(state, connection, versions).await?;
    Ok(out)
}

/// The operator's shared HubSpot app's webhooks: one target URL for every portal that
/// installed the app. Verified with the operator app's client secret only; each event goes
/// to the connections installed through that app in the portal it names (`portalId` equal to
/// the connection's `vendor_account`, which HubSpot itself said when the connection was
/// authorized). Events of a portal no connection here is installed in are skipped and named.
/// A connection over its webhook rate makes the whole request 429: HubSpot sends it again,
/// and the events stored meanwhile are found as duplicates.
pub async fn hubspot_app(
    state: &AppState,
    path_and_query: &str,
    headers: &actix_web::http::header::HeaderMap,
    body: &[u8],
) -> Result<CrmIngressOut, ApiError> {
    let app = operator_hubspot_app(state);
    let secrets: Vec<String> = app
        .iter()
        .map(|a| expose(&a.client_secret).to_string())
        .collect();
    // HubSpot's headers are checked first (401); signed, but with no HubSpot app on this
    // server to check it with, the request finds nothing here (404).
    let app = match (
        verify_hubspot(state, path_and_query, headers, body, &secrets),
        app,
    ) {
        (Ok(()), Some(app)) => app,
        (Err(inbound::hubspot::SignatureError::NoSecret), _) | (Ok(()), None) => {
            return Err(ApiError::NotFound);
        }
        (Err(e), _) => return Err(ApiError::Unauthorized(e.to_string())),
    };
    let batch = inbound::hubspot::parse_batch(body, None).map_err(ApiError::BadRequest)?;
    let mut out = CrmIngressOut {
        skipped: batch.skipped,
        ..Default::default()
    };
    for (portal, events) in inbound::hubspot::by_portal(batch.events) {
        let installed = match &portal {
            Some(portal) => installed_in(state, app, portal).await?,
            None => Vec::new(),
        };
        if installed.is_empty() {
            out.skipped.push(format!(
                "{} event(s) of portal {}: no connection here is installed in it through this server's HubSpot app",
                events.len(),
                portal.as_deref().unwrap_or("(none named)")
            ));
            continue;
        }
        for connection in installed {
            let part = accept(state, &connection, (events.clone(), Vec::new()), "id").await?;
            out.received += part.received;
            out.duplicates += part.duplicates;
            out.event_ids.extend(part.event_ids);
        }
    }
    Ok(out)
}

/// The HubSpot connections installed through the operator's `app` in `portal`: the portal
/// HubSpot named for their token, and the app's client id in their credentials. A portal id
/// a tenant typed (`portal_id`) never counts.
async fn installed_in(
    state: &AppState,
    app: &tributary_worker::settings::OAuthApp,
    portal: &str,
) -> Result<Vec<connections::Model>, ApiError> {
    let rows = connections::Entity::find()
        .filter(connections::Column::Provider.eq("hubspot"))
        .filter(connections::Column::VendorAccount.eq(portal))
        .filter(connections::Column::Status.ne("disabled"))
        .order_by_asc(connections::Column::Id)
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|c| {
            matches!(
                tributary_worker::crm::session::open_credentials(&state.keyring, c),
                Ok(tributary_worker::crm::config::Credentials::RefreshToken { client_id, .. })
                    if client_id == app.client_id
            )
        })
        .collect())
}

/// Zoho's notification callbacks, verified by the channel's token (Zoho signs nothing). Each
/// notified record becomes an event; the worker re-reads the record before running flows.
pub async fn zoho(state: &AppState, token: &str, body: &[u8]) -> Result<CrmIngressOut, ApiError> {
    let connection = connection_of(state, "zoho", token).await?;
    let expected = inbound::zoho_channel_token(token);
    let events = inbound::zoho::parse_notification(body, &expected).map_err(|e| match e {
        inbound::zoho::NotificationError::WrongToken => ApiError::Unauthorized(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    take_rate(state, &connection, events.len())?;
    store_all(state, &connection, events, Vec::new()).await
}

/// Salesforce's Outbound Messages (`text/xml`) and Flow HTTP callouts (JSON). An Outbound
/// Message must come from the org named in the connection's `organization_id` setting.
pub async fn salesforce(
    state: &AppState,
    token: &str,
    xml: bool,
    body: &[u8],
) -> Result<CrmIngressOut, ApiError> {
    let connection = connection_of(state, "salesforce", token).await?;
    let settings = settings_of(&connection);
    let user = setting(&settings, "integration_user_id");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let events = if xml {
        let message =
            inbound::outbound_message::parse(body, user, now_ms).map_err(ApiError::BadRequest)?;
        let Some(organization) = setting(&settings, "organization_id") else {
            return Err(ApiError::Forbidden(
                "set the connection's organization_id setting to the org's id to accept its Outbound Messages".into(),
            ));
        };
        // Salesforce shows 15- and 18-character forms of one id; the first 15 are the id.
        let same = |a: &str, b: &str| a.get(..15).is_some() && a.get(..15) == b.get(..15);
        if !same(&message.organization_id, organization) {
            return Err(ApiError::Forbidden(format!(
                "the message comes from org {}, not from this connection's organization_id",
                message.organization_id
            )));
        }
        message.events
    } else {
        inbound::outbound_message::parse_callout(body, user, now_ms)
            .map_err(ApiError::BadRequest)?
    };
    accept(state, &connection, (events, Vec::new()), "attributes").await
}

/// A record's version as an event leaves it: (object, record id, fields, stamp, the version
/// before).
type Seen = (
    String,
    String,
    Map<String, Value>,
    String,
    Option<Map<String, Value>>,
);

/// Fills each event's `previous` from the last version seen of its record (earlier events of
/// the same request count), without storing anything yet: the versions are remembered only
/// once the events are stored, so a request the vendor must send again still finds the old
/// values. `skip` is a field that is not the record's own (`id`, `attributes`).
async fn previous_values(
    state: &AppState,
    connection: &connections::Model,
    events: &mut [CrmEvent],
    skip: &str,
) -> Result<Vec<Seen>, ApiError> {
    let mut latest: std::collections::HashMap<(String, String), Map<String, Value>> =
        Default::default();
    let mut seen = Vec::with_capacity(events.len());
    for event in events.iter_mut() {
        let mut fields = event.record.clone();
        fields.remove(skip);
        if fields.is_empty() {
            continue;
        }
        let key = (event.object.clone(), event.record_id.clone());
        let before = match latest.get(&key) {
            Some(fields) => Some(fields.clone()),
            None => inbound::versions::last_seen(
                &state.db,
                &connection.id,
                &event.object,
                &event.record_id,
            )
            .await
            .map_err(ApiError::Internal)?
            .map(|v| v.fields),
        };
        event.previous = inbound::versions::previous_values(before.as_ref(), &fields);
        let mut now = before.clone().unwrap_or_default();
        now.extend(fields.clone());
        latest.insert(key, now);
        let stamp = event.occurred_at_ms.to_string();
        seen.push((
            event.object.clone(),
            event.record_id.clone(),
            fields,
            stamp,
            before,
        ));
    }
    Ok(seen)
}

/// Remembers the versions the stored events left their records in (merged onto the last).
async fn remember(
    state: &AppState,
    connection: &connections::Model,
    versions: Vec<Seen>,
) -> Result<(), ApiError> {
    for (object, record_id, fields, stamp, before) in versions {
        inbound::versions::remember(
            &state.db,
            &connection.tenant_id,
            &connection.id,
            &object,
            &record_id,
            before.as_ref(),
            &fields,
            &stamp,
            true,
        )
        .await
        .map_err(ApiError::Internal)?;
    }
    Ok(())
}
