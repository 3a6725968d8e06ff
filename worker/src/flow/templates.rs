//! The built-in flow recipes served by `GET /v1/flow-templates`: one per pipeline of the seeds,
//! written with each vendor's own object and field names. A recipe's `flow` has no
//! `connection_id`; [`FlowTemplate::instantiate`] adds the tenant's, and the result passes
//! [`validate`](super::validate). Data only: nothing here talks to a CRM.

use serde::Serialize;
use serde_json::{Value, json};
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

/// Every built-in recipe, in a stable order.
pub fn builtin() -> Vec<FlowTemplate> {
    vec![
        zoho_contact_from_charge(),
        hubspot_contact_and_deal(),
        salesforce_opportunity_closed_won(),
        salesforce_subscription_status(),
        salesforce_payment_failed_task(),
        sandbox_lead_from_checkout(),
        onboarding_from_checkout(),
        zoho_lead_from_checkout(),
    ]
}

fn recipe(
    id: &str,
    name: &str,
    description: &str,
    provider: &str,
    events: &[&str],
    filter: Option<&str>,
    steps: Value,
) -> FlowTemplate {
    let mut trigger = json!({ "events": events });
    if let Some(filter) = filter {
        trigger["filter"] = Value::String(filter.to_owned());
    }
    FlowTemplate {
        id: id.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        provider: provider.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        flow: json!({
            "name": name,
            "enabled": true,
            "trigger": trigger,
            "steps": steps,
        }),
    }
}

/// The charge's e-mail: the billing details, else the receipt address.
const CHARGE_EMAIL: &str = "object.billing_details.email or object.receipt_email";

/// Seed 000: every paid charge becomes (or updates) a Zoho CRM contact, found by e-mail.
fn zoho_contact_from_charge() -> FlowTemplate {
    recipe(
        "zoho-contact-from-charge",
        "Stripe charges to Zoho CRM contacts",
        "On charge.succeeded, upserts a Zoho CRM contact by Email (Zoho's duplicate check) with \
         the payer's name and phone, and records the charge id and amount. Last_Name is \
         mandatory in Zoho: a one-word name is used whole, and a nameless payer gets the e-mail. \
         Create the custom fields Stripe_Transaction_ID (single line) and Total_Amount \
         (currency or decimal) in the Contacts module, or drop them from the flow. Charges \
         without any e-mail are skipped.",
        "zoho",
        &["charge.succeeded"],
        None,
        json!([{
            "id": "contact",
            "action": "upsert",
            "object": "Contacts",
            "when": CHARGE_EMAIL,
            "match": { "Email": format!("{{{{ ({CHARGE_EMAIL}) | lower }}}}") },
            "fields": {
                "First_Name": "{{ object.billing_details.name | first_name }}",
                "Last_Name": format!(
                    "{{{{ object.billing_details.name | last_name or object.billing_details.name or ({CHARGE_EMAIL}) }}}}"
                ),
                "Phone": "{{ object.billing_details.phone }}",
                "Stripe_Transaction_ID": "{{ object.id }}",
                "Total_Amount": "{{ object.amount | major_units(object.currency) }}"
            },
            "fallback_fields": ["Email", "First_Name", "Last_Name", "Phone"]
        }]),
    )
}

