//! A deterministic simulation harness: named in-memory clients talking to one [`Engine`] in virtual time.
//!
//! Enabled by the `sim` feature; used by the engine's scenario tests, the fuzz properties and the
//! conformance replayer. Every input and output is written to a transcript:
//!
//! ```text
//! +0.000s c1→ CONNECT v5.0 client_id="c1" clean keep_alive=60
//! +0.000s ←c1 CONNACK session_present=0 0x00 Success
//! +0.000s persist seq=1 [put session "c1" expiry=60]
//! ```
//!
//! By default the simulated shell flushes every transmit and makes every storage batch durable at once;
//! both can be turned off to test backpressure and durability gating. Every batch is also applied to a
//! [`ModelStore`], and the harness panics (with the transcript) on an operation that makes no sense for
//! what the store holds, such as a message written under a session the store already deleted.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::codec::{
    Connect, Decoded, Decoder, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, MAX_PACKET_SIZE,
};
use crate::io::{ConnId, ConnMeta, Event, Input, OutboundState, PeerMessage, PersistSeq, StoreOp};
use crate::{Config, Engine, Instant, StoredState};

/// One simulated client connection.
#[derive(Debug)]
struct Client {
    conn: ConnId,
    decoder: Decoder,
    inbox: VecDeque<Packet>,
    closed: bool,
    /// Whether transmits are reported flushed at once (a fast reader).
    flushing: bool,
    /// Bytes taken but not reported flushed (a slow reader).
    unflushed: usize,
    next_packet_id: u16,
}

/// The harness. Client names are also used as client identifiers by [`Sim::connect`].
#[derive(Debug)]
pub struct Sim {
    /// The engine under test.
    pub engine: Engine,
    now: Instant,
    clients: BTreeMap<String, Client>,
    next_conn: u64,
    log: String,
    /// Whether storage batches are made durable as soon as they are emitted.
    pub auto_persist: bool,
    /// Batches emitted and not yet reported durable (when `auto_persist` is off).
    pub pending_batches: Vec<PersistSeq>,
    /// Every event the engine emitted, in order.
    pub events: Vec<Event>,
    /// What a store applying every emitted batch would hold.
    pub store: ModelStore,
    /// What a store holds of the batches reported durable: what survives [`Sim::crash`].
    pub durable: StoredState,
    /// Batches emitted and not yet reported durable, with their operations.
    unconfirmed: Vec<(PersistSeq, Vec<StoreOp>)>,
    config: Config,
    seed: u64,
}

/// A model of the store: applies every batch in emission order (any store applies batches in order)
/// and records operations that make no sense for what it holds: a write under a session it does not
/// hold (a real store would keep an orphan record and load it after a restart), a delete of a message or
/// session it does not hold (an engine that lost track of what it stored), a release of a message never
/// stored.
#[derive(Debug, Default)]
pub struct ModelStore {
    /// What the store holds once every emitted batch is applied.
    pub state: StoredState,
    /// Every nonsensical operation seen, described.
    pub anomalies: Vec<String>,
}

impl ModelStore {
    fn check(&mut self, client_id: &str, op: &StoreOp) {
        if !self.state.sessions.contains_key(client_id) {
            self.anomalies.push(format!(
                "{op:?} for session {client_id:?}, which is not stored"
            ));
        }
    }

    fn holds_message(&self, client_id: &str, seq: u64) -> bool {
        self.state
            .sessions
            .get(client_id)
            .is_some_and(|s| s.messages.contains_key(&seq))
    }

