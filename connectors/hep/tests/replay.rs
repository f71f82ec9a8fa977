//! Replay: the real `run` on loopback ports, fed recorded sessions by a UDP sender
//! (each message twice, shuffled, as a mirroring proxy delivers them) and by a TCP
//! sender that loses its framing and reconnects; packets with a wrong or missing auth
//! key and garbage are dropped and counted; shutdown is clean and prompt.
//!
//! Real time, not paused: the collector's only timer is the reorder window, and the
//! test waits on events, never on a clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use common::{load_session, shuffled};
use kommutator_hep::{Config, HepConnector, HepStats};
use kommutator_sdk::{
    CallEventKind, Connector, ConnectorContext, ConnectorError, ConnectorId, InboundEvent,
    InboundKind, OutboundMessage, TestHarness,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const KEY: &[u8] = b"s3cret-hep";
const WAIT: Duration = Duration::from_secs(10);

fn config(window_ms: u64, extra: &str) -> Config {
    toml::from_str(&format!(
        r#"
        udp_bind = "127.0.0.1:0"
        auth_key = "s3cret-hep"
        default_country_code = "7"
        internal_domains = ["pbx.example.com"]
        reorder_window_ms = {window_ms}
        {extra}
        "#
    ))
    .unwrap()
}

async fn start(
    config: Config,
    capacity: usize,
) -> (
    tokio::task::JoinHandle<Result<(), ConnectorError>>,
    TestHarness,
    std::sync::Arc<HepStats>,
) {
    let connector = HepConnector::new(config).unwrap();
    let stats = connector.stats();
    let (ctx, hub) = ConnectorContext::for_test_with_capacity("hep_test", capacity);
    let task = tokio::spawn(connector.run(ctx));
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.udp_addr().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "collector did not bind"
        );
        assert!(!task.is_finished(), "run ended early: {:?}", task.await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (task, hub, stats)
}

/// Reads events until `n` arrived; fails after `WAIT`.
async fn events(hub: &mut TestHarness, n: usize) -> Vec<InboundEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = hub
            .next_event(WAIT)
            .await
            .unwrap_or_else(|| panic!("only {} of {n} events: {out:#?}", out.len()));
        assert_eq!(ev.connector_id.as_str(), "hep_test");
        out.push(ev);
    }
    out
}

/// The event kinds per call, in order.
fn by_call(events: &[InboundEvent]) -> BTreeMap<String, Vec<CallEventKind>> {
    let mut calls: BTreeMap<String, Vec<CallEventKind>> = BTreeMap::new();
    for ev in events {
        let InboundKind::Call(call) = &ev.kind else {
            panic!("not a call event: {ev:?}");
        };
        assert!(ev
            .external_id
            .starts_with(&format!("{}:", call.call_external_id)));
        calls
            .entry(call.call_external_id.clone())
            .or_default()
            .push(call.kind.clone());
    }
    calls
}

