//! The server side: client-first → server-first → client-final → server-final.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::credentials::{StoredCredentials, MIN_ITERATIONS};
use crate::crypto;
use crate::message::{ClientFinal, ClientFirst};
use crate::ScramError;

/// Server-first sent; waiting for the client's proof.
#[derive(Debug)]
pub struct ServerAwaitingClientFinal {
    username: String,
    gs2_header: String,
    nonce: String,
    /// `client-first-message-bare "," server-first-message`, the start of the AuthMessage.
    auth_prefix: String,
    credentials: StoredCredentials,
    /// Whether the user exists; if not, `credentials` are a decoy and no proof verifies.
    known: bool,
}

/// A verified client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The user name the client proved.
    pub username: String,
    /// The server-final-message (`v=...`), which lets the client check the server knows the password.
    pub server_final: String,
}

impl ServerAwaitingClientFinal {
    /// Reads client-first and answers with server-first.
    ///
    /// `credentials` looks up a user. `server_nonce` must be fresh and unpredictable (at least 18
    /// random bytes, printable, no `,`; the caller draws it). `decoy_key` is a server secret: for an
    /// unknown user a salt is derived from it so the answer looks like a known user's and user names
    /// cannot be probed; the exchange then fails at the proof like a wrong password.
    pub fn start<'c>(
        client_first: &[u8],
        credentials: impl FnOnce(&str) -> Option<&'c StoredCredentials>,
        server_nonce: &str,
        decoy_key: &[u8],
    ) -> Result<(ServerAwaitingClientFinal, String), ScramError> {
        let first = ClientFirst::parse(client_first)?;
        let (credentials, known) = match credentials(&first.username) {
            Some(c) => (c.clone(), true),
            None => (decoy(&first.username, decoy_key), false),
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credentials.salt),
            credentials.iterations
        );
        let state = ServerAwaitingClientFinal {
            username: first.username,
            gs2_header: first.gs2_header,
            nonce,
            auth_prefix: format!("{},{server_first}", first.bare),
            credentials,
            known,
        };
        Ok((state, server_first))
    }

    /// The user name the client claims (not yet proved).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks client-final's proof; on success returns the server-final-message.
    pub fn finish(self, client_final: &[u8]) -> Result<Authenticated, ScramError> {
        let last = ClientFinal::parse(client_final)?;
        if last.nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        if last.channel_binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed {
                message: "client-final-message",
                rule: "c= must repeat the GS2 header of client-first",
            });
        }
        let auth_message = format!("{},{}", self.auth_prefix, last.without_proof);
        let signature = crypto::hmac(&self.credentials.stored_key, auth_message.as_bytes());
        let client_key = crypto::xor(&last.proof, &signature);
        let matches = crypto::same(&crypto::sha256(&client_key), &self.credentials.stored_key);
        if !(matches && self.known) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = crypto::hmac(&self.credentials.server_key, auth_message.as_bytes());
        Ok(Authenticated {
            username: self.username,
            server_final: format!("v={}", STANDARD.encode(server_signature)),
        })
    }
}

/// Plausible credentials for a user that does not exist: stable per name, unrelated to any password.
fn decoy(username: &str, decoy_key: &[u8]) -> StoredCredentials {
    let salt = crypto::hmac(decoy_key, format!("salt:{username}").as_bytes());
    StoredCredentials {
        iterations: NonZeroU32::MIN.saturating_add(MIN_ITERATIONS - 1),
        salt: salt[..16].to_vec(),
        stored_key: crypto::hmac(decoy_key, format!("stored:{username}").as_bytes()),
        server_key: crypto::hmac(decoy_key, format!("server:{username}").as_bytes()),
    }
}
