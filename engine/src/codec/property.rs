//! MQTT 5.0 properties (section 2.2.2): one typed struct per packet kind.
//!
//! Each struct has a field only for the properties its packet may carry, so a property in the wrong packet
//! cannot even be represented; decoding rejects it, and duplicates, with a typed error. User properties keep
//! their order.

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::render::render_bytes;
use super::topic::TopicName;
use super::types::QoS;
use super::wire::{self, Reader, VARINT_MAX};

macro_rules! property_ids {
    ($( $name:ident = $value:literal, $text:literal; )*) => {
        /// A property identifier of MQTT 5.0 (spec table 2-4).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum PropertyId {
            $(
                #[doc = $text]
                $name = $value,
            )*
        }

        impl PropertyId {
            /// Parses a property identifier; `None` for values the spec does not define.
            pub fn from_u8(value: u8) -> Option<PropertyId> {
                match value {
                    $( $value => Some(PropertyId::$name), )*
                    _ => None,
                }
            }

            /// The spec's name of the property.
            pub fn name(self) -> &'static str {
                match self {
                    $( PropertyId::$name => $text, )*
                }
            }
        }
    };
}

property_ids! {
    PayloadFormatIndicator = 0x01, "Payload Format Indicator";
    MessageExpiryInterval = 0x02, "Message Expiry Interval";
    ContentType = 0x03, "Content Type";
    ResponseTopic = 0x08, "Response Topic";
    CorrelationData = 0x09, "Correlation Data";
    SubscriptionIdentifier = 0x0B, "Subscription Identifier";
    SessionExpiryInterval = 0x11, "Session Expiry Interval";
    AssignedClientIdentifier = 0x12, "Assigned Client Identifier";
    ServerKeepAlive = 0x13, "Server Keep Alive";
    AuthenticationMethod = 0x15, "Authentication Method";
    AuthenticationData = 0x16, "Authentication Data";
    RequestProblemInformation = 0x17, "Request Problem Information";
    WillDelayInterval = 0x18, "Will Delay Interval";
    RequestResponseInformation = 0x19, "Request Response Information";
    ResponseInformation = 0x1A, "Response Information";
    ServerReference = 0x1C, "Server Reference";
    ReasonString = 0x1F, "Reason String";
    ReceiveMaximum = 0x21, "Receive Maximum";
    TopicAliasMaximum = 0x22, "Topic Alias Maximum";
    TopicAlias = 0x23, "Topic Alias";
    MaximumQoS = 0x24, "Maximum QoS";
    RetainAvailable = 0x25, "Retain Available";
    UserProperty = 0x26, "User Property";
    MaximumPacketSize = 0x27, "Maximum Packet Size";
    WildcardSubscriptionAvailable = 0x28, "Wildcard Subscription Available";
    SubscriptionIdentifierAvailable = 0x29, "Subscription Identifier Available";
    SharedSubscriptionAvailable = 0x2A, "Shared Subscription Available";
}

impl fmt::Display for PropertyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), *self as u8)
    }
}

/// A user property: a name/value pair of UTF-8 strings, in the order the sender gave them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name.
    pub name: ByteString,
    /// The value.
    pub value: ByteString,
}

impl UserProperty {
    /// Builds a user property.
    pub fn new(name: impl Into<ByteString>, value: impl Into<ByteString>) -> UserProperty {
        UserProperty {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A subscription identifier: 1 to 268,435,455 (section 3.8.2.1.2: 0 is a protocol error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(NonZeroU32);

impl SubscriptionId {
    /// Wraps `id`; `None` for 0 or values above 268,435,455.
    pub fn new(id: u32) -> Option<SubscriptionId> {
        if id > VARINT_MAX {
            return None;
        }
        NonZeroU32::new(id).map(SubscriptionId)
    }

    /// The numeric identifier.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// The wire form of one property value type.
pub(crate) trait PropertyValue: Sized {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError>;
    fn len(&self) -> usize;
    fn write(&self, buf: &mut BytesMut);
    /// Fails if the value cannot be encoded (a string longer than 65,535 bytes).
    fn check(&self, _id: PropertyId) -> Result<(), EncodeError> {
        Ok(())
    }
    /// Appends a readable form for traces and snapshots.
    fn render(&self, out: &mut String);
}

fn invalid(r: &Reader, id: PropertyId, rule: &'static str) -> DecodeError {
    DecodeError::InvalidPropertyValue {
        id,
        packet: r.packet(),
        rule,
    }
}

impl PropertyValue for bool {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        match r.u8(id.name())? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid(r, id, "must be 0 or 1")),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u8(u8::from(*self));
    }
    fn render(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl PropertyValue for QoS {
    /// Only Maximum QoS has this type, and it may be 0 or 1 only.
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        match r.u8(id.name())? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(invalid(r, id, "must be 0 or 1")),
        }
    }
    fn len(&self) -> usize {
        1
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u8(self.as_u8());
    }
    fn render(&self, out: &mut String) {
        push_display(out, self.as_u8());
    }
}

impl PropertyValue for u16 {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        r.u16(id.name())
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(*self);
    }
    fn render(&self, out: &mut String) {
        push_display(out, self);
    }
}

impl PropertyValue for NonZeroU16 {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        let v = r.u16(id.name())?;
        NonZeroU16::new(v).ok_or_else(|| invalid(r, id, "must not be 0"))
    }
    fn len(&self) -> usize {
        2
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u16(self.get());
    }
    fn render(&self, out: &mut String) {
        push_display(out, self);
    }
}

impl PropertyValue for u32 {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        r.u32(id.name())
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u32(*self);
    }
    fn render(&self, out: &mut String) {
        push_display(out, self);
    }
}