    /// Applies one batch.
    pub fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match op {
                StoreOp::PutSession { .. } | StoreOp::PutRetained { .. } => {}
                StoreOp::DeleteSession { client_id } => {
                    if !self.state.sessions.contains_key(client_id) {
                        self.anomalies.push(format!(
                            "delete of session {client_id:?}, which is not stored"
                        ));
                    }
                }
                StoreOp::PutSubscription { client_id, .. }
                | StoreOp::DeleteSubscription { client_id, .. }
                | StoreOp::PutIncoming { client_id, .. }
                | StoreOp::DeleteIncoming { client_id, .. }
                | StoreOp::PutSeen { client_id, .. }
                | StoreOp::PutWindow { client_id, .. }
                | StoreOp::PutTaken { client_id, .. }
                | StoreOp::DeleteWindow { client_id } => self.check(client_id, op),
                StoreOp::PutMessage {
                    client_id,
                    seq,
                    state,
                    ..
                } => {
                    self.check(client_id, op);
                    if !self.holds_message(client_id, *seq)
                        && matches!(state, OutboundState::Released(_))
                    {
                        self.anomalies.push(format!(
                            "{op:?}: a message released without ever being stored"
                        ));
                    }
                }
                StoreOp::DeleteMessage { client_id, seq } => {
                    self.check(client_id, op);
                    if !self.holds_message(client_id, *seq) {
                        self.anomalies
                            .push(format!("{op:?}: no such message stored"));
                    }
                }
                StoreOp::DeleteRetained { .. }
                | StoreOp::PutRelay { .. }
                | StoreOp::DeleteRelay { .. }
                | StoreOp::PutHandedOver { .. }
                | StoreOp::PutRaftEntry { .. }
                | StoreOp::TruncateRaftLog { .. }
                | StoreOp::PutRaftSnapshot { .. }
                | StoreOp::PutRaftHardState { .. } => {}
            }
            self.state.apply(std::slice::from_ref(op));
        }
    }
}

impl Sim {
    /// A harness around an engine with `config` and seed 7.
    pub fn new(config: Config) -> Sim {
        Sim::with_seed(config, 7)
    }

    /// A harness around an engine with `config` and `seed`.
    ///
    /// # Panics
    /// If `config` is invalid.
    pub fn with_seed(config: Config, seed: u64) -> Sim {
        let engine = match Engine::new(config.clone(), seed) {
            Ok(engine) => engine,
            Err(e) => panic!("invalid config for the simulation: {e}"),
        };
        Sim {
            engine,
            now: Instant::ZERO,
            clients: BTreeMap::new(),
            next_conn: 1,
            log: String::new(),
            auto_persist: true,
            pending_batches: Vec::new(),
            events: Vec::new(),
            store: ModelStore::default(),
            durable: StoredState::default(),
            unconfirmed: Vec::new(),
            config,
            seed,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The transcript so far.
    pub fn transcript(&self) -> &str {
        &self.log
    }

    /// Takes the transcript, leaving it empty.
    pub fn take_transcript(&mut self) -> String {
        std::mem::take(&mut self.log)
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.log, "{} {text}", self.now);
    }

    /// Opens a connection for `name` (replacing a closed one) without sending anything.
    pub fn open(&mut self, name: &str) -> ConnId {
        let meta = ConnMeta {
            peer: format!("sim:{name}"),
            listener: "sim".into(),
            ..ConnMeta::default()
        };
        self.open_with(name, meta)
    }

    /// Opens a connection for `name` with what the transport says about it (peer address,
    /// listener, certificate identity).
    pub fn open_with(&mut self, name: &str, meta: ConnMeta) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let mut decoder = Decoder::new(MAX_PACKET_SIZE);
        decoder.set_version(ProtocolVersion::V3_1_1);
        self.clients.insert(
            name.to_string(),
            Client {
                conn,
                decoder,
                inbox: VecDeque::new(),
                closed: false,
                flushing: true,
                unflushed: 0,
                next_packet_id: 1,
            },
        );
        self.line(&format!("{name} connects as {conn}"));
        self.input(Input::Accepted { conn, meta });
        conn
    }

    /// Opens a connection and sends a clean-start CONNECT with keep alive 60 s; returns the CONNACK.
    pub fn connect(&mut self, name: &str, version: ProtocolVersion) -> Option<Packet> {
        let connect = Sim::connect_packet(name, version);
        self.connect_with(name, connect)
    }

