//! One bridge's life: connect to the remote, then to this broker, relay messages both ways until
//! either side fails, wait (doubling, with jitter) and start again.
//!
//! The relay forwards each QoS 1/2 message under the packet identifier its sender chose and
//! acknowledges it to the sender only when the receiver has acknowledged it. The identifiers stay
//! unique because the receiver's unacknowledged set is always a subset of the sender's, and a
//! message resent after a reconnection (DUP) keeps its identifier, so a receiver's QoS 2 state
//! recognises it: with QoS 2 and persistent sessions on both sides, a message crosses exactly once.
//!
//! While the remote is unreachable the bridge's local session is offline, so messages for it wait
//! in its session queue: durable with the RocksDB backend, bounded by `limits.max_queued_messages`
//! and `max_queued_bytes`, kept `buffer_expiry_secs`.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cicada_engine::codec::{
    Ack, Connect, ConnectProperties, Delivery, Disconnect, Packet, PacketId, ProtocolVersion,
    Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, TopicName,
};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::config::{BridgeSpec, Mapping};
use super::link::{Link, LinkError, Side, MAX_PACKET_SIZE};
use super::{LocalDialer, Status};

/// The packet identifier of the bridge's SUBSCRIBEs. Identifiers are shared with the PUBLISHes
/// the bridge forwards, whose identifiers the other side picks from 1 upwards; the top one is
/// the least likely to be in use.
const SUBSCRIBE_ID: u16 = u16::MAX;

/// How often keep alive is checked.
const TICK: Duration = Duration::from_secs(1);

/// A link that stayed up this long resets the reconnection delay.
const STABLE: Duration = Duration::from_secs(10);

/// Runs the bridge until this broker stops (its local connections are refused).
pub(super) async fn run(spec: Arc<BridgeSpec>, status: Arc<Status>, local: LocalDialer) {
    let mut delay = spec.reconnect_initial;
    loop {
        let started = Instant::now();
        let ended = session(&spec, &status, &local).await;
        status.connected.store(false, Ordering::Relaxed);
        let Err(e) = ended;
        if matches!(e, LinkError::LocalGone) {
            return;
        }
        if started.elapsed() >= STABLE {
            delay = spec.reconnect_initial;
        }
        let wait = jitter(delay);
        warn!(
            bridge = %spec.name,
            remote = %spec.config.remote,
            error = %e,
            retry_in_ms = wait.as_millis() as u64,
            "bridge down; reconnecting"
        );
        status.set_error(e.to_string());
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(spec.reconnect_max);
    }
}

/// Up to a quarter more than `delay`, so bridges that went down together do not all retry at once.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let quarter = delay.as_millis() as u64 / 4;
    delay + Duration::from_millis(u64::from(nanos) % (quarter + 1))
}

/// Removes the bridge's local session and its buffered messages: a clean-start connection with no
/// expiry, closed at once. For a bridge deleted through the admin API.
pub(super) async fn purge(spec: &BridgeSpec, local: &LocalDialer) -> Result<(), LinkError> {
    let stream = local.dial(spec).await?;
    let mut connect = local_connect(spec, spec.inflight);
    connect.clean_start = true;
    connect.properties.session_expiry_interval = Some(0);
    let (link, _) = Link::connect(Side::Local, stream, connect).await?;
    link.close(Disconnect::new(ReasonCode::Success)).await;
    Ok(())
}

fn local_connect(spec: &BridgeSpec, receive_maximum: u16) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 0,
        properties: ConnectProperties {
            session_expiry_interval: Some(spec.buffer_expiry),
            receive_maximum: NonZeroU16::new(receive_maximum),
            maximum_packet_size: NonZeroU32::new(MAX_PACKET_SIZE as u32),
            ..Default::default()
        },
        client_id: spec.local_client_id.as_str().into(),
        will: None,
        username: Some(spec.local_username.as_str().into()),
        password: None,
    }
}

