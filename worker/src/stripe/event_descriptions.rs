//! What each Stripe event type means, in a line a sales-ops or finance reader understands: the
//! types the recipes and most flows use are described by hand (from Stripe's event reference);
//! every other type gets a line made from its name (`treasury.inbound_transfer.failed` → "An
//! inbound transfer (treasury) failed").

/// Hand-written lines for the types flows use most.
const KNOWN: &[(&str, &str)] = &[
    (
        "charge.succeeded",
        "A payment was taken: a charge succeeded.",
    ),
    (
        "charge.failed",
        "A payment attempt failed (the card was declined, for example).",
    ),
    (
        "charge.refunded",
        "A charge was refunded, in full or in part.",
    ),
    ("charge.captured", "An authorised charge was captured."),
    (
        "charge.dispute.created",
        "A customer disputed a charge with their bank (a chargeback).",
    ),
    (
        "charge.dispute.closed",
        "A dispute ended: won, lost or accepted.",
    ),
    (
        "checkout.session.completed",
        "A customer finished a Stripe Checkout page.",
    ),
    (
        "checkout.session.expired",
        "A Checkout page expired before the customer finished it.",
    ),
    ("customer.created", "A new customer was created."),
    (
        "customer.updated",
        "A customer's details (email, name, address, metadata…) changed.",
    ),
    ("customer.deleted", "A customer was deleted."),
    (
        "customer.subscription.created",
        "A customer subscribed to a plan.",
    ),
    (
        "customer.subscription.updated",
        "A subscription changed: plan, quantity, status or renewal.",
    ),
    (
        "customer.subscription.deleted",
        "A subscription ended (cancelled, or unpaid until it lapsed).",
    ),
    (
        "customer.subscription.trial_will_end",
        "A subscription's trial ends in three days.",
    ),
    ("customer.subscription.paused", "A subscription was paused."),
    (
        "customer.subscription.resumed",
        "A paused subscription was resumed.",
    ),
    (
        "invoice.created",
        "An invoice was created (a subscription renewed, for example).",
    ),
    (
        "invoice.finalized",
        "An invoice was finalised and can be paid.",
    ),
    ("invoice.paid", "An invoice was paid, by any means."),
    (
        "invoice.payment_succeeded",
        "An invoice's payment attempt succeeded.",
    ),
    (
        "invoice.payment_failed",
        "An invoice's payment attempt failed; Stripe may retry it.",
    ),
    (
        "invoice.upcoming",
        "A subscription will invoice soon (days ahead, as set in Stripe).",
    ),
    ("invoice.voided", "An invoice was voided."),
    (
        "invoice.marked_uncollectible",
        "An invoice was marked uncollectible.",
    ),
    ("payment_intent.created", "A payment was started."),
    ("payment_intent.succeeded", "A payment completed."),
    ("payment_intent.payment_failed", "A payment attempt failed."),
    ("payment_intent.canceled", "A payment was cancelled."),
    (
        "payment_intent.requires_action",
        "A payment waits for the customer (3-D Secure, for example).",
    ),
    ("payout.paid", "A payout reached the bank account."),
    ("payout.failed", "A payout to the bank account failed."),
    (
        "payout.created",
        "A payout to the bank account was created.",
    ),
    ("refund.created", "A refund was created."),
    (
        "refund.updated",
        "A refund changed (it succeeded or failed, for example).",
    ),
    ("price.created", "A price was created."),
    ("product.created", "A product was created."),
    ("product.updated", "A product changed."),
];

/// Object names whose words read better said differently.
const NOUNS: &[(&str, &str)] = &[
    ("checkout.session", "Checkout session"),
    ("customer.subscription", "subscription"),
    ("customer.source", "customer's payment source"),
    ("customer.discount", "customer's discount"),
    ("customer.tax_id", "customer's tax id"),
    ("charge.dispute", "dispute"),
    ("charge.refund", "charge's refund"),
    (
        "billing_portal.configuration",
        "customer portal configuration",
    ),
    ("billing_portal.session", "customer portal session"),
];

/// A line describing the Stripe event type `name`.
pub fn describe(name: &str) -> String {
    if let Some((_, line)) = KNOWN.iter().find(|(known, _)| *known == name) {
        return (*line).to_string();
    }
    let Some((object, happened)) = name.rsplit_once('.') else {
        return format!("Stripe's {name} event.");
    };
    let noun = NOUNS
        .iter()
        .find(|(key, _)| *key == object)
        .map(|(_, noun)| (*noun).to_string())
        .unwrap_or_else(|| match object.split_once('.') {
            // `treasury.inbound_transfer` → "inbound transfer (treasury)".
            Some((area, rest)) => format!("{} ({})", words(rest), words(area)),
            None => words(object),
        });
    let verb = match happened {
        "created" | "updated" | "deleted" | "closed" | "canceled" | "voided" | "finalized"
        | "posted" | "returned" | "completed" | "expired" | "captured" | "refunded" | "paid"
        | "reversed" | "attached" | "detached" | "activated" | "deactivated" => {
            format!("was {}", words(happened))
        }
        other => words(other),
    };
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) {
        "An"
    } else {
        "A"
    };
    format!("{article} {noun} {verb}.")
}

fn words(name: &str) -> String {
    name.replace(['_', '.'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_types_read_as_written_and_others_from_their_name() {
        assert_eq!(
            describe("invoice.payment_failed"),
            "An invoice's payment attempt failed; Stripe may retry it."
        );
        assert_eq!(
            describe("treasury.inbound_transfer.failed"),
            "An inbound transfer (treasury) failed."
        );
        assert_eq!(describe("coupon.created"), "A coupon was created.");
        assert_eq!(
            describe("checkout.session.async_payment_failed"),
            "A Checkout session async payment failed."
        );
        assert_eq!(describe("ping"), "Stripe's ping event.");
    }

    #[test]
    fn every_hand_written_line_names_a_real_type() {
        for (name, _) in KNOWN {
            assert!(
                crate::stripe::event_types::EVENT_TYPES.contains(name),
                "{name} is not one of Stripe's event types"
            );
        }
    }
}
