//! MIME: one raw RFC 5322 message in, a [`ParsedMail`] out. Pure, no I/O, never panics.
//!
//! mail-parser does the MIME work (multipart trees, transfer encodings, RFC 2047
//! encoded-words, charsets including KOI8-R, Windows-1251 and ISO-8859-5, RFC 2231
//! filenames), best-effort on broken input. On top of it this module:
//! - takes message ids from the raw header fields (angle brackets dropped, malformed ids
//!   dropped), addresses lower-cased;
//! - picks the body: `text/plain` when there is one, else text converted from the HTML;
//!   splits it into the new text and the quoted history plus signature (`quote`);
//! - sanitizes the HTML for display with ammonia (`html`);
//! - lists every non-body part as an attachment;
//! - tells bounces (RFC 3464 delivery status reports, or MAILER-DAEMON notices) and
//!   auto-replies (RFC 3834 `Auto-Submitted`, vendors' headers, vacation subjects) from
//!   normal mail;
//! - finds our thread reference token ([`thread_token`]).

mod html;
mod quote;

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use mail_parser::{
    Header, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use regex::Regex;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress {
    /// The display name, decoded; `None` when absent or empty.
    pub name: Option<String>,
    /// The address, lower-cased and trimmed.
    pub address: String,
}

/// What kind of mail this is, for the connector to decide whether it is a message from a
/// person.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MailKind {
    /// A message from a person (or a site form).
    #[default]
    Normal,
    /// RFC 3834 Auto-Submitted other than "no", X-Autoreply, X-Autorespond, Precedence: auto_reply/bulk/junk/list
    /// with vacation-like subjects, Exchange's X-MS-Exchange-Inbox-Rules-Loop/"Automatic reply:" etc.
    AutoReply,
    /// multipart/report; report-type=delivery-status, or from MAILER-DAEMON/postmaster with a DSN shape.
    Bounce {
        /// The Message-ID of the mail that bounced (from the returned message or headers).
        original_message_id: Option<String>,
        /// The recipient that failed (`Final-Recipient`, else from the notice's text).
        recipient: Option<String>,
        /// The RFC 3463 status code, e.g. "5.1.1". A report of successful delivery
        /// (`Action: delivered`, status "2.x.x") is also a `Bounce`: check the class.
        status: Option<String>,
    },
}

/// A part of the mail that is not its text or HTML body.
#[derive(Clone, PartialEq, Eq)]
pub struct MailAttachment {
    /// The decoded filename, or a made-up one (`attachment-2.png`, `message.eml`).
    pub name: String,
    /// `type/subtype`, lower-case, without parameters.
    pub mime_type: String,
    /// The decoded content (text parts as UTF-8; an attached message as its raw bytes).
    pub content: Vec<u8>,
    /// Shown in the body (`Content-Disposition: inline`, or a `Content-ID` without a
    /// disposition) rather than attached.
    pub inline: bool,
}

impl fmt::Debug for MailAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailAttachment")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .field("content", &format_args!("{} bytes", self.content.len()))
            .field("inline", &self.inline)
            .finish()
    }
}

/// One parsed mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMail {
    /// Without angle brackets, trimmed; `None` if missing/malformed.
    pub message_id: Option<String>,
    /// Ids without angle brackets, malformed ones dropped.
    pub in_reply_to: Vec<String>,
    /// In order, without angle brackets, malformed dropped.
    pub references: Vec<String>,
    /// Decoded (RFC 2047, any charset incl. KOI8-R / Windows-1251).
    pub subject: Option<String>,
    /// Re:/Fwd:/Ответ:/RE[2]: etc and our token stripped, lower-cased, whitespace collapsed.
    pub base_subject: String,
    pub from: Option<MailAddress>,
    pub reply_to: Option<MailAddress>,
    pub to: Vec<MailAddress>,
    pub cc: Vec<MailAddress>,
    pub date: Option<OffsetDateTime>,
    /// The NEW text only (from text/plain, or converted from HTML when only HTML).
    pub text: Option<String>,
    /// Quoted earlier messages + signature separated from the new text.
    pub quoted: Option<String>,
    /// The HTML body sanitized for display: no script/style/event handlers/forms/iframes;
    /// remote images replaced by their alt text; `cid:` images kept; links get
    /// `rel="noopener noreferrer" target="_blank"`.
    pub html: Option<String>,
    pub attachments: Vec<MailAttachment>,
    pub kind: MailKind,
    /// Our thread reference token if present in subject or body (see [`thread_token`]).
    pub token: Option<String>,
}

