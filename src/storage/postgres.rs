//! PostgreSQL backend: concurrent writers; the change log is ordered by a transaction-scoped
//! advisory lock taken just before commit.

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

use super::StoreResult;

/// The advisory lock key that orders change-log appends.
const CHANGE_LOG_LOCK: i64 = 736_102;

pub(crate) async fn connect(url: &str) -> StoreResult<AnyPool> {
    let options = AnyConnectOptions::from_str(url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        // Fail a start-up against an unreachable server in seconds, not half a minute.
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Takes the change-log lock for the rest of the transaction. Sequence numbers allocated
/// after it are visible in allocation order, because the lock is held until commit.
pub(crate) async fn lock_change_log(conn: &mut sqlx::AnyConnection) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
        .bind(CHANGE_LOG_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}
