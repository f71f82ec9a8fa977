//! What the hub keeps for the messaging channels: a mail's subject, HTML body (served in a
//! sandbox, never in the JSON) and quoted history; the traffic source a form reports,
//! recorded on the lead it creates; and the files connectors store, served to signed-in
//! users only, with headers that keep their content from running in the hub's origin.

use kommutator::domain::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::{inbound, ingest, with_api_channel};

/// An inbound `site` event with mail-like parts.
fn mail(external_id: &str, thread: &str, subject: &str, html: Option<&str>) -> Value {
    let mut ev = inbound(
        external_id,
        thread,
        "+7 916 555-00-77",
        "Hello, the new text",
    );
    let kind = ev["kind"].as_object_mut().expect("kind");
    kind.insert("subject".into(), json!(subject));
    kind.insert("quoted".into(), json!("> the old text\n-- \nIvan"));
    if let Some(h) = html {
        kind.insert("html".into(), json!(h));
    }
    ev
}

/// GET with the principal's token; status, headers and body as text.
async fn fetch(
    app: &TestApp,
    who: Option<&Principal>,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.http.get(format!("{}{path}", app.base));
    if let Some(p) = who {
        req = req.bearer_auth(&p.token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn a_mail_keeps_its_subject_html_and_quoted_text_and_the_html_is_served_in_a_sandbox() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    app.department("Support").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let support = app.department("Service").await;
    let boris = app.user("boris", Role::Operator, Some(support)).await;

    let html = r#"<p>Hello, <b>the new text</b></p><img src="https://tracker.example/p.gif">"#;
    let (status, out) = ingest(
        &app,
        &key,
        &mail(
            "<m1@example.com>",
            "<m1@example.com>",
            "Order #42",
            Some(html),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(d["subject"], "Order #42", "{d}");
    let (_, page) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{dialog}/messages"),
        )
        .await;
    let m = &page["items"][0];
    assert_eq!(m["subject"], "Order #42", "{m}");
    assert_eq!(m["body"], "Hello, the new text");
    assert_eq!(m["quoted"], "> the old text\n-- \nIvan");
    assert_eq!(m["has_html"], true);
    assert!(
        m.get("html").is_none(),
        "the HTML stays out of the JSON: {m}"
    );
    let id = m["id"].as_i64().expect("id");

    let path = format!("/api/v1/messages/{id}/html");
    let (status, headers, body) = fetch(&app, Some(&anna), &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.starts_with("sandbox"), "{csp}");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("img-src data:"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let body = String::from_utf8(body).expect("utf-8");
    assert!(body.contains("<b>the new text</b>"), "{body}");

    // Not signed in, not allowed to see the dialog, no such message, no HTML.
    assert_eq!(fetch(&app, None, &path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fetch(&app, Some(&boris), &path).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&app, Some(&anna), "/api/v1/messages/999999/html")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fetch(&app, Some(&anna), "/api/v1/messages/abc/html")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (status, out) = ingest(
        &app,
        &key,
        &mail(
            "<m2@example.com>",
            "<m1@example.com>",
            "Re: Order #42",
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let plain = out["message"]["id"].as_i64().expect("message");
    assert_eq!(out["message"]["has_html"], false);
    assert_eq!(
        fetch(&app, Some(&anna), &format!("/api/v1/messages/{plain}/html"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_overlong_subject_or_html_body_costs_the_mail_nothing() {
    // Straight into the store: a connector's mail never passes the HTTP body limit.
    let app = spawn_app().await;
    let input = IngestMessage {
        connector_id: "mail".into(),
        channel: "email".into(),
        external_id: "big@example.com".into(),
        thread_id: "big@example.com".into(),
        sent_at: Timestamp::now(),
        identities: vec![(IdentityKind::Email, "ivan@example.com".into())],
        display_name: Some("Ivan".into()),
        text: Some("Hello, the new text".into()),
        attachments: Vec::new(),
        department_id: None,
        subject: Some("Очень длинная тема ".repeat(40)),
        html: Some(format!("<p>{}</p>", "x".repeat(1024 * 1024 + 1))),
        quoted: Some("> q".repeat(40_000)),
        traffic_source: None,
        open_interest: OpenInterest::NewParty,
        classification: None,
    };
    let out = app.store.ingest_message(&input).await.expect("stored");
    let IngestOutcome::Stored {
        message, dialog, ..
    } = out
    else {
        panic!("expected a stored message, got {out:?}");
    };
    assert_eq!(
        message.body.as_deref(),
        Some("Hello, the new text"),
        "the text is kept"
    );
    let subject = message.subject.as_deref().expect("subject");
    assert_eq!(subject.chars().count(), 200, "cut to 200 characters");
    assert_eq!(dialog.subject.as_deref(), Some(subject));
    assert!(
        !message.has_html,
        "an HTML body over 1 MiB is dropped, the text stays"
    );
    assert_eq!(
        message.quoted.as_deref().map(|q| q.chars().count()),
        Some(100_000)
    );
}

#[tokio::test]
async fn a_form_with_a_traffic_source_makes_a_lead_and_interest_from_that_campaign() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let mut ev = inbound(
        "form-1",
        "form:form-1",
        "+7 916 555-00-88",
        "Call me back, please",
    );
    ev["raw"] = json!({"form": "callback", "traffic_source": {
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring_sale",
        "referrer": "https://www.google.com/", "landing_page": "https://shop.example/chairs"
    }});
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let lead = out["new_lead"]
        .as_i64()
        .or_else(|| out["dialog"]["lead_id"].as_i64())
        .expect("a lead");
    let (_, l) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}"))
        .await;
    assert_eq!(l["source"], "google / cpc / spring_sale", "{l}");
    let interest = out["dialog"]["interest_id"].as_i64().expect("an Interest");
    let (_, i) = app
        .get(Some(&app.admin), &format!("/api/v1/interests/{interest}"))
        .await;
    assert_eq!(i["source"], "google / cpc / spring_sale", "{i}");

    // Without a traffic source the channel is the source.
    let (_, out) = ingest(
        &app,
        &key,
        &inbound("form-2", "form:form-2", "+7 916 555-00-89", "Hi"),
    )
    .await;
    let lead = out["dialog"]["lead_id"].as_i64().expect("a lead");
    let (_, l) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}"))
        .await;
    assert_eq!(l["source"], "api", "{l}");

    // A traffic source too big to be one is refused, and nothing is stored.
    let before = app.get(Some(&app.admin), "/api/v1/leads").await.1["items"]
        .as_array()
        .map(Vec::len);
    let mut ev = inbound("form-3", "form:form-3", "+7 916 555-00-90", "Hi");
    ev["raw"] = json!({"traffic_source": {"utm_source": "x".repeat(5000)}});
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out.to_string().contains("traffic_source"), "{out}");
    let after = app.get(Some(&app.admin), "/api/v1/leads").await.1["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "no lead was stored");
}

#[tokio::test]
async fn stored_files_are_served_to_signed_in_users_with_safe_headers() {
    let app = spawn_app().await;
    let png = b"\x89PNG\r\n\x1a\n fake image bytes".to_vec();
    let key = app
        .store
        .put_file("mail", "image/png", &png)
        .await
        .expect("put");
    assert_eq!(key.len(), 64);
    assert_eq!(
        app.store
            .put_file("tg", "image/png", &png)
            .await
            .expect("again"),
        key,
        "by content"
    );
    let path = format!("/api/v1/files/{key}/%D0%A1%D1%87%D1%91%D1%82%201.png");
    let (status, headers, body) = fetch(&app, Some(&app.admin), &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, png);
    assert_eq!(headers["content-type"], "image/png");
    let disposition = headers["content-disposition"]
        .to_str()
        .expect("disposition");
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%201.png"),
        "{disposition}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .starts_with("sandbox"));

    // HTML (or anything not shown in place) downloads, and runs nowhere.
    let html = app
        .store
        .put_file("mail", "text/html", b"<script>alert(1)</script>")
        .await
        .expect("put");
    let (status, headers, _) = fetch(
        &app,
        Some(&app.admin),
        &format!("/api/v1/files/{html}/x.html"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"]
        .to_str()
        .expect("d")
        .starts_with("attachment;"));

    assert_eq!(fetch(&app, None, &path).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fetch(
            &app,
            Some(&app.admin),
            &format!("/api/v1/files/{}", "0".repeat(64))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (status, _, body) = fetch(&app, Some(&app.admin), "/api/v1/files/ABC").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        fetch(
            &app,
            Some(&app.admin),
            "/api/v1/files/..%2F..%2Fetc%2Fpasswd"
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (_, _, body) = fetch(&app, Some(&app.admin), &format!("/api/v1/files/{key}")).await;
    assert_eq!(body, png, "the name is optional");
}
