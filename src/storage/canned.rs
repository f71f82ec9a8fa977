//! Canned responses: personal, per department and global. Who may use and who may manage
//! which is in `access::canned_usable` / `access::canned_visible` (SQL) and
//! `domain::may_manage_canned`.

use super::validate_ref::department_exists;
use super::{
    access, by_id, conflict_on, rows, unchanged, Change, SqlStore, StoreError, StoreResult,
};
use crate::domain::*;

/// Most canned responses one owner (a user, a department, everyone) may have: the picker
/// loads every response a user may use at once.
const PER_OWNER_MAX: i64 = 1_000;

/// The change-log entry of a canned response, on its owner's topic (`user:` for a
/// personal one, `dept:` for a department's; a global one has none).
fn change(c: &CannedResponse, op: &'static str) -> Change {
    let ch = Change::new("canned_response", c.id, op, c);
    match (c.scope, c.user_id, c.department_id) {
        (CannedScope::Personal, Some(u), _) => ch.owner(Some(u), false).also(Topic::user(u)),
        (CannedScope::Department, _, Some(d)) => ch.department(Some(d)).also(Topic::dept(d)),
        _ => ch,
    }
}

fn forbidden(scope: CannedScope) -> StoreError {
    StoreError::Forbidden(
        match scope {
            CannedScope::Personal => "a personal canned response is its owner's alone",
            CannedScope::Department => {
                "only admins and the department's supervisors manage its canned responses"
            }
            CannedScope::Global => "only admins manage global canned responses",
        }
        .into(),
    )
}

fn taken(scope: CannedScope, shortcut: &str) -> String {
    match scope {
        CannedScope::Personal => format!("you already have a canned response /{shortcut}"),
        CannedScope::Department => {
            format!("the department already has a canned response /{shortcut}")
        }
        CannedScope::Global => format!("a global canned response /{shortcut} exists"),
    }
}

impl SqlStore {
    pub(crate) async fn list_canned_responses_impl(
        &self,
        actor: &Actor,
        q: Option<&str>,
    ) -> StoreResult<Vec<CannedResponse>> {
        let sql = format!(
            "SELECT {} FROM canned_responses cr WHERE {}",
            rows::CANNED_COLS,
            access::canned_usable(actor, "cr")
        );
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut items = rs
            .iter()
            .map(rows::canned_response)
            .collect::<StoreResult<Vec<_>>>()?;
        // Filtered and sorted here, not in SQL: case folding of Cyrillic and collation
        // differ between SQLite and PostgreSQL (and between PostgreSQL locales).
        if let Some(q) = q.map(|q| q.trim().to_lowercase()).filter(|q| !q.is_empty()) {
            items.retain(|c| canned_matches(c, &q));
        }
        items.sort_by(|a, b| {
            (a.shortcut.as_str(), a.scope, a.id).cmp(&(b.shortcut.as_str(), b.scope, b.id))
        });
        Ok(items)
    }

