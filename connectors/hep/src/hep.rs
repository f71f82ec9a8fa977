//! HEPv3 (EEP v3) framing: [`parse_hep`] reads one packet, [`hep_frame_len`] splits a TCP
//! stream, [`HepPacket::encode`] writes one (for tests and tools).
//!
//! Wire format (sipcapture HEP3 spec rev. 37): the id `HEP3` (or `EEP3`), a `u16` total
//! length including this 6-byte header, then chunks of
//! `vendor_id u16 | type_id u16 | length u16 (including these 6 bytes) | value`, all in
//! network byte order. Only vendor 0 (generic) chunks are interpreted; the rest are
//! skipped by their length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use time::OffsetDateTime;

/// Length of the packet header: the 4-byte id and the `u16` total length.
pub const HEP_HEADER_LEN: usize = 6;
/// Length of a chunk header: vendor, type and length, `u16` each.
const CHUNK_HEADER_LEN: usize = 6;
/// HEP protocol type (chunk 0x0b) of a raw SIP payload.
pub const PROTO_SIP: u8 = 1;

/// Generic chunk type ids (vendor 0).
mod chunk {
    pub const IP_FAMILY: u16 = 0x01;
    pub const IP_PROTO: u16 = 0x02;
    pub const IPV4_SRC: u16 = 0x03;
    pub const IPV4_DST: u16 = 0x04;
    pub const IPV6_SRC: u16 = 0x05;
    pub const IPV6_DST: u16 = 0x06;
    pub const SRC_PORT: u16 = 0x07;
    pub const DST_PORT: u16 = 0x08;
    pub const TS_SEC: u16 = 0x09;
    pub const TS_USEC: u16 = 0x0a;
    pub const PROTO_TYPE: u16 = 0x0b;
    pub const CAPTURE_ID: u16 = 0x0c;
    pub const AUTH_KEY: u16 = 0x0e;
    pub const PAYLOAD: u16 = 0x0f;
    pub const COMPRESSED_PAYLOAD: u16 = 0x10;
    pub const CORRELATION_ID: u16 = 0x11;
    pub const CAPTURE_AGENT_NAME: u16 = 0x13;
}

/// One HEPv3 packet, borrowing its variable-length values from the input.
///
/// Every field is optional on the wire; the collector needs `payload` and uses the rest
/// for audit and ordering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HepPacket<'a> {
    /// Chunk 0x01: address family as the sender states it (2 = IPv4, 10 = IPv6 on Linux).
    pub ip_family: Option<u8>,
    /// Chunk 0x02: IP protocol of the captured packet (17 UDP, 6 TCP).
    pub ip_proto: Option<u8>,
    /// Chunks 0x03/0x05: source address of the captured packet.
    pub src_ip: Option<IpAddr>,
    /// Chunks 0x04/0x06: destination address.
    pub dst_ip: Option<IpAddr>,
    /// Chunk 0x07: source port.
    pub src_port: Option<u16>,
    /// Chunk 0x08: destination port.
    pub dst_port: Option<u16>,
    /// Chunk 0x09: capture time, seconds since the Unix epoch.
    pub ts_sec: Option<u32>,
    /// Chunk 0x0a: microseconds of the capture time.
    pub ts_usec: Option<u32>,
    /// Chunk 0x0b: payload protocol ([`PROTO_SIP`] for raw SIP).
    pub proto_type: Option<u8>,
    /// Chunk 0x0c: capture agent id (Kamailio's `hep_capture_id`).
    pub capture_id: Option<u32>,
    /// Chunk 0x0e: the shared secret of the capture agent, if it sends one.
    pub auth_key: Option<&'a [u8]>,
    /// Chunk 0x0f: the captured payload (the SIP message).
    pub payload: Option<&'a [u8]>,
    /// Chunk 0x10: a compressed payload (not decoded by this crate).
    pub compressed_payload: Option<&'a [u8]>,
    /// Chunk 0x11: correlation id (e.g. Asterisk's `uuid_type`).
    pub correlation_id: Option<&'a [u8]>,
    /// Chunk 0x13: capture agent name.
    pub capture_agent_name: Option<&'a [u8]>,
}