/// Bounds on what [`parse_mail`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A bigger message is [`MimeError::TooLarge`].
    pub max_message_bytes: usize,
    /// Attachments past this many are dropped.
    pub max_attachments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 30 * 1024 * 1024,
            max_attachments: 100,
        }
    }
}

/// Why a mail could not be parsed at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MimeError {
    #[error("message of {size} bytes is over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("not a mail message: no header block")]
    Unparseable,
}

/// Parses one raw message.
///
/// A malformed-but-parseable message (broken boundaries, bad encodings, missing headers)
/// is NOT an error: parse what is there. Only input that yields no message at all (empty,
/// not a header block) is `Unparseable`.
pub fn parse_mail(raw: &[u8], limits: &Limits) -> Result<ParsedMail, MimeError> {
    if raw.len() > limits.max_message_bytes {
        return Err(MimeError::TooLarge {
            size: raw.len(),
            max: limits.max_message_bytes,
        });
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(MimeError::Unparseable);
    }
    let msg = MessageParser::new()
        .parse(raw)
        .ok_or(MimeError::Unparseable)?;
    let root = msg.parts.first().ok_or(MimeError::Unparseable)?;
    // A header block has at least one field with a proper name ("hello world" is not one).
    let proper_name =
        |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !root.headers.iter().any(|h| proper_name(h.name.as_str())) {
        return Err(MimeError::Unparseable);
    }
    let headers = root.headers.as_slice();

    let subject = decode_subject(&msg, headers);
    let base_subject = subject.as_deref().map(base_subject).unwrap_or_default();
    let message_id = raw_header(&msg, headers, "message-id").and_then(|v| {
        let ids = extract_ids(&v);
        match ids.into_iter().next() {
            Some(id) => Some(id),
            None => bare_id(&v),
        }
    });
    let in_reply_to = all_ids(&msg, headers, "in-reply-to");
    let references = all_ids(&msg, headers, "references");
    let from = addresses(headers, "from").into_iter().next();
    let reply_to = addresses(headers, "reply-to").into_iter().next();
    let to = addresses(headers, "to");
    let cc = addresses(headers, "cc");
    let date = headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("date"))
        .and_then(|h| h.value.as_datetime())
        .and_then(to_offset_date_time);

    let (plain, html_src) = bodies(&msg);
    let body_text = match plain {
        Some(p) if !p.trim().is_empty() => Some(p),
        _ => html_src.as_deref().map(html::html_to_text),
    };
    let split = body_text
        .as_deref()
        .map(quote::split_quoted)
        .unwrap_or(quote::Split {
            text: None,
            quoted: None,
        });
    let html = html_src
        .as_deref()
        .map(html::sanitize_html)
        .filter(|h| !h.trim().is_empty());
    let attachments = attachments(&msg, limits.max_attachments);

    let kind = if let Some(bounce) = bounce(
        &msg,
        headers,
        from.as_ref(),
        subject.as_deref(),
        split.text.as_deref(),
        body_text.as_deref(),
    ) {
        bounce
    } else if is_auto_reply(&msg, headers, subject.as_deref()) {
        MailKind::AutoReply
    } else {
        MailKind::Normal
    };

    let token = [
        subject.as_deref(),
        split.text.as_deref(),
        split.quoted.as_deref(),
        html.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(find_token);

    Ok(ParsedMail {
        message_id,
        in_reply_to,
        references,
        subject,
        base_subject,
        from,
        reply_to,
        to,
        cc,
        date,
        text: split.text.map(|s| strip_nul(&s)),
        quoted: split.quoted.map(|s| strip_nul(&s)),
        html: html.map(|s| strip_nul(&s)),
        attachments,
        kind,
        token,
    })
}

/// NUL is valid in a decoded body but not in most databases' text; nothing shows it.
fn strip_nul(s: &str) -> String {
    s.replace('\0', "")
}

