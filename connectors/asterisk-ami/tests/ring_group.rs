//! `ring_group_no_answer.ami` through the public tracker: a `Dial(PJSIP/101&PJSIP/102,20)`
//! that nobody answers is one call, ringing at both phones, missed (no answer) once, and
//! only when the caller's leg hangs up (the replay test plays it through `run`).
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use kommutator_asterisk_ami::codec::{AmiCodec, AmiFrame, AmiMessage};
use kommutator_asterisk_ami::numbers::NumberPlan;
use kommutator_asterisk_ami::tracker::{CallTracker, CallUpdate, TrackerConfig};
use kommutator_sdk::{CallEventKind, Direction, MissedReason};
use time::macros::datetime;
use tokio_util::codec::Decoder;

const CALL: &str = "1714572000.180";

fn tracker() -> CallTracker {
    CallTracker::new(TrackerConfig {
        plan: NumberPlan {
            country_code: Some("7".to_owned()),
            extension_max_len: 4,
            internal_contexts: vec![],
        },
        recording_base_url: None,
        recording_path_prefix: String::new(),
    })
}

fn messages() -> Vec<AmiMessage> {
    let path = format!(
        "{}/tests/fixtures/ring_group_no_answer.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut buf = BytesMut::from(&std::fs::read(path).unwrap()[..]);
    let mut codec = AmiCodec::new();
    let mut out = vec![];
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        match frame {
            AmiFrame::Message(m) => out.push(m),
            AmiFrame::Banner { .. } => {}
            AmiFrame::Rejected { reason } => panic!("{reason}"),
        }
    }
    out
}

fn feed(t: &mut CallTracker, msgs: &[AmiMessage]) -> Vec<CallUpdate> {
    let now = datetime!(2024-05-01 14:00:00 UTC);
    msgs.iter().flat_map(|m| t.handle_event(m, now)).collect()
}

#[test]
fn ring_group_nobody_answers() {
    let msgs = messages();
    let mut t = tracker();
    let out = feed(&mut t, &msgs);
    let ids: Vec<&str> = out.iter().map(|u| u.external_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{CALL}:ringing"),
            format!("{CALL}:ringing:101"),
            format!("{CALL}:ringing:102"),
            format!("{CALL}:missed"),
        ]
    );
    for (u, ext) in out.iter().take(3).zip([None, Some("101"), Some("102")]) {
        assert_eq!(u.event.call_external_id, CALL);
        assert_eq!(
            u.event.kind,
            CallEventKind::Ringing {
                from: "+79031234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: ext.map(str::to_owned),
            }
        );
    }
    // Each phone rings when its DialBegin comes.
    assert_eq!(out[1].raw["Event"], "DialBegin");
    assert_eq!(out[2].raw["DestChannel"], "PJSIP/102-00000082");
    let missed = &out[3];
    assert_eq!(
        missed.event.kind,
        CallEventKind::Missed {
            reason: MissedReason::NoAnswer
        }
    );
    assert_eq!(missed.occurred_at, datetime!(2024-05-01 14:00:20.61 UTC));
    assert!(t.is_empty(), "the call is over");
    assert!(t.knows_call(CALL));

    // Replayed into the same tracker (a duplicate delivery), nothing is reported again.
    assert_eq!(feed(&mut t, &msgs), vec![]);
}

#[test]
fn the_phones_hanging_up_do_not_end_the_call() {
    let msgs = messages();
    // Everything before the dialplan's Hangup(): both DialEnd NOANSWER, both phones gone.
    let at = msgs
        .iter()
        .position(|m| m.is_event("SoftHangupRequest"))
        .unwrap();
    let mut t = tracker();
    let out = feed(&mut t, &msgs[..at]);
    assert_eq!(out.len(), 3, "ringing, at 101, at 102: {out:?}");
    assert!(out.iter().all(|u| !u.external_id.ends_with(":missed")));
    assert_eq!(t.len(), 1, "the caller is still in the dialplan");
    let rest = feed(&mut t, &msgs[at..]);
    let ids: Vec<&str> = rest.iter().map(|u| u.external_id.as_str()).collect();
    assert_eq!(ids, [format!("{CALL}:missed")]);
}
