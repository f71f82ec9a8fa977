//! Engine 2's reading following a stored inquiry (`Store::refine_classification`): with
//! engine 2 live, the pipeline stores a message with engine 1's quick (provisional)
//! reading, so classification never holds it back, and engine 2's reading replaces it a
//! moment later. A new dialog nobody has touched since moves to the department of engine
//! 2's type and is routed afresh there, its previous assignee told; a dialog someone has
//! acted on keeps its place. The end-to-end path with the real encoder is in
//! `assist_engines.rs`; here the readings are written by hand so every case is exact.

use kommutator::domain::*;
use kommutator::storage::StoreError;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

fn reading(model: &str, top: &str, applied: bool, provisional: bool) -> Classification {
    let mut ranked = vec![TypeScore {
        request_type: top.into(),
        p: 0.9,
    }];
    for t in ["interest", "claim", "bug", "other"] {
        if t != top {
            ranked.push(TypeScore {
                request_type: t.into(),
                p: 0.1 / 3.0,
            });
        }
    }
    Classification {
        model: model.into(),
        ranked,
        applied: applied.then(|| top.to_owned()),
        provisional,
    }
}

/// Engine 1's quick reading beside engine 2.
fn quick(top: &str) -> Classification {
    reading("ngram:standby+0", top, true, true)
}

/// Engine 2's reading.
fn engine_2(top: &str, applied: bool) -> Classification {
    reading("encoder:seed+0", top, applied, false)
}

fn inquiry(
    external_id: &str,
    phone: &str,
    department_id: i64,
    classification: Classification,
) -> IngestMessage {
    IngestMessage {
        connector_id: "site".into(),
        channel: "api".into(),
        external_id: external_id.into(),
        thread_id: format!("thread-{external_id}"),
        sent_at: Timestamp::now(),
        identities: vec![(IdentityKind::Phone, phone.into())],
        display_name: Some("Ivan Petrov".into()),
        text: Some("Диван привезли с порванной обивкой, что делать?".into()),
        attachments: Vec::new(),
        department_id: Some(department_id),
        subject: None,
        html: None,
        quoted: None,
        traffic_source: None,
        open_interest: OpenInterest::NewParty,
        classification: Some(classification),
    }
}

/// Engine 2's reading put in place of message `id`'s (`None`: nothing was replaced).
async fn refine(
    app: &TestApp,
    id: i64,
    reading: &Classification,
    department: i64,
) -> Option<Message> {
    app.store
        .refine_classification(id, reading, Some(department))
        .await
        .expect("answered")
}

async fn dialog(app: &TestApp, id: i64) -> Dialog {
    app.store
        .get_dialog(&Actor::System, id)
        .await
        .expect("dialog")
}

