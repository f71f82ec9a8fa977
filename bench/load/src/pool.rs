//! The orchestrator's side of the worker processes: start them (the harness re-runs itself
//! with `worker`), send commands, gather reports.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::hist::Hist;
use crate::proto::{Digest, Report, Stats, WorkerSpec, REPORT_PREFIX};

struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

/// A group of worker processes doing one job (subscribers, idle connections, ...).
pub struct Pool {
    /// What the group is, for messages.
    pub name: String,
    workers: Vec<Worker>,
    /// Connections asked for.
    pub count: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("workers", &self.workers.len())
            .field("count", &self.count)
            .finish()
    }
}

/// What [`Pool::start`] found once every connection was tried.
#[derive(Debug, Clone)]
pub struct Started {
    /// Connected and subscribed.
    pub ok: usize,
    /// Gave up.
    pub failed: usize,
    /// Wall time from starting the processes to the last worker's `ready`.
    pub elapsed: Duration,
    /// The first error any worker saw.
    pub first_error: Option<String>,
}

impl Pool {
    /// Splits `count` connections (global indexes from `base.first`) into workers of at
    /// most `per_worker`, starts them, and waits until every connection was tried.
    pub async fn start(
        name: &str,
        base: WorkerSpec,
        per_worker: usize,
    ) -> anyhow::Result<(Pool, Started)> {
        let exe = std::env::current_exe().context("cannot find the harness's own binary")?;
        let per = per_worker.max(1);
        let n_workers = base.count.div_ceil(per).max(1);
        let t0 = Instant::now();
        let mut workers = Vec::new();
        let mut assigned = 0;
        for w in 0..n_workers {
            // Spread evenly rather than filling the first workers.
            let count = base.count / n_workers + usize::from(w < base.count % n_workers);
            let mut spec = base.clone();
            spec.first = base.first + assigned;
            spec.count = count;
            assigned += count;
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker")?;
            let pid = child
                .id()
                .ok_or_else(|| anyhow!("a worker exited at once"))?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| anyhow!("no worker stdin"))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("no worker stdout"))?;
            let line = serde_json::to_string(&spec)?;
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await?;
            workers.push(Worker {
                child,
                pid,
                stdin,
                out: BufReader::new(stdout).lines(),
            });
        }
        let mut pool = Pool {
            name: name.to_owned(),
            workers,
            count: base.count,
        };
        let mut started = Started {
            ok: 0,
            failed: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        };
        for r in pool.read_all().await? {
            match r {
                Report::Ready {
                    ok, failed, stats, ..
                } => {
                    started.ok += ok;
                    started.failed += failed;
                    if started.first_error.is_none() {
                        started.first_error = stats.first_error;
                    }
                }
                other => bail!("{name}: expected ready, got {other:?}"),
            }
        }
        started.elapsed = t0.elapsed();
        Ok((pool, started))
    }

    /// Pids of the workers.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    async fn read_one(name: &str, w: &mut Worker) -> anyhow::Result<Report> {
        loop {
            let line = w
                .out
                .next_line()
                .await?
                .ok_or_else(|| anyhow!("{name}: a worker (pid {}) exited", w.pid))?;
            if let Some(json) = line.strip_prefix(REPORT_PREFIX) {
                return serde_json::from_str(json)
                    .with_context(|| format!("{name}: bad report from a worker"));
            }
            eprintln!("{name} worker {}: {line}", w.pid);
        }
    }

    async fn read_all(&mut self) -> anyhow::Result<Vec<Report>> {
        let name = self.name.clone();
        let futs = self.workers.iter_mut().map(|w| Self::read_one(&name, w));
        futures_util::future::try_join_all(futs).await
    }

    /// Sends `cmd` to every worker and returns their answers.
    pub async fn command(&mut self, cmd: &str) -> anyhow::Result<Vec<Report>> {
        for w in &mut self.workers {
            w.stdin.write_all(cmd.as_bytes()).await?;
            w.stdin.write_all(b"\n").await?;
            w.stdin.flush().await?;
        }
        self.read_all().await
    }

    /// Counters summed over the workers (`reset` also restarts the latency histograms).
    pub async fn stats(&mut self, reset: bool) -> anyhow::Result<Totals> {
        let reports = self.command(if reset { "reset" } else { "stats" }).await?;
        let mut t = Totals::default();
        for r in reports {
            if let Report::Stats { stats } = r {
                t.add(&stats);
            }
        }
        Ok(t)
    }

    /// `final`: counters and every connection's digest.
    pub async fn finish(&mut self) -> anyhow::Result<(Totals, Vec<Digest>)> {
        let reports = self.command("final").await?;
        let mut t = Totals::default();
        let mut all = Vec::new();
        for r in reports {
            if let Report::Final { stats, digests } = r {
                t.add(&stats);
                all.extend(digests);
            }
        }
        Ok((t, all))
    }

    /// Stops the workers (their connections close).
    pub async fn quit(mut self) {
        for w in &mut self.workers {
            let _ = w.stdin.write_all(b"quit\n").await;
            let _ = w.stdin.flush().await;
        }
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.start_kill();
                let _ = w.child.wait().await;
            }
        }
    }
}

/// Counters summed over workers.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Text frames.
    pub frames: u64,
    /// Events.
    pub events: u64,
    /// Message events.
    pub msgs: u64,
    /// Stamped message events.
    pub stamped: u64,
    /// Bytes.
    pub bytes: u64,
    /// Connections up.
    pub up: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Server closes by code.
    pub closes: Vec<(u16, u64)>,
    /// Resyncs.
    pub resyncs: u64,
    /// Error frames.
    pub errors: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Digest duplicates.
    pub dups: u64,
    /// First error.
    pub first_error: Option<String>,
    /// Latency, µs.
    pub latency: Hist,
    /// Send → event `at`, µs.
    pub to_commit: Hist,
    /// Event `at` → receipt, µs.
    pub from_commit: Hist,
    /// Lowest highest-dept-seq of the connections up.
    pub min_last: Option<i64>,
}

impl Totals {
    fn add(&mut self, s: &Stats) {
        self.frames += s.frames;
        self.events += s.events;
        self.msgs += s.msgs;
        self.stamped += s.stamped;
        self.bytes += s.bytes;
        self.up += s.up;
        self.reconnects += s.reconnects;
        for (code, n) in &s.closes {
            match self.closes.iter_mut().find(|(c, _)| c == code) {
                Some((_, m)) => *m += n,
                None => self.closes.push((*code, *n)),
            }
        }
        self.resyncs += s.resyncs;
        self.errors += s.errors;
        self.connect_failures += s.connect_failures;
        self.dups += s.dups;
        if self.first_error.is_none() {
            self.first_error.clone_from(&s.first_error);
        }
        self.latency.merge(&s.latency);
        self.to_commit.merge(&s.to_commit);
        self.from_commit.merge(&s.from_commit);
        if s.up > 0 {
            self.min_last = Some(self.min_last.map_or(s.min_last, |m| m.min(s.min_last)));
        }
    }
}
