//! Sales scenarios, Interests with their stage moves, and interactions.

use std::collections::BTreeMap;

use super::feed::{upsert, FeedItem};
use super::validate_ref::*;
use super::{
    access, after_cursor, by_id, conflict_on, page_limit, page_of, rows, unchanged, Change, Cursor,
    ListFilter, SqlStore, StoreError, StoreResult, WriteTx,
};
use crate::domain::validate::{optional_text, required_text};
use crate::domain::*;

fn currency(field: &str, c: &str) -> Result<String, FieldError> {
    let c = c.trim().to_ascii_uppercase();
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(FieldError::new(
            field,
            "invalid_currency",
            "a currency is a 3-letter ISO 4217 code such as RUB",
        ))
    }
}

fn amount(field: &str, a: Option<i64>) -> Result<Option<i64>, FieldError> {
    match a {
        Some(v) if v < 0 => Err(FieldError::new(
            field,
            "invalid_amount",
            "the amount cannot be negative",
        )),
        other => Ok(other),
    }
}

/// The party of a new record: from the Interest when given, else exactly one of client / lead.
struct Party {
    client_id: Option<Id>,
    contact_id: Option<Id>,
    lead_id: Option<Id>,
    interest: Option<Interest>,
    /// The responsible manager of the client or lead, the default for new records.
    responsible_id: Option<Id>,
}

async fn resolve_party(
    tx: &mut WriteTx,
    actor: &Actor,
    client_id: Option<Id>,
    contact_id: Option<Id>,
    lead_id: Option<Id>,
    interest_id: Option<Id>,
) -> StoreResult<Party> {
    let interest = match interest_id {
        Some(i) => Some(visible_interest(tx, actor, "interest_id", i).await?),
        None => None,
    };
    let client_id = client_id.or(interest.as_ref().and_then(|i| i.client_id));
    let lead_id = lead_id.or(interest.as_ref().and_then(|i| i.lead_id));
    let responsible_id: Option<Id>;
    one_party(client_id, lead_id)?;
    match (client_id, lead_id) {
        // Both given was refused just above.
        (Some(c), _) => {
            responsible_id = visible_client(tx, actor, "client_id", c)
                .await?
                .responsible_id;
            if let Some(ct) = contact_id {
                contact_of(tx, actor, "contact_id", ct, c).await?;
            }
        }
        (None, Some(l)) => {
            let lead = visible_lead(tx, actor, "lead_id", l).await?;
            if lead.status == LeadStatus::Converted {
                return Err(FieldError::new(
                    "lead_id",
                    "converted",
                    format!("lead {l} was converted; use its client"),
                )
                .into());
            }
            responsible_id = lead.responsible_id;
            if contact_id.is_some() {
                return Err(
                    FieldError::new("contact_id", "invalid", "a lead has no contacts").into(),
                );
            }
        }
        (None, None) => {
            return Err(FieldError::new(
                "client_id",
                "required",
                "give client_id, lead_id or interest_id",
            )
            .into())
        }
    }
    if let Some(i) = &interest {
        if i.client_id != client_id || i.lead_id != lead_id {
            return Err(FieldError::new(
                "interest_id",
                "wrong_party",
                "the Interest belongs to another client or lead",
            )
            .into());
        }
    }
    Ok(Party {
        client_id,
        contact_id: contact_id.or(interest.as_ref().and_then(|i| i.contact_id)),
        lead_id,
        interest,
        responsible_id,
    })
}