// ---------------------------------------------------------------------------------------
// Header fields

fn find_header<'a, 'x>(headers: &'a [Header<'x>], name: &str) -> Option<&'a Header<'x>> {
    headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
}

fn raw_bytes<'a>(msg: &'a Message<'_>, h: &Header<'_>) -> &'a [u8] {
    msg.raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default()
}

/// The raw value of a header field, unfolded and trimmed (lossy UTF-8).
fn unfold(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if i > 0 {
            out.push(' ');
        }
        out.push_str(line.trim_start_matches([' ', '\t']));
    }
    out.trim().to_owned()
}

fn raw_header(msg: &Message<'_>, headers: &[Header<'_>], name: &str) -> Option<String> {
    find_header(headers, name).map(|h| unfold(raw_bytes(msg, h)))
}

fn raw_headers(msg: &Message<'_>, headers: &[Header<'_>], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| unfold(raw_bytes(msg, h)))
        .collect()
}

/// An id is usable when it is non-empty, at most 250 bytes, and has no whitespace,
/// control characters or angle brackets.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

/// Every `<id>` in a header value, in order, without the brackets; comments skipped.
fn extract_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(lt) = rest.find('<') {
        let after = rest.get(lt + 1..).unwrap_or("");
        let Some(gt) = after.find('>') else {
            break;
        };
        let id = after.get(..gt).unwrap_or("").trim();
        if valid_id(id) && !ids.iter().any(|x| x == id) {
            ids.push(id.to_owned());
        }
        rest = after.get(gt + 1..).unwrap_or("");
    }
    ids
}

/// A Message-ID some broken clients write without brackets: one token with an '@'.
fn bare_id(value: &str) -> Option<String> {
    let v = value.trim();
    (valid_id(v) && v.contains('@')).then(|| v.to_owned())
}

fn all_ids(msg: &Message<'_>, headers: &[Header<'_>], name: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for v in raw_headers(msg, headers, name) {
        let mut found = extract_ids(&v);
        if found.is_empty() {
            found.extend(bare_id(&v));
        }
        for id in found {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

fn addresses(headers: &[Header<'_>], name: &str) -> Vec<MailAddress> {
    let mut out = Vec::new();
    for h in headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
    {
        let Some(list) = h.value.as_address() else {
            continue;
        };
        for a in list.iter() {
            let Some(address) = a.address.as_deref() else {
                continue;
            };
            let address = strip_nul(address.trim()).to_lowercase();
            if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
                continue;
            }
            let name = a
                .name
                .as_deref()
                .map(|n| strip_nul(n.trim().trim_matches('"').trim()))
                .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&address));
            out.push(MailAddress { name, address });
        }
    }
    out
}

fn to_offset_date_time(dt: &mail_parser::DateTime) -> Option<OffsetDateTime> {
    if !dt.is_valid() {
        return None;
    }
    let utc = OffsetDateTime::from_unix_timestamp(dt.to_timestamp()).ok()?;
    let sign = if dt.tz_before_gmt { -1 } else { 1 };
    let secs = sign * (i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60);
    match UtcOffset::from_whole_seconds(secs) {
        Ok(offset) => utc.checked_to_offset(offset).or(Some(utc)),
        Err(_) => Some(utc),
    }
}

/// The subject, decoded by mail-parser. A subject in raw 8-bit bytes that are not UTF-8
/// (no encoded-words) is decoded with the charset the message declares for its text.
fn decode_subject(msg: &Message<'_>, headers: &[Header<'_>]) -> Option<String> {
    let h = find_header(headers, "subject")?;
    let raw = raw_bytes(msg, h);
    let eight_bit_legacy = !raw.is_ascii() && std::str::from_utf8(raw).is_err();
    let has_encoded_words = raw.windows(2).any(|w| w == b"=?");
    let decoded = if eight_bit_legacy && !has_encoded_words {
        body_charset(msg)
            .and_then(|cs| mail_parser::decoders::charsets::map::charset_decoder(cs.as_bytes()))
            .map(|decode| unfold(decode(raw).as_bytes()))
    } else {
        None
    };
    let subject = match decoded {
        Some(s) => s,
        None => match &h.value {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::TextList(list) => list.join(" "),
            _ => unfold(raw),
        },
    };
    let subject = strip_nul(subject.trim());
    (!subject.is_empty()).then_some(subject)
}

