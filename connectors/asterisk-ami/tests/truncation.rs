//! Every fixture, cut at every byte: the decoder never panics, what it decodes from a
//! prefix agrees with the whole stream, and the tracker takes whatever comes out.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use kommutator_asterisk_ami::codec::{parse_frame, AmiCodec, AmiFrame, AmiLimits};
use kommutator_asterisk_ami::numbers::NumberPlan;
use kommutator_asterisk_ami::tracker::{CallTracker, TrackerConfig};
use time::macros::datetime;
use tokio_util::codec::Decoder;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ami"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 10, "fixtures missing: {out:?}");
    out
}

fn tracker() -> CallTracker {
    CallTracker::new(TrackerConfig {
        plan: NumberPlan {
            country_code: Some("7".to_owned()),
            extension_max_len: 4,
            internal_contexts: vec!["from-internal".to_owned()],
        },
        recording_base_url: Some("https://pbx.example/rec".to_owned()),
        recording_path_prefix: "/var/spool/asterisk/monitor/".to_owned(),
    })
}

fn decode_whole(bytes: &[u8], banner: bool) -> Vec<AmiFrame> {
    let mut codec = if banner {
        AmiCodec::new()
    } else {
        AmiCodec::without_banner()
    };
    let mut buf = BytesMut::from(bytes);
    let mut out = vec![];
    while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
        out.push(f);
    }
    out
}

#[test]
fn every_fixture_truncated_at_every_byte() {
    let now = datetime!(2024-05-01 13:00:00 UTC);
    for (name, bytes) in fixtures() {
        let banner = bytes.starts_with(b"Asterisk Call Manager/");
        let whole = decode_whole(&bytes, banner);
        assert!(!whole.is_empty(), "{name}");
        assert!(
            !whole.iter().any(|f| matches!(f, AmiFrame::Rejected { .. })),
            "{name}: a fixture is valid AMI"
        );

        // Feed one byte at a time; after each byte, also end the stream there (a cut).
        let mut codec = if banner {
            AmiCodec::new()
        } else {
            AmiCodec::without_banner()
        };
        let mut buf = BytesMut::new();
        let mut frames = vec![];
        let mut t = tracker();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                if let AmiFrame::Message(m) = &frame {
                    t.handle_event(m, now);
                }
                frames.push(frame);
            }
            let mut cut_codec = codec.clone();
            let mut cut_buf = buf.clone();
            let mut extra = vec![];
            while let Some(f) = cut_codec.decode_eof(&mut cut_buf).unwrap() {
                extra.push(f);
            }
            // A cut mid-message drops the partial message; it never invents one.
            assert!(
                whole.get(frames.len()..frames.len() + extra.len()) == Some(&extra[..]),
                "{name}: the prefix of {} bytes decodes to something the whole stream does not start with",
                i + 1
            );
            assert_eq!(frames[..], whole[..frames.len()], "{name} at byte {i}");
        }
        assert_eq!(frames, whole, "{name}: byte by byte equals all at once");

        // The pure parser on every prefix of the first frames, with tight caps too.
        let tight = AmiLimits {
            max_line_len: 64,
            max_keys: 8,
            max_message_len: 512,
        };
        let head = &bytes[..bytes.len().min(800)];
        for cut in 0..=head.len() {
            for limits in [AmiLimits::default(), tight] {
                let prefix = &head[..cut];
                if let Ok(Some((_, used))) = parse_frame(prefix, banner, &limits) {
                    assert!(used <= prefix.len(), "{name}: used {used} of {cut}");
                }
                let _ = parse_frame(prefix, !banner, &limits);
            }
        }
    }
}

#[test]
fn crlf_and_lf_forms_of_each_fixture_decode_alike() {
    for (name, bytes) in fixtures() {
        let banner = bytes.starts_with(b"Asterisk Call Manager/");
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lf = text.replace("\r\n", "\n");
        let crlf = lf.replace('\n', "\r\n");
        let a = decode_whole(lf.as_bytes(), banner);
        let b = decode_whole(crlf.as_bytes(), banner);
        assert_eq!(a, b, "{name}");
        assert_eq!(a, decode_whole(&bytes, banner), "{name}");
    }
}
