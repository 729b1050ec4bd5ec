//! The broker state machine.

mod alias;
mod auth;
mod cluster;
mod conn;
mod connect;
mod deliver;
mod encoded;
mod external;
mod guard;
mod inspect;
mod lifecycle;
mod peers;
mod publish;
mod restore;
mod shared;
mod subscribe;
mod sys;
mod tenant;

pub use inspect::{Reconfigured, SessionInfo, SubscriptionInfo, TopicStats, Totals};
pub use tenant::TenantStats;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::codec::{Decoded, Disconnect, Packet, ProtocolVersion, ReasonCode};
use crate::config::{Config, ConfigError};
use crate::io::{CloseReason, ConnId, Event, Input};
use crate::map::FixedMap;
use crate::persist::Persistence;
use crate::retained::RetainedStore;
use crate::rng::Rng;
use crate::router::Router;
use crate::session::{Session, SessionId};
use crate::time::Instant;
use crate::timer::{TimerKind, Timers};

use conn::{Conn, Held, Phase};

/// Bytes for one connection, from [`Engine::poll_transmit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The connection to write to.
    pub conn: ConnId,
    /// The bytes, whole packets, in order.
    pub data: Bytes,
}

/// Counters of what the engine did, for metrics and `$SYS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// PUBLISH packets accepted from clients.
    pub publishes_received: u64,
    /// PUBLISH packets written to clients (retransmissions included).
    pub publishes_sent: u64,
    /// Messages not delivered to some session, for any [`crate::DropReason`].
    pub messages_dropped: u64,
    /// Of those, QoS 0 messages (dropped first under pressure, or for offline sessions).
    pub qos0_dropped: u64,
    /// Connections closed for breaking a protocol rule.
    pub protocol_violations: u64,
    /// Bytes received from clients.
    pub bytes_received: u64,
    /// Bytes handed to the shell for clients.
    pub bytes_sent: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// PUBLISH packets (and wills) the ACL refused.
    pub publishes_denied: u64,
    /// PUBLISH packets dropped over a rate limit (policy `Drop`).
    pub publishes_dropped_by_quota: u64,
    /// Times a client was held back by a rate limit (policy `Throttle`).
    pub publishes_throttled: u64,
    /// Subscriptions the ACL refused or an ACL reload revoked.
    pub subscriptions_denied: u64,
    /// Subscriptions refused over the subscription quota.
    pub subscriptions_over_quota: u64,
    /// CONNECTs refused by a ban.
    pub connects_banned: u64,
    /// CONNECTs refused over the connect rate of their address.
    pub connects_rate_limited: u64,
    /// Clients disconnected because their session queue was full (`queue_full = Disconnect`).
    pub slow_consumers_disconnected: u64,
    /// `publishes_received` by the QoS they were published with (index 0, 1, 2).
    pub publishes_received_by_qos: [u64; 3],
    /// `publishes_sent` by the QoS they were delivered at (index 0, 1, 2).
    pub publishes_sent_by_qos: [u64; 3],
    /// `messages_dropped` by reason.
    pub dropped: DropCounts,
    /// CONNECTs and re-authentications the authenticator refused.
    pub auth_failures: u64,
}

/// Messages not delivered, by [`crate::DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// [`crate::DropReason::QueueFull`].
    pub queue_full: u64,
    /// [`crate::DropReason::QoS0Evicted`].
    pub qos0_evicted: u64,
    /// [`crate::DropReason::Expired`].
    pub expired: u64,
    /// [`crate::DropReason::TooLargeForClient`].
    pub too_large_for_client: u64,
    /// [`crate::DropReason::Offline`].
    pub offline: u64,
}

impl DropCounts {
    fn count(&mut self, reason: crate::io::DropReason) {
        use crate::io::DropReason;
        let counter = match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::QoS0Evicted => &mut self.qos0_evicted,
            DropReason::Expired => &mut self.expired,
            DropReason::TooLargeForClient => &mut self.too_large_for_client,
            DropReason::Offline => &mut self.offline,
        };
        *counter += 1;
    }
}

