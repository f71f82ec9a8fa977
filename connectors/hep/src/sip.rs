//! A tolerant SIP message reader: [`parse_sip`] takes the few fields call tracking needs
//! (start line, Call-ID, CSeq, From/To with tags, top Via branch, Reason, Refer-To,
//! User-Agent) and nothing else. The body is never read.
//!
//! Why our own and not `rsip` at run time: rsip 0.4.0 rejects or half-reads input that
//! real traffic carries (compact header names, `tel:` URIs, folded headers,
//! `Name : value`, unknown methods), so a fallback reader for all of these fields is
//! needed anyway, and once it exists a second path only adds a way for the two to
//! disagree. rsip is kept as a test oracle: a differential test checks that both agree
//! on every fixture rsip accepts.
//!
//! Tolerated beyond RFC 3261's strict grammar: bare LF line ends, CRLFs before the start
//! line, compact header names (`i f t v m l r`…), any case in header names, spaces
//! around the colon, folded (continuation) lines, unknown methods, `tel:` URIs, and
//! header lines that do not parse (skipped unless they are one of the fields above).

use std::fmt;

/// The largest message accepted, the most one HEP packet can carry.
pub const MAX_SIP_LEN: usize = 65_535;
/// Longest method name accepted, in bytes.
const MAX_METHOD_LEN: usize = 32;

/// A SIP request method. Methods are compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK
    Prack,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// PUBLISH
    Publish,
    /// INFO
    Info,
    /// REFER
    Refer,
    /// MESSAGE
    Message,
    /// UPDATE
    Update,
    /// Any other token, upper-cased.
    Other(String),
}

impl Method {
    const KNOWN: [(Method, &'static str); 14] = [
        (Method::Invite, "INVITE"),
        (Method::Ack, "ACK"),
        (Method::Bye, "BYE"),
        (Method::Cancel, "CANCEL"),
        (Method::Options, "OPTIONS"),
        (Method::Register, "REGISTER"),
        (Method::Prack, "PRACK"),
        (Method::Subscribe, "SUBSCRIBE"),
        (Method::Notify, "NOTIFY"),
        (Method::Publish, "PUBLISH"),
        (Method::Info, "INFO"),
        (Method::Refer, "REFER"),
        (Method::Message, "MESSAGE"),
        (Method::Update, "UPDATE"),
    ];

    /// Reads a method token.
    ///
    /// # Errors
    ///
    /// [`SipError::BadMethod`] when `s` is empty, longer than 32 bytes or holds a
    /// character that is not a SIP token character.
    pub fn parse(s: &str) -> Result<Self, SipError> {
        if s.is_empty() || s.len() > MAX_METHOD_LEN || !s.chars().all(is_token_char) {
            return Err(SipError::BadMethod);
        }
        Ok(Self::KNOWN
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s))
            .map_or_else(|| Self::Other(s.to_ascii_uppercase()), |(m, _)| m.clone()))
    }

    /// The method's name, upper-case.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => Self::KNOWN
                .iter()
                .find(|(m, _)| m == known)
                .map_or("", |(_, name)| name),
        }
    }

    /// Whether RFC 3261 or its extensions define the method (everything but
    /// [`Method::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`
    Request {
        /// The method.
        method: Method,
        /// The Request-URI as written.
        uri: String,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// The status code, 100..=699.
        code: u16,
        /// The reason phrase as written (may be empty).
        reason: String,
    },
}

/// A URI, split as far as call tracking needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uri {
    /// The scheme, lower-case (`sip`, `sips`, `tel`); empty when there is none.
    pub scheme: String,
    /// The user part of a `sip:`/`sips:` URI (percent-decoded, without password or user
    /// parameters), or the number of a `tel:` URI (without parameters).
    pub user: Option<String>,
    /// The host of a `sip:`/`sips:` URI, lower-case, without port.
    pub host: Option<String>,
    /// The URI as written.
    pub raw: String,
}

