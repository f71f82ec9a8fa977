//! Storage: the [`Store`] trait and its SQL implementation over SQLite (default) and
//! PostgreSQL.
//!
//! Both backends run the same queries through sqlx's `Any` driver, written in the SQL both
//! speak (`$n` parameters, `ON CONFLICT`, `RETURNING`, integer timestamps and flags). What
//! differs lives in [`sqlite`] and [`postgres`]: connection set-up, migrations, and how
//! writers are ordered so that change-log sequence numbers grow in commit order:
//! - SQLite allows one writer at a time; we take a process-wide writer lock before `BEGIN`
//!   so writers queue instead of failing with `SQLITE_BUSY`.
//! - PostgreSQL writers run concurrently; just before commit a transaction that logged
//!   changes takes a transaction-scoped advisory lock, then allocates its sequence numbers,
//!   then commits (releasing the lock). A reader therefore never sees seq N+1 before seq N.
//!
//! Row-level access is enforced here, in the `WHERE` clauses (see [`access`]), not only in
//! the HTTP handlers: a row the actor may not see is reported as not found.

pub mod access;
mod assist;
mod by_id;
mod canned;
mod changes;
mod channels;
mod clients;
mod cursor;
mod dialogs;
mod feed;
mod interests;
mod kb;
mod migrate;
pub mod postgres;
mod routing;
mod rows;
pub mod sqlite;
mod telephony;
mod users;
mod validate_ref;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::{Any, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::domain::*;
pub use changes::Change;
pub use channels::{is_file_key, FileContent, MAX_STATE_VALUE};
pub use cursor::Cursor;

/// Errors of the store. `NotFound` covers rows the actor may not see.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row, or the actor may not see it.
    #[error("{entity} not found")]
    NotFound {
        /// Entity name (`client`, `interest`, ...).
        entity: &'static str,
    },
    /// An input field is invalid (including references to rows that do not exist).
    #[error("invalid {}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// A unique value is already taken (an identity, a login, a name).
    #[error("duplicate {field}: {message}")]
    Duplicate {
        /// The field whose value is taken.
        field: String,
        /// What is taken.
        message: String,
    },
    /// The change conflicts with the row's state.
    #[error("conflict on {field}: {message}")]
    Conflict {
        /// The field that conflicts.
        field: String,
        /// What conflicts.
        message: String,
    },
    /// The actor's role does not allow this change.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A stored value the code does not understand (schema drift, manual edits).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration {version} failed")]
    Migration {
        /// Migration version.
        version: i64,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Whether the failure is a transient conflict between concurrent transactions
    /// (PostgreSQL deadlock or serialization failure): the whole transaction may be retried.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

impl From<FieldError> for StoreError {
    fn from(e: FieldError) -> Self {
        StoreError::Invalid(e)
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a [`SqlStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// What to look clients up by.
#[derive(Debug, Clone, Default)]
pub struct ClientQuery {
    /// Prefix of the name or of any word of it.
    pub q: Option<String>,
    /// Phone number (any format; normalized).
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Messenger identity (`telegram`, `vk`, `whatsapp`, `web_visitor`) with its value.
    pub messenger: Option<(IdentityKind, String)>,
    /// Page size (1..=200).
    pub limit: i64,
    /// Cursor from the previous page.
    pub cursor: Option<Cursor>,
}

/// Whose timeline the Feed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedTarget {
    /// A client.
    Client(Id),
    /// A contact.
    Contact(Id),
    /// A lead.
    Lead(Id),
    /// An Interest.
    Interest(Id),
}

/// A Feed page request.
#[derive(Debug, Clone)]
pub struct FeedQuery {
    /// Whose Feed.
    pub target: FeedTarget,
    /// Only these kinds (empty: all).
    pub kinds: Vec<FeedKind>,
    /// Page size (1..=200).
    pub limit: i64,
    /// Cursor from the previous page.
    pub cursor: Option<Cursor>,
}

/// Filters for listing records; each is optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Client.
    pub client_id: Option<Id>,
    /// Lead.
    pub lead_id: Option<Id>,
    /// Interest.
    pub interest_id: Option<Id>,
    /// Assignee / responsible user.
    pub user_id: Option<Id>,
    /// Department.
    pub department_id: Option<Id>,
    /// Status in its stored form.
    pub status: Option<String>,
    /// Page size (1..=200).
    pub limit: i64,
    /// Cursor from the previous page.
    pub cursor: Option<Cursor>,
}

/// A user with the stored password hash, for sign-in.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user.
    pub user: User,
    /// Argon2 PHC string, if a password is set.
    pub password_hash: Option<String>,
}

/// Where a new identity points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityOwner {
    /// A client.
    Client(Id),
    /// A contact (its client is filled in).
    Contact(Id),
    /// A lead.
    Lead(Id),
}

/// Receives the entries of every committed write transaction, in commit order on SQLite
/// (called while the writer lock is still held) and nearly so on PostgreSQL. Must not block:
/// the hub's sink copies into a bounded inbox and, when that is full, drops and later reads
/// the change log instead.
pub trait CommitSink: Send + Sync + std::fmt::Debug {
    /// Entries just committed, oldest first.
    fn committed(&self, entries: Vec<ChangeEntry>);
}

/// The system of record. Every method that reads or writes business data takes the acting
/// [`Actor`] and applies its row-level access rules.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// Whether the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // -- users, departments, sessions, API keys
    /// Number of users (start-up creates the first admin when zero).
    async fn count_users(&self) -> StoreResult<i64>;
    /// New department (admin).
    async fn create_department(
        &self,
        actor: &Actor,
        input: &NewDepartment,
    ) -> StoreResult<Department>;
    /// All departments.
    async fn list_departments(&self) -> StoreResult<Vec<Department>>;
    /// New user with an already hashed password (admin).
    async fn create_user(
        &self,
        actor: &Actor,
        input: &NewUser,
        password_hash: &str,
    ) -> StoreResult<User>;
    /// One user.
    async fn get_user(&self, id: Id) -> StoreResult<User>;
    /// All users.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Change a user (admin); a new password hash replaces the old; disabling ends sessions.
    async fn update_user(
        &self,
        actor: &Actor,
        id: Id,
        patch: &UserPatch,
        password_hash: Option<String>,
    ) -> StoreResult<User>;
    /// Set a user's own new password hash and clear the one-time flag; ends other sessions.
    async fn change_own_password(
        &self,
        user_id: Id,
        password_hash: &str,
        keep_session: &str,
    ) -> StoreResult<()>;
    /// A user by login, with the password hash.
    async fn credentials(&self, login: &str) -> StoreResult<Option<Credentials>>;
    /// Record a session token hash.
    async fn create_session(
        &self,
        user_id: Id,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// The active user of an unexpired session.
    async fn session_user(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<User>>;
    /// End a session.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// New API key record (the secret is hashed by the caller).
    async fn create_api_key(
        &self,
        actor: &Actor,
        input: &NewApiKey,
        prefix: &str,
        key_hash: &str,
    ) -> StoreResult<ApiKey>;
    /// All API keys.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revoke an API key.
    async fn revoke_api_key(&self, actor: &Actor, id: Id) -> StoreResult<ApiKey>;
    /// An unrevoked key by its public prefix, with its hash; marks it used.
    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<(ApiKey, String)>>;

    // -- custom fields
    /// Custom field definitions in card order.
    async fn list_custom_fields(&self) -> StoreResult<Vec<CustomField>>;
    /// New custom field (admin).
    async fn create_custom_field(
        &self,
        actor: &Actor,
        input: &NewCustomField,
    ) -> StoreResult<CustomField>;
    /// Remove a custom field definition and its values (admin).
    async fn delete_custom_field(&self, actor: &Actor, id: Id) -> StoreResult<()>;
    /// Change a custom field's label, options, required flag or position (admin).
    async fn update_custom_field(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CustomFieldPatch,
    ) -> StoreResult<CustomField>;

    // -- canned responses
    /// The canned responses the actor may use (global, their department's, their own),
    /// by shortcut, then personal before department before global, then id; with `q`, those
    /// whose shortcut starts with it or whose title contains it, ignoring case.
    async fn list_canned_responses(
        &self,
        actor: &Actor,
        q: Option<&str>,
    ) -> StoreResult<Vec<CannedResponse>>;
    /// New canned response: personal (the actor's own), a department's (admins, its
    /// supervisors) or global (admins).
    async fn create_canned_response(
        &self,
        actor: &Actor,
        input: &NewCannedResponse,
    ) -> StoreResult<CannedResponse>;
    /// Change a canned response (whoever may create it).
    async fn update_canned_response(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CannedResponsePatch,
    ) -> StoreResult<CannedResponse>;
    /// Delete a canned response (whoever may create it).
    async fn delete_canned_response(&self, actor: &Actor, id: Id) -> StoreResult<()>;

    // -- clients, contacts, identities, leads
    /// New client with its identities, in one transaction.
    async fn create_client(&self, actor: &Actor, input: &NewClient) -> StoreResult<ClientCard>;
    /// The client card.
    async fn get_client(&self, actor: &Actor, id: Id) -> StoreResult<ClientCard>;
    /// Change a client.
    async fn update_client(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ClientPatch,
    ) -> StoreResult<Client>;
    /// Search clients by name prefix, phone, email or messenger id.
    async fn search_clients(&self, actor: &Actor, query: &ClientQuery)
        -> StoreResult<Page<Client>>;
    /// New contact of a client, with identities.
    async fn create_contact(
        &self,
        actor: &Actor,
        client_id: Id,
        input: &NewContact,
    ) -> StoreResult<Contact>;
    /// One contact.
    async fn get_contact(&self, actor: &Actor, id: Id) -> StoreResult<Contact>;
    /// Change a contact.
    async fn update_contact(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ContactPatch,
    ) -> StoreResult<Contact>;
    /// Add an identity; a taken (kind, value) is a conflict.
    async fn add_identity(
        &self,
        actor: &Actor,
        owner: IdentityOwner,
        input: &IdentityInput,
    ) -> StoreResult<Identity>;
    /// Find an identity by kind and (unnormalized) value.
    async fn find_identity(
        &self,
        actor: &Actor,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<Identity>>;
    /// Remove an identity.
    async fn delete_identity(&self, actor: &Actor, id: Id) -> StoreResult<()>;
    /// New lead; its phone and email become identities.
    async fn create_lead(&self, actor: &Actor, input: &NewLead) -> StoreResult<Lead>;
    /// One lead.
    async fn get_lead(&self, actor: &Actor, id: Id) -> StoreResult<Lead>;
    /// Leads, newest first.
    async fn list_leads(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Lead>>;
    /// Change a lead.
    async fn update_lead(&self, actor: &Actor, id: Id, patch: &LeadPatch) -> StoreResult<Lead>;
    /// Turn a lead into a client, moving all its history.
    async fn convert_lead(
        &self,
        actor: &Actor,
        id: Id,
        input: &ConvertLead,
    ) -> StoreResult<LeadConversion>;

    // -- sales scenarios, Interests, interactions
    /// Sales scenarios with stages.
    async fn list_scenarios(&self) -> StoreResult<Vec<SalesScenario>>;
    /// New sales scenario (admin).
    async fn create_scenario(
        &self,
        actor: &Actor,
        input: &NewSalesScenario,
    ) -> StoreResult<SalesScenario>;
    /// New Interest at the first stage of its scenario.
    async fn create_interest(&self, actor: &Actor, input: &NewInterest) -> StoreResult<Interest>;
    /// One Interest.
    async fn get_interest(&self, actor: &Actor, id: Id) -> StoreResult<Interest>;
    /// Interests, newest first.
    async fn list_interests(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> StoreResult<Page<Interest>>;
    /// Change an Interest.
    async fn update_interest(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InterestPatch,
    ) -> StoreResult<Interest>;
    /// Move an Interest to another stage of its scenario.
    async fn move_interest_stage(
        &self,
        actor: &Actor,
        id: Id,
        stage_id: Id,
    ) -> StoreResult<Interest>;
    /// Stage history of an Interest, oldest first.
    async fn interest_stage_history(&self, actor: &Actor, id: Id) -> StoreResult<Vec<StageChange>>;
    /// New interaction.
    async fn create_interaction(
        &self,
        actor: &Actor,
        input: &NewInteraction,
    ) -> StoreResult<Interaction>;
    /// One interaction.
    async fn get_interaction(&self, actor: &Actor, id: Id) -> StoreResult<Interaction>;
    /// Interactions, newest first.
    async fn list_interactions(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> StoreResult<Page<Interaction>>;
    /// Change an interaction.
    async fn update_interaction(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InteractionPatch,
    ) -> StoreResult<Interaction>;

    // -- dialogs, messages, calls
    /// Open a dialog; an existing `(connector_id, external_thread_id)` returns that dialog
    /// with `false`.
    async fn create_dialog(&self, actor: &Actor, input: &NewDialog) -> StoreResult<(Dialog, bool)>;
    /// One dialog.
    async fn get_dialog(&self, actor: &Actor, id: Id) -> StoreResult<Dialog>;
    /// Dialogs, most recent activity first.
    async fn list_dialogs(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Dialog>>;
    /// Assign, transfer, link, close or reopen.
    async fn update_dialog(
        &self,
        actor: &Actor,
        id: Id,
        patch: &DialogPatch,
    ) -> StoreResult<Dialog>;
    /// Add a message; a repeated `(connector_id, external_id)` returns the stored one with
    /// `false` and changes nothing.
    async fn add_message(
        &self,
        actor: &Actor,
        dialog_id: Id,
        input: &NewMessage,
    ) -> StoreResult<(Message, bool)>;
    /// Messages of a dialog, oldest first.
    async fn list_messages(
        &self,
        actor: &Actor,
        dialog_id: Id,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> StoreResult<Page<Message>>;
    /// Messages of a dialog, newest first (a console opening a long dialog reads only its
    /// end). A cursor of one order means nothing in the other.
    async fn list_messages_newest(
        &self,
        actor: &Actor,
        dialog_id: Id,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> StoreResult<Page<Message>>;
    /// Record a delivery status (never moves backwards).
    async fn update_delivery(
        &self,
        actor: &Actor,
        message_id: Id,
        update: &DeliveryUpdate,
    ) -> StoreResult<Message>;
    /// Record a call; idempotent on `(connector_id, external_id)`.
    async fn record_call(&self, actor: &Actor, input: &NewCall) -> StoreResult<(Call, bool)>;
    /// One call.
    async fn get_call(&self, actor: &Actor, id: Id) -> StoreResult<Call>;
    /// Calls, newest first.
    async fn list_calls(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Call>>;
    /// Change call state.
    async fn update_call(&self, actor: &Actor, id: Id, patch: &CallPatch) -> StoreResult<Call>;

    // -- Feed and change log
    /// A Feed page, newest first.
    async fn feed(&self, actor: &Actor, query: &FeedQuery) -> StoreResult<Page<FeedEntry>>;
    /// Change-log entries with `seq > since`, oldest first (needs `changes:read`).
    async fn changes_since(&self, since: i64, limit: i64) -> StoreResult<Vec<ChangeEntry>>;
    /// Change-log entries of one entity (the audit trail), newest first.
    async fn audit(
        &self,
        entity: Option<&str>,
        entity_id: Option<Id>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Vec<ChangeEntry>>;
    /// The highest sequence number written so far (0 when empty).
    async fn last_seq(&self) -> StoreResult<i64>;
    /// Entries of one topic with `since < seq <= until`, oldest first, at most `limit`
    /// (the caller checks the actor may follow the topic).
    async fn topic_changes(
        &self,
        topic: Topic,
        since: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeEntry>>;
    /// Sets where committed changes go (the node's hub); replaces an earlier sink.
    fn set_commit_sink(&self, sink: Arc<dyn CommitSink>);

    // -- real-time core: presence, routing, ingest
    /// A hub-wide setting, initialised to `init` by the first node that asks.
    async fn hub_setting(&self, key: &str, init: &str) -> StoreResult<String>;
    /// The message a channel knows by `channel_id` (provider id or external id).
    async fn message_by_channel_id(
        &self,
        connector_id: &str,
        channel_id: &str,
    ) -> StoreResult<Option<Message>>;
    /// The dialog of a channel thread.
    async fn dialog_by_thread(
        &self,
        connector_id: &str,
        thread_id: &str,
    ) -> StoreResult<Option<Dialog>>;
    /// Outbound messages of a connector not yet handed to it (id > `after_id`), oldest first.
    async fn pending_outbound(
        &self,
        connector_id: &str,
        after_id: Id,
        limit: i64,
    ) -> StoreResult<Vec<(Message, Dialog)>>;
    /// An operator's presence and load.
    async fn operator_state(&self, user_id: Id) -> StoreResult<OperatorState>;
    /// Presence and load of the operators (of one department).
    async fn operator_states(&self, department_id: Option<Id>) -> StoreResult<Vec<OperatorState>>;
    /// An operator connection opened on `node_id`.
    async fn presence_connected(&self, user_id: Id, node_id: &str) -> StoreResult<OperatorState>;
    /// An operator connection on `node_id` closed (presence waits for the grace period).
    async fn presence_disconnected(&self, user_id: Id, node_id: &str) -> StoreResult<()>;
    /// Sets the operator offline when no live node holds a connection of theirs.
    async fn presence_expire(
        &self,
        user_id: Id,
        alive_after: Timestamp,
    ) -> StoreResult<OperatorState>;
    /// The operator chose online or away.
    async fn presence_choose(
        &self,
        user_id: Id,
        chosen: PresenceStatus,
    ) -> StoreResult<OperatorState>;
    /// Marks the operator on a call (full load) or free.
    async fn set_on_call(&self, user_id: Id, on_call: bool) -> StoreResult<OperatorState>;
    /// Records this node's heartbeat.
    async fn node_heartbeat(&self, node_id: &str, started_at: Timestamp) -> StoreResult<()>;
    /// Forgets dead nodes and their connections; returns the users affected.
    async fn sweep_nodes(&self, dead_before: Timestamp) -> StoreResult<Vec<Id>>;
    /// Users not offline who have no connection left.
    async fn present_without_connections(&self) -> StoreResult<Vec<Id>>;
    /// Takes or renews a cluster-wide lease until `until`; true when this node holds it.
    async fn try_lease(&self, name: &str, node_id: &str, until: Timestamp) -> StoreResult<bool>;
    /// Gives a lease up.
    async fn release_lease(&self, name: &str, node_id: &str) -> StoreResult<()>;
    /// A department's routing settings.
    async fn routing_settings(&self, department_id: Id) -> StoreResult<RoutingSettings>;
    /// Changes a department's routing settings (admin).
    async fn update_routing(
        &self,
        actor: &Actor,
        department_id: Id,
        patch: &RoutingPatch,
    ) -> StoreResult<RoutingSettings>;
    /// Changes an operator's capacity (admin).
    async fn set_max_dialogs(
        &self,
        actor: &Actor,
        user_id: Id,
        max: i64,
    ) -> StoreResult<OperatorState>;
    /// Assigns waiting dialogs of a department while operators have room.
    async fn drain_queue(&self, department_id: Id, max: usize) -> StoreResult<Vec<Assignment>>;
    /// Departments with unassigned open dialogs.
    async fn departments_with_queue(&self) -> StoreResult<Vec<Id>>;
    /// Offers dialogs unanswered past their department's timeout to the next operator.
    async fn reoffer_due(&self, now: Timestamp) -> StoreResult<Vec<Assignment>>;
    /// Assigns or transfers a dialog to an operator or a department, with the reason.
    async fn assign_dialog(
        &self,
        actor: &Actor,
        dialog_id: Id,
        user_id: Option<Id>,
        department_id: Option<Id>,
        reason: AssignReason,
    ) -> StoreResult<(Dialog, Assignment)>;
    /// A dialog's assignments, oldest first.
    async fn dialog_assignments(
        &self,
        actor: &Actor,
        dialog_id: Id,
    ) -> StoreResult<Vec<Assignment>>;
    /// Marks a dialog read.
    async fn mark_read(&self, actor: &Actor, dialog_id: Id) -> StoreResult<Dialog>;
    /// Persists an inbound message with identification, dialog, Interest and routing, in
    /// one transaction; idempotent on `(connector_id, external_id)`.
    async fn ingest_message(&self, input: &IngestMessage) -> StoreResult<IngestOutcome>;
    /// Persists several inbound messages in order in one transaction (group commit). The
    /// answer holds one result per input; an input that fails its checks has its error
    /// there and the others are stored. Any other failure stores nothing and is returned
    /// whole: take the messages one at a time with [`Store::ingest_message`] then.
    async fn ingest_messages(
        &self,
        inputs: &[IngestMessage],
    ) -> StoreResult<Vec<StoreResult<IngestOutcome>>>;
    /// Puts engine 2's reading of a stored inbound message in place of engine 1's quick
    /// one, and, when the message opened its dialog and nothing happened to it since, moves
    /// the dialog to `department_id` (the type's or the channel's department) and gives it
    /// the type. `None`: there was no provisional reading to replace.
    async fn refine_classification(
        &self,
        message_id: Id,
        reading: &Classification,
        department_id: Option<Id>,
    ) -> StoreResult<Option<Message>>;
    /// Persists a call event and applies it to its call (opening the call on its first
    /// `ringing`); idempotent on `(connector_id, external_id)`.
    async fn ingest_call(&self, input: &IngestCall) -> StoreResult<CallOutcome>;
    /// Click-to-call: a call from the actor's extension to `to`, pending for
    /// `connector_id`, with our id `call_external_id`.
    async fn create_originate(
        &self,
        actor: &Actor,
        connector_id: &str,
        call_external_id: &str,
        to: &str,
        client_id: Option<Id>,
        lead_id: Option<Id>,
    ) -> StoreResult<Call>;
    /// Click-to-calls still to hand to `connector_id` (stale ones dropped).
    async fn pending_originates(
        &self,
        connector_id: &str,
        after: Id,
        limit: i64,
    ) -> StoreResult<Vec<Call>>;
    /// Marks a click-to-call handed over; false if it was no longer pending.
    async fn originate_sent(&self, call_id: Id) -> StoreResult<bool>;
    /// Applies the configured extension → login pairs; returns what could not be applied.
    async fn assign_extensions(&self, pairs: &[(String, String)]) -> StoreResult<Vec<String>>;
    /// The HTML body of a message the actor may see (`None`: it has none).
    async fn message_html(&self, actor: &Actor, message_id: Id) -> StoreResult<Option<String>>;
    /// The request types, in picker order.
    async fn list_request_types(&self) -> StoreResult<Vec<RequestType>>;
    /// Creates or changes request type `key` (admin); true when created.
    async fn put_request_type(
        &self,
        actor: &Actor,
        key: &str,
        input: &RequestTypeInput,
    ) -> StoreResult<(RequestType, bool)>;
    /// Deletes request type `key` (admin); the last one stays.
    async fn delete_request_type(&self, actor: &Actor, key: &str) -> StoreResult<()>;
    /// Stores the actor's verdict on message `message_id`'s reading (replacing an earlier
    /// one of theirs) and gives its dialog the verdict's type: `label`, or for a like
    /// without one the reading's top type. Returns the verdict, the dialog and the message.
    async fn save_feedback(
        &self,
        actor: &Actor,
        message_id: Id,
        verdict: Verdict,
        label: Option<&str>,
    ) -> StoreResult<(Feedback, Dialog, Message)>;
    /// Verdicts with an id above `after`, oldest first, at most `limit`.
    async fn feedback_after(&self, after: Id, limit: i64) -> StoreResult<Vec<Feedback>>;
    /// The newest stored model of `engine`.
    async fn latest_model(&self, engine: &str) -> StoreResult<Option<StoredModel>>;
    /// Stores a trained model (keeping the newest three of its engine); returns its id.
    async fn save_model(&self, model: &StoredModel) -> StoreResult<Id>;

    // -- knowledge base
    /// Every article, by id (each node indexes them all; reading needs no actor).
    async fn list_kb_articles(&self) -> StoreResult<Vec<KbArticle>>;
    /// The articles with these ids that exist, in no particular order.
    async fn get_kb_articles(&self, ids: &[Id]) -> StoreResult<Vec<KbArticle>>;
    /// New article (admins; supervisors for their department or everyone's).
    async fn create_kb_article(
        &self,
        actor: &Actor,
        input: &NewKbArticle,
    ) -> StoreResult<KbArticle>;
    /// Change an article (whoever may manage it, before and after).
    async fn update_kb_article(
        &self,
        actor: &Actor,
        id: Id,
        patch: &KbArticlePatch,
    ) -> StoreResult<KbArticle>;
    /// Delete an article and its use records.
    async fn delete_kb_article(&self, actor: &Actor, id: Id) -> StoreResult<()>;
    /// The signed-in operator put a suggested article into a reply in a dialog they see;
    /// counted once per article, dialog and operator. Returns the article and whether the
    /// use was new.
    async fn record_kb_use(
        &self,
        actor: &Actor,
        id: Id,
        dialog_id: Id,
    ) -> StoreResult<(KbArticle, bool)>;
    /// Stores a file a connector received, by content; returns its key (hex SHA-256).
    async fn put_file(
        &self,
        connector_id: &str,
        mime_type: &str,
        content: &[u8],
    ) -> StoreResult<String>;
    /// A stored file by key; `None` when there is none (or the key is malformed).
    async fn get_file(&self, key: &str) -> StoreResult<Option<FileContent>>;
    /// The kind and value of identity `identity_id` (where a reply must go).
    async fn identity_value(&self, identity_id: Id) -> StoreResult<Option<(String, String)>>;
    /// A value a connector instance stored under `key`.
    async fn connector_state(&self, connector_id: &str, key: &str) -> StoreResult<Option<String>>;
    /// Stores a connector instance's value under `key`.
    async fn set_connector_state(
        &self,
        connector_id: &str,
        key: &str,
        value: &str,
    ) -> StoreResult<()>;
}

/// The SQL store. Open it with [`SqlStore::open`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: one writer at a time (see the module docs). Unused on PostgreSQL.
    writer: Arc<Mutex<()>>,
    rules: IdentityRules,
    sink: Arc<std::sync::RwLock<Option<Arc<dyn CommitSink>>>>,
}

impl SqlStore {
    /// Opens (creating and migrating as needed) the store at `url`: `sqlite://path` or a
    /// path for SQLite, `postgres://...` for PostgreSQL.
    ///
    /// # Errors
    /// Connection and migration failures.
    pub async fn open(url: &str, rules: IdentityRules) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (pool, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://")
        {
            (postgres::connect(url).await?, Backend::Postgres)
        } else {
            (sqlite::connect(url).await?, Backend::Sqlite)
        };
        let store = Self {
            pool,
            backend,
            writer: Arc::new(Mutex::new(())),
            rules,
            sink: Arc::new(std::sync::RwLock::new(None)),
        };
        migrate::run(&store.pool, backend).await?;
        Ok(store)
    }

    /// The connection pool (benchmarks and tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// On SQLite, the writer lock for a single autocommit write outside [`WriteTx`] (sessions,
    /// key usage); `None` on PostgreSQL. Holding it keeps such writes from invalidating the
    /// snapshot of a write transaction in progress (`SQLITE_BUSY_SNAPSHOT`).
    pub(crate) async fn single_write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Begins a write transaction (see the module docs for ordering).
    pub(crate) async fn write(&self, actor: &Actor) -> StoreResult<WriteTx> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        let sink = self.sink.read().map(|s| s.clone()).unwrap_or_default();
        Ok(WriteTx {
            inner: Some(tx),
            sink,
            guard,
            backend: self.backend,
            actor_user_id: actor.user_id(),
            actor_api_key_id: actor.api_key_id(),
            changes: Vec::new(),
            now: Timestamp::now(),
        })
    }
}

/// A write transaction that collects change-log entries and writes them at commit.
///
/// Dropped without [`WriteTx::commit`] (an error, a rejected input), it rolls back on a
/// spawned task that holds the SQLite writer lock until the rollback is done: sqlx would
/// otherwise only queue the rollback, and the pooled connection would keep the write lock
/// while the next writer fails with "database is locked".
pub(crate) struct WriteTx {
    inner: Option<Transaction<'static, Any>>,
    sink: Option<Arc<dyn CommitSink>>,
    guard: Option<OwnedMutexGuard<()>>,
    backend: Backend,
    actor_user_id: Option<Id>,
    actor_api_key_id: Option<Id>,
    changes: Vec<Change>,
    /// One clock reading for the whole transaction.
    pub(crate) now: Timestamp,
}

impl WriteTx {
    /// Which database the transaction runs on.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// The transaction's connection.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        self.inner
            .as_deref_mut()
            .expect("the transaction is present until commit or drop")
    }

    /// Records a change to be appended to the change log at commit.
    pub(crate) fn log(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Appends the collected changes and commits, then hands the entries to the commit sink
    /// (still holding the SQLite writer lock, so the sink sees commit order). Returns the
    /// last sequence number written.
    pub(crate) async fn commit(mut self) -> StoreResult<Option<i64>> {
        let mut last = None;
        let mut entries = Vec::with_capacity(self.changes.len());
        if !self.changes.is_empty() {
            if self.backend == Backend::Postgres {
                postgres::lock_change_log(self.conn()).await?;
            }
            let (now, user, key) = (self.now, self.actor_user_id, self.actor_api_key_id);
            let changes = std::mem::take(&mut self.changes);
            let appended = changes::append_all(self.conn(), &changes, now, user, key).await?;
            for (c, (seq, topics)) in changes.into_iter().zip(appended) {
                last = Some(seq);
                if self.sink.is_some() {
                    entries.push(c.entry(seq, now, user, key, topics));
                }
            }
        }
        let tx = self
            .inner
            .take()
            .expect("the transaction is present until commit or drop");
        tx.commit().await?;
        if let (Some(sink), false) = (&self.sink, entries.is_empty()) {
            sink.committed(entries);
        }
        Ok(last)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(tx) = self.inner.take() else { return };
        let guard = self.guard.take();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rollback failed");
                    }
                    drop(guard);
                });
            }
            // No runtime (process teardown): sqlx rolls back when the connection is reused.
            Err(_) => drop((tx, guard)),
        }
    }
}

