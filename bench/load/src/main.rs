//! `kommutator-load`: load and latency harness for the Kommutator hub, run by hand.
//!
//! It starts the hub itself (fresh SQLite, or PostgreSQL + Redis for several nodes), sets
//! it up over REST, runs one scenario with client connections sharded over worker
//! processes (the binary re-runs itself as `worker`), measures the hub process from
//! `/proc`, stops it, and prints a table plus one `BENCH_JSON {...}` line.
//! See `bench/load/README.md`.

mod hist;
mod hub;
mod pool;
mod procstat;
mod proto;
mod publish;
mod report;
mod scenarios;
mod worker;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load and latency harness for the Kommutator hub.
#[derive(Debug, Parser)]
#[command(name = "kommutator-load", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N idle operator connections (user: + dept:): RSS and CPU per connection, connect time.
    Idle(IdleArgs),
    /// S subscribers of dept:, messages ingested open-loop: deliveries/s, hub CPU per delivery, loss.
    Fanout(FanoutArgs),
    /// Operator consoles + idle connections, ingest at a fixed rate: ingest→console latency.
    Latency(LatencyArgs),
    /// Drop every connection at once while events flow, resume with since: time, gaps, duplicates.
    Storm(StormArgs),
    /// Idle and fan-out shapes against the Centrifuge peer and the hub, with the ratios.
    Peer(PeerArgs),
    /// (internal) a client shard; reads its spec and commands on stdin.
    #[command(hide = true)]
    Worker,
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The hub binary [default: $CARGO_TARGET_DIR or /var/tmp/kommutator-target, then
    /// release/kommutator].
    #[arg(long, env = "KOMMUTATOR_LOAD_HUB_BIN")]
    pub hub_bin: Option<PathBuf>,
    /// Database URL for the hub; default: a fresh SQLite file in the work folder. A
    /// PostgreSQL database may be reused: names are unique per run.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Redis URL (the multi-node bus), passed as KOMMUTATOR_REALTIME__REDIS_URL.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Hub processes (several need --database-url postgres://... and --redis-url).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Extra environment for the hub, KEY=VALUE (repeat), e.g.
    /// KOMMUTATOR_REALTIME__READ_BUFFER_BYTES=1024.
    #[arg(long = "hub-env", value_parser = parse_kv)]
    pub hub_env: Vec<(String, String)>,
    /// Pin the server under test to these CPUs (taskset -c LIST).
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Keep the hub process that ran the setup (by default it is restarted after the setup,
    /// so the measured process has not done the argon2 sign-ins).
    #[arg(long)]
    pub no_restart: bool,
    /// Connections per worker process (each process stays under the 20,000-fd limit).
    #[arg(long, default_value_t = 9_000)]
    pub per_worker: usize,
    /// Handshakes in flight per worker process.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Clients set TCP_QUICKACK after every read, so the server's small writes are never
    /// held back waiting for a delayed ACK (a diagnostic: it shows whether Nagle's
    /// algorithm on the server's sockets adds latency).
    #[arg(long)]
    pub client_quickack: bool,
    /// WebSocket read buffer per client connection, bytes.
    #[arg(long, default_value_t = 4096)]
    pub read_buffer: usize,
    /// Work folder (config, SQLite file, logs) [default: /tmp/kommutator-load-<pid>].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Free text copied into the JSON (machine, commit, ...).
    #[arg(long, default_value = "")]
    pub label: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "use KEY=VALUE".to_owned())
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Operator users the connections sign in as (round-robin).
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Seconds to wait after connecting before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// The idle CPU window, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
}

/// `fanout` options.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscriber counts, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub subscribers: Vec<usize>,
    /// Messages per second; default: --target-deliveries / subscribers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Message deliveries per second to aim at when --rate is not given.
    #[arg(long, default_value_t = 200_000.0)]
    pub target_deliveries: f64,
    /// Publishing window, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Ingest-only window before each run (no subscribers), seconds; 0 skips it.
    #[arg(long, default_value_t = 5.0)]
    pub baseline_seconds: f64,
    /// Most events per ingest request (the batch endpoint above 1).
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// Conversation threads the messages rotate over.
    #[arg(long, default_value_t = 200)]
    pub threads: usize,
    /// Operator users.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Ingest requests in flight at most.
    #[arg(long, default_value_t = 64)]
    pub max_inflight: usize,
    /// Longest wait for deliveries after publishing, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Node to ingest through.
    #[arg(long, default_value_t = 0)]
    pub publish_node: usize,
    /// Nodes the subscribers connect to (comma-separated) [default: all but the
    /// publishing node when there are several, else 0].
    #[arg(long, value_delimiter = ',')]
    pub subscribe_nodes: Option<Vec<usize>>,
}

