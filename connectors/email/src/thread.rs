//! Threading: which conversation a mail belongs to, kept in the instance's
//! [`StateStore`] so it survives restarts and is shared by every node.
//!
//! Keys (all the connector's own):
//!
//! | key | value |
//! |---|---|
//! | `msg:{message-id}` | the thread id of every message seen or sent |
//! | `sent:{message-id}` | the thread id of a message we sent (to recognise bounces of ours) |
//! | `token:{K-xxxxxxxx}` | the thread id behind a reference token |
//! | `subj:{address}:{base subject}` | `{"thread": id, "at": unix seconds}` of the last message |
//! | `thread:{thread id}` | [`ThreadInfo`] as JSON |
//!
//! The id of a new conversation is its first message's Message-ID. A reply finds its
//! thread by (1) any id of References (newest first) then In-Reply-To that we have seen,
//! (2) our reference token in the subject or text, (3) the same base subject with the same
//! counterpart within [`SUBJECT_WINDOW`]; otherwise it opens a new thread.
//!
//! Read-modify-write of one thread is serialized by [`Threads`]' lock within the process;
//! two nodes writing the same thread at once may lose one `references` entry, which only
//! shortens a later References header.

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{ConnectorError, StateStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::mime;

/// How many message ids a thread keeps for the References header of our replies.
pub const MAX_REFERENCES: usize = 20;

/// How long the subject fallback (3) links a mail to an earlier one.
pub const SUBJECT_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// What we remember of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// The address of the person on the other side (lower-cased).
    pub counterpart_address: String,
    /// Their display name, if known.
    #[serde(default)]
    pub counterpart_name: Option<String>,
    /// The subject of the conversation as first seen (without our token).
    #[serde(default)]
    pub subject: String,
    /// The last message ids of the thread, oldest first, at most [`MAX_REFERENCES`].
    #[serde(default)]
    pub references: Vec<String>,
    /// The Message-ID of the last mail the counterpart sent, for In-Reply-To.
    #[serde(default)]
    pub last_inbound_message_id: Option<String>,
}

impl ThreadInfo {
    /// Appends `id` to `references` unless present, dropping the oldest beyond the cap.
    pub fn push_reference(&mut self, id: &str) {
        if id.is_empty() || self.references.iter().any(|r| r == id) {
            return;
        }
        self.references.push(id.to_owned());
        let excess = self.references.len().saturating_sub(MAX_REFERENCES);
        if excess > 0 {
            self.references.drain(..excess);
        }
    }
}

/// How a thread was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A References / In-Reply-To id we had seen.
    Reference,
    /// Our reference token.
    Token,
    /// The same base subject and counterpart within the window.
    Subject,
    /// None matched: a new conversation.
    New,
}

/// What the resolver needs of a mail.
#[derive(Debug, Clone, Default)]
pub struct Lookup<'a> {
    /// The mail's own Message-ID (or synthetic id): the id of a new thread.
    pub message_id: &'a str,
    /// References, in header order.
    pub references: &'a [String],
    /// In-Reply-To ids.
    pub in_reply_to: &'a [String],
    /// Our token found in the subject or body (`K-xxxxxxxx`).
    pub token: Option<&'a str>,
    /// The base subject (lower-cased, prefixes stripped).
    pub base_subject: &'a str,
    /// The counterpart's address (lower-cased).
    pub counterpart: &'a str,
    /// When the mail was written.
    pub at: Option<OffsetDateTime>,
}

