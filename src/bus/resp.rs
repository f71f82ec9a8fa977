//! The part of the Redis protocol (RESP2) the bus speaks: commands out as arrays of bulk
//! strings, replies and pub/sub pushes in. A pure, incremental parser with size caps; it
//! never panics on any input (fuzzed: `fuzz/fuzz_targets/resp_frame.rs`).

/// Largest bulk string accepted (a batch of events is far smaller).
pub const MAX_BULK: usize = 64 * 1024 * 1024;
/// Most elements in one array.
pub const MAX_ARRAY: usize = 1024;
/// Deepest nesting of arrays.
const MAX_DEPTH: usize = 4;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` bytes, or `$-1` (none).
    Bulk(Option<Vec<u8>>),
    /// `*n` values, or `*-1` (none).
    Array(Option<Vec<Frame>>),
}

/// Why input is not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// An unknown type byte.
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or integer that does not parse or is out of range.
    #[error("bad RESP length or integer")]
    BadNumber,
    /// A bulk string not followed by CRLF.
    #[error("bulk string not terminated by CRLF")]
    Unterminated,
    /// Over [`MAX_BULK`], [`MAX_ARRAY`] or the nesting limit.
    #[error("RESP value too large")]
    TooLarge,
}

/// Encodes a command as an array of bulk strings.
pub fn command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one frame from the start of `buf`: `Ok(Some((frame, bytes used)))`, `Ok(None)`
/// when more input is needed.
///
/// # Errors
/// [`RespError`] when the input is not RESP2 (the connection should be dropped).
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let pos = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..pos], from + pos + 2))
}

fn number(s: &[u8]) -> Result<i64, RespError> {
    if s.is_empty() || s.len() > 20 {
        return Err(RespError::BadNumber);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(RespError::BadNumber)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Frame, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::TooLarge);
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, at + 1) else {
        // Refuse an endless header instead of waiting for it.
        if buf.len() - at > 64 && !matches!(kind, b'+' | b'-') {
            return Err(RespError::BadNumber);
        }
        if buf.len() - at > MAX_BULK {
            return Err(RespError::TooLarge);
        }
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((
            Frame::Simple(String::from_utf8_lossy(head).into_owned()),
            next,
        ))),
        b'-' => Ok(Some((
            Frame::Error(String::from_utf8_lossy(head).into_owned()),
            next,
        ))),
        b':' => Ok(Some((Frame::Integer(number(head)?), next))),
        b'$' => {
            let n = number(head)?;
            if n == -1 {
                return Ok(Some((Frame::Bulk(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
            if n > MAX_BULK {
                return Err(RespError::TooLarge);
            }
            let end = next.checked_add(n).ok_or(RespError::TooLarge)?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Unterminated);
            }
            Ok(Some((Frame::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = number(head)?;
            if n == -1 {
                return Ok(Some((Frame::Array(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
            if n > MAX_ARRAY {
                return Err(RespError::TooLarge);
            }
            let mut items = Vec::with_capacity(n.min(16));
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((f, p)) => {
                        items.push(f);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Frame::Array(Some(items)), pos)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_and_pushes_incrementally() {
        let push = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n";
        for cut in 0..push.len() {
            assert_eq!(parse(&push[..cut]), Ok(None), "cut at {cut}");
        }
        let (f, used) = parse(push).expect("valid").expect("complete");
        assert_eq!(used, push.len());
        assert_eq!(
            f,
            Frame::Array(Some(vec![
                Frame::Bulk(Some(b"message".to_vec())),
                Frame::Bulk(Some(b"chan".to_vec())),
                Frame::Bulk(Some(b"hello".to_vec())),
            ]))
        );
        assert_eq!(parse(b":12\r\n+OK\r\n"), Ok(Some((Frame::Integer(12), 5))));
        assert_eq!(
            parse(b"-ERR no\r\n"),
            Ok(Some((Frame::Error("ERR no".into()), 9)))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Frame::Bulk(None), 5))));
    }

    #[test]
    fn refuses_garbage_and_huge_values() {
        assert_eq!(parse(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert_eq!(parse(b"$abc\r\n"), Err(RespError::BadNumber));
        assert_eq!(parse(b"$3\r\nabcd\r\n"), Err(RespError::Unterminated));
        assert_eq!(parse(b"$999999999999\r\n"), Err(RespError::TooLarge));
        assert_eq!(parse(b"*99999\r\n"), Err(RespError::TooLarge));
        assert_eq!(
            parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(RespError::TooLarge)
        );
        assert_eq!(parse(&[b':'; 100]), Err(RespError::BadNumber));
        assert_eq!(parse(b"$-2\r\n"), Err(RespError::BadNumber));
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&[b"PUBLISH", b"c", b"x y"], &mut out);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$3\r\nx y\r\n");
    }
}
