//! Inbound throughput and latency of the messaging channels through the whole hub on one
//! node: the real connector's webhook route (Telegram, VK Callback API, WhatsApp Cloud API,
//! a site form) or the real IMAP connector against the mail rig's Dovecot, then the
//! pipeline (identity, dialog, routing, store), then the operator's WebSocket. A
//! measurement, not a test of speed: it prints a table and one `BENCH_JSON` line per
//! channel and asserts only that every message reached the operator once.
//!
//! Run by hand on a release build (SQLite; PostgreSQL when `KOMMUTATOR_TEST_DATABASE_URL`
//! is set):
//!
//! ```sh
//! cargo test --release --test api channels_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Per webhook channel two runs on a fresh hub:
//! - **latency**: `KOMMUTATOR_BENCH_LATENCY` posts (default 300) one after another, from 50
//!   senders in turn (so most land in an existing dialog, as in real traffic); the clock
//!   starts before the POST and stops when the operator's socket yields that message;
//! - **throughput**: `KOMMUTATOR_BENCH_MESSAGES` posts (default 2,000) from 32 concurrent
//!   clients, from 200 senders; the clock stops when every POST was answered and every
//!   message reached the socket. Posts/s is messages over that time.
//!
//! Email (skipped without Dovecot and Postfix): latency is a mail handed to Dovecot over
//! LMTP → the message on the socket, while the connector IDLEs, one mail at a time
//! (`KOMMUTATOR_BENCH_MAILS_LATENCY`, default 50); throughput is
//! `KOMMUTATOR_BENCH_MAILS` mails (default 300) delivered back to back → all on the socket,
//! as messages per minute.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::channels_e2e::{operator, wa_sign, with_connector};
use crate::email_channel::{mail_config, rig, SUPPORT};
use crate::helpers::*;
use crate::ws_client::*;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One webhook channel: its connector, route, headers and the body of message `i` from
/// sender `s` with text `text`.
struct Hook {
    name: &'static str,
    id: &'static str,
    config: String,
    path: &'static str,
    body: fn(usize, usize, &str) -> Vec<u8>,
    headers: fn(&[u8]) -> Vec<(String, String)>,
}

fn json_ct() -> (String, String) {
    ("content-type".into(), "application/json".into())
}