fn kind_names(kinds: &[CallEventKind]) -> Vec<String> {
    kinds
        .iter()
        .map(|k| match k {
            CallEventKind::Ringing { .. } => "ringing".to_owned(),
            CallEventKind::Answered { .. } => "answered".to_owned(),
            CallEventKind::HungUp { .. } => "hung_up".to_owned(),
            CallEventKind::Missed { reason } => format!("missed:{reason:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

async fn shutdown(task: tokio::task::JoinHandle<Result<(), ConnectorError>>, hub: &TestHarness) {
    hub.shutdown();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns promptly on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn udp_and_tcp_sessions_through_run() {
    let (task, mut hub, stats) = start(config(300, "tcp_bind = \"127.0.0.1:0\""), 64).await;
    let udp_addr = stats.udp_addr().unwrap();
    let tcp_addr = stats.tcp_addr().unwrap();

    // UDP: three calls, every message twice, all shuffled together.
    let mut packets = Vec::new();
    for name in ["answered", "cancelled", "rejected"] {
        for p in load_session(name) {
            packets.push(p.to_hep(Some(KEY)));
            packets.push(p.to_hep(Some(KEY)));
        }
    }
    let packets = shuffled(&packets, 42);
    // Bad packets in between: wrong key, no key, not HEP, HEPv1, HEP with bad SIP.
    let compact = load_session("compact");
    let wrong_key: Vec<Vec<u8>> = compact.iter().map(|p| p.to_hep(Some(b"wrong"))).collect();
    let no_key: Vec<Vec<u8>> = compact.iter().map(|p| p.to_hep(None)).collect();
    let mut bad_sip = compact[0].clone();
    bad_sip.sip = b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n".to_vec();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, p) in packets.iter().enumerate() {
        sender.send_to(p, udp_addr).await.unwrap();
        if i % 10 == 0 {
            sender
                .send_to(b"GET / HTTP/1.1\r\n\r\n", udp_addr)
                .await
                .unwrap();
        }
    }
    for p in wrong_key.iter().chain(&no_key) {
        sender.send_to(p, udp_addr).await.unwrap();
    }
    sender
        .send_to(&[1, 16, 2, 17, 0, 0, 0, 0], udp_addr)
        .await
        .unwrap();
    sender
        .send_to(&bad_sip.to_hep(Some(KEY)), udp_addr)
        .await
        .unwrap();

    let got = events(&mut hub, 7).await;
    let keys: HashSet<&str> = got.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(keys.len(), 7, "no key twice");
    let calls = by_call(&got);
    assert_eq!(
        kind_names(&calls["3f2c9b0a71e4d5c8"]),
        ["ringing", "answered", "hung_up"]
    );
    assert_eq!(
        calls["3f2c9b0a71e4d5c8"][2],
        CallEventKind::HungUp {
            duration_secs: Some(93),
            cause: None
        }
    );
    assert_eq!(
        kind_names(&calls["8d7c6b5a4f3e2d1c"]),
        ["ringing", "missed:Cancelled"]
    );
    assert_eq!(
        kind_names(&calls["5b6c7d8e9fa0b1c2"]),
        ["ringing", "missed:Busy"]
    );
    let ringing = got
        .iter()
        .find(|e| e.external_id == "3f2c9b0a71e4d5c8:ringing")
        .unwrap();
    assert_eq!(
        ringing.occurred_at,
        time::macros::datetime!(2024-05-01 12:00:00.1 UTC),
        "the HEP capture time"
    );
    assert_eq!(ringing.raw.as_ref().unwrap()["sip"]["cseq"], "20741 INVITE");
    assert!(!ringing.raw.as_ref().unwrap().to_string().contains("s3cret"));

    // TCP: one session, back to back; then garbage, which closes the connection.
    let tel: Vec<u8> = load_session("tel_uri")
        .iter()
        .flat_map(|p| p.to_hep(Some(KEY)))
        .collect();
    let mut tcp = TcpStream::connect(tcp_addr).await.unwrap();
    // Split mid-packet to check the reader reassembles frames.
    let (a, b) = tel.split_at(tel.len() / 3);
    tcp.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    tcp.write_all(b).await.unwrap();
    let got = events(&mut hub, 2).await;
    assert_eq!(
        kind_names(&by_call(&got)["tel-uri-1"]),
        ["ringing", "missed:Rejected"]
    );
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "server closed the stream");

    // Reconnect: a new connection works.
    let folded: Vec<u8> = load_session("folded")
        .iter()
        .flat_map(|p| p.to_hep(Some(KEY)))
        .collect();
    let mut tcp = TcpStream::connect(tcp_addr).await.unwrap();
    tcp.write_all(&folded).await.unwrap();
    let got = events(&mut hub, 2).await;
    assert_eq!(
        kind_names(&by_call(&got)["folded-1@trunk.example.net"]),
        ["ringing", "missed:NoAnswer"]
    );

    // The receive-only connector refuses outbound messages for good.
    hub.send_outbound(OutboundMessage {
        id: 5,
        connector_id: ConnectorId::new("hep_test"),
        thread_id: "t".into(),
        to: None,
        subject: None,
        text: Some("hi".into()),
        attachments: vec![],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let ev = events(&mut hub, 1).await.remove(0);
    assert_eq!(ev.external_id, "outbound:5:failed");
    assert!(matches!(
        ev.kind,
        InboundKind::OutboundFailed { message_id: 5, .. }
    ));

    // Nothing else: the dropped packets made no events.
    assert_eq!(hub.next_event(Duration::from_millis(700)).await, None);
    let s = stats.snapshot();
    assert_eq!(s.auth_failures, 2 * compact.len() as u64, "{s:?}");
    let garbage = packets.len().div_ceil(10) as u64;
    assert_eq!(s.hep_errors, garbage + 1 + 1, "{s:?}"); // + HEPv1 + TCP framing
    assert_eq!(s.sip_errors, 1, "{s:?}");
    assert!(s.duplicates >= 35, "{s:?}");
    assert_eq!(s.tcp_connections, 2, "{s:?}");
    assert_eq!(s.events, 7 + 2 + 2 + 1, "{s:?}");
    assert_eq!(s.queue_full, 0, "{s:?}");
    assert!(s.calls_tracked >= 5, "{s:?}");

    shutdown(task, &hub).await;
    assert_eq!(stats.udp_addr(), None);
    // The ports are free again.
    UdpSocket::bind(udp_addr).await.unwrap();
    tokio::net::TcpListener::bind(tcp_addr).await.unwrap();
}

/// With the hub not reading, the collector waits (and keeps receiving into its queue);
/// once the hub reads, every event arrives; shutdown stays prompt while blocked.
#[tokio::test]
async fn backpressure_and_prompt_shutdown() {
    let (task, mut hub, stats) = start(config(0, ""), 1).await;
    let addr: SocketAddr = stats.udp_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for name in ["answered", "cancelled", "rejected"] {
        for p in load_session(name) {
            sender.send_to(&p.to_hep(Some(KEY)), addr).await.unwrap();
        }
    }
    // Let the collector fill the hub's queue of one and block on the next send.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = events(&mut hub, 7).await;
    assert_eq!(by_call(&got).len(), 3);

    // Block it again, then shut down while it waits for room.
    for p in load_session("compact") {
        sender.send_to(&p.to_hep(Some(KEY)), addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown(task, &hub).await;
}

#[tokio::test]
async fn a_taken_port_is_a_retryable_connect_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let connector = HepConnector::new(
        toml::from_str(&format!(
            "udp_bind = \"{addr}\"\ndefault_country_code = \"7\""
        ))
        .unwrap(),
    )
    .unwrap();
    let (ctx, _hub) = ConnectorContext::for_test("hep_test");
    let err = connector.run(ctx).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!("connect failed: cannot bind HEP UDP {addr}")
    );
}

#[tokio::test]
async fn hub_gone_ends_run_with_closed() {
    let (task, mut hub, stats) = start(config(0, ""), 4).await;
    hub.close_inbound();
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let p = &load_session("cancelled")[0];
    sender
        .send_to(&p.to_hep(Some(KEY)), stats.udp_addr().unwrap())
        .await
        .unwrap();
    let result = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert!(matches!(result, Err(ConnectorError::Closed)), "{result:?}");
}
