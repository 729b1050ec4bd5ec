//! CONNECT: protocol checks, client identifiers, authentication, session takeover and resumption.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{ConnAck, Connect, DecodeError, Packet, ProtocolVersion, QoS, ReasonCode, Will};
use crate::config::Authentication;
use crate::io::{AuthStage, CloseReason, ConnId, Event};
use crate::session::{PendingWill, Session};
use crate::timer::TimerKind;

use super::alias::OutboundAliases;
use super::conn::Phase;
use super::Engine;

impl Engine {
    pub(super) fn connect(&mut self, id: ConnId, connect: Box<Connect>, mark: usize) {
        // The connect timeout keeps running until the client is admitted: it also bounds how long an
        // authenticator may take.
        let refusal = self.refusal(&connect);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.version = Some(connect.protocol);
        c.problem_info = connect.properties.request_problem_information != Some(false);
        c.max_packet_out = connect.properties.maximum_packet_size.map(NonZeroU32::get);
        c.auth_method = connect.properties.authentication_method.clone();
        // A user name the transport vouches for (a certificate identity) wins over the claimed one.
        // Copied out of the receive buffer: a slice would keep the whole read alive for as long as
        // the connection (see `docs/benchmarks.md`, idle memory).
        c.username = c.meta.username.clone().or_else(|| {
            connect
                .username
                .as_deref()
                .map(|u| ByteString::from(u.to_owned()))
        });
        let (username, peer) = (c.username.clone(), c.meta.peer.clone());
        let refusal =
            refusal.or_else(|| self.connect_guard(&connect.client_id, username.as_deref(), &peer));
        if let Some(reason) = refusal {
            return self.refuse(id, connect.protocol, reason);
        }
        match self.config.authentication {
            Authentication::AllowAll => self.admit(id, connect, mark, None),
            Authentication::External => {
                let data = connect.properties.authentication_data.clone();
                let (client_id, password) = (connect.client_id.clone(), connect.password.clone());
                self.ask_authenticator(id, client_id, password, AuthStage::Connect, data);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.phase = Phase::Authenticating(connect);
                }
            }
        }
    }

    /// Why CONNECT must be refused before authentication, if it must.
    fn refusal(&self, connect: &Connect) -> Option<ReasonCode> {
        if let Some(redirect) = &self.config.redirect {
            return Some(redirect.reason());
        }
        let id = &connect.client_id;
        if id.is_empty() {
            // 3.1 requires an identifier; 3.1.1 allows none only with a clean session [MQTT-3.1.3-7].
            let allowed = match connect.protocol {
                ProtocolVersion::V3_1 => false,
                ProtocolVersion::V3_1_1 => connect.clean_start,
                ProtocolVersion::V5 => true,
            };
            if !allowed {
                return Some(ReasonCode::ClientIdentifierNotValid);
            }
        }
        if id.len() > self.config.max_client_id_length {
            return Some(ReasonCode::ClientIdentifierNotValid);
        }
        if let Some(method) = &connect.properties.authentication_method {
            // Only the configured enhanced authentication methods are offered [MQTT-4.12.0-1].
            if !self
                .config
                .auth_methods
                .iter()
                .any(|m| m.as_str() == &**method)
            {
                return Some(ReasonCode::BadAuthenticationMethod);
            }
        }
        if let Some(will) = &connect.will {
            if will.qos > self.config.max_qos {
                return Some(ReasonCode::QoSNotSupported);
            }
            if will.retain && !self.config.retain_available {
                return Some(ReasonCode::RetainNotSupported);
            }
            if !self.topic_within_limits(will.topic.as_str()) {
                return Some(ReasonCode::TopicNameInvalid);
            }
        }
        None
    }

    /// Whether a topic name or filter is within the configured length and depth.
    pub(super) fn topic_within_limits(&self, topic: &str) -> bool {
        topic.len() <= self.config.max_topic_length
            && topic.split('/').count() <= self.config.max_topic_levels
    }

    /// Answers CONNECT with a refusal and closes.
    pub(super) fn refuse(&mut self, id: ConnId, protocol: ProtocolVersion, reason: ReasonCode) {
        self.refuse_with(id, protocol, reason, CloseReason::ConnectRefused { reason });
    }

    /// Answers CONNECT with a refusal and closes for `close`.
    pub(super) fn refuse_with(
        &mut self,
        id: ConnId,
        protocol: ProtocolVersion,
        reason: ReasonCode,
        close: CloseReason,
    ) {
        let mut ack = ConnAck {
            session_present: false,
            reason: if protocol.is_v5() {
                reason
            } else {
                // 3.x has six return codes; fold to the nearest.
                ReasonCode::from_v3_connack(reason.to_v3_connack())
                    .unwrap_or(ReasonCode::ServerUnavailable)
            },
            properties: Default::default(),
        };
        if protocol.is_v5() {
            ack.properties.server_reference = self.server_reference(reason);
        }
        self.write(id, &Packet::ConnAck(ack), None);
        self.close(id, close, false);
    }

    /// Accepts an authenticated CONNECT: attaches a session and sends CONNACK.
    pub(super) fn admit(
        &mut self,
        id: ConnId,
        connect: Box<Connect>,
        mark: usize,
        auth_data: Option<Bytes>,
    ) {
        self.timers.cancel(TimerKind::ConnectTimeout(id));
        // The authenticator may have named another user than the client claimed: bans apply to it.
        let (username, peer, tenant) = match self.conns.get(&id) {
            Some(c) => {
                let cert = c.meta.identity.as_ref().and_then(|i| i.name());
                let tenant = self.tenant_of(&c.meta.listener, c.username.as_deref(), cert);
                (c.username.clone(), c.meta.peer.clone(), tenant)
            }
            None => return,
        };
        if self.config.authentication == Authentication::External {
            if let Some(reason) = self.banned(&connect.client_id, username.as_deref(), &peer) {
                return self.refuse(id, connect.protocol, reason);
            }
        }
        if let Some(t) = tenant {
            let max = self.config.tenants.get(t).and_then(|t| t.max_connections);
            let state = &mut self.tenants[t];
            // A client taking over its own session does not add a connection.
            let takeover = self
                .by_client
                .get(&connect.client_id)
                .and_then(|sid| self.sessions.get(sid))
                .is_some_and(|s| s.conn.is_some() && s.tenant == Some(t));
            if max.is_some_and(|max| state.stats.connections >= max) && !takeover {
                state.stats.connects_refused += 1;
                return self.refuse(id, connect.protocol, ReasonCode::QuotaExceeded);
            }
        }
        if let Some(topic) = self.will_denied(&connect, username.as_deref(), tenant, id) {
            self.stats.publishes_denied += 1;
            self.events.push_back(Event::Refused {
                client_id: connect.client_id.clone(),
                what: crate::io::Refusal::WillDenied { topic },
            });
            return self.refuse(id, connect.protocol, ReasonCode::NotAuthorized);
        }
        if self.storage_failed.is_some() && requested_expiry(&connect) > 0 {
            // Storage is failing: a persistent session could not be kept as promised. Clean sessions,
            // which store nothing, are still served.
            return self.refuse(id, connect.protocol, ReasonCode::ServerUnavailable);
        }
        let claimed = self.conns.get(&id).and_then(|c| c.claimed);
        let assigned = match claimed {
            // The identifier assigned before the claim is in the CONNECT now.
            Some(true) => Some(connect.client_id.clone()),
            Some(false) => None,
            None => connect
                .client_id
                .is_empty()
                .then(|| self.assign_client_id()),
        };
        // Copied out of the receive buffer, like the user name.
        let client_id = assigned
            .clone()
            .unwrap_or_else(|| ByteString::from(connect.client_id.to_string()));
        let v5 = connect.protocol.is_v5();
        if self.cluster.is_some() && claimed.is_none() {
            // One owner per client identifier in the cluster: the session is taken here only once
            // this node's claim of the identifier has committed.
            // A session that ends with its connection has no copies to carry its will: the
            // claim does, so another node can publish it if this one dies.
            let ends_with_connection =
                requested_expiry(&connect).min(self.config.max_session_expiry) == 0;
            let will = ends_with_connection
                .then(|| mounted_will(&connect, mount_point(&self.config.tenants, tenant)))
                .flatten();
            let claiming = super::cluster::Claiming {
                connect,
                auth_data,
                assigned: assigned.is_some(),
                client_id,
            };
            return self.park_for_claim(id, claiming, will);
        }

        // Take over a session in use, then decide whether it is resumed.
        let existing = self.by_client.get(&client_id).copied();
        if let Some(sid) = existing {
            if let Some(old) = self.sessions.get(&sid).and_then(|s| s.conn) {
                self.disconnect_with(
                    old,
                    ReasonCode::SessionTakenOver,
                    None,
                    CloseReason::SessionTakenOver,
                    true,
                );
            }
        }
        let resumed = match existing {
            Some(sid) if !connect.clean_start && self.sessions.contains_key(&sid) => Some(sid),
            Some(sid) => {
                self.end_session(sid);
                None
            }
            None => None,
        };
        let session_present = resumed.is_some();
        let sid = match resumed {
            Some(sid) => {
                self.timers.cancel(TimerKind::WillDelay(sid));
                self.timers.cancel(TimerKind::SessionExpiry(sid));
                sid
            }
            None => {
                let sid = self.next_session;
                self.next_session += 1;
                self.sessions
                    .insert(sid, Session::new(client_id.clone(), connect.protocol));
                self.by_client.insert(client_id.clone(), sid);
                sid
            }
        };

        let requested_expiry = requested_expiry(&connect);
        let expiry = requested_expiry.min(self.config.max_session_expiry);
        let receive_max = connect
            .properties
            .receive_maximum
            .map_or(u16::MAX, NonZeroU16::get);
        let (keep_alive, server_keep_alive) = self.keep_alive(&connect);
        let limits = self.publish_limits();

        let mut was_persistent = false;
        let mut moved = None;
        if let Some(session) = self.sessions.get_mut(&sid) {
            was_persistent = session.is_persistent();
            session.conn = Some(id);
            session.offline_since = None;
            session.protocol = connect.protocol;
            session.expiry_interval = expiry;
            session.send_quota = receive_max.min(self.config.max_inflight);
            session.client_max_packet = connect.properties.maximum_packet_size.map(NonZeroU32::get);
            if session.tenant != tenant {
                // A resumed session's queue and subscriptions move to the tenant it belongs to now.
                moved = Some(session.tenant);
            }
            session.tenant = tenant;
            session.mount = mount_point(&self.config.tenants, tenant).map(std::sync::Arc::from);
            session.principal = Some(crate::io::Principal {
                username: username.clone(),
                claims: self
                    .conns
                    .get_mut(&id)
                    .map(|c| std::mem::take(&mut c.claims))
                    .unwrap_or_default(),
            });
            session.will =
                mounted_will(&connect, session.mount.as_deref()).map(|will| PendingWill {
                    delay: will.properties.will_delay_interval.unwrap_or(0),
                    will,
                });
        }
        if let Some(old) = moved {
            self.move_tenant(sid, old, tenant);
        }
        self.record_session(sid, was_persistent);

        if let Some(c) = self.conns.get_mut(&id) {
            c.phase = Phase::Connected(sid);
            c.client_id = Some(client_id.clone());
            c.keep_alive = keep_alive;
            c.limits = limits;
            c.tenant = tenant;
            if v5 {
                let theirs = connect.properties.topic_alias_maximum.unwrap_or(0);
                let max = theirs.min(self.config.max_outbound_topic_aliases);
                c.out_aliases = OutboundAliases::new(max);
            }
        }
        if let Some(ka) = keep_alive {
            self.timers
                .set(TimerKind::KeepAlive(id), self.now + ka.mul_f32(1.5));
        }

        let mut ack = ConnAck {
            session_present,
            reason: ReasonCode::Success,
            properties: Default::default(),
        };
        if v5 {
            let p = &mut ack.properties;
            p.assigned_client_identifier = assigned;
            p.server_keep_alive = server_keep_alive;
            if expiry != requested_expiry {
                p.session_expiry_interval = Some(expiry);
            }
            if self.config.receive_maximum != u16::MAX {
                p.receive_maximum = NonZeroU16::new(self.config.receive_maximum);
            }
            p.maximum_packet_size = NonZeroU32::new(self.config.max_packet_size);
            if self.config.max_qos < QoS::ExactlyOnce {
                p.maximum_qos = Some(self.config.max_qos);
            }
            if !self.config.retain_available {
                p.retain_available = Some(false);
            }
            if self.config.topic_alias_maximum > 0 {
                p.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            if !self.config.shared_subscriptions {
                p.shared_subscription_available = Some(false);
            }
            if !self.config.wildcard_subscriptions {
                p.wildcard_subscription_available = Some(false);
            }
            if !self.config.subscription_identifiers {
                p.subscription_identifiers_available = Some(false);
            }
            p.authentication_method = connect.properties.authentication_method.clone();
            p.authentication_data = auth_data;
            if connect.properties.request_response_information == Some(true) {
                p.response_information = self
                    .config
                    .response_information_prefix
                    .as_ref()
                    .map(|prefix| ByteString::from(format!("{prefix}{client_id}")));
            }
        }
        self.send(id, &Packet::ConnAck(ack), mark);
        if let Some(c) = self.conns.get_mut(&id) {
            c.connack_held = !c.held.is_empty();
        }
        if let Some(state) = tenant.and_then(|t| self.tenants.get_mut(t)) {
            state.stats.connections += 1;
            state.stats.connects += 1;
        }
        self.events.push_back(Event::ClientConnected {
            conn: id,
            client_id,
            protocol: connect.protocol,
            session_present,
        });
        if session_present {
            self.resend_inflight(sid);
            self.claim_shared(sid);
        }
        self.pump(sid);
    }

    /// The topic of a will the ACL does not let the client publish, if so (checked before the
    /// client is admitted, so a will is never accepted only to be dropped later).
    fn will_denied(
        &self,
        connect: &Connect,
        username: Option<&str>,
        tenant: Option<usize>,
        id: ConnId,
    ) -> Option<crate::codec::TopicName> {
        let acl = self.config.acl.as_ref()?;
        let will = connect.will.as_ref()?;
        let claims = self.conns.get(&id).map_or(&[][..], |c| &c.claims[..]);
        let who = crate::acl::Who {
            client_id: &connect.client_id,
            username,
            tenant: self.tenant_name(tenant),
            claims,
        };
        (!acl.may_publish(&who, will.topic.as_str(), will.qos, will.retain))
            .then(|| will.topic.clone())
    }

    /// The keep alive to enforce, and the Server Keep Alive to announce if it differs from the client's.
    fn keep_alive(&self, connect: &Connect) -> (Option<Duration>, Option<u16>) {
        let asked = connect.keep_alive;
        let granted = match self.config.max_keep_alive {
            Some(max) if connect.protocol.is_v5() && (asked == 0 || asked > max) => max,
            _ => asked,
        };
        let secs = (granted > 0).then(|| Duration::from_secs(u64::from(granted)));
        (secs, (granted != asked).then_some(granted))
    }

    /// A fresh client identifier: the configured prefix (plus `s{shard}-` when there are several
    /// engines, so the identifier leads back to this one) and 16 hex digits from the seeded generator.
    fn assign_client_id(&mut self) -> ByteString {
        let prefix = match &self.cluster {
            // Unique across the cluster: each node assigns under its own number.
            Some(node) => format!(
                "{}n{}-",
                self.config.assigned_client_id_prefix, node.config.node
            ),
            None => self
                .config
                .shard
                .assigned_prefix(&self.config.assigned_client_id_prefix),
        };
        loop {
            let id = format!("{prefix}{:016x}", self.rng.next_u64());
            let id = ByteString::from(id);
            if !self.by_client.contains_key(&id) {
                return id;
            }
        }
    }

    /// A packet could not be decoded: close with the reason code the error maps to.
    pub(super) fn decode_failed(&mut self, id: ConnId, error: DecodeError) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let rule = error.to_string();
        let reason = error.reason_code();
        if matches!(c.phase, Phase::AwaitingConnect) {
            if let Some(code) = error.v3_connack_code() {
                // Unknown protocol level: answer in 3.1.1 form, which every version can read [MQTT-3.1.2-2].
                let ack = ConnAck {
                    session_present: false,
                    reason: ReasonCode::from_v3_connack(code).unwrap_or(reason),
                    properties: Default::default(),
                };
                self.write(id, &Packet::ConnAck(ack), None);
            }
            self.stats.protocol_violations += 1;
            return self.close(id, CloseReason::ProtocolViolation { reason, rule }, false);
        }
        self.violation(id, reason, rule);
    }
}

/// The session expiry a CONNECT asks for: v5 Session Expiry Interval, or for 3.x "never" unless clean.
/// The mount point of `tenant`, if it has one.
fn mount_point(tenants: &[crate::config::Tenant], tenant: Option<usize>) -> Option<&str> {
    tenant
        .and_then(|t| tenants.get(t))
        .map(|t| t.mount_point.as_str())
        .filter(|m| !m.is_empty())
}

/// The CONNECT's will, its topic under the tenant's `mount` point if there is one.
fn mounted_will(connect: &Connect, mount: Option<&str>) -> Option<Will> {
    let mut will = connect.will.clone()?;
    if let Some(mounted) = mount.and_then(|m| super::tenant::mount_topic(m, &will.topic)) {
        will.topic = mounted;
    }
    Some(will)
}

fn requested_expiry(connect: &Connect) -> u32 {
    if connect.protocol.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    }
}
