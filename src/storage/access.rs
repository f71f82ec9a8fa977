//! Row-level access rules, as SQL predicates.
//!
//! - admin, API keys and the system see every row;
//! - a supervisor sees rows of their department, and rows they are responsible for;
//! - a manager or operator sees rows they are responsible for (assigned to), and rows of
//!   their department that are shared with it.
//!
//! Contacts, identities, messages and the Feed follow their parent (client, lead, dialog).
//! Ids are integers from the authenticated actor, formatted into the SQL, never user text.

use crate::domain::{Actor, Id, Role};

/// The predicate for a table with `responsible`, `department_id` and `shared` columns,
/// under alias `t`. `responsible` is the column naming the responsible user
/// (`responsible_id`, or `assignee_id` for dialogs).
pub fn owned(actor: &Actor, t: &str, responsible: &str) -> String {
    match actor {
        Actor::System | Actor::ApiKey { .. } => "1=1".to_owned(),
        Actor::User {
            role: Role::Admin, ..
        } => "1=1".to_owned(),
        Actor::User {
            id,
            role: Role::Supervisor,
            department_id,
        } => match department_id {
            Some(d) => format!("({t}.department_id = {d} OR {t}.{responsible} = {id})"),
            None => format!("({t}.{responsible} = {id})"),
        },
        Actor::User {
            id, department_id, ..
        } => match department_id {
            Some(d) => format!(
                "({t}.{responsible} = {id} OR ({t}.shared = 1 AND {t}.department_id = {d}))"
            ),
            None => format!("({t}.{responsible} = {id})"),
        },
    }
}

/// [`owned`] evaluated in memory, for live events: whether `actor` sees a record owned by
/// `owner`, in `department`, `shared` with it or not. Keep the two in step.
pub fn owned_visible(
    actor: &Actor,
    owner: Option<Id>,
    department: Option<Id>,
    shared: bool,
) -> bool {
    match actor {
        Actor::System | Actor::ApiKey { .. } => true,
        Actor::User {
            role: Role::Admin, ..
        } => true,
        Actor::User {
            id,
            role: Role::Supervisor,
            department_id,
        } => owner == Some(*id) || (department_id.is_some() && department == *department_id),
        Actor::User {
            id, department_id, ..
        } => {
            owner == Some(*id)
                || (shared && department_id.is_some() && department == *department_id)
        }
    }
}

/// The predicate "the client `client_col` is visible" as an `EXISTS`.
pub fn client_visible(actor: &Actor, client_col: &str) -> String {
    if actor.sees_everything() {
        return format!("({client_col} IS NOT NULL)");
    }
    format!(
        "EXISTS (SELECT 1 FROM clients vc WHERE vc.id = {client_col} AND {})",
        owned(actor, "vc", "responsible_id")
    )
}

/// The predicate "the lead `lead_col` is visible".
pub fn lead_visible(actor: &Actor, lead_col: &str) -> String {
    if actor.sees_everything() {
        return format!("({lead_col} IS NOT NULL)");
    }
    format!(
        "EXISTS (SELECT 1 FROM leads vl WHERE vl.id = {lead_col} AND {})",
        owned(actor, "vl", "responsible_id")
    )
}

/// The predicate "the party (client or lead) of the row under alias `t` is visible".
pub fn party_visible(actor: &Actor, t: &str) -> String {
    if actor.sees_everything() {
        return "1=1".to_owned();
    }
    format!(
        "({} OR {})",
        client_visible(actor, &format!("{t}.client_id")),
        lead_visible(actor, &format!("{t}.lead_id"))
    )
}

/// Interactions: visible with their party, or to their responsible user.
pub fn interaction_visible(actor: &Actor, t: &str) -> String {
    match actor.user_id() {
        Some(uid) if !actor.sees_everything() => {
            format!(
                "({} OR {t}.responsible_id = {uid})",
                party_visible(actor, t)
            )
        }
        _ => party_visible(actor, t),
    }
}

/// Calls: visible with their party, or to the operator on the call.
pub fn call_visible(actor: &Actor, t: &str) -> String {
    match actor.user_id() {
        Some(uid) if !actor.sees_everything() => {
            format!("({} OR {t}.operator_id = {uid})", party_visible(actor, t))
        }
        _ => party_visible(actor, t),
    }
}

