//! Configuration: built-in defaults, one TOML file, then `KOMMUTATOR_SECTION__KEY`
//! environment overrides. Unknown keys are errors that name the key; secrets never appear
//! in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Storage.
    pub database: DatabaseConfig,
    /// Identity normalization.
    pub identity: IdentityConfig,
    /// Sign-in and sessions.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// What the pipeline does with an inquiry (the intake wizard's rules).
    pub intake: IntakeConfig,
    /// WebSockets, presence and multi-node settings.
    pub realtime: RealtimeConfig,
    /// Channel instances, keyed by instance id: `[connectors.site_api] type = "api"`.
    pub connectors: std::collections::BTreeMap<String, ConnectorConfig>,
    /// The website chat widget.
    pub widget: WidgetConfig,
    /// Telephony: which operator has which phone extension.
    pub telephony: TelephonyConfig,
    /// The assistants (iConsultant).
    pub assist: AssistConfig,
}

/// The assistants' settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistConfig {
    /// Seconds between scheduled retrainings of iConsultant's classifier on all operators'
    /// verdicts (one node per period does it); 0 turns them off (`POST
    /// /api/v1/assist/retrain` still works). Default: 6 hours.
    pub retrain_every_secs: u64,
    /// Which engine classifies inquiries: `auto` (default: engine 2, the sentence encoder,
    /// when its files are in `models_dir`, else engine 1), `encoder` (engine 2; a missing
    /// or damaged model is logged as an error and engine 1 runs), or `ngram` (engine 1,
    /// the built-in hashed n-gram model, only).
    pub engine: EngineChoice,
    /// The folder with engine 2's `model.onnx` and `tokenizer.json` (made by
    /// `models/fetch.sh`); relative paths are from the working directory.
    pub models_dir: std::path::PathBuf,
    /// Threads engine 2 uses when it trains (seed set, retraining); 0: all cores.
    pub encoder_threads: usize,
}

/// The engine choice of `[assist] engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Engine 2 when its files are there, else engine 1.
    #[default]
    Auto,
    /// Engine 2; engine 1 (with an error in the log) when it cannot be loaded.
    Encoder,
    /// Engine 1 only.
    Ngram,
}

impl Default for AssistConfig {
    fn default() -> Self {
        Self {
            retrain_every_secs: 6 * 3600,
            engine: EngineChoice::Auto,
            models_dir: std::path::PathBuf::from("models/e5"),
            encoder_threads: 0,
        }
    }
}

/// Telephony settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonyConfig {
    /// Extension → user login, applied at start-up (`"101" = "anna"`): calls ringing or
    /// answered at the extension are that operator's. The API (`PATCH /api/v1/users/{id}`
    /// with `extension`) sets them too; the config wins at each start.
    pub extensions: std::collections::BTreeMap<String, String>,
}

/// The website chat widget: one entry per site that embeds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WidgetConfig {
    /// Sites by site key (the key the page passes; public): `[widget.sites.shop]`.
    pub sites: std::collections::BTreeMap<String, WidgetSite>,
    /// Frames per second a visitor may send (burst: twice as many).
    pub frames_per_sec: u32,
    /// Longest message a visitor may send, in characters.
    pub max_text_chars: usize,
    /// Largest frame a visitor may send, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for WidgetConfig {
    fn default() -> Self {
        Self {
            sites: std::collections::BTreeMap::new(),
            frames_per_sec: 5,
            max_text_chars: 4000,
            max_frame_bytes: 16 * 1024,
        }
    }
}

/// One site with the widget.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WidgetSite {
    /// Department whose queue the site's chats join (by name).
    pub department: Option<String>,
    /// Page origins allowed to connect (`https://shop.example`); empty: any.
    pub origins: Vec<String>,
    /// Key the site's backend signs logged-in customers' ids with (HMAC-SHA256), so the
    /// hub recognises them; none: visitors stay anonymous.
    pub identity_secret: Option<String>,
}

impl std::fmt::Debug for WidgetSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidgetSite")
            .field("department", &self.department)
            .field("origins", &self.origins)
            .field(
                "identity_secret",
                &self.identity_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The intake rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// When to open an Interest for an inquiry with none open: `never`, `new_party` (a
    /// sender seen for the first time; default) or `when_none_open`.
    pub open_interest: crate::domain::OpenInterest,
}