/// Seed 001: the payer as a HubSpot contact, the charge as a closed-won deal linked to it.
fn hubspot_contact_and_deal() -> FlowTemplate {
    recipe(
        "hubspot-contact-and-deal",
        "Stripe charges to HubSpot contacts and deals",
        "On charge.succeeded, upserts the HubSpot contact by email (first and last name, phone, \
         company from metadata.company, lifecycle stage from metadata.lifecycle_stage, last \
         charge amount and receipt), then upserts a closed-won deal in the default pipeline, \
         found by the charge id, named from metadata.deal_name or 'Stripe charge <id>', and \
         associates it with the contact. Create the contact properties stripe_customer_id, \
         last_charge_amount and last_charge_receipt and the unique deal property \
         stripe_charge_id; if a contact property is missing, HubSpot's 400 makes the step \
         retry with email, firstname and lastname only. Charges without an e-mail write only \
         the deal.",
        "hubspot",
        &["charge.succeeded"],
        None,
        json!([
            {
                "id": "contact",
                "action": "upsert",
                "object": "contacts",
                "when": CHARGE_EMAIL,
                "match": { "email": format!("{{{{ ({CHARGE_EMAIL}) | lower }}}}") },
                "fields": {
                    "firstname": "{{ object.billing_details.name | first_name }}",
                    "lastname": "{{ object.billing_details.name | last_name }}",
                    "phone": "{{ object.billing_details.phone or object.metadata.phone }}",
                    "company": "{{ object.metadata.company }}",
                    "lifecyclestage": "{{ object.metadata.lifecycle_stage }}",
                    "stripe_customer_id": "{{ object.customer }}",
                    "last_charge_amount": "{{ object.amount | major_units(object.currency) }}",
                    "last_charge_receipt": "{{ object.receipt_url }}"
                },
                "fallback_fields": ["email", "firstname", "lastname"]
            },
            {
                "id": "deal",
                "action": "upsert",
                "object": "deals",
                "match": { "stripe_charge_id": "{{ object.id }}" },
                "fields": {
                    "dealname": "{{ object.metadata.deal_name | default('Stripe charge ' ~ object.id) }}",
                    "dealstage": "closedwon",
                    "pipeline": "default",
                    "amount": "{{ object.amount | major_units(object.currency) }}",
                    "deal_currency_code": "{{ object.currency | upper }}",
                    "closedate": "{{ object.created | datetime }}"
                },
                "fallback_fields": ["dealname", "dealstage", "pipeline", "amount"],
                "associate": [{ "object": "contacts", "id": "{{ steps.contact.id }}" }]
            }
        ]),
    )
}

/// Seed 004: payment or new subscription closes the Salesforce opportunity as won.
fn salesforce_opportunity_closed_won() -> FlowTemplate {
    recipe(
        "salesforce-opportunity-closed-won",
        "Stripe payments to Salesforce Closed Won opportunities",
        "On payment_intent.succeeded and customer.subscription.created, updates the Salesforce \
         Opportunity named by metadata.salesforce_opportunity_id (else the one whose \
         Stripe_Customer_ID__c is the Stripe customer) to the won stage, with CloseDate, Amount \
         and, for subscriptions, the subscription id, MRR__c and ARR__c. The won stage is \
         settings.won_stage: the connection's override, or the stage Salesforce marks IsWon. \
         Create the custom fields Stripe_Customer_ID__c, Stripe_Subscription_ID__c, MRR__c and \
         ARR__c on Opportunity. Events with neither id are skipped. When the ids sit on the \
         Stripe Customer rather than on the object, add a stripe.retrieve enrichment step.",
        "salesforce",
        &["payment_intent.succeeded", "customer.subscription.created"],
        None,
        json!([{
            "id": "opportunity",
            "action": "update",
            "object": "Opportunity",
            "when": "object.metadata.salesforce_opportunity_id or object.customer",
            "record_id": "{{ object.metadata.salesforce_opportunity_id }}",
            "match": { "Stripe_Customer_ID__c": "{{ object.customer }}" },
            "fields": {
                "StageName": "{{ settings.won_stage }}",
                "CloseDate": "{{ (event.created or object.created) | date }}",
                "Amount": "{{ object | mrr if object.object == 'subscription' else (object.amount_received or object.amount) | major_units(object.currency) }}",
                "Stripe_Customer_ID__c": "{{ object.customer }}",
                "Stripe_Subscription_ID__c": "{{ object.id if object.object == 'subscription' }}",
                "MRR__c": "{{ object | mrr if object.object == 'subscription' }}",
                "ARR__c": "{{ object | arr if object.object == 'subscription' }}"
            }
        }]),
    )
}

