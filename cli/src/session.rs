//! A small MQTT client over any transport's byte stream, speaking through the engine's codec.
//!
//! It does what a command-line client needs and nothing more: one CONNECT, publishes that wait
//! for their QoS 1/2 flow to complete before the next, subscriptions, deliveries acknowledged as
//! they arrive, PINGREQ when the connection is quiet, and DISCONNECT. Every wait for the server is
//! bounded, so a silent broker is an error, not a hang.
//!
//! Writes go through an output buffer that keeps whatever was not written yet, so a
//! [`Session::idle`] future may be cancelled (raced against standard input) without tearing a
//! packet in half.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cicada_engine::codec::{
    Ack, ConnAck, Connect, ConnectProperties, Decoded, Decoder, Delivery, Disconnect, Packet,
    PacketId, PacketType, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};
use cicada_transports::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::CliError;

/// The largest packet accepted from the server; announced in CONNECT (5.0) so the server does not
/// send larger ones.
pub const MAX_PACKET_SIZE: usize = 16 << 20;

/// What goes into CONNECT, and how long to wait for answers.
#[derive(Clone, Debug)]
pub struct Options {
    /// The protocol version.
    pub version: ProtocolVersion,
    /// The client identifier; empty lets the server assign one (with a clean start).
    pub client_id: String,
    /// Clean Start (5.0) / Clean Session (3.x); false resumes a stored session.
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it. PINGREQ goes out after half of it without traffic.
    pub keep_alive: u16,
    /// The session expiry interval in seconds (5.0 only; 3.x sessions without Clean Session
    /// never expire).
    pub session_expiry: Option<u32>,
    /// The user name.
    pub username: Option<String>,
    /// The password.
    pub password: Option<Bytes>,
    /// How long to wait for CONNACK and for each acknowledgement.
    pub timeout: Duration,
}

impl Options {
    /// Options for a clean session with `client_id` at `version`: keep alive 60 s, 30 s timeout.
    pub fn new(version: ProtocolVersion, client_id: impl Into<String>) -> Options {
        Options {
            version,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            session_expiry: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A connected MQTT client session.
pub struct Session {
    stream: BoxStream,
    version: ProtocolVersion,
    decoder: Decoder,
    /// Received bytes not decoded yet.
    rx: BytesMut,
    /// Encoded bytes not written yet.
    tx: BytesMut,
    /// How long the connection may be quiet before a PINGREQ; `None` without keep alive.
    ping_every: Option<Duration>,
    /// When the next PINGREQ is due.
    next_ping: Option<Instant>,
    /// A PINGREQ is waiting for its PINGRESP.
    ping_outstanding: bool,
    timeout: Duration,
    last_id: u16,
    /// Messages received and acknowledged, not yet taken by [`Session::next_message`].
    inbox: VecDeque<Publish>,
    /// QoS 2 deliveries answered with PUBREC, waiting for PUBREL.
    awaiting_release: HashSet<u16>,
    connack: ConnAck,
}

/// A bound on a wait for the server.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The wait's length, for the error.
    after: Duration,
}

impl Deadline {
    fn after(after: Duration) -> Deadline {
        let now = Instant::now();
        Deadline {
            // A wait too long to represent is as good as forever: a day and more is plenty.
            at: now
                .checked_add(after)
                .unwrap_or_else(|| now + Duration::from_secs(1 << 40)),
            after,
        }
    }
}

/// What woke a read.
enum Wake {
    Read(std::io::Result<usize>),
    Ping,
    Deadline,
}

impl Session {
    /// Sends CONNECT over `stream` and waits for CONNACK; a refusal is [`CliError::Refused`]
    /// with the server's reason.
    pub async fn connect(stream: BoxStream, options: &Options) -> Result<Session, CliError> {
        let mut decoder = Decoder::new(MAX_PACKET_SIZE);
        decoder.set_version(options.version);
        let mut session = Session {
            stream,
            version: options.version,
            decoder,
            rx: BytesMut::with_capacity(8 << 10),
            tx: BytesMut::with_capacity(8 << 10),
            ping_every: None,
            next_ping: None,
            ping_outstanding: false,
            timeout: options.timeout,
            last_id: 0,
            inbox: VecDeque::new(),
            awaiting_release: HashSet::new(),
            connack: ConnAck {
                session_present: false,
                reason: ReasonCode::Success,
                properties: Default::default(),
            },
        };
        let mut properties = ConnectProperties::default();
        if options.version.is_v5() {
            properties.session_expiry_interval = options.session_expiry;
            properties.maximum_packet_size = NonZeroU32::new(MAX_PACKET_SIZE as u32);
        }
        let connect = Connect {
            protocol: options.version,
            clean_start: options.clean_start,
            keep_alive: options.keep_alive,
            properties,
            client_id: options.client_id.as_str().into(),
            will: None,
            username: options.username.as_deref().map(Into::into),
            password: options.password.clone(),
        };
        session.send(&Packet::Connect(Box::new(connect))).await?;
        let deadline = session.deadline();
        let connack = match session.step(Some(deadline), "CONNACK").await? {
            Some(Packet::ConnAck(ack)) => ack,
            other => return Err(unexpected(other, "CONNACK")),
        };
        if connack.reason.is_error() {
            return Err(CliError::Refused {
                reason: connack.reason,
            });
        }
        // The server may impose its own keep alive (5.0).
        let keep_alive = connack
            .properties
            .server_keep_alive
            .unwrap_or(options.keep_alive);
        session.ping_every =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 500));
        session.next_ping = session.ping_every.map(|every| Instant::now() + every);
        session.connack = connack;
        Ok(session)
    }

