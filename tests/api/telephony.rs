//! Calls through the pipeline: a call's events (as any telephony connector hands them over)
//! open the call, recognise the caller or make a lead, reach the operator whose extension
//! rings before anyone answers, leave a callback task when missed, and tolerate duplicates,
//! reordering and bad input with nothing half-stored.

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

fn call_event(id: &str, call: &str, at: &str, kind: Value) -> Value {
    json!({
        "connector_id": "site",
        "external_id": id,
        "occurred_at": at,
        "kind": {"type": "call", "call_external_id": call, "kind": kind},
    })
}

fn ringing(from: &str, to: &str, ext: &str) -> Value {
    json!({"type": "ringing", "from": from, "to": to, "direction": "inbound", "extension": ext})
}

async fn post(app: &TestApp, key: &Principal, ev: &Value) -> Value {
    let (status, out) = ingest(app, key, ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

async fn call_by_ext_id(app: &TestApp, call: &str) -> Value {
    let (_, page) = app.get(Some(&app.admin), "/api/v1/calls?limit=200").await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["external_id"] == call)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_unknown_caller_pops_up_at_the_operator_before_the_answer_and_the_call_lands_in_the_feed(
) {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;

    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;

    let out = post(
        &app,
        &key,
        &call_event(
            "c1:ringing",
            "c1",
            "2026-12-05T10:00:00Z",
            ringing("8 (916) 555-00-01", "+7 495 000-00-00", "101"),
        ),
    )
    .await;
    assert_eq!(out["result"], "call", "{out}");
    assert_eq!(out["status"], "applied", "{out}");
    assert_eq!(out["created"], true);
    let lead = out["new_lead"]
        .as_i64()
        .expect("an unknown caller becomes a lead");

    // The screen pop: anna's socket hears of the ringing call, with the caller's lead.
    let ev = ws
        .event_where(|e| e["entity"] == "call" && e["op"] == "create")
        .await;
    assert_eq!(ev["data"]["status"], "ringing", "{ev}");
    assert_eq!(ev["data"]["operator_id"], anna.id);
    assert_eq!(ev["data"]["from_number"], "+79165550001");
    assert_eq!(ev["data"]["lead_id"], lead);
    assert!(
        ev["data"]["interest_id"].is_i64(),
        "a new caller's Interest: {ev}"
    );

    post(
        &app,
        &key,
        &call_event(
            "c1:answered",
            "c1",
            "2026-12-05T10:00:07Z",
            json!({"type": "answered", "by_extension": "101"}),
        ),
    )
    .await;
    let out = post(
        &app,
        &key,
        &call_event(
            "c1:hangup",
            "c1",
            "2026-12-05T10:02:07Z",
            json!({"type": "hung_up", "duration_secs": null, "cause": "Normal Clearing"}),
        ),
    )
    .await;
    assert_eq!(out["call"]["status"], "completed", "{out}");
    assert_eq!(out["call"]["duration_secs"], 120);
    // Delivered again: nothing changes, nothing is logged.
    let seq = app.last_seq().await;
    let out = post(
        &app,
        &key,
        &call_event(
            "c1:hangup",
            "c1",
            "2026-12-05T10:02:07Z",
            json!({"type": "hung_up", "duration_secs": null, "cause": null}),
        ),
    )
    .await;
    assert_eq!(out["status"], "duplicate", "{out}");
    assert_eq!(app.last_seq().await, seq);

    let (_, feed) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/leads/{lead}/feed?kinds=call"),
        )
        .await;
    let items = feed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{feed}");
    assert_eq!(items[0]["title"], "Call from +79165550001");
    assert_eq!(items[0]["preview"], "2:00");
}

#[tokio::test]
async fn a_missed_call_leaves_one_callback_task_which_the_next_answered_call_completes() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    let (status, client) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "Ivan", "responsible_id": anna.id,
            "identities": [{"kind": "phone", "value": "+7 916 555-00-02"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client = client["id"].as_i64().expect("client");

    // Twice missed: one task to call back, for the operator who was rung.
    for (n, reason) in [(1, "cancelled"), (2, "no_answer")] {
        let call = format!("m{n}");
        post(
            &app,
            &key,
            &call_event(
                &format!("{call}:r"),
                &call,
                "2026-12-05T11:00:00Z",
                ringing("+79165550002", "+74950000000", "101"),
            ),
        )
        .await;
        let out = post(
            &app,
            &key,
            &call_event(
                &format!("{call}:m"),
                &call,
                "2026-12-05T11:00:20Z",
                json!({"type": "missed", "reason": reason}),
            ),
        )
        .await;
        assert_eq!(out["call"]["status"], "missed", "{out}");
        assert_eq!(out["call"]["missed_reason"], reason);
        assert_eq!(out["call"]["client_id"], client);
        if n == 1 {
            assert!(out["callback_task"].is_i64(), "{out}");
        } else {
            assert_eq!(
                out["callback_task"],
                Value::Null,
                "one open callback per number: {out}"
            );
        }
    }
    let (_, tasks) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/interactions?client_id={client}&status=planned"),
        )
        .await;
    let tasks = tasks["items"].as_array().expect("items").clone();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["subject"], "Call back +79165550002");
    assert_eq!(tasks[0]["responsible_id"], anna.id);
    assert_eq!(tasks[0]["kind"], "task");

    // Anna calls back (or the client calls again) and gets through: the task is done.
    post(
        &app,
        &key,
        &call_event(
            "b1:r",
            "b1",
            "2026-12-05T12:00:00Z",
            json!({"type": "ringing", "from": "101",
        "to": "+79165550002", "direction": "outbound", "extension": "101"}),
        ),
    )
    .await;
    let out = post(
        &app,
        &key,
        &call_event(
            "b1:a",
            "b1",
            "2026-12-05T12:00:05Z",
            json!({"type": "answered", "by_extension": null}),
        ),
    )
    .await;
    assert_eq!(out["callbacks_done"], json!([tasks[0]["id"]]), "{out}");
    let (_, t) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/interactions/{}", tasks[0]["id"]),
        )
        .await;
    assert_eq!(t["status"], "done", "{t}");
}

