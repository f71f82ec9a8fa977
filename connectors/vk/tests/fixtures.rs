//! Every fixture, whole and truncated at every byte, through the pure parsers and mappers:
//! no panic; the whole ones parse and map.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kommutator_vk::{
    doc_attachment, envelope_from_value, map_event, parse_callback, parse_long_poll, response_of,
    sent_of, LongPollAnswer, OurSend,
};

const CALLBACKS: [&str; 6] = [
    "callback_confirmation.json",
    "callback_message_new.json",
    "callback_message_new_chat.json",
    "callback_message_edit.json",
    "callback_message_reply.json",
    "callback_group_join.json",
];
const OTHERS: [&str; 2] = ["longpoll_updates.json", "messages_send_error_901.json"];

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(path).unwrap()
}

fn ours(r: i64) -> OurSend {
    if r % 2 == 0 {
        OurSend::Pending
    } else {
        OurSend::No
    }
}

/// Runs every parser and mapper that could see `bytes`; results are ignored.
fn feed(bytes: &[u8]) {
    if let Ok(env) = parse_callback(bytes) {
        let _ = map_event(&env, &ours);
        let _ = map_event(&env, &|_| OurSend::Acked("1:2".into()));
    }
    if let Ok(LongPollAnswer::Updates { updates, .. }) = parse_long_poll(bytes) {
        for u in updates {
            if let Ok(env) = envelope_from_value(u) {
                let _ = map_event(&env, &ours);
            }
        }
    }
    if let Ok(r) = response_of(bytes) {
        let _ = sent_of(&r);
        let _ = doc_attachment(&r);
    }
}

#[test]
fn whole_fixtures_parse_and_map() {
    for name in CALLBACKS {
        let env = parse_callback(&read(name)).unwrap();
        assert_eq!(env.group_id, Some(218_000_001), "{name}");
        if env.event_type != "confirmation" {
            map_event(&env, &ours).unwrap();
        }
    }
    match parse_long_poll(&read("longpoll_updates.json")).unwrap() {
        LongPollAnswer::Updates { ts, updates } => {
            assert_eq!(ts, "1041");
            assert_eq!(updates.len(), 2);
            for u in updates {
                map_event(&envelope_from_value(u).unwrap(), &ours).unwrap();
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(response_of(&read("messages_send_error_901.json")).is_err());
}

#[test]
fn every_truncation_of_every_fixture_is_handled() {
    for name in CALLBACKS.iter().chain(OTHERS.iter()) {
        let bytes = read(name);
        for cut in 0..=bytes.len() {
            feed(bytes.get(..cut).unwrap());
        }
    }
}
