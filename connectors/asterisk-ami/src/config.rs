//! [`Config`]: the instance's table in the hub's config file, and its validation.

use std::fmt;
use std::time::Duration;

use kommutator_sdk::ConnectorError;
use serde::Deserialize;

use crate::numbers::NumberPlan;
use crate::tracker::TrackerConfig;

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `Action: Challenge` then `Login` with `Key: md5(challenge + secret)`: the secret
    /// never crosses the wire.
    #[default]
    Md5,
    /// `Login` with `Secret:` in clear text, for servers or proxies without the challenge.
    Plain,
}

/// A secret: deserializes from a string, prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, to compute the login key. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The config of one AMI connector instance (`type = "asterisk_ami"`).
///
/// ```toml
/// [connectors.office_pbx]
/// type = "asterisk_ami"
/// host = "10.0.0.5"
/// port = 5038
/// username = "crmhub"
/// secret = "…"
/// auth = "md5"                      # or "plain"
/// ping_interval_secs = 10
/// default_country_code = "7"        # 89161234567 → +79161234567
/// extension_max_len = 4             # 101, 1001 are extensions
/// internal_contexts = ["from-internal"]
/// extension_technology = "PJSIP"    # Originate rings PJSIP/{extension}
/// originate_context = "from-internal"
/// recording_base_url = "https://pbx.example/monitor/"
/// max_backoff_secs = 30
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The AMI server's host name or address.
    pub host: String,
    /// Its TCP port (`5038`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The `manager.conf` user.
    pub username: String,
    /// Its secret.
    pub secret: Secret,
    /// `md5` (default) or `plain`.
    #[serde(default)]
    pub auth: AuthMethod,
    /// Seconds between `Ping` actions (10). AMI has no server keepalive; a dead TCP
    /// connection is only noticed this way.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_secs: u64,
    /// Seconds to wait for the `Pong` before the connection is deemed dead (5).
    #[serde(default = "default_ping_timeout")]
    pub ping_timeout_secs: u64,
    /// The country calling code for national numbers (`"7"`); none means numbers
    /// without `+` or `00` are passed on as the PBX gives them.
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// Digit strings up to this long are extensions (5).
    #[serde(default = "default_extension_max_len")]
    pub extension_max_len: usize,
    /// Dialplan contexts of internal phones; a channel in one is internal whatever its
    /// name (for phones not named by their number).
    #[serde(default)]
    pub internal_contexts: Vec<String>,
    /// The channel technology of operators' phones for click-to-call (`PJSIP`; `SIP` on
    /// `chan_sip` systems).
    #[serde(default = "default_technology")]
    pub extension_technology: String,
    /// The dialplan context that dials the customer once the operator picks up
    /// (`from-internal`).
    #[serde(default = "default_originate_context")]
    pub originate_context: String,
    /// Seconds the operator's phone rings on click-to-call before giving up (30).
    #[serde(default = "default_originate_timeout")]
    pub originate_timeout_secs: u64,
    /// Where recordings can be fetched (`https://pbx.example/monitor/`); the path of
    /// `MIXMONITOR_FILENAME` below `recording_path_prefix` is appended. No recording
    /// events without it (and the `dialplan` event class is not requested).
    #[serde(default)]
    pub recording_base_url: Option<String>,
    /// The directory MixMonitor writes to (`/var/spool/asterisk/monitor/`).
    #[serde(default = "default_recording_prefix")]
    pub recording_path_prefix: String,
    /// The longest wait between reconnect attempts, in seconds (30).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
    /// How many AMI messages may wait between the socket and the hub (50 000) while the
    /// hub is slow; past it the session is dropped and resynced (see the crate docs).
    #[serde(default = "default_max_backlog")]
    pub max_backlog_messages: usize,
}

fn default_port() -> u16 {
    5038
}
fn default_ping_interval() -> u64 {
    10
}
fn default_ping_timeout() -> u64 {
    5
}
fn default_extension_max_len() -> usize {
    5
}
fn default_technology() -> String {
    "PJSIP".to_owned()
}
fn default_originate_context() -> String {
    "from-internal".to_owned()
}
fn default_originate_timeout() -> u64 {
    30
}
fn default_recording_prefix() -> String {
    "/var/spool/asterisk/monitor/".to_owned()
}
fn default_max_backoff() -> u64 {
    30
}
fn default_max_backlog() -> usize {
    50_000
}