impl HepPacket<'_> {
    /// Source address and port, when both chunks are present.
    pub fn src(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.src_ip?, self.src_port?))
    }

    /// Destination address and port, when both chunks are present.
    pub fn dst(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.dst_ip?, self.dst_port?))
    }

    /// The capture time from chunks 0x09 and 0x0a (microseconds default to 0 and are
    /// capped below one second), if the seconds chunk is present.
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        let secs = OffsetDateTime::from_unix_timestamp(i64::from(self.ts_sec?)).ok()?;
        let usec = self.ts_usec.unwrap_or(0).min(999_999);
        Some(secs + time::Duration::microseconds(i64::from(usec)))
    }

    /// Writes the packet in HEPv3 framing, chunks in type order, all with vendor 0.
    ///
    /// # Errors
    ///
    /// [`HepError::TooLarge`] when the packet or one chunk would exceed 65535 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, HepError> {
        let mut out = Vec::with_capacity(128 + self.payload.map_or(0, <[u8]>::len));
        out.extend_from_slice(b"HEP3");
        out.extend_from_slice(&[0, 0]);
        let ip_chunk = |v4: u16, v6: u16, ip: IpAddr| match ip {
            IpAddr::V4(a) => (v4, a.octets().to_vec()),
            IpAddr::V6(a) => (v6, a.octets().to_vec()),
        };
        let mut chunks: Vec<(u16, Vec<u8>)> = Vec::new();
        if let Some(v) = self.ip_family {
            chunks.push((chunk::IP_FAMILY, vec![v]));
        }
        if let Some(v) = self.ip_proto {
            chunks.push((chunk::IP_PROTO, vec![v]));
        }
        if let Some(ip) = self.src_ip {
            chunks.push(ip_chunk(chunk::IPV4_SRC, chunk::IPV6_SRC, ip));
        }
        if let Some(ip) = self.dst_ip {
            chunks.push(ip_chunk(chunk::IPV4_DST, chunk::IPV6_DST, ip));
        }
        if let Some(v) = self.src_port {
            chunks.push((chunk::SRC_PORT, v.to_be_bytes().to_vec()));
        }
        if let Some(v) = self.dst_port {
            chunks.push((chunk::DST_PORT, v.to_be_bytes().to_vec()));
        }
        if let Some(v) = self.ts_sec {
            chunks.push((chunk::TS_SEC, v.to_be_bytes().to_vec()));
        }
        if let Some(v) = self.ts_usec {
            chunks.push((chunk::TS_USEC, v.to_be_bytes().to_vec()));
        }
        if let Some(v) = self.proto_type {
            chunks.push((chunk::PROTO_TYPE, vec![v]));
        }
        if let Some(v) = self.capture_id {
            chunks.push((chunk::CAPTURE_ID, v.to_be_bytes().to_vec()));
        }
        for (ty, value) in [
            (chunk::AUTH_KEY, self.auth_key),
            (chunk::PAYLOAD, self.payload),
            (chunk::COMPRESSED_PAYLOAD, self.compressed_payload),
            (chunk::CORRELATION_ID, self.correlation_id),
            (chunk::CAPTURE_AGENT_NAME, self.capture_agent_name),
        ] {
            if let Some(v) = value {
                chunks.push((ty, v.to_vec()));
            }
        }
        for (ty, value) in chunks {
            let len =
                u16::try_from(value.len() + CHUNK_HEADER_LEN).map_err(|_| HepError::TooLarge {
                    len: value.len() + CHUNK_HEADER_LEN,
                })?;
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&ty.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&value);
        }
        let total = u16::try_from(out.len()).map_err(|_| HepError::TooLarge { len: out.len() })?;
        if let Some(len_field) = out.get_mut(4..HEP_HEADER_LEN) {
            len_field.copy_from_slice(&total.to_be_bytes());
        }
        Ok(out)
    }
}

