//! The fixtures through the pure parts: every fixture truncated at every byte, the
//! events of each session, the same events under duplicated and shuffled delivery, the
//! real Kamailio captures, and a differential check of our SIP reader against rsip.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{load_captured, load_session, shuffled, Packet, CAPTURED, SESSIONS};
use kommutator_hep::{
    parse_hep, parse_sip, CallTracker, CallUpdate, Captured, NumberRules, TrackerSettings,
};
use kommutator_sdk::{CallEvent, CallEventKind, Direction, InboundKind, MissedReason};
use time::OffsetDateTime;

const WINDOW: Duration = Duration::from_millis(200);

fn settings() -> TrackerSettings {
    TrackerSettings {
        rules: NumberRules {
            country_code: "7".into(),
            national_prefix: "8".into(),
            extension_max_len: 4,
            internal_domains: vec!["pbx.example.com".into()],
        },
        reorder_window: WINDOW,
        idle_timeout: Duration::from_secs(3600),
        max_calls: 1000,
    }
}

fn captured(hep: &[u8]) -> Captured {
    let p = parse_hep(hep).unwrap();
    Captured {
        msg: parse_sip(p.payload.unwrap()).unwrap(),
        ts: p.timestamp().unwrap(),
        src: p.src(),
        dst: p.dst(),
        capture_id: p.capture_id,
        correlation_id: None,
    }
}

fn session_captures(name: &str) -> Vec<Captured> {
    load_session(name)
        .iter()
        .map(|p| captured(&p.to_hep(None)))
        .collect()
}

/// All packets arrive at one instant; one poll after the window.
fn all_at_once(pkts: &[Captured]) -> Vec<CallUpdate> {
    let mut tr = CallTracker::new(settings());
    let start = Instant::now();
    let mut out = Vec::new();
    for p in pkts {
        tr.ingest(p.clone(), start, &mut out).unwrap();
    }
    tr.poll(start + WINDOW, &mut out);
    out
}

/// Packets arrive `gap` apart in the given order, with polls as time passes.
fn spread(pkts: &[Captured], gap: Duration) -> Vec<CallUpdate> {
    let mut tr = CallTracker::new(settings());
    let start = Instant::now();
    let mut out = Vec::new();
    let mut now = start;
    for p in pkts {
        tr.poll(now, &mut out);
        tr.ingest(p.clone(), now, &mut out).unwrap();
        now += gap;
    }
    tr.poll(now + WINDOW, &mut out);
    out
}

/// Packets arrive at their capture times (kept monotonic), as on a real network.
fn timeline(pkts: &[Captured]) -> Vec<CallUpdate> {
    let mut tr = CallTracker::new(settings());
    let start = Instant::now();
    let t0 = pkts[0].ts;
    let mut now = start;
    let mut out = Vec::new();
    for p in pkts {
        let at = start + Duration::try_from(p.ts - t0).unwrap_or_default();
        now = now.max(at);
        tr.poll(now, &mut out);
        tr.ingest(p.clone(), now, &mut out).unwrap();
    }
    tr.poll(now + WINDOW, &mut out);
    out
}

fn ts(secs: i64, micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap() + time::Duration::microseconds(micros)
}

fn call(cid: &str, kind: CallEventKind) -> InboundKind {
    InboundKind::Call(CallEvent {
        call_external_id: cid.into(),
        kind,
    })
}

fn ringing(from: &str, to: &str, extension: Option<&str>) -> CallEventKind {
    CallEventKind::Ringing {
        from: from.into(),
        to: to.into(),
        direction: Direction::Inbound,
        extension: extension.map(Into::into),
    }
}

fn missed(reason: MissedReason) -> CallEventKind {
    CallEventKind::Missed { reason }
}

