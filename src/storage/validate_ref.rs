//! Checks of references inside a write transaction: the referenced row exists and the actor
//! may see it. A reference the actor may not see is reported exactly like a missing one.

use sqlx::Row;

use super::{access, by_id, StoreError, StoreResult, WriteTx};
use crate::domain::*;

/// A record belongs to a client or to a lead, never both.
///
/// # Errors
/// `conflicting_party` on `lead_id` when both are given.
pub(crate) fn one_party(client_id: Option<Id>, lead_id: Option<Id>) -> StoreResult<()> {
    if client_id.is_some() && lead_id.is_some() {
        return Err(FieldError::new(
            "lead_id",
            "conflicting_party",
            "give either client_id or lead_id, not both",
        )
        .into());
    }
    Ok(())
}

/// A reference the actor may not see fails like a missing one, on the referring field.
fn as_missing(e: StoreError, field: &str, what: &str, id: Id) -> StoreError {
    match e {
        StoreError::NotFound { .. } => missing(field, what, id),
        other => other,
    }
}

fn missing(field: &str, what: &str, id: Id) -> StoreError {
    StoreError::Invalid(FieldError::new(
        field,
        "not_found",
        format!("{what} {id} does not exist"),
    ))
}

pub(crate) async fn department_exists(tx: &mut WriteTx, field: &str, id: Id) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM departments WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| missing(field, "department", id))
}

/// An active user's department.
pub(crate) async fn user_department(
    tx: &mut WriteTx,
    field: &str,
    id: Id,
) -> StoreResult<Option<Id>> {
    let row = sqlx::query("SELECT department_id FROM users WHERE id = $1 AND active = 1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| missing(field, "user", id))?;
    Ok(row.try_get::<Option<i64>, _>("department_id")?)
}

pub(crate) async fn visible_client(
    tx: &mut WriteTx,
    actor: &Actor,
    field: &str,
    id: Id,
) -> StoreResult<Client> {
    by_id::CLIENT
        .fetch(tx.conn(), actor, id)
        .await
        .map_err(|e| as_missing(e, field, "client", id))
}

pub(crate) async fn visible_lead(
    tx: &mut WriteTx,
    actor: &Actor,
    field: &str,
    id: Id,
) -> StoreResult<Lead> {
    by_id::LEAD
        .fetch(tx.conn(), actor, id)
        .await
        .map_err(|e| as_missing(e, field, "lead", id))
}

pub(crate) async fn visible_interest(
    tx: &mut WriteTx,
    actor: &Actor,
    field: &str,
    id: Id,
) -> StoreResult<Interest> {
    by_id::INTEREST
        .fetch(tx.conn(), actor, id)
        .await
        .map_err(|e| as_missing(e, field, "interest", id))
}

/// A contact that belongs to `client_id`.
pub(crate) async fn contact_of(
    tx: &mut WriteTx,
    actor: &Actor,
    field: &str,
    id: Id,
    client_id: Id,
) -> StoreResult<Contact> {
    // A contact of a client the actor may not see does not exist for them.
    let c = by_id::CONTACT
        .fetch(tx.conn(), actor, id)
        .await
        .map_err(|e| as_missing(e, field, "contact", id))?;
    if c.client_id != client_id {
        return Err(StoreError::Invalid(FieldError::new(
            field,
            "wrong_client",
            format!("contact {id} belongs to another client"),
        )));
    }
    Ok(c)
}

/// Resolves who a new record belongs to: the responsible user defaults to the acting user,
/// the department to the responsible user's. Managers may only assign to themselves.
pub(crate) async fn ownership(
    tx: &mut WriteTx,
    actor: &Actor,
    responsible_id: Option<Id>,
    department_id: Option<Id>,
    shared: bool,
) -> StoreResult<Ownership> {
    let responsible_id = responsible_id.or(actor.user_id());
    let mut dept = None;
    if let Some(r) = responsible_id {
        dept = user_department(tx, "responsible_id", r).await?;
        if !access::may_assign(actor, r, dept) {
            return Err(StoreError::Forbidden(format!(
                "you may not make user {r} responsible; only admins and their supervisor may"
            )));
        }
    }
    if let Some(d) = department_id {
        department_exists(tx, "department_id", d).await?;
        if let Actor::User {
            role,
            department_id: own,
            ..
        } = actor
        {
            if !matches!(role, Role::Admin) && Some(d) != *own {
                return Err(StoreError::Forbidden(
                    "you may only file records under your own department".into(),
                ));
            }
        }
    }
    let department_id = department_id.or(dept).or(match actor {
        Actor::User { department_id, .. } => *department_id,
        _ => None,
    });
    Ok(Ownership {
        responsible_id,
        department_id,
        shared,
    })
}
