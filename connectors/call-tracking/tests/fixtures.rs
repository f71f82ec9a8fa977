//! Every fixture, whole and truncated at every byte, through the pure parsers and mappers:
//! no panic; the whole ones parse, and their signatures (computed by the fixture script
//! with Python's hmac/hashlib) verify with our code.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_call_tracking::{
    map_mango_call, map_mango_other, map_mango_recording, map_roistat, map_uis, map_zadarma,
    parse_mango_call, parse_mango_envelope, parse_roistat, parse_uis, parse_zadarma,
    verify_mango_sign, verify_zadarma_signature, NumberPlan, RoistatStage,
};

const ZADARMA_SECRET: &str = "test-secret-zadarma";
const MANGO_KEY: &str = "test-vpbx-api-key";
const MANGO_SALT: &str = "test-vpbx-api-salt";

fn lines(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

const ZADARMA: [&str; 3] = [
    "zadarma_inbound_answered.txt",
    "zadarma_inbound_missed.txt",
    "zadarma_outbound_busy.txt",
];
const MANGO: [&str; 2] = ["mango_inbound_answered.txt", "mango_out_of_order.txt"];

fn plan() -> NumberPlan {
    NumberPlan::new(Some("7".to_owned()), 5)
}

/// Runs every parser and mapper that could see `bytes`; results are ignored.
fn feed_everything(bytes: &[u8]) {
    let p = plan();
    if let Ok(n) = parse_zadarma(bytes) {
        let _ = verify_zadarma_signature(b"k", Some("x"), &n);
        let _ = map_zadarma(&n, &p);
    }
    if let Ok(env) = parse_mango_envelope(bytes) {
        let _ = verify_mango_sign(&env, "k", "s");
        let _ = map_mango_recording(env.json.as_bytes());
    }
    let json = bytes;
    if let Ok(ev) = parse_mango_call(json) {
        if let Ok((_, st)) = map_mango_call(&ev, None, &p) {
            let _ = map_mango_call(&ev, st.as_ref(), &p);
        }
    }
    let _ = map_mango_recording(json);
    let _ = map_mango_other("summary", json);
    if let Ok(c) = parse_roistat(json) {
        let _ = map_roistat(&c, RoistatStage::Start, &p);
        let _ = map_roistat(&c, RoistatStage::End, &p);
    }
    for ct in [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
    ] {
        if let Ok(n) = parse_uis(json, ct) {
            let _ = map_uis(&n, &p);
        }
    }
}

fn all_bodies() -> Vec<Vec<u8>> {
    let mut out = vec![];
    for name in ZADARMA
        .iter()
        .chain(MANGO.iter())
        .chain(["roistat_call.txt"].iter())
    {
        for line in lines(name) {
            let (_, body) = line.split_once('\t').unwrap();
            out.push(body.as_bytes().to_vec());
            if name.starts_with("mango") {
                out.push(
                    parse_mango_envelope(body.as_bytes())
                        .unwrap()
                        .json
                        .into_bytes(),
                );
            }
        }
    }
    for line in lines("uis_session.jsonl") {
        out.push(line.into_bytes());
    }
    out
}

#[test]
fn truncated_fixtures_never_panic() {
    for body in all_bodies() {
        for cut in 0..=body.len() {
            feed_everything(&body[..cut]);
        }
    }
}

#[test]
fn whole_fixtures_parse_and_their_signatures_verify() {
    let p = plan();
    for name in ZADARMA {
        for line in lines(name) {
            let (sig, body) = line.split_once('\t').unwrap();
            let n = parse_zadarma(body.as_bytes()).unwrap();
            verify_zadarma_signature(ZADARMA_SECRET.as_bytes(), Some(sig), &n)
                .unwrap_or_else(|e| panic!("{name} {}: {e}", n.event));
            map_zadarma(&n, &p).unwrap();
        }
    }
    for name in MANGO {
        for line in lines(name) {
            let (kind, body) = line.split_once('\t').unwrap();
            let env = parse_mango_envelope(body.as_bytes()).unwrap();
            verify_mango_sign(&env, MANGO_KEY, MANGO_SALT).unwrap();
            let json = env.json.as_bytes();
            match kind {
                "call" => {
                    map_mango_call(&parse_mango_call(json).unwrap(), None, &p).unwrap();
                }
                "recording" => {
                    map_mango_recording(json).unwrap();
                }
                other => {
                    map_mango_other(other, json).unwrap();
                }
            }
        }
    }
    for line in lines("roistat_call.txt") {
        let (_, body) = line.split_once('\t').unwrap();
        map_roistat(
            &parse_roistat(body.as_bytes()).unwrap(),
            RoistatStage::Start,
            &p,
        )
        .unwrap();
    }
    for line in lines("uis_session.jsonl") {
        map_uis(&parse_uis(line.as_bytes(), None).unwrap(), &p).unwrap();
    }
}