    /// A CONNECT for `name` as client id: clean start, keep alive 60 s.
    pub fn connect_packet(name: &str, version: ProtocolVersion) -> Connect {
        Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 60,
            properties: Default::default(),
            client_id: name.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    /// Decodes what the broker sends `name` as `version` (for CONNECTs sent with [`Sim::send_bytes`]).
    pub fn set_version(&mut self, name: &str, version: ProtocolVersion) {
        if let Some(c) = self.clients.get_mut(name) {
            c.decoder.set_version(version);
        }
    }

    /// Opens a connection, sends `connect` and returns what the broker answered first.
    pub fn connect_with(&mut self, name: &str, connect: Connect) -> Option<Packet> {
        self.open(name);
        self.set_version(name, connect.protocol);
        self.send(name, Packet::Connect(Box::new(connect)));
        self.recv(name)
    }

    /// Sends a packet from `name`, encoded in its protocol version.
    pub fn send(&mut self, name: &str, packet: Packet) {
        let Some(c) = self.clients.get(name) else {
            panic!("no client {name}");
        };
        let version = c.decoder.version().unwrap_or(ProtocolVersion::V3_1_1);
        let mut bytes = BytesMut::new();
        if let Err(e) = packet.encode(version, &mut bytes) {
            panic!("{name} cannot encode {packet}: {e}");
        }
        let conn = c.conn;
        self.line(&format!("{name}→ {packet}"));
        self.input(Input::Received {
            conn,
            data: bytes.freeze(),
        });
    }

    /// Sends raw bytes from `name` (for malformed input).
    pub fn send_bytes(&mut self, name: &str, data: &[u8]) {
        let conn = self.conn(name);
        self.line(&format!(
            "{name}→ bytes {}",
            crate::codec::render_bytes(data)
        ));
        self.input(Input::Received {
            conn,
            data: Bytes::copy_from_slice(data),
        });
    }

    /// The next packet id `name` would use.
    pub fn next_packet_id(&mut self, name: &str) -> PacketId {
        let Some(c) = self.clients.get_mut(name) else {
            panic!("no client {name}");
        };
        let id = c.next_packet_id;
        c.next_packet_id = c.next_packet_id.checked_add(1).unwrap_or(1);
        match PacketId::new(id) {
            Some(id) => id,
            None => panic!("packet ids start at 1"),
        }
    }

    /// Publishes from `name`; a packet id is chosen for QoS 1/2. Returns the PUBLISH sent.
    pub fn publish(&mut self, name: &str, topic: &str, qos: QoS, payload: &str) -> Publish {
        let topic = TopicName::new(topic.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let mut p = Publish::new(topic, Bytes::copy_from_slice(payload.as_bytes()));
        p.delivery = match qos {
            QoS::AtMostOnce => Delivery::AtMostOnce,
            QoS::AtLeastOnce => Delivery::AtLeastOnce(self.next_packet_id(name)),
            QoS::ExactlyOnce => Delivery::ExactlyOnce(self.next_packet_id(name)),
        };
        self.send(name, Packet::Publish(p.clone()));
        p
    }

    /// Subscribes `name` to `filter` at `qos`; returns the SUBACK.
    pub fn subscribe(&mut self, name: &str, filter: &str, qos: QoS) -> Option<Packet> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.subscribe_with(name, filter, options)
    }

    /// Subscribes `name` to `filter` with `options`; returns the SUBACK.
    pub fn subscribe_with(
        &mut self,
        name: &str,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Option<Packet> {
        let filter = TopicFilter::new(filter.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let packet_id = self.next_packet_id(name);
        self.send(
            name,
            Packet::Subscribe(Subscribe {
                packet_id,
                properties: Default::default(),
                subscriptions: vec![Subscription { filter, options }],
            }),
        );
        self.recv(name)
    }

    /// The next packet the broker sent to `name`, if any.
    pub fn recv(&mut self, name: &str) -> Option<Packet> {
        self.clients.get_mut(name)?.inbox.pop_front()
    }

    /// Every packet the broker sent to `name` not yet received.
    pub fn recv_all(&mut self, name: &str) -> Vec<Packet> {
        self.clients
            .get_mut(name)
            .map(|c| c.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// Whether the broker closed `name`'s connection (or it was dropped).
    pub fn is_closed(&self, name: &str) -> bool {
        self.clients.get(name).is_none_or(|c| c.closed)
    }

    /// The connection of `name`.
    pub fn conn(&self, name: &str) -> ConnId {
        match self.clients.get(name) {
            Some(c) => c.conn,
            None => panic!("no client {name}"),
        }
    }

    /// The network drops `name`'s connection (no DISCONNECT).
    pub fn drop_connection(&mut self, name: &str) {
        let Some(c) = self.clients.get_mut(name) else {
            return;
        };
        c.closed = true;
        let conn = c.conn;
        self.line(&format!("{name} connection lost"));
        self.input(Input::Closed { conn });
    }

    /// Stops (or resumes) reporting `name`'s transmits as flushed: a slow reader.
    pub fn set_flushing(&mut self, name: &str, flushing: bool) {
        let Some(c) = self.clients.get_mut(name) else {
            return;
        };
        c.flushing = flushing;
        if flushing && c.unflushed > 0 {
            let (conn, bytes) = (c.conn, std::mem::take(&mut c.unflushed));
            self.input(Input::Flushed { conn, bytes });
        }
    }

    /// Moves time forward by `d`, stopping at every engine deadline on the way to fire it.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.engine.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            let reason = self.engine.timeout_reason().unwrap_or("timer");
            self.line(&format!("timeout ({reason})"));
            self.input(Input::Timeout);
        }
        self.now = until;
    }

    /// Reports every emitted storage batch durable.
    pub fn persist_all(&mut self) {
        if let Some(&upto) = self.pending_batches.last() {
            self.pending_batches.clear();
            self.confirm(upto);
            self.line(&format!("persisted upto={}", upto.0));
            self.input(Input::Persisted { upto });
        }
    }

    /// Reports storage batch `seq` failed.
    pub fn fail_batch(&mut self, seq: PersistSeq) {
        self.pending_batches.retain(|s| *s != seq);
        self.unconfirmed.retain(|(s, _)| *s != seq);
        self.line(&format!("persist failed seq={}", seq.0));
        self.input(Input::PersistFailed { seq });
    }

    /// Applies the batches up to `upto` to the durable state.
    fn confirm(&mut self, upto: PersistSeq) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .partition(|(seq, _)| *seq <= upto);
        self.unconfirmed = rest;
        for (_, ops) in done {
            self.durable.apply(&ops);
        }
    }

    /// The broker process dies: every connection is gone, batches not reported durable are lost, and
    /// after `downtime` a new engine (same configuration and seed) restarts from the durable state.
    /// Packets clients already received stay in their inboxes.
    pub fn crash(&mut self, downtime: Duration) {
        self.line("crash (unconfirmed batches lost)");
        self.now = self.now + downtime;
        self.line("restart");
        self.unconfirmed.clear();
        self.pending_batches.clear();
        for c in self.clients.values_mut() {
            c.closed = true;
            c.unflushed = 0;
        }
        self.engine = match Engine::new(self.config.clone(), self.seed) {
            Ok(engine) => engine,
            Err(e) => panic!("invalid config for the simulation: {e}"),
        };
        self.store.state = self.durable.clone();
        self.engine.restore(self.now, self.durable.clone());
        self.drain();
    }

    /// Hands one input to the engine at the current time and drains every output.
    pub fn input(&mut self, input: Input) {
        self.engine.handle(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        let mut follow_ups = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            let Some((name, c)) = self.clients.iter_mut().find(|(_, c)| c.conn == t.conn) else {
                continue;
            };
            let name = name.clone();
            let mut buf = BytesMut::from(&t.data[..]);
            let mut lines = Vec::new();
            loop {
                match c.decoder.decode(&mut buf) {
                    Ok(Decoded::Packet(p)) => {
                        lines.push(format!("←{name} {p}"));
                        c.inbox.push_back(p);
                    }
                    Ok(Decoded::Incomplete { .. }) => break,
                    Err(e) => panic!("broker sent {name} an undecodable packet: {e}"),
                }
            }
            assert!(buf.is_empty(), "broker sent {name} a partial packet");
            if c.flushing {
                follow_ups.push(Input::Flushed {
                    conn: t.conn,
                    bytes: t.data.len(),
                });
            } else {
                c.unflushed += t.data.len();
            }
            for l in lines {
                self.line(&l);
            }
        }
        while let Some(event) = self.engine.poll_event() {
            match &event {
                Event::Persist { seq, ops } => {
                    let text = format!("persist seq={} [{}]", seq.0, render_ops(ops));
                    self.line(&text);
                    self.pending_batches.push(*seq);
                    self.unconfirmed.push((*seq, ops.clone()));
                    self.store.apply(ops);
                    if let Some(anomaly) = self.store.anomalies.first() {
                        panic!("storage operation out of line: {anomaly}\n{}", self.log);
                    }
                }
                Event::Close { conn, reason } => {
                    if let Some((name, c)) = self.clients.iter_mut().find(|(_, c)| c.conn == *conn)
                    {
                        c.closed = true;
                        let text = format!("close {name}: {reason:?}");
                        self.line(&text);
                    }
                    follow_ups.push(Input::Closed { conn: *conn });
                }
                Event::MessageDropped {
                    client_id,
                    topic,
                    reason,
                } => {
                    let text = format!("dropped for {client_id}: {topic:?} {reason:?}");
                    self.line(&text);
                }
                Event::SessionExpired { client_id } => {
                    let text = format!("session expired: {client_id}");
                    self.line(&text);
                }
                // A single-engine simulation has no cluster (see `cluster_sim`).
                Event::Cluster { .. }
                | Event::ClusterMembers { .. }
                | Event::ClusterFrameRejected { .. } => {}
                Event::MessagePublished { message } => {
                    let from = message.origin.as_deref().unwrap_or("-");
                    let text = format!("watched publish by {from}: {:?}", message.topic.as_str());
                    self.line(&text);
                }
                Event::MessageDelivered {
                    client_id,
                    qos,
                    message,
                } => {
                    let text = format!(
                        "watched delivery to {client_id}: {:?} qos {}",
                        message.topic.as_str(),
                        qos.as_u8()
                    );
                    self.line(&text);
                }
                Event::Authenticate {
                    conn,
                    client_id,
                    method,
                    data,
                    stage,
                    ..
                } => {
                    let mut text = format!("authenticate {conn} {client_id:?} {stage:?}");
                    if let Some(method) = method {
                        let _ = write!(text, " method={method:?}");
                    }
                    if let Some(data) = data {
                        let _ = write!(text, " data={}", crate::codec::render_bytes(data));
                    }
                    self.line(&text);
                }
                Event::Refused { client_id, what } => {
                    let text = format!("refused {client_id}: {what:?}");
                    self.line(&text);
                }
                Event::Published { request, outcome } => {
                    let text = format!("published #{request}: {outcome:?}");
                    self.line(&text);
                }
                Event::Reconfigured(report) => {
                    let text = format!("reconfigured {report:?}");
                    self.line(&text);
                }
                Event::ReadPaused { conn } => {
                    let text = format!("read paused {conn}");
                    self.line(&text);
                }
                Event::ReadResumed { conn } => {
                    let text = format!("read resumed {conn}");
                    self.line(&text);
                }
                Event::Peer { to, message } => {
                    let text = match message {
                        PeerMessage::Publish {
                            message,
                            plain,
                            groups,
                            receipt,
                            ..
                        } => format!(
                            "peer {to}: publish {:?} plain={plain} groups={groups:?} receipt={receipt:?}",
                            message.topic.as_str()
                        ),
                        PeerMessage::Stored { seq } => format!("peer {to}: stored {seq}"),
                        PeerMessage::Interest { filter, count, .. } => {
                            format!("peer {to}: interest {filter:?} count={count}")
                        }
                        PeerMessage::Handover {
                            client_id, session, ..
                        } => format!(
                            "peer {to}: handover {client_id:?} session={}",
                            session.is_some()
                        ),
                        PeerMessage::Relay {
                            client_id, message, ..
                        } => format!(
                            "peer {to}: relay {:?} to {client_id:?}",
                            message.topic.as_str()
                        ),
                    };
                    self.line(&text);
                }
                Event::ClientConnected { .. } | Event::ClientDisconnected { .. } => {}
            }
            self.events.push(event);
        }
        if self.auto_persist {
            if let Some(&upto) = self.pending_batches.last() {
                self.confirm(upto);
                follow_ups.push(Input::Persisted { upto });
                self.pending_batches.clear();
            }
        }
        for input in follow_ups {
            self.engine.handle(self.now, input);
            self.drain();
        }
    }
}

/// A short rendering of storage operations for transcripts.
fn render_ops(ops: &[StoreOp]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|op| match op {
            StoreOp::PutSession {
                client_id,
                expiry_interval,
                offline_since,
                will,
                ..
            } => {
                let mut text = format!("put session {client_id:?} expiry={expiry_interval}");
                if let Some(at) = offline_since {
                    let _ = write!(text, " offline_since={at}");
                }
                if let Some(will) = will {
                    let _ = write!(text, " will={:?}", will.topic.as_str());
                }
                text
            }
            StoreOp::DeleteSession { client_id } => format!("delete session {client_id:?}"),
            StoreOp::PutSubscription {
                client_id, filter, ..
            } => format!("put sub {client_id:?} {filter:?}"),
            StoreOp::DeleteSubscription { client_id, filter } => {
                format!("delete sub {client_id:?} {filter:?}")
            }
            StoreOp::PutMessage {
                client_id,
                seq,
                state,
                ..
            } => format!("put msg {client_id:?}#{seq} {state:?}"),
            StoreOp::DeleteMessage { client_id, seq } => format!("delete msg {client_id:?}#{seq}"),
            StoreOp::PutIncoming {
                client_id,
                packet_id,
            } => format!("put incoming {client_id:?} pid={packet_id}"),
            StoreOp::DeleteIncoming {
                client_id,
                packet_id,
            } => format!("delete incoming {client_id:?} pid={packet_id}"),
            StoreOp::PutSeen { client_id, stamp } => format!(
                "put seen {client_id:?} node={} seq={}",
                stamp.node, stamp.seq
            ),
            StoreOp::PutWindow { client_id, window } => {
                format!("put window {client_id:?} until={:?}", window.until)
            }
            StoreOp::PutTaken { client_id, stamp } => format!(
                "put taken {client_id:?} node={} seq={}",
                stamp.node, stamp.seq
            ),
            StoreOp::DeleteWindow { client_id } => format!("delete window {client_id:?}"),
            StoreOp::PutRetained { message } => format!("put retained {:?}", message.topic),
            StoreOp::DeleteRetained { topic } => format!("delete retained {topic:?}"),
            StoreOp::PutRelay {
                client_id, stamp, ..
            } => format!("put relay {client_id:?} {stamp:?}"),
            StoreOp::DeleteRelay { client_id, stamp } => {
                format!("delete relay {client_id:?} {stamp:?}")
            }
            StoreOp::PutHandedOver { client_id } => format!("put handed over {client_id:?}"),
            StoreOp::PutRaftEntry { index, .. } => format!("put raft entry {index}"),
            StoreOp::TruncateRaftLog { from } => format!("truncate raft log from {from}"),
            StoreOp::PutRaftSnapshot { index, .. } => format!("put raft snapshot at {index}"),
            StoreOp::PutRaftHardState { .. } => "put raft hard state".to_string(),
        })
        .collect();
    parts.join(", ")
}

/// Unwrapping what [`Sim::recv`] returns, for tests: each panics with what came instead.
pub mod expect {
    use crate::codec::{Auth, ConnAck, Disconnect, Packet, Publish, SubAck, UnsubAck};

