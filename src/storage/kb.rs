//! The knowledge base: articles and which suggestions operators used. Who may manage which
//! article is `domain::may_manage_kb`; every signed-in user with dialog access reads them.
//!
//! Every change is logged as a `kb_article` change with no topic: no console follows it,
//! but each node's index does (`assist::Knowledge` reads the hub's events).

use sqlx::any::AnyRow;

use super::validate_ref::department_exists;
use super::{rows, unchanged, Change, SqlStore, StoreError, StoreResult};
use crate::domain::*;

pub(crate) const KB_COLS: &str = "id, title, body, tags, language, department_id, public, \
     used_count, created_by, created_at, updated_at";

fn article(r: &AnyRow) -> StoreResult<KbArticle> {
    let tags: String = rows::text(r, "tags")?;
    Ok(KbArticle {
        id: rows::id(r, "id")?,
        title: rows::text(r, "title")?,
        body: rows::text(r, "body")?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| StoreError::Corrupt(format!("kb_articles.tags is not a list: {e}")))?,
        language: rows::text(r, "language")?,
        department_id: rows::opt_id(r, "department_id")?,
        public: rows::flag(r, "public")?,
        used_count: rows::id(r, "used_count")?,
        created_by: rows::opt_id(r, "created_by")?,
        created_at: rows::ts(r, "created_at")?,
        updated_at: rows::ts(r, "updated_at")?,
    })
}

/// The change-log entry of an article. The body is left out: the log is an audit trail and
/// the index reads the article from the store.
fn change(a: &KbArticle, op: &'static str) -> Change {
    Change::new(
        "kb_article",
        a.id,
        op,
        serde_json::json!({
            "id": a.id,
            "title": a.title,
            "department_id": a.department_id,
            "public": a.public,
            "language": a.language,
            "updated_at": a.updated_at,
        }),
    )
}

fn forbidden() -> StoreError {
    StoreError::Forbidden(
        "only admins, and supervisors for their department's and everyone's articles, manage the knowledge base"
            .into(),
    )
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

impl SqlStore {
    pub(crate) async fn list_kb_articles_impl(&self) -> StoreResult<Vec<KbArticle>> {
        let sql = format!("SELECT {KB_COLS} FROM kb_articles ORDER BY id");
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(article).collect()
    }

    pub(crate) async fn get_kb_articles_impl(&self, ids: &[Id]) -> StoreResult<Vec<KbArticle>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are integers: inlined, so one statement serves any count on both backends.
        let list = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("SELECT {KB_COLS} FROM kb_articles WHERE id IN ({list})");
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(article).collect()
    }

    pub(crate) async fn create_kb_article_impl(
        &self,
        actor: &Actor,
        input: &NewKbArticle,
    ) -> StoreResult<KbArticle> {
        let f = input.normalized()?;
        if !may_manage_kb(actor, input.department_id) {
            return Err(forbidden());
        }
        let mut tx = self.write(actor).await?;
        if let Some(d) = input.department_id {
            department_exists(&mut tx, "department_id", d).await?;
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kb_articles")
            .fetch_one(tx.conn())
            .await?;
        if count >= KB_ARTICLES_MAX {
            return Err(StoreError::Conflict {
                field: "title".into(),
                message: format!(
                    "the knowledge base holds {KB_ARTICLES_MAX} articles already; delete some first"
                ),
            });
        }
        let sql = format!(
            "INSERT INTO kb_articles (title, body, tags, language, department_id, public, used_count, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8) RETURNING {KB_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&f.title)
            .bind(&f.body)
            .bind(tags_json(&f.tags))
            .bind(&f.language)
            .bind(input.department_id)
            .bind(i64::from(input.public.unwrap_or(true)))
            .bind(actor.user_id())
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await?;
        let a = article(&row)?;
        tx.log(change(&a, "create"));
        tx.commit().await?;
        Ok(a)
    }

    pub(crate) async fn update_kb_article_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &KbArticlePatch,
    ) -> StoreResult<KbArticle> {
        let mut tx = self.write(actor).await?;
        let before = self.kb_article_for_update(&mut tx, id).await?;
        if !may_manage_kb(actor, before.department_id) {
            return Err(forbidden());
        }
        let mut a = before.clone();
        patch.apply(&mut a)?;
        if a.department_id != before.department_id {
            if !may_manage_kb(actor, a.department_id) {
                return Err(forbidden());
            }
            if let Some(d) = a.department_id {
                department_exists(&mut tx, "department_id", d).await?;
            }
        }
        if unchanged(&before, &a) {
            return Ok(before);
        }
        a.updated_at = tx.now;
        sqlx::query(
            "UPDATE kb_articles SET title = $1, body = $2, tags = $3, language = $4, \
             department_id = $5, public = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&a.title)
        .bind(&a.body)
        .bind(tags_json(&a.tags))
        .bind(&a.language)
        .bind(a.department_id)
        .bind(i64::from(a.public))
        .bind(a.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await?;
        tx.log(change(&a, "update"));
        tx.commit().await?;
        Ok(a)
    }

    pub(crate) async fn delete_kb_article_impl(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        let mut tx = self.write(actor).await?;
        let a = self.kb_article_for_update(&mut tx, id).await?;
        if !may_manage_kb(actor, a.department_id) {
            return Err(forbidden());
        }
        sqlx::query("DELETE FROM kb_uses WHERE article_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM kb_articles WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(change(&a, "delete"));
        tx.commit().await?;
        Ok(())
    }

    /// Records that the signed-in `actor` put article `id` into a reply in `dialog_id`
    /// (which they must be able to see). Counted once per article, dialog and operator;
    /// returns the article with its count and whether this use was new.
    pub(crate) async fn record_kb_use_impl(
        &self,
        actor: &Actor,
        id: Id,
        dialog_id: Id,
    ) -> StoreResult<(KbArticle, bool)> {
        let Some(user_id) = actor.user_id() else {
            return Err(StoreError::Forbidden(
                "suggestions are used by signed-in operators".into(),
            ));
        };
        // The dialog must be one the operator may see (NotFound otherwise).
        super::by_id::DIALOG
            .fetch(&self.pool, actor, dialog_id)
            .await?;
        let mut tx = self.write(actor).await?;
        let before = self.kb_article_for_update(&mut tx, id).await?;
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT article_id FROM kb_uses WHERE article_id = $1 AND dialog_id = $2 AND user_id = $3",
        )
        .bind(id)
        .bind(dialog_id)
        .bind(user_id)
        .fetch_optional(tx.conn())
        .await?;
        if seen.is_some() {
            return Ok((before, false));
        }
        sqlx::query(
            "INSERT INTO kb_uses (article_id, dialog_id, user_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(dialog_id)
        .bind(user_id)
        .bind(tx.now.micros())
        .execute(tx.conn())
        .await?;
        sqlx::query("UPDATE kb_articles SET used_count = used_count + 1 WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        let mut a = before;
        a.used_count += 1;
        tx.log(change(&a, "use"));
        tx.commit().await?;
        Ok((a, true))
    }

    async fn kb_article_for_update(
        &self,
        tx: &mut super::WriteTx,
        id: Id,
    ) -> StoreResult<KbArticle> {
        let mut sql = format!("SELECT {KB_COLS} FROM kb_articles WHERE id = $1");
        if tx.backend() == super::Backend::Postgres {
            sql.push_str(" FOR UPDATE");
        }
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound {
                entity: "knowledge base article",
            })?;
        article(&row)
    }
}
