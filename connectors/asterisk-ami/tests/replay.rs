//! Replay tests: the real `run` against a fake AMI server on 127.0.0.1, playing the
//! fixture sessions.
//!
//! The clock is paused (`tokio::time::pause`) around each reconnect, so the backoff costs
//! no real time, and runs for real otherwise: a paused clock jumps to the next timer
//! whenever the runtime waits, and loopback bytes still in the kernel would then lose the
//! race against the connector's own deadlines (banner, Pong) on a loaded machine.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kommutator_asterisk_ami::codec::{AmiCodec, AmiFrame, AmiMessage};
use kommutator_asterisk_ami::{AsteriskAmi, Config};
use kommutator_sdk::{
    CallEventKind, Connector, ConnectorCommand, ConnectorContext, ConnectorError, Direction,
    InboundEvent, InboundKind, MissedReason, OriginateRequest, TestHarness,
};
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

const SECRET: &str = "s3cret-for-tests";
/// Generous: only reached when a test is failing (and later than every connector timer,
/// for the paused stretches).
const WAIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// The unsolicited part of a session fixture: what follows the login and the (empty)
/// resync list, which the fake server plays itself.
fn events_of(name: &str) -> Vec<u8> {
    let bytes = fixture(name);
    let complete = find(&bytes, b"Event: CoreShowChannelsComplete");
    // CRLF fixtures, and the one written with bare LF.
    let end = match bytes[complete..].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => complete + at + 4,
        None => complete + find(&bytes[complete..], b"\n\n") + 2,
    };
    bytes[end..].to_vec()
}

/// `bytes` split before the first occurrence of `marker`.
fn split_at(bytes: &[u8], marker: &str) -> (Vec<u8>, Vec<u8>) {
    let at = find(bytes, marker.as_bytes());
    (bytes[..at].to_vec(), bytes[at..].to_vec())
}

