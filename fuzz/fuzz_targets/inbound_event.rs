//! Inbound events: the ingest endpoint's parser (`POST /api/v1/connectors/{id}/events`
//! reads the body as the SDK's `InboundEvent`). Parsing never panics; what parses
//! serializes and parses back to the same event (the hub stores it and may put it on the
//! bus); and the id check the pipeline applies never panics and is idempotent.
#![no_main]

use kommutator_sdk::{normalize_external_id, InboundEvent, InboundKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = serde_json::from_slice::<InboundEvent>(data) else {
        return;
    };
    let text = serde_json::to_string(&ev).expect("a parsed event serializes");
    let back: InboundEvent = serde_json::from_str(&text).expect("a serialized event parses");
    // `raw` is any JSON: its floats may differ in the last bit after a round trip (serde_json
    // parses floats with best-effort precision), so it is compared apart.
    assert_eq!(back.raw.is_some(), ev.raw.is_some());
    let ids_ok = InboundEvent { raw: None, ..back }
        == InboundEvent {
            raw: None,
            ..ev.clone()
        };
    assert!(ids_ok, "the event survives a round trip: {text}");
    let mut ids = vec![ev.external_id.as_str()];
    if let InboundKind::Message(m) = &ev.kind {
        ids.push(&m.thread_id);
    }
    for id in ids {
        if let Ok(n) = normalize_external_id(id) {
            assert_eq!(
                normalize_external_id(&n).expect("a normalized id is valid"),
                n
            );
        }
    }
});
