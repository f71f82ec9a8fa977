//! The `worker` subcommand: holds a shard of the client connections (at most a few
//! thousand per process, so the 20,000-fd limit is never reached), counts what arrives,
//! and answers the orchestrator's commands (see `proto`).
//!
//! Each connection binds its socket to 127.0.0.(2 + g % 8) before connecting, so the
//! ephemeral ports of eight source addresses are shared out.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::hist::Hist;
use crate::proto::{mix, Digest, Proto, Report, Stats, WorkerSpec, REPORT_PREFIX};

type Ws = WebSocketStream<TcpStream>;

/// How long one connect + handshake + subscribe may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the worker: spec from stdin, reports on stdout.
///
/// # Errors
/// A bad spec or a broken stdin/stdout.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let spec_line = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("worker: no spec on stdin"))?;
    let spec: WorkerSpec = serde_json::from_str(&spec_line).context("worker: bad spec")?;
    if spec.urls.is_empty() {
        bail!("worker: no URLs");
    }
    if spec.proto == Proto::Hub && spec.creds.is_empty() {
        bail!("worker: no credentials");
    }
    let started = Instant::now();
    let ctx = Arc::new(Ctx::new(spec));
    for local in 0..ctx.spec.count {
        tokio::spawn(conn_task(ctx.clone(), local));
    }
    // Ready once every connection succeeded or gave up.
    loop {
        let done = ctx.ready.load(Ordering::Acquire) + ctx.failed.load(Ordering::Acquire);
        if done >= ctx.spec.count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report(&Report::Ready {
        ok: ctx.ready.load(Ordering::Acquire),
        failed: ctx.failed.load(Ordering::Acquire),
        elapsed_ms: ms(started.elapsed()),
        stats: ctx.stats(false),
    });
    while let Some(cmd) = lines.next_line().await? {
        match cmd.trim() {
            "stats" => report(&Report::Stats {
                stats: ctx.stats(false),
            }),
            "reset" => report(&Report::Stats {
                stats: ctx.stats(true),
            }),
            "storm" => {
                let r = storm(&ctx).await;
                report(&r);
            }
            "final" => {
                let digests = ctx
                    .digests
                    .iter()
                    .map(|d| d.lock().map(|d| d.clone()).unwrap_or_default())
                    .collect();
                report(&Report::Final {
                    stats: ctx.stats(false),
                    digests,
                });
            }
            "quit" | "" => break,
            other => eprintln!("worker: unknown command `{other}`"),
        }
    }
    Ok(())
}