/// Seed 004: the subscription's status mirrored on the Salesforce account, with a task
/// logging each transition.
fn salesforce_subscription_status() -> FlowTemplate {
    recipe(
        "salesforce-subscription-status",
        "Stripe subscription status to Salesforce accounts",
        "On every customer.subscription.* event, writes the subscription's status to \
         Subscription_Status__c on the Salesforce Account named by \
         metadata.salesforce_account_id (else the one whose Stripe_Customer_ID__c is the Stripe \
         customer), and logs a Task on that account when the status changed or the \
         subscription ended; cancellations, past-due and unpaid subscriptions get a \
         high-priority open task for the account team. Create the custom fields \
         Subscription_Status__c (picklist or text) and Stripe_Customer_ID__c on Account.",
        "salesforce",
        &["customer.subscription.*"],
        None,
        json!([
            {
                "id": "account",
                "action": "update",
                "object": "Account",
                "when": "object.metadata.salesforce_account_id or object.customer",
                "record_id": "{{ object.metadata.salesforce_account_id }}",
                "match": { "Stripe_Customer_ID__c": "{{ object.customer }}" },
                "fields": {
                    "Subscription_Status__c": "{{ object.status | lookup({'trialing': 'Trialing', 'active': 'Active', 'past_due': 'Past Due', 'unpaid': 'Unpaid', 'canceled': 'Canceled', 'incomplete': 'Incomplete', 'incomplete_expired': 'Incomplete Expired', 'paused': 'Paused'}, 'Unknown') }}"
                }
            },
            {
                "id": "transition",
                "action": "create",
                "object": "Task",
                "when": "(previous.status is defined and previous.status != object.status) or event.type == 'customer.subscription.deleted'",
                "fields": {
                    "WhatId": "{{ steps.account.id }}",
                    "Subject": "Stripe subscription {{ previous.status ~ ' → ' if previous.status is defined }}{{ object.status }}",
                    "Description": "Stripe subscription {{ object.id }} of customer {{ object.customer }} {{ 'changed from ' ~ previous.status ~ ' to ' ~ object.status if previous.status is defined else 'is now ' ~ object.status }} ({{ event.type }}).",
                    "Priority": "{{ 'High' if object.status in ['canceled', 'past_due', 'unpaid'] else 'Normal' }}",
                    "Status": "{{ 'Not Started' if object.status in ['canceled', 'past_due', 'unpaid'] else 'Completed' }}",
                    "ActivityDate": "{{ (event.created or now) | date }}"
                }
            }
        ]),
    )
}

/// Seed 004: a failed invoice payment becomes a high-priority Salesforce task.
fn salesforce_payment_failed_task() -> FlowTemplate {
    recipe(
        "salesforce-payment-failed-task",
        "Stripe failed payments to Salesforce tasks",
        "On invoice.payment_failed, creates a high-priority Salesforce Task, \"Payment Failed - \
         Immediate Action Required\", due the next day, with the amount due, the decline reason, \
         the number of attempts, Stripe's next retry date and the subscription, linked (WhatId) \
         to the Account in metadata.salesforce_account_id of the invoice, its subscription or its \
         Customer. Invoices do not carry last_payment_error, so stripe.retrieve steps fetch the \
         invoice's PaymentIntent (with its latest charge) for the reason, and the Customer when \
         the invoice names no account; both need the Stripe account's secret key.",
        "salesforce",
        &["invoice.payment_failed"],
        None,
        json!([
            {
                "id": "payment",
                "action": "stripe.retrieve",
                "object": "payment_intent",
                "when": "object.payment_intent",
                "record_id": "{{ object.payment_intent }}",
                "expand": ["latest_charge"]
            },
            {
                "id": "customer",
                "action": "stripe.retrieve",
                "object": "customer",
                "when": format!("object.customer and not ({INVOICE_ACCOUNT})"),
                "record_id": "{{ object.customer }}"
            },
            {
                "id": "task",
                "action": "create",
                "object": "Task",
                "fields": {
                    "WhatId": format!("{{{{ {INVOICE_ACCOUNT} or steps.customer.object.metadata.salesforce_account_id }}}}"),
                    "Subject": "Payment Failed - Immediate Action Required",
                    "Priority": "High",
                    "Status": "Not Started",
                    "ActivityDate": "{{ now | add_days(1) | date }}",
                    "Description": "Stripe invoice {{ object.number or object.id }} payment failed. Amount: {{ object.amount_due | format_amount(object.currency) }} {{ object.currency | upper }}. Reason: {{ steps.payment.object.last_payment_error.decline_code or steps.payment.object.last_payment_error.code or steps.payment.object.latest_charge.failure_code or 'not given' }}. Attempts: {{ object.attempt_count }}. Next retry: {{ object.next_payment_attempt | date if object.next_payment_attempt else 'none scheduled' }}. Subscription: {{ object.subscription or object.parent.subscription_details.subscription or 'none' }}. Customer: {{ object.customer_email or object.customer }}."
                }
            }
        ]),
    )
}

