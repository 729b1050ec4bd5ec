//! Decode and encode errors, and the one place that maps them to MQTT reason codes.

use super::property::PropertyId;
use super::reason::ReasonCode;
use super::types::PacketType;

/// Why a byte stream is not a valid MQTT packet.
///
/// Every variant names the rule broken and where, so a log line can say what the client did wrong.
/// [`DecodeError::reason_code`] gives the MQTT 5.0 reason code to close the connection with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type nibble 0, or 15 (AUTH) on an MQTT 3.x connection.
    #[error("invalid packet type {nibble} in fixed header")]
    InvalidPacketType {
        /// The high nibble of the first byte.
        nibble: u8,
    },
    /// The low nibble of the first byte is not what the spec fixes for this packet type.
    #[error("reserved flag bits {flags:#06b} set in {packet} fixed header")]
    InvalidHeaderFlags {
        /// The packet whose header was wrong.
        packet: PacketType,
        /// The flag bits received.
        flags: u8,
    },
    /// A variable byte integer (remaining length, property length, subscription identifier) longer than
    /// four bytes or not in its shortest form.
    #[error("malformed variable byte integer in {field}")]
    MalformedVarInt {
        /// Which integer.
        field: &'static str,
    },
    /// The packet is larger than the maximum packet size; detected from the fixed header alone.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge {
        /// Total packet size announced by the fixed header.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The packet ended before a field it must contain.
    #[error("{packet} ended inside {field}")]
    UnexpectedEnd {
        /// The packet being decoded.
        packet: PacketType,
        /// The field that was cut short.
        field: &'static str,
    },
    /// Bytes left over after the last field of the packet.
    #[error("{packet} has {extra} unexpected bytes after its last field")]
    TrailingBytes {
        /// The packet being decoded.
        packet: PacketType,
        /// How many bytes were left.
        extra: usize,
    },
    /// A string is not well-formed UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string field.
        field: &'static str,
    },
    /// A string contains an encoded UTF-16 surrogate (U+D800 to U+DFFF), forbidden by [MQTT-1.5.4-1].
    #[error("{field} contains a UTF-16 surrogate code point")]
    Surrogate {
        /// The string field.
        field: &'static str,
    },
    /// A string contains U+0000, forbidden by [MQTT-1.5.4-2].
    #[error("{field} contains the null character U+0000")]
    NullCharacter {
        /// The string field.
        field: &'static str,
    },
    /// CONNECT names a protocol other than `MQTT` or `MQIsdp`.
    #[error("unknown protocol name {name:?}")]
    InvalidProtocolName {
        /// The name received (lossily decoded).
        name: String,
    },
    /// CONNECT carries a protocol level this broker does not speak, or one that does not match the name.
    #[error("unsupported protocol level {level} for protocol name {name:?}")]
    UnsupportedProtocolLevel {
        /// The protocol name received.
        name: &'static str,
        /// The level byte received.
        level: u8,
    },
    /// CONNECT flags break a rule: the reserved bit, will QoS/retain without a will, or a password without a
    /// user name in MQTT 3.1.1.
    #[error("invalid CONNECT flags {flags:#010b}: {rule}")]
    InvalidConnectFlags {
        /// The flags byte received.
        flags: u8,
        /// The rule broken.
        rule: &'static str,
    },
    /// CONNACK acknowledge flags have reserved bits set.
    #[error("reserved CONNACK acknowledge flag bits set: {flags:#010b}")]
    InvalidConnAckFlags {
        /// The flags byte received.
        flags: u8,
    },
    /// A QoS field holds 3.
    #[error("QoS 3 in {field}")]
    InvalidQoS {
        /// Where the QoS was found.
        field: &'static str,
    },
    /// PUBLISH with QoS 0 has the DUP flag set, forbidden by [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// A topic name breaks the topic rules.
    #[error("invalid topic name {topic:?}: {rule}")]
    InvalidTopicName {
        /// The topic received.
        topic: String,
        /// The rule broken.
        rule: &'static str,
    },
    /// A topic filter breaks the topic filter rules.
    #[error("invalid topic filter {filter:?}: {rule}")]
    InvalidTopicFilter {
        /// The filter received.
        filter: String,
        /// The rule broken.
        rule: &'static str,
    },
    /// A packet identifier of zero where one is required.
    #[error("packet identifier 0 in {packet}")]
    ZeroPacketId {
        /// The packet carrying it.
        packet: PacketType,
    },
    /// A property identifier the spec does not define.
    #[error("unknown property identifier {id:#04x} in {packet}")]
    UnknownProperty {
        /// The identifier received.
        id: u8,
        /// The packet carrying it.
        packet: PacketType,
    },
    /// A property this packet type may not carry.
    #[error("property {id} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property.
        id: PropertyId,
        /// The packet carrying it.
        packet: PacketType,
    },
    /// A property that may appear at most once appeared again.
    #[error("property {id} appears more than once in {packet}")]
    DuplicateProperty {
        /// The property.
        id: PropertyId,
        /// The packet carrying it.
        packet: PacketType,
    },
    /// A property value outside its allowed range (a zero Receive Maximum, a Maximum QoS of 2, ...).
    #[error("invalid value for property {id} in {packet}: {rule}")]
    InvalidPropertyValue {
        /// The property.
        id: PropertyId,
        /// The packet carrying it.
        packet: PacketType,
        /// The rule broken.
        rule: &'static str,
    },
    /// A reason code the spec does not define, or does not allow in this packet.
    #[error("reason code {code:#04x} is not allowed in {packet}")]
    InvalidReasonCode {
        /// The code received.
        code: u8,
        /// The packet carrying it.
        packet: PacketType,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    #[error("{packet} carries no topic filter")]
    NoTopicFilters {
        /// The packet.
        packet: PacketType,
    },
    /// Subscription options with reserved bits set or Retain Handling 3.
    #[error("invalid subscription options {options:#010b}: {rule}")]
    InvalidSubscriptionOptions {
        /// The options byte received.
        options: u8,
        /// The rule broken.
        rule: &'static str,
    },
    /// PUBLISH has an empty topic name and no topic alias ([MQTT-3.3.2-1] / 3.3.2.3.4).
    #[error("PUBLISH has an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    /// The input ended inside a packet (only from [`super::decode_one`], which expects whole packets).
    #[error("input ends {needed} bytes short of a whole packet")]
    Truncated {
        /// At least this many bytes are missing.
        needed: usize,
    },
    /// No Local set on a shared subscription, forbidden by [MQTT-3.8.3-4].
    #[error("No Local set on shared subscription {filter:?}")]
    NoLocalOnSharedSubscription {
        /// The shared filter.
        filter: String,
    },
}

