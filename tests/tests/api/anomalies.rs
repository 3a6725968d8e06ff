//! Anomaly detection over simulated weeks, with the clock given to each round: a normal week of
//! noisy seasonal traffic opens no incident; an account going silent, a spike of failed
//! charges and a flow's failure-rate jump each open one incident within the stated delay,
//! told once to the tenant's channel, listed and acknowledged through the API, and resolved
//! when the signal is normal again. The roll-up counts real webhooks.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use entity::activity;
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{TestApp, backends, charge_event};
use tributary_worker::anomaly::{Watcher, method::hour_of};

const SUCCEEDED: &str = "events|stripe|acct_watch|charge.succeeded";
const FAILED: &str = "events|stripe|acct_watch|charge.failed";

/// A small deterministic generator (xorshift), so the noise is the same on every run.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Poisson draw (Knuth's method; fine for these small rates).
    fn poisson(&mut self, lambda: f64) -> i64 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.uniform();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
}

/// The usual hourly rate of each series at `hour`: busy on weekday working hours, quieter at
/// night and at weekends.
fn usual(series: &str, hour: i64) -> f64 {
    let at = Utc.timestamp_opt(hour * 3600, 0).unwrap();
    let weekday = chrono::Datelike::weekday(&at).number_from_monday() <= 5;
    let day = (8..20).contains(&chrono::Timelike::hour(&at));
    let busy = weekday && day;
    match series {
        SUCCEEDED if busy => 40.0,
        SUCCEEDED if weekday => 8.0,
        SUCCEEDED => 15.0,
        FAILED if busy => 2.0,
        FAILED => 0.5,
        _ if busy => 40.0, // the flow's attempts
        _ => 10.0,
    }
}

/// Writes one hour of a series: its count and when it was last seen.
async fn put(app: &TestApp, tenant: &str, series: &str, hour: i64, count: i64, minute: i64) {
    put_sums(app, tenant, series, (hour, minute), count, (0.0, 0.0)).await;
}

