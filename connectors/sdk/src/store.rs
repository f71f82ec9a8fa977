//! What the hub keeps for a connector: files it received ([`FileStore`]) and a few values
//! it must remember across restarts ([`StateStore`]), such as an IMAP mailbox's
//! UIDVALIDITY and last UID or a long-poll cursor.
//!
//! Both are object-safe traits the hub implements over its database, so a file or a
//! cursor written on one node is there on every node. [`MemoryFiles`] and
//! [`MemoryState`] keep them in memory: the default of a bare
//! [`ConnectorContext`](crate::ConnectorContext), and what tests use.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Attachment, ConnectorError};

/// A boxed, sendable future: the return type of the store traits' methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The largest file a connector may store, in bytes (25 MiB, the common mail limit).
pub const MAX_FILE_SIZE: usize = 25 * 1024 * 1024;

/// Where a connector keeps the content of files it received (mail attachments,
/// downloaded messenger media), so operators can open them later.
pub trait FileStore: Send + Sync + fmt::Debug {
    /// Stores `content` and returns the [`Attachment`] to put in the message, whose
    /// `url_or_ref` the hub can serve. Storing the same content twice is harmless.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Other`] when the content is over [`MAX_FILE_SIZE`] or the store
    /// failed; a connector then keeps the attachment's name and size without content.
    fn put<'a>(
        &'a self,
        name: &'a str,
        mime_type: &'a str,
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<Attachment, ConnectorError>>;

    /// The file behind an `url_or_ref` this store returned (an operator's attachment to
    /// send, say); `None` when the reference is not one of this store's.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Other`] when the store cannot be read (retryable).
    fn get<'a>(
        &'a self,
        url_or_ref: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredFile>, ConnectorError>>;
}

/// Small values a connector instance remembers across restarts, by key. Keys and values
/// are the connector's own (e.g. `INBOX` → `"1700000000:42"`).
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The value stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Other`] when the store cannot be read (retryable).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, ConnectorError>>;

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Other`] when the store cannot be written (retryable).
    fn put<'a>(&'a self, key: &'a str, value: &'a str)
        -> BoxFuture<'a, Result<(), ConnectorError>>;
}

/// A stored file, as [`FileStore::get`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The name it was stored under.
    pub name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its content.
    pub content: Vec<u8>,
}

/// A [`FileStore`] in memory; `url_or_ref` is `memory:{n}`.
#[derive(Debug, Default)]
pub struct MemoryFiles {
    files: Mutex<Vec<StoredFile>>,
}

impl MemoryFiles {
    /// An empty store, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every file stored so far, in order.
    pub fn files(&self) -> Vec<StoredFile> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl FileStore for MemoryFiles {
    fn put<'a>(
        &'a self,
        name: &'a str,
        mime_type: &'a str,
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<Attachment, ConnectorError>> {
        Box::pin(async move {
            if content.len() > MAX_FILE_SIZE {
                return Err(ConnectorError::other(format!(
                    "file `{name}` is {} bytes, over the {MAX_FILE_SIZE}-byte limit",
                    content.len()
                )));
            }
            let size = content.len() as u64;
            let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            files.push(StoredFile {
                name: name.to_owned(),
                mime_type: mime_type.to_owned(),
                content,
            });
            Ok(Attachment {
                name: name.to_owned(),
                mime_type: mime_type.to_owned(),
                size: Some(size),
                url_or_ref: format!("memory:{}", files.len()),
            })
        })
    }

    fn get<'a>(
        &'a self,
        url_or_ref: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredFile>, ConnectorError>> {
        Box::pin(async move {
            let Some(n) = url_or_ref
                .strip_prefix("memory:")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                return Ok(None);
            };
            let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(n.checked_sub(1).and_then(|i| files.get(i)).cloned())
        })
    }
}

/// A [`StateStore`] in memory. Share one `Arc` between two contexts to test a restart.
#[derive(Debug, Default)]
pub struct MemoryState {
    values: Mutex<HashMap<String, String>>,
}

impl MemoryState {
    /// An empty store, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The value under `key`, without a future.
    pub fn value(&self, key: &str) -> Option<String> {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}

impl StateStore for MemoryState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, ConnectorError>> {
        Box::pin(async move { Ok(self.value(key)) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_owned(), value.to_owned());
            Ok(())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_stores_keep_what_was_put() {
        let files = MemoryFiles::new();
        let a = files
            .put("a.txt", "text/plain", b"hi".to_vec())
            .await
            .unwrap();
        assert_eq!(a.size, Some(2));
        assert_eq!(a.url_or_ref, "memory:1");
        assert_eq!(files.files()[0].content, b"hi");
        let back = files.get("memory:1").await.unwrap().unwrap();
        assert_eq!(back.name, "a.txt");
        assert_eq!(files.get("memory:0").await.unwrap(), None);
        assert_eq!(files.get("https://x/1").await.unwrap(), None);
        let big = vec![0; MAX_FILE_SIZE + 1];
        assert!(files
            .put("big", "application/octet-stream", big)
            .await
            .is_err());

        let state = MemoryState::new();
        assert_eq!(state.get("INBOX").await.unwrap(), None);
        state.put("INBOX", "1:2").await.unwrap();
        state.put("INBOX", "1:3").await.unwrap();
        assert_eq!(state.get("INBOX").await.unwrap().as_deref(), Some("1:3"));
    }
}