/// Maps a unique-constraint violation to a conflict on `field`.
pub(crate) fn conflict_on(
    field: &str,
    message: impl Into<String>,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    let field = field.to_owned();
    let message = message.into();
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate { field, message }
        }
        _ => StoreError::Database(e),
    }
}

/// The keyset condition for the page after a cursor, `AND (cols) > ($n, $n+1)` (`<` for a
/// descending order), or nothing on the first page; with the next free placeholder number.
/// A row-value comparison lets SQLite and PostgreSQL seek straight to the cursor in the
/// index, where `$n IS NULL OR ...` would make them scan from the start.
pub(crate) fn after_cursor(
    cols: &str,
    descending: bool,
    has_cursor: bool,
    first: usize,
) -> (String, usize) {
    if has_cursor {
        let op = if descending { "<" } else { ">" };
        (
            format!("AND ({cols}) {op} (${first}, ${})", first + 1),
            first + 2,
        )
    } else {
        (String::new(), first)
    }
}

/// Whether an update changes nothing but `updated_at`; such an update writes and logs
/// nothing, so the audit trail shows only real changes.
pub(crate) fn unchanged<T: serde::Serialize>(before: &T, after: &T) -> bool {
    let strip = |v: &T| {
        let mut j = serde_json::to_value(v).unwrap_or_default();
        if let Some(o) = j.as_object_mut() {
            o.remove("updated_at");
        }
        j
    };
    strip(before) == strip(after)
}

