//! Signed server-to-server posts: `X-Kommutator-Signature: sha256=<hex>` of
//! HMAC-SHA256(secret, "{timestamp}.{raw body}") with `X-Kommutator-Timestamp` (Unix
//! seconds) within [`MAX_SKEW_SECS`] of our clock. Pure.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-kommutator-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-kommutator-timestamp";
/// How far the timestamp may be from our clock, either way, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a signed post is refused (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// The timestamp is not an integer or is too far from our clock.
    #[error("timestamp is not Unix seconds within 5 minutes of the server's clock")]
    Stale,
    /// The signature is malformed or does not match.
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp`: `sha256=<hex>`. For senders and tests.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks the headers of a signed post against `body`, in constant time.
///
/// # Errors
///
/// A [`SignatureError`]: missing header, stale timestamp, or mismatch.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp
        .map(str::trim)
        .ok_or(SignatureError::Missing("X-Kommutator-Timestamp"))?;
    let signature = signature
        .map(str::trim)
        .ok_or(SignatureError::Missing("X-Kommutator-Signature"))?;
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Stale)?;
    if now_secs.saturating_sub(ts).saturating_abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let hex_part = signature
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Mismatch)?;
    let given = hex::decode(hex_part).map_err(|_| SignatureError::Mismatch)?;
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let body = br#"{"phone":"+79161234567"}"#;
        let sig = sign(b"k", "1000", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(verify(b"k", Some("1000"), Some(&sig), body, 1_100), Ok(()));
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), body, 1_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), body, 699),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"other", Some("1000"), Some(&sig), body, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), b"{}", 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", None, Some(&sig), body, 1_000),
            Err(SignatureError::Missing("X-Kommutator-Timestamp"))
        );
        assert_eq!(
            verify(b"k", Some("1000"), None, body, 1_000),
            Err(SignatureError::Missing("X-Kommutator-Signature"))
        );
        for bad in ["", "sha256=zz", "md5=00", &sig[7..]] {
            assert_eq!(
                verify(b"k", Some("1000"), Some(bad), body, 1_000),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
        assert_eq!(
            verify(b"k", Some("soon"), Some(&sig), body, 1_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(
                b"k",
                Some("-9223372036854775808"),
                Some(&sig),
                body,
                i64::MAX
            ),
            Err(SignatureError::Stale)
        );
    }
}
