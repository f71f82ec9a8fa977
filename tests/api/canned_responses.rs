//! Canned responses: personal, per department and global; who uses and who manages which,
//! the shortcut rules, the `q` filter, and bad and hostile input.
//!
//! The cast: departments Sales and Support; in Sales the supervisor `sup_a` and the
//! operators `op_a1` and `op_a2`; in Support the supervisor `sup_b` and the operator `op_b`;
//! the admin belongs to no department.

use kommutator::domain::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const PATH: &str = "/api/v1/canned-responses";

struct Cast {
    app: TestApp,
    sales: i64,
    support: i64,
    sup_a: Principal,
    op_a1: Principal,
    op_a2: Principal,
    sup_b: Principal,
    op_b: Principal,
}

async fn cast() -> Cast {
    let app = spawn_app().await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    Cast {
        sup_a: app.user("sup_a", Role::Supervisor, Some(sales)).await,
        op_a1: app.user("op_a1", Role::Operator, Some(sales)).await,
        op_a2: app.user("op_a2", Role::Operator, Some(sales)).await,
        sup_b: app.user("sup_b", Role::Supervisor, Some(support)).await,
        op_b: app.user("op_b", Role::Operator, Some(support)).await,
        app,
        sales,
        support,
    }
}

/// Creates a canned response as `who`; it must succeed.
async fn create(app: &TestApp, who: &Principal, body: Value) -> Value {
    let (status, c) = app.post(Some(who), PATH, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}: {c}");
    c
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

/// What `who` lists (with `query`, e.g. `?q=...`), as `(id, scope, shortcut)`.
async fn listed(app: &TestApp, who: &Principal, query: &str) -> Vec<(i64, String, String)> {
    let (status, list) = app.get(Some(who), &format!("{PATH}{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {list}");
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|c| {
            (
                id(c),
                c["scope"].as_str().unwrap().to_owned(),
                c["shortcut"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn listed_ids(app: &TestApp, who: &Principal, query: &str) -> Vec<i64> {
    listed(app, who, query)
        .await
        .into_iter()
        .map(|c| c.0)
        .collect()
}

/// Percent-encodes a query value (UTF-8 bytes).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends a request that must fail with `status` and `code` (and `field`) and write nothing.
async fn refused(
    app: &TestApp,
    who: Option<&Principal>,
    method: Method,
    path: String,
    body: Option<Value>,
    expect: (StatusCode, &str, Option<&str>),
) {
    let before = app.last_seq().await;
    let got = app.request(method.clone(), who, &path, body.as_ref()).await;
    assert!(
        got.0 == expect.0
            && got.1["error"]["code"] == expect.1
            && expect.2.is_none_or(|f| got.1["error"]["field"] == f),
        "{method} {path} {body:?}: expected {expect:?}, got {} {}",
        got.0,
        got.1
    );
    assert_error(&got, expect.0, expect.1, expect.2);
    assert_eq!(
        app.last_seq().await,
        before,
        "{method} {path} wrote something"
    );
}

#[tokio::test]
async fn each_scope_is_made_by_whom_it_belongs_to_and_listed_for_whom_may_use_it() {
    let Cast {
        app,
        sales,
        support,
        sup_a,
        op_a1,
        op_a2,
        sup_b,
        op_b,
    } = cast().await;
    let admin = &app.admin;

    // Personal: any user, for themselves; the shortcut is trimmed and lowercased.
    let mine = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "  Hello ", "title": "Greeting", "body": "Hi!\nHow can I help?"}),
    )
    .await;
    assert_eq!(mine["scope"], "personal");
    assert_eq!(mine["user_id"], op_a1.id);
    assert_eq!(mine["department_id"], Value::Null);
    assert_eq!(mine["shortcut"], "hello");
    assert_eq!(mine["title"], "Greeting");
    assert_eq!(mine["body"], "Hi!\nHow can I help?");
    assert!(mine["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(mine["created_at"], mine["updated_at"]);
    let keys: Vec<&String> = mine.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        9,
        "id, scope, department_id, user_id, shortcut, title, body, created_at, updated_at: {mine}"
    );

    // Department: a supervisor for their own (department_id defaults to it), an admin for any.
    let sales_price = create(
        &app,
        &sup_a,
        json!({"scope": "department", "shortcut": "price", "title": "Price list", "body": "Our prices: …"}),
    )
    .await;
    assert_eq!(
        (
            &sales_price["department_id"],
            &sales_price["user_id"],
            &sales_price["scope"]
        ),
        (&json!(sales), &Value::Null, &json!("department"))
    );
    let support_price = create(
        &app,
        admin,
        json!({"scope": "department", "department_id": support, "shortcut": "price", "title": "Prices (support)", "body": "See the price list"}),
    )
    .await;
    assert_eq!(support_price["department_id"], support);
    let support_faq = create(
        &app,
        &sup_b,
        json!({"scope": "department", "department_id": support, "shortcut": "faq", "title": "FAQ", "body": "https://example.com/faq"}),
    )
    .await;
    // Global: admins; the same shortcut as a department's and a user's is fine.
    let global_price = create(
        &app,
        admin,
        json!({"scope": "global", "shortcut": "price", "title": "Prices", "body": "Prices are on the site"}),
    )
    .await;
    assert_eq!(
        (&global_price["department_id"], &global_price["user_id"]),
        (&Value::Null, &Value::Null)
    );
    let mine_price = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "price", "title": "My prices", "body": "Let me check"}),
    )
    .await;
    let colleague = create(
        &app,
        &op_a2,
        json!({"scope": "personal", "shortcut": "hello", "title": "Hello", "body": "Hello there"}),
    )
    .await;

    // Each lists what they may use: by shortcut, then personal, department, global.
    let s = |v: &str| v.to_owned();
    assert_eq!(
        listed(&app, &op_a1, "").await,
        vec![
            (id(&mine), s("personal"), s("hello")),
            (id(&mine_price), s("personal"), s("price")),
            (id(&sales_price), s("department"), s("price")),
            (id(&global_price), s("global"), s("price")),
        ]
    );
    assert_eq!(
        listed_ids(&app, &op_a2, "").await,
        vec![id(&colleague), id(&sales_price), id(&global_price)]
    );
    assert_eq!(
        listed_ids(&app, &sup_a, "").await,
        vec![id(&sales_price), id(&global_price)]
    );
    // Another department's operator sees neither Sales' nor a Sales colleague's own.
    assert_eq!(
        listed_ids(&app, &op_b, "").await,
        vec![id(&support_faq), id(&support_price), id(&global_price)]
    );
    // The admin belongs to no department: the global ones (and their own, of which none).
    assert_eq!(listed_ids(&app, admin, "").await, vec![id(&global_price)]);
    // An API key with dialogs:read: the global ones and every department's, no one's own.
    let key = app.api_key(&[Scope::DialogsRead]).await;
    assert_eq!(
        listed_ids(&app, &key, "").await,
        vec![
            id(&support_faq),
            id(&sales_price),
            id(&support_price),
            id(&global_price)
        ]
    );
    let wrong_key = app.api_key(&[Scope::ClientsRead]).await;
    refused(
        &app,
        Some(&wrong_key),
        Method::GET,
        PATH.into(),
        None,
        (StatusCode::FORBIDDEN, "forbidden", None),
    )
    .await;
    refused(
        &app,
        None,
        Method::GET,
        PATH.into(),
        None,
        (StatusCode::UNAUTHORIZED, "unauthenticated", None),
    )
    .await;

    // The audit trail has them, on their owner's topic.
    let entries = app
        .store
        .audit(Some("canned_response"), Some(id(&mine)), 10, None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].op, "create");
    assert_eq!(entries[0].actor_user_id, Some(op_a1.id));
    assert_eq!(entries[0].owner_id, Some(op_a1.id));
    assert_eq!(
        entries[0]
            .topics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![format!("user:{}", op_a1.id)]
    );
    assert_eq!(entries[0].data["shortcut"], "hello");
    let entries = app
        .store
        .audit(Some("canned_response"), Some(id(&sales_price)), 10, None)
        .await
        .unwrap();
    assert_eq!(entries[0].department_id, Some(sales));
    assert_eq!(
        entries[0]
            .topics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![format!("dept:{sales}")]
    );
    let entries = app
        .store
        .audit(Some("canned_response"), Some(id(&global_price)), 10, None)
        .await
        .unwrap();
    assert!(entries[0].topics.is_empty());

    // The endpoints are in the OpenAPI document.
    let (_, doc) = app.get(None, "/api/v1/openapi.json").await;
    for (path, method) in [
        (PATH, "get"),
        (PATH, "post"),
        ("/api/v1/canned-responses/{id}", "patch"),
        ("/api/v1/canned-responses/{id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(doc["components"]["schemas"]["CannedResponse"].is_object());
}

#[tokio::test]
async fn only_owners_and_managers_change_what_they_may() {
    let Cast {
        app,
        sales,
        support,
        sup_a,
        op_a1,
        op_a2,
        sup_b,
        op_b,
    } = cast().await;
    let admin = &app.admin;
    let fine = |scope: &str| json!({"scope": scope, "shortcut": "x", "title": "X", "body": "x"});
    let fine_in = |d: i64| json!({"scope": "department", "department_id": d, "shortcut": "x", "title": "X", "body": "x"});
    const S403: (StatusCode, &str, Option<&str>) = (StatusCode::FORBIDDEN, "forbidden", None);
    const S404: (StatusCode, &str, Option<&str>) = (StatusCode::NOT_FOUND, "not_found", None);

    // Creating: operators only their own; supervisors their department's; admins all.
    for (who, body) in [
        (&op_a1, fine("department")),
        (&op_a1, fine_in(sales)),
        (&op_a1, fine("global")),
        (&sup_a, fine_in(support)),
        (&sup_a, fine("global")),
        (&op_b, fine_in(sales)),
    ] {
        refused(&app, Some(who), Method::POST, PATH.into(), Some(body), S403).await;
    }
    let lone_sup = app.user("lone_sup", Role::Supervisor, None).await;
    refused(
        &app,
        Some(&lone_sup),
        Method::POST,
        PATH.into(),
        Some(fine("department")),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "required",
            Some("department_id"),
        ),
    )
    .await;
    refused(
        &app,
        Some(admin),
        Method::POST,
        PATH.into(),
        Some(fine_in(999_999)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_found",
            Some("department_id"),
        ),
    )
    .await;
    for scope in ["personal", "global"] {
        let mut body = fine(scope);
        body["department_id"] = json!(sales);
        refused(
            &app,
            Some(admin),
            Method::POST,
            PATH.into(),
            Some(body),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                Some("department_id"),
            ),
        )
        .await;
    }
    // API keys: dialogs:write to write at all, and the admin scope for departments and
    // everyone; a key has no personal responses.
    let reader = app.api_key(&[Scope::DialogsRead]).await;
    let writer = app.api_key(&[Scope::DialogsWrite]).await;
    let admin_key = app.api_key(&[Scope::DialogsWrite, Scope::Admin]).await;
    refused(
        &app,
        Some(&reader),
        Method::POST,
        PATH.into(),
        Some(fine("global")),
        S403,
    )
    .await;
    for scope in ["personal", "global"] {
        refused(
            &app,
            Some(&writer),
            Method::POST,
            PATH.into(),
            Some(fine(scope)),
            S403,
        )
        .await;
    }
    refused(
        &app,
        Some(&writer),
        Method::POST,
        PATH.into(),
        Some(fine_in(sales)),
        S403,
    )
    .await;
    refused(
        &app,
        Some(&admin_key),
        Method::POST,
        PATH.into(),
        Some(fine("personal")),
        S403,
    )
    .await;
    let by_key = create(&app, &admin_key, fine_in(sales)).await;
    assert_eq!(by_key["department_id"], sales);

    let personal = id(&create(&app, &op_a1, fine("personal")).await);
    let sales_dept = id(&create(
        &app,
        &sup_a,
        json!({"scope": "department", "shortcut": "y", "title": "Y", "body": "y"}),
    )
    .await);
    let support_dept = id(&create(&app, &sup_b, fine("department")).await);
    let global = id(&create(&app, admin, fine("global")).await);
    let item = |id: i64| format!("{PATH}/{id}");
    let patch = || Some(json!({"title": "Changed"}));

    // A colleague's own does not exist for anyone else, admins and supervisors included.
    for who in [&op_a2, &sup_a, &op_b, admin] {
        refused(
            &app,
            Some(who),
            Method::PATCH,
            item(personal),
            patch(),
            S404,
        )
        .await;
        refused(&app, Some(who), Method::DELETE, item(personal), None, S404).await;
    }
    refused(
        &app,
        Some(&admin_key),
        Method::PATCH,
        item(personal),
        patch(),
        S404,
    )
    .await;
    // Another department's does not exist for its outsiders.
    for who in [&op_b, &sup_b] {
        refused(
            &app,
            Some(who),
            Method::PATCH,
            item(sales_dept),
            patch(),
            S404,
        )
        .await;
        refused(
            &app,
            Some(who),
            Method::DELETE,
            item(sales_dept),
            None,
            S404,
        )
        .await;
    }
    refused(
        &app,
        Some(&op_a1),
        Method::PATCH,
        item(support_dept),
        patch(),
        S404,
    )
    .await;
    // Visible but not theirs to change: 403.
    for (who, target) in [
        (&op_a1, sales_dept),
        (&op_a1, global),
        (&sup_a, global),
        (&op_b, global),
        (&op_b, support_dept),
    ] {
        refused(&app, Some(who), Method::PATCH, item(target), patch(), S403).await;
        refused(&app, Some(who), Method::DELETE, item(target), None, S403).await;
    }
    refused(
        &app,
        Some(&writer),
        Method::PATCH,
        item(global),
        patch(),
        S403,
    )
    .await;
    refused(
        &app,
        Some(&reader),
        Method::PATCH,
        item(global),
        patch(),
        S403,
    )
    .await;
    // No such response.
    refused(
        &app,
        Some(admin),
        Method::PATCH,
        item(999_999),
        patch(),
        S404,
    )
    .await;
    refused(&app, Some(admin), Method::DELETE, item(999_999), None, S404).await;

    // Whoever may create one may change it.
    for (who, target) in [
        (&op_a1, personal),
        (&sup_a, sales_dept),
        (admin, sales_dept),
        (admin, support_dept),
        (&sup_b, support_dept),
        (admin, global),
        (&admin_key, global),
    ] {
        let (status, c) = app
            .patch(
                Some(who),
                &item(target),
                &json!({"body": format!("by {}", who.id)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{target}: {c}");
        assert_eq!(c["body"], format!("by {}", who.id));
    }
    assert_eq!(
        app.delete(Some(&sup_b), &item(support_dept)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(Some(admin), &item(sales_dept)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(Some(&op_a1), &item(personal)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        listed_ids(&app, &op_a1, "").await,
        vec![id(&by_key), global]
    );
}

#[tokio::test]
async fn changes_and_deletes_write_only_what_changed() {
    let Cast { app, op_a1, .. } = cast().await;
    let c = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "thanks", "title": "Thanks", "body": "Thank you!"}),
    )
    .await;
    let other = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "bye", "title": "Bye", "body": "Goodbye"}),
    )
    .await;
    let path = format!("{PATH}/{}", id(&c));

    let (status, changed) = app
        .patch(Some(&op_a1), &path, &json!({"title": "Thank you"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (&changed["title"], &changed["shortcut"], &changed["body"]),
        (&json!("Thank you"), &json!("thanks"), &json!("Thank you!"))
    );
    assert_eq!(changed["created_at"], c["created_at"]);
    assert_ne!(changed["updated_at"], c["updated_at"]);
    let (status, changed) = app
        .patch(
            Some(&op_a1),
            &path,
            &json!({"shortcut": " Спасибо ", "body": "Спасибо!\n\tДо свидания"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["shortcut"], "спасибо");
    assert_eq!(changed["body"], "Спасибо!\n\tДо свидания");

    // Nothing to change: 200 with the response as it is, nothing written.
    let seq = app.last_seq().await;
    for same in [
        json!({}),
        json!({"shortcut": "СПАСИБО", "title": "Thank you"}),
        json!({"title": null}),
    ] {
        let (status, got) = app.patch(Some(&op_a1), &path, &same).await;
        assert_eq!(status, StatusCode::OK, "{same}: {got}");
        assert_eq!(got, changed);
    }
    assert_eq!(app.last_seq().await, seq);

    // The owner, the scope and the department are not for changing; a taken shortcut is a
    // duplicate.
    for (body, code, field) in [
        (json!({"scope": "global"}), "unknown_field", "scope"),
        (
            json!({"department_id": 1}),
            "unknown_field",
            "department_id",
        ),
        (json!({"user_id": 1}), "unknown_field", "user_id"),
        (json!({"id": 5}), "unknown_field", "id"),
    ] {
        refused(
            &app,
            Some(&op_a1),
            Method::PATCH,
            path.clone(),
            Some(body),
            (StatusCode::UNPROCESSABLE_ENTITY, code, Some(field)),
        )
        .await;
    }
    refused(
        &app,
        Some(&op_a1),
        Method::PATCH,
        path.clone(),
        Some(json!({"shortcut": "BYE"})),
        (StatusCode::CONFLICT, "duplicate", Some("shortcut")),
    )
    .await;

    // Delete: gone from the list, gone for PATCH and DELETE; its shortcut is free again.
    assert_eq!(
        app.delete(Some(&op_a1), &path).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(listed_ids(&app, &op_a1, "").await, vec![id(&other)]);
    refused(
        &app,
        Some(&op_a1),
        Method::DELETE,
        path.clone(),
        None,
        (StatusCode::NOT_FOUND, "not_found", None),
    )
    .await;
    refused(
        &app,
        Some(&op_a1),
        Method::PATCH,
        path.clone(),
        Some(json!({"title": "Back"})),
        (StatusCode::NOT_FOUND, "not_found", None),
    )
    .await;
    create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "спасибо", "title": "Again", "body": "Again"}),
    )
    .await;

    // The audit trail: create, two updates, delete.
    let ops: Vec<String> = app
        .store
        .audit(Some("canned_response"), Some(id(&c)), 10, None)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.op)
        .collect();
    assert_eq!(ops, ["create", "update", "update", "delete"]);
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let Cast { app, op_a1, .. } = cast().await;
    let ok = json!({"scope": "personal", "shortcut": "ok", "title": "Title", "body": "Body"});
    let with = |key: &str, v: Value| {
        let mut b = ok.clone();
        b[key] = v;
        b
    };
    let without = |key: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    let long = |n: usize| "ж".repeat(n);
    const S422: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
    #[rustfmt::skip]
    let cases: Vec<(Value, &str, &str)> = vec![
        (with("shortcut", json!("")), "required", "shortcut"),
        (with("shortcut", json!("  \t ")), "required", "shortcut"),
        (with("shortcut", json!("a".repeat(33))), "too_long", "shortcut"),
        (with("shortcut", json!(long(33))), "too_long", "shortcut"),
        (with("shortcut", json!("two words")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("/hello")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("a.b")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("привет!")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("über")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("a\u{0}")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("a\nb")), "invalid_shortcut", "shortcut"),
        (with("shortcut", json!("👋")), "invalid_shortcut", "shortcut"),
        (with("title", json!("")), "required", "title"),
        (with("title", json!("   ")), "required", "title"),
        (with("title", json!(long(201))), "too_long", "title"),
        (with("title", json!("two\nlines")), "invalid_characters", "title"),
        (with("title", json!("tab\there")), "invalid_characters", "title"),
        (with("title", json!("nul\u{0}")), "invalid_characters", "title"),
        (with("body", json!("")), "required", "body"),
        (with("body", json!("\n\n")), "required", "body"),
        (with("body", json!(long(4_001))), "too_long", "body"),
        (with("body", json!("bell\u{7}")), "invalid_characters", "body"),
        (with("body", json!("\u{1b}[31mred")), "invalid_characters", "body"),
        (with("body", json!("nul\u{0}")), "invalid_characters", "body"),
        (with("extra", json!(1)), "unknown_field", "extra"),
        (with("user_id", json!(1)), "unknown_field", "user_id"),
        (with("Shortcut", json!("x")), "unknown_field", "Shortcut"),
        (with("shortcut", json!(5)), "invalid_type", "shortcut"),
        (with("shortcut", json!(null)), "invalid_type", "shortcut"),
        (with("title", json!(["a"])), "invalid_type", "title"),
        (with("body", json!({"text": "a"})), "invalid_type", "body"),
        (with("body", json!(true)), "invalid_type", "body"),
        (with("scope", json!(1)), "invalid_type", "scope"),
        (with("scope", json!("team")), "invalid_value", "scope"),
        (with("scope", json!("Personal")), "invalid_value", "scope"),
        (with("department_id", json!("1")), "invalid_type", "department_id"),
        (with("department_id", json!(1.5)), "invalid_type", "department_id"),
        (without("scope"), "missing_field", "scope"),
        (without("shortcut"), "missing_field", "shortcut"),
        (without("title"), "missing_field", "title"),
        (without("body"), "missing_field", "body"),
    ];
    let n = cases.len();
    for (body, code, field) in cases {
        refused(
            &app,
            Some(&op_a1),
            Method::POST,
            PATH.into(),
            Some(body),
            (S422, code, Some(field)),
        )
        .await;
    }

    // PATCH checks the same rules on the fields it gets.
    let c = create(&app, &op_a1, ok.clone()).await;
    let path = format!("{PATH}/{}", id(&c));
    #[rustfmt::skip]
    let patches: Vec<(Value, &str, &str)> = vec![
        (json!({"shortcut": ""}), "required", "shortcut"),
        (json!({"shortcut": "a b"}), "invalid_shortcut", "shortcut"),
        (json!({"shortcut": "a".repeat(33)}), "too_long", "shortcut"),
        (json!({"title": ""}), "required", "title"),
        (json!({"title": long(201)}), "too_long", "title"),
        (json!({"title": "a\rb"}), "invalid_characters", "title"),
        (json!({"body": " "}), "required", "body"),
        (json!({"body": long(4_001)}), "too_long", "body"),
        (json!({"body": "\u{8}"}), "invalid_characters", "body"),
        (json!({"title": 5}), "invalid_type", "title"),
        (json!({"body": ["x"]}), "invalid_type", "body"),
        (json!({"titel": "x"}), "unknown_field", "titel"),
        (json!({"title": "ok", "body": "\u{0}"}), "invalid_characters", "body"),
    ];
    let n = n + patches.len();
    for (body, code, field) in patches {
        refused(
            &app,
            Some(&op_a1),
            Method::PATCH,
            path.clone(),
            Some(body),
            (S422, code, Some(field)),
        )
        .await;
    }
    let (_, still) = app.get(Some(&op_a1), PATH).await;
    assert_eq!(still, json!([c]), "only the one good response is stored");

    // Broken bodies, the wrong media type, bad ids and bad queries.
    for (method, path) in [
        (Method::POST, PATH.to_owned()),
        (Method::PATCH, path.clone()),
    ] {
        for (ct, raw, status, code) in [
            (
                "application/json",
                "{",
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                "application/json",
                "",
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            ("application/json", "[]", S422, "invalid_type"),
            ("application/json", "\"x\"", S422, "invalid_type"),
            (
                "text/plain",
                "{}",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
        ] {
            let before = app.last_seq().await;
            let got = app
                .raw(
                    method.clone(),
                    Some(&op_a1),
                    &path,
                    ct,
                    raw.as_bytes().to_vec(),
                )
                .await;
            assert_error(&got, status, code, None);
            assert_eq!(app.last_seq().await, before);
        }
    }
    for bad in [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "1%27%20OR%201%3D1",
    ] {
        refused(
            &app,
            Some(&op_a1),
            Method::PATCH,
            format!("{PATH}/{bad}"),
            Some(json!({"title": "x"})),
            (StatusCode::BAD_REQUEST, "invalid_path", None),
        )
        .await;
        refused(
            &app,
            Some(&op_a1),
            Method::DELETE,
            format!("{PATH}/{bad}"),
            None,
            (StatusCode::BAD_REQUEST, "invalid_path", None),
        )
        .await;
    }
    for query in [
        format!("?q={}", enc(&"я".repeat(101))),
        "?query=x".to_owned(),
        "?q=a&limit=5".to_owned(),
    ] {
        refused(
            &app,
            Some(&op_a1),
            Method::GET,
            format!("{PATH}{query}"),
            None,
            (StatusCode::BAD_REQUEST, "invalid_query", None),
        )
        .await;
    }
    assert_eq!(
        listed_ids(&app, &op_a1, &format!("?q={}", enc(&"я".repeat(100)))).await,
        Vec::<i64>::new()
    );
    eprintln!(
        "canned responses, bad input: {n} cases on {}",
        backend_name()
    );

    // The limits themselves are accepted, counted in characters.
    let edge = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "ё".repeat(32), "title": long(200), "body": long(4_000)}),
    )
    .await;
    assert_eq!(edge["body"].as_str().unwrap().chars().count(), 4_000);
}

