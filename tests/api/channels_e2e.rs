//! The messaging channels through the whole hub: a webhook (or a poll) from the channel
//! reaches the operator's socket as a message of the right dialog, the operator's reply
//! reaches the channel's API (a fake on 127.0.0.1, shaped as the documented API) with the
//! right chat and text, and its delivery comes back; a redelivery is stored once; a bad
//! signature or secret and malformed JSON are refused with nothing stored.

use kommutator::config::{Config, ConnectorConfig};
use kommutator::domain::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_api::{ok_json, FakeApi};
use crate::helpers::*;
use crate::ws_client::*;

/// Adds connector `id` from a TOML table (`type = ...` and its keys).
pub fn with_connector(id: &'static str, toml_text: String) -> impl FnOnce(&mut Config) {
    move |c| {
        let table: toml::Table = toml::from_str(&toml_text).expect("connector TOML");
        let conn =
            ConnectorConfig::deserialize(toml::Value::Table(table)).expect("connector config");
        c.connectors.insert(id.into(), conn);
        c.realtime.presence_grace_secs = 1;
    }
}

use serde::Deserialize as _;

/// POSTs `body` to `path` with headers; status and body text.
pub async fn post_raw(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = app.http.post(format!("{}{path}", app.base)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

/// The messages of the dialog of `connector`'s thread `thread`, oldest first.
pub async fn thread_messages(app: &TestApp, connector: &str, thread: &str) -> Vec<Value> {
    match app
        .store
        .dialog_by_thread(connector, thread)
        .await
        .expect("read")
    {
        None => Vec::new(),
        Some(d) => {
            let (_, page) = app
                .get(
                    Some(&app.admin),
                    &format!("/api/v1/dialogs/{}/messages", d.id),
                )
                .await;
            page["items"].as_array().cloned().unwrap_or_default()
        }
    }
}

/// An operator in Sales with a socket on their department's topic.
pub async fn operator(app: &TestApp) -> (Principal, Ws) {
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (mut ws, _) = Ws::operator(app, &anna).await;
    ws.subscribe(&format!("dept:{sales}"), Some(app.last_seq().await))
        .await;
    (anna, ws)
}

/// Waits for the message event with `text` on the socket; returns its data.
async fn message_on(ws: &mut Ws, text: &str) -> Value {
    ws.event_where(|e| e["entity"] == "message" && e["data"]["body"] == text)
        .await["data"]
        .clone()
}

/// The operator replies in `dialog`; returns the stored message.
async fn reply(app: &TestApp, who: &Principal, dialog: i64, text: &str) -> Value {
    let (status, m) = app
        .post(
            Some(who),
            &format!("/api/v1/dialogs/{dialog}/messages"),
            &json!({"external_id": format!("r-{text}"), "body": text}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    m
}

/// Waits until message `id` of `dialog` has a delivery status other than pending.
async fn delivered(app: &TestApp, dialog: i64, id: i64) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, page) = app
            .get(
                Some(&app.admin),
                &format!("/api/v1/dialogs/{dialog}/messages"),
            )
            .await;
        if let Some(m) = page["items"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["id"] == id))
        {
            if m["delivery_status"] != "pending" {
                return m.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {id} stayed pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vk_callback_message_reaches_the_operator_and_the_reply_reaches_vk() {
    let vk = FakeApi::start(|c| {
        if c.path.ends_with("/messages.send") {
            ok_json(json!({"response": [{"peer_id": 745120033, "message_id": 1300, "conversation_message_id": 58}]}))
        } else {
            ok_json(json!({"error": {"error_code": 3, "error_msg": "Unknown method passed"}}))
        }
    })
    .await;
    let app = spawn_app_with(with_connector(
        "vk",
        format!(
            r#"type = "vk"
department = "Sales"
group_id = 218000001
access_token = "vk1.a.test-token"
api_url = "{}/method"
confirmation = "1a2b3c4d"
secret = "test-callback-secret""#,
            vk.base
        ),
    ))
    .await;
    let (anna, mut ws) = operator(&app).await;
    let event = |event_id: &str, text: &str, secret: &str| {
        json!({"group_id": 218000001, "type": "message_new", "event_id": event_id, "v": "5.199", "secret": secret,
            "object": {"message": {"date": 1714566600, "from_id": 745120033, "id": 1201, "out": 0, "attachments": [],
                "conversation_message_id": 57, "fwd_messages": [], "important": false, "is_hidden": false,
                "peer_id": 745120033, "random_id": 0, "text": text},
                "client_info": {"button_actions": ["text"], "keyboard": true, "inline_keyboard": true, "carousel": true, "lang_id": 0}}})
        .to_string()
        .into_bytes()
    };
    let json_ct = [("content-type", "application/json")];

    // The handshake VK does when the server is added.
    let (status, body) = post_raw(
        &app,
        "/hooks/vk/",
        &json_ct,
        br#"{"type":"confirmation","group_id":218000001}"#.to_vec(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "1a2b3c4d"));

    let (status, body) = post_raw(
        &app,
        "/hooks/vk/",
        &json_ct,
        event(
            "e-1",
            "Здравствуйте, есть ли диваны?",
            "test-callback-secret",
        ),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let m = message_on(&mut ws, "Здравствуйте, есть ли диваны?").await;
    let dialog = m["dialog_id"].as_i64().expect("dialog");

    // VK retries the same event: stored once.
    let (status, _) = post_raw(
        &app,
        "/hooks/vk/",
        &json_ct,
        event(
            "e-1",
            "Здравствуйте, есть ли диваны?",
            "test-callback-secret",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A bad secret and malformed JSON: refused, nothing stored.
    let (status, _) = post_raw(
        &app,
        "/hooks/vk/",
        &json_ct,
        event("e-2", "forged", "wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post_raw(
        &app,
        "/hooks/vk/",
        &json_ct,
        b"{\"type\": \"message_new\", ".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bodies: Vec<Value> = thread_messages(&app, "vk", "745120033")
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("Здравствуйте, есть ли диваны?")]);

    // The reply goes to the same peer.
    let r = reply(&app, &anna, dialog, "Да, приходите в салон").await;
    let sent = vk
        .wait_for("messages.send", |c| c.path.ends_with("/messages.send"))
        .await;
    assert_eq!(sent.form("peer_id").as_deref(), Some("745120033"));
    assert_eq!(
        sent.form("message").as_deref(),
        Some("Да, приходите в салон")
    );
    assert!(sent
        .form("random_id")
        .is_some_and(|r| r.parse::<i64>().is_ok_and(|n| n > 0)));
    assert_eq!(
        sent.form("access_token").as_deref(),
        Some("vk1.a.test-token")
    );
    let done = delivered(&app, dialog, r["id"].as_i64().expect("id")).await;
    assert_eq!(done["delivery_status"], "sent", "{done}");
    assert_eq!(done["provider_message_id"], "745120033:58");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_webhook_message_reaches_the_operator_and_the_reply_reaches_the_chat() {
    let tg = FakeApi::start(|c| {
        let method = c.path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
        match method.as_str() {
            "sendmessage" => ok_json(json!({"ok": true, "result": {
                "message_id": 901, "date": 1714566700, "chat": {"id": 100500, "type": "private", "first_name": "Фёдор"},
                "text": c.json()["text"].clone()}})),
            "getme" => ok_json(json!({"ok": true, "result": {"id": 42, "is_bot": true, "first_name": "Shop", "username": "shop_bot",
                "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false}})),
            _ => ok_json(json!({"ok": true, "result": true})),
        }
    })
    .await;
    let app = spawn_app_with(with_connector(
        "tg",
        format!(
            r#"type = "telegram"
department = "Sales"
token = "123456789:AAtesttoken"
api_url = "{}"
mode = "webhook"
webhook_secret = "s3cr3t-token_ok""#,
            tg.base
        ),
    ))
    .await;
    let (anna, mut ws) = operator(&app).await;
    let update = |id: i64, text: &str| {
        json!({"update_id": id, "message": {"message_id": 77, "date": 1714566600,
            "from": {"id": 100500, "is_bot": false, "first_name": "Фёдор", "last_name": "Сумкин", "username": "fsumkin", "language_code": "ru"},
            "chat": {"id": 100500, "type": "private", "first_name": "Фёдор", "last_name": "Сумкин", "username": "fsumkin"},
            "text": text}})
        .to_string()
        .into_bytes()
    };
    let good = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", "s3cr3t-token_ok"),
    ];
    let (status, body) = post_raw(&app, "/hooks/tg/", &good, update(5001, "Где мой заказ?")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = message_on(&mut ws, "Где мой заказ?").await;
    let dialog = m["dialog_id"].as_i64().expect("dialog");
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(d["channel"], "telegram");

    // Telegram redelivers the update: stored once. A forged secret and malformed JSON are refused.
    assert_eq!(
        post_raw(&app, "/hooks/tg/", &good, update(5001, "Где мой заказ?"))
            .await
            .0,
        StatusCode::OK
    );
    let forged = [
        ("content-type", "application/json"),
        ("x-telegram-bot-api-secret-token", "guess"),
    ];
    assert_eq!(
        post_raw(&app, "/hooks/tg/", &forged, update(5002, "forged"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_raw(&app, "/hooks/tg/", &good[..1], update(5003, "no secret"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_raw(&app, "/hooks/tg/", &good, b"{\"update_id\": ".to_vec())
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let bodies: Vec<Value> = thread_messages(&app, "tg", "100500")
        .await
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("Где мой заказ?")]);

    let r = reply(&app, &anna, dialog, "Заказ в пути, будет завтра").await;
    let sent = tg
        .wait_for("sendMessage", |c| {
            c.path.to_ascii_lowercase().ends_with("/sendmessage")
        })
        .await;
    assert!(
        sent.path.starts_with("/bot123456789:AAtesttoken/"),
        "{}",
        sent.path
    );
    assert_eq!(sent.json()["chat_id"], 100500);
    assert_eq!(sent.json()["text"], "Заказ в пути, будет завтра");
    let done = delivered(&app, dialog, r["id"].as_i64().expect("id")).await;
    assert_eq!(done["delivery_status"], "sent", "{done}");
    assert_eq!(done["provider_message_id"], "100500:901");
}

pub fn wa_sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_message_reaches_the_operator_and_the_reply_and_its_statuses_come_back() {
    let graph = FakeApi::start(|c| {
        if c.path.ends_with("/messages") {
            ok_json(json!({"messaging_product": "whatsapp", "contacts": [{"input": "79165550011", "wa_id": "79165550011"}],
                "messages": [{"id": "wamid.OUT1"}]}))
        } else {
            (400, "application/json".into(), json!({"error": {"message": "Unsupported", "type": "OAuthException", "code": 100}}))
        }
    })
    .await;
    let app = spawn_app_with(with_connector(
        "wa",
        format!(
            r#"type = "whatsapp"
department = "Sales"
phone_number_id = "106540352242922"
access_token = "EAAGtest"
app_secret = "app-secret"
verify_token = "verify-me"
graph_url = "{}""#,
            graph.base
        ),
    ))
    .await;
    let (anna, mut ws) = operator(&app).await;

    // Meta's handshake.
    let resp = app
        .http
        .get(format!(
            "{}/hooks/wa/?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
            app.base
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("text"), "1158201444");

    let change = |value: Value| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]})
            .to_string()
            .into_bytes()
    };
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let inbound = change(json!({"messaging_product": "whatsapp", "metadata": meta,
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "79165550011"}],
        "messages": [{"from": "79165550011", "id": "wamid.IN1", "timestamp": "1714566600", "type": "text", "text": {"body": "Is the sofa in stock?"}}]}));
    let sig = wa_sign("app-secret", &inbound);
    let headers = [
        ("content-type", "application/json"),
        ("x-hub-signature-256", sig.as_str()),
    ];
    assert_eq!(
        post_raw(&app, "/hooks/wa/", &headers, inbound.clone())
            .await
            .0,
        StatusCode::OK
    );
    let m = message_on(&mut ws, "Is the sofa in stock?").await;
    let dialog = m["dialog_id"].as_i64().expect("dialog");
    // The same notification again is stored once; a bad signature and malformed JSON are refused.
    assert_eq!(
        post_raw(&app, "/hooks/wa/", &headers, inbound.clone())
            .await
            .0,
        StatusCode::OK
    );
    let bad = [
        ("content-type", "application/json"),
        ("x-hub-signature-256", "sha256=00"),
    ];
    assert_eq!(
        post_raw(&app, "/hooks/wa/", &bad, inbound.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let junk = b"{\"object\": [".to_vec();
    let junk_sig = wa_sign("app-secret", &junk);
    let junk_headers = [
        ("content-type", "application/json"),
        ("x-hub-signature-256", junk_sig.as_str()),
    ];
    assert_eq!(
        post_raw(&app, "/hooks/wa/", &junk_headers, junk).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(thread_messages(&app, "wa", "79165550011").await.len(), 1);

    let r = reply(&app, &anna, dialog, "Yes, 3 left").await;
    let sent = graph
        .wait_for("a send", |c| c.path.ends_with("/106540352242922/messages"))
        .await;
    assert_eq!(sent.json()["to"], "79165550011");
    assert_eq!(sent.json()["text"]["body"], "Yes, 3 left");
    assert_eq!(sent.headers["authorization"], "Bearer EAAGtest");
    let id = r["id"].as_i64().expect("id");
    assert_eq!(
        delivered(&app, dialog, id).await["provider_message_id"],
        "wamid.OUT1"
    );

    // WhatsApp reports delivery and reading; the console sees the status move.
    for status in ["delivered", "read"] {
        let body = change(json!({"messaging_product": "whatsapp", "metadata": meta,
            "statuses": [{"id": "wamid.OUT1", "status": status, "timestamp": "1714566700", "recipient_id": "79165550011"}]}));
        let sig = wa_sign("app-secret", &body);
        let h = [
            ("content-type", "application/json"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(
            post_raw(&app, "/hooks/wa/", &h, body).await.0,
            StatusCode::OK
        );
        ws.event_where(|e| {
            e["entity"] == "message"
                && e["data"]["id"] == id
                && e["data"]["delivery_status"] == status
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_form_makes_a_lead_with_its_campaign_and_spam_is_refused_with_nothing_stored() {
    let app = spawn_app_with(with_connector(
        "shop",
        r#"type = "web_form"
department = "Sales"
form_name = "Callback on shop.example"
kind = "callback"
allowed_origins = ["https://shop.example"]
default_country_code = "7"
rate_limit_per_minute = 6"#
            .to_owned(),
    ))
    .await;
    let (_anna, mut ws) = operator(&app).await;
    let json_ct = ("content-type", "application/json");
    let origin = ("origin", "https://shop.example");
    let good = json!({"name": "Ольга", "phone": "8 (916) 555-00-33", "message": "Перезвоните после 18:00",
        "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "sofas", "referrer": "https://ya.ru/",
        "landing_page": "https://shop.example/sofas", "idempotency_key": "5f1c2a9e-7d3b-4b8e-9a61-2c0d4e8f1a77"});
    let (status, body) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, origin],
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = ws
        .event_where(|e| {
            e["entity"] == "message"
                && e["data"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("Перезвоните после 18:00"))
        })
        .await;
    let dialog = m["data"]["dialog_id"].as_i64().expect("dialog");
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    let lead = d["lead_id"].as_i64().expect("a lead");
    let (_, l) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}"))
        .await;
    assert_eq!(l["name"], "Ольга");
    assert_eq!(l["phone"], "+79165550033", "{l}");
    assert_eq!(l["source"], "yandex / cpc / sofas", "{l}");
    assert!(
        d["subject"]
            .as_str()
            .is_some_and(|s| s.contains("Callback on shop.example")),
        "{d}"
    );

    // A double click is one lead.
    assert_eq!(
        post_raw(
            &app,
            "/forms/shop/",
            &[json_ct, origin],
            good.to_string().into_bytes()
        )
        .await
        .0,
        StatusCode::OK
    );
    let leads = || async {
        app.get(Some(&app.admin), "/api/v1/leads").await.1["items"]
            .as_array()
            .map(Vec::len)
    };
    let before = leads().await;
    assert_eq!(before, Some(1));

    // Refusals: nothing stored for any of them.
    let spam = json!({"name": "Bot", "phone": "+79160000001", "website": "http://spam.example"});
    let (status, body) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, origin],
        spam.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("spam"), "{body}");
    let (status, body) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, ("origin", "https://evil.example")],
        good.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, origin],
        json!({"name": "No phone"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("phone"), "{body}");
    let (status, _) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, origin],
        vec![b'x'; 64 * 1024],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = post_raw(
        &app,
        "/forms/shop/",
        &[json_ct, origin],
        b"{\"name\": ".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(leads().await, before, "no refused submission made a lead");

    // That was six posts from this address within the minute (the wrong origin is refused
    // before it counts): the seventh is over the limit.
    let resp = app
        .http
        .post(format!("{}/forms/shop/", app.base))
        .header("content-type", "application/json")
        .header("origin", "https://shop.example")
        .body(json!({"name": "Ольга", "phone": "+79165550034"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(leads().await, before);

    // The snippet a site pastes.
    let resp = app
        .http
        .get(format!("{}/forms/shop/embed.js", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("application/javascript"));
}
