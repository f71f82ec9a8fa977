//! The REST API under `/api/v1`. Every route is registered through `utoipa-axum`, so the
//! OpenAPI document at `/api/v1/openapi.json` is generated from the same list as the router
//! and cannot drift from it.

pub mod admin;
pub mod assist;
pub mod auth;
pub mod canned;
pub mod clients;
pub mod dialogs;
pub mod files;
pub mod interests;
pub mod kb;
pub mod realtime;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Kommutator API", version = "1", description = "REST API of the Kommutator hub. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`."),
    modifiers(&Security),
    tags(
        (name = "auth", description = "sign-in and sessions"),
        (name = "admin", description = "users, departments, API keys, custom fields, audit, change log"),
        (name = "clients", description = "clients, contacts, identities, Feed"),
        (name = "leads", description = "unknown senders and their conversion"),
        (name = "interests", description = "deals, sales scenarios and stages"),
        (name = "interactions", description = "calls, meetings, emails, notes, tasks"),
        (name = "dialogs", description = "conversations and messages"),
        (name = "calls", description = "phone calls"),
        (name = "canned responses", description = "ready answers for replies: personal, per department, global"),
        (name = "iconsultant", description = "request types, the classifier's readings of inquiries, operators' verdicts, the knowledge base and its suggestions"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a session token from /auth/login, or an API key"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                super::extract::SESSION_COOKIE,
            ))),
        );
    }
}

/// All API routes with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::get_user, admin::update_user))
        .routes(routes!(admin::list_departments, admin::create_department))
        .routes(routes!(admin::list_api_keys, admin::create_api_key))
        .routes(routes!(admin::revoke_api_key))
        .routes(routes!(
            admin::list_custom_fields,
            admin::create_custom_field
        ))
        .routes(routes!(
            admin::update_custom_field,
            admin::delete_custom_field
        ))
        .routes(routes!(admin::list_scenarios, admin::create_scenario))
        .routes(routes!(admin::audit))
        .routes(routes!(realtime::post_event))
        .routes(routes!(realtime::post_batch))
        .routes(routes!(realtime::position))
        .routes(routes!(realtime::assignments))
        .routes(routes!(realtime::assign))
        .routes(routes!(realtime::operators))
        .routes(routes!(realtime::get_routing, realtime::update_routing))
        .routes(routes!(realtime::set_capacity))
        .routes(routes!(realtime::connectors))
        .routes(routes!(files::get_file))
        .routes(routes!(files::get_file_by_key))
        .routes(routes!(files::message_html))
        .routes(routes!(admin::changes))
        .routes(routes!(clients::search_clients, clients::create_client))
        .routes(routes!(clients::get_client, clients::update_client))
        .routes(routes!(clients::client_feed))
        .routes(routes!(clients::create_contact))
        .routes(routes!(clients::get_contact, clients::update_contact))
        .routes(routes!(clients::contact_feed))
        .routes(routes!(clients::create_identity))
        .routes(routes!(clients::lookup_identity))
        .routes(routes!(clients::delete_identity))
        .routes(routes!(clients::list_leads, clients::create_lead))
        .routes(routes!(clients::get_lead, clients::update_lead))
        .routes(routes!(clients::convert_lead))
        .routes(routes!(clients::lead_feed))
        .routes(routes!(
            interests::list_interests,
            interests::create_interest
        ))
        .routes(routes!(interests::get_interest, interests::update_interest))
        .routes(routes!(interests::move_stage))
        .routes(routes!(interests::stage_history))
        .routes(routes!(interests::interest_feed))
        .routes(routes!(
            interests::list_interactions,
            interests::create_interaction
        ))
        .routes(routes!(
            interests::get_interaction,
            interests::update_interaction
        ))
        .routes(routes!(dialogs::list_dialogs, dialogs::create_dialog))
        .routes(routes!(dialogs::get_dialog, dialogs::update_dialog))
        .routes(routes!(dialogs::list_messages, dialogs::add_message))
        .routes(routes!(dialogs::update_delivery))
        .routes(routes!(dialogs::list_calls, dialogs::record_call))
        .routes(routes!(dialogs::get_call, dialogs::update_call))
        .routes(routes!(dialogs::originate_call))
        .routes(routes!(dialogs::outgoing_channels))
        .routes(routes!(
            canned::list_canned_responses,
            canned::create_canned_response
        ))
        .routes(routes!(
            canned::update_canned_response,
            canned::delete_canned_response
        ))
        .routes(routes!(assist::list_request_types))
        .routes(routes!(
            assist::put_request_type,
            assist::delete_request_type
        ))
        .routes(routes!(assist::classification_feedback))
        .routes(routes!(assist::classify))
        .routes(routes!(assist::retrain))
        .routes(routes!(assist::status))
        .routes(routes!(kb::list_kb_articles, kb::create_kb_article))
        .routes(routes!(
            kb::get_kb_article,
            kb::update_kb_article,
            kb::delete_kb_article
        ))
        .routes(routes!(kb::search_kb))
        .routes(routes!(kb::record_kb_use))
        .routes(routes!(kb::dialog_suggestions))
}
