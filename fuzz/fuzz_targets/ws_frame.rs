//! Socket frames: the operator/bot and visitor frame parsers (and the topic parser they
//! lead to) answer every input with a frame or an error, never a panic.
#![no_main]

use kommutator::http::ws::{operator, widget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = operator::parse_frame_type(text);
    let _ = widget::parse_frame_type(text);
    let _ = text.parse::<kommutator::domain::Topic>();
});