/// Canned responses the actor may use, under alias `t`: the global ones, their
/// department's and their own personal ones. An API key (or the system) belongs to no
/// department and owns none: it uses the global ones and every department's.
pub fn canned_usable(actor: &Actor, t: &str) -> String {
    match actor {
        Actor::System | Actor::ApiKey { .. } => format!("({t}.scope <> 'personal')"),
        Actor::User {
            id, department_id, ..
        } => {
            let dept = match department_id {
                Some(d) => format!(" OR ({t}.scope = 'department' AND {t}.department_id = {d})"),
                None => String::new(),
            };
            format!(
                "({t}.scope = 'global'{dept} OR ({t}.scope = 'personal' AND {t}.user_id = {id}))"
            )
        }
    }
}

/// Canned responses that exist for the actor (to change or delete; others are not found):
/// those they may use and, for admins, every department's. A personal one exists only for
/// its owner.
pub fn canned_visible(actor: &Actor, t: &str) -> String {
    match actor {
        Actor::User {
            id,
            role: Role::Admin,
            ..
        } => format!("({t}.scope <> 'personal' OR {t}.user_id = {id})"),
        _ => canned_usable(actor, t),
    }
}

/// Whether the actor may make `user` responsible for a record: admins and API keys anyone,
/// supervisors users of their department, others only themselves.
pub fn may_assign(actor: &Actor, user: Id, user_department: Option<Id>) -> bool {
    match actor {
        Actor::System | Actor::ApiKey { .. } => true,
        Actor::User {
            role: Role::Admin, ..
        } => true,
        Actor::User {
            id,
            role: Role::Supervisor,
            department_id,
        } => *id == user || (department_id.is_some() && *department_id == user_department),
        Actor::User { id, .. } => *id == user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_roles() {
        let admin = Actor::User {
            id: 1,
            role: Role::Admin,
            department_id: None,
        };
        assert_eq!(owned(&admin, "c", "responsible_id"), "1=1");
        let sup = Actor::User {
            id: 2,
            role: Role::Supervisor,
            department_id: Some(7),
        };
        assert_eq!(
            owned(&sup, "c", "responsible_id"),
            "(c.department_id = 7 OR c.responsible_id = 2)"
        );
        let mgr = Actor::User {
            id: 3,
            role: Role::Manager,
            department_id: Some(7),
        };
        assert_eq!(
            owned(&mgr, "d", "assignee_id"),
            "(d.assignee_id = 3 OR (d.shared = 1 AND d.department_id = 7))"
        );
        let loner = Actor::User {
            id: 4,
            role: Role::Operator,
            department_id: None,
        };
        assert_eq!(
            owned(&loner, "c", "responsible_id"),
            "(c.responsible_id = 4)"
        );
        assert!(owned_visible(&admin, None, None, false));
        assert!(owned_visible(&sup, Some(99), Some(7), false));
        assert!(!owned_visible(&sup, Some(99), Some(8), true));
        assert!(owned_visible(&sup, Some(2), Some(8), false));
        assert!(owned_visible(&mgr, Some(3), None, false));
        assert!(owned_visible(&mgr, None, Some(7), true));
        assert!(!owned_visible(&mgr, None, Some(7), false));
        assert!(!owned_visible(&loner, None, None, true));
        assert!(may_assign(&sup, 9, Some(7)));
        assert!(!may_assign(&sup, 9, Some(8)));
        assert!(!may_assign(&mgr, 9, Some(7)));
        assert!(may_assign(&mgr, 3, Some(7)));
    }

    #[test]
    fn canned_responses_follow_their_owner() {
        let admin = Actor::User {
            id: 1,
            role: Role::Admin,
            department_id: Some(7),
        };
        let op = Actor::User {
            id: 3,
            role: Role::Operator,
            department_id: Some(7),
        };
        let loner = Actor::User {
            id: 4,
            role: Role::Supervisor,
            department_id: None,
        };
        let key = Actor::ApiKey {
            id: 1,
            scopes: vec![],
        };
        assert_eq!(
            canned_usable(&op, "t"),
            "(t.scope = 'global' OR (t.scope = 'department' AND t.department_id = 7) \
             OR (t.scope = 'personal' AND t.user_id = 3))"
        );
        assert_eq!(
            canned_usable(&loner, "t"),
            "(t.scope = 'global' OR (t.scope = 'personal' AND t.user_id = 4))"
        );
        assert_eq!(canned_visible(&op, "t"), canned_usable(&op, "t"));
        assert_eq!(
            canned_visible(&admin, "t"),
            "(t.scope <> 'personal' OR t.user_id = 1)"
        );
        assert_eq!(canned_usable(&key, "t"), "(t.scope <> 'personal')");
        assert_eq!(canned_visible(&key, "t"), "(t.scope <> 'personal')");
    }
}
