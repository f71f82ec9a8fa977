//! iConsultant's two engines in the hub: engine 2 (the sentence encoder from `models/e5`,
//! made by `models/fetch.sh`) when it loads, engine 1 with a clear reason when it does not
//! (missing folder, damaged files), both visible in `GET /api/v1/assist/status`; and
//! engine 2 end to end: it learns the seed set in the background while engine 1 stands in,
//! then reads inquiries in the pipeline, learns a dislike, and survives hostile texts.
//!
//! The tests that need the model files print `SKIPPED` without them, except under CI (env
//! `CI` set), where `.ci/run` fetches them first and a missing model is a failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kommutator::config::EngineChoice;
use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

/// The model folder `models/fetch.sh` writes.
pub(crate) fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/e5")
}

/// The model folder, or `None` (after printing `SKIPPED`) when it is not there outside CI.
pub(crate) fn model_or_skip(test: &str) -> Option<PathBuf> {
    let dir = model_dir();
    if dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: no model in {} under CI: .ci/run runs models/fetch.sh first",
        dir.display()
    );
    eprintln!(
        "SKIPPED {test}: no model in {} (bash models/fetch.sh)",
        dir.display()
    );
    None
}

/// A private folder for this test's model files.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("kommutator-engines-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

pub(crate) async fn app_with_engine(engine: EngineChoice, dir: &Path) -> TestApp {
    let dir = dir.to_path_buf();
    spawn_app_with(move |c| {
        with_api_channel("Sales", None)(c);
        c.assist.engine = engine;
        c.assist.models_dir = dir;
    })
    .await
}

