//! WhatsApp Cloud API webhooks and Graph API answers: every parser answers every input
//! with a value or an error, never a panic; the signature check rejects garbage.
#![no_main]

use kommutator_whatsapp::{
    parse_graph_error, parse_media_info, parse_send_response, parse_upload_response,
    parse_webhook, verify_signature,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(verify_signature(b"secret", Some("sha256=00"), data).is_err());
    if let Ok(n) = parse_webhook(data, "106540352242922") {
        for ev in &n.events {
            // Every key the parser hands out is a valid external id.
            assert!(kommutator_sdk::normalize_external_id(&ev.external_id).is_ok());
        }
    }
    let _ = parse_webhook(data, "");
    let _ = parse_send_response(data);
    let _ = parse_upload_response(data);
    let _ = parse_media_info(data);
    for status in [400, 401, 429, 503] {
        let _ = parse_graph_error(status, data);
    }
});
