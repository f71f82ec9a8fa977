//! AMI framing: the banner line, `Key: Value` messages ended by a blank line, the legacy
//! `Response: Follows` … `--END COMMAND--` frame, and actions going the other way.
//!
//! [`parse_frame`] is the pure parser (no I/O, no panic on any input); [`AmiCodec`] wraps
//! it as a `tokio_util` [`Decoder`] / [`Encoder`] and adds a cheap "nothing new yet" path so
//! that a message arriving a few bytes at a time is not re-parsed for every byte.
//!
//! Tolerated, because real servers and public captures do it: bare `\n` line ends,
//! stray blank lines between messages, keys in any case, repeated keys (kept in order),
//! a value-less `Key:`, and bytes that are not UTF-8 (replaced, lossy). Rejected: a line,
//! a message or a key count over [`AmiLimits`] (framing can no longer be trusted: the
//! session must restart), a first line that is not the banner, and — as a
//! [`AmiFrame::Rejected`] frame that leaves the stream usable — a message with a line that
//! is not a `Key: Value` pair.

use std::fmt;

use bytes::{Buf, BufMut};

/// Re-exported so users of [`AmiCodec`] need not depend on `bytes` and `tokio-util`.
pub use bytes::BytesMut;
/// Re-exported so users of [`AmiCodec`] need not depend on `bytes` and `tokio-util`.
pub use tokio_util::codec::{Decoder, Encoder};

/// The text before the version on the first line the server sends
/// (`Asterisk Call Manager/7.0.3`).
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// The line that ends the output of a legacy `Response: Follows` frame (Asterisk 13 and
/// older).
pub const END_COMMAND: &str = "--END COMMAND--";

/// Size caps of the decoder. Going over one is a [`AmiCodecError`]: the peer is not
/// speaking AMI (or is broken) and the connection must be restarted, since skipping to
/// the next blank line would mean buffering without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmiLimits {
    /// The longest line, in bytes, without its line end.
    pub max_line_len: usize,
    /// The most `Key: Value` lines in one message (command output lines of a
    /// `Response: Follows` frame do not count; they are bounded by `max_message_len`).
    pub max_keys: usize,
    /// The longest message, in bytes, line ends included.
    pub max_message_len: usize,
}

impl Default for AmiLimits {
    /// 16 KiB lines, 512 keys, 256 KiB messages: far above what Asterisk sends (a few
    /// hundred bytes per event, dozens of keys), far below what could hurt.
    fn default() -> Self {
        Self {
            max_line_len: 16 * 1024,
            max_keys: 512,
            max_message_len: 256 * 1024,
        }
    }
}

/// One AMI message: an ordered list of `Key: Value` headers. Keys may repeat; lookups
/// ignore the case of the key.
///
/// `Debug` hides the values of `Secret` and `Key` (the login credentials).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AmiMessage {
    headers: Vec<(String, String)>,
}

impl AmiMessage {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// An action: a message whose first header is `Action: {name}`.
    pub fn action(name: &str) -> Self {
        Self::new().with("Action", name)
    }

    /// Appends a header (builder style).
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a header.
    pub fn push(&mut self, key: &str, value: &str) {
        self.headers.push((key.to_owned(), value.to_owned()));
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// How many headers the message has.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether the message has no header.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The value of the first header named `key`, ignoring case.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first header named `key` when it is present and not empty.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// The values of every header named `key`, ignoring case, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// `Event:`, if the message is an event.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// `Response:`, if the message is a response (an event such as `OriginateResponse`
    /// may carry a `Response:` header too; it is still an event).
    pub fn response(&self) -> Option<&str> {
        if self.event().is_some() {
            return None;
        }
        self.get("Response")
    }

    /// `ActionID:`, if any.
    pub fn action_id(&self) -> Option<&str> {
        self.get_nonempty("ActionID")
    }

    /// Whether the message is an event named `name` (ignoring case).
    pub fn is_event(&self, name: &str) -> bool {
        self.event().is_some_and(|e| e.eq_ignore_ascii_case(name))
    }

    /// The message as a JSON object, for [`InboundEvent::raw`](kommutator_sdk::InboundEvent::raw):
    /// one member per key as first written; a repeated key becomes an array of its values.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.headers {
            let existing = map
                .iter_mut()
                .find(|(mk, _)| mk.eq_ignore_ascii_case(k))
                .map(|(_, mv)| mv);
            match existing {
                Some(serde_json::Value::Array(values)) => {
                    values.push(serde_json::Value::String(v.clone()));
                }
                Some(other) => {
                    let first = other.take();
                    *other = serde_json::Value::Array(vec![first, v.clone().into()]);
                }
                None => {
                    map.insert(k.clone(), serde_json::Value::String(v.clone()));
                }
            }
        }
        serde_json::Value::Object(map)
    }
}

