//! The authenticator: answers the engine's [`cicada_engine::Event::Authenticate`] steps.
//!
//! - CONNECTs with an Authentication Method run MQTT 5 enhanced authentication: SCRAM-SHA-256
//!   against a credentials file (`[auth] scram_credentials`). SCRAM needs no slow work on the
//!   server side (the verifiers hold PBKDF2's result), so each step is answered inline on the
//!   engine task.
//! - Other CONNECTs go through the provider chain ([`crate::providers`]): inline when no provider
//!   is configured (only the listener's anonymous switch decides), otherwise on the blocking pool,
//!   at most [`CHECKS_AT_ONCE`] at a time so a storm of password guesses cannot take every core
//!   or the memory argon2id needs per check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use cicada_engine::codec::ReasonCode;
use cicada_engine::{AuthDecision, AuthStage, ConnId};
use cicada_scram::{CredentialsFile, ServerAwaitingClientFinal};
use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use crate::config::AuthSettings;
use crate::providers::{Credentials, Proof, Providers};

/// Why the authenticator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read `auth.scram_credentials` file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`auth.scram_credentials` file {path}: {source} (write lines as printed by `cicada scram-user NAME`)")]
    Parse {
        path: PathBuf,
        source: cicada_scram::CredentialsError,
    },
    #[error("the system random number generator failed")]
    Random,
    #[error("{0}")]
    Providers(#[from] crate::providers::ProvidersError),
}

/// How many slow credential checks run at once.
pub const CHECKS_AT_ONCE: usize = 4;

/// A credential check to run on the blocking pool.
pub type SlowCheck = Box<dyn FnOnce() -> (AuthDecision, Option<Proof>) + Send>;

/// An answer now, or a check to run on the blocking pool.
pub enum Answer {
    Now(AuthDecision),
    Later(SlowCheck),
}

/// One step to check, as the engine asked it.
pub struct Step<'a> {
    pub conn: ConnId,
    pub client_id: &'a str,
    pub peer: &'a str,
    pub listener: &'a str,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub identity: Option<cicada_engine::CertIdentity>,
    pub method: Option<&'a str>,
    pub data: Option<Bytes>,
    pub stage: AuthStage,
}

/// SCRAM state: the verifiers, a decoy secret, and the exchanges in progress.
struct Scram {
    credentials: CredentialsFile,
    decoy_key: [u8; 32],
    pending: BTreeMap<ConnId, ServerAwaitingClientFinal>,
    /// Who each connection proved to be: a re-authentication must prove the same user.
    users: BTreeMap<ConnId, String>,
}

/// The broker's authenticator.
pub struct Authenticator {
    rng: SystemRandom,
    scram: Option<Scram>,
    providers: Arc<Providers>,
    /// How each connected client proved who it is, for reloads.
    proofs: BTreeMap<ConnId, Proof>,
}

