//! Replaying a trace: the recorded client side is fed to a broker at the recorded times, and what the
//! broker sends back is compared with the recorded broker side.
//!
//! Only what the specification leaves to the broker is normalised before comparing:
//!
//! - packet identifiers the broker chooses (its PUBLISHes and PUBRELs) become ordinals per connection:
//!   1 for the first new message, 2 for the next... A redelivery (DUP) keeps its message's ordinal.
//!   The client's acknowledgements of them are rewritten to the identifiers the replayed broker chose;
//! - outbound topic aliases are resolved (a sender may or may not use them);
//! - an assigned client identifier becomes `<assigned>`;
//! - Reason Strings are dropped (free text the broker MAY send);
//! - property order is whatever our codec renders (MQTT does not order properties);
//! - PUBACK / PUBREC 0x10 (No matching subscribers) counts as 0x00 (Success): the Server MAY use it;
//! - on one connection, the order between acknowledgements and deliveries (PUBLISH, PUBREL) is free: a
//!   QoS 2 message may be forwarded on its PUBLISH or on its PUBREL, so each of the two streams is
//!   compared in order on its own;
//! - when the recorded broker closed a connection on an error without a DISCONNECT, ours may send the
//!   DISCONNECT with a reason code first (the specification says it SHOULD, [MQTT-4.13]);
//! - our times may be up to [`EARLY`] earlier and [`LATE`] later than the recording: mosquitto checks
//!   its timers (keep alive, will delay, expiry) about once a second, so it acts late;
//! - after a client's DISCONNECT, whether the broker or the client closes the connection first is a race,
//!   so a broker's close is not compared there.
//!
//! Where the recorded broker departs from the specification, the trace's `expect` lines replace its
//! broker side for that connection (compared without times).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    ByteString, Delivery, FrameHeader, Packet, PacketId, PacketType, ProtocolVersion, ReasonCode,
    TopicName,
};
use cicada_engine::{ConnId, ConnMeta, Engine, Event, Input, Instant};

use crate::profile;
use crate::trace::{describe, Dir, Label, Splitter, Trace, What};

/// How much earlier than the recording a replayed broker may act.
pub const EARLY: Duration = Duration::from_millis(1500);
/// How much later than the recording a replayed broker may act.
pub const LATE: Duration = Duration::from_millis(500);

/// One thing the broker did on a connection, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// When (`None` for expectations that replace a deviating recording).
    pub at: Option<Duration>,
    /// The connection.
    pub conn: Label,
    /// The packet rendered after normalisation, or `close`.
    pub text: String,
}

/// Normalises what a broker sends on one connection.
#[derive(Debug, Default)]
pub struct Normalizer {
    /// Broker packet id → ordinal of the message using it.
    ordinals: HashMap<u16, u16>,
    next: u16,
    aliases: HashMap<std::num::NonZeroU16, TopicName>,
}

impl Normalizer {
    fn ordinal_for(&mut self, pid: u16, fresh: bool) -> u16 {
        if !fresh {
            if let Some(&n) = self.ordinals.get(&pid) {
                return n;
            }
        }
        self.next = self.next.wrapping_add(1).max(1);
        self.ordinals.insert(pid, self.next);
        self.next
    }

    /// The ordinal currently held by broker packet id `pid`.
    pub fn ordinal(&self, pid: u16) -> Option<u16> {
        self.ordinals.get(&pid).copied()
    }

    /// The broker packet id currently holding `ordinal`.
    pub fn packet_id(&self, ordinal: u16) -> Option<u16> {
        self.ordinals
            .iter()
            .find(|(_, &n)| n == ordinal)
            .map(|(&pid, _)| pid)
    }

