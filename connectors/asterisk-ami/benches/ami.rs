//! Throughput of the AMI codec and the call tracker on a recorded stream.
//!
//! The stream is the unsolicited part (what follows `CoreShowChannelsComplete`) of every
//! call-session fixture in `tests/fixtures` (see its README), repeated [`COPIES`] times with
//! every `*Uniqueid` / `*Linkedid` value (channel, `Dest…`, `Transferee…`, bridge ids)
//! suffixed by the copy number, so each copy is a new set of calls. Bytes are fed to the
//! decoder in [`CHUNK`]-byte reads, as the session's reader does from the socket.
//!
//! - `ami/decode`: bytes → [`AmiFrame`]s;
//! - `ami/decode_track`: the same, each message then through [`CallTracker::handle_event`]
//!   (a fresh tracker per iteration, so every call is new to it).
//!
//! Throughput is in AMI messages (`Throughput::Elements`). Run with
//! `cargo bench -p kommutator-asterisk-ami --bench ami`.

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use kommutator_asterisk_ami::codec::{AmiCodec, AmiFrame, BytesMut, Decoder};
use kommutator_asterisk_ami::numbers::NumberPlan;
use kommutator_asterisk_ami::tracker::{CallTracker, OffsetDateTime, TrackerConfig};

/// The call sessions of `tests/fixtures/README.md`.
const CALL_FIXTURES: [&str; 10] = [
    "inbound_answered",
    "missed_cancelled",
    "missed_busy",
    "queue_call",
    "queue_abandoned",
    "blind_transfer",
    "attended_transfer",
    "click_to_call_ok",
    "click_to_call_failed",
    "lf_only_outbound",
];

/// How many times the fixtures are repeated in the stream.
const COPIES: usize = 200;

/// Bytes per socket read (the session's read buffer starts at 16 KiB).
const CHUNK: usize = 16 * 1024;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What follows the login and the empty resync list of a session fixture.
fn events_of(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.ami", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture readable");
    let complete = find(&bytes, b"Event: CoreShowChannelsComplete").expect("resync list end");
    let rest = &bytes[complete..];
    let end = match (find(rest, b"\r\n\r\n"), find(rest, b"\n\n")) {
        (Some(crlf), Some(lf)) if lf < crlf => lf + 2,
        (Some(crlf), _) => crlf + 4,
        (None, Some(lf)) => lf + 2,
        (None, None) => panic!("{name}: no message after CoreShowChannelsComplete"),
    };
    rest[end..].to_vec()
}

/// `events` with every channel and bridge id made unique to `copy`.
fn rewrite_ids(events: &[u8], copy: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() + 1024);
    for line in events.split_inclusive(|&b| b == b'\n') {
        let content_len = line.len()
            - line
                .iter()
                .rev()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
        let (content, eol) = line.split_at(content_len);
        let is_id = find(content, b": ").is_some_and(|colon| {
            let key = &content[..colon];
            (key.ends_with(b"Uniqueid") || key.ends_with(b"Linkedid")) && colon + 2 < content.len()
        });
        out.extend_from_slice(content);
        if is_id {
            out.extend_from_slice(format!("-{copy}").as_bytes());
        }
        out.extend_from_slice(eol);
    }
    out
}

fn build_stream() -> Vec<u8> {
    let events: Vec<Vec<u8>> = CALL_FIXTURES.iter().map(|n| events_of(n)).collect();
    let mut stream = Vec::new();
    for copy in 0..COPIES {
        for e in &events {
            stream.extend_from_slice(&rewrite_ids(e, copy));
        }
    }
    stream
}

fn tracker_config() -> TrackerConfig {
    TrackerConfig {
        plan: NumberPlan {
            country_code: Some("7".to_owned()),
            extension_max_len: 4,
            internal_contexts: vec![],
        },
        recording_base_url: Some("https://pbx.example/rec/".to_owned()),
        recording_path_prefix: "/var/spool/asterisk/monitor/".to_owned(),
    }
}

/// Decodes `stream` fed in `CHUNK`-byte reads; `each` gets every message.
fn decode_stream(stream: &[u8], mut each: impl FnMut(AmiFrame)) {
    let mut codec = AmiCodec::without_banner();
    let mut buf = BytesMut::with_capacity(CHUNK);
    for chunk in stream.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).expect("valid AMI") {
            each(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("valid AMI") {
        each(frame);
    }
}

/// Decode + track; returns (messages, call updates).
fn decode_and_track(stream: &[u8], now: OffsetDateTime) -> (u64, u64) {
    let mut tracker = CallTracker::new(tracker_config());
    let (mut messages, mut updates) = (0u64, 0u64);
    decode_stream(stream, |frame| {
        if let AmiFrame::Message(msg) = frame {
            messages += 1;
            let out = tracker.handle_event(&msg, now);
            updates += out.len() as u64;
            black_box(out);
        }
    });
    (messages, updates)
}

fn bench(c: &mut Criterion) {
    let stream = build_stream();
    let now = OffsetDateTime::now_utc();

    // Sanity: every frame is a message, and every copy yields the same number of call
    // events with distinct ids (so the copies really are distinct calls).
    let mut messages = 0u64;
    decode_stream(&stream, |frame| {
        assert!(matches!(frame, AmiFrame::Message(_)), "{frame:?}");
        messages += 1;
    });
    let one_copy: Vec<u8> = CALL_FIXTURES
        .iter()
        .flat_map(|n| rewrite_ids(&events_of(n), 0))
        .collect();
    let (_, per_copy) = decode_and_track(&one_copy, now);
    let mut tracker = CallTracker::new(tracker_config());
    let mut ids = HashSet::new();
    let mut calls = HashSet::new();
    decode_stream(&stream, |frame| {
        if let AmiFrame::Message(msg) = frame {
            for u in tracker.handle_event(&msg, now) {
                let call = u
                    .external_id
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                calls.insert(call);
                assert!(ids.insert(u.external_id), "duplicate call event id");
            }
        }
    });
    assert!(per_copy > 0);
    assert_eq!(ids.len() as u64, per_copy * COPIES as u64);
    eprintln!(
        "ami stream: {} bytes, {messages} messages, {} calls, {} call events ({COPIES} copies of {} fixtures)",
        stream.len(),
        calls.len(),
        ids.len(),
        CALL_FIXTURES.len()
    );

    let mut group = c.benchmark_group("ami");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(messages));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0u64;
            decode_stream(black_box(&stream), |frame| {
                n += 1;
                black_box(frame);
            });
            n
        });
    });
    group.bench_function("decode_track", |b| {
        b.iter(|| decode_and_track(black_box(&stream), now));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Each iteration runs the whole stream (tens of ms): fewer, longer samples.
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