/// The first `charset` parameter of any part.
fn body_charset(msg: &Message<'_>) -> Option<String> {
    msg.parts.iter().find_map(|p| {
        p.content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_owned)
    })
}

static SUBJECT_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|ref|odp|ynt|ответ|отв|пересл|переслать|перес|fwd?|回复|回覆|转发|答复)\s*(\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*")
        .expect("static regex compiles")
});

/// The subject as threads compare it: reply/forward prefixes (in any number, in several
/// languages) and our token removed, lower-cased, whitespace collapsed.
pub fn base_subject(subject: &str) -> String {
    let without_token = TOKEN.replace_all(subject, " ");
    let mut s: &str = &without_token;
    while let Some(m) = SUBJECT_PREFIX.find(s) {
        if m.end() == 0 {
            break;
        }
        s = s.get(m.end()..).unwrap_or("");
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

// ---------------------------------------------------------------------------------------
// Bodies and attachments

/// The text/plain bodies joined, and the text/html bodies joined.
fn bodies(msg: &Message<'_>) -> (Option<String>, Option<String>) {
    let mut plain: Vec<&str> = Vec::new();
    for id in &msg.text_body {
        if let Some(PartType::Text(t)) = msg.parts.get(*id as usize).map(|p| &p.body) {
            plain.push(t);
        }
    }
    let mut html: Vec<&str> = Vec::new();
    for id in &msg.html_body {
        if let Some(PartType::Html(t)) = msg.parts.get(*id as usize).map(|p| &p.body) {
            html.push(t);
        }
    }
    let join = |v: Vec<&str>| (!v.is_empty()).then(|| v.join("\n"));
    (join(plain), join(html))
}

fn is_body_part(msg: &Message<'_>, index: usize, part: &MessagePart<'_>) -> bool {
    let in_list = |list: &[u32]| list.iter().any(|&id| id as usize == index);
    match part.body {
        PartType::Text(_) => in_list(&msg.text_body),
        PartType::Html(_) => in_list(&msg.html_body),
        _ => false,
    }
}

fn attachments(msg: &Message<'_>, max: usize) -> Vec<MailAttachment> {
    let mut out = Vec::new();
    for (index, part) in msg.parts.iter().enumerate() {
        if out.len() >= max {
            break;
        }
        if matches!(part.body, PartType::Multipart(_)) || is_body_part(msg, index, part) {
            continue;
        }
        let content: Vec<u8> = match &part.body {
            PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Message(_) => msg
                .raw_message
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or_default()
                .to_vec(),
            PartType::Multipart(_) => continue,
        };
        let mime_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_whitespace))
            .unwrap_or_else(|| {
                match part.body {
                    PartType::Text(_) => "text/plain",
                    PartType::Html(_) => "text/html",
                    PartType::Message(_) => "message/rfc822",
                    _ => "application/octet-stream",
                }
                .to_owned()
            });
        let name = part
            .attachment_name()
            .map(|n| strip_nul(n.trim()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                if matches!(part.body, PartType::Message(_)) {
                    "message.eml".to_owned()
                } else {
                    format!("attachment-{}{}", out.len() + 1, extension(&mime_type))
                }
            });
        let inline = match part.content_disposition() {
            Some(cd) => cd.ctype().eq_ignore_ascii_case("inline"),
            None => part.content_id().is_some(),
        };
        out.push(MailAttachment {
            name,
            mime_type,
            content,
            inline,
        });
    }
    out
}

fn extension(mime_type: &str) -> &'static str {
    match mime_type {
        "image/png" => ".png",
        "image/jpeg" | "image/jpg" => ".jpg",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        "text/html" => ".html",
        "text/calendar" => ".ics",
        "message/rfc822" => ".eml",
        "message/delivery-status" | "message/global-delivery-status" => ".txt",
        "text/rfc822-headers" => ".txt",
        _ => ".bin",
    }
}

// ---------------------------------------------------------------------------------------
// Bounces and auto-replies

