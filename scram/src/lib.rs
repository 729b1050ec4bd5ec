//! SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication.
//!
//! Pure: no clock, no sockets, no randomness of its own. Nonces and salts are handed in by the caller
//! (the broker shell draws them from the OS), so every exchange can be replayed in a test. Each side is
//! a chain of per-state types: a step can only be taken in the state that allows it, and a finished
//! exchange cannot be continued.
//!
//! In MQTT the messages travel as Authentication Data: client-first in CONNECT (or AUTH 0x19 to
//! re-authenticate), server-first in AUTH 0x18, client-final in AUTH 0x18, server-final in CONNACK
//! (or AUTH 0x00).
//!
//! Not supported: channel binding (`p=` in the GS2 header is refused; `y` and `n` are accepted) and
//! SASLprep of non-ASCII passwords (passwords are used as their UTF-8 bytes; ASCII passwords, which
//! SASLprep leaves alone, interoperate with every client).

mod client;
mod credentials;
mod crypto;
mod message;
mod server;

pub use client::{ClientAwaitingServerFinal, ClientAwaitingServerFirst};
pub use credentials::{CredentialsError, CredentialsFile, StoredCredentials, MIN_ITERATIONS};
pub use server::{Authenticated, ServerAwaitingClientFinal};

/// The MQTT Authentication Method name of this mechanism.
pub const METHOD: &str = "SCRAM-SHA-256";

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the RFC 5802 grammar.
    #[error("malformed {message}: {rule}")]
    Malformed {
        /// Which message (client-first, server-first, ...).
        message: &'static str,
        /// What is wrong with it.
        rule: &'static str,
    },
    /// The client asked for channel binding, which is not offered.
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    /// The nonce does not continue this exchange (a replay or a mix-up).
    #[error("the nonce does not continue this exchange")]
    NonceMismatch,
    /// The client's proof does not match the stored credentials (wrong password or unknown user).
    #[error("the client proof does not match")]
    InvalidProof,
    /// The server's signature does not match: it does not know the password.
    #[error("the server signature does not match")]
    InvalidServerSignature,
    /// The server ended the exchange with an error (`e=...`).
    #[error("the server refused: {0}")]
    ServerRefused(String),
    /// The server asks for more PBKDF2 iterations than the client accepts.
    #[error("{0} iterations is outside the accepted range")]
    Iterations(u32),
}
