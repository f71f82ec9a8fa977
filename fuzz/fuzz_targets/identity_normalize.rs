//! Identity normalization never panics, and its output is a fixed point: normalizing a
//! normalized value gives the same value.
#![no_main]

use kommutator::domain::{IdentityKind, IdentityRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let kind = IdentityKind::ALL[usize::from(selector) % IdentityKind::ALL.len()];
    let rules = IdentityRules::default();
    if let Ok(v) = rules.normalize("value", kind, text) {
        let again = rules.normalize("value", kind, &v).expect("a normalized value is valid");
        assert_eq!(again, v, "normalization is idempotent");
    }
});
