//! Outbound: each [`OutboundMessage`] becomes one or more Cloud API messages (the text,
//! then each attachment; a lone caption-capable first attachment carries the text), sent
//! in order. Transient failures are retried here with backoff; a refusal becomes
//! `outbound_failed`.

use std::future::Future;
use std::time::Duration;

use kommutator_sdk::{
    Attachment, CancellationToken, ConnectorContext, ConnectorError, IdentityKind, InboundEvent,
    OutboundMessage,
};
use time::OffsetDateTime;

use crate::api::{media_message, text_message, ApiError, Graph, MediaKind, MediaSource};

/// The longest text body the Cloud API takes, in characters; longer texts are split.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The longest caption, in characters; a longer text goes as its own message.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// Tries per request, the first included.
    pub(crate) attempts: u32,
    /// The first delay; doubled after each failure.
    pub(crate) base: Duration,
    /// The longest delay, `Retry-After` included.
    pub(crate) max: Duration,
}

impl Retry {
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let factor = 2_u32.saturating_pow(failures.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// How a message ended.
enum Outcome {
    /// Accepted; the wamid of its first part.
    Sent(String),
    /// Refused for good, with the operator-facing reason.
    Refused(String),
    /// Shutdown came first.
    Shutdown,
}

/// Why a request did not go through.
enum Fail {
    Refused(ApiError),
    Shutdown,
    GaveUp(ConnectorError),
}

/// Reads outbound messages until shutdown and sends each.
pub(crate) async fn run(
    graph: Graph,
    retry: Retry,
    mut ctx: ConnectorContext,
) -> Result<(), ConnectorError> {
    let shutdown = ctx.shutdown().clone();
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            msg = ctx.recv_outbound() => msg.ok_or(ConnectorError::Closed)?,
        };
        let event = match deliver(&graph, retry, &ctx, &shutdown, &msg).await? {
            Outcome::Sent(wamid) => {
                tracing::debug!(message_id = msg.id, %wamid, "whatsapp: message sent");
                InboundEvent::outbound_ack(
                    ctx.id().clone(),
                    msg.id,
                    wamid,
                    OffsetDateTime::now_utc(),
                )
            }
            Outcome::Refused(reason) => {
                tracing::warn!(message_id = msg.id, %reason, "whatsapp: message refused");
                InboundEvent::outbound_failed(
                    ctx.id().clone(),
                    msg.id,
                    reason,
                    OffsetDateTime::now_utc(),
                )
            }
            Outcome::Shutdown => return Ok(()),
        };
        ctx.send(event).await?;
    }
}

/// The wa_id to send to: the thread (the customer's wa_id), else `to`.
pub(crate) fn recipient(msg: &OutboundMessage) -> Option<String> {
    let digits = |s: &str| -> String { s.chars().filter(char::is_ascii_digit).collect() };
    let thread = msg.thread_id.trim().trim_start_matches('+');
    if !thread.is_empty() {
        return Some(thread.to_owned());
    }
    msg.to
        .as_ref()
        .filter(|to| matches!(to.kind, IdentityKind::Whatsapp | IdentityKind::Phone))
        .map(|to| digits(&to.value))
        .filter(|d| !d.is_empty())
}

/// One Cloud API message of an outbound message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part<'a> {
    Text(String),
    Media {
        attachment: &'a Attachment,
        caption: Option<String>,
    },
}

