//! Call-tracking notifications (Zadarma, Mango Office, Roistat, UIS): every parser and
//! mapper answers every input with a value or an error, never a panic; signature checks
//! reject garbage without panicking.
#![no_main]

use kommutator_call_tracking::{
    map_mango_call, map_mango_other, map_mango_recording, map_roistat, map_uis, map_zadarma,
    parse_mango_call, parse_mango_envelope, parse_roistat, parse_uis, parse_zadarma,
    verify_mango_sign, verify_zadarma_signature, NumberPlan, RoistatStage,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = NumberPlan::new(Some("7".to_owned()), 5);
    if let Ok(n) = parse_zadarma(data) {
        assert!(verify_zadarma_signature(b"secret", Some("c2ln"), &n).is_err());
        let _ = map_zadarma(&n, &plan);
    }
    if let Ok(env) = parse_mango_envelope(data) {
        let _ = verify_mango_sign(&env, "key", "salt");
        if let Ok(ev) = parse_mango_call(env.json.as_bytes()) {
            let _ = map_mango_call(&ev, None, &plan);
        }
    }
    if let Ok(ev) = parse_mango_call(data) {
        if let Ok((_, state)) = map_mango_call(&ev, None, &plan) {
            // The same notification again: stale against the state it produced.
            let _ = map_mango_call(&ev, state.as_ref(), &plan);
        }
    }
    let _ = map_mango_recording(data);
    let _ = map_mango_other("summary", data);
    if let Ok(call) = parse_roistat(data) {
        let _ = map_roistat(&call, RoistatStage::Start, &plan);
        let _ = map_roistat(&call, RoistatStage::End, &plan);
    }
    for ct in [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    ] {
        if let Ok(n) = parse_uis(data, ct) {
            let _ = map_uis(&n, &plan);
        }
    }
});