/// The Cicada broker engine: every protocol rule, no I/O.
///
/// # Driving contract
///
/// 1. Feed every happening to [`Engine::handle`] with the current time. Time must never go back: an
///    earlier `now` than the previous call is treated as the previous one.
/// 2. After every `handle`, drain the outputs before the next input: [`Engine::poll_transmit`] until
///    `None` (write each to its connection, in order, then report [`Input::Flushed`]), then
///    [`Engine::poll_event`] until `None` (a [`Event::Close`] applies after the bytes already taken for
///    that connection have been written; a [`Event::Persist`] is written in order and reported with
///    [`Input::Persisted`]).
/// 3. Sleep until [`Engine::poll_timeout`] (or the next happening) and call `handle(now, Input::Timeout)`.
///
/// The engine never acknowledges what is not durable: replies to packets that caused storage writes wait
/// until [`Input::Persisted`] covers their batch. With [`Config::durable`] off no batches are produced.
/// Misbehaving clients never make `handle` fail; they are disconnected with the right reason code and an
/// event naming the client and the rule.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    rng: Rng,
    now: Instant,
    conns: BTreeMap<ConnId, Conn>,
    sessions: BTreeMap<SessionId, Session>,
    by_client: FixedMap<ByteString, SessionId>,
    router: Router,
    /// The other engines' subscriptions, when there are others ([`Config::shard`]).
    peers: peers::Peers,
    /// Forwarded messages stored in one of this engine's batches, to confirm to their engine once
    /// it is durable: (this engine's batch, the publishing engine, its batch).
    receipts: Vec<(u64, u16, u64)>,
    retained: RetainedStore,
    timers: Timers,
    persist: Persistence,
    /// Connections with held bytes, checked when a batch becomes durable.
    holding: BTreeSet<ConnId>,
    /// Connections with bytes in `out`, in the order they got them.
    dirty: Vec<ConnId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The message being routed, encoded once per variant.
    encoded: encoded::EncodedCache,
    /// Scratch list of a publish's ordinary subscribers, reused (see [`Engine::route_plain`]).
    route_targets: Vec<(SessionId, deliver::Target)>,
    /// The cluster identity of the message being routed, while one is (see [`crate::Stamp`]).
    stamp: Option<crate::io::Stamp>,
    /// Outside publishes ([`Input::Publish`]) waiting for their storage batch, oldest first.
    external_waiting: VecDeque<external::Waiting>,
    next_session: SessionId,
    /// The batch whose write failed, until a later batch is reported durable: meanwhile new
    /// persistent sessions are refused (CONNACK 0x88).
    storage_failed: Option<u64>,
    /// The `$SYS` publisher's state: when the engine first saw time, and what it last published.
    sys: sys::SysState,
    stats: Stats,
    /// Bans in force ([`Input::SetBans`]).
    bans: crate::limits::Bans,
    /// Recent CONNECTs per address, with [`crate::Quotas::connect_rate_per_address`].
    connect_rates: Option<crate::limits::RateTable>,
    /// Each configured tenant's live state, in configuration order.
    tenants: Vec<tenant::TenantState>,
    /// Online sessions whose queue overflowed under [`crate::Quotas::queue_full`] `Disconnect`.
    slow_consumers: Vec<SessionId>,
    /// This engine's node in a cluster ([`Config::cluster`]).
    cluster: Option<Box<cluster::Node>>,
}

