//! iConsultant's storage: request types, operators' verdicts on readings, trained models.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::dialogs::dialog_change;
use super::validate_ref::department_exists;
use super::{rows, unchanged, Change, SqlStore, StoreError, StoreResult};
use crate::domain::validate::required_text;
use crate::domain::*;

/// Most request types a company may define (each is a classifier label).
pub const MAX_REQUEST_TYPES: i64 = 100;

const TYPE_COLS: &str =
    "key, name, department_id, auto_threshold, position, created_at, updated_at";

const FEEDBACK_COLS: &str = "id, message_id, user_id, predicted, label, verdict, text, updated_at";

const MODEL_COLS: &str = "id, engine, model, feedback_upto, examples, holdout_size, \
     holdout_accuracy, previous_accuracy, created_at";

fn require_admin(actor: &Actor) -> StoreResult<()> {
    if actor.has_scope(Scope::Admin) {
        Ok(())
    } else {
        Err(StoreError::Forbidden("this needs the admin role".into()))
    }
}

fn request_type(r: &AnyRow) -> StoreResult<RequestType> {
    Ok(RequestType {
        key: rows::text(r, "key")?,
        name: rows::text(r, "name")?,
        department_id: rows::opt_id(r, "department_id")?,
        auto_threshold: r.try_get("auto_threshold")?,
        position: rows::id(r, "position")?,
        created_at: rows::ts(r, "created_at")?,
        updated_at: rows::ts(r, "updated_at")?,
    })
}

fn feedback(r: &AnyRow) -> StoreResult<Feedback> {
    Ok(Feedback {
        id: rows::id(r, "id")?,
        message_id: rows::id(r, "message_id")?,
        user_id: rows::id(r, "user_id")?,
        predicted: rows::opt_text(r, "predicted")?,
        label: rows::text(r, "label")?,
        verdict: rows::parsed(r, "verdict", Verdict::parse)?,
        text: rows::text(r, "text")?,
        updated_at: rows::ts(r, "updated_at")?,
    })
}

fn stored_model(r: &AnyRow) -> StoreResult<StoredModel> {
    Ok(StoredModel {
        id: rows::id(r, "id")?,
        engine: rows::text(r, "engine")?,
        model: r.try_get("model")?,
        feedback_upto: rows::id(r, "feedback_upto")?,
        examples: rows::id(r, "examples")?,
        holdout_size: rows::id(r, "holdout_size")?,
        holdout_accuracy: r.try_get("holdout_accuracy")?,
        previous_accuracy: r.try_get("previous_accuracy")?,
        created_at: rows::ts(r, "created_at")?,
    })
}

/// The change-log entry of a request type (audit; keyed by name, so its id is 0 and the
/// key is in the data).
fn type_change(t: &RequestType, op: &'static str) -> Change {
    Change::new("request_type", 0, op, t)
}

/// Checks a request type key (the URL's).
fn check_key(key: &str) -> StoreResult<()> {
    if valid_type_key(key) {
        Ok(())
    } else {
        Err(FieldError::new(
            "key",
            "invalid_key",
            "a request type key is 1 to 64 lowercase letters, digits, '_' or '-'",
        )
        .into())
    }
}

impl SqlStore {
    pub(crate) async fn list_request_types_impl(&self) -> StoreResult<Vec<RequestType>> {
        let sql = format!("SELECT {TYPE_COLS} FROM request_types ORDER BY position, key");
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(request_type).collect()
    }