pub(crate) async fn status(app: &TestApp) -> Value {
    let (code, body) = app.get(Some(&app.admin), "/api/v1/assist/status").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

async fn classify(app: &TestApp, text: &str) -> Value {
    let (code, body) = app
        .post(
            Some(&app.admin),
            "/api/v1/assist/classify",
            &json!({"text": text}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

fn top(c: &Value) -> &str {
    c["ranked"][0]["type"].as_str().unwrap_or_default()
}

/// Engine 1 is in use, and status says why engine 2 is not: `encoder` is `state`, the note
/// contains every one of `says`.
async fn assert_engine_1(app: &TestApp, state: &str, says: &[&str]) {
    let st = status(app).await;
    assert_eq!(st["engine"], "ngram", "{st}");
    assert_eq!(st["encoder"], state, "{st}");
    let note = st["note"].as_str().unwrap_or_default();
    for s in says {
        assert!(note.contains(s), "{s:?} not in the note: {st}");
    }
    let c = classify(app, "Хочу купить диван, сколько стоит доставка в Казань?").await;
    assert!(
        c["model"].as_str().is_some_and(|m| m.starts_with("ngram:")),
        "{c}"
    );
    assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");
}

#[tokio::test]
async fn a_missing_model_folder_is_named_with_what_to_do_and_engine_1_classifies() {
    let missing = std::env::temp_dir().join("kommutator-no-such-model-folder");
    let app = app_with_engine(EngineChoice::Encoder, &missing).await;
    assert_engine_1(&app, "failed", &["not found", "models/fetch.sh"]).await;
    assert_eq!(status(&app).await["configured"], "encoder");
}

#[tokio::test]
async fn auto_without_model_files_is_engine_1_by_choice() {
    let empty = scratch("auto");
    let app = app_with_engine(EngineChoice::Auto, &empty).await;
    assert_engine_1(&app, "off", &["no sentence encoder", "models/fetch.sh"]).await;
    let _ = std::fs::remove_dir_all(&empty);
}

#[tokio::test]
async fn engine_2_switched_off_is_engine_1() {
    let app = app_with_engine(EngineChoice::Ngram, &model_dir()).await;
    assert_engine_1(&app, "off", &["ngram"]).await;
}

#[tokio::test]
async fn damaged_model_files_are_named_and_engine_1_classifies() {
    // Garbage in both files: the tokenizer is read first and named.
    let dir = scratch("garbage");
    std::fs::write(dir.join("tokenizer.json"), b"{\"not\": \"a tokenizer\"").expect("write");
    let noise: Vec<u8> = (0u32..100_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("model.onnx"), &noise).expect("write");
    let app = app_with_engine(EngineChoice::Auto, &dir).await;
    assert_engine_1(&app, "failed", &["bad tokenizer", "tokenizer.json"]).await;
    drop(app);

    // A good tokenizer and a graph cut short (a download that stopped half-way) or noise.
    let Some(good) = model_or_skip("damaged_model_files (the ONNX half)") else {
        return;
    };
    std::fs::copy(good.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    let app = app_with_engine(EngineChoice::Auto, &dir).await;
    assert_engine_1(
        &app,
        "failed",
        &["corrupt or unsupported ONNX model", "model.onnx"],
    )
    .await;
    drop(app);
    let model = std::fs::read(good.join("model.onnx")).expect("read the model");
    std::fs::write(dir.join("model.onnx"), &model[..model.len() / 3]).expect("write");
    let app = app_with_engine(EngineChoice::Encoder, &dir).await;
    assert_engine_1(&app, "failed", &["model.onnx", "models/fetch.sh"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn engine_2_learns_the_seed_set_then_reads_inquiries_and_learns_a_dislike() {
    let Some(dir) = model_or_skip("engine_2_learns_the_seed_set") else {
        return;
    };
    let app = app_with_engine(EngineChoice::Auto, &dir).await;
    // Engine 1 stands in while engine 2's head learns the seed set.
    let st = status(&app).await;
    assert_eq!(st["configured"], "auto", "{st}");
    if st["encoder"] == "training" {
        assert_eq!(st["engine"], "ngram", "{st}");
        let c = classify(&app, "Приложение падает при оплате картой").await;
        assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = status(&app).await;
        if st["encoder"] == "ready" {
            assert_eq!(st["engine"], "encoder", "{st}");
            assert!(st["note"].is_null(), "{st}");
            break;
        }
        assert_eq!(st["encoder"], "training", "{st}");
        assert!(Instant::now() < deadline, "engine 2 never got ready: {st}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Readings in both languages, and across them.
    for (text, want) in [
        (
            "Хочу купить диван, сколько стоит доставка в Казань?",
            "interest",
        ),
        (
            "The sofa you delivered has a torn cover, I demand a refund",
            "claim",
        ),
        (
            "The app crashes with error 500 every time I press Pay",
            "bug",
        ),
        ("Спасибо большое, всё получили!", "other"),
    ] {
        let c = classify(&app, text).await;
        assert!(
            c["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("encoder:")),
            "{c}"
        );
        assert_eq!(top(&c), want, "{text}: {c}");
    }

    // In the pipeline: the inquiry is stored at once with engine 1's quick reading, and
    // engine 2's follows as a message update on the operator's socket.
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    let (_, sub) = ws.subscribe(&format!("user:{}", anna.id), None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    let text = "Счёт за октябрь пришёл дважды, спишите лишнее пожалуйста";
    let (code, out) = ingest(&app, &key, &inbound("e-1", "t-1", "+7 916 555-01-01", text)).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let quick = &out["message"]["classification"];
    assert_eq!(quick["provisional"], true, "{out}");
    assert!(
        quick["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("ngram:standby")),
        "{out}"
    );
    let message = out["message"]["id"].as_i64().expect("id");
    let update = ws
        .event_where(|e| {
            e["entity"] == "message" && e["op"] == "classification" && e["entity_id"] == message
        })
        .await;
    let reading = &update["data"]["classification"];
    assert!(
        reading["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("encoder:")),
        "{update}"
    );
    assert!(reading.get("provisional").is_none(), "{update}");
    let before = top(reading).to_owned();
    let right = if before == "bug" { "claim" } else { "bug" };
    let (code, fb) = app
        .post(
            Some(&anna),
            &format!("/api/v1/messages/{message}/classification"),
            &json!({"verdict": "dislike", "request_type": right}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{fb}");
    assert_eq!(top(&fb["classification"]), right, "{fb}");
    let (code, out) = ingest(
        &app,
        &key,
        &inbound(
            "e-2",
            "t-2",
            "+7 916 555-01-02",
            "Счёт за ноябрь пришёл дважды, спишите лишнее пожалуйста!",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{out}");
    let message = out["message"]["id"].as_i64().expect("id");
    let update = ws
        .event_where(|e| {
            e["entity"] == "message" && e["op"] == "classification" && e["entity_id"] == message
        })
        .await;
    assert_eq!(top(&update["data"]["classification"]), right, "{update}");

    // Hostile texts are read or refused cleanly.
    let got = app
        .post(
            Some(&app.admin),
            "/api/v1/assist/classify",
            &json!({"text": " \n\t "}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_text",
        Some("text"),
    );
    let huge = "товар пришёл сломанный, верните деньги. ".repeat(14_000);
    let (code, c) = app
        .post(
            Some(&app.admin),
            "/api/v1/assist/classify",
            &json!({"text": huge}),
        )
        .await;
    assert!(
        code == StatusCode::OK || code == StatusCode::PAYLOAD_TOO_LARGE,
        "{code}: {c}"
    );
    let garbage: String = (0u32..4000)
        .map(|i| char::from_u32((i * 7919) % 0x2FFF).unwrap_or('\u{fffd}'))
        .collect();
    for text in [
        garbage.as_str(),
        "?!... ---",
        "Zdravstvuite, app crashes при оплате 🙁 oshibka 500",
    ] {
        let c = classify(&app, text).await;
        assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");
    }
}

async fn kb_article(app: &TestApp, title: &str, body: &str, language: &str) -> i64 {
    let (code, a) = app
        .post(
            Some(&app.admin),
            "/api/v1/kb/articles",
            &json!({"title": title, "body": body, "language": language}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{a}");
    a["id"].as_i64().expect("id")
}

async fn kb_search(app: &TestApp, q: &str) -> Vec<i64> {
    let (code, hits) = app
        .post(Some(&app.admin), "/api/v1/kb/search", &json!({"q": q}))
        .await;
    assert_eq!(code, StatusCode::OK, "{hits}");
    hits.as_array()
        .expect("a list")
        .iter()
        .map(|h| h["article"]["id"].as_i64().expect("id"))
        .collect()
}

/// Waits until every article this node has is embedded.
async fn all_embedded(app: &TestApp, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status(app).await;
        if st["kb_articles"] == n && st["kb_embedded"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "articles never embedded: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_engine_2_a_question_in_one_language_finds_the_article_in_another() {
    let Some(dir) = model_or_skip("cross-language knowledge base") else {
        return;
    };
    let app = app_with_engine(EngineChoice::Encoder, &dir).await;
    let delivery = kb_article(
        &app,
        "Сроки доставки",
        "Доставка по Москве занимает 1–2 дня, по России — до 7 дней. Курьер звонит за час.",
        "ru",
    )
    .await;
    let refund = kb_article(
        &app,
        "Возврат товара и денег",
        "Вернуть товар можно в течение 14 дней. Деньги приходят на карту за 5–10 рабочих дней.",
        "ru",
    )
    .await;
    let payment = kb_article(
        &app,
        "Payment methods",
        "We accept Visa, Mastercard and MIR cards, bank transfers for companies, and cash to the courier.",
        "en",
    )
    .await;
    all_embedded(&app, 3).await;

    // English questions, Russian articles (no word in common).
    assert_eq!(
        kb_search(&app, "How many days does shipping to Moscow take?")
            .await
            .first(),
        Some(&delivery)
    );
    assert_eq!(
        kb_search(&app, "I want my money back for the item")
            .await
            .first(),
        Some(&refund)
    );
    // A Russian question, the English article.
    assert_eq!(
        kb_search(&app, "Какие способы оплаты вы принимаете?")
            .await
            .first(),
        Some(&payment)
    );
    // Nothing for a question about nothing here.
    assert_eq!(
        kb_search(&app, "who wrote War and Peace").await,
        Vec::<i64>::new()
    );

    // A changed text is embedded again; a deleted article is gone from both rankings.
    let (code, body) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/kb/articles/{payment}"),
            &json!({"title": "Гарантия", "body": "Гарантия на мебель — 18 месяцев с даты доставки."}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    all_embedded(&app, 3).await;
    assert_eq!(
        kb_search(&app, "What is the warranty period for furniture?")
            .await
            .first(),
        Some(&payment)
    );
    let (code, _) = app
        .delete(Some(&app.admin), &format!("/api/v1/kb/articles/{refund}"))
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    all_embedded(&app, 2).await;
    assert!(!kb_search(&app, "I want my money back for the item")
        .await
        .contains(&refund));
}
