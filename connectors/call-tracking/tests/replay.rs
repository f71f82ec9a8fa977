//! Replay: the fixture sessions of every provider posted over real loopback HTTP to the
//! connector's router, with `run` alive beside it, then a clean shutdown. Error paths go
//! through the same router with `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use kommutator_call_tracking::{mango_sign, CallTracking, Config};
use kommutator_sdk::testing::http_request;
use kommutator_sdk::{
    CallEventKind, Connector, ConnectorContext, Direction, InboundEvent, InboundKind, MissedReason,
    TestHarness,
};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tower::ServiceExt;

const ZADARMA_SECRET: &str = "test-secret-zadarma";
const MANGO_KEY: &str = "test-vpbx-api-key";
const MANGO_SALT: &str = "test-vpbx-api-salt";
const ROISTAT_TOKEN: &str = "roistat-replay-token-01";
const UIS_TOKEN: &str = "uis-replay-token-0123";
const FORM: &str = "application/x-www-form-urlencoded";
const WAIT: Duration = Duration::from_secs(5);

fn connector() -> CallTracking {
    let config: Config = serde_json::from_value(json!({
        "default_country_code": "7",
        "zadarma": {"secret": ZADARMA_SECRET},
        "mango": {"api_key": MANGO_KEY, "api_salt": MANGO_SALT},
        "roistat": {"token": ROISTAT_TOKEN},
        "uis": {"token": UIS_TOKEN},
    }))
    .unwrap();
    CallTracking::new(config).unwrap()
}

fn lines(name: &str) -> Vec<String> {
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

/// One HTTP/1.1 request on a fresh connection, the way a provider would send it.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http_request(addr, method, path, headers, body)
        .await
        .unwrap()
}

/// Posts one fixture line to its route; returns the event the hub got.
async fn post_line(
    addr: SocketAddr,
    file: &str,
    line: &str,
    hub: &mut TestHarness,
) -> InboundEvent {
    let (status, body) = if file.starts_with("zadarma") {
        let (sig, body) = line.split_once('\t').unwrap();
        http(
            addr,
            "POST",
            "/zadarma",
            &[("Content-Type", FORM), ("Signature", sig)],
            body,
        )
        .await
    } else if file.starts_with("mango") {
        let (kind, body) = line.split_once('\t').unwrap();
        http(
            addr,
            "POST",
            &format!("/mango/events/{kind}"),
            &[("Content-Type", FORM)],
            body,
        )
        .await
    } else if file.starts_with("roistat") {
        let (stage, body) = line.split_once('\t').unwrap();
        let path = format!("/roistat/{stage}?token={ROISTAT_TOKEN}");
        http(
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            body,
        )
        .await
    } else {
        let bearer = format!("Bearer {UIS_TOKEN}");
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", bearer.as_str()),
        ];
        http(addr, "POST", "/uis", &headers, line).await
    };
    assert_eq!((status, body.as_str()), (200, "{}"), "{file}: {line}");
    hub.next_event(WAIT).await.expect("an event per request")
}

async fn post_session(addr: SocketAddr, file: &str, hub: &mut TestHarness) -> Vec<InboundEvent> {
    let mut out = vec![];
    for line in lines(file) {
        out.push(post_line(addr, file, &line, hub).await);
    }
    out
}

fn call(ev: &InboundEvent) -> (&str, &CallEventKind) {
    let InboundKind::Call(c) = &ev.kind else {
        panic!("not a call event: {ev:?}");
    };
    (c.call_external_id.as_str(), &c.kind)
}

fn keys(evs: &[InboundEvent]) -> Vec<&str> {
    evs.iter().map(|e| e.external_id.as_str()).collect()
}

