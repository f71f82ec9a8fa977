//! Calls from telephony connectors, and click-to-call.
//!
//! Every call event is stored once in `call_events` (idempotent on `(connector_id,
//! external_id)`), then folded into its call by [`apply_call_step`]. The first `ringing` of a
//! call opens it: the caller is recognised by number, or becomes a lead; the call joins the
//! party's open Interest, or opens one by the channel's rule; the call shows in the Feed.
//! An event that comes before its call's `ringing` waits in `call_events` and is applied
//! when the call opens. A missed inbound call leaves a callback task for the operator who
//! was rung (else the client's responsible manager); the next answered call with that
//! number completes it.
//!
//! A click-to-call is a call row created by the operator's request with `originate_state =
//! 'pending'`; the host hands it to the connector holding the PBX session and marks it
//! `sent`, and the PBX's events for it then update the same row (the connector uses our id
//! as the PBX's call id).

use super::validate_ref::*;
use super::{
    dialogs::call_change, rows, Backend, Change, SqlStore, StoreError, StoreResult, WriteTx,
};
use crate::domain::*;

/// How long a click-to-call may wait for its connector before it is dropped as stale: the
/// operator would not expect their phone to ring minutes later.
pub(crate) const ORIGINATE_TTL_SECS: i64 = 60;

impl SqlStore {
    /// Numbers and extensions of a step, checked and normalized (E.164 where it is a phone
    /// number).
    fn checked_step(&self, step: &CallStep) -> StoreResult<CallStep> {
        let ext = |field: &str, v: &Option<String>| -> StoreResult<Option<String>> {
            match v {
                Some(x) => Ok(super::users::extension(field, x)?.or(None)),
                None => Ok(None),
            }
        };
        Ok(match step {
            CallStep::Ringing {
                from,
                to,
                direction,
                extension,
            } => CallStep::Ringing {
                from: self.call_number("from", from)?,
                to: self.call_number("to", to)?,
                direction: *direction,
                extension: ext("extension", extension)?,
            },
            CallStep::Answered { by_extension } => CallStep::Answered {
                by_extension: ext("by_extension", by_extension)?,
            },
            CallStep::Transferred { to_extension } => CallStep::Transferred {
                to_extension: self.call_number("to_extension", to_extension)?,
            },
            CallStep::HungUp {
                duration_secs,
                cause,
            } => CallStep::HungUp {
                duration_secs: duration_secs.map(|d| d.min(7 * 24 * 3600)),
                cause: cause.as_ref().map(|c| c.chars().take(200).collect()),
            },
            CallStep::Missed { reason } => CallStep::Missed {
                reason: reason.chars().take(32).collect(),
            },
            CallStep::Failed { reason } => CallStep::Failed {
                reason: reason.chars().take(500).collect(),
            },
            CallStep::Recording { url } => {
                let url = url.trim();
                if url.is_empty() || url.len() > 2000 || url.chars().any(char::is_control) {
                    return Err(FieldError::new(
                        "url",
                        "invalid_url",
                        "a recording URL is 1 to 2000 characters without control characters",
                    )
                    .into());
                }
                CallStep::Recording {
                    url: url.to_owned(),
                }
            }
        })
    }