impl PropertyValue for NonZeroU32 {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        let v = r.u32(id.name())?;
        NonZeroU32::new(v).ok_or_else(|| invalid(r, id, "must not be 0"))
    }
    fn len(&self) -> usize {
        4
    }
    fn write(&self, buf: &mut BytesMut) {
        buf.put_u32(self.get());
    }
    fn render(&self, out: &mut String) {
        push_display(out, self);
    }
}

impl PropertyValue for SubscriptionId {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        let v = r.varint(id.name())?;
        SubscriptionId::new(v).ok_or_else(|| invalid(r, id, "must not be 0"))
    }
    fn len(&self) -> usize {
        wire::varint_len(self.get())
    }
    fn write(&self, buf: &mut BytesMut) {
        wire::put_varint(buf, self.get());
    }
    fn render(&self, out: &mut String) {
        push_display(out, self.get());
    }
}

impl PropertyValue for ByteString {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        r.string(id.name())
    }
    fn len(&self) -> usize {
        wire::binary_len(self.as_bytes())
    }
    fn write(&self, buf: &mut BytesMut) {
        wire::put_binary(buf, self.as_bytes());
    }
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        wire::check_field(self.as_bytes(), id.name())
    }
    fn render(&self, out: &mut String) {
        push_display(out, format_args!("{:?}", &**self));
    }
}

impl PropertyValue for Bytes {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        r.binary(id.name())
    }
    fn len(&self) -> usize {
        wire::binary_len(self)
    }
    fn write(&self, buf: &mut BytesMut) {
        wire::put_binary(buf, self);
    }
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        wire::check_field(self, id.name())
    }
    fn render(&self, out: &mut String) {
        out.push_str(&render_bytes(self));
    }
}

impl PropertyValue for TopicName {
    /// Response Topic: a topic name, so no wildcards ([MQTT-3.3.2-14]).
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        TopicName::new(r.string(id.name())?)
    }
    fn len(&self) -> usize {
        wire::binary_len(self.as_str().as_bytes())
    }
    fn write(&self, buf: &mut BytesMut) {
        wire::put_binary(buf, self.as_str().as_bytes());
    }
    fn render(&self, out: &mut String) {
        push_display(out, format_args!("{:?}", self.as_str()));
    }
}

impl PropertyValue for UserProperty {
    fn read(r: &mut Reader, id: PropertyId) -> Result<Self, DecodeError> {
        Ok(UserProperty {
            name: r.string(id.name())?,
            value: r.string(id.name())?,
        })
    }
    fn len(&self) -> usize {
        wire::binary_len(self.name.as_bytes()) + wire::binary_len(self.value.as_bytes())
    }
    fn write(&self, buf: &mut BytesMut) {
        wire::put_binary(buf, self.name.as_bytes());
        wire::put_binary(buf, self.value.as_bytes());
    }
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        wire::check_field(self.name.as_bytes(), id.name())?;
        wire::check_field(self.value.as_bytes(), id.name())
    }
    fn render(&self, out: &mut String) {
        push_display(out, format_args!("{:?}={:?}", &*self.name, &*self.value));
    }
}

/// Where a decoded property goes: an `Option` takes one value (a second is a duplicate), a `Vec` any number.
pub(crate) trait PropertySlot {
    fn accept(&mut self, r: &mut Reader, id: PropertyId) -> Result<(), DecodeError>;
    fn wire_len(&self, id: PropertyId) -> usize;
    fn write(&self, id: PropertyId, buf: &mut BytesMut);
    fn check(&self, id: PropertyId) -> Result<(), EncodeError>;
    fn is_unset(&self) -> bool;
    fn render(&self, name: &str, out: &mut String);
}

fn render_one<T: PropertyValue>(name: &str, value: &T, out: &mut String) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(name);
    out.push('=');
    value.render(out);
}

fn push_display(out: &mut String, value: impl fmt::Display) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{value}");
}