#[tokio::test]
async fn replay_all_providers_over_loopback_http_then_shut_down() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("tracking");
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

    // Zadarma: the URL check first, as Zadarma does when the URL is saved.
    let (status, body) = http(addr, "GET", "/zadarma?zd_echo=a1b2c3", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "a1b2c3"));

    let evs = post_session(addr, "zadarma_inbound_answered.txt", &mut hub).await;
    let id = "in_3f2a9c0e5b7d41a8a6c1";
    assert_eq!(
        keys(&evs),
        [
            format!("zadarma:{id}:start"),
            format!("zadarma:{id}:internal:100"),
            format!("zadarma:{id}:answer:100"),
            format!("zadarma:{id}:end"),
            format!("zadarma:{id}:record:1714575600.2034567"),
        ]
    );
    assert!(evs.iter().all(|e| e.connector_id.as_str() == "tracking"));
    assert_eq!(
        call(&evs[0]),
        (
            format!("zadarma:{id}").as_str(),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        )
    );
    assert!(
        matches!(call(&evs[1]).1, CallEventKind::Ringing { extension: Some(e), .. } if e == "100")
    );
    assert_eq!(
        call(&evs[2]).1,
        &CallEventKind::Answered {
            by_extension: Some("100".to_owned())
        }
    );
    assert_eq!(
        call(&evs[3]).1,
        &CallEventKind::HungUp {
            duration_secs: Some(65),
            cause: Some("16".to_owned())
        }
    );
    assert_eq!(
        call(&evs[4]).1,
        &CallEventKind::RecordingAvailable {
            url: "zadarma:record:1714575600.2034567".to_owned()
        }
    );
    assert_eq!(
        evs[0].raw.as_ref().unwrap()["call_start"],
        "2024-05-01 15:00:00"
    );
    assert!(evs[0].raw.as_ref().unwrap().get("traffic_source").is_none());

    let evs = post_session(addr, "zadarma_inbound_missed.txt", &mut hub).await;
    assert!(
        matches!(call(&evs[0]).1, CallEventKind::Ringing { from, .. } if from == "+79167654321")
    );
    assert_eq!(
        call(&evs[2]).1,
        &CallEventKind::Missed {
            reason: MissedReason::Cancelled
        }
    );

    let evs = post_session(addr, "zadarma_outbound_busy.txt", &mut hub).await;
    assert_eq!(
        call(&evs[0]).1,
        &CallEventKind::Ringing {
            from: "102".to_owned(),
            to: "+79031112233".to_owned(),
            direction: Direction::Outbound,
            extension: Some("102".to_owned()),
        }
    );
    assert_eq!(
        call(&evs[1]).1,
        &CallEventKind::Missed {
            reason: MissedReason::Busy
        }
    );

    // Mango: IVR, operator leg, talk, recording, summary.
    let evs = post_session(addr, "mango_inbound_answered.txt", &mut hub).await;
    let e = "MToxMDA1NzU5Mzo0ODE6NjI0MzQ2NjU4";
    assert_eq!(
        keys(&evs),
        [
            format!("mango:{e}:1"),
            format!("mango:{e}:2"),
            format!("mango:{e}:3"),
            format!("mango:{e}:4"),
            format!("mango:{e}:5"),
            format!("mango:{e}:recording:MToxMDA1NzU5MzoxMjM0NTY3ODk6MA==:completed"),
            format!("mango:{e}:summary"),
        ]
    );
    assert_eq!(
        evs[0].occurred_at,
        OffsetDateTime::from_unix_timestamp(1_714_575_600).unwrap()
    );
    assert_eq!(
        call(&evs[1]),
        (
            format!("mango:{e}").as_str(),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: Some("101".to_owned()),
            }
        )
    );
    assert_eq!(
        evs[0].raw.as_ref().unwrap()["traffic_source"],
        json!({"tracking_number": "+74957770011", "tracking_type": "dynamic", "provider": "mango"})
    );
    assert!(
        matches!(evs[2].kind, InboundKind::Unknown { .. }),
        "IVR leg ends, call goes on"
    );
    assert_eq!(
        call(&evs[3]).1,
        &CallEventKind::Answered {
            by_extension: Some("101".to_owned())
        }
    );
    assert_eq!(
        call(&evs[4]).1,
        &CallEventKind::HungUp {
            duration_secs: Some(65),
            cause: Some("1110".to_owned())
        }
    );
    assert_eq!(
        call(&evs[5]).1,
        &CallEventKind::RecordingAvailable {
            url: "mango:recording:MToxMDA1NzU5MzoxMjM0NTY3ODk6MA==".to_owned()
        }
    );
    assert!(matches!(evs[6].kind, InboundKind::Unknown { .. }));
    assert!(
        evs[0].raw.as_ref().unwrap().get("sign").is_none(),
        "raw is the json, not the envelope"
    );

    // Mango out of order: seq 3 before seq 2; seq 2 is then stale and changes nothing.
    let evs = post_session(addr, "mango_out_of_order.txt", &mut hub).await;
    let e2 = "MToxMDA1NzU5Mzo0ODE6NjI0MzQ3MDAx";
    assert_eq!(
        keys(&evs),
        [
            format!("mango:{e2}:1"),
            format!("mango:{e2}:3"),
            format!("mango:{e2}:2"),
            format!("mango:{e2}:4")
        ]
    );
    assert!(matches!(call(&evs[1]).1, CallEventKind::Answered { .. }));
    assert!(
        matches!(&evs[2].kind, InboundKind::Unknown { description } if description == "mango OnHold seq 2 after seq 3"),
        "{:?}",
        evs[2].kind
    );
    assert_eq!(
        call(&evs[3]).1,
        &CallEventKind::HungUp {
            duration_secs: Some(26),
            cause: Some("1110".to_owned())
        }
    );

    // Roistat: ringing with the traffic source; the after-call webhook is kept as unknown.
    let evs = post_session(addr, "roistat_call.txt", &mut hub).await;
    assert_eq!(keys(&evs), ["roistat:313:start", "roistat:313:end"]);
    assert_eq!(
        call(&evs[0]),
        (
            "roistat:313",
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74957654321".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        )
    );
    assert_eq!(
        evs[0].raw.as_ref().unwrap()["traffic_source"],
        json!({"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "spring_sale",
               "utm_term": "buy sofa", "visit_id": "123456", "landing_page": "example.ru/sofas",
               "marker": "yandex_direct_spring", "provider": "roistat"})
    );
    assert!(matches!(evs[1].kind, InboundKind::Unknown { .. }));

    // UIS.
    let evs = post_session(addr, "uis_session.jsonl", &mut hub).await;
    assert_eq!(
        keys(&evs),
        [
            "uis:2961004415:ringing",
            "uis:2961004415:answered",
            "uis:2961004415:hung_up",
            "uis:2961004415:recording"
        ]
    );
    assert_eq!(
        evs[0].occurred_at,
        OffsetDateTime::from_unix_timestamp(1_714_576_200).unwrap()
    );
    assert_eq!(
        evs[0].raw.as_ref().unwrap()["traffic_source"],
        json!({"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand", "utm_term": "crm",
               "visit_id": "3300112233", "landing_page": "https://example.ru/crm", "provider": "uis"})
    );
    assert_eq!(
        call(&evs[2]).1,
        &CallEventKind::HungUp {
            duration_secs: Some(120),
            cause: Some("subscriber_disconnects".to_owned())
        }
    );

    // A redelivery gives the same key (the hub keeps one copy).
    let first = &lines("zadarma_inbound_answered.txt")[0];
    let dup = post_line(addr, "zadarma_inbound_answered.txt", first, &mut hub).await;
    assert_eq!(dup.external_id, format!("zadarma:{id}:start"));
    let again = &lines("mango_inbound_answered.txt")[4];
    let dup = post_line(addr, "mango_inbound_answered.txt", again, &mut hub).await;
    assert_eq!(dup.external_id, format!("mango:{e}:5"));
    let first = &lines("roistat_call.txt")[0];
    let dup = post_line(addr, "roistat_call.txt", first, &mut hub).await;
    assert_eq!(dup.external_id, "roistat:313:start");

    // A forged notification over the wire: refused, nothing sent.
    let (_, body) = lines("zadarma_inbound_answered.txt")[0]
        .split_once('\t')
        .map(|(s, b)| (s.to_owned(), b.to_owned()))
        .unwrap();
    let forged = "OTAwYWFlNjZhYWQ3NGJhYmJjYzNjMDEzMjg1M2FjYzY1YTNjYzAwMA==";
    let (status, resp) = http(
        addr,
        "POST",
        "/zadarma",
        &[("Content-Type", FORM), ("Signature", forged)],
        &body,
    )
    .await;
    assert_eq!(
        (status, resp.as_str()),
        (403, r#"{"error":"Signature does not match"}"#)
    );
    assert!(hub.try_next_event().is_none());

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
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
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

fn mango_body(key: &str, sign: Option<&str>, json: &str) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("vpbx_api_key", key);
    if let Some(sign) = sign {
        s.append_pair("sign", sign);
    }
    s.append_pair("json", json);
    s.finish().into_bytes()
}

#[tokio::test]
async fn bad_requests_are_rejected_and_nothing_is_sent() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("tracking");
    let router = conn.routes(&ctx).unwrap();

    let (zsig, zbody) = {
        let l = &lines("zadarma_inbound_answered.txt")[0];
        let (s, b) = l.split_once('\t').unwrap();
        (s.to_owned(), b.to_owned())
    };
    let good_json = r#"{"entry_id":"E","call_id":"c","seq":1,"call_state":"Appeared"}"#;
    let good_sign = mango_sign(MANGO_KEY, good_json, MANGO_SALT);
    let bad_json = r#"{"entry_id":"E","seq":1}"#;
    let bad_json_sign = mango_sign(MANGO_KEY, bad_json, MANGO_SALT);
    let roistat_uri = format!("/roistat/start?token={ROISTAT_TOKEN}");
    let uis_bearer = format!("Bearer {UIS_TOKEN}");
    let big = vec![b'a'; 70 * 1024];
    let json_ct = ("content-type", "application/json");
    let form_ct = ("content-type", FORM);

    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        // Zadarma
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct],
            zbody.clone().into_bytes(),
            StatusCode::UNAUTHORIZED,
            "missing Signature header",
        ),
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct, ("signature", "bm9wZQ==")],
            zbody.clone().into_bytes(),
            StatusCode::FORBIDDEN,
            "Signature does not match",
        ),
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct, ("signature", zsig.as_str())],
            zbody.replace("79161234567", "79160000000").into_bytes(),
            StatusCode::FORBIDDEN,
            "Signature does not match",
        ),
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct, ("signature", zsig.as_str())],
            b"event=SMS&result=x".to_vec(),
            StatusCode::FORBIDDEN,
            "cannot verify the signature of event \"SMS\"",
        ),
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct, ("signature", zsig.as_str())],
            b"pbx_call_id=1".to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `event`",
        ),
        (
            "POST",
            "/zadarma".into(),
            vec![form_ct],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 65536 bytes",
        ),
        (
            "GET",
            "/zadarma".into(),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "missing query parameter `zd_echo`",
        ),
        // Mango
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            mango_body(MANGO_KEY, None, good_json),
            StatusCode::UNAUTHORIZED,
            "missing sign",
        ),
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            mango_body(MANGO_KEY, Some(&"0".repeat(64)), good_json),
            StatusCode::FORBIDDEN,
            "sign does not match",
        ),
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            mango_body("other-key", Some(&good_sign), good_json),
            StatusCode::FORBIDDEN,
            "vpbx_api_key does not match",
        ),
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            mango_body(MANGO_KEY, Some(&bad_json_sign), bad_json),
            StatusCode::BAD_REQUEST,
            "missing field `call_id`",
        ),
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            b"vpbx_api_key=k".to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `json`",
        ),
        (
            "POST",
            "/mango/events/call".into(),
            vec![form_ct],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 65536 bytes",
        ),
        (
            "POST",
            "/mango/events/Call!".into(),
            vec![form_ct],
            mango_body(MANGO_KEY, Some(&good_sign), good_json),
            StatusCode::NOT_FOUND,
            "unknown mango event kind",
        ),
        // Roistat
        (
            "POST",
            "/roistat/start".into(),
            vec![json_ct],
            br#"{"id":"1"}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "missing token",
        ),
        (
            "POST",
            "/roistat/start?token=wrong-token-000000".into(),
            vec![json_ct],
            br#"{"id":"1"}"#.to_vec(),
            StatusCode::FORBIDDEN,
            "token does not match",
        ),
        (
            "POST",
            roistat_uri.clone(),
            vec![json_ct],
            b"{".to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "POST",
            roistat_uri.clone(),
            vec![json_ct],
            br#"{"id":"1","callee":"2"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `caller`",
        ),
        (
            "POST",
            roistat_uri.clone(),
            vec![json_ct],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 65536 bytes",
        ),
        // UIS
        (
            "POST",
            "/uis".into(),
            vec![json_ct, ("authorization", "Bearer nope-nope-nope-nope")],
            br#"{"event":"answered","call_session_id":"1"}"#.to_vec(),
            StatusCode::FORBIDDEN,
            "token does not match",
        ),
        (
            "POST",
            "/uis".into(),
            vec![json_ct, ("authorization", uis_bearer.as_str())],
            br#"{"event":"answered"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `call_session_id`",
        ),
        (
            "POST",
            "/uis".into(),
            vec![json_ct, ("authorization", uis_bearer.as_str())],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 65536 bytes",
        ),
    ];
    for (method, uri, headers, body, want_status, want_message) in cases {
        let (status, resp) = oneshot(&router, method, &uri, &headers, body).await;
        assert_eq!(status, want_status, "{method} {uri}: {resp}");
        if want_message.is_empty() {
            assert!(
                resp["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("body is not valid JSON"),
                "{resp}"
            );
        } else {
            assert_eq!(resp["error"], want_message, "{method} {uri}");
        }
        assert!(
            hub.try_next_event().is_none(),
            "nothing sent for {method} {uri}"
        );
    }
}

