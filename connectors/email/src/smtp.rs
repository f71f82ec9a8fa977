//! Outbound: an [`OutboundMessage`] → a threaded mail sent by SMTP, a copy APPENDed to
//! the Sent mailbox, an `outbound_ack` keyed by our Message-ID.

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{
    CancellationToken, ConnectorContext, ConnectorError, IdentityKind, InboundEvent,
    OutboundMessage,
};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::thread::{self, ThreadInfo, MAX_REFERENCES};
use crate::{imap, mime, Shared, TlsMode};

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Our Message-ID of outbound message `outbound_id` (without angle brackets):
/// `{connector id}.{outbound id}.{hash}@{domain}`, the same every time the same message
/// is handed over, so a resend after a restart is recognisably the same mail.
pub fn message_id(connector_id: &str, outbound_id: i64, thread_id: &str, domain: &str) -> String {
    let safe: String = connector_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut h = Sha256::new();
    h.update(connector_id.as_bytes());
    h.update(b"|");
    h.update(outbound_id.to_string().as_bytes());
    h.update(b"|");
    h.update(thread_id.as_bytes());
    let hash = hex::encode(h.finalize());
    let short = hash.get(..12).unwrap_or(&hash);
    format!("{safe}.{outbound_id}.{short}@{domain}")
}