fn stored(outcome: IngestOutcome) -> (Message, Dialog) {
    match outcome {
        IngestOutcome::Stored {
            message, dialog, ..
        } => (*message, *dialog),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

/// Sales (the channel's department) and Support, with one operator online in each, each
/// following their own topic.
struct Office {
    app: TestApp,
    sales: i64,
    support: i64,
    anna: Principal,
    bob: Principal,
    anna_ws: Ws,
    bob_ws: Ws,
}

async fn office() -> Office {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let bob = app.user("bob", Role::Operator, Some(support)).await;
    let (mut anna_ws, _) = Ws::operator(&app, &anna).await;
    let (mut bob_ws, _) = Ws::operator(&app, &bob).await;
    for (ws, who) in [(&mut anna_ws, &anna), (&mut bob_ws, &bob)] {
        let (_, sub) = ws.subscribe(&format!("user:{}", who.id), None).await;
        assert_eq!(sub["type"], "subscribed", "{sub}");
    }
    Office {
        app,
        sales,
        support,
        anna,
        bob,
        anna_ws,
        bob_ws,
    }
}

async fn assignments(app: &TestApp, dialog: i64) -> Vec<(Option<i64>, Option<i64>)> {
    let (code, list) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{dialog}/assignments"),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|a| (a["user_id"].as_i64(), a["department_id"].as_i64()))
        .collect()
}

fn is(e: &Value, entity: &str, op: &str, id: i64) -> bool {
    e["entity"] == entity && e["op"] == op && e["entity_id"] == id
}

#[tokio::test]
async fn engine_2s_reading_replaces_the_quick_one_and_moves_an_untouched_new_dialog() {
    let mut o = office().await;
    eprintln!("refine on {}", backend_name());
    // Engine 1 read it as a sales inquiry: the dialog opened in Sales, with anna.
    let (m, d) = stored(
        o.app
            .store
            .ingest_message(&inquiry("r-1", "+79165550101", o.sales, quick("interest")))
            .await
            .expect("stored"),
    );
    assert_eq!(d.assignee_id, Some(o.anna.id));
    assert_eq!(d.request_type.as_deref(), Some("interest"));
    let created = o
        .anna_ws
        .event_where(|e| is(e, "message", "create", m.id))
        .await;
    assert_eq!(
        created["data"]["classification"]["provisional"], true,
        "{created}"
    );

    // Engine 2 reads a claim, whose department is Support.
    let refined = refine(&o.app, m.id, &engine_2("claim", true), o.support)
        .await
        .expect("the quick reading was replaced");
    assert_eq!(refined.classification, Some(engine_2("claim", true)));
    let d = dialog(&o.app, d.id).await;
    assert_eq!(d.department_id, Some(o.support));
    assert_eq!(d.assignee_id, Some(o.bob.id), "routed afresh in Support");
    assert_eq!(d.request_type.as_deref(), Some("claim"));
    assert_eq!(d.request_type_by.as_deref(), Some("classifier"));
    assert_eq!(
        assignments(&o.app, d.id).await,
        vec![
            (Some(o.anna.id), Some(o.sales)),
            (Some(o.bob.id), Some(o.support))
        ]
    );
    // The Interest this message opened went along, and bob is responsible for it now.
    let interest = d
        .interest_id
        .expect("a new sender's inquiry opens an Interest");
    let (code, i) = o
        .app
        .get(Some(&o.app.admin), &format!("/api/v1/interests/{interest}"))
        .await;
    assert_eq!(code, StatusCode::OK, "{i}");
    assert_eq!(i["department_id"], o.support, "{i}");
    assert_eq!(i["responsible_id"], o.bob.id, "{i}");

    // anna's console learns the dialog left her; bob's gets it and the new reading.
    let left = o
        .anna_ws
        .event_where(|e| e["entity"] == "dialog" && e["entity_id"] == d.id)
        .await;
    assert_eq!(left["data"]["assignee_id"], o.bob.id, "{left}");
    let got = o
        .bob_ws
        .event_where(|e| e["entity"] == "dialog" && e["entity_id"] == d.id)
        .await;
    assert_eq!(got["data"]["department_id"], o.support, "{got}");
    let update = o
        .bob_ws
        .event_where(|e| is(e, "message", "classification", m.id))
        .await;
    let c = &update["data"]["classification"];
    assert_eq!(c["model"], "encoder:seed+0", "{update}");
    assert_eq!(c["applied"], "claim", "{update}");
    assert!(c.get("provisional").is_none(), "{update}");
    // The REST view agrees.
    let (code, list) = o
        .app
        .get(
            Some(&o.app.admin),
            &format!("/api/v1/dialogs/{}/messages", d.id),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(
        list["items"][0]["classification"]["model"], "encoder:seed+0",
        "{list}"
    );

    // A second reading replaces nothing and logs nothing: the first one is final.
    let seq = o.app.last_seq().await;
    let again = refine(&o.app, m.id, &engine_2("bug", true), o.sales).await;
    assert!(again.is_none(), "{again:?}");
    assert_eq!(o.app.last_seq().await, seq);
    let d2 = dialog(&o.app, d.id).await;
    assert_eq!(d2.department_id, Some(o.support));
    assert_eq!(d2.request_type.as_deref(), Some("claim"));
}

#[tokio::test]
async fn a_dialog_someone_acted_on_keeps_its_place_and_type() {
    let o = office().await;
    // Taken as a claim by the quick reading, then answered by anna before engine 2's
    // reading arrives: only the message's reading changes.
    let (m, d) = stored(
        o.app
            .store
            .ingest_message(&inquiry("r-2", "+79165550102", o.sales, quick("claim")))
            .await
            .expect("stored"),
    );
    assert_eq!(d.assignee_id, Some(o.anna.id));
    let (code, reply) = o
        .app
        .post(
            Some(&o.anna),
            &format!("/api/v1/dialogs/{}/messages", d.id),
            &json!({"body": "Здравствуйте! Пришлите, пожалуйста, фото.", "external_id": "a-1"}),
        )
        .await;
    assert!(code.is_success(), "{code}: {reply}");
    let refined = refine(&o.app, m.id, &engine_2("interest", true), o.support)
        .await
        .expect("replaced");
    assert_eq!(refined.classification, Some(engine_2("interest", true)));
    let after = dialog(&o.app, d.id).await;
    assert_eq!(after.department_id, Some(o.sales));
    assert_eq!(after.assignee_id, Some(o.anna.id));
    assert_eq!(
        after.request_type.as_deref(),
        Some("claim"),
        "a type is never overridden"
    );
    assert_eq!(assignments(&o.app, d.id).await.len(), 1);

    // A quick reading that applied nothing leaves an untyped dialog, which engine 2's
    // applied type then fills even though the dialog was taken meanwhile.
    let (m3, d3) = stored(
        o.app
            .store
            .ingest_message(&inquiry(
                "r-3",
                "+79165550103",
                o.sales,
                reading("ngram:standby+0", "bug", false, true),
            ))
            .await
            .expect("stored"),
    );
    assert_eq!(d3.request_type, None);
    let anna = Actor::User {
        id: o.anna.id,
        role: Role::Operator,
        department_id: Some(o.sales),
    };
    let read = o.app.store.mark_read(&anna, d3.id).await.expect("read");
    assert_eq!(read.unread, 0);
    refine(&o.app, m3.id, &engine_2("bug", true), o.support)
        .await
        .expect("replaced");
    let after = dialog(&o.app, d3.id).await;
    assert_eq!(after.request_type.as_deref(), Some("bug"));
    assert_eq!(after.department_id, Some(o.sales), "read by anna: it stays");
}

#[tokio::test]
async fn bad_refinements_are_refused_and_change_nothing() {
    let o = office().await;
    let (m, d) = stored(
        o.app
            .store
            .ingest_message(&inquiry("r-4", "+79165550104", o.sales, quick("interest")))
            .await
            .expect("stored"),
    );
    let seq = o.app.last_seq().await;
    // A provisional reading cannot stand in for engine 2's.
    match o
        .app
        .store
        .refine_classification(m.id, &quick("claim"), Some(o.support))
        .await
    {
        Err(StoreError::Invalid(e)) => assert_eq!(e.code, "provisional", "{e:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // No such message.
    assert!(matches!(
        o.app
            .store
            .refine_classification(m.id + 1000, &engine_2("claim", true), Some(o.support))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // An operator's outbound message has no reading to replace.
    let (code, reply) = o
        .app
        .post(
            Some(&o.anna),
            &format!("/api/v1/dialogs/{}/messages", d.id),
            &json!({"body": "Добрый день!", "external_id": "a-2"}),
        )
        .await;
    assert!(code.is_success(), "{code}: {reply}");
    let seq_after_reply = o.app.last_seq().await;
    assert!(seq_after_reply > seq);
    let outbound = reply["id"].as_i64().expect("message id");
    assert!(
        refine(&o.app, outbound, &engine_2("claim", true), o.support)
            .await
            .is_none()
    );
    assert_eq!(o.app.last_seq().await, seq_after_reply);
    let after = dialog(&o.app, d.id).await;
    assert_eq!(after.department_id, Some(o.sales));
    assert_eq!(after.request_type.as_deref(), Some("interest"));
}