#[tokio::test]
async fn events_before_the_ring_wait_for_it_and_the_traffic_source_is_recorded() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;

    // UDP and webhooks reorder: the hang-up and the answer come first.
    let out = post(
        &app,
        &key,
        &call_event(
            "x:h",
            "x",
            "2026-12-05T13:01:00Z",
            json!({"type": "hung_up", "duration_secs": 42, "cause": null}),
        ),
    )
    .await;
    assert_eq!(out["status"], "waiting", "{out}");
    let out = post(
        &app,
        &key,
        &call_event(
            "x:a",
            "x",
            "2026-12-05T13:00:18Z",
            json!({"type": "answered", "by_extension": "102"}),
        ),
    )
    .await;
    assert_eq!(out["status"], "waiting", "{out}");
    assert_eq!(call_by_ext_id(&app, "x").await, Value::Null);
    let mut ring = call_event(
        "x:r",
        "x",
        "2026-12-05T13:00:00Z",
        ringing("+7 916 555-00-03", "+74950000000", "102"),
    );
    ring["raw"] = json!({"traffic_source": {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "chairs", "provider": "roistat"}});
    let out = post(&app, &key, &ring).await;
    assert_eq!(out["call"]["status"], "completed", "{out}");
    assert_eq!(out["call"]["duration_secs"], 42);
    assert_eq!(out["call"]["extension"], "102");
    assert_eq!(out["call"]["traffic_source"]["utm_campaign"], "chairs");
    let lead = out["new_lead"].as_i64().expect("lead");
    let (_, l) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}"))
        .await;
    assert_eq!(l["source"], "yandex / cpc / chairs", "{l}");
    let interest = out["call"]["interest_id"].as_i64().expect("interest");
    let (_, i) = app
        .get(Some(&app.admin), &format!("/api/v1/interests/{interest}"))
        .await;
    assert_eq!(i["source"], "yandex / cpc / chairs", "{i}");
}

