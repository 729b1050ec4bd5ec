//! An application message as the broker holds it between receiving and delivering it.

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{PublishProperties, QoS, TopicName, Will};
use crate::time::Instant;

/// A message's v5 properties, boxed only when there are any.
///
/// Most messages carry none, and a `PublishProperties` inline is 160 bytes: with millions of retained
/// or queued messages that would be most of their memory. Derefs to the properties (empty when none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageProperties(Option<Box<PublishProperties>>);

/// What a message without properties derefs to.
static NO_PROPERTIES: PublishProperties = PublishProperties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    topic_alias: None,
    response_topic: None,
    correlation_data: None,
    user_properties: Vec::new(),
    subscription_identifiers: Vec::new(),
    content_type: None,
};

impl From<PublishProperties> for MessageProperties {
    fn from(properties: PublishProperties) -> MessageProperties {
        if properties == NO_PROPERTIES {
            MessageProperties(None)
        } else {
            MessageProperties(Some(Box::new(properties)))
        }
    }
}

impl std::ops::Deref for MessageProperties {
    type Target = PublishProperties;

    fn deref(&self) -> &PublishProperties {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

/// A published message, shared (`Arc`) between every queue it sits in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to (aliases already resolved).
    pub topic: TopicName,
    /// The payload, a slice of the publisher's receive buffer.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Its v5 properties, without Topic Alias and Subscription Identifiers (those are per hop).
    pub properties: MessageProperties,
    /// The client that published it (for No Local), if a client did.
    pub origin: Option<ByteString>,
    /// When it stops being deliverable (v5 Message Expiry Interval).
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Whether it may no longer be delivered at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The Message Expiry Interval to forward at `now`: the received value minus the time spent here,
    /// rounded up so a message still deliverable never says 0.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// The size counted against queue limits.
    pub fn queued_size(&self) -> usize {
        self.payload.len() + self.topic.as_str().len()
    }

    /// The expiry instant for a message received at `now` with interval `seconds`.
    pub(crate) fn expiry_from(now: Instant, seconds: Option<u32>) -> Option<Instant> {
        seconds.map(|s| now + Duration::from_secs(u64::from(s)))
    }

    /// The message a will becomes when it is published at `now` for client `origin` (its will
    /// properties are the message's, but for the delay).
    pub(crate) fn from_will(will: Will, origin: ByteString, now: Instant) -> Message {
        let p = will.properties;
        Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..Default::default()
            }
            .into(),
            origin: Some(origin),
            expires_at: Message::expiry_from(now, p.message_expiry_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_boxed_only_when_there_are_any() {
        let none = MessageProperties::from(PublishProperties::default());
        assert!(none.0.is_none());
        assert_eq!(*none, PublishProperties::default());
        let some = MessageProperties::from(PublishProperties {
            message_expiry_interval: Some(5),
            ..Default::default()
        });
        assert!(some.0.is_some());
        assert_eq!(some.message_expiry_interval, Some(5));
        // What keeps millions of stored messages small: the properties cost one pointer.
        assert_eq!(std::mem::size_of::<MessageProperties>(), 8);
    }
}
