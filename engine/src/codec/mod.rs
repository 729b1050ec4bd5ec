//! The MQTT wire format: every packet of MQTT 3.1, 3.1.1 and 5.0, decoded incrementally and strictly, and
//! encoded in the shortest form.
//!
//! - [`Decoder`] cuts packets out of a receive buffer, refusing oversized ones from the fixed header alone.
//! - [`Packet::encode`] appends a packet to a `BytesMut`; [`Packet::encoded_len`] sizes it first.
//! - [`DecodeError::reason_code`] is the one place where a decoding failure becomes a reason code.
//!
//! Payloads and strings are slices of the receive buffer (`Bytes`, `ByteString`): nothing is copied between
//! decoding a PUBLISH and encoding it again for a subscriber.

mod decode;
mod encode;
mod error;
mod framer;
mod packet;
mod property;
mod reason;
mod render;
mod topic;
mod types;
mod wire;

pub use bytestring::ByteString;
pub(crate) use decode::subscription_options;
pub(crate) use encode::options_byte;
pub use error::{DecodeError, EncodeError};
pub use framer::{
    decode_one, decode_shared, peek_client_id, Decoded, Decoder, FrameHeader, Peek, MAX_PACKET_SIZE,
};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Delivery, Disconnect, Packet, Publish, RetainHandling, SubAck,
    Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use property::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PropertyId, PublishProperties, SubscribeProperties, SubscriptionId, UnsubscribeProperties,
    UserProperty, WillProperties,
};
pub use reason::ReasonCode;
pub use render::render_bytes;
pub(crate) use topic::split_shared;
pub use topic::{TopicFilter, TopicName, SHARED_PREFIX};
pub use types::{PacketId, PacketType, ProtocolVersion, QoS};
