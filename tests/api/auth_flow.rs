//! Sign-in, sessions, one-time passwords, API keys, rate limiting.

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sign_in_and_out() {
    let app = spawn_app().await;
    let bad = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "admin", "password": "wrong-password"}),
        )
        .await;
    assert_error(&bad, StatusCode::UNAUTHORIZED, "unauthenticated", None);
    let unknown = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "nobody", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(
        unknown.1, bad.1,
        "an unknown login looks exactly like a wrong password"
    );

    // The cookie works as well as the bearer token.
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"login": "ADMIN", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let me = app
        .http
        .get(format!("{}/api/v1/auth/me", app.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // Logout ends the session.
    let s = app.login("admin", app.admin.id).await;
    assert_eq!(app.get(Some(&s), "/api/v1/auth/me").await.0, StatusCode::OK);
    assert_eq!(
        app.post(Some(&s), "/api/v1/auth/logout", &json!({}))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &app.get(Some(&s), "/api/v1/auth/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    let garbage = Principal {
        id: 0,
        token: "not-a-token".into(),
    };
    assert_error(
        &app.get(Some(&garbage), "/api/v1/clients").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
}

#[tokio::test]
async fn one_time_password_must_be_changed_first() {
    let app = spawn_app().await;
    let (status, u) = app
        .post(
            Some(&app.admin),
            "/api/v1/users",
            &json!({"login": "olga", "name": "Ольга", "role": "operator", "password": "initial-pass-123"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    assert_eq!(u["must_change_password"], true);
    let (status, body) = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "olga", "password": "initial-pass-123"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["must_change_password"], true);
    let olga = Principal {
        id: u["id"].as_i64().unwrap(),
        token: body["token"].as_str().unwrap().into(),
    };
    assert_error(
        &app.get(Some(&olga), "/api/v1/clients").await,
        StatusCode::FORBIDDEN,
        "password_change_required",
        None,
    );
    assert_eq!(
        app.get(Some(&olga), "/api/v1/auth/me").await.0,
        StatusCode::OK
    );

    let weak = app
        .post(
            Some(&olga),
            "/api/v1/auth/password",
            &json!({"current_password": "initial-pass-123", "new_password": "short"}),
        )
        .await;
    assert_error(
        &weak,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
        Some("new_password"),
    );
    let wrong = app
        .post(
            Some(&olga),
            "/api/v1/auth/password",
            &json!({"current_password": "not-it-at-all", "new_password": "brand-new-pass-1"}),
        )
        .await;
    assert_error(
        &wrong,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_password",
        Some("current_password"),
    );
    let same = app
        .post(
            Some(&olga),
            "/api/v1/auth/password",
            &json!({"current_password": "initial-pass-123", "new_password": "initial-pass-123"}),
        )
        .await;
    assert_error(
        &same,
        StatusCode::UNPROCESSABLE_ENTITY,
        "same_password",
        Some("new_password"),
    );
    let ok = app
        .post(
            Some(&olga),
            "/api/v1/auth/password",
            &json!({"current_password": "initial-pass-123", "new_password": "brand-new-pass-1"}),
        )
        .await;
    assert_eq!(ok.0, StatusCode::NO_CONTENT, "{}", ok.1);
    assert_eq!(
        app.get(Some(&olga), "/api/v1/clients").await.0,
        StatusCode::OK
    );
    let old = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "olga", "password": "initial-pass-123"}),
        )
        .await;
    assert_eq!(old.0, StatusCode::UNAUTHORIZED);

    // The audit trail has the change, without the password.
    let (_, audit) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/audit?entity=user&entity_id={}", olga.id),
        )
        .await;
    let text = audit.to_string();
    assert!(
        text.contains("\"password\"")
            && !text.contains("brand-new-pass-1")
            && !text.contains("initial-pass-123"),
        "{text}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let app = spawn_app_with(|c| {
        c.auth.max_failures_per_login = 3;
    })
    .await;
    let _ = app.user("ivan", Role::Manager, None).await;
    for _ in 0..3 {
        let r = app
            .post(
                None,
                "/api/v1/auth/login",
                &json!({"login": "ivan", "password": "guess-guess"}),
            )
            .await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED);
    }
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"login": "ivan", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other logins are not affected.
    let _ = app.user("petr", Role::Manager, None).await;
}

#[tokio::test]
async fn api_keys_and_disabled_users() {
    let app = spawn_app().await;
    let (status, created) = app
        .post(
            Some(&app.admin),
            "/api/v1/api-keys",
            &json!({"name": "pbx", "scopes": ["calls:write"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = Principal {
        id: created["id"].as_i64().unwrap(),
        token: created["secret"].as_str().unwrap().into(),
    };
    let (_, listed) = app.get(Some(&app.admin), "/api/v1/api-keys").await;
    assert!(
        !listed.to_string().contains(&key.token),
        "the secret is never listed"
    );
    assert_eq!(
        app.get(Some(&key), "/api/v1/calls").await.0,
        StatusCode::OK,
        "write implies read"
    );
    assert_error(
        &app.get(Some(&key), "/api/v1/clients").await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );
    let tampered = Principal {
        id: 0,
        token: format!("{}x", &key.token[..key.token.len() - 1]),
    };
    assert_error(
        &app.get(Some(&tampered), "/api/v1/calls").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    assert_eq!(
        app.delete(Some(&app.admin), &format!("/api/v1/api-keys/{}", key.id))
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &app.get(Some(&key), "/api/v1/calls").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );

    let scoped = app.api_key(&[Scope::ClientsRead]).await;
    assert_error(
        &app.post(
            Some(&scoped),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "X"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        None,
    );

    let m = app.user("maria", Role::Manager, None).await;
    assert_eq!(app.get(Some(&m), "/api/v1/clients").await.0, StatusCode::OK);
    let (status, _) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", m.id),
            &json!({"active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &app.get(Some(&m), "/api/v1/clients").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    let again = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "maria", "password": PASSWORD}),
        )
        .await;
    assert_eq!(again.0, StatusCode::UNAUTHORIZED);
    let selfish = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/users/{}", app.admin.id),
            &json!({"role": "manager"}),
        )
        .await;
    assert_error(&selfish, StatusCode::CONFLICT, "conflict", Some("role"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let app = spawn_app_with(|c| {
        c.auth.trust_forwarded_for = true;
        c.auth.max_failures_per_address = 2;
        c.auth.max_failures_per_login = 100;
    })
    .await;
    let attempt = |login: &'static str, forwarded: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/api/v1/auth/login", app.base))
                .header("x-forwarded-for", forwarded)
                .json(&json!({"login": login, "password": "wrong-wrong-1"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        attempt("a1", "198.51.100.7").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("a2", "198.51.100.7").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("a3", "198.51.100.7").await,
        StatusCode::TOO_MANY_REQUESTS,
        "that address is blocked"
    );
    assert_eq!(
        attempt("a3", "203.0.113.9").await,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy is not"
    );
}
