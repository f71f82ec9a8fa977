//! Operator routing, end to end: inquiries come in through the `api` channel `site` (routed
//! to the department "Sales"), operators are online while their `/ws/operator` socket is
//! open, and every test checks where each dialog went and the reason on record
//! (`GET /api/v1/dialogs/{id}/assignments`).
//!
//! Covered: the sticky manager, round-robin (order and wrap-around), least-loaded (load,
//! then who waited longest), capacity, skipping offline and away operators, the queue
//! re-drained the moment capacity frees up, re-offer of unanswered dialogs, transfers to an
//! operator and to a department, and presence after the grace period.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kommutator::domain::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::*;
use crate::ws_client::*;

/// How long a test waits for something routing does in the background.
const ROUTE_WAIT: Duration = Duration::from_secs(8);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(50);

/// A hub with the `site` channel and its department.
struct Site {
    app: TestApp,
    /// The channel's API key (`dialogs:write`).
    key: Principal,
    /// The department "Sales", created before the first inquiry.
    sales: i64,
}

async fn site(test: &str) -> Site {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    eprintln!("{test} on {}", backend_name());
    // Before the first inquiry: the pipeline caches the name lookup, a miss included.
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    Site { app, key, sales }
}

/// A distinct mobile number per inquiry number.
fn phone(n: u32) -> String {
    format!("+7 916 555-{:02}-{:02}", n / 100 % 100, n % 100)
}

/// Inquiry `n`: message `m-n` in a new thread `t-n` from a new number. Returns the outcome.
async fn inquiry(s: &Site, n: u32) -> Value {
    inquiry_from(s, n, &phone(n)).await
}

/// Inquiry `n` from `from`.
async fn inquiry_from(s: &Site, n: u32, from: &str) -> Value {
    let ev = inbound(&format!("m-{n}"), &format!("t-{n}"), from, "Good afternoon");
    let (status, out) = ingest(&s.app, &s.key, &ev).await;
    assert_eq!(status, StatusCode::OK, "inquiry {n}: {out}");
    assert_eq!(out["result"], "message", "{out}");
    assert_eq!(out["status"], "stored", "{out}");
    assert_eq!(out["dialog"]["department_id"], s.sales, "{out}");
    out
}

fn dialog_of(out: &Value) -> i64 {
    out["dialog"]["id"].as_i64().expect("dialog id")
}

/// Asserts the outcome assigned the dialog to `user` for `reason`.
#[track_caller]
fn assert_assigned(out: &Value, user: &Principal, reason: &str) {
    let a = &out["assignment"];
    assert_eq!(a["user_id"], user.id, "assignee; outcome: {out}");
    assert_eq!(a["reason"], reason, "reason; outcome: {out}");
    assert_eq!(a["dialog_id"], out["dialog"]["id"], "{out}");
    assert_eq!(out["dialog"]["assignee_id"], user.id, "{out}");
    assert_eq!(out["dialog"]["assign_reason"], reason, "{out}");
}

/// Asserts the outcome queued the dialog.
#[track_caller]
fn assert_queued(out: &Value) {
    let a = &out["assignment"];
    assert!(a["user_id"].is_null(), "nobody gets it; outcome: {out}");
    assert_eq!(a["reason"], "queued", "{out}");
    assert!(out["dialog"]["assignee_id"].is_null(), "{out}");
    assert_eq!(out["dialog"]["assign_reason"], "queued", "{out}");
}

/// One recorded assignment: who (none when queued) and why.
type Rec = (Option<i64>, String);

fn to(user: &Principal, reason: &str) -> Rec {
    (Some(user.id), reason.to_owned())
}

fn queued() -> Rec {
    (None, "queued".to_owned())
}

/// The recorded assignments of a dialog, oldest first, as the API returns them.
async fn assignments(app: &TestApp, dialog: i64) -> Vec<Value> {
    let (status, list) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{dialog}/assignments"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().expect("a list").clone();
    for a in &list {
        assert_eq!(a["dialog_id"], dialog, "{a}");
        assert!(a["at"].is_string(), "{a}");
    }
    list
}

