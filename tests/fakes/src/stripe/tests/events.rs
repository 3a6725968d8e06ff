//! Tests of the events list and retrieval: paging both ways, filters, retention.

use super::*;

#[tokio::test]
async fn events_page_newest_first_in_both_directions_and_filter() {
    let fake = FakeStripe::start();
    let now = Utc::now().timestamp();
    let (made, old_id) = add_events(&fake, now);
    pages_in_both_directions(&fake, &made).await;
    filters_and_retrieval(&fake, &made, now, &old_id).await;

    // Every request carried the pinned version.
    assert!(
        fake.stripe_versions()
            .iter()
            .all(|v| v.as_deref() == Some(API_VERSION))
    );
    fake.stop().await;
}

/// 25 events, one a second, the newest 76 seconds ago, every third undelivered; and one older
/// than 30 days. Returns the 25 ids, oldest first, and the old event's id.
fn add_events(fake: &FakeStripe, now: i64) -> (Vec<String>, String) {
    let mut made = Vec::new();
    for i in 0..25 {
        let kind = if i % 2 == 0 {
            "customer.created"
        } else {
            "invoice.paid"
        };
        let event = FakeStripe::event(
            kind,
            json!({"id": format!("obj_{i}"), "object": "customer"}),
            now - 100 + i,
        );
        made.push(fake.add_event(event, i % 3 != 0));
    }
    // Older than 30 days: never listed.
    let old = FakeStripe::event(
        "customer.created",
        json!({"object": "customer"}),
        now - 31 * 86_400,
    );
    let old_id = fake.add_event(old, true);
    (made, old_id)
}

/// Pages newest first, forwards and backwards; the default limit; bad limits and cursors.
async fn pages_in_both_directions(fake: &FakeStripe, made: &[String]) {
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();

    let page1 = get(fake, "/v1/events?limit=10").await;
    assert_eq!(page1.status, 200);
    assert_eq!(page1.body["object"], "list");
    assert_eq!(page1.body["url"], "/v1/events");
    assert_eq!(page1.body["has_more"], true);
    assert_eq!(ids(&page1), newest_first[..10]);
    let page2 = get(
        fake,
        &format!("/v1/events?limit=10&starting_after={}", newest_first[9]),
    )
    .await;
    assert_eq!(ids(&page2), newest_first[10..20]);
    assert_eq!(page2.body["has_more"], true);
    let page3 = get(
        fake,
        &format!("/v1/events?limit=10&starting_after={}", newest_first[19]),
    )
    .await;
    assert_eq!(ids(&page3), newest_first[20..]);
    assert_eq!(
        page3.body["has_more"], false,
        "the 31-day-old event is not listed"
    );

    // Backwards: ending_before gives the newer items next to the cursor.
    let back = get(
        fake,
        &format!("/v1/events?limit=10&ending_before={}", newest_first[20]),
    )
    .await;
    assert_eq!(ids(&back), newest_first[10..20]);
    assert_eq!(back.body["has_more"], true);
    let back = get(
        fake,
        &format!("/v1/events?limit=10&ending_before={}", newest_first[10]),
    )
    .await;
    assert_eq!(ids(&back), newest_first[..10]);
    assert_eq!(back.body["has_more"], false);

    // Default limit 10; bad limits and cursors refused.
    assert_eq!(ids(&get(fake, "/v1/events").await).len(), 10);
    let bad = get(fake, "/v1/events?limit=101").await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].clone()),
        (400, json!("limit"))
    );
    let bad = get(
        fake,
        &format!(
            "/v1/events?starting_after={}&ending_before={}",
            made[0], made[1]
        ),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        get(fake, "/v1/events?starting_after=evt_nope").await.status,
        400
    );
}

/// The `created`, `delivery_success`, `type` and `types[]` filters, and retrieval by id.
async fn filters_and_retrieval(fake: &FakeStripe, made: &[String], now: i64, old_id: &str) {
    // created range: [now-90, now-80) holds events 10..=19.
    let range = get(
        fake,
        &format!(
            "/v1/events?limit=100&created[gte]={}&created[lt]={}",
            now - 90,
            now - 80
        ),
    )
    .await;
    let expected: Vec<String> = made[10..20].iter().rev().cloned().collect();
    assert_eq!(ids(&range), expected);
    let range = get(
        fake,
        &format!(
            "/v1/events?limit=100&created[gt]={}&created[lte]={}",
            now - 90,
            now - 80
        ),
    )
    .await;
    let expected: Vec<String> = made[11..21].iter().rev().cloned().collect();
    assert_eq!(ids(&range), expected);

    // delivery_success.
    let failed = get(fake, "/v1/events?limit=100&delivery_success=false").await;
    let expected: Vec<String> = made
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(ids(&failed), expected);
    let delivered = get(fake, "/v1/events?limit=100&delivery_success=true").await;
    assert_eq!(ids(&delivered).len(), 25 - expected.len());

    // type (with a wildcard) and types[].
    let invoices = get(fake, "/v1/events?limit=100&type=invoice.*").await;
    assert_eq!(ids(&invoices).len(), 12);
    let both = get(
        fake,
        "/v1/events?limit=100&types[]=invoice.paid&types[]=customer.created",
    )
    .await;
    assert_eq!(ids(&both).len(), 25);
    assert_eq!(get(fake, "/v1/events?type=a&types[]=b").await.status, 400);

    // Retrieve by id; the old one is gone.
    let one = get(fake, &format!("/v1/events/{}", made[3])).await;
    assert_eq!((one.status, one.body["id"].clone()), (200, json!(made[3])));
    assert_eq!(one.body["api_version"], API_VERSION);
    assert_eq!(get(fake, &format!("/v1/events/{old_id}")).await.status, 404);
}