/// Real-time settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// `redis://host:port` to run several nodes; empty for one node (in-process bus).
    pub redis_url: String,
    /// This node's name (default: host name and process id).
    pub node_id: String,
    /// Events a connection may have queued before it is closed as slow (resumable).
    pub connection_queue: usize,
    /// Events kept in memory for resuming connections.
    pub replay_ring: usize,
    /// Most events replayed to one subscription; beyond, the client is told to resync.
    pub max_replay: usize,
    /// WebSocket read buffer per connection, in bytes.
    pub read_buffer_bytes: usize,
    /// Largest frame an operator or bot may send, in bytes.
    pub max_frame_bytes: usize,
    /// Seconds between pings; a connection silent for three intervals is closed.
    pub ping_interval_secs: u64,
    /// Seconds an operator stays online after their last connection closed.
    pub presence_grace_secs: u64,
    /// Frames per second a connection may send (burst: twice as many).
    pub frames_per_sec: u32,
    /// Pipeline workers (inbound events of one thread always go to the same worker). One
    /// worker stores whatever queued up while it was busy in one transaction; more only
    /// wait for each other on the SQLite writer or a department's routing lock (measured in
    /// docs/benchmarks.md), unless inquiries spread over many departments.
    pub pipeline_workers: usize,
    /// Seconds a node holds a cluster-wide lease (a channel's outbound delivery) without
    /// renewing it; another node takes over that long after a node dies.
    pub lease_secs: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            node_id: String::new(),
            connection_queue: 1024,
            replay_ring: 20_000,
            max_replay: 1000,
            read_buffer_bytes: 1024,
            max_frame_bytes: 64 * 1024,
            ping_interval_secs: 25,
            presence_grace_secs: 30,
            frames_per_sec: 20,
            pipeline_workers: 1,
            lease_secs: 15,
        }
    }
}

/// One channel instance: `[connectors.<id>]` with its `type` and that type's own keys.
///
/// Every type but `api` is a connector crate behind a cargo feature (`connector-<dir>`, all
/// on by default); its keys are the crate's `Config`, plus `channel` and `department` read
/// by the hub.
#[derive(Clone)]
pub enum ConnectorConfig {
    /// A generic HTTP channel: a system posts inbound events to
    /// `/api/v1/connectors/{id}/events` with an API key; replies are posted to
    /// `outbound_url`, signed with `outbound_secret`.
    Api {
        /// Channel name shown on dialogs (default `api`).
        channel: Option<String>,
        /// Name of the department whose queue new dialogs join.
        department: Option<String>,
        /// Where replies go (`http://` or `https://`); none: replies stay pending.
        outbound_url: Option<String>,
        /// HMAC-SHA256 key for the `X-Kommutator-Signature` header of replies.
        outbound_secret: Option<String>,
    },
    /// Any PBX or script posting Zammad-style `newCall` / `answer` / `hangup`.
    #[cfg(feature = "connector-cti-webhook")]
    CtiWebhook(Instance<kommutator_cti_webhook::Config>),
    /// Call-tracking webhooks: Mango Office, Zadarma, Roistat, UIS/CoMagic.
    #[cfg(feature = "connector-call-tracking")]
    CallTracking(Instance<kommutator_call_tracking::Config>),
    /// A HEPv3 collector: call state from the SIP a proxy or PBX mirrors.
    #[cfg(feature = "connector-hep")]
    Hep(Instance<kommutator_hep::Config>),
    /// An Asterisk PBX through its Manager Interface: calls, and click-to-call.
    #[cfg(feature = "connector-asterisk-ami")]
    AsteriskAmi(Instance<kommutator_asterisk_ami::Config>),
    /// A Telegram bot: long polling or webhook.
    #[cfg(feature = "connector-telegram")]
    Telegram(Instance<kommutator_telegram::Config>),
    /// A VK community's messages: Callback API or Bots Long Poll.
    #[cfg(feature = "connector-vk")]
    Vk(Instance<kommutator_vk::Config>),
    /// A WhatsApp Business number through the Cloud API.
    #[cfg(feature = "connector-whatsapp")]
    WhatsApp(Instance<kommutator_whatsapp::Config>),
    /// A mailbox: IMAP with IDLE in, SMTP out.
    #[cfg(feature = "connector-email")]
    Email(Instance<kommutator_email::Config>),
    /// A lead form or callback request on a website, posted to `/forms/<id>/`.
    #[cfg(feature = "connector-web-forms")]
    WebForm(Instance<kommutator_web_forms::Config>),
}