    /// Renders a packet the broker sent, normalised.
    pub fn broker_packet(&mut self, packet: Packet) -> String {
        let mut packet = packet;
        match &mut packet {
            Packet::Publish(p) => {
                if let Some(alias) = p.properties.topic_alias.take() {
                    if p.topic.as_str().is_empty() {
                        if let Some(topic) = self.aliases.get(&alias) {
                            p.topic = topic.clone();
                        }
                    } else {
                        self.aliases.insert(alias, p.topic.clone());
                    }
                }
                let fresh = !p.dup;
                p.delivery = match p.delivery {
                    Delivery::AtMostOnce => Delivery::AtMostOnce,
                    Delivery::AtLeastOnce(id) => Delivery::AtLeastOnce(self.renumber(id, fresh)),
                    Delivery::ExactlyOnce(id) => Delivery::ExactlyOnce(self.renumber(id, fresh)),
                };
            }
            Packet::PubRel(a) => {
                a.packet_id = self.renumber(a.packet_id, false);
                a.properties.reason_string = None;
            }
            Packet::PubAck(a) | Packet::PubRec(a) => {
                if a.reason == ReasonCode::NoMatchingSubscribers {
                    a.reason = ReasonCode::Success;
                }
                a.properties.reason_string = None;
            }
            Packet::PubComp(a) => a.properties.reason_string = None,
            Packet::ConnAck(c) => {
                if c.properties.assigned_client_identifier.is_some() {
                    c.properties.assigned_client_identifier = Some(ByteString::from("<assigned>"));
                }
                c.properties.reason_string = None;
            }
            Packet::SubAck(s) => s.properties.reason_string = None,
            Packet::UnsubAck(u) => u.properties.reason_string = None,
            Packet::Disconnect(d) => d.properties.reason_string = None,
            Packet::Auth(a) => a.properties.reason_string = None,
            _ => {}
        }
        packet.to_string()
    }

    fn renumber(&mut self, id: PacketId, fresh: bool) -> PacketId {
        let n = self.ordinal_for(id.get(), fresh);
        PacketId::new(n).unwrap_or(id)
    }
}

/// The packet type and packet id of an acknowledgement the client sends for a broker-chosen id
/// (PUBACK, PUBREC, PUBCOMP), if `raw` is one.
fn client_ack_id(raw: &[u8]) -> Option<(usize, u16)> {
    let h = FrameHeader::parse(raw).ok()??;
    let kind = raw.first()? >> 4;
    let is_ack = [PacketType::PubAck, PacketType::PubRec, PacketType::PubComp]
        .iter()
        .any(|t| *t as u8 == kind);
    if !is_ack || h.body_len < 2 || raw.len() < h.header_len + 2 {
        return None;
    }
    let at = h.header_len;
    Some((at, u16::from_be_bytes([raw[at], raw[at + 1]])))
}

/// Rewrites a client acknowledgement of a recorded broker packet id to the id the replayed broker
/// used for the same message; anything else is returned unchanged.
pub fn rewrite_ack(raw: &Bytes, recorded: &Normalizer, replayed: &Normalizer) -> Bytes {
    let Some((at, pid)) = client_ack_id(raw) else {
        return raw.clone();
    };
    let Some(ours) = recorded.ordinal(pid).and_then(|n| replayed.packet_id(n)) else {
        return raw.clone();
    };
    let mut out = BytesMut::from(&raw[..]);
    out[at..at + 2].copy_from_slice(&ours.to_be_bytes());
    out.freeze()
}

/// Follows one recorded connection: its protocol version and the recorded broker's packet ids.
#[derive(Debug, Default)]
pub struct RecordedConn {
    /// The version of the client's CONNECT, once seen.
    pub version: Option<ProtocolVersion>,
    /// The recorded broker side, normalised.
    pub norm: Normalizer,
    /// Whether the client sent DISCONNECT (after which who closes first is a race).
    pub disconnected: bool,
}

impl RecordedConn {
    /// Notes a client packet (learning the version from CONNECT).
    pub fn client_bytes(&mut self, raw: &[u8]) {
        if raw
            .first()
            .is_some_and(|b| b >> 4 == PacketType::Disconnect as u8)
        {
            self.disconnected = true;
        }
        if self.version.is_none() {
            if let (_, Some(Packet::Connect(c))) = describe(raw, ProtocolVersion::V3_1_1) {
                self.version = Some(c.protocol);
            }
        }
    }

    /// Renders a broker packet, normalised.
    pub fn broker_bytes(&mut self, raw: &[u8]) -> String {
        let (text, packet) = describe(raw, self.version.unwrap_or(ProtocolVersion::V3_1_1));
        match packet {
            Some(p) => self.norm.broker_packet(p),
            None => text,
        }
    }
}

/// The recorded broker side of `trace`, normalised, with `expect` lines in place of a deviating
/// recording.
pub fn expected(trace: &Trace) -> Vec<Observed> {
    let overrides = trace.expectations();
    let mut conns: BTreeMap<Label, RecordedConn> = BTreeMap::new();
    let mut out = Vec::new();
    for e in &trace.events {
        let c = conns.entry(e.conn).or_default();
        match &e.what {
            What::Bytes {
                dir: Dir::ToBroker,
                raw,
                ..
            } => c.client_bytes(raw),
            What::Bytes {
                dir: Dir::ToClient,
                raw,
                ..
            } => {
                let text = c.broker_bytes(raw);
                if !overrides.contains_key(&e.conn) {
                    out.push(Observed {
                        at: Some(e.at),
                        conn: e.conn,
                        text,
                    });
                }
            }
            What::Close { dir: Dir::ToClient }
                if !overrides.contains_key(&e.conn) && !c.disconnected =>
            {
                out.push(Observed {
                    at: Some(e.at),
                    conn: e.conn,
                    text: "close".into(),
                });
            }
            _ => {}
        }
    }
    for (conn, lines) in overrides {
        out.extend(lines.into_iter().map(|text| Observed {
            at: None,
            conn,
            text,
        }));
    }
    out
}

