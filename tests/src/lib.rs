//! Test support: the real app started in-process on an ephemeral port, on SQLite and (when
//! `TRIBUTARY_TEST_DATABASE_URL` is set) on a fresh Postgres database per test, plus typed
//! helpers for the calls every test makes.

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tributary_api::app;
use tributary_api::state::AppState;
use tributary_worker::settings::Settings;

pub mod bench;
mod pipeline;
mod reply;
mod stripe;
mod worker_process;

pub use pipeline::Pipeline;
pub use reply::Reply;
pub use stripe::{charge_event, stripe_signature};
pub use worker_process::WorkerProcess;

pub const TEST_KEYRING: &str = "k1:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
pub const PASSWORD: &str = "correct horse battery staple";
/// The token the test apps' `/metrics` asks for.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite for the data and the queue.
    Sqlite,
    /// Postgres for the data and the queue.
    Postgres,
    /// Postgres for the data, Redis for the queue.
    PostgresRedis,
}

fn configured(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty())
}

/// Whether this run is CI's (`CI=true`), where a missing prerequisite fails instead of
/// skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The backends this run covers: SQLite always; Postgres, and Postgres with the queue on
/// Redis, when `TRIBUTARY_TEST_DATABASE_URL` / `TRIBUTARY_TEST_REDIS_URL` are set.
///
/// With `CI=true` a missing variable fails the test naming it. Otherwise the first call in a
/// test binary prints one line, past the test harness's capture, saying which backends run and
/// how to enable the others.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    let mut missing = Vec::new();
    if configured("TRIBUTARY_TEST_DATABASE_URL") {
        list.push(Backend::Postgres);
        if configured("TRIBUTARY_TEST_REDIS_URL") {
            list.push(Backend::PostgresRedis);
        } else {
            missing.push("TRIBUTARY_TEST_REDIS_URL");
        }
    } else {
        missing.push("TRIBUTARY_TEST_DATABASE_URL");
        if !configured("TRIBUTARY_TEST_REDIS_URL") {
            missing.push("TRIBUTARY_TEST_REDIS_URL");
        }
    }
    if in_ci() {
        assert!(
            missing.is_empty(),
            "CI=true but {} not set: every backend must run in CI",
            missing.join(" and ")
        );
    }
    static ANNOUNCED: OnceLock<()> = OnceLock::new();
    ANNOUNCED.get_or_init(|| {
        use std::io::Write;
        let line = if missing.is_empty() {
            "backends: SQLite, Postgres, Postgres+Redis\n".to_string()
        } else {
            format!(
                "backends: {list:?} only; SKIPPED the others: set {} \
                 (e.g. postgres://postgres@127.0.0.1:5432/test, redis://127.0.0.1:6379)\n",
                missing.join(" and ")
            )
        };
        // Straight to the stream: the harness captures `eprintln!` of a passing test.
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
    list
}

/// Runs `test` once per backend against a fresh app.
pub async fn each_backend<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    each_backend_with(&[], test).await;
}

/// [`each_backend`] with extra settings, as [`TestApp::spawn_with`] takes them.
pub async fn each_backend_with<F, Fut>(vars: &[(&str, &str)], test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        let app = TestApp::spawn_with(backend, vars).await;
        let cleanup = app.cleanup_handle();
        test(app).await;
        cleanup.run().await;
    }
}

/// Everything the app logged during this test binary, for asserting what never appears.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_once() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let buffer = log_buffer().clone();
        if std::env::var("TRIBUTARY_TEST_LOG_STDERR").is_ok_and(|v| v == "1") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug,sqlx=warn,h2=warn,hyper=warn")
                .with_ansi(false)
                .try_init();
            return;
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || BufferWriter(buffer.clone()))
            .try_init();
    });
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    /// A connection of the test's own to the app's database.
    pub db: DatabaseConnection,
    pub database_url: String,
    pub settings: Settings,
    /// The api's webhook inbox: how many webhooks wait for their commit.
    pub inbox: tributary_worker::inbox::GroupCommit,
    server: actix_web::dev::ServerHandle,
    postgres_database: Option<String>,
    _dir: tempfile::TempDir,
}

pub struct Cleanup {
    server: actix_web::dev::ServerHandle,
    postgres_database: Option<String>,
}

impl Cleanup {
    pub async fn run(self) {
        self.server.stop(false).await;
        if let Some(name) = self.postgres_database {
            drop_postgres_database(&name).await;
        }
    }
}

fn admin_url() -> String {
    std::env::var("TRIBUTARY_TEST_DATABASE_URL").expect("TRIBUTARY_TEST_DATABASE_URL")
}

fn postgres_url_for(database: &str) -> String {
    let mut url = url_parse(&admin_url());
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn url_parse(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).expect("TRIBUTARY_TEST_DATABASE_URL is a URL")
}

