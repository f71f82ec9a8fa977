//! Throughput of the HEP collector's pure path: HEPv3 + SIP parsing, and parsing plus
//! call-state derivation ([`CallTracker`]).
//!
//! The input is a list of HEP datagrams: the real Kamailio captures
//! (`tests/fixtures/captured/*.hep`) and the SIP sessions (`tests/fixtures/sessions`,
//! encoded as Kamailio's siptrace would, see `tests/common/mod.rs`), repeated [`COPIES`]
//! times with each Call-ID prefixed by the copy number, so every copy is a new set of
//! calls. Packets keep their arrival order within a fixture.
//!
//! - `hep/parse`: [`parse_hep`] then [`parse_sip`] of the payload, per packet;
//! - `hep/parse_track`: what the collector does per datagram: parse, build the
//!   [`Captured`], [`CallTracker::ingest`], [`CallTracker::poll`]; a fresh tracker per
//!   iteration (default settings: 200 ms reorder window, 10 000 calls), packets arriving
//!   [`GAP`] apart on a simulated clock, and a last poll past the window.
//!
//! Throughput is in HEP packets (`Throughput::Elements`). Run with
//! `cargo bench -p kommutator-hep --bench hep`.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use kommutator_hep::{
    parse_hep, parse_sip, CallTracker, CallUpdate, Captured, HepPacket, NumberRules,
    TrackerSettings,
};

const SESSIONS: [&str; 7] = [
    "answered",
    "cancelled",
    "rejected",
    "compact",
    "tel_uri",
    "folded",
    "unknown_method",
];

const CAPTURED: [&str; 3] = ["answered", "cancelled", "rejected"];

/// How many times the fixtures are repeated.
const COPIES: usize = 200;

/// Simulated time between two packets: 1000 packets/s offered, so the 200 ms reorder
/// window holds about 200 messages, as on a busy proxy.
const GAP: Duration = Duration::from_millis(1);

const WINDOW: Duration = Duration::from_millis(200);

fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The HEP packets of a captured stream (back to back, each carrying its length).
fn load_captured(name: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixture(&format!("captured/{name}.hep"))).expect("fixture");
    let mut packets = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 6 {
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        assert!(len >= 6 && len <= rest.len(), "{name}: bad HEP length");
        packets.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    packets
}

/// A `.session` file as HEP packets; the loader of `tests/common/mod.rs`.
fn load_session(name: &str) -> Vec<Vec<u8>> {
    let text =
        std::fs::read_to_string(fixture(&format!("sessions/{name}.session"))).expect("fixture");
    struct Msg<'a> {
        ts_sec: u32,
        ts_usec: u32,
        src: SocketAddr,
        dst: SocketAddr,
        lf: bool,
        lines: Vec<&'a str>,
    }
    let to_hep = |mut m: Msg<'_>| {
        while m.lines.last().is_some_and(|l| l.is_empty()) {
            m.lines.pop();
        }
        let eol = if m.lf { "\n" } else { "\r\n" };
        let has_body = m.lines.iter().any(|l| l.is_empty());
        let mut sip = m.lines.join(eol);
        sip.push_str(eol);
        if !has_body {
            sip.push_str(eol);
        }
        HepPacket {
            ip_family: Some(2),
            ip_proto: Some(17),
            src_ip: Some(m.src.ip()),
            dst_ip: Some(m.dst.ip()),
            src_port: Some(m.src.port()),
            dst_port: Some(m.dst.port()),
            ts_sec: Some(m.ts_sec),
            ts_usec: Some(m.ts_usec),
            proto_type: Some(1),
            capture_id: Some(2001),
            payload: Some(sip.as_bytes()),
            ..HepPacket::default()
        }
        .encode()
        .expect("encodable")
    };
    let mut packets = Vec::new();
    let mut current: Option<Msg<'_>> = None;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("@ ") {
            packets.extend(current.take().map(to_hep));
            let parts: Vec<&str> = head.split_whitespace().collect();
            let (sec, usec) = parts[0].split_once('.').expect("timestamp");
            current = Some(Msg {
                ts_sec: sec.parse().expect("seconds"),
                ts_usec: usec.parse().expect("micros"),
                src: parts[1].parse().expect("src"),
                dst: parts[3].parse().expect("dst"),
                lf: parts.get(4) == Some(&"lf"),
                lines: Vec::new(),
            });
        } else if let Some(m) = current.as_mut() {
            m.lines.push(line);
        }
    }
    packets.extend(current.map(to_hep));
    packets
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + to.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// `hep` with its Call-ID (wherever it appears in the SIP, e.g. `Replaces`) prefixed by
/// `copy`.
fn rewrite_call_id(hep: &[u8], copy: usize) -> Vec<u8> {
    let pkt = parse_hep(hep).expect("valid HEP");
    let payload = pkt.payload.expect("payload");
    let call_id = parse_sip(payload).expect("valid SIP").call_id;
    let new_id = format!("c{copy}-{call_id}");
    let sip = replace_all(payload, call_id.as_bytes(), new_id.as_bytes());
    let out = HepPacket {
        payload: Some(&sip),
        ..pkt
    }
    .encode()
    .expect("encodable");
    let check = parse_hep(&out).expect("valid HEP");
    let msg = parse_sip(check.payload.expect("payload")).expect("valid SIP");
    assert_eq!(msg.call_id, new_id);
    out
}

