//! Live SIP through the hub: the HEP connector's real rig (Kamailio mirroring HEPv3,
//! two baresip agents; `connectors/hep/tests/rig/mod.rs`) places three calls to
//! extension 2001 with the hub's `hep` connector as the collector. The operator with
//! that extension sees each call ring before anyone answers; the answered one ends
//! `completed` with its talk time, the cancelled one `missed` (`cancelled`), the
//! rejected one `missed` (`busy`); the caller, a phone number, becomes a lead whose Feed
//! holds the three calls.
//!
//! Needs the Debian packages `kamailio` and `baresip-core`: without them the test prints
//! `SKIPPED` and passes, except under CI (env `CI` set), where it fails. About 10 s.

use std::time::Duration;

use kommutator::domain::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

#[path = "../../connectors/hep/tests/rig/mod.rs"]
mod rig;

/// The caller's SIP user: a national number the connector brings to E.164 with
/// `default_country_code = "7"` (national prefix 8).
const CALLER_USER: &str = "84951234567";
const CALLER_E164: &str = "+74951234567";

/// Whether something listens on UDP `127.0.0.1:{port}`, read from `/proc/net/udp`
/// (binding the port to find out could steal it from the hub).
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
    })
}

/// The next event of the `call` entity on `ws` with this status (and reason), skipping
/// others; panics with the rig's logs when none comes.
async fn call_event(
    ws: &mut Ws,
    status: &str,
    reason: Option<&str>,
    logs: &dyn Fn() -> String,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(v) = ws.try_next(left).await else {
            panic!(
                "no call event `{status}` {reason:?} on the operator's socket\n{}",
                logs()
            );
        };
        if v["type"] == "event"
            && v["entity"] == "call"
            && v["data"]["status"] == status
            && reason.is_none_or(|r| v["data"]["missed_reason"] == r)
        {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_calls_through_kamailio_reach_the_operator_and_the_feed() {
    let port = rig::free_port();
    // The rig first: when it is skipped, no hub is started for nothing.
    let Some(sip) = rig::Rig::start("sip_rig", port, CALLER_USER).await else {
        return;
    };
    let app = spawn_app_with(move |c| {
        let inst: kommutator::config::ConnectorConfig = toml::from_str(&format!(
            "type = \"hep\"\ndepartment = \"Sales\"\nudp_bind = \"127.0.0.1:{port}\"\n\
             default_country_code = \"7\"\nreorder_window_ms = 150\n"
        ))
        .expect("config");
        c.connectors.insert("office_sip".into(), inst);
    })
    .await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (status, body) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", anna.id),
            &json!({"extension": rig::CALLEE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;
    // The connector binds its collector when it starts: wait for it before dialing.
    for _ in 0..200 {
        if udp_bound(port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(udp_bound(port), "the hub's HEP collector listens on {port}");
    let logs = || sip.logs();

    // A: rings at anna (the screen pop, before the answer), answered, the caller hangs up.
    sip.dial().await;
    let ringing = call_event(&mut ws, "ringing", None, &logs).await;
    assert_eq!(ringing["op"], "create", "{ringing}");
    let data = &ringing["data"];
    assert_eq!(data["operator_id"], anna.id, "{ringing}");
    assert_eq!(data["from_number"], CALLER_E164, "{ringing}");
    assert_eq!(data["to_number"], rig::CALLEE, "{ringing}");
    assert_eq!(data["direction"], "inbound", "{ringing}");
    let lead = data["lead_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a new caller with a phone number is a lead: {ringing}"));
    let call_a = data["id"].clone();
    tokio::time::sleep(Duration::from_millis(300)).await; // the callee is ringing
    sip.answer().await;
    let answered = call_event(&mut ws, "answered", None, &logs).await;
    assert_eq!(answered["data"]["id"], call_a, "{answered}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sip.caller_hangup().await;
    let done = call_event(&mut ws, "completed", None, &logs).await;
    assert_eq!(done["data"]["id"], call_a, "{done}");
    let talk = done["data"]["duration_secs"].as_i64();
    assert!(matches!(talk, Some(1..=3)), "talk time: {done}");

    // B: the caller cancels while it rings.
    sip.dial().await;
    let ringing = call_event(&mut ws, "ringing", None, &logs).await;
    let call_b = ringing["data"]["id"].clone();
    assert_ne!(call_b, call_a);
    assert_eq!(
        ringing["data"]["lead_id"], lead,
        "the same caller: {ringing}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sip.caller_hangup().await;
    let missed = call_event(&mut ws, "missed", Some("cancelled"), &logs).await;
    assert_eq!(missed["data"]["id"], call_b, "{missed}");

    // C: the callee rejects it (baresip answers 486).
    sip.dial().await;
    let ringing = call_event(&mut ws, "ringing", None, &logs).await;
    let call_c = ringing["data"]["id"].clone();
    assert!(call_c != call_a && call_c != call_b, "{ringing}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sip.reject().await;
    let busy = call_event(&mut ws, "missed", Some("busy"), &logs).await;
    assert_eq!(busy["data"]["id"], call_c, "{busy}");
    drop(sip);

    // Stored once each (Kamailio mirrored every message twice), all from the lead.
    let (status, page) = app.get(Some(&app.admin), "/api/v1/calls?limit=50").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let calls = page["items"].as_array().expect("items");
    assert_eq!(calls.len(), 3, "{page}");
    for (id, status, reason) in [
        (&call_a, "completed", Value::Null),
        (&call_b, "missed", json!("cancelled")),
        (&call_c, "missed", json!("busy")),
    ] {
        let c = calls
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap_or_else(|| panic!("call {id} listed: {page}"));
        assert_eq!(c["status"], status, "{c}");
        assert_eq!(c["missed_reason"], reason, "{c}");
        assert_eq!(c["lead_id"], lead, "{c}");
        assert_eq!(c["operator_id"], anna.id, "{c}");
        assert_eq!(c["from_number"], CALLER_E164, "{c}");
    }
    assert_eq!(
        calls.iter().find(|c| c["id"] == call_a).expect("A")["duration_secs"],
        json!(talk.expect("talk"))
    );

    // The lead's Feed: the three calls, newest first.
    let (status, feed) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/leads/{lead}/feed?kinds=call"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let items = feed["items"].as_array().expect("items");
    let titles: Vec<&str> = items
        .iter()
        .map(|i| i["title"].as_str().unwrap_or_default())
        .collect();
    let missed_title = format!("Missed call from {CALLER_E164}");
    assert_eq!(
        titles,
        [
            missed_title.as_str(),
            missed_title.as_str(),
            &format!("Call from {CALLER_E164}"),
        ],
        "{feed}"
    );
    let talk = talk.expect("talk");
    assert_eq!(
        items[2]["preview"],
        format!("{}:{:02}", talk / 60, talk % 60),
        "{feed}"
    );
}