/// The Salesforce Account an invoice names, in any of the places Stripe's versions put it.
const INVOICE_ACCOUNT: &str = "object.metadata.salesforce_account_id or object.subscription_details.metadata.salesforce_account_id or object.parent.subscription_details.metadata.salesforce_account_id";

/// What the onboarding recipe's email and provisioning steps name until the tenant puts its
/// own connection and endpoint in.
pub const SMTP_PLACEHOLDER: &str = "<id of your smtp connection>";
pub const PROVISIONING_PLACEHOLDER: &str = "https://provisioning.example.com/workspaces";

/// Seed 003 end to end: check the payment and its currency, put the client in the CRM as a
/// lead, send the onboarding email with portal credentials, provision the workspace.
fn onboarding_from_checkout() -> FlowTemplate {
    recipe(
        "onboarding-from-checkout",
        "Client onboarding from Stripe Checkout",
        "On checkout.session.completed: checks the session is paid in an expected currency (USD \
         or EUR; edit the assert), upserts the client as a lead (email, name, invoicedValue from \
         amount_total, orderedService from metadata.serviceId), emails the client portal \
         credentials through an smtp connection (replace steps[2].connection_id), and calls the \
         provisioning endpoint (replace steps[3].url) with the same generated password, signed \
         if you give the step an http connection with hmac auth instead. The password is made \
         by password('portal'): the same in both steps and on every retry, and never stored.",
        "sandbox",
        &["checkout.session.completed"],
        None,
        json!([
            {
                "id": "verify",
                "action": "assert",
                "check": "object.payment_status in ['paid', 'no_payment_required'] and (object.currency | lower) in ['usd', 'eur']",
                "message": "not onboarded: payment {{ object.payment_status }} in {{ object.currency | upper }}"
            },
            {
                "id": "lead",
                "action": "upsert",
                "object": "leads",
                "match": { "email": format!("{{{{ ({CHECKOUT_EMAIL}) | lower }}}}") },
                "fields": {
                    "name": "{{ object.customer_details.name }}",
                    "invoicedValue": "{{ object.amount_total | major_units(object.currency) }}",
                    "currency": "{{ object.currency | upper }}",
                    "orderedService": "{{ object.metadata.serviceId }}",
                    "stripe_checkout_session_id": "{{ object.id }}"
                }
            },
            {
                "id": "welcome",
                "action": "email",
                "connection_id": SMTP_PLACEHOLDER,
                "fields": {
                    "to": format!("{{{{ {CHECKOUT_EMAIL} }}}}"),
                    "subject": "Welcome aboard, {{ object.customer_details.name | first_name }}: your client portal",
                    "text": "Hello {{ object.customer_details.name | first_name }},\n\nThank you for your order ({{ object.metadata.serviceId or 'your service' }}, {{ object.amount_total | format_amount(object.currency) }} {{ object.currency | upper }}).\n\nYour client portal:\n  login: {{ (object.customer_details.email or object.customer_email) | lower }}\n  password: {{ password('portal') }}\n\nPlease change the password when you first sign in.\n",
                    "html": "<p>Hello {{ object.customer_details.name | first_name }},</p><p>Thank you for your order ({{ object.metadata.serviceId or 'your service' }}, {{ object.amount_total | format_amount(object.currency) }} {{ object.currency | upper }}).</p><p>Your client portal: login <b>{{ (object.customer_details.email or object.customer_email) | lower }}</b>, password <b>{{ password('portal') }}</b>.</p><p>Please change the password when you first sign in.</p>"
                }
            },
            {
                "id": "workspace",
                "action": "http",
                "method": "POST",
                "url": PROVISIONING_PLACEHOLDER,
                "headers": { "Idempotency-Key": "{{ event.id }}" },
                "fields": {
                    "email": format!("{{{{ ({CHECKOUT_EMAIL}) | lower }}}}"),
                    "name": "{{ object.customer_details.name }}",
                    "service": "{{ object.metadata.serviceId }}",
                    "lead_id": "{{ steps.lead.id }}",
                    "portal_password": "{{ password('portal') }}",
                    "stripe_checkout_session_id": "{{ object.id }}"
                }
            }
        ]),
    )
}