fn report(r: &Report) {
    match serde_json::to_string(r) {
        Ok(s) => println!("{REPORT_PREFIX}{s}"),
        Err(e) => eprintln!("worker: cannot encode a report: {e}"),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Drops every connection at once, waits until each has resubscribed (with `since`).
async fn storm(ctx: &Arc<Ctx>) -> Report {
    let target = ctx.up.load(Ordering::Acquire);
    ctx.resumed.store(0, Ordering::Release);
    let t0 = Instant::now();
    ctx.storm.send_modify(|g| *g += 1);
    let deadline = t0 + Duration::from_secs(120);
    while ctx.resumed.load(Ordering::Acquire) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Report::Resumed {
        ok: ctx.resumed.load(Ordering::Acquire),
        target,
        elapsed_ms: ms(t0.elapsed()),
        stats: ctx.stats(false),
    }
}

/// What the connections of this worker share.
struct Ctx {
    spec: WorkerSpec,
    config: WebSocketConfig,
    handshakes: Semaphore,
    ready: AtomicUsize,
    failed: AtomicUsize,
    up: AtomicUsize,
    resumed: AtomicUsize,
    storm: watch::Sender<u64>,
    frames: AtomicU64,
    events: AtomicU64,
    msgs: AtomicU64,
    stamped: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
    connect_failures: AtomicU64,
    closes: Mutex<Vec<(u16, u64)>>,
    first_error: Mutex<Option<String>>,
    latency: Mutex<Hist>,
    /// (event `at` − send, receive − `at`) of stamped hub messages.
    split: Mutex<(Hist, Hist)>,
    digests: Vec<Mutex<Digest>>,
}

impl Ctx {
    fn new(spec: WorkerSpec) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(spec.read_buffer.max(256))
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        let digests = (0..spec.count)
            .map(|_| Mutex::new(Digest::default()))
            .collect();
        Self {
            handshakes: Semaphore::new(spec.concurrency.max(1)),
            config,
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            up: AtomicUsize::new(0),
            resumed: AtomicUsize::new(0),
            storm: watch::channel(0).0,
            frames: AtomicU64::new(0),
            events: AtomicU64::new(0),
            msgs: AtomicU64::new(0),
            stamped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            closes: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
            latency: Mutex::new(Hist::default()),
            split: Mutex::new((Hist::default(), Hist::default())),
            digests,
            spec,
        }
    }

    fn stats(&self, reset_latency: bool) -> Stats {
        let latency = match self.latency.lock() {
            Ok(mut h) => {
                let s = h.sparse();
                if reset_latency {
                    *h = Hist::default();
                }
                s
            }
            Err(_) => Default::default(),
        };
        let (to_commit, from_commit) = match self.split.lock() {
            Ok(mut h) => {
                let s = (h.0.sparse(), h.1.sparse());
                if reset_latency {
                    *h = (Hist::default(), Hist::default());
                }
                s
            }
            Err(_) => Default::default(),
        };
        let mut dups = 0;
        let mut min_last = i64::MAX;
        for d in &self.digests {
            if let Ok(d) = d.lock() {
                dups += d.dups;
                if d.up {
                    min_last = min_last.min(d.last);
                }
            }
        }
        Stats {
            frames: self.frames.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            msgs: self.msgs.load(Ordering::Relaxed),
            stamped: self.stamped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed) as u64,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            closes: self.closes.lock().map(|c| c.clone()).unwrap_or_default(),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            dups,
            first_error: self.first_error.lock().ok().and_then(|e| e.clone()),
            latency,
            to_commit,
            from_commit,
            min_last: if min_last == i64::MAX { 0 } else { min_last },
        }
    }

    fn error(&self, e: impl std::fmt::Display) {
        if let Ok(mut f) = self.first_error.lock() {
            if f.is_none() {
                *f = Some(e.to_string());
            }
        }
    }

    fn closed(&self, code: u16) {
        if let Ok(mut c) = self.closes.lock() {
            match c.iter_mut().find(|(k, _)| *k == code) {
                Some((_, n)) => *n += 1,
                None => c.push((code, 1)),
            }
        }
    }

    /// Records receive − send; returns the receive time.
    fn latency(&self, sent_ns: u64) -> u64 {
        let now = now_ns();
        let us = now.saturating_sub(sent_ns) / 1000;
        if let Ok(mut h) = self.latency.lock() {
            h.record(us);
        }
        now
    }
}

/// Nanoseconds since the UNIX epoch (the clock every process of the machine shares).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a connection's read loop ended.
enum End {
    /// The orchestrator dropped every connection: reconnect at once.
    Storm,
    /// The server closed (code, 0 without a close frame) or the socket failed.
    Closed(u16),
}

/// One connection's topics and resume positions (hub protocol).
struct Topics {
    names: Vec<String>,
    /// `"name"` as it appears in an event's `topics`.
    quoted: Vec<String>,
    /// Highest seq seen on each topic (`since` of the next subscription).
    pos: Vec<Option<i64>>,
    /// Index of the `dept` topic, if subscribed.
    dept: Option<usize>,
}

