//! [`Secret`]: a credential from a connector's config that never shows in logs.

use std::fmt;

use serde::Deserialize;

/// A secret from the config (a token, an API key, a signing salt); its `Debug` prints
/// `"***"`, so a config holding it can be logged as [`Connector::Config`] requires.
/// It deserializes from a plain string.
///
/// ```
/// use kommutator_sdk::Secret;
///
/// let s: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
/// assert_eq!(s.expose(), "hunter2");
/// assert_eq!(format!("{s:?}"), r#""***""#);
/// ```
///
/// [`Connector::Config`]: crate::Connector::Config
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Cfg {
            token: Secret,
        }
        let cfg: Cfg = serde_json::from_str(r#"{"token": "s3cr3t-value"}"#).unwrap();
        assert_eq!(cfg.token.expose(), "s3cr3t-value");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(debug, r#"Cfg { token: "***" }"#);
        assert_eq!(format!("{:?}", Secret::new("x")), r#""***""#);
        assert_eq!(format!("{:#?}", Secret::new("x")), r#""***""#);
    }
}