fn hooks() -> Vec<Hook> {
    vec![
        Hook {
            name: "telegram (webhook)",
            id: "tg",
            config: r#"type = "telegram"
department = "Sales"
token = "123456789:AAtesttoken"
api_url = "http://127.0.0.1:9"
mode = "webhook"
webhook_secret = "s3cr3t-token_ok""#
                .into(),
            path: "/hooks/tg/",
            body: |i, s, text| {
                let user = 100_000 + s as i64;
                json!({"update_id": 10_000 + i, "message": {"message_id": i, "date": 1714566600,
                    "from": {"id": user, "is_bot": false, "first_name": "Фёдор", "last_name": format!("№{s}"), "language_code": "ru"},
                    "chat": {"id": user, "type": "private", "first_name": "Фёдор", "last_name": format!("№{s}")},
                    "text": text}})
                .to_string()
                .into_bytes()
            },
            headers: |_| {
                vec![
                    json_ct(),
                    (
                        "x-telegram-bot-api-secret-token".into(),
                        "s3cr3t-token_ok".into(),
                    ),
                ]
            },
        },
        Hook {
            name: "vk (callback)",
            id: "vk",
            config: r#"type = "vk"
department = "Sales"
group_id = 218000001
access_token = "vk1.a.test-token"
api_url = "http://127.0.0.1:9/method"
confirmation = "1a2b3c4d"
secret = "test-callback-secret""#
                .into(),
            path: "/hooks/vk/",
            body: |i, s, text| {
                let peer = 745_000_000 + s as i64;
                json!({"group_id": 218000001, "type": "message_new", "event_id": format!("ev-{i}"), "v": "5.199",
                    "secret": "test-callback-secret",
                    "object": {"message": {"date": 1714566600, "from_id": peer, "id": i, "out": 0, "attachments": [],
                        "conversation_message_id": i, "fwd_messages": [], "important": false, "is_hidden": false,
                        "peer_id": peer, "random_id": 0, "text": text},
                        "client_info": {"button_actions": ["text"], "keyboard": true, "inline_keyboard": true, "carousel": true, "lang_id": 0}}})
                .to_string()
                .into_bytes()
            },
            headers: |_| vec![json_ct()],
        },
        Hook {
            name: "whatsapp (cloud api)",
            id: "wa",
            config: r#"type = "whatsapp"
department = "Sales"
phone_number_id = "106540352242922"
access_token = "EAAGtest"
app_secret = "app-secret"
verify_token = "verify-me"
graph_url = "http://127.0.0.1:9""#
                .into(),
            path: "/hooks/wa/",
            body: |i, s, text| {
                let wa = format!("7916{:07}", s);
                json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages",
                    "value": {"messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                        "contacts": [{"profile": {"name": format!("Kerry {s}")}, "wa_id": wa}],
                        "messages": [{"from": wa, "id": format!("wamid.BENCH{i}"), "timestamp": "1714566600", "type": "text",
                            "text": {"body": text}}]}}]}]})
                .to_string()
                .into_bytes()
            },
            headers: |body| {
                vec![
                    json_ct(),
                    ("x-hub-signature-256".into(), wa_sign("app-secret", body)),
                ]
            },
        },
        Hook {
            name: "site form",
            id: "shop",
            config: r#"type = "web_form"
department = "Sales"
form_name = "Callback on shop.example"
kind = "lead"
allowed_origins = ["https://shop.example"]
default_country_code = "7"
rate_limit_per_minute = 10000"#
                .into(),
            path: "/forms/shop/",
            body: |i, s, text| {
                json!({"name": format!("Ольга {s}"), "phone": format!("+7916{:07}", s), "message": text,
                    "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "sofas",
                    "idempotency_key": format!("bench-{i}")})
                .to_string()
                .into_bytes()
            },
            headers: |_| vec![json_ct(), ("origin".into(), "https://shop.example".into())],
        },
    ]
}

/// Waits until the socket has shown a message whose body contains each of `texts`.
async fn seen_all(ws: &mut Ws, texts: &HashSet<String>) {
    let mut seen = HashSet::new();
    while seen.len() < texts.len() {
        let e = ws
            .event_where(|e| e["entity"] == "message" && e["data"]["direction"] == "inbound")
            .await;
        let body = e["data"]["body"].as_str().unwrap_or_default();
        if let Some(t) = texts.iter().find(|t| body.contains(t.as_str())) {
            seen.insert(t.clone());
        }
    }
}

/// The text of message `i`: unique, and not a prefix of another.
fn text(channel: &str, i: usize) -> String {
    format!("bench {channel} #{i}; когда доставка?")
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> reqwest::StatusCode {
    let mut req = http.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.expect("post").status()
}

struct Row {
    channel: String,
    p50: f64,
    p99: f64,
    max: f64,
    rate: f64,
    unit: &'static str,
}

fn print(rows: &[Row]) {
    println!();
    println!(
        "inbound channels through the hub, {} backend",
        backend_name()
    );
    println!("| channel | latency p50 ms | p99 ms | max ms | throughput |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.0} {} |",
            r.channel, r.p50, r.p99, r.max, r.rate, r.unit
        );
        println!(
            "BENCH_JSON {}",
            json!({"bench": "channel_inbound", "backend": backend_name(), "channel": r.channel,
                "p50_ms": r.p50, "p99_ms": r.p99, "max_ms": r.max, "throughput": r.rate, "unit": r.unit})
        );
    }
}

