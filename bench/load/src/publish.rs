//! Open-loop publishers: requests leave on a fixed schedule whatever the server's answer
//! time (no coordinated omission). Each message carries its *scheduled* send time, in ns
//! since the UNIX epoch, which receivers subtract from their clock.
//!
//! - Hub: inbound messages through `POST /api/v1/connectors/site/events` (one event) or
//!   `.../events/batch` (several), with an API key.
//! - Peer: Centrifuge `publish` commands from one WebSocket connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::hist::Hist;
use crate::worker::{now_ns, STAMP};

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Messages per second.
    pub rate: f64,
    /// For how long.
    pub secs: f64,
    /// Most messages per request (the batch endpoint when above 1).
    pub batch: usize,
    /// Requests in flight at most; beyond, a request is skipped (and counted).
    pub max_inflight: usize,
}

/// What a publish run did.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// Messages scheduled.
    pub scheduled: u64,
    /// Stored by the hub (peer: publish acknowledged).
    pub stored: u64,
    /// Answered as duplicates.
    pub duplicate: u64,
    /// Refused one by one (an error item of a batch, or an error answer).
    pub refused: u64,
    /// Requests that failed (transport error, 5xx).
    pub failed: u64,
    /// Messages not sent because too many requests were in flight.
    pub skipped: u64,
    /// Request round trips, µs.
    pub rtt: Hist,
    /// How late requests left against their schedule, µs (the harness's own lag).
    pub lag: Hist,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// The first error.
    pub first_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    stored: AtomicU64,
    duplicate: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    rtt: Mutex<Hist>,
    lag: Mutex<Hist>,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        if let Ok(mut f) = self.first_error.lock() {
            if f.is_none() {
                *f = Some(e);
            }
        }
    }
}

/// Publishes inbound messages to a hub.
#[derive(Debug, Clone)]
pub struct HubPublisher {
    /// `http://host:port` of the node to ingest through.
    pub base: String,
    /// API key secret.
    pub key: String,
    /// Run tag (message ids stay unique across runs on one database).
    pub run: String,
    /// Conversation threads the messages rotate over.
    pub threads: usize,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Next message number.
    pub next: Arc<AtomicU64>,
}

impl HubPublisher {
    fn event(&self, n: u64, stamp_ns: u64) -> Value {
        let t = n % self.threads.max(1) as u64;
        json!({
            "connector_id": "site",
            "external_id": format!("{}-{n}", self.run),
            "occurred_at": "2026-11-29T10:00:00Z",
            "kind": {
                "type": "message",
                "thread_id": format!("{}-t{t}", self.run),
                "sender": {
                    "identities": [{"kind": "phone", "value": format!("+7916{:07}", t % 10_000_000)}],
                    "display_name": format!("Load client {t}")
                },
                "text": format!("{STAMP}{stamp_ns}:{n} load test message"),
                "attachments": [],
                "reply_to_external_id": null,
                "edit_of": null
            }
        })
    }

    /// One message on every thread, sent in order, before measuring: opens the dialogs
    /// (and leads, Interests) so the measured messages only add to them.
    pub async fn warm_up(&self) -> anyhow::Result<u64> {
        let mut stored = 0;
        let threads = self.threads as u64;
        let mut done = 0;
        while done < threads {
            let k = (threads - done).min(100);
            let events: Vec<Value> = (0..k)
                .map(|_| {
                    let n = self.next.fetch_add(1, Ordering::Relaxed);
                    self.event(n, now_ns())
                })
                .collect();
            let (s, _, refused) = self.send(events).await?;
            if refused > 0 {
                bail!("warm-up: the hub refused {refused} events");
            }
            stored += s;
            done += k;
        }
        Ok(stored)
    }

    /// POSTs events; (stored, duplicate, refused).
    async fn send(&self, events: Vec<Value>) -> anyhow::Result<(u64, u64, u64)> {
        let single = events.len() == 1;
        let req = if single {
            self.http
                .post(format!("{}/api/v1/connectors/site/events", self.base))
                .json(&events[0])
        } else {
            self.http
                .post(format!("{}/api/v1/connectors/site/events/batch", self.base))
                .json(&json!({ "events": events }))
        };
        let r = req.bearer_auth(&self.key).send().await?;
        let status = r.status();
        let body = r.text().await?;
        if status.is_server_error() {
            bail!("{status}: {}", crate::worker::clip(&body));
        }
        if !status.is_success() {
            return Ok((0, 0, events.len() as u64));
        }
        let stored = body.matches("\"status\":\"stored\"").count() as u64;
        let duplicate = body.matches("\"status\":\"duplicate\"").count() as u64;
        let refused = if single {
            u64::from(stored + duplicate == 0)
        } else {
            body.matches("\"error\":{").count() as u64
        };
        Ok((stored, duplicate, refused))
    }

