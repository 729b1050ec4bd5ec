//! A replicated state of a chosen size, and the work a node does on the whole of it at once: take a
//! snapshot, install one, declare a node down. These run on the engine's thread, so their cost is
//! a pause of every client of the node; `engine/benches/cluster_state.rs` measures them (built
//! with the `sim` feature, like the other harnesses).

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use super::replica::Replicas;
use super::table::Table;
use super::wire::{Command, State, WireError};
use crate::codec::{
    ProtocolVersion, QoS, RetainHandling, SubscriptionOptions, TopicName, Will, WillProperties,
};
use crate::io::{OutboundState, StoreOp};
use crate::message::Message;
use crate::time::Instant;

/// The size of a [`Sample`].
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Nodes owning the clients, numbered from 1; client `i` is node `1 + i % nodes`'s.
    pub nodes: u16,
    /// Clients in the registry.
    pub clients: usize,
    /// Every `persistent_every`-th client has a persistent session (copied on every node); the
    /// others' sessions end with their connection, and their wills are in the table.
    pub persistent_every: usize,
    /// Subscriptions of each persistent session (each one also counted in its node's interest).
    pub subscriptions: usize,
    /// QoS 1 messages queued in each persistent session.
    pub queued: usize,
    /// Payload bytes of each queued, retained and will message.
    pub payload: usize,
    /// Retained messages.
    pub retained: usize,
}

/// A replicated state as every node builds it from the log: the table, the session copies and
/// the retained messages.
#[derive(Debug)]
pub struct Sample {
    table: Table,
    replicas: Replicas,
    retained: Vec<Arc<Message>>,
}

/// A topic from parts the sample generates (always valid).
fn topic(name: String) -> TopicName {
    TopicName::new(name).expect("generated topics are valid")
}

fn message(name: String, payload: &Bytes, qos: QoS, retain: bool) -> Arc<Message> {
    Arc::new(Message {
        topic: topic(name),
        payload: payload.clone(),
        qos,
        retain,
        properties: Default::default(),
        origin: None,
        expires_at: None,
    })
}

impl Sample {
    /// Builds the state of `shape` through the same commands and session writes the log carries.
    pub fn new(shape: &Shape) -> Sample {
        let mut table = Table::default();
        let mut replicas = Replicas::default();
        let payload = Bytes::from(vec![b'x'; shape.payload]);
        let nodes = shape.nodes.max(1);
        for node in 1..=nodes {
            table.apply(
                0,
                &Command::Start {
                    node,
                    incarnation: 1,
                },
            );
        }
        let mut version = 0;
        for i in 0..shape.clients {
            let client_id = ByteString::from(format!("dev-{i:08}"));
            let node = 1 + (i % usize::from(nodes)) as u16;
            let persistent = i % shape.persistent_every.max(1) == 0;
            let will = (!persistent).then(|| {
                Box::new(Will {
                    topic: topic(format!("dev/{i}/status")),
                    payload: payload.clone(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: WillProperties::default(),
                })
            });
            table.apply(
                0,
                &Command::Claim {
                    client_id: client_id.clone(),
                    node,
                    incarnation: 1,
                    token: i as u64 + 1,
                    will,
                },
            );
            if !persistent {
                continue;
            }
            replicas.apply(
                node,
                &StoreOp::PutSession {
                    client_id: client_id.clone(),
                    protocol: ProtocolVersion::V5,
                    expiry_interval: u32::MAX,
                    offline_since: None,
                    will: None,
                },
            );
            for s in 0..shape.subscriptions {
                let filter = ByteString::from(format!("site/{i}/feed/{s}/#"));
                version += 1;
                table.apply(
                    0,
                    &Command::Interest {
                        node,
                        incarnation: 1,
                        version,
                        filter: filter.clone(),
                        count: 1,
                    },
                );
                let options = SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendAtSubscribe,
                };
                let client_id = client_id.clone();
                let op = StoreOp::PutSubscription {
                    client_id,
                    filter,
                    options,
                    id: None,
                };
                replicas.apply(node, &op);
            }
            for seq in 0..shape.queued as u64 {
                let name = format!("site/{i}/feed/0/{seq}");
                let op = StoreOp::PutMessage {
                    client_id: client_id.clone(),
                    seq,
                    qos: QoS::AtLeastOnce,
                    state: OutboundState::Queued,
                    retain: false,
                    sub_ids: Vec::new(),
                    message: message(name, &payload, QoS::AtLeastOnce, false),
                    stamp: Some(crate::Stamp {
                        node,
                        incarnation: 1,
                        seq,
                    }),
                };
                replicas.apply(node, &op);
            }
        }
        let retained = (0..shape.retained)
            .map(|r| message(format!("status/{r}"), &payload, QoS::AtMostOnce, true))
            .collect();
        Sample {
            table,
            replicas,
            retained,
        }
    }

    /// The persistent sessions copied.
    pub fn copies(&self) -> usize {
        self.replicas.len()
    }

    /// Takes a snapshot, as a node does every `snapshot_entries` entries.
    pub fn snapshot(&self, now: Instant) -> Bytes {
        State::encode(&self.table, &self.replicas, &self.retained, now)
    }

    /// Installs a snapshot's data, as a node that fell behind the log does.
    pub fn install(data: Bytes, now: Instant) -> Result<Sample, WireError> {
        let state = State::decode(data, now)?;
        Ok(Sample {
            table: state.table,
            replicas: Replicas::restore(state.copies),
            retained: state.retained,
        })
    }

    /// Applies the `Down` of `node` (adopted by `adopter`), as every node does when the log
    /// declares it down. Returns (sessions the adopter takes from their copies, wills it
    /// publishes).
    pub fn declare_down(&mut self, node: u16, adopter: u16) -> (usize, usize) {
        self.table.apply(
            0,
            &Command::Down {
                node,
                incarnation: 1,
                adopter,
            },
        );
        let replicas = &self.replicas;
        let adoption = self.table.adopt(0, node, adopter, |c| replicas.has(c));
        (adoption.moved.len(), adoption.wills.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        nodes: 3,
        clients: 30,
        persistent_every: 3,
        subscriptions: 2,
        queued: 2,
        payload: 8,
        retained: 5,
    };

    #[test]
    fn a_snapshot_of_the_sample_installs_to_the_same_state() {
        let now = Instant::from_duration(std::time::Duration::from_secs(10));
        let sample = Sample::new(&SHAPE);
        assert_eq!(sample.copies(), 10);
        let data = sample.snapshot(now);
        let installed = Sample::install(data.clone(), now).expect("decodes");
        assert_eq!(installed.copies(), 10);
        assert_eq!(installed.retained.len(), 5);
        assert_eq!(installed.table.owners.len(), 30);
        assert_eq!(installed.snapshot(now), data);
    }

    #[test]
    fn a_node_declared_down_hands_its_copies_to_the_adopter_and_its_wills_out() {
        let mut sample = Sample::new(&SHAPE);
        // Node 1 owns clients 0, 3, 6, …: all persistent (every third client is).
        assert_eq!(sample.declare_down(1, 2), (10, 0));
        // Node 2 owns 1, 4, 7, …: clean, with wills; after adopting node 1's, it owns 20.
        assert_eq!(sample.declare_down(2, 3), (10, 10));
        assert!(sample.table.owners.values().all(|&n| n == 3));
        assert_eq!(sample.table.owners.len(), 20);
        assert!(sample
            .table
            .claims
            .keys()
            .all(|(c, _)| sample.table.owners.contains_key(c)));
    }
}
