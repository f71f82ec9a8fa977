//! Opaque page cursors: a sort key and an id, base64url-encoded JSON.

use base64::Engine;

use super::{FieldError, StoreError};

/// A position in an ordered listing: the sort key of the last row and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Sort key (a timestamp, a name).
    pub key: CursorKey,
    /// Row id (tie-breaker).
    pub id: i64,
}

/// The sort key of a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKey {
    /// Integer keys (timestamps, ids).
    Int(i64),
    /// Text keys (names, terms).
    Text(String),
}

impl Cursor {
    /// A cursor at an integer key.
    pub fn int(key: i64, id: i64) -> Self {
        Self {
            key: CursorKey::Int(key),
            id,
        }
    }

    /// A cursor at a text key.
    pub fn text(key: impl Into<String>, id: i64) -> Self {
        Self {
            key: CursorKey::Text(key.into()),
            id,
        }
    }

    /// The opaque form.
    pub fn encode(&self) -> String {
        let v = match &self.key {
            CursorKey::Int(k) => serde_json::json!([k, self.id]),
            CursorKey::Text(k) => serde_json::json!([k, self.id]),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Parses the opaque form.
    ///
    /// # Errors
    /// `invalid_cursor` on the `cursor` field when it is not one of ours.
    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::Invalid(FieldError::new(
                "cursor",
                "invalid_cursor",
                "the cursor is not valid; start from the first page",
            ))
        };
        if s.len() > 2048 {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let arr = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
        let id = arr[1].as_i64().ok_or_else(bad)?;
        let key = match &arr[0] {
            serde_json::Value::Number(n) => CursorKey::Int(n.as_i64().ok_or_else(bad)?),
            serde_json::Value::String(s) if !s.chars().any(char::is_control) && s.len() <= 1024 => {
                CursorKey::Text(s.clone())
            }
            _ => return Err(bad()),
        };
        Ok(Self { key, id })
    }

    /// The `(integer key, id)` position of an optional cursor, for [`super::after_cursor`].
    ///
    /// # Errors
    /// `invalid_cursor` for a cursor of another listing.
    pub fn int_position(cursor: Option<&Cursor>) -> Result<Option<(i64, i64)>, StoreError> {
        cursor.map(|c| Ok((c.int_key()?, c.id))).transpose()
    }

    /// The `(text key, id)` position of an optional cursor, for [`super::after_cursor`].
    ///
    /// # Errors
    /// `invalid_cursor` for a cursor of another listing.
    pub fn text_position(cursor: Option<&Cursor>) -> Result<Option<(String, i64)>, StoreError> {
        cursor
            .map(|c| Ok((c.text_key()?.to_owned(), c.id)))
            .transpose()
    }

    /// The integer key, or an error for a cursor of another listing.
    ///
    /// # Errors
    /// `invalid_cursor`.
    pub fn int_key(&self) -> Result<i64, StoreError> {
        match self.key {
            CursorKey::Int(k) => Ok(k),
            CursorKey::Text(_) => Err(StoreError::Invalid(FieldError::new(
                "cursor",
                "invalid_cursor",
                "the cursor belongs to another listing",
            ))),
        }
    }

    /// The text key, or an error for a cursor of another listing.
    ///
    /// # Errors
    /// `invalid_cursor`.
    pub fn text_key(&self) -> Result<&str, StoreError> {
        match &self.key {
            CursorKey::Text(k) => Ok(k),
            CursorKey::Int(_) => Err(StoreError::Invalid(FieldError::new(
                "cursor",
                "invalid_cursor",
                "the cursor belongs to another listing",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for c in [
            Cursor::int(1_700_000_000_000_000, 42),
            Cursor::text("ромашка", 7),
        ] {
            assert_eq!(Cursor::decode(&c.encode()).expect("ours"), c);
        }
        for bad in ["", "!!!", "W10", "WzEsMiwzXQ", &"A".repeat(5000)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
