//! Clients, contacts, leads, and the admin-defined custom fields of the client card.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::identity::Identity;
use super::validate::FieldError;
use super::{Id, Timestamp};

/// Company or private person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A legal entity.
    Company,
    /// A private person.
    Person,
}

impl ClientKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Company => "company",
            ClientKind::Person => "person",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "company" => Some(ClientKind::Company),
            "person" => Some(ClientKind::Person),
            _ => None,
        }
    }
}

/// Who a record is assigned to, and whether the department shares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct Ownership {
    /// The responsible manager.
    pub responsible_id: Option<Id>,
    /// The owning department.
    pub department_id: Option<Id>,
    /// Shared with everyone in the department.
    pub shared: bool,
}

/// A company or private person we work with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Client {
    /// Client id.
    pub id: Id,
    /// Company or person.
    pub kind: ClientKind,
    /// Name as entered.
    pub name: String,
    /// Free notes.
    pub notes: Option<String>,
    /// Values of the admin-defined fields, keyed by field key.
    #[schema(value_type = Object)]
    pub custom_fields: Map<String, Value>,
    /// The responsible manager.
    pub responsible_id: Option<Id>,
    /// The owning department.
    pub department_id: Option<Id>,
    /// Shared with the whole department.
    pub shared: bool,
    /// The lead this client was converted from.
    pub converted_from_lead_id: Option<Id>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A client with its contacts and identities: the client card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientCard {
    /// The client.
    #[serde(flatten)]
    pub client: Client,
    /// Its contact persons.
    pub contacts: Vec<Contact>,
    /// Its channel identities and those of its contacts.
    pub identities: Vec<Identity>,
}

/// An identity given with a new record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    /// Channel kind: `phone`, `email`, `telegram`, `vk`, `whatsapp`, `web_visitor`.
    #[schema(value_type = String, example = "phone")]
    pub kind: kommutator_sdk::IdentityKind,
    /// The value as written; it is normalized.
    pub value: String,
}

/// Input for a new client. Identities are added in the same transaction: a duplicate one
/// rejects the whole request and nothing is stored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Company or person.
    pub kind: ClientKind,
    /// Name, up to 200 characters.
    pub name: String,
    /// Free notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Values of custom fields.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: Map<String, Value>,
    /// Responsible manager; defaults to the creating user.
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// Department; defaults to the responsible manager's.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Share with the department.
    #[serde(default)]
    pub shared: bool,
    /// Channel identities of the client.
    #[serde(default)]
    pub identities: Vec<IdentityInput>,
}

/// Changes to a client; absent fields stay. A custom field set to `null` is removed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    /// Company or person.
    #[serde(default)]
    pub kind: Option<ClientKind>,
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New notes (empty string clears).
    #[serde(default)]
    pub notes: Option<String>,
    /// Custom field values to set (null removes).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Map<String, Value>>,
    /// New responsible manager.
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// New department.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Share with the department.
    #[serde(default)]
    pub shared: Option<bool>,
}

/// A person at a client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Contact {
    /// Contact id.
    pub id: Id,
    /// The client.
    pub client_id: Id,
    /// Full name.
    pub name: String,
    /// Job title.
    pub position: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new contact.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// Full name.
    pub name: String,
    /// Job title.
    #[serde(default)]
    pub position: Option<String>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// The contact's identities.
    #[serde(default)]
    pub identities: Vec<IdentityInput>,
}

/// Changes to a contact.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// Full name.
    #[serde(default)]
    pub name: Option<String>,
    /// Job title (empty clears).
    #[serde(default)]
    pub position: Option<String>,
    /// Notes (empty clears).
    #[serde(default)]
    pub notes: Option<String>,
}

/// State of a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Being worked on.
    Open,
    /// Turned into a client; its history moved there.
    Converted,
    /// Spam or not a prospect.
    Rejected,
}

impl LeadStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Open => "open",
            LeadStatus::Converted => "converted",
            LeadStatus::Rejected => "rejected",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(LeadStatus::Open),
            "converted" => Some(LeadStatus::Converted),
            "rejected" => Some(LeadStatus::Rejected),
            _ => None,
        }
    }
}

/// An unknown sender not yet turned into a client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lead {
    /// Lead id.
    pub id: Id,
    /// Name as known (sender name, or the phone / email when nothing better is known).
    pub name: String,
    /// Company, if given.
    pub company_name: Option<String>,
    /// Phone in E.164.
    pub phone: Option<String>,
    /// Email, lowercased.
    pub email: Option<String>,
    /// Where it came from (channel, campaign).
    pub source: Option<String>,
    /// State.
    pub status: LeadStatus,
    /// The client it became.
    pub converted_client_id: Option<Id>,
    /// When it was converted.
    pub converted_at: Option<Timestamp>,
    /// The responsible manager.
    pub responsible_id: Option<Id>,
    /// The owning department.
    pub department_id: Option<Id>,
    /// Shared with the department.
    pub shared: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new lead. Phone and email become its identities.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLead {
    /// Name; defaults to the phone or email.
    #[serde(default)]
    pub name: Option<String>,
    /// Company.
    #[serde(default)]
    pub company_name: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Responsible manager; defaults to the creating user.
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// Department; defaults to the responsible manager's.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Shared with the department (default true: leads are worked by the team).
    #[serde(default = "yes")]
    pub shared: bool,
    /// Other identities (messenger ids, visitor id).
    #[serde(default)]
    pub identities: Vec<IdentityInput>,
}