#[tokio::test]
async fn a_shortcut_is_unique_per_owner() {
    let Cast {
        app,
        sales,
        support,
        sup_a,
        op_a1,
        op_a2,
        ..
    } = cast().await;
    let admin = &app.admin;
    let body = |scope: &str, shortcut: &str| json!({"scope": scope, "shortcut": shortcut, "title": "T", "body": "B"});
    let in_dept = |d: i64, shortcut: &str| json!({"scope": "department", "department_id": d, "shortcut": shortcut, "title": "T", "body": "B"});
    const DUP: (StatusCode, &str, Option<&str>) =
        (StatusCode::CONFLICT, "duplicate", Some("shortcut"));

    // One of each owner with the same shortcut: all fine.
    create(&app, &op_a1, body("personal", "hi")).await;
    create(&app, &op_a2, body("personal", "hi")).await;
    create(&app, &sup_a, body("personal", "hi")).await;
    create(&app, &sup_a, body("department", "hi")).await;
    create(&app, admin, in_dept(support, "hi")).await;
    create(&app, admin, body("global", "hi")).await;
    create(&app, admin, body("personal", "hi")).await;

    // The same owner twice: 409, however the shortcut is spelled.
    for (who, b) in [
        (&op_a1, body("personal", "hi")),
        (&op_a1, body("personal", " HI ")),
        (&sup_a, in_dept(sales, "Hi")),
        (admin, in_dept(sales, "hi")),
        (admin, in_dept(support, "hi")),
        (admin, body("global", "hi")),
    ] {
        refused(&app, Some(who), Method::POST, PATH.into(), Some(b), DUP).await;
    }
    assert_eq!(listed(&app, &op_a1, "").await.len(), 3);

    // Concurrent creates of one shortcut: the database lets exactly one through.
    let tries = (0..6).map(|i| {
        let app = &app;
        async move {
            app.post(
                Some(&app.admin),
                PATH,
                &json!({"scope": "global", "shortcut": "race", "title": format!("T{i}"), "body": "B"}),
            )
            .await
        }
    });
    let results = futures::future::join_all(tries).await;
    let created = results
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert_error(r, StatusCode::CONFLICT, "duplicate", Some("shortcut"));
    }
}

