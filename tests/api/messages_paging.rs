//! Message pages of a dialog in both orders: oldest first (the default) and newest first
//! (`order=desc`, what a console reads when it opens a long dialog).

use kommutator::domain::Scope;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::ws_client::*;

fn bodies(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn messages_page_newest_first_and_oldest_first() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let mut dialog = 0;
    for n in 1..=5 {
        let (status, out) = ingest(
            &app,
            &key,
            &inbound(
                &format!("m-{n}"),
                "t-1",
                "+7 916 000-00-01",
                &format!("text {n}"),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        dialog = out["dialog"]["id"].as_i64().expect("dialog");
    }
    let path = format!("/api/v1/dialogs/{dialog}/messages");

    // Newest first, two at a time, to the start.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{path}?order=desc&limit=2&cursor={c}"),
            None => format!("{path}?order=desc&limit=2"),
        };
        let (status, page) = app.get(Some(&app.admin), &q).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(bodies(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["text 5", "text 4", "text 3", "text 2", "text 1"]);

    // Oldest first stays the default.
    let (status, page) = app.get(Some(&app.admin), &format!("{path}?limit=3")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), ["text 1", "text 2", "text 3"]);
    let (status, page) = app
        .get(Some(&app.admin), &format!("{path}?order=asc&limit=200"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page).len(), 5);

    // Anything else is refused.
    for bad in ["sideways", "DESC", "", "1"] {
        let (status, body) = app
            .get(Some(&app.admin), &format!("{path}?order={bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "order={bad}: {body}");
    }
}