/// A `From`, `To`, `Refer-To` or `Contact` value: display name, URI, tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted, if any.
    pub display_name: Option<String>,
    /// The address.
    pub uri: Uri,
    /// The `tag` parameter, if any.
    pub tag: Option<String>,
    /// The header value as written (after unfolding).
    pub raw: String,
}

/// The `CSeq` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method of the transaction.
    pub method: Method,
}

/// The fields of one SIP message that call tracking uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Request or response line.
    pub start: StartLine,
    /// `Call-ID` (`i`).
    pub call_id: String,
    /// `CSeq`.
    pub cseq: CSeq,
    /// `From` (`f`).
    pub from: NameAddr,
    /// `To` (`t`).
    pub to: NameAddr,
    /// The `branch` parameter of the top `Via` (`v`), if any.
    pub via_branch: Option<String>,
    /// The first `Reason` header, as written.
    pub reason: Option<String>,
    /// `Refer-To` (`r`), if any and if it parses.
    pub refer_to: Option<NameAddr>,
    /// `User-Agent`, or `Server` for a response.
    pub user_agent: Option<String>,
}

impl SipMessage {
    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }
}

/// Why bytes are not a SIP message this crate can use. Messages never quote header
/// values (they may hold phone numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// Nothing but line ends (a keepalive) or nothing at all.
    #[error("empty message")]
    Empty,
    /// More than [`MAX_SIP_LEN`] bytes.
    #[error("message is {len} bytes, more than the {MAX_SIP_LEN} allowed")]
    TooLarge {
        /// The message size.
        len: usize,
    },
    /// The first line is neither `METHOD uri SIP/x` nor `SIP/x code reason`.
    #[error("start line is neither a SIP request nor a SIP response")]
    BadStartLine,
    /// A response code outside 100..=699.
    #[error("status code is not a number from 100 to 699")]
    BadStatusCode,
    /// A method that is not a token of at most 32 characters.
    #[error("method is not a SIP token of at most 32 characters")]
    BadMethod,
    /// A header call tracking cannot do without is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header call tracking cannot do without does not parse.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Expands a compact header name (RFC 3261 §7.3.3 and extensions) and lower-cases it.
fn canonical_name(name: &str) -> String {
    let full = match name {
        "i" | "I" => "call-id",
        "f" | "F" => "from",
        "t" | "T" => "to",
        "v" | "V" => "via",
        "m" | "M" => "contact",
        "l" | "L" => "content-length",
        "c" | "C" => "content-type",
        "e" | "E" => "content-encoding",
        "k" | "K" => "supported",
        "s" | "S" => "subject",
        "r" | "R" => "refer-to",
        "b" | "B" => "referred-by",
        "o" | "O" => "event",
        "u" | "U" => "allow-events",
        "x" | "X" => "session-expires",
        other => return other.to_ascii_lowercase(),
    };
    full.to_owned()
}

