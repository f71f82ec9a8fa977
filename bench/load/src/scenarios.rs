//! The scenarios: each starts what it measures, runs, reports, and stops everything.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::hist::Hist;
use crate::hub::{self, Hub, HubOptions, Proc};
use crate::pool::{Pool, Started, Totals};
use crate::procstat::{self, ProcSample};
use crate::proto::{mix, Cred, Digest, Proto, WorkerSpec};
use crate::publish::{peer_publish, HubPublisher, Plan, Published};
use crate::report::{Cmp, Report};
use crate::{Common, FanoutArgs, IdleArgs, LatencyArgs, PeerArgs, StormArgs};

fn run_tag() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{}{}", t % 100_000_000, std::process::id() % 1000)
}

fn work_dir(c: &Common) -> PathBuf {
    c.work_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/kommutator-load-{}", std::process::id())))
}

fn hub_bin(c: &Common) -> PathBuf {
    c.hub_bin.clone().unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| "/var/tmp/kommutator-target".into());
        PathBuf::from(target).join("release/kommutator")
    })
}

fn hub_options(c: &Common, run: &str) -> HubOptions {
    HubOptions {
        bin: hub_bin(c),
        dir: work_dir(c),
        database_url: c.database_url.clone(),
        redis_url: c.redis_url.clone(),
        nodes: c.nodes.max(1),
        env: c.hub_env.clone(),
        run: run.to_owned(),
        cpus: c.server_cpus.clone(),
        restart: !c.no_restart,
    }
}

/// Starts the hub; on failure removes the work folder (unless kept) before returning.
async fn start_hub(c: &Common, run: &str, operators: usize, idle: usize) -> anyhow::Result<Hub> {
    match Hub::start(hub_options(c, run), operators, idle).await {
        Ok(h) => Ok(h),
        Err(e) => {
            cleanup(c);
            Err(e)
        }
    }
}

fn cleanup(c: &Common) {
    let dir = work_dir(c);
    if c.keep {
        eprintln!("work folder kept: {}", dir.display());
    } else if c.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[allow(clippy::too_many_arguments)]
fn hub_spec(
    c: &Common,
    hub: &Hub,
    nodes: &[usize],
    creds: Vec<Cred>,
    topics: &[&str],
    dept: i64,
    count: usize,
    first: usize,
) -> WorkerSpec {
    WorkerSpec {
        proto: Proto::Hub,
        urls: nodes.iter().map(|n| hub.ws_url(*n)).collect(),
        first,
        count,
        creds,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        dept_id: dept,
        channel: String::new(),
        concurrency: c.concurrency,
        read_buffer: c.read_buffer,
        reference: false,
        connect_attempts: 5,
        quickack: c.client_quickack,
    }
}

fn peer_spec(c: &Common, url: &str, channel: &str, count: usize, first: usize) -> WorkerSpec {
    WorkerSpec {
        proto: Proto::Peer,
        urls: vec![url.to_owned()],
        first,
        count,
        creds: Vec::new(),
        topics: Vec::new(),
        dept_id: 0,
        channel: channel.to_owned(),
        concurrency: c.concurrency,
        read_buffer: c.read_buffer,
        reference: false,
        connect_attempts: 5,
        quickack: c.client_quickack,
    }
}

fn subscribe_nodes(given: Option<&Vec<usize>>, nodes: usize, publish: usize) -> Vec<usize> {
    match given {
        Some(v) if !v.is_empty() => v.iter().map(|n| n % nodes.max(1)).collect(),
        _ if nodes > 1 => (0..nodes).filter(|n| *n != publish % nodes).collect(),
        _ => vec![0],
    }
}

/// CPU and memory of the server processes (and the load generator) over a window.
struct Meter {
    pids: Vec<u32>,
    gen: Vec<u32>,
    t0: Instant,
    s0: ProcSample,
    g0: ProcSample,
    m0: (u64, u64),
}

struct Metered {
    secs: f64,
    cpu_s: f64,
    rss_kib: u64,
    gen_cores: f64,
    machine_cores: f64,
}

impl Meter {
    fn start(pids: Vec<u32>, gen: Vec<u32>) -> Self {
        let gen_all: Vec<u32> = gen.iter().copied().chain([std::process::id()]).collect();
        Self {
            s0: procstat::sample_all(&pids),
            g0: procstat::sample_all(&gen_all),
            m0: procstat::machine_ticks(),
            t0: Instant::now(),
            pids,
            gen: gen_all,
        }
    }

    fn stop(&self) -> Metered {
        let s1 = procstat::sample_all(&self.pids);
        let g1 = procstat::sample_all(&self.gen);
        let m1 = procstat::machine_ticks();
        let secs = self.t0.elapsed().as_secs_f64();
        Metered {
            secs,
            cpu_s: s1.cpu_secs() - self.s0.cpu_secs(),
            rss_kib: s1.rss_kib,
            gen_cores: (g1.cpu_secs() - self.g0.cpu_secs()) / secs.max(1e-9),
            machine_cores: procstat::busy_cores(self.m0, m1, procstat::cores()),
        }
    }
}

fn sleep(secs: f64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0)))
}