/// A connector crate's config with what the hub reads of every instance.
#[derive(Clone, Debug)]
pub struct Instance<C> {
    /// Channel name on dialogs and calls (default per type: `phone` for telephony).
    pub channel: Option<String>,
    /// Name of the department whose queue new dialogs join and whose supervisors see the
    /// calls; new leads join it.
    pub department: Option<String>,
    /// The crate's own config.
    pub config: C,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeys {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    outbound_url: Option<String>,
    #[serde(default)]
    outbound_secret: Option<String>,
}

impl<'de> Deserialize<'de> for ConnectorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("type") {
            Some(toml::Value::String(k)) => k,
            Some(_) => return Err(D::Error::custom("`type` is a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        let text = |table: &mut toml::Table, key: &str| -> Result<Option<String>, D::Error> {
            match table.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(v)) => Ok(Some(v)),
                Some(_) => Err(D::Error::custom(format!("`{key}` is a string"))),
            }
        };
        #[allow(unused_macros)]
        macro_rules! instance {
            ($variant:ident, $config:ty) => {{
                let channel = text(&mut table, "channel")?;
                let department = text(&mut table, "department")?;
                let config = <$config>::deserialize(toml::Value::Table(table))
                    .map_err(|e| D::Error::custom(format!("{kind}: {e}")))?;
                Ok(ConnectorConfig::$variant(Instance {
                    channel,
                    department,
                    config,
                }))
            }};
        }
        match kind.as_str() {
            "api" => {
                let k = ApiKeys::deserialize(toml::Value::Table(table))
                    .map_err(|e| D::Error::custom(e.to_string()))?;
                Ok(ConnectorConfig::Api {
                    channel: k.channel,
                    department: k.department,
                    outbound_url: k.outbound_url,
                    outbound_secret: k.outbound_secret,
                })
            }
            #[cfg(feature = "connector-cti-webhook")]
            "cti_webhook" => instance!(CtiWebhook, kommutator_cti_webhook::Config),
            #[cfg(feature = "connector-call-tracking")]
            "call_tracking" => instance!(CallTracking, kommutator_call_tracking::Config),
            #[cfg(feature = "connector-hep")]
            "hep" => instance!(Hep, kommutator_hep::Config),
            #[cfg(feature = "connector-asterisk-ami")]
            "asterisk_ami" => instance!(AsteriskAmi, kommutator_asterisk_ami::Config),
            #[cfg(feature = "connector-telegram")]
            "telegram" => instance!(Telegram, kommutator_telegram::Config),
            #[cfg(feature = "connector-vk")]
            "vk" => instance!(Vk, kommutator_vk::Config),
            #[cfg(feature = "connector-whatsapp")]
            "whatsapp" => instance!(WhatsApp, kommutator_whatsapp::Config),
            #[cfg(feature = "connector-email")]
            "email" => instance!(Email, kommutator_email::Config),
            #[cfg(feature = "connector-web-forms")]
            "web_form" => instance!(WebForm, kommutator_web_forms::Config),
            other => Err(D::Error::unknown_variant(other, KNOWN_TYPES)),
        }
    }
}

/// The `type`s this build knows.
const KNOWN_TYPES: &[&str] = &[
    "api",
    #[cfg(feature = "connector-cti-webhook")]
    "cti_webhook",
    #[cfg(feature = "connector-call-tracking")]
    "call_tracking",
    #[cfg(feature = "connector-hep")]
    "hep",
    #[cfg(feature = "connector-asterisk-ami")]
    "asterisk_ami",
    #[cfg(feature = "connector-telegram")]
    "telegram",
    #[cfg(feature = "connector-vk")]
    "vk",
    #[cfg(feature = "connector-whatsapp")]
    "whatsapp",
    #[cfg(feature = "connector-email")]
    "email",
    #[cfg(feature = "connector-web-forms")]
    "web_form",
];

