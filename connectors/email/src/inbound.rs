//! One fetched mail → one [`InboundEvent`]: a message, an auto-reply or bounce, or a
//! site form; then its thread is recorded.

use std::fmt::Write as _;

use kommutator_sdk::{
    normalize_external_id, Attachment, ConnectorError, DeliveryState, IdentityKind, InboundEvent,
    InboundKind, InboundMessage, InboundSender, Party, PartyIdentity,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::form_template::FormFields;
use crate::mime::{self, MailAddress, MailKind, ParsedMail};
use crate::thread::Lookup;
use crate::Shared;

/// Where a mail came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item<'a> {
    pub(crate) mailbox: &'a str,
    pub(crate) uidvalidity: u32,
    pub(crate) uid: u32,
    pub(crate) size: usize,
    /// Only the header was fetched: the message is over the size limit.
    pub(crate) truncated: bool,
    pub(crate) internal_date: Option<OffsetDateTime>,
}

impl Item<'_> {
    /// The channel's reference of the message (RFC 5092 IMAP URL shape).
    fn imap_ref(&self) -> String {
        format!(
            "imap:///{};UIDVALIDITY={}/;UID={}",
            self.mailbox, self.uidvalidity, self.uid
        )
    }
}

/// The external id of a mail: its Message-ID, or `sha256:` of Date|From|Subject|first
/// 4 KiB of the raw mail when it has none (or an unusable one).
pub fn external_id(mail: &ParsedMail, raw: &[u8]) -> String {
    if let Some(id) = mail
        .message_id
        .as_deref()
        .and_then(|id| normalize_external_id(id).ok())
    {
        return id;
    }
    let mut h = Sha256::new();
    let date = mail
        .date
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    h.update(date.as_bytes());
    h.update(b"|");
    h.update(
        mail.from
            .as_ref()
            .map_or("", |a| a.address.as_str())
            .as_bytes(),
    );
    h.update(b"|");
    h.update(mail.subject.as_deref().unwrap_or_default().as_bytes());
    h.update(b"|");
    h.update(raw.get(..4096).unwrap_or(raw));
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn addr_json(a: &MailAddress) -> Value {
    json!({"name": a.name, "address": a.address})
}

/// The small JSON of headers kept as the event's `raw`; never the body.
fn raw_headers(mail: &ParsedMail, item: &Item<'_>) -> Value {
    json!({
        "message_id": mail.message_id,
        "in_reply_to": mail.in_reply_to,
        "references": mail.references,
        "from": mail.from.as_ref().map(addr_json),
        "to": mail.to.iter().map(addr_json).collect::<Vec<_>>(),
        "cc": mail.cc.iter().map(addr_json).collect::<Vec<_>>(),
        "subject": mail.subject,
        "mailbox": item.mailbox,
        "uidvalidity": item.uidvalidity,
        "uid": item.uid,
        "size": item.size,
    })
}

/// Parses `raw`, sends its event, and records its thread once the hub accepted it.
///
/// # Errors
///
/// `send` failures (`Closed`) and state store failures: the cursor is not advanced and
/// the mail is fetched again later.
pub(crate) async fn process(
    shared: &Shared,
    sender: &InboundSender,
    item: &Item<'_>,
    raw: &[u8],
) -> Result<(), ConnectorError> {
    let now = OffsetDateTime::now_utc();
    let mail = match mime::parse_mail(raw, &mime::Limits::default()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(mailbox = item.mailbox, uid = item.uid, error = %e, "unreadable mail kept as unknown");
            let ev = InboundEvent::new(
                sender.id().clone(),
                format!("imap:{}:{}:{}", item.mailbox, item.uidvalidity, item.uid),
                item.internal_date.unwrap_or(now),
                InboundKind::Unknown {
                    description: format!("unreadable mail: {e}"),
                },
            )
            .with_raw(
                json!({"mailbox": item.mailbox, "uidvalidity": item.uidvalidity,
                             "uid": item.uid, "size": item.size, "error": e.to_string()}),
            );
            return sender.send(ev).await;
        }
    };
    let id = external_id(&mail, raw);
    let at = mail.date.or(item.internal_date).unwrap_or(now);
    let mut raw_json = raw_headers(&mail, item);
    let from = mail.from.as_ref().map_or("", |a| a.address.as_str());
    let subject = mail.subject.clone().unwrap_or_default();

    match &mail.kind {
        MailKind::AutoReply => {
            tracing::debug!(external_id = %id, "auto-reply kept as unknown");
            let ev = InboundEvent::new(
                sender.id().clone(),
                id,
                at,
                InboundKind::Unknown {
                    description: format!("auto-reply from {from}: {subject}"),
                },
            )
            .with_raw(raw_json);
            return sender.send(ev).await;
        }
        MailKind::Bounce {
            original_message_id,
            recipient,
            status,
        } => {
            let ours = match original_message_id {
                Some(orig) => shared.threads.sent_thread(orig).await?.map(|_| orig),
                None => None,
            };
            if let Some(obj) = raw_json.as_object_mut() {
                obj.insert(
                    "bounce".to_owned(),
                    json!({"original_message_id": original_message_id,
                           "recipient": recipient, "status": status}),
                );
            }
            let ev = if let Some(orig) = ours {
                let mut reason = format!("bounced: {}", status.as_deref().unwrap_or("no status"));
                if let Some(r) = recipient {
                    let _ = write!(reason, " for {r}");
                }
                InboundEvent::new(
                    sender.id().clone(),
                    format!("{orig}:failed"),
                    at,
                    InboundKind::DeliveryStatus {
                        message_external_id: orig.clone(),
                        status: DeliveryState::Failed { reason },
                    },
                )
            } else {
                tracing::debug!(external_id = %id, "bounce of a mail not ours kept as unknown");
                InboundEvent::new(
                    sender.id().clone(),
                    id,
                    at,
                    InboundKind::Unknown {
                        description: format!("bounce from {from}: {subject}"),
                    },
                )
            };
            return sender.send(ev.with_raw(raw_json)).await;
        }
        MailKind::Normal => {}
    }

    let mut attachments = Vec::with_capacity(mail.attachments.len());
    for a in &mail.attachments {
        attachments.push(store_attachment(shared, sender, item, a).await);
    }

    if let Some(form) = shared.templates.0.extract(&mail) {
        return form_event(shared, sender, &id, at, raw_json, attachments, form).await;
    }

    let (counterpart, name) = mail
        .from
        .as_ref()
        .map_or(("", None), |a| (a.address.as_str(), a.name.as_deref()));
    let lookup = Lookup {
        message_id: &id,
        references: &mail.references,
        in_reply_to: &mail.in_reply_to,
        token: mail.token.as_deref(),
        base_subject: &mail.base_subject,
        counterpart,
        at: Some(at),
    };
    let (thread_id, via) = shared.threads.resolve(&lookup).await?;
    let party = Party {
        identities: mail
            .from
            .iter()
            .map(|a| PartyIdentity::new(IdentityKind::Email, a.address.clone()))
            .collect(),
        display_name: name.map(str::to_owned),
    };
    let mut text = mail.text.clone();
    if item.truncated {
        let note = format!(
            "(the message is {} bytes, over the limit: only its header was read)",
            item.size
        );
        text = Some(match text {
            Some(t) => format!("{t}\n\n{note}"),
            None => note,
        });
    }
    let mut msg = InboundMessage::text(thread_id.clone(), party, text);
    msg.subject = mail.subject.clone();
    msg.html = mail.html.clone();
    msg.quoted = mail.quoted.clone();
    msg.attachments = attachments;
    msg.reply_to_external_id = mail
        .in_reply_to
        .first()
        .and_then(|r| normalize_external_id(r).ok());
    tracing::debug!(external_id = %id, thread = %thread_id, ?via, "mail");
    let ev = InboundEvent::new(
        sender.id().clone(),
        id.clone(),
        at,
        InboundKind::Message(msg),
    )
    .with_raw(raw_json);
    sender.send(ev).await?;
    shared
        .threads
        .record_inbound(&thread_id, &lookup, name, &subject)
        .await
}