/// The database itself keeps one shortcut per owner and the owner columns in step with the
/// scope, whatever writes to it.
#[tokio::test]
async fn the_database_enforces_the_owner_rules() {
    use kommutator::domain::{Actor, NewDepartment, NewUser};
    use kommutator::storage::Store;

    let store = fresh_store().await;
    let dept = store
        .create_department(&Actor::System, &NewDepartment { name: "D".into() })
        .await
        .unwrap()
        .id;
    let mut users = Vec::new();
    for login in ["u1", "u2"] {
        let u = store
            .create_user(
                &Actor::System,
                &NewUser {
                    login: login.into(),
                    name: login.into(),
                    email: None,
                    role: Role::Operator,
                    department_id: Some(dept),
                    password: PASSWORD.into(),
                    must_change_password: false,
                },
                "x",
            )
            .await
            .unwrap();
        users.push(u.id);
    }
    let insert = |scope: &'static str, d: Option<i64>, u: Option<i64>, shortcut: &'static str| {
        sqlx::query(
            "INSERT INTO canned_responses (scope, department_id, user_id, shortcut, title, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 't', 'b', 0, 0)",
        )
        .bind(scope)
        .bind(d)
        .bind(u)
        .bind(shortcut)
        .execute(store.pool())
    };
    for (scope, d, u) in [
        ("personal", None, Some(users[0])),
        ("personal", None, Some(users[1])),
        ("department", Some(dept), None),
        ("global", None, None),
    ] {
        insert(scope, d, u, "s").await.unwrap();
        let again = insert(scope, d, u, "s").await.expect_err("duplicate");
        assert!(
            again
                .as_database_error()
                .is_some_and(|e| e.is_unique_violation()),
            "{scope}: {again}"
        );
    }
    for (scope, d, u) in [
        ("personal", None, None),
        ("personal", Some(dept), Some(users[0])),
        ("department", None, None),
        ("department", Some(dept), Some(users[0])),
        ("global", Some(dept), None),
        ("global", None, Some(users[0])),
        ("team", None, None),
    ] {
        insert(scope, d, u, "other")
            .await
            .expect_err("the owner columns must match the scope");
    }
}

