//! iConsultant's knowledge base end to end: articles written, changed and deleted through
//! the API with the search index in step at every answer; bad articles refused with nothing
//! stored; suggestions for a dialog, pushed to the operator who has it open and refreshed on
//! the customer's next message; a used suggestion counted once and ranked higher.

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

const DELIVERY_RU: &str = "Доставка по Москве занимает 1–2 дня, по России — до 7 дней. \
    Отследить заказ можно по [трек-номеру](https://shop.example/track). \
    ![Где найти трек-номер](https://shop.example/img/track.png)";
const REFUND_EN: &str =
    "To return an item, fill in the [return form](https://shop.example/return) \
    within 14 days of delivery. The refund reaches your card in 5 to 10 working days.";

/// Percent-encodes a query value.
fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn article(app: &TestApp, who: &Principal, body: &Value) -> Value {
    let (status, a) = app.post(Some(who), "/api/v1/kb/articles", body).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    a
}

async fn search(app: &TestApp, who: &Principal, q: &str) -> Vec<i64> {
    let path = format!("/api/v1/kb/articles?q={}", enc(q));
    let (status, hits) = app.get(Some(who), &path).await;
    assert_eq!(status, StatusCode::OK, "{hits}");
    hits.as_array()
        .expect("a list")
        .iter()
        .map(|h| h["article"]["id"].as_i64().expect("id"))
        .collect()
}

