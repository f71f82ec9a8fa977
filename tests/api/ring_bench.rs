//! Ring-to-screen latency: an Asterisk `DialBegin` to the operator's extension arriving on
//! the AMI socket → the call's frame, with that operator on it, arriving on their operator
//! WebSocket. A measurement, not a test of speed: it prints a table and one `BENCH_JSON`
//! line and asserts only that every call reached the operator.
//!
//! Run by hand on a release build (SQLite; PostgreSQL when `KOMMUTATOR_TEST_DATABASE_URL`
//! is set):
//!
//! ```sh
//! cargo test --release --test api ring_bench -- --ignored --nocapture
//! ```
//!
//! A fake Asterisk on loopback (see `ami_calls.rs`) plays the `inbound_answered` fixture of
//! the AMI connector once per call, with its ids and times rewritten so each call is new:
//! the trunk channel appears (the call opens, ringing, nobody's yet), then `DialBegin` to
//! `PJSIP/101`. The clock starts just before the `DialBegin` bytes are written and stops
//! when the operator's socket yields the `call` event naming her (`operator_id`). The rest
//! of the call (answer, talk, hang-up) is then played and awaited before the next call, so
//! each measurement is of one call on an otherwise idle hub. `KOMMUTATOR_BENCH_CALLS` sets
//! the number of calls (default 500).

use std::time::{Duration, Instant};

use kommutator::domain::Role;
use serde_json::json;

use crate::ami_calls::{after, fixture, with_ami, FakeAsterisk};
use crate::helpers::*;
use crate::ws_client::*;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand with --ignored (see the module docs)"]
async fn ring_bench() {
    let n: usize = std::env::var("KOMMUTATOR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let app = spawn_app_with(with_ami(port)).await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;
    let mut pbx = FakeAsterisk::accept(&listener).await;
    pbx.login().await;

    let events = after(&fixture("inbound_answered"), "ListItems: 0");
    let split = events.find("Event: DialBegin").expect("DialBegin");
    let (before, rest) = events.split_at(split);
    let end = rest.find("\r\n\r\n").expect("end") + 4;
    let (dial, tail) = rest.split_at(end);

    let mut ms = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let prefix = format!("{}.", 1_800_000_000 + i);
        let linkedid = format!("{prefix}101");
        let fix = |s: &str| {
            s.replace("1714566600.", &prefix)
                .replace("1714566570.", &prefix)
        };
        pbx.write(&fix(before)).await;
        let t0 = Instant::now();
        pbx.write(&fix(dial)).await;
        ws.event_where(|e| {
            e["entity"] == "call"
                && e["data"]["external_id"] == linkedid.as_str()
                && e["data"]["operator_id"] == anna.id
        })
        .await;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        pbx.write(&fix(tail)).await;
        ws.event_where(|e| {
            e["entity"] == "call"
                && e["data"]["external_id"] == linkedid.as_str()
                && e["data"]["status"] == "completed"
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let total = started.elapsed();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = (
        pct(&sorted, 0.5),
        pct(&sorted, 0.9),
        pct(&sorted, 0.99),
        sorted[sorted.len() - 1],
    );
    println!();
    println!(
        "ring-to-screen, {} backend, {n} calls one after another ({:.1} s)",
        backend_name(),
        total.as_secs_f64()
    );
    println!("| p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    println!("| {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} |");
    println!(
        "BENCH_JSON {}",
        json!({"bench": "ring_to_screen", "backend": backend_name(), "calls": n,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max})
    );
    assert_eq!(ms.len(), n);
}
