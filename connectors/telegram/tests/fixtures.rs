//! Every fixture through the pure parser: whole ones map as documented, and every one
//! truncated at every byte gives a value or an error, never a panic.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_sdk::{
    normalize_external_id, ConnectorId, IdentityKind, InboundKind, PartyIdentity,
};
use kommutator_telegram::{parse_update_bytes, ParsedUpdate};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(path).unwrap()
}

fn all() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn parse(name: &str) -> ParsedUpdate {
    parse_update_bytes(&ConnectorId::new("tg"), &fixture(name)).unwrap()
}

/// The body of `fuzz/fuzz_targets/parse_telegram.rs`, so CI checks it without nightly.
fn check_like_the_fuzz_target(id: &ConnectorId, data: &[u8]) {
    if let Ok(parsed) = parse_update_bytes(id, data) {
        let ev = &parsed.event;
        assert_eq!(&ev.connector_id, id);
        assert_eq!(
            normalize_external_id(&ev.external_id).ok().as_deref(),
            Some(ev.external_id.as_str())
        );
        assert!(ev.raw.is_some());
        if let InboundKind::Message(m) = &ev.kind {
            assert!(normalize_external_id(&m.thread_id).is_ok());
        } else {
            assert!(parsed.media.is_empty());
        }
        assert!(serde_json::to_vec(ev).is_ok());
    }
}

#[test]
fn every_fixture_parses_and_truncations_never_panic() {
    let id = ConnectorId::new("tg");
    let files = all();
    assert!(files.len() >= 13, "{}", files.len());
    for (name, bytes) in &files {
        let p = parse_update_bytes(&id, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(p.event.raw.is_some(), "{name}");
        check_like_the_fuzz_target(&id, bytes);
        for n in 0..bytes.len() {
            let cut = bytes.get(..n).unwrap();
            check_like_the_fuzz_target(&id, cut);
        }
    }
}

#[test]
fn fixtures_map_as_documented() {
    let cases: [(&str, &str, Option<&str>); 9] = [
        (
            "text_private.json",
            "1001:7",
            Some("Hello, do you deliver to Kazan?"),
        ),
        ("photo_caption.json", "1001:8", Some("This sofa, in grey")),
        (
            "contact_own.json",
            "1001:9",
            Some("[contact Ivan Petrov +79161234567]"),
        ),
        (
            "edited_message.json",
            "1001:7:edit:1714575690",
            Some("Hello, do you deliver to Kazan and Samara?"),
        ),
        ("document.json", "1001:10", None),
        ("voice.json", "1001:11", None),
        ("sticker.json", "1001:12", Some("[sticker 👍]")),
        (
            "location.json",
            "1001:13",
            Some("[location 55.796127, 49.106414]"),
        ),
        (
            "group_text_reply.json",
            "-1001234567890:301",
            Some("Yes, it is great"),
        ),
    ];
    for (name, key, text) in cases {
        let p = parse(name);
        assert_eq!(p.event.external_id, key, "{name}");
        let InboundKind::Message(m) = &p.event.kind else {
            panic!("{name}: {:?}", p.event.kind);
        };
        assert_eq!(m.text.as_deref(), text, "{name}");
    }

    let p = parse("photo_caption.json");
    assert_eq!(p.media.len(), 1);
    assert_eq!(p.media[0].file_id, "AgACAgIAAxkBAAIBlarge");

    let p = parse("contact_own.json");
    let InboundKind::Message(m) = &p.event.kind else {
        panic!()
    };
    assert!(m
        .sender
        .identities
        .contains(&PartyIdentity::new(IdentityKind::Phone, "+79161234567")));
    assert_eq!(m.reply_to_external_id.as_deref(), Some("1001:3"));

    let p = parse("edited_message.json");
    let InboundKind::Message(m) = &p.event.kind else {
        panic!()
    };
    assert_eq!(m.edit_of.as_deref(), Some("1001:7"));

    let p = parse("group_text_reply.json");
    let InboundKind::Message(m) = &p.event.kind else {
        panic!()
    };
    assert_eq!(m.thread_id, "-1001234567890");
    assert_eq!(m.sender.display_name.as_deref(), Some("Olga"));
    assert_eq!(
        m.reply_to_external_id.as_deref(),
        Some("-1001234567890:300")
    );

    for (name, key, description) in [
        (
            "callback_query.json",
            "update:700000010",
            "telegram update \"callback_query\"",
        ),
        (
            "my_chat_member_blocked.json",
            "update:700000011",
            "telegram update \"my_chat_member\"",
        ),
        (
            "channel_post.json",
            "update:700000012",
            "telegram update \"channel_post\"",
        ),
        (
            "new_chat_members.json",
            "update:700000013",
            "telegram message: new_chat_members",
        ),
    ] {
        let p = parse(name);
        assert_eq!(p.event.external_id, key, "{name}");
        assert_eq!(
            p.event.kind,
            InboundKind::Unknown {
                description: description.to_owned()
            },
            "{name}"
        );
    }
}
