//! What iConsultant's classification costs an inquiry on its way to the operator, per
//! engine: the time from posting an inbound message to the hub (the API channel's event
//! route) until the operator's socket shows it, and until it shows the final reading
//! (engine 1: the same event; engine 2: the `classification` update that follows, since
//! the pipeline stores the message with engine 1's quick reading and has engine 2 read it
//! after). A measurement, not a test of speed: it prints a table and one `BENCH_JSON` line
//! per engine and asserts only that every message and reading arrived.
//!
//! Run by hand on a release build (SQLite; PostgreSQL when `KOMMUTATOR_TEST_DATABASE_URL`
//! is set); engine 2 needs `models/e5` (`bash models/fetch.sh`) and is left out without it:
//!
//! ```sh
//! cargo test --release --test api assist_bench -- --ignored --nocapture
//! ```
//!
//! `KOMMUTATOR_BENCH_INQUIRIES` (default 300) inquiries one after another, each from a new
//! sender (a new dialog, the case where the reading routes), each text new (no cached
//! embedding), each awaited in full before the next: one inquiry on an otherwise idle hub.

use std::time::{Duration, Instant};

use kommutator::config::EngineChoice;
use kommutator::domain::{Role, Scope};
use serde_json::json;

use crate::assist_engines::{app_with_engine, model_dir, status};
use crate::helpers::*;
use crate::ws_client::*;

const TEXTS: &[&str] = &[
    "Хочу купить диван, сколько стоит доставка в Казань?",
    "The sofa you delivered has a torn cover, I demand a refund",
    "The app crashes with error 500 every time I press Pay",
    "Спасибо большое, всё получили!",
    "Счёт за октябрь пришёл дважды, спишите лишнее пожалуйста",
    "Do you have the corner sofa in grey, and what is the price?",
    "Не могу войти в личный кабинет, пишет неверный пароль",
    "Курьер опоздал на три дня, требую компенсацию",
];

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Row {
    engine: &'static str,
    shown: Vec<f64>,
    read: Vec<f64>,
}

async fn run(engine: EngineChoice, name: &'static str, n: usize) -> Row {
    let app = app_with_engine(engine, &model_dir()).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let st = status(&app).await;
        if st["engine"] == name && st["encoder"] != "training" {
            break;
        }
        assert!(Instant::now() < deadline, "{name} never got ready: {st}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    app.user("anna", Role::Operator, Some(sales)).await;
    app.user("bob", Role::Operator, Some(support)).await;
    // An admin following both departments: every message and every reading reaches it,
    // wherever engine 1 or engine 2 sends the dialog.
    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    for topic in [format!("dept:{sales}"), format!("dept:{support}")] {
        let (_, sub) = ws.subscribe(&topic, Some(app.last_seq().await)).await;
        assert_eq!(sub["type"], "subscribed", "{topic}: {sub}");
    }
    let mut shown = Vec::with_capacity(n);
    let mut read = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("{} (#{i})", TEXTS[i % TEXTS.len()]);
        let t0 = Instant::now();
        let (code, out) = ingest(
            &app,
            &key,
            &inbound(
                &format!("ab-{i}"),
                &format!("ab-t-{i}"),
                &format!("+7916{:07}", 1_000_000 + i),
                &text,
            ),
        )
        .await;
        assert!(code.is_success(), "{code}: {out}");
        let id = out["message"]["id"].as_i64().expect("message id");
        let provisional = out["message"]["classification"]["provisional"] == true;
        ws.event_where(|e| e["entity"] == "message" && e["entity_id"] == id)
            .await;
        shown.push(t0.elapsed().as_secs_f64() * 1000.0);
        if provisional {
            ws.event_where(|e| {
                e["entity"] == "message" && e["op"] == "classification" && e["entity_id"] == id
            })
            .await;
        }
        read.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    Row {
        engine: name,
        shown,
        read,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand with --ignored (see the module docs)"]
async fn assist_bench() {
    let n: usize = std::env::var("KOMMUTATOR_BENCH_INQUIRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rows = vec![run(EngineChoice::Ngram, "ngram", n).await];
    if model_dir().join("model.onnx").is_file() {
        rows.push(run(EngineChoice::Encoder, "encoder", n).await);
    } else {
        eprintln!("engine 2 left out: no model in {}", model_dir().display());
    }
    println!();
    println!(
        "inquiry → operator socket, {} backend, {n} inquiries one after another",
        backend_name()
    );
    println!(
        "| engine | shown p50 ms | shown p99 ms | final reading p50 ms | final reading p99 ms |"
    );
    println!("|---|---|---|---|---|");
    let mut lines = Vec::new();
    for r in &mut rows {
        assert_eq!(r.shown.len(), n);
        assert_eq!(r.read.len(), n);
        r.shown.sort_by(f64::total_cmp);
        r.read.sort_by(f64::total_cmp);
        let (s50, s99, r50, r99) = (
            pct(&r.shown, 0.5),
            pct(&r.shown, 0.99),
            pct(&r.read, 0.5),
            pct(&r.read, 0.99),
        );
        println!(
            "| {} | {s50:.2} | {s99:.2} | {r50:.2} | {r99:.2} |",
            r.engine
        );
        lines.push(
            json!({"bench": "assist_inquiry", "backend": backend_name(), "engine": r.engine,
            "inquiries": n, "shown_p50_ms": s50, "shown_p99_ms": s99,
            "final_p50_ms": r50, "final_p99_ms": r99}),
        );
    }
    for line in lines {
        println!("BENCH_JSON {line}");
    }
}