impl ConnectorConfig {
    /// Of a connector-crate instance: its `type`, the channel and department as
    /// configured, and the default channel name. `None` for `api`.
    fn meta(&self) -> Option<(&'static str, Option<&str>, Option<&str>, &'static str)> {
        fn m<'a, C>(
            kind: &'static str,
            i: &'a Instance<C>,
            default: &'static str,
        ) -> Option<(&'static str, Option<&'a str>, Option<&'a str>, &'static str)> {
            Some((kind, i.channel.as_deref(), i.department.as_deref(), default))
        }
        match self {
            ConnectorConfig::Api { .. } => None,
            #[cfg(feature = "connector-cti-webhook")]
            ConnectorConfig::CtiWebhook(i) => m("cti_webhook", i, "phone"),
            #[cfg(feature = "connector-call-tracking")]
            ConnectorConfig::CallTracking(i) => m("call_tracking", i, "phone"),
            #[cfg(feature = "connector-hep")]
            ConnectorConfig::Hep(i) => m("hep", i, "phone"),
            #[cfg(feature = "connector-asterisk-ami")]
            ConnectorConfig::AsteriskAmi(i) => m("asterisk_ami", i, "phone"),
            #[cfg(feature = "connector-telegram")]
            ConnectorConfig::Telegram(i) => m("telegram", i, "telegram"),
            #[cfg(feature = "connector-vk")]
            ConnectorConfig::Vk(i) => m("vk", i, "vk"),
            #[cfg(feature = "connector-whatsapp")]
            ConnectorConfig::WhatsApp(i) => m("whatsapp", i, "whatsapp"),
            #[cfg(feature = "connector-email")]
            ConnectorConfig::Email(i) => m("email", i, "email"),
            #[cfg(feature = "connector-web-forms")]
            ConnectorConfig::WebForm(i) => m("web_form", i, "form"),
        }
    }

    /// The `type`.
    pub fn kind(&self) -> &'static str {
        self.meta().map_or("api", |(kind, ..)| kind)
    }

    /// The channel name dialogs and calls of this instance carry.
    pub fn channel(&self) -> String {
        match (self, self.meta()) {
            (ConnectorConfig::Api { channel, .. }, _) => {
                channel.clone().unwrap_or_else(|| "api".into())
            }
            (_, Some((_, channel, _, default))) => channel.unwrap_or(default).to_owned(),
            (_, None) => "api".into(),
        }
    }

    /// The channel name as configured, to check.
    fn channel_key(&self) -> Option<&str> {
        match self {
            ConnectorConfig::Api { channel, .. } => channel.as_deref(),
            _ => self.meta().and_then(|(_, channel, ..)| channel),
        }
    }

    /// Whether the instance can place calls (click-to-call).
    pub fn can_originate(&self) -> bool {
        match self {
            #[cfg(feature = "connector-asterisk-ami")]
            ConnectorConfig::AsteriskAmi(_) => true,
            _ => false,
        }
    }
    /// The identity kind to which the instance can start a conversation the hub opens (an
    /// email from the client card), if any.
    pub fn starts_to(&self) -> Option<&'static str> {
        (self.kind() == "email").then_some("email")
    }

    /// The department name whose queue new dialogs join.
    pub fn department(&self) -> Option<&str> {
        match self {
            ConnectorConfig::Api { department, .. } => department.as_deref(),
            _ => self.meta().and_then(|(_, _, department, _)| department),
        }
    }
}

