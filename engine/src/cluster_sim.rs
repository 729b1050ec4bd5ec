//! A deterministic simulation of a whole cluster in one process: N engines, a seeded network that
//! delays, loses, duplicates and reorders frames and can be partitioned, disks that lose what was not
//! yet confirmed when a node crashes, per-node clock jumps, and scripted MQTT clients. Everything
//! comes from one seed, so a failing seed replays exactly.
//!
//! [`ClusterSim::check`] asserts the cluster's invariants; the tests call it after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::codec::{
    Ack, Connect, Decoded, Decoder, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Will,
};
use crate::{ClusterConfig, Config, ConnId, ConnMeta, Engine, Event, Input, Instant, Rng};
use crate::{PersistSeq, StoreOp, StoredState};

/// How hostile the network is.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Per mille of frames lost.
    pub loss: u64,
    /// Per mille of frames delivered twice.
    pub duplicate: u64,
    /// Latency is drawn from 1 ms to this (so frames reorder).
    pub max_latency: Duration,
}

impl Faults {
    /// A perfect network with 1 ms latency.
    pub const NONE: Faults = Faults {
        loss: 0,
        duplicate: 0,
        max_latency: Duration::from_millis(1),
    };
}

struct Node {
    config: Config,
    engine: Option<Engine>,
    /// What survived on disk: confirmed batches only.
    disk: StoredState,
    /// Batches written but not yet confirmed durable (lost if the node crashes).
    unconfirmed: Vec<(PersistSeq, Vec<StoreOp>)>,
    /// Added to the simulation's time for this node (clock jumps).
    skew: Duration,
    starts: u64,
}

/// A scripted client connected to one node.
#[derive(Debug, Default)]
pub struct Client {
    /// The node it is connected to, while it is.
    pub node: Option<u16>,
    conn: Option<ConnId>,
    decoder: Option<Decoder>,
    /// Whether the broker accepted its CONNECT.
    pub connected: bool,
    /// The last CONNACK's Session Present.
    pub session_present: bool,
    /// Payloads delivered to the application (QoS 2 once per packet identifier flow).
    pub received: Vec<(String, Bytes)>,
    /// QoS 2 packet ids received, PUBREL not yet seen.
    pub incoming: BTreeSet<u16>,
    /// Its publishes not yet acknowledged: packet id → payload.
    unacked: BTreeMap<u16, Bytes>,
    /// Payloads of its publishes that the broker acknowledged (PUBACK / PUBCOMP).
    pub acked: Vec<Bytes>,
    next_id: u16,
    /// Whether it was ever disconnected after connecting.
    pub interrupted: bool,
    /// Whether its last CONNECT asked to resume its session (clean start 0).
    resuming: bool,
    /// Whether the broker acknowledged a SUBSCRIBE of a session it resumes (since its last clean
    /// start): what it is published from then on is what it can be expected to get.
    pub subscribed: bool,
    /// Accepted resuming CONNECTs answered without its session after a SUBSCRIBE was
    /// acknowledged: the session was lost (its node died, and no copy survived).
    pub sessions_lost: u32,
}

/// The simulated cluster.
pub struct ClusterSim {
    rng: Rng,
    now: Instant,
    nodes: Vec<Node>,
    /// Frames in flight: (delivery time, order) → (from, to, frame).
    network: BTreeMap<(Instant, u64), (u16, u16, Bytes)>,
    sent: u64,
    faults: Faults,
    /// Node pairs that cannot talk.
    cut: BTreeSet<(u16, u16)>,
    /// Scripted clients by name.
    pub clients: BTreeMap<String, Client>,
    next_conn: u64,
    log: String,
}

/// Entries between snapshots in the simulation.
pub const SNAPSHOT_ENTRIES: usize = 25;

/// The largest snapshot part in the simulation, in bytes: its snapshots (a few KiB) travel in
/// several parts, each of which the network may lose, duplicate or reorder.
pub const SNAPSHOT_PART: usize = 512;

impl Node {
    fn start(config: &Config, mut cluster: ClusterConfig, rng: &mut Rng) -> Node {
        let mut config = config.clone();
        // Small, so every seed takes snapshots, and nodes that fell behind get one.
        cluster.snapshot_entries = SNAPSHOT_ENTRIES;
        cluster.snapshot_part = SNAPSHOT_PART;
        config.cluster = Some(cluster);
        let engine = Engine::new(config.clone(), rng.next_u64());
        Node {
            engine: Some(engine.unwrap_or_else(|e| panic!("config: {e}"))),
            config,
            disk: StoredState::default(),
            unconfirmed: Vec::new(),
            skew: Duration::ZERO,
            starts: 1,
        }
    }
}