#[tokio::test]
async fn bad_call_events_are_refused_with_nothing_stored() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let seq = app.last_seq().await;
    let long = "9".repeat(300);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "letters for a number",
            call_event(
                "b:1",
                "b",
                "2026-12-05T10:00:00Z",
                ringing("call me maybe", "+74950000000", "101"),
            ),
            "from",
        ),
        (
            "bad extension",
            call_event(
                "b:2",
                "b",
                "2026-12-05T10:00:00Z",
                ringing("+79165550004", "+74950000000", "1O1"),
            ),
            "extension",
        ),
        (
            "control characters in the call id",
            call_event(
                "b:3",
                "b\u{7}",
                "2026-12-05T10:00:00Z",
                ringing("+79165550004", "+74950000000", "101"),
            ),
            "call_external_id",
        ),
        (
            "oversized call id",
            call_event(
                "b:4",
                &long,
                "2026-12-05T10:00:00Z",
                ringing("+79165550004", "+74950000000", "101"),
            ),
            "call_external_id",
        ),
        (
            "empty recording url",
            call_event(
                "b:5",
                "b",
                "2026-12-05T10:00:00Z",
                json!({"type": "recording_available", "url": " "}),
            ),
            "url",
        ),
    ];
    for (name, ev, field) in cases {
        let (status, body) = ingest(&app, &key, &ev).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body["error"]["field"], field, "{name}: {body}");
    }
    // Unknown step kinds and missing fields are malformed JSON for the contract.
    for bad in [
        json!({"type": "exploded"}),
        json!({"type": "ringing", "from": "+79165550004"}),
        json!({"type": "missed", "reason": "bored"}),
    ] {
        let (status, body) = ingest(
            &app,
            &key,
            &call_event("b:6", "b", "2026-12-05T10:00:00Z", bad.clone()),
        )
        .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {status} {body}"
        );
    }
    assert_eq!(app.last_seq().await, seq, "nothing logged");
    assert_eq!(call_by_ext_id(&app, "b").await, Value::Null);
    // The refused keys were not consumed: the same ids go through once valid.
    let out = post(
        &app,
        &key,
        &call_event(
            "b:1",
            "b",
            "2026-12-05T10:00:00Z",
            ringing("+79165550004", "+74950000000", "101"),
        ),
    )
    .await;
    assert_eq!(out["status"], "applied", "{out}");

    // Extensions: checked and unique.
    let anna = app.user("anna", Role::Operator, None).await;
    let boris = app.user("boris", Role::Operator, None).await;
    app.set_extension(&anna, "101").await;
    let got = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", boris.id),
            &json!({"extension": "101"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "duplicate", Some("extension"));
    let got = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", boris.id),
            &json!({"extension": "ext-5"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_extension",
        Some("extension"),
    );
    let (status, body) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", anna.id),
            &json!({"extension": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["extension"], Value::Null, "empty clears");
    app.set_extension(&boris, "101").await;
}

fn with_cti(c: &mut kommutator::config::Config) {
    let inst: kommutator::config::ConnectorConfig = toml::from_str(
        "type = \"cti_webhook\"\ndepartment = \"Sales\"\ntoken = \"office-pbx-shared-token\"\n\
         default_country_code = \"7\"\nblocked_numbers = [\"+74950000666\"]\n",
    )
    .expect("config");
    c.connectors.insert("office".into(), inst);
}

async fn cti(app: &TestApp, token: &str, form: &str) -> (StatusCode, Value) {
    app.raw(
        reqwest::Method::POST,
        None,
        &format!("/hooks/office/?token={token}"),
        "application/x-www-form-urlencoded",
        form.as_bytes().to_vec(),
    )
    .await
}

#[tokio::test]
async fn a_pbx_posting_cti_webhooks_rings_the_operator_and_a_blocked_caller_is_rejected() {
    let app = spawn_app_with(with_cti).await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;

    const TOKEN: &str = "office-pbx-shared-token";
    let got = cti(
        &app,
        TOKEN,
        "event=newCall&from=89165550010&to=101&direction=in&callId=pbx-1&user%5B%5D=anna",
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    let ev = ws
        .event_where(|e| e["entity"] == "call" && e["op"] == "create")
        .await;
    assert_eq!(ev["data"]["from_number"], "+79165550010", "{ev}");
    assert_eq!(ev["data"]["operator_id"], anna.id);
    assert_eq!(ev["data"]["connector_id"], "office");

    let got = cti(
        &app,
        TOKEN,
        "event=answer&from=89165550010&to=101&direction=in&callId=pbx-1&answeringNumber=101",
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    let got = cti(&app, TOKEN, "event=hangup&from=89165550010&to=101&direction=in&callId=pbx-1&cause=normalClearing&answeringNumber=101").await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    let ev = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["status"] == "completed")
        .await;
    assert_eq!(ev["data"]["external_id"], "pbx-1", "{ev}");

    // A wrong token stores nothing.
    let seq = app.last_seq().await;
    let got = cti(
        &app,
        "wrong-token-wrong-token",
        "event=newCall&from=89165550011&to=101&direction=in&callId=pbx-2",
    )
    .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{got:?}");
    let got = cti(
        &app,
        TOKEN,
        "event=newCall&from=89165550011&to=101&direction=sideways&callId=pbx-2",
    )
    .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{got:?}");
    assert_eq!(app.last_seq().await, seq);

    // A blocked caller: the PBX is told to reject; the attempt is still on record.
    let got = cti(
        &app,
        TOKEN,
        "event=newCall&from=84950000666&to=101&direction=in&callId=pbx-3",
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    assert_eq!(got.1, json!({"action": "reject", "reason": "busy"}));
    // The hand-over is asynchronous to the answer; the call shows up right after.
    let ev = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["external_id"] == "pbx-3")
        .await;
    assert_eq!(ev["data"]["from_number"], "+74950000666");

    let (_, conns) = app.get(Some(&app.admin), "/api/v1/connectors").await;
    assert!(conns.to_string().contains("\"office\""), "{conns}");

    // No telephony instance can dial out here: click-to-call says so.
    let got = app
        .post(
            Some(&anna),
            "/api/v1/calls/originate",
            &json!({"to": "+79165550010"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "no_telephony", None);
}

#[tokio::test]
async fn configured_extensions_move_to_their_operators() {
    let app = spawn_app().await;
    let anna = app.user("anna", Role::Operator, None).await;
    let boris = app.user("boris", Role::Operator, None).await;
    app.set_extension(&boris, "101").await;
    // What start-up does with `[telephony.extensions] "101" = "anna"` (and two bad pairs).
    let warnings = app
        .store
        .assign_extensions(&[
            ("101".into(), "anna".into()),
            ("102".into(), "nobody".into()),
            ("10x".into(), "anna".into()),
        ])
        .await
        .expect("applied");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("no user `nobody`"), "{warnings:?}");
    let (_, a) = app
        .get(Some(&app.admin), &format!("/api/v1/users/{}", anna.id))
        .await;
    let (_, b) = app
        .get(Some(&app.admin), &format!("/api/v1/users/{}", boris.id))
        .await;
    assert_eq!(a["extension"], "101", "{a}");
    assert_eq!(b["extension"], Value::Null, "taken from boris: {b}");
}
