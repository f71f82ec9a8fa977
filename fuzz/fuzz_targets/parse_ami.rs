//! The Asterisk AMI parser and call tracker: any bytes give frames or a clean error, never
//! a panic; a frame never claims more bytes than it was given; the decoder fed in two
//! pieces agrees with the pure parser fed the whole; the call tracker takes every message
//! (as live events and as a resync snapshot) without panicking.
//!
//! The first input byte picks the mode: bit 0 expects the banner, bit 1 uses tight size
//! caps, and the byte also chooses where the stream is cut in two.
#![no_main]

use kommutator_asterisk_ami::codec::{
    parse_frame, parse_stream, AmiCodec, AmiFrame, AmiLimits, BytesMut, Decoder,
};
use kommutator_asterisk_ami::numbers::NumberPlan;
use kommutator_asterisk_ami::tracker::{CallTracker, OffsetDateTime, TrackerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let banner = mode & 1 == 1;
    let limits = if mode & 2 == 2 {
        AmiLimits {
            max_line_len: 64,
            max_keys: 8,
            max_message_len: 512,
        }
    } else {
        AmiLimits::default()
    };

    if let Ok(Some((_, used))) = parse_frame(body, banner, &limits) {
        assert!(used <= body.len());
    }
    let (whole, whole_err) = parse_stream(body, banner, &limits);

    // The decoder, fed in two pieces.
    let cut = (usize::from(mode) * 7919) % (body.len() + 1);
    let mut codec = if banner {
        AmiCodec::new()
    } else {
        AmiCodec::without_banner()
    }
    .with_limits(limits);
    let mut buf = BytesMut::new();
    let mut frames = vec![];
    let mut failed = false;
    'feed: for piece in [&body[..cut], &body[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    if !failed {
        while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
            frames.push(frame);
        }
    }
    assert_eq!(
        failed,
        whole_err.is_some(),
        "decoder and parser disagree on the error"
    );
    assert_eq!(frames, whole, "decoder and parser disagree on the frames");

    // The tracker takes anything that decodes.
    let mut tracker = CallTracker::new(TrackerConfig {
        plan: NumberPlan {
            country_code: Some("7".to_owned()),
            extension_max_len: 4,
            internal_contexts: vec!["from-internal".to_owned()],
        },
        recording_base_url: Some("https://pbx.example/rec".to_owned()),
        recording_path_prefix: "/var/spool/asterisk/monitor/".to_owned(),
    });
    let now = OffsetDateTime::UNIX_EPOCH;
    let messages: Vec<_> = whole
        .into_iter()
        .filter_map(|f| match f {
            AmiFrame::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    tracker.begin_session();
    for m in &messages {
        for update in tracker.handle_event(m, now) {
            assert!(update
                .external_id
                .starts_with(&update.event.call_external_id));
        }
    }
    tracker.begin_session();
    let _ = tracker.apply_snapshot(&messages, now);
    let _ = tracker.apply_snapshot(&[], now);
});
