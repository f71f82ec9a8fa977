//! Reading one row by id under the actor's access rules, the same way from the pool and
//! from inside a write transaction.

use sqlx::any::AnyRow;
use sqlx::Any;

use super::{access, rows, Backend, StoreError, StoreResult, WriteTx};
use crate::domain::*;

/// How to read one visible row of an entity: its name (for `NotFound`), the query for an
/// actor (binding the id as `$1`), and the decoder.
pub(crate) struct ById<T> {
    entity: &'static str,
    /// The table's alias in `sql`, for `FOR UPDATE OF`.
    alias: &'static str,
    sql: fn(&Actor) -> String,
    decode: fn(&AnyRow) -> StoreResult<T>,
}

impl<T> ById<T> {
    /// The row, or `NotFound` when it does not exist or the actor may not see it.
    pub(crate) async fn fetch<'c, E>(&self, exec: E, actor: &Actor, id: Id) -> StoreResult<T>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        self.run(exec, &(self.sql)(actor), id).await
    }

    async fn run<'c, E>(&self, exec: E, sql: &str, id: Id) -> StoreResult<T>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(exec)
            .await?
            .ok_or(StoreError::NotFound {
                entity: self.entity,
            })?;
        (self.decode)(&row)
    }

    /// The row an update is about to change, read inside its transaction and, on PostgreSQL,
    /// locked until commit: a concurrent update of the same row waits and then sees this
    /// one's result instead of overwriting it. (SQLite writers are already serialized.)
    /// Call it first in the transaction, before other rows are locked.
    pub(crate) async fn fetch_for_update(
        &self,
        tx: &mut WriteTx,
        actor: &Actor,
        id: Id,
    ) -> StoreResult<T> {
        let mut sql = (self.sql)(actor);
        if tx.backend() == Backend::Postgres {
            sql.push_str(" FOR UPDATE OF ");
            sql.push_str(self.alias);
        }
        self.run(tx.conn(), &sql, id).await
    }
}

pub(crate) const CLIENT: ById<Client> = ById {
    entity: "client",
    alias: "c",
    sql: |a| {
        format!(
            "SELECT {} FROM clients c WHERE c.id = $1 AND {}",
            rows::CLIENT_COLS,
            access::owned(a, "c", "responsible_id")
        )
    },
    decode: rows::client,
};

pub(crate) const CONTACT: ById<Contact> = ById {
    entity: "contact",
    alias: "ct",
    sql: |a| {
        format!(
            "SELECT {} FROM contacts ct WHERE ct.id = $1 AND {}",
            rows::CONTACT_COLS,
            access::client_visible(a, "ct.client_id")
        )
    },
    decode: rows::contact,
};

pub(crate) const LEAD: ById<Lead> = ById {
    entity: "lead",
    alias: "l",
    sql: |a| {
        format!(
            "SELECT {} FROM leads l WHERE l.id = $1 AND {}",
            rows::LEAD_COLS,
            access::owned(a, "l", "responsible_id")
        )
    },
    decode: rows::lead,
};

pub(crate) const INTEREST: ById<Interest> = ById {
    entity: "interest",
    alias: "n",
    sql: |a| {
        format!(
            "SELECT {} FROM interests n WHERE n.id = $1 AND {}",
            rows::INTEREST_COLS,
            access::owned(a, "n", "responsible_id")
        )
    },
    decode: rows::interest,
};

pub(crate) const INTERACTION: ById<Interaction> = ById {
    entity: "interaction",
    alias: "x",
    sql: |a| {
        format!(
            "SELECT {} FROM interactions x WHERE x.id = $1 AND {}",
            rows::INTERACTION_COLS,
            access::interaction_visible(a, "x")
        )
    },
    decode: rows::interaction,
};

pub(crate) const DIALOG: ById<Dialog> = ById {
    entity: "dialog",
    alias: "d",
    sql: |a| {
        format!(
            "SELECT {} FROM dialogs d WHERE d.id = $1 AND {}",
            rows::DIALOG_COLS,
            access::owned(a, "d", "assignee_id")
        )
    },
    decode: rows::dialog,
};

pub(crate) const CANNED_RESPONSE: ById<CannedResponse> = ById {
    entity: "canned response",
    alias: "cr",
    sql: |a| {
        format!(
            "SELECT {} FROM canned_responses cr WHERE cr.id = $1 AND {}",
            rows::CANNED_COLS,
            access::canned_visible(a, "cr")
        )
    },
    decode: rows::canned_response,
};

pub(crate) const CALL: ById<Call> = ById {
    entity: "call",
    alias: "k",
    sql: |a| {
        format!(
            "SELECT {} FROM calls k WHERE k.id = $1 AND {}",
            rows::CALL_COLS,
            access::call_visible(a, "k")
        )
    },
    decode: rows::call,
};