/// The checkout's e-mail: the customer details, else the address given to Checkout.
const CHECKOUT_EMAIL: &str = "object.customer_details.email or object.customer_email";

/// Unpaid sessions (delayed payment methods) complete too; only paid or free ones onboard.
const CHECKOUT_PAID: &str = "object.payment_status != 'unpaid'";

/// Seed 003: a completed checkout becomes a lead in the built-in sandbox CRM.
fn sandbox_lead_from_checkout() -> FlowTemplate {
    recipe(
        "sandbox-lead-from-checkout",
        "Stripe Checkout to sandbox CRM leads",
        "On checkout.session.completed (paid or free sessions), upserts a lead in the sandbox \
         CRM by e-mail with the customer's name, the invoiced value, the ordered service from \
         metadata.serviceId and the Stripe ids: the onboarding pipeline, with no outside account \
         needed. Sessions without an e-mail are skipped.",
        "sandbox",
        &["checkout.session.completed"],
        Some(CHECKOUT_PAID),
        json!([{
            "id": "lead",
            "action": "upsert",
            "object": "leads",
            "when": CHECKOUT_EMAIL,
            "match": { "email": format!("{{{{ ({CHECKOUT_EMAIL}) | lower }}}}") },
            "fields": {
                "name": "{{ object.customer_details.name }}",
                "invoicedValue": "{{ object.amount_total | major_units(object.currency) }}",
                "currency": "{{ object.currency | upper }}",
                "orderedService": "{{ object.metadata.serviceId }}",
                "stripe_customer_id": "{{ object.customer }}",
                "stripe_checkout_session_id": "{{ object.id }}"
            }
        }]),
    )
}

/// Seed 003, for a Zoho CRM: a completed checkout becomes a Zoho lead.
fn zoho_lead_from_checkout() -> FlowTemplate {
    recipe(
        "zoho-lead-from-checkout",
        "Stripe Checkout to Zoho CRM leads",
        "On checkout.session.completed (paid or free sessions), upserts a Zoho CRM lead by Email \
         with first and last name (Last_Name is mandatory: a one-word name is used whole, else \
         the e-mail), company, phone, the invoiced value and the ordered service from metadata.serviceId. Create the custom \
         fields Invoiced_Value and Ordered_Service in the Leads module, or drop them.",
        "zoho",
        &["checkout.session.completed"],
        Some(CHECKOUT_PAID),
        json!([{
            "id": "lead",
            "action": "upsert",
            "object": "Leads",
            "when": CHECKOUT_EMAIL,
            "match": { "Email": format!("{{{{ ({CHECKOUT_EMAIL}) | lower }}}}") },
            "fields": {
                "First_Name": "{{ object.customer_details.name | first_name }}",
                "Last_Name": format!(
                    "{{{{ object.customer_details.name | last_name or object.customer_details.name or ({CHECKOUT_EMAIL}) }}}}"
                ),
                "Company": "{{ object.customer_details.business_name or object.metadata.company }}",
                "Phone": "{{ object.customer_details.phone }}",
                "Invoiced_Value": "{{ object.amount_total | major_units(object.currency) }}",
                "Ordered_Service": "{{ object.metadata.serviceId }}"
            },
            "fallback_fields": ["Email", "First_Name", "Last_Name", "Company", "Phone"]
        }]),
    )
}

#[cfg(test)]
mod tests;
