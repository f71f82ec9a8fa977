//! SIP payloads come from the network: parsing never panics, and what parses can be
//! fed to the call tracker (dedupe, reorder, state machine, number normalization)
//! without a panic, twice, with the second copy adding no event.
#![no_main]

use std::time::{Duration, Instant};

use kommutator_hep::{
    normalize_party, parse_sip, CallTracker, Captured, NumberRules, TrackerSettings,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parse_sip(data) else { return };
    let rules = NumberRules {
        country_code: "7".into(),
        national_prefix: "8".into(),
        extension_max_len: 4,
        internal_domains: vec!["pbx.example.com".into()],
    };
    let _ = normalize_party(&rules, &msg.from.uri);
    let _ = normalize_party(&rules, &msg.to.uri);
    let mut tracker = CallTracker::new(TrackerSettings {
        rules,
        reorder_window: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(60),
        max_calls: 4,
    });
    let captured = Captured {
        msg,
        ts: time::OffsetDateTime::UNIX_EPOCH,
        src: None,
        dst: None,
        capture_id: None,
        correlation_id: None,
    };
    let now = Instant::now();
    let mut out = Vec::new();
    if tracker.ingest(captured.clone(), now, &mut out).is_err() {
        return;
    }
    tracker.poll(now + Duration::from_secs(1), &mut out);
    let first = out.len();
    let _ = tracker.ingest(captured, now + Duration::from_secs(2), &mut out);
    tracker.poll(now + Duration::from_secs(3), &mut out);
    assert_eq!(out.len(), first, "a copy added an event");
    tracker.poll(now + Duration::from_secs(3600), &mut out);
    for update in out {
        assert!(update.external_id.len() <= 256, "external id too long");
    }
});