/// Property identifiers are variable byte integers, but every defined one is below 128: one byte.
const ID_LEN: usize = 1;

impl<T: PropertyValue> PropertySlot for Option<T> {
    fn accept(&mut self, r: &mut Reader, id: PropertyId) -> Result<(), DecodeError> {
        if self.is_some() {
            return Err(DecodeError::DuplicateProperty {
                id,
                packet: r.packet(),
            });
        }
        *self = Some(T::read(r, id)?);
        Ok(())
    }
    fn wire_len(&self, _id: PropertyId) -> usize {
        self.as_ref().map_or(0, |v| ID_LEN + v.len())
    }
    fn write(&self, id: PropertyId, buf: &mut BytesMut) {
        if let Some(v) = self {
            buf.put_u8(id as u8);
            v.write(buf);
        }
    }
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        self.as_ref().map_or(Ok(()), |v| v.check(id))
    }
    fn is_unset(&self) -> bool {
        self.is_none()
    }
    fn render(&self, name: &str, out: &mut String) {
        if let Some(v) = self {
            render_one(name, v, out);
        }
    }
}

impl<T: PropertyValue> PropertySlot for Vec<T> {
    fn accept(&mut self, r: &mut Reader, id: PropertyId) -> Result<(), DecodeError> {
        self.push(T::read(r, id)?);
        Ok(())
    }
    fn wire_len(&self, _id: PropertyId) -> usize {
        self.iter().map(|v| ID_LEN + v.len()).sum()
    }
    fn write(&self, id: PropertyId, buf: &mut BytesMut) {
        for v in self {
            buf.put_u8(id as u8);
            v.write(buf);
        }
    }
    fn check(&self, id: PropertyId) -> Result<(), EncodeError> {
        self.iter().try_for_each(|v| v.check(id))
    }
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
    fn render(&self, name: &str, out: &mut String) {
        for v in self {
            render_one(name, v, out);
        }
    }
}

/// Defines a property struct and its decoding, sizing and encoding from one list of fields.
macro_rules! property_set {
    ($(#[$meta:meta])* $name:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $id:ident, )* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Reads a property length and that many bytes of properties.
            pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                let len = r.varint("property length")? as usize;
                let mut block = r.sub_reader(len, "properties")?;
                let mut out = Self::default();
                while !block.is_empty() {
                    let raw = block.varint("property identifier")?;
                    let id = u8::try_from(raw).ok().and_then(PropertyId::from_u8).ok_or(
                        DecodeError::UnknownProperty { id: raw.min(255) as u8, packet: block.packet() },
                    )?;
                    match id {
                        $( PropertyId::$id => out.$field.accept(&mut block, id)?, )*
                        #[allow(unreachable_patterns)]
                        _ => return Err(DecodeError::PropertyNotAllowed { id, packet: block.packet() }),
                    }
                }
                Ok(out)
            }

            /// The size of the properties without their length prefix.
            pub(crate) fn body_len(&self) -> usize {
                0 $( + self.$field.wire_len(PropertyId::$id) )*
            }

            /// The size of the properties including their length prefix.
            pub(crate) fn wire_len(&self) -> usize {
                let body = self.body_len();
                wire::varint_len(body as u32) + body
            }

            pub(crate) fn encode(&self, buf: &mut BytesMut) {
                wire::put_varint(buf, self.body_len() as u32);
                $( self.$field.write(PropertyId::$id, buf); )*
            }

            pub(crate) fn check(&self) -> Result<(), EncodeError> {
                $( self.$field.check(PropertyId::$id)?; )*
                Ok(())
            }

            /// A readable `name=value ...` list of the properties set, for traces and snapshots.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $( self.$field.render(stringify!($field), &mut out); )*
                out
            }

            /// Whether no property is set.
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_unset() )*
            }
        }
    };
}