/// One connection of both links; returns only with why it ended.
async fn session(
    spec: &Arc<BridgeSpec>,
    status: &Arc<Status>,
    local: &LocalDialer,
) -> Result<Infallible, LinkError> {
    let stream = cicada_transports::client::connect(&spec.target, &spec.tls).await?;
    let mut properties = ConnectProperties::default();
    if spec.version.is_v5() {
        properties.session_expiry_interval = Some(spec.remote_session_expiry);
        properties.receive_maximum = NonZeroU16::new(spec.inflight);
        properties.maximum_packet_size = NonZeroU32::new(MAX_PACKET_SIZE as u32);
    }
    let connect = Connect {
        protocol: spec.version,
        clean_start: spec.clean_start,
        keep_alive: spec.keep_alive,
        properties,
        client_id: spec.client_id.as_str().into(),
        will: None,
        username: spec.username.as_deref().map(Into::into),
        password: spec.password.clone(),
    };
    let (remote, remote_ack) = Link::connect(Side::Remote, stream, connect).await?;
    let remote_window = remote_ack
        .properties
        .receive_maximum
        .map_or(u16::MAX, NonZeroU16::get);
    let remote_qos = remote_ack
        .properties
        .maximum_qos
        .unwrap_or(QoS::ExactlyOnce);
    let remote_max_packet = remote_ack
        .properties
        .maximum_packet_size
        .map_or(usize::MAX, |n| n.get() as usize);

    let stream = local.dial(spec).await?;
    // This broker never has more unacknowledged messages towards the bridge than the remote takes.
    let connect = local_connect(spec, spec.inflight.min(remote_window));
    let (local_link, local_ack) = Link::connect(Side::Local, stream, connect).await?;
    let local_qos = local_ack.properties.maximum_qos.unwrap_or(QoS::ExactlyOnce);
    let local_window = local_ack
        .properties
        .receive_maximum
        .map_or(u16::MAX, NonZeroU16::get);

    let mut relay = Relay {
        spec: spec.clone(),
        status: status.clone(),
        local: local_link,
        remote,
        local_window: usize::from(local_window),
        remote_max_packet,
        to_local: VecDeque::new(),
        inflight_to_local: HashSet::new(),
        closed_here: HashSet::new(),
        closed_there: HashSet::new(),
    };
    if !spec.inbound.is_empty() {
        let subscribe = subscribe(&spec.inbound, |m| &m.remote, local_qos, spec.version);
        relay.remote.queue(&Packet::Subscribe(subscribe))?;
    }
    if !spec.outbound.is_empty() {
        let subscribe = subscribe(
            &spec.outbound,
            |m| &m.local,
            remote_qos,
            ProtocolVersion::V5,
        );
        relay.local.queue(&Packet::Subscribe(subscribe))?;
    }
    status.connected.store(true, Ordering::Relaxed);
    status.connects.fetch_add(1, Ordering::Relaxed);
    info!(
        bridge = %spec.name,
        remote = %spec.config.remote,
        remote_session_present = remote_ack.session_present,
        buffer_resumed = local_ack.session_present,
        "bridge connected"
    );
    let result = relay.run().await;
    let Relay { local, remote, .. } = relay;
    let reason = match &result {
        Err(LinkError::Closed { .. }) => ReasonCode::Success,
        _ => ReasonCode::UnspecifiedError,
    };
    local.close(Disconnect::new(ReasonCode::Success)).await;
    remote.close(Disconnect::new(reason)).await;
    result
}

/// A SUBSCRIBE for `mappings`' filters on one side, each at the mapping's QoS capped by what the
/// other side accepts. No Local keeps a side from handing the bridge back what the bridge
/// published there; Retain As Published keeps retained messages retained across; retained
/// messages are sent only for a subscription the session did not have.
fn subscribe(
    mappings: &[Mapping],
    filter: impl Fn(&Mapping) -> &cicada_engine::codec::TopicFilter,
    max_qos: QoS,
    version: ProtocolVersion,
) -> Subscribe {
    let v5 = version.is_v5();
    Subscribe {
        packet_id: PacketId::new(SUBSCRIBE_ID).unwrap_or(PacketId::MIN),
        properties: Default::default(),
        subscriptions: mappings
            .iter()
            .map(|m| Subscription {
                filter: filter(m).clone(),
                options: SubscriptionOptions {
                    qos: m.qos.min(max_qos),
                    no_local: v5,
                    retain_as_published: v5,
                    retain_handling: if v5 {
                        RetainHandling::SendIfNew
                    } else {
                        RetainHandling::SendAtSubscribe
                    },
                },
            })
            .collect(),
    }
}

