//! Resume and idempotence of the live stream at volume (the issue's numbers: 10,000 inbound
//! events over 50 dialogs; `KOMMUTATOR_TEST_SCALE`, a float, scales the count).
//!
//! - **Resume**: a client dropped at random points while the events flow (after `hello`,
//!   right after `subscribe`, in the middle of a replay, while live) reconnects with `since`
//!   and ends with every event of its topic exactly once, in `seq` order, and every message
//!   in the order it was sent in its thread. Replays come from the ring and from the store.
//! - **`resync`**: a gap over `realtime.max_replay` (exactly at the limit and one over, from
//!   the ring and from the store), then live events go on.
//! - **Slow consumer**: a client that stops reading is closed with `4008` while another one
//!   keeps receiving everything; resuming with `since` gives the slow one everything too.
//! - **Idempotence**: the same events from two concurrent senders are stored once and reach
//!   a subscribed operator once (one `message` `create` each), however many of the
//!   connection's topics carry them; sending them all a third time changes nothing.
//!
//! The random points come from a fixed seed (`KOMMUTATOR_TEST_SEED` overrides it); the
//! timing of the stream still varies from run to run, which is the point.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kommutator::domain::{ChangeEntry, Role, Scope, Timestamp, Topic};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::helpers::*;
use crate::ws_client::*;