impl Engine {
    /// An engine with `config`, its randomness (assigned client ids) drawn from `seed`.
    pub fn new(config: Config, seed: u64) -> Result<Engine, ConfigError> {
        config.validate()?;
        let mut router = Router::default();
        if config.shard.is_sharded() || config.cluster.is_some() {
            router.track_interest();
        }
        let mut rng = Rng::new(seed);
        let mut timers = Timers::default();
        let cluster = config.cluster.clone().map(|c| {
            timers.set(TimerKind::ClusterTick, Instant::ZERO + c.tick);
            Box::new(cluster::Node::new(c, &mut rng))
        });
        let connect_rates = config.quotas.connect_rate_per_address.map(|rate| {
            crate::limits::RateTable::new(rate.per_sec, rate.burst, guard::CONNECT_RATE_ADDRESSES)
        });
        let tenants = config
            .tenants
            .iter()
            .map(|t| tenant::TenantState {
                stats: TenantStats::default(),
                limits: guard::PublishLimits::new(
                    t.publish_messages,
                    t.publish_bytes,
                    Instant::ZERO,
                ),
            })
            .collect();
        Ok(Engine {
            slow_consumers: Vec::new(),
            tenants,
            bans: crate::limits::Bans::default(),
            connect_rates,
            persist: Persistence::new(config.durable),
            config,
            rng,
            cluster,
            now: Instant::ZERO,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_client: FixedMap::default(),
            router,
            peers: peers::Peers::default(),
            receipts: Vec::new(),
            retained: RetainedStore::default(),
            timers,
            holding: BTreeSet::new(),
            dirty: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            encoded: encoded::EncodedCache::default(),
            route_targets: Vec::new(),
            stamp: None,
            external_waiting: VecDeque::new(),
            next_session: 1,
            storage_failed: None,
            sys: sys::SysState::default(),
            stats: Stats::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// How many sessions exist, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// How many topics hold a retained message.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// How many subscriptions exist across all sessions.
    pub fn subscription_count(&self) -> usize {
        self.router.len()
    }

    /// The single entry point: one happening at `now`. Drain the outputs afterwards.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = self.now.max(now);
        self.start_sys();
        match input {
            Input::Accepted { conn, meta } => self.accepted(conn, meta),
            Input::Received { conn, data } => {
                self.stats.bytes_received += data.len() as u64;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.inbuf.extend_from_slice(&data);
                    self.process_inbuf(conn);
                }
            }
            Input::Flushed { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.unflushed = c.unflushed.saturating_sub(bytes);
                    if let Some(sid) = c.session() {
                        self.pump(sid);
                    }
                }
            }
            Input::Closed { conn } => self.connection_lost(conn),
            Input::Persisted { upto } => {
                if self.storage_failed.is_some_and(|failed| upto.0 > failed) {
                    self.storage_failed = None;
                }
                self.persist.persisted(upto);
                self.release_held();
                self.answer_receipts();
                self.stored_wills();
            }
            Input::PersistFailed { seq } => self.persist_failed(seq.0),
            Input::AuthDecided { conn, decision } => self.auth_decided(conn, decision),
            Input::Peer { message } => self.peer_message(message),
            Input::Cluster { from, frame } => self.cluster_frame(from, frame),
            Input::Publish {
                request,
                principal,
                publish,
            } => self.external_publish(request, &principal, publish),
            Input::Timeout => self.fire_timers(),
            Input::SetRedirect { redirect } => self.config.redirect = redirect,
            Input::ClusterAddMember { node, address } => self.add_member(node, address),
            Input::ClusterRemoveMember { node } => self.remove_member(node),
            Input::SetAcl { acl } => self.set_acl(acl),
            Input::SetBans { bans } => self.set_bans(bans),
            Input::Kick { conn, reason, why } => {
                if self.conns.get(&conn).is_some_and(|c| c.session().is_some()) {
                    self.kick(conn, reason, why);
                }
            }
            Input::DeleteSession { client_id } => self.delete_session(&client_id),
            Input::DeleteRetained { topic } => self.clear_retained(&topic),
            Input::Reconfigure { config } => self.reconfigure(*config),
            Input::Shutdown => self.shutdown(),
        }
        self.finish();
    }

