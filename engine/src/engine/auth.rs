//! Authentication: the authenticator's decisions, and MQTT 5 enhanced authentication (the AUTH packet
//! exchange at CONNECT and re-authentication while connected, MQTT 5.0 §4.12).
//!
//! The engine only carries the exchange; the method itself (SCRAM, Kerberos, ...) runs in the shell's
//! authenticator, which sees each step as [`Event::Authenticate`] and answers with
//! [`crate::Input::AuthDecided`].

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{Auth, Connect, Packet, PacketType, ReasonCode};
use crate::io::{AuthDecision, AuthStage, CloseReason, ConnId, Event, Principal};

use super::conn::{Phase, Reauth};
use super::Engine;

impl Engine {
    /// Puts one authentication step to the authenticator; the user name and method come from the
    /// connection (recorded at CONNECT), the password only with CONNECT.
    pub(super) fn ask_authenticator(
        &mut self,
        id: ConnId,
        client_id: ByteString,
        password: Option<Bytes>,
        stage: AuthStage,
        data: Option<Bytes>,
    ) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        self.events.push_back(Event::Authenticate {
            conn: id,
            client_id,
            username: c.username.clone(),
            password,
            peer: c.meta.peer.clone(),
            listener: c.meta.listener.clone(),
            identity: c.meta.identity.clone(),
            method: c.auth_method.clone(),
            data,
            stage,
        });
    }

    pub(super) fn auth_decided(&mut self, id: ConnId, decision: AuthDecision) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Phase::Connected(_) = c.phase {
            return self.reauth_decided(id, decision);
        }
        let phase = std::mem::replace(&mut c.phase, Phase::AwaitingConnect);
        let Phase::Authenticating(connect) = phase else {
            // No step of ours is waiting (a late or repeated answer): nothing to do.
            c.phase = phase;
            return;
        };
        let method = connect.properties.authentication_method.clone();
        let claimed = || Principal {
            username: c.username.clone(),
            claims: Vec::new(),
        };
        let (principal, data) = match decision {
            AuthDecision::Allow => (claimed(), None),
            AuthDecision::AllowWithData { data } => (claimed(), Some(data)),
            AuthDecision::Authenticated { principal, data } => (principal, data),
            AuthDecision::Continue { data } => {
                let Some(method) = method else {
                    return self.broken_authenticator(id, connect.protocol);
                };
                self.write(id, &Packet::Auth(auth_packet(method, data)), None);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.phase = Phase::Challenged(connect);
                }
                // The client's answer may already be buffered.
                return self.process_inbuf(id);
            }
            AuthDecision::Deny { reason } => {
                self.stats.auth_failures += 1;
                // Only a Connect Reason Code may go into CONNACK [MQTT-3.2.2-8].
                let reason = if reason.allowed_in(PacketType::ConnAck) && reason.is_error() {
                    reason
                } else {
                    ReasonCode::NotAuthorized
                };
                return self.refuse(id, connect.protocol, reason);
            }
        };
        if data.is_some() && method.is_none() {
            return self.broken_authenticator(id, connect.protocol);
        }
        c.username = principal.username;
        c.claims = principal.claims;
        self.admitted(id, connect, data);
    }

    /// Only an enhanced-authentication method has data to send; an authenticator that sends some for
    /// a plain CONNECT is broken, and the client is not let in on it.
    fn broken_authenticator(&mut self, id: ConnId, protocol: crate::codec::ProtocolVersion) {
        self.refuse(id, protocol, ReasonCode::ImplementationSpecificError);
    }

    /// Lets an authenticated client in, and handles what it pipelined behind CONNECT.
    fn admitted(&mut self, id: ConnId, connect: Box<Connect>, data: Option<Bytes>) {
        let mark = self.persist.mark();
        self.admit(id, connect, mark, data);
        self.process_inbuf(id);
    }

    /// AUTH from a client in the middle of a CONNECT exchange we challenged.
    pub(super) fn connect_auth(&mut self, id: ConnId, auth: Auth) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let phase = std::mem::replace(&mut c.phase, Phase::AwaitingConnect);
        let Phase::Challenged(connect) = phase else {
            c.phase = phase;
            return;
        };
        let method = connect.properties.authentication_method.as_ref();
        let rule = if auth.reason != ReasonCode::ContinueAuthentication {
            Some(format!(
                "AUTH {:#04x} before CONNACK; only 0x18 continues an authentication",
                auth.reason.as_u8()
            ))
        } else if auth.properties.authentication_method.as_ref() != method {
            Some("[MQTT-4.12.0-5] AUTH with another authentication method than CONNECT".into())
        } else {
            None
        };
        if let Some(rule) = rule {
            return self.refuse_violation(id, connect.protocol, rule);
        }
        let data = auth.properties.authentication_data;
        let (client_id, password) = (connect.client_id.clone(), connect.password.clone());
        self.ask_authenticator(id, client_id, password, AuthStage::Continue, data);
        if let Some(c) = self.conns.get_mut(&id) {
            c.phase = Phase::Authenticating(connect);
        }
    }

    /// Answers a protocol error before CONNACK with a refusing CONNACK (MQTT 5.0 §4.13.1).
    pub(super) fn refuse_violation(
        &mut self,
        id: ConnId,
        protocol: crate::codec::ProtocolVersion,
        rule: String,
    ) {
        self.stats.protocol_violations += 1;
        let reason = ReasonCode::ProtocolError;
        let close = CloseReason::ProtocolViolation { reason, rule };
        self.refuse_with(id, protocol, reason, close);
    }

    /// AUTH from a connected client: starting or continuing a re-authentication.
    pub(super) fn reauth_packet(&mut self, id: ConnId, auth: Auth) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(method) = c.auth_method.clone() else {
            let rule = "[MQTT-4.12.0-7] AUTH without an authentication method in CONNECT";
            return self.violation(id, ReasonCode::ProtocolError, rule.into());
        };
        let expected = match c.reauth {
            None => ReasonCode::ReAuthenticate,
            Some(Reauth::AwaitingClient) => ReasonCode::ContinueAuthentication,
            Some(Reauth::AwaitingAuthenticator) => {
                let rule = "AUTH while the previous step of a re-authentication is being checked";
                return self.violation(id, ReasonCode::ProtocolError, rule.into());
            }
        };
        if auth.reason != expected {
            let rule = format!(
                "AUTH {:#04x} where {:#04x} was due",
                auth.reason.as_u8(),
                expected.as_u8()
            );
            return self.violation(id, ReasonCode::ProtocolError, rule);
        }
        if auth.properties.authentication_method.as_ref() != Some(&method) {
            let rule = "[MQTT-4.12.1-1] re-authentication with another method than CONNECT's";
            return self.violation(id, ReasonCode::ProtocolError, rule.into());
        }
        c.reauth = Some(Reauth::AwaitingAuthenticator);
        let stage = if expected == ReasonCode::ReAuthenticate {
            AuthStage::Reauthenticate
        } else {
            AuthStage::Continue
        };
        let client_id = c.client_id.clone().unwrap_or_default();
        let data = auth.properties.authentication_data;
        self.ask_authenticator(id, client_id, None, stage, data);
    }

    /// The authenticator's answer to a re-authentication step.
    fn reauth_decided(&mut self, id: ConnId, decision: AuthDecision) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.reauth != Some(Reauth::AwaitingAuthenticator) {
            return;
        }
        let Some(method) = c.auth_method.clone() else {
            return;
        };
        match decision {
            AuthDecision::Continue { data } => {
                c.reauth = Some(Reauth::AwaitingClient);
                self.write(id, &Packet::Auth(auth_packet(method, data)), None);
            }
            AuthDecision::Allow
            | AuthDecision::AllowWithData { .. }
            | AuthDecision::Authenticated { .. } => {
                c.reauth = None;
                let mut auth = Auth {
                    reason: ReasonCode::Success,
                    properties: Default::default(),
                };
                auth.properties.authentication_method = Some(method);
                match decision {
                    AuthDecision::AllowWithData { data }
                    | AuthDecision::Authenticated {
                        data: Some(data), ..
                    } => auth.properties.authentication_data = Some(data),
                    _ => {}
                }
                self.write(id, &Packet::Auth(auth), None);
            }
            AuthDecision::Deny { reason } => {
                self.stats.auth_failures += 1;
                c.reauth = None;
                let reason = if reason.allowed_in(PacketType::Disconnect) {
                    reason
                } else {
                    ReasonCode::NotAuthorized
                };
                let rule = "re-authentication failed".to_string();
                let close = CloseReason::ReauthenticationFailed { reason };
                self.disconnect_with(id, reason, Some(rule), close, true);
            }
        }
    }
}

/// An AUTH 0x18 carrying the next step of `method`.
fn auth_packet(method: ByteString, data: Bytes) -> Auth {
    let mut auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Default::default(),
    };
    auth.properties.authentication_method = Some(method);
    auth.properties.authentication_data = Some(data);
    auth
}