/// A fresh, empty database for a test that starts the binaries itself: its `DATABASE_URL`,
/// and for [`Backend::PostgresRedis`] a `TRIBUTARY_QUEUE_URL` and a namespace of its own.
/// The Postgres database is dropped by [`TestDatabase::drop_now`].
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    /// `(TRIBUTARY_QUEUE_URL, TRIBUTARY_QUEUE_NAMESPACE)` for Redis.
    pub queue: Option<(String, String)>,
    postgres_database: Option<String>,
}

impl TestDatabase {
    /// A new database of `backend`; a SQLite one lives in `dir`.
    pub async fn create(backend: Backend, dir: &std::path::Path) -> TestDatabase {
        let (url, postgres_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/tributary.db?mode=rwc", dir.display()),
                None,
            ),
            Backend::Postgres | Backend::PostgresRedis => {
                let name = create_postgres_database().await;
                (postgres_url_for(&name), Some(name))
            }
        };
        let queue = (backend == Backend::PostgresRedis).then(|| {
            (
                std::env::var("TRIBUTARY_TEST_REDIS_URL").expect("TRIBUTARY_TEST_REDIS_URL"),
                format!("test-{}", uuid::Uuid::new_v4().simple()),
            )
        });
        TestDatabase {
            backend,
            url,
            queue,
            postgres_database,
        }
    }

    /// The environment a binary needs for this database and queue.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("DATABASE_URL", self.url.clone())];
        if let Some((url, namespace)) = &self.queue {
            env.push(("TRIBUTARY_QUEUE_URL", url.clone()));
            env.push(("TRIBUTARY_QUEUE_NAMESPACE", namespace.clone()));
        }
        env
    }

    /// Drops the Postgres database (SQLite's goes with its directory).
    pub async fn drop_now(&self) {
        if let Some(name) = &self.postgres_database {
            drop_postgres_database(name).await;
        }
    }
}

/// A connection to the test server's administrative database.
async fn admin() -> DatabaseConnection {
    Database::connect(admin_url())
        .await
        .expect("connect to TRIBUTARY_TEST_DATABASE_URL")
}

async fn create_postgres_database() -> String {
    let name = format!("trb_test_{}", uuid::Uuid::new_v4().simple());
    let admin = admin().await;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    name
}

/// A new Postgres database with every migration applied and the queue's schema made: a copy
/// of this test process's template (`CREATE DATABASE … TEMPLATE`), which takes about a
/// tenth of the time migrating a fresh one does.
async fn create_migrated_postgres_database() -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let template = TEMPLATE.get_or_init(make_template).await;
    let name = format!("trb_test_{}", uuid::Uuid::new_v4().simple());
    let admin = admin().await;
    admin
        .execute_unprepared(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .await
        .expect("create test database from the template");
    admin.close().await.ok();
    name
}

/// This process's template database, `trb_template_<pid>`; the templates of test processes
/// that have ended are dropped first.
async fn make_template() -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let name = format!("trb_template_{}", std::process::id());
    let admin = admin().await;
    let rows = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'trb_template_%'",
        ))
        .await
        .expect("list template databases");
    for row in rows {
        let Ok(old) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let pid = old.trim_start_matches("trb_template_");
        if old == name || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{old}\""))
            .await;
    }
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\""))
        .await
        .expect("drop a stale template");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the template database");
    admin.close().await.ok();
    let db = tributary_worker::db::connect(&postgres_url_for(&name))
        .await
        .expect("connect to the template");
    {
        use migration::MigratorTrait;
        migration::Migrator::up(&db, None)
            .await
            .expect("migrate the template");
    }
    tributary_worker::queue::prepare_postgres(&db)
        .await
        .expect("the queue's schema in the template");
    db.close().await.expect("close the template");
    name
}

