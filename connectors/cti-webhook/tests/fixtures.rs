//! Every fixture request, whole and truncated at every byte, through the pure parser and
//! normalizer: no panic, and the whole requests parse.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_cti_webhook::{normalize_cti, parse_cti, NumberPlan};
use time::macros::datetime;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        out.push((name, std::fs::read(&path).unwrap()));
    }
    assert!(out.len() >= 5, "fixtures missing: {out:?}");
    out
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".jsonl") {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    }
}

#[test]
fn whole_fixture_requests_parse_and_normalize() {
    let plan = NumberPlan::new(Some("49".to_owned()), 5);
    let now = datetime!(2024-05-01 12:00:00 UTC);
    for (name, bytes) in fixtures() {
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let req = parse_cti(line, Some(content_type(&name)))
                .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(line)));
            normalize_cti(&req, None, now, &plan, &[]).unwrap();
        }
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    let plan = NumberPlan::new(Some("7".to_owned()), 5);
    let now = datetime!(2024-05-01 12:00:00 UTC);
    for (name, bytes) in fixtures() {
        for line in bytes.split(|b| *b == b'\n').chain([bytes.as_slice()]) {
            for cut in 0..=line.len() {
                let part = &line[..cut];
                for ct in [Some(content_type(&name)), None] {
                    if let Ok(req) = parse_cti(part, ct) {
                        let _ = normalize_cti(&req, None, now, &plan, &["+7495".to_owned()]);
                    }
                }
            }
        }
    }
}