#[tokio::test]
async fn q_keeps_shortcut_prefixes_and_title_matches_in_any_case() {
    let Cast { app, op_a1, .. } = cast().await;
    let mut ids = std::collections::HashMap::new();
    for (shortcut, title) in [
        ("privet", "Привет и добро пожаловать"),
        ("price", "Price list"),
        ("прайс", "Цены"),
        ("bye", "Goodbye, see the PRICE list"),
        ("ёлка", "Новый год"),
    ] {
        let c = create(
            &app,
            &op_a1,
            json!({"scope": "personal", "shortcut": shortcut, "title": title, "body": "…"}),
        )
        .await;
        ids.insert(shortcut, id(&c));
    }
    let of = |names: &[&str]| names.iter().map(|n| ids[n]).collect::<Vec<_>>();
    for (q, expect) in [
        ("привет", of(&["privet"])),
        ("ПРИВЕТ", of(&["privet"])),
        ("ДОБРО", of(&["privet"])),
        ("и добро", of(&["privet"])),
        ("при", of(&["privet"])),
        ("пра", of(&["прайс"])),
        ("ЦЕН", of(&["прайс"])),
        ("Ёл", of(&["ёлка"])),
        ("pr", of(&["bye", "price", "privet"])),
        ("PRI", of(&["bye", "price", "privet"])),
        ("ice", of(&["bye", "price"])),
        (" price ", of(&["bye", "price"])),
        ("", of(&["bye", "price", "privet", "прайс", "ёлка"])),
        ("   ", of(&["bye", "price", "privet", "прайс", "ёлка"])),
        ("zzz", vec![]),
        ("%", vec![]),
        ("_", vec![]),
        ("' OR 1=1 --", vec![]),
    ] {
        assert_eq!(
            listed_ids(&app, &op_a1, &format!("?q={}", enc(q))).await,
            expect,
            "q = {q:?}"
        );
    }
}