fn yes() -> bool {
    true
}

/// Changes to a lead.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadPatch {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Company (empty clears).
    #[serde(default)]
    pub company_name: Option<String>,
    /// Source (empty clears).
    #[serde(default)]
    pub source: Option<String>,
    /// `open` or `rejected` (conversion has its own endpoint).
    #[serde(default)]
    pub status: Option<LeadStatus>,
    /// Responsible manager.
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// Department.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Shared with the department.
    #[serde(default)]
    pub shared: Option<bool>,
}

/// How to convert a lead: into a new client, or into an existing one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertLead {
    /// Merge into this existing client instead of creating one.
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Kind of the new client (default `person`, or `company` when the lead has a company).
    #[serde(default)]
    pub kind: Option<ClientKind>,
    /// Name of the new client (default: the lead's company, else its name).
    #[serde(default)]
    pub name: Option<String>,
    /// Also create a contact person named after the lead and give it the lead's identities.
    #[serde(default)]
    pub create_contact: bool,
}

/// Result of a conversion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeadConversion {
    /// The lead, now `converted`.
    pub lead: Lead,
    /// The client that now holds the lead's history.
    pub client: Client,
    /// The contact created for the lead's person, if asked for.
    pub contact: Option<Contact>,
    /// How many rows moved, by kind (`identities`, `interests`, `interactions`, `dialogs`,
    /// `calls`, `feed_entries`).
    #[schema(value_type = Object)]
    pub moved: Map<String, Value>,
}

/// Type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomFieldType {
    /// Text up to 1000 characters.
    String,
    /// A finite number.
    Number,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// One of the field's options.
    Enum,
}

impl CustomFieldType {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomFieldType::String => "string",
            CustomFieldType::Number => "number",
            CustomFieldType::Date => "date",
            CustomFieldType::Enum => "enum",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "string" => Some(CustomFieldType::String),
            "number" => Some(CustomFieldType::Number),
            "date" => Some(CustomFieldType::Date),
            "enum" => Some(CustomFieldType::Enum),
            _ => None,
        }
    }
}

/// An admin-defined field on the client card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomField {
    /// Field id.
    pub id: Id,
    /// Key in `custom_fields` (`[a-z][a-z0-9_]*`, up to 64).
    pub key: String,
    /// Label shown on the card.
    pub label: String,
    /// Type.
    pub field_type: CustomFieldType,
    /// Allowed values of an `enum` field.
    pub options: Vec<String>,
    /// Must be filled on new clients.
    pub required: bool,
    /// Order on the card.
    pub position: i64,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Changes to a custom field. Its key and type stay; an enum field may gain options but not
/// lose them (client cards may hold them).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldPatch {
    /// New label.
    #[serde(default)]
    pub label: Option<String>,
    /// The full new option list of an enum field (every current option included).
    #[serde(default)]
    pub options: Option<Vec<String>>,
    /// Required on new clients.
    #[serde(default)]
    pub required: Option<bool>,
    /// Order on the card.
    #[serde(default)]
    pub position: Option<i64>,
}

/// Input for a new custom field.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomField {
    /// Key.
    pub key: String,
    /// Label.
    pub label: String,
    /// Type.
    pub field_type: CustomFieldType,
    /// Options of an `enum` field (1 to 100, unique).
    #[serde(default)]
    pub options: Vec<String>,
    /// Required on new clients.
    #[serde(default)]
    pub required: bool,
    /// Order on the card.
    #[serde(default)]
    pub position: i64,
}