fn config(port: u16, extra: serde_json::Value) -> Config {
    let mut v = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "username": "crmhub",
        "secret": SECRET,
        "default_country_code": "7",
        "extension_max_len": 4,
        "recording_base_url": "https://pbx.example/rec/",
        "max_backoff_secs": 2
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            v.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

enum ToConn {
    Write(Vec<u8>),
    Close,
}

/// One accepted connection of the fake server. A task owns the socket: it answers
/// `Ping` by itself (pings come whenever paused time jumps) and hands every other action
/// to the test.
struct FakeConn {
    actions: mpsc::UnboundedReceiver<AmiMessage>,
    tx: mpsc::UnboundedSender<ToConn>,
    pings: Arc<AtomicUsize>,
    answer_pings: Arc<AtomicBool>,
}

impl FakeConn {
    async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the connector connects")
            .unwrap();
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let pings = Arc::new(AtomicUsize::new(0));
        let answer_pings = Arc::new(AtomicBool::new(true));
        tokio::spawn(serve(
            stream,
            actions_tx,
            rx,
            pings.clone(),
            answer_pings.clone(),
        ));
        Self {
            actions,
            tx,
            pings,
            answer_pings,
        }
    }

    /// Accepts the reconnect with the clock paused, so the backoff takes no real time.
    async fn accept_reconnect(listener: &TcpListener) -> Self {
        tokio::time::pause();
        let conn = Self::accept(listener).await;
        tokio::time::resume();
        conn
    }

    fn write(&self, bytes: impl Into<Vec<u8>>) {
        self.tx.send(ToConn::Write(bytes.into())).unwrap();
    }

    fn close(&self) {
        self.tx.send(ToConn::Close).unwrap();
    }

    async fn next_action(&mut self) -> Option<AmiMessage> {
        tokio::time::timeout(WAIT, self.actions.recv())
            .await
            .expect("an action or a closed connection")
    }

    async fn expect(&mut self, action: &str) -> AmiMessage {
        let msg = self.next_action().await.expect("connection open");
        assert_eq!(msg.get("Action"), Some(action), "{msg:?}");
        msg
    }

    fn respond(&self, action: &AmiMessage, fields: &[(&str, &str)]) {
        let mut text = format!(
            "Response: Success\r\nActionID: {}\r\n",
            action.action_id().unwrap()
        );
        for (k, v) in fields {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.write(text);
    }

    /// Plays the MD5 login and checks the key; answers `CoreShowChannels` with `list`
    /// (CoreShowChannel events from a fixture, their ActionID replaced).
    async fn login_and_resync(&mut self, list: Option<&[u8]>) {
        let challenge = self.expect("Challenge").await;
        assert_eq!(challenge.get("AuthType"), Some("MD5"));
        self.respond(&challenge, &[("Challenge", "840716384")]);
        let login = self.expect("Login").await;
        assert_eq!(login.get("Username"), Some("crmhub"));
        assert_eq!(login.get("AuthType"), Some("MD5"));
        assert_eq!(
            login.get("Secret"),
            None,
            "the secret never crosses the wire"
        );
        let mut md5 = Md5::new();
        md5.update(b"840716384");
        md5.update(SECRET.as_bytes());
        let expected: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(login.get("Key"), Some(expected.as_str()));
        assert_eq!(login.get("Events"), Some("call,agent,dialplan"));
        self.respond(&login, &[("Message", "Authentication accepted")]);
        self.write(
            "Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 86400\r\nLastReload: 86400\r\nStatus: Fully Booted\r\n\r\n",
        );
        let resync = self.expect("CoreShowChannels").await;
        let id = resync.action_id().unwrap().to_owned();
        self.respond(
            &resync,
            &[("EventList", "start"), ("Message", "Channels will follow")],
        );
        let mut count = 0;
        if let Some(list) = list {
            let text = String::from_utf8(list.to_vec()).unwrap();
            for block in text
                .split("\r\n\r\n")
                .filter(|b| b.starts_with("Event: CoreShowChannel\r\n"))
            {
                count += 1;
                self.write(format!("{}\r\n\r\n", block.replace("kommutator-2-3", &id)));
            }
        }
        self.write(format!(
            "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: {count}\r\n\r\n"
        ));
    }
}

async fn serve(
    stream: TcpStream,
    actions: mpsc::UnboundedSender<AmiMessage>,
    mut rx: mpsc::UnboundedReceiver<ToConn>,
    pings: Arc<AtomicUsize>,
    answer_pings: Arc<AtomicBool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"Asterisk Call Manager/7.0.3\r\n")
        .await
        .unwrap();
    let mut codec = AmiCodec::without_banner();
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(ToConn::Write(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(ToConn::Close) | None => return,
            },
            n = rd.read_buf(&mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    let AmiFrame::Message(m) = frame else { panic!("not an action: {frame:?}") };
                    if m.get("Action") == Some("Ping") {
                        pings.fetch_add(1, Ordering::Relaxed);
                        if !answer_pings.load(Ordering::Relaxed) {
                            continue;
                        }
                        let pong = format!(
                            "Response: Success\r\nActionID: {}\r\nPing: Pong\r\nTimestamp: 1714566000.000001\r\n\r\n",
                            m.action_id().unwrap()
                        );
                        if wr.write_all(pong.as_bytes()).await.is_err() {
                            return;
                        }
                    } else if actions.send(m).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn next_call_event(hub: &mut TestHarness) -> InboundEvent {
    let ev = hub.next_event(WAIT).await.expect("an event");
    assert_eq!(ev.connector_id.as_str(), "office_pbx");
    ev
}

fn call_kind(ev: &InboundEvent) -> &CallEventKind {
    match &ev.kind {
        InboundKind::Call(c) => &c.kind,
        other => panic!("not a call event: {other:?}"),
    }
}

async fn collect(hub: &mut TestHarness, n: usize) -> Vec<InboundEvent> {
    let mut out = vec![];
    for _ in 0..n {
        out.push(next_call_event(hub).await);
    }
    out
}

fn ids(evs: &[InboundEvent]) -> Vec<&str> {
    evs.iter().map(|e| e.external_id.as_str()).collect()
}

#[tokio::test]
async fn replays_a_call_across_a_reconnect_then_click_to_call_and_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connector = AsteriskAmi::new(config(port, serde_json::json!({}))).unwrap();
    let (ctx, mut hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(connector.run(ctx));

    let (before, after) = split_at(&events_of("inbound_answered.ami"), "Event: HangupRequest");

    // Session 1: the call rings at 101 and is answered; then the connection drops.
    let mut c1 = FakeConn::accept(&listener).await;
    c1.login_and_resync(None).await;
    c1.write(before);
    let mut events = collect(&mut hub, 3).await;
    assert_eq!(
        ids(&events),
        [
            "1714566600.101:ringing",
            "1714566600.101:ringing:101",
            "1714566600.101:answered"
        ]
    );
    assert_eq!(
        call_kind(&events[1]),
        &CallEventKind::Ringing {
            from: "+79161234567".to_owned(),
            to: "+74951234567".to_owned(),
            direction: Direction::Inbound,
            extension: Some("101".to_owned()),
        }
    );
    assert_eq!(events[1].raw.as_ref().unwrap()["Event"], "DialBegin");
    c1.close();

    // Session 2: the connector comes back, resyncs (the call is still up), and sees it end.
    let mut c2 = FakeConn::accept_reconnect(&listener).await;
    let snapshot = fixture("core_show_channels.ami");
    c2.login_and_resync(Some(&snapshot)).await;
    c2.write(after);
    events.extend(collect(&mut hub, 2).await);
    assert_eq!(
        ids(&events),
        [
            "1714566600.101:ringing",
            "1714566600.101:ringing:101",
            "1714566600.101:answered",
            "1714566600.101:hangup",
            "1714566600.101:recording:in-74951234567-89161234567-20240501-123000-1714566600.101.wav",
        ],
        "nothing reported twice across the reconnect"
    );
    assert_eq!(
        call_kind(&events[3]),
        &CallEventKind::HungUp {
            duration_secs: Some(93),
            cause: Some("Normal Clearing".to_owned())
        }
    );
    assert_eq!(
        call_kind(&events[4]),
        &CallEventKind::RecordingAvailable {
            url: "https://pbx.example/rec/2024/05/01/in-74951234567-89161234567-20240501-123000-1714566600.101.wav".to_owned()
        }
    );
    assert_eq!(
        hub.next_event(Duration::from_millis(200)).await,
        None,
        "no duplicate terminal event"
    );

    // Click-to-call: the PBX takes the Originate, then the operator's line is busy.
    hub.send_command(ConnectorCommand::Originate(OriginateRequest {
        call_external_id: "k-42".to_owned(),
        extension: "101".to_owned(),
        to: "+79161234567".to_owned(),
        caller_id: None,
    }))
    .await
    .unwrap();
    let originate = c2.expect("Originate").await;
    for (k, v) in [
        ("Channel", "PJSIP/101"),
        ("Context", "from-internal"),
        ("Exten", "79161234567"),
        ("Priority", "1"),
        ("Async", "true"),
        ("ChannelId", "k-42"),
        ("Timeout", "30000"),
        ("CallerID", "\"+79161234567\" <79161234567>"),
    ] {
        assert_eq!(originate.get(k), Some(v), "{k} in {originate:?}");
    }
    let aid = originate.action_id().unwrap().to_owned();
    c2.respond(&originate, &[("Message", "Originate successfully queued")]);
    c2.write(format!(
        "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {aid}\r\nResponse: Failure\r\n\
         Channel: PJSIP/101\r\nContext: from-internal\r\nExten: 79161234567\r\nApplication: \r\nData: \r\n\
         Reason: 5\r\nUniqueid: <null>\r\nCallerIDNum: <unknown>\r\nCallerIDName: <unknown>\r\n\r\n"
    ));
    let failed = next_call_event(&mut hub).await;
    assert_eq!(failed.external_id, "k-42:failed");
    assert_eq!(
        call_kind(&failed),
        &CallEventKind::Failed {
            reason: "extension 101 is busy".to_owned()
        }
    );
    // A second delivery of the same command places no second call.
    hub.send_command(ConnectorCommand::Originate(OriginateRequest {
        call_external_id: "k-42".to_owned(),
        extension: "101".to_owned(),
        to: "+79161234567".to_owned(),
        caller_id: None,
    }))
    .await
    .unwrap();

    assert_eq!(hub.next_event(Duration::from_millis(200)).await, None);

    // Shutdown: Logoff, connection closed, `run` returns Ok.
    hub.shutdown();
    c2.expect("Logoff").await;
    assert!(
        c2.next_action().await.is_none(),
        "connection closed, no other action"
    );
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(hub.try_next_event(), None);
}

#[tokio::test]
async fn wrong_login_is_an_auth_error_and_is_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connector = AsteriskAmi::new(config(port, serde_json::json!({}))).unwrap();
    let (ctx, _hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(connector.run(ctx));

    let mut c = FakeConn::accept(&listener).await;
    let challenge = c.expect("Challenge").await;
    c.respond(&challenge, &[("Challenge", "1361585736")]);
    let login = c.expect("Login").await;
    c.write(format!(
        "Response: Error\r\nActionID: {}\r\nMessage: Authentication failed\r\n\r\n",
        login.action_id().unwrap()
    ));
    let err = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "authentication failed: login as `crmhub` rejected: Authentication failed"
    );
    assert!(!err.to_string().contains(SECRET));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "no second attempt"
    );
}

#[tokio::test]
async fn plain_login_sends_the_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = config(
        port,
        serde_json::json!({"auth": "plain", "recording_base_url": null}),
    );
    let (ctx, hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(AsteriskAmi::new(cfg).unwrap().run(ctx));
    let mut c = FakeConn::accept(&listener).await;
    let login = c.expect("Login").await;
    assert_eq!(login.get("Secret"), Some(SECRET));
    assert_eq!(login.get("Events"), Some("call,agent"));
    c.respond(&login, &[("Message", "Authentication accepted")]);
    c.expect("CoreShowChannels").await;
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn nothing_listening_is_a_retryable_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (ctx, _hub) = ConnectorContext::for_test("office_pbx");
    let err = AsteriskAmi::new(config(port, serde_json::json!({})))
        .unwrap()
        .run(ctx)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn bad_input_is_rejected_and_an_oversized_line_restarts_the_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ctx, mut hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(
        AsteriskAmi::new(config(port, serde_json::json!({})))
            .unwrap()
            .run(ctx),
    );

    let mut c1 = FakeConn::accept(&listener).await;
    c1.login_and_resync(None).await;
    // Garbage that is still framed: rejected, logged, and the stream goes on.
    c1.write(&b"\x00\x01\xff garbage\r\nno colon here\r\n\r\n"[..]);
    let (ringing, _) = split_at(&events_of("missed_busy.ami"), "Event: DialBegin");
    c1.write(ringing);
    let ev = next_call_event(&mut hub).await;
    assert_eq!(ev.external_id, "1714567200.120:ringing");
    // An endless line: framing is lost, the session restarts.
    c1.write(vec![b'x'; 20_000]);
    let mut c2 = FakeConn::accept_reconnect(&listener).await;
    c2.login_and_resync(None).await;
    // The call was not listed by the resync: it ended while the session was down.
    let ev = next_call_event(&mut hub).await;
    assert_eq!(ev.external_id, "1714567200.120:missed");
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_slow_hub_overflows_the_backlog_and_the_resync_still_ends_the_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = config(port, serde_json::json!({"max_backlog_messages": 16}));
    // A hub that holds one event at a time and is not reading yet.
    let (ctx, mut hub) = ConnectorContext::for_test_with_capacity("office_pbx", 1);
    let task = tokio::spawn(AsteriskAmi::new(cfg).unwrap().run(ctx));

    let mut c1 = FakeConn::accept(&listener).await;
    c1.login_and_resync(None).await;
    // The call rings at 102, then 40 events of noise, then it ends (busy).
    let (ringing, end) = split_at(&events_of("missed_busy.ami"), "Event: DialEnd");
    let mut flood = ringing;
    for i in 0..40 {
        flood.extend_from_slice(
            format!(
                "Event: RTCPSent\r\nPrivilege: reporting,all\r\nChannel: PJSIP/rt-trunk-00000045\r\n\
                 Uniqueid: 1714567200.120\r\nLinkedid: 1714567200.120\r\nSSRC: 0x{i:08x}\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    flood.extend_from_slice(&end);
    c1.write(flood);
    // Let the connector read everything while the hub does not read.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The hub catches up: the overflow dropped the session; the connector reconnects and
    // resyncs.
    tokio::time::pause();
    let first = collect(&mut hub, 2).await;
    assert_eq!(
        ids(&first),
        ["1714567200.120:ringing", "1714567200.120:ringing:102"]
    );
    let mut c2 = FakeConn::accept(&listener).await;
    tokio::time::resume();
    c2.login_and_resync(None).await;
    let last = next_call_event(&mut hub).await;
    assert_eq!(
        last.external_id, "1714567200.120:missed",
        "the terminal state is not lost"
    );
    assert_eq!(
        call_kind(&last),
        &CallEventKind::Missed {
            reason: MissedReason::NoAnswer
        }
    );
    assert_eq!(hub.next_event(Duration::from_millis(200)).await, None);
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn pings_keep_the_session_and_a_missing_pong_restarts_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = config(
        port,
        serde_json::json!({"ping_interval_secs": 1, "ping_timeout_secs": 1}),
    );
    let (ctx, hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(AsteriskAmi::new(cfg).unwrap().run(ctx));

    let mut c1 = FakeConn::accept(&listener).await;
    c1.login_and_resync(None).await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let pings = c1.pings.load(Ordering::Relaxed);
    assert!(pings >= 2, "a Ping every second, got {pings}");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), listener.accept())
            .await
            .is_err(),
        "no reconnect while Pongs come back"
    );

    // The server stops answering: the next Ping times out and the session restarts.
    c1.answer_pings.store(false, Ordering::Relaxed);
    let mut c2 = FakeConn::accept_reconnect(&listener).await;
    assert!(
        c1.pings.load(Ordering::Relaxed) > pings,
        "the unanswered Ping was sent"
    );
    assert!(
        c1.next_action().await.is_none(),
        "the dead session was closed"
    );
    c2.login_and_resync(None).await;
    hub.shutdown();
    c2.expect("Logoff").await;
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Plays the calls of `fixture` (after an empty resync) and returns the `n` events the
/// connector hands to the hub; checks that nothing more comes, and shuts it down.
async fn play_call(fixture: &str, n: usize) -> Vec<InboundEvent> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ctx, mut hub) = ConnectorContext::for_test("office_pbx");
    let task = tokio::spawn(
        AsteriskAmi::new(config(port, serde_json::json!({})))
            .unwrap()
            .run(ctx),
    );
    let mut c = FakeConn::accept(&listener).await;
    c.login_and_resync(None).await;
    c.write(events_of(fixture));
    let events = collect(&mut hub, n).await;
    assert_eq!(
        hub.next_event(Duration::from_millis(200)).await,
        None,
        "{fixture}: nothing after the terminal event"
    );
    hub.shutdown();
    c.expect("Logoff").await;
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    events
}

#[tokio::test]
async fn a_ring_group_nobody_answers_is_one_missed_call() {
    let events = play_call("ring_group_no_answer.ami", 4).await;
    assert_eq!(
        ids(&events),
        [
            "1714572000.180:ringing",
            "1714572000.180:ringing:101",
            "1714572000.180:ringing:102",
            "1714572000.180:missed",
        ]
    );
    let ringing_at = |ext: Option<&str>| CallEventKind::Ringing {
        from: "+79031234567".to_owned(),
        to: "+74951234567".to_owned(),
        direction: Direction::Inbound,
        extension: ext.map(str::to_owned),
    };
    assert_eq!(call_kind(&events[0]), &ringing_at(None));
    assert_eq!(call_kind(&events[1]), &ringing_at(Some("101")));
    assert_eq!(call_kind(&events[2]), &ringing_at(Some("102")));
    assert_eq!(
        call_kind(&events[3]),
        &CallEventKind::Missed {
            reason: MissedReason::NoAnswer
        },
        "both legs ended NOANSWER; the dialplan's Hangup() is not a cancel"
    );
    // The call ends with the caller's leg, not with either phone's.
    let raw = events[3].raw.as_ref().unwrap();
    assert_eq!(raw["Event"], "Hangup", "{raw}");
    assert_eq!(raw["Channel"], "PJSIP/rt-trunk-00000080", "{raw}");
    for ev in &events {
        let InboundKind::Call(call) = &ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(call.call_external_id, "1714572000.180");
    }
}

#[tokio::test]
async fn an_answered_outbound_call_over_a_bare_lf_session() {
    let events = play_call("lf_only_outbound.ami", 3).await;
    assert_eq!(
        ids(&events),
        [
            "1714571000.170:ringing:103",
            "1714571000.170:answered",
            "1714571000.170:hangup",
        ]
    );
    assert_eq!(
        call_kind(&events[0]),
        &CallEventKind::Ringing {
            from: "103".to_owned(),
            to: "+79167654321".to_owned(),
            direction: Direction::Outbound,
            extension: Some("103".to_owned()),
        }
    );
    assert_eq!(
        call_kind(&events[1]),
        &CallEventKind::Answered {
            by_extension: Some("103".to_owned())
        }
    );
    assert!(
        matches!(
            call_kind(&events[2]),
            CallEventKind::HungUp {
                duration_secs: Some(_),
                ..
            }
        ),
        "{:?}",
        events[2]
    );
}