/// A validated config, in the units the session uses.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    pub auth: AuthMethod,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub technology: String,
    pub originate_context: String,
    pub originate_timeout: Duration,
    pub max_backoff: Duration,
    pub max_backlog: usize,
    pub tracker: TrackerConfig,
}

impl Settings {
    /// The `Events:` mask of the login: call and agent (queue) events, plus dialplan
    /// (for `VarSet MIXMONITOR_FILENAME`) when recordings are wanted.
    pub fn events_mask(&self) -> &'static str {
        if self.tracker.recording_base_url.is_some() {
            "call,agent,dialplan"
        } else {
            "call,agent"
        }
    }
}

fn no_line_breaks(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.chars().any(char::is_control) {
        return Err(ConnectorError::config(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn token(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.is_empty() {
        return Err(ConnectorError::config(field, "must not be empty"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConnectorError::config(
            field,
            "may hold only letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok(())
}

impl Config {
    /// Checks every field and converts to [`Settings`]. No I/O.
    pub(crate) fn validate(self) -> Result<Settings, ConnectorError> {
        let host = self.host.trim().to_owned();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConnectorError::config(
                "host",
                "must be a host name or an address",
            ));
        }
        if self.port == 0 {
            return Err(ConnectorError::config(
                "port",
                "must be between 1 and 65535",
            ));
        }
        if self.username.trim().is_empty() {
            return Err(ConnectorError::config("username", "must not be empty"));
        }
        no_line_breaks("username", &self.username)?;
        if self.secret.expose().is_empty() {
            return Err(ConnectorError::config("secret", "must not be empty"));
        }
        no_line_breaks("secret", self.secret.expose())?;
        if !(1..=3600).contains(&self.ping_interval_secs) {
            return Err(ConnectorError::config(
                "ping_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=600).contains(&self.ping_timeout_secs) {
            return Err(ConnectorError::config(
                "ping_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if let Some(cc) = &self.default_country_code {
            let ok = (1..=3).contains(&cc.len())
                && cc.bytes().all(|b| b.is_ascii_digit())
                && !cc.starts_with('0');
            if !ok {
                return Err(ConnectorError::config(
                    "default_country_code",
                    "must be a country calling code of 1 to 3 digits, like \"7\"",
                ));
            }
        }
        if !(1..=10).contains(&self.extension_max_len) {
            return Err(ConnectorError::config(
                "extension_max_len",
                "must be between 1 and 10",
            ));
        }
        for context in &self.internal_contexts {
            token("internal_contexts", context)?;
        }
        token("extension_technology", &self.extension_technology)?;
        token("originate_context", &self.originate_context)?;
        if !(1..=600).contains(&self.originate_timeout_secs) {
            return Err(ConnectorError::config(
                "originate_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if let Some(url) = &self.recording_base_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > "https://".len()
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(ConnectorError::config(
                    "recording_base_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        no_line_breaks("recording_path_prefix", &self.recording_path_prefix)?;
        if !(1..=3600).contains(&self.max_backoff_secs) {
            return Err(ConnectorError::config(
                "max_backoff_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(16..=10_000_000).contains(&self.max_backlog_messages) {
            return Err(ConnectorError::config(
                "max_backlog_messages",
                "must be between 16 and 10000000",
            ));
        }
        Ok(Settings {
            host,
            port: self.port,
            username: self.username.trim().to_owned(),
            secret: self.secret,
            auth: self.auth,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            ping_timeout: Duration::from_secs(self.ping_timeout_secs),
            technology: self.extension_technology,
            originate_context: self.originate_context,
            originate_timeout: Duration::from_secs(self.originate_timeout_secs),
            max_backoff: Duration::from_secs(self.max_backoff_secs),
            max_backlog: self.max_backlog_messages,
            tracker: TrackerConfig {
                plan: NumberPlan {
                    country_code: self.default_country_code,
                    extension_max_len: self.extension_max_len,
                    internal_contexts: self.internal_contexts,
                },
                recording_base_url: self.recording_base_url,
                recording_path_prefix: self.recording_path_prefix,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"host": "10.0.0.5", "username": "crmhub", "secret": "s3cret-value"})
    }

    fn with(field: &str, value: serde_json::Value) -> Config {
        let mut v = base();
        v[field] = value;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults() {
        let cfg: Config = serde_json::from_value(base()).unwrap();
        assert_eq!(cfg.port, 5038);
        assert_eq!(cfg.auth, AuthMethod::Md5);
        let s = cfg.validate().unwrap();
        assert_eq!(s.ping_interval, Duration::from_secs(10));
        assert_eq!(s.technology, "PJSIP");
        assert_eq!(s.originate_context, "from-internal");
        assert_eq!(s.events_mask(), "call,agent");
    }

    #[test]
    fn full_table() {
        let cfg: Config = serde_json::from_value(json!({
            "host": "pbx.example", "port": 5039, "username": "crm", "secret": "x",
            "auth": "plain", "ping_interval_secs": 20, "ping_timeout_secs": 3,
            "default_country_code": "7", "extension_max_len": 4,
            "internal_contexts": ["from-internal"], "extension_technology": "SIP",
            "originate_context": "crm-originate", "originate_timeout_secs": 25,
            "recording_base_url": "https://pbx.example/monitor/",
            "recording_path_prefix": "/var/spool/asterisk/monitor/",
            "max_backoff_secs": 60, "max_backlog_messages": 1000
        }))
        .unwrap();
        assert_eq!(cfg.auth, AuthMethod::Plain);
        let s = cfg.validate().unwrap();
        assert_eq!(s.events_mask(), "call,agent,dialplan");
        assert_eq!(s.tracker.plan.country_code.as_deref(), Some("7"));
    }

    #[test]
    fn debug_hides_the_secret() {
        let cfg: Config = serde_json::from_value(base()).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
        let settings = cfg.validate().unwrap();
        assert!(!format!("{settings:?}").contains("s3cret-value"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = base();
        v["pasword"] = json!("x");
        let err = serde_json::from_value::<Config>(v).unwrap_err();
        assert!(err.to_string().contains("unknown field `pasword`"), "{err}");
        let mut v = base();
        v["auth"] = json!("sha1");
        assert!(serde_json::from_value::<Config>(v).is_err());
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            ("host", json!(" "), "must be a host name or an address"),
            ("port", json!(0), "must be between 1 and 65535"),
            ("username", json!(""), "must not be empty"),
            ("secret", json!(""), "must not be empty"),
            (
                "secret",
                json!("a\r\nAction: Command"),
                "must not contain control characters",
            ),
            ("ping_interval_secs", json!(0), "must be between 1 and 3600"),
            ("ping_timeout_secs", json!(0), "must be between 1 and 600"),
            (
                "default_country_code",
                json!("+7"),
                "must be a country calling code of 1 to 3 digits, like \"7\"",
            ),
            ("extension_max_len", json!(0), "must be between 1 and 10"),
            (
                "internal_contexts",
                json!(["from internal"]),
                "may hold only letters, digits, `-`, `_` and `.`",
            ),
            (
                "extension_technology",
                json!("PJSIP/"),
                "may hold only letters, digits, `-`, `_` and `.`",
            ),
            ("originate_context", json!(""), "must not be empty"),
            (
                "originate_timeout_secs",
                json!(0),
                "must be between 1 and 600",
            ),
            (
                "recording_base_url",
                json!("ftp://x"),
                "must be an http:// or https:// URL",
            ),
            ("max_backoff_secs", json!(0), "must be between 1 and 3600"),
            (
                "max_backlog_messages",
                json!(1),
                "must be between 16 and 10000000",
            ),
        ];
        for (field, value, message) in cases {
            let err = with(field, value).validate().unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}")
            );
        }
    }
}
