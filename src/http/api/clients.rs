//! Clients, contacts, identities, leads and the Feed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;
use crate::storage::{ClientQuery, Cursor, FeedQuery, FeedTarget, IdentityOwner, ListFilter};

pub(crate) fn cursor(c: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    c.map(Cursor::decode).transpose().map_err(ApiError::from)
}

/// Client search.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClientSearch {
    /// Prefix of the name or of any word of it.
    pub q: Option<String>,
    /// Phone number in any format.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Messenger kind for `messenger_id`: `telegram`, `vk`, `whatsapp`, `web_visitor`.
    pub messenger: Option<String>,
    /// Messenger id.
    pub messenger_id: Option<String>,
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// A page of clients.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ClientPage {
    /// Clients.
    pub items: Vec<Client>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// List or search clients (by name prefix, phone, email or messenger id).
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", params(ClientSearch),
    responses((status = 200, body = ClientPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn search_clients(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(q): ApiQuery<ClientSearch>,
) -> Result<Json<ClientPage>, ApiError> {
    a.require(Scope::ClientsRead)?;
    let messenger = match (q.messenger, q.messenger_id) {
        (Some(k), Some(v)) => {
            let kind = match k.parse::<IdentityKind>() {
                Ok(
                    k @ (IdentityKind::Telegram
                    | IdentityKind::Vk
                    | IdentityKind::Whatsapp
                    | IdentityKind::WebVisitor),
                ) => k,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "messenger is one of telegram, vk, whatsapp, web_visitor",
                    ))
                }
            };
            Some((kind, v))
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give messenger and messenger_id together",
            ))
        }
    };
    if q.q.as_deref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is at most 200 characters",
        ));
    }
    let query = ClientQuery {
        q: q.q,
        phone: q.phone,
        email: q.email,
        messenger,
        limit: q.limit.unwrap_or(50),
        cursor: cursor(q.cursor.as_deref())?,
    };
    let page = s.store.search_clients(&a.actor, &query).await?;
    Ok(Json(ClientPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Create a client with its identities.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", request_body = NewClient,
    responses((status = 201, body = ClientCard), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_client(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewClient>,
) -> Result<(StatusCode, Json<ClientCard>), ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_client(&a.actor, &input).await?),
    ))
}

