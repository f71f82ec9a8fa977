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
