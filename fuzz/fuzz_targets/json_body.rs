//! Request bodies: the strict JSON parser answers every input with a value or a 4xx error,
//! never a panic.
#![no_main]

use kommutator::domain::{NewClient, NewMessage};
use kommutator::http::extract::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for r in [parse_json::<NewClient>(data).err(), parse_json::<NewMessage>(data).err()].into_iter().flatten() {
        assert!(r.status.is_client_error(), "{r:?}");
    }
    let _ = parse_json::<serde_json::Value>(data);
});
