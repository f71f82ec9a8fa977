//! The real rig of research note `anchors-telephony.md` §3.4 (`rig/mod.rs`): Kamailio
//! mirrors every SIP message it handles to our collector as HEPv3 (`siptrace`,
//! `trace_mode 1`), and two baresip user agents place three calls through it: answered
//! then hung up, cancelled by the caller while ringing, and rejected by the callee (486).
//!
//! Needs the Debian packages `kamailio` and `baresip-core`. Without them the test says
//! so and returns, except under CI (env `CI` set), where it fails. Everything runs on
//! 127.0.0.1 ports picked free at start, in a temp folder; the processes it starts are
//! stopped by their pid. About 10 s. The hub runs the same rig in
//! `tests/api/sip_rig.rs`.
#![allow(clippy::unwrap_used)]

mod rig;

use std::time::Duration;

use kommutator_hep::{Config, HepConnector};
use kommutator_sdk::{
    CallEventKind, Connector, ConnectorContext, Direction, InboundEvent, InboundKind, MissedReason,
    TestHarness,
};
use rig::{Rig, CALLEE, CALLER};

const EVENT_WAIT: Duration = Duration::from_secs(8);

async fn next_call_event(
    hub: &mut TestHarness,
    what: &str,
    logs: &dyn Fn() -> String,
) -> (String, CallEventKind, InboundEvent) {
    let ev = hub
        .next_event(EVENT_WAIT)
        .await
        .unwrap_or_else(|| panic!("no event while waiting for {what}\n{}", logs()));
    let InboundKind::Call(call) = ev.kind.clone() else {
        panic!("not a call event while waiting for {what}: {ev:?}");
    };
    (call.call_external_id, call.kind, ev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_mirrors_three_calls() {
    // The collector, on a port the kernel picks.
    let config: Config = toml::from_str(
        r#"
        udp_bind = "127.0.0.1:0"
        default_country_code = "7"
        reorder_window_ms = 150
        "#,
    )
    .unwrap();
    let connector = HepConnector::new(config).unwrap();
    let stats = connector.stats();
    let (ctx, mut hub) = ConnectorContext::for_test("rig");
    let task = tokio::spawn(connector.run(ctx));
    let mut hep_port = None;
    for _ in 0..200 {
        if let Some(addr) = stats.udp_addr() {
            hep_port = Some(addr.port());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hep_port = hep_port.expect("collector bound");

    let Some(rig) = Rig::start("kamailio_rig", hep_port, CALLER).await else {
        hub.shutdown();
        let _ = task.await;
        return;
    };
    let logs = || format!("{}\nstats: {:?}", rig.logs(), stats.snapshot());
    let ringing = CallEventKind::Ringing {
        from: CALLER.into(),
        to: CALLEE.into(),
        direction: Direction::Inbound,
        extension: Some(CALLEE.into()),
    };

    // A: answered, then the caller hangs up.
    rig.dial().await;
    let (call_a, kind, _) = next_call_event(&mut hub, "ringing (A)", &logs).await;
    assert_eq!(kind, ringing, "{}", logs());
    tokio::time::sleep(Duration::from_millis(300)).await; // the callee is ringing
    rig.answer().await;
    let (id, kind, _) = next_call_event(&mut hub, "answered (A)", &logs).await;
    assert_eq!(
        (id.as_str(), kind),
        (
            call_a.as_str(),
            CallEventKind::Answered {
                by_extension: Some(CALLEE.into())
            }
        )
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    rig.caller_hangup().await;
    let (id, kind, ev) = next_call_event(&mut hub, "hung_up (A)", &logs).await;
    assert_eq!(id, call_a);
    let CallEventKind::HungUp { duration_secs, .. } = kind else {
        panic!("expected hung_up, got {kind:?}\n{}", logs());
    };
    assert!(matches!(duration_secs, Some(1..=3)), "{duration_secs:?}");
    assert_eq!(ev.external_id, format!("{call_a}:hung_up"));
    assert_eq!(ev.raw.as_ref().unwrap()["derived"]["hung_up_by"], "caller");

    // B: the caller cancels while it rings.
    rig.dial().await;
    let (call_b, kind, _) = next_call_event(&mut hub, "ringing (B)", &logs).await;
    assert_eq!(kind, ringing);
    assert_ne!(call_b, call_a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.caller_hangup().await;
    let (id, kind, _) = next_call_event(&mut hub, "missed (B)", &logs).await;
    assert_eq!(
        (id, kind),
        (
            call_b,
            CallEventKind::Missed {
                reason: MissedReason::Cancelled
            }
        )
    );

    // C: the callee rejects it (baresip answers 486).
    rig.dial().await;
    let (call_c, kind, _) = next_call_event(&mut hub, "ringing (C)", &logs).await;
    assert_eq!(kind, ringing);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.reject().await;
    let (id, kind, _) = next_call_event(&mut hub, "missed (C)", &logs).await;
    assert_eq!(
        (id, kind),
        (
            call_c,
            CallEventKind::Missed {
                reason: MissedReason::Busy
            }
        )
    );

    // Nothing more: every message came twice, none made a second event.
    assert_eq!(
        hub.next_event(Duration::from_millis(500)).await,
        None,
        "{}",
        logs()
    );
    let s = stats.snapshot();
    assert!(
        s.duplicates > 0 && s.hep_errors == 0 && s.sip_errors == 0,
        "{s:?}"
    );

    drop(rig);
    hub.shutdown();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