async fn count(app: &TestApp) -> usize {
    let (status, all) = app.get(Some(&app.admin), "/api/v1/kb/articles").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    all.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn articles_are_written_changed_and_deleted_with_the_index_in_step() {
    let app = spawn_app().await;
    let anna = app.user("anna", Role::Operator, None).await;
    let d = article(
        &app,
        &app.admin,
        &json!({"title": "Сроки доставки", "body": DELIVERY_RU, "tags": ["Доставка", "заказ"], "language": "ru"}),
    )
    .await;
    let r = article(
        &app,
        &app.admin,
        &json!({"title": "Returns and refunds", "body": REFUND_EN, "language": "en", "public": false}),
    )
    .await;
    let (did, rid) = (d["id"].as_i64().expect("id"), r["id"].as_i64().expect("id"));
    assert_eq!(d["tags"], json!(["доставка", "заказ"]));
    assert_eq!(d["public"], true);
    assert_eq!(r["public"], false);
    assert_eq!(d["used_count"], 0);

    // Searchable at once, by stemmed words, by any operator.
    assert_eq!(
        search(&app, &anna, "когда будет доставлен мой заказ?").await[0],
        did
    );
    assert_eq!(search(&app, &anna, "how do I get a refund").await[0], rid);
    assert!(search(&app, &anna, "weather in Paris").await.is_empty());
    // Filters: audience and language.
    let (_, public) = app
        .get(
            Some(&anna),
            "/api/v1/kb/articles?q=refund+return&public=true",
        )
        .await;
    assert_eq!(public, json!([]), "the refund article is internal");
    let (_, ru) = app
        .get(Some(&anna), "/api/v1/kb/articles?language=ru")
        .await;
    assert_eq!(ru.as_array().map(Vec::len), Some(1), "{ru}");

    // An edit changes what finds it.
    let (status, e) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/kb/articles/{rid}"),
            &json!({"title": "Exchanges", "body": "We exchange a faulty kettle for a new one.", "public": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["title"], "Exchanges");
    assert_eq!(search(&app, &anna, "faulty kettle").await, vec![rid]);
    assert!(search(&app, &anna, "refund card").await.is_empty());
    let (status, got) = app
        .get(Some(&anna), &format!("/api/v1/kb/articles/{rid}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["body"], "We exchange a faulty kettle for a new one.");

    // Deleted: gone from the index and the API.
    let (status, _) = app
        .delete(Some(&app.admin), &format!("/api/v1/kb/articles/{rid}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(search(&app, &anna, "faulty kettle").await.is_empty());
    let gone = app
        .get(Some(&anna), &format!("/api/v1/kb/articles/{rid}"))
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "not_found", None);
    let again = app
        .delete(Some(&app.admin), &format!("/api/v1/kb/articles/{rid}"))
        .await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(count(&app).await, 1);
}

#[tokio::test]
async fn who_may_manage_which_article() {
    let app = spawn_app().await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let boss = app.user("boss", Role::Supervisor, Some(sales)).await;
    let body = |dep: Option<i64>| json!({"title": "Prices", "body": "See the price list.", "department_id": dep});

    let op = app
        .post(Some(&anna), "/api/v1/kb/articles", &body(None))
        .await;
    assert_error(&op, StatusCode::FORBIDDEN, "forbidden", None);
    let other = app
        .post(Some(&boss), "/api/v1/kb/articles", &body(Some(support)))
        .await;
    assert_error(&other, StatusCode::FORBIDDEN, "forbidden", None);
    let own = article(&app, &boss, &body(Some(sales))).await;
    let everyones = article(&app, &boss, &body(None)).await;
    // A supervisor cannot hand their article to another department.
    let moved = app
        .patch(
            Some(&boss),
            &format!("/api/v1/kb/articles/{}", own["id"]),
            &json!({"department_id": support}),
        )
        .await;
    assert_error(&moved, StatusCode::FORBIDDEN, "forbidden", None);
    // ... but may make it everyone's.
    let (status, e) = app
        .patch(
            Some(&boss),
            &format!("/api/v1/kb/articles/{}", own["id"]),
            &json!({"department_id": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert!(e["department_id"].is_null());
    let del = app
        .delete(
            Some(&anna),
            &format!("/api/v1/kb/articles/{}", everyones["id"]),
        )
        .await;
    assert_error(&del, StatusCode::FORBIDDEN, "forbidden", None);
    // An API key needs the admin scope to write.
    let key = app
        .api_key(&[Scope::DialogsRead, Scope::DialogsWrite])
        .await;
    let k = app
        .post(Some(&key), "/api/v1/kb/articles", &body(None))
        .await;
    assert_error(&k, StatusCode::FORBIDDEN, "forbidden", None);
    let (status, _) = app.get(Some(&key), "/api/v1/kb/articles").await;
    assert_eq!(status, StatusCode::OK);
    let anon = app.get(None, "/api/v1/kb/articles").await;
    assert_eq!(anon.0, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&app).await, 2);
}

#[tokio::test]
async fn bad_articles_and_queries_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let ok = |extra: Value| {
        let mut b = json!({"title": "T", "body": "Доставка заказа занимает два дня."});
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        b
    };
    let cases: Vec<(Value, StatusCode, &str, Option<&str>)> = vec![
        (
            ok(json!({"title": "  "})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "required",
            Some("title"),
        ),
        (
            ok(json!({"title": "two\nlines"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_characters",
            Some("title"),
        ),
        (
            ok(json!({"body": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "required",
            Some("body"),
        ),
        (
            ok(json!({"body": "x".repeat(64_001)})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
            Some("body"),
        ),
        (
            ok(json!({"body": "nul \u{0} byte"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_characters",
            Some("body"),
        ),
        (
            ok(json!({"body": "[click](javascript:alert(1))"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_link",
            Some("body"),
        ),
        (
            ok(json!({"body": "![x](data:image/png;base64,AAAA)"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_link",
            Some("body"),
        ),
        (
            ok(json!({"language": "russian"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some("language"),
        ),
        (
            ok(json!({"tags": vec!["t"; 21]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many",
            Some("tags"),
        ),
        (
            ok(json!({"tags": ["x".repeat(41)]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
            Some("tags"),
        ),
        (
            ok(json!({"department_id": 999_999})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_found",
            Some("department_id"),
        ),
        (
            ok(json!({"colour": "red"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
            Some("colour"),
        ),
        (
            json!({"title": "T"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            Some("body"),
        ),
        (
            json!(["not", "an", "object"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        (
            ok(json!({"public": "yes"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("public"),
        ),
    ];
    let before = app.last_seq().await;
    for (body, status, code, field) in cases {
        let got = app.post(Some(admin), "/api/v1/kb/articles", &body).await;
        let shown = body.to_string().chars().take(80).collect::<String>();
        assert_eq!(got.0, status, "{shown}: {}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{shown}: {}", got.1);
        if let Some(f) = field {
            assert_eq!(got.1["error"]["field"], f, "{shown}: {}", got.1);
        }
    }
    // Malformed and oversized bodies.
    let broken = app
        .raw(
            reqwest::Method::POST,
            Some(admin),
            "/api/v1/kb/articles",
            "application/json",
            b"{\"title\": \"T\", ".to_vec(),
        )
        .await;
    assert!(broken.0.is_client_error(), "{broken:?}");
    let huge = format!(
        "{{\"title\": \"T\", \"body\": \"{}\"}}",
        "a".repeat(3 << 20)
    );
    let huge = app
        .raw(
            reqwest::Method::POST,
            Some(admin),
            "/api/v1/kb/articles",
            "application/json",
            huge.into_bytes(),
        )
        .await;
    assert!(huge.0.is_client_error(), "{}", huge.0);
    assert_eq!(app.last_seq().await, before, "nothing was written");
    assert_eq!(count(&app).await, 0);

    // A bad patch changes nothing.
    let a = article(&app, admin, &ok(json!({}))).await;
    let path = format!("/api/v1/kb/articles/{}", a["id"]);
    let bad = app
        .patch(
            Some(admin),
            &path,
            &json!({"title": "New", "body": "[x](javascript:void(0))"}),
        )
        .await;
    assert_error(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsafe_link",
        Some("body"),
    );
    let (_, now) = app.get(Some(admin), &path).await;
    assert_eq!(now["title"], "T", "not half-applied");
    let missing = app
        .patch(
            Some(admin),
            "/api/v1/kb/articles/424242",
            &json!({"title": "x"}),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found", None);

    // Queries: any text is searched; limits are checked.
    for q in [
        "",
        "   ",
        "!!!",
        "\u{1}\u{2}",
        "и в на",
        "ᚠᛇᚻ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🤖",
        "' OR 1=1 --",
        "title:x AND body:(y",
    ] {
        let path = format!("/api/v1/kb/articles?q={}", enc(q));
        let (status, hits) = app.get(Some(admin), &path).await;
        assert_eq!(status, StatusCode::OK, "{q:?}: {hits}");
    }
    // A long text goes in a body; a URL says clearly that it is too long.
    let long = "доставка ".repeat(2_000);
    let too_long = app
        .get(
            Some(admin),
            &format!("/api/v1/kb/articles?q={}", enc(&long[..3_400])),
        )
        .await;
    assert_error(&too_long, StatusCode::BAD_REQUEST, "invalid_query", None);
    let mb: String = "доставка заказа и возврат денег; "
        .chars()
        .cycle()
        .take(400_000)
        .collect();
    for (text, found) in [
        (long.as_str(), 1),
        (mb.as_str(), 1),
        ("\u{0}\u{fffd}\u{202e}", 0),
    ] {
        let (status, hits) = app
            .post(
                Some(admin),
                "/api/v1/kb/search",
                &json!({"q": text, "limit": 5}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{hits}");
        assert_eq!(hits.as_array().map(Vec::len), Some(found), "{hits}");
    }
    let unknown = app
        .post(Some(admin), "/api/v1/kb/search", &json!({"query": "x"}))
        .await;
    assert_error(
        &unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
        Some("query"),
    );
    for bad in [
        "limit=0",
        "limit=201",
        "limit=x",
        "department_id=abc",
        "public=maybe",
    ] {
        let got = app
            .get(Some(admin), &format!("/api/v1/kb/articles?{bad}"))
            .await;
        assert!(got.0.is_client_error(), "{bad}: {got:?}");
        assert!(got.1["error"]["code"].is_string(), "{bad}: {got:?}");
    }
}

struct Desk {
    app: TestApp,
    key: Principal,
    sales: i64,
}

async fn desk() -> Desk {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    Desk { app, key, sales }
}

async fn say(d: &Desk, id: &str, thread: &str, text: &str) -> Value {
    let (status, out) = ingest(
        &d.app,
        &d.key,
        &inbound(id, thread, "+7 916 555-12-34", text),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

fn titles(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("suggestions")
        .iter()
        .map(|s| s["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn suggestions_are_pushed_for_an_open_dialog_and_refreshed_on_a_new_message() {
    let d = desk().await;
    let app = &d.app;
    let support = app.department("Support").await;
    article(
        app,
        &app.admin,
        &json!({"title": "Сроки доставки", "body": DELIVERY_RU, "tags": ["доставка"]}),
    )
    .await;
    article(
        app,
        &app.admin,
        &json!({"title": "Returns and refunds", "body": REFUND_EN, "language": "en"}),
    )
    .await;
    // Another department's article is never suggested here.
    article(app, &app.admin, &json!({"title": "Доставка запчастей для сервиса", "body": "Доставка запчастей в сервисный центр.", "department_id": support})).await;
    let anna = app.user("anna", Role::Operator, Some(d.sales)).await;

    let out = say(
        &d,
        "k-1",
        "th-1",
        "Здравствуйте! Когда будет доставка моего заказа?",
    )
    .await;
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let (status, s) = app
        .get(
            Some(&anna),
            &format!("/api/v1/dialogs/{dialog}/suggestions"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["dialog_id"], dialog);
    let first = &s["suggestions"][0];
    assert_eq!(first["title"], "Сроки доставки", "{s}");
    assert!(
        !titles(&s["suggestions"]).contains(&"Доставка запчастей для сервиса".to_owned()),
        "{s}"
    );
    assert_eq!(first["links"][0]["url"], "https://shop.example/track");
    assert_eq!(
        first["images"][0]["url"],
        "https://shop.example/img/track.png"
    );
    assert!(
        first["reply_text"]
            .as_str()
            .is_some_and(|t| t.contains("трек-номеру (https://shop.example/track)")
                && t.contains("\nhttps://shop.example/img/track.png")),
        "{first}"
    );

    // The operator opens the dialog; the customer writes about something else.
    let (mut ws, _) = Ws::operator(app, &anna).await;
    ws.subscribe(&format!("dialog:{dialog}"), Some(app.last_seq().await))
        .await;
    say(
        &d,
        "k-2",
        "th-1",
        "Actually I want to return it and get my money back, how does a refund work?",
    )
    .await;
    let e = ws
        .event_where(|e| e["entity"] == "kb_suggestions" && e["data"]["dialog_id"] == dialog)
        .await;
    assert_eq!(e["ephemeral"], true, "{e}");
    assert_eq!(e["topics"], json!([format!("dialog:{dialog}")]));
    let pushed = titles(&e["data"]["suggestions"]);
    assert_eq!(pushed[0], "Returns and refunds", "{e}");
    assert!(
        pushed.contains(&"Сроки доставки".to_owned()),
        "the earlier question still counts: {pushed:?}"
    );
    assert!(pushed.len() <= 5);

    // The operator's own reply does not bring new suggestions.
    let (status, _) = app
        .post(
            Some(&anna),
            &format!("/api/v1/dialogs/{dialog}/messages"),
            &json!({"external_id": "r-1", "body": "Let me check."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let more = ws
        .try_next(std::time::Duration::from_millis(800))
        .await
        .filter(|e| e["entity"] == "kb_suggestions");
    assert!(more.is_none(), "{more:?}");

    // Someone who may not see the dialog gets nothing.
    let other = app.user("olga", Role::Operator, Some(support)).await;
    let denied = app
        .get(
            Some(&other),
            &format!("/api/v1/dialogs/{dialog}/suggestions"),
        )
        .await;
    assert_eq!(denied.0, StatusCode::NOT_FOUND, "{denied:?}");
}

#[tokio::test]
async fn a_used_suggestion_is_counted_once_and_ranks_higher() {
    let d = desk().await;
    let app = &d.app;
    let anna = app.user("anna", Role::Operator, Some(d.sales)).await;
    // Two articles that match a question equally well.
    let body = "Our office is open from 9 to 18 on weekdays.";
    let a = article(
        app,
        &app.admin,
        &json!({"title": "Office hours", "body": body}),
    )
    .await;
    let b = article(
        app,
        &app.admin,
        &json!({"title": "Office hours (Moscow)", "body": body}),
    )
    .await;
    let (aid, bid) = (a["id"].as_i64().expect("id"), b["id"].as_i64().expect("id"));
    let out = say(&d, "u-1", "th-u", "When is your office open on weekdays?").await;
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let order = |v: &Value| -> Vec<i64> {
        v["suggestions"]
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["article_id"].as_i64().expect("id"))
            .collect()
    };
    let (_, before) = app
        .get(
            Some(&anna),
            &format!("/api/v1/dialogs/{dialog}/suggestions"),
        )
        .await;
    assert_eq!(order(&before)[0], aid, "{before}");

    let (status, u) = app
        .post(
            Some(&anna),
            &format!("/api/v1/kb/articles/{bid}/uses"),
            &json!({"dialog_id": dialog}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["counted"], true);
    assert_eq!(u["article"]["used_count"], 1);
    let (_, again) = app
        .post(
            Some(&anna),
            &format!("/api/v1/kb/articles/{bid}/uses"),
            &json!({"dialog_id": dialog}),
        )
        .await;
    assert_eq!(
        again["counted"], false,
        "once per article, dialog and operator"
    );
    assert_eq!(again["article"]["used_count"], 1);

    let (_, after) = app
        .get(
            Some(&anna),
            &format!("/api/v1/dialogs/{dialog}/suggestions"),
        )
        .await;
    assert_eq!(order(&after)[0], bid, "the used one first: {after}");
    assert_eq!(after["suggestions"][0]["used_count"], 1);

    // Bad uses are refused and count nothing.
    let key = app
        .api_key(&[Scope::DialogsWrite, Scope::DialogsRead])
        .await;
    let seq = app.last_seq().await;
    let cases = [
        (
            format!("/api/v1/kb/articles/{bid}/uses"),
            json!({"dialog_id": 999_999}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/kb/articles/999999/uses".to_owned(),
            json!({"dialog_id": dialog}),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/kb/articles/{bid}/uses"),
            json!({"dialog": dialog}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/kb/articles/{bid}/uses"),
            json!({"dialog_id": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (path, body, status) in cases {
        let got = app.post(Some(&anna), &path, &body).await;
        assert_eq!(got.0, status, "{path} {body}: {}", got.1);
    }
    let bot = app
        .post(
            Some(&key),
            &format!("/api/v1/kb/articles/{aid}/uses"),
            &json!({"dialog_id": dialog}),
        )
        .await;
    assert_error(&bot, StatusCode::FORBIDDEN, "forbidden", None);
    assert_eq!(app.last_seq().await, seq, "nothing was written");
}
