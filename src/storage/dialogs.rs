//! Dialogs, messages and calls: the records connectors write, idempotent on
//! `(connector_id, external_id)`.

use super::feed::{upsert, FeedItem};
use super::validate_ref::*;
use super::{
    access, after_cursor, by_id, page_limit, page_of, rows, unchanged, Change, Cursor, ListFilter,
    SqlStore, StoreError, StoreResult, WriteTx,
};
use crate::domain::validate::{optional_text, required_text};
use crate::domain::*;

fn channel_name(field: &str, v: &str) -> Result<String, FieldError> {
    let v = v.trim();
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "invalid_name",
            format!("{field} is 1 to 64 of a-z, 0-9, '_' and '-'"),
        ))
    }
}

fn external_id(field: &str, v: &str) -> Result<String, FieldError> {
    kommutator_sdk::normalize_external_id(v).map_err(|_| {
        FieldError::new(
            field,
            "invalid_external_id",
            format!("{field} is 1 to 256 characters without control characters"),
        )
    })
}

pub(crate) fn check_attachments(list: &[Attachment]) -> Result<(), FieldError> {
    if list.len() > 20 {
        return Err(FieldError::new(
            "attachments",
            "too_many",
            "at most 20 attachments",
        ));
    }
    for (i, a) in list.iter().enumerate() {
        required_text(&format!("attachments.{i}.name"), &a.name, 255)?;
        required_text(&format!("attachments.{i}.mime_type"), &a.mime_type, 100)?;
        required_text(&format!("attachments.{i}.url"), &a.url, 2048)?;
    }
    Ok(())
}

fn random_key() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("local-{n:032x}")
}