impl Authenticator {
    /// Loads the configured credentials.
    pub fn new(settings: &AuthSettings) -> Result<Authenticator, AuthError> {
        let rng = SystemRandom::new();
        let providers = Arc::new(Providers::load(settings)?);
        let scram = match settings.scram_credentials.as_deref() {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let credentials =
                    CredentialsFile::parse(&text).map_err(|source| AuthError::Parse {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let mut decoy_key = [0u8; 32];
                rng.fill(&mut decoy_key).map_err(|_| AuthError::Random)?;
                info!(path = %path.display(), users = credentials.len(), "SCRAM-SHA-256 credentials loaded");
                Some(Scram {
                    credentials,
                    decoy_key,
                    pending: BTreeMap::new(),
                    users: BTreeMap::new(),
                })
            }
        };
        Ok(Authenticator {
            rng,
            scram,
            providers,
            proofs: BTreeMap::new(),
        })
    }

    /// Answers an [`cicada_engine::Event::Authenticate`] (any other event: `None`).
    pub fn decide_event(&mut self, event: cicada_engine::Event) -> Option<(ConnId, Answer)> {
        let cicada_engine::Event::Authenticate {
            conn,
            client_id,
            username,
            password,
            peer,
            listener,
            identity,
            method,
            data,
            stage,
        } = event
        else {
            return None;
        };
        let answer = self.decide(Step {
            conn,
            client_id: &client_id,
            peer: &peer,
            listener: &listener,
            username,
            password,
            identity,
            method: method.as_deref(),
            data,
            stage,
        });
        Some((conn, answer))
    }

    /// Answers one step, or hands back the check to run.
    pub fn decide(&mut self, step: Step<'_>) -> Answer {
        if step.method.is_some() {
            return Answer::Now(self.enhanced(step));
        }
        let credentials = Credentials {
            client_id: ByteString::from(step.client_id),
            username: step.username,
            password: step.password,
            identity: step.identity,
            peer: step.peer.to_string(),
            listener: step.listener.to_string(),
        };
        let providers = self.providers.clone();
        if providers.is_empty() {
            let (decision, proof) = providers.check(&credentials);
            self.settled(step.conn, proof);
            return Answer::Now(decision);
        }
        Answer::Later(Box::new(move || providers.check(&credentials)))
    }

    /// The providers in force, for checks outside MQTT (the HTTP publish API).
    pub fn providers(&self) -> Arc<Providers> {
        self.providers.clone()
    }

    /// Records how a connection proved itself (a check that ran elsewhere came back).
    pub fn settled(&mut self, conn: ConnId, proof: Option<Proof>) {
        if let Some(proof) = proof {
            self.proofs.insert(conn, proof);
        }
    }

    /// Swaps in reloaded providers; the connections whose proof no longer holds, and why.
    pub fn reload(&mut self, settings: &AuthSettings) -> Result<Vec<(ConnId, String)>, AuthError> {
        let providers = Providers::load(settings)?;
        let revoked = self
            .proofs
            .iter()
            .filter_map(|(conn, proof)| providers.recheck(proof).err().map(|why| (*conn, why)))
            .collect();
        self.providers = Arc::new(providers);
        Ok(revoked)
    }

    /// A step of MQTT 5 enhanced authentication.
    fn enhanced(&mut self, step: Step<'_>) -> AuthDecision {
        let Some(method) = step.method else {
            return AuthDecision::Deny {
                reason: ReasonCode::BadAuthenticationMethod,
            };
        };
        let Some(scram) = self
            .scram
            .as_mut()
            .filter(|_| method == cicada_scram::METHOD)
        else {
            // The engine only forwards configured methods; anything else is refused.
            return AuthDecision::Deny {
                reason: ReasonCode::BadAuthenticationMethod,
            };
        };
        let data = step.data.unwrap_or_default();
        let refused = |why: &dyn std::fmt::Display| {
            warn!(conn = %step.conn, client_id = %step.client_id, peer = %step.peer, stage = ?step.stage, "SCRAM-SHA-256 authentication failed: {why}");
            AuthDecision::Deny {
                reason: ReasonCode::NotAuthorized,
            }
        };
        match step.stage {
            AuthStage::Connect | AuthStage::Reauthenticate => {
                let nonce = match nonce(&self.rng) {
                    Some(n) => n,
                    None => return refused(&"the system random number generator failed"),
                };
                let lookup = |user: &str| scram.credentials.get(user);
                match ServerAwaitingClientFinal::start(&data, lookup, &nonce, &scram.decoy_key) {
                    Ok((state, server_first)) => {
                        scram.pending.insert(step.conn, state);
                        AuthDecision::Continue {
                            data: Bytes::from(server_first),
                        }
                    }
                    Err(e) => refused(&e),
                }
            }
            AuthStage::Continue => {
                let Some(state) = scram.pending.remove(&step.conn) else {
                    return refused(&"no exchange in progress");
                };
                let user = state.username().to_string();
                match state.finish(&data) {
                    Ok(done)
                        if scram
                            .users
                            .get(&step.conn)
                            .is_some_and(|u| *u != done.username) =>
                    {
                        refused(&format_args!("re-authentication as {user:?}, another user"))
                    }
                    Ok(done) => {
                        scram.users.insert(step.conn, done.username.clone());
                        info!(conn = %step.conn, client_id = %step.client_id, user = %done.username, "SCRAM-SHA-256 authenticated");
                        AuthDecision::AllowWithData {
                            data: Bytes::from(done.server_final),
                        }
                    }
                    Err(e) => refused(&format_args!("user {user:?}: {e}")),
                }
            }
        }
    }

    /// Drops the state of a closed connection.
    pub fn forget(&mut self, conn: ConnId) {
        self.proofs.remove(&conn);
        if let Some(scram) = self.scram.as_mut() {
            scram.pending.remove(&conn);
            scram.users.remove(&conn);
        }
    }
}

/// 24 random bytes as base64: printable, no `,`.
fn nonce(rng: &SystemRandom) -> Option<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    rng.fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A random salt for new credentials.
pub fn salt() -> Result<[u8; 16], AuthError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AuthError::Random)?;
    Ok(salt)
}
