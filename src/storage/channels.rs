//! What the hub keeps for connectors: received files by content (`files`) and the values
//! an instance remembers across restarts (`connector_state`). Both back the SDK's
//! `FileStore` and `StateStore` (see `pipeline::host`).

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Actor, SqlStore, Store, StoreError, StoreResult};
use crate::domain::validate::FieldError;
use crate::domain::Id;

/// A stored file's content and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The MIME type it was stored with first.
    pub mime_type: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// The largest connector state value, in bytes.
pub const MAX_STATE_VALUE: usize = 64 * 1024;

/// Whether `key` is a well-formed file key: 64 lower-case hex digits.
pub fn is_file_key(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SqlStore {
    pub(crate) async fn message_html_impl(
        &self,
        actor: &Actor,
        message_id: Id,
    ) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT dialog_id, html FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { entity: "message" })?;
        // Seeing the message is seeing its dialog.
        let dialog_id: i64 = row.try_get("dialog_id")?;
        Store::get_dialog(self, actor, dialog_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::NotFound { entity: "message" },
                other => other,
            })?;
        Ok(row.try_get("html")?)
    }

    pub(crate) async fn put_file_impl(
        &self,
        connector_id: &str,
        mime_type: &str,
        content: &[u8],
    ) -> StoreResult<String> {
        let key = hex_lower(&Sha256::digest(content));
        let mut tx = self.write(&Actor::System).await?;
        sqlx::query(
            "INSERT INTO files (sha256, mime_type, size, content, connector_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&key)
        .bind(mime_type)
        .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
        .bind(content.to_vec())
        .bind(connector_id)
        .bind(tx.now.micros())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    pub(crate) async fn get_file_impl(&self, key: &str) -> StoreResult<Option<FileContent>> {
        if !is_file_key(key) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT mime_type, content FROM files WHERE sha256 = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(FileContent {
                mime_type: r.try_get("mime_type")?,
                content: r.try_get("content")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn identity_value_impl(
        &self,
        identity_id: Id,
    ) -> StoreResult<Option<(String, String)>> {
        let row = sqlx::query("SELECT kind, value FROM identities WHERE id = $1")
            .bind(identity_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("kind")?, r.try_get("value")?)))
            .transpose()
    }

    pub(crate) async fn connector_state_impl(
        &self,
        connector_id: &str,
        key: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM connector_state WHERE connector_id = $1 AND key = $2",
        )
        .bind(connector_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(crate) async fn set_connector_state_impl(
        &self,
        connector_id: &str,
        key: &str,
        value: &str,
    ) -> StoreResult<()> {
        if key.is_empty() || key.len() > 512 || value.len() > MAX_STATE_VALUE {
            return Err(StoreError::Invalid(FieldError::new(
                "value",
                "too_long",
                format!(
                    "connector state `{connector_id}`: a key of 1-512 bytes and a value of at most {MAX_STATE_VALUE} bytes"
                ),
            )));
        }
        let mut tx = self.write(&Actor::System).await?;
        sqlx::query(
            "INSERT INTO connector_state (connector_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connector_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(connector_id)
        .bind(key)
        .bind(value)
        .bind(tx.now.micros())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_are_sha256_hex() {
        assert!(is_file_key(&"a".repeat(64)));
        assert!(!is_file_key(&"A".repeat(64)));
        assert!(!is_file_key("../etc/passwd"));
        assert!(!is_file_key(&"a".repeat(63)));
        assert_eq!(hex_lower(&[0, 255, 16]), "00ff10");
    }
}