/// The thread state of one instance, over its [`StateStore`].
#[derive(Debug, Clone)]
pub struct Threads {
    state: Arc<dyn StateStore>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubjectEntry {
    thread: String,
    at: i64,
}

fn subject_key(address: &str, base_subject: &str) -> String {
    format!("subj:{}:{}", address.to_lowercase(), base_subject)
}

impl Threads {
    /// Threads kept in `state`.
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Self {
            state,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The store behind it.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The thread a mail belongs to, and how it was found. Writes nothing.
    ///
    /// # Errors
    ///
    /// A store error (retryable).
    pub async fn resolve(&self, mail: &Lookup<'_>) -> Result<(String, Via), ConnectorError> {
        // (1) References newest first, then In-Reply-To.
        for id in mail.references.iter().rev().chain(mail.in_reply_to.iter()) {
            if id == mail.message_id {
                continue;
            }
            if let Some(thread) = self.state.get(&format!("msg:{id}")).await? {
                return Ok((thread, Via::Reference));
            }
        }
        // A redelivered message keeps the thread it got the first time.
        if let Some(thread) = self.state.get(&format!("msg:{}", mail.message_id)).await? {
            return Ok((thread, Via::Reference));
        }
        // (2) Our token.
        if let Some(token) = mail.token {
            if let Some(thread) = self.state.get(&format!("token:{token}")).await? {
                return Ok((thread, Via::Token));
            }
        }
        // (3) Same base subject and counterpart within the window.
        if !mail.base_subject.is_empty() && !mail.counterpart.is_empty() {
            let key = subject_key(mail.counterpart, mail.base_subject);
            if let Some(entry) = self.state.get(&key).await? {
                if let Ok(entry) = serde_json::from_str::<SubjectEntry>(&entry) {
                    let at = mail
                        .at
                        .unwrap_or_else(OffsetDateTime::now_utc)
                        .unix_timestamp();
                    let window = i64::try_from(SUBJECT_WINDOW.as_secs()).unwrap_or(i64::MAX);
                    if (at - entry.at).abs() <= window {
                        return Ok((entry.thread, Via::Subject));
                    }
                }
            }
        }
        Ok((mail.message_id.to_owned(), Via::New))
    }

    /// The conversation `thread_id`, if we know it.
    ///
    /// # Errors
    ///
    /// A store error (retryable).
    pub async fn info(&self, thread_id: &str) -> Result<Option<ThreadInfo>, ConnectorError> {
        Ok(self
            .state
            .get(&format!("thread:{thread_id}"))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    async fn put_info(&self, thread_id: &str, info: &ThreadInfo) -> Result<(), ConnectorError> {
        let json = serde_json::to_string(info).map_err(ConnectorError::other)?;
        self.state.put(&format!("thread:{thread_id}"), &json).await
    }

    /// Records a mail the counterpart sent into `thread_id`: `msg:`, `token:`, `subj:`
    /// and the thread's info (created with `counterpart`/`subject` when new).
    ///
    /// # Errors
    ///
    /// A store error (retryable).
    pub async fn record_inbound(
        &self,
        thread_id: &str,
        mail: &Lookup<'_>,
        counterpart_name: Option<&str>,
        subject: &str,
    ) -> Result<(), ConnectorError> {
        let _guard = self.lock.lock().await;
        self.state
            .put(&format!("msg:{}", mail.message_id), thread_id)
            .await?;
        let mut info = self.info(thread_id).await?.unwrap_or_else(|| ThreadInfo {
            counterpart_address: mail.counterpart.to_owned(),
            counterpart_name: counterpart_name.map(str::to_owned),
            subject: strip_token(subject),
            ..ThreadInfo::default()
        });
        if info.counterpart_address.is_empty() {
            info.counterpart_address = mail.counterpart.to_owned();
        }
        if info.counterpart_name.is_none() {
            info.counterpart_name = counterpart_name.map(str::to_owned);
        }
        info.push_reference(mail.message_id);
        info.last_inbound_message_id = Some(mail.message_id.to_owned());
        self.put_info(thread_id, &info).await?;
        let token = mime::thread_token(thread_id);
        self.state.put(&format!("token:{token}"), thread_id).await?;
        if !mail.base_subject.is_empty() && !info.counterpart_address.is_empty() {
            let entry = SubjectEntry {
                thread: thread_id.to_owned(),
                at: mail
                    .at
                    .unwrap_or_else(OffsetDateTime::now_utc)
                    .unix_timestamp(),
            };
            let json = serde_json::to_string(&entry).map_err(ConnectorError::other)?;
            self.state
                .put(
                    &subject_key(&info.counterpart_address, mail.base_subject),
                    &json,
                )
                .await?;
        }
        Ok(())
    }

    /// Records a mail we sent into `thread_id` (creating the thread with `fallback` when
    /// it is new): `msg:`, `sent:`, `token:` and the thread's references.
    ///
    /// # Errors
    ///
    /// A store error (retryable).
    pub async fn record_outbound(
        &self,
        thread_id: &str,
        message_id: &str,
        fallback: ThreadInfo,
    ) -> Result<(), ConnectorError> {
        let _guard = self.lock.lock().await;
        self.state
            .put(&format!("msg:{message_id}"), thread_id)
            .await?;
        self.state
            .put(&format!("sent:{message_id}"), thread_id)
            .await?;
        let mut info = self.info(thread_id).await?.unwrap_or(fallback);
        info.push_reference(message_id);
        self.put_info(thread_id, &info).await?;
        let token = mime::thread_token(thread_id);
        self.state.put(&format!("token:{token}"), thread_id).await
    }

    /// The thread of a message we sent, if `message_id` is one of ours.
    ///
    /// # Errors
    ///
    /// A store error (retryable).
    pub async fn sent_thread(&self, message_id: &str) -> Result<Option<String>, ConnectorError> {
        self.state.get(&format!("sent:{message_id}")).await
    }
}

/// `subject` without any `[K-xxxxxxxx]` token and with whitespace trimmed.
pub fn strip_token(subject: &str) -> String {
    let mut out = subject.to_owned();
    while let Some(token) = mime::find_token(&out) {
        let bracketed = format!("[{token}]");
        if !out.contains(&bracketed) {
            break;
        }
        out = out.replacen(&bracketed, "", 1);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The subject of our reply in a thread whose subject is `thread_subject`:
/// `Re: {subject} [{token}]`, without a second `Re:` and with the token once.
pub fn reply_subject(thread_subject: &str, token: &str) -> String {
    let base = strip_token(thread_subject);
    let has_re = base.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:"));
    let base = if base.is_empty() {
        "(no subject)".to_owned()
    } else {
        base
    };
    if has_re {
        format!("{base} [{token}]")
    } else {
        format!("Re: {base} [{token}]")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kommutator_sdk::store::MemoryState;
    use time::macros::datetime;

    use super::*;

    fn lookup<'a>(id: &'a str, refs: &'a [String], irt: &'a [String]) -> Lookup<'a> {
        Lookup {
            message_id: id,
            references: refs,
            in_reply_to: irt,
            token: None,
            base_subject: "order 42",
            counterpart: "ivan@example.com",
            at: Some(datetime!(2024-05-01 12:00 UTC)),
        }
    }

    #[tokio::test]
    async fn new_thread_then_reply_by_references() {
        let threads = Threads::new(MemoryState::new());
        let first = lookup("a@x", &[], &[]);
        let (t, via) = threads.resolve(&first).await.unwrap();
        assert_eq!((t.as_str(), via), ("a@x", Via::New));
        threads
            .record_inbound(&t, &first, Some("Ivan"), "Order 42")
            .await
            .unwrap();

        // Newest known reference wins; unknown ones are skipped.
        let refs = vec!["a@x".to_owned(), "unknown@y".to_owned()];
        let reply = lookup("b@x", &refs, &[]);
        assert_eq!(
            threads.resolve(&reply).await.unwrap(),
            ("a@x".to_owned(), Via::Reference)
        );
        // In-Reply-To alone.
        let irt = vec!["a@x".to_owned()];
        let mut reply = lookup("c@x", &[], &irt);
        reply.base_subject = "something else";
        assert_eq!(threads.resolve(&reply).await.unwrap().1, Via::Reference);

        let info = threads.info("a@x").await.unwrap().unwrap();
        assert_eq!(info.counterpart_address, "ivan@example.com");
        assert_eq!(info.counterpart_name.as_deref(), Some("Ivan"));
        assert_eq!(info.subject, "Order 42");
        assert_eq!(info.last_inbound_message_id.as_deref(), Some("a@x"));
    }

    #[tokio::test]
    async fn token_and_subject_fallbacks() {
        let state = MemoryState::new();
        let threads = Threads::new(state.clone());
        let first = lookup("a@x", &[], &[]);
        threads
            .record_inbound("a@x", &first, None, "Order 42")
            .await
            .unwrap();
        let token = mime::thread_token("a@x");
        assert_eq!(
            state.value(&format!("token:{token}")).as_deref(),
            Some("a@x")
        );

        // Broken references, other subject, other sender: the token finds it.
        let broken = vec!["lost@z".to_owned()];
        let mut by_token = lookup("d@x", &broken, &[]);
        by_token.base_subject = "other";
        by_token.counterpart = "someone@else.com";
        by_token.token = Some(&token);
        assert_eq!(
            threads.resolve(&by_token).await.unwrap(),
            ("a@x".to_owned(), Via::Token)
        );

        // Same subject and counterpart within 30 days.
        let mut by_subject = lookup("e@x", &[], &[]);
        by_subject.at = Some(datetime!(2024-05-20 12:00 UTC));
        assert_eq!(threads.resolve(&by_subject).await.unwrap().1, Via::Subject);
        // ... but not after 30 days, nor from another address.
        by_subject.at = Some(datetime!(2024-07-20 12:00 UTC));
        assert_eq!(threads.resolve(&by_subject).await.unwrap().1, Via::New);
        let mut other = lookup("f@x", &[], &[]);
        other.counterpart = "petr@example.com";
        assert_eq!(threads.resolve(&other).await.unwrap().1, Via::New);
    }

    #[tokio::test]
    async fn outbound_is_recorded_and_references_are_capped() {
        let threads = Threads::new(MemoryState::new());
        let fallback = ThreadInfo {
            counterpart_address: "ivan@example.com".to_owned(),
            subject: "Offer".to_owned(),
            ..ThreadInfo::default()
        };
        for i in 0..25 {
            threads
                .record_outbound("t1", &format!("out{i}@us"), fallback.clone())
                .await
                .unwrap();
        }
        let info = threads.info("t1").await.unwrap().unwrap();
        assert_eq!(info.references.len(), MAX_REFERENCES);
        assert_eq!(info.references.first().unwrap(), "out5@us");
        assert_eq!(info.references.last().unwrap(), "out24@us");
        assert_eq!(
            threads.sent_thread("out3@us").await.unwrap().as_deref(),
            Some("t1")
        );
        assert_eq!(threads.sent_thread("nope@us").await.unwrap(), None);
        // A reply to our mail finds the thread.
        let irt = vec!["out24@us".to_owned()];
        let reply = lookup("r@x", &[], &irt);
        assert_eq!(
            threads.resolve(&reply).await.unwrap(),
            ("t1".to_owned(), Via::Reference)
        );
    }

    #[tokio::test]
    async fn redelivery_keeps_its_thread() {
        let threads = Threads::new(MemoryState::new());
        let refs = vec!["a@x".to_owned()];
        let m = lookup("b@x", &refs, &[]);
        threads.record_inbound("t9", &m, None, "s").await.unwrap();
        let again = lookup("b@x", &[], &[]);
        assert_eq!(threads.resolve(&again).await.unwrap().0, "t9");
    }

    #[test]
    fn reply_subjects() {
        assert_eq!(
            reply_subject("Order 42", "K-abcdefgh"),
            "Re: Order 42 [K-abcdefgh]"
        );
        assert_eq!(
            reply_subject("RE: Order 42 [K-abcdefgh]", "K-abcdefgh"),
            "RE: Order 42 [K-abcdefgh]"
        );
        assert_eq!(
            reply_subject("", "K-abcdefgh"),
            "Re: (no subject) [K-abcdefgh]"
        );
        assert_eq!(strip_token("Hi  [K-abcdefgh] there"), "Hi there");
    }
}
