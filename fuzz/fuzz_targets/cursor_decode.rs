//! Page cursors come from clients: decoding never panics, and what decodes re-encodes to a
//! cursor that decodes to the same position.
#![no_main]

use kommutator::storage::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&c.encode()).expect("round trip"), c);
    }
});
