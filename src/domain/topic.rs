//! Topics: the named streams a console subscribes to (`dialog:7`, `user:3`, `dept:1`,
//! `client:9`, `lead:4`, `interest:2`). Every change in the change log lists the topics it
//! belongs to, so a client resumes one topic from a sequence number.

use std::fmt;
use std::str::FromStr;

use super::Id;

/// What a topic follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// One dialog: its changes, messages, delivery reports, typing.
    Dialog,
    /// One operator's work: dialogs assigned to them (and leaving them), their messages,
    /// their calls and presence.
    User,
    /// A department: its queue (dialogs and their messages), operators' presence and load.
    Dept,
    /// A client's Feed: everything about the client.
    Client,
    /// A lead's Feed.
    Lead,
    /// An Interest's Feed.
    Interest,
}

impl TopicKind {
    /// The prefix before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Dialog => "dialog",
            TopicKind::User => "user",
            TopicKind::Dept => "dept",
            TopicKind::Client => "client",
            TopicKind::Lead => "lead",
            TopicKind::Interest => "interest",
        }
    }
}

/// A topic: a kind and the id of the record it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic {
    /// What it follows.
    pub kind: TopicKind,
    /// The record's id.
    pub id: Id,
}

impl Topic {
    /// `dialog:{id}`.
    pub fn dialog(id: Id) -> Self {
        Self {
            kind: TopicKind::Dialog,
            id,
        }
    }
    /// `user:{id}`.
    pub fn user(id: Id) -> Self {
        Self {
            kind: TopicKind::User,
            id,
        }
    }
    /// `dept:{id}`.
    pub fn dept(id: Id) -> Self {
        Self {
            kind: TopicKind::Dept,
            id,
        }
    }
    /// `client:{id}`.
    pub fn client(id: Id) -> Self {
        Self {
            kind: TopicKind::Client,
            id,
        }
    }
    /// `lead:{id}`.
    pub fn lead(id: Id) -> Self {
        Self {
            kind: TopicKind::Lead,
            id,
        }
    }
    /// `interest:{id}`.
    pub fn interest(id: Id) -> Self {
        Self {
            kind: TopicKind::Interest,
            id,
        }
    }

    /// Parses the space-separated list stored in `change_log.topics`, skipping what does
    /// not parse (a topic kind added by a newer version).
    pub fn parse_list(s: &str) -> Vec<Topic> {
        s.split_ascii_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect()
    }

    /// The stored form of a list.
    pub fn format_list(topics: &[Topic]) -> String {
        let mut out = String::new();
        for (i, t) in topics.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&t.to_string());
        }
        out
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic must be dialog:<id>, user:<id>, dept:<id>, client:<id>, lead:<id> or interest:<id>")]
pub struct ParseTopicError;

impl FromStr for Topic {
    type Err = ParseTopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once(':').ok_or(ParseTopicError)?;
        let kind = match kind {
            "dialog" => TopicKind::Dialog,
            "user" => TopicKind::User,
            "dept" => TopicKind::Dept,
            "client" => TopicKind::Client,
            "lead" => TopicKind::Lead,
            "interest" => TopicKind::Interest,
            _ => return Err(ParseTopicError),
        };
        // Digits only: no sign, no spaces, no leading `+`; at most 18 digits.
        if id.is_empty() || id.len() > 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseTopicError);
        }
        let id: Id = id.parse().map_err(|_| ParseTopicError)?;
        if id <= 0 {
            return Err(ParseTopicError);
        }
        Ok(Topic { kind, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        for s in [
            "dialog:7",
            "user:3",
            "dept:1",
            "client:9",
            "lead:4",
            "interest:2",
        ] {
            let t: Topic = s.parse().expect("valid");
            assert_eq!(t.to_string(), s);
        }
        for bad in [
            "",
            "dialog",
            "dialog:",
            "dialog:-1",
            "dialog:0",
            "dialog:+1",
            "dialog: 1",
            "x:1",
            "dialog:1:2",
            "DIALOG:1",
            "dialog:1234567890123456789",
        ] {
            assert!(bad.parse::<Topic>().is_err(), "{bad} accepted");
        }
        let list = vec![Topic::dialog(1), Topic::user(2)];
        assert_eq!(Topic::format_list(&list), "dialog:1 user:2");
        assert_eq!(Topic::parse_list("dialog:1 user:2 future:3"), list);
    }
}