    /// Bytes to write to a connection, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the shell to do or log, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next needs [`Input::Timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(at, _)| at)
    }

    /// Why the engine wants to wake at [`Engine::poll_timeout`] (for debugging and traces).
    pub fn timeout_reason(&self) -> Option<&'static str> {
        self.timers.next().map(|(_, kind)| kind.name())
    }

    /// Seals the storage batch and moves written bytes to the transmit queue.
    fn finish(&mut self) {
        // Disconnecting may publish wills, which may overflow more queues.
        while let Some(sid) = self.slow_consumers.pop() {
            if let Some(conn) = self.sessions.get(&sid).and_then(|s| s.conn) {
                self.stats.slow_consumers_disconnected += 1;
                let why = "session queue full: the client reads too slowly".to_string();
                self.kick(conn, ReasonCode::QuotaExceeded, why);
            }
        }
        self.announce_interest();
        if self.cluster.is_some() {
            // Applying the log can end sessions (a client taken over elsewhere): their interest
            // changes go out in the same round.
            self.cluster_ready();
            self.announce_interest();
            self.cluster_ready();
            // Session writes go through the log before the batch counts as durable; proposing
            // them may apply entries that write more.
            while self.replicate_writes() {
                self.cluster_ready();
            }
        }
        self.encoded.clear();
        if let Some((seq, ops)) = self.persist.seal() {
            self.events.push_back(Event::Persist { seq, ops });
        }
        self.answer_external();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.dirty = false;
                if !c.out.is_empty() {
                    let data = c.out.split().freeze();
                    c.unflushed += data.len();
                    self.stats.bytes_sent += data.len() as u64;
                    self.transmits.push_back(Transmit { conn: id, data });
                }
            }
        }
    }

    fn accepted(&mut self, id: ConnId, meta: crate::io::ConnMeta) {
        self.stats.connections_accepted += 1;
        let conn = Conn::new(meta, self.config.max_packet_size as usize);
        self.conns.insert(id, conn);
        self.timers.set(
            TimerKind::ConnectTimeout(id),
            self.now + self.config.connect_timeout,
        );
    }

    /// Decodes and handles every whole packet buffered for `id`.
    fn process_inbuf(&mut self, id: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if matches!(c.phase, Phase::Authenticating(_) | Phase::Claiming(_))
                || c.stalled.is_some()
            {
                return;
            }
            match c.decoder.decode(&mut c.inbuf) {
                Ok(Decoded::Packet(packet)) => {
                    if let Some(ka) = c.keep_alive {
                        self.timers
                            .set(TimerKind::KeepAlive(id), self.now + ka.mul_f32(1.5));
                    }
                    self.on_packet(id, packet);
                }
                Ok(Decoded::Incomplete { .. }) => return,
                Err(error) => {
                    self.decode_failed(id, error);
                    return;
                }
            }
        }
    }

    /// Dispatches one decoded packet. The storage mark taken here decides whether the reply waits.
    fn on_packet(&mut self, id: ConnId, packet: Packet) {
        let mark = self.persist.mark();
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let session = match (&c.phase, packet) {
            (Phase::AwaitingConnect, Packet::Connect(connect)) => {
                return self.connect(id, connect, mark);
            }
            (Phase::AwaitingConnect, other) => {
                let rule = format!(
                    "the first packet must be CONNECT, got {}",
                    other.packet_type()
                );
                return self.violation(id, ReasonCode::ProtocolError, rule);
            }
            (Phase::Authenticating(_) | Phase::Claiming(_), _) => return,
            (Phase::Challenged(_), Packet::Auth(auth)) => return self.connect_auth(id, auth),
            (Phase::Challenged(_), Packet::Disconnect(_)) => {
                let close = CloseReason::ClientDisconnected {
                    reason: ReasonCode::Success,
                };
                return self.close(id, close, false);
            }
            (Phase::Challenged(connect), other) => {
                let rule = format!(
                    "[MQTT-3.1.2-30] {} before CONNACK while authenticating with AUTH",
                    other.packet_type()
                );
                return self.refuse_violation(id, connect.protocol, rule);
            }
            (Phase::Connected(sid), packet) => (*sid, packet),
        };
        let (sid, packet) = session;
        match packet {
            Packet::Publish(p) => self.guarded_publish(id, sid, p, mark),
            Packet::PubAck(a) => self.outbound_acked(sid, a.packet_id, false),
            Packet::PubRec(a) => self.outbound_received(id, sid, a),
            Packet::PubRel(a) => self.inbound_released(id, sid, a, mark),
            Packet::PubComp(a) => self.outbound_acked(sid, a.packet_id, true),
            Packet::Subscribe(s) => self.subscribe(id, sid, s, mark),
            Packet::Unsubscribe(u) => self.unsubscribe(id, sid, u, mark),
            Packet::PingReq => self.send(id, &Packet::PingResp, mark),
            Packet::Disconnect(d) => self.client_disconnect(id, sid, d),
            Packet::Connect(_) => {
                self.violation(id, ReasonCode::ProtocolError, "a second CONNECT".into())
            }
            Packet::Auth(auth) => self.reauth_packet(id, auth),
            other => {
                let rule = format!("{} is sent by servers only", other.packet_type());
                self.violation(id, ReasonCode::ProtocolError, rule)
            }
        }
    }

    /// Encodes `packet` for connection `id`; it waits behind anything held, and is itself held when
    /// the packet it answers caused storage writes since `mark`.
    fn send(&mut self, id: ConnId, packet: &Packet, mark: usize) {
        let gate = self.persist.gate_since(mark);
        self.write(id, packet, gate);
    }

    /// Encodes `packet` for `id`, held until batch `gate` is durable if given.
    fn write(&mut self, id: ConnId, packet: &Packet, gate: Option<u64>) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let version = c.version.unwrap_or(ProtocolVersion::V3_1_1);
        let trimmed;
        let packet = match c.max_packet_out {
            Some(max) if packet.encoded_len(version) > max as usize => {
                // Reason String and User Properties are the parts a sender must leave out rather than
                // exceed the receiver's limit ([MQTT-3.2.2-19], [MQTT-3.14.2-3] and their siblings).
                // What still does not fit is not sent at all [MQTT-3.1.2-24] (PUBLISH is sized
                // before it gets here).
                trimmed = without_diagnostics(packet);
                if trimmed.encoded_len(version) > max as usize {
                    return;
                }
                &trimmed
            }
            _ => packet,
        };
        let Some(target) = self.out_buffer(id, gate) else {
            return;
        };
        if let Err(e) = packet.encode(version, target) {
            // Only an oversized packet can fail to encode; PUBLISH is size-checked before it gets here.
            debug_assert!(false, "encoding {packet} failed: {e}");
        }
    }

    /// Where bytes for connection `id` go: behind storage batch `gate` while it is not durable,
    /// otherwise straight to the transmit side.
    fn out_buffer(&mut self, id: ConnId, gate: Option<u64>) -> Option<&mut BytesMut> {
        let c = self.conns.get_mut(&id)?;
        let gate = gate.filter(|seq| !self.persist.is_durable(*seq));
        if let Some(seq) = gate {
            if c.held.back().map(|h| h.seq) != Some(seq) {
                c.held.push_back(Held {
                    seq,
                    bytes: BytesMut::new(),
                    acks: 0,
                });
                self.holding.insert(id);
            }
        }
        Some(match c.held.back_mut() {
            Some(held) => &mut held.bytes,
            None => {
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(id);
                }
                &mut c.out
            }
        })
    }

    /// Moves held bytes whose batch is now durable to the transmit side.
    fn release_held(&mut self) {
        let holding = std::mem::take(&mut self.holding);
        for id in holding {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            while c
                .held
                .front()
                .is_some_and(|h| self.persist.is_durable(h.seq))
            {
                if let Some(held) = c.held.pop_front() {
                    c.out.unsplit(held.bytes);
                    c.connack_held = false;
                }
            }
            if !c.out.is_empty() && !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
            if c.held.is_empty() {
                if let Some(sid) = c.session() {
                    self.pump(sid);
                }
            } else {
                self.holding.insert(id);
            }
        }
    }

    /// A storage batch failed: connections whose replies waited on it lose those replies (they answer
    /// what was not stored) and are closed: with a refusing CONNACK (0x88 / 3.x 0x03) if their CONNACK
    /// was among them, else with DISCONNECT 0x80 and a reason string (v5). The clients retry, and
    /// resend what was not acknowledged.
    fn persist_failed(&mut self, seq: u64) {
        self.fail_external(seq);
        self.storage_failed = Some(self.storage_failed.map_or(seq, |s| s.max(seq)));
        let affected: Vec<ConnId> = self
            .holding
            .iter()
            .copied()
            .filter(|id| {
                self.conns
                    .get(id)
                    .is_some_and(|c| c.held.iter().any(|h| h.seq == seq))
            })
            .collect();
        for id in affected {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            c.held.clear();
            self.holding.remove(&id);
            let protocol = c.version.unwrap_or(ProtocolVersion::V3_1_1);
            if std::mem::take(&mut c.connack_held) {
                self.refuse_with(
                    id,
                    protocol,
                    ReasonCode::ServerUnavailable,
                    CloseReason::StorageFailed,
                );
            } else {
                self.disconnect_with(
                    id,
                    ReasonCode::UnspecifiedError,
                    Some(
                        "storage failed: the broker could not make this session's state durable"
                            .into(),
                    ),
                    CloseReason::StorageFailed,
                    true,
                );
            }
        }
    }

    /// Sends a v5 DISCONNECT (if the connection speaks v5) and closes the connection.
    fn disconnect_with(
        &mut self,
        id: ConnId,
        reason: ReasonCode,
        rule: Option<String>,
        close: CloseReason,
        will: bool,
    ) {
        if let Some(c) = self.conns.get(&id) {
            if c.is_v5() && matches!(c.phase, Phase::Connected(_)) {
                let mut d = Disconnect::new(reason);
                if c.problem_info {
                    d.properties.reason_string = rule.map(ByteString::from);
                }
                d.properties.server_reference = self.server_reference(reason);
                self.write(id, &Packet::Disconnect(d), None);
            }
        }
        self.close(id, close, will);
    }

    /// The Server Reference that goes with `reason`: the configured redirect for 0x9C/0x9D.
    fn server_reference(&self, reason: ReasonCode) -> Option<ByteString> {
        let redirect = self.config.redirect.as_ref()?;
        matches!(
            reason,
            ReasonCode::UseAnotherServer | ReasonCode::ServerMoved
        )
        .then(|| ByteString::from(redirect.server_reference.as_str()))
    }

    /// The client broke `rule`: disconnect it with `reason`, publishing its will.
    fn violation(&mut self, id: ConnId, reason: ReasonCode, rule: String) {
        self.stats.protocol_violations += 1;
        let close = CloseReason::ProtocolViolation {
            reason,
            rule: rule.clone(),
        };
        self.disconnect_with(id, reason, Some(rule), close, true);
    }
}