impl SqlStore {
    pub(crate) async fn create_dialog_impl(
        &self,
        actor: &Actor,
        input: &NewDialog,
    ) -> StoreResult<(Dialog, bool)> {
        if !actor.has_scope(Scope::DialogsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the dialogs:write scope".into(),
            ));
        }
        let channel = channel_name("channel", &input.channel)?;
        let connector = channel_name("connector_id", &input.connector_id)?;
        let thread = external_id("external_thread_id", &input.external_thread_id)?;
        let subject = optional_text("subject", input.subject.as_deref(), Limits::NAME)?;
        let mut tx = self.write(actor).await?;
        let (mut client_id, mut contact_id, mut lead_id) =
            (input.client_id, input.contact_id, input.lead_id);
        if let Some(iid) = input.identity_id {
            let sql = format!(
                "SELECT {} FROM identities i WHERE i.id = $1 AND {}",
                rows::IDENTITY_COLS,
                access::party_visible(actor, "i")
            );
            let row = sqlx::query(&sql)
                .bind(iid)
                .fetch_optional(tx.conn())
                .await?
                .ok_or_else(|| {
                    FieldError::new(
                        "identity_id",
                        "not_found",
                        format!("identity {iid} does not exist"),
                    )
                })?;
            let ident = rows::identity(&row)?;
            // A party given with the identity must be the identity's owner.
            let owner_differs = (client_id.is_some() && client_id != ident.client_id)
                || (lead_id.is_some() && lead_id != ident.lead_id)
                || (contact_id.is_some()
                    && contact_id != ident.contact_id
                    && ident.contact_id.is_some());
            if owner_differs {
                return Err(FieldError::new(
                    "identity_id",
                    "wrong_party",
                    "the identity belongs to another client, contact or lead",
                )
                .into());
            }
            client_id = client_id.or(ident.client_id);
            contact_id = contact_id.or(ident.contact_id);
            lead_id = lead_id.or(ident.lead_id);
        }
        if let (None, Some(ct)) = (client_id, contact_id) {
            if lead_id.is_some() {
                return Err(FieldError::new(
                    "contact_id",
                    "conflicting_party",
                    "a lead has no contacts",
                )
                .into());
            }
            let contact =
                by_id::CONTACT
                    .fetch(tx.conn(), actor, ct)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound { .. } => StoreError::Invalid(FieldError::new(
                            "contact_id",
                            "not_found",
                            format!("contact {ct} does not exist"),
                        )),
                        other => other,
                    })?;
            client_id = Some(contact.client_id);
        }
        if let Some(c) = client_id {
            visible_client(&mut tx, actor, "client_id", c).await?;
            if let Some(ct) = contact_id {
                contact_of(&mut tx, actor, "contact_id", ct, c).await?;
            }
        }
        if let Some(l) = lead_id {
            visible_lead(&mut tx, actor, "lead_id", l).await?;
        }
        one_party(client_id, lead_id)?;
        if let Some(i) = input.interest_id {
            let n = visible_interest(&mut tx, actor, "interest_id", i).await?;
            if (client_id.is_some() || lead_id.is_some())
                && (n.client_id != client_id || n.lead_id != lead_id)
            {
                return Err(FieldError::new(
                    "interest_id",
                    "wrong_party",
                    "the Interest belongs to another client or lead",
                )
                .into());
            }
            if client_id.is_none() && lead_id.is_none() {
                (client_id, lead_id) = (n.client_id, n.lead_id);
            }
        }
        let mut department_id = input.department_id;
        if let Some(d) = department_id {
            department_exists(&mut tx, "department_id", d).await?;
        }
        if let Some(a) = input.assignee_id {
            let d = user_department(&mut tx, "assignee_id", a).await?;
            department_id = department_id.or(d);
        }
        if department_id.is_none() {
            if let Actor::User {
                department_id: d, ..
            } = actor
            {
                department_id = *d;
            }
        }
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO dialogs (channel, connector_id, external_thread_id, identity_id, client_id, contact_id, lead_id, interest_id, \
             assignee_id, department_id, shared, status, subject, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 'open', $11, $12, $12) \
             ON CONFLICT (connector_id, external_thread_id) DO NOTHING RETURNING {}",
            rows::DIALOG_COLS.replace("d.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&channel)
            .bind(&connector)
            .bind(&thread)
            .bind(input.identity_id)
            .bind(client_id)
            .bind(contact_id)
            .bind(lead_id)
            .bind(input.interest_id)
            .bind(input.assignee_id)
            .bind(department_id)
            .bind(subject)
            .bind(now)
            .fetch_optional(tx.conn())
            .await?;
        let Some(row) = row else {
            drop(tx);
            let sql = format!(
                "SELECT {} FROM dialogs d WHERE d.connector_id = $1 AND d.external_thread_id = $2 AND {}",
                rows::DIALOG_COLS,
                access::owned(actor, "d", "assignee_id")
            );
            let row = sqlx::query(&sql)
                .bind(&connector)
                .bind(&thread)
                .fetch_optional(&self.pool)
                .await?;
            return match row {
                Some(r) => Ok((rows::dialog(&r)?, false)),
                None => Err(StoreError::Conflict {
                    field: "external_thread_id".into(),
                    message: "a dialog with this thread exists and is assigned elsewhere".into(),
                }),
            };
        };
        let d = rows::dialog(&row)?;
        tx.log(dialog_change(&d, "create"));
        tx.commit().await?;
        Ok((d, true))
    }

    pub(crate) async fn get_dialog_impl(&self, actor: &Actor, id: Id) -> StoreResult<Dialog> {
        by_id::DIALOG.fetch(&self.pool, actor, id).await
    }

    async fn dialog_in_tx(tx: &mut WriteTx, actor: &Actor, id: Id) -> StoreResult<Dialog> {
        by_id::DIALOG.fetch_for_update(tx, actor, id).await
    }

    pub(crate) async fn list_dialogs_impl(
        &self,
        actor: &Actor,
        f: &ListFilter,
    ) -> StoreResult<Page<Dialog>> {
        let limit = page_limit(f.limit);
        let position = Cursor::int_position(f.cursor.as_ref())?;
        let (after, n) = after_cursor(
            "COALESCE(d.last_message_at, d.created_at), d.id",
            true,
            position.is_some(),
            6,
        );
        let sql = format!(
            "SELECT {} FROM dialogs d WHERE {} AND ($1 IS NULL OR d.status = $1) AND ($2 IS NULL OR d.assignee_id = $2) \
             AND ($3 IS NULL OR d.department_id = $3) AND ($4 IS NULL OR d.client_id = $4) AND ($5 IS NULL OR d.lead_id = $5) \
             {after} \
             ORDER BY COALESCE(d.last_message_at, d.created_at) DESC, d.id DESC LIMIT ${n}",
            rows::DIALOG_COLS,
            access::owned(actor, "d", "assignee_id")
        );
        let mut query = sqlx::query(&sql)
            .bind(f.status.as_deref())
            .bind(f.user_id)
            .bind(f.department_id)
            .bind(f.client_id)
            .bind(f.lead_id);
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs
            .iter()
            .map(rows::dialog)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |d| {
            Cursor::int(d.last_message_at.unwrap_or(d.created_at).micros(), d.id)
        }))
    }

    pub(crate) async fn update_dialog_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &DialogPatch,
    ) -> StoreResult<Dialog> {
        if !actor.has_scope(Scope::DialogsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the dialogs:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut d = Self::dialog_in_tx(&mut tx, actor, id).await?;
        let before = d.clone();
        let mut op = "update";
        if let Some(dep) = patch.department_id {
            department_exists(&mut tx, "department_id", dep).await?;
            if d.department_id != Some(dep) {
                // A transfer to another department goes to its queue unless an assignee is named.
                d.assignee_id = None;
                op = "transfer";
            }
            d.department_id = Some(dep);
        }
        if let Some(a) = patch.assignee_id {
            // Any operator may hand a dialog to a colleague: transfer is an everyday action.
            let dep = user_department(&mut tx, "assignee_id", a).await?;
            if d.assignee_id.is_some() && d.assignee_id != Some(a) {
                op = "transfer";
            } else if d.assignee_id.is_none() {
                op = "assign";
            }
            d.assignee_id = Some(a);
            if patch.department_id.is_none() {
                d.department_id = dep.or(d.department_id);
            }
        }
        // Relink (the intake wizard): the dialog goes to another client or lead.
        let party = match (patch.client_id, patch.lead_id) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "lead_id",
                    "exclusive",
                    "give client_id or lead_id, not both",
                )
                .into())
            }
            (Some(c), None) => {
                visible_client(&mut tx, actor, "client_id", c).await?;
                Some((Some(c), None))
            }
            (None, Some(l)) => {
                let lead = visible_lead(&mut tx, actor, "lead_id", l).await?;
                if lead.status == LeadStatus::Converted {
                    return Err(FieldError::new(
                        "lead_id",
                        "converted",
                        "the lead was converted; link the dialog to its client",
                    )
                    .into());
                }
                Some((None, Some(l)))
            }
            (None, None) if patch.move_identity => {
                return Err(FieldError::new(
                    "move_identity",
                    "needs_party",
                    "move_identity goes with client_id or lead_id",
                )
                .into())
            }
            (None, None) => None,
        };
        if let Some((c, l)) = party {
            if (c, l) != (d.client_id, d.lead_id) {
                if c != d.client_id {
                    d.contact_id = None;
                }
                d.client_id = c;
                d.lead_id = l;
                if let (Some(cur), None) = (d.interest_id, patch.interest_id) {
                    let owner =
                        sqlx::query("SELECT client_id, lead_id FROM interests WHERE id = $1")
                            .bind(cur)
                            .fetch_one(tx.conn())
                            .await?;
                    if (
                        rows::opt_id(&owner, "client_id")?,
                        rows::opt_id(&owner, "lead_id")?,
                    ) != (c, l)
                    {
                        d.interest_id = None;
                    }
                }
                op = "link";
            }
        }
        // The sender's identity moves only when it is not already the new party's.
        let identity_move = match (party, d.identity_id) {
            (Some((c, l)), Some(iid)) if patch.move_identity => {
                let r = sqlx::query("SELECT client_id, lead_id FROM identities WHERE id = $1")
                    .bind(iid)
                    .fetch_optional(tx.conn())
                    .await?;
                match r {
                    Some(r) => {
                        let was = (rows::opt_id(&r, "client_id")?, rows::opt_id(&r, "lead_id")?);
                        (was != (c, l)).then_some((iid, was))
                    }
                    None => None,
                }
            }
            (Some(_), None) if patch.move_identity => {
                return Err(FieldError::new(
                    "move_identity",
                    "no_identity",
                    "the dialog has no sender identity to move",
                )
                .into())
            }
            _ => None,
        };
        if let Some(i) = patch.interest_id {
            let n = visible_interest(&mut tx, actor, "interest_id", i).await?;
            if (d.client_id.is_some() || d.lead_id.is_some())
                && (n.client_id != d.client_id || n.lead_id != d.lead_id)
            {
                return Err(FieldError::new(
                    "interest_id",
                    "wrong_party",
                    "the Interest belongs to another client or lead",
                )
                .into());
            }
            d.interest_id = Some(i);
        }
        if let Some(s) = patch.shared {
            d.shared = s;
        }
        if let Some(s) = patch.status {
            if s != d.status {
                op = match s {
                    DialogStatus::Closed => "close",
                    DialogStatus::Open => "reopen",
                };
                d.closed_at = match s {
                    DialogStatus::Closed => Some(tx.now),
                    DialogStatus::Open => None,
                };
            }
            d.status = s;
        }
        if let Some((iid, (old_client, old_lead))) = identity_move {
            sqlx::query(
                "UPDATE identities SET client_id = $1, contact_id = NULL, lead_id = $2 WHERE id = $3",
            )
            .bind(d.client_id)
            .bind(d.lead_id)
            .bind(iid)
            .execute(tx.conn())
            .await?;
            let mut change = Change::new(
                "identity",
                iid,
                "move",
                serde_json::json!({"id": iid, "client_id": d.client_id, "lead_id": d.lead_id}),
            )
            .party(d.client_id, d.lead_id);
            for t in old_client
                .map(Topic::client)
                .into_iter()
                .chain(old_lead.map(Topic::lead))
            {
                change = change.also(t);
            }
            tx.log(change);
        }
        if unchanged(&before, &d) {
            if identity_move.is_some() {
                tx.commit().await?;
            }
            // Nothing else to write, nothing else to log.
            return Ok(before);
        }
        d.updated_at = tx.now;
        let moved = d.assignee_id != before.assignee_id || d.department_id != before.department_id;
        if moved {
            let reason = if before.assignee_id.is_some() || d.department_id != before.department_id
            {
                AssignReason::Transfer
            } else {
                AssignReason::Manual
            };
            d.assign_reason = Some(
                if d.assignee_id.is_some() {
                    reason
                } else {
                    AssignReason::Queued
                }
                .as_str()
                .to_owned(),
            );
            d.assigned_at = d.assignee_id.map(|_| tx.now);
            sqlx::query(
                "INSERT INTO dialog_assignments (dialog_id, user_id, department_id, reason, by_user_id, at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(d.assignee_id)
            .bind(d.department_id)
            .bind(reason.as_str())
            .bind(actor.user_id())
            .bind(tx.now.micros())
            .execute(tx.conn())
            .await?;
            sqlx::query("UPDATE dialogs SET assign_reason = $1, assigned_at = $2 WHERE id = $3")
                .bind(&d.assign_reason)
                .bind(d.assigned_at.map(Timestamp::micros))
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query(
            "UPDATE dialogs SET assignee_id = $1, department_id = $2, interest_id = $3, shared = $4, status = $5, closed_at = $6, \
             updated_at = $7, client_id = $8, contact_id = $9, lead_id = $10 WHERE id = $11",
        )
        .bind(d.assignee_id)
        .bind(d.department_id)
        .bind(d.interest_id)
        .bind(i64::from(d.shared))
        .bind(d.status.as_str())
        .bind(d.closed_at.map(Timestamp::micros))
        .bind(d.updated_at.micros())
        .bind(d.client_id)
        .bind(d.contact_id)
        .bind(d.lead_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
        let relinked = (d.client_id, d.lead_id) != (before.client_id, before.lead_id);
        if relinked || d.interest_id != before.interest_id {
            // The conversation shows in the Feed of whoever the dialog now belongs to.
            sqlx::query(
                "UPDATE feed_entries SET client_id = $1, contact_id = $2, lead_id = $3, interest_id = $4 \
                 WHERE ref_type = 'message' AND ref_id IN (SELECT id FROM messages WHERE dialog_id = $5)",
            )
            .bind(d.client_id)
            .bind(d.contact_id)
            .bind(d.lead_id)
            .bind(d.interest_id)
            .bind(id)
            .execute(tx.conn())
            .await?;
        }
        let mut change = dialog_change(&d, op);
        if relinked {
            // The old party's card learns the conversation left it.
            if let Some(c) = before.client_id.filter(|c| Some(*c) != d.client_id) {
                change = change.also(Topic::client(c));
            }
            if let Some(l) = before.lead_id.filter(|l| Some(*l) != d.lead_id) {
                change = change.also(Topic::lead(l));
            }
        }
        if let Some(i) = before.interest_id.filter(|i| Some(*i) != d.interest_id) {
            change = change.also(Topic::interest(i));
        }
        if let Some(p) = before.assignee_id.filter(|p| Some(*p) != d.assignee_id) {
            // The previous assignee's "my dialogs" learns it left.
            change = change.also(Topic::user(p));
        }
        tx.log(change);
        tx.commit().await?;
        Ok(d)
    }

    pub(crate) async fn add_message_impl(
        &self,
        actor: &Actor,
        dialog_id: Id,
        input: &NewMessage,
    ) -> StoreResult<(Message, bool)> {
        if !actor.has_scope(Scope::DialogsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the dialogs:write scope".into(),
            ));
        }
        let direction = input.direction.unwrap_or(Direction::Outbound);
        if direction == Direction::Inbound && actor.user_id().is_some() {
            return Err(StoreError::Forbidden(
                "inbound messages come from connectors (API keys), not users".into(),
            ));
        }
        let body = optional_text("body", input.body.as_deref(), Limits::TEXT)?;
        check_attachments(&input.attachments)?;
        if body.is_none() && input.attachments.is_empty() {
            return Err(FieldError::new(
                "body",
                "required",
                "a message needs a body or an attachment",
            )
            .into());
        }
        let key = match &input.external_id {
            Some(k) => external_id("external_id", k)?,
            None if direction == Direction::Inbound => {
                return Err(FieldError::new(
                    "external_id",
                    "required",
                    "an inbound message needs the channel's message id",
                )
                .into())
            }
            None => random_key(),
        };
        let mut tx = self.write(actor).await?;
        let mut d = Self::dialog_in_tx(&mut tx, actor, dialog_id).await?;
        let sent_at = input.sent_at.unwrap_or(tx.now);
        let status = match direction {
            Direction::Inbound => DeliveryStatus::Received,
            Direction::Outbound => DeliveryStatus::Pending,
        };
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO messages (dialog_id, direction, connector_id, external_id, body, attachments, delivery_status, author_user_id, \
             sent_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (connector_id, external_id) DO NOTHING RETURNING {}",
            rows::MESSAGE_COLS.replace("m.", "")
        );
        let row = sqlx::query(&sql)
            .bind(dialog_id)
            .bind(direction.as_str())
            .bind(&d.connector_id)
            .bind(&key)
            .bind(&body)
            .bind(serde_json::to_string(&input.attachments).unwrap_or_else(|_| "[]".into()))
            .bind(status.as_str())
            .bind(actor.user_id())
            .bind(sent_at.micros())
            .bind(now)
            .fetch_optional(tx.conn())
            .await?;
        let Some(row) = row else {
            // A retry or a replay: return what is stored, change nothing.
            let sql = format!(
                "SELECT {} FROM messages m WHERE m.connector_id = $1 AND m.external_id = $2",
                rows::MESSAGE_COLS
            );
            let row = sqlx::query(&sql)
                .bind(&d.connector_id)
                .bind(&key)
                .fetch_one(tx.conn())
                .await?;
            let m = rows::message(&row)?;
            if m.dialog_id != dialog_id {
                return Err(StoreError::Conflict {
                    field: "external_id".into(),
                    message: "this external_id belongs to a message of another dialog".into(),
                });
            }
            return Ok((m, false));
        };
        let m = rows::message(&row)?;
        if d.last_message_at.is_none_or(|t| t < sent_at) {
            d.last_message_at = Some(sent_at);
        }
        let reopened = direction == Direction::Inbound && d.status == DialogStatus::Closed;
        if reopened {
            d.status = DialogStatus::Open;
            d.closed_at = None;
        }
        match direction {
            Direction::Inbound => {
                d.unread += 1;
                d.waiting_since = d.waiting_since.or(Some(tx.now));
            }
            // Answered: nobody waits any more, and the operator has read what came before.
            Direction::Outbound => {
                d.waiting_since = None;
                d.unread = 0;
            }
        }
        d.updated_at = tx.now;
        sqlx::query(
            "UPDATE dialogs SET last_message_at = $1, status = $2, closed_at = $3, updated_at = $4, waiting_since = $5, \
             unread = $6 WHERE id = $7",
        )
        .bind(d.last_message_at.map(Timestamp::micros))
        .bind(d.status.as_str())
        .bind(d.closed_at.map(Timestamp::micros))
        .bind(d.updated_at.micros())
        .bind(d.waiting_since.map(Timestamp::micros))
        .bind(d.unread)
        .bind(dialog_id)
        .execute(tx.conn())
        .await?;
        // The message event carries the new last message, unread count and waiting time to
        // consoles; the dialog is logged only when its status changed too.
        if reopened {
            tx.log(dialog_change(&d, "reopen"));
        }
        record_message(&mut tx, &d, &m).await?;
        tx.commit().await?;
        Ok((m, true))
    }

    pub(crate) async fn list_messages_impl(
        &self,
        actor: &Actor,
        dialog_id: Id,
        limit: i64,
        cursor: Option<Cursor>,
        newest_first: bool,
    ) -> StoreResult<Page<Message>> {
        self.get_dialog_impl(actor, dialog_id).await?;
        let limit = page_limit(limit);
        let after = match &cursor {
            Some(c) => Some(c.int_key()?),
            None => None,
        };
        let (cmp, order) = if newest_first {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let sql = format!(
            "SELECT {} FROM messages m WHERE m.dialog_id = $1 AND ($2 IS NULL OR m.id {cmp} $2) ORDER BY m.id {order} LIMIT $3",
            rows::MESSAGE_COLS
        );
        let rs = sqlx::query(&sql)
            .bind(dialog_id)
            .bind(after)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rs
            .iter()
            .map(rows::message)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |m| Cursor::int(m.id, m.id)))
    }

    pub(crate) async fn update_delivery_impl(
        &self,
        actor: &Actor,
        message_id: Id,
        u: &DeliveryUpdate,
    ) -> StoreResult<Message> {
        if !actor.has_scope(Scope::DialogsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the dialogs:write scope".into(),
            ));
        }
        if matches!(u.status, DeliveryStatus::Received | DeliveryStatus::Pending) {
            return Err(FieldError::new(
                "status",
                "invalid_status",
                "report sent, delivered, read or failed",
            )
            .into());
        }
        let error = optional_text("error", u.error.as_deref(), 1000)?;
        let provider = match &u.provider_message_id {
            Some(p) => Some(external_id("provider_message_id", p)?),
            None => None,
        };
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "SELECT {}, d.assignee_id AS d_assignee_id, d.shared AS d_shared, d.department_id AS d_department_id, \
             d.client_id AS d_client_id, d.lead_id AS d_lead_id, d.interest_id AS d_interest_id \
             FROM messages m JOIN dialogs d ON d.id = m.dialog_id WHERE m.id = $1 AND {}{}",
            rows::MESSAGE_COLS,
            access::owned(actor, "d", "assignee_id"),
            if tx.backend() == super::Backend::Postgres { " FOR UPDATE OF m" } else { "" }
        );
        let row = sqlx::query(&sql)
            .bind(message_id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound { entity: "message" })?;
        let mut m = rows::message(&row)?;
        let scope = Change::new("message", message_id, "delivery", ())
            .party(
                rows::opt_id(&row, "d_client_id")?,
                rows::opt_id(&row, "d_lead_id")?,
            )
            .interest(rows::opt_id(&row, "d_interest_id")?)
            .dialog(Some(m.dialog_id))
            .department(rows::opt_id(&row, "d_department_id")?)
            .owner(
                rows::opt_id(&row, "d_assignee_id")?,
                rows::flag(&row, "d_shared")?,
            );
        if m.direction == Direction::Inbound {
            return Err(StoreError::Conflict {
                field: "status".into(),
                message: "inbound messages have no delivery status".into(),
            });
        }
        let mut changed = false;
        if u.status.rank() > m.delivery_status.rank() {
            m.delivery_status = u.status;
            m.delivery_error = if u.status == DeliveryStatus::Failed {
                error
            } else {
                None
            };
            changed = true;
        }
        if provider.is_some() && m.provider_message_id.is_none() {
            m.provider_message_id = provider;
            changed = true;
        }
        if !changed {
            return Ok(m);
        }
        sqlx::query("UPDATE messages SET delivery_status = $1, delivery_error = $2, provider_message_id = $3, updated_at = $4 WHERE id = $5")
            .bind(m.delivery_status.as_str())
            .bind(&m.delivery_error)
            .bind(&m.provider_message_id)
            .bind(tx.now.micros())
            .bind(message_id)
            .execute(tx.conn())
            .await?;
        tx.log(Change {
            data: serde_json::to_value(&m).unwrap_or_default(),
            ..scope
        });
        tx.commit().await?;
        Ok(m)
    }

    pub(crate) async fn record_call_impl(
        &self,
        actor: &Actor,
        input: &NewCall,
    ) -> StoreResult<(Call, bool)> {
        if !actor.has_scope(Scope::CallsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the calls:write scope".into(),
            ));
        }
        let connector = channel_name("connector_id", &input.connector_id)?;
        let ext = external_id("external_id", &input.external_id)?;
        let from = self.call_number("from_number", &input.from_number)?;
        let to = self.call_number("to_number", &input.to_number)?;
        let extension = optional_text("extension", input.extension.as_deref(), 64)?;
        let status = input.status.unwrap_or(CallStatus::Ringing);
        if status.is_final() {
            return Err(FieldError::new(
                "status",
                "invalid_status",
                "record a call as ringing or answered, then update it",
            )
            .into());
        }
        let mut tx = self.write(actor).await?;
        let (mut client_id, mut lead_id) = (input.client_id, input.lead_id);
        one_party(client_id, lead_id)?;
        let mut contact_id = None;
        if let Some(c) = client_id {
            visible_client(&mut tx, actor, "client_id", c).await?;
        }
        if let Some(l) = lead_id {
            visible_lead(&mut tx, actor, "lead_id", l).await?;
        }
        if client_id.is_none() && lead_id.is_none() {
            // Recognise the customer by their number.
            let customer = match input.direction {
                CallDirection::Outbound => &to,
                _ => &from,
            };
            // Only among the parties the actor may see: a call must not reveal another's client.
            let sql = format!(
                "SELECT i.client_id, i.contact_id, i.lead_id FROM identities i WHERE i.kind = 'phone' AND i.value = $1 AND {}",
                access::party_visible(actor, "i")
            );
            let row = sqlx::query(&sql)
                .bind(customer)
                .fetch_optional(tx.conn())
                .await?;
            if let Some(r) = row {
                client_id = rows::opt_id(&r, "client_id")?;
                contact_id = rows::opt_id(&r, "contact_id")?;
                lead_id = rows::opt_id(&r, "lead_id")?;
            }
        }
        if let Some(o) = input.operator_id {
            operator_assignable(&mut tx, actor, o).await?;
        }
        if let Some(i) = input.interest_id {
            visible_interest(&mut tx, actor, "interest_id", i).await?;
        }
        let started = input.started_at.unwrap_or(tx.now);
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO calls (connector_id, external_id, direction, from_number, to_number, status, operator_id, extension, client_id, \
             contact_id, lead_id, interest_id, started_at, answered_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
             ON CONFLICT (connector_id, external_id) DO NOTHING RETURNING {}",
            rows::CALL_COLS.replace("k.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&connector)
            .bind(&ext)
            .bind(input.direction.as_str())
            .bind(&from)
            .bind(&to)
            .bind(status.as_str())
            .bind(input.operator_id)
            .bind(extension)
            .bind(client_id)
            .bind(contact_id)
            .bind(lead_id)
            .bind(input.interest_id)
            .bind(started.micros())
            .bind((status == CallStatus::Answered).then_some(now))
            .bind(now)
            .fetch_optional(tx.conn())
            .await?;
        let Some(row) = row else {
            // A replay answers with the stored call, but only to someone who may see it.
            let sql = format!(
                "SELECT {} FROM calls k WHERE k.connector_id = $1 AND k.external_id = $2 AND {}",
                rows::CALL_COLS,
                access::call_visible(actor, "k")
            );
            let row = sqlx::query(&sql)
                .bind(&connector)
                .bind(&ext)
                .fetch_optional(tx.conn())
                .await?;
            return match row {
                Some(r) => Ok((rows::call(&r)?, false)),
                None => Err(StoreError::Conflict {
                    field: "external_id".into(),
                    message: "a call with this external_id is already recorded".into(),
                }),
            };
        };
        let call = rows::call(&row)?;
        Self::feed_call(&mut tx, &call).await?;
        tx.log(call_change(&call, "create"));
        tx.commit().await?;
        Ok((call, true))
    }

    pub(crate) fn call_number(&self, field: &str, v: &str) -> Result<String, FieldError> {
        let v = required_text(field, v, 64)?;
        // Extensions and service numbers stay as they are; real numbers become E.164.
        if v.chars().filter(char::is_ascii_digit).count() >= 7 {
            if let Ok(e164) = self.rules.phone(field, &v) {
                return Ok(e164);
            }
        }
        if v.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#' | '-' | ' ' | '(' | ')'))
            || v == "anonymous"
        {
            Ok(v)
        } else {
            Err(FieldError::new(
                field,
                "invalid_phone",
                format!("`{v}` is not a phone number or extension"),
            ))
        }
    }

    pub(crate) async fn feed_call(tx: &mut WriteTx, k: &Call) -> StoreResult<()> {
        if k.client_id.is_none() && k.lead_id.is_none() {
            return Ok(());
        }
        let title = match (k.direction, k.status) {
            (_, CallStatus::Missed) => format!("Missed call from {}", k.from_number),
            (CallDirection::Outbound, _) => format!("Call to {}", k.to_number),
            _ => format!("Call from {}", k.from_number),
        };
        let text = k.duration_secs.map(|d| format!("{}:{:02}", d / 60, d % 60));
        upsert(
            tx,
            &FeedItem {
                kind: FeedKind::Call,
                ref_type: "call",
                ref_id: k.id,
                client_id: k.client_id,
                contact_id: k.contact_id,
                lead_id: k.lead_id,
                interest_id: k.interest_id,
                occurred_at: k.started_at,
                title: &title,
                text: text.as_deref(),
            },
        )
        .await
    }

    pub(crate) async fn get_call_impl(&self, actor: &Actor, id: Id) -> StoreResult<Call> {
        by_id::CALL.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn list_calls_impl(
        &self,
        actor: &Actor,
        f: &ListFilter,
    ) -> StoreResult<Page<Call>> {
        let limit = page_limit(f.limit);
        let position = Cursor::int_position(f.cursor.as_ref())?;
        let (after, n) = after_cursor("k.started_at, k.id", true, position.is_some(), 5);
        let sql = format!(
            "SELECT {} FROM calls k WHERE {} AND ($1 IS NULL OR k.client_id = $1) AND ($2 IS NULL OR k.lead_id = $2) \
             AND ($3 IS NULL OR k.operator_id = $3) AND ($4 IS NULL OR k.status = $4) \
             {after} ORDER BY k.started_at DESC, k.id DESC LIMIT ${n}",
            rows::CALL_COLS,
            access::call_visible(actor, "k")
        );
        let mut query = sqlx::query(&sql)
            .bind(f.client_id)
            .bind(f.lead_id)
            .bind(f.user_id)
            .bind(f.status.as_deref());
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs.iter().map(rows::call).collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |k| {
            Cursor::int(k.started_at.micros(), k.id)
        }))
    }

    pub(crate) async fn update_call_impl(
        &self,
        actor: &Actor,
        id: Id,
        p: &CallPatch,
    ) -> StoreResult<Call> {
        if !actor.has_scope(Scope::CallsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the calls:write scope".into(),
            ));
        }
        let missed_reason =
            optional_text("missed_reason", p.missed_reason.as_deref(), Limits::SHORT)?;
        let extension = optional_text("extension", p.extension.as_deref(), 64)?;
        let recording = optional_text("recording_url", p.recording_url.as_deref(), 2048)?;
        let mut tx = self.write(actor).await?;
        let mut k = by_id::CALL.fetch_for_update(&mut tx, actor, id).await?;
        let before = k.clone();
        if let Some(s) = p.status {
            if k.status.is_final() && s != k.status {
                return Err(StoreError::Conflict {
                    field: "status".into(),
                    message: format!(
                        "the call is {}; it cannot become {}",
                        k.status.as_str(),
                        s.as_str()
                    ),
                });
            }
            if s == CallStatus::Ringing && k.status != CallStatus::Ringing {
                return Err(StoreError::Conflict {
                    field: "status".into(),
                    message: "an answered call cannot ring again".into(),
                });
            }
            if s == CallStatus::Answered && k.answered_at.is_none() {
                k.answered_at = Some(p.answered_at.unwrap_or(tx.now));
            }
            if s.is_final() && !k.status.is_final() {
                let end = p.ended_at.unwrap_or(tx.now);
                k.ended_at = Some(end);
                k.duration_secs = k
                    .answered_at
                    .map(|a| ((end.micros() - a.micros()) / 1_000_000).max(0));
            }
            if s == CallStatus::Missed {
                k.missed_reason = missed_reason.or(Some("no_answer".into()));
            }
            k.status = s;
        }
        if let Some(o) = p.operator_id {
            operator_assignable(&mut tx, actor, o).await?;
            k.operator_id = Some(o);
        }
        if extension.is_some() {
            k.extension = extension;
        }
        if recording.is_some() {
            k.recording_url = recording;
        }
        if let Some(i) = p.interest_id {
            visible_interest(&mut tx, actor, "interest_id", i).await?;
            k.interest_id = Some(i);
        }
        if unchanged(&before, &k) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        k.updated_at = tx.now;
        sqlx::query(
            "UPDATE calls SET status = $1, missed_reason = $2, operator_id = $3, extension = $4, answered_at = $5, ended_at = $6, \
             duration_secs = $7, recording_url = $8, interest_id = $9, updated_at = $10 WHERE id = $11",
        )
        .bind(k.status.as_str())
        .bind(&k.missed_reason)
        .bind(k.operator_id)
        .bind(&k.extension)
        .bind(k.answered_at.map(Timestamp::micros))
        .bind(k.ended_at.map(Timestamp::micros))
        .bind(k.duration_secs)
        .bind(&k.recording_url)
        .bind(k.interest_id)
        .bind(k.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await?;
        Self::feed_call(&mut tx, &k).await?;
        tx.log(call_change(&k, "update"));
        tx.commit().await?;
        Ok(k)
    }
}