fn header_lower(msg: &Message<'_>, headers: &[Header<'_>], name: &str) -> Option<String> {
    raw_header(msg, headers, name).map(|v| v.to_lowercase())
}

fn part_type(part: &MessagePart<'_>) -> Option<(String, String)> {
    part.content_type().map(|ct| {
        (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        )
    })
}

fn part_text<'a>(msg: &'a Message<'_>, part: &'a MessagePart<'_>) -> Cow<'a, str> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_ref()),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b),
        PartType::Message(_) => String::from_utf8_lossy(
            msg.raw_message
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or_default(),
        ),
        PartType::Multipart(_) => Cow::Borrowed(""),
    }
}

static BOUNCE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(mail delivery failed|undeliver|undelivered mail|delivery status notification|delivery failure|failure notice|returned mail|delivery has failed|could not be delivered|mail system error|non[- ]?delivery|недоставленное сообщение|сообщение не доставлено|не удалось доставить|не доставлено|ошибка доставки)")
        .expect("static regex compiles")
});
static BOUNCE_BODY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(could not be delivered|couldn't be delivered|undeliverable|delivery to the following recipient|permanent error|address(es)? failed|smtp error from remote|user unknown|mailbox unavailable|no such user|не может быть доставлено|не удалось доставить|не доставлено|\b[45]\.\d{1,3}\.\d{1,3}\b)")
        .expect("static regex compiles")
});
static STATUS_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([245]\.\d{1,3}\.\d{1,3})\b").expect("static regex compiles"));
static MESSAGE_ID_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t]*message-id:[ \t]*<([^<>\s]{1,250})>").expect("static regex compiles")
});
static RCPT_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)rcpt to:\s*<([^<>\s@]+@[^<>\s@]+)>").expect("static regex compiles")
});
/// A line that is only an address (Exim: "  user@example.com"), or Postfix's
/// "<user@example.com>: host … said".
static ADDRESS_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^[ \t]*<?([^<>\s@:]+@[^<>\s@:]+?)>?:?[ \t]*(?:\r?$|host\b|\()")
        .expect("static regex compiles")
});

fn is_daemon(from: Option<&MailAddress>) -> bool {
    let Some(from) = from else {
        return false;
    };
    let local = from.address.split('@').next().unwrap_or("");
    matches!(
        local,
        "mailer-daemon" | "mailerdaemon" | "mail-daemon" | "postmaster" | "mdaemon"
    ) || from.name.as_deref().is_some_and(|n| {
        let n = n.to_lowercase();
        n.contains("mail delivery") || n.contains("mailer-daemon")
    })
}