fn build_packets() -> Vec<Vec<u8>> {
    let mut base: Vec<Vec<Vec<u8>>> = CAPTURED.iter().map(|n| load_captured(n)).collect();
    base.extend(SESSIONS.iter().map(|n| load_session(n)));
    let mut packets = Vec::new();
    for copy in 0..COPIES {
        for fixture in &base {
            packets.extend(fixture.iter().map(|p| rewrite_call_id(p, copy)));
        }
    }
    packets
}

fn settings() -> TrackerSettings {
    TrackerSettings {
        rules: NumberRules {
            country_code: "7".into(),
            national_prefix: "8".into(),
            extension_max_len: 4,
            internal_domains: vec!["pbx.example.com".into()],
        },
        reorder_window: WINDOW,
        idle_timeout: Duration::from_secs(7200),
        max_calls: 10_000,
    }
}

fn parse(hep: &[u8]) -> Captured {
    let p = parse_hep(hep).expect("valid HEP");
    let msg = parse_sip(p.payload.expect("payload")).expect("valid SIP");
    Captured {
        msg,
        ts: p.timestamp().expect("timestamp"),
        src: p.src(),
        dst: p.dst(),
        capture_id: p.capture_id,
        correlation_id: None,
    }
}

/// Parse + track, as the collector's loop does per datagram.
fn parse_and_track(packets: &[Vec<u8>], start: Instant, out: &mut Vec<CallUpdate>) {
    let mut tracker = CallTracker::new(settings());
    let mut now = start;
    for hep in packets {
        let captured = parse(hep);
        // Unusable Call-IDs are counted and skipped by the collector; none here.
        let _ = tracker.ingest(captured, now, out);
        tracker.poll(now, out);
        now += GAP;
    }
    tracker.poll(now + WINDOW, out);
}

fn bench(c: &mut Criterion) {
    let packets = build_packets();
    let start = Instant::now();

    // Sanity: every copy gives the same events, under distinct ids.
    let per_copy = packets.len() / COPIES;
    let mut out = Vec::new();
    parse_and_track(&packets[..per_copy], start, &mut out);
    let events_per_copy = out.len();
    out.clear();
    parse_and_track(&packets, start, &mut out);
    let ids: HashSet<&str> = out.iter().map(|u| u.external_id.as_str()).collect();
    let calls: HashSet<String> = packets.iter().map(|p| parse(p).msg.call_id).collect();
    assert!(events_per_copy > 0);
    assert_eq!(out.len(), events_per_copy * COPIES);
    assert_eq!(ids.len(), out.len(), "duplicate event ids across copies");
    eprintln!(
        "hep input: {} packets ({} bytes), {} calls, {} call events ({COPIES} copies of {} captures + {} sessions)",
        packets.len(),
        packets.iter().map(Vec::len).sum::<usize>(),
        calls.len(),
        out.len(),
        CAPTURED.len(),
        SESSIONS.len()
    );

    let mut group = c.benchmark_group("hep");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(packets.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for hep in black_box(&packets) {
                let p = parse_hep(hep).expect("valid HEP");
                let msg = parse_sip(p.payload.expect("payload")).expect("valid SIP");
                black_box((p, msg));
            }
        });
    });
    group.bench_function("parse_track", |b| {
        let mut out = Vec::with_capacity(out.len());
        b.iter(|| {
            out.clear();
            parse_and_track(black_box(&packets), start, &mut out);
            out.len()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Each iteration runs the whole input (tens of ms): fewer, longer samples.
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
