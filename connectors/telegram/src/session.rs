//! The I/O loops: long polling, outbound sending, and what both modes share (media
//! resolution, the recent-update filter).

use std::sync::{Arc, Mutex, PoisonError};

use kommutator_sdk::{
    Attachment, CallTable, ConnectorContext, ConnectorError, FileStore, InboundEvent, InboundKind,
    InboundSender, OutboundMessage, StateStore,
};
use teloxide_core::payloads::SendMessageSetters;
use teloxide_core::requests::Requester;
use teloxide_core::types::{ChatId, InputFile, Message, MessageId, ReplyParameters};
use time::OffsetDateTime;

use crate::api::{Api, Failure};
use crate::parse::{parse_update, ParsedUpdate};

/// The [`StateStore`] key of the next `getUpdates` offset.
pub const OFFSET_KEY: &str = "offset";

/// How many recent `update_id`s the duplicate filter remembers.
pub(crate) const RECENT_UPDATES: usize = 4096;

/// Telegram's longest message text, in characters.
const MAX_TEXT_CHARS: usize = 4096;

/// Tries per outbound Bot API call before the run ends with a retryable error.
const SEND_ATTEMPTS: u32 = 5;

/// The `update_id`s handed to the hub recently, shared by polling and the webhook.
#[derive(Debug, Clone)]
pub(crate) struct Recent(Arc<Mutex<CallTable<()>>>);

impl Recent {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(CallTable::new(RECENT_UPDATES))))
    }

    pub(crate) fn contains(&self, update_id: i64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&update_id.to_string())
            .is_some()
    }

    pub(crate) fn insert(&self, update_id: i64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(update_id.to_string(), ());
    }
}

/// The event of `parsed` with its media downloaded and attached.
pub(crate) async fn resolve(
    api: &Api,
    files: &Arc<dyn FileStore>,
    parsed: ParsedUpdate,
) -> InboundEvent {
    let mut event = parsed.event;
    if let InboundKind::Message(m) = &mut event.kind {
        for media in &parsed.media {
            m.attachments.push(api.fetch_media(files, media).await);
        }
    }
    event
}

/// Long polling until an error; the caller selects it against shutdown.
pub(crate) async fn poll_loop(
    api: &Api,
    sender: InboundSender,
    state: Arc<dyn StateStore>,
    recent: Recent,
    timeout_secs: u32,
) -> Result<(), ConnectorError> {
    let mut offset: Option<i64> = state
        .get(OFFSET_KEY)
        .await?
        .and_then(|s| s.trim().parse().ok());
    loop {
        let updates = api
            .get_updates(offset, timeout_secs)
            .await
            .map_err(|e| api.run_error("getUpdates", &e))?;
        for update in updates {
            let update_id = update.get("update_id").and_then(serde_json::Value::as_i64);
            match parse_update(sender.id(), &update) {
                Ok(parsed) if recent.contains(parsed.update_id) => {
                    tracing::debug!(
                        update_id = parsed.update_id,
                        "telegram: repeated update skipped"
                    );
                }
                Ok(parsed) => {
                    let id = parsed.update_id;
                    if let InboundKind::Unknown { description } = &parsed.event.kind {
                        tracing::debug!(update_id = id, %description, "telegram: unmapped update");
                    }
                    let event = resolve(api, sender.files(), parsed).await;
                    sender.send(event).await?;
                    recent.insert(id);
                }
                Err(e) => {
                    tracing::warn!(?update_id, error = %e, "telegram: update rejected");
                }
            }
            // The hub has it (or it was rejected for good): Telegram may forget it.
            if let Some(id) = update_id {
                let next = id.saturating_add(1);
                if offset.is_none_or(|o| next > o) {
                    offset = Some(next);
                    state.put(OFFSET_KEY, &next.to_string()).await?;
                }
            }
        }
    }
}

/// Sends what the hub hands over until the hub drops its sender; then waits (the caller
/// selects it against shutdown and polling).
pub(crate) async fn outbound_loop(
    api: &Api,
    ctx: &mut ConnectorContext,
) -> Result<(), ConnectorError> {
    let shutdown = ctx.shutdown().clone();
    loop {
        let Some(msg) = ctx.recv_outbound().await else {
            tracing::debug!("telegram: outbound queue closed");
            std::future::pending::<()>().await;
            return Ok(());
        };
        let event = match deliver(api, ctx.files(), &shutdown, &msg).await {
            Ok(their_id) => InboundEvent::outbound_ack(
                ctx.id().clone(),
                msg.id,
                their_id,
                OffsetDateTime::now_utc(),
            ),
            Err(Failure::Refused(reason)) => {
                tracing::info!(message_id = msg.id, %reason, "telegram: outbound message refused");
                InboundEvent::outbound_failed(
                    ctx.id().clone(),
                    msg.id,
                    reason,
                    OffsetDateTime::now_utc(),
                )
            }
            Err(Failure::Fatal(e)) => return Err(e),
        };
        ctx.send(event).await?;
    }
}