impl std::fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectorConfig::Api {
                channel,
                department,
                outbound_url,
                outbound_secret,
            } => f
                .debug_struct("Api")
                .field("channel", channel)
                .field("department", department)
                .field("outbound_url", &outbound_url.as_deref().map(redact_url))
                .field(
                    "outbound_secret",
                    &outbound_secret.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
            // The crates' Debug redacts their secrets.
            #[cfg(feature = "connector-cti-webhook")]
            ConnectorConfig::CtiWebhook(i) => f.debug_tuple("CtiWebhook").field(i).finish(),
            #[cfg(feature = "connector-call-tracking")]
            ConnectorConfig::CallTracking(i) => f.debug_tuple("CallTracking").field(i).finish(),
            #[cfg(feature = "connector-hep")]
            ConnectorConfig::Hep(i) => f.debug_tuple("Hep").field(i).finish(),
            #[cfg(feature = "connector-asterisk-ami")]
            ConnectorConfig::AsteriskAmi(i) => f.debug_tuple("AsteriskAmi").field(i).finish(),
            #[cfg(feature = "connector-telegram")]
            ConnectorConfig::Telegram(i) => f.debug_tuple("Telegram").field(i).finish(),
            #[cfg(feature = "connector-vk")]
            ConnectorConfig::Vk(i) => f.debug_tuple("Vk").field(i).finish(),
            #[cfg(feature = "connector-whatsapp")]
            ConnectorConfig::WhatsApp(i) => f.debug_tuple("WhatsApp").field(i).finish(),
            #[cfg(feature = "connector-email")]
            ConnectorConfig::Email(i) => f.debug_tuple("Email").field(i).finish(),
            #[cfg(feature = "connector-web-forms")]
            ConnectorConfig::WebForm(i) => f.debug_tuple("WebForm").field(i).finish(),
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL people reach the hub at (printed at start-up), when behind a proxy.
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered with 503.
    pub request_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// Storage settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://data/kommutator.db` (default) or `postgres://user:pass@host/db`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/kommutator.db".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// A URL with its password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

/// Identity normalization settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// ISO 3166 region for phone numbers written without a country code.
    pub default_region: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            default_region: "RU".into(),
        }
    }
}

/// Sign-in and session settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session lasts, in hours.
    pub session_ttl_hours: u64,
    /// Mark the session cookie `Secure` (serve over HTTPS, directly or via a proxy).
    pub secure_cookies: bool,
    /// Failed sign-ins allowed per login within the window.
    pub max_failures_per_login: usize,
    /// Failed sign-ins allowed per client address within the window.
    pub max_failures_per_address: usize,
    /// The window, in seconds.
    pub failure_window_secs: u64,
    /// Take the client address from the last `X-Forwarded-For` entry (set it when a reverse
    /// proxy you run sits in front of every node; otherwise clients could forge it).
    pub trust_forwarded_for: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_hours: 12,
            secure_cookies: false,
            max_failures_per_login: 5,
            max_failures_per_address: 50,
            failure_window_secs: 900,
            trust_forwarded_for: false,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `kommutator=debug,sqlx=warn`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,sqlx=warn".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The path.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable with our prefix does not name a key.
    #[error("environment variable {0} is not a config override; use KOMMUTATOR_<SECTION>__<KEY>, e.g. KOMMUTATOR_SERVER__LISTEN")]
    UnknownEnv(String),
}

/// Environment variables with our prefix that are not overrides.
const RESERVED_ENV: &[&str] = &["KOMMUTATOR_CONFIG"];