impl fmt::Debug for AmiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("Secret") || k.eq_ignore_ascii_case("Key") {
                list.entry(&format_args!("{k}: <redacted>"));
            } else {
                list.entry(&format_args!("{k}: {v}"));
            }
        }
        list.finish()
    }
}

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiFrame {
    /// The first line of a session, `Asterisk Call Manager/{version}`.
    Banner {
        /// The AMI version (`7.0.3` for Asterisk 18).
        version: String,
    },
    /// A message.
    Message(AmiMessage),
    /// A well-framed message that is not valid AMI (a line that is not `Key: Value`). The
    /// stream goes on; the session logs it at WARN and counts it.
    Rejected {
        /// Why, for the log.
        reason: String,
    },
}

/// Why the stream cannot be decoded (or an action cannot be encoded).
#[derive(Debug, thiserror::Error)]
pub enum AmiCodecError {
    /// A line went over [`AmiLimits::max_line_len`].
    #[error("ami line longer than {limit} bytes")]
    LineTooLong {
        /// The cap.
        limit: usize,
    },
    /// A message went over [`AmiLimits::max_keys`].
    #[error("ami message with more than {limit} keys")]
    TooManyKeys {
        /// The cap.
        limit: usize,
    },
    /// A message went over [`AmiLimits::max_message_len`].
    #[error("ami message longer than {limit} bytes")]
    MessageTooLong {
        /// The cap.
        limit: usize,
    },
    /// The first line is not the `Asterisk Call Manager/` banner: not an AMI port.
    #[error("expected the `Asterisk Call Manager/<version>` banner, got {line:?}")]
    BadBanner {
        /// The start of the line received instead.
        line: String,
    },
    /// An action that cannot be written (a line break in a value would inject headers).
    #[error("invalid action: {0}")]
    InvalidAction(String),
    /// Reading or writing the socket failed.
    #[error("ami i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses one frame from the start of `buf`.
///
/// `expect_banner` is true for the first frame of a session. Returns the frame and how
/// many bytes it used (leading blank lines included), or `None` when `buf` does not yet
/// hold a whole frame. Pure: no I/O, no panic on any input.
///
/// # Errors
///
/// [`AmiCodecError`] when a cap of `limits` is exceeded (even by an incomplete frame) or
/// the banner is missing.
pub fn parse_frame(
    buf: &[u8],
    expect_banner: bool,
    limits: &AmiLimits,
) -> Result<Option<(AmiFrame, usize)>, AmiCodecError> {
    if expect_banner {
        return parse_banner(buf, limits);
    }
    let start = skip_blank_lines(buf);
    let mut pos = start;
    let mut msg = AmiMessage::new();
    let mut bad: Option<String> = None;
    let mut follows = false;
    let mut in_output = false;
    let mut line_no = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if partial_line_too_long(rest, limits) {
                return Err(AmiCodecError::LineTooLong {
                    limit: limits.max_line_len,
                });
            }
            if buf.len().saturating_sub(start) > limits.max_message_len {
                return Err(AmiCodecError::MessageTooLong {
                    limit: limits.max_message_len,
                });
            }
            return Ok(None);
        };
        let line = strip_cr(rest.get(..nl).unwrap_or_default());
        if line.len() > limits.max_line_len {
            return Err(AmiCodecError::LineTooLong {
                limit: limits.max_line_len,
            });
        }
        pos = pos.saturating_add(nl).saturating_add(1);
        if pos.saturating_sub(start) > limits.max_message_len {
            return Err(AmiCodecError::MessageTooLong {
                limit: limits.max_message_len,
            });
        }
        line_no += 1;

