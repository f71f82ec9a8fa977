//! Canned responses: ready answers an operator inserts into a reply by typing `/` and a
//! shortcut. Each belongs to one owner: a user (personal), a department, or everyone
//! (global); a shortcut is unique per owner.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validate::{required_text, FieldError};
use super::{Actor, Id, Role, Scope, Timestamp};

/// Whose a canned response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CannedScope {
    /// One user's own; only they see it.
    Personal,
    /// A department's; its members use it, its supervisors and the admins manage it.
    Department,
    /// Everyone's; the admins manage it.
    Global,
}

impl CannedScope {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CannedScope::Personal => "personal",
            CannedScope::Department => "department",
            CannedScope::Global => "global",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "personal" => CannedScope::Personal,
            "department" => CannedScope::Department,
            "global" => CannedScope::Global,
            _ => return None,
        })
    }
}

/// A ready answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CannedResponse {
    /// Canned response id.
    pub id: Id,
    /// Whose it is.
    pub scope: CannedScope,
    /// The department, for `department` responses (otherwise `null`).
    pub department_id: Option<Id>,
    /// The owner, for `personal` responses (otherwise `null`).
    pub user_id: Option<Id>,
    /// What follows `/` in the reply box: lowercase letters (Latin or Cyrillic), digits,
    /// `-` and `_`.
    pub shortcut: String,
    /// What the picker shows.
    pub title: String,
    /// The text inserted into the reply.
    pub body: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new canned response.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCannedResponse {
    /// Whose it is: `personal` (any signed-in user, for themselves), `department`
    /// (admins, and supervisors of that department) or `global` (admins).
    pub scope: CannedScope,
    /// 1 to 32 of `a-z`, `а-я`, `ё`, `0-9`, `-`, `_`, after trimming and lowercasing;
    /// unique per owner.
    pub shortcut: String,
    /// 1 to 200 characters, one line.
    pub title: String,
    /// 1 to 4,000 characters; newlines and tabs allowed.
    pub body: String,
    /// The department of a `department` response (default: the caller's); only for
    /// `department` responses.
    #[serde(default)]
    pub department_id: Option<Id>,
}

/// Changes to a canned response. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedResponsePatch {
    /// New shortcut.
    #[serde(default)]
    pub shortcut: Option<String>,
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New text.
    #[serde(default)]
    pub body: Option<String>,
}

/// The longest shortcut, in characters.
pub const SHORTCUT_MAX: usize = 32;
/// The longest title, in characters.
pub const CANNED_TITLE_MAX: usize = 200;
/// The longest body, in characters.
pub const CANNED_BODY_MAX: usize = 4_000;

/// Trims and lowercases a shortcut and checks it: 1 to 32 of `a-z`, `а-я`, `ё`, `0-9`, `-`
/// and `_`.
///
/// # Errors
/// `required`, `too_long` or `invalid_shortcut` on `shortcut`.
pub fn normalize_shortcut(value: &str) -> Result<String, FieldError> {
    let s = value.trim().to_lowercase();
    if s.is_empty() {
        return Err(FieldError::new(
            "shortcut",
            "required",
            "shortcut must not be empty",
        ));
    }
    let len = s.chars().count();
    if len > SHORTCUT_MAX {
        return Err(FieldError::new(
            "shortcut",
            "too_long",
            format!("shortcut is {len} characters long; the limit is {SHORTCUT_MAX}"),
        ));
    }
    let ok = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | 'а'..='я' | 'ё')
    };
    if !s.chars().all(ok) {
        return Err(FieldError::new(
            "shortcut",
            "invalid_shortcut",
            "a shortcut is letters (Latin or Cyrillic), digits, '-' and '_', with no spaces",
        ));
    }
    Ok(s)
}

/// Checks a title: 1 to 200 characters, trimmed, one line with no control characters.
///
/// # Errors
/// `required`, `too_long` or `invalid_characters` on `title`.
pub fn check_canned_title(value: &str) -> Result<String, FieldError> {
    let t = required_text("title", value, CANNED_TITLE_MAX)?;
    if t.chars().any(char::is_control) {
        return Err(FieldError::new(
            "title",
            "invalid_characters",
            "title is one line without control characters",
        ));
    }
    Ok(t)
}

/// Checks a body: 1 to 4,000 characters, trimmed, no control characters but line breaks
/// and tabs.
///
/// # Errors
/// `required`, `too_long` or `invalid_characters` on `body`.
pub fn check_canned_body(value: &str) -> Result<String, FieldError> {
    required_text("body", value, CANNED_BODY_MAX)
}

impl NewCannedResponse {
    /// The normalized shortcut, title and body.
    ///
    /// # Errors
    /// The first field that fails its rule.
    pub fn normalized(&self) -> Result<(String, String, String), FieldError> {
        Ok((
            normalize_shortcut(&self.shortcut)?,
            check_canned_title(&self.title)?,
            check_canned_body(&self.body)?,
        ))
    }
}

