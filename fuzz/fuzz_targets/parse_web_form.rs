//! Website form submissions: the parser answers every body, under every content type and
//! request kind, with a submission or an error, never a panic; a parsed submission maps to
//! an event and a key without panicking; the signature check rejects garbage.
#![no_main]

use kommutator_sdk::phone::NumberPlan;
use kommutator_sdk::ConnectorId;
use kommutator_web_forms::map::{self, FormInfo, RequestMeta};
use kommutator_web_forms::{parse_submission, verify, Field, FormKind, FormSpec, ParseContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields: Vec<(String, Field)> = vec![
        ("tel".to_owned(), Field::Phone),
        ("city".to_owned(), Field::Extra("City".to_owned())),
    ];
    fields.extend(
        Field::STANDARD
            .iter()
            .map(|f| (f.key().to_owned(), f.clone())),
    );
    let spec = FormSpec {
        fields,
        required: vec![Field::Name],
        require_contact: true,
        honeypot_field: "website".to_owned(),
        min_fill_ms: Some(3_000),
        consent_required: true,
        plan: NumberPlan::new(Some("7".to_owned()), 5),
    };
    let id = ConnectorId::new("fuzz");
    for ct in [
        Some("application/json"),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        None,
    ] {
        for browser in [false, true] {
            let ctx = ParseContext {
                now_ms: 1_777_000_000_000,
                browser,
            };
            if let Ok(sub) = parse_submission(data, ct, &spec, ctx) {
                let key = map::external_id(&sub, "fuzz", 1_777_000_000);
                let form = FormInfo {
                    id: &id,
                    name: "Fuzz",
                    kind: FormKind::Callback,
                };
                let _ = map::event(
                    form,
                    &sub,
                    key,
                    &RequestMeta::default(),
                    time::OffsetDateTime::UNIX_EPOCH,
                );
            }
        }
    }
    assert!(verify(
        b"secret",
        Some("1777000000"),
        Some("sha256=00"),
        data,
        1_777_000_000
    )
    .is_err());
});