impl ClusterSim {
    /// Starts node `n + 1` (for `n` nodes so far) to join the cluster (`cluster.join`, the others
    /// as its seeds); it takes part once a member adds it ([`Input::ClusterAddMember`]).
    pub fn start_joining(&mut self, config: &Config) -> u16 {
        let id = self.nodes.len() as u16 + 1;
        let mut cluster = ClusterConfig::new(id, (1..=id).collect());
        cluster.join = true;
        let node = Node::start(config, cluster, &mut self.rng);
        self.nodes.push(node);
        self.line(&format!("node {id} starts to join"));
        id
    }

    /// `n` nodes (numbered 1..=n) configured by `config` (its `cluster` is set per node), all drawn
    /// from `seed`.
    pub fn new(n: u16, config: &Config, seed: u64) -> ClusterSim {
        ClusterSim::tuned(n, config, seed, |_| {})
    }

    /// Like [`ClusterSim::new`], with each node's cluster configuration changed by `tune`.
    pub fn tuned(
        n: u16,
        config: &Config,
        seed: u64,
        tune: impl Fn(&mut ClusterConfig),
    ) -> ClusterSim {
        let members: Vec<u16> = (1..=n).collect();
        let mut rng = Rng::new(seed);
        let nodes = members
            .iter()
            .map(|&id| {
                let mut cluster = ClusterConfig::new(id, members.clone());
                tune(&mut cluster);
                Node::start(config, cluster, &mut rng)
            })
            .collect();
        ClusterSim {
            rng,
            now: Instant::ZERO,
            nodes,
            network: BTreeMap::new(),
            sent: 0,
            faults: Faults::NONE,
            cut: BTreeSet::new(),
            clients: BTreeMap::new(),
            next_conn: 1,
            log: String::new(),
        }
    }