    pub(crate) async fn create_canned_response_impl(
        &self,
        actor: &Actor,
        input: &NewCannedResponse,
    ) -> StoreResult<CannedResponse> {
        let (shortcut, title, body) = input.normalized()?;
        if input.scope != CannedScope::Department && input.department_id.is_some() {
            return Err(FieldError::new(
                "department_id",
                "invalid_value",
                "only department canned responses have a department",
            )
            .into());
        }
        let (department_id, user_id) = match input.scope {
            CannedScope::Personal => match actor.user_id() {
                Some(u) => (None, Some(u)),
                None => {
                    return Err(StoreError::Forbidden(
                        "a personal canned response belongs to a signed-in user".into(),
                    ))
                }
            },
            CannedScope::Department => {
                let own = match actor {
                    Actor::User { department_id, .. } => *department_id,
                    _ => None,
                };
                match input.department_id.or(own) {
                    Some(d) => (Some(d), None),
                    None => {
                        return Err(FieldError::new(
                            "department_id",
                            "required",
                            "give department_id: you belong to no department",
                        )
                        .into())
                    }
                }
            }
            CannedScope::Global => (None, None),
        };
        if !may_manage_canned(actor, input.scope, department_id, user_id) {
            return Err(forbidden(input.scope));
        }
        let mut tx = self.write(actor).await?;
        if let Some(d) = department_id {
            department_exists(&mut tx, "department_id", d).await?;
        }
        let (count_sql, owner) = match input.scope {
            CannedScope::Personal => (
                "SELECT COUNT(*) FROM canned_responses WHERE scope = 'personal' AND user_id = $1",
                user_id,
            ),
            CannedScope::Department => (
                "SELECT COUNT(*) FROM canned_responses WHERE scope = 'department' AND department_id = $1",
                department_id,
            ),
            CannedScope::Global => (
                "SELECT COUNT(*) FROM canned_responses WHERE scope = 'global'",
                None,
            ),
        };
        let mut count_q = sqlx::query_scalar::<_, i64>(count_sql);
        if let Some(o) = owner {
            count_q = count_q.bind(o);
        }
        let count = count_q.fetch_one(tx.conn()).await?;
        if count >= PER_OWNER_MAX {
            return Err(StoreError::Conflict {
                field: "scope".into(),
                message: format!(
                    "there are {PER_OWNER_MAX} {} canned responses already; delete some first",
                    input.scope.as_str()
                ),
            });
        }
        let sql = format!(
            "INSERT INTO canned_responses (scope, department_id, user_id, shortcut, title, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {}",
            rows::CANNED_COLS.replace("cr.", "")
        );
        let row = sqlx::query(&sql)
            .bind(input.scope.as_str())
            .bind(department_id)
            .bind(user_id)
            .bind(&shortcut)
            .bind(&title)
            .bind(&body)
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await
            .map_err(conflict_on("shortcut", taken(input.scope, &shortcut)))?;
        let c = rows::canned_response(&row)?;
        tx.log(change(&c, "create"));
        tx.commit().await?;
        Ok(c)
    }

    pub(crate) async fn update_canned_response_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CannedResponsePatch,
    ) -> StoreResult<CannedResponse> {
        let patch = patch.normalized()?;
        let mut tx = self.write(actor).await?;
        let before = by_id::CANNED_RESPONSE
            .fetch_for_update(&mut tx, actor, id)
            .await?;
        if !may_manage_canned(actor, before.scope, before.department_id, before.user_id) {
            return Err(forbidden(before.scope));
        }
        let mut c = before.clone();
        if let Some(s) = patch.shortcut {
            c.shortcut = s;
        }
        if let Some(t) = patch.title {
            c.title = t;
        }
        if let Some(b) = patch.body {
            c.body = b;
        }
        if unchanged(&before, &c) {
            return Ok(before);
        }
        c.updated_at = tx.now;
        sqlx::query(
            "UPDATE canned_responses SET shortcut = $1, title = $2, body = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(&c.shortcut)
        .bind(&c.title)
        .bind(&c.body)
        .bind(c.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(conflict_on("shortcut", taken(c.scope, &c.shortcut)))?;
        tx.log(change(&c, "update"));
        tx.commit().await?;
        Ok(c)
    }

    pub(crate) async fn delete_canned_response_impl(
        &self,
        actor: &Actor,
        id: Id,
    ) -> StoreResult<()> {
        let mut tx = self.write(actor).await?;
        let c = by_id::CANNED_RESPONSE
            .fetch_for_update(&mut tx, actor, id)
            .await?;
        if !may_manage_canned(actor, c.scope, c.department_id, c.user_id) {
            return Err(forbidden(c.scope));
        }
        sqlx::query("DELETE FROM canned_responses WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(change(&c, "delete"));
        tx.commit().await?;
        Ok(())
    }
}