impl Engine {
    /// Checks the engine's internal invariants; for tests and fuzzing, after every step.
    ///
    /// Holds: queues within their limits and their byte counts exact; inflight windows within the
    /// quota (or, after a resumption, no larger than what was inflight before); no reply released before
    /// its batch is durable; every online session's connection exists and points back at it; the router
    /// holds exactly the sessions' subscriptions.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut subscriptions = 0;
        for (sid, s) in &self.sessions {
            let bytes: usize = s.queue.iter().map(|o| o.message.queued_size()).sum();
            if bytes != s.queued_bytes {
                return Err(format!(
                    "{}: queued bytes {} != {bytes}",
                    s.client_id, s.queued_bytes
                ));
            }
            if s.queue.len() > self.config.max_queued_messages
                || bytes > self.config.max_queued_bytes
            {
                return Err(format!("{}: queue over its limits", s.client_id));
            }
            if s.inflight.len() > usize::from(self.config.max_inflight) {
                return Err(format!("{}: {} inflight", s.client_id, s.inflight.len()));
            }
            if let Some(conn) = s.conn {
                match self.conns.get(&conn) {
                    Some(c) if c.session() == Some(*sid) => {}
                    _ => return Err(format!("{}: attached to a dead connection", s.client_id)),
                }
            }
            if self.by_client.get(&s.client_id) != Some(sid) {
                return Err(format!("{}: not indexed by client id", s.client_id));
            }
            subscriptions += s.subscriptions.len();
        }
        for (t, state) in self.tenants.iter().enumerate() {
            let mine = self.sessions.values().filter(|s| s.tenant == Some(t));
            let (mut messages, mut bytes, mut subs) = (0, 0, 0);
            for s in mine {
                messages += s.queue.len();
                bytes += s.queued_bytes;
                subs += s.subscriptions.len();
            }
            let st = &state.stats;
            if (st.queued_messages, st.queued_bytes, st.subscriptions) != (messages, bytes, subs) {
                return Err(format!(
                    "tenant {t}: counted {:?}, sessions hold {:?}",
                    (st.queued_messages, st.queued_bytes, st.subscriptions),
                    (messages, bytes, subs)
                ));
            }
        }
        if subscriptions != self.router.len() {
            return Err(format!(
                "router holds {} subscriptions, sessions {subscriptions}",
                self.router.len()
            ));
        }
        for (id, c) in &self.conns {
            if c.held
                .iter()
                .any(|h| self.persist.is_durable(h.seq) && !h.bytes.is_empty())
            {
                return Err(format!("{id}: durable replies still held"));
            }
            if !c.held.is_empty() && !self.holding.contains(id) {
                return Err(format!("{id}: held replies not tracked"));
            }
        }
        Ok(())
    }
}

/// `packet` without its Reason String and User Properties: what may be dropped to fit a size limit.
fn without_diagnostics(packet: &Packet) -> Packet {
    let mut p = packet.clone();
    match &mut p {
        Packet::ConnAck(c) => {
            c.properties.reason_string = None;
            c.properties.user_properties.clear();
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        Packet::SubAck(s) => {
            s.properties.reason_string = None;
            s.properties.user_properties.clear();
        }
        Packet::UnsubAck(u) => {
            u.properties.reason_string = None;
            u.properties.user_properties.clear();
        }
        Packet::Disconnect(d) => {
            d.properties.reason_string = None;
            d.properties.user_properties.clear();
        }
        Packet::Auth(a) => {
            a.properties.reason_string = None;
            a.properties.user_properties.clear();
        }
        _ => {}
    }
    p
}
