//! Unit tests of the fake Zoho CRM over HTTP: notification channels (validation, expiry,
//! renewal, disabling), the callbacks a change sends to a real local listener, and the
//! record list a poller reads.

use serde_json::{Value, json};

use super::*;
use crate::{Logged, RequestLog};

type Org = crate::SignedIn<FakeZoho>;

struct Answer {
    status: u16,
    body: Value,
}

impl Org {
    async fn start() -> Org {
        let fake = FakeZoho::start();
        let token_url = format!("{}/oauth/v2/token", fake.accounts_url);
        let refresh = fake.issue_refresh_token();
        Org::new(fake, &token_url, CLIENT_ID, CLIENT_SECRET, &refresh).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        self.call_since(method, path, body, None).await
    }

    async fn call_since(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        since: Option<&str>,
    ) -> Answer {
        let url = format!("{}/crm/v8{path}", self.fake.api_domain);
        let mut request = self
            .client
            .request(method, url)
            .header("authorization", format!("Zoho-oauthtoken {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(since) = since {
            request = request.header("if-modified-since", since);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn watch(&self, method: reqwest::Method, channel: Value) -> Answer {
        self.call(method, "/actions/watch", Some(json!({"watch": [channel]})))
            .await
    }
}

/// A tiny local listener that answers every callback 200 and records it.
fn listener() -> (Served, RequestLog) {
    let log = RequestLog::default();
    let served = Served::answering(log.clone(), |_, _| actix_web::HttpResponse::Ok().finish());
    (served, log)
}

async fn received(log: &RequestLog, count: usize) -> Vec<Logged> {
    for _ in 0..250 {
        if log.all().len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    log.all()
}

fn in_days(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

#[tokio::test]
async fn changes_to_watched_records_are_posted_to_the_notify_url_with_the_token() {
    let org = Org::start().await;
    let (listener, log) = listener();
    let expiry = in_days(6);
    let enabled = org
        .watch(
            reqwest::Method::POST,
            json!({"channel_id": "1000000068001", "events": ["Deals.all"],
                   "notify_url": format!("{}/zoho/notify?tenant=acme", listener.base_url),
                   "token": "acme-7f3c9e2b41d84a", "channel_expiry": expiry,
                   "return_affected_field_values": true, "notify_on_related_action": false}),
        )
        .await;
    assert_eq!(enabled.status, 201, "{}", enabled.body);
    let event = &enabled.body["watch"][0]["details"]["events"][0];
    assert_eq!(event["channel_expiry"], json!(expiry));
    assert_eq!(event["resource_name"], "Deals");
    assert_eq!(event["channel_id"], "1000000068001");

    // Created through the API: an insert, no affected fields.
    let created = org
        .call(
            reqwest::Method::POST,
            "/Deals",
            Some(json!({"data": [{"Deal_Name": "Big", "Stage": "Qualification"}]})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Edited by a user in Zoho's UI, then deleted; Contacts are not watched.
    assert!(org.fake.touch(
        "Deals",
        &id,
        json!({"Stage": "Closed Won", "Deal_Name": "Big"})
    ));
    org.fake.create("Contacts", json!({"Last_Name": "Nobody"}));
    assert!(org.fake.remove("Deals", &id));

    let posts = received(&log, 3).await;
    assert_eq!(posts.len(), 3, "{posts:?}");
    let sent = org.fake.wait_for_callbacks(3, 5).await;
    assert!(sent.iter().all(|c| c.status == Some(200)), "{sent:?}");
    let mut bodies: Vec<Value> = posts
        .iter()
        .map(|p| serde_json::from_str(&p.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| match b["operation"].as_str() {
        Some("insert") => 0,
        Some("update") => 1,
        _ => 2,
    });
    for (body, post) in bodies.iter().zip(&posts) {
        assert_eq!(post.method, "POST");
        assert_eq!(post.path, "/zoho/notify?tenant=acme");
        assert_eq!(body["token"], "acme-7f3c9e2b41d84a");
        assert_eq!(body["channel_id"], "1000000068001");
        assert_eq!(body["module"], "Deals");
        assert_eq!(body["ids"], json!([id]));
        assert_eq!(body["query_params"], json!({"tenant": "acme"}));
        assert!(body["server_time"].as_i64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(bodies[0]["operation"], "insert");
    assert_eq!(bodies[0]["affected_fields"], json!([]));
    assert_eq!(bodies[1]["operation"], "update");
    assert_eq!(
        bodies[1]["affected_fields"],
        json!([{ id.clone(): {"Stage": "Closed Won"} }]),
        "only the field that changed, with its value"
    );
    assert_eq!(bodies[2]["operation"], "delete");
    listener.stop().await;
    org.fake.stop().await;
}

#[tokio::test]
async fn a_listener_that_is_down_is_recorded_and_names_only_changes_without_values() {
    let org = Org::start().await;
    let (listener, log) = listener();
    let down = "http://127.0.0.1:9/notify";
    for (id, url) in [
        ("1001", down.to_string()),
        ("1002", listener.base_url.clone()),
    ] {
        let enabled = org
            .watch(
                reqwest::Method::POST,
                json!({"channel_id": id, "events": ["Contacts.edit"], "notify_url": url,
                       "token": "t"}),
            )
            .await;
        assert_eq!(enabled.status, 201, "{}", enabled.body);
    }
    let id = org.fake.create("Contacts", json!({"Last_Name": "Quiet"}));
    assert!(
        org.fake
            .touch("Contacts", &id, json!({"Email": "q@example.com"}))
    );
    let sent = org.fake.wait_for_callbacks(2, 10).await;
    assert_eq!(sent.len(), 2, "creates are not watched: {sent:?}");
    let failed = sent.iter().find(|c| c.url == down).unwrap();
    assert_eq!(failed.status, None);
    assert!(failed.error.is_some());
    let posts = received(&log, 1).await;
    let body: Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["affected_fields"], json!(["Email"]));
    assert_eq!(body["query_params"], json!({}));
    listener.stop().await;
    org.fake.stop().await;
}

#[tokio::test]
async fn channels_are_validated_expire_and_are_renewed() {
    let org = Org::start().await;
    let url = "https://hooks.example.com/zoho?tenant=t1";
    let missing = org
        .watch(
            reqwest::Method::POST,
            json!({"channel_id": "2001", "events": ["Deals.all"]}),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["watch"][0]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(
        missing.body["watch"][0]["details"]["api_name"],
        "notify_url"
    );
    let long = org
        .watch(
            reqwest::Method::POST,
            json!({"channel_id": "2001", "events": ["Deals.all"], "notify_url": url,
                   "token": "x".repeat(51)}),
        )
        .await;
    assert_eq!(long.body["watch"][0]["code"], "INVALID_DATA");
    assert_eq!(long.body["watch"][0]["details"]["api_name"], "token");
    let bad_module = org
        .watch(
            reqwest::Method::POST,
            json!({"channel_id": "2001", "events": ["Nope.all"], "notify_url": url}),
        )
        .await;
    assert_eq!(bad_module.body["watch"][0]["code"], "INVALID_DATA");

    // Omitted or more than a week away: one hour.
    let expiry_of = |answer: &Answer| {
        let text = answer.body["watch"][0]["details"]["events"][0]["channel_expiry"]
            .as_str()
            .unwrap()
            .to_string();
        let at = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
        (at.with_timezone(&Utc) - Utc::now()).num_minutes()
    };
    for expiry in [Value::Null, json!(in_days(8))] {
        let answer = org
            .watch(
                reqwest::Method::POST,
                json!({"channel_id": "2001", "events": ["Deals.all"], "notify_url": url,
                       "token": "x".repeat(50), "channel_expiry": expiry}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        assert!((58..=60).contains(&expiry_of(&answer)), "{}", answer.body);
    }
    // Renewed by PATCH with six days.
    let renewed = org
        .watch(
            reqwest::Method::PATCH,
            json!({"channel_id": "2001", "channel_expiry": in_days(6)}),
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert!(expiry_of(&renewed) > 6 * 24 * 60 - 5);
    let listed = org.call(reqwest::Method::GET, "/actions/watch", None).await;
    assert_eq!(listed.body["watch"][0]["token"], json!("x".repeat(50)));
    assert_eq!(listed.body["watch"][0]["notify_url"], url);

    // Expired: gone, and PATCH says NOT_SUBSCRIBED until it is enabled again.
    assert!(org.fake.expire_channel("2001"));
    let dropped = org
        .watch(
            reqwest::Method::PATCH,
            json!({"channel_id": "2001", "channel_expiry": in_days(6)}),
        )
        .await;
    assert_eq!(dropped.status, 400);
    assert_eq!(dropped.body["watch"][0]["code"], "NOT_SUBSCRIBED");
    let none = org.call(reqwest::Method::GET, "/actions/watch", None).await;
    assert_eq!(none.status, 204);
    let again = org
        .watch(
            reqwest::Method::POST,
            json!({"channel_id": "2001", "events": ["Deals.all"], "notify_url": url,
                   "channel_expiry": in_days(2)}),
        )
        .await;
    assert_eq!(again.status, 201);
    // The fake's clock passes the expiry: Zoho drops the channel by itself.
    org.fake.shift_clock(chrono::Duration::days(3));
    assert!(org.fake.channels().is_empty());
    org.fake.shift_clock(chrono::Duration::days(-3));

    // Disabled by DELETE.
    org.watch(
        reqwest::Method::POST,
        json!({"channel_id": "2002", "events": ["Deals.edit"], "notify_url": url}),
    )
    .await;
    let deleted = org
        .call(
            reqwest::Method::DELETE,
            "/actions/watch?channel_ids=2002,2003",
            None,
        )
        .await;
    assert_eq!(deleted.status, 207, "{}", deleted.body);
    assert_eq!(deleted.body["watch"][0]["code"], "SUCCESS");
    assert_eq!(deleted.body["watch"][1]["code"], "NOT_SUBSCRIBED");
    org.fake.stop().await;
}

#[tokio::test]
async fn records_list_by_modification_time_since_a_time_in_pages() {
    let org = Org::start().await;
    org.fake
        .set_time_zone(chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
    org.fake.shift_clock(chrono::Duration::minutes(-30));
    let old = org.fake.insert("Deals", json!({"Deal_Name": "Old"}));
    org.fake.shift_clock(chrono::Duration::minutes(30));
    let since = (Utc::now() - chrono::Duration::minutes(10))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            org.fake
                .create("Deals", json!({"Deal_Name": format!("New {n}")})),
        );
    }
    assert!(org.fake.touch("Deals", &old, json!({"Stage": "Won"})));
    let missing = org.call(reqwest::Method::GET, "/Deals", None).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["code"], "REQUIRED_PARAM_MISSING");

    let path = "/Deals?fields=Deal_Name,Modified_Time,Modified_By&sort_by=Modified_Time\
                &sort_order=asc&per_page=2&page=1";
    let first = org
        .call_since(reqwest::Method::GET, path, None, Some(&since))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["info"]["more_records"], true);
    let page: Vec<&Value> = first.body["data"].as_array().unwrap().iter().collect();
    assert_eq!(page.len(), 2);
    assert!(
        page[0]["Modified_Time"]
            .as_str()
            .unwrap()
            .ends_with("+05:30")
    );
    assert_eq!(page[0]["Modified_By"]["id"], OTHER_USER_ID);
    assert!(page[0].get("Stage").is_none(), "only the fields asked for");
    let second = org
        .call_since(
            reqwest::Method::GET,
            &path.replace("page=1", "page=2"),
            None,
            Some(&since),
        )
        .await;
    assert_eq!(second.body["info"]["more_records"], false);
    let all: Vec<String> = page
        .iter()
        .copied()
        .chain(second.body["data"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 4, "three new, one touched: {all:?}");
    assert!(ids.iter().all(|id| all.contains(id)));

    let later = (Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let nothing = org
        .call_since(reqwest::Method::GET, path, None, Some(&later))
        .await;
    assert_eq!(nothing.status, 304);
    let fields = org
        .call(reqwest::Method::GET, "/settings/fields?module=Deals", None)
        .await;
    let names: Vec<&str> = fields.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["api_name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Modified_Time") && names.contains(&"Stage"));
    org.fake.stop().await;
}

#[tokio::test]
async fn a_search_names_its_fields_and_pages_and_nothing_found_is_204() {
    let org = Org::start().await;
    for first in ["Ada", "Grace", "Alan"] {
        org.fake.insert(
            "Contacts",
            json!({"Last_Name": "Byron", "First_Name": first, "Email": format!("{first}@example.com")}),
        );
    }
    let path = "/Contacts/search?criteria=((Last_Name:equals:Byron))&fields=First_Name,Email\
                &per_page=2";
    let page = org.call(reqwest::Method::GET, path, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["info"]["more_records"], true);
    let records = page.body["data"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["First_Name"], "Ada");
    assert!(records[0]["id"].is_string());
    assert!(
        records[0].get("Last_Name").is_none(),
        "only the fields named"
    );

    let both =
        "/Contacts/search?criteria=((Last_Name:equals:Byron)and(Email:equals:alan@example.com))";
    let one = org.call(reqwest::Method::GET, both, None).await;
    assert_eq!(
        one.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        one.body
    );
    assert_eq!(
        one.body["data"][0]["Last_Name"], "Byron",
        "every field without fields"
    );
    assert_eq!(one.body["info"]["more_records"], false);

    let none = "/Contacts/search?criteria=((Last_Name:equals:Lovelace))";
    assert_eq!(org.call(reqwest::Method::GET, none, None).await.status, 204);
    let wrong = "/Contacts/search?criteria=((Last_Name:equals:Byron))&per_page=500";
    assert_eq!(
        org.call(reqwest::Method::GET, wrong, None).await.status,
        400
    );
}
