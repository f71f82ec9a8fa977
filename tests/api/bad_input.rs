//! Bad input on every endpoint family: each case sends one bad request and checks the status,
//! the error code, the message, the field at fault, and that nothing was written (the change
//! log gets an entry for every write, so an unchanged `last_seq` means nothing was stored).
//! Where a listing could show a half-written record, the test looks there too.
//!
//! The cases are tables: `(what, method, path, body, status, code, field)`, run by
//! [`reject`] as one principal.

use base64::Engine;
use kommutator::domain::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const S400: StatusCode = StatusCode::BAD_REQUEST;
const S401: StatusCode = StatusCode::UNAUTHORIZED;
const S403: StatusCode = StatusCode::FORBIDDEN;
const S404: StatusCode = StatusCode::NOT_FOUND;
const S409: StatusCode = StatusCode::CONFLICT;
const S413: StatusCode = StatusCode::PAYLOAD_TOO_LARGE;
const S415: StatusCode = StatusCode::UNSUPPORTED_MEDIA_TYPE;
const S422: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
const S429: StatusCode = StatusCode::TOO_MANY_REQUESTS;

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// The body limit of the default configuration.
const MAX_BODY: usize = 1024 * 1024;

/// What a case sends.
#[derive(Clone)]
enum Body {
    /// No body at all.
    Empty,
    /// JSON, with `Content-Type: application/json`.
    Json(Value),
    /// Raw bytes with this content type.
    Raw(&'static str, Vec<u8>),
}

/// `(what, method, path, body, expected status, expected code, expected field)`.
type Case = (
    &'static str,
    Method,
    String,
    Body,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

fn j(v: Value) -> Body {
    Body::Json(v)
}

/// Raw bytes sent as `application/json`.
fn raw(bytes: impl Into<Vec<u8>>) -> Body {
    Body::Raw("application/json", bytes.into())
}

/// `n` characters of two bytes each, so that limits are checked in characters.
fn long(n: usize) -> String {
    "ж".repeat(n)
}

/// A cursor of another listing's kind: `int` (timestamps, ids) or text (names).
fn foreign_cursor(int: bool) -> String {
    let v = if int { json!([1, 2]) } else { json!(["b", 2]) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn send(
    app: &TestApp,
    who: Option<&Principal>,
    method: Method,
    path: &str,
    body: Body,
) -> (StatusCode, Value) {
    match body {
        Body::Empty => app.request(method, who, path, None).await,
        Body::Json(v) => app.request(method, who, path, Some(&v)).await,
        Body::Raw(ct, bytes) => app.raw(method, who, path, ct, bytes).await,
    }
}

/// Sends every case as `who`; each must fail as expected and write nothing. Returns the
/// number of cases.
async fn reject(app: &TestApp, who: Option<&Principal>, cases: Vec<Case>) -> usize {
    let n = cases.len();
    for (what, method, path, body, status, code, field) in cases {
        let before = app.last_seq().await;
        let got = send(app, who, method.clone(), &path, body).await;
        assert!(
            got.0 == status
                && got.1["error"]["code"] == code
                && field.is_none_or(|f| got.1["error"]["field"] == f),
            "{what}: {method} {path}: expected {status} {code} {field:?}, got {} {}",
            got.0,
            got.1
        );
        assert_error(&got, status, code, field);
        assert_eq!(
            app.last_seq().await,
            before,
            "{what}: {method} {path} must write nothing"
        );
    }
    n
}

/// The same requests without credentials and with a made-up token: 401, nothing written.
async fn reject_strangers(app: &TestApp, routes: &[(Method, String)]) -> usize {
    #[rustfmt::skip]
    let cases = || -> Vec<Case> {
        routes.iter().map(|(m, p)| ("not signed in", m.clone(), p.clone(), j(json!({})), S401, "unauthenticated", None)).collect()
    };
    let stranger = Principal {
        id: 0,
        token: "not-a-session-token".into(),
    };
    reject(app, None, cases()).await + reject(app, Some(&stranger), cases()).await
}

/// Bodies that are not acceptable JSON for `method path`, whatever the endpoint: broken
/// syntax, not an object, the wrong content type, too large. `valid` is a body the endpoint
/// would parse (so that trailing garbage is the only fault).
fn malformed(method: Method, path: &str, valid: &Value) -> Vec<Case> {
    let text = valid.to_string();
    let mut huge = br#"{"name": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_BODY));
    huge.extend(br#""}"#);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(text.as_bytes());
    let truncated = text.as_bytes()[..text.len() - 1].to_vec();
    let as_type = |ct: &'static str| Body::Raw(ct, text.clone().into_bytes());
    #[rustfmt::skip]
    let cases: Vec<(&'static str, Body, StatusCode, &'static str)> = vec![
        ("truncated JSON", raw(truncated), S400, "malformed_json"),
        ("trailing garbage", raw(format!("{text} trailing")), S400, "malformed_json"),
        ("two documents", raw(format!("{text}{text}")), S400, "malformed_json"),
        ("empty body", raw(""), S400, "malformed_json"),
        ("blank body", raw(" \r\n\t "), S400, "malformed_json"),
        ("single quotes", raw("{'name': 'x'}"), S400, "malformed_json"),
        ("a comment", raw(format!("/* hi */ {text}")), S400, "malformed_json"),
        ("invalid UTF-8", raw(b"{\"\xff\xfe\": 1}".to_vec()), S400, "malformed_json"),
        ("lone surrogate", raw(r#"{"\ud800": 1}"#), S400, "malformed_json"),
        ("byte order mark", raw(bom), S400, "malformed_json"),
        ("NaN", raw("NaN"), S400, "malformed_json"),
        ("a string", raw(r#""text""#), S422, "invalid_type"),
        ("a number", raw("42"), S422, "invalid_type"),
        ("null", raw("null"), S422, "invalid_type"),
        ("a boolean", raw("true"), S422, "invalid_type"),
        ("text/plain", as_type("text/plain"), S415, "unsupported_media_type"),
        ("form encoded", Body::Raw("application/x-www-form-urlencoded", b"name=x".to_vec()), S415, "unsupported_media_type"),
        ("no content type", as_type(""), S415, "unsupported_media_type"),
        ("look-alike content type", as_type("application/jsonp"), S415, "unsupported_media_type"),
        ("over the 1 MiB limit", raw(huge), S413, "payload_too_large"),
    ];
    #[rustfmt::skip]
    let cases = cases.into_iter().map(|(what, body, status, code)| (what, method.clone(), path.to_owned(), body, status, code, None));
    cases.collect()
}

fn report(family: &str, n: usize) {
    eprintln!("bad input, {family}: {n} cases on {}", backend_name());
}

/// Everything the cases refer to, created through the API by the admin.
struct World {
    app: TestApp,
    sales: i64,
    /// A manager in Sales: sees nothing of the admin's records.
    manager: Principal,
    /// An API key with every read scope and no write scope.
    reader: Principal,
    /// An API key with `dialogs:write` and `calls:write` (a connector).
    connector: Principal,
    /// An API key with `changes:read` only.
    changes_key: Principal,
    /// The admin's client, phone +79161234567, email taken@example.ru.
    client: i64,
    contact: i64,
    other_client: i64,
    other_contact: i64,
    /// An open lead, phone +79031234567.
    lead: i64,
    converted_lead: i64,
    interest: i64,
    other_interest: i64,
    /// The stage the Interest is at, the next one, and a stage of another scenario.
    stage_now: i64,
    stage_next: i64,
    foreign_stage: i64,
    interaction: i64,
    /// Dialog `tg`/`chat-1` of the client, with the inbound message `m-1` and an outbound one.
    dialog: i64,
    /// Dialog `tg`/`chat-2`, no party.
    dialog2: i64,
    inbound: i64,
    outbound: i64,
    /// An answered call and a completed one.
    call: i64,
    ended_call: i64,
}

/// Sends a request that must succeed and returns its body.
async fn ok(app: &TestApp, who: &Principal, method: Method, path: &str, body: Value) -> Value {
    let (status, v) = app
        .request(method.clone(), Some(who), path, Some(&body))
        .await;
    assert!(status.is_success(), "setup {method} {path}: {status} {v}");
    v
}

/// Creates something that must be created and returns its id.
async fn new_id(app: &TestApp, who: &Principal, path: &str, body: Value) -> i64 {
    id(&ok(app, who, POST, path, body).await)
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

#[rustfmt::skip]
async fn world() -> World {
    let app = spawn_app().await;
    let admin = app.admin.clone();
    let sales = app.department("Sales").await;
    app.department("Support").await;
    let manager = app.user("manager", Role::Manager, Some(sales)).await;
    let reader = app.api_key(&[Scope::ClientsRead, Scope::InterestsRead, Scope::InteractionsRead, Scope::DialogsRead, Scope::CallsRead]).await;
    let connector = app.api_key(&[Scope::DialogsWrite, Scope::CallsWrite]).await;
    let changes_key = app.api_key(&[Scope::ChangesRead]).await;
    let (a, k) = (&admin, &connector);
    new_id(&app, a, "/api/v1/custom-fields", json!({"key": "tier", "label": "Tier", "field_type": "enum", "options": ["gold", "silver"]})).await;
    let client = new_id(&app, a, "/api/v1/clients", json!({"kind": "company", "name": "Romashka", "identities": [
        {"kind": "phone", "value": "+7 916 123-45-67"}, {"kind": "email", "value": "taken@example.ru"}]})).await;
    let contact = new_id(&app, a, &format!("/api/v1/clients/{client}/contacts"), json!({"name": "Pyotr"})).await;
    let other_client = new_id(&app, a, "/api/v1/clients", json!({"kind": "person", "name": "Other Person"})).await;
    let other_contact = new_id(&app, a, &format!("/api/v1/clients/{other_client}/contacts"), json!({"name": "Olga"})).await;
    let lead = new_id(&app, a, "/api/v1/leads", json!({"name": "Walk-in", "phone": "+7 903 123-45-67"})).await;
    let converted_lead = new_id(&app, a, "/api/v1/leads", json!({"name": "Convertible"})).await;
    ok(&app, a, POST, &format!("/api/v1/leads/{converted_lead}/convert"), json!({})).await;
    let scenarios = ok(&app, a, GET, "/api/v1/sales-scenarios", json!({})).await;
    let stage = |v: &Value, i: usize| v["stages"][i]["id"].as_i64().expect("stage");
    let (stage_now, stage_next) = (stage(&scenarios[0], 0), stage(&scenarios[0], 1));
    let second = ok(&app, a, POST, "/api/v1/sales-scenarios", json!({"name": "Second", "stages": [{"name": "Start"}, {"name": "Done", "outcome": "won"}]})).await;
    let foreign_stage = stage(&second, 0);
    let interest = new_id(&app, a, "/api/v1/interests", json!({"title": "Big deal", "client_id": client})).await;
    let other_interest = new_id(&app, a, "/api/v1/interests", json!({"title": "Other deal", "client_id": other_client})).await;
    let interaction = new_id(&app, a, "/api/v1/interactions", json!({"kind": "note", "subject": "First note", "client_id": client})).await;
    let dialog = new_id(&app, k, "/api/v1/dialogs", json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "chat-1", "client_id": client})).await;
    let dialog2 = new_id(&app, k, "/api/v1/dialogs", json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "chat-2"})).await;
    let messages = format!("/api/v1/dialogs/{dialog}/messages");
    let inbound = new_id(&app, k, &messages, json!({"direction": "inbound", "external_id": "m-1", "body": "hi"})).await;
    let outbound = new_id(&app, a, &messages, json!({"body": "hello"})).await;
    let call = new_id(&app, k, "/api/v1/calls", json!({"connector_id": "pbx", "external_id": "call-1", "direction": "inbound",
        "from_number": "+7 916 123-45-67", "to_number": "101", "status": "answered"})).await;
    let ended_call = new_id(&app, k, "/api/v1/calls", json!({"connector_id": "pbx", "external_id": "call-2", "direction": "inbound",
        "from_number": "+7 916 123-45-67", "to_number": "101"})).await;
    ok(&app, k, PATCH, &format!("/api/v1/calls/{ended_call}"), json!({"status": "completed"})).await;
    World {
        app, sales, manager, reader, connector, changes_key, client, contact, other_client, other_contact, lead,
        converted_lead, interest, other_interest, stage_now, stage_next, foreign_stage, interaction, dialog, dialog2,
        inbound, outbound, call, ended_call,
    }
}

/// The `items` (or the array itself) of a listing, as `field` values.
async fn listed(app: &TestApp, who: &Principal, path: &str, field: &str) -> Vec<Value> {
    let (status, v) = app.get(Some(who), path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    let items = if v.is_array() { &v } else { &v["items"] };
    items
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i[field].clone())
        .collect()
}

// ---------------------------------------------------------------------------------------
// auth

#[tokio::test]
async fn sign_in_and_password_change_reject_bad_input() {
    let app = spawn_app().await;
    let admin = app.admin.clone();
    let key = app.api_key(&[Scope::ClientsRead]).await;
    let login = "/api/v1/auth/login";
    let password = "/api/v1/auth/password";
    let mut n = reject(
        &app,
        None,
        malformed(POST, login, &json!({"login": "admin", "password": "x"})),
    )
    .await;
    #[rustfmt::skip]
    let wrong = |what, body: Value| -> Case { (what, POST, login.into(), j(body), S401, "unauthenticated", None) };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("login is a number", POST, login.into(), j(json!({"login": 1, "password": "x"})), S422, "invalid_type", Some("login")),
        ("login is null", POST, login.into(), j(json!({"login": null, "password": "x"})), S422, "invalid_type", Some("login")),
        ("password is a list", POST, login.into(), j(json!({"login": "admin", "password": ["x"]})), S422, "invalid_type", Some("password")),
        ("no password", POST, login.into(), j(json!({"login": "admin"})), S422, "missing_field", Some("password")),
        ("no login", POST, login.into(), j(json!({"password": "x"})), S422, "missing_field", Some("login")),
        ("unknown field", POST, login.into(), j(json!({"login": "admin", "password": "x", "remember_me": true})), S422, "unknown_field", Some("remember_me")),
        wrong("wrong password", json!({"login": "admin", "password": "wrong-password-1"})),
        wrong("unknown login", json!({"login": "nobody", "password": PASSWORD})),
        wrong("login of 300 characters", json!({"login": "a".repeat(300), "password": PASSWORD})),
        wrong("password of 2000 characters", json!({"login": "admin", "password": "p".repeat(2000)})),
        wrong("SQL in the login", json!({"login": "admin' OR '1'='1", "password": PASSWORD})),
        wrong("SQL in the password", json!({"login": "admin", "password": "' OR '1'='1"})),
        wrong("unicode login", json!({"login": "админ", "password": PASSWORD})),
    ];
    n += reject(&app, None, cases).await;
    // Five failures for one login, then it is blocked, even with the right password.
    #[rustfmt::skip]
    let mut blocked: Vec<Case> = (0..5).map(|_| wrong("failed sign-in", json!({"login": "ghost", "password": "wrong-password-1"}))).collect();
    #[rustfmt::skip]
    let sixth: Case = ("sixth attempt", POST, login.into(), j(json!({"login": "ghost", "password": "x"})), S429, "rate_limited", None);
    blocked.push(sixth);
    n += reject(&app, None, blocked).await;

    n += reject(
        &app,
        Some(&admin),
        malformed(
            POST,
            password,
            &json!({"current_password": PASSWORD, "new_password": "another-password-1"}),
        ),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("new password too short", POST, password.into(), j(json!({"current_password": PASSWORD, "new_password": "short"})), S422, "weak_password", Some("new_password")),
        ("new password too long", POST, password.into(), j(json!({"current_password": PASSWORD, "new_password": "p".repeat(257)})), S422, "too_long", Some("new_password")),
        ("same password", POST, password.into(), j(json!({"current_password": PASSWORD, "new_password": PASSWORD})), S422, "same_password", Some("new_password")),
        ("wrong current password", POST, password.into(), j(json!({"current_password": "not-the-password", "new_password": "another-password-1"})), S422, "wrong_password", Some("current_password")),
        ("no current password", POST, password.into(), j(json!({"new_password": "another-password-1"})), S422, "missing_field", Some("current_password")),
        ("new password is null", POST, password.into(), j(json!({"current_password": PASSWORD, "new_password": null})), S422, "invalid_type", Some("new_password")),
        ("unknown field", POST, password.into(), j(json!({"current_password": PASSWORD, "new_password": "another-password-1", "confirm": "x"})), S422, "unknown_field", Some("confirm")),
    ];
    n += reject(&app, Some(&admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("API keys have no password", POST, password.into(), j(json!({"current_password": "x", "new_password": "another-password-1"})), S403, "forbidden", None),
    ];
    n += reject(&app, Some(&key), cases).await;
    n += reject_strangers(
        &app,
        &[
            (POST, password.into()),
            (GET, "/api/v1/auth/me".into()),
            (POST, "/api/v1/auth/logout".into()),
        ],
    )
    .await;
    // The password did not change: it still signs in.
    app.login("admin", admin.id).await;
    report("auth", n);
}

#[tokio::test]
async fn every_shape_of_bad_credentials_is_unauthenticated() {
    let app = spawn_app().await;
    let key = app.api_key(&[Scope::ClientsRead]).await;
    let revoked = app.api_key(&[Scope::ClientsRead]).await;
    let (status, _) = app
        .delete(
            Some(&app.admin),
            &format!("/api/v1/api-keys/{}", revoked.id),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let session = app.login("admin", app.admin.id).await;
    let (status, _) = app
        .post(Some(&session), "/api/v1/auth/logout", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (prefix, _) = key.token.split_once('.').expect("key shape");
    let forged = format!("{prefix}.{}", "x".repeat(43));
    #[rustfmt::skip]
    let headers: Vec<(&str, &str, String)> = vec![
        ("no header", "", String::new()),
        ("unknown token", "authorization", "Bearer not-a-token".into()),
        ("empty bearer", "authorization", "Bearer ".into()),
        ("basic auth", "authorization", "Basic YWRtaW46dGVzdC1wYXNzd29yZC0xMjM0".into()),
        ("token of 600 characters", "authorization", format!("Bearer {}", "t".repeat(600))),
        ("revoked API key", "authorization", format!("Bearer {}", revoked.token)),
        ("API key with a forged secret", "authorization", format!("Bearer {forged}")),
        ("ended session", "authorization", format!("Bearer {}", session.token)),
        ("ended session as cookie", "cookie", format!("kommutator_session={}", session.token)),
        ("unknown cookie", "cookie", "kommutator_session=nonsense".into()),
        ("SQL in the token", "authorization", "Bearer ' OR '1'='1".into()),
    ];
    let mut n = 0;
    let before = app.last_seq().await;
    for path in ["/api/v1/auth/me", "/api/v1/clients", "/api/v1/changes"] {
        for (what, name, value) in &headers {
            let mut req = app.http.get(format!("{}{path}", app.base));
            if !name.is_empty() {
                req = req.header(*name, value);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status();
            assert!(
                resp.headers().contains_key("www-authenticate"),
                "{what}: WWW-Authenticate"
            );
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, S401, "{what} on {path}: {body}");
            assert_error(&(status, body), S401, "unauthenticated", None);
            n += 1;
        }
    }
    assert_eq!(app.last_seq().await, before, "nothing was written");
    // A one-time password must be changed before anything else.
    let (status, u) = app
        .post(
            Some(&app.admin),
            "/api/v1/users",
            &json!({
                "login": "fresh", "name": "Fresh", "role": "operator", "password": PASSWORD,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    let fresh = app.login("fresh", id(&u)).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("one-time password", GET, "/api/v1/clients".into(), Body::Empty, S403, "password_change_required", None),
        ("one-time password", POST, "/api/v1/clients".into(), j(json!({"kind": "person", "name": "X"})), S403, "password_change_required", None),
    ];
    n += reject(&app, Some(&fresh), cases).await;
    report("credentials", n);
}

// ---------------------------------------------------------------------------------------
// administration

#[tokio::test]
async fn users_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let users = "/api/v1/users";
    let me = format!("/api/v1/users/{}", admin.id);
    let theirs = format!("/api/v1/users/{}", w.manager.id);
    let valid = json!({"login": "newbie", "name": "Newbie", "role": "operator", "password": "long-enough-pw"});
    let with = |extra: Value| {
        let mut v = valid.clone();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        j(v)
    };
    let mut n = reject(app, Some(admin), malformed(POST, users, &valid)).await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &theirs, &json!({"name": "X"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no role", POST, users.into(), j(json!({"login": "newbie", "name": "N", "password": "long-enough-pw"})), S422, "missing_field", Some("role")),
        ("unknown role", POST, users.into(), with(json!({"role": "god"})), S422, "invalid_value", Some("role")),
        ("login is a number", POST, users.into(), with(json!({"login": 7})), S422, "invalid_type", Some("login")),
        ("login too short", POST, users.into(), with(json!({"login": "a"})), S422, "invalid_login", Some("login")),
        ("login with blanks", POST, users.into(), with(json!({"login": "new bie"})), S422, "invalid_login", Some("login")),
        ("login of 65 characters", POST, users.into(), with(json!({"login": "a".repeat(65)})), S422, "invalid_login", Some("login")),
        ("SQL in the login", POST, users.into(), with(json!({"login": "x'; DROP TABLE users;--"})), S422, "invalid_login", Some("login")),
        ("name too long", POST, users.into(), with(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("blank name", POST, users.into(), with(json!({"name": "  "})), S422, "required", Some("name")),
        ("bell in the name", POST, users.into(), with(json!({"name": "ding\u{7}"})), S422, "invalid_characters", Some("name")),
        ("bad email", POST, users.into(), with(json!({"email": "not-an-email"})), S422, "invalid_email", Some("email")),
        ("password too short", POST, users.into(), with(json!({"password": "short"})), S422, "weak_password", Some("password")),
        ("password too long", POST, users.into(), with(json!({"password": "p".repeat(257)})), S422, "too_long", Some("password")),
        ("no such department", POST, users.into(), with(json!({"department_id": 999_999})), S422, "not_found", Some("department_id")),
        ("department id as text", POST, users.into(), with(json!({"department_id": "1"})), S422, "invalid_type", Some("department_id")),
        ("flag as text", POST, users.into(), with(json!({"must_change_password": "no"})), S422, "invalid_type", Some("must_change_password")),
        ("taken login", POST, users.into(), with(json!({"login": "manager"})), S409, "duplicate", Some("login")),
        ("taken login in capitals", POST, users.into(), with(json!({"login": "MANAGER"})), S409, "duplicate", Some("login")),
        ("unknown field", POST, users.into(), with(json!({"is_admin": true})), S422, "unknown_field", Some("is_admin")),
        ("take the admin role from yourself", PATCH, me.clone(), j(json!({"role": "manager"})), S409, "conflict", Some("role")),
        ("disable yourself", PATCH, me.clone(), j(json!({"active": false})), S409, "conflict", Some("active")),
        ("bad email", PATCH, theirs.clone(), j(json!({"email": "@x.ru"})), S422, "invalid_email", Some("email")),
        ("name too long", PATCH, theirs.clone(), j(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("blank name", PATCH, theirs.clone(), j(json!({"name": ""})), S422, "required", Some("name")),
        ("password too short", PATCH, theirs.clone(), j(json!({"password": "short"})), S422, "weak_password", Some("password")),
        ("no such department", PATCH, theirs.clone(), j(json!({"department_id": 999_999})), S422, "not_found", Some("department_id")),
        ("unknown role", PATCH, theirs.clone(), j(json!({"role": "root"})), S422, "invalid_value", Some("role")),
        ("active as text", PATCH, theirs.clone(), j(json!({"active": "false"})), S422, "invalid_type", Some("active")),
        ("login cannot change", PATCH, theirs.clone(), j(json!({"login": "boss"})), S422, "unknown_field", Some("login")),
        ("no such user", PATCH, "/api/v1/users/999999".into(), j(json!({"name": "X"})), S404, "not_found", None),
        ("no such user", GET, "/api/v1/users/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", PATCH, "/api/v1/users/abc".into(), j(json!({"name": "X"})), S400, "invalid_path", None),
        ("id is zero", GET, "/api/v1/users/0".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a manager creates a user", POST, users.into(), j(valid.clone()), S403, "forbidden", None),
        ("a manager makes themselves admin", PATCH, theirs.clone(), j(json!({"role": "admin"})), S403, "forbidden", None),
        ("a manager renames the admin", PATCH, me.clone(), j(json!({"name": "Pwned"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("an API key without admin", POST, users.into(), j(valid.clone()), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, users.into()),
            (GET, users.into()),
            (PATCH, theirs.clone()),
            (GET, theirs.clone()),
        ],
    )
    .await;
    let logins = listed(app, admin, users, "login").await;
    assert_eq!(logins.len(), 2, "no user was created: {logins:?}");
    let (_, m) = app.get(Some(admin), &theirs).await;
    assert_eq!(
        (m["role"].as_str(), m["name"].as_str()),
        (Some("manager"), Some("manager"))
    );
    report("users", n);
}

#[tokio::test]
async fn departments_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/departments";
    let mut n = reject(
        app,
        Some(admin),
        malformed(POST, path, &json!({"name": "Field sales"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no name", POST, path.into(), j(json!({})), S422, "missing_field", Some("name")),
        ("name is a number", POST, path.into(), j(json!({"name": 5})), S422, "invalid_type", Some("name")),
        ("name is an object", POST, path.into(), j(json!({"name": {"ru": "Продажи"}})), S422, "invalid_type", Some("name")),
        ("name too long", POST, path.into(), j(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("empty name", POST, path.into(), j(json!({"name": ""})), S422, "required", Some("name")),
        ("blank name", POST, path.into(), j(json!({"name": " \t\n "})), S422, "required", Some("name")),
        ("NUL in the name", POST, path.into(), j(json!({"name": "a\u{0}b"})), S422, "invalid_characters", Some("name")),
        ("taken name", POST, path.into(), j(json!({"name": "Sales"})), S409, "duplicate", Some("name")),
        ("taken name with blanks around", POST, path.into(), j(json!({"name": "  Sales "})), S409, "duplicate", Some("name")),
        ("unknown field", POST, path.into(), j(json!({"name": "X", "head_id": 1})), S422, "unknown_field", Some("head_id")),
    ];
    n += reject(app, Some(admin), cases).await;
    let valid = j(json!({"name": "Field sales"}));
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a manager", POST, path.into(), valid, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("an API key", POST, path.into(), j(json!({"name": "Field sales"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(app, &[(POST, path.into()), (GET, path.into())]).await;
    assert_eq!(
        listed(app, admin, path, "name").await,
        vec![json!("Sales"), json!("Support")]
    );
    report("departments", n);
}

#[tokio::test]
async fn api_keys_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/api-keys";
    let valid = json!({"name": "CRM sync", "scopes": ["clients:read"]});
    let keys_before = listed(app, admin, path, "id").await;
    let mut n = reject(app, Some(admin), malformed(POST, path, &valid)).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no scopes", POST, path.into(), j(json!({"name": "k", "scopes": []})), S422, "required", Some("scopes")),
        ("scopes missing", POST, path.into(), j(json!({"name": "k"})), S422, "missing_field", Some("scopes")),
        ("unknown scope", POST, path.into(), j(json!({"name": "k", "scopes": ["clients:read", "root"]})), S422, "invalid_value", Some("scopes.1")),
        ("scopes as text", POST, path.into(), j(json!({"name": "k", "scopes": "clients:read"})), S422, "invalid_type", Some("scopes")),
        ("name too long", POST, path.into(), j(json!({"name": long(201), "scopes": ["admin"]})), S422, "too_long", Some("name")),
        ("empty name", POST, path.into(), j(json!({"name": "", "scopes": ["admin"]})), S422, "required", Some("name")),
        ("no name", POST, path.into(), j(json!({"scopes": ["admin"]})), S422, "missing_field", Some("name")),
        ("the secret cannot be chosen", POST, path.into(), j(json!({"name": "k", "scopes": ["admin"], "secret": "kk_mine"})), S422, "unknown_field", Some("secret")),
        ("no such key", DELETE, "/api/v1/api-keys/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", DELETE, "/api/v1/api-keys/abc".into(), Body::Empty, S400, "invalid_path", None),
        ("id is zero", DELETE, "/api/v1/api-keys/0".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let reader_key = format!("/api/v1/api-keys/{}", w.reader.id);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a manager lists keys", GET, path.into(), Body::Empty, S403, "forbidden", None),
        ("a manager creates a key", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
        ("a manager revokes a key", DELETE, reader_key.clone(), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a key makes itself an admin key", POST, path.into(), j(json!({"name": "k", "scopes": ["admin"]})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.connector), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (DELETE, reader_key),
        ],
    )
    .await;
    assert_eq!(listed(app, admin, path, "id").await, keys_before);
    let (status, _) = app.get(Some(&w.reader), "/api/v1/clients").await;
    assert_eq!(status, StatusCode::OK, "the key was not revoked");
    report("api-keys", n);
}

#[tokio::test]
async fn custom_fields_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/custom-fields";
    let valid = json!({"key": "inn", "label": "INN", "field_type": "string"});
    let field = |v: Value| j(v);
    let mut n = reject(app, Some(admin), malformed(POST, path, &valid)).await;
    let options: Vec<String> = (0..101).map(|i| format!("o{i}")).collect();
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("key with blanks", POST, path.into(), field(json!({"key": "Bad Key", "label": "L", "field_type": "string"})), S422, "invalid_key", Some("key")),
        ("empty key", POST, path.into(), field(json!({"key": "", "label": "L", "field_type": "string"})), S422, "invalid_key", Some("key")),
        ("key of 65 characters", POST, path.into(), field(json!({"key": "k".repeat(65), "label": "L", "field_type": "string"})), S422, "invalid_key", Some("key")),
        ("key starts with a digit", POST, path.into(), field(json!({"key": "1st", "label": "L", "field_type": "string"})), S422, "invalid_key", Some("key")),
        ("SQL in the key", POST, path.into(), field(json!({"key": "x\"; DROP TABLE clients;--", "label": "L", "field_type": "string"})), S422, "invalid_key", Some("key")),
        ("label too long", POST, path.into(), field(json!({"key": "k", "label": long(201), "field_type": "string"})), S422, "too_long", Some("label")),
        ("empty label", POST, path.into(), field(json!({"key": "k", "label": " ", "field_type": "string"})), S422, "required", Some("label")),
        ("unknown type", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "blob"})), S422, "invalid_value", Some("field_type")),
        ("no type", POST, path.into(), field(json!({"key": "k", "label": "L"})), S422, "missing_field", Some("field_type")),
        ("enum without options", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "enum"})), S422, "invalid_options", Some("options")),
        ("enum with 101 options", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "enum", "options": options})), S422, "invalid_options", Some("options")),
        ("options of a string field", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "string", "options": ["a"]})), S422, "invalid_options", Some("options")),
        ("repeated option", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "enum", "options": ["a", "a"]})), S422, "duplicate", Some("options.1")),
        ("option too long", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "enum", "options": [long(201)]})), S422, "too_long", Some("options.0")),
        ("option is a number", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "enum", "options": [1]})), S422, "invalid_type", Some("options.0")),
        ("required as text", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "date", "required": "yes"})), S422, "invalid_type", Some("required")),
        ("position as text", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "date", "position": "first"})), S422, "invalid_type", Some("position")),
        ("position beyond any number", POST, path.into(), raw(r#"{"key": "k", "label": "L", "field_type": "date", "position": 1e400}"#), S400, "malformed_json", None),
        ("taken key", POST, path.into(), field(json!({"key": "tier", "label": "Tier 2", "field_type": "string"})), S409, "duplicate", Some("key")),
        ("unknown field", POST, path.into(), field(json!({"key": "k", "label": "L", "field_type": "date", "entity": "lead"})), S422, "unknown_field", Some("entity")),
        ("no such field", DELETE, "/api/v1/custom-fields/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", DELETE, "/api/v1/custom-fields/tier".into(), Body::Empty, S400, "invalid_path", None),
        ("id is negative", DELETE, "/api/v1/custom-fields/-1".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let tier = listed(app, admin, path, "id").await[0]
        .as_i64()
        .expect("id");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a manager defines a field", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
        ("a manager removes a field", DELETE, format!("{path}/{tier}"), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a key without clients:read lists fields", GET, path.into(), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.connector), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (DELETE, format!("{path}/{tier}")),
        ],
    )
    .await;
    assert_eq!(listed(app, admin, path, "key").await, vec![json!("tier")]);
    report("custom-fields", n);
}

#[tokio::test]
async fn sales_scenarios_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/sales-scenarios";
    let valid = json!({"name": "Renewal", "stages": [{"name": "Call"}, {"name": "Signed", "outcome": "won"}]});
    let stages = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("Stage {i}")}))
            .collect()
    };
    let mut n = reject(app, Some(admin), malformed(POST, path, &valid)).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("one stage", POST, path.into(), j(json!({"name": "S", "stages": stages(1)})), S422, "invalid_stages", Some("stages")),
        ("no stages", POST, path.into(), j(json!({"name": "S", "stages": []})), S422, "invalid_stages", Some("stages")),
        ("31 stages", POST, path.into(), j(json!({"name": "S", "stages": stages(31)})), S422, "invalid_stages", Some("stages")),
        ("starts won", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A", "outcome": "won"}, {"name": "B"}]})), S422, "invalid_stages", Some("stages.0.outcome")),
        ("stage name too long", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A"}, {"name": long(201)}]})), S422, "too_long", Some("stages.1.name")),
        ("empty stage name", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A"}, {"name": ""}]})), S422, "required", Some("stages.1.name")),
        ("unknown outcome", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A"}, {"name": "B", "outcome": "maybe"}]})), S422, "invalid_value", Some("stages.1.outcome")),
        ("stage without a name", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A"}, {"outcome": "won"}]})), S422, "missing_field", Some("stages.1.name")),
        ("unknown stage field", POST, path.into(), j(json!({"name": "S", "stages": [{"name": "A", "probability": 10}, {"name": "B"}]})), S422, "unknown_field", Some("stages.0.probability")),
        ("stages missing", POST, path.into(), j(json!({"name": "S"})), S422, "missing_field", Some("stages")),
        ("stages as an object", POST, path.into(), j(json!({"name": "S", "stages": {"name": "A"}})), S422, "invalid_type", Some("stages")),
        ("empty name", POST, path.into(), j(json!({"name": "", "stages": stages(2)})), S422, "required", Some("name")),
        ("name too long", POST, path.into(), j(json!({"name": long(201), "stages": stages(2)})), S422, "too_long", Some("name")),
        ("taken name", POST, path.into(), j(json!({"name": "Second", "stages": stages(2)})), S409, "duplicate", Some("name")),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a manager", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("an interests:read key", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a key without interests:read", GET, path.into(), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.changes_key), cases).await;
    n += reject_strangers(app, &[(POST, path.into()), (GET, path.into())]).await;
    assert_eq!(
        listed(app, admin, path, "name").await.len(),
        2,
        "no scenario was created"
    );
    report("sales-scenarios", n);
}

// ---------------------------------------------------------------------------------------
// clients, contacts, identities, leads

#[tokio::test]
async fn clients_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/clients";
    let one = format!("/api/v1/clients/{}", w.client);
    let valid = json!({"kind": "company", "name": "Acme Rejected"});
    let new = |extra: Value| {
        let mut v = valid.clone();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        j(v)
    };
    let idents = |list: Value| new(json!({ "identities": list }));
    let fifty_one: Vec<Value> = (0..51)
        .map(|i| json!({"kind": "telegram", "value": format!("{}", 1000 + i)}))
        .collect();
    let mut n = reject(app, Some(admin), malformed(POST, path, &valid)).await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"name": "X"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no kind", POST, path.into(), j(json!({"name": "Acme Rejected"})), S422, "missing_field", Some("kind")),
        ("unknown kind", POST, path.into(), new(json!({"kind": "robot"})), S422, "invalid_value", Some("kind")),
        ("no name", POST, path.into(), j(json!({"kind": "person"})), S422, "missing_field", Some("name")),
        ("name is a number", POST, path.into(), new(json!({"name": 42})), S422, "invalid_type", Some("name")),
        ("name too long", POST, path.into(), new(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("blank name", POST, path.into(), new(json!({"name": "   "})), S422, "required", Some("name")),
        ("terminal escape in the name", POST, path.into(), new(json!({"name": "Acme \u{1b}[31mRed"})), S422, "invalid_characters", Some("name")),
        ("notes too long", POST, path.into(), new(json!({"notes": long(100_001)})), S422, "too_long", Some("notes")),
        ("NUL in the notes", POST, path.into(), new(json!({"notes": "a\u{0}b"})), S422, "invalid_characters", Some("notes")),
        ("shared as text", POST, path.into(), new(json!({"shared": "yes"})), S422, "invalid_type", Some("shared")),
        ("custom fields as a list", POST, path.into(), new(json!({"custom_fields": []})), S422, "invalid_type", Some("custom_fields")),
        ("undefined custom field", POST, path.into(), new(json!({"custom_fields": {"nope": 1}})), S422, "unknown_custom_field", Some("custom_fields.nope")),
        ("custom field not an option", POST, path.into(), new(json!({"custom_fields": {"tier": "bronze"}})), S422, "invalid_custom_field", Some("custom_fields.tier")),
        ("custom field of the wrong type", POST, path.into(), new(json!({"custom_fields": {"tier": 5}})), S422, "invalid_custom_field", Some("custom_fields.tier")),
        ("identities as an object", POST, path.into(), new(json!({"identities": {"kind": "phone"}})), S422, "invalid_type", Some("identities")),
        ("identity without a value", POST, path.into(), idents(json!([{"kind": "phone"}])), S422, "missing_field", Some("identities.0.value")),
        ("identity of an unknown kind", POST, path.into(), idents(json!([{"kind": "fax", "value": "1"}])), S422, "invalid_value", Some("identities.0.kind")),
        ("identity with an unknown field", POST, path.into(), idents(json!([{"kind": "phone", "value": "+74951234567", "label": "work"}])), S422, "unknown_field", Some("identities.0.label")),
        ("phone too short", POST, path.into(), idents(json!([{"kind": "phone", "value": "12"}])), S422, "invalid_phone", Some("identities.0.value")),
        ("phone of words", POST, path.into(), idents(json!([{"kind": "phone", "value": "call me maybe"}])), S422, "invalid_phone", Some("identities.0.value")),
        ("bad email after a good phone", POST, path.into(), idents(json!([{"kind": "phone", "value": "+7 495 123-45-67"}, {"kind": "email", "value": "ivan@"}])), S422, "invalid_email", Some("identities.1.value")),
        ("taken phone in another spelling", POST, path.into(), idents(json!([{"kind": "phone", "value": "8 (916) 123-45-67"}])), S409, "duplicate", Some("identities.0.value")),
        ("taken email in capitals", POST, path.into(), idents(json!([{"kind": "email", "value": "Taken@Example.RU"}])), S409, "duplicate", Some("identities.0.value")),
        ("the lead's phone", POST, path.into(), idents(json!([{"kind": "phone", "value": "+79031234567"}])), S409, "duplicate", Some("identities.0.value")),
        ("one new phone twice", POST, path.into(), idents(json!([{"kind": "phone", "value": "+7 495 123-45-67"}, {"kind": "phone", "value": "8 495 1234567"}])), S409, "duplicate", Some("identities.1.value")),
        ("51 identities", POST, path.into(), new(json!({"identities": fifty_one})), S422, "too_many", Some("identities")),
        ("telegram user name", POST, path.into(), idents(json!([{"kind": "telegram", "value": "@ivan"}])), S422, "invalid_messenger_id", Some("identities.0.value")),
        ("short visitor id", POST, path.into(), idents(json!([{"kind": "web_visitor", "value": "short"}])), S422, "invalid_visitor_id", Some("identities.0.value")),
        ("email of 255 characters", POST, path.into(), idents(json!([{"kind": "email", "value": format!("{}@example.ru", "a".repeat(244))}])), S422, "too_long", Some("identities.0.value")),
        ("no such responsible", POST, path.into(), new(json!({"responsible_id": 999_999})), S422, "not_found", Some("responsible_id")),
        ("no such department", POST, path.into(), new(json!({"department_id": 999_999})), S422, "not_found", Some("department_id")),
        ("responsible id beyond i64", POST, path.into(), new(json!({"responsible_id": 99_999_999_999_999_999_999.0})), S422, "invalid_type", Some("responsible_id")),
        ("unknown field", POST, path.into(), new(json!({"vip": true})), S422, "unknown_field", Some("vip")),
        ("blank name", PATCH, one.clone(), j(json!({"name": ""})), S422, "required", Some("name")),
        ("name too long", PATCH, one.clone(), j(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("unknown kind", PATCH, one.clone(), j(json!({"kind": "robot"})), S422, "invalid_value", Some("kind")),
        ("notes too long", PATCH, one.clone(), j(json!({"notes": long(100_001)})), S422, "too_long", Some("notes")),
        ("custom field not an option", PATCH, one.clone(), j(json!({"custom_fields": {"tier": "bronze"}})), S422, "invalid_custom_field", Some("custom_fields.tier")),
        ("undefined custom field", PATCH, one.clone(), j(json!({"custom_fields": {"nope": null}})), S422, "unknown_custom_field", Some("custom_fields.nope")),
        ("no such responsible", PATCH, one.clone(), j(json!({"responsible_id": 999_999})), S422, "not_found", Some("responsible_id")),
        ("no such department", PATCH, one.clone(), j(json!({"department_id": 999_999})), S422, "not_found", Some("department_id")),
        ("identities are not patched", PATCH, one.clone(), j(json!({"identities": []})), S422, "unknown_field", Some("identities")),
        ("no such client", PATCH, "/api/v1/clients/999999".into(), j(json!({"name": "X"})), S404, "not_found", None),
        ("no such client", GET, "/api/v1/clients/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", PATCH, "/api/v1/clients/abc".into(), j(json!({"name": "X"})), S400, "invalid_path", None),
        ("id is zero", GET, "/api/v1/clients/0".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's client", GET, one.clone(), Body::Empty, S404, "not_found", None),
        ("someone else's client", PATCH, one.clone(), j(json!({"name": "Mine now"})), S404, "not_found", None),
        ("assign to the admin", POST, path.into(), new(json!({"responsible_id": admin.id})), S403, "forbidden", None),
        ("file under another department", POST, path.into(), new(json!({"department_id": w.sales + 1})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key creates", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
        ("a read-only key changes", PATCH, one.clone(), j(json!({"name": "X"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a key without clients:read", GET, path.into(), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.connector), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (GET, one.clone()),
            (PATCH, one.clone()),
        ],
    )
    .await;
    // Nothing half-written: no "Acme" client, no identity of the rejected requests.
    let (_, found) = app.get(Some(admin), "/api/v1/clients?q=acme").await;
    assert_eq!(found["items"], json!([]), "{found}");
    let (status, _) = app
        .get(
            Some(admin),
            "/api/v1/identities/lookup?kind=phone&value=%2B74951234567",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the phone of a rejected client was rolled back"
    );
    let (_, card) = app.get(Some(admin), &one).await;
    assert_eq!(card["name"], "Romashka");
    assert_eq!(card["identities"].as_array().map(Vec::len), Some(2));
    report("clients", n);
}

#[tokio::test]
async fn client_search_rejects_bad_query_params() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let q = |s: &str| format!("/api/v1/clients?{s}");
    let get = |what, query: String, status, code, field| -> Case {
        (what, GET, query, Body::Empty, status, code, field)
    };
    let bad = "invalid_query";
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown parameter", q("foo=1"), S400, bad, None),
        get("unknown parameter with a good one", q("q=rom&sort=name"), S400, bad, None),
        get("limit is text", q("limit=abc"), S400, bad, None),
        get("limit is a fraction", q("limit=1.5"), S400, bad, None),
        get("limit beyond i64", q("limit=99999999999999999999"), S400, bad, None),
        get("limit twice", q("limit=1&limit=2"), S400, bad, None),
        get("garbage cursor", q("cursor=garbage!!"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", q(&format!("cursor={}", foreign_cursor(true))), S422, "invalid_cursor", Some("cursor")),
        get("cursor of 3000 characters", q(&format!("cursor={}", "A".repeat(3000))), S422, "invalid_cursor", Some("cursor")),
        get("messenger without an id", q("messenger=telegram"), S400, bad, None),
        get("messenger id without a messenger", q("messenger_id=123"), S400, bad, None),
        get("unknown messenger", q("messenger=fax&messenger_id=123"), S400, bad, None),
        get("bad telegram id", q("messenger=telegram&messenger_id=abc"), S422, "invalid_messenger_id", None),
        get("q of 201 characters", q(&format!("q={}", "a".repeat(201))), S400, bad, None),
        get("bad phone", q("phone=abc"), S422, "invalid_phone", Some("phone")),
        get("empty phone", q("phone="), S422, "required", Some("phone")),
        get("SQL as a phone", q("phone=1%27%3B%20DROP%20TABLE%20clients%3B--"), S422, "invalid_phone", Some("phone")),
        get("bad email", q("email=nobody"), S422, "invalid_email", Some("email")),
        get("query string of 9000 characters", q(&format!("q=a&x={}", "b".repeat(9000))), S400, bad, None),
    ];
    let n = reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("a key without clients:read", q("q=rom"), S403, "forbidden", None),
    ];
    let n = n + reject(app, Some(&w.connector), cases).await;
    let n = n + reject_strangers(app, &[(GET, q("q=rom"))]).await;
    report("client search", n);
}

#[tokio::test]
async fn contacts_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = format!("/api/v1/clients/{}/contacts", w.client);
    let one = format!("/api/v1/contacts/{}", w.contact);
    let mut n = reject(
        app,
        Some(admin),
        malformed(POST, &path, &json!({"name": "Vera"})),
    )
    .await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"name": "Vera"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("no name", POST, path.clone(), j(json!({"position": "CEO"})), S422, "missing_field", Some("name")),
        ("name too long", POST, path.clone(), j(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("blank name", POST, path.clone(), j(json!({"name": " "})), S422, "required", Some("name")),
        ("position too long", POST, path.clone(), j(json!({"name": "Vera", "position": long(101)})), S422, "too_long", Some("position")),
        ("notes too long", POST, path.clone(), j(json!({"name": "Vera", "notes": long(100_001)})), S422, "too_long", Some("notes")),
        ("position is a number", POST, path.clone(), j(json!({"name": "Vera", "position": 1})), S422, "invalid_type", Some("position")),
        ("bad phone", POST, path.clone(), j(json!({"name": "Vera", "identities": [{"kind": "phone", "value": "+7 000"}]})), S422, "invalid_phone", Some("identities.0.value")),
        ("the client's own phone", POST, path.clone(), j(json!({"name": "Vera", "identities": [{"kind": "phone", "value": "89161234567"}]})), S409, "duplicate", Some("identities.0.value")),
        ("a good phone, then a taken email", POST, path.clone(), j(json!({"name": "Vera", "identities": [{"kind": "phone", "value": "+7 495 765-43-21"}, {"kind": "email", "value": "TAKEN@example.ru"}]})), S409, "duplicate", Some("identities.1.value")),
        ("the client is given by the path", POST, path.clone(), j(json!({"name": "Vera", "client_id": w.other_client})), S422, "unknown_field", Some("client_id")),
        ("no such client", POST, "/api/v1/clients/999999/contacts".into(), j(json!({"name": "Vera"})), S404, "not_found", None),
        ("client id is text", POST, "/api/v1/clients/abc/contacts".into(), j(json!({"name": "Vera"})), S400, "invalid_path", None),
        ("blank name", PATCH, one.clone(), j(json!({"name": ""})), S422, "required", Some("name")),
        ("position too long", PATCH, one.clone(), j(json!({"position": long(101)})), S422, "too_long", Some("position")),
        ("NUL in the notes", PATCH, one.clone(), j(json!({"notes": "\u{0}"})), S422, "invalid_characters", Some("notes")),
        ("identities are not patched", PATCH, one.clone(), j(json!({"identities": []})), S422, "unknown_field", Some("identities")),
        ("no such contact", PATCH, "/api/v1/contacts/999999".into(), j(json!({"name": "X"})), S404, "not_found", None),
        ("no such contact", GET, "/api/v1/contacts/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", GET, "/api/v1/contacts/abc".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's client", POST, path.clone(), j(json!({"name": "Vera"})), S404, "not_found", None),
        ("someone else's contact", PATCH, one.clone(), j(json!({"name": "Vera"})), S404, "not_found", None),
        ("someone else's contact", GET, one.clone(), Body::Empty, S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.clone(), j(json!({"name": "Vera"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.clone()),
            (PATCH, one.clone()),
            (GET, one.clone()),
        ],
    )
    .await;
    let (_, card) = app
        .get(Some(admin), &format!("/api/v1/clients/{}", w.client))
        .await;
    assert_eq!(card["contacts"].as_array().map(Vec::len), Some(1), "{card}");
    assert_eq!(card["contacts"][0]["name"], "Pyotr");
    assert_eq!(
        card["identities"].as_array().map(Vec::len),
        Some(2),
        "{card}"
    );
    report("contacts", n);
}

#[tokio::test]
async fn identities_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/identities";
    let c = w.client;
    let ident = |kind: &str, value: Value| j(json!({"kind": kind, "value": value, "client_id": c}));
    let valid = json!({"kind": "phone", "value": "+7 495 123-45-67", "client_id": c});
    let mut n = reject(app, Some(admin), malformed(POST, path, &valid)).await;
    let rows = |what, body, status, code, field| -> Case {
        (what, POST, path.into(), body, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        rows("no kind", j(json!({"value": "+74951234567", "client_id": c})), S422, "missing_field", Some("kind")),
        rows("unknown kind", ident("fax", json!("+74951234567")), S422, "invalid_value", Some("kind")),
        rows("no value", j(json!({"kind": "phone", "client_id": c})), S422, "missing_field", Some("value")),
        rows("value is a number", ident("phone", json!(74_951_234_567_i64)), S422, "invalid_type", Some("value")),
        rows("phone too short", ident("phone", json!("12")), S422, "invalid_phone", Some("value")),
        rows("phone not assigned", ident("phone", json!("+7 000")), S422, "invalid_phone", Some("value")),
        rows("unknown country", ident("phone", json!("+999 123456789")), S422, "invalid_phone", Some("value")),
        rows("SQL as a phone", ident("phone", json!("'; DROP TABLE identities;--")), S422, "invalid_phone", Some("value")),
        rows("email without a domain dot", ident("email", json!("ivan@localhost")), S422, "invalid_email", Some("value")),
        rows("email with a blank", ident("email", json!("a b@x.ru")), S422, "invalid_email", Some("value")),
        rows("email with angle brackets", ident("email", json!("<ivan@x.ru>")), S422, "invalid_email", Some("value")),
        rows("negative telegram id", ident("telegram", json!("-5")), S422, "invalid_messenger_id", Some("value")),
        rows("vk screen name", ident("vk", json!("@durov")), S422, "invalid_messenger_id", Some("value")),
        rows("whatsapp of words", ident("whatsapp", json!("hello")), S422, "invalid_messenger_id", Some("value")),
        rows("short visitor id", ident("web_visitor", json!("short")), S422, "invalid_visitor_id", Some("value")),
        rows("visitor id with a slash", ident("web_visitor", json!("visitor/../../etc")), S422, "invalid_visitor_id", Some("value")),
        rows("blank value", ident("phone", json!("   ")), S422, "required", Some("value")),
        rows("value of 255 characters", ident("email", json!(format!("{}@x.ru", "a".repeat(250)))), S422, "too_long", Some("value")),
        rows("no owner", j(json!({"kind": "phone", "value": "+74951234567"})), S422, "invalid_owner", Some("client_id")),
        rows("two owners", j(json!({"kind": "phone", "value": "+74951234567", "client_id": c, "lead_id": w.lead})), S422, "invalid_owner", Some("client_id")),
        rows("no such client", j(json!({"kind": "phone", "value": "+74951234567", "client_id": 999_999})), S422, "not_found", Some("client_id")),
        rows("no such contact", j(json!({"kind": "phone", "value": "+74951234567", "contact_id": 999_999})), S422, "not_found", Some("contact_id")),
        rows("no such lead", j(json!({"kind": "phone", "value": "+74951234567", "lead_id": 999_999})), S422, "not_found", Some("lead_id")),
        rows("client id as text", j(json!({"kind": "phone", "value": "+74951234567", "client_id": c.to_string()})), S422, "invalid_type", Some("client_id")),
        rows("taken phone in another spelling", ident("phone", json!("8 916 123 45 67")), S409, "duplicate", Some("value")),
        rows("taken email in capitals", ident("email", json!("  TAKEN@Example.RU ")), S409, "duplicate", Some("value")),
        rows("the lead's phone for the client", ident("phone", json!("+7 (903) 123-45-67")), S409, "duplicate", Some("value")),
        rows("taken phone for a contact", j(json!({"kind": "phone", "value": "+79161234567", "contact_id": w.contact})), S409, "duplicate", Some("value")),
        rows("unknown field", j(json!({"kind": "phone", "value": "+74951234567", "client_id": c, "primary": true})), S422, "unknown_field", Some("primary")),
        ("no such identity", DELETE, "/api/v1/identities/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", DELETE, "/api/v1/identities/abc".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let look = |s: &str| format!("/api/v1/identities/lookup?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("no parameters", look(""), S400, "invalid_query", None),
        get("no value", look("kind=phone"), S400, "invalid_query", None),
        get("no kind", look("value=1"), S400, "invalid_query", None),
        get("unknown kind", look("kind=fax&value=1"), S400, "invalid_query", None),
        get("unknown parameter", look("kind=phone&value=%2B79161234567&owner=1"), S400, "invalid_query", None),
        get("bad phone", look("kind=phone&value=abc"), S422, "invalid_phone", Some("value")),
        get("bad email", look("kind=email&value=nobody"), S422, "invalid_email", Some("value")),
        get("SQL as a telegram id", look("kind=telegram&value=1%20OR%201%3D1"), S422, "invalid_messenger_id", Some("value")),
        get("unknown phone", look("kind=phone&value=%2B74951234567"), S404, "not_found", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let (_, card) = app.get(Some(admin), &format!("/api/v1/clients/{c}")).await;
    let client_phone = card["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .find(|i| i["kind"] == "phone")
        .map(id)
        .expect("phone");
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's client", POST, path.into(), j(valid.clone()), S422, "not_found", Some("client_id")),
        ("someone else's contact", POST, path.into(), j(json!({"kind": "phone", "value": "+74951234567", "contact_id": w.contact})), S422, "not_found", Some("contact_id")),
        ("someone else's lead", POST, path.into(), j(json!({"kind": "phone", "value": "+74951234567", "lead_id": w.lead})), S422, "not_found", Some("lead_id")),
        ("someone else's identity", DELETE, format!("/api/v1/identities/{client_phone}"), Body::Empty, S404, "not_found", None),
        get("someone else's phone", look("kind=phone&value=%2B79161234567"), S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(valid.clone()), S403, "forbidden", None),
        ("a read-only key", DELETE, format!("/api/v1/identities/{client_phone}"), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, look("kind=phone&value=1")),
            (DELETE, format!("/api/v1/identities/{client_phone}")),
        ],
    )
    .await;
    let (_, card) = app.get(Some(admin), &format!("/api/v1/clients/{c}")).await;
    assert_eq!(
        card["identities"].as_array().map(Vec::len),
        Some(2),
        "{card}"
    );
    let (status, _) = app
        .get(Some(admin), &look("kind=phone&value=%2B74951234567"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    report("identities", n);
}

#[tokio::test]
async fn leads_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/leads";
    let one = format!("/api/v1/leads/{}", w.lead);
    let convert = format!("/api/v1/leads/{}/convert", w.lead);
    let converted = format!("/api/v1/leads/{}", w.converted_lead);
    let mut n = reject(
        app,
        Some(admin),
        malformed(POST, path, &json!({"name": "Caller"})),
    )
    .await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"name": "Caller"})),
    )
    .await;
    n += reject(app, Some(admin), malformed(POST, &convert, &json!({}))).await;
    let new = |what, body: Value, status, code, field| -> Case {
        (what, POST, path.into(), j(body), status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        new("nothing to name it by", json!({}), S422, "required", Some("name")),
        new("blank name only", json!({"name": "  "}), S422, "required", Some("name")),
        new("bad phone", json!({"phone": "abc"}), S422, "invalid_phone", Some("phone")),
        new("bad email", json!({"email": "bad@"}), S422, "invalid_email", Some("email")),
        new("the client's phone", json!({"phone": "+7 916 123-45-67"}), S409, "duplicate", Some("phone")),
        new("the client's email", json!({"email": "Taken@example.ru"}), S409, "duplicate", Some("email")),
        new("another lead's phone", json!({"name": "Again", "phone": "8 903 123 45 67"}), S409, "duplicate", Some("phone")),
        new("name too long", json!({"name": long(201)}), S422, "too_long", Some("name")),
        new("company too long", json!({"name": "C", "company_name": long(201)}), S422, "too_long", Some("company_name")),
        new("source too long", json!({"name": "C", "source": long(101)}), S422, "too_long", Some("source")),
        new("shared as text", json!({"name": "C", "shared": "yes"}), S422, "invalid_type", Some("shared")),
        new("bad vk id", json!({"name": "C", "identities": [{"kind": "vk", "value": "x"}]}), S422, "invalid_messenger_id", Some("identities.0.value")),
        new("good phone, taken identity", json!({"name": "C", "phone": "+7 495 111-22-33", "identities": [{"kind": "email", "value": "taken@example.ru"}]}), S409, "duplicate", Some("identities.0.value")),
        new("no such responsible", json!({"name": "C", "responsible_id": 999_999}), S422, "not_found", Some("responsible_id")),
        new("no such department", json!({"name": "C", "department_id": 999_999}), S422, "not_found", Some("department_id")),
        new("the status is not chosen", json!({"name": "C", "status": "converted"}), S422, "unknown_field", Some("status")),
        ("converted by patch", PATCH, one.clone(), j(json!({"status": "converted"})), S422, "invalid_status", Some("status")),
        ("unknown status", PATCH, one.clone(), j(json!({"status": "bogus"})), S422, "invalid_value", Some("status")),
        ("blank name", PATCH, one.clone(), j(json!({"name": ""})), S422, "required", Some("name")),
        ("source too long", PATCH, one.clone(), j(json!({"source": long(101)})), S422, "too_long", Some("source")),
        ("no such responsible", PATCH, one.clone(), j(json!({"responsible_id": 999_999})), S422, "not_found", Some("responsible_id")),
        ("phone is not patched", PATCH, one.clone(), j(json!({"phone": "+74951234567"})), S422, "unknown_field", Some("phone")),
        ("a converted lead", PATCH, converted.clone(), j(json!({"name": "Again"})), S409, "conflict", Some("status")),
        ("no such lead", PATCH, "/api/v1/leads/999999".into(), j(json!({"name": "X"})), S404, "not_found", None),
        ("id is text", GET, "/api/v1/leads/abc".into(), Body::Empty, S400, "invalid_path", None),
        ("into a missing client", POST, convert.clone(), j(json!({"client_id": 999_999})), S422, "not_found", Some("client_id")),
        ("unknown kind", POST, convert.clone(), j(json!({"kind": "robot"})), S422, "invalid_value", Some("kind")),
        ("name too long", POST, convert.clone(), j(json!({"name": long(201)})), S422, "too_long", Some("name")),
        ("blank name", POST, convert.clone(), j(json!({"name": " "})), S422, "required", Some("name")),
        ("flag as text", POST, convert.clone(), j(json!({"create_contact": "yes"})), S422, "invalid_type", Some("create_contact")),
        ("unknown field", POST, convert.clone(), j(json!({"merge": true})), S422, "unknown_field", Some("merge")),
        ("converted twice", POST, format!("{converted}/convert"), j(json!({})), S409, "conflict", Some("status")),
        ("no such lead", POST, "/api/v1/leads/999999/convert".into(), j(json!({})), S404, "not_found", None),
        ("id is zero", POST, "/api/v1/leads/0/convert".into(), j(json!({})), S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let list = |s: &str| format!("/api/v1/leads?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown status", list("status=won"), S400, "invalid_query", None),
        get("garbage cursor", list("cursor=%%%"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", list(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("phone=1"), S400, "invalid_query", None),
        get("limit is text", list("limit=ten"), S400, "invalid_query", None),
        get("client id is text", list("client_id=abc"), S400, "invalid_query", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's lead", PATCH, one.clone(), j(json!({"name": "Mine"})), S404, "not_found", None),
        ("someone else's lead", POST, convert.clone(), j(json!({})), S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(json!({"name": "C"})), S403, "forbidden", None),
        ("a read-only key", POST, convert.clone(), j(json!({})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (PATCH, one.clone()),
            (POST, convert.clone()),
        ],
    )
    .await;
    assert_eq!(
        listed(app, admin, path, "id").await.len(),
        2,
        "no lead was created"
    );
    let (_, lead) = app.get(Some(admin), &one).await;
    assert_eq!(
        (lead["status"].as_str(), lead["name"].as_str()),
        (Some("open"), Some("Walk-in"))
    );
    let (_, found) = app.get(Some(admin), "/api/v1/clients?limit=200").await;
    assert_eq!(
        found["items"].as_array().map(Vec::len),
        Some(3),
        "no client from a failed conversion"
    );
    report("leads", n);
}

// ---------------------------------------------------------------------------------------
// Interests and interactions

#[tokio::test]
async fn interests_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/interests";
    let one = format!("/api/v1/interests/{}", w.interest);
    let stage = format!("/api/v1/interests/{}/stage", w.interest);
    let c = w.client;
    let mut n = reject(
        app,
        Some(admin),
        malformed(POST, path, &json!({"title": "Deal", "client_id": c})),
    )
    .await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"title": "Deal"})),
    )
    .await;
    n += reject(
        app,
        Some(admin),
        malformed(POST, &stage, &json!({"stage_id": w.stage_next})),
    )
    .await;
    let new = |what, body: Value, status, code, field| -> Case {
        (what, POST, path.into(), j(body), status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        new("no title", json!({"client_id": c}), S422, "missing_field", Some("title")),
        new("title too long", json!({"title": long(201), "client_id": c}), S422, "too_long", Some("title")),
        new("blank title", json!({"title": "\n", "client_id": c}), S422, "required", Some("title")),
        new("no party", json!({"title": "Deal"}), S422, "required", Some("client_id")),
        new("client and lead", json!({"title": "Deal", "client_id": c, "lead_id": w.lead}), S422, "conflicting_party", Some("lead_id")),
        new("no such client", json!({"title": "Deal", "client_id": 999_999}), S422, "not_found", Some("client_id")),
        new("no such lead", json!({"title": "Deal", "lead_id": 999_999}), S422, "not_found", Some("lead_id")),
        new("a converted lead", json!({"title": "Deal", "lead_id": w.converted_lead}), S422, "converted", Some("lead_id")),
        new("contact of another client", json!({"title": "Deal", "client_id": c, "contact_id": w.other_contact}), S422, "wrong_client", Some("contact_id")),
        new("no such contact", json!({"title": "Deal", "client_id": c, "contact_id": 999_999}), S422, "not_found", Some("contact_id")),
        new("a lead with a contact", json!({"title": "Deal", "lead_id": w.lead, "contact_id": w.contact}), S422, "invalid", Some("contact_id")),
        new("no such scenario", json!({"title": "Deal", "client_id": c, "scenario_id": 999_999}), S422, "not_found", Some("scenario_id")),
        new("currency in words", json!({"title": "Deal", "client_id": c, "currency": "rubles"}), S422, "invalid_currency", Some("currency")),
        new("currency is a number", json!({"title": "Deal", "client_id": c, "currency": 643}), S422, "invalid_type", Some("currency")),
        new("negative amount", json!({"title": "Deal", "client_id": c, "amount_minor": -1}), S422, "invalid_amount", Some("amount_minor")),
        new("amount as text", json!({"title": "Deal", "client_id": c, "amount_minor": "100"}), S422, "invalid_type", Some("amount_minor")),
        new("fractional amount", json!({"title": "Deal", "client_id": c, "amount_minor": 1.5}), S422, "invalid_type", Some("amount_minor")),
        new("amount of 1e20", json!({"title": "Deal", "client_id": c, "amount_minor": 1e20}), S422, "invalid_type", Some("amount_minor")),
        ("amount of 2^63", POST, path.into(), raw(format!(r#"{{"title": "Deal", "client_id": {c}, "amount_minor": 9223372036854775808}}"#)), S422, "invalid_value", Some("amount_minor")),
        ("amount beyond any number", POST, path.into(), raw(format!(r#"{{"title": "Deal", "client_id": {c}, "amount_minor": 1e400}}"#)), S400, "malformed_json", None),
        new("source too long", json!({"title": "Deal", "client_id": c, "source": long(101)}), S422, "too_long", Some("source")),
        new("no such responsible", json!({"title": "Deal", "client_id": c, "responsible_id": 999_999}), S422, "not_found", Some("responsible_id")),
        new("the stage is not chosen", json!({"title": "Deal", "client_id": c, "stage_id": w.stage_next}), S422, "unknown_field", Some("stage_id")),
        ("bad currency", PATCH, one.clone(), j(json!({"currency": "XX"})), S422, "invalid_currency", Some("currency")),
        ("negative amount", PATCH, one.clone(), j(json!({"amount_minor": -5})), S422, "invalid_amount", Some("amount_minor")),
        ("blank title", PATCH, one.clone(), j(json!({"title": ""})), S422, "required", Some("title")),
        ("contact of another client", PATCH, one.clone(), j(json!({"contact_id": w.other_contact})), S422, "wrong_client", Some("contact_id")),
        ("no such responsible", PATCH, one.clone(), j(json!({"responsible_id": 999_999})), S422, "not_found", Some("responsible_id")),
        ("status follows the stage", PATCH, one.clone(), j(json!({"status": "won"})), S422, "unknown_field", Some("status")),
        ("no such Interest", PATCH, "/api/v1/interests/999999".into(), j(json!({"title": "X"})), S404, "not_found", None),
        ("id is text", GET, "/api/v1/interests/abc".into(), Body::Empty, S400, "invalid_path", None),
        ("no stage", POST, stage.clone(), j(json!({})), S422, "missing_field", Some("stage_id")),
        ("stage as text", POST, stage.clone(), j(json!({"stage_id": w.stage_next.to_string()})), S422, "invalid_type", Some("stage_id")),
        ("stage of another scenario", POST, stage.clone(), j(json!({"stage_id": w.foreign_stage})), S422, "not_found", Some("stage_id")),
        ("no such stage", POST, stage.clone(), j(json!({"stage_id": 999_999})), S422, "not_found", Some("stage_id")),
        ("the stage it is at", POST, stage.clone(), j(json!({"stage_id": w.stage_now})), S409, "conflict", Some("stage_id")),
        ("unknown field", POST, stage.clone(), j(json!({"stage_id": w.stage_next, "comment": "go"})), S422, "unknown_field", Some("comment")),
        ("no such Interest", POST, "/api/v1/interests/999999/stage".into(), j(json!({"stage_id": w.stage_next})), S404, "not_found", None),
        ("id is text", POST, "/api/v1/interests/abc/stage".into(), j(json!({"stage_id": w.stage_next})), S400, "invalid_path", None),
        ("id is text", GET, "/api/v1/interests/abc/stages".into(), Body::Empty, S400, "invalid_path", None),
        ("no such Interest", GET, "/api/v1/interests/999999/stages".into(), Body::Empty, S404, "not_found", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let list = |s: &str| format!("/api/v1/interests?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown status", list("status=closed"), S400, "invalid_query", None),
        get("garbage cursor", list("cursor=bm90IGEgY3Vyc29y"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", list(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("stage_id=1"), S400, "invalid_query", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's client", POST, path.into(), j(json!({"title": "Deal", "client_id": c})), S422, "not_found", Some("client_id")),
        ("someone else's Interest", POST, stage.clone(), j(json!({"stage_id": w.stage_next})), S404, "not_found", None),
        ("someone else's Interest", PATCH, one.clone(), j(json!({"title": "Mine"})), S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(json!({"title": "Deal", "client_id": c})), S403, "forbidden", None),
        ("a read-only key", POST, stage.clone(), j(json!({"stage_id": w.stage_next})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (PATCH, one.clone()),
            (POST, stage.clone()),
        ],
    )
    .await;
    assert_eq!(
        listed(app, admin, path, "id").await.len(),
        2,
        "no Interest was created"
    );
    let (_, i) = app.get(Some(admin), &one).await;
    assert_eq!(i["stage_id"], w.stage_now);
    assert_eq!(
        listed(app, admin, &format!("{one}/stages"), "to_stage_id")
            .await
            .len(),
        1
    );
    report("interests", n);
}

#[tokio::test]
async fn interactions_reject_bad_input() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/interactions";
    let one = format!("/api/v1/interactions/{}", w.interaction);
    let c = w.client;
    let mut n = reject(
        app,
        Some(admin),
        malformed(
            POST,
            path,
            &json!({"kind": "note", "subject": "Called", "client_id": c}),
        ),
    )
    .await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"subject": "Called"})),
    )
    .await;
    let new = |what, body: Value, status, code, field| -> Case {
        (what, POST, path.into(), j(body), status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        new("no kind", json!({"subject": "S", "client_id": c}), S422, "missing_field", Some("kind")),
        new("unknown kind", json!({"kind": "fax", "subject": "S", "client_id": c}), S422, "invalid_value", Some("kind")),
        new("no subject", json!({"kind": "note", "client_id": c}), S422, "missing_field", Some("subject")),
        new("subject too long", json!({"kind": "note", "subject": long(201), "client_id": c}), S422, "too_long", Some("subject")),
        new("blank subject", json!({"kind": "note", "subject": "", "client_id": c}), S422, "required", Some("subject")),
        new("body too long", json!({"kind": "note", "subject": "S", "body": long(100_001), "client_id": c}), S422, "too_long", Some("body")),
        new("NUL in the body", json!({"kind": "note", "subject": "S", "body": "a\u{0}", "client_id": c}), S422, "invalid_characters", Some("body")),
        new("planned without a time", json!({"kind": "task", "subject": "S", "status": "planned", "client_id": c}), S422, "required", Some("planned_at")),
        new("unknown status", json!({"kind": "task", "subject": "S", "status": "later", "client_id": c}), S422, "invalid_value", Some("status")),
        new("time in words", json!({"kind": "task", "subject": "S", "planned_at": "tomorrow", "client_id": c}), S422, "invalid_value", Some("planned_at")),
        new("time as a number", json!({"kind": "task", "subject": "S", "planned_at": 1_700_000_000, "client_id": c}), S422, "invalid_type", Some("planned_at")),
        new("impossible date", json!({"kind": "note", "subject": "S", "done_at": "2026-13-40T99:00:00Z", "client_id": c}), S422, "invalid_value", Some("done_at")),
        new("no party", json!({"kind": "note", "subject": "S"}), S422, "required", Some("client_id")),
        new("no such Interest", json!({"kind": "note", "subject": "S", "interest_id": 999_999}), S422, "not_found", Some("interest_id")),
        new("Interest of another client", json!({"kind": "note", "subject": "S", "client_id": c, "interest_id": w.other_interest}), S422, "wrong_party", Some("interest_id")),
        new("contact of another client", json!({"kind": "note", "subject": "S", "client_id": c, "contact_id": w.other_contact}), S422, "wrong_client", Some("contact_id")),
        new("no such responsible", json!({"kind": "note", "subject": "S", "client_id": c, "responsible_id": 999_999}), S422, "not_found", Some("responsible_id")),
        new("unknown field", json!({"kind": "note", "subject": "S", "client_id": c, "attachments": []}), S422, "unknown_field", Some("attachments")),
        ("blank subject", PATCH, one.clone(), j(json!({"subject": " "})), S422, "required", Some("subject")),
        ("body too long", PATCH, one.clone(), j(json!({"body": long(100_001)})), S422, "too_long", Some("body")),
        ("unknown status", PATCH, one.clone(), j(json!({"status": "later"})), S422, "invalid_value", Some("status")),
        ("time in words", PATCH, one.clone(), j(json!({"planned_at": "soon"})), S422, "invalid_value", Some("planned_at")),
        ("no such responsible", PATCH, one.clone(), j(json!({"responsible_id": 999_999})), S422, "not_found", Some("responsible_id")),
        ("kind is not patched", PATCH, one.clone(), j(json!({"kind": "call"})), S422, "unknown_field", Some("kind")),
        ("no such interaction", PATCH, "/api/v1/interactions/999999".into(), j(json!({"subject": "X"})), S404, "not_found", None),
        ("id is text", GET, "/api/v1/interactions/abc".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let list = |s: &str| format!("/api/v1/interactions?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown status", list("status=open"), S400, "invalid_query", None),
        get("garbage cursor", list("cursor=x"), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("kind=note"), S400, "invalid_query", None),
        get("Interest id is text", list("interest_id=x"), S400, "invalid_query", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's client", POST, path.into(), j(json!({"kind": "note", "subject": "S", "client_id": c})), S422, "not_found", Some("client_id")),
        ("someone else's interaction", PATCH, one.clone(), j(json!({"subject": "Mine"})), S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(json!({"kind": "note", "subject": "S", "client_id": c})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (PATCH, one.clone()),
            (GET, one.clone()),
        ],
    )
    .await;
    assert_eq!(
        listed(app, admin, path, "id").await.len(),
        1,
        "no interaction was created"
    );
    let (_, x) = app.get(Some(admin), &one).await;
    assert_eq!(x["subject"], "First note");
    report("interactions", n);
}

// ---------------------------------------------------------------------------------------
// dialogs, messages, calls

#[tokio::test]
async fn dialogs_reject_bad_input() {
    let w = world().await;
    let (app, admin, key) = (&w.app, &w.app.admin, &w.connector);
    let path = "/api/v1/dialogs";
    let one = format!("/api/v1/dialogs/{}", w.dialog);
    let base =
        json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "chat-new"});
    let new = |what, extra: Value, status, code, field| -> Case {
        let mut v = base.clone();
        for (k, x) in extra.as_object().expect("object") {
            if x.is_null() {
                v.as_object_mut().expect("object").remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        (what, POST, path.into(), j(v), status, code, field)
    };
    let mut n = reject(app, Some(key), malformed(POST, path, &base)).await;
    n += reject(
        app,
        Some(admin),
        malformed(PATCH, &one, &json!({"status": "closed"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        new("no channel", json!({"channel": null}), S422, "missing_field", Some("channel")),
        new("channel with blanks", json!({"channel": "Tele Gram"}), S422, "invalid_name", Some("channel")),
        new("empty channel", json!({"channel": ""}), S422, "invalid_name", Some("channel")),
        new("connector id of 65 characters", json!({"connector_id": "c".repeat(65)}), S422, "invalid_name", Some("connector_id")),
        new("SQL in the connector id", json!({"connector_id": "tg';DROP TABLE dialogs;--"}), S422, "invalid_name", Some("connector_id")),
        new("no thread id", json!({"external_thread_id": null}), S422, "missing_field", Some("external_thread_id")),
        new("empty thread id", json!({"external_thread_id": " "}), S422, "invalid_external_id", Some("external_thread_id")),
        new("thread id of 257 bytes", json!({"external_thread_id": "t".repeat(257)}), S422, "invalid_external_id", Some("external_thread_id")),
        new("NUL in the thread id", json!({"external_thread_id": "a\u{0}b"}), S422, "invalid_external_id", Some("external_thread_id")),
        new("subject too long", json!({"subject": long(201)}), S422, "too_long", Some("subject")),
        new("no such identity", json!({"identity_id": 999_999}), S422, "not_found", Some("identity_id")),
        new("identity id as text", json!({"identity_id": "1"}), S422, "invalid_type", Some("identity_id")),
        new("no such client", json!({"client_id": 999_999}), S422, "not_found", Some("client_id")),
        new("no such lead", json!({"lead_id": 999_999}), S422, "not_found", Some("lead_id")),
        new("client and lead", json!({"client_id": w.client, "lead_id": w.lead}), S422, "conflicting_party", Some("lead_id")),
        new("contact of another client", json!({"client_id": w.client, "contact_id": w.other_contact}), S422, "wrong_client", Some("contact_id")),
        new("no such Interest", json!({"interest_id": 999_999}), S422, "not_found", Some("interest_id")),
        new("no such assignee", json!({"assignee_id": 999_999}), S422, "not_found", Some("assignee_id")),
        new("no such department", json!({"department_id": 999_999}), S422, "not_found", Some("department_id")),
        new("the status is not chosen", json!({"status": "closed"}), S422, "unknown_field", Some("status")),
    ];
    n += reject(app, Some(key), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("unknown status", PATCH, one.clone(), j(json!({"status": "archived"})), S422, "invalid_value", Some("status")),
        ("no such assignee", PATCH, one.clone(), j(json!({"assignee_id": 999_999})), S422, "not_found", Some("assignee_id")),
        ("no such department", PATCH, one.clone(), j(json!({"department_id": 999_999})), S422, "not_found", Some("department_id")),
        ("no such Interest", PATCH, one.clone(), j(json!({"interest_id": 999_999})), S422, "not_found", Some("interest_id")),
        ("Interest of another client", PATCH, one.clone(), j(json!({"interest_id": w.other_interest})), S422, "wrong_party", Some("interest_id")),
        ("shared as text", PATCH, one.clone(), j(json!({"shared": "no"})), S422, "invalid_type", Some("shared")),
        ("channel is not patched", PATCH, one.clone(), j(json!({"channel": "vk"})), S422, "unknown_field", Some("channel")),
        ("no such dialog", PATCH, "/api/v1/dialogs/999999".into(), j(json!({"status": "closed"})), S404, "not_found", None),
        ("no such dialog", GET, "/api/v1/dialogs/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", GET, "/api/v1/dialogs/abc".into(), Body::Empty, S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let list = |s: &str| format!("/api/v1/dialogs?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown status", list("status=pending"), S400, "invalid_query", None),
        get("garbage cursor", list("cursor=%5B%5D"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", list(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("channel=telegram"), S400, "invalid_query", None),
        get("department id is text", list("department_id=sales"), S400, "invalid_query", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's dialog", PATCH, one.clone(), j(json!({"status": "closed"})), S404, "not_found", None),
        ("someone else's dialog", GET, one.clone(), Body::Empty, S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(base.clone()), S403, "forbidden", None),
        ("a read-only key", PATCH, one.clone(), j(json!({"status": "closed"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (PATCH, one.clone()),
        ],
    )
    .await;
    assert_eq!(
        listed(app, admin, path, "id").await.len(),
        2,
        "no dialog was created"
    );
    let (_, d) = app.get(Some(admin), &one).await;
    assert_eq!(
        (d["status"].as_str(), d["interest_id"].as_i64()),
        (Some("open"), None)
    );
    report("dialogs", n);
}

#[tokio::test]
async fn messages_reject_bad_input() {
    let w = world().await;
    let (app, admin, key) = (&w.app, &w.app.admin, &w.connector);
    let path = format!("/api/v1/dialogs/{}/messages", w.dialog);
    let delivery = format!("/api/v1/messages/{}/delivery", w.outbound);
    let attach = |a: Value| j(json!({"body": "see attached", "attachments": [a]}));
    let file = json!({"name": "a.pdf", "mime_type": "application/pdf", "url": "https://files.example.ru/a.pdf"});
    let with = |extra: Value| {
        let mut a = file.clone();
        for (k, x) in extra.as_object().expect("object") {
            a[k] = x.clone();
        }
        attach(a)
    };
    let mut n = reject(
        app,
        Some(admin),
        malformed(POST, &path, &json!({"body": "hi"})),
    )
    .await;
    n += reject(
        app,
        Some(key),
        malformed(POST, &delivery, &json!({"status": "sent"})),
    )
    .await;
    let post = |what, body: Body, status, code, field| -> Case {
        (what, POST, path.clone(), body, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        post("no body, no attachment", j(json!({})), S422, "required", Some("body")),
        post("blank body", j(json!({"body": " "})), S422, "required", Some("body")),
        post("body too long", j(json!({"body": long(100_001)})), S422, "too_long", Some("body")),
        post("NUL in the body", j(json!({"body": "\u{0}"})), S422, "invalid_characters", Some("body")),
        post("body is a number", j(json!({"body": 5})), S422, "invalid_type", Some("body")),
        post("unknown direction", j(json!({"body": "x", "direction": "sideways"})), S422, "invalid_value", Some("direction")),
        post("21 attachments", j(json!({"attachments": vec![file.clone(); 21]})), S422, "too_many", Some("attachments")),
        post("attachment without a url", attach(json!({"name": "a", "mime_type": "text/plain"})), S422, "missing_field", Some("attachments.0.url")),
        post("attachment without a name", with(json!({"name": ""})), S422, "required", Some("attachments.0.name")),
        post("attachment url too long", with(json!({"url": format!("https://x.ru/{}", "a".repeat(2040))})), S422, "too_long", Some("attachments.0.url")),
        post("negative size", with(json!({"size": -1})), S422, "invalid_value", Some("attachments.0.size")),
        post("attachment with content", with(json!({"data": "AAAA"})), S422, "unknown_field", Some("attachments.0.data")),
        post("empty external id", j(json!({"body": "x", "external_id": ""})), S422, "invalid_external_id", Some("external_id")),
        post("external id of 257 bytes", j(json!({"body": "x", "external_id": "e".repeat(257)})), S422, "invalid_external_id", Some("external_id")),
        post("time in words", j(json!({"body": "x", "sent_at": "now"})), S422, "invalid_value", Some("sent_at")),
        post("the author is not chosen", j(json!({"body": "x", "author_user_id": 1})), S422, "unknown_field", Some("author_user_id")),
        post("a user posts an inbound message", j(json!({"body": "x", "direction": "inbound", "external_id": "m-9"})), S403, "forbidden", None),
        ("no such dialog", POST, "/api/v1/dialogs/999999/messages".into(), j(json!({"body": "x"})), S404, "not_found", None),
        ("id is text", POST, "/api/v1/dialogs/abc/messages".into(), j(json!({"body": "x"})), S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        post("inbound without an external id", j(json!({"body": "x", "direction": "inbound"})), S422, "required", Some("external_id")),
        post("control character in the external id", j(json!({"body": "x", "direction": "inbound", "external_id": "m\u{1}"})), S422, "invalid_external_id", Some("external_id")),
        ("external id of another dialog", POST, format!("/api/v1/dialogs/{}/messages", w.dialog2), j(json!({"body": "x", "direction": "inbound", "external_id": "m-1"})), S409, "conflict", Some("external_id")),
    ];
    n += reject(app, Some(key), cases).await;
    let list = |s: &str| format!("{path}?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("garbage cursor", list("cursor=!"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", list(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("direction=inbound"), S400, "invalid_query", None),
        get("limit is text", list("limit=all"), S400, "invalid_query", None),
        get("no such dialog", "/api/v1/dialogs/999999/messages".into(), S404, "not_found", None),
        get("id is text", "/api/v1/dialogs/abc/messages".into(), S400, "invalid_path", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let report_on = |what, m: i64, body: Value, status, code, field| -> Case {
        (
            what,
            POST,
            format!("/api/v1/messages/{m}/delivery"),
            j(body),
            status,
            code,
            field,
        )
    };
    let out = w.outbound;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        report_on("no status", out, json!({}), S422, "missing_field", Some("status")),
        report_on("received is not a report", out, json!({"status": "received"}), S422, "invalid_status", Some("status")),
        report_on("pending is not a report", out, json!({"status": "pending"}), S422, "invalid_status", Some("status")),
        report_on("unknown status", out, json!({"status": "lost"}), S422, "invalid_value", Some("status")),
        report_on("error too long", out, json!({"status": "failed", "error": "e".repeat(1001)}), S422, "too_long", Some("error")),
        report_on("empty provider id", out, json!({"status": "sent", "provider_message_id": ""}), S422, "invalid_external_id", Some("provider_message_id")),
        report_on("provider id is a number", out, json!({"status": "sent", "provider_message_id": 5}), S422, "invalid_type", Some("provider_message_id")),
        report_on("unknown field", out, json!({"status": "sent", "at": "2026-01-01T00:00:00Z"}), S422, "unknown_field", Some("at")),
        report_on("an inbound message", w.inbound, json!({"status": "read"}), S409, "conflict", Some("status")),
        report_on("no such message", 999_999, json!({"status": "sent"}), S404, "not_found", None),
        ("id is text", POST, "/api/v1/messages/abc/delivery".into(), j(json!({"status": "sent"})), S400, "invalid_path", None),
    ];
    n += reject(app, Some(key), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        post("someone else's dialog", j(json!({"body": "x"})), S404, "not_found", None),
        ("someone else's message", POST, delivery.clone(), j(json!({"status": "sent"})), S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        post("a read-only key", j(json!({"body": "x", "direction": "inbound", "external_id": "m-2"})), S403, "forbidden", None),
        ("a read-only key", POST, delivery.clone(), j(json!({"status": "sent"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.clone()),
            (GET, path.clone()),
            (POST, delivery.clone()),
        ],
    )
    .await;
    let ids = listed(app, admin, &path, "id").await;
    assert_eq!(
        ids,
        vec![json!(w.inbound), json!(w.outbound)],
        "no message was added"
    );
    let statuses = listed(app, admin, &path, "delivery_status").await;
    assert_eq!(statuses, vec![json!("received"), json!("pending")]);
    report("messages", n);
}

#[tokio::test]
async fn calls_reject_bad_input() {
    let w = world().await;
    let (app, admin, key) = (&w.app, &w.app.admin, &w.connector);
    let path = "/api/v1/calls";
    let one = format!("/api/v1/calls/{}", w.call);
    let ended = format!("/api/v1/calls/{}", w.ended_call);
    let base = json!({"connector_id": "pbx", "external_id": "call-9", "direction": "inbound", "from_number": "+7 916 765-43-21", "to_number": "102"});
    let new = |what, extra: Value, status, code, field| -> Case {
        let mut v = base.clone();
        for (k, x) in extra.as_object().expect("object") {
            if x.is_null() {
                v.as_object_mut().expect("object").remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        (what, POST, path.into(), j(v), status, code, field)
    };
    let mut n = reject(app, Some(key), malformed(POST, path, &base)).await;
    n += reject(
        app,
        Some(key),
        malformed(PATCH, &one, &json!({"status": "completed"})),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        new("no connector", json!({"connector_id": null}), S422, "missing_field", Some("connector_id")),
        new("no direction", json!({"direction": null}), S422, "missing_field", Some("direction")),
        new("unknown direction", json!({"direction": "sideways"}), S422, "invalid_value", Some("direction")),
        new("caller in words", json!({"from_number": "hello"}), S422, "invalid_phone", Some("from_number")),
        new("empty caller", json!({"from_number": ""}), S422, "required", Some("from_number")),
        new("number of 65 characters", json!({"to_number": "1".repeat(65)}), S422, "too_long", Some("to_number")),
        new("NUL in the number", json!({"to_number": "10\u{0}1"}), S422, "invalid_characters", Some("to_number")),
        new("SQL as a number", json!({"from_number": "1; DROP TABLE calls"}), S422, "invalid_phone", Some("from_number")),
        new("connector id with blanks", json!({"connector_id": "PBX 1"}), S422, "invalid_name", Some("connector_id")),
        new("empty call id", json!({"external_id": ""}), S422, "invalid_external_id", Some("external_id")),
        new("recorded as completed", json!({"status": "completed"}), S422, "invalid_status", Some("status")),
        new("unknown status", json!({"status": "dropped"}), S422, "invalid_value", Some("status")),
        new("no such operator", json!({"operator_id": 999_999}), S422, "not_found", Some("operator_id")),
        new("no such client", json!({"client_id": 999_999}), S422, "not_found", Some("client_id")),
        new("no such lead", json!({"lead_id": 999_999}), S422, "not_found", Some("lead_id")),
        new("no such Interest", json!({"interest_id": 999_999}), S422, "not_found", Some("interest_id")),
        new("time in words", json!({"started_at": "yesterday"}), S422, "invalid_value", Some("started_at")),
        new("extension too long", json!({"extension": "1".repeat(65)}), S422, "too_long", Some("extension")),
        new("unknown field", json!({"duration": 5}), S422, "unknown_field", Some("duration")),
        ("unknown status", PATCH, one.clone(), j(json!({"status": "dropped"})), S422, "invalid_value", Some("status")),
        ("an answered call rings again", PATCH, one.clone(), j(json!({"status": "ringing"})), S409, "conflict", Some("status")),
        ("an ended call is answered", PATCH, ended.clone(), j(json!({"status": "answered"})), S409, "conflict", Some("status")),
        ("reason too long", PATCH, one.clone(), j(json!({"status": "missed", "missed_reason": long(101)})), S422, "too_long", Some("missed_reason")),
        ("extension too long", PATCH, one.clone(), j(json!({"extension": "1".repeat(65)})), S422, "too_long", Some("extension")),
        ("recording url too long", PATCH, one.clone(), j(json!({"recording_url": "r".repeat(2049)})), S422, "too_long", Some("recording_url")),
        ("no such operator", PATCH, one.clone(), j(json!({"operator_id": 999_999})), S422, "not_found", Some("operator_id")),
        ("no such Interest", PATCH, one.clone(), j(json!({"interest_id": 999_999})), S422, "not_found", Some("interest_id")),
        ("time in words", PATCH, one.clone(), j(json!({"answered_at": "just now"})), S422, "invalid_value", Some("answered_at")),
        ("numbers are not patched", PATCH, one.clone(), j(json!({"from_number": "+74951234567"})), S422, "unknown_field", Some("from_number")),
        ("no such call", PATCH, "/api/v1/calls/999999".into(), j(json!({"status": "missed"})), S404, "not_found", None),
        ("no such call", GET, "/api/v1/calls/999999".into(), Body::Empty, S404, "not_found", None),
        ("id is text", PATCH, "/api/v1/calls/abc".into(), j(json!({"status": "missed"})), S400, "invalid_path", None),
    ];
    n += reject(app, Some(key), cases).await;
    let list = |s: &str| format!("/api/v1/calls?{s}");
    let get = |what, path: String, status, code, field| -> Case {
        (what, GET, path, Body::Empty, status, code, field)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("unknown status", list("status=busy"), S400, "invalid_query", None),
        get("garbage cursor", list("cursor=%F0%9F%92%A9"), S422, "invalid_cursor", Some("cursor")),
        get("cursor of another listing", list(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
        get("unknown parameter", list("from_number=1"), S400, "invalid_query", None),
        get("user id is text", list("user_id=me"), S400, "invalid_query", None),
    ];
    n += reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("someone else's call", PATCH, one.clone(), j(json!({"status": "completed"})), S404, "not_found", None),
        ("someone else's call", GET, one.clone(), Body::Empty, S404, "not_found", None),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a read-only key", POST, path.into(), j(base.clone()), S403, "forbidden", None),
        ("a read-only key", PATCH, one.clone(), j(json!({"status": "completed"})), S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("a key without calls:read", GET, path.into(), Body::Empty, S403, "forbidden", None),
    ];
    n += reject(app, Some(&w.changes_key), cases).await;
    n += reject_strangers(
        app,
        &[
            (POST, path.into()),
            (GET, path.into()),
            (PATCH, one.clone()),
        ],
    )
    .await;
    assert_eq!(
        listed(app, admin, path, "id").await.len(),
        2,
        "no call was recorded"
    );
    let (_, k) = app.get(Some(admin), &one).await;
    assert_eq!(
        (k["status"].as_str(), k["extension"].as_str()),
        (Some("answered"), None)
    );
    report("calls", n);
}

// ---------------------------------------------------------------------------------------
// the Feed, the change log and the audit trail

#[tokio::test]
async fn feed_rejects_bad_query_params() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let targets = [
        format!("/api/v1/clients/{}/feed", w.client),
        format!("/api/v1/contacts/{}/feed", w.contact),
        format!("/api/v1/leads/{}/feed", w.lead),
        format!("/api/v1/interests/{}/feed", w.interest),
    ];
    let mut n = 0;
    for feed in &targets {
        let q = |s: &str| format!("{feed}?{s}");
        let get = |what, path: String, status, code, field| -> Case {
            (what, GET, path, Body::Empty, status, code, field)
        };
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            get("unknown kind", q("kinds=bogus"), S400, "invalid_query", None),
            get("one unknown kind among good ones", q("kinds=note,call,bogus"), S400, "invalid_query", None),
            get("SQL as a kind", q("kinds=note%27)%20OR%201%3D1--"), S400, "invalid_query", None),
            get("kinds twice", q("kinds=note&kinds=task"), S400, "invalid_query", None),
            get("limit is text", q("limit=x"), S400, "invalid_query", None),
            get("garbage cursor", q("cursor=AAAA"), S422, "invalid_cursor", Some("cursor")),
            get("cursor of another listing", q(&format!("cursor={}", foreign_cursor(false))), S422, "invalid_cursor", Some("cursor")),
            get("unknown parameter", q("since=1"), S400, "invalid_query", None),
        ];
        n += reject(app, Some(admin), cases).await;
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            get("someone else's timeline", feed.clone(), S404, "not_found", None),
        ];
        n += reject(app, Some(&w.manager), cases).await;
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            get("a key without interactions:read", feed.clone(), S403, "forbidden", None),
        ];
        n += reject(app, Some(&w.connector), cases).await;
        n += reject_strangers(app, &[(GET, feed.clone())]).await;
    }
    let get = |what, path: &str, status, code| -> Case {
        (what, GET, path.into(), Body::Empty, status, code, None)
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("no such client", "/api/v1/clients/999999/feed", S404, "not_found"),
        get("no such contact", "/api/v1/contacts/999999/feed", S404, "not_found"),
        get("no such lead", "/api/v1/leads/999999/feed", S404, "not_found"),
        get("no such Interest", "/api/v1/interests/999999/feed", S404, "not_found"),
        get("id is text", "/api/v1/clients/abc/feed", S400, "invalid_path"),
        get("id is zero", "/api/v1/leads/0/feed", S400, "invalid_path"),
    ];
    n += reject(app, Some(admin), cases).await;
    report("feed", n);
}

#[tokio::test]
async fn changes_and_audit_reject_bad_query_params() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let get = |what, path: &str, status, code| -> Case {
        (what, GET, path.into(), Body::Empty, status, code, None)
    };
    let bad = "invalid_query";
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("since is text", "/api/v1/changes?since=abc", S400, bad),
        get("since is a fraction", "/api/v1/changes?since=1.5", S400, bad),
        get("since beyond i64", "/api/v1/changes?since=99999999999999999999", S400, bad),
        get("since twice", "/api/v1/changes?since=1&since=2", S400, bad),
        get("limit is text", "/api/v1/changes?limit=all", S400, bad),
        get("unknown parameter", "/api/v1/changes?entity=client", S400, bad),
        get("entity id is text", "/api/v1/audit?entity_id=x", S400, bad),
        get("before is text", "/api/v1/audit?before=yesterday", S400, bad),
        get("limit is text", "/api/v1/audit?limit=x", S400, bad),
        get("entity twice", "/api/v1/audit?entity=client&entity=lead", S400, bad),
        get("unknown parameter", "/api/v1/audit?since=1", S400, bad),
    ];
    let mut n = reject(app, Some(admin), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("a manager reads the change log", "/api/v1/changes", S403, "forbidden"),
        get("a manager reads the audit trail", "/api/v1/audit", S403, "forbidden"),
    ];
    n += reject(app, Some(&w.manager), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("a key without changes:read", "/api/v1/changes", S403, "forbidden"),
    ];
    n += reject(app, Some(&w.reader), cases).await;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        get("changes:read is not admin", "/api/v1/audit", S403, "forbidden"),
    ];
    n += reject(app, Some(&w.changes_key), cases).await;
    n += reject_strangers(
        app,
        &[
            (GET, "/api/v1/changes".into()),
            (GET, "/api/v1/audit".into()),
        ],
    )
    .await;
    let (status, _) = app
        .get(Some(&w.changes_key), "/api/v1/changes?since=0")
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "changes:read may read the change log"
    );
    report("changes and audit", n);
}

// ---------------------------------------------------------------------------------------
// concerns that cut across the families

#[tokio::test]
async fn bad_path_ids_are_rejected_on_every_route() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    #[rustfmt::skip]
    let routes: Vec<(Method, &str, Value)> = vec![
        (GET, "/api/v1/users/{}", json!(null)), (PATCH, "/api/v1/users/{}", json!({"name": "X"})),
        (DELETE, "/api/v1/api-keys/{}", json!(null)), (DELETE, "/api/v1/custom-fields/{}", json!(null)),
        (GET, "/api/v1/clients/{}", json!(null)), (PATCH, "/api/v1/clients/{}", json!({"name": "X"})),
        (GET, "/api/v1/clients/{}/feed", json!(null)), (POST, "/api/v1/clients/{}/contacts", json!({"name": "X"})),
        (GET, "/api/v1/contacts/{}", json!(null)), (PATCH, "/api/v1/contacts/{}", json!({"name": "X"})),
        (GET, "/api/v1/contacts/{}/feed", json!(null)), (DELETE, "/api/v1/identities/{}", json!(null)),
        (GET, "/api/v1/leads/{}", json!(null)), (PATCH, "/api/v1/leads/{}", json!({"name": "X"})),
        (POST, "/api/v1/leads/{}/convert", json!({})), (GET, "/api/v1/leads/{}/feed", json!(null)),
        (GET, "/api/v1/interests/{}", json!(null)), (PATCH, "/api/v1/interests/{}", json!({"title": "X"})),
        (POST, "/api/v1/interests/{}/stage", json!({"stage_id": 1})), (GET, "/api/v1/interests/{}/stages", json!(null)),
        (GET, "/api/v1/interests/{}/feed", json!(null)), (GET, "/api/v1/interactions/{}", json!(null)),
        (PATCH, "/api/v1/interactions/{}", json!({"subject": "X"})), (GET, "/api/v1/dialogs/{}", json!(null)),
        (PATCH, "/api/v1/dialogs/{}", json!({"status": "closed"})), (GET, "/api/v1/dialogs/{}/messages", json!(null)),
        (POST, "/api/v1/dialogs/{}/messages", json!({"body": "x"})), (POST, "/api/v1/messages/{}/delivery", json!({"status": "sent"})),
        (GET, "/api/v1/calls/{}", json!(null)), (PATCH, "/api/v1/calls/{}", json!({"status": "missed"})),
    ];
    #[rustfmt::skip]
    let ids = ["abc", "0", "-1", "1.5", "1e3", "0x10", "%20", "99999999999999999999", "1%27%20OR%201%3D1", "%F0%9F%92%A9"];
    let mut cases: Vec<Case> = Vec::new();
    for (method, template, body) in &routes {
        for bad in ids {
            let body = if body.is_null() {
                Body::Empty
            } else {
                j(body.clone())
            };
            let path = template.replace("{}", bad);
            cases.push((
                "bad id",
                method.clone(),
                path,
                body,
                S400,
                "invalid_path",
                None,
            ));
        }
    }
    let n = reject(app, Some(admin), cases).await;
    report("path ids", n);
}

#[tokio::test]
async fn hostile_json_is_rejected_without_writes() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let path = "/api/v1/clients";
    let deep_array = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(5000), "}".repeat(5000));
    let mut n = 0;
    for name in [
        "\u{0}",
        "a\u{7}b",
        "\u{1b}[2J",
        "tab\u{7f}",
        "\u{9b}31m",
        "line\u{8}",
    ] {
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("control character in a name", POST, path.into(), j(json!({"kind": "person", "name": name})), S422, "invalid_characters", Some("name")),
        ];
        n += reject(app, Some(admin), cases).await;
    }
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("deeply nested custom field", POST, path.into(), raw(format!(r#"{{"kind": "person", "name": "Deep", "custom_fields": {{"tier": {deep_array}}}}}"#)), S400, "malformed_json", None),
        ("deeply nested object in a custom field", POST, path.into(), raw(format!(r#"{{"kind": "person", "name": "Deep", "custom_fields": {{"tier": {deep_object}}}}}"#)), S400, "malformed_json", None),
        ("deeply nested name", POST, path.into(), raw(format!(r#"{{"kind": "person", "name": {deep_object}}}"#)), S400, "malformed_json", None),
        ("number beyond f64", POST, path.into(), raw(r#"{"kind": "person", "name": "Big", "responsible_id": 1e400}"#), S400, "malformed_json", None),
        ("id beyond i64", POST, path.into(), raw(r#"{"kind": "person", "name": "Big", "responsible_id": 99999999999999999999}"#), S422, "invalid_type", Some("responsible_id")),
        ("negative id beyond i64", POST, path.into(), raw(r#"{"kind": "person", "name": "Big", "responsible_id": -99999999999999999999}"#), S422, "invalid_type", Some("responsible_id")),
        ("lone surrogate in a name", POST, path.into(), raw(r#"{"kind": "person", "name": "\ud800"}"#), S400, "malformed_json", None),
        ("invalid UTF-8 in a name", POST, path.into(), raw(b"{\"kind\": \"person\", \"name\": \"\xc3\x28\"}".to_vec()), S400, "malformed_json", None),
        ("overlong UTF-8 slash", POST, path.into(), raw(b"{\"kind\": \"person\", \"name\": \"\xc0\xaf\"}".to_vec()), S400, "malformed_json", None),
        ("raw newline inside a string", POST, path.into(), raw("{\"kind\": \"person\", \"name\": \"a\nb\"}"), S400, "malformed_json", None),
        ("the same key twice", POST, path.into(), raw(r#"{"kind": "person", "name": "A", "name": "B"}"#), S422, "invalid_value", None),
        ("custom field number beyond f64", POST, path.into(), raw(r#"{"kind": "person", "name": "Big", "custom_fields": {"tier": 1e999}}"#), S400, "malformed_json", None),
    ];
    n += reject(app, Some(admin), cases).await;
    let (_, all) = app.get(Some(admin), "/api/v1/clients?limit=200").await;
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(3),
        "no client was created: {all}"
    );
    report("hostile JSON", n);
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim_and_harmless() {
    let w = world().await;
    let (app, admin) = (&w.app, &w.app.admin);
    let sql = "'; DROP TABLE clients;--";
    let names = [
        sql.to_owned(),
        "Robert'); DELETE FROM identities WHERE ('1'='1".to_owned(),
        "100% _match_ \\ \"quoted\" `ticks`".to_owned(),
        "🚀 Ракета 株式会社 شركة".to_owned(),
        "Cafe\u{301} \u{200d}\u{2028}zero-width".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        long(200),
        "🙂".repeat(200),
    ];
    let mut ids = Vec::new();
    for name in &names {
        let (status, c) = app.post(Some(admin), "/api/v1/clients", &json!({
            "kind": "company", "name": name, "notes": format!("{name}\nsecond line\twith a tab"),
        }))
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name:?}: {c}");
        let (_, card) = app
            .get(Some(admin), &format!("/api/v1/clients/{}", id(&c)))
            .await;
        assert_eq!(
            card["name"].as_str(),
            Some(name.as_str()),
            "stored verbatim"
        );
        assert_eq!(
            card["notes"].as_str(),
            Some(format!("{name}\nsecond line\twith a tab").as_str())
        );
        ids.push(id(&c));
    }
    // The tables are all still there, and search treats the text as text.
    let (status, all) = app.get(Some(admin), "/api/v1/clients?limit=200").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(3 + names.len()),
        "{all}"
    );
    #[rustfmt::skip]
    let searches = [(sql, ids[0]), ("drop", ids[0]), ("robert", ids[1]), ("ракета", ids[3]), ("РАКЕТА", ids[3]), ("株式会社", ids[3])];
    for (q, expect) in searches {
        let (status, found) = app
            .get(Some(admin), &format!("/api/v1/clients?q={}", urlencode(q)))
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let found: Vec<i64> = found["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(id)
            .collect();
        assert!(found.contains(&expect), "q={q}: {found:?}");
    }
    for q in ["%", "_", "' OR '1'='1", "\u{0}", "a\u{0}b", "%FF"] {
        let (status, found) = app
            .get(Some(admin), &format!("/api/v1/clients?q={}", urlencode(q)))
            .await;
        assert_eq!(status, StatusCode::OK, "q={q:?}: {found}");
    }
    let (_, card) = app
        .get(Some(admin), &format!("/api/v1/clients/{}", w.client))
        .await;
    assert_eq!(
        card["identities"].as_array().map(Vec::len),
        Some(2),
        "{card}"
    );
    // A message body is text too.
    let body = "1; DELETE FROM messages; -- 🙂\nstill one message";
    let (status, m) = app
        .post(
            Some(admin),
            &format!("/api/v1/dialogs/{}/messages", w.dialog),
            &json!({"body": body}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let bodies = listed(
        app,
        admin,
        &format!("/api/v1/dialogs/{}/messages", w.dialog),
        "body",
    )
    .await;
    assert_eq!(bodies, vec![json!("hi"), json!("hello"), json!(body)]);
    // Text of exactly the limit is accepted; one character more is not (counted in characters).
    let (status, _) = app.post(Some(admin), "/api/v1/interactions", &json!({
        "kind": "note", "subject": long(200), "body": "ё".repeat(100_000), "client_id": w.client,
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("name one character over", POST, "/api/v1/clients".into(), j(json!({"kind": "person", "name": "🙂".repeat(201)})), S422, "too_long", Some("name")),
        ("body one character over", POST, "/api/v1/interactions".into(), j(json!({"kind": "note", "subject": "S", "body": "ё".repeat(100_001), "client_id": w.client})), S422, "too_long", Some("body")),
    ];
    let n = reject(app, Some(admin), cases).await;
    report("hostile strings", names.len() + n);
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
