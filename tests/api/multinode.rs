//! Two hub processes (the real binary) on one PostgreSQL and one Redis, as in
//! `deploy/compose.yaml`: an event ingested on node A reaches a client on node B; killing
//! node A with SIGKILL mid-stream loses nothing (its clients resume on B); the singleton
//! channel lease moves to B.
//!
//! Needs `KOMMUTATOR_TEST_DATABASE_URL` (PostgreSQL) and `KOMMUTATOR_TEST_REDIS_URL`;
//! without them it says loudly that it was skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use kommutator::domain::{Actor, IdentityRules, NewDepartment, NewUser, Role};
use kommutator::storage::{SqlStore, Store};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::*;
use crate::ws_client::*;

const PASSWORD: &str = "multi-node-pass-1";

struct Node {
    child: Child,
    base: String,
    name: &'static str,
}

impl Node {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

// The child is waited for in `Node::kill`, also run on drop.
#[allow(clippy::zombie_processes)]
async fn start_node(name: &'static str, db: &str, redis: &str, config: &std::path::Path) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_kommutator"))
        .arg("serve")
        .env("KOMMUTATOR_CONFIG", config)
        .env("KOMMUTATOR_ASSIST__ENGINE", "ngram")
        .env("KOMMUTATOR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KOMMUTATOR_DATABASE__URL", db)
        .env("KOMMUTATOR_REALTIME__REDIS_URL", redis)
        .env("KOMMUTATOR_REALTIME__NODE_ID", name)
        .env("KOMMUTATOR_REALTIME__PRESENCE_GRACE_SECS", "1")
        .env("KOMMUTATOR_REALTIME__LEASE_SECS", "3")
        .env("KOMMUTATOR_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the hub binary");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Node { child, base, name };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {name} did not become ready");
}

/// A `TestApp` view of a node (for the REST and socket helpers).
fn view(node: &Node, store: Arc<dyn Store>) -> TestApp {
    TestApp {
        base: node.base.clone(),
        store,
        admin: Principal {
            id: 0,
            token: String::new(),
        },
        http: reqwest::Client::new(),
        shutdown: None,
    }
}

async fn login(app: &TestApp, login: &str, id: i64) -> Principal {
    let (status, body) = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": login, "password": PASSWORD}),
        )
        .await;
    assert!(status.is_success(), "login {login}: {body}");
    Principal {
        id,
        token: body["token"].as_str().expect("token").to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_events_survive_a_kill_and_move_the_lease() {
    let (Ok(_), Ok(redis)) = (
        std::env::var("KOMMUTATOR_TEST_DATABASE_URL"),
        std::env::var("KOMMUTATOR_TEST_REDIS_URL"),
    ) else {
        eprintln!(
            "SKIPPED multinode: set KOMMUTATOR_TEST_DATABASE_URL and KOMMUTATOR_TEST_REDIS_URL (CI does)"
        );
        return;
    };
    let db = fresh_database_url().await;

    // Users, set up in the shared database before the nodes start.
    let store = SqlStore::open(&db, IdentityRules::default())
        .await
        .expect("open store");
    let dept = store
        .create_department(
            &Actor::System,
            &NewDepartment {
                name: "Sales".into(),
            },
        )
        .await
        .expect("department");
    let hash = kommutator::auth::hash_password(PASSWORD).expect("hash");
    let mk = |login: &str, role: Role, d: Option<i64>| NewUser {
        login: login.into(),
        name: login.into(),
        email: None,
        role,
        department_id: d,
        password: PASSWORD.into(),
        must_change_password: false,
    };
    let admin = store
        .create_user(&Actor::System, &mk("root", Role::Admin, None), &hash)
        .await
        .expect("admin");
    let op = store
        .create_user(
            &Actor::System,
            &mk("oksana", Role::Operator, Some(dept.id)),
            &hash,
        )
        .await
        .expect("operator");
    let store: Arc<dyn Store> = Arc::new(store);

    // A system receiving the channel's replies.
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let receiver = axum::Router::new().route(
        "/replies",
        post(move |body: String| {
            let g = g.clone();
            async move {
                let v: Value = serde_json::from_str(&body).expect("json");
                g.lock().await.push(v);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let rport = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    let dir = std::env::temp_dir().join(format!("kommutator-multinode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[connectors.site]\ntype = \"api\"\ndepartment = \"Sales\"\noutbound_url = \"http://127.0.0.1:{rport}/replies\"\n"
        ),
    )
    .expect("config");

    let mut a = start_node("node-a", &db, &redis, &config).await;
    // A holds the channel lease before B starts.
    let leased = async {
        for _ in 0..100 {
            if lease_holder(&db).await.as_deref() == Some("node-a") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(leased.await, "node A takes the lease");
    let b = start_node("node-b", &db, &redis, &config).await;
    let app_a = view(&a, store.clone());
    let app_b = view(&b, store.clone());
    let root = login(&app_a, "root", admin.id).await;
    let key = {
        let (s, k) = app_a
            .post(
                Some(&root),
                "/api/v1/api-keys",
                &json!({"name": "site", "scopes": ["dialogs:write"]}),
            )
            .await;
        assert!(s.is_success(), "{k}");
        Principal {
            id: k["id"].as_i64().unwrap_or(0),
            token: k["secret"].as_str().expect("secret").to_owned(),
        }
    };
    let operator = login(&app_b, "oksana", op.id).await;
    // Let B have capacity for everything this test sends.
    let (s, _) = app_a
        .request(
            reqwest::Method::PUT,
            Some(&root),
            &format!("/api/v1/users/{}/capacity", op.id),
            Some(&json!({"max_dialogs": 1000})),
        )
        .await;
    assert!(s.is_success());

    // 1. Ingested on A, seen on B.
    let (mut on_b, _) = Ws::operator(&app_b, &operator).await;
    on_b.subscribe(&format!("user:{}", op.id), None).await;
    let (s, out) = ingest(
        &app_a,
        &key,
        &inbound("mn-0", "mn-t0", "+7 916 555-00-00", "через узел А"),
    )
    .await;
    assert!(s.is_success(), "{out}");
    let m = on_b.event_where(|e| e["entity"] == "message").await;
    assert_eq!(m["data"]["body"], "через узел А");
    let dialog0 = out["dialog"]["id"].as_i64().expect("dialog");

    // 1b. A knowledge base article written on A is found on B (each node has its own
    // index, kept in step from the change log through the bus); deleted on A, gone on B.
    let (s, art) = app_a
        .post(
            Some(&root),
            "/api/v1/kb/articles",
            &json!({"title": "Часы работы склада", "body": "Склад работает с 9 до 18 по будням."}),
        )
        .await;
    assert!(s.is_success(), "{art}");
    let found_on_b = |want: bool| {
        let (app_b, operator) = (&app_b, &operator);
        async move {
            for _ in 0..100 {
                let (_, hits) = app_b
                    .get(
                        Some(operator),
                        "/api/v1/kb/articles?q=%D1%81%D0%BA%D0%BB%D0%B0%D0%B4",
                    )
                    .await;
                let has = hits.as_array().is_some_and(|h| !h.is_empty());
                if has == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(found_on_b(true).await, "B indexes A's article");
    let (s, _) = app_a
        .delete(Some(&root), &format!("/api/v1/kb/articles/{}", art["id"]))
        .await;
    assert!(s.is_success());
    assert!(found_on_b(false).await, "B drops A's deleted article");

    // 2. A client on A follows the department while events stream; A is killed midway.
    let (mut on_a, _) = Ws::operator(&app_a, &login(&app_a, "root", admin.id).await).await;
    let topic = format!("dept:{}", dept.id);
    let (_, sub) = on_a.subscribe(&topic, None).await;
    let mut last = sub["until"].as_i64().expect("until");
    let mut seen: BTreeMap<i64, Value> = BTreeMap::new();
    let total = 120;
    let sender = {
        let (a_base, b_base, token) = (a.base.clone(), b.base.clone(), key.token.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut on_a = true;
            for i in 0..total {
                let ev = inbound(
                    &format!("mn-{}", i + 1),
                    &format!("mn-t{}", i % 7 + 1),
                    &format!("+7 916 555-01-{:02}", i % 7),
                    &format!("событие {i}"),
                );
                // At-least-once sender: retry on the other node when one is gone.
                loop {
                    let base = if on_a { &a_base } else { &b_base };
                    let r = http
                        .post(format!("{base}/api/v1/connectors/site/events"))
                        .bearer_auth(&token)
                        .json(&ev)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        _ => on_a = false,
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The same events again, at the same time, straight to node B: a redelivery racing the
    // original on another node must store nothing twice.
    let twin = {
        let (b_base, token) = (b.base.clone(), key.token.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..total {
                let ev = inbound(
                    &format!("mn-{}", i + 1),
                    &format!("mn-t{}", i % 7 + 1),
                    &format!("+7 916 555-01-{:02}", i % 7),
                    &format!("событие {i}"),
                );
                loop {
                    let r = http
                        .post(format!("{b_base}/api/v1/connectors/site/events"))
                        .bearer_auth(&token)
                        .json(&ev)
                        .send()
                        .await;
                    if matches!(r, Ok(ref r) if r.status().is_success()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut killed = false;
    let mut client = on_a;
    loop {
        if !killed && seen.len() >= 30 {
            a.kill();
            killed = true;
        }
        match client.poll(Duration::from_millis(300)).await {
            Polled::Frame(v) => {
                if v["type"] == "event" {
                    let seq = v["seq"].as_i64().expect("seq");
                    assert!(seen.insert(seq, v).is_none(), "event {seq} delivered twice");
                    last = last.max(seq);
                }
            }
            Polled::Idle => {
                if sender.is_finished() && twin.is_finished() && count_messages(&seen) >= total {
                    break;
                }
            }
            Polled::Ended => {
                // Node A is gone: resume on B from the last seq seen.
                let (mut c, _) = Ws::operator(&app_b, &login(&app_b, "root", admin.id).await).await;
                let (replayed, _) = c.subscribe(&topic, Some(last)).await;
                for v in replayed {
                    let seq = v["seq"].as_i64().expect("seq");
                    assert!(seen.insert(seq, v).is_none(), "event {seq} replayed twice");
                    last = last.max(seq);
                }
                client = c;
            }
        }
    }
    assert!(killed, "node A was killed mid-stream");
    sender.await.expect("sender");
    twin.await.expect("twin sender");
    assert_eq!(count_messages(&seen), total, "every message exactly once");
    let ids: BTreeSet<String> = seen
        .values()
        .filter(|v| v["entity"] == "message" && v["op"] == "create")
        .map(|v| v["data"]["external_id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ids.len(), total);

    // 3. The lease moved to B: a reply sent on B goes out.
    let moved = async {
        for _ in 0..100 {
            if lease_holder(&db).await.as_deref() == Some("node-b") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(moved.await, "node B takes the lease over");
    on_b.send(json!({"type": "send", "dialog_id": dialog0, "client_msg_id": "after-kill", "text": "Ответ после сбоя"}))
        .await;
    let (ack, _) = on_b.until_type("ack").await;
    let reply_id = ack["message_id"].clone();
    let delivered = async {
        for _ in 0..100 {
            if got.lock().await.iter().any(|v| v["id"] == reply_id) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(delivered.await, "B delivers the reply");
    drop(b);
    let _ = std::fs::remove_dir_all(dir);
    eprintln!(
        "multinode: {} events seen, node {} killed",
        seen.len(),
        a.name
    );
}

fn count_messages(seen: &BTreeMap<i64, Value>) -> usize {
    seen.values()
        .filter(|v| {
            v["entity"] == "message"
                && v["op"] == "create"
                && v["data"]["external_id"]
                    .as_str()
                    .is_some_and(|x| x != "mn-0")
        })
        .count()
}

async fn lease_holder(db: &str) -> Option<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.ok()?;
    let now = kommutator::domain::Timestamp::now().micros();
    sqlx::query_scalar::<_, String>(
        "SELECT node_id FROM leases WHERE name = 'connector:site' AND expires_at > $1",
    )
    .bind(now)
    .fetch_optional(&mut c)
    .await
    .ok()
    .flatten()
}