/// Inbound events per volume test (the issue's number), before `KOMMUTATOR_TEST_SCALE`.
const EVENTS: usize = 10_000;
/// Dialogs (threads, each from its own phone) the events are spread over.
const THREADS: usize = 50;
/// Events per batch request.
const BATCH: usize = 500;
/// How long a reader waits for the stream before it calls it finished (or stuck).
const QUIET: Duration = Duration::from_millis(700);
/// How long the stream may stay silent while events are still expected.
const STUCK: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `KOMMUTATOR_TEST_SCALE` (default 1.0).
fn scale() -> f64 {
    std::env::var("KOMMUTATOR_TEST_SCALE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

/// `n` scaled, at least one event per thread.
fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(THREADS)
}

fn seed() -> u64 {
    std::env::var("KOMMUTATOR_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0x6b6f_6d6d_7574_6174)
}

/// SplitMix64: small, deterministic, good enough to pick disconnection points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A valid Russian mobile number, distinct per thread.
fn phone(thread: usize) -> String {
    format!("+7 916 000-{:02}-{:02}", thread / 100, thread % 100)
}

fn thread_id(thread: usize) -> String {
    format!("t-{thread:03}")
}

/// The inbound events of a run: event `k` goes to thread `k % THREADS`; a thread's events
/// are sent in the order of `k`.
struct Traffic {
    events: Vec<Value>,
    /// External id → (thread, index of the event within its thread).
    place: HashMap<String, (usize, usize)>,
}

fn traffic(n: usize, prefix: &str, body_bytes: usize) -> Traffic {
    let mut events = Vec::with_capacity(n);
    let mut place = HashMap::with_capacity(n);
    for k in 0..n {
        let t = k % THREADS;
        let ext = format!("{prefix}-{k:06}");
        let mut text = format!("{} #{}", thread_id(t), k / THREADS);
        if text.len() < body_bytes {
            text.push(' ');
            text.push_str(&"x".repeat(body_bytes - text.len()));
        }
        events.push(inbound(&ext, &thread_id(t), &phone(t), &text));
        place.insert(ext, (t, k / THREADS));
    }
    Traffic { events, place }
}

/// What one sender's batches answered.
#[derive(Debug, Default)]
struct FeedReport {
    /// External id → (`stored` or `duplicate`, message id) of the answer that counted.
    outcomes: Vec<(String, String, i64)>,
    /// Batches answered 5xx and sent again (a connector retries; see the deadlock test).
    retries: usize,
    /// The 5xx answers.
    failures: Vec<String>,
}

/// Posts inbound events in batches, like a connector would.
#[derive(Clone)]
struct Feeder {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Feeder {
    fn new(app: &TestApp, key: &Principal) -> Self {
        Self {
            http: app.http.clone(),
            url: format!("{}/api/v1/connectors/site/events/batch", app.base),
            token: key.token.clone(),
        }
    }

    /// One batch; `Err` with the body on a 5xx (retryable), panics on anything else.
    async fn batch(&self, events: &[Value]) -> Result<Vec<Value>, String> {
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("batch request");
        let status = resp.status();
        let text = resp.text().await.expect("batch body");
        if status.is_server_error() {
            return Err(format!("{status}: {text}"));
        }
        assert_eq!(status, StatusCode::OK, "batch refused: {text}");
        let body: Value = serde_json::from_str(&text).expect("batch answer is JSON");
        let items = body.as_array().expect("a list of results").clone();
        assert_eq!(items.len(), events.len(), "one result per event: {text}");
        Ok(items)
    }

    /// Sends `events` in order, `batch` at a time; a batch answered 5xx is sent again (the
    /// events before the failing one were stored: they come back as duplicates).
    async fn send(self, events: Vec<Value>, batch: usize) -> FeedReport {
        let mut report = FeedReport::default();
        for chunk in events.chunks(batch) {
            let mut attempt = 0;
            let items = loop {
                attempt += 1;
                match self.batch(chunk).await {
                    Ok(items) => break items,
                    Err(e) if attempt < 10 => {
                        report.retries += 1;
                        report.failures.push(e);
                    }
                    Err(e) => panic!("a batch failed 10 times, last: {e}"),
                }
            };
            for (ev, item) in chunk.iter().zip(items) {
                assert_eq!(item["external_id"], ev["external_id"], "{item}");
                assert!(item.get("error").is_none(), "event refused: {item}");
                let out = &item["outcome"];
                assert_eq!(out["result"], "message", "{item}");
                let status = out["status"].as_str().expect("status").to_owned();
                let id = match status.as_str() {
                    "stored" => out["message"]["id"].as_i64(),
                    "duplicate" => out["message_id"].as_i64(),
                    other => panic!("unexpected outcome {other}: {item}"),
                }
                .expect("message id");
                let ext = ev["external_id"].as_str().expect("external id").to_owned();
                report.outcomes.push((ext, status, id));
            }
        }
        report
    }
}

/// One event as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    seq: i64,
    entity: String,
    op: String,
    entity_id: i64,
    dialog_id: Option<i64>,
    external_id: Option<String>,
}

impl Seen {
    fn of(v: &Value) -> Self {
        Self {
            seq: v["seq"].as_i64().expect("event seq"),
            entity: v["entity"].as_str().expect("entity").to_owned(),
            op: v["op"].as_str().expect("op").to_owned(),
            entity_id: v["entity_id"].as_i64().expect("entity_id"),
            dialog_id: v["data"]["dialog_id"].as_i64(),
            external_id: v["data"]["external_id"].as_str().map(str::to_owned),
        }
    }

    fn is_message_create(&self) -> bool {
        self.entity == "message" && self.op == "create"
    }
}

/// What a read returned.
enum Got {
    Frame(Value),
    Closed(u16),
    Dropped,
    Quiet,
}

/// The next text frame within `wait`; a close or a drop is an answer, not a panic.
async fn recv(ws: &mut Ws, wait: Duration) -> Got {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.stream.next()).await {
            Err(_) => return Got::Quiet,
            Ok(None) | Ok(Some(Err(_))) => return Got::Dropped,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Got::Frame(
                    serde_json::from_str(t.as_str()).expect("server frames are JSON"),
                )
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return Got::Closed(c.map_or(1005, |c| u16::from(c.code)))
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn subscribe_frame(topic: &str, since: Option<i64>) -> Value {
    let mut f = json!({"type": "subscribe", "id": format!("sub-{topic}"), "topic": topic});
    if let Some(s) = since {
        f["since"] = json!(s);
    }
    f
}

/// The whole change log after `after`, oldest first.
async fn change_log(app: &TestApp, after: i64) -> Vec<ChangeEntry> {
    let mut out = Vec::new();
    let mut since = after;
    loop {
        let page = app
            .store
            .changes_since(since, 1000)
            .await
            .expect("change log");
        let Some(last) = page.last() else { break };
        since = last.seq;
        out.extend(page);
    }
    out
}

/// Seqs of the change-log entries on any of `topics`.
fn seqs_on(log: &[ChangeEntry], topics: &[Topic]) -> Vec<i64> {
    log.iter()
        .filter(|e| e.topics.iter().any(|t| topics.contains(t)))
        .map(|e| e.seq)
        .collect()
}

/// The seqs up to `last` (none when nothing was received).
fn upto(seqs: Vec<i64>, last: Option<&i64>) -> Vec<i64> {
    let last = last.copied().unwrap_or(i64::MIN);
    seqs.into_iter().filter(|s| *s <= last).collect()
}

/// Asserts that a client got exactly the `want` events (seqs, in order); on failure says
/// which are missing (with what they are), which are extra or doubled, and where the two
/// first differ.
#[track_caller]
fn assert_same_events(got: &[i64], want: &[i64], log: &[ChangeEntry], what: &str) {
    if got == want {
        return;
    }
    let w: HashSet<i64> = want.iter().copied().collect();
    let g: HashSet<i64> = got.iter().copied().collect();
    let mut missing: Vec<i64> = w.difference(&g).copied().collect();
    let mut extra: Vec<i64> = g.difference(&w).copied().collect();
    missing.sort_unstable();
    extra.sort_unstable();
    let describe: Vec<String> = log
        .iter()
        .filter(|e| missing.contains(&e.seq))
        .take(10)
        .map(|e| format!("{} {} {} {}", e.seq, e.entity, e.op, e.entity_id))
        .collect();
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: {} expected, {} received ({} distinct); {} missing, e.g. {describe:?}; {} not \
         expected, e.g. {:?}; first difference at index {first_diff:?}",
        want.len(),
        got.len(),
        g.len(),
        missing.len(),
        extra.len(),
        &extra[..extra.len().min(10)]
    );
}

/// Stored messages (from the change log): message id → (seq, dialog id, external id).
fn stored_messages(log: &[ChangeEntry]) -> BTreeMap<i64, (i64, i64, String)> {
    let mut out = BTreeMap::new();
    for e in log
        .iter()
        .filter(|e| e.entity == "message" && e.op == "create")
    {
        let ext = e.data["external_id"]
            .as_str()
            .expect("external id")
            .to_owned();
        let dialog = e.data["dialog_id"].as_i64().expect("dialog id");
        let before = out.insert(e.entity_id, (e.seq, dialog, ext));
        assert!(
            before.is_none(),
            "message {} created twice in the log",
            e.entity_id
        );
    }
    out
}

/// Every dialog's messages through REST (paged), oldest first: dialog id → external ids.
async fn messages_by_rest(app: &TestApp, department: i64) -> BTreeMap<i64, Vec<String>> {
    let mut dialogs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![
            ("department_id", department.to_string()),
            ("limit", "200".to_owned()),
        ];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let path = format!(
            "/api/v1/dialogs?{}",
            serde_urlencoded::to_string(&q).expect("query")
        );
        let (status, page) = app.get(Some(&app.admin), &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for d in page["items"].as_array().expect("items") {
            dialogs.push(d["id"].as_i64().expect("dialog id"));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut out = BTreeMap::new();
    for d in dialogs {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = vec![("limit", "200".to_owned())];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let path = format!(
                "/api/v1/dialogs/{d}/messages?{}",
                serde_urlencoded::to_string(&q).expect("query")
            );
            let (status, page) = app.get(Some(&app.admin), &path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for m in page["items"].as_array().expect("items") {
                ids.push(m["external_id"].as_str().expect("external id").to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        out.insert(d, ids);
    }
    out
}

/// Checks that per dialog, the messages seen are exactly the thread's events in the order
/// they were sent (and every event of the traffic is there).
#[track_caller]
fn assert_thread_order(traffic: &Traffic, per_dialog: &BTreeMap<i64, Vec<String>>, what: &str) {
    let mut threads_seen = HashSet::new();
    let mut total = 0;
    for (dialog, ids) in per_dialog {
        let Some(first) = ids.first() else { continue };
        let (thread, _) = traffic.place[first];
        assert!(
            threads_seen.insert(thread),
            "{what}: thread {thread} is split over several dialogs"
        );
        for (i, ext) in ids.iter().enumerate() {
            let (t, idx) = *traffic
                .place
                .get(ext)
                .unwrap_or_else(|| panic!("{what}: unknown message {ext} in dialog {dialog}"));
            assert_eq!(
                (t, idx),
                (thread, i),
                "{what}: dialog {dialog} has {ext} at position {i}"
            );
        }
        total += ids.len();
    }
    assert_eq!(total, traffic.events.len(), "{what}: number of messages");
    assert_eq!(
        threads_seen.len(),
        THREADS.min(traffic.events.len()),
        "{what}: dialogs"
    );
}

/// Connects to `/ws/operator` through a socket with a small receive buffer, so that a client
/// that stops reading backs up into the server quickly; reads the `hello`.
async fn connect_small_buffer(app: &TestApp, who: &Principal) -> Ws {
    let addr: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let tcp = socket.connect(addr).await.expect("connect");
    let mut req = format!("ws://{addr}/ws/operator")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", who.token)).expect("header"),
    );
    let (stream, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket connects");
    let mut ws = Ws { stream };
    let hello = ws.next().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    ws
}

/// Reads `ws` until `want` message creates have come and the stream has been quiet for
/// [`QUIET`] (or nothing came for [`STUCK`]). Every event is checked to come once.
async fn read_until_quiet(mut ws: Ws, want: usize) -> (Vec<Seen>, Ws) {
    let mut seen: Vec<Seen> = Vec::new();
    let mut seqs = HashSet::new();
    let mut messages = 0;
    let mut last_frame = Instant::now();
    loop {
        let wait = if messages >= want { QUIET } else { STUCK };
        match recv(&mut ws, wait).await {
            Got::Frame(v) => {
                last_frame = Instant::now();
                match v["type"].as_str() {
                    Some("event") => {
                        let s = Seen::of(&v);
                        assert!(seqs.insert(s.seq), "event {} received twice: {v}", s.seq);
                        if s.is_message_create() {
                            messages += 1;
                        }
                        seen.push(s);
                    }
                    Some("error" | "unsubscribed" | "resync") => panic!("unexpected frame {v}"),
                    _ => {}
                }
            }
            Got::Quiet => {
                if messages < want {
                    eprintln!(
                        "the stream stalled: {messages} of {want} messages after {:?} of silence",
                        last_frame.elapsed()
                    );
                }
                return (seen, ws);
            }
            Got::Closed(c) => panic!("the reader was closed with {c}"),
            Got::Dropped => panic!("the reader was dropped"),
        }
    }
}

fn sales_config(
    tweak: impl FnOnce(&mut kommutator::config::Config),
) -> impl FnOnce(&mut kommutator::config::Config) {
    move |c| {
        with_api_channel("Sales", None)(c);
        tweak(c);
    }
}

// ---------------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------------

/// The replay ring of the resume test: longer gaps are replayed from the store.
const RING: i64 = 2_000;

/// What the resuming client went through.
#[derive(Debug, Default)]
struct ResumeStats {
    connections: usize,
    /// Dropped after `hello` or right after `subscribe`.
    before_subscribe: usize,
    /// Dropped before `subscribed` came (within the replay).
    mid_replay: usize,
    /// Dropped while following the live stream.
    live: usize,
    /// Resumed from further back than the ring holds (replayed from the store).
    beyond_ring: usize,
    /// Closed as slow (allowed: it resumes).
    kicked: usize,
    /// Subscriptions whose reply came after live events (`seq > until`), and those events.
    /// Resumptions after the stream went quiet at the end (changes committed later).
    catch_up: usize,
    /// Events replayed (by completed subscriptions), and the most at once.
    replayed: i64,
    max_replayed: i64,
}

/// The issue's resume requirement: 10,000 events flow while a client is dropped at random
/// points; reconnecting with `since` it ends with every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_random_drops_gets_every_event_once_in_order() {
    let n = scaled(EVENTS);
    let app = spawn_app_with(sales_config(|c| {
        // Gaps here stay far below this: no `resync` (that has its own test).
        c.realtime.max_replay = 50_000;
        // A small ring, so that long gaps are replayed from the store.
        c.realtime.replay_ring = RING as usize;
    }))
    .await;
    let started = Instant::now();
    let sales = app.department("Sales").await;
    let op = app.user("olga", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let mut rng = Rng(seed());
    let dept = Topic::dept(sales);
    let topic = dept.to_string();

    // An operator online the whole time (takes 5 dialogs; the rest wait in the queue).
    // Her socket is read (pings answered) but follows nothing.
    let (mut op_ws, _) = Ws::operator(&app, &op).await;
    let op_reader = tokio::spawn(async move { while op_ws.stream.next().await.is_some() {} });

    let traffic = traffic(n, "r", 0);
    let start = app.last_seq().await;
    let feeder = Feeder::new(&app, &key);
    let events = traffic.events.clone();
    let feeder = tokio::spawn(async move {
        let t0 = Instant::now();
        let report = feeder.send(events, BATCH).await;
        (report, t0.elapsed())
    });

    let mut last = start;
    let mut seen: Vec<Seen> = Vec::new();
    let mut messages = 0usize;
    let mut stats = ResumeStats::default();
    'connections: loop {
        let (mut ws, hello) = Ws::operator(&app, &app.admin).await;
        stats.connections += 1;
        let done = feeder.is_finished() && messages >= n;
        // Random point: right after `hello`.
        if !done && rng.chance(4) {
            stats.before_subscribe += 1;
            continue;
        }
        let behind = hello["seq"].as_i64().expect("hello seq") - last;
        ws.send(subscribe_frame(&topic, Some(last))).await;
        // Random point: right after `subscribe`, before any answer.
        if !done && rng.chance(4) {
            stats.before_subscribe += 1;
            continue;
        }
        if behind > RING {
            stats.beyond_ring += 1;
        }
        // Events to read before the next drop: sometimes fewer than the replay (a drop in
        // its middle), else enough to reach the live stream and follow it for a while.
        let behind = u64::try_from(behind.max(0)).expect("positive");
        let mut budget = match (done, rng.below(10)) {
            (true, _) => u64::MAX,
            (false, 0..=2) if behind > 1 => 1 + rng.below(behind),
            (false, _) => behind + 1 + rng.below(500),
        };
        // `until` once `subscribed` came; the events before it.
        let mut until: Option<i64> = None;
        let mut before_reply: Vec<i64> = Vec::new();
        let mut silent_since = Instant::now();
        loop {
            let got = recv(&mut ws, QUIET).await;
            if !matches!(got, Got::Quiet) {
                silent_since = Instant::now();
            }
            match got {
                Got::Frame(v) => match v["type"].as_str() {
                    Some("event") => {
                        let s = Seen::of(&v);
                        assert!(
                            s.seq > last,
                            "event {} after {last} (a duplicate or out of order): {v}",
                            s.seq
                        );
                        assert!(
                            v["topics"]
                                .as_array()
                                .expect("topics")
                                .contains(&json!(topic)),
                            "{v}"
                        );
                        last = s.seq;
                        if s.is_message_create() {
                            messages += 1;
                        }
                        match until {
                            None => before_reply.push(s.seq),
                            Some(u) => assert!(s.seq > u, "{} after subscribed until {u}", s.seq),
                        }
                        seen.push(s);
                        budget -= 1;
                        if budget == 0 {
                            if until.is_some() {
                                stats.live += 1;
                            } else {
                                stats.mid_replay += 1;
                            }
                            break;
                        }
                    }
                    Some("subscribed") => {
                        assert_eq!(v["topic"], topic, "{v}");
                        assert_eq!(v["id"], format!("sub-{topic}"), "{v}");
                        let u = v["until"].as_i64().expect("until");
                        let r = v["replayed"].as_i64().expect("replayed");
                        // The replay: the events up to `until`; live events after it come
                        // after this reply, as the protocol document says.
                        let replay = before_reply.iter().filter(|s| **s <= u).count();
                        assert_eq!(replay as i64, r, "events replayed: {v}");
                        let early = before_reply.len() - replay;
                        assert_eq!(early, 0, "live events came before `subscribed`: {v}");
                        stats.replayed += r;
                        stats.max_replayed = stats.max_replayed.max(r);
                        until = Some(u);
                    }
                    _ => panic!("unexpected frame: {v}"),
                },
                // Resumable: falling behind is allowed, resuming must repair it.
                Got::Closed(4008) => {
                    stats.kicked += 1;
                    break;
                }
                Got::Closed(c) => panic!("closed with {c}"),
                Got::Dropped => panic!("the server dropped the connection"),
                Got::Quiet => {
                    if feeder.is_finished() && messages >= n {
                        break 'connections;
                    }
                    // Quiet with messages missing: when the store has nothing newer, they
                    // will not come (the checks below say which).
                    if feeder.is_finished()
                        && seqs_on(&change_log(&app, last).await, &[dept]).is_empty()
                    {
                        break 'connections;
                    }
                    assert!(
                        silent_since.elapsed() < STUCK,
                        "no event for {STUCK:?}: {messages} of {n} messages, last seq {last}, \
                         store at {}",
                        app.last_seq().await
                    );
                }
            }
        }
        drop(ws);
        // Away while a number of changes are committed: none, a few, many, more than the
        // ring holds.
        if !feeder.is_finished() {
            let away = match rng.below(20) {
                0..=3 => 0,
                4..=11 => rng.below(300),
                12..=16 => 300 + rng.below(1_200),
                _ => RING as u64 + rng.below(1_000),
            };
            let from = app.last_seq().await;
            let away = from + i64::try_from(away).expect("small");
            let until = Instant::now() + Duration::from_secs(5);
            while !feeder.is_finished() && app.last_seq().await < away && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let ended = Timestamp::now();
    let (report, feeding) = feeder.await.expect("feeder");
    let sending = started.elapsed();

    // A change committed after the stream went quiet (routing reacting, presence) is not
    // missed: like a client told by REST that it is behind, resume until the store has no
    // more. Only changes that young: an older one should have come live.
    loop {
        let log = change_log(&app, last).await;
        for e in log.iter().filter(|e| e.topics.contains(&dept)) {
            let age = Duration::from_micros(u64::try_from(ended.0 - e.at.0).unwrap_or(0));
            assert!(
                age < QUIET + Duration::from_secs(2),
                "{} {} {} (seq {}) was committed {age:?} before the end and did not come live",
                e.entity,
                e.op,
                e.entity_id,
                e.seq
            );
        }
        let behind = seqs_on(&log, &[dept]);
        let Some(&target) = behind.last() else { break };
        stats.catch_up += 1;
        assert!(stats.catch_up < 20, "the store keeps moving: {behind:?}");
        let (mut ws, _) = Ws::operator(&app, &app.admin).await;
        ws.send(subscribe_frame(&topic, Some(last))).await;
        while last < target {
            match recv(&mut ws, FRAME_WAIT).await {
                Got::Frame(v) if v["type"] == "event" => {
                    let s = Seen::of(&v);
                    assert!(s.seq > last, "event {} after {last}: {v}", s.seq);
                    last = s.seq;
                    seen.push(s);
                }
                Got::Frame(v) if v["type"] == "subscribed" => {}
                Got::Frame(v) => panic!("unexpected frame: {v}"),
                _ => panic!("catching up: no event after {last}, the store has {behind:?}"),
            }
        }
    }

    // Everything the store has on the topic came, once (the asserts above: in seq order).
    let log = change_log(&app, start).await;
    op_reader.abort();
    let expected = seqs_on(&log, &[dept]);
    let got: Vec<i64> = seen.iter().map(|s| s.seq).collect();
    assert_same_events(&got, &expected, &log, &format!("events of {topic}"));

    // Every stored message came once; per dialog in the order its thread sent them.
    let stored = stored_messages(&log);
    assert_eq!(stored.len(), n, "messages stored");
    let received: BTreeMap<i64, i64> = seen
        .iter()
        .filter(|s| s.is_message_create())
        .map(|s| (s.entity_id, s.seq))
        .collect();
    assert_eq!(received.len(), n, "message events received");
    for (id, (seq, _, _)) in &stored {
        assert_eq!(received.get(id), Some(seq), "message {id}");
    }
    let mut per_dialog: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut last_in_dialog: HashMap<i64, i64> = HashMap::new();
    for s in seen.iter().filter(|s| s.is_message_create()) {
        let d = s.dialog_id.expect("message events carry dialog_id");
        let before = last_in_dialog.insert(d, s.seq).unwrap_or(0);
        assert!(s.seq > before, "dialog {d}: {} after {before}", s.seq);
        per_dialog.entry(d).or_default().push(
            s.external_id
                .clone()
                .expect("message events carry external_id"),
        );
    }
    assert_thread_order(&traffic, &per_dialog, "received");
    // The store agrees (through REST).
    let rest = messages_by_rest(&app, sales).await;
    assert_eq!(rest, per_dialog, "REST and the stream disagree");

    eprintln!(
        "resume on {}: {n} messages, {} events of {topic}; {stats:?}; {} batch retries; \
         sent in {feeding:?}, all received after {:?}, checked in {:?}",
        backend_name(),
        got.len(),
        report.retries,
        sending,
        started.elapsed() - sending
    );
}

// ---------------------------------------------------------------------------------------
// resync
// ---------------------------------------------------------------------------------------

/// Ingests `k` messages on thread `t-000` one by one (the dialog exists after the first).
async fn ingest_n(app: &TestApp, key: &Principal, from: usize, k: usize) {
    for i in from..from + k {
        let (status, out) = ingest(
            app,
            key,
            &inbound(
                &format!("s-{i:04}"),
                &thread_id(0),
                &phone(0),
                &format!("message {i}"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["status"], "stored", "{out}");
    }
}

/// Reads events until `want` of them came (or the stream is quiet); returns them.
async fn read_events(ws: &mut Ws, want: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < want {
        match recv(ws, FRAME_WAIT).await {
            Got::Frame(v) if v["type"] == "event" => out.push(v),
            Got::Frame(v) => panic!("unexpected frame {v}"),
            Got::Quiet => break,
            Got::Closed(c) => panic!("closed with {c}"),
            Got::Dropped => panic!("dropped"),
        }
    }
    out
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

/// `max_replay = 10`: a gap of exactly 10 events of the topic is replayed, 11 is `resync`
/// (nothing replayed, `until` = the position), and live events go on after it.
async fn resync_case(ring: usize) {
    let app = spawn_app_with(sales_config(move |c| {
        c.realtime.max_replay = 10;
        c.realtime.replay_ring = ring;
    }))
    .await;
    let sales = app.department("Sales").await;
    let op = app.user("olga", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let dept = Topic::dept(sales);
    let topic = dept.to_string();
    let dept_seqs = |log: Vec<ChangeEntry>| seqs_on(&log, &[dept]);

    // Live from the start; the first message opens the dialog (it waits in the queue).
    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    let (replayed, sub) = ws.subscribe(&topic, None).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let start = sub["until"].as_i64().expect("until");
    ingest_n(&app, &key, 0, 2).await;
    let want = dept_seqs(change_log(&app, start).await);
    let live = read_events(&mut ws, want.len()).await;
    assert_eq!(seqs(&live), want, "live events");
    let mut last = *want.last().expect("events");
    drop(ws);

    // A gap of exactly max_replay events: replayed. In an open dialog each message is one
    // event of the department.
    ingest_n(&app, &key, 2, 10).await;
    let gap = dept_seqs(change_log(&app, last).await);
    assert_eq!(gap.len(), 10, "the gap is 10 events: {gap:?}");
    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    let (replayed, sub) = ws.subscribe(&topic, Some(last)).await;
    assert_eq!(
        sub["type"], "subscribed",
        "a gap of max_replay is replayed: {sub}"
    );
    assert_eq!(sub["replayed"], 10, "{sub}");
    assert_eq!(seqs(&replayed), gap);
    last = *gap.last().expect("gap");
    assert_eq!(sub["until"], last, "{sub}");
    drop(ws);

    // One more than max_replay: the operator's capacity changes (one presence event of the
    // department), then ten more messages.
    let (status, body) = app
        .request(
            reqwest::Method::PUT,
            Some(&app.admin),
            &format!("/api/v1/users/{}/capacity", op.id),
            Some(&json!({"max_dialogs": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    ingest_n(&app, &key, 12, 10).await;
    let gap = dept_seqs(change_log(&app, last).await);
    assert_eq!(gap.len(), 11, "the gap is 11 events: {gap:?}");
    let (status, pos) = app.get(Some(&app.admin), "/api/v1/realtime/position").await;
    assert_eq!(status, StatusCode::OK, "{pos}");
    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    let (replayed, sub) = ws.subscribe(&topic, Some(last)).await;
    assert_eq!(sub["type"], "resync", "a gap over max_replay: {sub}");
    assert_eq!(sub["reason"], "too_old", "{sub}");
    assert_eq!(sub["topic"], topic, "{sub}");
    assert!(replayed.is_empty(), "nothing is replayed: {replayed:?}");
    let until = sub["until"].as_i64().expect("until");
    assert_eq!(until, pos["seq"].as_i64().expect("position"), "{sub}");
    assert!(until >= *gap.last().expect("gap"), "{sub}");

    // The snapshot has what was missed.
    let (status, dialogs) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs?department_id={sales}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dialogs}");
    let dialog = dialogs["items"][0]["id"].as_i64().expect("dialog");
    let (status, page) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{dialog}/messages?limit=200"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 22, "{page}");

    // Live events after `until` follow on the same connection, all of them, in order.
    assert!(ws.try_next(Duration::from_millis(200)).await.is_none());
    ingest_n(&app, &key, 22, 3).await;
    let want = dept_seqs(change_log(&app, until).await);
    assert_eq!(want.len(), 3, "{want:?}");
    let live = read_events(&mut ws, want.len()).await;
    assert_eq!(seqs(&live), want, "live events after resync");
    let bodies: Vec<&str> = live
        .iter()
        .filter(|e| e["entity"] == "message")
        .map(|e| e["data"]["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies, vec!["message 22", "message 23", "message 24"]);
    assert!(ws.try_next(Duration::from_millis(200)).await.is_none());
}

/// `resync` when the ring still holds the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_gap_gets_resync_then_live_events_ring() {
    resync_case(20_000).await;
}

/// `resync` when the gap is read from the store (a ring of one event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_gap_gets_resync_then_live_events_store() {
    resync_case(1).await;
}

// ---------------------------------------------------------------------------------------
// Slow consumer
// ---------------------------------------------------------------------------------------

/// `connection_queue = 16`: a client that stops reading is closed with 4008; another one on
/// the same app receives everything; resuming with `since` the slow one does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_4008_and_resumes() {
    // Not scaled: what matters is the bytes. 240 messages of 40 KiB are ~10 MB of frames,
    // well over what the kernel buffers between the hub and a client that does not read
    // (Linux autotunes a send buffer up to `tcp_wmem` max, 4 MiB by default; the client's
    // receive buffer is set small). Few and large, so that they are sent well within the
    // hub's 10 s write timeout (a write blocked longer drops the connection, no 4008).
    let n = 240;
    let app = spawn_app_with(sales_config(|c| {
        c.realtime.connection_queue = 16;
        c.realtime.max_replay = 50_000;
    }))
    .await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let dept = Topic::dept(sales);
    let topic = dept.to_string();
    let feeder = Feeder::new(&app, &key);
    let first = traffic(THREADS, "a", 0);
    let rest = traffic(n, "b", 40 * 1024);

    let (mut fast, _) = Ws::operator(&app, &app.admin).await;
    let (_, sub) = fast.subscribe(&topic, None).await;
    let start = sub["until"].as_i64().expect("until");
    let mut slow = connect_small_buffer(&app, &app.admin).await;
    let (_, sub) = slow.subscribe(&topic, None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let fast_reader = tokio::spawn(read_until_quiet(fast, THREADS + n));

    // Both read the first events (50 new dialogs).
    let report = feeder.clone().send(first.events.clone(), BATCH).await;
    assert_eq!(report.retries, 0, "{:?}", report.failures);
    let mut slow_seen: Vec<Seen> = Vec::new();
    let mut messages = 0;
    while messages < THREADS {
        match recv(&mut slow, FRAME_WAIT).await {
            Got::Frame(v) if v["type"] == "event" => {
                let s = Seen::of(&v);
                messages += usize::from(s.is_message_create());
                slow_seen.push(s);
            }
            Got::Frame(v) => panic!("unexpected {v}"),
            _ => panic!("the slow client lost its connection early"),
        }
    }
    let slow_last = slow_seen.last().expect("events").seq;

    // It stops reading while many more flow.
    let t0 = Instant::now();
    let report = feeder.send(rest.events.clone(), 20).await;
    assert_eq!(report.retries, 0, "{:?}", report.failures);
    let flowed = t0.elapsed();
    assert_eq!(
        slow.ended().await,
        Ended::Closed(4008),
        "a client that does not read is closed as slow ({flowed:?} of events)"
    );

    // The other one got everything: all the messages, and every event up to its last one
    // (a later change, if any, is not its to have yet).
    let (fast_seen, _fast) = fast_reader.await.expect("fast reader");
    let got: Vec<i64> = fast_seen.iter().map(|s| s.seq).collect();
    let fast_messages = fast_seen.iter().filter(|s| s.is_message_create()).count();
    assert_eq!(fast_messages, THREADS + n, "the reading client's messages");
    let log = change_log(&app, start).await;
    let want = upto(seqs_on(&log, &[dept]), got.last());
    assert_same_events(&got, &want, &log, "the reading client's events");

    // The slow one resumes from what it had read and gets the rest, once, in order.
    let (mut again, _) = Ws::operator(&app, &app.admin).await;
    again.send(subscribe_frame(&topic, Some(slow_last))).await;
    let mut resumed: Vec<Seen> = Vec::new();
    loop {
        match recv(&mut again, FRAME_WAIT).await {
            Got::Frame(v) if v["type"] == "event" => resumed.push(Seen::of(&v)),
            Got::Frame(v) if v["type"] == "subscribed" => {
                let until = v["until"].as_i64().expect("until");
                let replay = resumed.iter().filter(|s| s.seq <= until).count();
                assert_eq!(v["replayed"].as_i64(), Some(replay as i64), "{v}");
                break;
            }
            Got::Frame(v) => panic!("unexpected frame {v}"),
            _ => panic!("the resumed connection ended"),
        }
    }
    let (live, _again) = read_until_quiet(again, 0).await;
    let all: Vec<i64> = slow_seen
        .iter()
        .chain(&resumed)
        .chain(&live)
        .map(|s| s.seq)
        .collect();
    let log = change_log(&app, start).await;
    let want = upto(seqs_on(&log, &[dept]), all.last());
    assert_same_events(&all, &want, &log, "the slow client's events after resuming");
    assert!(
        all.len() >= got.len(),
        "the slow client's events after resuming"
    );
    eprintln!(
        "slow consumer on {}: {} events ({flowed:?} while it did not read), {} replayed",
        backend_name(),
        want.len(),
        resumed.len()
    );
}

// ---------------------------------------------------------------------------------------
// Idempotence
// ---------------------------------------------------------------------------------------

/// The issue's idempotence requirement: the same 10,000 events sent twice, concurrently,
/// are stored once and reach a subscribed operator once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_events_twice_concurrently_stored_once_notified_once() {
    let n = scaled(EVENTS);
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let started = Instant::now();
    let sales = app.department("Sales").await;
    let op = app.user("olga", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    // She takes every dialog, so her events are on two of her topics.
    let (status, body) = app
        .request(
            reqwest::Method::PUT,
            Some(&app.admin),
            &format!("/api/v1/users/{}/capacity", op.id),
            Some(&json!({"max_dialogs": 1000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (mut ws, _) = Ws::operator(&app, &op).await;
    let user_topic = Topic::user(op.id);
    let dept_topic = Topic::dept(sales);
    let (_, sub) = ws.subscribe(&user_topic.to_string(), None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let (_, sub) = ws.subscribe(&dept_topic.to_string(), None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let start = sub["until"].as_i64().expect("until");
    let reader = tokio::spawn(read_until_quiet(ws, n));

    // Two senders, each with every event, at the same time.
    let traffic = traffic(n, "i", 0);
    let a = tokio::spawn(Feeder::new(&app, &key).send(traffic.events.clone(), BATCH));
    let b = tokio::spawn(Feeder::new(&app, &key).send(traffic.events.clone(), BATCH));
    let (a, b) = (a.await.expect("sender a"), b.await.expect("sender b"));
    let sending = started.elapsed();
    let (seen, _ws) = reader.await.expect("reader");

    // Each event: stored by exactly one sender (the other was told `duplicate`, with the
    // same message id).
    let mut by_ext: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (ext, status, id) in a.outcomes.iter().chain(&b.outcomes) {
        by_ext.entry(ext).or_default().push((status, *id));
    }
    assert_eq!(by_ext.len(), n, "answers for every event");
    for (ext, answers) in &by_ext {
        let stored = answers.iter().filter(|(s, _)| *s == "stored").count();
        let retried = a.retries + b.retries > 0;
        assert!(
            stored == 1 || (retried && stored == 0),
            "{ext}: {answers:?}"
        );
        assert!(answers.len() >= 2, "{ext}: {answers:?}");
        let id = answers[0].1;
        assert!(answers.iter().all(|(_, i)| *i == id), "{ext}: {answers:?}");
    }

    // Stored once: 10,000 messages in 50 dialogs (and 50 leads).
    let log = change_log(&app, start).await;
    let stored = stored_messages(&log);
    assert_eq!(stored.len(), n, "messages stored");
    let exts: HashSet<&str> = stored.values().map(|(_, _, e)| e.as_str()).collect();
    assert_eq!(exts.len(), n, "distinct external ids");
    let leads = log
        .iter()
        .filter(|e| e.entity == "lead" && e.op == "create")
        .count();
    assert_eq!(leads, THREADS, "one lead per phone");
    let rest = messages_by_rest(&app, sales).await;
    assert_thread_order(&traffic, &rest, "stored (per dialog, oldest first)");

    // Notified once: one `message` `create` per message, though two topics carry each.
    let mut creates: HashMap<i64, usize> = HashMap::new();
    for s in seen.iter().filter(|s| s.is_message_create()) {
        *creates.entry(s.entity_id).or_default() += 1;
    }
    let twice: Vec<_> = creates.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "messages notified more than once: {twice:?}"
    );
    assert_eq!(creates.len(), n, "message events");
    let stored_ids: HashSet<i64> = stored.keys().copied().collect();
    let notified: HashSet<i64> = creates.keys().copied().collect();
    assert_eq!(
        notified, stored_ids,
        "the messages notified are the ones stored"
    );
    // And nothing else was lost or doubled on her topics.
    let got: Vec<i64> = seen.iter().map(|s| s.seq).collect();
    let want = upto(seqs_on(&log, &[user_topic, dept_topic]), got.last());
    assert_same_events(&got, &want, &log, "the operator's events");

    // A third time, after the fact: all duplicates, nothing written.
    let before = app.last_seq().await;
    let t0 = Instant::now();
    let c = Feeder::new(&app, &key)
        .send(traffic.events.clone(), BATCH)
        .await;
    let third = t0.elapsed();
    assert!(c.outcomes.iter().all(|(_, s, _)| s == "duplicate"));
    assert_eq!(c.retries, 0, "{:?}", c.failures);
    assert_eq!(app.last_seq().await, before, "duplicates change nothing");

    eprintln!(
        "idempotence on {}: 2 x {n} events in {sending:?} ({} batch retries after 5xx: {:?}), \
         third pass {third:?}, total {:?}",
        backend_name(),
        a.retries + b.retries,
        a.failures
            .iter()
            .chain(&b.failures)
            .take(2)
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Regressions of bugs found while writing these tests
// ---------------------------------------------------------------------------------------

/// Concurrent first messages of new threads in one department are all stored. On
/// PostgreSQL they once deadlocked: the routing lock (`FOR UPDATE` on the department)
/// conflicted with the `KEY SHARE` the other transactions' foreign keys took. It is now
/// `FOR NO KEY UPDATE`, taken first, and the pipeline retries a transient conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_dialogs_in_one_department_are_all_stored() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let _op = app.user("olga", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    const NEW: usize = 32;
    const SENDERS: usize = 8;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let http = app.http.clone();
        let url = format!("{}/api/v1/connectors/site/events", app.base);
        let token = key.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in (s..NEW).step_by(SENDERS) {
                let ev = inbound(
                    &format!("n-{i}"),
                    &format!("new-{i}"),
                    &phone(i),
                    "Здравствуйте",
                );
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&ev)
                    .send()
                    .await
                    .expect("request");
                let status = resp.status();
                let body = resp.text().await.expect("body");
                if status != StatusCode::OK {
                    // One is enough (each deadlock costs PostgreSQL's `deadlock_timeout`).
                    failures.push(format!("n-{i}: {status} {body}"));
                    break;
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.expect("sender"));
    }
    assert!(
        failures.is_empty(),
        "{} of {SENDERS} senders got an error on {} (see the comment: deadlock on \
         departments), e.g. {:?}",
        failures.len(),
        backend_name(),
        failures.first()
    );
    let log = change_log(&app, 0).await;
    assert_eq!(stored_messages(&log).len(), NEW);
}

/// A gap longer than the store's 10,000-row read is answered with `resync`, never with a
/// silently truncated replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_store_over_10000_events_is_complete_or_resync() {
    let app = spawn_app_with(sales_config(|c| {
        c.realtime.max_replay = 10_000;
        c.realtime.replay_ring = 100;
    }))
    .await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let topic = Topic::dept(sales).to_string();
    let since = app.last_seq().await;
    // ~10,100 events of the department (each message in an open dialog is one).
    let traffic = traffic(10_050, "g", 0);
    let report = Feeder::new(&app, &key).send(traffic.events, BATCH).await;
    assert_eq!(report.retries, 0, "{:?}", report.failures);
    let gap = seqs_on(&change_log(&app, since).await, &[Topic::dept(sales)]);
    assert!(gap.len() > 10_000, "{}", gap.len());

    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    let (replayed, sub) = ws.subscribe(&topic, Some(since)).await;
    match sub["type"].as_str() {
        Some("resync") => assert!(replayed.is_empty()),
        _ => {
            assert!(sub["until"].as_i64() >= gap.last().copied(), "{sub}");
            assert_eq!(
                replayed.len(),
                gap.len(),
                "`subscribed` after {} of the {} events of the gap: the rest is lost ({sub})",
                replayed.len(),
                gap.len()
            );
            assert_eq!(seqs(&replayed), gap);
        }
    }
}