/// Whether a normalised line belongs to the delivery stream (PUBLISH, PUBREL) rather than to the
/// acknowledgement stream.
fn is_delivery(text: &str) -> bool {
    text.starts_with("PUBLISH ") || text.starts_with("PUBREL ")
}

/// Whether a line is a DISCONNECT with an error reason code (0x80 or above).
fn is_error_disconnect(text: &str) -> bool {
    text.strip_prefix("DISCONNECT 0x")
        .and_then(|rest| rest.get(..2))
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        .is_some_and(|code| code >= 0x80)
}

/// Compares one stream of one connection; pushes readable problems.
fn compare_stream(exp: &[&Observed], got: &[&Observed], problems: &mut Vec<String>) {
    let mut got: Vec<&Observed> = got.to_vec();
    // The SHOULD-send DISCONNECT before closing on an error, where the recording has none.
    if !exp.iter().any(|e| e.text.starts_with("DISCONNECT")) {
        let tail = got.iter().rposition(|g| g.text != "close");
        if let Some(i) = tail.filter(|&i| is_error_disconnect(&got[i].text)) {
            got.remove(i);
        }
    }
    for i in 0..exp.len().max(got.len()) {
        match (exp.get(i), got.get(i)) {
            (Some(e), Some(g)) if e.text != g.text => {
                problems.push(format!("  expected {}\n  got      {}", e.text, g.text))
            }
            (Some(e), Some(g)) => {
                if let (Some(te), Some(tg)) = (e.at, g.at) {
                    if tg + EARLY < te || tg > te + LATE {
                        problems.push(format!(
                            "  {} at {:.3}s, recorded at {:.3}s",
                            g.text,
                            tg.as_secs_f64(),
                            te.as_secs_f64()
                        ));
                    }
                }
            }
            (Some(e), None) => problems.push(format!("  missing  {}", e.text)),
            (None, Some(g)) => problems.push(format!("  extra    {}", g.text)),
            (None, None) => {}
        }
    }
}

/// Compares a replayed broker side with the expected one, per connection and stream; `Err` holds a
/// readable report of every difference.
pub fn compare(expected: &[Observed], ours: &[Observed]) -> Result<(), String> {
    type Streams<'a> = [(Vec<&'a Observed>, Vec<&'a Observed>); 2];
    let mut by_conn: BTreeMap<Label, Streams<'_>> = BTreeMap::new();
    for o in expected {
        by_conn.entry(o.conn).or_default()[usize::from(is_delivery(&o.text))]
            .0
            .push(o);
    }
    for o in ours {
        by_conn.entry(o.conn).or_default()[usize::from(is_delivery(&o.text))]
            .1
            .push(o);
    }
    let mut report = String::new();
    for (conn, streams) in by_conn {
        let mut problems = Vec::new();
        for (exp, got) in &streams {
            compare_stream(exp, got, &mut problems);
        }
        if !problems.is_empty() {
            let _ = writeln!(report, "{conn}:\n{}", problems.join("\n"));
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// A replay that could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace names a profile we do not know.
    #[error("unknown profile {0:?}")]
    Profile(String),
    /// The profile's configuration is invalid.
    #[error("invalid engine configuration: {0}")]
    Config(String),
}

/// The outcome of replaying a trace against the engine.
#[derive(Debug)]
pub struct Replay {
    /// What the engine sent, normalised.
    pub observed: Vec<Observed>,
    /// Client side and engine side interleaved in time, for snapshots.
    pub transcript: String,
}

struct EngineConn {
    id: ConnId,
    recorded: RecordedConn,
    ours: Normalizer,
    splitter: Splitter,
    closed: bool,
}

struct EngineReplay {
    engine: Engine,
    now: Duration,
    conns: BTreeMap<Label, EngineConn>,
    observed: Vec<Observed>,
    lines: Vec<(Duration, String)>,
}

impl EngineReplay {
    fn label(&self, id: ConnId) -> Option<Label> {
        self.conns
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(label, _)| *label)
    }

    fn input(&mut self, input: Input) {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            self.engine.handle(Instant::from_duration(self.now), input);
            while let Some(t) = self.engine.poll_transmit() {
                queue.push(Input::Flushed {
                    conn: t.conn,
                    bytes: t.data.len(),
                });
                let Some(label) = self.label(t.conn) else {
                    continue;
                };
                let Some(c) = self.conns.get_mut(&label) else {
                    continue;
                };
                for raw in c.splitter.push(&t.data) {
                    let version = c.recorded.version.unwrap_or(ProtocolVersion::V3_1_1);
                    let text = match describe(&raw, version) {
                        (_, Some(p)) => c.ours.broker_packet(p),
                        (text, None) => text,
                    };
                    self.lines.push((self.now, format!("{label} < {text}")));
                    self.observed.push(Observed {
                        at: Some(self.now),
                        conn: label,
                        text,
                    });
                }
            }
            while let Some(event) = self.engine.poll_event() {
                match event {
                    Event::Persist { seq, .. } => queue.push(Input::Persisted { upto: seq }),
                    Event::Close { conn, .. } => {
                        let Some(label) = self.label(conn) else {
                            continue;
                        };
                        if let Some(c) = self.conns.get_mut(&label) {
                            if !c.closed {
                                c.closed = true;
                                self.lines.push((self.now, format!("{label} < close")));
                                if !c.recorded.disconnected {
                                    self.observed.push(Observed {
                                        at: Some(self.now),
                                        conn: label,
                                        text: "close".into(),
                                    });
                                }
                            }
                        }
                        queue.push(Input::Closed { conn });
                    }
                    _ => {}
                }
            }
        }
    }

    fn run_until(&mut self, until: Duration) {
        while let Some(at) = self.engine.poll_timeout() {
            let at = at.since_origin();
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.input(Input::Timeout);
        }
        self.now = self.now.max(until);
    }
}