/// The operator on a call: an active user the actor may assign (PBX keys: anyone).
async fn operator_assignable(tx: &mut WriteTx, actor: &Actor, operator: Id) -> StoreResult<()> {
    let dep = user_department(tx, "operator_id", operator).await?;
    if access::may_assign(actor, operator, dep) {
        Ok(())
    } else {
        Err(StoreError::Forbidden(format!(
            "you may not put user {operator} on a call"
        )))
    }
}

/// A new message's Feed entry (when the dialog has a party) and its change-log entry, in
/// the transaction that stored it.
pub(crate) async fn record_message(tx: &mut WriteTx, d: &Dialog, m: &Message) -> StoreResult<()> {
    if d.client_id.is_some() || d.lead_id.is_some() {
        let title = match m.direction {
            Direction::Inbound => format!("Message via {}", d.channel),
            Direction::Outbound => format!("Reply via {}", d.channel),
        };
        upsert(
            tx,
            &FeedItem {
                kind: if d.channel == "email" {
                    FeedKind::Email
                } else {
                    FeedKind::Message
                },
                ref_type: "message",
                ref_id: m.id,
                client_id: d.client_id,
                contact_id: d.contact_id,
                lead_id: d.lead_id,
                interest_id: d.interest_id,
                occurred_at: m.sent_at,
                title: &title,
                text: m.body.as_deref(),
            },
        )
        .await?;
    }
    tx.log(
        Change::new("message", m.id, "create", m)
            .party(d.client_id, d.lead_id)
            .interest(d.interest_id)
            .dialog(Some(d.id))
            .department(d.department_id)
            .owner(d.assignee_id, d.shared),
    );
    Ok(())
}

pub(crate) fn dialog_change(d: &Dialog, op: &'static str) -> Change {
    Change::new("dialog", d.id, op, d)
        .party(d.client_id, d.lead_id)
        .interest(d.interest_id)
        .dialog(Some(d.id))
        .department(d.department_id)
        .owner(d.assignee_id, d.shared)
}

pub(crate) fn call_change(k: &Call, op: &'static str) -> Change {
    Change::new("call", k.id, op, k)
        .party(k.client_id, k.lead_id)
        .interest(k.interest_id)
        .owner(k.operator_id, false)
}
