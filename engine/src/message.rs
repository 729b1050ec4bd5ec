//! An application message as the broker holds it between receiving and delivering it.

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{PublishProperties, QoS, TopicName};
use crate::time::Instant;

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
    pub properties: PublishProperties,
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
}
