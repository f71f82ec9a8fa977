//! Routing state in the store: operator presence and load, hub nodes and leases, choosing
//! an operator for a dialog, draining a department's queue, re-offering unanswered dialogs,
//! and the ingest transaction that persists an inbound message with everything it implies.
//!
//! Routing decisions run inside the write transaction that assigns, after locking the
//! department row on PostgreSQL (SQLite has one writer), so two nodes never both fill an
//! operator's last free slot.

use sqlx::Row;

use super::dialogs::{dialog_change, record_message};
use super::interests::insert_interest;
use super::validate_ref::department_exists;
use super::{by_id, rows, Backend, Change, SqlStore, StoreError, StoreResult, WriteTx};
use crate::domain::validate::optional_text;
use crate::domain::*;

/// An operator who could take a dialog.
#[derive(Debug, Clone)]
struct Candidate {
    user_id: Id,
    open: i64,
    max: i64,
    last_assigned_at: Option<i64>,
}

/// Presence change as logged.
fn presence_change(state: &OperatorState, op: &'static str) -> Change {
    Change::new("presence", state.user_id, op, state)
        .department(state.department_id)
        .owner(Some(state.user_id), true)
}

impl SqlStore {
    // ---------------------------------------------------------------- presence

    async fn operator_state_in(
        conn: &mut sqlx::AnyConnection,
        user_id: Id,
    ) -> StoreResult<OperatorState> {
        let row = sqlx::query(
            "SELECT u.id, u.department_id, u.max_dialogs, p.status, p.chosen, p.on_call, p.since, \
             (SELECT COUNT(*) FROM dialogs d WHERE d.assignee_id = u.id AND d.status = 'open') AS open_dialogs \
             FROM users u LEFT JOIN operator_presence p ON p.user_id = u.id WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound { entity: "user" })?;
        let status: Option<String> = row.try_get("status")?;
        let chosen: Option<String> = row.try_get("chosen")?;
        Ok(OperatorState {
            user_id,
            department_id: rows::opt_id(&row, "department_id")?,
            status: status
                .as_deref()
                .and_then(PresenceStatus::parse)
                .unwrap_or(PresenceStatus::Offline),
            chosen: chosen
                .as_deref()
                .and_then(PresenceStatus::parse)
                .unwrap_or(PresenceStatus::Online),
            on_call: rows::opt_id(&row, "on_call")?.unwrap_or(0) != 0,
            open_dialogs: rows::id(&row, "open_dialogs")?,
            max_dialogs: rows::id(&row, "max_dialogs")?,
            since: rows::opt_ts(&row, "since")?.unwrap_or(Timestamp(0)),
        })
    }

    /// Sets the presence row to `status` (and `chosen` when given); logs when it changed.
    async fn write_presence(
        tx: &mut WriteTx,
        user_id: Id,
        status: PresenceStatus,
        chosen: Option<PresenceStatus>,
        on_call: Option<bool>,
    ) -> StoreResult<OperatorState> {
        let before = Self::operator_state_in(tx.conn(), user_id).await?;
        let chosen = chosen.unwrap_or(before.chosen);
        let on_call = on_call.unwrap_or(before.on_call);
        if before.status == status && before.chosen == chosen && before.on_call == on_call {
            return Ok(before);
        }
        let since = if before.status == status {
            before.since
        } else {
            tx.now
        };
        sqlx::query(
            "INSERT INTO operator_presence (user_id, status, chosen, on_call, since) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET status = $2, chosen = $3, on_call = $4, since = $5",
        )
        .bind(user_id)
        .bind(status.as_str())
        .bind(chosen.as_str())
        .bind(i64::from(on_call))
        .bind(since.micros())
        .execute(tx.conn())
        .await?;
        let after = OperatorState {
            status,
            chosen,
            on_call,
            since,
            ..before
        };
        tx.log(presence_change(&after, "update"));
        Ok(after)
    }

    pub(crate) async fn operator_state_impl(&self, user_id: Id) -> StoreResult<OperatorState> {
        let mut conn = self.pool.acquire().await?;
        Self::operator_state_in(&mut conn, user_id).await
    }

    pub(crate) async fn operator_states_impl(
        &self,
        department_id: Option<Id>,
    ) -> StoreResult<Vec<OperatorState>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM users WHERE active = 1 AND role IN ('operator', 'manager', 'supervisor') \
             AND ($1 IS NULL OR department_id = $1) ORDER BY id",
        )
        .bind(department_id)
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(Self::operator_state_in(&mut conn, id).await?);
        }
        Ok(out)
    }

    /// A connection of `user_id` opened on `node_id`: counts it and, when the operator was
    /// offline, puts them back to what they chose.
    pub(crate) async fn presence_connected_impl(
        &self,
        user_id: Id,
        node_id: &str,
    ) -> StoreResult<OperatorState> {
        let mut tx = self.write(&Actor::System).await?;
        sqlx::query(
            "INSERT INTO operator_connections (user_id, node_id, connections, updated_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (user_id, node_id) DO UPDATE SET connections = operator_connections.connections + 1, updated_at = $3",
        )
        .bind(user_id)
        .bind(node_id)
        .bind(tx.now.micros())
        .execute(tx.conn())
        .await?;
        let before = Self::operator_state_in(tx.conn(), user_id).await?;
        let state = Self::write_presence(&mut tx, user_id, before.chosen, None, None).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// A connection of `user_id` on `node_id` closed. Presence stays until
    /// [`presence_expire`](Self::presence_expire_impl) finds no connection after the grace.
    pub(crate) async fn presence_disconnected_impl(
        &self,
        user_id: Id,
        node_id: &str,
    ) -> StoreResult<()> {
        let _guard = self.single_write_guard().await;
        sqlx::query(
            "UPDATE operator_connections SET connections = CASE WHEN connections > 0 THEN connections - 1 ELSE 0 END, \
             updated_at = $3 WHERE user_id = $1 AND node_id = $2",
        )
        .bind(user_id)
        .bind(node_id)
        .bind(Timestamp::now().micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the operator offline when no live node (heartbeat after `alive_after`) holds a
    /// connection of theirs. Returns the state.
    pub(crate) async fn presence_expire_impl(
        &self,
        user_id: Id,
        alive_after: Timestamp,
    ) -> StoreResult<OperatorState> {
        let mut tx = self.write(&Actor::System).await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(c.connections), 0) AS BIGINT) FROM operator_connections c JOIN nodes n ON n.node_id = c.node_id \
             WHERE c.user_id = $1 AND n.heartbeat_at > $2",
        )
        .bind(user_id)
        .bind(alive_after.micros())
        .fetch_one(tx.conn())
        .await?;
        let state = if live == 0 {
            Self::write_presence(&mut tx, user_id, PresenceStatus::Offline, None, None).await?
        } else {
            Self::operator_state_in(tx.conn(), user_id).await?
        };
        tx.commit().await?;
        Ok(state)
    }

    /// The operator chose online or away.
    pub(crate) async fn presence_choose_impl(
        &self,
        user_id: Id,
        chosen: PresenceStatus,
    ) -> StoreResult<OperatorState> {
        if chosen == PresenceStatus::Offline {
            return Err(FieldError::new(
                "status",
                "invalid_status",
                "choose online or away; offline follows from closing the console",
            )
            .into());
        }
        let mut tx = self.write(&Actor::System).await?;
        let before = Self::operator_state_in(tx.conn(), user_id).await?;
        let status = if before.status == PresenceStatus::Offline {
            PresenceStatus::Offline
        } else {
            chosen
        };
        let state = Self::write_presence(&mut tx, user_id, status, Some(chosen), None).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Marks the operator on a call (full load) or free.
    pub(crate) async fn set_on_call_impl(
        &self,
        user_id: Id,
        on_call: bool,
    ) -> StoreResult<OperatorState> {
        let mut tx = self.write(&Actor::System).await?;
        let before = Self::operator_state_in(tx.conn(), user_id).await?;
        let state =
            Self::write_presence(&mut tx, user_id, before.status, None, Some(on_call)).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// Records this node's heartbeat.
    pub(crate) async fn node_heartbeat_impl(
        &self,
        node_id: &str,
        started_at: Timestamp,
    ) -> StoreResult<()> {
        let _guard = self.single_write_guard().await;
        sqlx::query(
            "INSERT INTO nodes (node_id, started_at, heartbeat_at) VALUES ($1, $2, $3) \
             ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = $3",
        )
        .bind(node_id)
        .bind(started_at.micros())
        .bind(Timestamp::now().micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets nodes whose heartbeat stopped before `dead_before` and their connections;
    /// returns the users who had connections there.
    pub(crate) async fn sweep_nodes_impl(&self, dead_before: Timestamp) -> StoreResult<Vec<Id>> {
        let _guard = self.single_write_guard().await;
        let users: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT c.user_id FROM operator_connections c LEFT JOIN nodes n ON n.node_id = c.node_id \
             WHERE n.node_id IS NULL OR n.heartbeat_at < $1",
        )
        .bind(dead_before.micros())
        .fetch_all(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM operator_connections WHERE node_id IN (SELECT node_id FROM nodes WHERE heartbeat_at < $1) \
             OR node_id NOT IN (SELECT node_id FROM nodes)",
        )
        .bind(dead_before.micros())
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
            .bind(dead_before.micros())
            .execute(&self.pool)
            .await?;
        Ok(users)
    }

    /// Users online (or away) whose connections are all gone: candidates for expiry.
    pub(crate) async fn present_without_connections_impl(&self) -> StoreResult<Vec<Id>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT p.user_id FROM operator_presence p WHERE p.status <> 'offline' AND NOT EXISTS \
             (SELECT 1 FROM operator_connections c WHERE c.user_id = p.user_id AND c.connections > 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Takes or renews lease `name` for `node_id` until `until`; true when held.
    pub(crate) async fn try_lease_impl(
        &self,
        name: &str,
        node_id: &str,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let _guard = self.single_write_guard().await;
        let now = Timestamp::now().micros();
        let row = sqlx::query(
            "INSERT INTO leases (name, node_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET node_id = $2, expires_at = $3 \
             WHERE leases.node_id = $2 OR leases.expires_at < $4 RETURNING node_id",
        )
        .bind(name)
        .bind(node_id)
        .bind(until.micros())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives lease `name` up if `node_id` holds it.
    pub(crate) async fn release_lease_impl(&self, name: &str, node_id: &str) -> StoreResult<()> {
        let _guard = self.single_write_guard().await;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND node_id = $2")
            .bind(name)
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- settings

    /// A hub-wide setting; `init` is stored first when it is missing (the first node to
    /// start wins, every node reads the same value).
    pub(crate) async fn hub_setting_impl(&self, key: &str, init: &str) -> StoreResult<String> {
        {
            let _guard = self.single_write_guard().await;
            sqlx::query("INSERT INTO hub_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(init)
                .execute(&self.pool)
                .await?;
        }
        let v: String = sqlx::query_scalar("SELECT value FROM hub_settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(v)
    }

    pub(crate) async fn routing_settings_impl(
        &self,
        department_id: Id,
    ) -> StoreResult<RoutingSettings> {
        let row = sqlx::query(
            "SELECT id, routing_policy, offer_timeout_secs, bot_first FROM departments WHERE id = $1",
        )
        .bind(department_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound {
            entity: "department",
        })?;
        settings_row(&row)
    }

    pub(crate) async fn update_routing_impl(
        &self,
        actor: &Actor,
        department_id: Id,
        patch: &RoutingPatch,
    ) -> StoreResult<RoutingSettings> {
        if !actor.has_scope(Scope::Admin) {
            return Err(StoreError::Forbidden(
                "only an admin changes routing".into(),
            ));
        }
        if let Some(t) = patch.offer_timeout_secs {
            if !(0..=86_400).contains(&t) {
                return Err(FieldError::new(
                    "offer_timeout_secs",
                    "out_of_range",
                    "offer_timeout_secs is 0 to 86400",
                )
                .into());
            }
        }
        let mut tx = self.write(actor).await?;
        department_exists(&mut tx, "department_id", department_id).await?;
        sqlx::query(
            "UPDATE departments SET routing_policy = COALESCE($1, routing_policy), \
             offer_timeout_secs = COALESCE($2, offer_timeout_secs), bot_first = COALESCE($3, bot_first) WHERE id = $4",
        )
        .bind(patch.policy.map(RoutingPolicy::as_str))
        .bind(patch.offer_timeout_secs)
        .bind(patch.bot_first.map(i64::from))
        .bind(department_id)
        .execute(tx.conn())
        .await?;
        let row = sqlx::query(
            "SELECT id, routing_policy, offer_timeout_secs, bot_first FROM departments WHERE id = $1",
        )
        .bind(department_id)
        .fetch_one(tx.conn())
        .await?;
        let s = settings_row(&row)?;
        tx.log(Change::new("routing", department_id, "update", &s).department(Some(department_id)));
        tx.commit().await?;
        Ok(s)
    }

    /// A user's capacity (admin).
    pub(crate) async fn set_max_dialogs_impl(
        &self,
        actor: &Actor,
        user_id: Id,
        max: i64,
    ) -> StoreResult<OperatorState> {
        if !actor.has_scope(Scope::Admin) {
            return Err(StoreError::Forbidden(
                "only an admin changes capacity".into(),
            ));
        }
        if !(0..=1000).contains(&max) {
            return Err(
                FieldError::new("max_dialogs", "out_of_range", "max_dialogs is 0 to 1000").into(),
            );
        }
        let mut tx = self.write(actor).await?;
        let n = sqlx::query("UPDATE users SET max_dialogs = $1 WHERE id = $2")
            .bind(max)
            .bind(user_id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound { entity: "user" });
        }
        let state = Self::operator_state_in(tx.conn(), user_id).await?;
        tx.log(presence_change(&state, "capacity"));
        tx.commit().await?;
        Ok(state)
    }

    // ---------------------------------------------------------------- routing

    /// Locks the department's routing on PostgreSQL (SQLite: the writer lock already does).
    async fn lock_department(tx: &mut WriteTx, department_id: Id) -> StoreResult<()> {
        if tx.backend() == Backend::Postgres {
            // NO KEY UPDATE: it serializes routers but not the inserts whose foreign keys
            // take KEY SHARE on the department (a FOR UPDATE here deadlocked with them).
            sqlx::query("SELECT id FROM departments WHERE id = $1 FOR NO KEY UPDATE")
                .bind(department_id)
                .fetch_optional(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// Whether `user_id` is online, not on a call and below capacity.
    async fn available(tx: &mut WriteTx, user_id: Id) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT u.max_dialogs, (SELECT COUNT(*) FROM dialogs d WHERE d.assignee_id = u.id AND d.status = 'open') AS open_dialogs \
             FROM users u JOIN operator_presence p ON p.user_id = u.id \
             WHERE u.id = $1 AND u.active = 1 AND u.role IN ('operator', 'manager', 'supervisor') \
             AND p.status = 'online' AND p.on_call = 0",
        )
        .bind(user_id)
        .fetch_optional(tx.conn())
        .await?;
        Ok(match row {
            Some(r) => rows::id(&r, "open_dialogs")? < rows::id(&r, "max_dialogs")?,
            None => false,
        })
    }

    async fn candidates(
        tx: &mut WriteTx,
        department_id: Id,
        exclude: Option<Id>,
    ) -> StoreResult<Vec<Candidate>> {
        let rs = sqlx::query(
            "SELECT u.id, u.max_dialogs, p.last_assigned_at, \
             (SELECT COUNT(*) FROM dialogs d WHERE d.assignee_id = u.id AND d.status = 'open') AS open_dialogs \
             FROM users u JOIN operator_presence p ON p.user_id = u.id \
             WHERE u.department_id = $1 AND u.active = 1 AND u.role IN ('operator', 'manager') \
             AND p.status = 'online' AND p.on_call = 0 AND ($2 IS NULL OR u.id <> $2) ORDER BY u.id",
        )
        .bind(department_id)
        .bind(exclude)
        .fetch_all(tx.conn())
        .await?;
        let mut out = Vec::new();
        for r in rs {
            let c = Candidate {
                user_id: rows::id(&r, "id")?,
                open: rows::id(&r, "open_dialogs")?,
                max: rows::id(&r, "max_dialogs")?,
                last_assigned_at: rows::opt_id(&r, "last_assigned_at")?,
            };
            if c.open < c.max {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Chooses an operator for dialog `d` (sticky manager, then the department's policy),
    /// excluding `exclude`. A round-robin choice moves the department's turn on; callers
    /// assign what they are offered in the same transaction.
    async fn choose(
        tx: &mut WriteTx,
        d: &Dialog,
        exclude: Option<Id>,
        sticky: bool,
    ) -> StoreResult<Option<(Id, AssignReason)>> {
        if sticky {
            let manager: Option<Option<i64>> = if let Some(c) = d.client_id {
                sqlx::query_scalar("SELECT responsible_id FROM clients WHERE id = $1")
                    .bind(c)
                    .fetch_optional(tx.conn())
                    .await?
            } else if let Some(l) = d.lead_id {
                sqlx::query_scalar("SELECT responsible_id FROM leads WHERE id = $1")
                    .bind(l)
                    .fetch_optional(tx.conn())
                    .await?
            } else {
                None
            };
            if let Some(Some(m)) = manager {
                if Some(m) != exclude && Self::available(tx, m).await? {
                    return Ok(Some((m, AssignReason::StickyManager)));
                }
            }
        }
        let Some(dep) = d.department_id else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT routing_policy, rr_last_user_id FROM departments WHERE id = $1")
                .bind(dep)
                .fetch_optional(tx.conn())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let policy: String = row.try_get("routing_policy")?;
        let rr_last = rows::opt_id(&row, "rr_last_user_id")?;
        let cands = Self::candidates(tx, dep, exclude).await?;
        if cands.is_empty() {
            return Ok(None);
        }
        Ok(match RoutingPolicy::parse(&policy) {
            Some(RoutingPolicy::LeastLoaded) => cands
                .iter()
                .min_by_key(|c| (c.open, c.last_assigned_at.unwrap_or(i64::MIN), c.user_id))
                .map(|c| (c.user_id, AssignReason::LeastLoaded)),
            _ => {
                let next = rr_last
                    .and_then(|last| cands.iter().find(|c| c.user_id > last))
                    .or_else(|| cands.first());
                if let Some(c) = next {
                    // Every caller assigns what it is offered, inside this transaction: the
                    // turn moves on here (so re-offers do not bounce between two people).
                    sqlx::query("UPDATE departments SET rr_last_user_id = $1 WHERE id = $2")
                        .bind(c.user_id)
                        .bind(dep)
                        .execute(tx.conn())
                        .await?;
                }
                next.map(|c| (c.user_id, AssignReason::RoundRobin))
            }
        })
    }

    /// Writes an assignment (or a queue entry when `user_id` is none) of `d` and logs it.
    async fn record_assignment(
        tx: &mut WriteTx,
        d: &mut Dialog,
        user_id: Option<Id>,
        reason: AssignReason,
        by_user_id: Option<Id>,
        previous: Option<Id>,
    ) -> StoreResult<Assignment> {
        let now = tx.now;
        d.assignee_id = user_id;
        d.assign_reason = Some(reason.as_str().to_owned());
        // A bot's hold has a start too: the offer timeout runs from it.
        d.assigned_at = (user_id.is_some() || reason == AssignReason::Bot).then_some(now);
        d.updated_at = now;
        sqlx::query(
            "UPDATE dialogs SET assignee_id = $1, department_id = $2, assign_reason = $3, assigned_at = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(d.assignee_id)
        .bind(d.department_id)
        .bind(reason.as_str())
        .bind(d.assigned_at.map(Timestamp::micros))
        .bind(now.micros())
        .bind(d.id)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO dialog_assignments (dialog_id, user_id, department_id, reason, by_user_id, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(d.id)
        .bind(user_id)
        .bind(d.department_id)
        .bind(reason.as_str())
        .bind(by_user_id)
        .bind(now.micros())
        .execute(tx.conn())
        .await?;
        if let Some(u) = user_id {
            sqlx::query("UPDATE operator_presence SET last_assigned_at = $1 WHERE user_id = $2")
                .bind(now.micros())
                .bind(u)
                .execute(tx.conn())
                .await?;
            if reason != AssignReason::Queued && reason != AssignReason::Manual {
                // An automatic assignment makes the operator responsible for a new Interest
                // that has nobody yet.
                if let Some(i) = d.interest_id {
                    sqlx::query(
                        "UPDATE interests SET responsible_id = $1 WHERE id = $2 AND responsible_id IS NULL",
                    )
                    .bind(u)
                    .bind(i)
                    .execute(tx.conn())
                    .await?;
                }
            }
        }
        let op = if reason == AssignReason::Bot {
            "bot"
        } else if matches!(reason, AssignReason::Transfer | AssignReason::Handover)
            && user_id.is_none()
        {
            // Moved to a department by a person or a bot: a transfer for whoever had it.
            "transfer"
        } else if user_id.is_none() {
            "queue"
        } else if previous.is_some() && previous != user_id {
            "transfer"
        } else {
            "assign"
        };
        let mut change = dialog_change(d, op);
        if let Some(p) = previous.filter(|p| Some(*p) != user_id) {
            change = change.also(Topic::user(p));
        }
        tx.log(change);
        Ok(Assignment {
            dialog_id: d.id,
            user_id,
            department_id: d.department_id,
            reason,
            by_user_id,
            at: now,
        })
    }

    /// Routes an unassigned open dialog inside `tx`: to an operator, or records it as queued.
    /// `previous`: the assignee it had a moment ago (a refined reading moved it), told of
    /// its leaving.
    async fn route_in_tx(
        tx: &mut WriteTx,
        d: &mut Dialog,
        previous: Option<Id>,
    ) -> StoreResult<Option<Assignment>> {
        if d.assignee_id.is_some() || d.status != DialogStatus::Open {
            return Ok(None);
        }
        // A queued dialog waits its turn: the queue is drained oldest first the moment an
        // operator has room, and a customer who writes again must not jump ahead of those
        // who wait quietly.
        if d.assign_reason.as_deref() == Some(AssignReason::Queued.as_str()) {
            return Ok(None);
        }
        if let Some(dep) = d.department_id {
            Self::lock_department(tx, dep).await?;
            let bot_first: Option<i64> =
                sqlx::query_scalar("SELECT bot_first FROM departments WHERE id = $1")
                    .bind(dep)
                    .fetch_optional(tx.conn())
                    .await?;
            if bot_first == Some(1) {
                if d.assign_reason.as_deref() == Some(AssignReason::Bot.as_str()) {
                    return Ok(None);
                }
                return Ok(Some(
                    Self::record_assignment(tx, d, None, AssignReason::Bot, None, previous).await?,
                ));
            }
        }
        match Self::choose(tx, d, None, true).await? {
            Some((u, reason)) => Ok(Some(
                Self::record_assignment(tx, d, Some(u), reason, None, previous).await?,
            )),
            None if d.assign_reason.as_deref() != Some(AssignReason::Queued.as_str()) => Ok(Some(
                Self::record_assignment(tx, d, None, AssignReason::Queued, None, previous).await?,
            )),
            None => Ok(None),
        }
    }

    /// Assigns the oldest waiting dialogs of a department's queue while operators have room.
    pub(crate) async fn drain_queue_impl(
        &self,
        department_id: Id,
        max: usize,
    ) -> StoreResult<Vec<Assignment>> {
        let mut tx = self.write(&Actor::System).await?;
        Self::lock_department(&mut tx, department_id).await?;
        let mut out = Vec::new();
        let sql = format!(
            "SELECT {} FROM dialogs d WHERE d.department_id = $1 AND d.status = 'open' AND d.assignee_id IS NULL \
             AND (d.assign_reason IS NULL OR d.assign_reason <> 'bot') \
             ORDER BY COALESCE(d.waiting_since, d.created_at), d.id LIMIT $2",
            rows::DIALOG_COLS
        );
        let waiting = sqlx::query(&sql)
            .bind(department_id)
            .bind(i64::try_from(max).unwrap_or(100))
            .fetch_all(tx.conn())
            .await?;
        for r in waiting {
            let mut d = rows::dialog(&r)?;
            match Self::choose(&mut tx, &d, None, true).await? {
                Some((u, reason)) => {
                    out.push(
                        Self::record_assignment(&mut tx, &mut d, Some(u), reason, None, None)
                            .await?,
                    );
                }
                // Oldest first: when the oldest cannot be placed nobody can (the sticky
                // manager of a later one might, but fairness keeps the order).
                None => break,
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Departments with dialogs waiting unassigned.
    pub(crate) async fn departments_with_queue_impl(&self) -> StoreResult<Vec<Id>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT department_id FROM dialogs WHERE status = 'open' AND assignee_id IS NULL AND department_id IS NOT NULL \
             AND (assign_reason IS NULL OR assign_reason <> 'bot')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Offers dialogs that waited unanswered longer than their department's timeout since
    /// their automatic assignment to the next operator. Returns the new assignments.
    pub(crate) async fn reoffer_due_impl(&self, now: Timestamp) -> StoreResult<Vec<Assignment>> {
        let sql = format!(
            "SELECT {} FROM dialogs d JOIN departments dep ON dep.id = d.department_id \
             WHERE d.status = 'open' AND d.waiting_since IS NOT NULL AND dep.offer_timeout_secs > 0 \
             AND ((d.assignee_id IS NOT NULL AND d.assign_reason IN ('sticky_manager', 'round_robin', 'least_loaded', 'reoffer_timeout')) \
                  OR (d.assignee_id IS NULL AND d.assign_reason = 'bot')) \
             AND (CASE WHEN d.assigned_at > d.waiting_since THEN d.assigned_at ELSE d.waiting_since END) \
                 + dep.offer_timeout_secs * 1000000 <= $1 ORDER BY d.assigned_at LIMIT 100",
            rows::DIALOG_COLS
        );
        let due = sqlx::query(&sql)
            .bind(now.micros())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in due {
            let d = rows::dialog(&r)?;
            if let Some(a) = self.reoffer_one(d.id, d.assignee_id, d.assigned_at).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Re-offers one dialog if it is still as seen (same assignee, same assignment time).
    async fn reoffer_one(
        &self,
        dialog_id: Id,
        seen_assignee: Option<Id>,
        seen_at: Option<Timestamp>,
    ) -> StoreResult<Option<Assignment>> {
        let mut tx = self.write(&Actor::System).await?;
        let mut d = by_id::DIALOG
            .fetch_for_update(&mut tx, &Actor::System, dialog_id)
            .await?;
        if d.assignee_id != seen_assignee || d.assigned_at != seen_at || d.waiting_since.is_none() {
            return Ok(None);
        }
        if let Some(dep) = d.department_id {
            Self::lock_department(&mut tx, dep).await?;
        }
        let held_by_bot = d.assignee_id.is_none();
        // A bot's hold that timed out goes to the people, the sticky manager first.
        let Some((u, _)) = Self::choose(&mut tx, &d, d.assignee_id, held_by_bot).await? else {
            if held_by_bot {
                let a = Self::record_assignment(
                    &mut tx,
                    &mut d,
                    None,
                    AssignReason::Queued,
                    None,
                    None,
                )
                .await?;
                tx.commit().await?;
                return Ok(Some(a));
            }
            // Nobody else is free: it stays; the timer starts again.
            sqlx::query("UPDATE dialogs SET assigned_at = $1 WHERE id = $2")
                .bind(tx.now.micros())
                .bind(d.id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            return Ok(None);
        };
        let previous = d.assignee_id;
        let a = Self::record_assignment(
            &mut tx,
            &mut d,
            Some(u),
            AssignReason::ReofferTimeout,
            None,
            previous,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(a))
    }

    /// Assigns or transfers a dialog by a person (or a bot's handover), with the reason.
    pub(crate) async fn assign_dialog_impl(
        &self,
        actor: &Actor,
        dialog_id: Id,
        user_id: Option<Id>,
        department_id: Option<Id>,
        reason: AssignReason,
    ) -> StoreResult<(Dialog, Assignment)> {
        if !actor.has_scope(Scope::DialogsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the dialogs:write scope".into(),
            ));
        }
        if user_id.is_none() && department_id.is_none() {
            return Err(FieldError::new(
                "user_id",
                "required",
                "name an operator (user_id) or a department (department_id)",
            )
            .into());
        }
        let mut tx = self.write(actor).await?;
        let mut d = by_id::DIALOG
            .fetch_for_update(&mut tx, actor, dialog_id)
            .await?;
        if let Some(dep) = department_id {
            department_exists(&mut tx, "department_id", dep).await?;
            d.department_id = Some(dep);
        }
        if let Some(u) = user_id {
            let dep = super::validate_ref::user_department(&mut tx, "user_id", u).await?;
            if department_id.is_none() {
                d.department_id = dep.or(d.department_id);
            }
        }
        if let Some(dep) = d.department_id {
            Self::lock_department(&mut tx, dep).await?;
        }
        let previous = d.assignee_id;
        let a = match user_id {
            Some(u) => {
                Self::record_assignment(&mut tx, &mut d, Some(u), reason, actor.user_id(), previous)
                    .await?
            }
            // To a department: its queue, routed at once.
            // To a department: into its queue for this reason, then routed at once (the
            // routing choice is recorded as a second assignment).
            None => {
                let mut a = Self::record_assignment(
                    &mut tx,
                    &mut d,
                    None,
                    reason,
                    actor.user_id(),
                    previous,
                )
                .await?;
                if let Some(routed) = Self::route_after_queue(&mut tx, &mut d, previous).await? {
                    a = routed;
                }
                a
            }
        };
        tx.commit().await?;
        Ok((d, a))
    }

    /// Routes a dialog just put in a department's queue by a person or a bot, to someone other
    /// than `previous` (who gave it away).
    async fn route_after_queue(
        tx: &mut WriteTx,
        d: &mut Dialog,
        previous: Option<Id>,
    ) -> StoreResult<Option<Assignment>> {
        if d.status != DialogStatus::Open {
            return Ok(None);
        }
        match Self::choose(tx, d, previous, false).await? {
            Some((u, reason)) => Ok(Some(
                Self::record_assignment(tx, d, Some(u), reason, None, None).await?,
            )),
            None => Ok(None),
        }
    }

    /// Assignments of a dialog, oldest first.
    pub(crate) async fn dialog_assignments_impl(
        &self,
        actor: &Actor,
        dialog_id: Id,
    ) -> StoreResult<Vec<Assignment>> {
        by_id::DIALOG.fetch(&self.pool, actor, dialog_id).await?;
        let rs = sqlx::query(
            "SELECT dialog_id, user_id, department_id, reason, by_user_id, at FROM dialog_assignments \
             WHERE dialog_id = $1 ORDER BY id",
        )
        .bind(dialog_id)
        .fetch_all(&self.pool)
        .await?;
        rs.iter()
            .map(|r| {
                let reason: String = r.try_get("reason")?;
                Ok(Assignment {
                    dialog_id: rows::id(r, "dialog_id")?,
                    user_id: rows::opt_id(r, "user_id")?,
                    department_id: rows::opt_id(r, "department_id")?,
                    reason: parse_reason(&reason)?,
                    by_user_id: rows::opt_id(r, "by_user_id")?,
                    at: rows::ts(r, "at")?,
                })
            })
            .collect()
    }

    /// The assignee (or anyone who sees the dialog) read it: unread goes to zero.
    pub(crate) async fn mark_read_impl(&self, actor: &Actor, dialog_id: Id) -> StoreResult<Dialog> {
        let mut tx = self.write(actor).await?;
        let mut d = by_id::DIALOG
            .fetch_for_update(&mut tx, actor, dialog_id)
            .await?;
        if d.unread == 0 {
            return Ok(d);
        }
        d.unread = 0;
        sqlx::query("UPDATE dialogs SET unread = 0 WHERE id = $1")
            .bind(dialog_id)
            .execute(tx.conn())
            .await?;
        tx.log(dialog_change(&d, "read"));
        tx.commit().await?;
        Ok(d)
    }

    // ---------------------------------------------------------------- ingest

    /// The message a channel knows by `channel_id` (our outbound message's provider id, or an
    /// inbound message's external id).
    pub(crate) async fn message_by_channel_id_impl(
        &self,
        connector_id: &str,
        channel_id: &str,
    ) -> StoreResult<Option<Message>> {
        let sql = format!(
            "SELECT {} FROM messages m WHERE m.connector_id = $1 AND (m.provider_message_id = $2 OR m.external_id = $2) \
             ORDER BY m.id LIMIT 1",
            rows::MESSAGE_COLS
        );
        let row = sqlx::query(&sql)
            .bind(connector_id)
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::message).transpose()
    }

    /// The dialog of a channel thread.
    pub(crate) async fn dialog_by_thread_impl(
        &self,
        connector_id: &str,
        thread_id: &str,
    ) -> StoreResult<Option<Dialog>> {
        let sql = format!(
            "SELECT {} FROM dialogs d WHERE d.connector_id = $1 AND d.external_thread_id = $2",
            rows::DIALOG_COLS
        );
        let row = sqlx::query(&sql)
            .bind(connector_id)
            .bind(thread_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::dialog).transpose()
    }

    /// Outbound messages of a connector still waiting to be handed to it, oldest first.
    pub(crate) async fn pending_outbound_impl(
        &self,
        connector_id: &str,
        after_id: Id,
        limit: i64,
    ) -> StoreResult<Vec<(Message, Dialog)>> {
        let sql = format!(
            "SELECT {}, {} FROM messages m JOIN dialogs d ON d.id = m.dialog_id WHERE m.connector_id = $1 \
             AND m.direction = 'outbound' AND m.delivery_status = 'pending' AND m.id > $2 ORDER BY m.id LIMIT $3",
            rows::MESSAGE_COLS,
            rows::DIALOG_COLS_AS
        );
        let rs = sqlx::query(&sql)
            .bind(connector_id)
            .bind(after_id)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?;
        rs.iter()
            .map(|r| Ok((rows::message(r)?, rows::dialog_as(r)?)))
            .collect()
    }

    /// Persists one inbound message with everything it implies, in one transaction:
    /// dedupe → identify (or create a lead) → find or open the dialog → link or open an
    /// Interest → route → message, Feed, change log.
    pub(crate) async fn ingest_message_impl(
        &self,
        input: &IngestMessage,
    ) -> StoreResult<IngestOutcome> {
        let checked = self.check_ingest(input)?;
        let mut tx = self.write(&Actor::System).await?;
        // The department first: routing locks it, and taking it before any dialog row keeps
        // the lock order of queue drains (department, then dialogs).
        if let Some(dep) = input.department_id {
            Self::lock_department(&mut tx, dep).await?;
        }
        let outcome = self.ingest_in_tx(&mut tx, &checked).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Puts engine 2's `reading` of inbound message `message_id` in place of its provisional
    /// one (engine 1's quick reading, see [`Classification::provisional`]). The message is
    /// updated (a `message` `classification` event). When this message opened its dialog
    /// and nothing has happened to the dialog since (still its only message, unread, not
    /// taken, moved or typed since), the dialog takes engine 2's applied type, or none, and goes
    /// to `department_id` (the applied type's department, else the channel's) if that is
    /// another one, routed afresh there, as if engine 2 had read the message at once; an
    /// Interest the message opened follows it. Otherwise the dialog only takes the type when
    /// it has none, the rule of ingest. Returns the updated message, or `None` when there
    /// was nothing to replace (not inbound, no reading, or already final).
    pub(crate) async fn refine_classification_impl(
        &self,
        message_id: Id,
        reading: &Classification,
        department_id: Option<Id>,
    ) -> StoreResult<Option<Message>> {
        if reading.provisional {
            return Err(FieldError::new(
                "classification",
                "provisional",
                "a provisional reading cannot replace another",
            )
            .into());
        }
        // Departments first (the lock order of queue drains: departments, then dialogs).
        let current: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT d.department_id FROM messages m JOIN dialogs d ON d.id = m.dialog_id WHERE m.id = $1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound { entity: "message" });
        };
        let mut tx = self.write(&Actor::System).await?;
        let mut departments: Vec<Id> = current.into_iter().chain(department_id).collect();
        departments.sort_unstable();
        departments.dedup();
        for dep in departments {
            Self::lock_department(&mut tx, dep).await?;
        }
        let sql = format!(
            "SELECT {} FROM messages m WHERE m.id = $1{}",
            rows::MESSAGE_COLS,
            if tx.backend() == Backend::Postgres {
                " FOR UPDATE OF m"
            } else {
                ""
            }
        );
        let mut m = rows::message(
            &sqlx::query(&sql)
                .bind(message_id)
                .fetch_optional(tx.conn())
                .await?
                .ok_or(StoreError::NotFound { entity: "message" })?,
        )?;
        if m.direction != Direction::Inbound
            || !m.classification.as_ref().is_some_and(|c| c.provisional)
        {
            return Ok(None);
        }
        m.classification = Some(reading.clone());
        sqlx::query("UPDATE messages SET classification = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(reading).ok())
            .bind(tx.now.micros())
            .bind(message_id)
            .execute(tx.conn())
            .await?;
        let mut d = by_id::DIALOG
            .fetch_for_update(&mut tx, &Actor::System, m.dialog_id)
            .await?;
        let before = d.clone();
        let messages: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE dialog_id = $1")
                .bind(d.id)
                .fetch_one(tx.conn())
                .await?;
        let untouched = messages == 1
            && d.status == DialogStatus::Open
            && d.unread > 0
            && d.created_at == m.created_at
            && d.updated_at == m.created_at;
        if untouched {
            d.request_type.clone_from(&reading.applied);
            d.request_type_by = reading.applied.as_ref().map(|_| "classifier".to_owned());
        } else if d.request_type.is_none() && reading.applied.is_some() {
            d.request_type.clone_from(&reading.applied);
            d.request_type_by = Some("classifier".into());
        }
        let moved = untouched && department_id.is_some() && department_id != d.department_id;
        if moved || d.request_type != before.request_type {
            d.updated_at = tx.now;
            if moved {
                // The quick reading sent it to another department a moment ago.
                d.department_id = department_id;
                d.assignee_id = None;
                d.assign_reason = None;
                d.assigned_at = None;
            }
            sqlx::query(
                "UPDATE dialogs SET department_id = $1, assignee_id = $2, assign_reason = $3, assigned_at = $4, \
                 request_type = $5, request_type_by = $6, updated_at = $7 WHERE id = $8",
            )
            .bind(d.department_id)
            .bind(d.assignee_id)
            .bind(&d.assign_reason)
            .bind(d.assigned_at.map(Timestamp::micros))
            .bind(&d.request_type)
            .bind(&d.request_type_by)
            .bind(d.updated_at.micros())
            .bind(d.id)
            .execute(tx.conn())
            .await?;
            if moved {
                if let Some(i) = d.interest_id {
                    // An Interest this message opened goes along, and loses the responsible
                    // it got from the assignee the dialog no longer has.
                    sqlx::query(
                        "UPDATE interests SET department_id = $1, \
                         responsible_id = CASE WHEN responsible_id = $2 THEN NULL ELSE responsible_id END \
                         WHERE id = $3 AND created_at = $4",
                    )
                    .bind(d.department_id)
                    .bind(before.assignee_id)
                    .bind(i)
                    .bind(m.created_at.micros())
                    .execute(tx.conn())
                    .await?;
                }
                // Routing logs the dialog's change (and tells the previous assignee).
                if Self::route_in_tx(&mut tx, &mut d, before.assignee_id)
                    .await?
                    .is_none()
                {
                    tx.log(dialog_change(&d, "transfer"));
                }
            } else {
                tx.log(dialog_change(&d, "update"));
            }
        }
        let mut change = Change::new("message", m.id, "classification", &m)
            .party(d.client_id, d.lead_id)
            .interest(d.interest_id)
            .dialog(Some(d.id))
            .department(d.department_id)
            .owner(d.assignee_id, d.shared);
        if let Some(p) = before.assignee_id.filter(|p| Some(*p) != d.assignee_id) {
            change = change.also(Topic::user(p));
        }
        tx.log(change);
        tx.commit().await?;
        Ok(Some(m))
    }

    /// Persists several inbound messages in one transaction (group commit), in order, each
    /// exactly as [`Self::ingest_message_impl`] would. Messages that fail their checks get
    /// their error in the answer and take no part. If any other step fails, nothing at all
    /// is stored and the error comes back whole: the caller then takes the messages one by
    /// one, so one bad message costs its batch a retry, never a loss.
    pub(crate) async fn ingest_messages_impl(
        &self,
        inputs: &[IngestMessage],
    ) -> StoreResult<Vec<StoreResult<IngestOutcome>>> {
        let mut results: Vec<Option<StoreResult<IngestOutcome>>> =
            inputs.iter().map(|_| None).collect();
        let mut checked = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            match self.check_ingest(input) {
                Ok(c) => checked.push((i, c)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !checked.is_empty() {
            let mut tx = self.write(&Actor::System).await?;
            // Every department of the batch, in id order, before any dialog row: two batches
            // naming the same departments cannot deadlock on them.
            let mut departments: Vec<Id> = checked
                .iter()
                .filter_map(|(_, c)| c.input.department_id)
                .collect();
            departments.sort_unstable();
            departments.dedup();
            for dep in departments {
                Self::lock_department(&mut tx, dep).await?;
            }
            for (i, c) in &checked {
                let outcome = self.ingest_in_tx(&mut tx, c).await?;
                results[*i] = Some(Ok(outcome));
            }
            tx.commit().await?;
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StoreError::Corrupt("a batch item was skipped".into())))
            })
            .collect())
    }

    /// The checks an inbound message passes before it takes any lock.
    fn check_ingest<'a>(&self, input: &'a IngestMessage) -> StoreResult<CheckedIngest<'a>> {
        let text = optional_text("text", input.text.as_deref(), Limits::TEXT)?;
        if text.is_none() && input.attachments.is_empty() {
            return Err(FieldError::new(
                "text",
                "required",
                "a message needs text or an attachment",
            )
            .into());
        }
        super::dialogs::check_attachments(&input.attachments)?;
        let display_name =
            optional_text("display_name", input.display_name.as_deref(), Limits::NAME)?;
        // A long subject, a heavy HTML body or a long quoted history must not cost the
        // message: they are cut, not refused (the text and attachments carry the content).
        let subject = clip(input.subject.as_deref(), Limits::NAME);
        let html = input
            .html
            .as_deref()
            .filter(|h| h.len() <= MAX_HTML && !h.trim().is_empty())
            .map(str::to_owned);
        let quoted = clip(input.quoted.as_deref(), Limits::TEXT);
        let traffic_source = match &input.traffic_source {
            Some(t) if t.is_object() => {
                let s = t.to_string();
                if s.len() > 4096 {
                    return Err(FieldError::new(
                        "traffic_source",
                        "too_long",
                        "the traffic source is at most 4096 bytes of JSON",
                    )
                    .into());
                }
                Some(s)
            }
            _ => None,
        };
        // Identities that do not normalize are dropped (and reported by the pipeline).
        let mut identities: Vec<(IdentityKind, String)> = Vec::new();
        for (kind, value) in &input.identities {
            if let Ok(v) = self.rules.normalize("identities", *kind, value) {
                if !identities.iter().any(|(k, x)| k == kind && *x == v) {
                    identities.push((*kind, v));
                }
            }
        }
        Ok(CheckedIngest {
            input,
            text,
            display_name,
            subject,
            html,
            quoted,
            traffic_source,
            identities,
        })
    }

    /// One checked inbound message inside an open transaction whose department lock is
    /// held. A concurrent duplicate is an error: the caller's transaction must roll back.
    async fn ingest_in_tx(
        &self,
        tx: &mut WriteTx,
        checked: &CheckedIngest<'_>,
    ) -> StoreResult<IngestOutcome> {
        let CheckedIngest {
            input,
            text,
            display_name,
            subject,
            html,
            quoted,
            traffic_source,
            identities,
        } = checked;
        let input: &IngestMessage = input;
        // 1. Dedupe.
        let seen = sqlx::query(
            "SELECT id, dialog_id FROM messages WHERE connector_id = $1 AND external_id = $2",
        )
        .bind(&input.connector_id)
        .bind(&input.external_id)
        .fetch_optional(tx.conn())
        .await?;
        if let Some(r) = seen {
            return Ok(IngestOutcome::Duplicate {
                message_id: rows::id(&r, "id")?,
                dialog_id: rows::id(&r, "dialog_id")?,
            });
        }
        // 2. The dialog, if the thread is known.
        let sql =
            format!(
            "SELECT {} FROM dialogs d WHERE d.connector_id = $1 AND d.external_thread_id = $2{}",
            rows::DIALOG_COLS,
            if tx.backend() == Backend::Postgres { " FOR UPDATE" } else { "" }
        );
        let existing = sqlx::query(&sql)
            .bind(&input.connector_id)
            .bind(&input.thread_id)
            .fetch_optional(tx.conn())
            .await?;
        let mut dialog = existing.as_ref().map(rows::dialog).transpose()?;

        // 3. Identify the sender: the dialog's party, else an identity, else a new lead.
        let mut identity_id = dialog.as_ref().and_then(|d| d.identity_id);
        let (mut client_id, mut contact_id, mut lead_id) = match &dialog {
            Some(d) => (d.client_id, d.contact_id, d.lead_id),
            None => (None, None, None),
        };
        if client_id.is_none() && lead_id.is_none() {
            for (kind, value) in identities {
                let row = sqlx::query(
                    "SELECT id, client_id, contact_id, lead_id FROM identities WHERE kind = $1 AND value = $2",
                )
                .bind(kind.as_str())
                .bind(value)
                .fetch_optional(tx.conn())
                .await?;
                if let Some(r) = row {
                    identity_id = Some(rows::id(&r, "id")?);
                    client_id = rows::opt_id(&r, "client_id")?;
                    contact_id = rows::opt_id(&r, "contact_id")?;
                    lead_id = rows::opt_id(&r, "lead_id")?;
                    break;
                }
            }
        }
        let mut new_lead = None;
        if client_id.is_none() && lead_id.is_none() {
            let name = display_name
                .clone()
                .or_else(|| identities.first().map(|(_, v)| v.clone()))
                .unwrap_or_else(|| format!("{} visitor", input.channel));
            let phone = identities
                .iter()
                .find(|(k, _)| *k == IdentityKind::Phone)
                .map(|(_, v)| v.clone());
            let email = identities
                .iter()
                .find(|(k, _)| *k == IdentityKind::Email)
                .map(|(_, v)| v.clone());
            let own = Ownership {
                responsible_id: None,
                department_id: input.department_id,
                shared: true,
            };
            // A form or call tracking says where the sender came from: that is the source.
            let summary = input
                .traffic_source
                .as_ref()
                .and_then(crate::domain::traffic_summary);
            let source = summary.clone().unwrap_or_else(|| input.channel.clone());
            let lead = self
                .insert_lead(tx, &name, None, &phone, &email, Some(source), own)
                .await?;
            if traffic_source.is_some() {
                sqlx::query("UPDATE leads SET traffic_source = $1 WHERE id = $2")
                    .bind(traffic_source)
                    .bind(lead.id)
                    .execute(tx.conn())
                    .await?;
            }
            for (i, (kind, value)) in identities.iter().enumerate() {
                let ident = self.add_lead_identity(tx, lead.id, *kind, value).await?;
                if i == 0 {
                    identity_id = Some(ident.id);
                }
            }
            lead_id = Some(lead.id);
            new_lead = Some(lead.id);
        } else {
            // Identities the channel gave that nobody holds yet join the known party.
            for (kind, value) in identities {
                sqlx::query(
                    "INSERT INTO identities (kind, value, client_id, contact_id, lead_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, value) DO NOTHING",
                )
                .bind(kind.as_str())
                .bind(value)
                .bind(client_id)
                .bind(contact_id)
                .bind(lead_id)
                .bind(tx.now.micros())
                .execute(tx.conn())
                .await?;
            }
        }

        // 4. The Interest: the dialog's, else the party's open one, else a new one by rule.
        let mut interest_id = dialog.as_ref().and_then(|d| d.interest_id);
        if interest_id.is_none() {
            interest_id = sqlx::query_scalar(
                "SELECT id FROM interests WHERE status = 'open' AND (client_id = $1 OR lead_id = $2) \
                 ORDER BY updated_at DESC, id DESC LIMIT 1",
            )
            .bind(client_id)
            .bind(lead_id)
            .fetch_optional(tx.conn())
            .await?;
        }
        let mut new_interest = None;
        let open_new = match input.open_interest {
            OpenInterest::Never => false,
            OpenInterest::NewParty => new_lead.is_some(),
            OpenInterest::WhenNoneOpen => true,
        };
        if interest_id.is_none() && open_new {
            let who = display_name
                .clone()
                .or_else(|| identities.first().map(|(_, v)| v.clone()))
                .unwrap_or_default();
            let title: String = format!("Inquiry via {}: {who}", input.channel)
                .chars()
                .take(200)
                .collect();
            let n = insert_interest(
                tx,
                None,
                (client_id, contact_id, lead_id),
                None,
                title.trim(),
                None,
                "RUB",
                Some(
                    input
                        .traffic_source
                        .as_ref()
                        .and_then(crate::domain::traffic_summary)
                        .unwrap_or_else(|| input.channel.clone()),
                ),
                Ownership {
                    responsible_id: None,
                    department_id: input.department_id,
                    shared: true,
                },
            )
            .await?;
            interest_id = Some(n.id);
            new_interest = Some(n.id);
        }

        // 5. The dialog: open it, or reopen and refresh it.
        let sent_at = input.sent_at;
        let applied = input
            .classification
            .as_ref()
            .and_then(|c| c.applied.as_deref());
        let new_dialog = dialog.is_none();
        let mut d = match dialog.take() {
            Some(mut d) => {
                // The message event tells consoles the new last message, unread count and
                // waiting time; the dialog itself is logged only when more changed.
                let mut op = None;
                if d.status == DialogStatus::Closed {
                    d.status = DialogStatus::Open;
                    d.closed_at = None;
                    // A new inquiry on a closed dialog is routed afresh.
                    d.assignee_id = None;
                    d.assign_reason = None;
                    d.assigned_at = None;
                    op = Some("reopen");
                }
                if d.interest_id.is_none() && interest_id.is_some() {
                    d.interest_id = interest_id;
                    op = op.or(Some("update"));
                }
                if d.department_id.is_none() && input.department_id.is_some() {
                    d.department_id = input.department_id;
                    op = op.or(Some("update"));
                }
                // The classifier types an untyped inquiry; it never overrides a type (its
                // own earlier one, or an operator's).
                if d.request_type.is_none() && applied.is_some() {
                    d.request_type = applied.map(str::to_owned);
                    d.request_type_by = Some("classifier".into());
                    op = op.or(Some("update"));
                }
                if d.last_message_at.is_none_or(|t| t < sent_at) {
                    d.last_message_at = Some(sent_at);
                }
                if d.waiting_since.is_none() {
                    // Our clock, not the channel's: the offer timeout counts from it.
                    d.waiting_since = Some(tx.now);
                }
                d.unread += 1;
                d.updated_at = tx.now;
                sqlx::query(
                    "UPDATE dialogs SET status = $1, closed_at = $2, assignee_id = $3, assign_reason = $4, assigned_at = $5, \
                     interest_id = $6, department_id = $7, last_message_at = $8, waiting_since = $9, unread = $10, updated_at = $11, \
                     request_type = $12, request_type_by = $13 WHERE id = $14",
                )
                .bind(d.status.as_str())
                .bind(d.closed_at.map(Timestamp::micros))
                .bind(d.assignee_id)
                .bind(&d.assign_reason)
                .bind(d.assigned_at.map(Timestamp::micros))
                .bind(d.interest_id)
                .bind(d.department_id)
                .bind(d.last_message_at.map(Timestamp::micros))
                .bind(d.waiting_since.map(Timestamp::micros))
                .bind(d.unread)
                .bind(d.updated_at.micros())
                .bind(&d.request_type)
                .bind(&d.request_type_by)
                .bind(d.id)
                .execute(tx.conn())
                .await?;
                if let Some(op) = op {
                    tx.log(dialog_change(&d, op));
                }
                d
            }
            None => {
                let sql = format!(
                    "INSERT INTO dialogs (channel, connector_id, external_thread_id, identity_id, client_id, contact_id, lead_id, \
                     interest_id, department_id, shared, status, subject, last_message_at, waiting_since, unread, created_at, updated_at, \
                     request_type, request_type_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 'open', $10, $11, $12, 1, $12, $12, $13, $14) RETURNING {}",
                    rows::DIALOG_COLS.replace("d.", "")
                );
                let row = sqlx::query(&sql)
                    .bind(&input.channel)
                    .bind(&input.connector_id)
                    .bind(&input.thread_id)
                    .bind(identity_id)
                    .bind(client_id)
                    .bind(contact_id)
                    .bind(lead_id)
                    .bind(interest_id)
                    .bind(input.department_id)
                    .bind(subject)
                    .bind(sent_at.micros())
                    .bind(tx.now.micros())
                    .bind(applied)
                    .bind(applied.map(|_| "classifier"))
                    .fetch_one(tx.conn())
                    .await
                    .map_err(super::conflict_on(
                        "thread_id",
                        "the thread was opened concurrently",
                    ))?;
                let d = rows::dialog(&row)?;
                tx.log(dialog_change(&d, "create"));
                d
            }
        };

        // 6. Route.
        let assignment = Self::route_in_tx(tx, &mut d, None).await?;

        // 7. The message.
        let sql = format!(
            "INSERT INTO messages (dialog_id, direction, connector_id, external_id, body, attachments, delivery_status, \
             sent_at, created_at, updated_at, subject, html, quoted, classification) \
             VALUES ($1, 'inbound', $2, $3, $4, $5, 'received', $6, $7, $7, $8, $9, $10, $11) \
             ON CONFLICT (connector_id, external_id) DO NOTHING RETURNING {}",
            rows::MESSAGE_COLS.replace("m.", "")
        );
        let row = sqlx::query(&sql)
            .bind(d.id)
            .bind(&input.connector_id)
            .bind(&input.external_id)
            .bind(text)
            .bind(serde_json::to_string(&input.attachments).unwrap_or_else(|_| "[]".into()))
            .bind(sent_at.micros())
            .bind(tx.now.micros())
            .bind(subject)
            .bind(html)
            .bind(quoted)
            .bind(
                input
                    .classification
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok()),
            )
            .fetch_optional(tx.conn())
            .await?;
        let Some(row) = row else {
            // Stored concurrently by another node between our check and now: the caller
            // rolls back all.
            return Err(StoreError::Duplicate {
                field: "external_id".into(),
                message: "the message was stored concurrently".into(),
            });
        };
        let m = rows::message(&row)?;
        record_message(tx, &d, &m).await?;
        Ok(IngestOutcome::Stored {
            message: Box::new(m),
            dialog: Box::new(d),
            new_dialog,
            new_lead,
            new_interest,
            assignment,
        })
    }
}

/// The largest HTML body kept with a message, in bytes; a bigger one is dropped (the text
/// stays).
const MAX_HTML: usize = 1024 * 1024;

/// `s` trimmed and cut to `max` characters; `None` when empty.
fn clip(s: Option<&str>, max: usize) -> Option<String> {
    let s = s?.trim();
    (!s.is_empty()).then(|| s.chars().take(max).collect())
}

/// An inbound message that passed its checks, with its normalized fields.
pub(crate) struct CheckedIngest<'a> {
    input: &'a IngestMessage,
    text: Option<String>,
    display_name: Option<String>,
    subject: Option<String>,
    html: Option<String>,
    quoted: Option<String>,
    /// JSON text of the traffic source object.
    traffic_source: Option<String>,
    identities: Vec<(IdentityKind, String)>,
}

fn settings_row(row: &sqlx::any::AnyRow) -> StoreResult<RoutingSettings> {
    let policy: String = row.try_get("routing_policy")?;
    Ok(RoutingSettings {
        department_id: rows::id(row, "id")?,
        policy: RoutingPolicy::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("routing policy {policy}")))?,
        offer_timeout_secs: rows::id(row, "offer_timeout_secs")?,
        bot_first: rows::flag(row, "bot_first")?,
    })
}

fn parse_reason(s: &str) -> StoreResult<AssignReason> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("assignment reason {s}")))
}
