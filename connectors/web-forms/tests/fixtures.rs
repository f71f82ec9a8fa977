//! Every fixture, whole and truncated at every byte, through the pure parser under both
//! content types and both request kinds: no panic; the whole ones parse as expected.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_sdk::phone::NumberPlan;
use kommutator_sdk::ConnectorId;
use kommutator_web_forms::map::{self, FormInfo, RequestMeta};
use kommutator_web_forms::{parse_submission, Field, FormError, FormKind, FormSpec, ParseContext};
use time::OffsetDateTime;

const FIXTURES: [&str; 5] = [
    "lead_browser.txt",
    "lead_server.json",
    "callback_browser.txt",
    "spam_honeypot.txt",
    "hostile.json",
];

fn bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(path).unwrap()
}

fn spec() -> FormSpec {
    let mut fields: Vec<(String, Field)> = vec![
        ("tel".to_owned(), Field::Phone),
        ("fio".to_owned(), Field::Name),
        ("city".to_owned(), Field::Extra("City".to_owned())),
    ];
    fields.extend(
        Field::STANDARD
            .iter()
            .map(|f| (f.key().to_owned(), f.clone())),
    );
    FormSpec {
        fields,
        required: vec![],
        require_contact: true,
        honeypot_field: "website".to_owned(),
        min_fill_ms: Some(3_000),
        consent_required: false,
        plan: NumberPlan::new(Some("7".to_owned()), 5),
    }
}

const CONTENT_TYPES: [Option<&str>; 3] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    None,
];

fn feed(data: &[u8], spec: &FormSpec) {
    let id = ConnectorId::new("f");
    for ct in CONTENT_TYPES {
        for browser in [false, true] {
            let ctx = ParseContext {
                now_ms: 1_777_000_100_000,
                browser,
            };
            if let Ok(sub) = parse_submission(data, ct, spec, ctx) {
                let key = map::external_id(&sub, "f", 1_777_000_100);
                let form = FormInfo {
                    id: &id,
                    name: "F",
                    kind: FormKind::Lead,
                };
                let _ = map::event(
                    form,
                    &sub,
                    key,
                    &RequestMeta::default(),
                    OffsetDateTime::UNIX_EPOCH,
                );
            }
        }
    }
}

#[test]
fn every_fixture_truncated_at_every_byte_never_panics() {
    let spec = spec();
    for name in FIXTURES {
        let data = bytes(name);
        for end in 0..=data.len() {
            feed(data.get(..end).unwrap(), &spec);
        }
    }
}

#[test]
fn whole_fixtures_parse_as_expected() {
    let spec = spec();
    let ctx = ParseContext {
        now_ms: 1_777_000_100_000,
        browser: true,
    };
    let form = Some("application/x-www-form-urlencoded");
    let json = Some("application/json");
    let lead = parse_submission(&bytes("lead_browser.txt"), form, &spec, ctx).unwrap();
    assert_eq!(lead.phone.as_deref(), Some("+79161234567"));
    assert_eq!(lead.traffic.len(), 8);
    let server = parse_submission(
        &bytes("lead_server.json"),
        json,
        &spec,
        ParseContext {
            browser: false,
            ..ctx
        },
    )
    .unwrap();
    assert_eq!(server.company.as_deref(), Some("Acme LLC"));
    let callback = parse_submission(&bytes("callback_browser.txt"), form, &spec, ctx).unwrap();
    assert_eq!(callback.name.as_deref(), Some("Anna"));
    assert_eq!(
        parse_submission(&bytes("spam_honeypot.txt"), form, &spec, ctx).unwrap_err(),
        FormError::Spam("hidden field filled")
    );
    let hostile = parse_submission(
        &bytes("hostile.json"),
        json,
        &spec,
        ParseContext {
            browser: false,
            ..ctx
        },
    )
    .unwrap();
    assert!(hostile.name.unwrap().starts_with("<script>"));
}