/// One expected event: (step, occurred_at, kind).
type Step = (&'static str, OffsetDateTime, CallEventKind);

/// (session, call id, events)
fn expected() -> Vec<(&'static str, &'static str, Vec<Step>)> {
    vec![
        (
            "answered",
            "3f2c9b0a71e4d5c8",
            vec![
                (
                    "ringing",
                    ts(1_714_564_800, 100_000),
                    ringing("+79161234567", "101", Some("101")),
                ),
                (
                    "answered",
                    ts(1_714_564_803, 212_000),
                    CallEventKind::Answered {
                        by_extension: Some("101".into()),
                    },
                ),
                (
                    "hung_up",
                    ts(1_714_564_896, 620_000),
                    CallEventKind::HungUp {
                        duration_secs: Some(93),
                        cause: None,
                    },
                ),
            ],
        ),
        (
            "cancelled",
            "8d7c6b5a4f3e2d1c",
            vec![
                (
                    "ringing",
                    ts(1_714_564_900, 200_000),
                    ringing("1001", "2001", Some("2001")),
                ),
                (
                    "missed",
                    ts(1_714_564_901, 390_000),
                    missed(MissedReason::Cancelled),
                ),
            ],
        ),
        (
            "rejected",
            "5b6c7d8e9fa0b1c2",
            vec![
                (
                    "ringing",
                    ts(1_714_565_000, 100),
                    ringing("+74951234567", "2001", Some("2001")),
                ),
                (
                    "missed",
                    ts(1_714_565_001, 121_000),
                    missed(MissedReason::Busy),
                ),
            ],
        ),
        (
            "compact",
            "compact-1@trunk.example.net",
            vec![
                (
                    "ringing",
                    ts(1_714_565_100, 0),
                    ringing("+79031112233", "102", Some("102")),
                ),
                (
                    "answered",
                    ts(1_714_565_104, 500_000),
                    CallEventKind::Answered {
                        by_extension: Some("102".into()),
                    },
                ),
                (
                    "hung_up",
                    ts(1_714_565_125, 0),
                    CallEventKind::HungUp {
                        duration_secs: Some(21),
                        cause: None,
                    },
                ),
            ],
        ),
        (
            "tel_uri",
            "tel-uri-1",
            vec![
                (
                    "ringing",
                    ts(1_714_565_200, 0),
                    ringing("+79165550011", "+74951234567", None),
                ),
                (
                    "missed",
                    ts(1_714_565_202, 0),
                    missed(MissedReason::Rejected),
                ),
            ],
        ),
        (
            "folded",
            "folded-1@trunk.example.net",
            vec![
                (
                    "ringing",
                    ts(1_714_565_300, 0),
                    ringing("+79161234567", "alice", Some("alice")),
                ),
                (
                    "missed",
                    ts(1_714_565_330, 0),
                    missed(MissedReason::NoAnswer),
                ),
            ],
        ),
        (
            "unknown_method",
            "unknown-method-1",
            vec![
                (
                    "ringing",
                    ts(1_714_565_400, 0),
                    ringing("1001", "2001", Some("2001")),
                ),
                (
                    "answered",
                    ts(1_714_565_401, 0),
                    CallEventKind::Answered {
                        by_extension: Some("2001".into()),
                    },
                ),
                (
                    "transferred:21",
                    ts(1_714_565_410, 0),
                    CallEventKind::Transferred {
                        to_extension: "2002".into(),
                    },
                ),
                (
                    "hung_up",
                    ts(1_714_565_412, 500_000),
                    CallEventKind::HungUp {
                        duration_secs: Some(12),
                        cause: Some("Normal call clearing".into()),
                    },
                ),
            ],
        ),
    ]
}

fn check(name: &str, cid: &str, want: &[Step], got: &[CallUpdate]) {
    let mut got: Vec<&CallUpdate> = got.iter().collect();
    // The unknown method is checked on its own.
    if name == "unknown_method" {
        let unknown_at = got
            .iter()
            .position(|u| matches!(u.kind, InboundKind::Unknown { .. }))
            .unwrap();
        let u = got.remove(unknown_at);
        assert_eq!(u.external_id, "unknown-method-1:request:FOO:11");
        assert_eq!(
            u.kind,
            InboundKind::Unknown {
                description: "sip FOO request".into()
            }
        );
        assert_eq!(u.occurred_at, ts(1_714_565_405, 0));
        assert_eq!(unknown_at, 2, "between the answer and the transfer");
    }
    let got: Vec<(String, OffsetDateTime, InboundKind)> = got
        .iter()
        .map(|u| (u.external_id.clone(), u.occurred_at, u.kind.clone()))
        .collect();
    let want: Vec<(String, OffsetDateTime, InboundKind)> = want
        .iter()
        .map(|(step, at, kind)| (format!("{cid}:{step}"), *at, call(cid, kind.clone())))
        .collect();
    assert_eq!(got, want, "{name}");
}

#[test]
fn sessions_give_their_events() {
    for (name, cid, want) in expected() {
        let pkts = session_captures(name);
        check(name, cid, &want, &timeline(&pkts));
        check(name, cid, &want, &all_at_once(&pkts));
        check(name, cid, &want, &spread(&pkts, Duration::from_millis(5)));
    }
}

#[test]
fn raw_holds_the_key_fields_and_no_body() {
    let out = all_at_once(&session_captures("answered"));
    let raw = &out[0].raw;
    assert_eq!(raw["sip"]["method"], "INVITE");
    assert_eq!(raw["sip"]["call_id"], "3f2c9b0a71e4d5c8");
    assert_eq!(raw["sip"]["cseq"], "20741 INVITE");
    assert_eq!(
        raw["sip"]["from"],
        "\"Ivan Petrov\" <sip:89161234567@127.0.0.1>;tag=5e8a1f3c2b7d9e40"
    );
    assert_eq!(
        raw["hep"]["src"], "127.0.0.1:5090",
        "the earlier copy, as it entered the proxy"
    );
    assert_eq!(raw["hep"]["dst"], "127.0.0.1:5060");
    assert_eq!(raw["hep"]["capture_id"], 2001);
    assert_eq!(raw["hep"]["timestamp"], "2024-05-01T12:00:00.1Z");
    let text: String = out.iter().map(|u| u.raw.to_string()).collect();
    assert!(!text.contains("RTP/AVP"), "no SDP body in raw");
    assert_eq!(out[2].raw["derived"]["hung_up_by"], "caller");
    let compact = all_at_once(&session_captures("compact"));
    assert_eq!(compact[2].raw["derived"]["hung_up_by"], "callee");
}

/// Duplicated and shuffled delivery gives the same events, with no key twice.
#[test]
fn duplicates_and_reordering_do_not_change_the_events() {
    for name in SESSIONS {
        let pkts = session_captures(name);
        let reference = all_at_once(&pkts);
        let mut doubled = pkts.clone();
        doubled.extend(pkts.iter().cloned());
        for seed in 0..60 {
            let order = shuffled(&doubled, seed);
            let got = all_at_once(&order);
            assert_eq!(got, reference, "{name}, seed {seed}");
            // Within the window, arriving 5 ms apart in a random order changes nothing.
            let got = spread(&shuffled(&pkts, seed), Duration::from_millis(5));
            assert_eq!(got, reference, "{name}, spread, seed {seed}");
            let keys: HashSet<&str> = got.iter().map(|u| u.external_id.as_str()).collect();
            assert_eq!(keys.len(), got.len(), "{name}: a key twice");
        }
        let reversed: Vec<Captured> = doubled.iter().rev().cloned().collect();
        assert_eq!(all_at_once(&reversed), reference, "{name}, reversed");
    }
}

/// A copy that arrives long after the window cannot add a second terminal event.
#[test]
fn late_arrivals_add_nothing() {
    for name in SESSIONS {
        let pkts = session_captures(name);
        let mut tr = CallTracker::new(settings());
        let start = Instant::now();
        let mut out = Vec::new();
        for p in &pkts {
            tr.ingest(p.clone(), start, &mut out).unwrap();
        }
        tr.poll(start + WINDOW, &mut out);
        let first = out.len();
        // Every message again, one by one, a second apart, in reverse.
        let mut now = start + Duration::from_secs(1);
        for p in pkts.iter().rev() {
            tr.ingest(p.clone(), now, &mut out).unwrap();
            now += Duration::from_secs(1);
            tr.poll(now, &mut out);
        }
        assert_eq!(out.len(), first, "{name}: {:?}", &out[first..]);
    }
}

/// The BYE's 200 arriving long before the BYE (beyond the window) still gives a single
/// hangup: the 200 stands in for the BYE, and the BYE then changes nothing.
#[test]
fn a_lone_200_to_bye_ends_the_call_once() {
    let pkts = session_captures("answered");
    let (byes, rest): (Vec<Captured>, Vec<Captured>) = pkts
        .into_iter()
        .partition(|p| p.msg.cseq.method.as_str() == "BYE");
    let mut tr = CallTracker::new(settings());
    let start = Instant::now();
    let mut out = Vec::new();
    for p in rest {
        tr.ingest(p, start, &mut out).unwrap();
    }
    let (oks, requests): (Vec<Captured>, Vec<Captured>) =
        byes.into_iter().partition(|p| p.msg.status().is_some());
    for p in oks {
        tr.ingest(p, start, &mut out).unwrap();
    }
    tr.poll(start + Duration::from_secs(1), &mut out);
    for p in requests {
        tr.ingest(p, start + Duration::from_secs(2), &mut out)
            .unwrap();
    }
    tr.poll(start + Duration::from_secs(3), &mut out);
    let steps: Vec<&str> = out.iter().map(|u| u.external_id.as_str()).collect();
    assert_eq!(
        steps,
        [
            "3f2c9b0a71e4d5c8:ringing",
            "3f2c9b0a71e4d5c8:answered",
            "3f2c9b0a71e4d5c8:hung_up"
        ]
    );
    assert_eq!(
        out[2].kind,
        call(
            "3f2c9b0a71e4d5c8",
            CallEventKind::HungUp {
                duration_secs: Some(93),
                cause: None
            }
        )
    );
}

#[test]
fn real_kamailio_captures() {
    let want: [(&str, Vec<CallEventKind>); 3] = [
        (
            "answered",
            vec![
                ringing("1001", "2001", Some("2001")),
                CallEventKind::Answered {
                    by_extension: Some("2001".into()),
                },
                CallEventKind::HungUp {
                    duration_secs: Some(2),
                    cause: None,
                },
            ],
        ),
        (
            "cancelled",
            vec![
                ringing("1001", "2001", Some("2001")),
                missed(MissedReason::Cancelled),
            ],
        ),
        (
            "rejected",
            vec![
                ringing("1001", "2001", Some("2001")),
                missed(MissedReason::Busy),
            ],
        ),
    ];
    for (name, kinds) in want {
        let packets = load_captured(name);
        assert!(packets.len() >= 9, "{name}");
        let pkts: Vec<Captured> = packets.iter().map(|p| captured(p)).collect();
        let cid = pkts[0].msg.call_id.clone();
        for got in [timeline(&pkts), all_at_once(&shuffled(&pkts, 7))] {
            let got: Vec<InboundKind> = got.into_iter().map(|u| u.kind).collect();
            let want: Vec<InboundKind> = kinds.iter().map(|k| call(&cid, k.clone())).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}

/// Every fixture, cut at every byte, gives a result or an error and never panics.
#[test]
fn every_fixture_truncated_at_every_byte() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for name in SESSIONS {
        for p in load_session(name) {
            inputs.push(p.to_hep(Some(b"key")));
            inputs.push(p.sip);
        }
        let raw = std::fs::read(common::fixture(&format!("sessions/{name}.session"))).unwrap();
        inputs.push(raw);
    }
    for name in CAPTURED {
        let stream = std::fs::read(common::fixture(&format!("captured/{name}.hep"))).unwrap();
        inputs.extend(load_captured(name));
        inputs.push(stream);
    }
    let mut parsed_sip = 0;
    for input in &inputs {
        for end in 0..=input.len() {
            let cut = &input[..end];
            if let Ok(p) = parse_hep(cut) {
                if let Some(payload) = p.payload {
                    let _ = parse_sip(payload);
                }
            }
            if parse_sip(cut).is_ok() {
                parsed_sip += 1;
            }
        }
    }
    assert!(parsed_sip > 0);
}

/// Where rsip 0.4 reads a message and its headers, it agrees with our reader.
#[test]
fn agrees_with_rsip_where_rsip_works() {
    use rsip::prelude::*;

    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for name in SESSIONS {
        for (i, p) in load_session(name).into_iter().enumerate() {
            messages.push((format!("{name}#{i}"), p.sip));
        }
    }
    for name in CAPTURED {
        for (i, hep) in load_captured(name).into_iter().enumerate() {
            let payload = parse_hep(&hep).unwrap().payload.unwrap().to_vec();
            messages.push((format!("captured {name}#{i}"), payload));
        }
    }
    let mut compared = 0;
    let mut rsip_failed = Vec::new();
    for (label, bytes) in &messages {
        let ours = parse_sip(bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        let Ok(theirs) = rsip::SipMessage::try_from(bytes.as_slice()) else {
            rsip_failed.push(label.clone());
            continue;
        };
        let (Ok(call_id), Ok(cseq), Ok(from), Ok(to)) = (
            theirs.call_id_header(),
            theirs.cseq_header(),
            theirs.from_header(),
            theirs.to_header(),
        ) else {
            rsip_failed.push(label.clone());
            continue;
        };
        // The typed views parse on demand and can fail where the message parsed.
        let (Ok(seq), Ok(cseq_method), Ok(from_tag), Ok(to_tag)) =
            (cseq.seq(), cseq.method(), from.tag(), to.tag())
        else {
            rsip_failed.push(label.clone());
            continue;
        };
        assert_eq!(ours.call_id, call_id.value(), "{label}");
        assert_eq!(ours.cseq.seq, seq, "{label}");
        assert_eq!(
            ours.cseq.method.as_str(),
            cseq_method.to_string(),
            "{label}"
        );
        assert_eq!(
            ours.from.tag,
            from_tag.map(|t| t.value().to_owned()),
            "{label}"
        );
        assert_eq!(ours.to.tag, to_tag.map(|t| t.value().to_owned()), "{label}");
        match &theirs {
            rsip::SipMessage::Request(r) => {
                assert_eq!(
                    ours.method().unwrap().as_str(),
                    r.method().to_string(),
                    "{label}"
                )
            }
            rsip::SipMessage::Response(r) => {
                assert_eq!(ours.status().unwrap(), r.status_code().code(), "{label}")
            }
        }
        compared += 1;
    }
    // rsip reads all the Kamailio/baresip-shaped traffic; it fails exactly on the
    // hostile fixtures (compact headers, tel: URIs, folded headers, unknown methods).
    assert!(
        compared >= 60,
        "compared {compared}, rsip failed on {rsip_failed:?}"
    );
    for label in &rsip_failed {
        assert!(
            ["compact", "tel_uri", "folded", "unknown_method"]
                .iter()
                .any(|h| label.starts_with(h)),
            "rsip failed on a plain message: {label}"
        );
    }
    assert!(rsip_failed.iter().any(|l| l.starts_with("compact")));
    assert!(rsip_failed.iter().any(|l| l.starts_with("tel_uri")));
    assert!(rsip_failed.iter().any(|l| l.starts_with("folded")));
    assert!(rsip_failed.iter().any(|l| l.starts_with("unknown_method")));
}

#[test]
fn session_loader_shapes() {
    let a = load_session("answered");
    assert_eq!(a.len(), 13);
    assert!(a[0].sip.ends_with(b"a=sendrecv\r\n"));
    assert!(a[1].sip.ends_with(b"Content-Length: 0\r\n\r\n"));
    let f = load_session("folded");
    assert!(!f[0].sip.contains(&b'\r'));
    let p: &Packet = &load_session("rejected")[8];
    assert_eq!(p.src.to_string(), "127.0.0.1:5060");
}