/// The client card: client, contacts, identities.
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients", params(("id" = i64, Path)),
    responses((status = 200, body = ClientCard), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_client(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<ClientCard>, ApiError> {
    a.require(Scope::ClientsRead)?;
    Ok(Json(s.store.get_client(&a.actor, id).await?))
}

/// Change a client.
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", params(("id" = i64, Path)), request_body = ClientPatch,
    responses((status = 200, body = Client), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_client(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<ClientPatch>,
) -> Result<Json<Client>, ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok(Json(s.store.update_client(&a.actor, id, &p).await?))
}

/// Feed paging and filtering.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Comma-separated kinds: note, task, meeting, call, email, message, interest.
    pub kinds: Option<String>,
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// A Feed page.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct FeedPage {
    /// Entries, newest first.
    pub items: Vec<FeedEntry>,
    /// Cursor of the next (older) page.
    pub next_cursor: Option<String>,
}

pub(crate) async fn feed_of(
    s: &AppState,
    a: &Auth,
    target: FeedTarget,
    p: FeedParams,
) -> Result<Json<FeedPage>, ApiError> {
    a.require(Scope::InteractionsRead)?;
    let mut kinds = Vec::new();
    for k in p
        .kinds
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        kinds.push(FeedKind::parse(k).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown feed kind `{}`; use note, task, meeting, call, email, message, interest", k.chars().take(30).collect::<String>()))
        })?);
    }
    let q = FeedQuery {
        target,
        kinds,
        limit: p.limit.unwrap_or(50),
        cursor: cursor(p.cursor.as_deref())?,
    };
    let page = s.store.feed(&a.actor, &q).await?;
    Ok(Json(FeedPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// The client's Feed: everything tied to it, newest first.
#[utoipa::path(get, path = "/api/v1/clients/{id}/feed", tag = "clients", params(("id" = i64, Path), FeedParams),
    responses((status = 200, body = FeedPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn client_feed(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
    feed_of(&s, &a, FeedTarget::Client(id), p).await
}

/// Add a contact person to a client.
#[utoipa::path(post, path = "/api/v1/clients/{id}/contacts", tag = "clients", params(("id" = i64, Path)), request_body = NewContact,
    responses((status = 201, body = Contact), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_contact(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<NewContact>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_contact(&a.actor, id, &input).await?),
    ))
}

/// One contact.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "clients", params(("id" = i64, Path)),
    responses((status = 200, body = Contact), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_contact(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Contact>, ApiError> {
    a.require(Scope::ClientsRead)?;
    Ok(Json(s.store.get_contact(&a.actor, id).await?))
}

/// Change a contact.
#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "clients", params(("id" = i64, Path)), request_body = ContactPatch,
    responses((status = 200, body = Contact), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_contact(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<ContactPatch>,
) -> Result<Json<Contact>, ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok(Json(s.store.update_contact(&a.actor, id, &p).await?))
}

/// The contact's Feed.
#[utoipa::path(get, path = "/api/v1/contacts/{id}/feed", tag = "clients", params(("id" = i64, Path), FeedParams),
    responses((status = 200, body = FeedPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn contact_feed(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
    feed_of(&s, &a, FeedTarget::Contact(id), p).await
}

/// A new identity and its owner (exactly one of the three).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIdentity {
    /// Channel kind.
    #[schema(value_type = String, example = "phone")]
    pub kind: IdentityKind,
    /// Value as written.
    pub value: String,
    /// Owner: a client.
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Owner: a contact.
    #[serde(default)]
    pub contact_id: Option<Id>,
    /// Owner: a lead.
    #[serde(default)]
    pub lead_id: Option<Id>,
}

/// Record a channel identity. A phone, email or messenger id belongs to one owner only.
#[utoipa::path(post, path = "/api/v1/identities", tag = "clients", request_body = NewIdentity,
    responses((status = 201, body = Identity), (status = 409, body = ErrorBody, description = "already recorded"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_identity(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(n): ApiJson<NewIdentity>,
) -> Result<(StatusCode, Json<Identity>), ApiError> {
    a.require(Scope::ClientsWrite)?;
    let owner = match (n.client_id, n.contact_id, n.lead_id) {
        (Some(c), None, None) => IdentityOwner::Client(c),
        (None, Some(c), None) => IdentityOwner::Contact(c),
        (None, None, Some(l)) => IdentityOwner::Lead(l),
        _ => {
            return Err(ApiError::from(FieldError::new(
                "client_id",
                "invalid_owner",
                "give exactly one of client_id, contact_id, lead_id",
            )))
        }
    };
    let input = IdentityInput {
        kind: n.kind,
        value: n.value,
    };
    Ok((
        StatusCode::CREATED,
        Json(s.store.add_identity(&a.actor, owner, &input).await?),
    ))
}

/// Identity lookup.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IdentityLookup {
    /// Channel kind.
    pub kind: String,
    /// Value in any format (normalized before lookup).
    pub value: String,
}

/// Who is this phone / email / messenger id? The intake wizard's first question.
#[utoipa::path(get, path = "/api/v1/identities/lookup", tag = "clients", params(IdentityLookup),
    responses((status = 200, body = Identity), (status = 404, body = ErrorBody, description = "unknown"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn lookup_identity(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(q): ApiQuery<IdentityLookup>,
) -> Result<Json<Identity>, ApiError> {
    a.require(Scope::ClientsRead)?;
    let kind: IdentityKind = q.kind.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "kind is one of phone, email, telegram, vk, whatsapp, web_visitor",
        )
    })?;
    s.store
        .find_identity(&a.actor, kind, &q.value)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("identity"))
}

/// Remove an identity.
#[utoipa::path(delete, path = "/api/v1/identities/{id}", tag = "clients", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_identity(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    a.require(Scope::ClientsWrite)?;
    s.store.delete_identity(&a.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Listing filters shared by leads, Interests, interactions, dialogs and calls.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Client.
    pub client_id: Option<Id>,
    /// Lead.
    pub lead_id: Option<Id>,
    /// Interest.
    pub interest_id: Option<Id>,
    /// Responsible / assigned / operator user.
    pub user_id: Option<Id>,
    /// Department.
    pub department_id: Option<Id>,
    /// Status.
    pub status: Option<String>,
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub(crate) fn filter(self, allowed_status: &[&str]) -> Result<ListFilter, ApiError> {
        if let Some(s) = &self.status {
            if !allowed_status.contains(&s.as_str()) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("status is one of {}", allowed_status.join(", ")),
                ));
            }
        }
        Ok(ListFilter {
            client_id: self.client_id,
            lead_id: self.lead_id,
            interest_id: self.interest_id,
            user_id: self.user_id,
            department_id: self.department_id,
            status: self.status,
            limit: self.limit.unwrap_or(50),
            cursor: cursor(self.cursor.as_deref())?,
        })
    }
}

/// A page of leads.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct LeadPage {
    /// Leads, newest first.
    pub items: Vec<Lead>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Leads, newest first.
#[utoipa::path(get, path = "/api/v1/leads", tag = "leads", params(ListParams),
    responses((status = 200, body = LeadPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_leads(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<LeadPage>, ApiError> {
    a.require(Scope::ClientsRead)?;
    let page = s
        .store
        .list_leads(&a.actor, &p.filter(&["open", "converted", "rejected"])?)
        .await?;
    Ok(Json(LeadPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Create a lead (an unknown sender); its phone and email become identities.
#[utoipa::path(post, path = "/api/v1/leads", tag = "leads", request_body = NewLead,
    responses((status = 201, body = Lead), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_lead(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewLead>,
) -> Result<(StatusCode, Json<Lead>), ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_lead(&a.actor, &input).await?),
    ))
}

/// One lead.
#[utoipa::path(get, path = "/api/v1/leads/{id}", tag = "leads", params(("id" = i64, Path)),
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_lead(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Lead>, ApiError> {
    a.require(Scope::ClientsRead)?;
    Ok(Json(s.store.get_lead(&a.actor, id).await?))
}

/// Change a lead.
#[utoipa::path(patch, path = "/api/v1/leads/{id}", tag = "leads", params(("id" = i64, Path)), request_body = LeadPatch,
    responses((status = 200, body = Lead), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_lead(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<LeadPatch>,
) -> Result<Json<Lead>, ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok(Json(s.store.update_lead(&a.actor, id, &p).await?))
}

/// Turn a lead into a client (new or existing); all its history moves to the client.
#[utoipa::path(post, path = "/api/v1/leads/{id}/convert", tag = "leads", params(("id" = i64, Path)), request_body = ConvertLead,
    responses((status = 200, body = LeadConversion), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn convert_lead(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ConvertLead>,
) -> Result<Json<LeadConversion>, ApiError> {
    a.require(Scope::ClientsWrite)?;
    Ok(Json(s.store.convert_lead(&a.actor, id, &input).await?))
}

/// The lead's Feed.
#[utoipa::path(get, path = "/api/v1/leads/{id}/feed", tag = "leads", params(("id" = i64, Path), FeedParams),
    responses((status = 200, body = FeedPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn lead_feed(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
    feed_of(&s, &a, FeedTarget::Lead(id), p).await
}