/// [`put`] with the hour's sum and sum of squares of the series' values.
async fn put_sums(
    app: &TestApp,
    tenant: &str,
    series: &str,
    (hour, minute): (i64, i64),
    count: i64,
    (total, total_sq): (f64, f64),
) {
    let row = activity::ActiveModel {
        tenant_id: Set(tenant.to_string()),
        series: Set(series.to_string()),
        hour: Set(hour),
        count: Set(count),
        total: Set(total),
        total_sq: Set(total_sq),
        last_at: Set((count > 0).then(|| Utc.timestamp_opt(hour * 3600 + minute * 60, 0).unwrap())),
    };
    activity::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                activity::Column::TenantId,
                activity::Column::Series,
                activity::Column::Hour,
            ])
            .update_columns([
                activity::Column::Count,
                activity::Column::Total,
                activity::Column::TotalSq,
                activity::Column::LastAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(&app.db)
        .await
        .unwrap();
}

/// Usual traffic with noise for every hour in `hours`: charges, failed charges, and the flow's
/// attempts, failures and latency.
async fn traffic(
    app: &TestApp,
    tenant: &str,
    flow: &str,
    hours: std::ops::Range<i64>,
    noise: &mut Noise,
) {
    let attempts = format!("attempts|{flow}");
    let failures = format!("failures|{flow}");
    for hour in hours {
        for series in [SUCCEEDED, FAILED] {
            let count = noise.poisson(usual(series, hour));
            put(
                app,
                tenant,
                series,
                hour,
                count,
                30 + (noise.uniform() * 29.0) as i64,
            )
            .await;
        }
        let tried = noise.poisson(usual(&attempts, hour));
        let failed = (0..tried).filter(|_| noise.uniform() < 0.02).count() as i64;
        put(app, tenant, &attempts, hour, tried, 59).await;
        put(app, tenant, &failures, hour, failed, 59).await;
        // The successful ones reach the CRM in about 300 ms.
        let ms: f64 = (0..tried - failed)
            .map(|_| 250.0 + noise.uniform() * 100.0)
            .sum();
        let latency = format!("latency|{flow}");
        put_sums(app, tenant, &latency, (hour, 59), tried - failed, (ms, 0.0)).await;
    }
}

async fn open_incidents(app: &TestApp, token: &str) -> Vec<Value> {
    let reply = app.get("/v1/incidents?status=open&limit=100", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap()
}

fn at(hour: i64, minute: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(hour * 3600 + minute * 60, 0).unwrap()
}

/// What each test needs: the app and a tenant, a channel taking `anomaly.detected` whose
/// notices land in the returned list, and a watcher of its own (rounds at a given time).
struct Setup {
    app: TestApp,
    p: tributary_tests::Pipeline,
    told: Arc<Mutex<Vec<Value>>>,
    _receiver: Served,
    watcher: Watcher,
}

async fn setup(backend: tributary_tests::Backend) -> Setup {
    let app = TestApp::spawn(backend).await;
    let p = app.pipeline(json!({})).await;
    let told: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = told.clone();
    let receiver = Served::answering(RequestLog::default(), move |_, body| {
        store
            .lock()
            .unwrap()
            .push(serde_json::from_slice(body).unwrap_or(Value::Null));
        actix_web::HttpResponse::Ok().body("ok")
    });
    let channel = app
        .post(
            "/v1/notification-channels",
            &p.tenant.token,
            json!({"name": "Ops", "kind": "webhook",
                   "url": format!("{}/hooks", receiver.base_url), "alerts": ["anomaly.detected"]}),
        )
        .await;
    assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
    let keyring = Arc::new(tributary_worker::secrets::load_keyring(&app.settings).unwrap());
    let notifier = tributary_worker::alerts::Notifier::new(
        app.db.clone(),
        keyring,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(3600),
        app.settings.vendor_urls,
    )
    .unwrap();
    let watcher = Watcher::new(app.db.clone(), Arc::new(notifier));
    Setup {
        app,
        p,
        told,
        _receiver: receiver,
        watcher,
    }
}

/// Monday 1 March 2021, 00:00 UTC, as an hour since the epoch.
fn monday() -> i64 {
    hour_of(Utc.with_ymd_and_hms(2021, 3, 1, 0, 0, 0).unwrap())
}

const WEEK: i64 = 168;

#[tokio::test]
async fn the_roll_up_counts_webhooks_latency_and_amounts_and_an_odd_amount_opens_an_incident() {
    for backend in backends() {
        let Setup {
            app,
            p,
            watcher,
            told,
            ..
        } = setup(backend).await;
        let cleanup = app.cleanup_handle();
        let token = &p.tenant.token;
        let flow = app
            .post(
                "/v1/flows",
                token,
                json!({"name": "Payments", "connection_id": p.connection_id,
                "trigger": {"events": ["charge.succeeded"]},
                "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                           "match": {"email": "{{ object.billing_details.email }}"}}]}),
            )
            .await;
        assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
        let flow_id = flow.str("/id");
        // Three live charges of 1.00, delivered.
        let now = Utc::now().timestamp();
        for i in 0..3 {
            let event = charge_event(
                &format!("evt_w{i}"),
                &format!("ch_w{i}"),
                &format!("w{i}@a.co"),
                "W",
                100,
                now,
            );
            let sent = app.send_event(&p, &event).await;
            app.finished_event(token, &sent.str("/event_id")).await;
        }
        watcher.round(Utc::now()).await.unwrap();
        let rows = activity::Entity::find()
            .filter(activity::Column::TenantId.eq(p.tenant.id.as_str()))
            .all(&app.db)
            .await
            .unwrap();
        let of = |prefix: &str, suffix: &str| -> Vec<activity::Model> {
            rows.iter()
                .filter(|r| r.series.starts_with(prefix) && r.series.ends_with(suffix))
                .cloned()
                .collect()
        };
        let charges = of("events|stripe|", "|charge.succeeded");
        assert_eq!(charges.iter().map(|r| r.count).sum::<i64>(), 3, "{rows:?}");
        let latency = of(&format!("latency|{flow_id}"), "");
        assert_eq!(latency.iter().map(|r| r.count).sum::<i64>(), 3, "{rows:?}");
        let ms = latency.iter().map(|r| r.total).sum::<f64>() / 3.0;
        assert!(
            ms > 0.0 && ms < 60_000.0,
            "event → CRM in milliseconds: {ms}"
        );
        let amounts = of("amounts|stripe|", "|usd");
        assert_eq!(amounts.len(), 1, "{rows:?}");
        assert_eq!(amounts[0].count, 3);
        assert!(
            (amounts[0].total - 3.0 * 100f64.ln()).abs() < 1e-9,
            "{amounts:?}"
        );

        // Four weeks of payments of about 1.00; then one of 10,000.00.
        let series = amounts[0].series.clone();
        let hour = hour_of(Utc::now());
        let x = 100f64.ln();
        for h in hour - 4 * WEEK..hour - 1 {
            let sums = (10.0 * x, 10.0 * (x * x + 0.04));
            put_sums(&app, &p.tenant.id, &series, (h, 30), 10, sums).await;
        }
        let event = charge_event("evt_big", "ch_big", "big@a.co", "Big", 1_000_000, now);
        let big = app.send_event(&p, &event).await.str("/event_id");
        let round = watcher.round(Utc::now()).await.unwrap();
        assert_eq!(round.opened, 1, "{:?}", open_incidents(&app, token).await);
        let open = open_incidents(&app, token).await;
        assert_eq!(open[0]["detector"], "amount", "{open:?}");
        assert_eq!(open[0]["evidence"]["event_id"], big.as_str());
        assert_eq!(open[0]["evidence"]["observed"], 1_000_000.0);
        assert_eq!(open[0]["evidence"]["look_at"], format!("/v1/events/{big}"));
        assert_eq!(told.lock().unwrap().len(), 1);
        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_normal_week_of_noisy_seasonal_traffic_opens_nothing() {
    for backend in backends() {
        let Setup {
            app, p, watcher, ..
        } = setup(backend).await;
        let cleanup = app.cleanup_handle();
        let token = &p.tenant.token;
        // Four weeks of history, then a normal week evaluated hour by hour: nothing opens.
        let monday = monday();
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        traffic(
            &app,
            &p.tenant.id,
            "flow_watched",
            monday..monday + 5 * WEEK,
            &mut noise,
        )
        .await;
        for hour in monday + 4 * WEEK + 1..=monday + 5 * WEEK {
            let round = watcher.round(at(hour, 0)).await.unwrap();
            assert_eq!(
                round.opened,
                0,
                "a normal hour ({hour}) opened an incident: {:?}",
                open_incidents(&app, token).await
            );
        }
        cleanup.run().await;
    }
}

#[tokio::test]
async fn silence_spikes_and_failure_rates_open_incidents_told_once_and_resolved() {
    for backend in backends() {
        let Setup {
            app,
            p,
            told: got,
            watcher,
            ..
        } = setup(backend).await;
        let cleanup = app.cleanup_handle();
        let token = &p.tenant.token;
        let flow = "flow_watched";
        let mut noise = Noise(0x2545_f491_4f6c_dd1d);
        // Four weeks of history; then a Monday. The account's charges stop at 10:00.
        let day = monday() + 4 * WEEK;
        traffic(&app, &p.tenant.id, flow, monday()..day + 10, &mut noise).await;
        put(&app, &p.tenant.id, SUCCEEDED, day + 9, 41, 59).await;
        assert_eq!(
            watcher.round(at(day + 10, 45)).await.unwrap().opened,
            0,
            "45 minutes is not yet silence"
        );
        let round = watcher.round(at(day + 11, 1)).await.unwrap();
        assert_eq!(round.opened, 1, "an hour without the usual 40 charges");
        let open = open_incidents(&app, token).await;
        assert_eq!(open.len(), 1, "{open:?}");
        let silence = &open[0];
        assert_eq!(silence["detector"], "silence");
        assert_eq!(silence["series"], SUCCEEDED);
        let expected = silence["evidence"]["expected"].as_f64().unwrap();
        assert!((30.0..50.0).contains(&expected), "{silence}");
        assert_eq!(silence["evidence"]["observed"], 0.0);
        assert!(
            silence["summary"]
                .as_str()
                .unwrap()
                .contains("No charge.succeeded"),
            "{silence}"
        );
        // Told once, however many rounds see it.
        watcher.round(at(day + 11, 30)).await.unwrap();
        let told: Vec<Value> = got.lock().unwrap().clone();
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0]["type"], "anomaly.detected");
        assert_eq!(told[0]["data"]["incident_id"], silence["id"]);

        // Acknowledged by a person; the audit log says who.
        let id = silence["id"].as_str().unwrap();
        let acked = app
            .post(&format!("/v1/incidents/{id}/acknowledge"), token, json!({}))
            .await;
        assert_eq!(acked.status, StatusCode::OK, "{}", acked.text);
        assert_eq!(
            acked.body["acknowledged_by"],
            format!("user:{}", p.tenant.user_id)
        );
        assert_eq!(acked.body["status"], "open");

        // Charges come back at 11:40: resolved at the next round.
        put(&app, &p.tenant.id, SUCCEEDED, day + 11, 12, 40).await;
        let round = watcher.round(at(day + 11, 45)).await.unwrap();
        assert_eq!(round.resolved, 1);
        let resolved = app.get(&format!("/v1/incidents/{id}"), token).await;
        assert_eq!(resolved.body["status"], "resolved", "{}", resolved.text);

        // A spike of failed charges: 25 by 14:30 where about 2 an hour are usual.
        traffic(&app, &p.tenant.id, flow, day + 12..day + 14, &mut noise).await;
        put(&app, &p.tenant.id, SUCCEEDED, day + 14, 20, 29).await;
        put(&app, &p.tenant.id, FAILED, day + 14, 25, 29).await;
        let round = watcher.round(at(day + 14, 30)).await.unwrap();
        assert_eq!(round.opened, 1, "{:?}", open_incidents(&app, token).await);
        let spike = open_incidents(&app, token)
            .await
            .into_iter()
            .find(|i| i["detector"] == "spike")
            .unwrap();
        assert_eq!(spike["series"], FAILED);
        assert_eq!(spike["evidence"]["observed"], 25.0);

        // The flow's attempts fail at 50 % from 15:00, where 2 % is usual.
        put(&app, &p.tenant.id, FAILED, day + 14, 26, 59).await;
        let series = |kind: &str| format!("{kind}|{flow}");
        put(&app, &p.tenant.id, &series("attempts"), day + 15, 40, 59).await;
        put(&app, &p.tenant.id, &series("failures"), day + 15, 20, 59).await;
        put(&app, &p.tenant.id, SUCCEEDED, day + 15, 38, 59).await;
        let round = watcher.round(at(day + 16, 0)).await.unwrap();
        let open = open_incidents(&app, token).await;
        let failing = open
            .iter()
            .find(|i| i["detector"] == "failure_rate")
            .expect("a failure-rate incident");
        assert_eq!(failing["series"], format!("attempts|{flow}"));
        assert!(
            (failing["evidence"]["observed"].as_f64().unwrap() - 0.5).abs() < 0.01,
            "{failing}"
        );
        let look_at = failing["evidence"]["look_at"].as_str().unwrap();
        assert!(look_at.contains(flow), "{failing}");
        assert_eq!(round.opened, 1, "{open:?}");
        // The spike's hour is over and the next is normal: resolved.
        assert!(open.iter().all(|i| i["detector"] != "spike"), "{open:?}");
        assert_eq!(got.lock().unwrap().len(), 3, "one notice per incident");

        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_flows_events_reaching_the_crm_far_slower_than_usual_open_a_latency_incident() {
    for backend in backends() {
        let Setup {
            app, p, watcher, ..
        } = setup(backend).await;
        let cleanup = app.cleanup_handle();
        let token = &p.tenant.token;
        let flow = "flow_watched";
        let series = |kind: &str| format!("{kind}|{flow}");
        let mut noise = Noise(0x1234_5678_9abc_def1);
        let day = monday() + 4 * WEEK;
        traffic(&app, &p.tenant.id, flow, monday()..day + 16, &mut noise).await;
        // At 17:00 its events take 5 s to reach the CRM, where 0.3 s is usual.
        let latency = series("latency");
        put_sums(
            &app,
            &p.tenant.id,
            &latency,
            (day + 17, 29),
            20,
            (20.0 * 5000.0, 0.0),
        )
        .await;
        put(&app, &p.tenant.id, &series("attempts"), day + 17, 20, 29).await;
        put(&app, &p.tenant.id, SUCCEEDED, day + 17, 20, 29).await;
        let round = watcher.round(at(day + 17, 30)).await.unwrap();
        let open = open_incidents(&app, token).await;
        let slow = open
            .iter()
            .find(|i| i["detector"] == "latency")
            .expect("a latency incident");
        assert_eq!(slow["evidence"]["observed"], 5000.0);
        assert!(
            slow["summary"].as_str().unwrap().contains("5.0 s"),
            "{slow}"
        );
        assert_eq!((round.opened, open.len()), (1, 1), "{open:?}");

        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_tenant_turns_a_detector_off_and_back_on() {
    for backend in backends() {
        let Setup {
            app, p, watcher, ..
        } = setup(backend).await;
        let cleanup = app.cleanup_handle();
        let token = &p.tenant.token;
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let day = monday() + 4 * WEEK;
        traffic(
            &app,
            &p.tenant.id,
            "flow_tuned",
            monday()..day + 10,
            &mut noise,
        )
        .await;
        put(&app, &p.tenant.id, SUCCEEDED, day + 9, 41, 59).await;

        let shown = app.get("/v1/anomaly-sensitivity", token).await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
        assert_eq!(shown.body["silence"], "normal", "unset is normal");
        let bad = app
            .call(
                reqwest::Method::PUT,
                "/v1/anomaly-sensitivity",
                Some(token),
                Some(json!({"silence": "loud"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
        assert_eq!(bad.body["errors"][0]["field"], "silence", "{}", bad.text);
        let set = |levels: Value| {
            let app = &app;
            async move {
                let reply = app
                    .call(
                        reqwest::Method::PUT,
                        "/v1/anomaly-sensitivity",
                        Some(token),
                        Some(levels),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
                reply.body
            }
        };

        // Off: an hour without the usual 40 charges opens nothing.
        let now_set = set(json!({"silence": "off"})).await;
        assert_eq!(now_set["silence"], "off");
        assert_eq!(now_set["spike"], "normal", "one left out is normal");
        let round = watcher.round(at(day + 11, 1)).await.unwrap();
        assert_eq!(round.opened, 0, "{:?}", open_incidents(&app, token).await);
        // Back to normal: the next round opens it; off again resolves it.
        set(json!({})).await;
        assert_eq!(watcher.round(at(day + 11, 2)).await.unwrap().opened, 1);
        assert_eq!(open_incidents(&app, token).await[0]["detector"], "silence");
        set(json!({"silence": "off"})).await;
        assert_eq!(watcher.round(at(day + 11, 3)).await.unwrap().resolved, 1);
        assert!(open_incidents(&app, token).await.is_empty());
        let audit = app.get("/v1/audit-log", token).await;
        assert!(
            audit.text.contains("anomaly_sensitivity.update"),
            "{}",
            audit.text
        );
        cleanup.run().await;
    }
}
