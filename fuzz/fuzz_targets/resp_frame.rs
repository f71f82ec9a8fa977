//! The Redis protocol parser of the bus: any bytes give a frame, "need more" or an error,
//! never a panic; a frame never claims more bytes than it was given; a parse of a prefix
//! never disagrees with the whole.
#![no_main]

use kommutator::bus::resp::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = parse(data) {
        assert!(used <= data.len());
        // The same frame parses from exactly its own bytes.
        let again = parse(&data[..used]).expect("a complete frame parses alone");
        assert_eq!(again.map(|(_, n)| n), Some(used));
    }
});