/// `{chat}:{message}` of a sent message, the key inbound replies use too.
fn their_id(m: &Message) -> String {
    format!("{}:{}", m.chat.id.0, m.id.0)
}

/// Text split into Telegram-sized pieces, on character boundaries.
fn split_text(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(MAX_TEXT_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// Sends `msg`; `Ok` with the id of the first message sent.
async fn deliver(
    api: &Api,
    files: &Arc<dyn FileStore>,
    shutdown: &kommutator_sdk::CancellationToken,
    msg: &OutboundMessage,
) -> Result<String, Failure> {
    let chat: i64 = msg.thread_id.trim().parse().map_err(|_| {
        Failure::Refused(format!(
            "thread id {:?} is not a telegram chat id",
            msg.thread_id
        ))
    })?;
    let reply = msg.reply_to_external_id.as_deref().and_then(|r| {
        let (c, m) = r.split_once(':')?;
        (c.parse::<i64>().ok()? == chat).then_some(())?;
        m.parse::<i32>().ok()
    });
    let bot = api.bot();
    let mut first: Option<String> = None;

    let text = msg.text.as_deref().filter(|t| !t.trim().is_empty());
    for (i, piece) in text
        .map(split_text)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let reply = reply.filter(|_| i == 0);
        let sent = api
            .with_retry("sendMessage", shutdown, SEND_ATTEMPTS, || {
                let req = bot.send_message(ChatId(chat), piece.clone());
                let req = match reply {
                    Some(id) => req.reply_parameters(
                        ReplyParameters::new(MessageId(id)).allow_sending_without_reply(),
                    ),
                    None => req,
                };
                async move { req.await }
            })
            .await?;
        first.get_or_insert_with(|| their_id(&sent));
    }

    for a in &msg.attachments {
        let sent = send_attachment(api, files, shutdown, chat, a).await?;
        first.get_or_insert_with(|| their_id(&sent));
    }
    first.ok_or_else(|| Failure::Refused("nothing to send: no text and no attachment".to_owned()))
}

async fn send_attachment(
    api: &Api,
    files: &Arc<dyn FileStore>,
    shutdown: &kommutator_sdk::CancellationToken,
    chat: i64,
    a: &Attachment,
) -> Result<Message, Failure> {
    let stored = files.get(&a.url_or_ref).await.map_err(Failure::Fatal)?;
    let (input, mime) = match stored {
        Some(f) => (InputFile::memory(f.content).file_name(f.name), f.mime_type),
        None if a.url_or_ref.starts_with("https://") || a.url_or_ref.starts_with("http://") => {
            let url = reqwest::Url::parse(&a.url_or_ref).map_err(|e| {
                Failure::Refused(format!("attachment {:?} has a bad URL: {e}", a.name))
            })?;
            (InputFile::url(url), a.mime_type.clone())
        }
        None => {
            return Err(Failure::Refused(format!(
                "attachment {:?} is neither a stored file nor an http(s) URL",
                a.name
            )))
        }
    };
    let bot = api.bot();
    // Photos Telegram can show inline; everything else goes as a document.
    let photo = matches!(mime.as_str(), "image/jpeg" | "image/png" | "image/webp");
    let method = if photo { "sendPhoto" } else { "sendDocument" };
    api.with_retry(method, shutdown, SEND_ATTEMPTS, || {
        let input = input.clone();
        async move {
            if photo {
                bot.send_photo(ChatId(chat), input).await
            } else {
                bot.send_document(ChatId(chat), input).await
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_text_keeps_characters_whole() {
        assert_eq!(split_text("hi"), ["hi"]);
        let long = "я".repeat(MAX_TEXT_CHARS + 1);
        let parts = split_text(&long);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), MAX_TEXT_CHARS);
        assert_eq!(parts[1], "я");
    }

    #[test]
    fn recent_remembers_ids() {
        let r = Recent::new();
        assert!(!r.contains(5));
        r.insert(5);
        assert!(r.contains(5));
        assert!(r.clone().contains(5));
    }
}