/// The recorded assignments as (user, reason).
async fn history(app: &TestApp, dialog: i64) -> Vec<Rec> {
    assignments(app, dialog)
        .await
        .iter()
        .map(|a| {
            (
                a["user_id"].as_i64(),
                a["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

/// Polls until the dialog has at least `n` recorded assignments; returns them.
async fn wait_history(app: &TestApp, dialog: i64, n: usize) -> Vec<Rec> {
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        let h = history(app, dialog).await;
        if h.len() >= n {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "dialog {dialog}: {n} assignments expected within {ROUTE_WAIT:?}, got {h:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn dialog(app: &TestApp, id: i64) -> Value {
    let (status, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

/// Polls until `user` has the dialog; returns it.
async fn wait_assignee(app: &TestApp, id: i64, user: &Principal) -> Value {
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        let d = dialog(app, id).await;
        if d["assignee_id"] == user.id {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "dialog {id} did not reach user {} within {ROUTE_WAIT:?}: {d}",
            user.id
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `GET /api/v1/operators?department_id=` as the admin.
async fn operators(app: &TestApp, dept: i64) -> Vec<Value> {
    let (status, list) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/operators?department_id={dept}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().expect("a list").clone()
}

/// One operator's row of the list.
#[track_caller]
fn row(list: &[Value], user: &Principal) -> Value {
    list.iter()
        .find(|o| o["user_id"] == user.id)
        .unwrap_or_else(|| panic!("user {} is not listed: {list:?}", user.id))
        .clone()
}

/// Polls the operators list until `user` has `status`; returns their row.
async fn wait_status(app: &TestApp, dept: i64, user: &Principal, status: &str) -> Value {
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        let r = row(&operators(app, dept).await, user);
        if r["status"] == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "user {} is not {status} within {ROUTE_WAIT:?}: {r}",
            user.id
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Open dialogs per operator, in the order given.
async fn loads(app: &TestApp, dept: i64, users: &[&Principal]) -> Vec<i64> {
    let list = operators(app, dept).await;
    users
        .iter()
        .map(|u| {
            row(&list, u)["open_dialogs"]
                .as_i64()
                .expect("open_dialogs")
        })
        .collect()
}

async fn set_capacity(app: &TestApp, user: &Principal, max: i64) {
    let (status, body) = app
        .request(
            Method::PUT,
            Some(&app.admin),
            &format!("/api/v1/users/{}/capacity", user.id),
            Some(&json!({"max_dialogs": max})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_dialogs"], max, "{body}");
}

async fn set_routing(app: &TestApp, dept: i64, patch: Value) {
    let (status, body) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/departments/{dept}/routing"),
            &patch,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    if let Some(p) = patch.get("policy") {
        assert_eq!(&body["policy"], p, "{body}");
    }
    if let Some(t) = patch.get("offer_timeout_secs") {
        assert_eq!(&body["offer_timeout_secs"], t, "{body}");
    }
}

/// An operator's console: a socket that keeps the events arriving while it waits for the
/// reply to a command, so none is lost whichever comes first.
struct Console {
    ws: Ws,
    pending: VecDeque<Value>,
}

impl Console {
    /// Connects (the operator is online once this returns).
    async fn open(app: &TestApp, who: &Principal) -> Console {
        let (ws, hello) = Ws::operator(app, who).await;
        assert_eq!(hello["user_id"], who.id, "{hello}");
        Console {
            ws,
            pending: VecDeque::new(),
        }
    }

    /// Follows a topic from now on.
    async fn follow(&mut self, topic: &str) {
        let (events, sub) = self.ws.subscribe(topic, None).await;
        assert_eq!(sub["type"], "subscribed", "{sub}");
        self.pending.extend(events);
    }

    /// Sends a command frame with a fresh id; returns its reply (`ack` or `error`).
    async fn command(&mut self, mut frame: Value) -> Value {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = format!("c-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        frame["id"] = json!(id);
        self.ws.send(frame).await;
        loop {
            let v = self.ws.next().await;
            if v["type"] == "event" {
                self.pending.push_back(v);
            } else if v["id"] == id.as_str() {
                return v;
            }
        }
    }

    /// The first event, kept or new, that matches `pred`; earlier ones are dropped.
    async fn event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        while let Some(e) = self.pending.pop_front() {
            if pred(&e) {
                return e;
            }
        }
        self.ws.event_where(pred).await
    }

    /// The operator chooses `online` or `away`.
    async fn choose(&mut self, status: &str) {
        let ack = self
            .command(json!({"type": "presence", "status": status}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["presence"]["status"], status, "{ack}");
        assert_eq!(ack["presence"]["chosen"], status, "{ack}");
    }

    /// Closes the socket.
    async fn hang_up(mut self) {
        let _ = self.ws.stream.close(None).await;
    }
}

/// Whether `e` is a change of dialog `id`.
fn dialog_event(e: &Value, id: i64) -> bool {
    e["entity"] == "dialog" && e["entity_id"] == id
}

// ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_manager_gets_their_clients_inquiries() {
    let s = site("sticky manager").await;
    let app = &s.app;
    let anna = app.user("anna", Role::Operator, Some(s.sales)).await;
    let boris = app.user("boris", Role::Operator, Some(s.sales)).await;
    let maria = app.user("maria", Role::Manager, Some(s.sales)).await;
    let _wa = Console::open(app, &anna).await;
    let _wb = Console::open(app, &boris).await;
    let mut wm = Console::open(app, &maria).await;

    // Maria's client, known by a phone number.
    let (status, client) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "Romashka LLC", "responsible_id": maria.id,
                    "identities": [{"kind": "phone", "value": "8 (912) 345-67-89"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["responsible_id"], maria.id, "{client}");
    let client_id = client["id"].as_i64().expect("client id");
    let client_phone = "+7 912 345-67-89";

    // A stranger goes by round-robin: Anna.
    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &anna, "round_robin");

    // The client writes: Maria gets it, although it is Boris's turn.
    let out = inquiry_from(&s, 2, client_phone).await;
    assert!(out["new_lead"].is_null(), "the sender is known: {out}");
    assert_eq!(out["dialog"]["client_id"], client_id, "{out}");
    assert_assigned(&out, &maria, "sticky_manager");
    let d2 = dialog_of(&out);
    assert_eq!(history(app, d2).await, vec![to(&maria, "sticky_manager")]);

    // Maria away: the client's next inquiry goes by round-robin (Boris; Maria is skipped
    // as a round-robin candidate too).
    wm.choose("away").await;
    let out = inquiry_from(&s, 3, client_phone).await;
    assert_eq!(out["dialog"]["client_id"], client_id, "{out}");
    assert_assigned(&out, &boris, "round_robin");
    assert_eq!(
        history(app, dialog_of(&out)).await,
        vec![to(&boris, "round_robin")]
    );

    // Maria back but full: round-robin again (after Boris: Anna).
    set_capacity(app, &maria, 1).await;
    wm.choose("online").await;
    let out = inquiry_from(&s, 4, client_phone).await;
    assert_assigned(&out, &anna, "round_robin");
    assert_eq!(
        history(app, dialog_of(&out)).await,
        vec![to(&anna, "round_robin")]
    );

    // She closes the dialog she had: free again, she gets her client's next inquiry.
    let ack = wm.command(json!({"type": "close", "dialog_id": d2})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["status"], "closed", "{ack}");
    let out = inquiry_from(&s, 5, client_phone).await;
    assert_assigned(&out, &maria, "sticky_manager");
    assert_eq!(
        history(app, dialog_of(&out)).await,
        vec![to(&maria, "sticky_manager")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_goes_in_turn_and_wraps_around() {
    let s = site("round robin").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Manager, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(s.sales)).await;
    // Online but never routed to: a supervisor of the department, and an operator of
    // another department.
    let sup = app.user("sofia", Role::Supervisor, Some(s.sales)).await;
    let support = app.department("Support").await;
    let other = app.user("oleg", Role::Operator, Some(support)).await;
    let mut sockets = Vec::new();
    for p in [&a, &b, &c, &sup, &other] {
        sockets.push(Console::open(app, p).await);
    }

    let order = [&a, &b, &c, &a, &b, &c, &a];
    for (n, who) in (1..).zip(order) {
        let out = inquiry(&s, n).await;
        assert_assigned(&out, who, "round_robin");
        assert_eq!(
            history(app, dialog_of(&out)).await,
            vec![to(who, "round_robin")],
            "inquiry {n}"
        );
    }
    assert_eq!(loads(app, s.sales, &[&a, &b, &c, &sup]).await, [3, 2, 2, 0]);
    assert_eq!(loads(app, support, &[&other]).await, [0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_takes_fewest_open_then_longest_idle() {
    let s = site("least loaded").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(s.sales)).await;
    let mut sockets = Vec::new();
    for p in [&a, &b, &c] {
        sockets.push(Console::open(app, p).await);
    }

    // Load to start from: Anna's first dialog moves to Clara (a = 0, b = 1, c = 2).
    let d1 = dialog_of(&inquiry(&s, 1).await);
    inquiry(&s, 2).await;
    inquiry(&s, 3).await;
    let (status, asg) = app
        .post(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{d1}/assign"),
            &json!({"user_id": c.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asg}");
    assert_eq!(asg["reason"], "transfer", "{asg}");
    assert_eq!(loads(app, s.sales, &[&a, &b, &c]).await, [0, 1, 2]);

    set_routing(app, s.sales, json!({"policy": "least_loaded"})).await;
    // (inquiry, who gets it, open dialogs of a, b, c afterwards)
    let steps: [(u32, &Principal, [i64; 3]); 4] = [
        // Anna has none.
        (4, &a, [1, 1, 2]),
        // Anna and Boris have one each; Boris has waited longer (since inquiry 2), although
        // Anna comes first by id.
        (5, &b, [1, 2, 2]),
        // Anna has the fewest.
        (6, &a, [2, 2, 2]),
        // All even: Clara waited longest (since the transfer, before inquiry 4), although
        // she comes last by id.
        (7, &c, [2, 2, 3]),
    ];
    for (n, who, after) in steps {
        let out = inquiry(&s, n).await;
        assert_assigned(&out, who, "least_loaded");
        assert_eq!(
            history(app, dialog_of(&out)).await,
            vec![to(who, "least_loaded")],
            "inquiry {n}"
        );
        assert_eq!(
            loads(app, s.sales, &[&a, &b, &c]).await,
            after,
            "after inquiry {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_respected_and_raising_it_drains_the_queue() {
    let s = site("capacity").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    set_capacity(app, &a, 1).await;
    set_capacity(app, &b, 1).await;
    let _wa = Console::open(app, &a).await;
    let _wb = Console::open(app, &b).await;

    assert_assigned(&inquiry(&s, 1).await, &a, "round_robin");
    assert_assigned(&inquiry(&s, 2).await, &b, "round_robin");
    // Both full: the next inquiries wait in the queue.
    let out = inquiry(&s, 3).await;
    assert_queued(&out);
    let d3 = dialog_of(&out);
    let out = inquiry(&s, 4).await;
    assert_queued(&out);
    let d4 = dialog_of(&out);
    assert_eq!(history(app, d3).await, vec![queued()]);
    let list = operators(app, s.sales).await;
    for p in [&a, &b] {
        let r = row(&list, p);
        assert_eq!(r["open_dialogs"], 1, "{r}");
        assert_eq!(r["max_dialogs"], 1, "{r}");
        assert_eq!(r["status"], "online", "{r}");
    }

    // Anna may take two: the oldest waiting dialog goes to her at once, the other waits.
    set_capacity(app, &a, 2).await;
    wait_assignee(app, d3, &a).await;
    assert_eq!(
        history(app, d3).await,
        vec![queued(), to(&a, "round_robin")]
    );
    assert!(dialog(app, d4).await["assignee_id"].is_null());
    assert_eq!(loads(app, s.sales, &[&a, &b]).await, [2, 1]);

    // Capacity 0 takes nobody new, not even when the turn is theirs.
    set_capacity(app, &b, 0).await;
    set_capacity(app, &a, 3).await;
    wait_assignee(app, d4, &a).await;
    assert_eq!(
        history(app, d4).await,
        vec![queued(), to(&a, "round_robin")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_away_operators_are_skipped() {
    let s = site("offline and away").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(s.sales)).await;
    let _d = app.user("denis", Role::Operator, Some(s.sales)).await; // never connects
    set_capacity(app, &b, 3).await;

    // Anna is connected but away; Clara was here and left (past the grace period).
    let mut wa = Console::open(app, &a).await;
    wa.choose("away").await;
    let wc = Console::open(app, &c).await;
    wait_status(app, s.sales, &c, "online").await;
    wc.hang_up().await;
    wait_status(app, s.sales, &c, "offline").await;

    // Nobody to take it: queued.
    let out = inquiry(&s, 1).await;
    assert_queued(&out);
    let d1 = dialog_of(&out);

    // Boris connects: he gets the waiting dialog, and the next ones.
    let _wb = Console::open(app, &b).await;
    wait_assignee(app, d1, &b).await;
    assert_eq!(
        history(app, d1).await,
        vec![queued(), to(&b, "round_robin")]
    );
    for n in [2, 3] {
        let out = inquiry(&s, n).await;
        assert_assigned(&out, &b, "round_robin");
    }

    // Boris is full, Anna still away: queued.
    let out = inquiry(&s, 4).await;
    assert_queued(&out);
    let d4 = dialog_of(&out);

    // Anna back online: she takes it at once.
    wa.choose("online").await;
    wait_assignee(app, d4, &a).await;
    assert_eq!(
        history(app, d4).await,
        vec![queued(), to(&a, "round_robin")]
    );
    let r = row(&operators(app, s.sales).await, &c);
    assert_eq!(r["status"], "offline", "{r}");
    assert_eq!(r["open_dialogs"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_drains_when_a_dialog_closes_and_when_an_operator_connects() {
    let s = site("re-drain").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    set_capacity(app, &a, 1).await;
    set_capacity(app, &b, 1).await;
    let mut wa = Console::open(app, &a).await;
    wa.follow(&format!("user:{}", a.id)).await;

    let d1 = dialog_of(&inquiry(&s, 1).await);
    let waiting: Vec<i64> = {
        let mut v = Vec::new();
        for n in 2..=4 {
            let out = inquiry(&s, n).await;
            assert_queued(&out);
            v.push(dialog_of(&out));
        }
        v
    };
    let [d2, d3, d4] = waiting[..] else {
        unreachable!()
    };

    // The newest waiting customer writes again: the dialog keeps its place in the queue,
    // behind those who wait quietly, and no new assignment is recorded.
    let again = inbound("m-4b", "t-4", &phone(4), "Hello? Is anyone there?");
    let (status, out) = ingest(app, &s.key, &again).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["dialog"]["id"], d4, "{out}");
    assert!(
        out["assignment"].is_null(),
        "no routing for a waiting dialog: {out}"
    );
    assert_eq!(out["dialog"]["assign_reason"], "queued", "{out}");
    assert_eq!(history(app, d4).await, vec![queued()]);

    // Anna closes her dialog over the socket: the oldest waiting one comes to her.
    let ack = wa.command(json!({"type": "close", "dialog_id": d1})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["status"], "closed", "{ack}");
    let ev = wa
        .event(|e| dialog_event(e, d2) && e["op"] == "assign")
        .await;
    assert_eq!(ev["data"]["assignee_id"], a.id, "{ev}");
    assert_eq!(ev["data"]["assign_reason"], "round_robin", "{ev}");
    assert_eq!(
        history(app, d2).await,
        vec![queued(), to(&a, "round_robin")]
    );
    assert!(dialog(app, d3).await["assignee_id"].is_null());

    // Boris comes online: he takes the next one.
    let _wb = Console::open(app, &b).await;
    wait_assignee(app, d3, &b).await;
    assert_eq!(
        history(app, d3).await,
        vec![queued(), to(&b, "round_robin")]
    );
    assert!(dialog(app, d4).await["assignee_id"].is_null());

    // A dialog closed over REST frees a place too.
    let (status, d) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{d3}"),
            &json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    wait_assignee(app, d4, &b).await;
    assert_eq!(
        history(app, d4).await,
        vec![queued(), to(&b, "round_robin")]
    );
    assert_eq!(loads(app, s.sales, &[&a, &b]).await, [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_dialog_is_reoffered_to_the_next_operator() {
    let s = site("re-offer").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(s.sales)).await;
    let mut wa = Console::open(app, &a).await;
    let mut wb = Console::open(app, &b).await;
    let mut wc = Console::open(app, &c).await;
    wc.choose("away").await;
    wa.follow(&format!("user:{}", a.id)).await;
    set_routing(app, s.sales, json!({"offer_timeout_secs": 1})).await;

    // Anna gets it, then steps away without answering (so it cannot come back to her).
    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &a, "round_robin");
    let d1 = dialog_of(&out);
    wa.choose("away").await;

    // After the timeout it is offered to the next available operator: Boris (Clara is
    // away). Anna's socket learns it left her.
    let h = wait_history(app, d1, 2).await;
    assert_eq!(h, vec![to(&a, "round_robin"), to(&b, "reoffer_timeout")]);
    let ev = wa
        .event(|e| dialog_event(e, d1) && e["op"] == "transfer")
        .await;
    assert_eq!(ev["data"]["assignee_id"], b.id, "{ev}");
    assert_eq!(ev["data"]["assign_reason"], "reoffer_timeout", "{ev}");

    // Boris answers: the timer stops.
    let ack = wb
        .command(
            json!({"type": "send", "dialog_id": d1, "client_msg_id": "r-1",
                        "text": "Hello, how can I help?"}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(dialog(app, d1).await["waiting_since"].is_null());
    wa.choose("online").await;

    // Control: a dialog nobody answers, assigned after that answer, is re-offered to the
    // other one of the two.
    let out = inquiry(&s, 2).await;
    let d2 = dialog_of(&out);
    let (first, next) = if out["assignment"]["user_id"] == a.id {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_assigned(&out, first, "round_robin");
    let h = wait_history(app, d2, 2).await;
    assert_eq!(
        h[..2],
        [to(first, "round_robin"), to(next, "reoffer_timeout")]
    );

    // The re-offer timer has run since the answer, with Anna free: the answered dialog
    // stayed with Boris.
    assert_eq!(
        history(app, d1).await,
        vec![to(&a, "round_robin"), to(&b, "reoffer_timeout")]
    );
    let d = dialog(app, d1).await;
    assert_eq!(d["assignee_id"], b.id, "{d}");
    assert_eq!(d["assign_reason"], "reoffer_timeout", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_an_operator_and_to_a_department() {
    let s = site("transfer").await;
    let app = &s.app;
    let support = app.department("Support").await;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(support)).await;
    let mut wa = Console::open(app, &a).await;
    let mut wb = Console::open(app, &b).await;
    let mut wc = Console::open(app, &c).await;
    wa.follow(&format!("user:{}", a.id)).await;
    wb.follow(&format!("user:{}", b.id)).await;
    wc.follow(&format!("user:{}", c.id)).await;

    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &a, "round_robin");
    let d1 = dialog_of(&out);

    // Anna hands it to Boris over the socket.
    let ack = wa
        .command(json!({"type": "transfer", "dialog_id": d1, "user_id": b.id}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["assignment"]["user_id"], b.id, "{ack}");
    assert_eq!(ack["assignment"]["reason"], "transfer", "{ack}");
    assert_eq!(ack["assignment"]["by_user_id"], a.id, "{ack}");
    // Both hear of it, Anna's "my dialogs" as a transfer away from her.
    let ev = wa
        .event(|e| dialog_event(e, d1) && e["data"]["assignee_id"] == b.id)
        .await;
    assert_eq!(ev["op"], "transfer", "{ev}");
    let ev = wb
        .event(|e| dialog_event(e, d1) && e["data"]["assignee_id"] == b.id)
        .await;
    assert_eq!(ev["op"], "transfer", "{ev}");
    let rec = assignments(app, d1).await;
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert_eq!(rec[1]["user_id"], b.id);
    assert_eq!(rec[1]["reason"], "transfer");
    assert_eq!(rec[1]["by_user_id"], a.id);
    assert_eq!(rec[1]["department_id"], s.sales);
    assert_eq!(loads(app, s.sales, &[&a, &b]).await, [0, 1]);

    // Boris sends it to Support: routed there at once, to Clara. (What Boris's socket is
    // told: see `transfer_to_a_department_is_a_transfer_for_the_previous_assignee`.)
    let ack = wb
        .command(json!({"type": "transfer", "dialog_id": d1, "department_id": support}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["assignment"]["user_id"], c.id, "{ack}");
    assert_eq!(ack["assignment"]["department_id"], support, "{ack}");
    let ev = wc
        .event(|e| dialog_event(e, d1) && e["data"]["assignee_id"] == c.id)
        .await;
    assert_eq!(ev["op"], "assign", "{ev}");
    assert_eq!(ev["data"]["department_id"], support, "{ev}");
    // Boris's "my dialogs" learns it left him.
    let ev = wb
        .event(|e| dialog_event(e, d1) && e["data"]["department_id"] == support)
        .await;
    assert_ne!(ev["data"]["assignee_id"], b.id, "{ev}");
    let rec = assignments(app, d1).await;
    let last = rec.last().expect("records");
    assert_eq!(last["user_id"], c.id, "{rec:?}");
    assert_eq!(last["reason"], "round_robin", "{rec:?}");
    assert_eq!(last["department_id"], support, "{rec:?}");
    assert!(
        rec[2..rec.len() - 1]
            .iter()
            .all(|r| r["by_user_id"] == b.id && r["department_id"] == support),
        "the hand-off is Boris's, to Support: {rec:?}"
    );
    let d = dialog(app, d1).await;
    assert_eq!(d["assignee_id"], c.id, "{d}");
    assert_eq!(d["department_id"], support, "{d}");
    assert_eq!(loads(app, s.sales, &[&a, &b]).await, [0, 0]);
    assert_eq!(loads(app, support, &[&c]).await, [1]);

    // The admin moves it back to Anna over REST.
    let (status, asg) = app
        .post(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{d1}/assign"),
            &json!({"user_id": a.id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asg}");
    assert_eq!(asg["reason"], "transfer", "{asg}");
    assert_eq!(asg["user_id"], a.id, "{asg}");
    assert_eq!(asg["by_user_id"], app.admin.id, "{asg}");
    assert_eq!(asg["department_id"], s.sales, "{asg}");
    let ev = wc
        .event(|e| dialog_event(e, d1) && e["data"]["assignee_id"] == a.id)
        .await;
    assert_eq!(ev["op"], "transfer", "{ev}");
    let rec = assignments(app, d1).await;
    let last = rec.last().expect("records");
    assert_eq!(last["reason"], "transfer", "{rec:?}");
    assert_eq!(last["user_id"], a.id, "{rec:?}");
    assert_eq!(last["by_user_id"], app.admin.id, "{rec:?}");

    // To a department where nobody is online: it waits there, and the first operator to
    // connect takes it.
    let night = app.department("Night shift").await;
    let (status, asg) = app
        .post(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{d1}/assign"),
            &json!({"department_id": night}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asg}");
    assert!(asg["user_id"].is_null(), "{asg}");
    assert_eq!(asg["department_id"], night, "{asg}");
    assert_eq!(asg["by_user_id"], app.admin.id, "{asg}");
    let d = dialog(app, d1).await;
    assert!(d["assignee_id"].is_null(), "{d}");
    assert_eq!(d["department_id"], night, "{d}");
    let nina = app.user("nina", Role::Operator, Some(night)).await;
    let _wn = Console::open(app, &nina).await;
    wait_assignee(app, d1, &nina).await;
    let rec = history(app, d1).await;
    assert_eq!(rec.last(), Some(&to(&nina, "round_robin")), "{rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_goes_offline_after_the_grace_period() {
    let s = site("presence").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let mut admin_ws = Console::open(app, &app.admin).await;
    admin_ws.follow(&format!("dept:{}", s.sales)).await;

    // Never connected: offline, default capacity.
    let r = row(&operators(app, s.sales).await, &a);
    assert_eq!(r["status"], "offline", "{r}");
    assert_eq!(r["open_dialogs"], 0, "{r}");
    assert_eq!(r["max_dialogs"], 5, "{r}");
    assert_eq!(r["on_call"], false, "{r}");

    // Connected: online at once, and the department sees it live.
    let mut wa = Console::open(app, &a).await;
    let r = row(&operators(app, s.sales).await, &a);
    assert_eq!(r["status"], "online", "{r}");
    let ev = admin_ws
        .event(|e| e["entity"] == "presence" && e["entity_id"] == a.id)
        .await;
    assert_eq!(ev["op"], "update", "{ev}");
    assert_eq!(ev["data"]["status"], "online", "{ev}");
    let online_since = r["since"].clone();

    // The load shows.
    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &a, "round_robin");
    let d1 = dialog_of(&out);
    let r = row(&operators(app, s.sales).await, &a);
    assert_eq!(r["open_dialogs"], 1, "{r}");

    // Away and back.
    wa.choose("away").await;
    let r = row(&operators(app, s.sales).await, &a);
    assert_eq!(
        (&r["status"], &r["chosen"]),
        (&json!("away"), &json!("away")),
        "{r}"
    );
    wa.choose("online").await;

    // Offline is not something one chooses.
    let err = wa
        .command(json!({"type": "presence", "status": "offline"}))
        .await;
    assert_eq!(err["type"], "error", "{err}");

    // A reconnect within the grace period keeps them online.
    wa.hang_up().await;
    let wa = Console::open(app, &a).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = row(&operators(app, s.sales).await, &a);
    assert_eq!(r["status"], "online", "{r}");

    // Gone for longer than the grace period: offline, live and in the list.
    wa.hang_up().await;
    let r = wait_status(app, s.sales, &a, "offline").await;
    assert_ne!(r["since"], online_since, "{r}");
    assert_eq!(r["open_dialogs"], 1, "{r}");
    let ev = admin_ws
        .event(|e| {
            e["entity"] == "presence" && e["entity_id"] == a.id && e["data"]["status"] == "offline"
        })
        .await;
    assert_eq!(ev["op"], "update", "{ev}");

    // Presence alone moves no dialog: it stays with her (re-offer is off by default).
    assert_eq!(history(app, d1).await, vec![to(&a, "round_robin")]);
}

/// Regression: on PostgreSQL the SUM of connections is NUMERIC, which the `Any` driver
/// cannot read as i64; every expiry failed and operators never went offline there. The
/// store casts the sum to BIGINT. Called directly so an error shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_expiry_works_on_this_backend() {
    let s = site("presence expiry").await;
    let a = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let wa = Console::open(&s.app, &a).await;
    wa.hang_up().await;
    // What the grace timer calls, called directly so the error shows. (The server notices
    // the hang-up asynchronously: until then the connection still counts.)
    let deadline = Instant::now() + ROUTE_WAIT;
    loop {
        let state = s
            .app
            .store
            .presence_expire(a.id, kommutator::domain::Timestamp(0))
            .await
            .expect("presence_expire fails on this backend");
        if state.status == kommutator::domain::PresenceStatus::Offline {
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", state.status);
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------------------------------------
// Regressions of routing bugs found while writing these tests.

/// A transfer to a department is a `transfer` (not a `queue`) for the previous assignee's
/// `user:` topic, and is recorded as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_a_department_is_a_transfer_for_the_previous_assignee() {
    let s = site("transfer to a department ").await;
    let app = &s.app;
    let support = app.department("Support").await;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let c = app.user("clara", Role::Operator, Some(support)).await;
    let mut wa = Console::open(app, &a).await;
    let _wc = Console::open(app, &c).await;
    wa.follow(&format!("user:{}", a.id)).await;
    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &a, "round_robin");
    let d1 = dialog_of(&out);

    let ack = wa
        .command(json!({"type": "transfer", "dialog_id": d1, "department_id": support}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wait_assignee(app, d1, &c).await;
    let rec = assignments(app, d1).await;
    assert!(
        rec[1..].iter().any(|r| r["reason"] == "transfer"
            && r["by_user_id"] == a.id
            && r["department_id"] == support),
        "the hand-off should be recorded as a transfer by Anna to Support: {rec:?}"
    );
    let ev = wa
        .event(|e| dialog_event(e, d1) && e["data"]["department_id"] == support)
        .await;
    assert_eq!(ev["op"], "transfer", "{ev}");

    // Nobody in the department: the reply is what was recorded.
    let night = app.department("Night shift").await;
    let (status, asg) = app
        .post(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{d1}/assign"),
            &json!({"department_id": night}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asg}");
    let rec = assignments(app, d1).await;
    let last = rec.last().expect("records");
    assert_eq!(
        (&asg["user_id"], &asg["reason"]),
        (&last["user_id"], &last["reason"]),
        "reply {asg} vs record {last}"
    );
}

/// The offer timeout runs from the later of the assignment and the moment the dialog
/// started waiting again (our clock), so a follow-up in an answered conversation gets the
/// full timeout instead of being re-offered at the next tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_message_gets_the_full_offer_timeout() {
    let s = site("follow-up re-offer ").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let _wa = Console::open(app, &a).await;
    let _wb = Console::open(app, &b).await;
    set_routing(app, s.sales, json!({"offer_timeout_secs": 3})).await;

    let out = inquiry(&s, 1).await;
    assert_assigned(&out, &a, "round_robin");
    let d1 = dialog_of(&out);
    let (status, m) = app
        .post(
            Some(&a),
            &format!("/api/v1/dialogs/{d1}/messages"),
            &json!({"body": "Hello! Yes, we deliver."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    // The conversation goes on for longer than the timeout.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(history(app, d1).await, vec![to(&a, "round_robin")]);

    // The customer writes again, now.
    let mut ev = inbound("m-1b", "t-1", &phone(1), "And on Sundays?");
    ev["occurred_at"] = serde_json::to_value(kommutator::domain::Timestamp::now()).expect("ts");
    let (status, out) = ingest(app, &s.key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["dialog"]["id"], d1, "{out}");

    // Anna has the full timeout to answer: nothing moves for the next two seconds (the
    // re-offer tick runs every second).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(
            history(app, d1).await,
            vec![to(&a, "round_robin")],
            "re-offered before the offer timeout passed since the customer's message"
        );
        tokio::time::sleep(POLL).await;
    }
    // Then it is re-offered.
    let h = wait_history(app, d1, 2).await;
    assert_eq!(h[1], to(&b, "reoffer_timeout"));
}

/// An operator who transfers a dialog to their own department does not get it straight
/// back while a colleague has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_to_own_department_goes_to_a_colleague() {
    let s = site("transfer to own department ").await;
    let app = &s.app;
    let a = app.user("anna", Role::Operator, Some(s.sales)).await;
    let b = app.user("boris", Role::Operator, Some(s.sales)).await;
    let mut wa = Console::open(app, &a).await;
    let _wb = Console::open(app, &b).await;
    let d1 = dialog_of(&inquiry(&s, 1).await);
    assert_assigned(&inquiry(&s, 2).await, &b, "round_robin");
    // The turn is Anna's again; she hands her dialog to the department.
    let ack = wa
        .command(json!({"type": "transfer", "dialog_id": d1, "department_id": s.sales}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let d = dialog(app, d1).await;
    assert_eq!(
        d["assignee_id"],
        b.id,
        "Boris is online with room; history: {:?}",
        history(app, d1).await
    );
}