        if in_output {
            if let Some(before) = line.strip_suffix(END_COMMAND.as_bytes()) {
                if !before.is_empty() {
                    msg.push("Output", &lossy(before));
                }
                return Ok(Some((finish(msg, bad), pos)));
            }
            msg.push("Output", &lossy(line));
            continue;
        }
        if line.is_empty() {
            if follows {
                // A blank line inside command output is output.
                in_output = true;
                msg.push("Output", "");
                continue;
            }
            return Ok(Some((finish(msg, bad), pos)));
        }
        match split_header(line) {
            Some((key, value)) if !follows || is_token(key) => {
                if msg.len() >= limits.max_keys {
                    return Err(AmiCodecError::TooManyKeys {
                        limit: limits.max_keys,
                    });
                }
                let key = lossy(key);
                let value = lossy(value);
                if msg.is_empty()
                    && key.eq_ignore_ascii_case("Response")
                    && value.eq_ignore_ascii_case("Follows")
                {
                    follows = true;
                }
                msg.push(&key, &value);
            }
            _ if follows => {
                in_output = true;
                if let Some(before) = line.strip_suffix(END_COMMAND.as_bytes()) {
                    if !before.is_empty() {
                        msg.push("Output", &lossy(before));
                    }
                    return Ok(Some((finish(msg, bad), pos)));
                }
                msg.push("Output", &lossy(line));
            }
            _ => {
                if bad.is_none() {
                    bad = Some(format!("line {line_no} is not a `Key: Value` pair"));
                }
            }
        }
    }
}

/// Parses a whole stream with [`parse_frame`], as [`AmiCodec`] would decode it up to its
/// end: the frames, and the error that stopped the parse, if any. A partial message at
/// the end is dropped. Pure: no I/O, no panic on any input.
pub fn parse_stream(
    bytes: &[u8],
    expect_banner: bool,
    limits: &AmiLimits,
) -> (Vec<AmiFrame>, Option<AmiCodecError>) {
    let mut frames = vec![];
    let mut rest = bytes;
    let mut banner = expect_banner;
    loop {
        if !banner {
            rest = rest.get(skip_blank_lines(rest)..).unwrap_or_default();
        }
        match parse_frame(rest, banner, limits) {
            Ok(Some((frame, used))) => {
                banner = false;
                frames.push(frame);
                rest = rest.get(used..).unwrap_or_default();
            }
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// How many bytes of blank lines (`\r\n` or `\n`) `buf` starts with.
pub fn skip_blank_lines(buf: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        if rest.starts_with(b"\n") {
            pos += 1;
        } else if rest.starts_with(b"\r\n") {
            pos += 2;
        } else {
            return pos;
        }
    }
}

fn parse_banner(
    buf: &[u8],
    limits: &AmiLimits,
) -> Result<Option<(AmiFrame, usize)>, AmiCodecError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if partial_line_too_long(buf, limits) {
            return Err(AmiCodecError::LineTooLong {
                limit: limits.max_line_len,
            });
        }
        return Ok(None);
    };
    let line = strip_cr(buf.get(..nl).unwrap_or_default());
    if line.len() > limits.max_line_len {
        return Err(AmiCodecError::LineTooLong {
            limit: limits.max_line_len,
        });
    }
    let text = lossy(line);
    // `Asterisk Call Manager/7.0.3`; proxies print `… Call Manager Proxy/…`-like variants,
    // so only the `Call Manager` part is required.
    match text.split_once("Call Manager") {
        Some((_, rest)) => {
            let version = rest
                .split_once('/')
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default();
            Ok(Some((AmiFrame::Banner { version }, nl + 1)))
        }
        None => Err(AmiCodecError::BadBanner {
            line: text.chars().take(64).collect(),
        }),
    }
}