    /// The server's CONNACK.
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// Publishes one message and waits until its QoS flow is complete: nothing for QoS 0, PUBACK
    /// for QoS 1, PUBREC, PUBREL and PUBCOMP for QoS 2. A failure reason code is
    /// [`CliError::Rejected`].
    pub async fn publish(
        &mut self,
        topic: &TopicName,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<(), CliError> {
        if let Some(max) = self.connack.properties.maximum_qos {
            if qos > max {
                return Err(CliError::Protocol(format!(
                    "the server accepts messages up to QoS {}, not {}",
                    max.as_u8(),
                    qos.as_u8()
                )));
            }
        }
        if retain && self.connack.properties.retain_available == Some(false) {
            return Err(CliError::Protocol(
                "the server does not support retained messages".into(),
            ));
        }
        let id = (qos != QoS::AtMostOnce).then(|| self.next_id());
        let delivery = Delivery::new(qos, id).unwrap_or(Delivery::AtMostOnce);
        let publish = Publish {
            retain,
            delivery,
            ..Publish::new(topic.clone(), payload)
        };
        self.send(&Packet::Publish(publish)).await?;
        let what = || format!("PUBLISH to {topic}");
        match delivery {
            Delivery::AtMostOnce => Ok(()),
            Delivery::AtLeastOnce(id) => {
                let ack = self.wait_ack(PacketType::PubAck, id).await?;
                check(ack.reason, what)
            }
            Delivery::ExactlyOnce(id) => {
                let rec = self.wait_ack(PacketType::PubRec, id).await?;
                check(rec.reason, what)?;
                self.send(&Packet::PubRel(Ack::new(id))).await?;
                let comp = self.wait_ack(PacketType::PubComp, id).await?;
                check(comp.reason, what)
            }
        }
    }

    /// Subscribes to `filters` at `qos` and waits for SUBACK; returns the granted codes, one per
    /// filter. A refused filter is [`CliError::Rejected`].
    pub async fn subscribe(
        &mut self,
        filters: &[TopicFilter],
        qos: QoS,
    ) -> Result<Vec<ReasonCode>, CliError> {
        let packet_id = self.next_id();
        let subscribe = Subscribe {
            packet_id,
            properties: Default::default(),
            subscriptions: filters
                .iter()
                .map(|filter| Subscription {
                    filter: filter.clone(),
                    options: SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                })
                .collect(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        let deadline = self.deadline();
        let suback = loop {
            match self.step(Some(deadline), "SUBACK").await? {
                None => continue,
                Some(Packet::SubAck(ack)) if ack.packet_id == packet_id => break ack,
                other => return Err(unexpected(other, "SUBACK")),
            }
        };
        if suback.reasons.len() != filters.len() {
            return Err(CliError::Protocol(format!(
                "SUBACK has {} codes for {} filters",
                suback.reasons.len(),
                filters.len()
            )));
        }
        for (filter, &reason) in filters.iter().zip(&suback.reasons) {
            check(reason, || format!("the subscription to {filter}"))?;
        }
        Ok(suback.reasons)
    }

    /// The next message delivered, already acknowledged. Waits at most `wait` (forever without),
    /// then fails with [`CliError::Timeout`].
    pub async fn next_message(&mut self, wait: Option<Duration>) -> Result<Publish, CliError> {
        let deadline = wait.map(Deadline::after);
        loop {
            if let Some(message) = self.inbox.pop_front() {
                return Ok(message);
            }
            if let Some(other) = self.step(deadline, "a message").await? {
                return Err(unexpected(Some(other), "PUBLISH"));
            }
        }
    }

    /// Keeps the session alive (pings, acknowledgements) while the caller waits for something
    /// else; returns only on an error. Cancelling it loses nothing.
    pub async fn idle(&mut self) -> Result<Infallible, CliError> {
        loop {
            if let Some(other) = self.step(None, "").await? {
                return Err(unexpected(Some(other), "nothing"));
            }
        }
    }

    /// Waits (bounded by the timeout) until every QoS 2 delivery received has been released, so
    /// disconnecting does not leave one half done.
    pub async fn settle(&mut self) -> Result<(), CliError> {
        let deadline = self.deadline();
        while !self.awaiting_release.is_empty() {
            if let Some(other) = self.step(Some(deadline), "PUBREL").await? {
                return Err(unexpected(Some(other), "PUBREL"));
            }
        }
        Ok(())
    }

    /// Sends DISCONNECT (normal disconnection) and closes the stream.
    pub async fn disconnect(mut self) -> Result<(), CliError> {
        self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
            .await?;
        self.stream.shutdown().await.map_err(|source| CliError::Io {
            what: "closing the connection",
            source,
        })
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }

    fn next_id(&mut self) -> PacketId {
        loop {
            self.last_id = self.last_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_id) {
                return id;
            }
        }
    }

    /// Waits for the acknowledgement of type `kind` for `id`, handling anything else that comes.
    async fn wait_ack(&mut self, kind: PacketType, id: PacketId) -> Result<Ack, CliError> {
        let deadline = self.deadline();
        loop {
            match self.step(Some(deadline), kind.name()).await? {
                None => {}
                Some(packet @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_)))
                    if packet.packet_type() == kind =>
                {
                    match packet {
                        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a)
                            if a.packet_id == id =>
                        {
                            return Ok(a)
                        }
                        other => return Err(unexpected(Some(other), kind.name())),
                    }
                }
                other => return Err(unexpected(other, kind.name())),
            }
        }
    }

    /// Encodes `packet` and writes it with whatever earlier writes left behind.
    async fn send(&mut self, packet: &Packet) -> Result<(), CliError> {
        packet.encode(self.version, &mut self.tx).map_err(|e| {
            CliError::Protocol(format!("cannot encode {}: {e}", packet.packet_type()))
        })?;
        self.next_ping = self.ping_every.map(|every| Instant::now() + every);
        self.flush().await
    }

    /// Writes the output buffer out; bytes stay in it until written, so cancelling loses none.
    async fn flush(&mut self) -> Result<(), CliError> {
        let io = |source| CliError::Io {
            what: "writing to the server",
            source,
        };
        while !self.tx.is_empty() {
            let n = self.stream.write(&self.tx).await.map_err(io)?;
            if n == 0 {
                return Err(CliError::Disconnected { reason: None });
            }
            self.tx.advance(n);
        }
        self.stream.flush().await.map_err(io)
    }

    /// Reads until one packet is in, sending PINGREQ when due. Deliveries, releases and pings
    /// are handled here (`Ok(None)`); anything else is returned. `what` names the awaited
    /// packet for the timeout error.
    async fn step(
        &mut self,
        deadline: Option<Deadline>,
        what: &'static str,
    ) -> Result<Option<Packet>, CliError> {
        self.flush().await?;
        loop {
            match self.decoder.decode(&mut self.rx) {
                Ok(Decoded::Packet(packet)) => return self.handle(packet).await,
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => {
                    return Err(CliError::Protocol(format!(
                        "malformed packet from the server: {e}"
                    )))
                }
            }
            let wake = tokio::select! {
                read = self.stream.read_buf(&mut self.rx) => Wake::Read(read),
                () = sleep_until(self.next_ping) => Wake::Ping,
                () = sleep_until(deadline.map(|d| d.at)) => Wake::Deadline,
            };
            match wake {
                Wake::Read(Ok(0)) => return Err(CliError::Disconnected { reason: None }),
                Wake::Read(Ok(_)) => {}
                Wake::Read(Err(source)) => {
                    return Err(CliError::Io {
                        what: "reading from the server",
                        source,
                    })
                }
                Wake::Ping => self.ping().await?,
                Wake::Deadline => {
                    return Err(CliError::Timeout {
                        what,
                        after: deadline.map_or(self.timeout, |d| d.after),
                    })
                }
            }
        }
    }

    async fn ping(&mut self) -> Result<(), CliError> {
        if self.ping_outstanding {
            return Err(CliError::Timeout {
                what: "PINGRESP",
                after: self.ping_every.unwrap_or_default(),
            });
        }
        self.ping_outstanding = true;
        self.send(&Packet::PingReq).await
    }

    /// Housekeeping for one received packet.
    async fn handle(&mut self, packet: Packet) -> Result<Option<Packet>, CliError> {
        match packet {
            Packet::PingResp => self.ping_outstanding = false,
            Packet::Publish(publish) => match publish.delivery {
                Delivery::AtMostOnce => self.inbox.push_back(publish),
                Delivery::AtLeastOnce(id) => {
                    self.inbox.push_back(publish);
                    self.send(&Packet::PubAck(Ack::new(id))).await?;
                }
                Delivery::ExactlyOnce(id) => {
                    // A redelivery of a message already taken is not handed out twice.
                    if self.awaiting_release.insert(id.get()) {
                        self.inbox.push_back(publish);
                    }
                    self.send(&Packet::PubRec(Ack::new(id))).await?;
                }
            },
            Packet::PubRel(rel) => {
                let mut comp = Ack::new(rel.packet_id);
                if !self.awaiting_release.remove(&rel.packet_id.get()) && self.version.is_v5() {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubComp(comp)).await?;
            }
            Packet::Disconnect(d) => {
                return Err(CliError::Disconnected {
                    reason: Some(d.reason),
                })
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn check(reason: ReasonCode, what: impl FnOnce() -> String) -> Result<(), CliError> {
    if reason.is_error() {
        return Err(CliError::Rejected {
            what: what(),
            reason,
        });
    }
    Ok(())
}

fn unexpected(got: Option<Packet>, expected: &str) -> CliError {
    match got {
        Some(packet) => CliError::Protocol(format!(
            "expected {expected}, the server sent {}",
            packet.packet_type()
        )),
        None => CliError::Protocol(format!("expected {expected}")),
    }
}
