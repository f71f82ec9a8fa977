//! [`ConnectorError`]: why a connector could not build, run or hand over an event.

use std::error::Error as StdError;
use std::time::Duration;

/// A boxed error from a protocol library, kept as the `source` of a [`ConnectorError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a connector failed.
///
/// Variants name the cause; the supervisor in the hub reads [`is_retryable`](Self::is_retryable)
/// to decide between restarting the connector with backoff and marking it `failed`.
/// Messages are lowercase without a trailing period and must never contain secrets
/// (tokens, passwords): the hub logs them and shows them in the console.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The configuration is invalid: a missing, malformed or contradictory field.
    /// Not retryable: the same config fails the same way.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The config key at fault, as written in the config file (e.g. `addr`).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The connection to the remote side could not be made or was lost (DNS, TCP, TLS, HTTP
    /// transport). Retryable.
    #[error("connect failed: {message}")]
    Connect {
        /// What the connector was connecting to and what happened.
        message: String,
        /// The underlying error, if there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The remote side sent something that breaks the protocol (bad framing, a missing
    /// mandatory field, an invalid id). Retryable: a fresh session usually recovers.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The remote side rejected our credentials or permissions. Not retryable: an admin
    /// has to fix the config.
    #[error("authentication failed: {0}")]
    Auth(String),

    /// A channel or connection was closed: the remote peer hung up, or the hub dropped its
    /// end (the hub is shutting down). Retryable.
    #[error("channel closed")]
    Closed,

    /// The remote side asked us to slow down. Retryable, no earlier than `retry_after`
    /// when the remote side said when.
    #[error("rate limited{}", match retry_after {
        Some(d) => format!(", retry after {}s", d.as_secs_f64()),
        None => String::new(),
    })]
    RateLimited {
        /// How long the remote side asked us to wait, if it said.
        retry_after: Option<Duration>,
    },

    /// Anything else, with its source. Retryable: an unclassified failure is assumed
    /// transient, and the supervisor's backoff bounds the cost of being wrong.
    #[error(transparent)]
    Other(BoxError),
}

impl ConnectorError {
    /// A [`ConnectorError::Config`] for `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`ConnectorError::Connect`] without an underlying error.
    pub fn connect(message: impl Into<String>) -> Self {
        Self::Connect {
            message: message.into(),
            source: None,
        }
    }

    /// A [`ConnectorError::Connect`] caused by `source`.
    pub fn connect_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Connect {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A [`ConnectorError::Protocol`].
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }

    /// A [`ConnectorError::Auth`].
    pub fn auth(message: impl Into<String>) -> Self {
        Self::Auth(message.into())
    }

    /// A [`ConnectorError::Other`] from any error or message (`&str` and `String` work too).
    pub fn other(error: impl Into<BoxError>) -> Self {
        Self::Other(error.into())
    }

    /// Whether restarting the connector (after a backoff) may succeed.
    ///
    /// | variant | retryable |
    /// |---|---|
    /// | `Config`, `Auth` | no: an admin must change the config |
    /// | `Connect`, `Protocol`, `Closed`, `RateLimited`, `Other` | yes |
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Auth(_) => false,
            Self::Connect { .. }
            | Self::Protocol(_)
            | Self::Closed
            | Self::RateLimited { .. }
            | Self::Other(_) => true,
        }
    }

    /// The least delay before a retry that the remote side asked for, if any.
    ///
    /// The supervisor waits `max(its own backoff, retry_after)`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn is_retryable_table() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases: Vec<(ConnectorError, bool)> = vec![
            (
                ConnectorError::config("addr", "not a socket address"),
                false,
            ),
            (ConnectorError::auth("secret rejected"), false),
            (ConnectorError::connect("127.0.0.1:5038"), true),
            (ConnectorError::connect_with("127.0.0.1:5038", io), true),
            (ConnectorError::protocol("missing ActionID"), true),
            (ConnectorError::Closed, true),
            (ConnectorError::RateLimited { retry_after: None }, true),
            (
                ConnectorError::RateLimited {
                    retry_after: Some(Duration::from_secs(3)),
                },
                true,
            ),
            (ConnectorError::other("something odd"), true),
        ];
        for (err, retryable) in cases {
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
        }
    }

    #[test]
    fn messages_are_lowercase_and_carry_context() {
        assert_eq!(
            ConnectorError::config("addr", "not a socket address").to_string(),
            "invalid config field `addr`: not a socket address"
        );
        assert_eq!(
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            }
            .to_string(),
            "rate limited, retry after 1.5s"
        );
        assert_eq!(
            ConnectorError::RateLimited { retry_after: None }.to_string(),
            "rate limited"
        );
        assert_eq!(ConnectorError::Closed.to_string(), "channel closed");
        assert_eq!(ConnectorError::other("boom").to_string(), "boom");
    }

    #[test]
    fn connect_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = ConnectorError::connect_with("ami 127.0.0.1:5038", io);
        assert_eq!(err.to_string(), "connect failed: ami 127.0.0.1:5038");
        assert_eq!(err.source().unwrap().to_string(), "refused");
        assert!(ConnectorError::connect("x").source().is_none());
    }

    #[test]
    fn retry_after_only_for_rate_limits() {
        let d = Duration::from_secs(7);
        assert_eq!(
            ConnectorError::RateLimited {
                retry_after: Some(d)
            }
            .retry_after(),
            Some(d)
        );
        assert_eq!(ConnectorError::Closed.retry_after(), None);
    }
}
