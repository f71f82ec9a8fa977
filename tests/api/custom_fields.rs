//! Custom fields of the client card: typed values, an admin changing the definitions.

use kommutator::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn admin_defines_and_changes_custom_fields() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let (status, tier) = app
        .post(Some(admin), "/api/v1/custom-fields", &json!({"key": "tier", "label": "Tier", "field_type": "enum", "options": ["gold", "silver"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tier}");
    let tier_id = tier["id"].as_i64().unwrap();
    app.post(
        Some(admin),
        "/api/v1/custom-fields",
        &json!({"key": "since", "label": "Client since", "field_type": "date"}),
    )
    .await;
    let (status, c) = app
        .post(Some(admin), "/api/v1/clients", &json!({"kind": "company", "name": "Gold Ltd", "custom_fields": {"tier": "gold", "since": "2020-02-29"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let c = c["id"].as_i64().unwrap();
    let bad = app
        .patch(
            Some(admin),
            &format!("/api/v1/clients/{c}"),
            &json!({"custom_fields": {"tier": "bronze"}}),
        )
        .await;
    assert_error(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_custom_field",
        Some("custom_fields.tier"),
    );

    // Relabel and add an option: the new option is usable at once.
    let (status, changed) = app
        .patch(
            Some(admin),
            &format!("/api/v1/custom-fields/{tier_id}"),
            &json!({"label": "Уровень", "options": ["gold", "silver", "bronze"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["label"], "Уровень");
    let (status, _) = app
        .patch(
            Some(admin),
            &format!("/api/v1/clients/{c}"),
            &json!({"custom_fields": {"tier": "bronze"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Options cannot be taken away, the key and type cannot change, others may not edit.
    let m = app.user("mgr", Role::Manager, None).await;
    let seq = app.last_seq().await;
    let lost = app
        .patch(
            Some(admin),
            &format!("/api/v1/custom-fields/{tier_id}"),
            &json!({"options": ["gold"]}),
        )
        .await;
    assert_error(&lost, StatusCode::CONFLICT, "conflict", Some("options"));
    let retype = app
        .patch(
            Some(admin),
            &format!("/api/v1/custom-fields/{tier_id}"),
            &json!({"field_type": "string"}),
        )
        .await;
    assert_error(
        &retype,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
        Some("field_type"),
    );
    let not_admin = app
        .patch(
            Some(&m),
            &format!("/api/v1/custom-fields/{tier_id}"),
            &json!({"label": "x"}),
        )
        .await;
    assert_error(&not_admin, StatusCode::FORBIDDEN, "forbidden", None);
    assert_error(
        &app.patch(
            Some(admin),
            "/api/v1/custom-fields/999999",
            &json!({"label": "x"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_eq!(app.last_seq().await, seq, "nothing written");

    // Made required: new clients must fill it.
    app.patch(
        Some(admin),
        &format!("/api/v1/custom-fields/{tier_id}"),
        &json!({"required": true}),
    )
    .await;
    let missing = app
        .post(
            Some(&m),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "No tier"}),
        )
        .await;
    assert_error(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "required",
        Some("custom_fields.tier"),
    );

    // Deleting a definition removes its values from the cards.
    assert_eq!(
        app.delete(Some(admin), &format!("/api/v1/custom-fields/{tier_id}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, card) = app.get(Some(admin), &format!("/api/v1/clients/{c}")).await;
    assert!(card["custom_fields"].get("tier").is_none(), "{card}");
    assert_eq!(card["custom_fields"]["since"], "2020-02-29");
}
