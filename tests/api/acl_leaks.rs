//! Access-control regressions: records reached indirectly (through a shared client's Feed, a
//! caller's number, a default responsible) follow their own access rules.

use kommutator::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn indirect_paths_respect_access() {
    let app = spawn_app().await;
    let a = app.department("A").await;
    let b = app.department("B").await;
    let m1 = app.user("m1", Role::Manager, Some(a)).await;
    let m2 = app.user("m2", Role::Manager, Some(a)).await;
    let ob = app.user("ob", Role::Operator, Some(b)).await;

    let (_, c) = app
        .post(
            Some(&m1),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "Zircon", "shared": true,
            "identities": [{"kind": "phone", "value": "+74951112233"}]}),
        )
        .await;
    let c = c["id"].as_i64().unwrap();
    let (_, i) = app
        .post(
            Some(&m1),
            "/api/v1/interests",
            &json!({"title": "Secret deal", "client_id": c}),
        )
        .await;
    let (_, d) = app
        .post(
            Some(&m1),
            "/api/v1/dialogs",
            &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "t-1",
            "client_id": c, "assignee_id": m1.id}),
        )
        .await;
    let d = d["id"].as_i64().unwrap();
    app.patch(
        Some(&m1),
        &format!("/api/v1/dialogs/{d}"),
        &json!({"shared": false}),
    )
    .await;
    app.post(
        Some(&m1),
        &format!("/api/v1/dialogs/{d}/messages"),
        &json!({"body": "private words"}),
    )
    .await;
    app.post(
        Some(&m1),
        "/api/v1/interactions",
        &json!({"kind": "note", "subject": "shared note", "client_id": c}),
    )
    .await;

    // m2 sees the shared client and its note, not the private dialog's text or the Interest.
    let (status, feed) = app
        .get(Some(&m2), &format!("/api/v1/clients/{c}/feed"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = feed.to_string();
    assert!(text.contains("shared note"), "{text}");
    assert!(
        !text.contains("private words") && !text.contains("Secret deal"),
        "{text}"
    );
    let (_, own) = app
        .get(Some(&m1), &format!("/api/v1/clients/{c}/feed"))
        .await;
    assert_eq!(
        own["items"].as_array().unwrap().len(),
        3,
        "the owner sees all"
    );
    assert_eq!(
        app.get(Some(&m2), &format!("/api/v1/interests/{}", i["id"]))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // m2 may open an Interest on the shared client: it becomes m2's, not a 403.
    let (status, mine) = app
        .post(
            Some(&m2),
            "/api/v1/interests",
            &json!({"title": "My deal", "client_id": c}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    assert_eq!(mine["responsible_id"], m2.id);

    // An operator of B logging a call from m1's number does not learn the client.
    let unshared = app
        .post(
            Some(&m1),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "Hidden",
            "identities": [{"kind": "phone", "value": "+74957778899"}]}),
        )
        .await
        .1;
    let seq = app.last_seq().await;
    let (status, call) = app
        .post(
            Some(&ob),
            "/api/v1/calls",
            &json!({"connector_id": "pbx", "external_id": "p-2", "direction": "inbound",
            "from_number": "+74957778899", "to_number": "102", "operator_id": ob.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert!(call["client_id"].is_null(), "{call}");
    assert!(app.last_seq().await > seq);
    let (_, hidden_feed) = app
        .get(
            Some(&m1),
            &format!("/api/v1/clients/{}/feed", unshared["id"]),
        )
        .await;
    assert!(
        hidden_feed["items"].as_array().unwrap().is_empty(),
        "no entry in a client the caller could not see"
    );

    // ...and may not put someone else on a call.
    let seq = app.last_seq().await;
    let other = app
        .post(
            Some(&ob),
            "/api/v1/calls",
            &json!({"connector_id": "pbx", "external_id": "p-3", "direction": "inbound",
            "from_number": "+74950000001", "to_number": "102", "operator_id": m2.id}),
        )
        .await;
    assert_error(&other, StatusCode::FORBIDDEN, "forbidden", None);
    assert_eq!(app.last_seq().await, seq);
    // A PBX key recognises the caller for everyone.
    let pbx = app.api_key(&[kommutator::domain::Scope::CallsWrite]).await;
    let (_, k) = app
        .post(
            Some(&pbx),
            "/api/v1/calls",
            &json!({"connector_id": "pbx", "external_id": "p-4", "direction": "inbound",
            "from_number": "8 495 777-88-99", "to_number": "101", "operator_id": m1.id}),
        )
        .await;
    assert_eq!(k["client_id"], unshared["id"]);
}

/// Name search checks access on its own copy of the ownership: it must follow every change.
#[tokio::test]
async fn search_follows_sharing_and_reassignment() {
    let app = spawn_app().await;
    let a = app.department("A").await;
    let m1 = app.user("m1", Role::Manager, Some(a)).await;
    let m2 = app.user("m2", Role::Manager, Some(a)).await;
    let (_, c) = app
        .post(
            Some(&m1),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "ООО Кварц"}),
        )
        .await;
    let c = c["id"].as_i64().unwrap();
    let finds = |who: &Principal, q: &str| {
        let (app, who, q) = (&app, who.clone(), q.to_owned());
        async move {
            let (status, page) = app.get(Some(&who), &format!("/api/v1/clients?q={q}")).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == c)
        }
    };
    assert!(finds(&m1, "кварц").await && !finds(&m2, "кварц").await);
    app.patch(
        Some(&m1),
        &format!("/api/v1/clients/{c}"),
        &json!({"shared": true}),
    )
    .await;
    assert!(finds(&m2, "кварц").await, "shared with the department");
    app.patch(
        Some(&app.admin),
        &format!("/api/v1/clients/{c}"),
        &json!({"responsible_id": m2.id, "shared": false}),
    )
    .await;
    assert!(
        finds(&m2, "кварц").await && !finds(&m1, "кварц").await,
        "reassigned and unshared"
    );
    app.patch(
        Some(&m2),
        &format!("/api/v1/clients/{c}"),
        &json!({"name": "ООО Гранит"}),
    )
    .await;
    assert!(
        finds(&m2, "гранит").await && !finds(&m2, "кварц").await && !finds(&m1, "гранит").await,
        "renamed"
    );
    assert!(finds(&app.admin, "гран").await);
}

/// Replays, references and error messages do not reveal records the actor may not see.
#[tokio::test]
async fn replays_and_references_reveal_nothing() {
    let app = spawn_app().await;
    let a = app.department("A").await;
    let b = app.department("B").await;
    let m1 = app.user("m1", Role::Manager, Some(a)).await;
    let mb = app.user("mb", Role::Manager, Some(b)).await;
    let pbx = app.api_key(&[kommutator::domain::Scope::CallsWrite]).await;
    let (_, c) = app
        .post(Some(&m1), "/api/v1/clients", &json!({"kind": "company", "name": "Hidden Co", "identities": [{"kind": "phone", "value": "+74951230000"}]}))
        .await;
    let c = c["id"].as_i64().unwrap();
    let (_, ct) = app
        .post(
            Some(&m1),
            &format!("/api/v1/clients/{c}/contacts"),
            &json!({"name": "Secret Person"}),
        )
        .await;
    let ct = ct["id"].as_i64().unwrap();
    let call = json!({"connector_id": "pbx", "external_id": "call-1", "direction": "inbound", "from_number": "+74951230000", "to_number": "100"});
    assert_eq!(
        app.post(Some(&pbx), "/api/v1/calls", &call).await.0,
        StatusCode::CREATED
    );

    let seq = app.last_seq().await;
    let replay = app.post(Some(&mb), "/api/v1/calls", &call).await;
    assert_error(
        &replay,
        StatusCode::CONFLICT,
        "conflict",
        Some("external_id"),
    );
    assert!(
        replay.1.get("client_id").is_none() && !replay.1.to_string().contains("74951230000"),
        "{}",
        replay.1
    );
    let (_, own) = app.post(Some(&pbx), "/api/v1/calls", &call).await;
    assert_eq!(
        own["client_id"], c,
        "the PBX's own replay still answers with the call"
    );

    // A hidden contact looks exactly like a missing one.
    let hidden = app
        .post(Some(&mb), "/api/v1/dialogs", &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "t1", "contact_id": ct}))
        .await;
    let missing = app
        .post(Some(&mb), "/api/v1/dialogs", &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "t2", "contact_id": 999_999}))
        .await;
    assert_error(
        &hidden,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_found",
        Some("contact_id"),
    );
    assert_eq!(
        hidden.1["error"]["message"],
        format!("contact {ct} does not exist")
    );
    assert_error(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_found",
        Some("contact_id"),
    );
    assert_eq!(app.last_seq().await, seq, "nothing written");

    // An identity given with another party is refused, not silently mixed.
    let (_, other) = app
        .post(
            Some(&m1),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "Other"}),
        )
        .await;
    let (_, ident) = app
        .get(
            Some(&m1),
            "/api/v1/identities/lookup?kind=phone&value=%2B74951230000",
        )
        .await;
    let mixed = app
        .post(
            Some(&m1),
            "/api/v1/dialogs",
            &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "t3",
            "identity_id": ident["id"], "client_id": other["id"]}),
        )
        .await;
    assert_error(
        &mixed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_party",
        Some("identity_id"),
    );

    // Users are listed to people, and to keys only with the admin scope.
    assert_error(
        &app.get(Some(&pbx), &format!("/api/v1/users/{}", m1.id))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    assert_eq!(
        app.get(Some(&mb), &format!("/api/v1/users/{}", m1.id))
            .await
            .0,
        StatusCode::OK
    );
}