fn closes_text(t: &Totals) -> String {
    if t.closes.is_empty() {
        return "none".into();
    }
    t.closes
        .iter()
        .map(|(c, n)| {
            format!(
                "{n}×{}",
                if *c == 0 {
                    "dropped".to_owned()
                } else {
                    c.to_string()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn warn_started(name: &str, s: &Started) {
    if s.failed > 0 {
        eprintln!(
            "warning: {name}: {} of {} connections failed; first error: {}",
            s.failed,
            s.ok + s.failed,
            s.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn split_rows(r: &mut Report, t: &Totals, p: &Published) {
    if t.to_commit.count() > 0 {
        r.num(
            "to_commit_p50_ms",
            "  send → hub transaction start p50",
            ms(t.to_commit.quantile(0.5)),
            "ms",
            2,
        );
        r.num(
            "to_commit_p99_ms",
            "  send → hub transaction start p99",
            ms(t.to_commit.quantile(0.99)),
            "ms",
            2,
        );
        r.num(
            "from_commit_p50_ms",
            "  transaction start → received p50",
            ms(t.from_commit.quantile(0.5)),
            "ms",
            2,
        );
        r.num(
            "from_commit_p99_ms",
            "  transaction start → received p99",
            ms(t.from_commit.quantile(0.99)),
            "ms",
            2,
        );
    }
    if p.lag.count() > 0 {
        r.num(
            "publisher_lag_p99_ms",
            "  publisher behind schedule p99",
            ms(p.lag.quantile(0.99)),
            "ms",
            2,
        );
    }
}

fn latency_rows(r: &mut Report, prefix: &str, h: &Hist) {
    r.num(
        &format!("{prefix}p50_ms"),
        "latency p50",
        ms(h.quantile(0.50)),
        "ms",
        2,
    );
    r.num(
        &format!("{prefix}p99_ms"),
        "latency p99",
        ms(h.quantile(0.99)),
        "ms",
        2,
    );
    r.num(
        &format!("{prefix}p999_ms"),
        "latency p99.9",
        ms(h.quantile(0.999)),
        "ms",
        2,
    );
    r.num(
        &format!("{prefix}max_ms"),
        "latency max",
        ms(h.max()),
        "ms",
        2,
    );
    r.num(
        &format!("{prefix}mean_ms"),
        "latency mean",
        h.mean() / 1000.0,
        "ms",
        2,
    );
    r.num(
        &format!("{prefix}samples"),
        "latency samples",
        h.count() as f64,
        "",
        0,
    );
}

// ---------------------------------------------------------------------------------------
// idle

struct IdleResult {
    started: Started,
    connect_cpu_s: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    slab_delta_kib: i64,
    window: Metered,
    totals: Totals,
}

async fn idle_shape(
    name: &str,
    server: Vec<u32>,
    spec: WorkerSpec,
    per_worker: usize,
    settle: f64,
    secs: f64,
) -> anyhow::Result<IdleResult> {
    sleep(1.0).await;
    let rss_before_kib = procstat::sample_all(&server).rss_kib;
    let slab0 = procstat::slab_kib();
    let connect_meter = Meter::start(server.clone(), Vec::new());
    let (mut pool, started) = Pool::start(name, spec, per_worker).await?;
    let connect = connect_meter.stop();
    warn_started(name, &started);
    eprintln!(
        "{name}: {} connected in {:.2} s; settling {settle} s",
        started.ok,
        started.elapsed.as_secs_f64()
    );
    sleep(settle).await;
    let rss_after_kib = procstat::sample_all(&server).rss_kib;
    let slab1 = procstat::slab_kib();
    let before = pool.stats(false).await?;
    let meter = Meter::start(server, pool.pids());
    eprintln!("{name}: idle window {secs} s");
    sleep(secs).await;
    let window = meter.stop();
    let mut totals = pool.stats(false).await?;
    totals.frames -= before.frames;
    totals.events -= before.events;
    pool.quit().await;
    Ok(IdleResult {
        connect_cpu_s: connect.cpu_s,
        started,
        rss_before_kib,
        rss_after_kib,
        slab_delta_kib: i64::try_from(slab1).unwrap_or(0) - i64::try_from(slab0).unwrap_or(0),
        window,
        totals,
    })
}

fn idle_rows(r: &mut Report, res: &IdleResult, with_targets: bool) -> f64 {
    let n = res.started.ok.max(1) as f64;
    let per_conn = (res.rss_after_kib as f64 - res.rss_before_kib as f64) / n;
    r.num("connected", "connections up", res.started.ok as f64, "", 0);
    r.num(
        "failed",
        "connections failed",
        res.started.failed as f64,
        "",
        0,
    );
    r.num(
        "connect_s",
        "time to connect + subscribe all",
        res.started.elapsed.as_secs_f64(),
        "s",
        2,
    );
    r.num(
        "connect_cpu_s",
        "server CPU while connecting",
        res.connect_cpu_s,
        "s",
        2,
    );
    r.num(
        "connect_cpu_us_per_conn",
        "server CPU per connect + subscribe",
        res.connect_cpu_s / n * 1e6,
        "µs",
        0,
    );
    r.num(
        "rss_before_mib",
        "server RSS before",
        res.rss_before_kib as f64 / 1024.0,
        "MiB",
        1,
    );
    r.num(
        "rss_after_mib",
        "server RSS with connections",
        res.rss_after_kib as f64 / 1024.0,
        "MiB",
        1,
    );
    r.num(
        "rss_per_conn_kib",
        "server RSS per connection",
        per_conn,
        "KiB",
        2,
    );
    r.num(
        "slab_per_conn_kib",
        "kernel slab per connection (both ends)",
        res.slab_delta_kib as f64 / n,
        "KiB",
        2,
    );
    let cpu_per_conn_us = res.window.cpu_s / res.window.secs.max(1e-9) / n * 1e6;
    r.num(
        "idle_cpu_s",
        "server CPU in the idle window",
        res.window.cpu_s,
        "s",
        3,
    );
    r.num(
        "idle_cpu_us_per_conn_s",
        "idle CPU per connection",
        cpu_per_conn_us,
        "µs/s",
        3,
    );
    r.num("idle_window_s", "idle window", res.window.secs, "s", 1);
    r.num(
        "frames_in_window",
        "frames received in the window",
        res.totals.frames as f64,
        "",
        0,
    );
    r.text("closes", "server closes", closes_text(&res.totals));
    r.num(
        "gen_cores",
        "load generator CPU",
        res.window.gen_cores,
        "cores",
        2,
    );
    if with_targets {
        r.target("rss_per_conn_kib", Cmp::AtMost, 8.0);
        r.target("idle_cpu_us_per_conn_s", Cmp::AtMost, 2.0);
        r.target("failed", Cmp::AtMost, 0.0);
    }
    per_conn
}

/// `idle`.
pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let run = run_tag();
    let mut hub = start_hub(c, &run, a.users, 0).await?;
    let result = async {
        let nodes: Vec<usize> = (0..hub.nodes.len()).collect();
        let spec = hub_spec(
            c,
            &hub,
            &nodes,
            hub.operators.clone(),
            &["user", "dept"],
            hub.dept_id,
            a.connections,
            0,
        );
        let res = idle_shape("idle", hub.pids(), spec, c.per_worker, a.settle, a.seconds).await?;
        hub.check_alive()?;
        let mut r = Report::new(
            "idle",
            format!(
                "idle: {} operator connections (user: + dept:), {} node(s)",
                a.connections,
                hub.nodes.len()
            ),
        );
        r.field("label", json!(c.label));
        r.field("nodes", json!(hub.nodes.len()));
        r.field("users", json!(a.users));
        idle_rows(&mut r, &res, true);
        r.target("connect_s", Cmp::AtMost, 3.0);
        r.print();
        anyhow::Ok(())
    }
    .await;
    hub.stop().await;
    cleanup(c);
    result
}

// ---------------------------------------------------------------------------------------
// fan-out

enum Publisher {
    Hub(HubPublisher),
    Peer {
        url: String,
        channel: String,
        pad: usize,
    },
}

struct FanoutResult {
    rate: f64,
    published: Published,
    /// Events received during the publishing window.
    window_events: u64,
    window_s: f64,
    /// Events and message events received from the start to the end of the drain.
    events: u64,
    msgs: u64,
    expected_msgs: u64,
    metered: Metered,
    totals: Totals,
    bytes: u64,
}

async fn fanout_shape(
    pool: &mut Pool,
    subscribers: usize,
    server: Vec<u32>,
    publisher: &Publisher,
    plan: &Plan,
    drain: f64,
) -> anyhow::Result<FanoutResult> {
    let t0 = pool.stats(true).await?;
    let meter = Meter::start(server, pool.pids());
    let published = match publisher {
        Publisher::Hub(p) => p.run(plan, None).await,
        Publisher::Peer { url, channel, pad } => peer_publish(url, channel, plan, *pad).await?,
    };
    let window_s = published.elapsed.as_secs_f64();
    let t1 = pool.stats(false).await?;
    let expected_msgs = published.stored * subscribers as u64;
    // Drain: until every expected message arrived, or nothing moved for 2 s.
    let deadline = Instant::now() + Duration::from_secs_f64(drain);
    let mut last = t1.msgs;
    let mut last_move = Instant::now();
    let mut t2 = t1.clone();
    while t2.msgs - t0.msgs < expected_msgs
        && Instant::now() < deadline
        && last_move.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        t2 = pool.stats(false).await?;
        if t2.msgs != last {
            last = t2.msgs;
            last_move = Instant::now();
        }
    }
    let metered = meter.stop();
    Ok(FanoutResult {
        rate: plan.rate,
        window_events: t1.events - t0.events,
        window_s,
        events: t2.events - t0.events,
        msgs: t2.msgs - t0.msgs,
        bytes: t2.bytes - t0.bytes,
        expected_msgs,
        published,
        metered,
        totals: t2,
    })
}

/// Deliveries per server CPU-second: all event frames, message events only, and event
/// frames per CPU-second left after the ingest estimate (fan-out alone).
struct PerCpu {
    frames: f64,
    msgs: f64,
    fanout_only: Option<f64>,
}

fn fanout_rows(
    r: &mut Report,
    f: &FanoutResult,
    ingest_cpu_per_msg: Option<f64>,
    hub_side: bool,
) -> PerCpu {
    let lost = f.expected_msgs.saturating_sub(f.msgs);
    r.num("subscribers", "subscribers up", f.totals.up as f64, "", 0);
    r.num("rate", "messages per second (scheduled)", f.rate, "/s", 0);
    r.num(
        "published",
        "messages published",
        f.published.scheduled as f64,
        "",
        0,
    );
    r.num(
        "stored",
        "messages accepted",
        f.published.stored as f64,
        "",
        0,
    );
    r.num(
        "skipped",
        "not sent (too many requests in flight)",
        f.published.skipped as f64,
        "",
        0,
    );
    r.num(
        "publish_failed",
        "publish failures",
        (f.published.failed + f.published.refused) as f64,
        "",
        0,
    );
    r.num("publish_window_s", "publishing window", f.window_s, "s", 2);
    if f.published.rtt.count() > 0 {
        r.num(
            "ingest_rtt_p50_ms",
            "ingest request p50",
            ms(f.published.rtt.quantile(0.5)),
            "ms",
            2,
        );
        r.num(
            "ingest_rtt_p99_ms",
            "ingest request p99",
            ms(f.published.rtt.quantile(0.99)),
            "ms",
            2,
        );
    }
    let dps = f.window_events as f64 / f.window_s.max(1e-9);
    r.num(
        "deliveries_per_s",
        "deliveries/s (event frames, in window)",
        dps,
        "/s",
        0,
    );
    r.num(
        "msg_deliveries_per_s",
        "message deliveries/s (in window)",
        f.msgs as f64 / f.metered.secs.max(1e-9),
        "/s",
        0,
    );
    r.num(
        "events_delivered",
        "event frames delivered (incl. drain)",
        f.events as f64,
        "",
        0,
    );
    r.num(
        "msgs_delivered",
        "message deliveries (incl. drain)",
        f.msgs as f64,
        "",
        0,
    );
    r.num(
        "msgs_expected",
        "message deliveries expected",
        f.expected_msgs as f64,
        "",
        0,
    );
    r.num("lost", "lost message deliveries", lost as f64, "", 0);
    r.num(
        "frame_bytes_avg",
        "average frame",
        f.bytes as f64 / f.events.max(1) as f64,
        "B",
        0,
    );
    r.num(
        "server_cpu_s",
        "server CPU (window + drain)",
        f.metered.cpu_s,
        "s",
        2,
    );
    r.num(
        "server_cores",
        "server CPU",
        f.metered.cpu_s / f.metered.secs.max(1e-9),
        "cores",
        2,
    );
    let us_per = f.metered.cpu_s / f.events.max(1) as f64 * 1e6;
    r.num(
        "cpu_us_per_delivery",
        "server CPU per delivery (event frame)",
        us_per,
        "µs",
        2,
    );
    r.num(
        "cpu_us_per_msg_delivery",
        "server CPU per message delivery",
        f.metered.cpu_s / f.msgs.max(1) as f64 * 1e6,
        "µs",
        2,
    );
    let mut fanout_only = None;
    if let Some(per_msg) = ingest_cpu_per_msg {
        let fan = (f.metered.cpu_s - per_msg * f.published.stored as f64).max(0.0);
        if fan > 0.0 {
            fanout_only = Some(f.events as f64 / fan);
        }
        r.num(
            "ingest_cpu_us_per_msg",
            "ingest CPU per message (no subscribers)",
            per_msg * 1e6,
            "µs",
            1,
        );
        r.num(
            "fanout_cpu_us_per_delivery",
            "fan-out CPU per delivery (minus ingest)",
            fan / f.events.max(1) as f64 * 1e6,
            "µs",
            2,
        );
    }
    r.num(
        "rss_mib",
        "server RSS at the end",
        f.metered.rss_kib as f64 / 1024.0,
        "MiB",
        1,
    );
    r.num(
        "gen_cores",
        "load generator CPU",
        f.metered.gen_cores,
        "cores",
        2,
    );
    r.num(
        "machine_cores",
        "machine CPU busy",
        f.metered.machine_cores,
        "cores",
        2,
    );
    r.text("closes", "server closes", closes_text(&f.totals));
    r.num(
        "reconnects",
        "reconnects",
        f.totals.reconnects as f64,
        "",
        0,
    );
    latency_rows(r, "", &f.totals.latency);
    split_rows(r, &f.totals, &f.published);
    if let Some(e) = f
        .published
        .first_error
        .as_ref()
        .or(f.totals.first_error.as_ref())
    {
        r.text("first_error", "first error", e.clone());
    }
    if hub_side {
        r.target("cpu_us_per_delivery", Cmp::AtMost, 5.0);
        r.target("lost", Cmp::AtMost, 0.0);
    }
    let per_cpu = f.events as f64 / f.metered.cpu_s.max(1e-9);
    let msg_per_cpu = f.msgs as f64 / f.metered.cpu_s.max(1e-9);
    r.num(
        "deliveries_per_cpu_s",
        "deliveries per server CPU-second",
        per_cpu,
        "",
        0,
    );
    r.num(
        "msg_deliveries_per_cpu_s",
        "message deliveries per server CPU-second",
        msg_per_cpu,
        "",
        0,
    );
    PerCpu {
        frames: per_cpu,
        msgs: msg_per_cpu,
        fanout_only,
    }
}

/// Hub CPU per stored message with nobody subscribed (the ingest cost), seconds.
async fn ingest_baseline(hub: &Hub, p: &HubPublisher, plan: &Plan) -> anyhow::Result<Option<f64>> {
    if plan.secs <= 0.0 {
        return Ok(None);
    }
    eprintln!(
        "baseline: ingest only, {} msg/s for {} s",
        plan.rate, plan.secs
    );
    let meter = Meter::start(hub.pids(), Vec::new());
    let res = p.run(plan, None).await;
    sleep(0.5).await;
    let m = meter.stop();
    if res.stored == 0 {
        bail!("baseline: nothing was stored ({:?})", res.first_error);
    }
    Ok(Some(m.cpu_s / res.stored as f64))
}

fn hub_publisher(hub: &Hub, node: usize, run: &str, threads: usize) -> HubPublisher {
    HubPublisher {
        base: hub.http_url(node),
        key: hub.api_key.clone(),
        run: run.to_owned(),
        threads,
        http: hub.http.clone(),
        next: Arc::new(AtomicU64::new(0)),
    }
}

/// `fanout`.
pub async fn fanout(a: FanoutArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let run = run_tag();
    let mut hub = start_hub(c, &run, a.users, 0).await?;
    let result = async {
        let publisher = hub_publisher(&hub, a.publish_node, &run, a.threads);
        let warm = publisher.warm_up().await?;
        eprintln!("warm-up: {warm} messages opened {} threads", a.threads);
        let sub_nodes =
            subscribe_nodes(a.subscribe_nodes.as_ref(), hub.nodes.len(), a.publish_node);
        for &s in &a.subscribers {
            let rate = a.rate.unwrap_or(a.target_deliveries / s.max(1) as f64);
            let plan = Plan {
                rate,
                secs: a.seconds,
                batch: a.batch,
                max_inflight: a.max_inflight,
            };
            let baseline = Plan {
                secs: a.baseline_seconds,
                ..plan.clone()
            };
            let ingest_cpu = ingest_baseline(&hub, &publisher, &baseline).await?;
            let spec = hub_spec(
                c,
                &hub,
                &sub_nodes,
                hub.operators.clone(),
                &["dept"],
                hub.dept_id,
                s,
                0,
            );
            let (mut pool, started) = Pool::start("fanout", spec, c.per_worker).await?;
            warn_started("fanout", &started);
            eprintln!(
                "fanout: {} subscribers up in {:.2} s; publishing {rate:.0} msg/s for {} s",
                started.ok,
                started.elapsed.as_secs_f64(),
                a.seconds
            );
            sleep(1.0).await;
            let frames0 = hub.metric("kommutator_ws_frames_sent_total").await;
            let f = fanout_shape(
                &mut pool,
                started.ok,
                hub.pids(),
                &Publisher::Hub(publisher.clone()),
                &plan,
                a.drain,
            )
            .await?;
            let frames1 = hub.metric("kommutator_ws_frames_sent_total").await;
            pool.quit().await;
            hub.check_alive()?;
            let mut r = Report::new(
                "fanout",
                format!(
                    "fanout: {s} subscribers of dept:, {rate:.0} msg/s for {} s, {} node(s)",
                    a.seconds,
                    hub.nodes.len()
                ),
            );
            r.field("label", json!(c.label));
            r.field("nodes", json!(hub.nodes.len()));
            r.field("batch", json!(a.batch));
            r.field("threads", json!(a.threads));
            fanout_rows(&mut r, &f, ingest_cpu, true);
            r.num(
                "hub_frames_sent",
                "hub's own count of frames sent",
                frames1 - frames0,
                "",
                0,
            );
            r.print();
            sleep(1.0).await;
        }
        anyhow::Ok(())
    }
    .await;
    hub.stop().await;
    cleanup(c);
    result
}

// ---------------------------------------------------------------------------------------
// latency

/// `latency`.
pub async fn latency(a: LatencyArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let run = run_tag();
    let idle_users = if a.idle > 0 { 4 } else { 0 };
    let mut hub = start_hub(c, &run, a.users, idle_users).await?;
    let result = async {
        let publisher = hub_publisher(&hub, a.publish_node, &run, a.threads);
        let t = Instant::now();
        let warm = publisher.warm_up().await?;
        eprintln!(
            "warm-up: {warm} messages opened {} threads in {:.1} s",
            a.threads,
            t.elapsed().as_secs_f64()
        );
        let sub_nodes =
            subscribe_nodes(a.subscribe_nodes.as_ref(), hub.nodes.len(), a.publish_node);
        let topics: Vec<&str> = a.console_topics.iter().map(String::as_str).collect();
        let spec = hub_spec(
            c,
            &hub,
            &sub_nodes,
            hub.operators.clone(),
            &topics,
            hub.dept_id,
            a.consoles,
            0,
        );
        let (mut consoles, started) = Pool::start("consoles", spec, c.per_worker).await?;
        warn_started("consoles", &started);
        let idle = if a.idle > 0 {
            let all: Vec<usize> = (0..hub.nodes.len()).collect();
            let spec = hub_spec(
                c,
                &hub,
                &all,
                hub.idle_operators.clone(),
                &["user", "dept"],
                hub.idle_dept_id,
                a.idle,
                a.consoles,
            );
            let (p, s) = Pool::start("idle", spec, c.per_worker).await?;
            warn_started("idle", &s);
            Some((p, s))
        } else {
            None
        };
        eprintln!(
            "latency: {} consoles + {} idle up; publishing {} msg/s for {} s through node {}",
            started.ok,
            idle.as_ref().map_or(0, |(_, s)| s.ok),
            a.rate,
            a.seconds,
            a.publish_node
        );
        sleep(1.0).await;
        let plan = Plan {
            rate: a.rate,
            secs: a.seconds,
            batch: a.batch,
            max_inflight: a.max_inflight,
        };
        let f = fanout_shape(
            &mut consoles,
            started.ok,
            hub.pids(),
            &Publisher::Hub(publisher.clone()),
            &plan,
            10.0,
        )
        .await?;
        let idle_totals = match idle {
            Some((mut p, _)) => {
                let t = p.stats(false).await?;
                p.quit().await;
                Some(t)
            }
            None => None,
        };
        consoles.quit().await;
        hub.check_alive()?;
        let mut r = Report::new(
            "latency",
            format!(
                "latency: {} consoles ({}) + {} idle, {} msg/s for {} s, {} node(s)",
                a.consoles,
                a.console_topics.join("+"),
                a.idle,
                a.rate,
                a.seconds,
                hub.nodes.len()
            ),
        );
        r.field("label", json!(c.label));
        r.field("nodes", json!(hub.nodes.len()));
        r.field("publish_node", json!(a.publish_node));
        r.field("subscribe_nodes", json!(sub_nodes));
        r.field(
            "database",
            json!(if hub.database_url.starts_with("postgres") {
                "postgres"
            } else {
                "sqlite"
            }),
        );
        latency_rows(&mut r, "", &f.totals.latency);
        split_rows(&mut r, &f.totals, &f.published);
        r.num("consoles_up", "consoles up", f.totals.up as f64, "", 0);
        r.num(
            "idle_up",
            "idle connections up",
            idle_totals.as_ref().map_or(0, |t| t.up) as f64,
            "",
            0,
        );
        r.num("rate", "messages per second (scheduled)", a.rate, "/s", 0);
        r.num(
            "stored",
            "messages accepted",
            f.published.stored as f64,
            "",
            0,
        );
        r.num(
            "skipped",
            "not sent (too many requests in flight)",
            f.published.skipped as f64,
            "",
            0,
        );
        r.num(
            "publish_failed",
            "publish failures",
            (f.published.failed + f.published.refused) as f64,
            "",
            0,
        );
        r.num(
            "ingest_rtt_p50_ms",
            "ingest request p50",
            ms(f.published.rtt.quantile(0.5)),
            "ms",
            2,
        );
        r.num(
            "ingest_rtt_p99_ms",
            "ingest request p99",
            ms(f.published.rtt.quantile(0.99)),
            "ms",
            2,
        );
        r.num(
            "consoles_per_msg",
            "consoles reached per message",
            f.msgs as f64 / f.published.stored.max(1) as f64,
            "",
            2,
        );
        r.num(
            "deliveries_per_s",
            "event frames delivered/s",
            f.events as f64 / f.metered.secs.max(1e-9),
            "/s",
            0,
        );
        r.num(
            "server_cores",
            "server CPU",
            f.metered.cpu_s / f.metered.secs.max(1e-9),
            "cores",
            2,
        );
        r.num(
            "rss_mib",
            "server RSS",
            f.metered.rss_kib as f64 / 1024.0,
            "MiB",
            1,
        );
        r.num(
            "gen_cores",
            "load generator CPU",
            f.metered.gen_cores,
            "cores",
            2,
        );
        r.num(
            "machine_cores",
            "machine CPU busy",
            f.metered.machine_cores,
            "cores",
            2,
        );
        r.text("closes", "server closes", closes_text(&f.totals));
        if let Some(e) = f
            .published
            .first_error
            .as_ref()
            .or(f.totals.first_error.as_ref())
        {
            r.text("first_error", "first error", e.clone());
        }
        r.target("p50_ms", Cmp::AtMost, 3.0);
        r.target(
            "p99_ms",
            Cmp::AtMost,
            if hub.nodes.len() > 1 { 30.0 } else { 15.0 },
        );
        r.target("p999_ms", Cmp::AtMost, 50.0);
        r.print();
        anyhow::Ok(())
    }
    .await;
    hub.stop().await;
    cleanup(c);
    result
}

// ---------------------------------------------------------------------------------------
// storm

/// A user's ground truth: the dept seqs its reference connection received, with prefix
/// sums for any range.
struct Truth {
    seqs: Vec<i64>,
    sum: Vec<u64>,
    mix: Vec<u64>,
}

impl Truth {
    fn new(mut seqs: Vec<i64>) -> Self {
        seqs.sort_unstable();
        let mut sum = vec![0u64];
        let mut mx = vec![0u64];
        for s in &seqs {
            sum.push(sum[sum.len() - 1].wrapping_add(*s as u64));
            mx.push(mx[mx.len() - 1].wrapping_add(mix(*s)));
        }
        Self { seqs, sum, mix: mx }
    }

    /// (count, sum, mix) of the seqs above `start`.
    fn after(&self, start: i64) -> (u64, u64, u64) {
        let lo = self.seqs.partition_point(|s| *s <= start);
        let n = self.seqs.len();
        (
            (n - lo) as u64,
            self.sum[n].wrapping_sub(self.sum[lo]),
            self.mix[n].wrapping_sub(self.mix[lo]),
        )
    }
}

/// `storm`.
pub async fn storm(a: StormArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let run = run_tag();
    let mut hub = start_hub(c, &run, a.users, 0).await?;
    let result = async {
        let publisher = hub_publisher(&hub, 0, &run, a.threads);
        publisher.warm_up().await?;
        let nodes: Vec<usize> = (0..hub.nodes.len()).collect();
        // One reference connection per user that is never dropped: the ground truth.
        let mut spec = hub_spec(
            c,
            &hub,
            &nodes,
            hub.operators.clone(),
            &["user", "dept"],
            hub.dept_id,
            hub.operators.len(),
            0,
        );
        spec.reference = true;
        let (mut reference, rs) = Pool::start("reference", spec, c.per_worker).await?;
        if rs.failed > 0 {
            bail!("reference connections failed: {:?}", rs.first_error);
        }
        if !a.topics.iter().any(|t| t == "dept") {
            bail!("--topics must include dept (the checked topic)");
        }
        let topics: Vec<&str> = a.topics.iter().map(String::as_str).collect();
        let mut spec = hub_spec(
            c,
            &hub,
            &nodes,
            hub.operators.clone(),
            &topics,
            hub.dept_id,
            a.connections,
            hub.operators.len(),
        );
        spec.reference = a.dump.is_some();
        let (mut pool, started) = Pool::start("storm", spec, c.per_worker).await?;
        warn_started("storm", &started);
        eprintln!(
            "storm: {} connections up in {:.2} s; traffic {} msg/s",
            started.ok,
            started.elapsed.as_secs_f64(),
            a.rate
        );

        let stop = Arc::new(AtomicBool::new(false));
        let plan = Plan {
            rate: a.rate,
            secs: 3600.0,
            batch: 10,
            max_inflight: 64,
        };
        let bg = {
            let p = publisher.clone();
            let stop = stop.clone();
            tokio::spawn(async move { p.run(&plan, Some(stop)).await })
        };
        sleep(a.before).await;
        let mut resume_ms: Vec<f64> = Vec::new();
        let mut resumed_ok = 0;
        let mut resume_target = 0;
        let meter = Meter::start(hub.pids(), pool.pids());
        for i in 0..a.storms {
            let t = Instant::now();
            let reports = pool.command("storm").await?;
            let wall = t.elapsed().as_secs_f64() * 1000.0;
            let (mut ok, mut target) = (0, 0);
            for rep in reports {
                if let crate::proto::Report::Resumed {
                    ok: o, target: tg, ..
                } = rep
                {
                    ok += o;
                    target += tg;
                }
            }
            eprintln!(
                "storm {}: {ok} of {target} connections resubscribed in {wall:.0} ms",
                i + 1
            );
            resume_ms.push(wall);
            resumed_ok += ok;
            resume_target += target;
            sleep(a.after).await;
        }
        let storm_cpu = meter.stop();
        stop.store(true, Ordering::Relaxed);
        let published = bg.await?;
        // Drain: until both groups stop receiving for 2 s.
        let deadline = Instant::now() + Duration::from_secs_f64(a.drain);
        let mut last = (0, 0);
        let mut still_since = Instant::now();
        while Instant::now() < deadline {
            let r = reference.stats(false).await?.events;
            let s = pool.stats(false).await?.events;
            if (r, s) != last {
                last = (r, s);
                still_since = Instant::now();
            } else if still_since.elapsed() > Duration::from_secs(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_ref_totals, ref_digests) = reference.finish().await?;
        let (totals, digests) = pool.finish().await?;
        reference.quit().await;
        pool.quit().await;
        hub.check_alive()?;

        let mut truth: HashMap<i64, Truth> = HashMap::new();
        for d in ref_digests {
            truth.insert(d.user_id, Truth::new(d.seqs));
        }
        let (
            mut exact,
            mut missing,
            mut extra,
            mut mismatched,
            mut disorder,
            mut disordered,
            mut down,
        ) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut example: Option<String> = None;
        let mut dumped: Vec<serde_json::Value> = Vec::new();
        for d in &digests {
            let Some(t) = truth.get(&d.user_id) else {
                continue;
            };
            let (n, sum, mx) = t.after(d.start);
            disorder += d.dups;
            if d.dups > 0 {
                disordered += 1;
            }
            if !d.up {
                down += 1;
            }
            let same_set = (n, sum, mx) == (d.count, d.sum, d.mix);
            if same_set {
                exact += 1;
            } else if d.count < n {
                missing += n - d.count;
            } else if d.count > n {
                extra += d.count - n;
            } else {
                mismatched += 1;
            }
            if !same_set || d.dups > 0 {
                if example.is_none() {
                    example = Some(example_text(d, n));
                }
                if a.dump.is_some() && dumped.len() < 20 {
                    let lo = t.seqs.partition_point(|s| *s <= d.start);
                    dumped.push(json!({
                        "user_id": d.user_id, "start": d.start, "out_of_order": d.dups,
                        "received": d.seqs, "expected": t.seqs[lo..],
                    }));
                }
            }
        }
        if let Some(path) = &a.dump {
            std::fs::write(path, serde_json::to_string_pretty(&dumped)?)?;
            eprintln!(
                "storm: {} wrong connections written to {}",
                dumped.len(),
                path.display()
            );
        }
        let mut r = Report::new(
            "storm",
            format!(
                "storm: {} connections dropped {} time(s) with {} msg/s flowing, {} node(s)",
                a.connections,
                a.storms,
                a.rate,
                hub.nodes.len()
            ),
        );
        r.field("label", json!(c.label));
        r.field("nodes", json!(hub.nodes.len()));
        r.num(
            "connected",
            "connections up before",
            started.ok as f64,
            "",
            0,
        );
        r.num(
            "connect_s",
            "time to connect + subscribe all",
            started.elapsed.as_secs_f64(),
            "s",
            2,
        );
        r.num(
            "resubscribed",
            "resubscribed after the drops",
            resumed_ok as f64,
            "",
            0,
        );
        r.num(
            "resubscribe_target",
            "connections dropped",
            resume_target as f64,
            "",
            0,
        );
        let worst = resume_ms.iter().copied().fold(0.0, f64::max);
        r.num(
            "resubscribe_s",
            "time to resubscribe all (worst drop)",
            worst / 1000.0,
            "s",
            2,
        );
        r.field("resubscribe_ms_each", json!(resume_ms));
        r.num(
            "stored",
            "messages accepted during the test",
            published.stored as f64,
            "",
            0,
        );
        r.num(
            "checked",
            "connections checked",
            digests.len() as f64,
            "",
            0,
        );
        r.num(
            "exact",
            "connections with exactly the expected set",
            exact as f64,
            "",
            0,
        );
        r.num("missing", "events missing", missing as f64, "", 0);
        r.num(
            "extra",
            "events duplicated or not expected",
            extra as f64,
            "",
            0,
        );
        r.num(
            "mismatched",
            "connections with another set (same count)",
            mismatched as f64,
            "",
            0,
        );
        r.num(
            "out_of_order",
            "dept: events below a seq already received",
            disorder as f64,
            "",
            0,
        );
        r.num(
            "out_of_order_conns",
            "connections that saw dept: out of order",
            disordered as f64,
            "",
            0,
        );
        r.num(
            "resyncs",
            "resync answers (too much missed)",
            totals.resyncs as f64,
            "",
            0,
        );
        r.num(
            "down_at_end",
            "connections down at the end",
            down as f64,
            "",
            0,
        );
        r.num(
            "storm_server_cores",
            "server CPU during drops",
            storm_cpu.cpu_s / storm_cpu.secs.max(1e-9),
            "cores",
            2,
        );
        r.text("closes", "server closes", closes_text(&totals));
        if let Some(e) = example {
            r.text("example", "first wrong connection", e);
        }
        if let Some(e) = totals
            .first_error
            .as_ref()
            .or(published.first_error.as_ref())
        {
            r.text("first_error", "first error", e.clone());
        }
        r.target("missing", Cmp::AtMost, 0.0);
        r.target("out_of_order", Cmp::AtMost, 0.0);
        r.target("mismatched", Cmp::AtMost, 0.0);
        r.target("extra", Cmp::AtMost, 0.0);
        r.target("resubscribe_s", Cmp::AtMost, 10.0);
        r.print();
        anyhow::Ok(())
    }
    .await;
    hub.stop().await;
    cleanup(c);
    result
}

fn example_text(d: &Digest, expected: u64) -> String {
    format!(
        "user {} start {} got {} expected {} last {} out-of-order {} up {}",
        d.user_id, d.start, d.count, expected, d.last, d.dups, d.up
    )
}

// ---------------------------------------------------------------------------------------
// peer

/// `peer`.
pub async fn peer(a: PeerArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let run = run_tag();
    let bin = hub::peer_bin(a.peer_bin.as_deref())?;
    let dir = work_dir(c);
    let plan = Plan {
        rate: a.rate,
        secs: a.seconds,
        batch: a.batch,
        max_inflight: 64,
    };

    // 1. The peer.
    let mut peer: Proc = hub::start_peer(&bin, &dir, c.server_cpus.as_deref()).await?;
    let peer_result = async {
        let url = format!("ws://{}/connection/websocket", peer.addr);
        let idle_spec = peer_spec(c, &url, "idle", a.connections, 0);
        let idle = idle_shape(
            "peer idle",
            vec![peer.pid],
            idle_spec,
            c.per_worker,
            a.settle,
            a.idle_seconds,
        )
        .await?;
        peer.check_alive("the peer")?;
        sleep(1.0).await;
        let spec = peer_spec(c, &url, "bench", a.subscribers, 0);
        let (mut pool, started) = Pool::start("peer fanout", spec, c.per_worker).await?;
        warn_started("peer fanout", &started);
        sleep(1.0).await;
        let publisher = Publisher::Peer {
            url: url.clone(),
            channel: "bench".into(),
            pad: a.pad,
        };
        let f = fanout_shape(
            &mut pool,
            started.ok,
            vec![peer.pid],
            &publisher,
            &plan,
            15.0,
        )
        .await?;
        pool.quit().await;
        peer.check_alive("the peer")?;
        anyhow::Ok((idle, f))
    }
    .await;
    peer.stop(Duration::from_secs(5)).await;
    let (peer_idle, peer_fan) = peer_result?;

    // 2. The hub, same shapes.
    sleep(1.0).await;
    let mut hub = start_hub(c, &run, a.users, 0).await?;
    let hub_result = async {
        let nodes: Vec<usize> = (0..hub.nodes.len()).collect();
        let spec = hub_spec(
            c,
            &hub,
            &nodes,
            hub.operators.clone(),
            &["user", "dept"],
            hub.dept_id,
            a.connections,
            0,
        );
        let idle = idle_shape(
            "hub idle",
            hub.pids(),
            spec,
            c.per_worker,
            a.settle,
            a.idle_seconds,
        )
        .await?;
        let publisher = hub_publisher(&hub, 0, &run, a.threads);
        publisher.warm_up().await?;
        let baseline = Plan {
            secs: a.baseline_seconds,
            ..plan.clone()
        };
        let ingest_cpu = ingest_baseline(&hub, &publisher, &baseline).await?;
        let spec = hub_spec(
            c,
            &hub,
            &nodes,
            hub.operators.clone(),
            &["dept"],
            hub.dept_id,
            a.subscribers,
            0,
        );
        let (mut pool, started) = Pool::start("hub fanout", spec, c.per_worker).await?;
        warn_started("hub fanout", &started);
        sleep(1.0).await;
        let f = fanout_shape(
            &mut pool,
            started.ok,
            hub.pids(),
            &Publisher::Hub(publisher),
            &plan,
            15.0,
        )
        .await?;
        pool.quit().await;
        hub.check_alive()?;
        anyhow::Ok((idle, f, ingest_cpu))
    }
    .await;
    hub.stop().await;
    cleanup(c);
    let (hub_idle, hub_fan, ingest_cpu) = hub_result?;

    let mut r = Report::new(
        "peer_idle",
        format!(
            "peer (Centrifuge 0.15 benchmark_gorilla): {} idle connections",
            a.connections
        ),
    );
    r.field("label", json!(c.label));
    let peer_mem = idle_rows(&mut r, &peer_idle, false);
    r.print();
    let mut r = Report::new(
        "hub_idle",
        format!("hub: {} idle connections", a.connections),
    );
    r.field("label", json!(c.label));
    let hub_mem = idle_rows(&mut r, &hub_idle, false);
    r.print();
    let mut r = Report::new(
        "peer_fanout",
        format!(
            "peer: {} subscribers, {} msg/s for {} s",
            a.subscribers, a.rate, a.seconds
        ),
    );
    r.field("label", json!(c.label));
    r.field("pad", json!(a.pad));
    let peer_per_cpu = fanout_rows(&mut r, &peer_fan, None, false).frames;
    r.print();
    let mut r = Report::new(
        "hub_fanout",
        format!(
            "hub: {} subscribers of dept:, {} msg/s for {} s",
            a.subscribers, a.rate, a.seconds
        ),
    );
    r.field("label", json!(c.label));
    let hub_cpu = fanout_rows(&mut r, &hub_fan, ingest_cpu, false);
    let (hub_per_cpu, hub_msg_per_cpu) = (hub_cpu.frames, hub_cpu.msgs);
    r.print();

    let mut r = Report::new("peer", "hub vs peer".to_owned());
    r.field("label", json!(c.label));
    r.num(
        "peer_rss_per_conn_kib",
        "peer RSS per idle connection",
        peer_mem,
        "KiB",
        2,
    );
    r.num(
        "hub_rss_per_conn_kib",
        "hub RSS per idle connection",
        hub_mem,
        "KiB",
        2,
    );
    r.num(
        "memory_ratio",
        "peer / hub memory per connection",
        peer_mem / hub_mem.max(1e-9),
        "×",
        2,
    );
    r.num(
        "peer_deliveries_per_cpu_s",
        "peer deliveries per CPU-second",
        peer_per_cpu,
        "",
        0,
    );
    r.num(
        "hub_deliveries_per_cpu_s",
        "hub event frames per CPU-second",
        hub_per_cpu,
        "",
        0,
    );
    r.num(
        "hub_msg_deliveries_per_cpu_s",
        "hub message deliveries per CPU-second",
        hub_msg_per_cpu,
        "",
        0,
    );
    r.num(
        "delivery_ratio",
        "hub / peer event frames per CPU-second",
        hub_per_cpu / peer_per_cpu.max(1e-9),
        "×",
        2,
    );
    r.num(
        "msg_delivery_ratio",
        "hub messages / peer publications per CPU-second",
        hub_msg_per_cpu / peer_per_cpu.max(1e-9),
        "×",
        2,
    );
    if let Some(fo) = hub_cpu.fanout_only {
        r.num(
            "hub_fanout_only_per_cpu_s",
            "hub event frames per fan-out CPU-second (minus ingest)",
            fo,
            "",
            0,
        );
        r.num(
            "fanout_only_ratio",
            "hub fan-out alone / peer per CPU-second",
            fo / peer_per_cpu.max(1e-9),
            "×",
            2,
        );
    }
    r.num(
        "peer_p99_ms",
        "peer latency p99",
        ms(peer_fan.totals.latency.quantile(0.99)),
        "ms",
        2,
    );
    r.num(
        "hub_p99_ms",
        "hub latency p99",
        ms(hub_fan.totals.latency.quantile(0.99)),
        "ms",
        2,
    );
    r.target("memory_ratio", Cmp::AtLeast, 3.0);
    r.target("delivery_ratio", Cmp::AtLeast, 1.5);
    r.print();
    Ok(())
}