    pub(crate) async fn ingest_call_impl(&self, input: &IngestCall) -> StoreResult<CallOutcome> {
        let step = self.checked_step(&input.step)?;
        let data = serde_json::to_string(&step).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write(&Actor::System).await?;
        // 1. The event, once.
        let event_id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO call_events (connector_id, external_id, call_external_id, kind, data, occurred_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (connector_id, external_id) DO NOTHING RETURNING id",
        )
        .bind(&input.connector_id)
        .bind(&input.external_id)
        .bind(&input.call_external_id)
        .bind(step.kind())
        .bind(&data)
        .bind(input.occurred_at.micros())
        .bind(tx.now.micros())
        .fetch_optional(tx.conn())
        .await?;
        let Some(event_id) = event_id else {
            return Ok(CallOutcome::Duplicate);
        };
        // 2. Its call, or a new one on `ringing`; other steps wait for it.
        let lock = if tx.backend() == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM calls k WHERE k.connector_id = $1 AND k.external_id = $2{lock}",
            rows::CALL_COLS
        );
        let row = sqlx::query(&sql)
            .bind(&input.connector_id)
            .bind(&input.call_external_id)
            .fetch_optional(tx.conn())
            .await?;
        let mut new_lead = None;
        let (mut k, created) = match row {
            Some(r) => (rows::call(&r)?, false),
            None => match &step {
                CallStep::Ringing { .. } => {
                    let (k, lead) = self.open_call(&mut tx, input, &step).await?;
                    new_lead = lead;
                    (k, true)
                }
                _ => {
                    tx.commit().await?;
                    return Ok(CallOutcome::Waiting);
                }
            },
        };
        let before = k.clone();
        let mut steps = Vec::new();
        if !created {
            steps.push((event_id, step.clone(), input.occurred_at));
        } else {
            Self::link_event(&mut tx, event_id, k.id).await?;
            // Events that came before the call opened, in their order.
            let waiting = sqlx::query(
                "SELECT id, data, occurred_at FROM call_events WHERE connector_id = $1 AND call_external_id = $2 \
                 AND call_id IS NULL ORDER BY occurred_at, id",
            )
            .bind(&input.connector_id)
            .bind(&input.call_external_id)
            .fetch_all(tx.conn())
            .await?;
            for r in &waiting {
                let s: CallStep = serde_json::from_str(&rows::text(r, "data")?)
                    .map_err(|_| StoreError::Corrupt("call_events.data".into()))?;
                steps.push((rows::id(r, "id")?, s, rows::ts(r, "occurred_at")?));
            }
        }
        for (id, s, at) in &steps {
            let operator = match s.extension() {
                Some(x) => Self::operator_of(&mut tx, x).await?,
                None => None,
            };
            apply_call_step(&mut k, s, *at, operator);
            Self::link_event(&mut tx, *id, k.id).await?;
        }
        if !created && super::unchanged(&before, &k) {
            tx.commit().await?;
            return Ok(CallOutcome::Applied {
                call: Box::new(k),
                created,
                new_lead,
                callback_task: None,
                callbacks_done: Vec::new(),
            });
        }
        k.updated_at = tx.now;
        sqlx::query(
            "UPDATE calls SET status = $1, missed_reason = $2, operator_id = $3, extension = $4, answered_at = $5, ended_at = $6, \
             duration_secs = $7, recording_url = $8, originate_state = NULL, updated_at = $9 WHERE id = $10",
        )
        .bind(k.status.as_str())
        .bind(&k.missed_reason)
        .bind(k.operator_id)
        .bind(&k.extension)
        .bind(k.answered_at.map(Timestamp::micros))
        .bind(k.ended_at.map(Timestamp::micros))
        .bind(k.duration_secs)
        .bind(&k.recording_url)
        .bind(k.updated_at.micros())
        .bind(k.id)
        .execute(tx.conn())
        .await?;
        Self::feed_call(&mut tx, &k).await?;
        let mut change = call_change(&k, if created { "create" } else { "update" })
            .department(input.department_id);
        if let Some(p) = before.operator_id.filter(|p| Some(*p) != k.operator_id) {
            // The operator whose phone stopped ringing learns it.
            change = change.also(Topic::user(p));
        }
        tx.log(change);