impl CannedResponsePatch {
    /// The patch with each given field normalized.
    ///
    /// # Errors
    /// The first field that fails its rule.
    pub fn normalized(&self) -> Result<CannedResponsePatch, FieldError> {
        Ok(CannedResponsePatch {
            shortcut: self
                .shortcut
                .as_deref()
                .map(normalize_shortcut)
                .transpose()?,
            title: self.title.as_deref().map(check_canned_title).transpose()?,
            body: self.body.as_deref().map(check_canned_body).transpose()?,
        })
    }
}

/// Whether `actor` may create, change or delete a canned response of `scope` owned by
/// `user_id` (personal) or `department_id` (department): its owner for a personal one;
/// admins and the department's supervisors for a department's; admins for a global one.
/// API keys count as admins when they have the `admin` scope, and own no personal ones.
pub fn may_manage_canned(
    actor: &Actor,
    scope: CannedScope,
    department_id: Option<Id>,
    user_id: Option<Id>,
) -> bool {
    let admin = match actor {
        Actor::System => true,
        Actor::User { role, .. } => *role == Role::Admin,
        Actor::ApiKey { .. } => actor.has_scope(Scope::Admin),
    };
    match scope {
        CannedScope::Personal => user_id.is_some() && actor.user_id() == user_id,
        CannedScope::Department => {
            admin
                || matches!(actor, Actor::User {
                    role: Role::Supervisor,
                    department_id: Some(own),
                    ..
                } if department_id == Some(*own))
        }
        CannedScope::Global => admin,
    }
}

/// Whether a canned response matches the picker's text `q` (already lowercased): its
/// shortcut starts with it, or its title contains it, ignoring case.
pub fn canned_matches(c: &CannedResponse, q: &str) -> bool {
    c.shortcut.starts_with(q) || c.title.to_lowercase().contains(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_normalize() {
        assert_eq!(
            normalize_shortcut("  Hello_World-2 ").expect("ok"),
            "hello_world-2"
        );
        assert_eq!(normalize_shortcut("ПРИВЕТ-ёж").expect("ok"), "привет-ёж");
        assert_eq!(
            normalize_shortcut(&"я".repeat(32))
                .expect("ok")
                .chars()
                .count(),
            32
        );
        assert_eq!(
            normalize_shortcut("   ").expect_err("blank").code,
            "required"
        );
        assert_eq!(
            normalize_shortcut(&"a".repeat(33)).expect_err("long").code,
            "too_long"
        );
        for bad in [
            "a b", "a/b", "a.b", "a\u{0}", "a\tb", "ü", "ß", "α", "і", "a'; DROP",
        ] {
            assert_eq!(
                normalize_shortcut(bad).expect_err(bad).code,
                "invalid_shortcut",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn titles_are_one_line_and_bodies_keep_line_breaks() {
        assert_eq!(check_canned_title(" Привет ").expect("ok"), "Привет");
        assert_eq!(
            check_canned_title("a\nb").expect_err("newline").code,
            "invalid_characters"
        );
        assert_eq!(
            check_canned_title(&"x".repeat(201)).expect_err("long").code,
            "too_long"
        );
        assert_eq!(check_canned_body("a\n\tb").expect("ok"), "a\n\tb");
        assert_eq!(
            check_canned_body("a\u{7}b").expect_err("bell").code,
            "invalid_characters"
        );
        assert_eq!(
            check_canned_body(&"ж".repeat(4_000))
                .expect("ok")
                .chars()
                .count(),
            4_000
        );
        assert_eq!(
            check_canned_body(&"ж".repeat(4_001))
                .expect_err("long")
                .code,
            "too_long"
        );
    }

    #[test]
    fn who_manages_what() {
        let user = |id, role, department_id| Actor::User {
            id,
            role,
            department_id,
        };
        let admin = user(1, Role::Admin, None);
        let sup = user(2, Role::Supervisor, Some(7));
        let op = user(3, Role::Operator, Some(7));
        let key = Actor::ApiKey {
            id: 1,
            scopes: vec![Scope::DialogsWrite],
        };
        let admin_key = Actor::ApiKey {
            id: 2,
            scopes: vec![Scope::DialogsWrite, Scope::Admin],
        };
        use CannedScope::*;
        assert!(may_manage_canned(&op, Personal, None, Some(3)));
        assert!(!may_manage_canned(&op, Personal, None, Some(2)));
        assert!(!may_manage_canned(&admin, Personal, None, Some(3)));
        assert!(!may_manage_canned(&admin_key, Personal, None, Some(3)));
        assert!(!may_manage_canned(&op, Department, Some(7), None));
        assert!(may_manage_canned(&sup, Department, Some(7), None));
        assert!(!may_manage_canned(&sup, Department, Some(8), None));
        assert!(may_manage_canned(&admin, Department, Some(8), None));
        assert!(!may_manage_canned(&key, Department, Some(8), None));
        assert!(may_manage_canned(&admin_key, Department, Some(8), None));
        assert!(!may_manage_canned(&sup, Global, None, None));
        assert!(may_manage_canned(&admin, Global, None, None));
        assert!(!may_manage_canned(&key, Global, None, None));
        assert!(may_manage_canned(&Actor::System, Global, None, None));
    }
}