/// `latency` options.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Operator consoles (the latency receivers).
    #[arg(long, default_value_t = 200)]
    pub consoles: usize,
    /// Topics of each console: user, dept, or literal topics (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "user,dept")]
    pub console_topics: Vec<String>,
    /// Idle connections besides (operators of another department).
    #[arg(long, default_value_t = 5_000)]
    pub idle: usize,
    /// Operator users the consoles sign in as.
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Messages ingested per second.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Window, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Most events per ingest request (1: the single-event endpoint).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Conversation threads the messages rotate over.
    #[arg(long, default_value_t = 1_000)]
    pub threads: usize,
    /// Ingest requests in flight at most.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Node to ingest through.
    #[arg(long, default_value_t = 0)]
    pub publish_node: usize,
    /// Nodes the consoles connect to [default: all but the publishing node when there are
    /// several, else 0].
    #[arg(long, value_delimiter = ',')]
    pub subscribe_nodes: Option<Vec<usize>>,
}

/// `storm` options.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections that are dropped and resume.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Operator users.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Messages ingested per second throughout.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Conversation threads.
    #[arg(long, default_value_t = 100)]
    pub threads: usize,
    /// Seconds of traffic before the first drop.
    #[arg(long, default_value_t = 3.0)]
    pub before: f64,
    /// Seconds of traffic after each resume.
    #[arg(long, default_value_t = 5.0)]
    pub after: f64,
    /// Drops.
    #[arg(long, default_value_t = 1)]
    pub storms: usize,
    /// Topics of each dropped connection, in subscription order (must include dept).
    #[arg(long, value_delimiter = ',', default_value = "user,dept")]
    pub topics: Vec<String>,
    /// Longest wait for the last events after publishing, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub drain: f64,
    /// Keep every seq of every connection and write the wrong ones (received vs expected,
    /// at most 20) to this JSON file. Memory grows with connections × events: small runs.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

/// `peer` options.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    #[command(flatten)]
    pub common: Common,
    /// The Centrifuge peer binary [default: /var/tmp/kommutator-peer/bin/centrifuge-peer,
    /// built by bench/peer/build-centrifuge.sh when missing].
    #[arg(long)]
    pub peer_bin: Option<PathBuf>,
    /// Idle connections (both servers).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Idle CPU window, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub idle_seconds: f64,
    /// Subscribers in the fan-out shape.
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Messages per second in the fan-out shape.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Fan-out window, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Bytes of padding in each peer publication (to bring its frame near the hub's).
    #[arg(long, default_value_t = 550)]
    pub pad: usize,
    /// Hub: operator users.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Hub: most events per ingest request.
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// Hub: conversation threads.
    #[arg(long, default_value_t = 200)]
    pub threads: usize,
    /// Hub: ingest-only window for the ingest CPU estimate, seconds; 0 skips it.
    #[arg(long, default_value_t = 5.0)]
    pub baseline_seconds: f64,
    /// Seconds to wait after connecting before measuring memory.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
}

/// Runs a scenario until it ends or Ctrl-C; dropping it kills the servers it started
/// (their `Child` handles kill on drop).
async fn interruptible(
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let worker = matches!(cli.cmd, Cmd::Worker);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Worker => worker::run().await,
            Cmd::Idle(a) => interruptible(scenarios::idle(a)).await,
            Cmd::Fanout(a) => interruptible(scenarios::fanout(a)).await,
            Cmd::Latency(a) => interruptible(scenarios::latency(a)).await,
            Cmd::Storm(a) => interruptible(scenarios::storm(a)).await,
            Cmd::Peer(a) => interruptible(scenarios::peer(a)).await,
        }
    });
    // Connections still open in workers need not close gracefully.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}error: {e:#}", if worker { "worker " } else { "" });
            std::process::ExitCode::FAILURE
        }
    }
}