impl DecodeError {
    /// The MQTT 5.0 reason code to close the connection with (in DISCONNECT, or in CONNACK when the
    /// error is in CONNECT).
    ///
    /// Unparsable packets are 0x81 (Malformed Packet); packets that parse but break a rule are 0x82
    /// (Protocol Error), or a more specific code where the spec has one.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocolLevel { .. } | InvalidProtocolName { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            InvalidTopicName { .. } => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter { .. } => ReasonCode::TopicFilterInvalid,
            InvalidPropertyValue {
                id: PropertyId::TopicAlias,
                ..
            } => ReasonCode::TopicAliasInvalid,
            InvalidPacketType { .. }
            | DuplicateProperty { .. }
            | InvalidPropertyValue { .. }
            | PropertyNotAllowed { .. }
            | NoTopicFilters { .. }
            | EmptyTopicWithoutAlias
            | NoLocalOnSharedSubscription { .. } => ReasonCode::ProtocolError,
            InvalidHeaderFlags { .. }
            | MalformedVarInt { .. }
            | UnexpectedEnd { .. }
            | TrailingBytes { .. }
            | Truncated { .. }
            | InvalidUtf8 { .. }
            | Surrogate { .. }
            | NullCharacter { .. }
            | InvalidConnectFlags { .. }
            | InvalidConnAckFlags { .. }
            | InvalidQoS { .. }
            | DupOnQoS0
            | ZeroPacketId { .. }
            | UnknownProperty { .. }
            | InvalidReasonCode { .. }
            | InvalidSubscriptionOptions { .. } => ReasonCode::MalformedPacket,
        }
    }

    /// The MQTT 3.x CONNACK return code owed before closing, if any.
    ///
    /// MQTT 3.x answers only an unacceptable protocol level with a CONNACK (code 1, [MQTT-3.1.2-2]); any
    /// other malformed input closes the network connection without a reply. A wrong protocol name gets
    /// none either: the peer may not speak MQTT at all, and 3.1.1 lets the server just disconnect
    /// ([MQTT-3.1.2-1]), as mosquitto does.
    pub fn v3_connack_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocolLevel { .. } => {
                Some(ReasonCode::UnsupportedProtocolVersion.to_v3_connack())
            }
            _ => None,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded packet would exceed the largest remaining length MQTT can express (268,435,455 bytes).
    #[error("{packet} of {size} bytes exceeds the largest encodable remaining length")]
    TooLarge {
        /// The packet being encoded.
        packet: PacketType,
        /// Its remaining length.
        size: usize,
    },
    /// A string or binary field is longer than the 65,535 bytes its length prefix can express.
    #[error("{field} of {len} bytes does not fit a two-byte length prefix")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The packet does not exist in the connection's protocol version (AUTH before MQTT 5.0).
    #[error("{packet} does not exist in MQTT {version}")]
    NotInVersion {
        /// The packet.
        packet: PacketType,
        /// The version.
        version: super::types::ProtocolVersion,
    },
}