async fn conn_task(ctx: Arc<Ctx>, local: usize) {
    let spec = &ctx.spec;
    let g = spec.first + local;
    let url = spec.urls[g % spec.urls.len()].clone();
    let src = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(g % 8).unwrap_or(0));
    let cred = spec.creds.get(g % spec.creds.len().max(1)).cloned();
    let mut topics = match &cred {
        Some(c) => {
            let names: Vec<String> = spec
                .topics
                .iter()
                .map(|t| match t.as_str() {
                    "user" => format!("user:{}", c.user_id),
                    "dept" => format!("dept:{}", spec.dept_id),
                    other => other.to_owned(),
                })
                .collect();
            let dept_name = format!("dept:{}", spec.dept_id);
            Topics {
                quoted: names.iter().map(|n| format!("\"{n}\"")).collect(),
                pos: vec![None; names.len()],
                dept: names.iter().position(|n| *n == dept_name),
                names,
            }
        }
        None => Topics {
            names: Vec::new(),
            quoted: Vec::new(),
            pos: Vec::new(),
            dept: None,
        },
    };
    if let (Some(c), Ok(mut d)) = (&cred, ctx.digests[local].lock()) {
        d.user_id = c.user_id;
    }
    let mut storm_rx = ctx.storm.subscribe();
    let mut first = true;
    let mut attempt: u32 = 0;
    let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    loop {
        storm_rx.borrow_and_update();
        let opened = {
            let Ok(_permit) = ctx.handshakes.acquire().await else {
                return;
            };
            tokio::time::timeout(
                OPEN_TIMEOUT,
                open(&ctx, &url, src, cred.as_ref(), &mut topics, local, first),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow!("connect + subscribe took over {OPEN_TIMEOUT:?}")))
        };
        let ws = match opened {
            Ok(ws) => ws,
            Err(e) => {
                ctx.connect_failures.fetch_add(1, Ordering::Relaxed);
                ctx.error(format!("{url}: {e:#}"));
                attempt += 1;
                if first && attempt >= spec.connect_attempts.max(1) {
                    ctx.failed.fetch_add(1, Ordering::AcqRel);
                    return;
                }
                backoff(attempt, &mut rng).await;
                continue;
            }
        };
        attempt = 0;
        ctx.up.fetch_add(1, Ordering::AcqRel);
        set_up(&ctx, local, true);
        if first {
            first = false;
            ctx.ready.fetch_add(1, Ordering::AcqRel);
        } else {
            ctx.reconnects.fetch_add(1, Ordering::Relaxed);
            ctx.resumed.fetch_add(1, Ordering::AcqRel);
        }
        let end = read_loop(&ctx, ws, &mut topics, local, &mut storm_rx).await;
        ctx.up.fetch_sub(1, Ordering::AcqRel);
        set_up(&ctx, local, false);
        match end {
            End::Storm => {}
            End::Closed(code) => {
                ctx.closed(code);
                // A real console reconnects with jittered backoff and resumes.
                backoff(1, &mut rng).await;
            }
        }
    }
}

fn set_up(ctx: &Ctx, local: usize, up: bool) {
    if let Ok(mut d) = ctx.digests[local].lock() {
        d.up = up;
    }
}

/// Jittered exponential backoff: 0.5 s doubling up to 5 s, times 0.5..1.5.
async fn backoff(attempt: u32, rng: &mut u64) {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let base = (500u64 << attempt.saturating_sub(1).min(4)).min(5000);
    let jitter = 0.5 + (*rng % 1000) as f64 / 1000.0;
    tokio::time::sleep(Duration::from_millis((base as f64 * jitter) as u64)).await;
}