fn bounce(
    msg: &Message<'_>,
    headers: &[Header<'_>],
    from: Option<&MailAddress>,
    subject: Option<&str>,
    text: Option<&str>,
    body: Option<&str>,
) -> Option<MailKind> {
    let root_is_report = msg
        .parts
        .first()
        .and_then(|p| p.content_type())
        .is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                && ct
                    .attribute("report-type")
                    .is_some_and(|t| t.to_ascii_lowercase().contains("delivery-status"))
        });
    let status_part = msg.parts.iter().find(|p| {
        part_type(p).is_some_and(|(t, s)| {
            t == "message" && (s == "delivery-status" || s == "global-delivery-status")
        })
    });
    let daemon_shape = status_part.is_some()
        || subject.is_some_and(|s| BOUNCE_SUBJECT.is_match(s))
        || body.is_some_and(|b| BOUNCE_BODY.is_match(b));
    let is_bounce = root_is_report || (is_daemon(from) && daemon_shape);
    if !is_bounce {
        return None;
    }

    let mut recipient = None;
    let mut original_recipient = None;
    let mut status = None;
    if let Some(part) = status_part {
        for line in part_text(msg, part).lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let addr = || {
                let a = value.rsplit(';').next().unwrap_or(value).trim();
                let a = a.trim_start_matches('<').trim_end_matches('>').trim();
                (!a.is_empty()).then(|| a.to_lowercase())
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "final-recipient" if recipient.is_none() => recipient = addr(),
                "original-recipient" if original_recipient.is_none() => original_recipient = addr(),
                "status" if status.is_none() => {
                    status = value
                        .split_whitespace()
                        .next()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned);
                }
                _ => {}
            }
        }
    }
    // Exim names the failed addresses in a header of the notice.
    let failed_header = || {
        header_lower(msg, headers, "x-failed-recipients").and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|a| a.contains('@') && valid_id(a))
                .map(str::to_owned)
        })
    };
    let recipient = recipient.or(original_recipient).or_else(failed_header);

    // Text of the notice: the human-readable part(s) plus any returned headers.
    let mut notice = String::new();
    for t in [text, body].into_iter().flatten() {
        notice.push_str(t);
        notice.push('\n');
    }
    let mut original_message_id = None;
    for part in msg.parts.iter().skip(1) {
        match &part.body {
            PartType::Message(inner) if original_message_id.is_none() => {
                original_message_id = inner
                    .parts
                    .first()
                    .and_then(|p| find_header(&p.headers, "message-id"))
                    .and_then(|h| h.value.as_text())
                    .map(|s| {
                        s.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_owned()
                    })
                    .filter(|s| valid_id(s));
            }
            PartType::Text(t)
                if part_type(part)
                    .is_some_and(|(ty, sub)| ty == "text" && sub == "rfc822-headers") =>
            {
                notice.push_str(t);
                notice.push('\n');
            }
            _ => {}
        }
    }
    if original_message_id.is_none() {
        original_message_id = MESSAGE_ID_LINE
            .captures(&notice)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
            .filter(|s| valid_id(s));
    }
    let recipient = recipient.or_else(|| {
        let daemon = from.map(|f| f.address.as_str()).unwrap_or("");
        RCPT_TO
            .captures(&notice)
            .and_then(|c| c.get(1))
            .or_else(|| {
                ADDRESS_LINE
                    .captures_iter(&notice)
                    .filter_map(|c| c.get(1))
                    .find(|m| !m.as_str().eq_ignore_ascii_case(daemon))
            })
            .map(|m| m.as_str().to_lowercase())
    });
    let status = status.or_else(|| {
        STATUS_CODE
            .captures(&notice)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
    });
    Some(MailKind::Bounce {
        original_message_id,
        recipient: recipient.map(|r| strip_nul(&r)),
        status,
    })
}

static VACATION_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(out of (the )?office|vacation|away from (the )?office|on leave|holiday|auto[- ]?reply|automatic reply|auto[- ]?response|autoresponder|abwesenheit|absence|автоответ|автоматический ответ|в отпуске|отпуск|нет на месте|не в офисе)")
        .expect("static regex compiles")
});
/// Subjects no person writes: what Exchange, Outlook, Yandex, Mail.ru put on auto-replies.
static AUTO_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(automatic reply|auto[- ]?reply|auto[- ]?response|out of (the )?office( reply| autoreply)?|autosvar|abwesenheitsnotiz|réponse automatique|автоответ|автоматический ответ)\s*(:|$)")
        .expect("static regex compiles")
});

fn is_auto_reply(msg: &Message<'_>, headers: &[Header<'_>], subject: Option<&str>) -> bool {
    let first_token = |v: String| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    if let Some(v) = header_lower(msg, headers, "auto-submitted").map(first_token) {
        if !v.is_empty() && v != "no" {
            return true;
        }
    }
    if let Some(v) = header_lower(msg, headers, "x-autoreply").map(first_token) {
        if v != "no" && v != "false" {
            return true;
        }
    }
    if find_header(headers, "x-autorespond").is_some() {
        return true;
    }
    if header_lower(msg, headers, "x-autogenerated").is_some_and(|v| v.contains("reply")) {
        return true;
    }
    let vacation = subject.is_some_and(|s| VACATION_SUBJECT.is_match(s));
    let precedence = header_lower(msg, headers, "precedence").map(first_token);
    match precedence.as_deref() {
        Some("auto_reply" | "auto-reply") => return true,
        Some("bulk" | "junk" | "list") if vacation => return true,
        _ => {}
    }
    if let Some(s) = subject {
        if AUTO_SUBJECT.is_match(s) {
            return true;
        }
    }
    if vacation
        && (find_header(headers, "x-ms-exchange-inbox-rules-loop").is_some()
            || find_header(headers, "x-auto-response-suppress").is_some())
    {
        return true;
    }
    false
}

