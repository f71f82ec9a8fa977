//! A small migration runner: numbered SQL files embedded in the binary, applied in order,
//! each in its own transaction, recorded with a checksum so an edited migration is caught.

use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use super::{Backend, StoreError, StoreResult};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// The migrations, in order. The same numbering exists in `migrations/sqlite` and
/// `migrations/postgres`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "realtime",
        sqlite: include_str!("../../migrations/sqlite/0002_realtime.sql"),
        postgres: include_str!("../../migrations/postgres/0002_realtime.sql"),
    },
    Migration {
        version: 3,
        name: "canned_responses",
        sqlite: include_str!("../../migrations/sqlite/0003_canned_responses.sql"),
        postgres: include_str!("../../migrations/postgres/0003_canned_responses.sql"),
    },
    Migration {
        version: 4,
        name: "telephony",
        sqlite: include_str!("../../migrations/sqlite/0004_telephony.sql"),
        postgres: include_str!("../../migrations/postgres/0004_telephony.sql"),
    },
    Migration {
        version: 5,
        name: "channels",
        sqlite: include_str!("../../migrations/sqlite/0005_channels.sql"),
        postgres: include_str!("../../migrations/postgres/0005_channels.sql"),
    },
    Migration {
        version: 6,
        name: "assist",
        sqlite: include_str!("../../migrations/sqlite/0006_assist.sql"),
        postgres: include_str!("../../migrations/postgres/0006_assist.sql"),
    },
    Migration {
        version: 7,
        name: "kb",
        sqlite: include_str!("../../migrations/sqlite/0007_kb.sql"),
        postgres: include_str!("../../migrations/postgres/0007_kb.sql"),
    },
];

/// Applies the pending migrations.
///
/// # Errors
/// A failed migration (rolled back), or a checksum mismatch of an applied one.
pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        // Several nodes may start at once: one migrates, the others wait.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_lock(736101)) AS l")
            .execute(&mut *conn)
            .await?;
    }
    let result = apply(&mut conn, backend).await;
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_unlock(736101)) AS l")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply(conn: &mut sqlx::AnyConnection, backend: Backend) -> StoreResult<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for m in MIGRATIONS {
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let checksum = crate::auth::hex(&Sha256::digest(sql.as_bytes()));
        let applied: Option<String> =
            sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *conn)
                .await?;
        match applied {
            Some(c) if c == checksum => continue,
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "migration {} ({}) was changed after it was applied",
                    m.version, m.name
                )))
            }
            None => {}
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migration {
                version: m.version,
                source,
            })?;
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(m.version)
            .bind(m.name)
            .bind(checksum)
            .bind(crate::domain::Timestamp::now().micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}
