//! The providers that check CONNECT credentials, chained in the configured order (`auth.providers`).
//!
//! Each provider looks at the credentials and either decides (let in as someone, or refuse) or
//! passes when they are not its kind (the password provider passes on a user it does not know, the
//! JWT provider on a password that is no JWT, x509 on a client without certificate). The first
//! decision ends the chain. When every provider passes:
//! - a client that presented nothing (no user name, no password) is let in as anonymous if its
//!   listener allows anonymous clients, else refused with 0x87 Not authorized (3.x: 0x05);
//! - a client that presented credentials nobody could check is refused with 0x86 Bad user name or
//!   password (3.x: 0x04), unless no provider is configured at all and the listener allows
//!   anonymous clients: then the credentials are ignored and it is anonymous.
//!
//! An anonymous client has no user name for ACLs, bans and `%u`, whatever it claimed: a claimed
//! name is never trusted. (A certificate name the listener turns into the user name is not a claim:
//! the x509 provider vouches for it.)
//!
//! Checks may be slow (argon2id takes tens of milliseconds by design), so the chain runs on the
//! blocking pool; see [`crate::auth::Authenticator`].

use std::path::PathBuf;

use bytes::Bytes;
use bytestring::ByteString;
use cicada_engine::codec::ReasonCode;
use cicada_engine::{AuthDecision, CertIdentity, Principal};
use tracing::{info, warn};

use crate::config::{AuthSettings, Provider};
use crate::jwt::{looks_like_jwt, JwtVerifier};
use crate::passwd::{PasswordCheck, PasswordFile};

/// Why the providers cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProvidersError {
    #[error("{0}")]
    Password(#[from] crate::passwd::PasswdError),
    #[error("{0}")]
    Jwt(#[from] crate::jwt::JwtError),
}

/// The loaded providers. Replaced as a whole on reload.
pub struct Providers {
    order: Vec<Provider>,
    password: Option<(PathBuf, PasswordFile)>,
    jwt: Option<JwtVerifier>,
    /// Listener name → whether anonymous clients are let in.
    anonymous: std::collections::BTreeMap<String, bool>,
}

/// Without the credentials themselves.
impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("order", &self.order)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// What a client presented, copied out of the engine's event so the check can run elsewhere.
pub struct Credentials {
    pub client_id: ByteString,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub identity: Option<CertIdentity>,
    pub peer: String,
    pub listener: String,
}

/// How a client proved who it is, kept while it is connected so a reload can tell whether the
/// proof still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A password that matched this hash of the file.
    Password { user: String, hash: String },
    /// This token.
    Jwt { token: String },
    /// A certificate (checked by the TLS handshake, which a reload does not redo).
    X509,
    /// Nothing: an anonymous client on a listener that allows them.
    Anonymous { listener: String },
}

/// A provider's answer.
enum Step {
    Pass,
    Decided(AuthDecision, Option<Proof>),
}

impl Providers {
    /// Loads every configured provider's files.
    pub fn load(settings: &AuthSettings) -> Result<Providers, ProvidersError> {
        let password = match &settings.password_file {
            Some(path) => {
                let file = PasswordFile::load(path)?;
                info!(path = %path.display(), users = file.len(), "password file loaded");
                Some((path.clone(), file))
            }
            None => None,
        };
        let jwt = settings.jwt.as_ref().map(JwtVerifier::load).transpose()?;
        if settings.providers.is_empty() {
            warn!("no authentication provider configured: only listeners that allow anonymous clients let anyone in, and user names are not trusted");
        }
        Ok(Providers {
            order: settings.providers.clone(),
            password,
            jwt,
            anonymous: settings.anonymous.clone(),
        })
    }

    /// Whether no provider is configured (the check is then instant).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Runs the chain. May take tens of milliseconds (argon2id): call it off the engine task.
    pub fn check(&self, c: &Credentials) -> (AuthDecision, Option<Proof>) {
        for provider in &self.order {
            let step = match provider {
                Provider::Password => self.password_step(c),
                Provider::Jwt => self.jwt_step(c),
                Provider::X509 => x509_step(c),
            };
            if let Step::Decided(decision, proof) = step {
                return (decision, proof);
            }
        }
        // A certificate name the listener made the user name (identity_as_username) is vouched for
        // by the TLS handshake.
        if let (Some(user), Some(name)) = (
            &c.username,
            c.identity.as_ref().and_then(CertIdentity::name),
        ) {
            if &**user == name && c.password.is_none() {
                return (allow(Some(user.clone()), Vec::new()), Some(Proof::X509));
            }
        }
        let presented = c.username.is_some() || c.password.is_some();
        let anonymous_ok = self.anonymous.get(&c.listener).copied().unwrap_or(false);
        if anonymous_ok && (!presented || self.order.is_empty()) {
            let proof = Proof::Anonymous {
                listener: c.listener.clone(),
            };
            return (allow(None, Vec::new()), Some(proof));
        }
        let (reason, why) = if presented {
            (
                ReasonCode::BadUserNameOrPassword,
                "no provider accepted the credentials",
            )
        } else {
            (
                ReasonCode::NotAuthorized,
                "no credentials, and the listener does not allow anonymous clients",
            )
        };
        refused(c, why);
        (AuthDecision::Deny { reason }, None)
    }

