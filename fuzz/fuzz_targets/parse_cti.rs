//! Zammad generic CTI bodies: `parse_cti` answers every input with a request or an error,
//! and `normalize_cti` maps every parsed request, with or without call state, never
//! panicking.
#![no_main]

use kommutator_cti_webhook::{normalize_cti, parse_cti, CallRecord, NumberPlan};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let plan = NumberPlan::new(Some("7".to_owned()), 5);
    let now = OffsetDateTime::UNIX_EPOCH;
    let blocked = ["+74950000000".to_owned()];
    for ct in [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let Ok(req) = parse_cti(data, ct) else {
            continue;
        };
        for known in [
            None,
            Some(CallRecord { answered_at: None }),
            Some(CallRecord {
                answered_at: Some(now),
            }),
        ] {
            let _ = normalize_cti(&req, known.as_ref(), now, &plan, &blocked);
        }
    }
});
