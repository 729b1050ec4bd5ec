//! The client side, for tests and `cicada-cli`: client-first → client-final → check server-final.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::{self, Key};
use crate::message::{encode_name, ServerFinal, ServerFirst};
use crate::ScramError;

/// The most PBKDF2 iterations a client computes before giving up on a server (a hostile server
/// could otherwise make it burn CPU).
const MAX_ITERATIONS: u32 = 1_000_000;

/// Client-first sent; waiting for server-first.
#[derive(Debug)]
pub struct ClientAwaitingServerFirst {
    password: String,
    nonce: String,
    bare: String,
}

/// Client-final sent; waiting for the server's signature.
#[derive(Debug)]
pub struct ClientAwaitingServerFinal {
    server_signature: Key,
}

const GS2_HEADER: &str = "n,,";

impl ClientAwaitingServerFirst {
    /// Starts an exchange for `username`; `client_nonce` must be fresh and unpredictable (printable
    /// ASCII, no `,`). Returns the client-first-message.
    pub fn start(
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> (ClientAwaitingServerFirst, String) {
        let bare = format!("n={},r={client_nonce}", encode_name(username));
        let first = format!("{GS2_HEADER}{bare}");
        let state = ClientAwaitingServerFirst {
            password: password.to_string(),
            nonce: client_nonce.to_string(),
            bare,
        };
        (state, first)
    }

    /// Reads server-first and answers with client-final.
    pub fn respond(
        self,
        server_first: &[u8],
    ) -> Result<(ClientAwaitingServerFinal, String), ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed {
            message: "server-first-message",
            rule: "not UTF-8",
        })?;
        let first = ServerFirst::parse(text)?;
        if !first.nonce.starts_with(&self.nonce) || first.nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let iterations = NonZeroU32::new(first.iterations)
            .filter(|i| i.get() <= MAX_ITERATIONS)
            .ok_or(ScramError::Iterations(first.iterations))?;
        let salted = crypto::salted_password(self.password.as_bytes(), &first.salt, iterations);
        let client_key = crypto::hmac(&salted, b"Client Key");
        let stored_key = crypto::sha256(&client_key);
        let without_proof = format!("c={},r={}", STANDARD.encode(GS2_HEADER), first.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let signature = crypto::hmac(&stored_key, auth_message.as_bytes());
        let proof = crypto::xor(&client_key, &signature);
        let server_key = crypto::hmac(&salted, b"Server Key");
        let state = ClientAwaitingServerFinal {
            server_signature: crypto::hmac(&server_key, auth_message.as_bytes()),
        };
        Ok((
            state,
            format!("{without_proof},p={}", STANDARD.encode(proof)),
        ))
    }
}

impl ClientAwaitingServerFinal {
    /// Checks the server's signature: only a server that knows the credentials can produce it.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed {
            message: "server-final-message",
            rule: "not UTF-8",
        })?;
        match ServerFinal::parse(text)? {
            ServerFinal::Verifier(v) if crypto::same(&v, &self.server_signature) => Ok(()),
            ServerFinal::Verifier(_) => Err(ScramError::InvalidServerSignature),
            ServerFinal::Error(e) => Err(ScramError::ServerRefused(e)),
        }
    }
}