/// Why bytes are not a HEPv3 packet. Messages name the offset and the chunk, never the
/// content (which may hold phone numbers or the auth key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HepError {
    /// Fewer bytes than the 6-byte header.
    #[error("packet is {len} bytes, shorter than the 6-byte HEP header")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// A HEPv1/v2 packet (first byte 1 or 2); Kamailio's `siptrace` sends these unless
    /// `hep_version` is 3.
    #[error("HEPv{version} packet: only HEPv3 is supported (set the sender's hep_version to 3)")]
    OldVersion {
        /// The version byte.
        version: u8,
    },
    /// The first 4 bytes are neither `HEP3` nor `EEP3`.
    #[error("not a HEPv3 packet: starts with {found:02x?}")]
    BadMagic {
        /// The first 4 bytes.
        found: [u8; 4],
    },
    /// The header's total length is below 6 or disagrees with the bytes received.
    #[error("header declares a total length of {declared} bytes, received {actual}")]
    LengthMismatch {
        /// The header's total length.
        declared: usize,
        /// Bytes received.
        actual: usize,
    },
    /// A chunk header or value runs past the end of the packet, or declares a length
    /// below its own 6-byte header.
    #[error("chunk at offset {offset} is truncated or declares a bad length {length}")]
    BadChunk {
        /// Offset of the chunk in the packet.
        offset: usize,
        /// The chunk's declared length (0 when its header itself is cut).
        length: usize,
    },
    /// A fixed-size chunk has the wrong size.
    #[error("{chunk} chunk is {got} bytes, expected {expected}")]
    BadChunkSize {
        /// The chunk's name.
        chunk: &'static str,
        /// The value size(s) the spec allows.
        expected: &'static str,
        /// The value size received.
        got: usize,
    },
    /// The same generic chunk appears twice.
    #[error("duplicate {chunk} chunk")]
    DuplicateChunk {
        /// The chunk's name.
        chunk: &'static str,
    },
    /// Encoding only: the packet would not fit the `u16` length fields.
    #[error("packet of {len} bytes exceeds the HEP limit of 65535")]
    TooLarge {
        /// The size it would have.
        len: usize,
    },
}

/// Checks the 6-byte header of a packet and returns its total length (header included),
/// for reading HEP from a stream: read 6 bytes, then `total - 6` more.
///
/// Pure: no I/O, no panic.
///
/// # Errors
///
/// [`HepError::OldVersion`], [`HepError::BadMagic`] or [`HepError::LengthMismatch`]
/// (declared length below 6): the stream has lost its framing.
pub fn hep_frame_len(header: &[u8; HEP_HEADER_LEN]) -> Result<usize, HepError> {
    let [m0, m1, m2, m3, l0, l1] = *header;
    check_magic([m0, m1, m2, m3])?;
    let declared = usize::from(u16::from_be_bytes([l0, l1]));
    if declared < HEP_HEADER_LEN {
        return Err(HepError::LengthMismatch {
            declared,
            actual: HEP_HEADER_LEN,
        });
    }
    Ok(declared)
}

fn check_magic(magic: [u8; 4]) -> Result<(), HepError> {
    match &magic {
        b"HEP3" | b"EEP3" => Ok(()),
        [v @ (1 | 2), ..] => Err(HepError::OldVersion { version: *v }),
        _ => Err(HepError::BadMagic { found: magic }),
    }
}

/// Parses one HEPv3 packet (a whole UDP datagram, or one frame cut from a TCP stream by
/// [`hep_frame_len`]).
///
/// Pure: no I/O, no panic on any input. The length is bounded by the `u16` header field,
/// so a packet is at most 65535 bytes.
///
/// # Errors
///
/// A [`HepError`] naming what is wrong: too short, not HEPv3, a total length that does
/// not match the bytes received (truncated or trailing garbage), a chunk that is cut or
/// has a bad length, a fixed-size chunk of the wrong size, or a duplicate chunk.
pub fn parse_hep(data: &[u8]) -> Result<HepPacket<'_>, HepError> {
    let Some((&header, mut rest)) = data.split_first_chunk::<HEP_HEADER_LEN>() else {
        return Err(HepError::TooShort { len: data.len() });
    };
    let declared = hep_frame_len(&header)?;
    if declared != data.len() {
        return Err(HepError::LengthMismatch {
            declared,
            actual: data.len(),
        });
    }
    let mut packet = HepPacket::default();
    let mut offset = HEP_HEADER_LEN;
    while !rest.is_empty() {
        let Some((&chunk_header, after)) = rest.split_first_chunk::<CHUNK_HEADER_LEN>() else {
            return Err(HepError::BadChunk { offset, length: 0 });
        };
        let [v0, v1, t0, t1, l0, l1] = chunk_header;
        let vendor = u16::from_be_bytes([v0, v1]);
        let ty = u16::from_be_bytes([t0, t1]);
        let length = usize::from(u16::from_be_bytes([l0, l1]));
        let value_len = length
            .checked_sub(CHUNK_HEADER_LEN)
            .ok_or(HepError::BadChunk { offset, length })?;
        let Some((value, next)) = after.split_at_checked(value_len) else {
            return Err(HepError::BadChunk { offset, length });
        };
        if vendor == 0 {
            apply_chunk(&mut packet, ty, value)?;
        }
        rest = next;
        offset += length;
    }
    Ok(packet)
}

