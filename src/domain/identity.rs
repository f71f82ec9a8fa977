//! Channel identities: how a sender is recognised on a channel, normalized so that the same
//! person written two ways is one identity.

use std::str::FromStr;

pub use kommutator_sdk::IdentityKind;

use super::validate::{FieldError, Limits};
use super::{Id, Timestamp};

/// A channel identity pointing at a client (optionally one of its contacts) or at a lead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Identity {
    /// Identity id.
    pub id: Id,
    /// Channel kind.
    #[schema(value_type = String, example = "phone")]
    pub kind: IdentityKind,
    /// Normalized value: E.164 phone, lowercased email, numeric messenger id, visitor id.
    pub value: String,
    /// Owning client (set for client and contact identities).
    pub client_id: Option<Id>,
    /// Owning contact of that client, if the identity is a contact's.
    pub contact_id: Option<Id>,
    /// Owning lead.
    pub lead_id: Option<Id>,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// Rules for normalizing identity values.
#[derive(Debug, Clone, Copy)]
pub struct IdentityRules {
    /// Region used for phone numbers written without a country code.
    pub default_region: phonenumber::country::Id,
}

impl Default for IdentityRules {
    fn default() -> Self {
        Self {
            default_region: phonenumber::country::Id::RU,
        }
    }
}

impl IdentityRules {
    /// Rules for a region given as an ISO 3166 code (`RU`, `KZ`, `DE`).
    ///
    /// # Errors
    /// When the code is not a region known to the phone-number metadata.
    pub fn for_region(code: &str) -> Result<Self, String> {
        phonenumber::country::Id::from_str(&code.to_ascii_uppercase())
            .map(|default_region| Self { default_region })
            .map_err(|_| format!("unknown phone region `{code}`; use an ISO 3166 code such as RU"))
    }

    /// Normalizes `value` as an identity of `kind`. Pure: no I/O.
    ///
    /// # Errors
    /// A [`FieldError`] on `field` with code `invalid_phone`, `invalid_email`,
    /// `invalid_messenger_id`, `invalid_visitor_id`, `required` or `too_long`.
    pub fn normalize(
        &self,
        field: &str,
        kind: IdentityKind,
        value: &str,
    ) -> Result<String, FieldError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldError::new(
                field,
                "required",
                format!("{field} must not be empty"),
            ));
        }
        if v.chars().count() > Limits::IDENTITY {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("{field} is longer than {} characters", Limits::IDENTITY),
            ));
        }
        match kind {
            IdentityKind::Phone => self.phone(field, v),
            IdentityKind::Email => normalize_email(field, v),
            IdentityKind::Telegram | IdentityKind::Vk => numeric_id(field, kind, v),
            IdentityKind::Whatsapp => {
                // A WhatsApp id is the phone number in international form without '+'.
                let e164 = self.phone(field, if v.starts_with('+') { v.to_owned() } else { format!("+{v}") }.as_str())
                    .map_err(|_| {
                        FieldError::new(
                            field,
                            "invalid_messenger_id",
                            format!("`{v}` is not a WhatsApp id (the phone number with its country code)"),
                        )
                    })?;
                Ok(e164.trim_start_matches('+').to_owned())
            }
            IdentityKind::WebVisitor => {
                let ok = (8..=128).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if ok {
                    Ok(v.to_owned())
                } else {
                    Err(FieldError::new(
                        field,
                        "invalid_visitor_id",
                        "a visitor id is 8 to 128 characters of letters, digits, '-' and '_'",
                    ))
                }
            }
        }
    }

    /// Normalizes a phone number to E.164.
    ///
    /// # Errors
    /// `invalid_phone` when it does not parse or is not a valid number for its region.
    pub fn phone(&self, field: &str, v: &str) -> Result<String, FieldError> {
        let bad = || {
            FieldError::new(
                field,
                "invalid_phone",
                format!(
                    "`{}` is not a valid phone number",
                    v.chars().take(40).collect::<String>()
                ),
            )
        };
        if v.chars().filter(char::is_ascii_digit).count() < 5 {
            return Err(bad());
        }
        let n = phonenumber::parse(Some(self.default_region), v).map_err(|_| bad())?;
        if !phonenumber::is_valid(&n) {
            return Err(bad());
        }
        Ok(n.format().mode(phonenumber::Mode::E164).to_string())
    }
}

