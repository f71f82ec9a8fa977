//! Telegram Bot API updates: any bytes give a mapped update or a clean error, never a
//! panic; a mapped update has a normalized key, a raw payload, and serializes.
#![no_main]

use kommutator_sdk::{normalize_external_id, ConnectorId, InboundKind};
use kommutator_telegram::parse_update_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = ConnectorId::new("tg");
    if let Ok(parsed) = parse_update_bytes(&id, data) {
        let ev = &parsed.event;
        assert_eq!(ev.connector_id, id);
        assert_eq!(
            normalize_external_id(&ev.external_id).ok().as_deref(),
            Some(ev.external_id.as_str())
        );
        assert!(ev.raw.is_some());
        if let InboundKind::Message(m) = &ev.kind {
            assert!(normalize_external_id(&m.thread_id).is_ok());
        } else {
            assert!(parsed.media.is_empty());
        }
        assert!(serde_json::to_vec(ev).is_ok());
    }
});