impl Config {
    /// Loads defaults, then the file (if any), then the environment overrides in `env`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, key or variable at fault.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root = toml::Table::new();
        if let Some(path) = path {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            root = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: shown,
                    message: e.message().to_owned(),
                })?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("KOMMUTATOR_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str())
                || rest.starts_with("TEST_")
                || rest.starts_with("BENCH_")
            {
                continue;
            }
            let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if parts.len() < 2 || parts.iter().any(String::is_empty) {
                return Err(ConfigError::UnknownEnv(name));
            }
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let mut table = &mut root;
            for p in &parts[..parts.len() - 1] {
                let entry = table
                    .entry(p.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table = match entry {
                    toml::Value::Table(t) => t,
                    _ => return Err(ConfigError::UnknownEnv(name)),
                };
            }
            table.insert(parts[parts.len() - 1].clone(), parsed);
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Key {
                    key,
                    message: e.into_inner().to_string(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: String| ConfigError::Key {
            key: k.into(),
            message: m,
        };
        let key_err = key;
        crate::domain::IdentityRules::for_region(&self.identity.default_region)
            .map_err(|m| key("identity.default_region", m))?;
        let db = &self.database.url;
        if db.is_empty() {
            return Err(key("database.url", "must not be empty".into()));
        }
        if db.contains("://")
            && !["sqlite://", "postgres://", "postgresql://"]
                .iter()
                .any(|p| db.starts_with(p))
        {
            return Err(key(
                "database.url",
                "use sqlite://PATH or postgres://...".into(),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(key("server.max_body_bytes", "must be at least 1024".into()));
        }
        if self.auth.session_ttl_hours == 0 {
            return Err(key("auth.session_ttl_hours", "must be at least 1".into()));
        }
        let rt = &self.realtime;
        if !rt.redis_url.is_empty() && !rt.redis_url.starts_with("redis://") {
            return Err(key("realtime.redis_url", "use redis://host:port".into()));
        }
        if !(16..=65_536).contains(&rt.connection_queue) {
            return Err(key(
                "realtime.connection_queue",
                "must be 16 to 65536".into(),
            ));
        }
        if !(512..=1_048_576).contains(&rt.read_buffer_bytes) {
            return Err(key(
                "realtime.read_buffer_bytes",
                "must be 512 to 1048576".into(),
            ));
        }
        if !(1024..=16_777_216).contains(&rt.max_frame_bytes) {
            return Err(key(
                "realtime.max_frame_bytes",
                "must be 1024 to 16777216".into(),
            ));
        }
        if !(1..=3600).contains(&rt.ping_interval_secs) {
            return Err(key(
                "realtime.ping_interval_secs",
                "must be 1 to 3600".into(),
            ));
        }
        if rt.frames_per_sec == 0 {
            return Err(key("realtime.frames_per_sec", "must be at least 1".into()));
        }
        if !(3..=3600).contains(&rt.lease_secs) {
            return Err(key("realtime.lease_secs", "must be 3 to 3600".into()));
        }
        if !(1..=64).contains(&rt.pipeline_workers) {
            return Err(key("realtime.pipeline_workers", "must be 1 to 64".into()));
        }
        if !(1..=10_000).contains(&rt.max_replay) {
            return Err(key("realtime.max_replay", "must be 1 to 10000".into()));
        }
        if rt.replay_ring == 0 {
            return Err(key("realtime.replay_ring", "must be at least 1".into()));
        }
        for key in self.widget.sites.keys() {
            let ok = (1..=57).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(key_err(
                    &format!("widget.sites.{key}"),
                    "a site key is 1 to 57 of a-z, 0-9 and '_'".into(),
                ));
            }
        }
        if self.widget.frames_per_sec == 0 || !(1..=100_000).contains(&self.widget.max_text_chars) {
            return Err(key_err(
                "widget",
                "frames_per_sec must be at least 1 and max_text_chars 1 to 100000".into(),
            ));
        }
        if !(1024..=1_048_576).contains(&self.widget.max_frame_bytes) {
            return Err(key_err(
                "widget.max_frame_bytes",
                "must be 1024 to 1048576".into(),
            ));
        }
        for (id, c) in &self.connectors {
            let k = format!("connectors.{id}");
            let ok = (1..=64).contains(&id.len())
                && id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(key(
                    &k,
                    "an instance id is 1 to 64 of a-z, 0-9, '_' and '-'".into(),
                ));
            }
            if id == "widget" || id == "operator" || id.starts_with("widget-") {
                return Err(key(
                    &k,
                    format!("`{id}` is reserved for the built-in channels (widget sites are widget-<site>)"),
                ));
            }
            if let ConnectorConfig::Api {
                outbound_url: Some(u),
                ..
            } = c
            {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(key(
                        &format!("{k}.outbound_url"),
                        "use an http:// or https:// URL".into(),
                    ));
                }
            }
            if let Some(ch) = c.channel_key() {
                let ok = (1..=64).contains(&ch.len())
                    && ch.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !ok {
                    return Err(key(
                        &format!("{k}.channel"),
                        "1 to 64 of a-z, 0-9, '_' and '-'".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn realtime_widget_and_connector_keys_are_checked() {
        let bad = |pairs: &[(&str, &str)], key: &str| match Config::load(None, env(pairs)) {
            Err(ConfigError::Key { key: k, .. }) => {
                assert!(k.starts_with(key), "{k} for {pairs:?}")
            }
            other => panic!("{pairs:?} accepted: {other:?}"),
        };
        bad(
            &[("KOMMUTATOR_REALTIME__REDIS_URL", "http://x")],
            "realtime.redis_url",
        );
        bad(
            &[("KOMMUTATOR_REALTIME__CONNECTION_QUEUE", "1")],
            "realtime.connection_queue",
        );
        bad(
            &[("KOMMUTATOR_REALTIME__READ_BUFFER_BYTES", "10")],
            "realtime.read_buffer_bytes",
        );
        bad(
            &[("KOMMUTATOR_REALTIME__MAX_REPLAY", "20000")],
            "realtime.max_replay",
        );
        bad(
            &[("KOMMUTATOR_REALTIME__LEASE_SECS", "1")],
            "realtime.lease_secs",
        );
        bad(
            &[("KOMMUTATOR_REALTIME__PIPELINE_WORKERS", "0")],
            "realtime.pipeline_workers",
        );
        bad(&[("KOMMUTATOR_REALTIME__NO_SUCH", "1")], "realtime");
        bad(&[("KOMMUTATOR_WIDGET__FRAMES_PER_SEC", "0")], "widget");
        bad(
            &[("KOMMUTATOR_INTAKE__OPEN_INTEREST", "sometimes")],
            "intake.open_interest",
        );
        let dir = std::env::temp_dir().join(format!("kcfg-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            Config::load(Some(&p), env(&[]))
        };
        let ok = file(
            "ok.toml",
            "[connectors.site]\ntype = \"api\"\ndepartment = \"Sales\"\noutbound_url = \"https://x.example/in\"\noutbound_secret = \"s3cret\"\n\
             [widget.sites.shop]\ndepartment = \"Support\"\nidentity_secret = \"w1dget\"\n",
        )
        .expect("valid");
        let shown = format!("{:?}", ok);
        assert!(
            !shown.contains("s3cret") && !shown.contains("w1dget"),
            "{shown}"
        );
        for (name, text, key) in [
            (
                "id.toml",
                "[connectors.Site]\ntype = \"api\"\n",
                "connectors.Site",
            ),
            (
                "reserved.toml",
                "[connectors.widget]\ntype = \"api\"\n",
                "connectors.widget",
            ),
            (
                "url.toml",
                "[connectors.s]\ntype = \"api\"\noutbound_url = \"ftp://x\"\n",
                "connectors.s.outbound_url",
            ),
            (
                "type.toml",
                "[connectors.s]\ntype = \"pigeon\"\n",
                "connectors.s",
            ),
            ("site.toml", "[widget.sites.Shop]\n", "widget.sites.Shop"),
        ] {
            match file(name, text) {
                Err(ConfigError::Key { key: k, .. }) => {
                    assert!(k.starts_with(key), "{k} for {name}")
                }
                other => panic!("{name} accepted: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database.url.starts_with("sqlite://"));
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("kcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("k.toml");
        std::fs::write(
            &p,
            "[server]\nlisten = \"0.0.0.0:9000\"\n[auth]\nsecure_cookies = true\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&p),
            env(&[
                ("KOMMUTATOR_SERVER__LISTEN", "127.0.0.1:9100"),
                ("KOMMUTATOR_AUTH__SESSION_TTL_HOURS", "2"),
                ("KOMMUTATOR_TEST_DATABASE_URL", "x"),
                ("KOMMUTATOR_BENCH_SCALE", "0.1"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("ok");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.auth.session_ttl_hours, 2);
        assert!(c.auth.secure_cookies);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn misspelled_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("kcfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("k.toml");
        std::fs::write(&p, "[server]\nlisen = \"0.0.0.0:9000\"\n").expect("write");
        let e = Config::load(Some(&p), env(&[]))
            .expect_err("typo")
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = Config::load(None, env(&[("KOMMUTATOR_DATABSE__URL", "x")]))
            .expect_err("typo")
            .to_string();
        assert!(e.contains("databse"), "{e}");
        let e = Config::load(None, env(&[("KOMMUTATOR_LISTEN", "x")]))
            .expect_err("shape")
            .to_string();
        assert!(e.contains("KOMMUTATOR_LISTEN"), "{e}");
        let e = Config::load(None, env(&[("KOMMUTATOR_SERVER__LISTEN", "nowhere")]))
            .expect_err("type")
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        std::fs::write(&p, "[server\n").expect("write");
        assert!(matches!(
            Config::load(Some(&p), env(&[])),
            Err(ConfigError::Syntax { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn secrets_are_redacted() {
        let c = DatabaseConfig {
            url: "postgres://kom:s3cret@db:5432/kom".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("kom:***@db"),
            "{shown}"
        );
        assert_eq!(redact_url("sqlite://data/k.db"), "sqlite://data/k.db");
    }
}