        // 3. Callbacks: a missed inbound call leaves one; an answered call settles them.
        let mut callback_task = None;
        if k.status == CallStatus::Missed
            && before.status != CallStatus::Missed
            && k.direction == CallDirection::Inbound
            && k.missed_reason.as_deref() != Some("failed")
        {
            callback_task = self.callback_task(&mut tx, &k, input.department_id).await?;
        }
        let mut callbacks_done = Vec::new();
        if k.answered_at.is_some() && before.answered_at.is_none() {
            let customer = match k.direction {
                CallDirection::Outbound => &k.to_number,
                _ => &k.from_number,
            };
            callbacks_done = Self::settle_callbacks(&mut tx, customer).await?;
        }
        tx.commit().await?;
        Ok(CallOutcome::Applied {
            call: Box::new(k),
            created,
            new_lead,
            callback_task,
            callbacks_done,
        })
    }

    async fn link_event(tx: &mut WriteTx, event_id: Id, call_id: Id) -> StoreResult<()> {
        sqlx::query("UPDATE call_events SET call_id = $1 WHERE id = $2")
            .bind(call_id)
            .bind(event_id)
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// The active user with this extension.
    async fn operator_of(tx: &mut WriteTx, extension: &str) -> StoreResult<Option<Id>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM users WHERE extension = $1 AND active = 1")
                .bind(extension)
                .fetch_optional(tx.conn())
                .await?,
        )
    }

    /// Opens a call on its first `ringing`: who is calling, their Interest, the Feed.
    async fn open_call(
        &self,
        tx: &mut WriteTx,
        input: &IngestCall,
        step: &CallStep,
    ) -> StoreResult<(Call, Option<Id>)> {
        let CallStep::Ringing {
            from,
            to,
            direction,
            extension,
        } = step
        else {
            return Err(StoreError::Corrupt("open_call needs a ringing step".into()));
        };
        let customer = match direction {
            CallDirection::Outbound => to,
            _ => from,
        };
        let source = input
            .traffic_source
            .as_ref()
            .and_then(traffic_summary)
            .unwrap_or_else(|| input.channel.clone());
        // Who: a known number, else (for a real phone number) a new lead.
        let mut party = (None, None, None);
        let r = sqlx::query(
            "SELECT client_id, contact_id, lead_id FROM identities WHERE kind = 'phone' AND value = $1",
        )
        .bind(customer)
        .fetch_optional(tx.conn())
        .await?;
        if let Some(r) = r {
            party = (
                rows::opt_id(&r, "client_id")?,
                rows::opt_id(&r, "contact_id")?,
                rows::opt_id(&r, "lead_id")?,
            );
        }
        let mut new_lead = None;
        if party.0.is_none() && party.2.is_none() && customer.starts_with('+') {
            let lead = self
                .insert_lead(
                    tx,
                    customer,
                    None,
                    &Some(customer.clone()),
                    &None,
                    Some(source.clone()),
                    Ownership {
                        responsible_id: None,
                        department_id: input.department_id,
                        shared: true,
                    },
                )
                .await?;
            self.add_lead_identity(tx, lead.id, IdentityKind::Phone, customer)
                .await?;
            party.2 = Some(lead.id);
            new_lead = Some(lead.id);
        }
        // Which Interest: the party's open one, else a new one by the channel's rule.
        let mut interest_id: Option<Id> = None;
        if party.0.is_some() || party.2.is_some() {
            interest_id = sqlx::query_scalar(
                "SELECT id FROM interests WHERE status = 'open' AND (client_id = $1 OR lead_id = $2) \
                 ORDER BY updated_at DESC, id DESC LIMIT 1",
            )
            .bind(party.0)
            .bind(party.2)
            .fetch_optional(tx.conn())
            .await?;
            let open_new = match input.open_interest {
                OpenInterest::Never => false,
                OpenInterest::NewParty => new_lead.is_some(),
                OpenInterest::WhenNoneOpen => true,
            };
            if interest_id.is_none() && open_new {
                let title = match direction {
                    CallDirection::Outbound => format!("Call to {customer}"),
                    _ => format!("Call from {customer}"),
                };
                let n = super::interests::insert_interest(
                    tx,
                    None,
                    party,
                    None,
                    &title,
                    None,
                    "RUB",
                    Some(source.clone()),
                    Ownership {
                        responsible_id: None,
                        department_id: input.department_id,
                        shared: true,
                    },
                )
                .await?;
                interest_id = Some(n.id);
            }
        }
        let operator = match extension {
            Some(x) => Self::operator_of(tx, x).await?,
            None => None,
        };
        let traffic = input
            .traffic_source
            .as_ref()
            .filter(|v| v.is_object())
            .map(serde_json::Value::to_string)
            .filter(|s| s.len() <= 4000);
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO calls (connector_id, external_id, direction, from_number, to_number, status, operator_id, extension, \
             client_id, contact_id, lead_id, interest_id, started_at, traffic_source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'ringing', $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING {}",
            rows::CALL_COLS.replace("k.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&input.connector_id)
            .bind(&input.call_external_id)
            .bind(direction.as_str())
            .bind(from)
            .bind(to)
            .bind(operator)
            .bind(extension)
            .bind(party.0)
            .bind(party.1)
            .bind(party.2)
            .bind(interest_id)
            .bind(input.occurred_at.micros())
            .bind(traffic)
            .bind(now)
            .fetch_one(tx.conn())
            .await
            .map_err(super::conflict_on(
                "call_external_id",
                "the call was opened concurrently",
            ))?;
        Ok((rows::call(&row)?, new_lead))
    }

    /// A planned "call back" task for a missed call, unless one is already open for the
    /// number.
    async fn callback_task(
        &self,
        tx: &mut WriteTx,
        k: &Call,
        department_id: Option<Id>,
    ) -> StoreResult<Option<Id>> {
        if k.client_id.is_none() && k.lead_id.is_none() {
            return Ok(None);
        }
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT x.id FROM interactions x JOIN calls c ON c.id = x.call_id \
             WHERE x.kind = 'task' AND x.status = 'planned' AND c.from_number = $1 AND c.status = 'missed' LIMIT 1",
        )
        .bind(&k.from_number)
        .fetch_optional(tx.conn())
        .await?;
        if open.is_some() {
            return Ok(None);
        }
        let party_responsible: Option<Id> = match (k.client_id, k.lead_id) {
            (Some(c), _) => {
                sqlx::query_scalar("SELECT responsible_id FROM clients WHERE id = $1")
                    .bind(c)
                    .fetch_optional(tx.conn())
                    .await?
            }
            (None, Some(l)) => {
                sqlx::query_scalar("SELECT responsible_id FROM leads WHERE id = $1")
                    .bind(l)
                    .fetch_optional(tx.conn())
                    .await?
            }
            _ => None,
        }
        .flatten();
        let responsible = k.operator_id.or(party_responsible);
        let reason = k.missed_reason.as_deref().unwrap_or("missed");
        let subject = format!("Call back {}", k.from_number);
        let body = format!("Missed call ({reason}) at {}", k.started_at);
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO interactions (kind, status, subject, body, client_id, contact_id, lead_id, interest_id, call_id, \
             responsible_id, planned_at, created_at, updated_at) \
             VALUES ('task', 'planned', $1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9) RETURNING {}",
            rows::INTERACTION_COLS.replace("x.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&subject)
            .bind(&body)
            .bind(k.client_id)
            .bind(k.contact_id)
            .bind(k.lead_id)
            .bind(k.interest_id)
            .bind(k.id)
            .bind(responsible)
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let x = rows::interaction(&row)?;
        Self::feed_interaction(tx, &x).await?;
        let mut change = Change::new("interaction", x.id, "create", &x)
            .party(x.client_id, x.lead_id)
            .interest(x.interest_id);
        if let Some(r) = responsible {
            change = change.also(Topic::user(r));
        }
        if let Some(d) = department_id {
            change = change.also(Topic::dept(d));
        }
        tx.log(change);
        Ok(Some(x.id))
    }

    /// Completes the open callback tasks of missed calls from `number`.
    async fn settle_callbacks(tx: &mut WriteTx, number: &str) -> StoreResult<Vec<Id>> {
        let sql = format!(
            "SELECT {} FROM interactions x JOIN calls c ON c.id = x.call_id \
             WHERE x.kind = 'task' AND x.status = 'planned' AND c.from_number = $1 AND c.status = 'missed'",
            rows::INTERACTION_COLS
        );
        let open = sqlx::query(&sql).bind(number).fetch_all(tx.conn()).await?;
        let mut done = Vec::with_capacity(open.len());
        for r in &open {
            let mut x = rows::interaction(r)?;
            x.status = InteractionStatus::Done;
            x.done_at = Some(tx.now);
            x.updated_at = tx.now;
            sqlx::query(
                "UPDATE interactions SET status = 'done', done_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(tx.now.micros())
            .bind(x.id)
            .execute(tx.conn())
            .await?;
            Self::feed_interaction(tx, &x).await?;
            let mut change = Change::new("interaction", x.id, "update", &x)
                .party(x.client_id, x.lead_id)
                .interest(x.interest_id);
            if let Some(r) = x.responsible_id {
                change = change.also(Topic::user(r));
            }
            tx.log(change);
            done.push(x.id);
        }
        Ok(done)
    }

    // ---- click-to-call ------------------------------------------------------------------

    pub(crate) async fn create_originate_impl(
        &self,
        actor: &Actor,
        connector_id: &str,
        call_external_id: &str,
        to: &str,
        client_id: Option<Id>,
        lead_id: Option<Id>,
    ) -> StoreResult<Call> {
        if !actor.has_scope(Scope::CallsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the calls:write scope".into(),
            ));
        }
        let Some(user_id) = actor.user_id() else {
            return Err(StoreError::Forbidden(
                "click-to-call rings a user's phone: call it as a user".into(),
            ));
        };
        let to = self.call_number("to", to)?;
        if !to.starts_with('+') && to.len() > 32 {
            return Err(FieldError::new("to", "invalid_phone", "not a number to dial").into());
        }
        let mut tx = self.write(actor).await?;
        let extension: Option<String> =
            sqlx::query_scalar("SELECT extension FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(tx.conn())
                .await?
                .flatten();
        let Some(extension) = extension else {
            return Err(StoreError::Conflict {
                field: "extension".into(),
                message: "you have no phone extension; an admin sets it on your user".into(),
            });
        };
        if client_id.is_some() && lead_id.is_some() {
            return Err(FieldError::new(
                "lead_id",
                "exclusive",
                "give client_id or lead_id, not both",
            )
            .into());
        }
        let mut party = (client_id, None, lead_id);
        if let Some(c) = client_id {
            visible_client(&mut tx, actor, "client_id", c).await?;
        }
        if let Some(l) = lead_id {
            visible_lead(&mut tx, actor, "lead_id", l).await?;
        }
        if client_id.is_none() && lead_id.is_none() {
            // Only a party the caller may see: a click must not reveal someone else's client.
            let sql = format!(
                "SELECT i.client_id, i.contact_id, i.lead_id FROM identities i WHERE i.kind = 'phone' AND i.value = $1 AND {}",
                super::access::party_visible(actor, "i")
            );
            if let Some(r) = sqlx::query(&sql)
                .bind(&to)
                .fetch_optional(tx.conn())
                .await?
            {
                party = (
                    rows::opt_id(&r, "client_id")?,
                    rows::opt_id(&r, "contact_id")?,
                    rows::opt_id(&r, "lead_id")?,
                );
            }
        }
        let interest_id: Option<Id> = if party.0.is_some() || party.2.is_some() {
            sqlx::query_scalar(
                "SELECT id FROM interests WHERE status = 'open' AND (client_id = $1 OR lead_id = $2) \
                 ORDER BY updated_at DESC, id DESC LIMIT 1",
            )
            .bind(party.0)
            .bind(party.2)
            .fetch_optional(tx.conn())
            .await?
        } else {
            None
        };
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO calls (connector_id, external_id, direction, from_number, to_number, status, operator_id, extension, \
             client_id, contact_id, lead_id, interest_id, started_at, originate_state, created_at, updated_at) \
             VALUES ($1, $2, 'outbound', $3, $4, 'ringing', $5, $3, $6, $7, $8, $9, $10, 'pending', $10, $10) RETURNING {}",
            rows::CALL_COLS.replace("k.", "")
        );
        let row = sqlx::query(&sql)
            .bind(connector_id)
            .bind(call_external_id)
            .bind(&extension)
            .bind(&to)
            .bind(user_id)
            .bind(party.0)
            .bind(party.1)
            .bind(party.2)
            .bind(interest_id)
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let k = rows::call(&row)?;
        Self::feed_call(&mut tx, &k).await?;
        tx.log(call_change(&k, "create"));
        tx.commit().await?;
        Ok(k)
    }

    /// Click-to-calls of `connector_id` still to hand over (after `after`), oldest first;
    /// stale ones are dropped (marked missed, reason `failed`).
    pub(crate) async fn pending_originates_impl(
        &self,
        connector_id: &str,
        after: Id,
        limit: i64,
    ) -> StoreResult<Vec<Call>> {
        let stale_before = Timestamp::now().micros() - ORIGINATE_TTL_SECS * 1_000_000;
        let stale: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM calls WHERE connector_id = $1 AND originate_state = 'pending' AND created_at < $2",
        )
        .bind(connector_id)
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await?;
        for id in stale {
            let mut tx = self.write(&Actor::System).await?;
            let sql = format!("SELECT {} FROM calls k WHERE k.id = $1", rows::CALL_COLS);
            let mut k = rows::call(&sqlx::query(&sql).bind(id).fetch_one(tx.conn()).await?)?;
            if k.status.is_final() {
                sqlx::query("UPDATE calls SET originate_state = NULL WHERE id = $1")
                    .bind(id)
                    .execute(tx.conn())
                    .await?;
                tx.commit().await?;
                continue;
            }
            k.status = CallStatus::Missed;
            k.missed_reason = Some("failed".into());
            k.ended_at = Some(tx.now);
            k.updated_at = tx.now;
            sqlx::query(
                "UPDATE calls SET status = 'missed', missed_reason = 'failed', ended_at = $1, updated_at = $1, \
                 originate_state = NULL WHERE id = $2 AND originate_state = 'pending'",
            )
            .bind(tx.now.micros())
            .bind(id)
            .execute(tx.conn())
            .await?;
            Self::feed_call(&mut tx, &k).await?;
            tx.log(call_change(&k, "update"));
            tx.commit().await?;
        }
        let sql = format!(
            "SELECT {} FROM calls k WHERE k.connector_id = $1 AND k.originate_state = 'pending' AND k.id > $2 \
             ORDER BY k.id LIMIT $3",
            rows::CALL_COLS
        );
        let rs = sqlx::query(&sql)
            .bind(connector_id)
            .bind(after)
            .bind(limit.clamp(1, 200))
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::call).collect()
    }

    /// Marks a click-to-call handed to its connector; false when it was not pending any
    /// more (another node took it, or it went stale).
    pub(crate) async fn originate_sent_impl(&self, call_id: Id) -> StoreResult<bool> {
        let mut tx = self.write(&Actor::System).await?;
        let n = sqlx::query(
            "UPDATE calls SET originate_state = 'sent' WHERE id = $1 AND originate_state = 'pending'",
        )
        .bind(call_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}