/// Splits `text` into pieces of at most `max` characters.
fn chunks(text: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(max.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The messages to send, in order: the text first (or as the caption of a lone first
/// attachment that takes one), then each attachment.
pub(crate) fn plan(msg: &OutboundMessage) -> Vec<Part<'_>> {
    let text = msg.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let mut parts = Vec::new();
    let mut caption = None;
    if let Some(t) = text {
        let first_takes_caption = msg
            .attachments
            .first()
            .is_some_and(|a| MediaKind::for_mime(&a.mime_type).takes_caption());
        if msg.attachments.len() == 1
            && first_takes_caption
            && t.chars().count() <= MAX_CAPTION_CHARS
        {
            caption = Some(t.to_owned());
        } else {
            parts.extend(chunks(t, MAX_TEXT_CHARS).into_iter().map(Part::Text));
        }
    }
    for a in &msg.attachments {
        parts.push(Part::Media {
            attachment: a,
            caption: caption.take(),
        });
    }
    parts
}

async fn deliver(
    graph: &Graph,
    retry: Retry,
    ctx: &ConnectorContext,
    shutdown: &CancellationToken,
    msg: &OutboundMessage,
) -> Result<Outcome, ConnectorError> {
    let Some(to) = recipient(msg) else {
        return Ok(Outcome::Refused(
            "no recipient: the message has neither a thread id nor a WhatsApp number".to_owned(),
        ));
    };
    // Only a wamid can be quoted; derived keys (`{wamid}:{status}`) cannot.
    let reply_to = msg
        .reply_to_external_id
        .as_deref()
        .filter(|r| r.starts_with("wamid.") && !r.contains(':'));
    let parts = plan(msg);
    if parts.is_empty() {
        return Ok(Outcome::Refused(
            "nothing to send: no text and no attachment".to_owned(),
        ));
    }
    let total = parts.len();
    let mut first = None;
    for (i, part) in parts.iter().enumerate() {
        let context = if i == 0 { reply_to } else { None };
        let sent = match part {
            Part::Text(t) => {
                let body = text_message(&to, t, context);
                retrying(retry, shutdown, || graph.send(&body)).await
            }
            Part::Media {
                attachment,
                caption,
            } => {
                send_media(
                    graph,
                    retry,
                    ctx,
                    shutdown,
                    &to,
                    attachment,
                    caption.as_deref(),
                    context,
                )
                .await
            }
        };
        match sent {
            Ok(wamid) => {
                first.get_or_insert(wamid);
            }
            Err(Fail::Shutdown) => return Ok(Outcome::Shutdown),
            Err(Fail::GaveUp(e)) => return Err(e),
            Err(Fail::Refused(e)) => {
                if e.is_token_error() {
                    tracing::error!(
                        reason = %e,
                        "whatsapp: the access token was rejected; fix `access_token`"
                    );
                }
                let mut reason = e.to_string();
                if i > 0 {
                    reason = format!("{reason} (after {i} of {total} parts were sent)");
                }
                return Ok(Outcome::Refused(reason));
            }
        }
    }
    Ok(first.map_or_else(
        || Outcome::Refused("nothing was sent".to_owned()),
        Outcome::Sent,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn send_media(
    graph: &Graph,
    retry: Retry,
    ctx: &ConnectorContext,
    shutdown: &CancellationToken,
    to: &str,
    attachment: &Attachment,
    caption: Option<&str>,
    context: Option<&str>,
) -> Result<String, Fail> {
    let reference = attachment.url_or_ref.trim();
    let name = attachment.name.as_str();
    if reference.starts_with("https://") || reference.starts_with("http://") {
        let kind = MediaKind::for_mime(&attachment.mime_type);
        let body = media_message(
            to,
            kind,
            MediaSource::Link(reference),
            caption,
            Some(name),
            context,
        );
        return retrying(retry, shutdown, || graph.send(&body)).await;
    }
    let file = match ctx.files().get(reference).await {
        Ok(Some(file)) => file,
        Ok(None) => {
            return Err(Fail::Refused(ApiError::Refused {
                code: None,
                reason: format!(
                    "attachment `{name}` is neither a file of the hub nor an http(s) URL"
                ),
            }))
        }
        Err(e) => return Err(Fail::GaveUp(e)),
    };
    let mime = if file.mime_type.trim().is_empty() {
        attachment.mime_type.clone()
    } else {
        file.mime_type.clone()
    };
    let kind = MediaKind::for_mime(&mime);
    let file_name = if file.name.is_empty() {
        name
    } else {
        file.name.as_str()
    };
    let media_id = retrying(retry, shutdown, || {
        graph.upload(file_name, &mime, file.content.clone())
    })
    .await?;
    let body = media_message(
        to,
        kind,
        MediaSource::Id(&media_id),
        caption,
        Some(file_name),
        context,
    );
    retrying(retry, shutdown, || graph.send(&body)).await
}

/// Runs `op` until it succeeds, is refused, shutdown comes, or the tries run out.
async fn retrying<T, F, Fut>(
    retry: Retry,
    shutdown: &CancellationToken,
    mut op: F,
) -> Result<T, Fail>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut failures = 0;
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return Err(Fail::Shutdown),
            r = op() => r,
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e @ ApiError::Refused { .. }) => return Err(Fail::Refused(e)),
            Err(ApiError::Transient {
                message,
                rate_limited,
                retry_after,
            }) => {
                failures += 1;
                if failures >= retry.attempts {
                    return Err(Fail::GaveUp(if rate_limited {
                        ConnectorError::RateLimited { retry_after }
                    } else {
                        ConnectorError::connect(message)
                    }));
                }
                let delay = retry_after
                    .unwrap_or_else(|| retry.delay(failures))
                    .min(retry.max);
                tracing::warn!(
                    error = %message,
                    rate_limited,
                    retry_in_ms = delay.as_millis() as u64,
                    "whatsapp: request failed, retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return Err(Fail::Shutdown),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kommutator_sdk::{ConnectorId, PartyIdentity};

    use super::*;

    fn msg(text: Option<&str>, attachments: Vec<Attachment>) -> OutboundMessage {
        OutboundMessage {
            id: 1,
            connector_id: ConnectorId::new("wa"),
            thread_id: "16315551234".to_owned(),
            to: None,
            subject: None,
            text: text.map(str::to_owned),
            attachments,
            reply_to_external_id: None,
        }
    }

    fn att(name: &str, mime: &str) -> Attachment {
        Attachment {
            name: name.to_owned(),
            mime_type: mime.to_owned(),
            size: None,
            url_or_ref: "memory:1".to_owned(),
        }
    }

    #[test]
    fn recipient_prefers_the_thread() {
        let mut m = msg(Some("hi"), vec![]);
        assert_eq!(recipient(&m).as_deref(), Some("16315551234"));
        m.thread_id = " ".to_owned();
        m.to = Some(PartyIdentity::new(IdentityKind::Phone, "+1 (631) 555-1234"));
        assert_eq!(recipient(&m).as_deref(), Some("16315551234"));
        m.to = Some(PartyIdentity::new(IdentityKind::Email, "a@b.c"));
        assert_eq!(recipient(&m), None);
    }

    #[test]
    fn plan_puts_text_in_a_lone_caption() {
        let photo = att("a.jpg", "image/jpeg");
        let voice = att("a.ogg", "audio/ogg");
        let m = msg(Some(" look "), vec![photo.clone()]);
        assert_eq!(
            plan(&m),
            vec![Part::Media {
                attachment: &photo,
                caption: Some("look".to_owned())
            }]
        );
        let m = msg(Some("listen"), vec![voice.clone()]);
        assert_eq!(
            plan(&m),
            vec![
                Part::Text("listen".to_owned()),
                Part::Media {
                    attachment: &voice,
                    caption: None
                }
            ]
        );
        let m = msg(Some("two"), vec![photo.clone(), voice.clone()]);
        assert_eq!(plan(&m).len(), 3);
        let long = "я".repeat(MAX_TEXT_CHARS + 1);
        let m = msg(Some(&long), vec![]);
        let p = plan(&m);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1], Part::Text("я".to_owned()));
        assert!(plan(&msg(Some("  "), vec![])).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let got: Vec<u64> = (1..=5).map(|n| r.delay(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
        assert_eq!(r.delay(100), Duration::from_secs(5));
    }
}
