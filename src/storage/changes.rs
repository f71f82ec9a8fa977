//! The append-only change log: one row per change, with a sequence number that grows in
//! commit order. It is both the audit trail (who, when, what) and the stream that consoles
//! resume from.

use super::rows;
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::{ChangeEntry, Id, Timestamp, Topic};

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
    /// The owner of the record (assignee, responsible) and whether it is shared with its
    /// department, when the change is about an owned record; live events are filtered by it.
    pub owner: Option<(Option<Id>, bool)>,
    /// Topics beyond those derived from the ids (the previous assignee of a transfer).
    pub extra_topics: Vec<Topic>,
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
            owner: None,
            extra_topics: Vec::new(),
        }
    }

    /// Sets the owner of the record and whether it is shared with its department.
    pub fn owner(mut self, owner_id: Option<Id>, shared: bool) -> Self {
        self.owner = Some((owner_id, shared));
        self
    }

    /// Publishes the change on one more topic.
    pub fn also(mut self, topic: Topic) -> Self {
        if !self.extra_topics.contains(&topic) {
            self.extra_topics.push(topic);
        }
        self
    }

    /// The topics the change belongs to:
    /// - `dialog:` `client:` `lead:` `interest:` from its scoping ids;
    /// - `dept:` and `user:` (the owner) only for operator work (dialogs, messages, calls,
    ///   presence), so a department's queue does not carry every client edit;
    /// - the extra topics.
    pub fn topics(&self) -> Vec<Topic> {
        let mut t = Vec::with_capacity(6);
        if let Some(id) = self.dialog_id {
            t.push(Topic::dialog(id));
        }
        if let Some(id) = self.client_id {
            t.push(Topic::client(id));
        }
        if let Some(id) = self.lead_id {
            t.push(Topic::lead(id));
        }
        if let Some(id) = self.interest_id {
            t.push(Topic::interest(id));
        }
        if matches!(self.entity, "dialog" | "message" | "call" | "presence") {
            if let Some(id) = self.department_id {
                t.push(Topic::dept(id));
            }
            if let Some((Some(owner), _)) = self.owner {
                t.push(Topic::user(owner));
            }
        }
        for x in &self.extra_topics {
            if !t.contains(x) {
                t.push(*x);
            }
        }
        t
    }

    /// The entry this change becomes once appended with `seq`.
    pub(crate) fn entry(
        self,
        seq: i64,
        at: Timestamp,
        actor_user_id: Option<Id>,
        actor_api_key_id: Option<Id>,
        topics: Vec<Topic>,
    ) -> ChangeEntry {
        ChangeEntry {
            seq,
            at,
            actor_user_id,
            actor_api_key_id,
            entity: self.entity.to_owned(),
            entity_id: self.entity_id,
            op: self.op.to_owned(),
            data: self.data,
            client_id: self.client_id,
            lead_id: self.lead_id,
            interest_id: self.interest_id,
            dialog_id: self.dialog_id,
            department_id: self.department_id,
            topics,
            owner_id: self.owner.and_then(|o| o.0),
            shared: self.owner.map(|o| o.1),
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

/// Most changes one statement appends (15 parameters each, far below either database's
/// limit on parameters).
const APPEND_CHUNK: usize = 200;

/// Appends `changes` in order with their topic index rows, two statements per 200 changes;
/// returns each change's sequence number and topics, in the same order.
///
/// The caller holds the change log for itself (the SQLite writer lock, or the PostgreSQL
/// change-log lock), so the rows of one `INSERT` take increasing sequence numbers in the
/// order of its `VALUES`: the returned numbers, sorted, belong to the changes in order.
/// `RETURNING` itself promises no order.
pub(crate) async fn append_all(
    conn: &mut sqlx::AnyConnection,
    changes: &[Change],
    at: Timestamp,
    actor_user_id: Option<Id>,
    actor_api_key_id: Option<Id>,
) -> StoreResult<Vec<(i64, Vec<Topic>)>> {
    let mut out = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(APPEND_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO change_log (at, actor_user_id, actor_api_key_id, entity, entity_id, op, data, \
             client_id, lead_id, interest_id, dialog_id, department_id, topics, owner_id, shared) VALUES ",
        );
        let topics: Vec<Vec<Topic>> = chunk.iter().map(Change::topics).collect();
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = i * 15;
            sql.push('(');
            for k in 1..=15 {
                if k > 1 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", n + k));
            }
            sql.push(')');
        }
        sql.push_str(" RETURNING seq");
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for (c, t) in chunk.iter().zip(&topics) {
            q = q
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
                .bind(Topic::format_list(t))
                .bind(c.owner.and_then(|o| o.0))
                .bind(c.owner.map(|o| i64::from(o.1)));
        }
        let mut seqs = q.fetch_all(&mut *conn).await?;
        if seqs.len() != chunk.len() {
            return Err(StoreError::Corrupt(format!(
                "the change log took {} of {} changes",
                seqs.len(),
                chunk.len()
            )));
        }
        seqs.sort_unstable();
        // One statement for all topics of the chunk.
        let rows: Vec<(usize, &Topic)> = topics
            .iter()
            .enumerate()
            .flat_map(|(i, ts)| ts.iter().map(move |t| (i, t)))
            .collect();
        for part in rows.chunks(1000) {
            let mut sql = String::from("INSERT INTO change_topics (topic, seq) VALUES ");
            for i in 0..part.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            }
            let mut q = sqlx::query(&sql);
            for (i, t) in part {
                q = q.bind(t.to_string()).bind(seqs[*i]);
            }
            q.execute(&mut *conn).await?;
        }
        out.extend(seqs.into_iter().zip(topics));
    }
    Ok(out)
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

    /// Entries of `topic` with `since < seq <= until`, oldest first, at most `limit`.
    pub(crate) async fn topic_changes_impl(
        &self,
        topic: Topic,
        since: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeEntry>> {
        let sql = format!(
            "SELECT {} FROM change_topics t JOIN change_log c ON c.seq = t.seq \
             WHERE t.topic = $1 AND t.seq > $2 AND t.seq <= $3 ORDER BY t.seq LIMIT $4",
            rows::CHANGE_COLS_C
        );
        let rs = sqlx::query(&sql)
            .bind(topic.to_string())
            .bind(since)
            .bind(until)
            .bind(limit.clamp(1, 10_001))
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
