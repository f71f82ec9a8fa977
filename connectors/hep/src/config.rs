//! [`Config`]: the instance's table in the hub's config file, and its validation.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use kommutator_sdk::ConnectorError;
use serde::Deserialize;

use crate::calls::TrackerSettings;
use crate::number::NumberRules;

/// The config of one HEP collector instance (the table minus `type = "hep"`).
/// Every field but `default_country_code` has a default; see the crate docs for an
/// example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// UDP address to receive HEP on. Default `127.0.0.1:9060`.
    #[serde(default = "default_udp_bind")]
    pub udp_bind: String,
    /// TCP address to receive HEP on (framed by HEP's own length field); none by default.
    #[serde(default)]
    pub tcp_bind: Option<String>,
    /// When set, only packets whose auth key chunk (0x000e) equals it are used; the rest
    /// are counted and dropped.
    #[serde(default)]
    pub auth_key: Option<AuthKey>,
    /// Country calling code for national numbers, digits without `+` (`"7"`).
    pub default_country_code: String,
    /// National trunk prefix; default `"8"` for country code 7, `"1"` for 1, else `"0"`.
    /// `""` for none.
    #[serde(default)]
    pub national_prefix: Option<String>,
    /// All-digit users of at most this many digits are internal extensions. Default 4;
    /// 0 turns the rule off.
    #[serde(default = "default_extension_max_len")]
    pub extension_max_len: usize,
    /// Hosts whose non-numeric users (`sip:alice@pbx.example.com`) are internal.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// How long each message is held to put out-of-order packets right. Default 200.
    #[serde(default = "default_reorder_window_ms")]
    pub reorder_window_ms: u64,
    /// A call without messages for this long is forgotten (and ended if it was not).
    /// Default 7200.
    #[serde(default = "default_call_idle_timeout_secs")]
    pub call_idle_timeout_secs: u64,
    /// The most calls tracked at once. Default 10000.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
}

fn default_udp_bind() -> String {
    "127.0.0.1:9060".to_owned()
}
fn default_extension_max_len() -> usize {
    4
}
fn default_reorder_window_ms() -> u64 {
    200
}
fn default_call_idle_timeout_secs() -> u64 {
    7200
}
fn default_max_calls() -> usize {
    10_000
}

/// A shared secret. Its `Debug` never shows it, and it is compared in constant time.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct AuthKey(String);

impl AuthKey {
    /// Wraps a secret.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// Whether `candidate` equals the key; the time taken depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let key = self.0.as_bytes();
        if key.len() != candidate.len() {
            return false;
        }
        key.iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<redacted>)")
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub udp_bind: SocketAddr,
    pub tcp_bind: Option<SocketAddr>,
    pub auth_key: Option<AuthKey>,
    pub tracker: TrackerSettings,
}

const MAX_AUTH_KEY_LEN: usize = 1024;
const MAX_REORDER_WINDOW_MS: u64 = 10_000;
const MIN_IDLE_SECS: u64 = 60;
const MAX_IDLE_SECS: u64 = 7 * 24 * 3600;
const MAX_MAX_CALLS: usize = 1_000_000;

fn all_digits(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
}

fn socket_addr(field: &str, value: &str) -> Result<SocketAddr, ConnectorError> {
    value.trim().parse().map_err(|_| {
        ConnectorError::config(
            field,
            format!("{value:?} is not a socket address like 127.0.0.1:9060"),
        )
    })
}

