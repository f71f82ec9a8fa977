//! iConsultant's knowledge base: articles, search, suggestions for a dialog, and which
//! suggestion an operator used.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kommutator_kb::KbFilter;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;

/// Default and largest page of a listing or search.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// One article found by a search, with its relevance.
#[derive(Debug, Serialize, ToSchema)]
pub struct KbHit {
    /// The article.
    pub article: KbArticle,
    /// Relevance (comparable within one search); `null` in a plain listing.
    pub score: Option<f32>,
}

/// Articles: with `q`, those matching the text best first (Russian and English stemming;
/// any text, the first 32 KiB count); without it, all of them newest first. Filters by
/// department (that department's and everyone's), audience and language.
#[utoipa::path(get, path = "/api/v1/kb/articles", tag = "iconsultant", params(KbQuery),
    responses((status = 200, body = Vec<KbHit>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_kb_articles(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(q): ApiQuery<KbQuery>,
) -> Result<Json<Vec<KbHit>>, ApiError> {
    a.require(Scope::DialogsRead)?;
    find(&s, &q).await.map(Json)
}

/// The same search with the query in a JSON body, for texts longer than a URL carries
/// (a whole email: up to the 1 MiB body limit; the first 32 KiB count).
#[utoipa::path(post, path = "/api/v1/kb/search", tag = "iconsultant", request_body = KbQuery,
    responses((status = 200, body = Vec<KbHit>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn search_kb(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(q): ApiJson<KbQuery>,
) -> Result<Json<Vec<KbHit>>, ApiError> {
    a.require(Scope::DialogsRead)?;
    find(&s, &q).await.map(Json)
}

async fn find(s: &AppState, q: &KbQuery) -> Result<Vec<KbHit>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(FieldError::new(
            "limit",
            "out_of_range",
            format!("limit is 1 to {MAX_LIMIT}"),
        )
        .into());
    }
    let limit = usize::try_from(limit).unwrap_or(50);
    let language = match q.language.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l) => Some(l.to_ascii_lowercase()),
    };
    let filter = KbFilter {
        department_ids: q.department_id.map(|d| vec![d]),
        public_only: q.public == Some(true),
        language: language.clone(),
    };
    if let Some(text) = q.q.as_deref().filter(|t| !t.trim().is_empty()) {
        let found = s.knowledge.search(text, filter, limit).await?;
        return Ok(found
            .into_iter()
            .map(|(art, score)| KbHit {
                article: (*art).clone(),
                score: Some(score),
            })
            .collect());
    }
    let mut all = s.store.list_kb_articles().await?;
    all.retain(|art| {
        q.department_id
            .is_none_or(|d| art.department_id.is_none() || art.department_id == Some(d))
            && (q.public != Some(true) || art.public)
            && language.as_deref().is_none_or(|l| art.language == l)
    });
    all.sort_by(|x, y| y.updated_at.cmp(&x.updated_at).then(y.id.cmp(&x.id)));
    all.truncate(limit);
    Ok(all
        .into_iter()
        .map(|article| KbHit {
            article,
            score: None,
        })
        .collect())
}

/// One article.
#[utoipa::path(get, path = "/api/v1/kb/articles/{id}", tag = "iconsultant", params(("id" = i64, Path)),
    responses((status = 200, body = KbArticle), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_kb_article(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<KbArticle>, ApiError> {
    a.require(Scope::DialogsRead)?;
    s.store
        .get_kb_articles(&[id])
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| {
            crate::storage::StoreError::NotFound {
                entity: "knowledge base article",
            }
            .into()
        })
}

/// Write an article (admins; supervisors for their department and everyone's). It is
/// searchable when this answers.
#[utoipa::path(post, path = "/api/v1/kb/articles", tag = "iconsultant", request_body = NewKbArticle,
    responses((status = 201, body = KbArticle), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_kb_article(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewKbArticle>,
) -> Result<(StatusCode, Json<KbArticle>), ApiError> {
    a.require(Scope::DialogsRead)?;
    let art = s.store.create_kb_article(&a.actor, &input).await?;
    s.knowledge.refresh(&[art.id]).await?;
    Ok((StatusCode::CREATED, Json(art)))
}

/// Change an article; the index has the change when this answers.
#[utoipa::path(patch, path = "/api/v1/kb/articles/{id}", tag = "iconsultant", params(("id" = i64, Path)),
    request_body = KbArticlePatch,
    responses((status = 200, body = KbArticle), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_kb_article(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<KbArticlePatch>,
) -> Result<Json<KbArticle>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let art = s.store.update_kb_article(&a.actor, id, &patch).await?;
    s.knowledge.refresh(&[art.id]).await?;
    Ok(Json(art))
}

/// Delete an article; it is no longer found or suggested when this answers.
#[utoipa::path(delete, path = "/api/v1/kb/articles/{id}", tag = "iconsultant", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_kb_article(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    a.require(Scope::DialogsRead)?;
    s.store.delete_kb_article(&a.actor, id).await?;
    s.knowledge.refresh(&[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What recording a use did.
#[derive(Debug, Serialize, ToSchema)]
pub struct KbUseResult {
    /// The article with its new count.
    pub article: KbArticle,
    /// False when this operator had already used it in this dialog (counted once).
    pub counted: bool,
}

/// The operator put this suggestion into a reply in a dialog: counted once per article,
/// dialog and operator, and ranks the article higher in later suggestions.
#[utoipa::path(post, path = "/api/v1/kb/articles/{id}/uses", tag = "iconsultant", params(("id" = i64, Path)),
    request_body = KbUseInput,
    responses((status = 200, body = KbUseResult), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn record_kb_use(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<KbUseInput>,
) -> Result<Json<KbUseResult>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    let (article, counted) = s.store.record_kb_use(&a.actor, id, input.dialog_id).await?;
    s.knowledge.refresh(&[id]).await?;
    Ok(Json(KbUseResult { article, counted }))
}

/// The suggestions for a dialog.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestions {
    /// The dialog.
    pub dialog_id: Id,
    /// Best first, at most five.
    pub suggestions: Vec<KbSuggestion>,
}

/// The best answers from the knowledge base for the dialog's latest inbound messages, among
/// its department's articles and everyone's. A console with the dialog open also gets them
/// pushed (`kb_suggestions` events on `dialog:{id}`) after each new inbound message.
#[utoipa::path(get, path = "/api/v1/dialogs/{id}/suggestions", tag = "iconsultant", params(("id" = i64, Path)),
    responses((status = 200, body = Suggestions), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn dialog_suggestions(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Suggestions>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let d = s.store.get_dialog(&a.actor, id).await?;
    let suggestions = s.knowledge.suggestions_for(&d).await?;
    Ok(Json(Suggestions {
        dialog_id: d.id,
        suggestions,
    }))
}