/// Replays `trace` against a fresh engine with the trace's profile.
pub fn replay_engine(trace: &Trace) -> Result<Replay, ReplayError> {
    let config = profile::engine_config(trace.profile())
        .ok_or_else(|| ReplayError::Profile(trace.profile().to_string()))?;
    let engine = Engine::new(config, 7).map_err(|e| ReplayError::Config(e.to_string()))?;
    let mut r = EngineReplay {
        engine,
        now: Duration::ZERO,
        conns: BTreeMap::new(),
        observed: Vec::new(),
        lines: Vec::new(),
    };
    for e in &trace.events {
        r.run_until(e.at);
        match &e.what {
            What::Open => {
                let id = ConnId(u64::from(e.conn.0));
                r.conns.insert(
                    e.conn,
                    EngineConn {
                        id,
                        recorded: RecordedConn::default(),
                        ours: Normalizer::default(),
                        splitter: Splitter::default(),
                        closed: false,
                    },
                );
                r.lines.push((e.at, format!("{} open", e.conn)));
                r.input(Input::Accepted {
                    conn: id,
                    meta: ConnMeta {
                        peer: format!("trace:{}", e.conn),
                        listener: "trace".into(),
                        ..ConnMeta::default()
                    },
                });
            }
            What::Bytes { dir, raw, text } => {
                let Some(c) = r.conns.get_mut(&e.conn) else {
                    continue;
                };
                match dir {
                    Dir::ToClient => {
                        c.recorded.broker_bytes(raw);
                    }
                    Dir::ToBroker => {
                        c.recorded.client_bytes(raw);
                        if c.closed {
                            continue;
                        }
                        let data = rewrite_ack(raw, &c.recorded.norm, &c.ours);
                        let id = c.id;
                        r.lines.push((e.at, format!("{} > {text}", e.conn)));
                        r.input(Input::Received { conn: id, data });
                    }
                }
            }
            What::Close { dir: Dir::ToBroker } => {
                let Some(c) = r.conns.get_mut(&e.conn) else {
                    continue;
                };
                if !c.closed {
                    c.closed = true;
                    let id = c.id;
                    r.lines.push((e.at, format!("{} > close", e.conn)));
                    r.input(Input::Closed { conn: id });
                }
            }
            What::Close { dir: Dir::ToClient } => {}
        }
    }
    r.run_until(trace.end);
    let mut transcript = String::new();
    for (at, line) in &r.lines {
        let _ = writeln!(transcript, "+{:.3}s {line}", at.as_secs_f64());
    }
    Ok(Replay {
        observed: r.observed,
        transcript,
    })
}