    /// The simulation's time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// What happened, one line per step that matters (print it for a failing seed).
    pub fn log(&self) -> &str {
        &self.log
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.log, "{:>9} {text}", self.now.as_micros() / 1000);
    }

    /// Sets the network's behaviour from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The random generator the simulation runs on (for scripts that choose by seed too).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Cuts `a` off from every node in `others`, both ways.
    pub fn partition(&mut self, a: u16, others: &[u16]) {
        for &b in others {
            self.cut.insert((a, b));
            self.cut.insert((b, a));
        }
        self.line(&format!("partition {a} | {others:?}"));
    }

    /// Node `a` stops hearing from `others` (it still reaches them): a one-way cut.
    pub fn deafen(&mut self, a: u16, others: &[u16]) {
        for &b in others {
            self.cut.insert((b, a));
        }
        self.line(&format!("deafen {a} to {others:?}"));
    }

    /// Nobody in `others` hears node `a` any more (it still hears them): a one-way cut.
    pub fn mute(&mut self, a: u16, others: &[u16]) {
        for &b in others {
            self.cut.insert((a, b));
        }
        self.line(&format!("mute {a} to {others:?}"));
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.line("heal");
    }

    /// The engine of node `id`, if it is up.
    pub fn engine(&self, id: u16) -> Option<&Engine> {
        self.nodes[usize::from(id - 1)].engine.as_ref()
    }

    /// What node `id`'s disk holds (durable writes only).
    pub fn disk(&self, id: u16) -> &StoredState {
        &self.nodes[usize::from(id - 1)].disk
    }

    /// The nodes that are up.
    pub fn live(&self) -> Vec<u16> {
        (1..=self.nodes.len() as u16)
            .filter(|id| self.engine(*id).is_some())
            .collect()
    }

    fn node_now(&self, id: u16) -> Instant {
        self.now + self.nodes[usize::from(id - 1)].skew
    }

    /// Node `id`'s clock jumps forward by `by`.
    pub fn jump_clock(&mut self, id: u16, by: Duration) {
        self.nodes[usize::from(id - 1)].skew += by;
        self.line(&format!("clock of node {id} jumps {by:?}"));
        self.input(id, Input::Timeout);
    }

    /// Node `id` crashes: connections drop, unconfirmed writes are lost.
    pub fn crash(&mut self, id: u16) {
        let node = &mut self.nodes[usize::from(id - 1)];
        node.engine = None;
        let lost = node.unconfirmed.len();
        node.unconfirmed.clear();
        self.line(&format!(
            "crash node {id} ({lost} unconfirmed batches lost)"
        ));
        for c in self.clients.values_mut() {
            if c.node == Some(id) {
                c.node = None;
                c.conn = None;
                c.connected = false;
                c.interrupted = true;
            }
        }
    }

    /// Node `id` starts again from its disk.
    pub fn restart(&mut self, id: u16) {
        let seed = self.rng.next_u64();
        let now = self.node_now(id);
        let node = &mut self.nodes[usize::from(id - 1)];
        node.starts += 1;
        let mut engine = match Engine::new(node.config.clone(), seed) {
            Ok(engine) => engine,
            Err(e) => panic!("config: {e}"),
        };
        engine.restore(now, node.disk.clone());
        node.engine = Some(engine);
        self.line(&format!("restart node {id}"));
        self.drain(id);
    }

    /// Connects client `name` to node `id` (clean start, keep alive off, v5).
    pub fn connect(&mut self, name: &str, id: u16) {
        self.connect_with(name, id, true);
    }

    /// Connects `name` to node `id` with `clean_start`.
    pub fn connect_with(&mut self, name: &str, id: u16, clean_start: bool) {
        self.connect_full(name, id, clean_start, None, None);
    }

    /// Connects `name` to node `id` (clean start) with a QoS 2 will of `payload` to `topic`, and
    /// Session Expiry Interval `expiry` (none: the session ends with the connection).
    pub fn connect_with_will(
        &mut self,
        name: &str,
        id: u16,
        expiry: Option<u32>,
        topic: &str,
        payload: &str,
    ) {
        let Ok(topic) = TopicName::new(topic.to_string()) else {
            return;
        };
        let will = Will {
            topic,
            payload: Bytes::from(payload.to_string()),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
        };
        self.connect_full(name, id, true, expiry, Some(will));
    }

    /// `name` sends DISCONNECT (normal: no will) and closes its connection.
    pub fn disconnect(&mut self, name: &str) {
        let Some((id, conn)) = self.attached(name) else {
            return;
        };
        self.line(&format!("{name} disconnects from node {id}"));
        let disconnect = crate::codec::Disconnect {
            reason: crate::codec::ReasonCode::Success,
            properties: Default::default(),
        };
        self.send(name, &Packet::Disconnect(disconnect));
        self.closed(conn);
        self.input(id, Input::Closed { conn });
    }

    /// Connects `name` to node `id` resuming its persistent session, if the cluster has it (clean
    /// start 0, Session Expiry Interval one hour).
    pub fn connect_session(&mut self, name: &str, id: u16) {
        self.connect_full(name, id, false, Some(3600), None);
    }

    /// The node and connection `name` is attached to, if any.
    fn attached(&self, name: &str) -> Option<(u16, ConnId)> {
        self.clients
            .get(name)
            .and_then(|c| Some((c.node?, c.conn?)))
    }

    /// `name`'s connection drops (the client's side closes it).
    pub fn drop_connection(&mut self, name: &str) {
        let Some((id, conn)) = self.attached(name) else {
            return;
        };
        self.line(&format!("{name} drops its connection to node {id}"));
        self.closed(conn);
        self.input(id, Input::Closed { conn });
    }

    fn connect_full(
        &mut self,
        name: &str,
        id: u16,
        clean_start: bool,
        expiry: Option<u32>,
        will: Option<Will>,
    ) {
        if self.engine(id).is_none() {
            return;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let client = self.clients.entry(name.to_string()).or_default();
        if client.conn.is_some() {
            client.interrupted = true;
        }
        client.node = Some(id);
        client.conn = Some(conn);
        client.connected = false;
        client.resuming = !clean_start;
        if clean_start {
            client.subscribed = false;
        }
        let mut decoder = Decoder::new(1 << 20);
        decoder.set_version(ProtocolVersion::V5);
        client.decoder = Some(decoder);
        self.line(&format!("{name} connects to node {id}"));
        self.input(
            id,
            Input::Accepted {
                conn,
                meta: ConnMeta {
                    peer: format!("sim:{name}"),
                    listener: "sim".into(),
                    ..Default::default()
                },
            },
        );
        let connect = Connect {
            protocol: ProtocolVersion::V5,
            clean_start,
            keep_alive: 0,
            properties: crate::codec::ConnectProperties {
                session_expiry_interval: expiry,
                ..Default::default()
            },
            client_id: name.into(),
            will,
            username: None,
            password: None,
        };
        self.send(name, &Packet::Connect(Box::new(connect)));
    }

    /// Sends `packet` from `name` to its node.
    fn send(&mut self, name: &str, packet: &Packet) {
        let Some((id, conn)) = self.attached(name) else {
            return;
        };
        let mut buf = BytesMut::new();
        if packet.encode(ProtocolVersion::V5, &mut buf).is_err() {
            return;
        }
        self.input(
            id,
            Input::Received {
                conn,
                data: buf.freeze(),
            },
        );
    }

    /// `name` subscribes to `filter` at `qos`.
    pub fn subscribe(&mut self, name: &str, filter: &str, qos: QoS) {
        let Ok(filter) = TopicFilter::new(filter.to_string()) else {
            return;
        };
        let packet_id = self.next_id(name);
        let packet = Packet::Subscribe(Subscribe {
            packet_id,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter,
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
        });
        self.send(name, &packet);
    }

    fn next_id(&mut self, name: &str) -> PacketId {
        let c = self.clients.entry(name.to_string()).or_default();
        c.next_id = c.next_id % u16::MAX + 1;
        PacketId::new(c.next_id).unwrap_or(PacketId::MIN)
    }

    /// `name` publishes `payload` to `topic`.
    pub fn publish(&mut self, name: &str, topic: &str, qos: QoS, retain: bool, payload: &str) {
        if !self.clients.get(name).is_some_and(|c| c.connected) {
            return;
        }
        let Ok(topic) = TopicName::new(topic.to_string()) else {
            return;
        };
        let id = self.next_id(name);
        let node = self.clients.get(name).and_then(|c| c.node).unwrap_or(0);
        self.line(&format!(
            "{name} publishes {payload} to {topic} via node {node}"
        ));
        let payload = Bytes::from(payload.to_string());
        if qos != QoS::AtMostOnce {
            if let Some(c) = self.clients.get_mut(name) {
                c.unacked.insert(id.get(), payload.clone());
            }
        }
        let publish = Publish {
            dup: false,
            delivery: Delivery::new(qos, Some(id)).unwrap_or(Delivery::AtMostOnce),
            retain,
            topic,
            properties: Default::default(),
            payload,
        };
        self.send(name, &Packet::Publish(publish));
    }

    /// Gives `input` to node `id` at its time, then drains its outputs.
    pub fn input(&mut self, id: u16, input: Input) {
        let now = self.node_now(id);
        let Some(engine) = self.nodes[usize::from(id - 1)].engine.as_mut() else {
            return;
        };
        engine.handle(now, input);
        self.drain(id);
    }

    fn drain(&mut self, id: u16) {
        let mut follow_ups = Vec::new();
        let Some(engine) = self.nodes[usize::from(id - 1)].engine.as_mut() else {
            return;
        };
        let mut transmits = Vec::new();
        while let Some(t) = engine.poll_transmit() {
            transmits.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = engine.poll_event() {
            events.push(e);
        }
        for event in events {
            match event {
                Event::Cluster { to, frame } => self.transmit(id, to, frame),
                Event::Persist { seq, ops } => {
                    self.nodes[usize::from(id - 1)].unconfirmed.push((seq, ops));
                }
                Event::Close { conn, .. } => {
                    self.closed(conn);
                    follow_ups.push(Input::Closed { conn });
                }
                Event::Authenticate { conn, .. } => follow_ups.push(Input::AuthDecided {
                    conn,
                    decision: crate::AuthDecision::Allow,
                }),
                _ => {}
            }
        }
        for t in transmits {
            let data = t.data.len();
            self.client_bytes(t.conn, &t.data);
            follow_ups.push(Input::Flushed {
                conn: t.conn,
                bytes: data,
            });
        }
        for input in follow_ups {
            self.input(id, input);
        }
    }

    fn closed(&mut self, conn: ConnId) {
        if let Some((name, c)) = self.clients.iter_mut().find(|(_, c)| c.conn == Some(conn)) {
            c.conn = None;
            c.node = None;
            c.connected = false;
            c.interrupted = true;
            let _ = writeln!(self.log, "{:>9} {name} closed", self.now.as_micros() / 1000);
        }
    }

    /// A client reads what its broker wrote, answering like a well-behaved client.
    fn client_bytes(&mut self, conn: ConnId, data: &[u8]) {
        let Some(name) = self
            .clients
            .iter()
            .find(|(_, c)| c.conn == Some(conn))
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        let mut buf = BytesMut::from(data);
        let mut packets = Vec::new();
        if let Some(decoder) = self.clients.get_mut(&name).and_then(|c| c.decoder.as_mut()) {
            while let Ok(Decoded::Packet(p)) = decoder.decode(&mut buf) {
                packets.push(p);
            }
        }
        for packet in packets {
            let reply = {
                let Some(c) = self.clients.get_mut(&name) else {
                    return;
                };
                match packet {
                    Packet::ConnAck(ack) => {
                        c.connected = ack.reason == crate::codec::ReasonCode::Success;
                        c.session_present = ack.session_present;
                        if c.connected && c.resuming && c.subscribed && !ack.session_present {
                            c.sessions_lost += 1;
                        }
                        if !ack.session_present {
                            // A new session: QoS 2 flows of the old one are over.
                            c.incoming.clear();
                        }
                        let _ = writeln!(
                            self.log,
                            "{:>9} {name} CONNACK {:?} session present {}",
                            self.now.as_micros() / 1000,
                            ack.reason,
                            ack.session_present
                        );
                        None
                    }
                    Packet::Publish(p) => match p.delivery {
                        Delivery::ExactlyOnce(id) if p.topic.as_str().starts_with("q2/") => {
                            let _ = writeln!(
                                self.log,
                                "{:>9} {name} gets {:?} (QoS 2, id {}, dup {}, node {:?})",
                                self.now.as_micros() / 1000,
                                p.payload,
                                id.get(),
                                p.dup,
                                c.node
                            );
                            if c.incoming.insert(id.get()) {
                                c.received.push((p.topic.to_string(), p.payload));
                            }
                            Some(Packet::PubRec(Ack::new(id)))
                        }
                        Delivery::AtMostOnce => {
                            c.received.push((p.topic.to_string(), p.payload));
                            None
                        }
                        Delivery::AtLeastOnce(id) => {
                            c.received.push((p.topic.to_string(), p.payload));
                            Some(Packet::PubAck(Ack::new(id)))
                        }
                        Delivery::ExactlyOnce(id) => {
                            if c.incoming.insert(id.get()) {
                                c.received.push((p.topic.to_string(), p.payload));
                            }
                            Some(Packet::PubRec(Ack::new(id)))
                        }
                    },
                    Packet::PubRel(rel) => {
                        c.incoming.remove(&rel.packet_id.get());
                        Some(Packet::PubComp(Ack::new(rel.packet_id)))
                    }
                    Packet::PubAck(ack) | Packet::PubComp(ack) => {
                        if let Some(payload) = c.unacked.remove(&ack.packet_id.get()) {
                            let _ = writeln!(
                                self.log,
                                "{:>9} {name} acked {payload:?}",
                                self.now.as_micros() / 1000
                            );
                            c.acked.push(payload);
                        }
                        None
                    }
                    Packet::PubRec(ack) => Some(Packet::PubRel(Ack::new(ack.packet_id))),
                    Packet::SubAck(ack) => {
                        c.subscribed |= c.resuming && ack.reasons.iter().all(|r| r.as_u8() < 0x80);
                        None
                    }
                    _ => None,
                }
            };
            if let Some(reply) = reply {
                self.send(&name, &reply);
            }
        }
    }

    fn transmit(&mut self, from: u16, to: u16, frame: Bytes) {
        if self.cut.contains(&(from, to)) || self.rng.below(1000) < self.faults.loss {
            return;
        }
        let copies = if self.rng.below(1000) < self.faults.duplicate {
            2
        } else {
            1
        };
        let max = self.faults.max_latency.as_micros().max(1000) as u64;
        for _ in 0..copies {
            let latency = Duration::from_micros(1000 + self.rng.below(max));
            self.sent += 1;
            self.network
                .insert((self.now + latency, self.sent), (from, to, frame.clone()));
        }
    }

    /// Runs the cluster for `d`: delivers frames, fires timers, confirms disk writes (each node's
    /// pending batches become durable at every step, and at most a millisecond after they were
    /// written), calling `each` after every step.
    pub fn run_checked(&mut self, d: Duration, each: &mut dyn FnMut(&ClusterSim)) {
        let until = self.now + d;
        loop {
            let next_frame = self.network.keys().next().map(|(at, _)| *at);
            let next_timer = self
                .live()
                .into_iter()
                .filter_map(|id| {
                    let skew = self.nodes[usize::from(id - 1)].skew;
                    let at = self.engine(id)?.poll_timeout()?;
                    // A node's deadline in the simulation's time.
                    Some(Instant::from_micros(
                        at.as_micros().saturating_sub(skew.as_micros() as u64),
                    ))
                })
                .min();
            // A disk confirms what it was given within a millisecond.
            let next_disk = self
                .nodes
                .iter()
                .any(|n| n.engine.is_some() && !n.unconfirmed.is_empty())
                .then(|| self.now + Duration::from_millis(1));
            let next = [next_frame, next_timer, next_disk]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            self.confirm_writes();
            if next_frame == Some(next) {
                if let Some(((_, _), (from, to, frame))) = self.network.pop_first() {
                    if !self.cut.contains(&(from, to)) {
                        self.input(to, Input::Cluster { from, frame });
                    }
                }
            } else {
                for id in self.live() {
                    let due = self.engine(id).and_then(Engine::poll_timeout);
                    if due.is_some_and(|at| at <= self.node_now(id)) {
                        self.input(id, Input::Timeout);
                    }
                }
            }
            each(self);
        }
    }

    /// Runs for `d` checking [`ClusterSim::check`] after every step.
    pub fn run(&mut self, d: Duration) {
        self.run_checked(d, &mut |sim| sim.check());
    }

    fn confirm_writes(&mut self) {
        for id in self.live() {
            let node = &mut self.nodes[usize::from(id - 1)];
            let Some(upto) = node.unconfirmed.last().map(|(seq, _)| *seq) else {
                continue;
            };
            for (_, ops) in node.unconfirmed.drain(..) {
                node.disk.apply(&ops);
            }
            self.input(id, Input::Persisted { upto });
        }
    }

    /// The cluster's invariants; panics with the log on the first one broken.
    pub fn check(&self) {
        // Nodes that applied the same prefix of the log agree on every owner.
        let mut by_applied: BTreeMap<u64, (u16, &Engine)> = BTreeMap::new();
        for id in self.live() {
            let Some(engine) = self.engine(id) else {
                continue;
            };
            let applied = engine.cluster_stats().map_or(0, |s| s.applied);
            match by_applied.get(&applied) {
                Some((other, e)) => {
                    if e.cluster_owners() != engine.cluster_owners() {
                        self.fail(&format!(
                            "nodes {other} and {id} applied the log to {applied} but disagree on owners"
                        ));
                    }
                    if e.cluster_digest() != engine.cluster_digest() {
                        self.fail(&format!(
                            "nodes {other} and {id} applied the log to {applied} but disagree on \
                             the table or the session copies:\n{:?}\n{:?}",
                            e.cluster_digest(),
                            engine.cluster_digest()
                        ));
                    }
                }
                None => {
                    by_applied.insert(applied, (id, engine));
                }
            }
            // A node serves only the clients its applied table says it owns.
            for s in engine.sessions() {
                if s.conn.is_some() && engine.cluster_owner(&s.client_id) != Some(id) {
                    self.fail(&format!(
                        "node {id} serves {} but its table says {:?} owns it",
                        s.client_id,
                        engine.cluster_owner(&s.client_id)
                    ));
                }
            }
        }
        // A connected client is attached to its session (seed 20110: a connection left open on
        // a node that had ended its session received nothing, for ever).
        for (name, c) in &self.clients {
            let (true, Some(id), Some(conn)) = (c.connected, c.node, c.conn) else {
                continue;
            };
            let attached = (self.engine(id).and_then(|e| e.session(name)))
                .is_some_and(|s| s.conn == Some(conn));
            if !attached {
                self.fail(&format!(
                    "{name} is connected to node {id}, which holds no session for it on that connection"
                ));
            }
        }
        // QoS 2 is never delivered twice.
        for (name, c) in &self.clients {
            let mut seen = BTreeSet::new();
            for (topic, payload) in &c.received {
                if topic.starts_with("q2/") && !seen.insert(payload) {
                    self.fail(&format!("{name} got QoS 2 message {payload:?} twice"));
                }
            }
        }
    }

    /// Panics with the simulation's log.
    pub fn fail(&self, why: &str) -> ! {
        panic!("{why}\n--- simulation log ---\n{}", self.log)
    }
}
