//! The storage story: one business day through the store, on whichever backend the run uses.

use kommutator::domain::*;
use kommutator::storage::{
    ClientQuery, FeedQuery, FeedTarget, IdentityOwner, ListFilter, Store, StoreError,
};

use crate::helpers::*;

fn ident(kind: IdentityKind, value: &str) -> IdentityInput {
    IdentityInput {
        kind,
        value: value.into(),
    }
}

#[tokio::test]
async fn storage_story() {
    eprintln!("storage story on {}", backend_name());
    let store = fresh_store().await;
    let sys = Actor::System;
    let seq0 = store.last_seq().await.unwrap();

    let sales = store
        .create_department(
            &sys,
            &NewDepartment {
                name: "Sales".into(),
            },
        )
        .await
        .unwrap();
    let manager = store
        .create_user(
            &sys,
            &NewUser {
                login: "anna".into(),
                name: "Анна".into(),
                email: Some("Anna@Example.RU".into()),
                role: Role::Manager,
                department_id: Some(sales.id),
                password: "x".repeat(12),
                must_change_password: false,
            },
            "hash",
        )
        .await
        .unwrap();
    assert_eq!(manager.email.as_deref(), Some("anna@example.ru"));
    let anna = Actor::User {
        id: manager.id,
        role: Role::Manager,
        department_id: Some(sales.id),
    };

    // A client with identities, and a contact with its own.
    let card = store
        .create_client(
            &anna,
            &NewClient {
                kind: ClientKind::Company,
                name: "ООО «Ромашка»".into(),
                notes: None,
                custom_fields: Default::default(),
                responsible_id: None,
                department_id: None,
                shared: false,
                identities: vec![
                    ident(IdentityKind::Phone, "8 (495) 123-45-67"),
                    ident(IdentityKind::Email, "Info@Romashka.RU"),
                ],
            },
        )
        .await
        .unwrap();
    let client = card.client.clone();
    assert_eq!(
        client.responsible_id,
        Some(manager.id),
        "defaults to the creating manager"
    );
    assert_eq!(client.department_id, Some(sales.id));
    assert_eq!(
        card.identities
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>(),
        vec!["+74951234567", "info@romashka.ru"]
    );
    let contact = store
        .create_contact(
            &anna,
            client.id,
            &NewContact {
                name: "Пётр Иванов".into(),
                position: Some("CEO".into()),
                notes: None,
                identities: vec![ident(IdentityKind::Telegram, "777000")],
            },
        )
        .await
        .unwrap();
    let found = store
        .find_identity(&anna, IdentityKind::Telegram, "777000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.client_id, found.contact_id),
        (Some(client.id), Some(contact.id))
    );
    let by_phone = store
        .search_clients(
            &anna,
            &ClientQuery {
                phone: Some("+7 495 123 45 67".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_phone.items.len(), 1);
    let by_word = store
        .search_clients(
            &anna,
            &ClientQuery {
                q: Some("ромаш".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_word.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![client.id]
    );

    // A duplicate identity is refused and nothing of that request is stored.
    let seq_before = store.last_seq().await.unwrap();
    let dup = store
        .create_client(
            &anna,
            &NewClient {
                kind: ClientKind::Person,
                name: "Двойник".into(),
                notes: None,
                custom_fields: Default::default(),
                responsible_id: None,
                department_id: None,
                shared: false,
                identities: vec![
                    ident(IdentityKind::Email, "new@x.ru"),
                    ident(IdentityKind::Phone, "+74951234567"),
                ],
            },
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Duplicate { .. })), "{dup:?}");
    assert_eq!(
        store.last_seq().await.unwrap(),
        seq_before,
        "nothing half-written"
    );
    assert!(store
        .find_identity(&sys, IdentityKind::Email, "new@x.ru")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .search_clients(
            &sys,
            &ClientQuery {
                q: Some("двойник".into()),
                limit: 5,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());

    // A lead writes in, gets an Interest, a dialog with messages, a call, a note.
    let lead = store
        .create_lead(
            &anna,
            &NewLead {
                name: Some("Мария".into()),
                company_name: Some("ИП Сидорова".into()),
                phone: Some("+7 916 555-44-33".into()),
                email: Some("maria@sidorova.ru".into()),
                source: Some("site".into()),
                responsible_id: None,
                department_id: None,
                shared: true,
                identities: vec![ident(IdentityKind::WebVisitor, "visitor_12345678")],
            },
        )
        .await
        .unwrap();
    let lead_interest = store
        .create_interest(
            &anna,
            &NewInterest {
                title: "Поставка ромашек".into(),
                client_id: None,
                contact_id: None,
                lead_id: Some(lead.id),
                scenario_id: None,
                amount_minor: Some(15_000_000),
                currency: None,
                source: None,
                responsible_id: None,
                shared: false,
            },
        )
        .await
        .unwrap();
    let visitor = store
        .find_identity(&sys, IdentityKind::WebVisitor, "visitor_12345678")
        .await
        .unwrap()
        .unwrap();
    let (dialog, fresh) = store
        .create_dialog(
            &sys,
            &NewDialog {
                channel: "widget".into(),
                connector_id: "site".into(),
                external_thread_id: "thread-1".into(),
                identity_id: Some(visitor.id),
                client_id: None,
                contact_id: None,
                lead_id: None,
                interest_id: Some(lead_interest.id),
                assignee_id: Some(manager.id),
                department_id: None,
                subject: None,
            },
        )
        .await
        .unwrap();
    assert!(fresh);
    assert_eq!(dialog.lead_id, Some(lead.id));
    let msg = |id: &str, text: &str, at: i64| NewMessage {
        direction: Some(Direction::Inbound),
        external_id: Some(id.into()),
        body: Some(text.into()),
        attachments: vec![],
        sent_at: Some(Timestamp(at)),
    };
    let t0 = Timestamp::now().micros() - 3_600_000_000;
    let (m1, fresh) = store
        .add_message(&sys, dialog.id, &msg("m-1", "Здравствуйте!", t0))
        .await
        .unwrap();
    assert!(fresh);
    let (m1_again, fresh) = store
        .add_message(&sys, dialog.id, &msg("m-1", "Здравствуйте!", t0))
        .await
        .unwrap();
    assert!(!fresh, "a replay is recognised");
    assert_eq!(m1_again.id, m1.id);
    let (_m2, _) = store
        .add_message(
            &sys,
            dialog.id,
            &msg("m-2", "Сколько стоит?", t0 + 60_000_000),
        )
        .await
        .unwrap();
    let (reply, _) = store
        .add_message(
            &anna,
            dialog.id,
            &NewMessage {
                direction: None,
                external_id: Some("op-1".into()),
                body: Some("Добрый день!".into()),
                attachments: vec![],
                sent_at: Some(Timestamp(t0 + 120_000_000)),
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.delivery_status, DeliveryStatus::Pending);
    let read = store
        .update_delivery(
            &sys,
            reply.id,
            &DeliveryUpdate {
                status: DeliveryStatus::Read,
                provider_message_id: Some("p-1".into()),
                error: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(read.delivery_status, DeliveryStatus::Read);
    let late = store
        .update_delivery(
            &sys,
            reply.id,
            &DeliveryUpdate {
                status: DeliveryStatus::Sent,
                provider_message_id: None,
                error: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        late.delivery_status,
        DeliveryStatus::Read,
        "a late 'sent' does not move it back"
    );
    let (call, _) = store
        .record_call(
            &sys,
            &NewCall {
                connector_id: "office-pbx".into(),
                external_id: "1700000000.42".into(),
                direction: CallDirection::Inbound,
                from_number: "89165554433".into(),
                to_number: "101".into(),
                status: None,
                operator_id: Some(manager.id),
                extension: Some("101".into()),
                client_id: None,
                lead_id: None,
                interest_id: None,
                started_at: Some(Timestamp(t0 + 180_000_000)),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        call.lead_id,
        Some(lead.id),
        "the caller is recognised by number"
    );
    let call = store
        .update_call(
            &sys,
            call.id,
            &CallPatch {
                status: Some(CallStatus::Answered),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let call = store
        .update_call(
            &sys,
            call.id,
            &CallPatch {
                status: Some(CallStatus::Completed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(call.ended_at.is_some() && call.duration_secs.is_some());
    let note = store
        .create_interaction(
            &anna,
            &NewInteraction {
                kind: InteractionKind::Note,
                status: None,
                subject: "Хочет 500 штук".into(),
                body: Some("Перезвонить в понедельник".into()),
                client_id: None,
                contact_id: None,
                lead_id: None,
                interest_id: Some(lead_interest.id),
                responsible_id: None,
                planned_at: None,
                done_at: Some(Timestamp(t0 + 240_000_000)),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        note.lead_id,
        Some(lead.id),
        "the party comes from the Interest"
    );

    // Convert the lead: everything moves to the new client.
    let conv = store
        .convert_lead(
            &anna,
            lead.id,
            &ConvertLead {
                client_id: None,
                kind: None,
                name: None,
                create_contact: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(conv.lead.status, LeadStatus::Converted);
    assert_eq!(conv.client.kind, ClientKind::Company);
    assert_eq!(conv.client.name, "ИП Сидорова");
    assert_eq!(
        conv.client.responsible_id,
        Some(manager.id),
        "the manager handling the Interest"
    );
    assert_eq!(conv.moved["identities"], 3);
    assert_eq!(conv.moved["interests"], 1);
    assert_eq!(conv.moved["dialogs"], 1);
    assert_eq!(conv.moved["calls"], 1);
    let new_client = conv.client.id;
    let contact_id = conv.contact.as_ref().map(|c| c.id);
    let phone = store
        .find_identity(&sys, IdentityKind::Phone, "+79165554433")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (phone.client_id, phone.contact_id, phone.lead_id),
        (Some(new_client), contact_id, None)
    );
    assert_eq!(
        store.get_dialog(&sys, dialog.id).await.unwrap().client_id,
        Some(new_client)
    );
    assert_eq!(
        store
            .get_interest(&sys, lead_interest.id)
            .await
            .unwrap()
            .client_id,
        Some(new_client)
    );
    assert!(matches!(
        store
            .convert_lead(
                &anna,
                lead.id,
                &ConvertLead {
                    client_id: None,
                    kind: None,
                    name: None,
                    create_contact: false
                }
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // The Interest goes through its stages.
    let scenario = &store.list_scenarios().await.unwrap()[0];
    for stage in &scenario.stages[1..4] {
        let i = store
            .move_interest_stage(&anna, lead_interest.id, stage.id)
            .await
            .unwrap();
        assert_eq!((i.stage_id, i.status), (stage.id, StageOutcome::Open));
    }
    let won = scenario
        .stages
        .iter()
        .find(|s| s.outcome == StageOutcome::Won)
        .unwrap();
    let i = store
        .move_interest_stage(&anna, lead_interest.id, won.id)
        .await
        .unwrap();
    assert_eq!(i.status, StageOutcome::Won);
    assert!(i.closed_at.is_some());
    let history = store
        .interest_stage_history(&anna, lead_interest.id)
        .await
        .unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[0].from_stage_id, None);
    assert_eq!(history[4].to_stage_id, won.id);

    // The Feed of the new client: newest first, everything that happened to the lead.
    let feed = store
        .feed(
            &anna,
            &FeedQuery {
                target: FeedTarget::Client(new_client),
                kinds: vec![],
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = feed.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["interest", "note", "call", "message", "message", "message"],
        "{feed:#?}"
    );
    assert!(feed
        .items
        .windows(2)
        .all(|w| (w[0].occurred_at, w[0].id) >= (w[1].occurred_at, w[1].id)));
    // Paging by two gives the same sequence.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let p = store
            .feed(
                &anna,
                &FeedQuery {
                    target: FeedTarget::Client(new_client),
                    kinds: vec![],
                    limit: 2,
                    cursor,
                },
            )
            .await
            .unwrap();
        paged.extend(p.items.iter().map(|e| e.id));
        match p.next_cursor {
            Some(c) => cursor = Some(kommutator::storage::Cursor::decode(&c).unwrap()),
            None => break,
        }
    }
    assert_eq!(paged, feed.items.iter().map(|e| e.id).collect::<Vec<_>>());
    let only_msgs = store
        .feed(
            &anna,
            &FeedQuery {
                target: FeedTarget::Client(new_client),
                kinds: vec![FeedKind::Message],
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(only_msgs.items.len(), 3);
    let interest_feed = store
        .feed(
            &anna,
            &FeedQuery {
                target: FeedTarget::Interest(lead_interest.id),
                kinds: vec![],
                limit: 50,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        interest_feed.items.len(),
        5,
        "interest, note and the dialog's messages"
    );

    // Interactions planned and done; the dialog closes and reopens on a new message.
    let task = store
        .create_interaction(
            &anna,
            &NewInteraction {
                kind: InteractionKind::Task,
                status: None,
                subject: "Отправить договор".into(),
                body: None,
                client_id: Some(new_client),
                contact_id,
                lead_id: None,
                interest_id: None,
                responsible_id: None,
                planned_at: Some(Timestamp(Timestamp::now().micros() + 86_400_000_000)),
                done_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(task.status, InteractionStatus::Planned);
    let done = store
        .update_interaction(
            &anna,
            task.id,
            &InteractionPatch {
                status: Some(InteractionStatus::Done),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(done.done_at.is_some());
    let planned = store
        .list_interactions(
            &anna,
            &ListFilter {
                client_id: Some(new_client),
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(planned.items.len(), 2);
    let closed = store
        .update_dialog(
            &anna,
            dialog.id,
            &DialogPatch {
                status: Some(DialogStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(closed.status, DialogStatus::Closed);
    store
        .add_message(
            &sys,
            dialog.id,
            &msg("m-3", "И ещё вопрос", Timestamp::now().micros()),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_dialog(&sys, dialog.id).await.unwrap().status,
        DialogStatus::Open
    );

    // Identities move between owners only explicitly; adding one to the old lead fails.
    let e = store
        .add_identity(
            &anna,
            IdentityOwner::Client(client.id),
            &ident(IdentityKind::Phone, "+7 916 555 44 33"),
        )
        .await;
    assert!(matches!(e, Err(StoreError::Duplicate { .. })));

    // The change log: strictly increasing, every change there, with its actor.
    let changes = store.changes_since(seq0, 1000).await.unwrap();
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(changes.last().unwrap().seq, store.last_seq().await.unwrap());
    let ops: Vec<(String, String)> = changes
        .iter()
        .map(|c| (c.entity.clone(), c.op.clone()))
        .collect();
    for want in [
        ("client", "create"),
        ("lead", "convert"),
        ("interest", "stage"),
        ("message", "create"),
        ("message", "delivery"),
        ("call", "update"),
        ("dialog", "close"),
    ] {
        assert!(
            ops.iter().any(|(e, o)| e == want.0 && o == want.1),
            "missing {want:?}"
        );
    }
    let conv_entry = changes.iter().find(|c| c.op == "convert").unwrap();
    assert_eq!(conv_entry.actor_user_id, Some(manager.id));
    assert_eq!(conv_entry.client_id, Some(new_client));
    let since_mid = store.changes_since(conv_entry.seq, 1000).await.unwrap();
    assert_eq!(
        since_mid.first().unwrap().seq,
        changes.iter().find(|c| c.seq > conv_entry.seq).unwrap().seq,
        "resume without gap"
    );
}
