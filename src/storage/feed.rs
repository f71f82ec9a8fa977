//! Feed entries: written with the item they show, read by target, newest first.

use super::{
    access, after_cursor, page_limit, page_of, rows, Cursor, FeedQuery, FeedTarget, SqlStore,
    StoreError, StoreResult, WriteTx,
};
use crate::domain::*;

/// What a Feed entry points at, with its party and Interest.
#[derive(Debug, Clone)]
pub(crate) struct FeedItem<'a> {
    pub kind: FeedKind,
    pub ref_type: &'static str,
    pub ref_id: Id,
    pub client_id: Option<Id>,
    pub contact_id: Option<Id>,
    pub lead_id: Option<Id>,
    pub interest_id: Option<Id>,
    pub occurred_at: Timestamp,
    pub title: &'a str,
    pub text: Option<&'a str>,
}

/// Writes or refreshes the Feed entry of an item, in the item's transaction.
pub(crate) async fn upsert(tx: &mut WriteTx, item: &FeedItem<'_>) -> StoreResult<()> {
    let title: String = item.title.chars().take(200).collect();
    sqlx::query(
        "INSERT INTO feed_entries (kind, ref_type, ref_id, client_id, contact_id, lead_id, interest_id, occurred_at, title, preview) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (ref_type, ref_id) DO UPDATE SET kind = excluded.kind, client_id = excluded.client_id, \
         contact_id = excluded.contact_id, lead_id = excluded.lead_id, interest_id = excluded.interest_id, \
         occurred_at = excluded.occurred_at, title = excluded.title, preview = excluded.preview",
    )
    .bind(item.kind.as_str())
    .bind(item.ref_type)
    .bind(item.ref_id)
    .bind(item.client_id)
    .bind(item.contact_id)
    .bind(item.lead_id)
    .bind(item.interest_id)
    .bind(item.occurred_at.micros())
    .bind(title)
    .bind(preview(item.text))
    .execute(tx.conn())
    .await?;
    Ok(())
}

impl SqlStore {
    pub(crate) async fn feed_impl(
        &self,
        actor: &Actor,
        q: &FeedQuery,
    ) -> StoreResult<Page<FeedEntry>> {
        // The target must be visible; its whole timeline then is.
        let (col, visible) = match q.target {
            FeedTarget::Client(id) => ("client_id", self.client_visible_now(actor, id).await?),
            FeedTarget::Contact(id) => (
                "contact_id",
                self.get_contact_impl(actor, id)
                    .await
                    .map(|_| true)
                    .or_else(not_found_false)?,
            ),
            FeedTarget::Lead(id) => (
                "lead_id",
                self.get_lead_impl(actor, id)
                    .await
                    .map(|_| true)
                    .or_else(not_found_false)?,
            ),
            FeedTarget::Interest(id) => (
                "interest_id",
                self.get_interest_impl(actor, id)
                    .await
                    .map(|_| true)
                    .or_else(not_found_false)?,
            ),
        };
        let entity = match q.target {
            FeedTarget::Client(_) => "client",
            FeedTarget::Contact(_) => "contact",
            FeedTarget::Lead(_) => "lead",
            FeedTarget::Interest(_) => "interest",
        };
        if !visible {
            return Err(StoreError::NotFound { entity });
        }
        let target_id = match q.target {
            FeedTarget::Client(i)
            | FeedTarget::Contact(i)
            | FeedTarget::Lead(i)
            | FeedTarget::Interest(i) => i,
        };
        let limit = page_limit(q.limit);
        let position = Cursor::int_position(q.cursor.as_ref())?;
        let kinds = if q.kinds.is_empty() {
            String::new()
        } else {
            // Kinds are a closed enum: their stored forms are safe to inline.
            let list: Vec<String> = q
                .kinds
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            format!("AND f.kind IN ({})", list.join(", "))
        };
        // Entries follow their own record's access: the Feed of a visible client does not
        // show a private dialog's messages or an Interest the reader may not open.
        let entry_access = if actor.sees_everything() {
            String::new()
        } else {
            format!(
                "AND (f.ref_type IN ('interaction', 'call') \
                 OR (f.ref_type = 'interest' AND EXISTS (SELECT 1 FROM interests n WHERE n.id = f.ref_id AND {})) \
                 OR (f.ref_type = 'message' AND EXISTS (SELECT 1 FROM messages m JOIN dialogs d ON d.id = m.dialog_id \
                     WHERE m.id = f.ref_id AND {})))",
                access::owned(actor, "n", "responsible_id"),
                access::owned(actor, "d", "assignee_id")
            )
        };
        let (after, n) = after_cursor("f.occurred_at, f.id", true, position.is_some(), 2);
        let sql = format!(
            "SELECT {} FROM feed_entries f WHERE f.{col} = $1 {kinds} {entry_access} {after} \
             ORDER BY f.occurred_at DESC, f.id DESC LIMIT ${n}",
            rows::FEED_COLS
        );
        let mut query = sqlx::query(&sql).bind(target_id);
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs
            .iter()
            .map(rows::feed_entry)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |e| {
            Cursor::int(e.occurred_at.micros(), e.id)
        }))
    }

    async fn client_visible_now(&self, actor: &Actor, id: Id) -> StoreResult<bool> {
        let sql = format!(
            "SELECT c.id FROM clients c WHERE c.id = $1 AND {}",
            access::owned(actor, "c", "responsible_id")
        );
        let found: Option<i64> = sqlx::query_scalar(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }
}

fn not_found_false(e: StoreError) -> StoreResult<bool> {
    match e {
        StoreError::NotFound { .. } => Ok(false),
        other => Err(other),
    }
}
