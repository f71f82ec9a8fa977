//! Outbound delivery of the `api` channel: replies stored by operators (delivery status
//! `pending`) are POSTed to the channel's `outbound_url`, signed, and the result comes back
//! through the pipeline as an ack or a failure, like any connector's.
//!
//! One node per cluster delivers a channel's replies: the dispatcher holds the lease
//! `connector:{id}` (renewed every few seconds, taken over by another node when it lapses).
//! Delivery is at-least-once: a node that dies between the POST and the ack leaves the
//! message pending and the next lease holder posts it again with the same `id`, so the
//! receiving system dedupes on it.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use kommutator_sdk::{ConnectorId, InboundEvent};
use serde::Serialize;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use crate::domain::{Attachment, Dialog, Id, Message, Timestamp};
use crate::hub::Hub;
use crate::storage::Store;

/// Where and how a channel's replies go.
#[derive(Clone)]
pub struct WebhookTarget {
    /// Connector instance.
    pub connector_id: String,
    /// URL to POST to.
    pub url: String,
    /// HMAC key for the signature header.
    pub secret: Option<String>,
    /// How long the cluster lease lasts without renewal (renewed at a third of it).
    pub lease: Duration,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("connector_id", &self.connector_id)
            .field("url", &crate::config::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// The body POSTed for a reply.
#[derive(Debug, Serialize)]
struct OutboundBody<'a> {
    /// Our message id: the idempotency key for the receiver.
    id: Id,
    connector_id: &'a str,
    thread_id: &'a str,
    dialog_id: Id,
    text: Option<&'a str>,
    attachments: &'a [Attachment],
    author_user_id: Option<Id>,
    sent_at: Timestamp,
}

/// Runs the dispatcher of one channel until shutdown.
pub async fn run_webhook(
    target: WebhookTarget,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    pipeline: Pipeline,
    node_id: String,
    states: Arc<super::host::ConnectorStates>,
    shutdown: CancellationToken,
) {
    use super::host::ConnectorState;
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, connector = %target.connector_id, "cannot build the HTTP client");
            return;
        }
    };
    let lease = format!("connector:{}", target.connector_id);
    let ttl = target.lease;
    let mut head = hub.watch_head();
    loop {
        // Wait for the lease.
        states.set(&target.connector_id, "api", ConnectorState::Standby);
        loop {
            match store.try_lease(&lease, &node_id, lease_until(ttl)).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, %lease, "cannot take the lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(ttl / 3) => {}
            }
        }
        tracing::info!(connector = %target.connector_id, node = %node_id, "delivering replies of this channel");
        states.set(&target.connector_id, "api", ConnectorState::Running);
        metrics::gauge!("kommutator_connector_leases", "connector" => target.connector_id.clone())
            .set(1.0);
        let mut renew = tokio::time::interval(ttl / 3);
        renew.tick().await;
        let mut after: Id = 0;
        let mut pos = hub.head();
        let held = 'held: loop {
            // Everything pending, oldest first.
            loop {
                let batch = match store
                    .pending_outbound(&target.connector_id, after, 100)
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read pending replies");
                        break;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for (m, d) in batch {
                    after = m.id;
                    if shutdown.is_cancelled() {
                        break 'held false;
                    }
                    deliver(&client, &target, &pipeline, &m, &d, &shutdown).await;
                }
            }
            // Wait for a reason to scan again: a new reply of this channel, or the lease tick.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break 'held false,
                    r = head.changed() => {
                        if r.is_err() { break 'held false }
                        if super::new_outbound_for(&hub, &mut pos, &target.connector_id).await {
                            break;
                        }
                    }
                    _ = renew.tick() => {
                        match store.try_lease(&lease, &node_id, lease_until(ttl)).await {
                            Ok(true) => {}
                            Ok(false) => break 'held true,
                            Err(e) => tracing::warn!(error = %e, %lease, "cannot renew the lease"),
                        }
                        // A message left pending by an earlier failure is picked up again.
                        after = 0;
                        break;
                    }
                }
            }
        };
        metrics::gauge!("kommutator_connector_leases", "connector" => target.connector_id.clone())
            .set(0.0);
        if !held {
            let _ = store.release_lease(&lease, &node_id).await;
            states.set(&target.connector_id, "api", ConnectorState::Stopped);
            return;
        }
        tracing::warn!(connector = %target.connector_id, "lost the lease; another node delivers");
    }
}

/// When a lease taken now for `ttl` runs out.
pub(crate) fn lease_until(ttl: Duration) -> Timestamp {
    Timestamp(Timestamp::now().micros() + i64::try_from(ttl.as_micros()).unwrap_or(15_000_000))
}

/// Posts one reply with retries; reports the result through the pipeline.
async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    pipeline: &Pipeline,
    m: &Message,
    d: &Dialog,
    shutdown: &CancellationToken,
) {
    let body = OutboundBody {
        id: m.id,
        connector_id: &target.connector_id,
        thread_id: &d.external_thread_id,
        dialog_id: d.id,
        text: m.body.as_deref(),
        attachments: &m.attachments,
        author_user_id: m.author_user_id,
        sent_at: m.sent_at,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let connector = ConnectorId::new(target.connector_id.clone());
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=8u32 {
        let mut req = client
            .post(&target.url)
            .header("content-type", "application/json")
            .header("x-kommutator-message-id", m.id.to_string());
        if let Some(secret) = &target.secret {
            req = req.header("x-kommutator-signature", sign(secret, &bytes));
        }
        let result = req.body(bytes.clone()).send().await;
        let now = time::OffsetDateTime::now_utc();
        let ev = match result {
            Ok(resp) if resp.status().is_success() => {
                let text = resp.text().await.unwrap_or_default();
                let external = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("external_id")
                            .and_then(|x| x.as_str())
                            .map(str::to_owned)
                    })
                    .and_then(|x| kommutator_sdk::normalize_external_id(&x).ok())
                    .unwrap_or_else(|| format!("kommutator:{}", m.id));
                Some(InboundEvent::outbound_ack(
                    connector.clone(),
                    m.id,
                    external,
                    now,
                ))
            }
            Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                let status = resp.status();
                let text: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                Some(InboundEvent::outbound_failed(
                    connector.clone(),
                    m.id,
                    format!("the channel refused the reply: HTTP {status}: {text}"),
                    now,
                ))
            }
            Ok(resp) => {
                tracing::warn!(status = %resp.status(), attempt, message_id = m.id, "reply not accepted yet; retrying");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, message_id = m.id, "cannot post the reply; retrying");
                None
            }
        };
        if let Some(ev) = ev {
            if let Err(e) = pipeline.submit(ev).await {
                tracing::warn!(error = %e, message_id = m.id, "cannot record the delivery result");
            }
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    let ev = InboundEvent::outbound_failed(
        connector,
        m.id,
        "the channel did not accept the reply after 8 attempts",
        time::OffsetDateTime::now_utc(),
    );
    if let Err(e) = pipeline.submit(ev).await {
        tracing::warn!(error = %e, message_id = m.id, "cannot record the delivery failure");
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", crate::auth::hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
