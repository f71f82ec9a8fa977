//! A parsed [`Submission`] as the hub's event: its key, its message and its `raw`. Pure.

use kommutator_sdk::{
    ConnectorId, IdentityKind, InboundEvent, InboundKind, InboundMessage, Party, PartyIdentity,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::parse::{FormKind, Submission};

/// The width of the time bucket of keys derived without a client key, in seconds: the
/// same contact and message within it is the same lead (a double click).
pub const DEDUPE_BUCKET_SECS: i64 = 600;

/// What the request says of its sender, for `raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The client's IP as the connector sees it (or `unknown`).
    pub ip: String,
    /// The `User-Agent` header, cut to 512 characters.
    pub user_agent: Option<String>,
}

/// The event key of a submission: the client's `idempotency_key`, else `h:` and the hex
/// SHA-256 of the form id, the phone, the email, the message and the 10-minute bucket of
/// `now_secs`.
pub fn external_id(sub: &Submission, form_id: &str, now_secs: i64) -> String {
    if let Some(key) = &sub.idempotency_key {
        return key.clone();
    }
    let bucket = now_secs.div_euclid(DEDUPE_BUCKET_SECS);
    let mut h = Sha256::new();
    for part in [
        form_id,
        sub.phone.as_deref().unwrap_or_default(),
        sub.email.as_deref().unwrap_or_default(),
        sub.message.as_deref().unwrap_or_default(),
        &bucket.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    format!("h:{}", hex::encode(h.finalize()))
}

/// The message subject: the form's name, or `Callback request: {name}`.
pub fn subject(kind: FormKind, form_name: &str) -> String {
    match kind {
        FormKind::Lead => form_name.to_owned(),
        FormKind::Callback => format!("Callback request: {form_name}"),
    }
}

/// The message text: the message, then `Company: …` and one `Label: value` line per
/// extra field; `None` when all are empty.
pub fn text(sub: &Submission) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    if let Some(m) = &sub.message {
        lines.push(m.clone());
        if sub.company.is_some() || !sub.extras.is_empty() {
            lines.push(String::new());
        }
    }
    if let Some(c) = &sub.company {
        lines.push(format!("Company: {c}"));
    }
    for (label, value) in &sub.extras {
        lines.push(format!("{label}: {value}"));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The form this event came from, for `raw`.
#[derive(Debug, Clone, Copy)]
pub struct FormInfo<'a> {
    /// The instance id.
    pub id: &'a ConnectorId,
    /// `form_name`.
    pub name: &'a str,
    /// `kind`.
    pub kind: FormKind,
}

/// The `raw` payload (see the crate docs).
pub fn raw(form: FormInfo<'_>, sub: &Submission, meta: &RequestMeta) -> Value {
    let mut v = json!({
        "form": form.id.as_str(),
        "form_name": form.name,
        "kind": form.kind.as_str(),
        "fields": sub.fields_json(),
        "consent": sub.consent,
        "traffic_source": sub.traffic_json(),
        "ip": meta.ip,
    });
    if let (Some(ua), Some(obj)) = (&meta.user_agent, v.as_object_mut()) {
        obj.insert("user_agent".to_owned(), Value::String(ua.clone()));
    }
    v
}

/// The whole event: a message in its own thread `form:{external_id}`, from a party with
/// the phone and email identities and the name; `Unknown` when no field of ours had a
/// value (only possible when the config requires nothing).
pub fn event(
    form: FormInfo<'_>,
    sub: &Submission,
    external_id: String,
    meta: &RequestMeta,
    at: OffsetDateTime,
) -> InboundEvent {
    let raw = raw(form, sub, meta);
    if sub.is_empty() {
        tracing::debug!(form = %form.id, "web form: submission without mapped fields");
        return InboundEvent::new(
            form.id.clone(),
            external_id,
            at,
            InboundKind::Unknown {
                description: "web form submission without mapped fields".to_owned(),
            },
        )
        .with_raw(raw);
    }
    let mut identities = Vec::new();
    if let Some(p) = &sub.phone {
        identities.push(PartyIdentity::new(IdentityKind::Phone, p.clone()));
    }
    if let Some(e) = &sub.email {
        identities.push(PartyIdentity::new(IdentityKind::Email, e.clone()));
    }
    let party = Party {
        identities,
        display_name: sub.name.clone(),
    };
    let mut msg = InboundMessage::text(format!("form:{external_id}"), party, text(sub));
    msg.subject = Some(subject(form.kind, form.name));
    InboundEvent::new(form.id.clone(), external_id, at, InboundKind::Message(msg)).with_raw(raw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sub() -> Submission {
        Submission {
            name: Some("Ivan".to_owned()),
            phone: Some("+79161234567".to_owned()),
            message: Some("Hello".to_owned()),
            company: Some("ACME".to_owned()),
            extras: vec![("Budget".to_owned(), "100".to_owned())],
            traffic: vec![("utm_source", "yandex".to_owned())],
            ..Submission::default()
        }
    }

    #[test]
    fn keys_are_stable_within_ten_minutes() {
        let s = sub();
        let a = external_id(&s, "f1", 1_200);
        assert!(a.starts_with("h:") && a.len() == 66, "{a}");
        assert_eq!(a, external_id(&s, "f1", 1_799));
        assert_ne!(a, external_id(&s, "f1", 1_800));
        assert_ne!(a, external_id(&s, "f2", 1_200));
        let mut other = s.clone();
        other.message = Some("Hello!".to_owned());
        assert_ne!(a, external_id(&other, "f1", 1_200));
        let mut keyed = s;
        keyed.idempotency_key = Some("client-key-1".to_owned());
        assert_eq!(external_id(&keyed, "f1", 0), "client-key-1");
    }

    #[test]
    fn event_shape() {
        let id = ConnectorId::new("site");
        let form = FormInfo {
            id: &id,
            name: "Call me",
            kind: FormKind::Callback,
        };
        let meta = RequestMeta {
            ip: "203.0.113.5".to_owned(),
            user_agent: Some("UA".to_owned()),
        };
        let ev = event(
            form,
            &sub(),
            "k-123456".to_owned(),
            &meta,
            OffsetDateTime::UNIX_EPOCH,
        );
        let InboundKind::Message(m) = &ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(m.thread_id, "form:k-123456");
        assert_eq!(m.subject.as_deref(), Some("Callback request: Call me"));
        assert_eq!(
            m.text.as_deref(),
            Some("Hello\n\nCompany: ACME\nBudget: 100")
        );
        assert_eq!(m.sender.display_name.as_deref(), Some("Ivan"));
        assert_eq!(
            m.sender.identities,
            vec![PartyIdentity::new(IdentityKind::Phone, "+79161234567")]
        );
        assert_eq!(
            ev.raw.unwrap(),
            json!({"form":"site","form_name":"Call me","kind":"callback",
                   "fields":{"name":"Ivan","phone":"+79161234567","message":"Hello","company":"ACME","Budget":"100"},
                   "consent":false,"traffic_source":{"utm_source":"yandex"},
                   "ip":"203.0.113.5","user_agent":"UA"})
        );
        let empty = event(
            form,
            &Submission::default(),
            "k".to_owned(),
            &RequestMeta::default(),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert!(matches!(empty.kind, InboundKind::Unknown { .. }));
    }
}