impl Config {
    /// Checks every field and builds the settings.
    pub(crate) fn validate(self) -> Result<Settings, ConnectorError> {
        let udp_bind = socket_addr("udp_bind", &self.udp_bind)?;
        let tcp_bind = self
            .tcp_bind
            .as_deref()
            .map(|a| socket_addr("tcp_bind", a))
            .transpose()?;
        if let Some(key) = &self.auth_key {
            if key.0.is_empty() {
                return Err(ConnectorError::config(
                    "auth_key",
                    "must not be empty (leave it out to accept packets without a key)",
                ));
            }
            if key.0.len() > MAX_AUTH_KEY_LEN {
                return Err(ConnectorError::config(
                    "auth_key",
                    format!("must be at most {MAX_AUTH_KEY_LEN} bytes"),
                ));
            }
        }
        let cc = self.default_country_code.trim().trim_start_matches('+');
        if cc.is_empty() || cc.len() > 3 || !all_digits(cc) || cc.starts_with('0') {
            return Err(ConnectorError::config(
                "default_country_code",
                "must be a country calling code of 1 to 3 digits, like \"7\" or \"44\"",
            ));
        }
        let national_prefix = match self.national_prefix {
            Some(p) => {
                let p = p.trim().to_owned();
                if p.len() > 4 || !all_digits(&p) {
                    return Err(ConnectorError::config(
                        "national_prefix",
                        "must be at most 4 digits (\"\" for none)",
                    ));
                }
                p
            }
            None => match cc {
                "7" => "8",
                "1" => "1",
                _ => "0",
            }
            .to_owned(),
        };
        if self.extension_max_len > 15 {
            return Err(ConnectorError::config(
                "extension_max_len",
                "must be at most 15 (0 turns the rule off)",
            ));
        }
        let mut internal_domains = Vec::with_capacity(self.internal_domains.len());
        for d in &self.internal_domains {
            let d = d.trim();
            if d.is_empty() || d.contains(char::is_whitespace) || d.contains(['@', ':', ';']) {
                return Err(ConnectorError::config(
                    "internal_domains",
                    format!("{d:?} is not a host name"),
                ));
            }
            internal_domains.push(d.to_ascii_lowercase());
        }
        if self.reorder_window_ms > MAX_REORDER_WINDOW_MS {
            return Err(ConnectorError::config(
                "reorder_window_ms",
                format!("must be at most {MAX_REORDER_WINDOW_MS}"),
            ));
        }
        if !(MIN_IDLE_SECS..=MAX_IDLE_SECS).contains(&self.call_idle_timeout_secs) {
            return Err(ConnectorError::config(
                "call_idle_timeout_secs",
                format!("must be from {MIN_IDLE_SECS} to {MAX_IDLE_SECS}"),
            ));
        }
        if !(1..=MAX_MAX_CALLS).contains(&self.max_calls) {
            return Err(ConnectorError::config(
                "max_calls",
                format!("must be from 1 to {MAX_MAX_CALLS}"),
            ));
        }
        Ok(Settings {
            udp_bind,
            tcp_bind,
            auth_key: self.auth_key,
            tracker: TrackerSettings {
                rules: NumberRules {
                    country_code: cc.to_owned(),
                    national_prefix,
                    extension_max_len: self.extension_max_len,
                    internal_domains,
                },
                reorder_window: Duration::from_millis(self.reorder_window_ms),
                idle_timeout: Duration::from_secs(self.call_idle_timeout_secs),
                max_calls: self.max_calls,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults() {
        let s = parse("default_country_code = \"7\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.udp_bind.to_string(), "127.0.0.1:9060");
        assert_eq!(s.tcp_bind, None);
        assert!(s.auth_key.is_none());
        assert_eq!(s.tracker.rules.national_prefix, "8");
        assert_eq!(s.tracker.rules.extension_max_len, 4);
        assert_eq!(s.tracker.reorder_window, Duration::from_millis(200));
        assert_eq!(s.tracker.idle_timeout, Duration::from_secs(7200));
        assert_eq!(s.tracker.max_calls, 10_000);
        for (cc, prefix) in [("+1", "1"), ("44", "0")] {
            let s = parse(&format!("default_country_code = \"{cc}\""))
                .unwrap()
                .validate()
                .unwrap();
            assert_eq!(s.tracker.rules.national_prefix, prefix);
            assert_eq!(s.tracker.rules.country_code, cc.trim_start_matches('+'));
        }
    }

    #[test]
    fn full_and_redacted() {
        let c = parse(
            r#"
            udp_bind = "0.0.0.0:9060"
            tcp_bind = "[::1]:9061"
            auth_key = "s3cret-hep"
            default_country_code = "7"
            national_prefix = ""
            extension_max_len = 3
            internal_domains = ["PBX.example.com"]
            reorder_window_ms = 0
            call_idle_timeout_secs = 60
            max_calls = 1
            "#,
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("AuthKey(<redacted>)"), "{debug}");
        let s = c.validate().unwrap();
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(s.tcp_bind.unwrap().to_string(), "[::1]:9061");
        assert_eq!(s.tracker.rules.internal_domains, vec!["pbx.example.com"]);
        assert_eq!(s.tracker.rules.national_prefix, "");
        let key = s.auth_key.unwrap();
        assert!(key.matches(b"s3cret-hep"));
        assert!(!key.matches(b"s3cret-heq"));
        assert!(!key.matches(b"s3cret"));
        assert!(!key.matches(b""));
    }

    #[test]
    fn unknown_and_missing_fields() {
        let err = parse("default_country_code = \"7\"\nudp_port = 9060").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `udp_port`"),
            "{err}"
        );
        let err = parse("udp_bind = \"127.0.0.1:9060\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("missing field `default_country_code`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                "udp_bind = \"localhost\"",
                "udp_bind",
                "\"localhost\" is not a socket address like 127.0.0.1:9060",
            ),
            (
                "tcp_bind = \"1.2.3.4\"",
                "tcp_bind",
                "\"1.2.3.4\" is not a socket address like 127.0.0.1:9060",
            ),
            (
                "auth_key = \"\"",
                "auth_key",
                "must not be empty (leave it out to accept packets without a key)",
            ),
            (
                "national_prefix = \"8x\"",
                "national_prefix",
                "must be at most 4 digits (\"\" for none)",
            ),
            (
                "extension_max_len = 16",
                "extension_max_len",
                "must be at most 15 (0 turns the rule off)",
            ),
            (
                "internal_domains = [\"a b\"]",
                "internal_domains",
                "\"a b\" is not a host name",
            ),
            (
                "internal_domains = [\"\"]",
                "internal_domains",
                "\"\" is not a host name",
            ),
            (
                "reorder_window_ms = 10001",
                "reorder_window_ms",
                "must be at most 10000",
            ),
            (
                "call_idle_timeout_secs = 59",
                "call_idle_timeout_secs",
                "must be from 60 to 604800",
            ),
            (
                "call_idle_timeout_secs = 604801",
                "call_idle_timeout_secs",
                "must be from 60 to 604800",
            ),
            ("max_calls = 0", "max_calls", "must be from 1 to 1000000"),
            (
                "max_calls = 1000001",
                "max_calls",
                "must be from 1 to 1000000",
            ),
        ];
        for (line, field, message) in cases {
            let c = parse(&format!("default_country_code = \"7\"\n{line}")).unwrap();
            let err = c.validate().unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}"),
                "{line}"
            );
        }
        let long_key = format!("auth_key = \"{}\"", "k".repeat(1025));
        let err = parse(&format!("default_country_code = \"7\"\n{long_key}"))
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config field `auth_key`: must be at most 1024 bytes"
        );
        for cc in ["", "0", "07", "1234", "x"] {
            let err = parse(&format!("default_country_code = \"{cc}\""))
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid config field `default_country_code`: must be a country calling code \
                 of 1 to 3 digits, like \"7\" or \"44\"",
                "{cc:?}"
            );
        }
    }
}