property_set! {
    /// Properties of CONNECT (section 3.1.2.11).
    ConnectProperties {
        /// Seconds the session outlives the connection; absent means 0.
        session_expiry_interval: Option<u32> = SessionExpiryInterval,
        /// How many QoS 1/2 publishes the client accepts unacknowledged.
        receive_maximum: Option<NonZeroU16> = ReceiveMaximum,
        /// The largest packet the client accepts.
        maximum_packet_size: Option<NonZeroU32> = MaximumPacketSize,
        /// The highest topic alias the client accepts from the server.
        topic_alias_maximum: Option<u16> = TopicAliasMaximum,
        /// Whether the client asks for Response Information in CONNACK.
        request_response_information: Option<bool> = RequestResponseInformation,
        /// Whether reason strings and user properties may be sent on failures.
        request_problem_information: Option<bool> = RequestProblemInformation,
        /// The extended authentication method.
        authentication_method: Option<ByteString> = AuthenticationMethod,
        /// Authentication data of the method.
        authentication_data: Option<Bytes> = AuthenticationData,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of the will message in a CONNECT payload (section 3.1.3.2).
    WillProperties {
        /// Seconds to wait after the connection ends before publishing the will.
        will_delay_interval: Option<u32> = WillDelayInterval,
        /// Whether the payload is UTF-8 text.
        payload_format_indicator: Option<bool> = PayloadFormatIndicator,
        /// Lifetime of the will message in seconds.
        message_expiry_interval: Option<u32> = MessageExpiryInterval,
        /// MIME type of the payload.
        content_type: Option<ByteString> = ContentType,
        /// Topic for a response.
        response_topic: Option<TopicName> = ResponseTopic,
        /// Correlation data for a response.
        correlation_data: Option<Bytes> = CorrelationData,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of CONNACK (section 3.2.2.3).
    ConnAckProperties {
        /// The session expiry the server uses, if it differs from the client's.
        session_expiry_interval: Option<u32> = SessionExpiryInterval,
        /// How many QoS 1/2 publishes the server accepts unacknowledged.
        receive_maximum: Option<NonZeroU16> = ReceiveMaximum,
        /// The highest QoS the server supports (0 or 1; absent means 2).
        maximum_qos: Option<QoS> = MaximumQoS,
        /// Whether retained messages are supported.
        retain_available: Option<bool> = RetainAvailable,
        /// The largest packet the server accepts.
        maximum_packet_size: Option<NonZeroU32> = MaximumPacketSize,
        /// The client identifier the server assigned.
        assigned_client_identifier: Option<ByteString> = AssignedClientIdentifier,
        /// The highest topic alias the server accepts.
        topic_alias_maximum: Option<u16> = TopicAliasMaximum,
        /// Human-readable diagnostics.
        reason_string: Option<ByteString> = ReasonString,
        /// Whether wildcard subscriptions are supported.
        wildcard_subscription_available: Option<bool> = WildcardSubscriptionAvailable,
        /// Whether subscription identifiers are supported.
        subscription_identifiers_available: Option<bool> = SubscriptionIdentifierAvailable,
        /// Whether shared subscriptions are supported.
        shared_subscription_available: Option<bool> = SharedSubscriptionAvailable,
        /// The keep alive the server imposes.
        server_keep_alive: Option<u16> = ServerKeepAlive,
        /// Basis for response topics.
        response_information: Option<ByteString> = ResponseInformation,
        /// Another server to use.
        server_reference: Option<ByteString> = ServerReference,
        /// The extended authentication method.
        authentication_method: Option<ByteString> = AuthenticationMethod,
        /// Authentication data of the method.
        authentication_data: Option<Bytes> = AuthenticationData,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of PUBLISH (section 3.3.2.3).
    PublishProperties {
        /// Whether the payload is UTF-8 text.
        payload_format_indicator: Option<bool> = PayloadFormatIndicator,
        /// Lifetime of the message in seconds.
        message_expiry_interval: Option<u32> = MessageExpiryInterval,
        /// Alias standing for the topic name.
        topic_alias: Option<NonZeroU16> = TopicAlias,
        /// Topic for a response.
        response_topic: Option<TopicName> = ResponseTopic,
        /// Correlation data for a response.
        correlation_data: Option<Bytes> = CorrelationData,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
        /// Identifiers of every matching subscription (server to client only).
        subscription_identifiers: Vec<SubscriptionId> = SubscriptionIdentifier,
        /// MIME type of the payload.
        content_type: Option<ByteString> = ContentType,
    }
}

property_set! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: diagnostics only.
    AckProperties {
        /// Human-readable diagnostics.
        reason_string: Option<ByteString> = ReasonString,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of SUBSCRIBE (section 3.8.2.1).
    SubscribeProperties {
        /// Identifier attached to messages delivered through these subscriptions.
        subscription_identifier: Option<SubscriptionId> = SubscriptionIdentifier,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of UNSUBSCRIBE (section 3.10.2.1).
    UnsubscribeProperties {
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of DISCONNECT (section 3.14.2.2).
    DisconnectProperties {
        /// New session expiry (client to server only).
        session_expiry_interval: Option<u32> = SessionExpiryInterval,
        /// Human-readable diagnostics.
        reason_string: Option<ByteString> = ReasonString,
        /// Another server to use.
        server_reference: Option<ByteString> = ServerReference,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}

property_set! {
    /// Properties of AUTH (section 3.15.2.2).
    AuthProperties {
        /// The extended authentication method.
        authentication_method: Option<ByteString> = AuthenticationMethod,
        /// Authentication data of the method.
        authentication_data: Option<Bytes> = AuthenticationData,
        /// Human-readable diagnostics.
        reason_string: Option<ByteString> = ReasonString,
        /// User properties, in order.
        user_properties: Vec<UserProperty> = UserProperty,
    }
}
