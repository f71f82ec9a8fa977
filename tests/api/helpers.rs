//! The test harness: a real hub on a free port, on a fresh SQLite file, or on a fresh
//! PostgreSQL database when `KOMMUTATOR_TEST_DATABASE_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`; each app gets its own database).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use kommutator::config::Config;
use kommutator::domain::{Actor, IdentityRules, NewApiKey, NewDepartment, NewUser, Role, Scope};
use kommutator::startup::App;
use kommutator::storage::{SqlStore, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;

/// The password every test user has.
pub const PASSWORD: &str = "test-password-1234";

/// The Argon2 hash of [`PASSWORD`], computed once per test binary.
pub fn password_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| kommutator::auth::hash_password(PASSWORD).expect("hash"))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which backend the tests run on.
pub fn backend_name() -> &'static str {
    if pg_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

fn pg_url() -> Option<String> {
    std::env::var("KOMMUTATOR_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let tag = format!("{}_{}_{}", std::process::id(), n, rand_suffix());
    match pg_url() {
        Some(admin_url) => {
            let name = format!("kt_{tag}");
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let _ = conn.close().await;
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b)
                .to_owned();
            format!("{base}/{name}")
        }
        None => {
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| {
                // Written past the test harness's capture on purpose: a run that skipped
                // PostgreSQL says so.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: KOMMUTATOR_TEST_DATABASE_URL is not set: these tests run on SQLite only \
                     (CI runs them on PostgreSQL too)"
                );
            });
            let dir = std::env::temp_dir().join("kommutator-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!("sqlite://{}", dir.join(format!("{tag}.db")).display())
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// Opens a fresh store directly (storage-level tests and benchmarks).
pub async fn fresh_store() -> SqlStore {
    let url = fresh_database_url().await;
    SqlStore::open(&url, IdentityRules::default())
        .await
        .expect("open store")
}

/// A signed-in principal: its id and bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User id (0 for API keys).
    pub id: i64,
    /// Bearer token.
    pub token: String,
}

/// A running hub.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Direct access to the store (to check what was or was not written).
    pub store: Arc<dyn Store>,
    /// The first admin.
    pub admin: Principal,
    /// HTTP client.
    pub http: reqwest::Client,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a hub on a free port with a fresh database and an admin signed in.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`] with config changes.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    // Engine 1 unless a test asks for engine 2 (tests/api/assist_engines.rs): loading the
    // sentence encoder costs seconds and a gigabyte per app.
    config.assist.engine = kommutator::config::EngineChoice::Ngram;
    config.database.url = fresh_database_url().await;
    tweak(&mut config);
    let store = SqlStore::open(&config.database.url, IdentityRules::default())
        .await
        .expect("open store");
    let store: Arc<dyn Store> = Arc::new(store);
    let app = App::with_store(config, store.clone())
        .await
        .expect("build app");
    let addr = app.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().build().expect("client");
    let mut t = TestApp {
        base: format!("http://{addr}"),
        store,
        admin: Principal {
            id: 0,
            token: String::new(),
        },
        http,
        shutdown: Some(tx),
    };
    let admin = t
        .store
        .create_user(
            &Actor::System,
            &NewUser {
                login: "admin".into(),
                name: "Admin".into(),
                email: None,
                role: Role::Admin,
                department_id: None,
                password: PASSWORD.into(),
                must_change_password: false,
            },
            password_hash(),
        )
        .await
        .expect("admin");
    t.admin = t.login("admin", admin.id).await;
    t
}

impl TestApp {
    /// Signs in `login` (password [`PASSWORD`]).
    pub async fn login(&self, login: &str, id: i64) -> Principal {
        let (status, body) = self
            .post(
                None,
                "/api/v1/auth/login",
                &serde_json::json!({"login": login, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {login}: {body}");
        Principal {
            id,
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a department.
    pub async fn department(&self, name: &str) -> i64 {
        self.store
            .create_department(&Actor::System, &NewDepartment { name: name.into() })
            .await
            .expect("department")
            .id
    }

    /// Creates a user with `role` in `department` and signs them in.
    pub async fn user(&self, login: &str, role: Role, department: Option<i64>) -> Principal {
        let u = self
            .store
            .create_user(
                &Actor::System,
                &NewUser {
                    login: login.into(),
                    name: login.into(),
                    email: None,
                    role,
                    department_id: department,
                    password: PASSWORD.into(),
                    must_change_password: false,
                },
                password_hash(),
            )
            .await
            .expect("user");
        self.login(login, u.id).await
    }

    /// Creates an API key with `scopes`.
    pub async fn api_key(&self, scopes: &[Scope]) -> Principal {
        let (key, prefix, hash) = kommutator::auth::new_api_key();
        let k = self
            .store
            .create_api_key(
                &Actor::System,
                &NewApiKey {
                    name: "test".into(),
                    scopes: scopes.to_vec(),
                },
                &prefix,
                &hash,
            )
            .await
            .expect("api key");
        Principal {
            id: k.id,
            token: key,
        }
    }

    /// Any request; returns status and JSON body (`Null` when empty or not JSON).
    pub async fn request(
        &self,
        method: Method,
        who: Option<&Principal>,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(p) = who {
            req = req.bearer_auth(&p.token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with a raw body and content type.
    pub async fn raw(
        &self,
        method: Method,
        who: Option<&Principal>,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(p) = who {
            req = req.bearer_auth(&p.token);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET.
    pub async fn get(&self, who: Option<&Principal>, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, who, path, None).await
    }

    /// POST JSON.
    pub async fn post(
        &self,
        who: Option<&Principal>,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.request(Method::POST, who, path, Some(body)).await
    }

    /// PATCH JSON.
    pub async fn patch(
        &self,
        who: Option<&Principal>,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        self.request(Method::PATCH, who, path, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, who: Option<&Principal>, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, who, path, None).await
    }

    /// The highest change-log sequence number: unchanged means nothing was written.
    /// Gives `user` the phone extension `ext` (admin API); checks the answer.
    pub async fn set_extension(&self, user: &Principal, ext: &str) {
        let (status, body) = self
            .patch(
                Some(&self.admin),
                &format!("/api/v1/users/{}", user.id),
                &serde_json::json!({ "extension": ext }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A company shared with its department, `responsible` its manager, reachable at
    /// `phone`; returns its id.
    pub async fn company(&self, name: &str, phone: &str, responsible: &Principal) -> i64 {
        let (status, client) = self
            .post(
                Some(&self.admin),
                "/api/v1/clients",
                &serde_json::json!({"kind": "company", "name": name, "shared": true,
                    "responsible_id": responsible.id,
                    "identities": [{"kind": "phone", "value": phone}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{client}");
        client["id"].as_i64().expect("client id")
    }

    pub async fn last_seq(&self) -> i64 {
        self.store.last_seq().await.expect("last seq")
    }
}

/// Asserts an error answer: status, code, and (if given) the field.
#[track_caller]
pub fn assert_error(
    got: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(got.0, status, "status; body: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "code; body: {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body: {}",
        got.1
    );
    if let Some(f) = field {
        assert_eq!(got.1["error"]["field"], f, "field; body: {}", got.1);
    }
}

/// A port free on 127.0.0.1 right now (for a hub process started with a fixed address).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Where a browser test saves the screenshot `name`: `target/screenshots/` in the
/// repository, or `$KOMMUTATOR_SCREENSHOTS`.
pub fn screenshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("KOMMUTATOR_SCREENSHOTS").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
        std::path::PathBuf::from,
    );
    dir.join(format!("{name}.png"))
}
