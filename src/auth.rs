//! Passwords, session tokens, API keys, and the sign-in rate limiter.
//!
//! Passwords are hashed with Argon2id (a deliberately slow hash: run it on a blocking
//! thread). Session tokens and API keys are 256-bit random secrets; we store only their
//! SHA-256, which is enough for secrets of that entropy and keeps every request cheap.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix every API key starts with.
pub const API_KEY_PREFIX: &str = "kk_";

/// Hashes a password (Argon2id, default parameters). CPU-heavy: call from a blocking thread.
///
/// # Errors
/// Only on internal failure of the hasher.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a stored hash. CPU-heavy: call from a blocking thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the login does not exist, so that the answer takes as long
/// as for a real user.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password at all").unwrap_or_default())
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets (hashes, MACs) in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of a token, hex: the form tokens and keys are stored and looked up in.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new session token and its hash.
pub fn new_session_token() -> (String, String) {
    let t = random_secret();
    let h = token_hash(&t);
    (t, h)
}

/// A new API key: `(key, prefix, hash)`. The key is shown once; the prefix (`kk_` and 8
/// characters) identifies it in lists and is how it is looked up.
pub fn new_api_key() -> (String, String, String) {
    let mut id = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut id);
    let prefix = format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(id)
            .replace(['-', '_'], "x")
    );
    let key = format!("{prefix}.{}", random_secret());
    let hash = token_hash(&key);
    (key, prefix, hash)
}

/// The prefix of a presented API key, if it has the shape of one.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let (prefix, secret) = key.split_once('.')?;
    (prefix.starts_with(API_KEY_PREFIX)
        && prefix.len() == API_KEY_PREFIX.len() + 8
        && secret.len() >= 40)
        .then_some(prefix)
}

/// A one-time password for the first admin: 20 characters from an unambiguous alphabet.
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Limits failed sign-ins per login and per client address within a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    per_login: usize,
    per_ip: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// At most `per_login` failures for one login and `per_ip` from one address per `window`.
    pub fn new(window: Duration, per_login: usize, per_ip: usize) -> Self {
        Self {
            window,
            per_login,
            per_ip,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(login: &str, ip: Option<IpAddr>) -> [Option<String>; 2] {
        [
            Some(format!("login:{}", login.trim().to_lowercase())),
            ip.map(|ip| format!("ip:{ip}")),
        ]
    }

    /// Starts a sign-in attempt: `Err(retry_after)` when the login or address is blocked;
    /// otherwise the attempt is counted as a failure at once (so a burst of parallel guesses
    /// is limited too) until [`LoginLimiter::succeeded`] takes it back.
    ///
    /// # Errors
    /// How long to wait before trying again.
    pub fn attempt(&self, login: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keys = Self::keys(login, ip);
        let mut wait = Duration::ZERO;
        for (key, limit) in keys.iter().zip([self.per_login, self.per_ip]) {
            let Some(key) = key else { continue };
            if let Some(q) = map.get_mut(key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit {
                    if let Some(oldest) = q.front() {
                        wait = wait.max(self.window.saturating_sub(now.duration_since(*oldest)));
                    }
                }
            }
        }
        if wait > Duration::ZERO {
            return Err(wait.max(Duration::from_secs(1)));
        }
        if map.len() > 100_000 {
            // Bounded memory under a spray of logins: drop entries whose window has passed.
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= window));
        }
        for key in keys.into_iter().flatten() {
            let q = map.entry(key).or_default();
            q.push_back(now);
            if q.len() > 1000 {
                q.pop_front();
            }
        }
        Ok(())
    }

    /// A successful sign-in: clears the login's failures and takes back this attempt from
    /// the address's count.
    pub fn succeeded(&self, login: &str, ip: Option<IpAddr>) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&format!("login:{}", login.trim().to_lowercase()));
        if let Some(ip) = ip {
            if let Some(q) = map.get_mut(&format!("ip:{ip}")) {
                q.pop_back();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn api_keys_have_a_recognisable_shape() {
        let (key, prefix, hash) = new_api_key();
        assert_eq!(api_key_prefix(&key), Some(prefix.as_str()));
        assert_eq!(token_hash(&key), hash);
        assert_eq!(api_key_prefix("kk_short.x"), None);
        assert_eq!(api_key_prefix("random-session-token"), None);
    }

    #[test]
    fn limiter_blocks_and_recovers() {
        let l = LoginLimiter::new(Duration::from_secs(60), 3, 10);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(
                l.attempt("Ivan", Some(ip)).is_ok(),
                "counted before the password is checked"
            );
        }
        assert!(l.attempt("IVAN", Some(ip)).is_err());
        assert!(
            l.attempt("petr", Some(ip)).is_ok(),
            "another login from the same address"
        );
        l.succeeded("petr", Some(ip));
        l.succeeded("ivan", Some(ip));
        assert!(l.attempt("ivan", Some(ip)).is_ok());
        // Successful sign-ins do not use up the address's budget.
        let office = LoginLimiter::new(Duration::from_secs(60), 3, 2);
        for n in 0..10 {
            let who = format!("user{n}");
            assert!(office.attempt(&who, Some(ip)).is_ok(), "{who}");
            office.succeeded(&who, Some(ip));
        }
    }
}
