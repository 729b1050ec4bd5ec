//! The other engines of this node (see [`crate::Shard`]): which filters their clients subscribe to,
//! forwarding publishes to the engines that need them, and taking theirs.
//!
//! Consistency: every engine learns every other engine's filters through [`PeerMessage::Interest`],
//! sent when a filter gains its first or loses its last local subscription. The shell carries peer
//! messages in order and without loss, so each engine's view of the others is exact up to the messages
//! in transit: a subscription made on one engine reaches publishes made on another once its interest
//! has arrived there (microseconds in one process). A publish is forwarded only to engines with a
//! matching filter, once per engine whatever the number of subscribers there.
//!
//! Shared subscriptions: the publishing engine picks, for each matching group, one engine among those
//! with members (its seeded generator decides), and that engine picks the member by the configured
//! strategy. Retained messages go to every engine, which keeps them in memory; only the publishing
//! engine stores them.
//!
//! Durability: a QoS 1/2 message forwarded to another engine may be stored there (a persistent
//! session's queue). The publishing engine's acknowledgement (PUBACK/PUBREC) waits until every engine
//! it forwarded to has answered [`PeerMessage::Stored`], sent once that engine's own batch holding
//! the message is durable, so a crash never loses what a publisher was told was received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{split_shared, QoS};
use crate::io::{DropReason, Event, PeerMessage};
use crate::message::Message;
use crate::router::TopicTrie;

use super::Engine;

/// What this engine knows of the other engines' subscriptions.
#[derive(Debug, Default)]
pub(super) struct Peers {
    /// Ordinary filters, keyed by the engine subscribing to them.
    plain: TopicTrie<u16, ()>,
    /// Shared groups' filters (the part after `$share/{group}/`), keyed by the whole filter.
    shared: TopicTrie<ByteString, ()>,
    /// Engines with members in each shared group.
    groups: BTreeMap<ByteString, BTreeSet<u16>>,
}

/// What one peer engine gets of a publish.
#[derive(Default)]
struct Share {
    plain: bool,
    groups: Vec<ByteString>,
}

impl Engine {
    /// Handles a message from another engine.
    pub(super) fn peer_message(&mut self, message: PeerMessage) {
        match message {
            PeerMessage::Publish {
                message,
                plain,
                groups,
                receipt,
                from,
            } => {
                let mark = self.persist.mark();
                if message.retain && self.config.retain_available {
                    if message.payload.is_empty() {
                        self.retained.remove(message.topic.as_str());
                    } else {
                        self.retained.insert(message.clone());
                    }
                }
                if plain {
                    self.route_plain(&message);
                }
                for group in groups {
                    if !self.deliver_to_group(&group, &message, None) {
                        // Its last member here left while the message was on its way.
                        self.stats.messages_dropped += 1;
                        self.stats.dropped.count(DropReason::Offline);
                    }
                }
                if let Some(seq) = receipt {
                    match self.persist.gate_since(mark) {
                        Some(mine) => self.receipts.push((mine, from, seq)),
                        None => self.events.push_back(Event::Peer {
                            to: from,
                            message: PeerMessage::Stored { seq },
                        }),
                    }
                }
            }
            PeerMessage::Stored { seq } => {
                self.persist.peer_stored(seq);
                self.release_held();
            }
            PeerMessage::Interest {
                from,
                filter,
                present,
            } => self.peer_interest(from, filter, present),
        }
    }

    fn peer_interest(&mut self, from: u16, filter: ByteString, present: bool) {
        let peers = &mut self.peers;
        match split_shared(&filter) {
            Some((_, matched)) => {
                let matched = matched.to_string();
                if present {
                    let engines = peers.groups.entry(filter.clone()).or_default();
                    if engines.is_empty() {
                        peers.shared.insert(&matched, filter.clone(), ());
                    }
                    engines.insert(from);
                } else if let Some(engines) = peers.groups.get_mut(&filter) {
                    engines.remove(&from);
                    if engines.is_empty() {
                        peers.groups.remove(&filter);
                        peers.shared.remove(&matched, &filter);
                    }
                }
            }
            None if present => {
                peers.plain.insert(&filter, from, ());
            }
            None => {
                peers.plain.remove(&filter, &from);
            }
        }
    }

    /// Routes a message published on this engine here and to the other engines that need it.
    pub(super) fn route_everywhere(&mut self, message: Arc<Message>) {
        self.route_plain(&message);
        let me = self.config.shard.index;
        let topic = message.topic.as_str();
        let mut shares: BTreeMap<u16, Share> = BTreeMap::new();
        self.peers.plain.for_each_match(topic, |engine, ()| {
            shares.entry(*engine).or_default().plain = true;
        });
        let mut groups: BTreeSet<ByteString> =
            self.router.shared.matching(topic).into_iter().collect();
        self.peers.shared.for_each_match(topic, |group, ()| {
            groups.insert(group.clone());
        });
        for group in groups {
            let mut engines: Vec<u16> = self
                .peers
                .groups
                .get(&group)
                .map(|e| e.iter().copied().collect())
                .unwrap_or_default();
            if self.router.shared.has_members(&group) {
                engines.push(me);
            }
            if engines.is_empty() {
                continue;
            }
            let pick = self.rng.below(engines.len() as u64);
            let Some(&chosen) = usize::try_from(pick).ok().and_then(|i| engines.get(i)) else {
                continue;
            };
            if chosen == me {
                self.deliver_to_group(&group, &message, None);
            } else {
                shares.entry(chosen).or_default().groups.push(group);
            }
        }
        if message.retain && self.config.retain_available {
            for engine in self.config.shard.others() {
                shares.entry(engine).or_default();
            }
        }
        // The publisher's acknowledgement waits until every engine stored its share.
        let durable = message.qos != QoS::AtMostOnce && self.persist.enabled();
        for (to, share) in shares {
            let receipt = durable.then(|| self.persist.await_peer());
            self.events.push_back(Event::Peer {
                to,
                message: PeerMessage::Publish {
                    message: message.clone(),
                    plain: share.plain,
                    groups: share.groups,
                    receipt,
                    from: me,
                },
            });
        }
    }

    /// Answers the receipts whose messages are now on disk here. Only this engine's own storage
    /// counts (not receipts it waits for in turn), so two engines never wait on each other.
    pub(super) fn answer_receipts(&mut self) {
        let persist = &self.persist;
        let events = &mut self.events;
        self.receipts.retain(|&(mine, to, seq)| {
            if !persist.is_stored(mine) {
                return true;
            }
            events.push_back(Event::Peer {
                to,
                message: PeerMessage::Stored { seq },
            });
            false
        });
    }

    /// Tells the other engines which filters gained their first or lost their last subscription here.
    pub(super) fn announce_interest(&mut self) {
        let shard = self.config.shard;
        for (filter, present) in self.router.interest_changes() {
            for to in shard.others() {
                self.events.push_back(Event::Peer {
                    to,
                    message: PeerMessage::Interest {
                        from: shard.index,
                        filter: filter.clone(),
                        present,
                    },
                });
            }
        }
    }
}
