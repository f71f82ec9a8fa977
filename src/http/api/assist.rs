//! iConsultant: request types, the classifier's readings and operators' verdicts on them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::assist::{EngineStatus, RetrainReport};
use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Auth, IdPath};
use crate::http::AppState;

/// The request types, in picker order.
#[utoipa::path(get, path = "/api/v1/request-types", tag = "iconsultant",
    responses((status = 200, body = Vec<RequestType>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_request_types(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<RequestType>>, ApiError> {
    a.require(Scope::DialogsRead)?;
    Ok(Json(s.store.list_request_types().await?))
}

/// Create or change a request type (admin). Its key is the classifier's label: a new type
/// is predicted once operators have given it a few inquiries (dislike + this type).
#[utoipa::path(put, path = "/api/v1/request-types/{key}", tag = "iconsultant",
    params(("key" = String, Path, description = "1 to 64 lowercase letters, digits, '_' or '-'")),
    request_body = RequestTypeInput,
    responses((status = 200, body = RequestType), (status = 201, body = RequestType), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_request_type(
    State(s): State<AppState>,
    a: Auth,
    Path(key): Path<String>,
    ApiJson(input): ApiJson<RequestTypeInput>,
) -> Result<(StatusCode, Json<RequestType>), ApiError> {
    a.require(Scope::Admin)?;
    let (t, created) = s.store.put_request_type(&a.actor, &key, &input).await?;
    s.consultant.reload_types().await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(t)))
}

/// Delete a request type (admin). Inquiries keep the type they were given; the classifier
/// no longer offers it. The last type cannot be deleted (`409`).
#[utoipa::path(delete, path = "/api/v1/request-types/{key}", tag = "iconsultant",
    params(("key" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_request_type(
    State(s): State<AppState>,
    a: Auth,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    a.require(Scope::Admin)?;
    s.store.delete_request_type(&a.actor, &key).await?;
    s.consultant.reload_types().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a verdict did.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResult {
    /// The stored verdict.
    pub feedback: Feedback,
    /// The dialog, now of the verdict's type (`request_type_by: operator`).
    pub dialog: Dialog,
    /// How the classifier reads the same text now that it learned the verdict.
    pub classification: Option<Classification>,
}

/// Like the classifier's reading of an inbound message (its top type is right), or dislike
/// it and name the right type. The verdict is stored (one per operator and message; a new
/// one replaces it), the dialog takes the type, and the classifier learns it at once.
#[utoipa::path(post, path = "/api/v1/messages/{id}/classification", tag = "iconsultant",
    params(("id" = i64, Path)), request_body = FeedbackInput,
    responses((status = 200, body = FeedbackResult), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn classification_feedback(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<FeedbackInput>,
) -> Result<Json<FeedbackResult>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    let (feedback, dialog, classification) = s.consultant.feedback(&a.actor, id, &input).await?;
    Ok(Json(FeedbackResult {
        feedback,
        dialog,
        classification,
    }))
}

/// A text to classify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyInput {
    /// Subject (email, form), optional.
    #[serde(default)]
    pub subject: Option<String>,
    /// The text.
    pub text: String,
}

/// How the classifier reads a text, without storing anything (for admins tuning thresholds,
/// and integrations). `422 no_text` when there is nothing to read.
#[utoipa::path(post, path = "/api/v1/assist/classify", tag = "iconsultant", request_body = ClassifyInput,
    responses((status = 200, body = Classification), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn classify(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<ClassifyInput>,
) -> Result<Json<Classification>, ApiError> {
    a.require(Scope::DialogsRead)?;
    s.consultant
        .classify_off_thread(input.subject.as_deref(), Some(&input.text))
        .await
        .map(Json)
        .ok_or_else(|| FieldError::new("text", "no_text", "there is no text to classify").into())
}

/// Which engine classifies (`ngram`: engine 1, `encoder`: engine 2), the model in use,
/// what `[assist] engine` asked for, why engine 2 is not classifying when it is not (no
/// model files, a damaged file, still learning the seed set), and how many knowledge-base
/// articles this node has embedded for search by meaning.
#[utoipa::path(get, path = "/api/v1/assist/status", tag = "iconsultant",
    responses((status = 200, body = EngineStatus), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn status(State(s): State<AppState>, a: Auth) -> Result<Json<EngineStatus>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let mut status = s.consultant.status();
    status.kb_articles = s.knowledge.len();
    status.kb_embedded = s.knowledge.embedded();
    Ok(Json(status))
}

/// Retrain the classifier now (admin) on the seed set and every verdict outside the
/// held-back slice (every fifth); the new model replaces the one in use only if it is not
/// worse on that slice. Waits for at least 50 verdicts.
#[utoipa::path(post, path = "/api/v1/assist/retrain", tag = "iconsultant",
    responses((status = 200, body = RetrainReport), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn retrain(State(s): State<AppState>, a: Auth) -> Result<Json<RetrainReport>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(s.consultant.retrain().await?))
}