fn set_once<T>(slot: &mut Option<T>, value: T, chunk: &'static str) -> Result<(), HepError> {
    if slot.is_some() {
        return Err(HepError::DuplicateChunk { chunk });
    }
    *slot = Some(value);
    Ok(())
}

fn fixed<const N: usize>(
    value: &[u8],
    chunk: &'static str,
    expected: &'static str,
) -> Result<[u8; N], HepError> {
    <[u8; N]>::try_from(value).map_err(|_| HepError::BadChunkSize {
        chunk,
        expected,
        got: value.len(),
    })
}

fn apply_chunk<'a>(p: &mut HepPacket<'a>, ty: u16, value: &'a [u8]) -> Result<(), HepError> {
    match ty {
        chunk::IP_FAMILY => {
            let [v] = fixed::<1>(value, "ip family", "1")?;
            set_once(&mut p.ip_family, v, "ip family")
        }
        chunk::IP_PROTO => {
            let [v] = fixed::<1>(value, "ip protocol", "1")?;
            set_once(&mut p.ip_proto, v, "ip protocol")
        }
        chunk::IPV4_SRC | chunk::IPV4_DST => {
            let octets = fixed::<4>(value, "ipv4 address", "4")?;
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            if ty == chunk::IPV4_SRC {
                set_once(&mut p.src_ip, ip, "source address")
            } else {
                set_once(&mut p.dst_ip, ip, "destination address")
            }
        }
        chunk::IPV6_SRC | chunk::IPV6_DST => {
            let octets = fixed::<16>(value, "ipv6 address", "16")?;
            let ip = IpAddr::V6(Ipv6Addr::from(octets));
            if ty == chunk::IPV6_SRC {
                set_once(&mut p.src_ip, ip, "source address")
            } else {
                set_once(&mut p.dst_ip, ip, "destination address")
            }
        }
        chunk::SRC_PORT => {
            let v = u16::from_be_bytes(fixed(value, "source port", "2")?);
            set_once(&mut p.src_port, v, "source port")
        }
        chunk::DST_PORT => {
            let v = u16::from_be_bytes(fixed(value, "destination port", "2")?);
            set_once(&mut p.dst_port, v, "destination port")
        }
        chunk::TS_SEC => {
            let v = u32::from_be_bytes(fixed(value, "timestamp seconds", "4")?);
            set_once(&mut p.ts_sec, v, "timestamp seconds")
        }
        chunk::TS_USEC => {
            let v = u32::from_be_bytes(fixed(value, "timestamp microseconds", "4")?);
            set_once(&mut p.ts_usec, v, "timestamp microseconds")
        }
        chunk::PROTO_TYPE => {
            let [v] = fixed::<1>(value, "protocol type", "1")?;
            set_once(&mut p.proto_type, v, "protocol type")
        }
        chunk::CAPTURE_ID => {
            // Some agents send the id as u16; the spec says u32.
            let v = match value {
                [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
                _ => u32::from_be_bytes(fixed(value, "capture id", "2 or 4")?),
            };
            set_once(&mut p.capture_id, v, "capture id")
        }
        chunk::AUTH_KEY => set_once(&mut p.auth_key, value, "auth key"),
        chunk::PAYLOAD => set_once(&mut p.payload, value, "payload"),
        chunk::COMPRESSED_PAYLOAD => {
            set_once(&mut p.compressed_payload, value, "compressed payload")
        }
        chunk::CORRELATION_ID => set_once(&mut p.correlation_id, value, "correlation id"),
        chunk::CAPTURE_AGENT_NAME => {
            set_once(&mut p.capture_agent_name, value, "capture agent name")
        }
        // Keepalive, VLAN, MOS, tags, …: known to the spec, of no use here.
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> HepPacket<'static> {
        HepPacket {
            ip_family: Some(2),
            ip_proto: Some(17),
            src_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
            dst_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            src_port: Some(5090),
            dst_port: Some(5060),
            ts_sec: Some(1_714_564_800),
            ts_usec: Some(250_000),
            proto_type: Some(PROTO_SIP),
            capture_id: Some(2001),
            auth_key: Some(b"secret"),
            payload: Some(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            compressed_payload: None,
            correlation_id: Some(b"corr-1"),
            capture_agent_name: Some(b"kam1"),
        }
    }

    fn chunk_bytes(vendor: u16, ty: u16, value: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&vendor.to_be_bytes());
        c.extend_from_slice(&ty.to_be_bytes());
        c.extend_from_slice(&u16::try_from(value.len() + 6).unwrap().to_be_bytes());
        c.extend_from_slice(value);
        c
    }

    fn packet_of(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut p = b"HEP3".to_vec();
        p.extend_from_slice(&u16::try_from(body.len() + 6).unwrap().to_be_bytes());
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let bytes = p.encode().unwrap();
        assert_eq!(parse_hep(&bytes).unwrap(), p);
        assert_eq!(p.src().unwrap().to_string(), "127.0.0.1:5090");
        assert_eq!(p.dst().unwrap().to_string(), "127.0.0.2:5060");
        assert_eq!(
            p.timestamp().unwrap(),
            time::macros::datetime!(2024-05-01 12:00:00.25 UTC)
        );
        let framed: [u8; 6] = bytes[..6].try_into().unwrap();
        assert_eq!(hep_frame_len(&framed).unwrap(), bytes.len());
    }

    #[test]
    fn ipv6_and_eep3_and_u16_capture_id() {
        let mut bytes = packet_of(&[
            chunk_bytes(0, 0x05, &Ipv6Addr::LOCALHOST.octets()),
            chunk_bytes(0, 0x06, &Ipv6Addr::LOCALHOST.octets()),
            chunk_bytes(0, 0x0c, &7u16.to_be_bytes()),
            chunk_bytes(0, 0x0f, b"x"),
        ]);
        bytes[..4].copy_from_slice(b"EEP3");
        let p = parse_hep(&bytes).unwrap();
        assert_eq!(p.src_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(p.capture_id, Some(7));
        assert_eq!(p.payload, Some(&b"x"[..]));
        assert_eq!(p.src(), None, "no port chunk");
        assert_eq!(p.timestamp(), None);
    }

    #[test]
    fn skips_vendor_and_unknown_chunks() {
        let bytes = packet_of(&[
            chunk_bytes(2, 0x0f, b"kamailio-specific"),
            chunk_bytes(0, 0x0d, &[0, 1]),
            chunk_bytes(0, 0x7777, b"future"),
            chunk_bytes(0, 0x0f, b"sip"),
        ]);
        assert_eq!(parse_hep(&bytes).unwrap().payload, Some(&b"sip"[..]));
    }

    #[test]
    fn usec_is_capped() {
        let p = HepPacket {
            ts_sec: Some(10),
            ts_usec: Some(5_000_000),
            ..HepPacket::default()
        };
        assert_eq!(
            p.timestamp().unwrap(),
            OffsetDateTime::from_unix_timestamp(10).unwrap()
                + time::Duration::microseconds(999_999)
        );
    }

    #[test]
    fn bad_input_errors() {
        let good = sample().encode().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut bad_len_field = good.clone();
        bad_len_field[4..6].copy_from_slice(&3u16.to_be_bytes());
        let n = good.len();
        let cases: Vec<(Vec<u8>, String)> = vec![
            (
                vec![],
                "packet is 0 bytes, shorter than the 6-byte HEP header".into(),
            ),
            (
                b"HEP3".to_vec(),
                "packet is 4 bytes, shorter than the 6-byte HEP header".into(),
            ),
            (
                b"HEP2\x00\x06".to_vec(),
                "not a HEPv3 packet: starts with [48, 45, 50, 32]".into(),
            ),
            (
                vec![1, 16, 2, 17, 0, 0],
                "HEPv1 packet: only HEPv3 is supported (set the sender's hep_version to 3)".into(),
            ),
            (
                vec![2, 16, 2, 17, 0, 0],
                "HEPv2 packet: only HEPv3 is supported (set the sender's hep_version to 3)".into(),
            ),
            (
                good[..n - 1].to_vec(),
                format!(
                    "header declares a total length of {n} bytes, received {}",
                    n - 1
                ),
            ),
            (
                trailing,
                format!(
                    "header declares a total length of {n} bytes, received {}",
                    n + 1
                ),
            ),
            (
                bad_len_field,
                "header declares a total length of 3 bytes, received 6".into(),
            ),
            (
                packet_of(&[vec![0, 0, 0, 0x0f]]),
                "chunk at offset 6 is truncated or declares a bad length 0".into(),
            ),
            (
                packet_of(&[vec![0, 0, 0, 0x0f, 0, 3]]),
                "chunk at offset 6 is truncated or declares a bad length 3".into(),
            ),
            (
                packet_of(&[vec![0, 0, 0, 0x0f, 0, 9, b'a']]),
                "chunk at offset 6 is truncated or declares a bad length 9".into(),
            ),
            (
                packet_of(&[chunk_bytes(0, 0x07, &[1, 2, 3])]),
                "source port chunk is 3 bytes, expected 2".into(),
            ),
            (
                packet_of(&[chunk_bytes(0, 0x03, &[1, 2, 3, 4, 5])]),
                "ipv4 address chunk is 5 bytes, expected 4".into(),
            ),
            (
                packet_of(&[chunk_bytes(0, 0x0c, &[1, 2, 3])]),
                "capture id chunk is 3 bytes, expected 2 or 4".into(),
            ),
            (
                packet_of(&[chunk_bytes(0, 0x0f, b"a"), chunk_bytes(0, 0x0f, b"b")]),
                "duplicate payload chunk".into(),
            ),
            (
                packet_of(&[chunk_bytes(0, 0x0e, b"a"), chunk_bytes(0, 0x0e, b"b")]),
                "duplicate auth key chunk".into(),
            ),
        ];
        for (input, message) in cases {
            let err = parse_hep(&input).unwrap_err();
            assert_eq!(err.to_string(), message, "{input:02x?}");
        }
    }

    #[test]
    fn frame_len_rejects_lost_framing() {
        assert_eq!(
            hep_frame_len(b"GET / ").unwrap_err().to_string(),
            "not a HEPv3 packet: starts with [47, 45, 54, 20]"
        );
        assert_eq!(
            hep_frame_len(b"HEP3\x00\x05").unwrap_err(),
            HepError::LengthMismatch {
                declared: 5,
                actual: 6
            }
        );
        assert_eq!(hep_frame_len(b"HEP3\xff\xff").unwrap(), 65535);
    }

    #[test]
    fn encode_rejects_oversize() {
        let big = vec![b'x'; 70_000];
        let p = HepPacket {
            payload: Some(&big),
            ..HepPacket::default()
        };
        assert_eq!(
            p.encode().unwrap_err().to_string(),
            "packet of 70006 bytes exceeds the HEP limit of 65535"
        );
        let almost = vec![b'x'; 65_520];
        let p = HepPacket {
            payload: Some(&almost),
            capture_agent_name: Some(b"0123456789"),
            ..HepPacket::default()
        };
        assert_eq!(p.encode().unwrap_err(), HepError::TooLarge { len: 65_548 });
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let good = sample().encode().unwrap();
        for end in 0..good.len() {
            assert!(parse_hep(&good[..end]).is_err(), "prefix of {end} bytes");
        }
    }
}
