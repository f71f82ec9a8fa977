//! Users, departments, roles, API keys and the acting principal that every store query is
//! scoped by.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Id, Timestamp};

/// A user's role. Operators and managers have the same data access; the distinction is for
/// routing and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users, API keys, custom fields and the audit trail.
    Admin,
    /// Everything of their department.
    Supervisor,
    /// Own records and those shared with their department.
    Manager,
    /// As a manager.
    Operator,
}

impl Role {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Manager => "manager",
            Role::Operator => "operator",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Role::Admin,
            "supervisor" => Role::Supervisor,
            "manager" => Role::Manager,
            "operator" => Role::Operator,
            _ => return None,
        })
    }
}

/// A team of users.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Department {
    /// Department id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Input for a new department.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    /// Unique name, up to 200 characters.
    pub name: String,
}

/// A person who signs in: operator, manager, supervisor or admin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    /// User id.
    pub id: Id,
    /// Unique login.
    pub login: String,
    /// Display name.
    pub name: String,
    /// Email, lowercased.
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Department, if any.
    pub department_id: Option<Id>,
    /// Whether the user may sign in.
    pub active: bool,
    /// The password is a one-time password that must be changed before anything else.
    pub must_change_password: bool,
    /// Phone extension (e.g. `101`): calls ringing or answered there are this user's.
    pub extension: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new user.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique login: 2 to 64 of letters, digits, `.`, `_`, `-`, `@`.
    pub login: String,
    /// Display name.
    pub name: String,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Role.
    pub role: Role,
    /// Department.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Password, 10 to 256 characters.
    pub password: String,
    /// The user must choose a new password at first sign-in (default true: the admin knows
    /// this one).
    #[serde(default = "yes")]
    pub must_change_password: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("login", &self.login)
            .field("role", &self.role)
            .field("department_id", &self.department_id)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Changes to a user (admin only). Absent fields stay as they are.
#[derive(Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New email.
    #[serde(default)]
    pub email: Option<String>,
    /// New role.
    #[serde(default)]
    pub role: Option<Role>,
    /// New department.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Enable or disable sign-in; disabling ends the user's sessions.
    #[serde(default)]
    pub active: Option<bool>,
    /// New password.
    #[serde(default)]
    pub password: Option<String>,
    /// Phone extension, 1 to 32 of `0-9 * #` (empty clears); unique.
    #[serde(default)]
    pub extension: Option<String>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("name", &self.name)
            .field("extension", &self.extension)
            .field("role", &self.role)
            .field("department_id", &self.department_id)
            .field("active", &self.active)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// What an API key may do. `write` implies `read` of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// Read clients, contacts, identities, leads, custom field definitions.
    #[serde(rename = "clients:read")]
    ClientsRead,
    /// Create and change clients, contacts, identities, leads.
    #[serde(rename = "clients:write")]
    ClientsWrite,
    /// Read Interests and sales scenarios.
    #[serde(rename = "interests:read")]
    InterestsRead,
    /// Create, change and move Interests.
    #[serde(rename = "interests:write")]
    InterestsWrite,
    /// Read interactions and the Feed.
    #[serde(rename = "interactions:read")]
    InteractionsRead,
    /// Create and change interactions.
    #[serde(rename = "interactions:write")]
    InteractionsWrite,
    /// Read dialogs and messages.
    #[serde(rename = "dialogs:read")]
    DialogsRead,
    /// Create dialogs, post messages, update delivery status.
    #[serde(rename = "dialogs:write")]
    DialogsWrite,
    /// Read calls.
    #[serde(rename = "calls:read")]
    CallsRead,
    /// Record and update calls.
    #[serde(rename = "calls:write")]
    CallsWrite,
    /// Read the change log.
    #[serde(rename = "changes:read")]
    ChangesRead,
    /// Users, departments, API keys, custom fields, sales scenarios, audit.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 12] = [
        Scope::ClientsRead,
        Scope::ClientsWrite,
        Scope::InterestsRead,
        Scope::InterestsWrite,
        Scope::InteractionsRead,
        Scope::InteractionsWrite,
        Scope::DialogsRead,
        Scope::DialogsWrite,
        Scope::CallsRead,
        Scope::CallsWrite,
        Scope::ChangesRead,
        Scope::Admin,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ClientsRead => "clients:read",
            Scope::ClientsWrite => "clients:write",
            Scope::InterestsRead => "interests:read",
            Scope::InterestsWrite => "interests:write",
            Scope::InteractionsRead => "interactions:read",
            Scope::InteractionsWrite => "interactions:write",
            Scope::DialogsRead => "dialogs:read",
            Scope::DialogsWrite => "dialogs:write",
            Scope::CallsRead => "calls:read",
            Scope::CallsWrite => "calls:write",
            Scope::ChangesRead => "changes:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The write scope that implies this read scope.
    fn implied_by(self) -> Option<Scope> {
        Some(match self {
            Scope::ClientsRead => Scope::ClientsWrite,
            Scope::InterestsRead => Scope::InterestsWrite,
            Scope::InteractionsRead => Scope::InteractionsWrite,
            Scope::DialogsRead => Scope::DialogsWrite,
            Scope::CallsRead => Scope::CallsWrite,
            _ => return None,
        })
    }
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKey {
    /// Key id.
    pub id: Id,
    /// What it is for.
    pub name: String,
    /// The public prefix of the key (`kk_abcd1234`), to recognise it in lists and logs.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last time it was used.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Input for a new API key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What it is for.
    pub name: String,
    /// At least one scope.
    pub scopes: Vec<Scope>,
}

