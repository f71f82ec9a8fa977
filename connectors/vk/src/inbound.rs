//! What the Callback API routes and the Long Poll loop share: the recently seen
//! `event_id`s, the `random_id`s of our sends, and handing a mapped event to the hub with
//! its files fetched.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use kommutator_sdk::{Attachment, ConnectorError, InboundEvent, InboundKind, InboundSender};
use time::OffsetDateTime;

use crate::api::Api;
use crate::parse::{Mapped, OurSend};

/// How many `event_id`s are remembered to skip replays.
pub(crate) const SEEN_EVENTS: usize = 4096;
/// How many of our `random_id`s are remembered to recognise their echoes.
pub(crate) const OUR_SENDS: usize = 4096;

/// A set that forgets the oldest entry first.
#[derive(Debug, Default)]
struct Bounded<V> {
    order: VecDeque<i64>,
    map: HashMap<i64, V>,
}

/// State shared by every task of one instance.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    seen: Mutex<(VecDeque<String>, HashSet<String>)>,
    sends: Mutex<Bounded<Option<String>>>,
}

impl Shared {
    /// Whether `event_id` was handed over recently.
    pub(crate) fn seen(&self, event_id: &str) -> bool {
        let g = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        g.1.contains(event_id)
    }

    /// Remembers that `event_id` was handed over.
    pub(crate) fn mark_seen(&self, event_id: &str) {
        let mut g = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, set) = &mut *g;
        if set.insert(event_id.to_owned()) {
            order.push_back(event_id.to_owned());
            while order.len() > SEEN_EVENTS {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    /// Records a `random_id` about to be sent (`their_id` unknown yet) or acknowledged.
    pub(crate) fn record_send(&self, random_id: i64, their_id: Option<String>) {
        let mut g = self.sends.lock().unwrap_or_else(PoisonError::into_inner);
        if g.map.insert(random_id, their_id).is_none() {
            g.order.push_back(random_id);
            while g.order.len() > OUR_SENDS {
                if let Some(old) = g.order.pop_front() {
                    g.map.remove(&old);
                }
            }
        }
    }

    /// Whether `random_id` is one of ours.
    pub(crate) fn our_send(&self, random_id: i64) -> OurSend {
        let g = self.sends.lock().unwrap_or_else(PoisonError::into_inner);
        match g.map.get(&random_id) {
            None => OurSend::No,
            Some(None) => OurSend::Pending,
            Some(Some(t)) => OurSend::Acked(t.clone()),
        }
    }
}

/// Fetches the message's files (stored when at most `max_bytes`), hands the event over,
/// and marks its `event_id` seen once the hub has it.
///
/// # Errors
///
/// What [`InboundSender::send`] returns.
pub(crate) async fn deliver(
    sender: &InboundSender,
    shared: &Shared,
    api: &Api,
    max_bytes: u64,
    mapped: Mapped,
) -> Result<(), ConnectorError> {
    let Mapped {
        external_id,
        event_id,
        occurred_at,
        mut kind,
        files,
        raw,
    } = mapped;
    if let InboundKind::Message(msg) = &mut kind {
        for f in files {
            msg.attachments.push(fetch(sender, api, max_bytes, f).await);
        }
    }
    if let InboundKind::Unknown { description } = &kind {
        tracing::debug!(connector = %sender.id(), %external_id, description, "vk: unmapped event");
    }
    let ev = InboundEvent::new(
        sender.id().clone(),
        external_id,
        occurred_at.unwrap_or_else(OffsetDateTime::now_utc),
        kind,
    )
    .with_raw(raw);
    sender.send(ev).await?;
    if let Some(eid) = event_id {
        shared.mark_seen(&eid);
    }
    Ok(())
}

async fn fetch(
    sender: &InboundSender,
    api: &Api,
    max_bytes: u64,
    f: crate::parse::RemoteFile,
) -> Attachment {
    let reference = |f: &crate::parse::RemoteFile| Attachment {
        name: f.name.clone(),
        mime_type: f.mime_type.clone(),
        size: f.size,
        url_or_ref: f.url.clone(),
    };
    if !f.download || max_bytes == 0 || f.size.is_some_and(|s| s > max_bytes) {
        return reference(&f);
    }
    match api.download(&f.url, max_bytes).await {
        Ok(Some(bytes)) => match sender.files().put(&f.name, &f.mime_type, bytes).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(connector = %sender.id(), name = %f.name, error = %e,
                    "vk: file not stored, keeping its URL");
                reference(&f)
            }
        },
        Ok(None) => {
            tracing::info!(connector = %sender.id(), name = %f.name, max_bytes,
                "vk: file over the size limit, keeping its URL");
            reference(&f)
        }
        Err(e) => {
            tracing::warn!(connector = %sender.id(), name = %f.name, error = %e,
                "vk: file not downloaded, keeping its URL");
            reference(&f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_bounded() {
        let s = Shared::default();
        for i in 0..(SEEN_EVENTS + 10) {
            s.mark_seen(&i.to_string());
        }
        assert!(!s.seen("0"));
        assert!(s.seen(&(SEEN_EVENTS + 9).to_string()));
        s.record_send(5, None);
        assert_eq!(s.our_send(5), OurSend::Pending);
        s.record_send(5, Some("1:2".into()));
        assert_eq!(s.our_send(5), OurSend::Acked("1:2".into()));
        for i in 0..(OUR_SENDS as i64 + 1) {
            s.record_send(100 + i, None);
        }
        assert_eq!(s.our_send(5), OurSend::No);
    }
}
