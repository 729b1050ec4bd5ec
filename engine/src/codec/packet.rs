//! The control packets of MQTT 3.1, 3.1.1 and 5.0 as one set of types.
//!
//! One model serves every protocol version so the engine can route between 3.x and 5.0 clients without
//! translating: 3.x packets simply have empty properties and reason codes from the 3.x subset.

use bytes::Bytes;
use bytestring::ByteString;

use super::property::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use super::reason::ReasonCode;
use super::topic::{TopicFilter, TopicName};
use super::types::{PacketId, PacketType, ProtocolVersion, QoS};

/// Any MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(Ack),
    /// PUBREC.
    PubRec(Ack),
    /// PUBREL.
    PubRel(Ack),
    /// PUBCOMP.
    PubComp(Ack),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5.0 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT: the first packet of every connection (section 3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version, from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// CONNECT properties (5.0).
    pub properties: ConnectProperties,
    /// The client identifier; may be empty.
    pub client_id: ByteString,
    /// The will message, if any.
    pub will: Option<Will>,
    /// The user name, if the flag is set.
    pub username: Option<ByteString>,
    /// The password, if the flag is set (binary data).
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT, published if the connection ends badly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Where to publish it.
    pub topic: TopicName,
    /// What to publish.
    pub payload: Bytes,
    /// At which QoS.
    pub qos: QoS,
    /// Whether to retain it.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: WillProperties,
}

/// CONNACK: the server's answer to CONNECT (section 3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session (3.1.1 and 5.0).
    pub session_present: bool,
    /// The outcome; in 3.x folded into a return code by [`ReasonCode::to_v3_connack`].
    pub reason: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: ConnAckProperties,
}

/// The QoS of a PUBLISH with the packet identifier only QoS 1 and 2 carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// QoS 0, no packet identifier.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl Delivery {
    /// Builds the delivery for `qos`; the packet identifier is ignored for QoS 0 and required otherwise.
    pub fn new(qos: QoS, packet_id: Option<PacketId>) -> Option<Delivery> {
        match (qos, packet_id) {
            (QoS::AtMostOnce, _) => Some(Delivery::AtMostOnce),
            (QoS::AtLeastOnce, Some(id)) => Some(Delivery::AtLeastOnce(id)),
            (QoS::ExactlyOnce, Some(id)) => Some(Delivery::ExactlyOnce(id)),
            _ => None,
        }
    }

    /// The QoS.
    pub fn qos(self) -> QoS {
        match self {
            Delivery::AtMostOnce => QoS::AtMostOnce,
            Delivery::AtLeastOnce(_) => QoS::AtLeastOnce,
            Delivery::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, for QoS 1 and 2.
    pub fn packet_id(self) -> Option<PacketId> {
        match self {
            Delivery::AtMostOnce => None,
            Delivery::AtLeastOnce(id) | Delivery::ExactlyOnce(id) => Some(id),
        }
    }
}

/// PUBLISH: an application message (section 3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Redelivery of an earlier attempt; always false at QoS 0 (the encoder never sets it there).
    pub dup: bool,
    /// QoS and packet identifier.
    pub delivery: Delivery,
    /// The retain flag.
    pub retain: bool,
    /// The topic; empty only when a 5.0 Topic Alias stands for it.
    pub topic: TopicName,
    /// PUBLISH properties (5.0).
    pub properties: PublishProperties,
    /// The application payload, shared with the receive buffer.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            delivery: Delivery::AtMostOnce,
            retain: false,
            topic,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    /// The QoS of the message.
    pub fn qos(&self) -> QoS {
        self.delivery.qos()
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: one step of a QoS 1/2 flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The identifier of the PUBLISH this step belongs to.
    pub packet_id: PacketId,
    /// The outcome (always Success in 3.x).
    pub reason: ReasonCode,
    /// Diagnostics (5.0).
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgment of `packet_id`.
    pub fn new(packet_id: PacketId) -> Ack {
        Ack {
            packet_id,
            reason: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

/// What to do with retained messages when a subscription is made (5.0 Retain Handling option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist yet.
    SendIfNew = 1,
    /// Never send them on subscribe.
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE entry; 3.x uses only `qos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS of deliveries.
    pub qos: QoS,
    /// Do not deliver the subscriber's own publishes (5.0).
    pub no_local: bool,
    /// Keep the retain flag as published instead of clearing it (5.0).
    pub retain_as_published: bool,
    /// Retained message behaviour at subscribe time (5.0).
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE and its options.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// The options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (section 3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The identifier SUBACK echoes.
    pub packet_id: PacketId,
    /// SUBSCRIBE properties (5.0).
    pub properties: SubscribeProperties,
    /// At least one filter.
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK (section 3.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Diagnostics (5.0).
    pub properties: AckProperties,
    /// One code per filter, in order.
    pub reasons: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (section 3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The identifier UNSUBACK echoes.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties (5.0).
    pub properties: UnsubscribeProperties,
    /// At least one filter.
    pub filters: Vec<TopicFilter>,
}

/// UNSUBACK (section 3.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// The identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Diagnostics (5.0).
    pub properties: AckProperties,
    /// One code per filter in 5.0; always empty in 3.x, which has no payload.
    pub reasons: Vec<ReasonCode>,
}

/// DISCONNECT (section 3.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Why (5.0); Success is Normal disconnection.
    pub reason: ReasonCode,
    /// DISCONNECT properties (5.0).
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }
}

/// AUTH (section 3.15, 5.0 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// AUTH properties.
    pub properties: AuthProperties,
}