    pub(crate) async fn put_request_type_impl(
        &self,
        actor: &Actor,
        key: &str,
        input: &RequestTypeInput,
    ) -> StoreResult<(RequestType, bool)> {
        require_admin(actor)?;
        check_key(key)?;
        let name = required_text("name", &input.name, Limits::NAME)?;
        let threshold = input.auto_threshold.unwrap_or(0.8);
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(FieldError::new(
                "auto_threshold",
                "out_of_range",
                "the threshold is a probability: more than 0, at most 1",
            )
            .into());
        }
        let mut tx = self.write(actor).await?;
        if let Some(d) = input.department_id {
            department_exists(&mut tx, "department_id", d).await?;
        }
        let sql = format!("SELECT {TYPE_COLS} FROM request_types WHERE key = $1");
        let before = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(tx.conn())
            .await?
            .as_ref()
            .map(request_type)
            .transpose()?;
        match before {
            Some(before) => {
                let mut t = before.clone();
                t.name = name;
                t.department_id = input.department_id;
                t.auto_threshold = threshold;
                if let Some(p) = input.position {
                    t.position = p;
                }
                if unchanged(&before, &t) {
                    return Ok((before, false));
                }
                t.updated_at = tx.now;
                sqlx::query(
                    "UPDATE request_types SET name = $1, department_id = $2, auto_threshold = $3, \
                     position = $4, updated_at = $5 WHERE key = $6",
                )
                .bind(&t.name)
                .bind(t.department_id)
                .bind(t.auto_threshold)
                .bind(t.position)
                .bind(t.updated_at.micros())
                .bind(key)
                .execute(tx.conn())
                .await?;
                tx.log(type_change(&t, "update"));
                tx.commit().await?;
                Ok((t, false))
            }
            None => {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_types")
                    .fetch_one(tx.conn())
                    .await?;
                if count >= MAX_REQUEST_TYPES {
                    return Err(StoreError::Conflict {
                        field: "key".into(),
                        message: format!(
                            "there are {MAX_REQUEST_TYPES} request types already; delete one first"
                        ),
                    });
                }
                let position = match input.position {
                    Some(p) => p,
                    None => {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT COALESCE(MAX(position), 0) + 1 FROM request_types",
                        )
                        .fetch_one(tx.conn())
                        .await?
                    }
                };
                let sql = format!(
                    "INSERT INTO request_types ({TYPE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     RETURNING {TYPE_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(key)
                    .bind(&name)
                    .bind(input.department_id)
                    .bind(threshold)
                    .bind(position)
                    .bind(tx.now.micros())
                    .fetch_one(tx.conn())
                    .await
                    .map_err(super::conflict_on(
                        "key",
                        "the request type was created concurrently",
                    ))?;
                let t = request_type(&row)?;
                tx.log(type_change(&t, "create"));
                tx.commit().await?;
                Ok((t, true))
            }
        }
    }

    pub(crate) async fn delete_request_type_impl(
        &self,
        actor: &Actor,
        key: &str,
    ) -> StoreResult<()> {
        require_admin(actor)?;
        check_key(key)?;
        let mut tx = self.write(actor).await?;
        let sql = format!("SELECT {TYPE_COLS} FROM request_types WHERE key = $1");
        let t = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(tx.conn())
            .await?
            .as_ref()
            .map(request_type)
            .transpose()?
            .ok_or(StoreError::NotFound {
                entity: "request type",
            })?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_types")
            .fetch_one(tx.conn())
            .await?;
        if count <= 1 {
            return Err(StoreError::Conflict {
                field: "key".into(),
                message: "the last request type cannot be deleted".into(),
            });
        }
        // Dialogs keep the key they were given (history); the classifier stops offering it.
        sqlx::query("DELETE FROM request_types WHERE key = $1")
            .bind(key)
            .execute(tx.conn())
            .await?;
        tx.log(type_change(&t, "delete"));
        tx.commit().await?;
        Ok(())
    }

    /// Stores an operator's verdict on message `message_id`'s reading and gives the dialog
    /// the verdict's type. The caller has checked `label` against the request types.
    pub(crate) async fn save_feedback_impl(
        &self,
        actor: &Actor,
        message_id: Id,
        verdict: Verdict,
        label: Option<&str>,
    ) -> StoreResult<(Feedback, Dialog, Message)> {
        let Some(user_id) = actor.user_id() else {
            return Err(StoreError::Forbidden(
                "a verdict on a classification is a signed-in operator's".into(),
            ));
        };
        if let Some(l) = label {
            check_key(l).map_err(|_| {
                StoreError::Invalid(FieldError::new(
                    "request_type",
                    "invalid_key",
                    "not a request type key",
                ))
            })?;
        }
        let sql = format!(
            "SELECT {} FROM messages m WHERE m.id = $1",
            rows::MESSAGE_COLS
        );
        let m = sqlx::query(&sql)
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(rows::message)
            .transpose()?
            .ok_or(StoreError::NotFound { entity: "message" })?;
        // Seeing the message is seeing its dialog.
        super::Store::get_dialog(self, actor, m.dialog_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::NotFound { entity: "message" },
                other => other,
            })?;
        if m.direction != Direction::Inbound {
            return Err(FieldError::new(
                "message_id",
                "not_inbound",
                "only a customer's message has a request type",
            )
            .into());
        }
        let Some(text) = classifiable_text(m.subject.as_deref(), m.body.as_deref()) else {
            return Err(FieldError::new(
                "message_id",
                "no_text",
                "the message has no text to learn from",
            )
            .into());
        };
        let predicted = m
            .classification
            .as_ref()
            .and_then(|c| c.top())
            .map(|t| t.request_type.clone());
        // A like confirms the reading's top type; a dislike names the right one.
        let label = match (verdict, label, predicted.as_deref()) {
            (Verdict::Like, None, Some(top)) => top.to_owned(),
            (Verdict::Like, Some(l), Some(top)) if l != top => {
                return Err(FieldError::new(
                    "request_type",
                    "not_the_top_type",
                    format!("a like confirms the top type `{top}`; to name another, dislike"),
                )
                .into())
            }
            (_, Some(l), _) => l.to_owned(),
            (_, None, _) => {
                return Err(FieldError::new(
                    "request_type",
                    "required",
                    "the message has no reading to like: name its request type",
                )
                .into())
            }
        };
        let label = label.as_str();
        let mut tx = self.write(actor).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM request_types WHERE key = $1")
            .bind(label)
            .fetch_optional(tx.conn())
            .await?;
        if exists.is_none() {
            return Err(FieldError::new(
                "request_type",
                "unknown_type",
                format!("there is no request type `{label}`"),
            )
            .into());
        }
        // One verdict per operator and message: a new one replaces it (and gets a new id, so
        // that classifiers following the feedback by id learn it).
        sqlx::query("DELETE FROM classifier_feedback WHERE message_id = $1 AND user_id = $2")
            .bind(message_id)
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        let sql = format!(
            "INSERT INTO classifier_feedback (message_id, user_id, predicted, label, verdict, text, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {FEEDBACK_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(message_id)
            .bind(user_id)
            .bind(&predicted)
            .bind(label)
            .bind(verdict.as_str())
            .bind(&text)
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await?;
        let fb = feedback(&row)?;
        let sql = format!(
            "SELECT {} FROM dialogs d WHERE d.id = $1",
            rows::DIALOG_COLS
        );
        let mut d = rows::dialog(
            &sqlx::query(&sql)
                .bind(m.dialog_id)
                .fetch_one(tx.conn())
                .await?,
        )?;
        if d.request_type.as_deref() != Some(label)
            || d.request_type_by.as_deref() != Some("operator")
        {
            d.request_type = Some(label.to_owned());
            d.request_type_by = Some("operator".into());
            d.updated_at = tx.now;
            sqlx::query(
                "UPDATE dialogs SET request_type = $1, request_type_by = 'operator', updated_at = $2 WHERE id = $3",
            )
            .bind(label)
            .bind(d.updated_at.micros())
            .bind(d.id)
            .execute(tx.conn())
            .await?;
            tx.log(dialog_change(&d, "update"));
        }
        tx.commit().await?;
        Ok((fb, d, m))
    }

    pub(crate) async fn feedback_after_impl(
        &self,
        after: Id,
        limit: i64,
    ) -> StoreResult<Vec<Feedback>> {
        let sql = format!(
            "SELECT {FEEDBACK_COLS} FROM classifier_feedback WHERE id > $1 ORDER BY id LIMIT $2"
        );
        let rs = sqlx::query(&sql)
            .bind(after)
            .bind(limit.clamp(1, 100_000))
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(feedback).collect()
    }

    pub(crate) async fn latest_model_impl(&self, engine: &str) -> StoreResult<Option<StoredModel>> {
        let sql = format!(
            "SELECT {MODEL_COLS} FROM classifier_models WHERE engine = $1 ORDER BY id DESC LIMIT 1"
        );
        sqlx::query(&sql)
            .bind(engine)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(stored_model)
            .transpose()
    }

    pub(crate) async fn save_model_impl(&self, m: &StoredModel) -> StoreResult<Id> {
        let mut tx = self.write(&Actor::System).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO classifier_models (engine, model, feedback_upto, examples, holdout_size, \
             holdout_accuracy, previous_accuracy, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING id",
        )
        .bind(&m.engine)
        .bind(&m.model)
        .bind(m.feedback_upto)
        .bind(m.examples)
        .bind(m.holdout_size)
        .bind(m.holdout_accuracy)
        .bind(m.previous_accuracy)
        .bind(tx.now.micros())
        .fetch_one(tx.conn())
        .await?;
        // Older models of the engine are history nobody reads; keep the last few.
        sqlx::query(
            "DELETE FROM classifier_models WHERE engine = $1 AND id NOT IN \
             (SELECT id FROM classifier_models WHERE engine = $1 ORDER BY id DESC LIMIT 3)",
        )
        .bind(&m.engine)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(id)
    }
}