    fn password_step(&self, c: &Credentials) -> Step {
        let (Some((_, file)), Some(user), Some(password)) =
            (&self.password, &c.username, &c.password)
        else {
            return Step::Pass;
        };
        match file.verify(user, password) {
            PasswordCheck::UnknownUser => Step::Pass,
            PasswordCheck::Mismatch => {
                refused(c, &format!("wrong password for user {user:?}"));
                Step::Decided(bad_credentials(), None)
            }
            PasswordCheck::Match => {
                let hash = file.get_hash(user).unwrap_or_default().to_string();
                let proof = Proof::Password {
                    user: user.to_string(),
                    hash,
                };
                Step::Decided(allow(Some(user.clone()), Vec::new()), Some(proof))
            }
        }
    }

    fn jwt_step(&self, c: &Credentials) -> Step {
        let (Some(verifier), Some(password)) = (&self.jwt, &c.password) else {
            return Step::Pass;
        };
        if !looks_like_jwt(password) {
            return Step::Pass;
        }
        let Ok(token) = std::str::from_utf8(password) else {
            return Step::Pass;
        };
        match verifier.verify(token) {
            Ok(identity) => {
                let proof = Proof::Jwt {
                    token: token.to_string(),
                };
                let user = ByteString::from(identity.username);
                Step::Decided(allow(Some(user), identity.claims), Some(proof))
            }
            Err(why) => {
                refused(c, &format!("JWT refused: {why}"));
                Step::Decided(bad_credentials(), None)
            }
        }
    }

    /// Whether a connected client's proof still holds under these (reloaded) providers, and why not.
    pub fn recheck(&self, proof: &Proof) -> Result<(), String> {
        match proof {
            Proof::Password { user, hash } => {
                if !self.order.contains(&Provider::Password) {
                    return Err("the password provider was removed".into());
                }
                match self.password.as_ref().and_then(|(_, f)| f.get_hash(user)) {
                    Some(h) if h == hash => Ok(()),
                    Some(_) => Err(format!("the password of user {user:?} changed")),
                    None => Err(format!("user {user:?} was removed from the password file")),
                }
            }
            Proof::Jwt { token } => match &self.jwt {
                Some(verifier) if self.order.contains(&Provider::Jwt) => verifier
                    .verify(token)
                    .map(|_| ())
                    .map_err(|e| format!("its JWT no longer verifies: {e}")),
                _ => Err("the JWT provider was removed".into()),
            },
            Proof::X509 => Ok(()),
            Proof::Anonymous { listener } => {
                if self.anonymous.get(listener).copied().unwrap_or(false) {
                    Ok(())
                } else {
                    Err(format!(
                        "listener {listener} no longer allows anonymous clients"
                    ))
                }
            }
        }
    }
}

/// The certificate's name, if the client has a verified certificate.
fn x509_step(c: &Credentials) -> Step {
    let Some(name) = c.identity.as_ref().and_then(CertIdentity::name) else {
        return Step::Pass;
    };
    Step::Decided(
        allow(Some(ByteString::from(name)), Vec::new()),
        Some(Proof::X509),
    )
}

fn allow(username: Option<ByteString>, claims: Vec<(String, String)>) -> AuthDecision {
    AuthDecision::Authenticated {
        principal: Principal { username, claims },
        data: None,
    }
}

fn bad_credentials() -> AuthDecision {
    AuthDecision::Deny {
        reason: ReasonCode::BadUserNameOrPassword,
    }
}

/// The log line of a refusal: the client, where it came from, and the rule.
fn refused(c: &Credentials, why: &str) {
    warn!(
        client_id = %c.client_id,
        user = ?c.username.as_deref(),
        peer = %c.peer,
        listener = %c.listener,
        "authentication failed: {why}"
    );
}