async fn store_attachment(
    shared: &Shared,
    sender: &InboundSender,
    item: &Item<'_>,
    a: &mime::MailAttachment,
) -> Attachment {
    let size = a.content.len();
    let fallback = || Attachment {
        name: a.name.clone(),
        mime_type: a.mime_type.clone(),
        size: Some(size as u64),
        url_or_ref: item.imap_ref(),
    };
    if size > shared.cfg.max_attachment_bytes {
        tracing::info!(
            name = %a.name, size, max = shared.cfg.max_attachment_bytes,
            "attachment over max_attachment_bytes kept by reference"
        );
        return fallback();
    }
    match sender
        .files()
        .put(&a.name, &a.mime_type, a.content.clone())
        .await
    {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(name = %a.name, size, error = %e, "attachment not stored, kept by reference");
            fallback()
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn form_event(
    shared: &Shared,
    sender: &InboundSender,
    id: &str,
    at: OffsetDateTime,
    mut raw_json: Value,
    attachments: Vec<Attachment>,
    form: FormFields,
) -> Result<(), ConnectorError> {
    let mut identities = Vec::new();
    if let Some(p) = form
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        identities.push(PartyIdentity::new(IdentityKind::Phone, p));
    }
    let email = form
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    if let Some(e) = &email {
        identities.push(PartyIdentity::new(IdentityKind::Email, e.clone()));
    }
    let name = form
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let party = Party {
        identities,
        display_name: name.map(str::to_owned),
    };

    let mut text = form.message.clone().unwrap_or_default().trim().to_owned();
    let mut details = String::new();
    for (label, value) in [
        ("Name", &form.name),
        ("Phone", &form.phone),
        ("Email", &form.email),
        ("Company", &form.company),
    ] {
        if let Some(v) = value {
            let _ = writeln!(details, "{label}: {}", v.trim());
        }
    }
    for (k, v) in &form.extra {
        let _ = writeln!(details, "{k}: {}", v.trim());
    }
    if !details.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(details.trim_end());
    }

    let mut fields = serde_json::Map::new();
    fields.insert("template".to_owned(), json!(form.template));
    for (k, v) in [
        ("name", &form.name),
        ("phone", &form.phone),
        ("email", &form.email),
        ("company", &form.company),
        ("message", &form.message),
    ] {
        if let Some(v) = v {
            fields.insert(k.to_owned(), json!(v));
        }
    }
    let mut utm = serde_json::Map::new();
    for (k, v) in &form.extra {
        fields.insert(k.clone(), json!(v));
        let key = k.to_ascii_lowercase();
        if key.starts_with("utm_") {
            utm.insert(key, json!(v.trim()));
        }
    }
    if let Some(obj) = raw_json.as_object_mut() {
        obj.insert("form".to_owned(), Value::Object(fields));
        if !utm.is_empty() {
            obj.insert("traffic_source".to_owned(), Value::Object(utm));
        }
    }

    // A new thread, whose counterpart is the person in the form, not the site's robot.
    let thread_id = id.to_owned();
    let mut msg = InboundMessage::text(thread_id.clone(), party, Some(text));
    let subject = format!("Site form: {}", form.template);
    msg.subject = Some(subject.clone());
    msg.attachments = attachments;
    let ev = InboundEvent::new(sender.id().clone(), id, at, InboundKind::Message(msg))
        .with_raw(raw_json);
    sender.send(ev).await?;
    let counterpart = email.unwrap_or_default();
    let lookup = Lookup {
        message_id: id,
        references: &[],
        in_reply_to: &[],
        token: None,
        base_subject: "",
        counterpart: &counterpart,
        at: Some(at),
    };
    shared
        .threads
        .record_inbound(&thread_id, &lookup, name, &subject)
        .await
}