/// Clamps a requested page size.
pub(crate) fn page_limit(limit: i64) -> i64 {
    limit.clamp(1, 200)
}

/// Builds a page from `limit + 1` fetched rows.
pub(crate) fn page_of<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(50);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| cursor_of(r).encode())
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<i64> {
        self.count_users_impl().await
    }

    async fn create_department(
        &self,
        actor: &Actor,
        input: &NewDepartment,
    ) -> StoreResult<Department> {
        self.create_department_impl(actor, input).await
    }

    async fn list_departments(&self) -> StoreResult<Vec<Department>> {
        self.list_departments_impl().await
    }

    async fn create_user(
        &self,
        actor: &Actor,
        input: &NewUser,
        password_hash: &str,
    ) -> StoreResult<User> {
        self.create_user_impl(actor, input, password_hash).await
    }

    async fn get_user(&self, id: Id) -> StoreResult<User> {
        self.get_user_impl(id).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.list_users_impl().await
    }

    async fn update_user(
        &self,
        actor: &Actor,
        id: Id,
        patch: &UserPatch,
        password_hash: Option<String>,
    ) -> StoreResult<User> {
        self.update_user_impl(actor, id, patch, password_hash).await
    }

    async fn change_own_password(
        &self,
        user_id: Id,
        password_hash: &str,
        keep_session: &str,
    ) -> StoreResult<()> {
        self.change_own_password_impl(user_id, password_hash, keep_session)
            .await
    }

    async fn credentials(&self, login: &str) -> StoreResult<Option<Credentials>> {
        self.credentials_impl(login).await
    }

    async fn create_session(
        &self,
        user_id: Id,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        self.create_session_impl(user_id, token_hash, expires_at)
            .await
    }

    async fn session_user(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<User>> {
        self.session_user_impl(token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.delete_session_impl(token_hash).await
    }

    async fn create_api_key(
        &self,
        actor: &Actor,
        input: &NewApiKey,
        prefix: &str,
        key_hash: &str,
    ) -> StoreResult<ApiKey> {
        self.create_api_key_impl(actor, input, prefix, key_hash)
            .await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.list_api_keys_impl().await
    }

    async fn revoke_api_key(&self, actor: &Actor, id: Id) -> StoreResult<ApiKey> {
        self.revoke_api_key_impl(actor, id).await
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<(ApiKey, String)>> {
        self.api_key_by_prefix_impl(prefix).await
    }

    async fn list_custom_fields(&self) -> StoreResult<Vec<CustomField>> {
        self.list_custom_fields_impl().await
    }

    async fn create_custom_field(
        &self,
        actor: &Actor,
        input: &NewCustomField,
    ) -> StoreResult<CustomField> {
        self.create_custom_field_impl(actor, input).await
    }

    async fn delete_custom_field(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        self.delete_custom_field_impl(actor, id).await
    }

    async fn update_custom_field(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CustomFieldPatch,
    ) -> StoreResult<CustomField> {
        self.update_custom_field_impl(actor, id, patch).await
    }

    async fn list_canned_responses(
        &self,
        actor: &Actor,
        q: Option<&str>,
    ) -> StoreResult<Vec<CannedResponse>> {
        self.list_canned_responses_impl(actor, q).await
    }

    async fn create_canned_response(
        &self,
        actor: &Actor,
        input: &NewCannedResponse,
    ) -> StoreResult<CannedResponse> {
        self.create_canned_response_impl(actor, input).await
    }

    async fn update_canned_response(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CannedResponsePatch,
    ) -> StoreResult<CannedResponse> {
        self.update_canned_response_impl(actor, id, patch).await
    }

    async fn delete_canned_response(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        self.delete_canned_response_impl(actor, id).await
    }

    async fn create_client(&self, actor: &Actor, input: &NewClient) -> StoreResult<ClientCard> {
        self.create_client_impl(actor, input).await
    }

    async fn get_client(&self, actor: &Actor, id: Id) -> StoreResult<ClientCard> {
        self.get_client_impl(actor, id).await
    }

    async fn update_client(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ClientPatch,
    ) -> StoreResult<Client> {
        self.update_client_impl(actor, id, patch).await
    }

    async fn search_clients(
        &self,
        actor: &Actor,
        query: &ClientQuery,
    ) -> StoreResult<Page<Client>> {
        self.search_clients_impl(actor, query).await
    }

    async fn create_contact(
        &self,
        actor: &Actor,
        client_id: Id,
        input: &NewContact,
    ) -> StoreResult<Contact> {
        self.create_contact_impl(actor, client_id, input).await
    }

    async fn get_contact(&self, actor: &Actor, id: Id) -> StoreResult<Contact> {
        self.get_contact_impl(actor, id).await
    }

    async fn update_contact(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ContactPatch,
    ) -> StoreResult<Contact> {
        self.update_contact_impl(actor, id, patch).await
    }

    async fn add_identity(
        &self,
        actor: &Actor,
        owner: IdentityOwner,
        input: &IdentityInput,
    ) -> StoreResult<Identity> {
        self.add_identity_impl(actor, owner, input).await
    }

    async fn find_identity(
        &self,
        actor: &Actor,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<Identity>> {
        self.find_identity_impl(actor, kind, value).await
    }

    async fn delete_identity(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        self.delete_identity_impl(actor, id).await
    }

    async fn create_lead(&self, actor: &Actor, input: &NewLead) -> StoreResult<Lead> {
        self.create_lead_impl(actor, input).await
    }

    async fn get_lead(&self, actor: &Actor, id: Id) -> StoreResult<Lead> {
        self.get_lead_impl(actor, id).await
    }

    async fn list_leads(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Lead>> {
        self.list_leads_impl(actor, filter).await
    }

    async fn update_lead(&self, actor: &Actor, id: Id, patch: &LeadPatch) -> StoreResult<Lead> {
        self.update_lead_impl(actor, id, patch).await
    }

    async fn convert_lead(
        &self,
        actor: &Actor,
        id: Id,
        input: &ConvertLead,
    ) -> StoreResult<LeadConversion> {
        self.convert_lead_impl(actor, id, input).await
    }

    async fn list_scenarios(&self) -> StoreResult<Vec<SalesScenario>> {
        self.list_scenarios_impl().await
    }

    async fn create_scenario(
        &self,
        actor: &Actor,
        input: &NewSalesScenario,
    ) -> StoreResult<SalesScenario> {
        self.create_scenario_impl(actor, input).await
    }

    async fn create_interest(&self, actor: &Actor, input: &NewInterest) -> StoreResult<Interest> {
        self.create_interest_impl(actor, input).await
    }

    async fn get_interest(&self, actor: &Actor, id: Id) -> StoreResult<Interest> {
        self.get_interest_impl(actor, id).await
    }

    async fn list_interests(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> StoreResult<Page<Interest>> {
        self.list_interests_impl(actor, filter).await
    }

    async fn update_interest(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InterestPatch,
    ) -> StoreResult<Interest> {
        self.update_interest_impl(actor, id, patch).await
    }

    async fn move_interest_stage(
        &self,
        actor: &Actor,
        id: Id,
        stage_id: Id,
    ) -> StoreResult<Interest> {
        self.move_interest_stage_impl(actor, id, stage_id).await
    }

    async fn interest_stage_history(&self, actor: &Actor, id: Id) -> StoreResult<Vec<StageChange>> {
        self.interest_stage_history_impl(actor, id).await
    }

    async fn create_interaction(
        &self,
        actor: &Actor,
        input: &NewInteraction,
    ) -> StoreResult<Interaction> {
        self.create_interaction_impl(actor, input).await
    }

    async fn get_interaction(&self, actor: &Actor, id: Id) -> StoreResult<Interaction> {
        self.get_interaction_impl(actor, id).await
    }

    async fn list_interactions(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> StoreResult<Page<Interaction>> {
        self.list_interactions_impl(actor, filter).await
    }

    async fn update_interaction(
        &self,
        actor: &Actor,
        id: Id,
        patch: &InteractionPatch,
    ) -> StoreResult<Interaction> {
        self.update_interaction_impl(actor, id, patch).await
    }

    async fn create_dialog(&self, actor: &Actor, input: &NewDialog) -> StoreResult<(Dialog, bool)> {
        self.create_dialog_impl(actor, input).await
    }

    async fn get_dialog(&self, actor: &Actor, id: Id) -> StoreResult<Dialog> {
        self.get_dialog_impl(actor, id).await
    }

    async fn list_dialogs(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Dialog>> {
        self.list_dialogs_impl(actor, filter).await
    }

    async fn update_dialog(
        &self,
        actor: &Actor,
        id: Id,
        patch: &DialogPatch,
    ) -> StoreResult<Dialog> {
        self.update_dialog_impl(actor, id, patch).await
    }

    async fn add_message(
        &self,
        actor: &Actor,
        dialog_id: Id,
        input: &NewMessage,
    ) -> StoreResult<(Message, bool)> {
        self.add_message_impl(actor, dialog_id, input).await
    }

    async fn list_messages(
        &self,
        actor: &Actor,
        dialog_id: Id,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> StoreResult<Page<Message>> {
        self.list_messages_impl(actor, dialog_id, limit, cursor, false)
            .await
    }

    async fn list_messages_newest(
        &self,
        actor: &Actor,
        dialog_id: Id,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> StoreResult<Page<Message>> {
        self.list_messages_impl(actor, dialog_id, limit, cursor, true)
            .await
    }

    async fn update_delivery(
        &self,
        actor: &Actor,
        message_id: Id,
        update: &DeliveryUpdate,
    ) -> StoreResult<Message> {
        self.update_delivery_impl(actor, message_id, update).await
    }

    async fn record_call(&self, actor: &Actor, input: &NewCall) -> StoreResult<(Call, bool)> {
        self.record_call_impl(actor, input).await
    }

    async fn get_call(&self, actor: &Actor, id: Id) -> StoreResult<Call> {
        self.get_call_impl(actor, id).await
    }

    async fn list_calls(&self, actor: &Actor, filter: &ListFilter) -> StoreResult<Page<Call>> {
        self.list_calls_impl(actor, filter).await
    }

    async fn update_call(&self, actor: &Actor, id: Id, patch: &CallPatch) -> StoreResult<Call> {
        self.update_call_impl(actor, id, patch).await
    }

    async fn feed(&self, actor: &Actor, query: &FeedQuery) -> StoreResult<Page<FeedEntry>> {
        self.feed_impl(actor, query).await
    }

    async fn changes_since(&self, since: i64, limit: i64) -> StoreResult<Vec<ChangeEntry>> {
        self.changes_since_impl(since, limit).await
    }

    async fn audit(
        &self,
        entity: Option<&str>,
        entity_id: Option<Id>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Vec<ChangeEntry>> {
        self.audit_impl(entity, entity_id, limit, before).await
    }

    async fn topic_changes(
        &self,
        topic: Topic,
        since: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ChangeEntry>> {
        self.topic_changes_impl(topic, since, until, limit).await
    }

    fn set_commit_sink(&self, sink: Arc<dyn CommitSink>) {
        if let Ok(mut s) = self.sink.write() {
            *s = Some(sink);
        }
    }

    async fn operator_state(&self, user_id: Id) -> StoreResult<OperatorState> {
        self.operator_state_impl(user_id).await
    }

    async fn operator_states(&self, department_id: Option<Id>) -> StoreResult<Vec<OperatorState>> {
        self.operator_states_impl(department_id).await
    }

    async fn presence_connected(&self, user_id: Id, node_id: &str) -> StoreResult<OperatorState> {
        self.presence_connected_impl(user_id, node_id).await
    }

    async fn presence_disconnected(&self, user_id: Id, node_id: &str) -> StoreResult<()> {
        self.presence_disconnected_impl(user_id, node_id).await
    }

    async fn presence_expire(
        &self,
        user_id: Id,
        alive_after: Timestamp,
    ) -> StoreResult<OperatorState> {
        self.presence_expire_impl(user_id, alive_after).await
    }

    async fn presence_choose(
        &self,
        user_id: Id,
        chosen: PresenceStatus,
    ) -> StoreResult<OperatorState> {
        self.presence_choose_impl(user_id, chosen).await
    }

    async fn set_on_call(&self, user_id: Id, on_call: bool) -> StoreResult<OperatorState> {
        self.set_on_call_impl(user_id, on_call).await
    }

    async fn node_heartbeat(&self, node_id: &str, started_at: Timestamp) -> StoreResult<()> {
        self.node_heartbeat_impl(node_id, started_at).await
    }

    async fn sweep_nodes(&self, dead_before: Timestamp) -> StoreResult<Vec<Id>> {
        self.sweep_nodes_impl(dead_before).await
    }

    async fn present_without_connections(&self) -> StoreResult<Vec<Id>> {
        self.present_without_connections_impl().await
    }

    async fn try_lease(&self, name: &str, node_id: &str, until: Timestamp) -> StoreResult<bool> {
        self.try_lease_impl(name, node_id, until).await
    }

    async fn release_lease(&self, name: &str, node_id: &str) -> StoreResult<()> {
        self.release_lease_impl(name, node_id).await
    }

    async fn routing_settings(&self, department_id: Id) -> StoreResult<RoutingSettings> {
        self.routing_settings_impl(department_id).await
    }

    async fn update_routing(
        &self,
        actor: &Actor,
        department_id: Id,
        patch: &RoutingPatch,
    ) -> StoreResult<RoutingSettings> {
        self.update_routing_impl(actor, department_id, patch).await
    }

    async fn set_max_dialogs(
        &self,
        actor: &Actor,
        user_id: Id,
        max: i64,
    ) -> StoreResult<OperatorState> {
        self.set_max_dialogs_impl(actor, user_id, max).await
    }

    async fn drain_queue(&self, department_id: Id, max: usize) -> StoreResult<Vec<Assignment>> {
        self.drain_queue_impl(department_id, max).await
    }

    async fn departments_with_queue(&self) -> StoreResult<Vec<Id>> {
        self.departments_with_queue_impl().await
    }

    async fn reoffer_due(&self, now: Timestamp) -> StoreResult<Vec<Assignment>> {
        self.reoffer_due_impl(now).await
    }

    async fn assign_dialog(
        &self,
        actor: &Actor,
        dialog_id: Id,
        user_id: Option<Id>,
        department_id: Option<Id>,
        reason: AssignReason,
    ) -> StoreResult<(Dialog, Assignment)> {
        self.assign_dialog_impl(actor, dialog_id, user_id, department_id, reason)
            .await
    }

    async fn dialog_assignments(
        &self,
        actor: &Actor,
        dialog_id: Id,
    ) -> StoreResult<Vec<Assignment>> {
        self.dialog_assignments_impl(actor, dialog_id).await
    }

    async fn mark_read(&self, actor: &Actor, dialog_id: Id) -> StoreResult<Dialog> {
        self.mark_read_impl(actor, dialog_id).await
    }

    async fn ingest_message(&self, input: &IngestMessage) -> StoreResult<IngestOutcome> {
        self.ingest_message_impl(input).await
    }

    async fn ingest_messages(
        &self,
        inputs: &[IngestMessage],
    ) -> StoreResult<Vec<StoreResult<IngestOutcome>>> {
        self.ingest_messages_impl(inputs).await
    }

    async fn refine_classification(
        &self,
        message_id: Id,
        reading: &Classification,
        department_id: Option<Id>,
    ) -> StoreResult<Option<Message>> {
        self.refine_classification_impl(message_id, reading, department_id)
            .await
    }

    async fn ingest_call(&self, input: &IngestCall) -> StoreResult<CallOutcome> {
        self.ingest_call_impl(input).await
    }

    async fn create_originate(
        &self,
        actor: &Actor,
        connector_id: &str,
        call_external_id: &str,
        to: &str,
        client_id: Option<Id>,
        lead_id: Option<Id>,
    ) -> StoreResult<Call> {
        self.create_originate_impl(
            actor,
            connector_id,
            call_external_id,
            to,
            client_id,
            lead_id,
        )
        .await
    }

    async fn pending_originates(
        &self,
        connector_id: &str,
        after: Id,
        limit: i64,
    ) -> StoreResult<Vec<Call>> {
        self.pending_originates_impl(connector_id, after, limit)
            .await
    }

    async fn originate_sent(&self, call_id: Id) -> StoreResult<bool> {
        self.originate_sent_impl(call_id).await
    }

    async fn assign_extensions(&self, pairs: &[(String, String)]) -> StoreResult<Vec<String>> {
        self.assign_extensions_impl(pairs).await
    }

    async fn put_file(
        &self,
        connector_id: &str,
        mime_type: &str,
        content: &[u8],
    ) -> StoreResult<String> {
        self.put_file_impl(connector_id, mime_type, content).await
    }

    async fn message_html(&self, actor: &Actor, message_id: Id) -> StoreResult<Option<String>> {
        self.message_html_impl(actor, message_id).await
    }

    async fn list_request_types(&self) -> StoreResult<Vec<RequestType>> {
        self.list_request_types_impl().await
    }

    async fn put_request_type(
        &self,
        actor: &Actor,
        key: &str,
        input: &RequestTypeInput,
    ) -> StoreResult<(RequestType, bool)> {
        self.put_request_type_impl(actor, key, input).await
    }

    async fn delete_request_type(&self, actor: &Actor, key: &str) -> StoreResult<()> {
        self.delete_request_type_impl(actor, key).await
    }

    async fn save_feedback(
        &self,
        actor: &Actor,
        message_id: Id,
        verdict: Verdict,
        label: Option<&str>,
    ) -> StoreResult<(Feedback, Dialog, Message)> {
        self.save_feedback_impl(actor, message_id, verdict, label)
            .await
    }

    async fn feedback_after(&self, after: Id, limit: i64) -> StoreResult<Vec<Feedback>> {
        self.feedback_after_impl(after, limit).await
    }

    async fn latest_model(&self, engine: &str) -> StoreResult<Option<StoredModel>> {
        self.latest_model_impl(engine).await
    }

    async fn save_model(&self, model: &StoredModel) -> StoreResult<Id> {
        self.save_model_impl(model).await
    }

    async fn list_kb_articles(&self) -> StoreResult<Vec<KbArticle>> {
        self.list_kb_articles_impl().await
    }

    async fn get_kb_articles(&self, ids: &[Id]) -> StoreResult<Vec<KbArticle>> {
        self.get_kb_articles_impl(ids).await
    }

    async fn create_kb_article(
        &self,
        actor: &Actor,
        input: &NewKbArticle,
    ) -> StoreResult<KbArticle> {
        self.create_kb_article_impl(actor, input).await
    }

    async fn update_kb_article(
        &self,
        actor: &Actor,
        id: Id,
        patch: &KbArticlePatch,
    ) -> StoreResult<KbArticle> {
        self.update_kb_article_impl(actor, id, patch).await
    }

    async fn delete_kb_article(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        self.delete_kb_article_impl(actor, id).await
    }

    async fn record_kb_use(
        &self,
        actor: &Actor,
        id: Id,
        dialog_id: Id,
    ) -> StoreResult<(KbArticle, bool)> {
        self.record_kb_use_impl(actor, id, dialog_id).await
    }

    async fn get_file(&self, key: &str) -> StoreResult<Option<FileContent>> {
        self.get_file_impl(key).await
    }

    async fn identity_value(&self, identity_id: Id) -> StoreResult<Option<(String, String)>> {
        self.identity_value_impl(identity_id).await
    }

    async fn connector_state(&self, connector_id: &str, key: &str) -> StoreResult<Option<String>> {
        self.connector_state_impl(connector_id, key).await
    }

    async fn set_connector_state(
        &self,
        connector_id: &str,
        key: &str,
        value: &str,
    ) -> StoreResult<()> {
        self.set_connector_state_impl(connector_id, key, value)
            .await
    }

    async fn hub_setting(&self, key: &str, init: &str) -> StoreResult<String> {
        self.hub_setting_impl(key, init).await
    }

    async fn message_by_channel_id(
        &self,
        connector_id: &str,
        channel_id: &str,
    ) -> StoreResult<Option<Message>> {
        self.message_by_channel_id_impl(connector_id, channel_id)
            .await
    }

    async fn dialog_by_thread(
        &self,
        connector_id: &str,
        thread_id: &str,
    ) -> StoreResult<Option<Dialog>> {
        self.dialog_by_thread_impl(connector_id, thread_id).await
    }

    async fn pending_outbound(
        &self,
        connector_id: &str,
        after_id: Id,
        limit: i64,
    ) -> StoreResult<Vec<(Message, Dialog)>> {
        self.pending_outbound_impl(connector_id, after_id, limit)
            .await
    }

    async fn last_seq(&self) -> StoreResult<i64> {
        self.last_seq_impl().await
    }
}
