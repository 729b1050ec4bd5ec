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
//! Shared subscriptions: the publishing engine picks, for each matching group, the engine by the
//! configured strategy over all members everywhere (each engine weighs as many members as it has;
//! shared groups' member counts travel with their interest), and that engine picks one of its
//! members by the same strategy. Round robin thus spreads evenly over all members; `sticky` keeps
//! to one engine, and the hashing strategies to one engine per topic or publisher. Online state of
//! other engines' members is not known: an engine whose members are all offline queues for them. Retained messages go to every engine, which keeps them in memory; only the publishing
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
use crate::config::SharedStrategy;
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
    /// How many members each other engine has in each shared group.
    groups: BTreeMap<ByteString, BTreeMap<u16, u32>>,
    /// Where each shared group's strategy left off across engines.
    turns: BTreeMap<ByteString, Turn>,
}

impl Peers {
    /// The other engines with an ordinary subscription matching `topic`.
    pub(super) fn plain_for(&self, topic: &str) -> Vec<u16> {
        let mut engines = Vec::new();
        self.plain
            .for_each_match(topic, |engine, ()| engines.push(*engine));
        engines
    }
}

/// A shared group's place in its rotation across engines.
#[derive(Debug, Default)]
struct Turn {
    /// Messages placed so far (round robin).
    next: u64,
    /// The engine chosen last (sticky).
    last: Option<u16>,
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
                stamp,
                after,
            } => {
                let mark = self.persist.mark();
                let outer = std::mem::replace(&mut self.stamp, stamp);
                // In a cluster, retained messages travel through the replicated log instead.
                if message.retain && self.config.retain_available && self.cluster.is_none() {
                    if message.payload.is_empty() {
                        self.retained.remove(message.topic.as_str());
                    } else {
                        self.retained.insert(message.clone());
                    }
                }
                if plain {
                    self.route_plain(&message);
                    self.relay_to_handed(&message);
                    self.relay_to_moved(&message, after);
                }
                for group in groups {
                    if !self.deliver_to_group(&group, &message, None) {
                        // Its last member here left while the message was on its way.
                        self.stats.messages_dropped += 1;
                        self.stats.dropped.count(DropReason::Offline);
                    }
                }
                self.stamp = outer;
                // Between nodes, the link's acknowledgement is the receipt (it waits for what
                // this wrote to be durable, see `cluster::link`).
                let receipt = receipt.filter(|_| self.cluster.is_none());
                if let Some(seq) = receipt {
                    match self.persist.gate_since(mark) {
                        Some(mine) => self.receipts.push((mine, from, seq)),
                        None => self.send_peer(from, PeerMessage::Stored { seq }),
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
                count,
                receipt,
            } => {
                self.peer_interest(from, filter, count);
                if let Some(seq) = receipt {
                    self.send_peer(from, PeerMessage::Stored { seq });
                }
            }
            PeerMessage::Handover {
                client_id,
                claim,
                session,
                receipt: _,
                applied,
            } => self.handover_arrived(client_id, claim, session, applied),
            PeerMessage::Relay {
                client_id,
                message,
                stamp,
                ..
            } => self.relay_arrived(client_id, message, stamp),
        }
    }

    pub(super) fn peer_interest(&mut self, from: u16, filter: ByteString, count: u32) {
        let peers = &mut self.peers;
        match split_shared(&filter) {
            Some((_, matched)) => {
                let matched = matched.to_string();
                let engines = peers.groups.entry(filter.clone()).or_default();
                let known = !engines.is_empty();
                if count > 0 {
                    engines.insert(from, count);
                } else {
                    engines.remove(&from);
                }
                match (known, engines.is_empty()) {
                    (false, false) => {
                        peers.shared.insert(&matched, filter, ());
                    }
                    (true, true) => {
                        peers.groups.remove(&filter);
                        peers.shared.remove(&matched, &filter);
                    }
                    _ => {}
                }
            }
            None if count > 0 => {
                peers.plain.insert(&filter, from, ());
            }
            None => {
                peers.plain.remove(&filter, &from);
            }
        }
    }

    /// The engine whose member of `group` gets `message`, following the configured strategy over
    /// every member of the group on every engine: each engine weighs as many members as it has,
    /// and then picks one of its own by the same strategy.
    pub(super) fn choose_engine(&mut self, group: &ByteString, message: &Message) -> Option<u16> {
        let me = self.me();
        let mut slots: Vec<(u16, u64)> = self
            .peers
            .groups
            .get(group)
            .map(|e| e.iter().map(|(k, v)| (*k, u64::from(*v))).collect())
            .unwrap_or_default();
        let local = self.router.shared.member_count(group) as u64;
        if local > 0 {
            slots.push((me, local));
            slots.sort_unstable();
        }
        let total: u64 = slots.iter().map(|(_, n)| n).sum();
        if total == 0 {
            self.peers.turns.remove(group);
            return None;
        }
        let turn = self.peers.turns.entry(group.clone()).or_default();
        let round_robin = |turn: &mut Turn| {
            let i = turn.next % total;
            turn.next += 1;
            i
        };
        let index = match self.config.shared_strategy {
            SharedStrategy::RoundRobin => round_robin(turn),
            SharedStrategy::Random => self.rng.below(total),
            SharedStrategy::Sticky => match turn.last.and_then(|l| slot_of(&slots, l)) {
                Some(i) => i,
                None => round_robin(turn),
            },
            SharedStrategy::HashTopic => fnv(message.topic.as_str().as_bytes()) % total,
            SharedStrategy::HashPublisher => {
                fnv(message.origin.as_deref().unwrap_or("").as_bytes()) % total
            }
        };
        let mut left = index;
        let chosen = slots.iter().find_map(|(engine, n)| {
            if left < *n {
                Some(*engine)
            } else {
                left -= n;
                None
            }
        })?;
        turn.last = Some(chosen);
        Some(chosen)
    }

    /// Routes a message published on this engine here and to the other engines that need it.
    pub(super) fn route_everywhere(&mut self, message: Arc<Message>) {
        let stamp = self.next_stamp();
        let outer = std::mem::replace(&mut self.stamp, stamp);
        self.route_plain(&message);
        let me = self.me();
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
            match self.choose_engine(&group, &message) {
                Some(chosen) if chosen == me => {
                    self.deliver_to_group(&group, &message, None);
                }
                Some(chosen) => shares.entry(chosen).or_default().groups.push(group),
                None => {}
            }
        }
        if let Some(node) = &mut self.cluster {
            for to in node.claimants(topic) {
                shares.entry(to).or_default().plain = true;
            }
        }
        if message.retain && self.config.retain_available {
            if self.cluster.is_some() {
                self.replicate_retained(message.clone());
            } else {
                for engine in self.config.shard.others() {
                    shares.entry(engine).or_default();
                }
            }
        }
        // The publisher's acknowledgement waits until every engine stored its share.
        let durable = message.qos != QoS::AtMostOnce && self.persist.enabled();
        let after = self.cluster.as_ref().map_or(0, |node| node.position());
        for (to, share) in shares {
            let receipt = durable.then(|| self.persist.await_peer());
            self.send_peer(
                to,
                PeerMessage::Publish {
                    message: message.clone(),
                    plain: share.plain,
                    groups: share.groups,
                    receipt,
                    from: me,
                    stamp,
                    after,
                },
            );
        }
        self.stamp = outer;
    }

    /// Answers the receipts whose messages are now on disk here (and, in a cluster, in the log
    /// with the session writes that queued them). Only this engine's own storage and log count
    /// (not receipts it waits for in turn), so two engines never wait on each other.
    pub(super) fn answer_receipts(&mut self) {
        let persist = &self.persist;
        let mut answers = Vec::new();
        self.receipts.retain(|&(mine, to, seq)| {
            if !persist.is_replicated(mine) {
                return true;
            }
            answers.push((to, seq));
            false
        });
        for (to, seq) in answers {
            self.send_peer(to, PeerMessage::Stored { seq });
        }
        self.confirm_links();
    }

    /// Tells the other engines which filters gained their first or lost their last subscription
    /// here. What a filter gained holds the batch being built until every other engine took it
    /// in: a SUBACK in that batch is sent only once a publish on any engine reaches the
    /// subscription. Without it, a client that got its SUBACK and then had another client
    /// publish could miss the message, when the publisher's engine handled the PUBLISH before
    /// the interest (seen under CPU load: `a_thousand_concurrent_clients` on `cicada-uring`).
    pub(super) fn announce_interest(&mut self) {
        if self.cluster.is_some() {
            return self.reconcile_interest(true);
        }
        let shard = self.config.shard;
        for (filter, count) in self.router.interest_changes() {
            for to in shard.others() {
                let receipt = (count > 0).then(|| self.persist.await_peer());
                self.events.push_back(Event::Peer {
                    to,
                    message: PeerMessage::Interest {
                        from: shard.index,
                        filter: filter.clone(),
                        count,
                        receipt,
                    },
                });
            }
        }
    }
}

/// The first slot of `engine` in `slots` (engine, weight), as a rotation index.
fn slot_of(slots: &[(u16, u64)], engine: u16) -> Option<u64> {
    let mut at = 0;
    for (e, n) in slots {
        if *e == engine {
            return Some(at);
        }
        at += n;
    }
    None
}

/// FNV-1a: a fixed hash, so hashing strategies pick the same engine in every run.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