impl SqlStore {
    pub(crate) async fn list_scenarios_impl(&self) -> StoreResult<Vec<SalesScenario>> {
        let scenarios = sqlx::query("SELECT id, name FROM sales_scenarios ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let stages = sqlx::query("SELECT id, scenario_id, position, name, outcome FROM stages ORDER BY scenario_id, position")
            .fetch_all(&self.pool)
            .await?;
        let mut by: BTreeMap<Id, Vec<Stage>> = BTreeMap::new();
        for r in &stages {
            by.entry(rows::id(r, "scenario_id")?)
                .or_default()
                .push(rows::stage(r)?);
        }
        scenarios
            .iter()
            .map(|r| {
                let id = rows::id(r, "id")?;
                Ok(SalesScenario {
                    id,
                    name: rows::text(r, "name")?,
                    stages: by.remove(&id).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub(crate) async fn create_scenario_impl(
        &self,
        actor: &Actor,
        input: &NewSalesScenario,
    ) -> StoreResult<SalesScenario> {
        if !actor.has_scope(Scope::Admin) {
            return Err(StoreError::Forbidden("this needs the admin role".into()));
        }
        let name = required_text("name", &input.name, Limits::NAME)?;
        if !(2..=30).contains(&input.stages.len()) {
            return Err(FieldError::new(
                "stages",
                "invalid_stages",
                "a scenario has 2 to 30 stages",
            )
            .into());
        }
        if input.stages[0].outcome != StageOutcome::Open {
            return Err(FieldError::new(
                "stages.0.outcome",
                "invalid_stages",
                "the first stage must be open",
            )
            .into());
        }
        let mut names = Vec::new();
        for (i, s) in input.stages.iter().enumerate() {
            names.push(required_text(
                &format!("stages.{i}.name"),
                &s.name,
                Limits::NAME,
            )?);
        }
        let mut tx = self.write(actor).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sales_scenarios (name, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(&name)
        .bind(tx.now.micros())
        .fetch_one(tx.conn())
        .await
        .map_err(conflict_on(
            "name",
            format!("a scenario named `{name}` exists"),
        ))?;
        let mut stages = Vec::new();
        for (i, (s, n)) in input.stages.iter().zip(names).enumerate() {
            let pos = i64::try_from(i).unwrap_or(0) + 1;
            let sid: i64 = sqlx::query_scalar(
                "INSERT INTO stages (scenario_id, position, name, outcome) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(id)
            .bind(pos)
            .bind(&n)
            .bind(s.outcome.as_str())
            .fetch_one(tx.conn())
            .await?;
            stages.push(Stage {
                id: sid,
                position: pos,
                name: n,
                outcome: s.outcome,
            });
        }
        let scenario = SalesScenario { id, name, stages };
        tx.log(Change::new("sales_scenario", id, "create", &scenario));
        tx.commit().await?;
        Ok(scenario)
    }

    pub(crate) async fn create_interest_impl(
        &self,
        actor: &Actor,
        input: &NewInterest,
    ) -> StoreResult<Interest> {
        if !actor.has_scope(Scope::InterestsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the interests:write scope".into(),
            ));
        }
        let title = required_text("title", &input.title, Limits::NAME)?;
        let cur = currency("currency", input.currency.as_deref().unwrap_or("RUB"))?;
        let amt = amount("amount_minor", input.amount_minor)?;
        let source = optional_text("source", input.source.as_deref(), Limits::SHORT)?;
        let mut tx = self.write(actor).await?;
        let party = resolve_party(
            &mut tx,
            actor,
            input.client_id,
            input.contact_id,
            input.lead_id,
            None,
        )
        .await?;
        // Default: the client's manager when the actor may assign to them (a supervisor, an
        // admin, the manager themselves), else the actor.
        let own = match (input.responsible_id, party.responsible_id) {
            (Some(r), _) => ownership(&mut tx, actor, Some(r), None, input.shared).await?,
            (None, Some(r)) => match ownership(&mut tx, actor, Some(r), None, input.shared).await {
                Err(StoreError::Forbidden(_)) | Err(StoreError::Invalid(_)) => {
                    ownership(&mut tx, actor, actor.user_id(), None, input.shared).await?
                }
                other => other?,
            },
            (None, None) => ownership(&mut tx, actor, actor.user_id(), None, input.shared).await?,
        };
        let interest = insert_interest(
            &mut tx,
            actor.user_id(),
            (party.client_id, party.contact_id, party.lead_id),
            input.scenario_id,
            &title,
            amt,
            &cur,
            source,
            own,
        )
        .await?;
        tx.commit().await?;
        Ok(interest)
    }

    pub(crate) async fn get_interest_impl(&self, actor: &Actor, id: Id) -> StoreResult<Interest> {
        by_id::INTEREST.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn list_interests_impl(
        &self,
        actor: &Actor,
        f: &ListFilter,
    ) -> StoreResult<Page<Interest>> {
        let limit = page_limit(f.limit);
        let position = Cursor::int_position(f.cursor.as_ref())?;
        let (after, n) = after_cursor("n.created_at, n.id", true, position.is_some(), 5);
        let sql = format!(
            "SELECT {} FROM interests n WHERE {} AND ($1 IS NULL OR n.client_id = $1) AND ($2 IS NULL OR n.lead_id = $2) \
             AND ($3 IS NULL OR n.status = $3) AND ($4 IS NULL OR n.responsible_id = $4) \
             {after} \
             ORDER BY n.created_at DESC, n.id DESC LIMIT ${n}",
            rows::INTEREST_COLS,
            access::owned(actor, "n", "responsible_id")
        );
        let mut query = sqlx::query(&sql)
            .bind(f.client_id)
            .bind(f.lead_id)
            .bind(f.status.as_deref())
            .bind(f.user_id);
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs
            .iter()
            .map(rows::interest)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |i| {
            Cursor::int(i.created_at.micros(), i.id)
        }))
    }

    async fn save_interest(tx: &mut WriteTx, n: &Interest) -> StoreResult<()> {
        sqlx::query(
            "UPDATE interests SET title = $1, contact_id = $2, stage_id = $3, status = $4, amount_minor = $5, currency = $6, \
             responsible_id = $7, department_id = $8, shared = $9, closed_at = $10, updated_at = $11 WHERE id = $12",
        )
        .bind(&n.title)
        .bind(n.contact_id)
        .bind(n.stage_id)
        .bind(n.status.as_str())
        .bind(n.amount_minor)
        .bind(&n.currency)
        .bind(n.responsible_id)
        .bind(n.department_id)
        .bind(i64::from(n.shared))
        .bind(n.closed_at.map(Timestamp::micros))
        .bind(n.updated_at.micros())
        .bind(n.id)
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    pub(crate) async fn update_interest_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InterestPatch,
    ) -> StoreResult<Interest> {
        if !actor.has_scope(Scope::InterestsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the interests:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut n = by_id::INTEREST.fetch_for_update(&mut tx, actor, id).await?;
        let before = n.clone();
        if let Some(t) = &patch.title {
            n.title = required_text("title", t, Limits::NAME)?;
        }
        if patch.amount_minor.is_some() {
            n.amount_minor = amount("amount_minor", patch.amount_minor)?;
        }
        if let Some(c) = &patch.currency {
            n.currency = currency("currency", c)?;
        }
        if let Some(ct) = patch.contact_id {
            let client = n.client_id.ok_or_else(|| {
                FieldError::new("contact_id", "invalid", "a lead's Interest has no contact")
            })?;
            contact_of(&mut tx, actor, "contact_id", ct, client).await?;
            n.contact_id = Some(ct);
        }
        if let Some(r) = patch.responsible_id {
            let own = ownership(&mut tx, actor, Some(r), None, n.shared).await?;
            n.responsible_id = own.responsible_id;
            n.department_id = own.department_id;
        }
        if let Some(s) = patch.shared {
            n.shared = s;
        }
        if unchanged(&before, &n) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        n.updated_at = tx.now;
        Self::save_interest(&mut tx, &n).await?;
        sqlx::query("UPDATE feed_entries SET title = $1, contact_id = $2 WHERE ref_type = 'interest' AND ref_id = $3")
            .bind(&n.title)
            .bind(n.contact_id)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(
            Change::new("interest", id, "update", &n)
                .party(n.client_id, n.lead_id)
                .interest(Some(id))
                .department(n.department_id),
        );
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn move_interest_stage_impl(
        &self,
        actor: &Actor,
        id: Id,
        stage_id: Id,
    ) -> StoreResult<Interest> {
        if !actor.has_scope(Scope::InterestsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the interests:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut n = by_id::INTEREST.fetch_for_update(&mut tx, actor, id).await?;
        let row = sqlx::query(
            "SELECT id, position, name, outcome FROM stages WHERE id = $1 AND scenario_id = $2",
        )
        .bind(stage_id)
        .bind(n.scenario_id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| {
            FieldError::new(
                "stage_id",
                "not_found",
                format!("stage {stage_id} is not a stage of this Interest's scenario"),
            )
        })?;
        let stage = rows::stage(&row)?;
        if stage.id == n.stage_id {
            return Err(StoreError::Conflict {
                field: "stage_id".into(),
                message: "the Interest is already at this stage".into(),
            });
        }
        let from = n.stage_id;
        n.stage_id = stage.id;
        n.status = stage.outcome;
        n.closed_at = match stage.outcome {
            StageOutcome::Open => None,
            _ => Some(tx.now),
        };
        n.updated_at = tx.now;
        Self::save_interest(&mut tx, &n).await?;
        sqlx::query("INSERT INTO interest_stage_history (interest_id, from_stage_id, to_stage_id, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(from)
            .bind(stage.id)
            .bind(actor.user_id())
            .bind(tx.now.micros())
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE feed_entries SET preview = $1 WHERE ref_type = 'interest' AND ref_id = $2",
        )
        .bind(&stage.name)
        .bind(id)
        .execute(tx.conn())
        .await?;
        tx.log(
            Change::new("interest", id, "stage", serde_json::json!({ "interest": &n, "from_stage_id": from, "to_stage_id": stage.id }))
                .party(n.client_id, n.lead_id)
                .interest(Some(id))
                .department(n.department_id),
        );
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn interest_stage_history_impl(
        &self,
        actor: &Actor,
        id: Id,
    ) -> StoreResult<Vec<StageChange>> {
        self.get_interest_impl(actor, id).await?;
        let rs = sqlx::query(
            "SELECT from_stage_id, to_stage_id, changed_by, changed_at FROM interest_stage_history WHERE interest_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rs.iter()
            .map(|r| {
                Ok(StageChange {
                    from_stage_id: rows::opt_id(r, "from_stage_id")?,
                    to_stage_id: rows::id(r, "to_stage_id")?,
                    changed_by: rows::opt_id(r, "changed_by")?,
                    changed_at: rows::ts(r, "changed_at")?,
                })
            })
            .collect()
    }

    pub(crate) async fn create_interaction_impl(
        &self,
        actor: &Actor,
        input: &NewInteraction,
    ) -> StoreResult<Interaction> {
        if !actor.has_scope(Scope::InteractionsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the interactions:write scope".into(),
            ));
        }
        let subject = required_text("subject", &input.subject, Limits::NAME)?;
        let body = optional_text("body", input.body.as_deref(), Limits::TEXT)?;
        let status = input.status.unwrap_or(if input.planned_at.is_some() {
            InteractionStatus::Planned
        } else {
            InteractionStatus::Done
        });
        if status == InteractionStatus::Planned && input.planned_at.is_none() {
            return Err(FieldError::new(
                "planned_at",
                "required",
                "a planned interaction needs planned_at",
            )
            .into());
        }
        let mut tx = self.write(actor).await?;
        let party = resolve_party(
            &mut tx,
            actor,
            input.client_id,
            input.contact_id,
            input.lead_id,
            input.interest_id,
        )
        .await?;
        let own = ownership(
            &mut tx,
            actor,
            input
                .responsible_id
                .or(actor.user_id())
                .or(party.responsible_id),
            None,
            false,
        )
        .await?;
        let done_at = match status {
            InteractionStatus::Done => Some(input.done_at.unwrap_or(tx.now)),
            _ => input.done_at,
        };
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO interactions (kind, status, subject, body, client_id, contact_id, lead_id, interest_id, responsible_id, \
             planned_at, done_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING {}",
            rows::INTERACTION_COLS.replace("x.", "")
        );
        let row = sqlx::query(&sql)
            .bind(input.kind.as_str())
            .bind(status.as_str())
            .bind(&subject)
            .bind(&body)
            .bind(party.client_id)
            .bind(party.contact_id)
            .bind(party.lead_id)
            .bind(party.interest.as_ref().map(|i| i.id))
            .bind(own.responsible_id)
            .bind(input.planned_at.map(Timestamp::micros))
            .bind(done_at.map(Timestamp::micros))
            .bind(actor.user_id())
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let x = rows::interaction(&row)?;
        Self::feed_interaction(&mut tx, &x).await?;
        tx.log(
            Change::new("interaction", x.id, "create", &x)
                .party(x.client_id, x.lead_id)
                .interest(x.interest_id),
        );
        tx.commit().await?;
        Ok(x)
    }

    pub(crate) async fn feed_interaction(tx: &mut WriteTx, x: &Interaction) -> StoreResult<()> {
        let kind = match x.kind {
            InteractionKind::Call => FeedKind::Call,
            InteractionKind::Meeting => FeedKind::Meeting,
            InteractionKind::Email => FeedKind::Email,
            InteractionKind::Message => FeedKind::Message,
            InteractionKind::Note => FeedKind::Note,
            InteractionKind::Task => FeedKind::Task,
        };
        upsert(
            tx,
            &FeedItem {
                kind,
                ref_type: "interaction",
                ref_id: x.id,
                client_id: x.client_id,
                contact_id: x.contact_id,
                lead_id: x.lead_id,
                interest_id: x.interest_id,
                occurred_at: x.done_at.or(x.planned_at).unwrap_or(x.created_at),
                title: &x.subject,
                text: x.body.as_deref(),
            },
        )
        .await
    }

    pub(crate) async fn get_interaction_impl(
        &self,
        actor: &Actor,
        id: Id,
    ) -> StoreResult<Interaction> {
        by_id::INTERACTION.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn list_interactions_impl(
        &self,
        actor: &Actor,
        f: &ListFilter,
    ) -> StoreResult<Page<Interaction>> {
        let limit = page_limit(f.limit);
        let position = Cursor::int_position(f.cursor.as_ref())?;
        let (after, n) = after_cursor("x.created_at, x.id", true, position.is_some(), 6);
        let sql = format!(
            "SELECT {} FROM interactions x WHERE {} AND ($1 IS NULL OR x.client_id = $1) AND ($2 IS NULL OR x.lead_id = $2) \
             AND ($3 IS NULL OR x.interest_id = $3) AND ($4 IS NULL OR x.responsible_id = $4) AND ($5 IS NULL OR x.status = $5) \
             {after} \
             ORDER BY x.created_at DESC, x.id DESC LIMIT ${n}",
            rows::INTERACTION_COLS,
            access::interaction_visible(actor, "x")
        );
        let mut query = sqlx::query(&sql)
            .bind(f.client_id)
            .bind(f.lead_id)
            .bind(f.interest_id)
            .bind(f.user_id)
            .bind(f.status.as_deref());
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs
            .iter()
            .map(rows::interaction)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |x| {
            Cursor::int(x.created_at.micros(), x.id)
        }))
    }

    pub(crate) async fn update_interaction_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InteractionPatch,
    ) -> StoreResult<Interaction> {
        if !actor.has_scope(Scope::InteractionsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the interactions:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut x = by_id::INTERACTION
            .fetch_for_update(&mut tx, actor, id)
            .await?;
        let before = x.clone();
        if let Some(s) = &patch.subject {
            x.subject = required_text("subject", s, Limits::NAME)?;
        }
        if let Some(b) = &patch.body {
            x.body = optional_text("body", Some(b), Limits::TEXT)?;
        }
        if let Some(p) = patch.planned_at {
            x.planned_at = Some(p);
        }
        if let Some(d) = patch.done_at {
            x.done_at = Some(d);
        }
        if let Some(s) = patch.status {
            if s == InteractionStatus::Planned && x.planned_at.is_none() {
                return Err(FieldError::new(
                    "planned_at",
                    "required",
                    "a planned interaction needs planned_at",
                )
                .into());
            }
            x.status = s;
            if s == InteractionStatus::Done && x.done_at.is_none() {
                x.done_at = Some(tx.now);
            }
        }
        if let Some(r) = patch.responsible_id {
            x.responsible_id = ownership(&mut tx, actor, Some(r), None, false)
                .await?
                .responsible_id;
        }
        if unchanged(&before, &x) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        x.updated_at = tx.now;
        sqlx::query(
            "UPDATE interactions SET status = $1, subject = $2, body = $3, planned_at = $4, done_at = $5, responsible_id = $6, \
             updated_at = $7 WHERE id = $8",
        )
        .bind(x.status.as_str())
        .bind(&x.subject)
        .bind(&x.body)
        .bind(x.planned_at.map(Timestamp::micros))
        .bind(x.done_at.map(Timestamp::micros))
        .bind(x.responsible_id)
        .bind(x.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await?;
        Self::feed_interaction(&mut tx, &x).await?;
        tx.log(
            Change::new("interaction", id, "update", &x)
                .party(x.client_id, x.lead_id)
                .interest(x.interest_id),
        );
        tx.commit().await?;
        Ok(x)
    }
}

/// Inserts an Interest at the first stage of its scenario (default: the first scenario),
/// with its stage history, Feed entry and change; the caller has checked the party.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_interest(
    tx: &mut WriteTx,
    by_user: Option<Id>,
    (client_id, contact_id, lead_id): (Option<Id>, Option<Id>, Option<Id>),
    scenario_id: Option<Id>,
    title: &str,
    amt: Option<i64>,
    cur: &str,
    source: Option<String>,
    own: Ownership,
) -> StoreResult<Interest> {
    let scenario_id = match scenario_id {
        Some(s) => s,
        None => {
            sqlx::query_scalar::<_, i64>("SELECT MIN(id) FROM sales_scenarios")
                .fetch_one(tx.conn())
                .await?
        }
    };
    let first = sqlx::query("SELECT id, position, name, outcome FROM stages WHERE scenario_id = $1 ORDER BY position LIMIT 1")
            .bind(scenario_id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or_else(|| FieldError::new("scenario_id", "not_found", format!("sales scenario {scenario_id} does not exist")))?;
    let stage = rows::stage(&first)?;
    let now = tx.now.micros();
    let sql = format!(
            "INSERT INTO interests (title, client_id, contact_id, lead_id, scenario_id, stage_id, status, amount_minor, currency, \
             source, responsible_id, department_id, shared, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING {}",
            rows::INTEREST_COLS.replace("n.", "")
        );
    let row = sqlx::query(&sql)
        .bind(title)
        .bind(client_id)
        .bind(contact_id)
        .bind(lead_id)
        .bind(scenario_id)
        .bind(stage.id)
        .bind(stage.outcome.as_str())
        .bind(amt)
        .bind(cur)
        .bind(source)
        .bind(own.responsible_id)
        .bind(own.department_id)
        .bind(i64::from(own.shared))
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
    let interest = rows::interest(&row)?;
    sqlx::query("INSERT INTO interest_stage_history (interest_id, from_stage_id, to_stage_id, changed_by, changed_at) VALUES ($1, NULL, $2, $3, $4)")
            .bind(interest.id)
            .bind(stage.id)
            .bind(by_user)
            .bind(now)
            .execute(tx.conn())
            .await?;
    upsert(
        tx,
        &FeedItem {
            kind: FeedKind::Interest,
            ref_type: "interest",
            ref_id: interest.id,
            client_id: interest.client_id,
            contact_id: interest.contact_id,
            lead_id: interest.lead_id,
            interest_id: Some(interest.id),
            occurred_at: interest.created_at,
            title: &interest.title,
            text: Some(&stage.name),
        },
    )
    .await?;
    tx.log(
        Change::new("interest", interest.id, "create", &interest)
            .party(interest.client_id, interest.lead_id)
            .interest(Some(interest.id))
            .department(interest.department_id),
    );
    Ok(interest)
}