fn strip_brackets(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Why a message cannot be prepared.
enum Refusal {
    /// For good: report `outbound_failed` with this reason.
    Failed(String),
    /// A transient failure (the file store): return it, the hub hands the message over again.
    Retry(ConnectorError),
}

impl From<ConnectorError> for Refusal {
    fn from(e: ConnectorError) -> Self {
        Self::Retry(e)
    }
}

struct Prepared {
    message: Message,
    message_id: String,
    thread_id: String,
    fallback: ThreadInfo,
}

/// The sending side of an instance.
pub(crate) struct Outbound {
    shared: Arc<Shared>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Outbound {
    /// Builds the SMTP transport; no I/O.
    pub(crate) fn new(shared: Arc<Shared>) -> Result<Self, ConnectorError> {
        let cfg = &shared.cfg.smtp;
        let builder = match cfg.tls {
            TlsMode::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host),
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host),
            TlsMode::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &cfg.host,
            )),
        }
        .map_err(|e| ConnectorError::config("smtp.host", e.to_string()))?;
        let mut builder = builder
            .port(cfg.port())
            .timeout(Some(SMTP_TIMEOUT))
            .hello_name(ClientId::Domain(shared.domain.clone()));
        if let Some(user) = &cfg.username {
            let pass = cfg.password.as_ref().map(|p| p.expose().to_owned());
            builder = builder.credentials(Credentials::new(user.clone(), pass.unwrap_or_default()));
        }
        Ok(Self {
            transport: builder.build(),
            shared,
        })
    }

    /// Sends `msg` and reports it to the hub; retries transient SMTP failures with
    /// backoff until `shutdown` (then returns `Ok`, leaving the message unacked).
    ///
    /// # Errors
    ///
    /// `send` failures and transient store failures (retryable).
    pub(crate) async fn deliver(
        &mut self,
        ctx: &ConnectorContext,
        msg: OutboundMessage,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let now = OffsetDateTime::now_utc();
        let prepared = match self.prepare(ctx, &msg).await {
            Ok(p) => p,
            Err(Refusal::Failed(reason)) => {
                tracing::warn!(outbound = msg.id, %reason, "outbound mail refused");
                return ctx
                    .send(InboundEvent::outbound_failed(
                        ctx.id().clone(),
                        msg.id,
                        reason,
                        now,
                    ))
                    .await;
            }
            Err(Refusal::Retry(e)) => return Err(e),
        };
        let mut attempt: u32 = 0;
        loop {
            let sent = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = self.transport.send(prepared.message.clone()) => r,
            };
            match sent {
                Ok(_) => break,
                Err(e) if e.is_permanent() => {
                    let reason = format!("smtp refused the mail: {e}");
                    tracing::warn!(outbound = msg.id, %reason, "outbound mail failed");
                    return ctx
                        .send(InboundEvent::outbound_failed(
                            ctx.id().clone(),
                            msg.id,
                            reason,
                            OffsetDateTime::now_utc(),
                        ))
                        .await;
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    let delay = imap::backoff(attempt);
                    tracing::warn!(
                        outbound = msg.id, error = %e,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "smtp send failed, retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::info!(outbound = msg.id, message_id = %prepared.message_id, "mail sent");

        let sent_box = &self.shared.cfg.imap.sent_mailbox;
        if !sent_box.is_empty() {
            let raw = prepared.message.formatted();
            if let Err(e) = imap::append(&self.shared.cfg.imap, sent_box, &raw).await {
                // Sent already: a missing copy must not make us send it twice.
                tracing::warn!(outbound = msg.id, mailbox = %sent_box, error = %e, "copy to the sent mailbox failed");
            }
        }
        self.shared
            .threads
            .record_outbound(&prepared.thread_id, &prepared.message_id, prepared.fallback)
            .await?;
        ctx.send(InboundEvent::outbound_ack(
            ctx.id().clone(),
            msg.id,
            prepared.message_id,
            OffsetDateTime::now_utc(),
        ))
        .await
    }

    async fn prepare(
        &self,
        ctx: &ConnectorContext,
        msg: &OutboundMessage,
    ) -> Result<Prepared, Refusal> {
        let shared = &self.shared;
        let thread_id = msg.thread_id.trim().to_owned();
        let info = shared.threads.info(&thread_id).await?;
        let to_identity = msg
            .to
            .as_ref()
            .filter(|i| i.kind == IdentityKind::Email)
            .map(|i| i.value.trim().to_lowercase());

        // A known thread goes to its counterpart; `to` is for conversations we have not seen.
        let (rcpt, rcpt_name) = match &info {
            Some(i) if !i.counterpart_address.is_empty() => {
                (i.counterpart_address.clone(), i.counterpart_name.clone())
            }
            _ => match &to_identity {
                Some(a) => (a.clone(), None),
                None => {
                    return Err(Refusal::Failed(
                        "no recipient: the thread is unknown and `to` has no email address"
                            .to_owned(),
                    ))
                }
            },
        };
        let rcpt_addr: Address = rcpt
            .parse()
            .map_err(|_| Refusal::Failed(format!("recipient {rcpt:?} is not a valid address")))?;
        let from_addr: Address = shared.cfg.address.trim().parse().map_err(|_| {
            Refusal::Retry(ConnectorError::config("address", "is not a valid address"))
        })?;

        let token = mime::thread_token(&thread_id);
        let subject = match &info {
            Some(i) => thread::reply_subject(&i.subject, &token),
            None => {
                let s = thread::strip_token(msg.subject.as_deref().unwrap_or_default());
                let s = if s.is_empty() {
                    "(no subject)".to_owned()
                } else {
                    s
                };
                format!("{s} [{token}]")
            }
        };
        let in_reply_to = msg
            .reply_to_external_id
            .as_deref()
            .map(strip_brackets)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                info.as_ref()
                    .and_then(|i| i.last_inbound_message_id.clone())
            });
        let mut references: Vec<String> = info
            .as_ref()
            .map(|i| i.references.clone())
            .unwrap_or_default();
        if let Some(irt) = &in_reply_to {
            references.retain(|r| r != irt);
            references.push(irt.clone());
        }
        let excess = references.len().saturating_sub(MAX_REFERENCES);
        references.drain(..excess);

        let mid = message_id(ctx.id().as_str(), msg.id, &thread_id, &shared.domain);

        let mut text = msg.text.clone().unwrap_or_default();
        let mut files = Vec::new();
        for a in &msg.attachments {
            match ctx.files().get(&a.url_or_ref).await? {
                Some(f) => files.push(f),
                None if a.url_or_ref.starts_with("https://")
                    || a.url_or_ref.starts_with("http://") =>
                {
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&format!("\n{}: {}", a.name, a.url_or_ref));
                }
                None => {
                    return Err(Refusal::Failed(format!(
                        "attachment {:?} not found in the file store",
                        a.name
                    )))
                }
            }
        }

        let from = Mailbox::new(shared.cfg.display_name.clone(), from_addr);
        let to = Mailbox::new(rcpt_name.clone(), rcpt_addr);
        let mut builder = Message::builder()
            .from(from)
            .to(to)
            .subject(subject.clone())
            .message_id(Some(format!("<{mid}>")));
        if let Some(irt) = &in_reply_to {
            builder = builder.in_reply_to(format!("<{irt}>"));
        }
        if !references.is_empty() {
            let refs: Vec<String> = references.iter().map(|r| format!("<{r}>")).collect();
            builder = builder.references(refs.join(" "));
        }
        let built = if files.is_empty() {
            builder.singlepart(SinglePart::plain(text))
        } else {
            let mut mp = MultiPart::mixed().singlepart(SinglePart::plain(text));
            for f in files {
                let ct = ContentType::parse(&f.mime_type).unwrap_or(
                    ContentType::parse("application/octet-stream")
                        .map_err(|e| Refusal::Retry(ConnectorError::other(e.to_string())))?,
                );
                mp = mp.singlepart(lettre::message::Attachment::new(f.name).body(f.content, ct));
            }
            builder.multipart(mp)
        };
        let message =
            built.map_err(|e| Refusal::Failed(format!("the mail cannot be built: {e}")))?;
        let fallback = ThreadInfo {
            counterpart_address: rcpt,
            counterpart_name: rcpt_name,
            subject: thread::strip_token(&subject),
            references: Vec::new(),
            last_inbound_message_id: None,
        };
        Ok(Prepared {
            message,
            message_id: mid,
            thread_id,
            fallback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic() {
        let a = message_id("mail", 7, "t@x", "example.com");
        assert_eq!(a, message_id("mail", 7, "t@x", "example.com"));
        assert_ne!(a, message_id("mail", 8, "t@x", "example.com"));
        assert!(
            a.starts_with("mail.7.") && a.ends_with("@example.com"),
            "{a}"
        );
        assert!(message_id("a b/c", 1, "t", "d.e").starts_with("a-b-c.1."));
    }

    #[test]
    fn brackets_are_stripped() {
        assert_eq!(strip_brackets(" <a@b> "), "a@b");
        assert_eq!(strip_brackets("a@b"), "a@b");
    }
}