// ---------------------------------------------------------------------------------------
// Thread token

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\[K-([a-z0-9]{8})\]").expect("static regex compiles"));

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The reference token we put into outgoing mail so a reply whose References were broken still finds its dialog:
/// `[K-XXXXXXXX]` where XXXXXXXX is 8 chars of lower-case base32 of a hash of the thread id.
///
/// Returns the token without brackets, e.g. `"K-mfrggzdf"`: the first 40 bits of the
/// SHA-256 of the thread id, in RFC 4648 base32, lower-case.
pub fn thread_token(thread_id: &str) -> String {
    let digest = Sha256::digest(thread_id.as_bytes());
    let mut bits: u64 = 0;
    for b in digest.iter().take(5) {
        bits = (bits << 8) | u64::from(*b);
    }
    let mut out = String::with_capacity(10);
    out.push_str("K-");
    for i in (0..8).rev() {
        let idx = ((bits >> (i * 5)) & 0x1f) as usize;
        out.push(char::from(BASE32.get(idx).copied().unwrap_or(b'a')));
    }
    out
}

/// Finds "[K-xxxxxxxx]" anywhere, returns "K-xxxxxxxx" (the 8 characters lower-cased;
/// the brackets and the `K` may be in any case, as some clients upper-case subjects).
pub fn find_token(text: &str) -> Option<String> {
    TOKEN
        .captures(text)
        .and_then(|c| c.get(1))
        .map(|m| format!("K-{}", m.as_str().to_ascii_lowercase()))
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ParsedMail {
        parse_mail(s.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn token_round_trip() {
        let t = thread_token("thread-42");
        assert_eq!(t.len(), 10);
        assert!(t.starts_with("K-"));
        assert!(t[2..].chars().all(|c| BASE32.contains(&(c as u8))));
        assert_eq!(t, thread_token("thread-42"));
        assert_ne!(t, thread_token("thread-43"));
        assert_eq!(
            find_token(&format!("Re: Order [{t}] shipped")),
            Some(t.clone())
        );
        assert_eq!(
            find_token(&format!("RE: ORDER [{}]", t.to_uppercase())),
            Some(t)
        );
        assert_eq!(find_token("[K-abc]"), None);
        assert_eq!(find_token("[K-abcdefgh"), None);
        assert_eq!(find_token(""), None);
    }

    #[test]
    fn base_subject_strips_prefixes() {
        assert_eq!(base_subject("Re: RE[2]: Fwd:  Order   42"), "order 42");
        assert_eq!(base_subject("Ответ: Пересл: Заказ №5"), "заказ №5");
        assert_eq!(base_subject("AW: WG: Angebot [K-abcdefgh]"), "angebot");
        assert_eq!(base_subject("Re:"), "");
        assert_eq!(base_subject("Regarding: x"), "regarding: x");
    }

    #[test]
    fn ids_are_taken_without_brackets_and_malformed_dropped() {
        assert_eq!(
            extract_ids("<a@b> (comment) <c@d>  <> <x y@z> <a@b>"),
            vec!["a@b", "c@d"]
        );
        let m = parse("Message-ID: bare@example.com\r\nIn-Reply-To: <p@x> (Ivan's message of Tuesday)\r\nReferences: <r1@x>\r\n <r2@x>\r\n\tbroken <p@x>\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(m.message_id.as_deref(), Some("bare@example.com"));
        assert_eq!(m.in_reply_to, vec!["p@x"]);
        assert_eq!(m.references, vec!["r1@x", "r2@x", "p@x"]);
        let m = parse("Message-ID: not an id\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(m.message_id, None);
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_message_bytes: 10,
            max_attachments: 1,
        };
        assert_eq!(
            parse_mail(b"Subject: longer than ten\r\n\r\nx", &limits),
            Err(MimeError::TooLarge { size: 29, max: 10 })
        );
        assert_eq!(
            parse_mail(b"", &Limits::default()),
            Err(MimeError::Unparseable)
        );
        assert_eq!(
            parse_mail(b" \r\n\r\n", &Limits::default()),
            Err(MimeError::Unparseable)
        );
    }
}