async fn open(
    ctx: &Ctx,
    url: &str,
    src: Ipv4Addr,
    cred: Option<&crate::proto::Cred>,
    topics: &mut Topics,
    local: usize,
    first: bool,
) -> anyhow::Result<Ws> {
    let mut req = url.into_client_request()?;
    let host = req
        .uri()
        .host()
        .ok_or_else(|| anyhow!("no host in {url}"))?
        .to_owned();
    let port = req.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| anyhow!("{host} has no IPv4 address"))?;
    let sock = TcpSocket::new_v4()?;
    if addr.ip().is_loopback() {
        sock.bind(SocketAddr::new(src.into(), 0))
            .with_context(|| format!("bind {src}"))?;
    }
    let stream = sock.connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    if let Some(c) = cred {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", c.token))?,
        );
    }
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ctx.config))
        .await
        .context("handshake")?;
    match ctx.spec.proto {
        Proto::Hub => hub_hello(ctx, &mut ws, topics, local, first).await?,
        Proto::Peer => peer_hello(ctx, &mut ws).await?,
    }
    Ok(ws)
}

/// The next text frame (pings are answered by the library).
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the server closed the connection"),
        }
    }
}

/// Reads `hello`, subscribes to every topic (with `since` once a position is known), and
/// takes the replayed events as they come.
async fn hub_hello(
    ctx: &Ctx,
    ws: &mut Ws,
    topics: &mut Topics,
    local: usize,
    first: bool,
) -> anyhow::Result<()> {
    let hello = next_text(ws).await?;
    if !hello.contains("\"type\":\"hello\"") {
        bail!("expected hello, got {}", clip(&hello));
    }
    // All topics in one frame: the hub replays them in one seq-ordered pass, which keeps
    // every topic in order across a resume.
    let list: Vec<serde_json::Value> = topics
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut t = serde_json::json!({"topic": name});
            if let Some(p) = topics.pos[i] {
                t["since"] = p.into();
            }
            t
        })
        .collect();
    let f = serde_json::json!({"type": "subscribe", "id": 0, "topics": list});
    ws.send(Message::text(f.to_string())).await?;
    let mut pending = topics.names.len();
    while pending > 0 {
        let text = next_text(ws).await?;
        if text.starts_with("{\"type\":\"event\"") {
            on_hub_event(ctx, &text, topics, local);
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let ty = v["type"].as_str().unwrap_or("");
        let idx = v["topic"]
            .as_str()
            .and_then(|t| topics.names.iter().position(|n| n == t));
        match (ty, idx) {
            ("subscribed" | "resync", Some(i)) if i < topics.names.len() => {
                let until = v["until"].as_i64().unwrap_or(0);
                if ty == "resync" {
                    ctx.resyncs.fetch_add(1, Ordering::Relaxed);
                }
                topics.pos[i] = Some(topics.pos[i].map_or(until, |p| p.max(until)));
                if first && Some(i) == topics.dept {
                    if let Ok(mut d) = ctx.digests[local].lock() {
                        d.start = until;
                        d.last = until;
                    }
                }
                pending -= 1;
            }
            ("error", _) => {
                ctx.errors.fetch_add(1, Ordering::Relaxed);
                bail!("subscribe refused: {}", clip(&text));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Connects and subscribes with the Centrifuge v1 JSON protocol.
async fn peer_hello(ctx: &Ctx, ws: &mut Ws) -> anyhow::Result<()> {
    ws.send(Message::text("{\"id\":1,\"params\":{}}")).await?;
    wait_reply(ws, 1).await?;
    let sub = serde_json::json!({"id": 2, "method": 1, "params": {"channel": ctx.spec.channel}});
    ws.send(Message::text(sub.to_string())).await?;
    wait_reply(ws, 2).await
}

async fn wait_reply(ws: &mut Ws, id: u64) -> anyhow::Result<()> {
    loop {
        let text = next_text(ws).await?;
        for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["id"].as_u64() == Some(id) {
                if v.get("error").is_some() {
                    bail!("peer refused command {id}: {}", clip(line));
                }
                return Ok(());
            }
        }
    }
}

async fn read_loop(
    ctx: &Ctx,
    mut ws: Ws,
    topics: &mut Topics,
    local: usize,
    storm_rx: &mut watch::Receiver<u64>,
) -> End {
    loop {
        tokio::select! {
            changed = storm_rx.changed() => {
                if changed.is_ok() {
                    // Client-side drop: the socket is closed without a close frame.
                    drop(ws);
                    return End::Storm;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if ctx.spec.quickack {
                        let _ = socket2::SockRef::from(ws.get_ref()).set_tcp_quickack(true);
                    }
                    let text = t.as_str();
                    ctx.frames.fetch_add(1, Ordering::Relaxed);
                    ctx.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    match ctx.spec.proto {
                        Proto::Hub => {
                            if text.starts_with("{\"type\":\"event\"") {
                                on_hub_event(ctx, text, topics, local);
                            } else if text.starts_with("{\"type\":\"error\"") {
                                ctx.errors.fetch_add(1, Ordering::Relaxed);
                                ctx.error(clip(text));
                            }
                        }
                        Proto::Peer => on_peer_frame(ctx, text),
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    return End::Closed(c.map_or(1005, |c| u16::from(c.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ctx.error(format!("read: {e}"));
                    return End::Closed(0);
                }
                None => return End::Closed(0),
            }
        }
    }
}

/// Counts a hub `event` frame: seq and topics for resuming, the `dept` digest, latency of
/// stamped `message`/`create` events. Reads only the frame's head (its fields come in a
/// fixed order: type, seq, [ephemeral], at, topics, entity, entity_id, op, actor, data).
fn on_hub_event(ctx: &Ctx, text: &str, topics: &mut Topics, local: usize) {
    ctx.events.fetch_add(1, Ordering::Relaxed);
    let Some(h) = parse_head(text) else {
        ctx.error(format!("unparsed event: {}", clip(text)));
        return;
    };
    if h.msg_create {
        ctx.msgs.fetch_add(1, Ordering::Relaxed);
        if let Some(ns) = h.stamp {
            ctx.stamped.fetch_add(1, Ordering::Relaxed);
            let now = ctx.latency(ns);
            if let (Some(at), Ok(mut split)) = (h.at_ns, ctx.split.lock()) {
                split.0.record(at.saturating_sub(ns) / 1000);
                split.1.record(now.saturating_sub(at) / 1000);
            }
        }
    }
    if h.ephemeral {
        return;
    }
    for (i, q) in topics.quoted.iter().enumerate() {
        if h.topics.contains(q.as_str()) {
            topics.pos[i] = Some(topics.pos[i].map_or(h.seq, |p| p.max(h.seq)));
            if Some(i) == topics.dept {
                if let Ok(mut d) = ctx.digests[local].lock() {
                    if h.seq <= d.last {
                        d.dups += 1;
                    } else {
                        d.last = h.seq;
                    }
                    if h.seq > d.start {
                        d.count += 1;
                        d.sum = d.sum.wrapping_add(h.seq as u64);
                        d.mix = d.mix.wrapping_add(mix(h.seq));
                        if ctx.spec.reference {
                            d.seqs.push(h.seq);
                        }
                    }
                }
            }
        }
    }
}

/// The parts of an event frame the harness needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// Sequence number.
    pub seq: i64,
    /// Ephemeral (typing).
    pub ephemeral: bool,
    /// The inside of the `topics` array.
    pub topics: &'a str,
    /// A `message` / `create` event.
    pub msg_create: bool,
    /// The harness's send timestamp in the message text (`KLT<ns>:`).
    pub stamp: Option<u64>,
    /// The event's `at` (when the hub's write transaction began), ns since the epoch.
    pub at_ns: Option<u64>,
}

/// Marker the publisher puts before the send time in each message's text.
pub const STAMP: &str = "KLT";

/// Parses the head of an event frame.
pub fn parse_head(text: &str) -> Option<Head<'_>> {
    let seq = number_after(text, "\"seq\":")?;
    let t0 = text.find("\"topics\":[")? + "\"topics\":[".len();
    let t1 = t0 + text[t0..].find(']')?;
    let topics = &text[t0..t1];
    let rest = &text[t1..];
    let ephemeral = text[..t0].contains("\"ephemeral\":true");
    let data_at = rest.find("\"data\":").unwrap_or(rest.len());
    let head = &rest[..data_at];
    let msg_create = head.contains("\"entity\":\"message\"") && head.contains("\"op\":\"create\"");
    let stamp = if msg_create {
        rest[data_at..]
            .find(STAMP)
            .and_then(|i| leading_u64(&rest[data_at + i + STAMP.len()..]))
    } else {
        None
    };
    let at_ns = if stamp.is_some() {
        text[..t0].find("\"at\":\"").and_then(|i| {
            let v = &text[i + 6..t0];
            v.find('"').and_then(|e| rfc3339_ns(&v[..e]))
        })
    } else {
        None
    };
    Some(Head {
        seq,
        ephemeral,
        topics,
        msg_create,
        stamp,
        at_ns,
    })
}

/// `2026-11-29T10:00:00.123456Z` (UTC, as the hub writes it) → ns since the epoch.
pub fn rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut nanos: i64 = 0;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            nanos += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    if b.get(i) != Some(&b'Z') {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs * 1_000_000_000 + nanos).ok()
}

fn number_after(text: &str, key: &str) -> Option<i64> {
    let i = text.find(key)? + key.len();
    let s = &text[i..];
    let end = s
        .char_indices()
        .find(|(j, c)| !(c.is_ascii_digit() || (*j == 0 && *c == '-')))
        .map_or(s.len(), |(j, _)| j);
    s[..end].parse().ok()
}

fn leading_u64(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Counts Centrifuge frames: each line is one message; publications carry no `id` and
/// have `result.channel`.
fn on_peer_frame(ctx: &Ctx, text: &str) {
    for line in text.split('\n') {
        if !line.starts_with("{\"result\":{\"channel\"") {
            continue;
        }
        ctx.events.fetch_add(1, Ordering::Relaxed);
        ctx.msgs.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = line.find("\"ts\":") {
            if let Some(ns) = leading_u64(&line[i + 5..]) {
                ctx.stamped.fetch_add(1, Ordering::Relaxed);
                ctx.latency(ns);
            }
        }
    }
}

/// At most 300 characters of a frame, for messages.
pub fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_event_head() {
        let f = r#"{"type":"event","seq":1042,"at":"2026-11-29T10:00:00.123456Z","topics":["dialog:7","client:9","dept:1","user:3"],"entity":"message","entity_id":311,"op":"create","actor":{"user_id":null,"api_key_id":null},"data":{"id":311,"dialog_id":7,"direction":"inbound","body":"KLT1732870000123456789:5 hi","seq":3}}"#;
        let h = parse_head(f).expect("parses");
        assert_eq!(h.seq, 1042);
        assert!(!h.ephemeral);
        assert!(h.topics.contains("\"dept:1\""));
        assert!(!h.topics.contains("\"dept:11\""));
        assert!(h.msg_create);
        assert_eq!(h.stamp, Some(1_732_870_000_123_456_789));
        assert_eq!(h.at_ns, rfc3339_ns("2026-11-29T10:00:00.123456Z"));
        let d = r#"{"type":"event","seq":7,"at":"x","topics":["dept:1"],"entity":"dialog","entity_id":3,"op":"message","actor":{},"data":{"last":"KLT5:"}}"#;
        let h = parse_head(d).expect("parses");
        assert!(!h.msg_create);
        assert_eq!(h.stamp, None);
        let e = r#"{"type":"event","seq":9,"ephemeral":true,"at":"x","topics":["dialog:1"],"entity":"typing","entity_id":1,"op":"customer","actor":{},"data":{}}"#;
        assert!(parse_head(e).expect("parses").ephemeral);
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ns("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000_000)
        );
        assert_eq!(rfc3339_ns("2026-11-29T10:00:00+03:00"), None);
    }

    #[test]
    fn mix_differs() {
        assert_ne!(mix(1).wrapping_add(mix(4)), mix(2).wrapping_add(mix(3)));
    }
}