    /// Publishes on the open-loop schedule of `plan` (ending early once `stop` is set).
    pub async fn run(&self, plan: &Plan, stop: Option<Arc<AtomicBool>>) -> Published {
        // Small batches at low rates keep the schedule smooth: at least ~200 requests/s.
        let batch = ((plan.rate / 200.0).ceil() as usize).clamp(1, plan.batch.max(1));
        let interval = Duration::from_secs_f64(batch as f64 / plan.rate.max(0.001));
        let c = Arc::new(Counters::default());
        let sem = Arc::new(Semaphore::new(plan.max_inflight.max(1)));
        let mut out = Published::default();
        let start = tokio::time::Instant::now();
        let epoch0 = now_ns();
        let end = Duration::from_secs_f64(plan.secs);
        let mut k: u32 = 0;
        loop {
            let offset = interval * k;
            if offset >= end || stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            tokio::time::sleep_until(start + offset).await;
            let stamp = epoch0 + u64::try_from(offset.as_nanos()).unwrap_or(0);
            out.scheduled += batch as u64;
            match sem.clone().try_acquire_owned() {
                Ok(permit) => {
                    let events: Vec<Value> = (0..batch)
                        .map(|_| self.event(self.next.fetch_add(1, Ordering::Relaxed), stamp))
                        .collect();
                    let me = self.clone();
                    let c = c.clone();
                    tokio::spawn(async move {
                        if let Ok(mut h) = c.lag.lock() {
                            h.record(now_ns().saturating_sub(stamp) / 1000);
                        }
                        let t = Instant::now();
                        match me.send(events).await {
                            Ok((s, d, r)) => {
                                c.stored.fetch_add(s, Ordering::Relaxed);
                                c.duplicate.fetch_add(d, Ordering::Relaxed);
                                c.refused.fetch_add(r, Ordering::Relaxed);
                            }
                            Err(e) => {
                                c.failed.fetch_add(1, Ordering::Relaxed);
                                c.error(format!("{e:#}"));
                            }
                        }
                        if let Ok(mut h) = c.rtt.lock() {
                            h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                        }
                        drop(permit);
                    });
                }
                Err(_) => out.skipped += batch as u64,
            }
            k += 1;
        }
        // Wait for the answers still out.
        let all = u32::try_from(plan.max_inflight.max(1)).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(60), sem.acquire_many(all)).await;
        out.elapsed = start.elapsed();
        out.stored = c.stored.load(Ordering::Relaxed);
        out.duplicate = c.duplicate.load(Ordering::Relaxed);
        out.refused = c.refused.load(Ordering::Relaxed);
        out.failed = c.failed.load(Ordering::Relaxed);
        out.rtt = c.rtt.lock().map(|h| h.clone()).unwrap_or_default();
        out.lag = c.lag.lock().map(|h| h.clone()).unwrap_or_default();
        out.first_error = c.first_error.lock().ok().and_then(|e| e.clone());
        out
    }
}

/// Publishes to the Centrifuge peer from one connection: `publish` commands on the plan's
/// schedule, each with `{"ts": <scheduled ns>, "n": .., "pad": ..}`.
pub async fn peer_publish(
    url: &str,
    channel: &str,
    plan: &Plan,
    pad: usize,
) -> anyhow::Result<Published> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("publisher: cannot connect to the peer")?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text("{\"id\":1,\"params\":{}}")).await?;
    // The connect reply.
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"id\":1") => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("publisher: the peer closed the connection"),
        }
    }
    let c = Arc::new(Counters::default());
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.next().await {
                let Ok(Message::Text(t)) = m else { continue };
                for line in t.as_str().split('\n').filter(|l| !l.is_empty()) {
                    if line.contains("\"error\"") {
                        c.refused.fetch_add(1, Ordering::Relaxed);
                        c.error(line.chars().take(300).collect());
                    } else if line.contains("\"result\"") {
                        c.stored.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let padding = "x".repeat(pad);
    let tick = Duration::from_millis(1);
    let start = tokio::time::Instant::now();
    let epoch0 = now_ns();
    let mut out = Published::default();
    let mut sent: u64 = 0;
    let mut id: u64 = 2;
    let total = (plan.rate * plan.secs).round() as u64;
    let mut k: u32 = 0;
    while sent < total {
        let at = tick * k;
        tokio::time::sleep_until(start + at).await;
        // Every message whose time has come by this tick.
        let due = ((at.as_secs_f64() * plan.rate).floor() as u64 + 1).min(total);
        while sent < due {
            let ts = epoch0 + ((sent as f64 / plan.rate) * 1e9) as u64;
            out.lag.record(now_ns().saturating_sub(ts) / 1000);
            let cmd = json!({"id": id, "method": 3, "params": {"channel": channel, "data": {"ts": ts, "n": sent, "pad": padding}}});
            tx.feed(Message::text(cmd.to_string())).await?;
            sent += 1;
            id += 1;
        }
        tx.flush().await?;
        k += 1;
    }
    out.scheduled = sent;
    // Replies for everything sent, or give up after 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stored.load(Ordering::Relaxed) + c.refused.load(Ordering::Relaxed) < sent
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.elapsed = start.elapsed();
    let _ = tx.close().await;
    reader.abort();
    out.stored = c.stored.load(Ordering::Relaxed);
    out.refused = c.refused.load(Ordering::Relaxed);
    out.failed = sent.saturating_sub(out.stored + out.refused);
    out.first_error = c.first_error.lock().ok().and_then(|e| e.clone());
    if out.stored == 0 && sent > 0 {
        return Err(anyhow!(
            "publisher: the peer acknowledged no publish ({:?})",
            out.first_error
        ));
    }
    Ok(out)
}