#[tokio::test]
async fn only_configured_providers_have_routes() {
    let config: Config =
        serde_json::from_value(json!({"roistat": {"token": ROISTAT_TOKEN}})).unwrap();
    let conn = CallTracking::new(config).unwrap();
    let (ctx, _hub) = ConnectorContext::for_test("tracking");
    let router = conn.routes(&ctx).unwrap();
    for uri in ["/zadarma", "/mango/events/call", "/uis"] {
        let (status, _) = oneshot(&router, "POST", uri, &[], b"x".to_vec()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn closed_hub_answers_503_and_mango_state_waits_for_the_hub() {
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test("tracking");
    let router = conn.routes(&ctx).unwrap();
    let session = lines("mango_out_of_order.txt");
    let body = |i: usize| session[i].split_once('\t').unwrap().1.as_bytes().to_vec();
    let form = [("content-type", FORM)];

    let (status, _) = oneshot(&router, "POST", "/mango/events/call", &form, body(0)).await;
    assert_eq!(status, StatusCode::OK);
    hub.next_event(WAIT).await.unwrap();
    hub.close_inbound();
    let (status, resp) = oneshot(&router, "POST", "/mango/events/call", &form, body(1)).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down, retry later"})
        )
    );
    let (status, _) = oneshot(
        &router,
        "POST",
        "/roistat/end?token=roistat-replay-token-01",
        &[("content-type", "application/json")],
        br#"{"id":"9"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(hub.try_next_event().is_none());
}

#[tokio::test]
async fn mango_redelivery_after_503_is_applied_not_stale() {
    // The same router, a hub that refuses once: the refused seq must not count as seen.
    let conn = connector();
    let (ctx, mut hub) = ConnectorContext::for_test_with_capacity("tracking", 1);
    let router = conn.routes(&ctx).unwrap();
    let session = lines("mango_out_of_order.txt");
    let body = |i: usize| session[i].split_once('\t').unwrap().1.as_bytes().to_vec();
    let form = [("content-type", FORM)];

    let (status, _) = oneshot(&router, "POST", "/mango/events/call", &form, body(0)).await;
    assert_eq!(status, StatusCode::OK);
    // The queue (capacity 1) is full and shutdown is requested: the wait is cut short.
    hub.shutdown();
    let (status, _) = oneshot(&router, "POST", "/mango/events/call", &form, body(1)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The hub drains; the provider retries seq 3, which is applied as an answer.
    assert!(hub.next_event(WAIT).await.is_some());
    let (status, _) = oneshot(&router, "POST", "/mango/events/call", &form, body(1)).await;
    assert_eq!(status, StatusCode::OK);
    let ev = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(call(&ev).1, CallEventKind::Answered { .. }),
        "{ev:?}"
    );
}