#[tokio::test]
async fn hostile_input_is_refused_or_stored_verbatim() {
    let Cast {
        app, op_a1, op_b, ..
    } = cast().await;
    let seq = app.last_seq().await;

    // Over the body size limit: 413, before anything is parsed or stored.
    let huge = json!({"scope": "personal", "shortcut": "big", "title": "Big", "body": "x".repeat(2 * 1024 * 1024)});
    let got = app
        .raw(
            Method::POST,
            Some(&op_a1),
            PATH,
            "application/json",
            huge.to_string().into_bytes(),
        )
        .await;
    assert_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    // Under it but over the field's limit: 422.
    let big = json!({"scope": "personal", "shortcut": "big", "title": "Big", "body": "x".repeat(100_000)});
    let got = app.post(Some(&op_a1), PATH, &big).await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_long",
        Some("body"),
    );
    assert_eq!(app.last_seq().await, seq);

    // SQL-, HTML- and escape-looking text is stored and returned exactly as sent.
    let title = "'; DROP TABLE canned_responses; -- \"quoted\" \\ <b>bold</b> 👋 \u{202e}rtl";
    let body = "Robert'); DELETE FROM users WHERE ('1'='1\n<script>alert(1)</script>\t%s %n ${x} {{x}}\r\nend";
    let c = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "drop_table--1", "title": title, "body": body}),
    )
    .await;
    assert_eq!(
        (c["title"].as_str(), c["body"].as_str()),
        (Some(title), Some(body))
    );
    let (status, list) = app.get(Some(&op_a1), PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([c]));
    let (_, list) = app
        .get(Some(&op_a1), &format!("{PATH}?q={}", enc("DROP TABLE")))
        .await;
    assert_eq!(list, json!([c]));
    // The other tables are still there, and the other operator still sees nothing of it.
    assert_eq!(
        app.get(Some(&app.admin), "/api/v1/users").await.0,
        StatusCode::OK
    );
    assert_eq!(listed_ids(&app, &op_b, "").await, Vec::<i64>::new());
    // A shortcut made of SQL is refused by its character rule before it goes anywhere.
    let seq = app.last_seq().await;
    let got = app
        .post(
            Some(&op_a1),
            PATH,
            &json!({"scope": "personal", "shortcut": "x' OR '1'='1", "title": "t", "body": "b"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_shortcut",
        Some("shortcut"),
    );
    assert_eq!(app.last_seq().await, seq);
}

/// Over the operator socket, a personal response reaches its owner alone (not the
/// supervisor who follows the owner's work), and a department's reaches its members.
#[tokio::test]
async fn the_socket_carries_them_to_whom_they_belong() {
    use crate::ws_client::Ws;

    let Cast {
        app,
        sales,
        sup_a,
        op_a1,
        ..
    } = cast().await;
    let (mut op_ws, _) = Ws::operator(&app, &op_a1).await;
    let (mut sup_ws, _) = Ws::operator(&app, &sup_a).await;
    let me = format!("user:{}", op_a1.id);
    let dept = format!("dept:{sales}");
    for ws in [&mut op_ws, &mut sup_ws] {
        ws.subscribe(&me, None).await;
        ws.subscribe(&dept, None).await;
    }
    let personal = create(
        &app,
        &op_a1,
        json!({"scope": "personal", "shortcut": "mine", "title": "Mine", "body": "Mine"}),
    )
    .await;
    let shared = create(
        &app,
        &sup_a,
        json!({"scope": "department", "shortcut": "ours", "title": "Ours", "body": "Ours"}),
    )
    .await;
    let is_canned = |v: &Value| v["entity"] == "canned_response";
    let first = op_ws.event_where(is_canned).await;
    assert_eq!(
        (&first["entity_id"], &first["op"], &first["topics"]),
        (&personal["id"], &json!("create"), &json!([me]))
    );
    assert_eq!(first["data"], personal);
    let second = op_ws.event_where(is_canned).await;
    assert_eq!(
        (&second["entity_id"], &second["topics"]),
        (&shared["id"], &json!([dept]))
    );
    // Events come in seq order, so the supervisor's first is the department's.
    let got = sup_ws.event_where(is_canned).await;
    assert_eq!(got["entity_id"], shared["id"], "{got}");
    // Nor does a replay of the user's topic hand it over.
    let (replayed, _) = sup_ws.subscribe(&me, Some(0)).await;
    assert!(!replayed.iter().any(is_canned), "{replayed:?}");
    let (replayed, _) = op_ws.subscribe(&me, Some(0)).await;
    assert_eq!(replayed.iter().filter(|v| is_canned(v)).count(), 1);
}