struct Relay {
    spec: Arc<BridgeSpec>,
    status: Arc<Status>,
    local: Link,
    remote: Link,
    /// How many QoS 1/2 messages this broker takes unacknowledged from the bridge.
    local_window: usize,
    remote_max_packet: usize,
    /// Messages from the remote waiting for room in `local_window`.
    to_local: VecDeque<Publish>,
    /// Identifiers of QoS 1/2 messages forwarded here and not yet acknowledged.
    inflight_to_local: HashSet<u16>,
    /// QoS 2 messages from this broker the bridge acknowledged itself (not forwarded): their
    /// PUBREL is answered here.
    closed_here: HashSet<u16>,
    /// The same for messages from the remote.
    closed_there: HashSet<u16>,
}

impl Relay {
    async fn run(&mut self) -> Result<Infallible, LinkError> {
        let mut tick = tokio::time::interval(TICK);
        loop {
            while let Some(packet) = self.local.decode()? {
                self.on_local(packet)?;
            }
            while let Some(packet) = self.remote.decode()? {
                self.on_remote(packet)?;
            }
            self.pump()?;
            self.local.flush().await?;
            self.remote.flush().await?;
            tokio::select! {
                read = self.local.fill() => read?,
                read = self.remote.fill() => read?,
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.local.keep_alive(now)?;
                    self.remote.keep_alive(now)?;
                }
            }
        }
    }

    /// Forwards waiting messages from the remote while this broker's window has room.
    fn pump(&mut self) -> Result<(), LinkError> {
        while self.inflight_to_local.len() < self.local_window {
            let Some(publish) = self.to_local.pop_front() else {
                break;
            };
            if let Some(id) = publish.delivery.packet_id() {
                self.inflight_to_local.insert(id.get());
            }
            self.local.queue(&Packet::Publish(publish))?;
        }
        Ok(())
    }

    fn on_local(&mut self, packet: Packet) -> Result<(), LinkError> {
        match packet {
            Packet::Publish(publish) => self.outbound(publish),
            Packet::PubRel(rel) => {
                let id = rel.packet_id;
                if self.closed_here.remove(&id.get()) {
                    self.local.queue(&Packet::PubComp(Ack::new(id)))
                } else {
                    self.remote.queue(&Packet::PubRel(Ack::new(id)))
                }
            }
            // Acknowledgements of messages from the remote: pass them back.
            Packet::PubAck(ack) => {
                self.inflight_to_local.remove(&ack.packet_id.get());
                self.refused_here(&ack);
                self.remote.queue(&Packet::PubAck(relayed(&ack)))
            }
            Packet::PubRec(ack) => {
                if ack.reason.is_error() {
                    self.inflight_to_local.remove(&ack.packet_id.get());
                    self.refused_here(&ack);
                }
                self.remote.queue(&Packet::PubRec(relayed(&ack)))
            }
            Packet::PubComp(ack) => {
                self.inflight_to_local.remove(&ack.packet_id.get());
                self.remote.queue(&Packet::PubComp(relayed(&ack)))
            }
            Packet::SubAck(ack) => {
                self.check_suback(&ack, Side::Local);
                Ok(())
            }
            Packet::Disconnect(d) => Err(LinkError::Closed {
                side: Side::Local,
                reason: Some(d.reason),
            }),
            other => Err(self
                .local
                .protocol(format!("unexpected {}", other.packet_type()))),
        }
    }

    fn on_remote(&mut self, packet: Packet) -> Result<(), LinkError> {
        match packet {
            Packet::Publish(publish) => self.inbound(publish),
            Packet::PubRel(rel) => {
                let id = rel.packet_id;
                if self.closed_there.remove(&id.get()) {
                    self.remote.queue(&Packet::PubComp(Ack::new(id)))
                } else {
                    self.local.queue(&Packet::PubRel(Ack::new(id)))
                }
            }
            // Acknowledgements of messages from this broker: pass them back.
            Packet::PubAck(ack) => {
                self.refused_there(&ack);
                self.local.queue(&Packet::PubAck(relayed(&ack)))
            }
            Packet::PubRec(ack) => {
                self.refused_there(&ack);
                self.local.queue(&Packet::PubRec(relayed(&ack)))
            }
            Packet::PubComp(ack) => self.local.queue(&Packet::PubComp(relayed(&ack))),
            Packet::SubAck(ack) => {
                self.check_suback(&ack, Side::Remote);
                Ok(())
            }
            Packet::Disconnect(d) => Err(LinkError::Closed {
                side: Side::Remote,
                reason: Some(d.reason),
            }),
            other => Err(self
                .remote
                .protocol(format!("unexpected {}", other.packet_type()))),
        }
    }

    /// A message from this broker: rename it and send it to the remote.
    fn outbound(&mut self, publish: Publish) -> Result<(), LinkError> {
        let topic = self
            .spec
            .outbound
            .iter()
            .find_map(|m| m.to_remote(publish.topic.as_str()));
        let Some(topic) = topic.and_then(|t| TopicName::new(t).ok()) else {
            // A subscription left from an earlier configuration of the bridge's session.
            warn!(bridge = %self.spec.name, topic = %publish.topic, "no outbound mapping matches; message dropped");
            return self.drop_from(Side::Local, publish.delivery);
        };
        let forwarded = Publish {
            dup: publish.dup,
            delivery: publish.delivery,
            retain: publish.retain,
            topic,
            properties: carried(publish.properties, self.remote.version),
            payload: publish.payload,
        };
        let size = forwarded.payload.len() + forwarded.topic.as_str().len();
        if size >= self.remote_max_packet {
            warn!(bridge = %self.spec.name, topic = %forwarded.topic, bytes = size, "message larger than the remote's maximum packet size; dropped");
            return self.drop_from(Side::Local, forwarded.delivery);
        }
        self.status.messages_out.fetch_add(1, Ordering::Relaxed);
        self.remote.queue(&Packet::Publish(forwarded))
    }

    /// A message from the remote: rename it and queue it for this broker.
    fn inbound(&mut self, publish: Publish) -> Result<(), LinkError> {
        let topic = self
            .spec
            .inbound
            .iter()
            .find_map(|m| m.to_local(publish.topic.as_str()));
        let Some(topic) = topic.and_then(|t| TopicName::new(t).ok()) else {
            warn!(bridge = %self.spec.name, topic = %publish.topic, "no inbound mapping matches; message dropped");
            return self.drop_from(Side::Remote, publish.delivery);
        };
        self.status.messages_in.fetch_add(1, Ordering::Relaxed);
        self.to_local.push_back(Publish {
            dup: publish.dup,
            delivery: publish.delivery,
            retain: publish.retain,
            topic,
            properties: carried(publish.properties, ProtocolVersion::V5),
            payload: publish.payload,
        });
        Ok(())
    }

    /// Acknowledges a message the bridge does not forward, so its sender does not resend it.
    fn drop_from(&mut self, side: Side, delivery: Delivery) -> Result<(), LinkError> {
        self.status.dropped.fetch_add(1, Ordering::Relaxed);
        let (link, closed) = match side {
            Side::Local => (&mut self.local, &mut self.closed_here),
            Side::Remote => (&mut self.remote, &mut self.closed_there),
        };
        match delivery {
            Delivery::AtMostOnce => Ok(()),
            Delivery::AtLeastOnce(id) => link.queue(&Packet::PubAck(Ack::new(id))),
            Delivery::ExactlyOnce(id) => {
                closed.insert(id.get());
                link.queue(&Packet::PubRec(Ack::new(id)))
            }
        }
    }

    fn refused_here(&self, ack: &Ack) {
        if ack.reason.is_error() {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(bridge = %self.spec.name, reason = %ack.reason, "this broker refused a message from the remote (check the ACL rules for the bridge's user)");
        }
    }

    fn refused_there(&self, ack: &Ack) {
        if ack.reason.is_error() {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(bridge = %self.spec.name, reason = %ack.reason, "the remote refused a message");
        }
    }

    fn check_suback(&self, ack: &SubAck, side: Side) {
        let mappings = match side {
            Side::Local => &self.spec.outbound,
            Side::Remote => &self.spec.inbound,
        };
        for (mapping, reason) in mappings.iter().zip(&ack.reasons) {
            if reason.is_error() {
                let filter = match side {
                    Side::Local => &mapping.local,
                    Side::Remote => &mapping.remote,
                };
                error!(bridge = %self.spec.name, %side, filter = %filter, %reason, "the {side} broker refused the bridge's subscription; nothing is bridged for it");
            }
        }
    }
}

/// An acknowledgement passed across: its reason code, not the other side's diagnostics.
fn relayed(ack: &Ack) -> Ack {
    Ack {
        reason: ack.reason,
        ..Ack::new(ack.packet_id)
    }
}

/// The properties that cross the bridge: none to a 3.1.1 broker; no Topic Alias or Subscription
/// Identifier, which belong to one connection.
fn carried(mut properties: PublishProperties, to: ProtocolVersion) -> PublishProperties {
    if !to.is_v5() {
        return PublishProperties::default();
    }
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    properties
}
