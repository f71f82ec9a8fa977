//! HEPv3 packets come from the network: parsing never panics; the stream framer agrees
//! with the parser on the length; what parses re-encodes to bytes that parse to the
//! same packet; and its SIP payload goes through the SIP reader.
#![no_main]

use kommutator_hep::{hep_frame_len, parse_hep, parse_sip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let framed = data.first_chunk::<6>().map(hep_frame_len);
    let Ok(packet) = parse_hep(data) else { return };
    assert_eq!(framed, Some(Ok(data.len())), "framer and parser disagree");
    // Re-encoding drops vendor and unknown chunks and may widen a u16 capture id, so it
    // can only fail by growing past 65535 bytes.
    if let Ok(bytes) = packet.encode() {
        assert_eq!(parse_hep(&bytes).expect("re-encoded packet parses"), packet);
    }
    if let Some(payload) = packet.payload {
        let _ = parse_sip(payload);
    }
});
