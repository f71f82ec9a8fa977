//! The append-only change log: one row per change, with a sequence number that grows in
//! commit order. It is both the audit trail (who, when, what) and the stream that consoles
//! resume from.

use super::rows;
use super::{SqlStore, StoreResult};
use crate::domain::{ChangeEntry, Id, Timestamp};

/// A change to append at commit.
#[derive(Debug, Clone)]
pub struct Change {
    /// Entity type.
    pub entity: &'static str,
    /// Entity id.
    pub entity_id: Id,
    /// Operation.
    pub op: &'static str,
    /// The entity after the change, or what changed.
    pub data: serde_json::Value,
    /// Client concerned.
    pub client_id: Option<Id>,
    /// Lead concerned.
    pub lead_id: Option<Id>,
    /// Interest concerned.
    pub interest_id: Option<Id>,
    /// Dialog concerned.
    pub dialog_id: Option<Id>,
    /// Department concerned.
    pub department_id: Option<Id>,
}

impl Change {
    /// A change with no scoping ids; add them with the builder methods.
    pub fn new(
        entity: &'static str,
        entity_id: Id,
        op: &'static str,
        data: impl serde::Serialize,
    ) -> Self {
        Self {
            entity,
            entity_id,
            op,
            data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
            client_id: None,
            lead_id: None,
            interest_id: None,
            dialog_id: None,
            department_id: None,
        }
    }

    /// Scopes the change to a client and/or lead.
    pub fn party(mut self, client_id: Option<Id>, lead_id: Option<Id>) -> Self {
        self.client_id = client_id;
        self.lead_id = lead_id;
        self
    }

    /// Scopes the change to an Interest.
    pub fn interest(mut self, interest_id: Option<Id>) -> Self {
        self.interest_id = interest_id;
        self
    }

    /// Scopes the change to a dialog.
    pub fn dialog(mut self, dialog_id: Option<Id>) -> Self {
        self.dialog_id = dialog_id;
        self
    }

    /// Scopes the change to a department.
    pub fn department(mut self, department_id: Option<Id>) -> Self {
        self.department_id = department_id;
        self
    }
}

pub(crate) async fn append(
    conn: &mut sqlx::AnyConnection,
    c: &Change,
    at: Timestamp,
    actor_user_id: Option<Id>,
    actor_api_key_id: Option<Id>,
) -> StoreResult<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO change_log (at, actor_user_id, actor_api_key_id, entity, entity_id, op, data, \
         client_id, lead_id, interest_id, dialog_id, department_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING seq",
    )
    .bind(at.micros())
    .bind(actor_user_id)
    .bind(actor_api_key_id)
    .bind(c.entity)
    .bind(c.entity_id)
    .bind(c.op)
    .bind(c.data.to_string())
    .bind(c.client_id)
    .bind(c.lead_id)
    .bind(c.interest_id)
    .bind(c.dialog_id)
    .bind(c.department_id)
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

impl SqlStore {
    pub(crate) async fn changes_since_impl(
        &self,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeEntry>> {
        let sql = format!(
            "SELECT {} FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            rows::CHANGE_COLS
        );
        let rs = sqlx::query(&sql)
            .bind(since)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::change).collect()
    }

    pub(crate) async fn audit_impl(
        &self,
        entity: Option<&str>,
        entity_id: Option<Id>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Vec<ChangeEntry>> {
        let sql = format!(
            "SELECT {} FROM change_log WHERE ($1 IS NULL OR entity = $1) AND ($2 IS NULL OR entity_id = $2) \
             AND ($3 IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4",
            rows::CHANGE_COLS
        );
        let rs = sqlx::query(&sql)
            .bind(entity)
            .bind(entity_id)
            .bind(before)
            .bind(super::page_limit(limit))
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::change).collect()
    }

    pub(crate) async fn last_seq_impl(&self) -> StoreResult<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM change_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }
}
