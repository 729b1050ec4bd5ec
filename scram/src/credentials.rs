//! What the server stores per user: never the password, only what verifies a proof (RFC 5802 §3),
//! written in PostgreSQL's verifier format so existing tooling and habits carry over:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::{self, Key};

/// The fewest PBKDF2 iterations accepted in stored credentials (RFC 7677 §4).
pub const MIN_ITERATIONS: u32 = 4096;

const PREFIX: &str = "SCRAM-SHA-256$";

/// One user's verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub(crate) iterations: NonZeroU32,
    pub(crate) salt: Vec<u8>,
    pub(crate) stored_key: Key,
    pub(crate) server_key: Key,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are password equivalents for an attacker who can also sniff an exchange.
        f.debug_struct("StoredCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why stored credentials could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A verifier is not in the `SCRAM-SHA-256$i:salt$stored:server` form.
    #[error("line {line}: {rule}")]
    Invalid {
        /// 1-based line number (1 for a lone verifier).
        line: usize,
        /// What is wrong, and the fix.
        rule: String,
    },
}

impl StoredCredentials {
    /// Derives the verifier of `password` with `salt` (at least 16 random bytes) and `iterations`.
    pub fn derive(password: &str, salt: &[u8], iterations: NonZeroU32) -> StoredCredentials {
        let salted = crypto::salted_password(password.as_bytes(), salt, iterations);
        let client_key = crypto::hmac(&salted, b"Client Key");
        StoredCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: crypto::sha256(&client_key),
            server_key: crypto::hmac(&salted, b"Server Key"),
        }
    }

    /// The verifier in text form.
    pub fn to_verifier(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Reads a verifier written by [`StoredCredentials::to_verifier`] (or PostgreSQL).
    pub fn parse(verifier: &str) -> Result<StoredCredentials, CredentialsError> {
        parse_verifier(verifier).map_err(|rule| CredentialsError::Invalid {
            line: 1,
            rule: rule.into(),
        })
    }
}

fn parse_verifier(verifier: &str) -> Result<StoredCredentials, &'static str> {
    let rest = verifier
        .strip_prefix(PREFIX)
        .ok_or("a verifier starts with `SCRAM-SHA-256$`")?;
    let (params, keys) = rest
        .split_once('$')
        .ok_or("expected `<iterations>:<salt>$<StoredKey>:<ServerKey>`")?;
    let (iterations, salt) = params
        .split_once(':')
        .ok_or("expected `<iterations>:<salt>` after `SCRAM-SHA-256$`")?;
    let (stored, server) = keys
        .split_once(':')
        .ok_or("expected `<StoredKey>:<ServerKey>` after the salt")?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| "the iteration count is not a number")?;
    if iterations < MIN_ITERATIONS {
        return Err("fewer than 4096 iterations (RFC 7677): derive it again with more");
    }
    let iterations = NonZeroU32::new(iterations).ok_or("zero iterations")?;
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| "the salt is not base64")?;
    if salt.is_empty() {
        return Err("the salt is empty");
    }
    Ok(StoredCredentials {
        iterations,
        salt,
        stored_key: key(stored).ok_or("StoredKey is not 32 bytes of base64")?,
        server_key: key(server).ok_or("ServerKey is not 32 bytes of base64")?,
    })
}

fn key(text: &str) -> Option<Key> {
    let bytes = STANDARD.decode(text).ok()?;
    bytes.try_into().ok()
}

/// A credentials file: one `username:verifier` a line; blank lines and `#` comments ignored.
/// A user name may not contain `:` (nor, per RFC 5802, be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialsFile {
    users: BTreeMap<String, StoredCredentials>,
}

impl CredentialsFile {
    /// Parses a whole file; errors name the line.
    pub fn parse(text: &str) -> Result<CredentialsFile, CredentialsError> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |rule: &str| CredentialsError::Invalid {
                line: line_no,
                rule: rule.to_string(),
            };
            let (user, verifier) = line
                .split_once(':')
                .ok_or_else(|| invalid("expected `username:SCRAM-SHA-256$...`"))?;
            if user.is_empty() {
                return Err(invalid("empty user name"));
            }
            let creds = parse_verifier(verifier).map_err(invalid)?;
            if users.insert(user.to_string(), creds).is_some() {
                return Err(invalid("this user name is listed twice"));
            }
        }
        Ok(CredentialsFile { users })
    }

    /// One line of a credentials file.
    pub fn line(user: &str, credentials: &StoredCredentials) -> String {
        format!("{user}:{}", credentials.to_verifier())
    }

    /// The credentials of `user`, if listed.
    pub fn get(&self, user: &str) -> Option<&StoredCredentials> {
        self.users.get(user)
    }

    /// How many users are listed.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterations() -> NonZeroU32 {
        NonZeroU32::new(4096).expect("non-zero")
    }

    #[test]
    fn verifiers_round_trip_through_text_and_files() {
        let creds = StoredCredentials::derive("pencil", b"0123456789abcdef", iterations());
        let text = creds.to_verifier();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(StoredCredentials::parse(&text), Ok(creds.clone()));
        let file = format!("# users\n\n{}\n", CredentialsFile::line("alice", &creds));
        let parsed = CredentialsFile::parse(&file).expect("valid");
        assert_eq!(parsed.get("alice"), Some(&creds));
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let creds = StoredCredentials::derive("x", b"salt-salt-salt!!", iterations());
        let good = CredentialsFile::line("a", &creds);
        let weak = good.replace("$4096:", "$1000:");
        let err = CredentialsFile::parse(&format!("{good}\n{weak}")).expect_err("weak");
        assert!(
            matches!(&err, CredentialsError::Invalid { line: 2, rule } if rule.contains("4096")),
            "{err}"
        );
        let err = CredentialsFile::parse(&format!("{good}\n\n{good}")).expect_err("duplicate");
        assert!(matches!(err, CredentialsError::Invalid { line: 3, .. }));
        assert!(CredentialsFile::parse("bob").is_err());
        assert!(CredentialsFile::parse("bob:SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA").is_err());
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let creds = StoredCredentials::derive("x", b"salt-salt-salt!!", iterations());
        let shown = format!("{creds:?}");
        assert!(!shown.contains("stored_key") && shown.contains("4096"));
    }
}