/// Who is acting: a signed-in user or an API key. Every store query is scoped by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User {
        /// User id.
        id: Id,
        /// Role.
        role: Role,
        /// Department.
        department_id: Option<Id>,
    },
    /// An integration, connector or bot with an API key: sees all data its scopes allow.
    ApiKey {
        /// Key id.
        id: Id,
        /// Scopes.
        scopes: Vec<Scope>,
    },
    /// The hub itself (start-up, CLI, pipeline).
    System,
}

impl Actor {
    /// Whether the actor may use endpoints that need `scope`. Users get every non-admin scope
    /// (row-level rules then decide what they see); only admins get `admin`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        match self {
            Actor::System => true,
            Actor::User { role, .. } => scope != Scope::Admin || *role == Role::Admin,
            Actor::ApiKey { scopes, .. } => {
                scopes.contains(&scope) || scope.implied_by().is_some_and(|w| scopes.contains(&w))
            }
        }
    }

    /// The acting user's id, if a user acts.
    pub fn user_id(&self) -> Option<Id> {
        match self {
            Actor::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The acting key's id, if an API key acts.
    pub fn api_key_id(&self) -> Option<Id> {
        match self {
            Actor::ApiKey { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Whether the actor sees every row (admin, API key, system).
    pub fn sees_everything(&self) -> bool {
        !matches!(
            self,
            Actor::User {
                role: Role::Supervisor | Role::Manager | Role::Operator,
                ..
            }
        )
    }
}

/// Password rules shared by user creation and change.
///
/// # Errors
/// `weak_password` or `too_long`.
pub fn check_password(field: &str, password: &str) -> Result<(), super::FieldError> {
    let n = password.chars().count();
    if password.trim().is_empty() {
        return Err(super::FieldError::new(
            field,
            "weak_password",
            "a password cannot be only spaces",
        ));
    }
    if n < 10 {
        return Err(super::FieldError::new(
            field,
            "weak_password",
            "a password needs at least 10 characters",
        ));
    }
    if n > 256 {
        return Err(super::FieldError::new(
            field,
            "too_long",
            "a password is at most 256 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_imply() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        let key = Actor::ApiKey {
            id: 1,
            scopes: vec![Scope::DialogsWrite],
        };
        assert!(key.has_scope(Scope::DialogsRead));
        assert!(key.has_scope(Scope::DialogsWrite));
        assert!(!key.has_scope(Scope::ClientsRead));
        assert!(!key.has_scope(Scope::Admin));
        let manager = Actor::User {
            id: 1,
            role: Role::Manager,
            department_id: None,
        };
        assert!(manager.has_scope(Scope::ClientsWrite));
        assert!(!manager.has_scope(Scope::Admin));
        assert!(!manager.sees_everything());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let u = NewUser {
            login: "a".into(),
            name: "A".into(),
            email: None,
            role: Role::Admin,
            department_id: None,
            password: "hunter2hunter2".into(),
            must_change_password: true,
        };
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
