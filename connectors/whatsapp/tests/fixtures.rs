//! Every fixture, whole and truncated at every byte, through the pure parsers: no panic;
//! the whole ones parse to what they describe.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_sdk::{DeliveryState, InboundKind};
use kommutator_whatsapp::{
    hub_signature, parse_graph_error, parse_media_info, parse_send_response, parse_upload_response,
    parse_webhook, verify_signature, ApiError,
};

const PNID: &str = "106540352242922";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(path).unwrap()
}

fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 20, "fixtures missing: {}", out.len());
    out
}

/// Runs every parser that could see `bytes`; results are ignored.
fn feed_everything(bytes: &[u8]) {
    let _ = parse_webhook(bytes, PNID);
    let _ = parse_webhook(bytes, "");
    let _ = verify_signature(b"secret", Some("sha256=00"), bytes);
    let _ = parse_send_response(bytes);
    let _ = parse_upload_response(bytes);
    let _ = parse_media_info(bytes);
    for status in [200, 400, 401, 429, 500] {
        let _ = parse_graph_error(status, bytes);
    }
}

#[test]
fn truncated_fixtures_never_panic() {
    for (_, body) in all_fixtures() {
        for cut in 0..=body.len() {
            feed_everything(&body[..cut]);
        }
    }
}

#[test]
fn whole_webhook_fixtures_parse_and_verify() {
    for (name, body) in all_fixtures() {
        if name.starts_with("api_") {
            continue;
        }
        let sig = hub_signature(b"app-secret", &body);
        verify_signature(b"app-secret", Some(&sig), &body).unwrap();
        let n = parse_webhook(&body, PNID).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!n.events.is_empty(), "{name}");
        assert!(n.ignored.is_empty(), "{name}");
        let other = parse_webhook(&body, "1").unwrap();
        if name != "account_update.json" {
            assert!(
                other.events.is_empty(),
                "{name}: another number's change is skipped"
            );
        }
    }
}

#[test]
fn fixture_kinds() {
    let kind = |name: &str| {
        let n = parse_webhook(&fixture(name), PNID).unwrap();
        n.events.into_iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    assert!(
        matches!(&kind("text.json")[0], InboundKind::Message(m) if m.text.as_deref() == Some("Hello, is the blue sofa still available?"))
    );
    assert!(matches!(
        &kind("reaction.json")[0],
        InboundKind::Unknown { .. }
    ));
    assert!(matches!(
        &kind("account_update.json")[0],
        InboundKind::Unknown { .. }
    ));
    assert_eq!(kind("batch.json").len(), 3);
    assert!(matches!(
        &kind("status_failed.json")[0],
        InboundKind::DeliveryStatus { status: DeliveryState::Failed { reason }, .. }
            if reason.starts_with("Re-engagement message (Message failed to send because more than 24 hours")
    ));
}

#[test]
fn api_fixtures_parse() {
    assert_eq!(
        parse_send_response(&fixture("api_send_ok.json")).unwrap(),
        "wamid.HBgLMTYzMTU1NTEyMzQVAgARGBJPVVRCT1VORDAwMDAwMDAwNgA="
    );
    assert_eq!(
        parse_upload_response(&fixture("api_upload_ok.json")).unwrap(),
        "1166846181421424"
    );
    let info = parse_media_info(&fixture("api_media_info.json")).unwrap();
    assert_eq!(info.file_size, Some(303_833));
    assert!(matches!(
        parse_graph_error(400, &fixture("api_error_131047.json")),
        ApiError::Refused {
            code: Some(131_047),
            ..
        }
    ));
    assert!(parse_graph_error(401, &fixture("api_error_190.json")).is_token_error());
    assert!(matches!(
        parse_graph_error(400, &fixture("api_error_130429.json")),
        ApiError::Transient {
            rate_limited: true,
            ..
        }
    ));
}
