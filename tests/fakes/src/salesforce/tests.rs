//! Unit tests of the fake Salesforce over HTTP: system fields, the recycle bin, the SOQL a
//! poller sends, paging, record types, describe and the call counter.

use serde_json::{Value, json};

use super::*;

type Org = crate::SignedIn<FakeSalesforce>;

struct Answer {
    status: u16,
    limit_info: Option<String>,
    body: Value,
}

impl Org {
    async fn start() -> Org {
        let fake = FakeSalesforce::start();
        let token_url = format!("{}/services/oauth2/token", fake.login_url);
        let refresh = fake.issue_refresh_token();
        Org::new(fake, &token_url, CLIENT_ID, CLIENT_SECRET, &refresh).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let url = if path.starts_with("/services/") {
            format!("{}{path}", self.fake.instance_url)
        } else {
            format!("{}/services/data/v60.0{path}", self.fake.instance_url)
        };
        let mut request = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let limit_info = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap();
        Answer {
            status,
            limit_info,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn soql(&self, resource: &str, soql: &str) -> Answer {
        let q: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        self.call(reqwest::Method::GET, &format!("/{resource}/?q={q}"), None)
            .await
    }

    /// Every row of a query, following `nextRecordsUrl`; and the pages it took.
    async fn all_rows(&self, resource: &str, soql: &str) -> (Vec<Value>, usize) {
        let mut answer = self.soql(resource, soql).await;
        let mut rows = Vec::new();
        let mut pages = 1;
        loop {
            assert_eq!(answer.status, 200, "{}", answer.body);
            rows.extend(answer.body["records"].as_array().unwrap().clone());
            if answer.body["done"] == json!(true) {
                return (rows, pages);
            }
            let next = answer.body["nextRecordsUrl"].as_str().unwrap().to_string();
            assert!(next.contains("/query/"), "{next}");
            answer = self.call(reqwest::Method::GET, &next, None).await;
            pages += 1;
        }
    }
}

fn opportunity(name: &str) -> Value {
    json!({"Name": name, "StageName": "Prospecting", "CloseDate": "2030-01-01"})
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn writes_are_stamped_by_their_user_and_deletes_go_to_the_recycle_bin() {
    let org = Org::start().await;
    let created = org
        .call(
            reqwest::Method::POST,
            "/sobjects/Opportunity",
            Some(opportunity("Acme")),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let record = org.fake.record("Opportunity", &id).unwrap();
    assert_eq!(record["CreatedDate"], record["SystemModstamp"]);
    assert_eq!(record["LastModifiedById"], API_USER_ID);
    assert_eq!(record["IsDeleted"], false);
    let stamp = record["SystemModstamp"].as_str().unwrap().to_string();
    assert!(stamp.ends_with("+0000") && stamp.len() == 28, "{stamp}");

    // System fields are read-only to the API.
    let refused = org
        .call(
            reqwest::Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"SystemModstamp": "2020-01-01T00:00:00.000+0000"})),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.body[0]["errorCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );

    org.fake.set_modstamp(&id, "2020-01-01T00:00:00.000+0000");
    org.fake.touch(&id, json!({"StageName": "Closed Won"}));
    let touched = org.fake.record("Opportunity", &id).unwrap();
    assert_eq!(touched["LastModifiedById"], OTHER_USER_ID);
    assert_eq!(touched["StageName"], "Closed Won");
    assert!(touched["SystemModstamp"].as_str().unwrap() > "2021");
    assert_eq!(touched["CreatedDate"], record["CreatedDate"]);

    let deleted = org
        .call(
            reqwest::Method::DELETE,
            &format!("/sobjects/Opportunity/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let soql = "SELECT Id, IsDeleted FROM Opportunity";
    assert_eq!(org.all_rows("query", soql).await.0, Vec::<Value>::new());
    let (rows, _) = org.all_rows("queryAll", soql).await;
    assert_eq!(ids(&rows), vec![id.clone()]);
    assert_eq!(rows[0]["IsDeleted"], true);
    let gone = org
        .call(
            reqwest::Method::GET,
            &format!("/sobjects/Opportunity/{id}"),
            None,
        )
        .await;
    assert_eq!(gone.status, 404);
    org.fake.stop().await;
}

#[tokio::test]
async fn the_pollers_query_filters_on_datetimes_at_whole_seconds_in_order() {
    let org = Org::start().await;
    let a = org.fake.insert("Opportunity", opportunity("A"));
    let b = org.fake.insert("Opportunity", opportunity("B"));
    let c = org.fake.insert("Opportunity", opportunity("C"));
    let old = org.fake.insert("Opportunity", opportunity("Old"));
    org.fake.set_modstamp(&a, "2024-05-01T12:00:00.000+0000");
    org.fake.set_modstamp(&b, "2024-05-01T11:59:59.000+0000");
    org.fake.set_modstamp(&c, "2024-05-01T12:00:00.500+0000");
    org.fake.set_modstamp(&old, "2024-05-01T11:00:00.000+0000");
    // `>= 12:00:00.900` still matches 12:00:00.000: milliseconds are ignored.
    let soql = "SELECT Id, SystemModstamp, IsDeleted, LastModifiedById, CreatedDate, Name \
                FROM Opportunity WHERE SystemModstamp >= 2024-05-01T11:59:59Z \
                ORDER BY SystemModstamp, Id";
    let (rows, _) = org.all_rows("queryAll", soql).await;
    assert_eq!(ids(&rows), vec![b.clone(), a.clone(), c.clone()]);
    assert_eq!(rows[0]["Name"], "B");
    assert!(rows[0]["attributes"]["url"].is_string());
    let soql = "SELECT Id FROM Opportunity WHERE SystemModstamp >= 2024-05-01T12:00:00.900Z \
                ORDER BY SystemModstamp DESC, Id DESC";
    let (rows, _) = org.all_rows("query", soql).await;
    assert_eq!(ids(&rows), vec![c, a]);
    let bad = org.soql("query", "SELECT Id, Id FROM Opportunity").await;
    assert_eq!(bad.status, 400);
    org.fake.stop().await;
}

#[tokio::test]
async fn answers_are_paged_and_every_call_is_counted_with_limit_info() {
    let org = Org::start().await;
    org.fake.set_page_size(2);
    let made: Vec<String> = (0..5)
        .map(|i| {
            org.fake
                .insert("Opportunity", opportunity(&format!("Deal {i}")))
        })
        .collect();
    org.fake.delete(&made[4]);
    let before = org.fake.api_calls();
    let soql = "SELECT Id FROM Opportunity ORDER BY Id";
    let (rows, pages) = org.all_rows("queryAll", soql).await;
    assert_eq!((ids(&rows), pages), (made.clone(), 3));
    let (rows, pages) = org.all_rows("query", soql).await;
    assert_eq!((rows.len(), pages), (4, 2));
    assert_eq!(org.fake.api_calls() - before, 5);
    let first = org.soql("query", soql).await;
    assert_eq!(first.body["totalSize"], 4);
    assert_eq!(first.body["done"], false);
    let info = first.limit_info.unwrap();
    assert!(info.starts_with("api-usage="), "{info}");
    let stale = org
        .call(reqwest::Method::GET, "/query/01gUNKNOWN-2", None)
        .await;
    assert_eq!(stale.status, 400);
    assert!(stale.limit_info.is_some(), "errors carry the usage too");
    org.fake.stop().await;
}

#[tokio::test]
async fn record_types_answer_soql_and_describe_and_bind_record_type_ids() {
    let org = Org::start().await;
    let enterprise = org
        .fake
        .add_record_type("Opportunity", "Enterprise Deal", "Enterprise", true);
    let retired = org
        .fake
        .add_record_type("Opportunity", "Old", "Old_Deal", false);
    org.fake
        .add_record_type("Account", "Partner", "Partner", true);
    let soql = "SELECT Id, Name, DeveloperName FROM RecordType \
                WHERE SobjectType = 'Opportunity' AND IsActive = true";
    let (rows, _) = org.all_rows("query", soql).await;
    assert_eq!(ids(&rows), vec![enterprise.clone()]);
    assert_eq!(rows[0]["DeveloperName"], "Enterprise");

    let described = org
        .call(reqwest::Method::GET, "/sobjects/Opportunity/describe", None)
        .await;
    assert_eq!(described.status, 200);
    let names: Vec<&str> = described.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for field in ["Id", "SystemModstamp", "IsDeleted", "StageName", "Amount"] {
        assert!(names.contains(&field), "{names:?}");
    }
    assert_eq!(
        described.body["recordTypeInfos"].as_array().unwrap().len(),
        2
    );

    let mut fields = opportunity("Typed");
    fields["RecordTypeId"] = json!(retired);
    let refused = org
        .call(
            reqwest::Method::POST,
            "/sobjects/Opportunity",
            Some(fields.clone()),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body[0]["errorCode"], "INVALID_CROSS_REFERENCE_KEY");
    fields["RecordTypeId"] = json!(enterprise);
    let created = org
        .call(reqwest::Method::POST, "/sobjects/Opportunity", Some(fields))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    org.fake.stop().await;
}
