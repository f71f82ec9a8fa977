//! Replay: the fixture sessions posted over real loopback HTTP to the connector's router,
//! with `run` alive beside it, then a clean shutdown. Error paths go through the same
//! router with `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use kommutator_cti_webhook::{Config, CtiWebhook};
use kommutator_sdk::testing::http_request;
use kommutator_sdk::{
    CallEventKind, Connector, ConnectorContext, Direction, InboundEvent, InboundKind, MissedReason,
    TestHarness,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower::ServiceExt;

const TOKEN: &str = "replay-token-0123456789";
const WAIT: Duration = Duration::from_secs(5);

fn connector() -> CtiWebhook {
    let config: Config = serde_json::from_value(json!({
        "token": TOKEN,
        "default_country_code": "49",
        "blocked_numbers": ["+49 30 1234567"],
    }))
    .unwrap();
    CtiWebhook::new(config).unwrap()
}

fn fixture_lines(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One `POST` on a fresh connection, the way a PBX would send it; the body read as JSON.
async fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, body) = http_request(addr, "POST", path, headers, body)
        .await
        .unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn post_session(addr: SocketAddr, fixture: &str, hub: &mut TestHarness) -> Vec<InboundEvent> {
    let ct = if fixture.ends_with(".jsonl") {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let bearer = format!("Bearer {TOKEN}");
    let mut events = vec![];
    for (i, line) in fixture_lines(fixture).iter().enumerate() {
        // Alternate the two ways of passing the token.
        let (status, body) = if i % 2 == 0 {
            http_post(
                addr,
                &format!("/?token={TOKEN}"),
                &[("Content-Type", ct)],
                line,
            )
            .await
        } else {
            http_post(
                addr,
                "/",
                &[("Content-Type", ct), ("Authorization", &bearer)],
                line,
            )
            .await
        };
        assert_eq!(status, 200, "{fixture} line {i}: {body}");
        if !fixture.starts_with("blocked") {
            assert_eq!(body, json!({}), "{fixture} line {i}");
        }
        events.push(hub.next_event(WAIT).await.expect("an event per request"));
    }
    events
}

fn call(ev: &InboundEvent) -> (&str, &CallEventKind) {
    let InboundKind::Call(call) = &ev.kind else {
        panic!("not a call event: {ev:?}");
    };
    (call.call_external_id.as_str(), &call.kind)
}

#[tokio::test]
async fn replay_sessions_over_loopback_http_then_shut_down() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("office_cti");
    let router = conn.routes(&ctx).unwrap();
    let run = tokio::spawn(conn.run(ctx));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = hub.shutdown_token().clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });

    // Inbound, answered at extension 4930.
    let evs = post_session(addr, "inbound_answered.form", &mut hub).await;
    let id = "f4ebd2be-7b9a-4d58-9457-a1b2c3d4e5f6";
    let keys: Vec<&str> = evs.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{id}:newCall"),
            format!("{id}:answer"),
            format!("{id}:hangup")
        ]
    );
    assert!(evs.iter().all(|e| e.connector_id.as_str() == "office_cti"));
    assert_eq!(
        call(&evs[0]),
        (
            id,
            &CallEventKind::Ringing {
                from: "+493055571600".to_owned(),
                to: "4930".to_owned(),
                direction: Direction::Inbound,
                extension: Some("4930".to_owned()),
            }
        )
    );
    assert_eq!(evs[0].raw.as_ref().unwrap()["user"], json!(["Alice Smith"]));
    assert_eq!(evs[0].raw.as_ref().unwrap()["queue"], "helpdesk");
    assert_eq!(
        call(&evs[1]).1,
        &CallEventKind::Answered {
            by_extension: Some("4930".to_owned())
        }
    );
    let CallEventKind::HungUp {
        duration_secs,
        cause,
    } = call(&evs[2]).1
    else {
        panic!("{:?}", evs[2]);
    };
    assert!(duration_secs.is_some());
    assert_eq!(cause.as_deref(), Some("normalClearing"));

    // Inbound group call, caller gives up.
    let evs = post_session(addr, "inbound_group_cancelled.form", &mut hub).await;
    assert_eq!(
        call(&evs[0]).1,
        &CallEventKind::Ringing {
            from: "+492214710334".to_owned(),
            to: "+493023125741".to_owned(),
            direction: Direction::Inbound,
            extension: None,
        }
    );
    assert_eq!(
        evs[0].raw.as_ref().unwrap()["user"],
        json!(["Alice Smith", "Bob Jones"])
    );
    assert_eq!(
        call(&evs[1]).1,
        &CallEventKind::Missed {
            reason: MissedReason::Cancelled
        }
    );

    // Outbound from extension 4931, JSON bodies.
    let evs = post_session(addr, "outbound_answered.jsonl", &mut hub).await;
    assert_eq!(
        call(&evs[0]).1,
        &CallEventKind::Ringing {
            from: "4931".to_owned(),
            to: "+492214710334".to_owned(),
            direction: Direction::Outbound,
            extension: Some("4931".to_owned()),
        }
    );
    assert_eq!(
        call(&evs[1]).1,
        &CallEventKind::Answered {
            by_extension: Some("492214710334".to_owned())
        }
    );
    assert!(matches!(
        call(&evs[2]).1,
        CallEventKind::HungUp {
            duration_secs: Some(_),
            ..
        }
    ));

    // Anonymous caller, numeric callId, busy.
    let evs = post_session(addr, "inbound_busy.jsonl", &mut hub).await;
    assert_eq!(evs[0].external_id, "123456789:newCall");
    assert_eq!(
        call(&evs[0]),
        (
            "123456789",
            &CallEventKind::Ringing {
                from: "anonymous".to_owned(),
                to: "+493023125741".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        )
    );
    assert_eq!(
        call(&evs[1]).1,
        &CallEventKind::Missed {
            reason: MissedReason::Busy
        }
    );

    // A blocked caller: Zammad's reject answer, and the call is still recorded.
    let line = &fixture_lines("blocked_caller.form")[0];
    let (status, body) = http_post(
        addr,
        &format!("/?token={TOKEN}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        line,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"action": "reject", "reason": "busy"}))
    );
    let ev = hub.next_event(WAIT).await.unwrap();
    assert_eq!(ev.external_id, "blocked-1:newCall");
    assert!(matches!(call(&ev).1, CallEventKind::Ringing { from, .. } if from == "+49301234567"));
    assert_eq!(ev.raw.as_ref().unwrap()["rejected_as_blocked"], true);

    // A redelivered request gives the same key (the hub keeps one copy).
    let first = &fixture_lines("inbound_group_cancelled.form")[0];
    let (status, _) = http_post(
        addr,
        &format!("/?token={TOKEN}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        first,
    )
    .await;
    assert_eq!(status, 200);
    let dup = hub.next_event(WAIT).await.unwrap();
    assert_eq!(dup.external_id, "5fb9532f40da834a:newCall");

    // Bad token, over the wire too: nothing reaches the hub.
    let (status, body) = http_post(addr, "/?token=wrong", &[], "event=hangup&callId=x").await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "missing or invalid token"}))
    );
    assert!(hub.try_next_event().is_none());

    // Clean shutdown: `run` returns Ok and the server drains.
    hub.shutdown();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn oneshot(
    router: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::post(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bad_requests_are_rejected_and_nothing_is_sent() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("office_cti");
    let router = conn.routes(&ctx).unwrap();
    let uri = format!("/?token={TOKEN}");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let json_ct = ("content-type", "application/json");
    type Case<'a> = (
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/".to_owned(),
            vec![form],
            b"event=hangup&callId=x".to_vec(),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            "/?token=nope".to_owned(),
            vec![form],
            b"event=hangup&callId=x".to_vec(),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            "/".to_owned(),
            vec![form, ("authorization", "Basic Zm9vOmJhcg==")],
            b"event=hangup&callId=x".to_vec(),
            StatusCode::UNAUTHORIZED,
            "missing or invalid token",
        ),
        (
            uri.clone(),
            vec![json_ct],
            b"{\"event\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            uri.clone(),
            vec![form],
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "body is not a form or JSON object",
        ),
        (
            uri.clone(),
            vec![form],
            b"event=transfer&callId=x".to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown event \"transfer\", expected newCall, answer or hangup",
        ),
        (
            uri.clone(),
            vec![form],
            b"event=newCall&callId=x&from=1&to=2&direction=up".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid direction \"up\", expected in or out",
        ),
        (
            uri.clone(),
            vec![form],
            b"event=answer".to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `callId`",
        ),
        (
            uri.clone(),
            vec![form],
            b"event=answer&callId=a%00b".to_vec(),
            StatusCode::BAD_REQUEST,
            "callId contains control character '\\0' at byte 1",
        ),
        (
            uri.clone(),
            vec![form],
            vec![b'a'; 70 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 65536 bytes",
        ),
    ];
    for (uri, headers, body, want_status, want_message) in cases {
        let (status, resp) = oneshot(&router, &uri, &headers, body).await;
        assert_eq!(status, want_status, "{uri} {resp}");
        if !want_message.is_empty() {
            assert_eq!(resp["error"], want_message, "{uri}");
        } else {
            assert!(
                resp["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("body is not a JSON object"),
                "{resp}"
            );
        }
        assert!(
            hub.try_next_event().is_none(),
            "nothing sent for {uri} {want_status}"
        );
    }
    // GET is not a route.
    let resp = router
        .clone()
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn closed_hub_answers_503_and_a_redelivery_succeeds_later() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("office_cti");
    let router = conn.routes(&ctx).unwrap();
    let uri = format!("/?token={TOKEN}");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let lines = fixture_lines("inbound_answered.form");

    let (status, _) = oneshot(&router, &uri, &form, lines[0].clone().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let _ = hub.next_event(WAIT).await.unwrap();

    // The hub is gone: the PBX is told to retry, and the answer is not remembered.
    hub.close_inbound();
    let (status, body) = oneshot(&router, &uri, &form, lines[1].clone().into_bytes()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down, retry later"})
        )
    );

    // A fresh instance (after the hub restarted it) takes the redelivery, and the hangup
    // after it has a talk time again.
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("office_cti");
    let router = conn.routes(&ctx).unwrap();
    let (status, _) = oneshot(&router, &uri, &form, lines[1].clone().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let ev = hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.external_id,
        "f4ebd2be-7b9a-4d58-9457-a1b2c3d4e5f6:answer"
    );
    let (status, _) = oneshot(&router, &uri, &form, lines[2].clone().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let ev = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(
            call(&ev).1,
            CallEventKind::HungUp {
                duration_secs: Some(_),
                ..
            }
        ),
        "{ev:?}"
    );
}
