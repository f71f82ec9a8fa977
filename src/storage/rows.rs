//! Turning rows into domain values. Column lists live next to their decoders so that a
//! `SELECT` and its decoding cannot drift apart.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{StoreError, StoreResult};
use crate::domain::*;

fn get<T>(r: &AnyRow, col: &str) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    r.try_get::<T, _>(col).map_err(StoreError::from)
}

pub(crate) fn id(r: &AnyRow, col: &str) -> StoreResult<Id> {
    get::<i64>(r, col)
}

pub(crate) fn opt_id(r: &AnyRow, col: &str) -> StoreResult<Option<Id>> {
    get::<Option<i64>>(r, col)
}

pub(crate) fn text(r: &AnyRow, col: &str) -> StoreResult<String> {
    get::<String>(r, col)
}

pub(crate) fn opt_text(r: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    get::<Option<String>>(r, col)
}

pub(crate) fn ts(r: &AnyRow, col: &str) -> StoreResult<Timestamp> {
    get::<i64>(r, col).map(Timestamp)
}

pub(crate) fn opt_ts(r: &AnyRow, col: &str) -> StoreResult<Option<Timestamp>> {
    get::<Option<i64>>(r, col).map(|v| v.map(Timestamp))
}

pub(crate) fn flag(r: &AnyRow, col: &str) -> StoreResult<bool> {
    get::<i64>(r, col).map(|v| v != 0)
}

pub(crate) fn parsed<T>(
    r: &AnyRow,
    col: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<T> {
    let s = text(r, col)?;
    parse(&s).ok_or_else(|| StoreError::Corrupt(format!("{col} = {s:?}")))
}

fn json_map(r: &AnyRow, col: &str) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
    let s = text(r, col)?;
    serde_json::from_str(&s).map_err(|_| StoreError::Corrupt(format!("{col} is not a JSON object")))
}

pub(crate) const USER_COLS: &str =
    "u.id, u.login, u.name, u.email, u.role, u.department_id, u.active, u.must_change_password, u.extension, u.created_at, \
     u.updated_at";

