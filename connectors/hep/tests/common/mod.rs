//! Fixture loading shared by the integration tests.
//!
//! A `.session` file is a list of captured SIP messages in arrival order. Each starts
//! with a line `@ <unix seconds>.<micros> <src ip:port> > <dst ip:port> [lf]` and runs
//! to the next such line; lines are joined with CRLF (bare LF with the `lf` flag), a
//! message without a body gets its empty line added, and `#` lines before the first
//! message are comments.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use kommutator_hep::{parse_hep, HepPacket};

/// One captured message of a session.
#[derive(Debug, Clone)]
pub struct Packet {
    pub ts_sec: u32,
    pub ts_usec: u32,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub sip: Vec<u8>,
}

impl Packet {
    /// The message as Kamailio's siptrace would send it (chunks 1, 2, 3, 4, 7, 8, 9,
    /// 10, 11, 12, 15), plus an auth key chunk when given.
    pub fn to_hep(&self, auth_key: Option<&[u8]>) -> Vec<u8> {
        HepPacket {
            ip_family: Some(2),
            ip_proto: Some(17),
            src_ip: Some(self.src.ip()),
            dst_ip: Some(self.dst.ip()),
            src_port: Some(self.src.port()),
            dst_port: Some(self.dst.port()),
            ts_sec: Some(self.ts_sec),
            ts_usec: Some(self.ts_usec),
            proto_type: Some(1),
            capture_id: Some(2001),
            auth_key,
            payload: Some(&self.sip),
            ..HepPacket::default()
        }
        .encode()
        .unwrap()
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub const SESSIONS: [&str; 7] = [
    "answered",
    "cancelled",
    "rejected",
    "compact",
    "tel_uri",
    "folded",
    "unknown_method",
];

pub const CAPTURED: [&str; 3] = ["answered", "cancelled", "rejected"];

pub fn load_session(name: &str) -> Vec<Packet> {
    let text = std::fs::read_to_string(fixture(&format!("sessions/{name}.session"))).unwrap();
    let mut packets = Vec::new();
    let mut current: Option<(Packet, bool, Vec<&str>)> = None;
    let finish = |(mut p, lf, mut lines): (Packet, bool, Vec<&str>)| {
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let eol = if lf { "\n" } else { "\r\n" };
        let has_body = lines.iter().any(|l| l.is_empty());
        let mut sip = lines.join(eol);
        sip.push_str(eol);
        if !has_body {
            sip.push_str(eol);
        }
        p.sip = sip.into_bytes();
        p
    };
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("@ ") {
            if let Some(done) = current.take() {
                packets.push(finish(done));
            }
            let parts: Vec<&str> = head.split_whitespace().collect();
            let (sec, usec) = parts[0].split_once('.').unwrap();
            assert_eq!(parts[2], ">", "{line}");
            let packet = Packet {
                ts_sec: sec.parse().unwrap(),
                ts_usec: usec.parse().unwrap(),
                src: parts[1].parse().unwrap(),
                dst: parts[3].parse().unwrap(),
                sip: Vec::new(),
            };
            current = Some((packet, parts.get(4) == Some(&"lf"), Vec::new()));
        } else if let Some((_, _, lines)) = current.as_mut() {
            lines.push(line);
        } else {
            assert!(line.starts_with('#') || line.is_empty(), "{line}");
        }
    }
    packets.extend(current.map(finish));
    packets
}

/// The HEP packets of a captured stream (packets back to back, as on TCP).
pub fn load_captured(name: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixture(&format!("captured/{name}.hep"))).unwrap();
    let mut packets = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        packets.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    for p in &packets {
        parse_hep(p).unwrap();
    }
    packets
}

/// A deterministic shuffle (xorshift), so failures reproduce.
pub fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let j = usize::try_from(s % (i as u64 + 1)).unwrap();
        v.swap(i, j);
    }
    v
}
