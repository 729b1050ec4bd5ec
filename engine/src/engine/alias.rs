//! Outbound topic aliases: the names we give topics towards one v5 connection.
//!
//! Policy: the first `max` distinct topics sent on a connection get aliases 1..=max, in the order they
//! are first sent; later topics go out by name. Aliases are never reassigned, so a client that caches
//! them never sees one change meaning mid-stream, and the mapping is a pure function of what was sent
//! (deterministic). `max` is the smaller of the client's Topic Alias Maximum and
//! [`crate::Config::max_outbound_topic_aliases`]. A new connection starts with none [MQTT-3.3.2-7].

use std::num::NonZeroU16;

use bytestring::ByteString;

use crate::codec::{Packet, ProtocolVersion, Publish, TopicName};
use crate::map::FixedMap;

/// The aliases assigned on one connection.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    max: u16,
    by_topic: FixedMap<ByteString, NonZeroU16>,
}

impl OutboundAliases {
    /// Aliases up to `max` (0: none).
    pub(crate) fn new(max: u16) -> OutboundAliases {
        OutboundAliases {
            max,
            by_topic: FixedMap::default(),
        }
    }

    /// Whether no alias is ever used on this connection.
    pub(crate) fn is_off(&self) -> bool {
        self.max == 0
    }

    /// How many aliases are assigned.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// `publish` as it goes to the client: by alias where one is (or can be) assigned, and within the
    /// client's Maximum Packet Size `client_max`. `None` when it does not fit even by name; the caller
    /// drops it [MQTT-3.1.2-25]. An alias is only recorded if the packet is sent.
    pub(crate) fn fit(
        &mut self,
        mut publish: Publish,
        version: ProtocolVersion,
        client_max: Option<u32>,
    ) -> Option<Packet> {
        let fits = |p: &Packet| client_max.is_none_or(|max| p.encoded_len(version) <= max as usize);
        let topic = publish.topic.as_bytestring().clone();
        let assign = match self.by_topic.get(&topic) {
            Some(alias) => {
                publish.properties.topic_alias = Some(*alias);
                publish.topic = TopicName::alias_only();
                None
            }
            None if self.by_topic.len() < usize::from(self.max) => {
                let next = u16::try_from(self.by_topic.len() + 1).ok();
                let alias = next.and_then(NonZeroU16::new)?;
                publish.properties.topic_alias = Some(alias);
                Some(alias)
            }
            None => None,
        };
        let packet = Packet::Publish(publish);
        if fits(&packet) {
            if let Some(alias) = assign {
                self.by_topic.insert(topic, alias);
            }
            return Some(packet);
        }
        // The alias property made it too large (only when newly assigned): try by name alone.
        assign?;
        let Packet::Publish(mut publish) = packet else {
            return None;
        };
        publish.properties.topic_alias = None;
        let packet = Packet::Publish(publish);
        fits(&packet).then_some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn publish(topic: &str) -> Publish {
        Publish::new(
            TopicName::new(topic.to_string()).expect("valid"),
            Bytes::new(),
        )
    }

    fn sent(packet: Option<Packet>) -> (String, Option<u16>) {
        match packet {
            Some(Packet::Publish(p)) => (
                p.topic.as_str().to_string(),
                p.properties.topic_alias.map(NonZeroU16::get),
            ),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn assigns_until_full_then_sends_names() {
        let mut a = OutboundAliases::new(2);
        let v5 = ProtocolVersion::V5;
        assert_eq!(sent(a.fit(publish("a"), v5, None)), ("a".into(), Some(1)));
        assert_eq!(sent(a.fit(publish("b"), v5, None)), ("b".into(), Some(2)));
        assert_eq!(sent(a.fit(publish("c"), v5, None)), ("c".into(), None));
        assert_eq!(sent(a.fit(publish("a"), v5, None)), ("".into(), Some(1)));
        assert_eq!(sent(a.fit(publish("b"), v5, None)), ("".into(), Some(2)));
    }

    #[test]
    fn zero_means_no_aliases() {
        let mut a = OutboundAliases::new(0);
        let got = sent(a.fit(publish("a"), ProtocolVersion::V5, None));
        assert_eq!(got, ("a".into(), None));
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn an_alias_is_dropped_rather_than_the_message_when_it_alone_breaks_the_size_limit() {
        let mut a = OutboundAliases::new(5);
        let v5 = ProtocolVersion::V5;
        let plain = Packet::Publish(publish("topic")).encoded_len(v5) as u32;
        assert_eq!(
            sent(a.fit(publish("topic"), v5, Some(plain))),
            ("topic".into(), None)
        );
        assert_eq!(a.len(), 0, "not sent with an alias, so none recorded");
        assert!(a.fit(publish("topic"), v5, Some(plain - 1)).is_none());
    }
}
