//! SQLite backend: a file under `./data/` by default, WAL mode, one writer at a time.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;
use sqlx::Executor;

use super::StoreResult;

/// Turns a configured location (`sqlite://path`, `sqlite:path` or a bare path) into a URL
/// that creates the file when missing, creating its directory too.
///
/// # Errors
/// The directory cannot be created.
pub fn prepare_url(location: &str) -> std::io::Result<String> {
    let path = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    let path = path.split('?').next().unwrap_or(path);
    if path != ":memory:" {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
    }
    Ok(format!("sqlite://{path}?mode=rwc"))
}

pub(crate) async fn connect(location: &str) -> StoreResult<AnyPool> {
    let url = prepare_url(location).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
    let options = AnyConnectOptions::from_str(&url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers never block the writer; NORMAL sync is durable in WAL mode
                // except for the last transactions on power loss.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let dir = std::env::temp_dir().join(format!("kt-url-{}", std::process::id()));
        let p = dir.join("a.db");
        let url = prepare_url(p.to_str().expect("utf8")).expect("dir");
        assert!(url.starts_with("sqlite://") && url.ends_with("a.db?mode=rwc"));
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }
}
