//! `messages.send` for the hub's outbound messages, with a deterministic `random_id` so a
//! message handed over again is not delivered twice.

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{
    CancellationToken, ConnectorContext, ConnectorError, FileStore, InboundEvent, OutboundMessage,
};
use time::OffsetDateTime;

use crate::api::{Api, ApiError, Class, Sent};
use crate::inbound::Shared;
use crate::longpoll::Backoff;

/// The `random_id` of our message `id` sent by instance `connector`: FNV-1a of
/// `{connector}:{id}`, folded into 1..=i32::MAX. The same message always gets the same
/// value, so VK drops a re-send.
pub fn random_id(connector: &str, id: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in connector
        .as_bytes()
        .iter()
        .chain(b":")
        .chain(id.to_string().as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let span = u64::from(i32::MAX.unsigned_abs());
    i64::try_from(h % span).unwrap_or(0) + 1
}

/// The id the ack reports for a sent message: `{peer_id}:{conversation_message_id}` when
/// VK gave it, else `{peer_id}:id:{message_id}`, else `{peer_id}:random:{random_id}`.
pub fn their_id(peer_id: i64, sent: &Sent, random_id: i64) -> String {
    match (sent.conversation_message_id, sent.message_id) {
        (Some(c), _) if c > 0 => format!("{peer_id}:{c}"),
        (_, Some(m)) if m > 0 => format!("{peer_id}:id:{m}"),
        _ => format!("{peer_id}:random:{random_id}"),
    }
}

/// The `messages.send` parameters that answer `reply_to_external_id`: `reply_to` for a
/// `{peer}:id:{message_id}`, else `forward` with `is_reply` for a
/// `{peer}:{conversation_message_id}`.
pub fn reply_params(reply_to: &str) -> Option<(&'static str, String)> {
    let mut parts = reply_to.split(':');
    let peer: i64 = parts.next()?.parse().ok()?;
    match (parts.next()?, parts.next(), parts.next()) {
        ("id", Some(m), None) => Some(("reply_to", m.parse::<i64>().ok()?.to_string())),
        (c, None, None) => {
            let cmid: i64 = c.parse().ok()?;
            Some((
                "forward",
                serde_json::json!({
                    "peer_id": peer,
                    "conversation_message_ids": [cmid],
                    "is_reply": true
                })
                .to_string(),
            ))
        }
        _ => None,
    }
}

pub(crate) struct Outbound {
    pub(crate) api: Api,
    pub(crate) shared: Arc<Shared>,
    pub(crate) files: Arc<dyn FileStore>,
    pub(crate) retry_base: Duration,
}

enum Outcome {
    Ack(String),
    Failed(String),
    Retry(ApiError),
}

impl Outbound {
    /// Sends `msg`, retrying transient failures with backoff until it is acked or
    /// refused, or shutdown comes (the hub then hands it over again).
    ///
    /// # Errors
    ///
    /// `Auth` when VK refuses the token; what `send` returns.
    pub(crate) async fn handle(
        &self,
        ctx: &ConnectorContext,
        msg: OutboundMessage,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnectorError> {
        let mut backoff = Backoff::new(self.retry_base);
        loop {
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                o = self.attempt(ctx, &msg) => o?,
            };
            let now = OffsetDateTime::now_utc();
            let ev = match outcome {
                Outcome::Ack(their) => {
                    InboundEvent::outbound_ack(ctx.id().clone(), msg.id, their, now)
                }
                Outcome::Failed(reason) => {
                    tracing::warn!(connector = %ctx.id(), message_id = msg.id, %reason, "vk: message refused");
                    InboundEvent::outbound_failed(ctx.id().clone(), msg.id, reason, now)
                }
                Outcome::Retry(e) => {
                    tracing::warn!(connector = %ctx.id(), message_id = msg.id, error = %e, "vk: send failed, retrying");
                    if !backoff.wait(shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            return match ctx.send(ev).await {
                Err(ConnectorError::Closed) if shutdown.is_cancelled() => Ok(()),
                other => other,
            };
        }
    }

    async fn attempt(
        &self,
        ctx: &ConnectorContext,
        msg: &OutboundMessage,
    ) -> Result<Outcome, ConnectorError> {
        let Some(peer) = msg.thread_id.trim().parse::<i64>().ok().filter(|p| *p != 0) else {
            return Ok(Outcome::Failed(format!(
                "thread `{}` is not a VK peer_id",
                msg.thread_id
            )));
        };
        let rid = random_id(ctx.id().as_str(), msg.id);
        let mut text = msg.text.clone().unwrap_or_default();
        let mut attachments = Vec::new();
        for a in &msg.attachments {
            match self.files.get(&a.url_or_ref).await? {
                Some(f) => {
                    match self
                        .api
                        .upload_doc(peer, &f.name, &f.mime_type, f.content)
                        .await
                    {
                        Ok(att) => attachments.push(att),
                        Err(e) => return classify(e),
                    }
                }
                None if a.url_or_ref.starts_with("https://")
                    || a.url_or_ref.starts_with("http://") =>
                {
                    // VK takes no attachment by URL: the link goes in the text.
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&a.url_or_ref);
                }
                None => {
                    return Ok(Outcome::Failed(format!(
                        "attachment `{}` is not a stored file or an http(s) URL",
                        a.name
                    )))
                }
            }
        }
        if text.trim().is_empty() && attachments.is_empty() {
            return Ok(Outcome::Failed(
                "nothing to send: no text, no attachment".into(),
            ));
        }
        let mut params = vec![
            ("peer_id", peer.to_string()),
            ("random_id", rid.to_string()),
            ("message", text),
        ];
        if !attachments.is_empty() {
            params.push(("attachment", attachments.join(",")));
        }
        if let Some(p) = msg.reply_to_external_id.as_deref().and_then(reply_params) {
            params.push(p);
        }
        // Recorded before the call: the echo (`message_reply`) can arrive before the answer.
        self.shared.record_send(rid, None);
        match self.api.send_message(&params).await {
            Ok(sent) => {
                let their = their_id(peer, &sent, rid);
                self.shared.record_send(rid, Some(their.clone()));
                Ok(Outcome::Ack(their))
            }
            Err(e) => classify(e),
        }
    }
}

fn classify(e: ApiError) -> Result<Outcome, ConnectorError> {
    match e.class() {
        Class::Auth => Err(ConnectorError::auth(e.to_string())),
        Class::Transient => Ok(Outcome::Retry(e)),
        Class::Permanent => Ok(Outcome::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_id_is_stable_positive_i32() {
        for id in [0, 1, 2, i64::MAX, -5] {
            let r = random_id("vk", id);
            assert!((1..=i64::from(i32::MAX)).contains(&r), "{r}");
            assert_eq!(r, random_id("vk", id));
        }
        assert_ne!(random_id("vk", 1), random_id("vk", 2));
        assert_ne!(random_id("vk", 1), random_id("vk2", 1));
    }

    #[test]
    fn ids_and_reply_params() {
        let s = Sent {
            message_id: Some(9),
            conversation_message_id: None,
        };
        assert_eq!(their_id(42, &s, 1), "42:id:9");
        let s = Sent {
            message_id: Some(0),
            conversation_message_id: Some(3),
        };
        assert_eq!(their_id(42, &s, 1), "42:3");
        let s = Sent {
            message_id: Some(0),
            conversation_message_id: None,
        };
        assert_eq!(their_id(42, &s, 7), "42:random:7");
        assert_eq!(reply_params("42:id:9"), Some(("reply_to", "9".into())));
        let (k, v) = reply_params("2000000001:5").unwrap_or(("", String::new()));
        assert_eq!(k, "forward");
        assert!(v.contains("\"is_reply\":true"), "{v}");
        assert_eq!(reply_params("x:1"), None);
        assert_eq!(reply_params("1:2:edit:3"), None);
    }
}
