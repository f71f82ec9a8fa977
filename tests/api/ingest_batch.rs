//! Group commit: several inbound messages in one transaction, exactly as one at a time
//! would store them; a failing batch stores nothing.

use kommutator::domain::*;
use kommutator::storage::{Store, StoreError};

use crate::helpers::*;

fn msg(external_id: &str, thread: &str, phone: &str, text: Option<&str>) -> IngestMessage {
    IngestMessage {
        connector_id: "site".into(),
        channel: "api".into(),
        external_id: external_id.into(),
        thread_id: thread.into(),
        sent_at: Timestamp::now(),
        identities: vec![(IdentityKind::Phone, phone.into())],
        display_name: Some(format!("Caller {phone}")),
        text: text.map(str::to_owned),
        attachments: Vec::new(),
        department_id: None,
        subject: None,
        html: None,
        quoted: None,
        traffic_source: None,
        open_interest: OpenInterest::NewParty,
        classification: None,
    }
}

fn stored(r: &Result<IngestOutcome, StoreError>) -> (Id, Id, bool) {
    match r {
        Ok(IngestOutcome::Stored {
            message,
            dialog,
            new_dialog,
            ..
        }) => (message.id, dialog.id, *new_dialog),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_stores_in_order_with_duplicates_and_invalid_items_answered_alone() {
    let store = fresh_store().await;
    let seq0 = store.last_seq().await.unwrap();
    let batch = vec![
        msg("m1", "t1", "+79161234501", Some("first")),
        msg("m2", "t1", "+79161234501", Some("second, same thread")),
        msg("m3", "t2", "+79161234502", None),
        msg("m1", "t1", "+79161234501", Some("first, retried")),
        msg("m4", "t3", "+79161234503", Some("another sender")),
    ];
    let results = store
        .ingest_messages(&batch)
        .await
        .expect("the batch commits");
    assert_eq!(results.len(), batch.len());

    let (m1, d1, new1) = stored(&results[0]);
    let (m2, d2, new2) = stored(&results[1]);
    assert!(
        new1 && !new2,
        "the second message finds the dialog the first opened"
    );
    assert_eq!(d1, d2);
    assert!(m2 > m1);
    match &results[2] {
        Err(StoreError::Invalid(f)) => assert_eq!(f.field, "text"),
        other => panic!("a message without text or attachments is refused: {other:?}"),
    }
    match &results[3] {
        Ok(IngestOutcome::Duplicate {
            message_id,
            dialog_id,
        }) => assert_eq!((*message_id, *dialog_id), (m1, d1)),
        other => panic!("the repeated external id is a duplicate: {other:?}"),
    }
    let (_, d4, new4) = stored(&results[4]);
    assert!(new4 && d4 != d1);

    // Nothing of the refused one; the others are there once each.
    assert!(store
        .message_by_channel_id("site", "m3")
        .await
        .unwrap()
        .is_none());
    for id in ["m1", "m2", "m4"] {
        assert!(store
            .message_by_channel_id("site", id)
            .await
            .unwrap()
            .is_some());
    }
    let changes = store.changes_since(seq0, 1000).await.unwrap();
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let messages = changes
        .iter()
        .filter(|c| c.entity == "message" && c.op == "create")
        .count();
    assert_eq!(messages, 3, "one change per stored message");

    // The same batch again changes nothing.
    let seq1 = store.last_seq().await.unwrap();
    let again = store
        .ingest_messages(&batch)
        .await
        .expect("the batch commits");
    assert!(again.iter().enumerate().all(|(i, r)| match r {
        Ok(IngestOutcome::Duplicate { .. }) => i != 2,
        Err(StoreError::Invalid(_)) => i == 2,
        _ => false,
    }));
    assert_eq!(store.last_seq().await.unwrap(), seq1);
}

#[tokio::test]
async fn a_batch_that_fails_stores_nothing_and_one_at_a_time_stores_the_rest() {
    let store = fresh_store().await;
    let seq0 = store.last_seq().await.unwrap();
    let mut bad = msg(
        "b2",
        "u2",
        "+79161234512",
        Some("to a department that is gone"),
    );
    bad.department_id = Some(987_654_321);
    let batch = vec![
        msg("b1", "u1", "+79161234511", Some("fine")),
        bad,
        msg("b3", "u3", "+79161234513", Some("fine too")),
    ];
    let err = store
        .ingest_messages(&batch)
        .await
        .expect_err("a foreign key fails the whole batch");
    assert!(!matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.last_seq().await.unwrap(), seq0, "nothing was logged");
    for id in ["b1", "b2", "b3"] {
        assert!(store
            .message_by_channel_id("site", id)
            .await
            .unwrap()
            .is_none());
    }
    // What the pipeline does next: one at a time, the bad one refused alone.
    let one_by_one: Vec<_> =
        futures::future::join_all(batch.iter().map(|m| store.ingest_message(m))).await;
    stored(&one_by_one[0]);
    assert!(one_by_one[1].is_err());
    stored(&one_by_one[2]);
    assert!(store
        .message_by_channel_id("site", "b2")
        .await
        .unwrap()
        .is_none());
}