/// Parses the header section of one SIP message; the body (after the first empty line)
/// is not read.
///
/// Pure: no I/O, no panic on any input.
///
/// # Errors
///
/// A [`SipError`]: empty input, more than [`MAX_SIP_LEN`] bytes, a start line that is
/// not SIP, or a missing or malformed `Call-ID`, `CSeq`, `From` or `To`.
pub fn parse_sip(data: &[u8]) -> Result<SipMessage, SipError> {
    if data.len() > MAX_SIP_LEN {
        return Err(SipError::TooLarge { len: data.len() });
    }
    let mut lines = data.split(|b| *b == b'\n').map(|raw| {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        String::from_utf8_lossy(raw)
    });
    let start = loop {
        match lines.next() {
            None => return Err(SipError::Empty),
            Some(line) if line.trim().is_empty() => continue,
            Some(line) => break parse_start_line(line.trim())?,
        }
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break; // end of the header section
        }
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous header.
            if let Some((_, value)) = headers.last_mut() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(is_token_char) {
            continue;
        }
        headers.push((canonical_name(name), value.trim().to_owned()));
    }
    let first = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    let call_id = first("call-id")
        .filter(|v| !v.is_empty())
        .ok_or(SipError::MissingHeader("Call-ID"))?
        .to_owned();
    let cseq = parse_cseq(first("cseq").ok_or(SipError::MissingHeader("CSeq"))?)?;
    let from = parse_name_addr(first("from").ok_or(SipError::MissingHeader("From"))?)
        .ok_or(SipError::BadHeader("From"))?;
    let to = parse_name_addr(first("to").ok_or(SipError::MissingHeader("To"))?)
        .ok_or(SipError::BadHeader("To"))?;
    let via_branch = first("via").and_then(top_via_branch);
    let reason = first("reason").map(str::to_owned);
    let refer_to = first("refer-to").and_then(parse_name_addr);
    let user_agent = first("user-agent")
        .or_else(|| first("server"))
        .map(str::to_owned);

    Ok(SipMessage {
        start,
        call_id,
        cseq,
        from,
        to,
        via_branch,
        reason,
        refer_to,
        user_agent,
    })
}

fn is_sip_version(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    if is_sip_version(line) {
        let mut parts = line.splitn(2, char::is_whitespace);
        let _version = parts.next();
        let rest = parts.next().unwrap_or("").trim_start();
        let (code, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| SipError::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(SipError::BadStatusCode);
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_owned(),
        });
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::BadStartLine);
    };
    if !is_sip_version(version) {
        return Err(SipError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: Method::parse(method)?,
        uri: uri.to_owned(),
    })
}

fn parse_cseq(value: &str) -> Result<CSeq, SipError> {
    let mut parts = value.split_whitespace();
    let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SipError::BadHeader("CSeq"));
    };
    let seq = seq.parse().map_err(|_| SipError::BadHeader("CSeq"))?;
    let method = Method::parse(method).map_err(|_| SipError::BadHeader("CSeq"))?;
    Ok(CSeq { seq, method })
}

/// Splits `s` at the first occurrence of `sep` that is outside a double-quoted string.
fn split_unquoted(s: &str, sep: char) -> (&str, Option<&str>) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            return (s.get(..i).unwrap_or(s), s.get(i + c.len_utf8()..));
        }
    }
    (s, None)
}

/// The value of parameter `name` in `;a=b;name=value` (case-insensitive name).
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

fn top_via_branch(value: &str) -> Option<String> {
    let (top, _) = split_unquoted(value, ',');
    let (_, params) = top.split_once(';')?;
    param(params, "branch")
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
}

/// Reads `"Display" <uri>;params`, `Display <uri>;params` or `uri;params`.
fn parse_name_addr(value: &str) -> Option<NameAddr> {
    let v = value.trim();
    let (display_name, uri, params) = if let Some(quoted) = v.strip_prefix('"') {
        let (name, rest) = split_unquoted_end_quote(quoted)?;
        let rest = rest.trim_start();
        let (uri, params) = match rest.strip_prefix('<') {
            Some(inner) => inner.split_once('>')?,
            None => rest.split_once(';').unwrap_or((rest, "")),
        };
        (Some(name), uri, params)
    } else if let Some((before, inner)) = v.split_once('<') {
        let (uri, params) = inner.split_once('>')?;
        let name = before.trim();
        ((!name.is_empty()).then(|| name.to_owned()), uri, params)
    } else {
        let (uri, params) = v.split_once(';').unwrap_or((v, ""));
        (None, uri, params)
    };
    let uri = uri.trim();
    if uri.is_empty() {
        return None;
    }
    Some(NameAddr {
        display_name,
        uri: parse_uri(uri),
        tag: param(params, "tag")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        raw: v.to_owned(),
    })
}