/// Lowercases and checks an email address.
///
/// # Errors
/// `invalid_email`.
pub fn normalize_email(field: &str, v: &str) -> Result<String, FieldError> {
    let lower = v.trim().to_lowercase();
    let valid = email_address::EmailAddress::from_str(&lower)
        .map(|e| e.domain().contains('.') && !lower.contains(['<', '>', ' ']))
        .unwrap_or(false);
    if valid {
        Ok(lower)
    } else {
        Err(FieldError::new(
            field,
            "invalid_email",
            format!(
                "`{}` is not a valid email address",
                v.chars().take(60).collect::<String>()
            ),
        ))
    }
}

fn numeric_id(field: &str, kind: IdentityKind, v: &str) -> Result<String, FieldError> {
    let ok = !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
    match v.parse::<u64>() {
        Ok(n) if ok && n > 0 => Ok(n.to_string()),
        _ => Err(FieldError::new(
            field,
            "invalid_messenger_id",
            format!("a {} id is a positive number", kind.as_str()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(kind: IdentityKind, v: &str) -> Result<String, FieldError> {
        IdentityRules::default().normalize("value", kind, v)
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            n(IdentityKind::Phone, "8 (916) 123-45-67").expect("ru"),
            "+79161234567"
        );
        assert_eq!(
            n(IdentityKind::Phone, "+7 916 123 45 67").expect("intl"),
            "+79161234567"
        );
        assert_eq!(
            n(IdentityKind::Phone, "+49 30 901820").expect("de"),
            "+4930901820"
        );
        for bad in ["12", "hello", "+7 000", "+999 123456789", "++++"] {
            assert_eq!(
                n(IdentityKind::Phone, bad).expect_err(bad).code,
                "invalid_phone",
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_lowercase() {
        assert_eq!(
            n(IdentityKind::Email, " Ivan@Example.RU ").expect("ok"),
            "ivan@example.ru"
        );
        for bad in ["ivan", "ivan@", "@x.ru", "a b@x.ru", "ivan@localhost"] {
            assert_eq!(
                n(IdentityKind::Email, bad).expect_err(bad).code,
                "invalid_email",
                "{bad}"
            );
        }
    }

    #[test]
    fn messenger_ids() {
        assert_eq!(n(IdentityKind::Telegram, "0012345").expect("ok"), "12345");
        assert_eq!(
            n(IdentityKind::Vk, "-5").expect_err("neg").code,
            "invalid_messenger_id"
        );
        assert_eq!(
            n(IdentityKind::Telegram, "@ivan").expect_err("name").code,
            "invalid_messenger_id"
        );
        assert_eq!(
            n(IdentityKind::Whatsapp, "79161234567").expect("wa"),
            "79161234567"
        );
        assert_eq!(
            n(IdentityKind::Whatsapp, "+7 916 123-45-67").expect("wa"),
            "79161234567"
        );
        assert_eq!(
            n(IdentityKind::WebVisitor, "v_abcdef12").expect("visitor"),
            "v_abcdef12"
        );
        assert_eq!(
            n(IdentityKind::WebVisitor, "short")
                .expect_err("short")
                .code,
            "invalid_visitor_id"
        );
    }

    #[test]
    fn oversized_and_blank() {
        assert_eq!(
            n(IdentityKind::Email, &"a".repeat(300))
                .expect_err("long")
                .code,
            "too_long"
        );
        assert_eq!(
            n(IdentityKind::Phone, "   ").expect_err("blank").code,
            "required"
        );
    }

    #[test]
    fn regions() {
        assert!(IdentityRules::for_region("kz").is_ok());
        assert!(IdentityRules::for_region("XX").is_err());
    }
}
