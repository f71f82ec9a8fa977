//! VK Callback API bodies, Bots Long Poll answers and API responses: every parser and
//! mapper answers every input with a value or an error, never a panic.
#![no_main]

use kommutator_vk::{
    doc_attachment, envelope_from_value, map_event, parse_callback, parse_long_poll,
    response_of, sent_of, LongPollAnswer, OurSend,
};
use libfuzzer_sys::fuzz_target;

fn ours(random_id: i64) -> OurSend {
    match random_id % 3 {
        0 => OurSend::No,
        1 => OurSend::Pending,
        _ => OurSend::Acked("1:2".to_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = parse_callback(data) {
        // `secret` never reaches `raw`.
        assert!(env.raw.get("secret").is_none());
        let _ = map_event(&env, &ours);
    }
    if let Ok(LongPollAnswer::Updates { updates, .. }) = parse_long_poll(data) {
        for u in updates {
            if let Ok(env) = envelope_from_value(u) {
                let _ = map_event(&env, &ours);
            }
        }
    }
    if let Ok(r) = response_of(data) {
        let _ = sent_of(&r);
        let _ = doc_attachment(&r);
    }
});