fn finish(msg: AmiMessage, bad: Option<String>) -> AmiFrame {
    match bad {
        Some(reason) => AmiFrame::Rejected { reason },
        None => AmiFrame::Message(msg),
    }
}

/// Whether a line still waiting for its `\n` is already over the cap (its last byte may
/// be the `\r` of a `\r\n`, which does not count).
fn partial_line_too_long(partial: &[u8], limits: &AmiLimits) -> bool {
    strip_cr(partial).len() > limits.max_line_len
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `Key: Value` at the first colon. The key must be non-empty printable ASCII; the
/// value loses surrounding blanks (the spec's single space, and any trailing ones).
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (key, rest) = line.split_at_checked(colon)?;
    let value = rest.get(1..).unwrap_or_default();
    let key = key.trim_ascii();
    if key.is_empty() || !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    Some((key, value.trim_ascii()))
}

/// A key made of letters, digits, `-` and `_` only: in a `Response: Follows` frame, what
/// tells a header from a line of command output that happens to hold a colon.
fn is_token(key: &[u8]) -> bool {
    key.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The AMI codec: decodes [`AmiFrame`]s, encodes actions ([`AmiMessage`]s).
#[derive(Debug, Clone)]
pub struct AmiCodec {
    limits: AmiLimits,
    expect_banner: bool,
    /// Bytes at the start of the buffer already known to hold no whole frame.
    scanned: usize,
    /// Where the last incomplete line of the buffer starts.
    line_start: usize,
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl AmiCodec {
    /// A codec for the client side of a session: the first frame is the banner.
    pub fn new() -> Self {
        Self {
            limits: AmiLimits::default(),
            expect_banner: true,
            scanned: 0,
            line_start: 0,
        }
    }

    /// A codec that expects no banner: for the server side (reading actions) and tests.
    pub fn without_banner() -> Self {
        Self {
            expect_banner: false,
            ..Self::new()
        }
    }

    /// Replaces the size caps.
    #[must_use]
    pub fn with_limits(mut self, limits: AmiLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The size caps in force.
    pub fn limits(&self) -> &AmiLimits {
        &self.limits
    }
}

impl Decoder for AmiCodec {
    type Item = AmiFrame;
    type Error = AmiCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<AmiFrame>, AmiCodecError> {
        if !self.expect_banner {
            let blank = skip_blank_lines(buf);
            if blank > 0 {
                buf.advance(blank);
                self.scanned = 0;
                self.line_start = 0;
            }
        }
        // Nothing to parse until a new line end arrives; only the caps can be broken.
        let fresh = buf.get(self.scanned..).unwrap_or_default();
        let Some(last_nl) = fresh.iter().rposition(|&b| b == b'\n') else {
            if partial_line_too_long(buf.get(self.line_start..).unwrap_or_default(), &self.limits) {
                return Err(AmiCodecError::LineTooLong {
                    limit: self.limits.max_line_len,
                });
            }
            if buf.len() > self.limits.max_message_len {
                return Err(AmiCodecError::MessageTooLong {
                    limit: self.limits.max_message_len,
                });
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        match parse_frame(buf, self.expect_banner, &self.limits)? {
            None => {
                self.line_start = self.scanned + last_nl + 1;
                self.scanned = buf.len();
                Ok(None)
            }
            Some((frame, used)) => {
                buf.advance(used.min(buf.len()));
                self.scanned = 0;
                self.line_start = 0;
                if matches!(frame, AmiFrame::Banner { .. }) {
                    self.expect_banner = false;
                }
                Ok(Some(frame))
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<AmiFrame>, AmiCodecError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                if !buf.is_empty() {
                    tracing::debug!(
                        bytes = buf.len(),
                        "ami stream ended inside a message; the partial message is dropped"
                    );
                    buf.clear();
                }
                Ok(None)
            }
        }
    }
}

impl Encoder<&AmiMessage> for AmiCodec {
    type Error = AmiCodecError;

    fn encode(&mut self, msg: &AmiMessage, dst: &mut BytesMut) -> Result<(), AmiCodecError> {
        if msg.is_empty() {
            return Err(AmiCodecError::InvalidAction("no header".to_owned()));
        }
        for (k, v) in msg.headers() {
            let key_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| (b.is_ascii_graphic() && b != b':') || b == b' ')
                && k.trim() == k;
            if !key_ok {
                return Err(AmiCodecError::InvalidAction(format!(
                    "header name {k:?} is not a printable ASCII token"
                )));
            }
            if v.chars().any(|c| c.is_control() && c != '\t') {
                return Err(AmiCodecError::InvalidAction(format!(
                    "the value of `{k}` holds a control character"
                )));
            }
        }
        let len: usize = msg
            .headers()
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        dst.reserve(len + 2);
        for (k, v) in msg.headers() {
            dst.put_slice(k.as_bytes());
            dst.put_slice(b": ");
            dst.put_slice(v.as_bytes());
            dst.put_slice(b"\r\n");
        }
        dst.put_slice(b"\r\n");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut AmiCodec, input: &[u8]) -> Vec<AmiFrame> {
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    fn message(frame: &AmiFrame) -> &AmiMessage {
        match frame {
            AmiFrame::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn banner_then_messages_crlf() {
        let input = b"Asterisk Call Manager/7.0.3\r\n\
            Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n\
            Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::new(), input);
        assert_eq!(
            frames[0],
            AmiFrame::Banner {
                version: "7.0.3".to_owned()
            }
        );
        let login = message(&frames[1]);
        assert_eq!(login.response(), Some("Success"));
        assert_eq!(login.action_id(), Some("1"));
        assert_eq!(login.get("message"), Some("Authentication accepted"));
        let booted = message(&frames[2]);
        assert!(booted.is_event("fullybooted"));
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn bare_lf_and_stray_blank_lines() {
        let input =
            b"Asterisk Call Manager/1.3\n\n\nEvent: Ping\nPing: Pong\n\n\r\nEvent: X\r\nA: b\n\n";
        let frames = decode_all(&mut AmiCodec::new(), input);
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(message(&frames[1]).get("PING"), Some("Pong"));
        assert_eq!(message(&frames[2]).get("a"), Some("b"));
    }

    #[test]
    fn repeated_keys_keep_their_order_and_case_insensitive_lookup() {
        let input = b"Event: VarSet\r\nvariable: A\r\nVariable: B\r\nValue:\r\nValue2:x:y\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::without_banner(), input);
        let m = message(&frames[0]);
        assert_eq!(m.get_all("VARIABLE").collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(m.get("Value"), Some(""));
        assert_eq!(m.get_nonempty("Value"), None);
        assert_eq!(m.get("value2"), Some("x:y"));
        assert_eq!(
            m.to_json(),
            serde_json::json!({"Event": "VarSet", "variable": ["A", "B"], "Value": "", "Value2": "x:y"})
        );
    }

    #[test]
    fn follows_frame_until_end_command() {
        let input = b"Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n\
            Asterisk 13.1.0 built by root @ pbx on a x86_64 running Linux on 2015-02-13 19:21:24 UTC\n\
            \n\
            second line--END COMMAND--\r\n\r\nEvent: After\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::without_banner(), input);
        assert_eq!(frames.len(), 2, "{frames:?}");
        let m = message(&frames[0]);
        assert_eq!(m.action_id(), Some("7"));
        assert_eq!(
            m.get_all("Output").collect::<Vec<_>>(),
            [
                "Asterisk 13.1.0 built by root @ pbx on a x86_64 running Linux on 2015-02-13 19:21:24 UTC",
                "",
                "second line"
            ]
        );
        assert!(message(&frames[1]).is_event("After"));
    }

    #[test]
    fn follows_frame_with_empty_output() {
        let input = b"Response: Follows\r\nActionID: 8\r\n--END COMMAND--\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::without_banner(), input);
        let m = message(&frames[0]);
        assert_eq!(m.get("Output"), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input: &[u8] =
            b"Asterisk Call Manager/7.0.3\r\nEvent: A\r\nK: v\r\n\r\nEvent: B\nX: 1\n\n";
        let whole = decode_all(&mut AmiCodec::new(), input);
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::new();
        let mut pieces = vec![];
        for b in input {
            buf.put_u8(*b);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                pieces.push(f);
            }
        }
        assert_eq!(pieces, whole);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn oversized_line_is_an_error_even_before_its_end() {
        let limits = AmiLimits {
            max_line_len: 64,
            ..AmiLimits::default()
        };
        let mut codec = AmiCodec::without_banner().with_limits(limits);
        let mut buf = BytesMut::from(&b"Event: X\r\nValue: "[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[b'a'; 100]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, AmiCodecError::LineTooLong { limit: 64 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "ami line longer than 64 bytes");

        // The same through the pure parser, complete line.
        let mut line = b"Event: ".to_vec();
        line.extend_from_slice(&[b'b'; 100]);
        line.extend_from_slice(b"\r\n\r\n");
        let err = parse_frame(&line, false, &limits).unwrap_err();
        assert!(matches!(err, AmiCodecError::LineTooLong { .. }), "{err:?}");
    }

    #[test]
    fn a_line_at_the_cap_split_before_its_line_feed_is_fine() {
        // Found by the fuzz target: 64 bytes of line, then the `\r`, then (later) the `\n`.
        let limits = AmiLimits {
            max_line_len: 64,
            ..AmiLimits::default()
        };
        let mut line = b"Event: ".to_vec();
        line.resize(64, b'x');
        line.push(b'\r');
        let mut codec = AmiCodec::without_banner().with_limits(limits);
        let mut buf = BytesMut::from(&line[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(parse_frame(&line, false, &limits).unwrap().is_none());
        buf.extend_from_slice(b"\n\r\n");
        assert!(codec.decode(&mut buf).unwrap().is_some());
        line.push(b'x');
        assert!(parse_frame(&line, false, &limits).is_err());
    }

    #[test]
    fn garbage_without_line_ends_hits_the_line_cap() {
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&[0xffu8; 20_000][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, AmiCodecError::LineTooLong { .. }), "{err:?}");
    }

    #[test]
    fn too_many_keys_is_an_error() {
        let limits = AmiLimits {
            max_keys: 4,
            ..AmiLimits::default()
        };
        let input = b"Event: X\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        let err = parse_frame(input, false, &limits).unwrap_err();
        assert_eq!(err.to_string(), "ami message with more than 4 keys");
        let ok = b"Event: X\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(parse_frame(ok, false, &limits).unwrap().is_some());
    }

    #[test]
    fn oversized_message_is_an_error() {
        let limits = AmiLimits {
            max_message_len: 100,
            ..AmiLimits::default()
        };
        let mut input = Vec::new();
        for i in 0..20 {
            input.extend_from_slice(format!("Key{i}: value\r\n").as_bytes());
        }
        let err = parse_frame(&input, false, &limits).unwrap_err();
        assert!(
            matches!(err, AmiCodecError::MessageTooLong { limit: 100 }),
            "{err:?}"
        );
        let mut codec = AmiCodec::without_banner().with_limits(limits);
        let err = codec.decode(&mut BytesMut::from(&input[..])).unwrap_err();
        assert!(
            matches!(err, AmiCodecError::MessageTooLong { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_lines_reject_the_message_and_the_stream_goes_on() {
        let input = b"\x00\x01\xff garbage\r\n\xff\xfe: \x00\r\n\r\nEvent: Good\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::without_banner(), input);
        assert_eq!(
            frames[0],
            AmiFrame::Rejected {
                reason: "line 1 is not a `Key: Value` pair".to_owned()
            }
        );
        assert!(message(&frames[1]).is_event("Good"));
    }

    #[test]
    fn non_utf8_values_are_kept_lossy() {
        let input = b"Event: Newchannel\r\nCallerIDName: \xcf\xf0\xe8\r\n\r\n";
        let frames = decode_all(&mut AmiCodec::without_banner(), input);
        assert_eq!(
            message(&frames[0]).get("CallerIDName"),
            Some("\u{fffd}\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn parse_stream_equals_the_decoder() {
        let input =
            b"Asterisk Call Manager/7.0.3\r\n\r\nEvent: A\r\n\r\n\nEvent: B\nX: 1\n\nEvent: C\r\n";
        let (frames, err) = parse_stream(input, true, &AmiLimits::default());
        assert!(err.is_none());
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&input[..]);
        let mut decoded = vec![];
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            decoded.push(f);
        }
        assert_eq!(frames, decoded);
        assert_eq!(frames.len(), 3, "the partial `Event: C` is dropped");
        let (frames, err) = parse_stream(
            b"Event: A\r\n\r\n\x00\x00\x00",
            false,
            &AmiLimits {
                max_line_len: 2,
                ..AmiLimits::default()
            },
        );
        assert!(frames.is_empty());
        assert!(matches!(err, Some(AmiCodecError::LineTooLong { .. })));
    }

    #[test]
    fn wrong_banner_is_an_error() {
        let err = parse_frame(b"SSH-2.0-OpenSSH_9.2\r\n", true, &AmiLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected the `Asterisk Call Manager/<version>` banner, got \"SSH-2.0-OpenSSH_9.2\""
        );
        assert!(parse_frame(b"Asterisk Call", true, &AmiLimits::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn eof_inside_a_message_drops_it() {
        let mut codec = AmiCodec::without_banner();
        let mut buf = BytesMut::from(&b"Event: A\r\n\r\nEvent: B\r\nX: 1\r\n"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_some());
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_action() {
        let action = AmiMessage::action("Login")
            .with("ActionID", "k-1")
            .with("Username", "crm")
            .with("Secret", "s3cret");
        let mut dst = BytesMut::new();
        AmiCodec::new().encode(&action, &mut dst).unwrap();
        assert_eq!(
            &dst[..],
            b"Action: Login\r\nActionID: k-1\r\nUsername: crm\r\nSecret: s3cret\r\n\r\n"
        );
        let shown = format!("{action:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Secret: <redacted>"), "{shown}");
    }

    #[test]
    fn encode_refuses_header_injection() {
        let mut dst = BytesMut::new();
        let mut codec = AmiCodec::new();
        let action = AmiMessage::action("Originate").with("Exten", "123\r\nAction: Command");
        let err = codec.encode(&action, &mut dst).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid action: the value of `Exten` holds a control character"
        );
        assert!(dst.is_empty(), "nothing half-written");
        let err = codec
            .encode(&AmiMessage::new().with("Bad:Key", "v"), &mut dst)
            .unwrap_err();
        assert!(matches!(err, AmiCodecError::InvalidAction(_)));
        let err = codec.encode(&AmiMessage::new(), &mut dst).unwrap_err();
        assert!(matches!(err, AmiCodecError::InvalidAction(_)));
    }

    #[test]
    fn encode_then_decode_round_trip() {
        let action = AmiMessage::action("Ping").with("ActionID", "p-1");
        let mut dst = BytesMut::new();
        let mut codec = AmiCodec::without_banner();
        codec.encode(&action, &mut dst).unwrap();
        assert_eq!(
            codec.decode(&mut dst).unwrap(),
            Some(AmiFrame::Message(action))
        );
    }
}