async fn bench_hook(hook: &Hook) -> Row {
    let latency_n = env_n("KOMMUTATOR_BENCH_LATENCY", 300);
    let total = env_n("KOMMUTATOR_BENCH_MESSAGES", 2_000);
    let app = spawn_app_with(with_connector(hook.id, hook.config.clone())).await;
    let (_anna, mut ws) = operator(&app).await;
    let url = format!("{}{}", app.base, hook.path);

    let mut ms = Vec::with_capacity(latency_n);
    for i in 0..latency_n {
        let t = text(hook.id, i);
        let body = (hook.body)(i, i % 50, &t);
        let headers = (hook.headers)(&body);
        let t0 = Instant::now();
        let status = post(&app.http, &url, &headers, body).await;
        assert!(status.is_success(), "{}: {status}", hook.name);
        seen_all(&mut ws, &HashSet::from([t])).await;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);

    let texts: HashSet<String> = (latency_n..latency_n + total)
        .map(|i| text(hook.id, i))
        .collect();
    let http = app.http.clone();
    let (url2, body_fn, headers_fn) = (url.clone(), hook.body, hook.headers);
    let started = Instant::now();
    let posting = tokio::spawn(async move {
        let url = Arc::new(url2);
        futures::stream::iter(latency_n..latency_n + total)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let body = body_fn(i, 1_000 + i % 200, &text(hook_id_of(&url), i));
                    let headers = headers_fn(&body);
                    post(&http, &url, &headers, body).await
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    });
    seen_all(&mut ws, &texts).await;
    let statuses = posting.await.expect("posting");
    let took = started.elapsed().as_secs_f64();
    assert!(
        statuses.iter().all(|s| s.is_success()),
        "{}: {:?}",
        hook.name,
        statuses.iter().find(|s| !s.is_success())
    );
    Row {
        channel: hook.name.into(),
        p50: pct(&ms, 0.5),
        p99: pct(&ms, 0.99),
        max: ms[ms.len() - 1],
        rate: total as f64 / took,
        unit: "posts/s",
    }
}

/// The connector id in a hook's URL (`…/hooks/{id}/` or `…/forms/{id}/`).
fn hook_id_of(url: &str) -> &str {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand with --ignored (see the module docs)"]
async fn channels_bench() {
    let mut rows = Vec::new();
    for hook in hooks() {
        rows.push(bench_hook(&hook).await);
    }
    if let Some(row) = bench_email().await {
        rows.push(row);
    }
    print(&rows);
}

fn bench_mail(i: usize, s: usize, text: &str) -> Vec<u8> {
    format!(
        "From: Customer {s} <c{s}@example.test>\r\nTo: {SUPPORT}\r\nSubject: Question {i}\r\n\
         Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench-{i}@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

async fn bench_email() -> Option<Row> {
    let rig = rig::MailRig::start()?;
    let latency_n = env_n("KOMMUTATOR_BENCH_MAILS_LATENCY", 50);
    let total = env_n("KOMMUTATOR_BENCH_MAILS", 300);
    let app = spawn_app_with(with_connector("mail", mail_config(&rig))).await;
    let (_anna, mut ws) = operator(&app).await;
    // The connector is up and IDLEs once a first mail went through.
    rig.deliver(&bench_mail(0, 0, "warm-up"), SUPPORT).await;
    seen_all(&mut ws, &HashSet::from(["warm-up".to_owned()])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut ms = Vec::with_capacity(latency_n);
    for i in 1..=latency_n {
        let t = text("mail", i);
        let raw = bench_mail(i, i % 20, &t);
        let t0 = Instant::now();
        rig.deliver(&raw, SUPPORT).await;
        seen_all(&mut ws, &HashSet::from([t])).await;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);

    let range = latency_n + 1..=latency_n + total;
    let texts: HashSet<String> = range.clone().map(|i| text("mail", i)).collect();
    let started = Instant::now();
    for i in range {
        rig.deliver(&bench_mail(i, 100 + i % 100, &text("mail", i)), SUPPORT)
            .await;
    }
    let delivered = started.elapsed().as_secs_f64();
    seen_all(&mut ws, &texts).await;
    let took = started.elapsed().as_secs_f64();
    println!(
        "email: {total} mails handed to Dovecot in {delivered:.1} s, all on the socket after {took:.1} s"
    );
    Some(Row {
        channel: "email (imap idle)".into(),
        p50: pct(&ms, 0.5),
        p99: pct(&ms, 0.99),
        max: ms[ms.len() - 1],
        rate: total as f64 * 60.0 / took,
        unit: "mails/min",
    })
}