/// For `name" rest` (the text after an opening quote): the unescaped name and the rest.
fn split_unquoted_end_quote(s: &str) -> Option<(String, &str)> {
    let mut name = String::new();
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            name.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((name, s.get(i + 1..)?));
        } else {
            name.push(c);
        }
    }
    None
}

/// Splits a URI into scheme, user and host. Never fails: what it cannot split stays in
/// `raw` only.
pub fn parse_uri(raw: &str) -> Uri {
    let raw = raw.trim();
    let mut uri = Uri {
        raw: raw.to_owned(),
        ..Uri::default()
    };
    let Some((scheme, rest)) = raw.split_once(':') else {
        return uri;
    };
    uri.scheme = scheme.to_ascii_lowercase();
    match uri.scheme.as_str() {
        "sip" | "sips" => {
            let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
            let hostport = match rest.split_once('@') {
                Some((userinfo, hostport)) => {
                    let user = userinfo.split([':', ';']).next().unwrap_or("");
                    let user = percent_decode(user);
                    uri.user = (!user.is_empty()).then_some(user);
                    hostport
                }
                None => rest,
            };
            let host = hostport.split(';').next().unwrap_or("");
            let host = if let Some(v6) = host.strip_prefix('[') {
                v6.split_once(']').map_or(v6, |(h, _)| h)
            } else {
                host.split(':').next().unwrap_or("")
            };
            uri.host = (!host.is_empty()).then(|| host.to_ascii_lowercase());
        }
        "tel" => {
            let number = rest.split(';').next().unwrap_or("").trim();
            uri.user = (!number.is_empty()).then(|| percent_decode(number));
        }
        _ => {}
    }
    uri
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:2001@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5090;received=127.0.0.1;branch=z9hG4bKcaller;rport=5090\r\n\
        To: <sip:2001@127.0.0.1:5060>\r\n\
        From: \"Ivan \\\"Ivanov\\\"\" <sip:1001@127.0.0.1>;tag=32d75a57\r\n\
        Call-ID: c41fbddf08e78d4c\r\n\
        CSeq: 15114 INVITE\r\n\
        User-Agent: baresip v1.0.0 (x86_64/linux)\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\
        \r\n\
        v=0\r\n";

    #[test]
    fn reads_a_request() {
        let m = parse_sip(INVITE.as_bytes()).unwrap();
        assert_eq!(
            m.start,
            StartLine::Request {
                method: Method::Invite,
                uri: "sip:2001@127.0.0.1:5060".into()
            }
        );
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.status(), None);
        assert_eq!(m.call_id, "c41fbddf08e78d4c");
        assert_eq!(
            m.cseq,
            CSeq {
                seq: 15114,
                method: Method::Invite
            }
        );
        assert_eq!(m.from.display_name.as_deref(), Some("Ivan \"Ivanov\""));
        assert_eq!(m.from.uri.user.as_deref(), Some("1001"));
        assert_eq!(m.from.uri.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(m.from.tag.as_deref(), Some("32d75a57"));
        assert_eq!(m.to.tag, None);
        assert_eq!(m.to.uri.user.as_deref(), Some("2001"));
        assert_eq!(m.via_branch.as_deref(), Some("z9hG4bKproxy.0"));
        assert_eq!(
            m.user_agent.as_deref(),
            Some("baresip v1.0.0 (x86_64/linux)")
        );
    }

    #[test]
    fn reads_a_response_with_reason() {
        let m = parse_sip(
            b"SIP/2.0 486 Busy  Here\r\nv: SIP/2.0/UDP h;branch=b1, SIP/2.0/UDP g;branch=b2\r\n\
              f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: x@h\r\nCSeq: 7 INVITE\r\n\
              Server: pbx\r\nReason: Q.850;cause=17;text=\"User busy\"\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 486,
                reason: "Busy  Here".into()
            }
        );
        assert_eq!(m.status(), Some(486));
        assert_eq!(m.via_branch.as_deref(), Some("b1"));
        assert_eq!(m.to.tag.as_deref(), Some("2"));
        assert_eq!(m.user_agent.as_deref(), Some("pbx"));
        assert_eq!(
            m.reason.as_deref(),
            Some("Q.850;cause=17;text=\"User busy\"")
        );
    }

    #[test]
    fn tolerates_what_rsip_rejects() {
        let text = "\r\n\r\nfoo tel:+7-495-123-45-67;phone-context=+7 sip/2.0\n\
            i :  abc\n\
            f: tel:+74951234567;tag=a1\n\
            t: \"Office\"\n <sip:%2B74957654321;npdi@pbx.example.com;user=phone>\n\
            Reason:\n\t Q.850;cause=16\n\
            CSeq: 3 foo\n\
            r: <sip:102@pbx.example.com?Replaces=x%40y>\n\
            garbage line without colon\n\
            bad name: ignored\n\
            \n\
            body: not a header\n";
        let m = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(
            m.start,
            StartLine::Request {
                method: Method::Other("FOO".into()),
                uri: "tel:+7-495-123-45-67;phone-context=+7".into()
            }
        );
        assert_eq!(m.call_id, "abc");
        assert_eq!(m.cseq.method, Method::Other("FOO".into()));
        assert_eq!(m.from.uri.scheme, "tel");
        assert_eq!(m.from.uri.user.as_deref(), Some("+74951234567"));
        assert_eq!(m.from.tag.as_deref(), Some("a1"));
        assert_eq!(m.to.display_name.as_deref(), Some("Office"));
        assert_eq!(m.to.uri.user.as_deref(), Some("+74957654321"));
        assert_eq!(m.to.uri.host.as_deref(), Some("pbx.example.com"));
        let refer = m.refer_to.unwrap();
        assert_eq!(refer.uri.user.as_deref(), Some("102"));
        assert_eq!(refer.uri.host.as_deref(), Some("pbx.example.com"));
        assert_eq!(m.via_branch, None);
        assert_eq!(m.reason.as_deref(), Some("Q.850;cause=16"));
    }

    #[test]
    fn uris() {
        let u = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tls");
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host.as_deref(), Some("2001:db8::1"));
        let u = parse_uri("sip:PBX.Example.com:5060;lr");
        assert_eq!(u.user, None);
        assert_eq!(u.host.as_deref(), Some("pbx.example.com"));
        let u = parse_uri("urn:service:sos");
        assert_eq!((u.scheme.as_str(), u.user, u.host), ("urn", None, None));
        let u = parse_uri("no-scheme");
        assert_eq!(u.scheme, "");
        assert_eq!(u.raw, "no-scheme");
        assert_eq!(percent_decode("%2B7%zz%4"), "+7%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr("sip:101@h;tag=t1").unwrap();
        assert_eq!(
            (n.uri.user.as_deref(), n.tag.as_deref()),
            (Some("101"), Some("t1"))
        );
        let n = parse_name_addr("Bob <sip:102@h>;TAG=t2;x=y").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Bob"));
        assert_eq!(n.tag.as_deref(), Some("t2"));
        let n = parse_name_addr("\"A, B\" sip:103@h;tag=t3").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("A, B"));
        assert_eq!(n.uri.user.as_deref(), Some("103"));
        assert_eq!(n.tag.as_deref(), Some("t3"));
        assert_eq!(parse_name_addr("\"unterminated <sip:a@h>"), None);
        assert_eq!(parse_name_addr("<sip:a@h"), None);
        assert_eq!(parse_name_addr("<>"), None);
        assert_eq!(parse_name_addr(""), None);
    }

    #[test]
    fn methods() {
        assert_eq!(Method::parse("invite").unwrap(), Method::Invite);
        assert_eq!(Method::parse("PRACK").unwrap().as_str(), "PRACK");
        assert_eq!(Method::parse("x-Foo").unwrap().to_string(), "X-FOO");
        assert!(Method::Bye.is_known());
        assert!(!Method::Other("X".into()).is_known());
        for bad in ["", "IN VITE", "ÄÖ", &"A".repeat(33)] {
            assert_eq!(
                Method::parse(bad).unwrap_err(),
                SipError::BadMethod,
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_input_errors() {
        let headers =
            "\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n\r\n";
        let big = vec![b'a'; MAX_SIP_LEN + 1];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty message"),
            (b"\r\n\r\n".to_vec(), "empty message"),
            (big, "message is 65536 bytes, more than the 65535 allowed"),
            (
                b"HELLO\r\n".to_vec(),
                "start line is neither a SIP request nor a SIP response",
            ),
            (
                b"GET / HTTP/1.1\r\n".to_vec(),
                "start line is neither a SIP request nor a SIP response",
            ),
            (
                b"INVITE sip:a@h SIP/2.0 extra\r\n".to_vec(),
                "start line is neither a SIP request nor a SIP response",
            ),
            (
                b"SIP/2.0 99 Low\r\n".to_vec(),
                "status code is not a number from 100 to 699",
            ),
            (
                b"SIP/2.0 700 High\r\n".to_vec(),
                "status code is not a number from 100 to 699",
            ),
            (
                b"SIP/2.0\r\n".to_vec(),
                "status code is not a number from 100 to 699",
            ),
            (
                b"SIP/2.0 abc OK\r\n".to_vec(),
                "status code is not a number from 100 to 699",
            ),
            (
                b"IN(VITE sip:a@h SIP/2.0\r\n".to_vec(),
                "method is not a SIP token of at most 32 characters",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("Call-ID: a", "Call-ID:")
                )
                .into_bytes(),
                "missing Call-ID header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("Call-ID: a", "X: a")
                )
                .into_bytes(),
                "missing Call-ID header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("CSeq: 1 INVITE", "X: 1")
                )
                .into_bytes(),
                "missing CSeq header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("CSeq: 1 INVITE", "CSeq: INVITE")
                )
                .into_bytes(),
                "malformed CSeq header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE")
                )
                .into_bytes(),
                "malformed CSeq header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("CSeq: 1 INVITE", "CSeq: 1 IN@VITE")
                )
                .into_bytes(),
                "malformed CSeq header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("From: <sip:a@h>;tag=1", "X: y")
                )
                .into_bytes(),
                "missing From header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("From: <sip:a@h>;tag=1", "From: <sip:a@h")
                )
                .into_bytes(),
                "malformed From header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("To: <sip:b@h>", "X: y")
                )
                .into_bytes(),
                "missing To header",
            ),
            (
                format!(
                    "INVITE sip:a@h SIP/2.0{}",
                    headers.replace("To: <sip:b@h>", "To: \"x")
                )
                .into_bytes(),
                "malformed To header",
            ),
        ];
        for (input, message) in cases {
            let err = parse_sip(&input).unwrap_err();
            assert_eq!(
                err.to_string(),
                message,
                "{}",
                String::from_utf8_lossy(&input)
            );
        }
        // The good message the cases above are derived from does parse.
        parse_sip(format!("INVITE sip:a@h SIP/2.0{headers}").as_bytes()).unwrap();
    }

    #[test]
    fn headers_after_the_body_separator_are_not_read() {
        let text = "BYE sip:a@h SIP/2.0\r\nCSeq: 2 BYE\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\n\r\nCall-ID: in-body\r\n";
        assert_eq!(
            parse_sip(text.as_bytes()).unwrap_err(),
            SipError::MissingHeader("Call-ID")
        );
    }

    #[test]
    fn every_truncation_and_invalid_utf8_is_safe() {
        let bytes = INVITE.as_bytes();
        for end in 0..bytes.len() {
            let _ = parse_sip(&bytes[..end]);
        }
        let mut mangled = bytes.to_vec();
        mangled[30] = 0xff;
        mangled[60] = 0xc3;
        let _ = parse_sip(&mangled);
    }
}