pub(crate) fn user(r: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: id(r, "id")?,
        login: text(r, "login")?,
        name: text(r, "name")?,
        email: opt_text(r, "email")?,
        role: parsed(r, "role", Role::parse)?,
        department_id: opt_id(r, "department_id")?,
        active: flag(r, "active")?,
        must_change_password: flag(r, "must_change_password")?,
        extension: opt_text(r, "extension")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) fn department(r: &AnyRow) -> StoreResult<Department> {
    Ok(Department {
        id: id(r, "id")?,
        name: text(r, "name")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(crate) const API_KEY_COLS: &str =
    "k.id, k.name, k.prefix, k.key_hash, k.scopes, k.created_at, k.last_used_at, k.revoked_at";

pub(crate) fn api_key(r: &AnyRow) -> StoreResult<ApiKey> {
    let scopes = text(r, "scopes")?
        .split_whitespace()
        .map(|s| Scope::parse(s).ok_or_else(|| StoreError::Corrupt(format!("scope {s:?}"))))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(ApiKey {
        id: id(r, "id")?,
        name: text(r, "name")?,
        prefix: text(r, "prefix")?,
        scopes,
        created_at: ts(r, "created_at")?,
        last_used_at: opt_ts(r, "last_used_at")?,
        revoked_at: opt_ts(r, "revoked_at")?,
    })
}

pub(crate) const CUSTOM_FIELD_COLS: &str =
    "f.id, f.key, f.label, f.field_type, f.options, f.required, f.position, f.created_at";

pub(crate) fn custom_field(r: &AnyRow) -> StoreResult<CustomField> {
    let options: Vec<String> = serde_json::from_str(&text(r, "options")?)
        .map_err(|_| StoreError::Corrupt("custom field options".into()))?;
    Ok(CustomField {
        id: id(r, "id")?,
        key: text(r, "key")?,
        label: text(r, "label")?,
        field_type: parsed(r, "field_type", CustomFieldType::parse)?,
        options,
        required: flag(r, "required")?,
        position: id(r, "position")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(crate) const CANNED_COLS: &str =
    "cr.id, cr.scope, cr.department_id, cr.user_id, cr.shortcut, cr.title, cr.body, \
     cr.created_at, cr.updated_at";

pub(crate) fn canned_response(r: &AnyRow) -> StoreResult<CannedResponse> {
    Ok(CannedResponse {
        id: id(r, "id")?,
        scope: parsed(r, "scope", CannedScope::parse)?,
        department_id: opt_id(r, "department_id")?,
        user_id: opt_id(r, "user_id")?,
        shortcut: text(r, "shortcut")?,
        title: text(r, "title")?,
        body: text(r, "body")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const CLIENT_COLS: &str = "c.id, c.kind, c.name, c.name_norm, c.notes, c.custom_fields, \
     c.responsible_id, c.department_id, c.shared, c.converted_from_lead_id, c.created_at, c.updated_at";

pub(crate) fn client(r: &AnyRow) -> StoreResult<Client> {
    Ok(Client {
        id: id(r, "id")?,
        kind: parsed(r, "kind", ClientKind::parse)?,
        name: text(r, "name")?,
        notes: opt_text(r, "notes")?,
        custom_fields: json_map(r, "custom_fields")?,
        responsible_id: opt_id(r, "responsible_id")?,
        department_id: opt_id(r, "department_id")?,
        shared: flag(r, "shared")?,
        converted_from_lead_id: opt_id(r, "converted_from_lead_id")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const CONTACT_COLS: &str =
    "ct.id, ct.client_id, ct.name, ct.position, ct.notes, ct.created_at, ct.updated_at";

pub(crate) fn contact(r: &AnyRow) -> StoreResult<Contact> {
    Ok(Contact {
        id: id(r, "id")?,
        client_id: id(r, "client_id")?,
        name: text(r, "name")?,
        position: opt_text(r, "position")?,
        notes: opt_text(r, "notes")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const IDENTITY_COLS: &str =
    "i.id, i.kind, i.value, i.client_id, i.contact_id, i.lead_id, i.created_at";

pub(crate) fn identity(r: &AnyRow) -> StoreResult<Identity> {
    Ok(Identity {
        id: id(r, "id")?,
        kind: parsed(r, "kind", |s| s.parse().ok())?,
        value: text(r, "value")?,
        client_id: opt_id(r, "client_id")?,
        contact_id: opt_id(r, "contact_id")?,
        lead_id: opt_id(r, "lead_id")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(crate) const LEAD_COLS: &str = "l.id, l.name, l.company_name, l.phone, l.email, l.source, l.status, \
     l.converted_client_id, l.converted_at, l.responsible_id, l.department_id, l.shared, l.created_at, l.updated_at";

pub(crate) fn lead(r: &AnyRow) -> StoreResult<Lead> {
    Ok(Lead {
        id: id(r, "id")?,
        name: text(r, "name")?,
        company_name: opt_text(r, "company_name")?,
        phone: opt_text(r, "phone")?,
        email: opt_text(r, "email")?,
        source: opt_text(r, "source")?,
        status: parsed(r, "status", LeadStatus::parse)?,
        converted_client_id: opt_id(r, "converted_client_id")?,
        converted_at: opt_ts(r, "converted_at")?,
        responsible_id: opt_id(r, "responsible_id")?,
        department_id: opt_id(r, "department_id")?,
        shared: flag(r, "shared")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) fn stage(r: &AnyRow) -> StoreResult<Stage> {
    Ok(Stage {
        id: id(r, "id")?,
        position: id(r, "position")?,
        name: text(r, "name")?,
        outcome: parsed(r, "outcome", StageOutcome::parse)?,
    })
}

pub(crate) const INTEREST_COLS: &str = "n.id, n.title, n.client_id, n.contact_id, n.lead_id, n.scenario_id, \
     n.stage_id, n.status, n.amount_minor, n.currency, n.source, n.responsible_id, n.department_id, n.shared, \
     n.closed_at, n.created_at, n.updated_at";

pub(crate) fn interest(r: &AnyRow) -> StoreResult<Interest> {
    Ok(Interest {
        id: id(r, "id")?,
        title: text(r, "title")?,
        client_id: opt_id(r, "client_id")?,
        contact_id: opt_id(r, "contact_id")?,
        lead_id: opt_id(r, "lead_id")?,
        scenario_id: id(r, "scenario_id")?,
        stage_id: id(r, "stage_id")?,
        status: parsed(r, "status", StageOutcome::parse)?,
        amount_minor: opt_id(r, "amount_minor")?,
        currency: text(r, "currency")?,
        source: opt_text(r, "source")?,
        responsible_id: opt_id(r, "responsible_id")?,
        department_id: opt_id(r, "department_id")?,
        shared: flag(r, "shared")?,
        closed_at: opt_ts(r, "closed_at")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const INTERACTION_COLS: &str = "x.id, x.kind, x.status, x.subject, x.body, x.client_id, \
     x.contact_id, x.lead_id, x.interest_id, x.dialog_id, x.call_id, x.responsible_id, x.planned_at, \
     x.done_at, x.created_by, x.created_at, x.updated_at";

pub(crate) fn interaction(r: &AnyRow) -> StoreResult<Interaction> {
    Ok(Interaction {
        id: id(r, "id")?,
        kind: parsed(r, "kind", InteractionKind::parse)?,
        status: parsed(r, "status", InteractionStatus::parse)?,
        subject: text(r, "subject")?,
        body: opt_text(r, "body")?,
        client_id: opt_id(r, "client_id")?,
        contact_id: opt_id(r, "contact_id")?,
        lead_id: opt_id(r, "lead_id")?,
        interest_id: opt_id(r, "interest_id")?,
        dialog_id: opt_id(r, "dialog_id")?,
        call_id: opt_id(r, "call_id")?,
        responsible_id: opt_id(r, "responsible_id")?,
        planned_at: opt_ts(r, "planned_at")?,
        done_at: opt_ts(r, "done_at")?,
        created_by: opt_id(r, "created_by")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const DIALOG_COLS: &str = "d.id, d.channel, d.connector_id, d.external_thread_id, d.identity_id, \
     d.client_id, d.contact_id, d.lead_id, d.interest_id, d.assignee_id, d.department_id, d.shared, d.status, \
     d.subject, d.last_message_at, d.created_at, d.updated_at, d.closed_at, d.assigned_at, d.assign_reason, \
     d.waiting_since, d.unread, d.request_type, d.request_type_by";

/// [`DIALOG_COLS`] renamed `d_*`, to read a dialog beside another row.
pub(crate) const DIALOG_COLS_AS: &str = "d.id AS d_id, d.channel AS d_channel, d.connector_id AS d_connector_id, \
     d.external_thread_id AS d_external_thread_id, d.identity_id AS d_identity_id, d.client_id AS d_client_id, \
     d.contact_id AS d_contact_id, d.lead_id AS d_lead_id, d.interest_id AS d_interest_id, d.assignee_id AS d_assignee_id, \
     d.department_id AS d_department_id, d.shared AS d_shared, d.status AS d_status, d.subject AS d_subject, \
     d.last_message_at AS d_last_message_at, d.created_at AS d_created_at, d.updated_at AS d_updated_at, \
     d.closed_at AS d_closed_at, d.assigned_at AS d_assigned_at, d.assign_reason AS d_assign_reason, \
     d.waiting_since AS d_waiting_since, d.unread AS d_unread, d.request_type AS d_request_type, \
     d.request_type_by AS d_request_type_by";

/// A dialog read with [`DIALOG_COLS_AS`].
pub(crate) fn dialog_as(r: &AnyRow) -> StoreResult<Dialog> {
    dialog_with(r, "d_")
}

pub(crate) fn dialog(r: &AnyRow) -> StoreResult<Dialog> {
    dialog_with(r, "")
}

fn dialog_with(r: &AnyRow, p: &str) -> StoreResult<Dialog> {
    let c = |n: &str| format!("{p}{n}");
    Ok(Dialog {
        id: id(r, &c("id"))?,
        channel: text(r, &c("channel"))?,
        connector_id: text(r, &c("connector_id"))?,
        external_thread_id: text(r, &c("external_thread_id"))?,
        identity_id: opt_id(r, &c("identity_id"))?,
        client_id: opt_id(r, &c("client_id"))?,
        contact_id: opt_id(r, &c("contact_id"))?,
        lead_id: opt_id(r, &c("lead_id"))?,
        interest_id: opt_id(r, &c("interest_id"))?,
        assignee_id: opt_id(r, &c("assignee_id"))?,
        department_id: opt_id(r, &c("department_id"))?,
        shared: flag(r, &c("shared"))?,
        status: parsed(r, &c("status"), DialogStatus::parse)?,
        subject: opt_text(r, &c("subject"))?,
        last_message_at: opt_ts(r, &c("last_message_at"))?,
        created_at: ts(r, &c("created_at"))?,
        updated_at: ts(r, &c("updated_at"))?,
        closed_at: opt_ts(r, &c("closed_at"))?,
        assigned_at: opt_ts(r, &c("assigned_at"))?,
        assign_reason: opt_text(r, &c("assign_reason"))?,
        waiting_since: opt_ts(r, &c("waiting_since"))?,
        unread: id(r, &c("unread"))?,
        request_type: opt_text(r, &c("request_type"))?,
        request_type_by: opt_text(r, &c("request_type_by"))?,
    })
}

pub(crate) const MESSAGE_COLS: &str = "m.id, m.dialog_id, m.direction, m.connector_id, m.external_id, \
     m.provider_message_id, m.body, m.subject, CAST(CASE WHEN m.html IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_html, \
     m.quoted, m.attachments, m.classification, m.delivery_status, \
     m.delivery_error, m.author_user_id, m.sent_at, m.created_at";

/// Whether a message row has an HTML body (the body itself is read on its own).
fn rows_has_html(r: &AnyRow) -> StoreResult<bool> {
    Ok(id(r, "has_html")? != 0)
}

pub(crate) fn message(r: &AnyRow) -> StoreResult<Message> {
    let attachments: Vec<Attachment> = serde_json::from_str(&text(r, "attachments")?)
        .map_err(|_| StoreError::Corrupt("message attachments".into()))?;
    Ok(Message {
        id: id(r, "id")?,
        dialog_id: id(r, "dialog_id")?,
        direction: parsed(r, "direction", Direction::parse)?,
        connector_id: text(r, "connector_id")?,
        external_id: text(r, "external_id")?,
        provider_message_id: opt_text(r, "provider_message_id")?,
        body: opt_text(r, "body")?,
        subject: opt_text(r, "subject")?,
        html: None,
        has_html: rows_has_html(r)?,
        quoted: opt_text(r, "quoted")?,
        attachments,
        // A reading that no longer parses (written by a newer version) is dropped, not an
        // error: the message itself is intact.
        classification: opt_text(r, "classification")?.and_then(|c| serde_json::from_str(&c).ok()),
        delivery_status: parsed(r, "delivery_status", DeliveryStatus::parse)?,
        delivery_error: opt_text(r, "delivery_error")?,
        author_user_id: opt_id(r, "author_user_id")?,
        sent_at: ts(r, "sent_at")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(crate) const CALL_COLS: &str = "k.id, k.connector_id, k.external_id, k.direction, k.from_number, \
     k.to_number, k.status, k.missed_reason, k.operator_id, k.extension, k.client_id, k.contact_id, k.lead_id, \
     k.interest_id, k.started_at, k.answered_at, k.ended_at, k.duration_secs, k.recording_url, k.traffic_source, \
     k.created_at, k.updated_at";

pub(crate) fn call(r: &AnyRow) -> StoreResult<Call> {
    Ok(Call {
        id: id(r, "id")?,
        connector_id: text(r, "connector_id")?,
        external_id: text(r, "external_id")?,
        direction: parsed(r, "direction", CallDirection::parse)?,
        from_number: text(r, "from_number")?,
        to_number: text(r, "to_number")?,
        status: parsed(r, "status", CallStatus::parse)?,
        missed_reason: opt_text(r, "missed_reason")?,
        operator_id: opt_id(r, "operator_id")?,
        extension: opt_text(r, "extension")?,
        client_id: opt_id(r, "client_id")?,
        contact_id: opt_id(r, "contact_id")?,
        lead_id: opt_id(r, "lead_id")?,
        interest_id: opt_id(r, "interest_id")?,
        started_at: ts(r, "started_at")?,
        answered_at: opt_ts(r, "answered_at")?,
        ended_at: opt_ts(r, "ended_at")?,
        duration_secs: opt_id(r, "duration_secs")?,
        recording_url: opt_text(r, "recording_url")?,
        traffic_source: opt_text(r, "traffic_source")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|_| StoreError::Corrupt("traffic_source is not JSON".into()))?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(crate) const FEED_COLS: &str =
    "f.id, f.kind, f.ref_type, f.ref_id, f.client_id, f.contact_id, f.lead_id, \
     f.interest_id, f.occurred_at, f.title, f.preview";

pub(crate) fn feed_entry(r: &AnyRow) -> StoreResult<FeedEntry> {
    Ok(FeedEntry {
        id: id(r, "id")?,
        kind: parsed(r, "kind", FeedKind::parse)?,
        ref_type: text(r, "ref_type")?,
        ref_id: id(r, "ref_id")?,
        client_id: opt_id(r, "client_id")?,
        contact_id: opt_id(r, "contact_id")?,
        lead_id: opt_id(r, "lead_id")?,
        interest_id: opt_id(r, "interest_id")?,
        occurred_at: ts(r, "occurred_at")?,
        title: text(r, "title")?,
        preview: opt_text(r, "preview")?,
    })
}

pub(crate) const CHANGE_COLS: &str =
    "seq, at, actor_user_id, actor_api_key_id, entity, entity_id, op, data, \
     client_id, lead_id, interest_id, dialog_id, department_id, topics, owner_id, shared";

/// [`CHANGE_COLS`] under the alias `c`.
pub(crate) const CHANGE_COLS_C: &str =
    "c.seq, c.at, c.actor_user_id, c.actor_api_key_id, c.entity, c.entity_id, c.op, c.data, \
     c.client_id, c.lead_id, c.interest_id, c.dialog_id, c.department_id, c.topics, c.owner_id, c.shared";

pub(crate) fn change(r: &AnyRow) -> StoreResult<ChangeEntry> {
    let data = serde_json::from_str(&text(r, "data")?)
        .map_err(|_| StoreError::Corrupt("change log data".into()))?;
    Ok(ChangeEntry {
        seq: id(r, "seq")?,
        at: ts(r, "at")?,
        actor_user_id: opt_id(r, "actor_user_id")?,
        actor_api_key_id: opt_id(r, "actor_api_key_id")?,
        entity: text(r, "entity")?,
        entity_id: id(r, "entity_id")?,
        op: text(r, "op")?,
        data,
        client_id: opt_id(r, "client_id")?,
        lead_id: opt_id(r, "lead_id")?,
        interest_id: opt_id(r, "interest_id")?,
        dialog_id: opt_id(r, "dialog_id")?,
        department_id: opt_id(r, "department_id")?,
        topics: Topic::parse_list(&text(r, "topics")?),
        owner_id: opt_id(r, "owner_id")?,
        shared: opt_id(r, "shared")?.map(|v| v != 0),
    })
}