async fn drop_postgres_database(name: &str) {
    if let Ok(admin) = Database::connect(admin_url()).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        admin.close().await.ok();
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the app with extra environment-style settings.
    pub async fn spawn_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
        Self::spawn_full(backend, vars, Some(1)).await
    }

    /// Starts the app; `http_workers: None` gives actix's default (one per core).
    pub async fn spawn_full(
        backend: Backend,
        vars: &[(&str, &str)],
        http_workers: Option<usize>,
    ) -> TestApp {
        init_once();
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, postgres_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/tributary.db?mode=rwc", dir.path().display()),
                None,
            ),
            Backend::Postgres | Backend::PostgresRedis => {
                let name = create_migrated_postgres_database().await;
                (postgres_url_for(&name), Some(name))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let address = listener.local_addr().unwrap();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), database_url.clone()),
            (
                "TRIBUTARY_DATA_DIR".into(),
                dir.path().display().to_string(),
            ),
            ("TRIBUTARY_LISTEN".into(), address.to_string()),
            ("TRIBUTARY_ENCRYPTION_KEYS".into(), TEST_KEYRING.into()),
            (
                "TRIBUTARY_PUBLIC_URL".into(),
                "https://hooks.example.test".into(),
            ),
            // Retries and sweeps on a test's time scale.
            ("TRIBUTARY_RETRY_MAX_ATTEMPTS".into(), "3".into()),
            ("TRIBUTARY_RETRY_BASE_DELAY".into(), "50ms".into()),
            ("TRIBUTARY_RETRY_MAX_DELAY".into(), "200ms".into()),
            ("TRIBUTARY_SWEEP_INTERVAL".into(), "1s".into()),
            ("TRIBUTARY_SWEEP_GRACE".into(), "10s".into()),
            ("TRIBUTARY_WORKER_CONCURRENCY".into(), "4".into()),
            ("TRIBUTARY_METRICS_TOKEN".into(), METRICS_TOKEN.into()),
            // The fakes listen on 127.0.0.1; tests of the default override this.
            ("TRIBUTARY_VENDOR_URLS".into(), "any".into()),
            // Every test signs up from 127.0.0.1; the default rate is tested explicitly.
            ("TRIBUTARY_SIGNUP_RATE".into(), "100000/second".into()),
            // Nothing reaches the real Stripe from a test: the discard port refuses at once.
            // Tests that talk to Stripe point this at the fake.
            (
                "TRIBUTARY_STRIPE_API_URL".into(),
                "http://127.0.0.1:9".into(),
            ),
        ]);
        if backend == Backend::PostgresRedis {
            let redis =
                std::env::var("TRIBUTARY_TEST_REDIS_URL").expect("TRIBUTARY_TEST_REDIS_URL");
            env.insert("TRIBUTARY_QUEUE_URL".into(), redis);
            env.insert(
                "TRIBUTARY_QUEUE_NAMESPACE".into(),
                format!("test-{}", uuid::Uuid::new_v4().simple()),
            );
        }
        // `{base}` in a value is the app's own address (e.g. a public URL the browser reaches).
        for (k, v) in vars {
            env.insert(
                k.to_string(),
                v.replace("{base}", &format!("http://{address}")),
            );
        }
        let settings = Settings::from_map(&env).expect("test settings are valid");
        let state = AppState::build(settings.clone()).await.expect("app state");
        let inbox = state.inbox.clone();
        let server = app::server(listener, state, http_workers, false).expect("server starts");
        let handle = server.handle();
        tokio::spawn(server);
        let db = tributary_worker::db::connect(&database_url)
            .await
            .expect("test's own connection");
        TestApp {
            backend,
            base: format!("http://{address}"),
            client: reqwest::Client::builder().build().expect("http client"),
            db,
            database_url,
            settings,
            inbox,
            server: handle,
            postgres_database,
            _dir: dir,
        }
    }

    pub fn cleanup_handle(&self) -> Cleanup {
        Cleanup {
            server: self.server.clone(),
            postgres_database: self.postgres_database.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a new tenant with a unique email.
    pub async fn signup(&self, tenant_name: &str) -> Tenant {
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let reply = self
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"tenant_name": tenant_name, "email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        Tenant {
            id: reply.str("/tenant/id"),
            user_id: reply.str("/user/id"),
            email,
            token: reply.str("/access_token"),
            refresh_token: reply.str("/refresh_token"),
        }
    }

    /// Creates a user in `owner`'s tenant and logs in as them.
    pub async fn user_with_role(&self, owner: &Tenant, role: &str) -> (String, String) {
        let email = format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple());
        let created = self
            .post(
                "/v1/users",
                &owner.token,
                json!({"email": email, "password": PASSWORD, "role": role}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let login = self
            .call(
                Method::POST,
                "/v1/login",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        (created.str("/id"), login.str("/access_token"))
    }

    /// Creates an API key with `role` in `owner`'s tenant and returns (id, key).
    pub async fn api_key(&self, owner: &Tenant, role: &str) -> (String, String) {
        let created = self
            .post(
                "/v1/api-keys",
                &owner.token,
                json!({"name": format!("{role} key"), "role": role}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        (created.str("/id"), created.str("/key"))
    }
}

/// A signed-up tenant and its owner's credentials.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub token: String,
    pub refresh_token: String,
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `seconds`.
pub async fn wait_for<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if std::time::Instant::now() >= deadline {
            let logs = captured_logs();
            let problems: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let tail = &problems[problems.len().saturating_sub(20)..];
            panic!(
                "timed out waiting for {what}; last warnings and errors:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of the Prometheus sample whose name and labels are exactly `series`
/// (e.g. `tributary_deliveries_total{provider="sandbox",status="succeeded"}`), from `/metrics`.
pub async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