impl NewCustomField {
    /// Checks key, label and options.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let key_ok = (1..=64).contains(&self.key.len())
            && self.key.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            return Err(FieldError::new(
                "key",
                "invalid_key",
                "a key is 1 to 64 characters: a lowercase letter, then lowercase letters, digits or '_'",
            ));
        }
        super::validate::required_text("label", &self.label, super::Limits::NAME)?;
        match self.field_type {
            CustomFieldType::Enum => {
                if self.options.is_empty() || self.options.len() > 100 {
                    return Err(FieldError::new(
                        "options",
                        "invalid_options",
                        "an enum field needs 1 to 100 options",
                    ));
                }
                for (i, o) in self.options.iter().enumerate() {
                    super::validate::required_text(
                        &format!("options.{i}"),
                        o,
                        super::Limits::NAME,
                    )?;
                    if self.options[..i].contains(o) {
                        return Err(FieldError::new(
                            format!("options.{i}"),
                            "duplicate",
                            format!("option `{o}` is listed twice"),
                        ));
                    }
                }
            }
            _ if !self.options.is_empty() => {
                return Err(FieldError::new(
                    "options",
                    "invalid_options",
                    "only enum fields have options",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

/// Validates custom field values against the definitions and merges them into `current`.
/// A `null` value removes the field. With `creating`, required fields must be present.
///
/// # Errors
/// `unknown_custom_field`, `invalid_custom_field` or `required`, naming `custom_fields.<key>`.
pub fn apply_custom_fields(
    defs: &[CustomField],
    current: &mut Map<String, Value>,
    input: &Map<String, Value>,
    creating: bool,
) -> Result<(), FieldError> {
    let mut next = current.clone();
    for (key, value) in input {
        let field = format!("custom_fields.{key}");
        let def = defs.iter().find(|d| &d.key == key).ok_or_else(|| {
            FieldError::new(
                &field,
                "unknown_custom_field",
                format!("no custom field `{key}` is defined"),
            )
        })?;
        if value.is_null() {
            if def.required {
                return Err(FieldError::new(
                    &field,
                    "required",
                    format!("{} is required", def.label),
                ));
            }
            next.remove(key);
            continue;
        }
        let bad = |what: &str| {
            FieldError::new(
                &field,
                "invalid_custom_field",
                format!("{} must be {what}", def.label),
            )
        };
        let stored = match def.field_type {
            CustomFieldType::String => {
                let s = value.as_str().ok_or_else(|| bad("text"))?;
                Value::String(super::validate::required_text(&field, s, 1000)?)
            }
            CustomFieldType::Number => match value.as_f64() {
                Some(f) if f.is_finite() => value.clone(),
                _ => return Err(bad("a number")),
            },
            CustomFieldType::Date => {
                let s = value.as_str().ok_or_else(|| bad("a date YYYY-MM-DD"))?;
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(s, &fmt).map_err(|_| bad("a date YYYY-MM-DD"))?;
                value.clone()
            }
            CustomFieldType::Enum => {
                let s = value.as_str().ok_or_else(|| bad("one of the options"))?;
                if !def.options.iter().any(|o| o == s) {
                    return Err(bad(&format!("one of: {}", def.options.join(", "))));
                }
                value.clone()
            }
        };
        next.insert(key.clone(), stored);
    }
    if creating {
        if let Some(missing) = defs
            .iter()
            .find(|d| d.required && !next.contains_key(&d.key))
        {
            return Err(FieldError::new(
                format!("custom_fields.{}", missing.key),
                "required",
                format!("{} is required", missing.label),
            ));
        }
    }
    *current = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(key: &str, t: CustomFieldType, options: &[&str], required: bool) -> CustomField {
        CustomField {
            id: 1,
            key: key.into(),
            label: key.to_uppercase(),
            field_type: t,
            options: options.iter().map(|s| (*s).to_owned()).collect(),
            required,
            position: 0,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn custom_fields_are_typed() {
        let defs = vec![
            def("inn", CustomFieldType::String, &[], true),
            def("employees", CustomFieldType::Number, &[], false),
            def("since", CustomFieldType::Date, &[], false),
            def("tier", CustomFieldType::Enum, &["gold", "silver"], false),
        ];
        let mut cur = Map::new();
        let input =
            json!({"inn": "7701234567", "employees": 12, "since": "2020-02-29", "tier": "gold"});
        apply_custom_fields(&defs, &mut cur, input.as_object().expect("obj"), true).expect("valid");
        assert_eq!(cur.len(), 4);

        let cases = [
            (json!({"nope": 1}), "unknown_custom_field"),
            (json!({"employees": "many"}), "invalid_custom_field"),
            (json!({"since": "2021-02-29"}), "invalid_custom_field"),
            (json!({"tier": "bronze"}), "invalid_custom_field"),
            (json!({"inn": null}), "required"),
            (json!({"inn": 5}), "invalid_custom_field"),
        ];
        for (input, code) in cases {
            let mut c = cur.clone();
            let e = apply_custom_fields(&defs, &mut c, input.as_object().expect("obj"), false)
                .expect_err("invalid");
            assert_eq!(e.code, code, "{input}");
            assert_eq!(c, cur, "nothing applied on error");
        }
        let mut empty = Map::new();
        let e = apply_custom_fields(&defs, &mut empty, &Map::new(), true).expect_err("missing");
        assert_eq!(
            (e.code, e.field.as_str()),
            ("required", "custom_fields.inn")
        );
    }

    #[test]
    fn custom_field_definitions_validate() {
        let mut f = NewCustomField {
            key: "Tier".into(),
            label: "Tier".into(),
            field_type: CustomFieldType::Enum,
            options: vec!["a".into()],
            required: false,
            position: 0,
        };
        assert_eq!(f.validate().expect_err("key").code, "invalid_key");
        f.key = "tier".into();
        f.validate().expect("valid");
        f.options = vec!["a".into(), "a".into()];
        assert_eq!(f.validate().expect_err("dup").code, "duplicate");
        f.options.clear();
        assert_eq!(f.validate().expect_err("empty").code, "invalid_options");
    }
}