    macro_rules! unwrap_packet {
        ($(#[$doc:meta] $name:ident, $variant:ident, $ty:ty, $what:literal;)*) => {$(
            #[$doc]
            ///
            /// # Panics
            /// If `packet` is anything else.
            pub fn $name(packet: Option<Packet>) -> $ty {
                match packet {
                    Some(Packet::$variant(p)) => p,
                    other => panic!(concat!("expected ", $what, ", got {:?}"), other),
                }
            }
        )*};
    }

    unwrap_packet! {
        /// The CONNACK.
        connack, ConnAck, ConnAck, "CONNACK";
        /// The PUBLISH.
        publish_of, Publish, Publish, "PUBLISH";
        /// The SUBACK.
        suback_of, SubAck, SubAck, "SUBACK";
        /// The UNSUBACK.
        unsuback_of, UnsubAck, UnsubAck, "UNSUBACK";
        /// The AUTH.
        auth_of, Auth, Auth, "AUTH";
        /// The DISCONNECT.
        disconnect_of, Disconnect, Disconnect, "DISCONNECT";
    }

    /// The payloads of the PUBLISHes among `packets`, as text, in order.
    pub fn payloads(packets: &[Packet]) -> Vec<String> {
        packets
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
                _ => None,
            })
            .collect()
    }
}
