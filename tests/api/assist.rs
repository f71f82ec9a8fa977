//! iConsultant end to end: inbound inquiries through the `api` channel `site` are read by
//! the classifier in the pipeline; the reading reaches the operator's socket with the
//! message; an applied type routes a new inquiry to its department; operators' verdicts are
//! stored, checked and learned; request types are an admin's; retraining swaps the model
//! only when it is not worse on the held-back verdicts.

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

struct Site {
    app: TestApp,
    key: Principal,
    sales: i64,
}

async fn site() -> Site {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    Site { app, key, sales }
}

/// Inquiry `n` with `text` in its own thread from its own number; returns the outcome.
async fn inquiry(s: &Site, n: u32, text: &str) -> Value {
    let ev = inbound(
        &format!("m-{n}"),
        &format!("t-{n}"),
        &format!("+7 916 444-{:02}-{:02}", n / 100 % 100, n % 100),
        text,
    );
    let (status, out) = ingest(&s.app, &s.key, &ev).await;
    assert_eq!(status, StatusCode::OK, "inquiry {n}: {out}");
    assert_eq!(out["status"], "stored", "{out}");
    out
}

async fn classify(app: &TestApp, who: &Principal, text: &str) -> Value {
    let (status, body) = app
        .post(Some(who), "/api/v1/assist/classify", &json!({"text": text}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn top(c: &Value) -> &str {
    c["ranked"][0]["type"].as_str().unwrap_or_default()
}

const CLAIM: &str =
    "Верните деньги! Диван привезли с порванной обивкой, требую возврат или замену.";
const SALES: &str =
    "Good afternoon, how much does the Pro plan cost for 20 users, and can we get a quote?";

#[tokio::test]
async fn an_inquiry_is_read_and_the_reading_reaches_the_operator_with_the_message() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let (mut ws, _) = Ws::operator(&s.app, &anna).await;
    ws.subscribe(&format!("dept:{}", s.sales), Some(s.app.last_seq().await))
        .await;

    let out = inquiry(&s, 1, CLAIM).await;
    let c = &out["message"]["classification"];
    let ranked = c["ranked"].as_array().expect("ranked");
    assert_eq!(ranked.len(), 4, "every default type is ranked: {c}");
    let sum: f64 = ranked.iter().map(|r| r["p"].as_f64().unwrap_or(0.0)).sum();
    assert!((sum - 1.0).abs() < 0.01, "probabilities sum to 1: {c}");
    assert_eq!(top(c), "claim", "{c}");
    assert!(
        c["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("ngram:seed")),
        "{c}"
    );

    let e = ws
        .event_where(|e| e["entity"] == "message" && e["data"]["body"] == CLAIM)
        .await;
    assert_eq!(
        e["data"]["classification"], *c,
        "the socket shows the reading"
    );

    // Above its threshold the type is applied to the inquiry; below it is only a hint.
    let applied = c["applied"].as_str();
    assert_eq!(out["dialog"]["request_type"].as_str(), applied, "{out}");
    if applied.is_some() {
        assert_eq!(out["dialog"]["request_type_by"], "classifier");
    }

    // A message without text has no reading.
    let ev = json!({
        "connector_id": "site", "external_id": "m-photo", "occurred_at": "2026-11-29T10:00:00Z",
        "kind": {"type": "message", "thread_id": "t-photo",
            "sender": {"identities": [{"kind": "phone", "value": "+7 916 444-99-99"}]},
            "text": null,
            "attachments": [{"name": "a.jpg", "mime_type": "image/jpeg", "size": 10, "url_or_ref": "https://example.com/a.jpg"}]}
    });
    let (status, out) = ingest(&s.app, &s.key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["message"]["classification"].is_null(), "{out}");
    assert!(out["dialog"]["request_type"].is_null(), "{out}");
}

#[tokio::test]
async fn an_applied_type_routes_a_new_inquiry_to_its_department() {
    let s = site().await;
    let support = s.app.department("Support").await;
    // A low threshold so that the seed model's reading is surely applied.
    let (status, t) = s
        .app
        .request(
            reqwest::Method::PUT,
            Some(&s.app.admin),
            "/api/v1/request-types/claim",
            Some(&json!({"name": "Claim", "department_id": support, "auto_threshold": 0.3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["department_id"], support);

    let out = inquiry(&s, 2, CLAIM).await;
    assert_eq!(
        out["message"]["classification"]["applied"], "claim",
        "{out}"
    );
    assert_eq!(out["dialog"]["request_type"], "claim");
    assert_eq!(out["dialog"]["request_type_by"], "classifier");
    assert_eq!(
        out["dialog"]["department_id"], support,
        "routed to Support: {out}"
    );

    // A sales inquiry stays with the channel's department.
    let out = inquiry(&s, 3, SALES).await;
    assert_ne!(
        out["message"]["classification"]["applied"], "claim",
        "{out}"
    );
    assert_eq!(out["dialog"]["department_id"], s.sales, "{out}");
}

#[tokio::test]
async fn a_dislike_with_the_right_type_changes_the_next_reading_of_a_near_identical_text() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let text = "Счёт за октябрь пришёл дважды, спишите лишнее пожалуйста";
    let out = inquiry(&s, 4, text).await;
    let before = top(&out["message"]["classification"]).to_owned();
    let right = if before == "bug" { "claim" } else { "bug" };
    let message = out["message"]["id"].as_i64().expect("id");

    let (status, fb) = s
        .app
        .post(
            Some(&anna),
            &format!("/api/v1/messages/{message}/classification"),
            &json!({"verdict": "dislike", "request_type": right}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fb}");
    assert_eq!(fb["feedback"]["label"], right);
    assert_eq!(fb["feedback"]["predicted"], before.as_str());
    assert_eq!(fb["dialog"]["request_type"], right);
    assert_eq!(fb["dialog"]["request_type_by"], "operator");
    assert_eq!(top(&fb["classification"]), right, "{fb}");

    // The next, near-identical inquiry is read as the operator said.
    let out = inquiry(
        &s,
        5,
        "Счёт за ноябрь пришёл дважды, спишите лишнее пожалуйста!",
    )
    .await;
    assert_eq!(top(&out["message"]["classification"]), right, "{out}");

    // A like confirms the top type; naming another type with a like is refused.
    let (status, fb) = s
        .app
        .post(
            Some(&anna),
            &format!("/api/v1/messages/{message}/classification"),
            &json!({"verdict": "like"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fb}");
    let liked = fb["feedback"]["label"].as_str().expect("label").to_owned();
    let other = if liked == "other" {
        "interest"
    } else {
        "other"
    };
    let got = s
        .app
        .post(
            Some(&anna),
            &format!("/api/v1/messages/{message}/classification"),
            &json!({"verdict": "like", "request_type": other}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_the_top_type",
        Some("request_type"),
    );
}

#[tokio::test]
async fn bad_verdicts_are_refused_and_change_nothing() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let other_dept = s.app.department("Elsewhere").await;
    let boris = s.app.user("boris", Role::Operator, Some(other_dept)).await;
    let out = inquiry(&s, 6, CLAIM).await;
    let message = out["message"]["id"].as_i64().expect("id");
    let path = format!("/api/v1/messages/{message}/classification");
    for (body, code) in [
        (json!({"verdict": "dislike"}), Some("required")),
        (
            json!({"verdict": "dislike", "request_type": "nonsense"}),
            Some("unknown_type"),
        ),
        (
            json!({"verdict": "dislike", "request_type": "Bad Key!"}),
            Some("invalid_key"),
        ),
        (json!({"verdict": "maybe"}), None),
        (json!({"verdict": "like", "extra": 1}), None),
    ] {
        let got = s.app.post(Some(&anna), &path, &body).await;
        match code {
            Some(code) => assert_error(
                &got,
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                Some("request_type"),
            ),
            None => assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", got.1),
        }
    }
    // Another department's operator does not see the message at all.
    let got = s
        .app
        .post(
            Some(&boris),
            &path,
            &json!({"verdict": "dislike", "request_type": "bug"}),
        )
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    let got = s
        .app
        .post(
            Some(&anna),
            "/api/v1/messages/999999/classification",
            &json!({"verdict": "like"}),
        )
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    // Nothing was stored: the dialog keeps what the classifier gave it.
    let (_, d) = s
        .app
        .get(
            Some(&anna),
            &format!("/api/v1/dialogs/{}", out["dialog"]["id"]),
        )
        .await;
    assert_eq!(d["request_type"], out["dialog"]["request_type"], "{d}");
    assert_ne!(d["request_type_by"], "operator", "{d}");

    // An operator's own reply has no request type.
    let (status, reply) = s
        .app
        .post(
            Some(&anna),
            &format!("/api/v1/dialogs/{}/messages", out["dialog"]["id"]),
            &json!({"external_id": "r-1", "body": "Sorry to hear that"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let got = s
        .app
        .post(
            Some(&anna),
            &format!("/api/v1/messages/{}/classification", reply["id"]),
            &json!({"verdict": "dislike", "request_type": "bug"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_inbound",
        Some("message_id"),
    );
}

#[tokio::test]
async fn request_types_are_an_admins_and_checked() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let (status, types) = s.app.get(Some(&anna), "/api/v1/request-types").await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<&str> = types
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(keys, ["interest", "claim", "bug", "other"]);

    let put = |who: Principal, key: &'static str, body: Value| {
        let app = &s.app;
        async move {
            app.request(
                reqwest::Method::PUT,
                Some(&who),
                &format!("/api/v1/request-types/{key}"),
                Some(&body),
            )
            .await
        }
    };
    let admin = s.app.admin.clone();
    let got = put(anna.clone(), "warranty", json!({"name": "Warranty"})).await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    let got = put(admin.clone(), "Bad Key", json!({"name": "x"})).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_key",
        Some("key"),
    );
    let got = put(
        admin.clone(),
        "warranty",
        json!({"name": "W", "auto_threshold": 1.5}),
    )
    .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "out_of_range",
        Some("auto_threshold"),
    );
    let got = put(
        admin.clone(),
        "warranty",
        json!({"name": "W", "auto_threshold": 0}),
    )
    .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "out_of_range",
        Some("auto_threshold"),
    );
    let got = put(admin.clone(), "warranty", json!({"name": ""})).await;
    assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.1);
    let got = put(
        admin.clone(),
        "warranty",
        json!({"name": "W", "department_id": 987654}),
    )
    .await;
    assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.1);
    let (_, after) = s.app.get(Some(&anna), "/api/v1/request-types").await;
    assert_eq!(after, types, "nothing half-stored");

    let got = put(
        admin.clone(),
        "warranty",
        json!({"name": "Warranty repair"}),
    )
    .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["auto_threshold"], 0.8);
    assert_eq!(got.1["position"], 5);
    let got = put(
        admin.clone(),
        "warranty",
        json!({"name": "Warranty repair"}),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);

    // The new type is offered at once (with no evidence yet, it is not on top).
    let c = classify(&s.app, &anna, CLAIM).await;
    assert_eq!(c["ranked"].as_array().map(Vec::len), Some(5), "{c}");
    // Once gone, it is no longer offered.
    let got = s
        .app
        .delete(Some(&admin), "/api/v1/request-types/warranty")
        .await;
    assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    let c = classify(&s.app, &anna, CLAIM).await;
    assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");
    let got = s
        .app
        .delete(Some(&admin), "/api/v1/request-types/warranty")
        .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    for key in ["interest", "claim", "bug"] {
        let got = s
            .app
            .delete(Some(&admin), &format!("/api/v1/request-types/{key}"))
            .await;
        assert_eq!(got.0, StatusCode::NO_CONTENT, "{}", got.1);
    }
    let got = s
        .app
        .delete(Some(&admin), "/api/v1/request-types/other")
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", Some("key"));
}

#[tokio::test]
async fn empty_huge_binary_and_mixed_texts_are_read_or_refused_cleanly() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    for text in ["", "   \n\t "] {
        let got = s
            .app
            .post(
                Some(&anna),
                "/api/v1/assist/classify",
                &json!({"text": text}),
            )
            .await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_text",
            Some("text"),
        );
    }
    // Punctuation only: a reading with no signal, never applied.
    let c = classify(&s.app, &anna, "?!... ---").await;
    assert!(c["applied"].is_null(), "{c}");
    // About 1 MB (the API's body limit leaves room for it): read, not stalled.
    let huge = "товар пришёл сломанный, верните деньги. ".repeat(14_000);
    let (status, c) = s
        .app
        .post(
            Some(&anna),
            "/api/v1/assist/classify",
            &json!({"text": huge}),
        )
        .await;
    assert!(
        status == StatusCode::OK || status == StatusCode::PAYLOAD_TOO_LARGE,
        "{status}: {c}"
    );
    let garbage: String = (0u32..4000)
        .map(|i| char::from_u32((i * 7919) % 0x2FFF).unwrap_or('\u{fffd}'))
        .collect();
    let c = classify(&s.app, &anna, &garbage).await;
    assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");
    let c = classify(
        &s.app,
        &anna,
        "Zdravstvuite, app crashes при оплате 🙁 oshibka 500",
    )
    .await;
    assert_eq!(c["ranked"].as_array().map(Vec::len), Some(4), "{c}");

    // Through the pipeline too: a message of 60,000 characters is stored and read.
    let long = "Приложение падает при входе, ошибка 500. ".repeat(1_500);
    let out = inquiry(&s, 7, &long).await;
    assert!(
        out["message"]["classification"]["ranked"].is_array(),
        "{out}"
    );
}

/// Dislikes `n` inquiries of `text_of(i)` naming `label_of(i)`; returns the verdicts' ids.
async fn verdicts(
    s: &Site,
    who: &Principal,
    first: u32,
    n: u32,
    text_of: impl Fn(u32) -> String,
    label_of: impl Fn(u32) -> &'static str,
) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in first..first + n {
        let out = inquiry(s, i, &text_of(i)).await;
        let message = out["message"]["id"].as_i64().expect("id");
        let (status, fb) = s
            .app
            .post(
                Some(who),
                &format!("/api/v1/messages/{message}/classification"),
                &json!({"verdict": "dislike", "request_type": label_of(i)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fb}");
        assert_eq!(fb["feedback"]["label"], label_of(i), "{fb}");
        ids.push(fb["feedback"]["id"].as_i64().expect("feedback id"));
    }
    ids
}

#[tokio::test]
async fn retraining_swaps_the_model_only_when_it_is_not_worse_on_the_held_back_verdicts() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let admin = s.app.admin.clone();

    // Too few verdicts: nothing happens.
    let (status, r) = s
        .app
        .post(Some(&admin), "/api/v1/assist/retrain", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["swapped"], false);
    assert!(
        r["reason"].as_str().is_some_and(|m| m.contains("50")),
        "{r}"
    );
    let got = s
        .app
        .post(Some(&anna), "/api/v1/assist/retrain", &json!({}))
        .await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);

    // Contradictory verdicts: the verdicts trained on say "other" where the held-back ones
    // (every fifth, by id) say "claim", as the seed model already reads it. The candidate
    // learns "other" and is worse on the held-back slice: it is not swapped in. In a fresh
    // database the verdict of inquiry i has id i - 99, so the held-back ones are i % 5 == 4.
    let ids = verdicts(
        &s,
        &anna,
        100,
        60,
        |i| format!("Заказ №{i} привезли разбитым, требую вернуть деньги"),
        |i| if i % 5 == 4 { "claim" } else { "other" },
    )
    .await;
    assert_eq!(
        ids.first(),
        Some(&1),
        "verdict ids start at 1 in a fresh database"
    );
    let (status, r) = s
        .app
        .post(Some(&admin), "/api/v1/assist/retrain", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (c, p) = (
        r["candidate_accuracy"].as_f64().expect("candidate"),
        r["previous_accuracy"].as_f64().expect("previous"),
    );
    assert!(r["holdout_size"].as_u64().unwrap_or(0) >= 10, "{r}");
    assert!(c < p, "the candidate is worse on the held-back slice: {r}");
    assert_eq!(r["swapped"], false, "{r}");
    assert!(
        r["reason"].as_str().is_some_and(|m| m.contains("worse")),
        "{r}"
    );
    // The model in use is still the seed model (plus the verdicts learned online).
    let c = classify(&s.app, &anna, "Какой-то текст").await;
    assert!(
        c["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("ngram:seed")),
        "{c}"
    );
}

#[tokio::test]
async fn retraining_on_consistent_verdicts_swaps_the_model_in() {
    let s = site().await;
    let anna = s.app.user("anna", Role::Operator, Some(s.sales)).await;
    let admin = s.app.admin.clone();
    // A company whose "bug" reports read like this; every verdict agrees.
    let ids = verdicts(
        &s,
        &anna,
        200,
        55,
        |i| format!("Касса №{i} зависает на печати чека, перезагрузка не помогает"),
        |_| "bug",
    )
    .await;
    assert_eq!(ids.len(), 55);
    let (status, r) = s
        .app
        .post(Some(&admin), "/api/v1/assist/retrain", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["swapped"], true, "{r}");
    let id = r["model_id"].as_i64().expect("model id");
    assert!(
        r["candidate_accuracy"].as_f64().unwrap_or(0.0)
            >= r["previous_accuracy"].as_f64().unwrap_or(1.0),
        "{r}"
    );
    let c = classify(
        &s.app,
        &anna,
        "Касса №999 зависает на печати чека, перезагрузка не помогает",
    )
    .await;
    assert_eq!(top(&c), "bug", "{c}");
    assert!(
        c["model"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("ngram:{id}"))),
        "{c}"
    );
}
