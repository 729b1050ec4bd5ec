//! Helpers shared by the property tests in `tests/`: counting exercised cases, building packets, and
//! failure messages that end with the simulation transcript.

use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::Unstructured;
use cicada_engine::codec::{
    Connect, Packet, PacketId, ProtocolVersion, QoS, Subscribe, Subscription, SubscriptionOptions,
    TopicFilter, TopicName,
};
use cicada_engine::sim::Sim;

/// The longest action script, in bytes (an action takes one to a few dozen).
pub const SCRIPT_LEN: usize = 1024;

/// Action scripts for the bolero properties: long enough for deep interleavings (bolero's default
/// byte slices are at most 64 bytes: a handful of actions).
pub fn scripts() -> impl bolero::ValueGenerator<Output = Vec<u8>> {
    bolero::produce::<Vec<u8>>()
        .with()
        .len(16usize..=SCRIPT_LEN)
}

/// Counts the inputs a property actually exercised, so a generator that always fails cannot make a
/// property pass vacuously.
#[derive(Debug, Default)]
pub struct Cases(AtomicUsize);

impl Cases {
    /// No case counted yet.
    pub fn new() -> Cases {
        Cases::default()
    }

    /// Counts one case if it `exercised` the property.
    pub fn record(&self, exercised: bool) {
        if exercised {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Cases counted so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Panics unless some case exercised `what`.
    pub fn assert_some(&self, what: &str) {
        assert!(self.count() > 0, "{what}: no input was exercised");
    }
}

/// A packet identifier the caller knows is non-zero.
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("packet ids used here are non-zero")
}

/// A topic name the caller knows is valid.
pub fn topic_name(topic: &str) -> TopicName {
    TopicName::new(topic.to_string()).expect("the topic names used here are valid")
}

/// A topic filter the caller knows is valid.
pub fn topic_filter(filter: &str) -> TopicFilter {
    TopicFilter::new(filter.to_string()).expect("the topic filters used here are valid")
}

/// The end of the transcript, for failure messages (whole transcripts can be very long).
pub fn transcript_tail(sim: &Sim) -> &str {
    const KEEP: usize = 8000;
    let t = sim.transcript();
    let mut start = t.len().saturating_sub(KEEP);
    while !t.is_char_boundary(start) {
        start += 1;
    }
    &t[start..]
}

/// Panics with the broken invariant and the end of the transcript.
pub fn assert_invariants(sim: &Sim, after: &str) {
    if let Err(e) = sim.engine.check_invariants() {
        panic!(
            "engine invariant broken after {after}: {e}\n--- transcript (tail) ---\n{}",
            transcript_tail(sim)
        );
    }
}

/// QoS 0, 1 or 2.
pub fn qos_from(u: &mut Unstructured<'_>) -> arbitrary::Result<QoS> {
    Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
}

/// MQTT 3.1.1 or 5.0.
pub fn version_from(u: &mut Unstructured<'_>) -> arbitrary::Result<ProtocolVersion> {
    Ok(if u.arbitrary()? {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    })
}

/// A CONNECT that creates or resumes a persistent session (v5: `expiry`; 3.1.1: clean session 0), keep
/// alive off.
pub fn persistent_connect(name: &str, version: ProtocolVersion, expiry: u32) -> Connect {
    let mut c = Sim::connect_packet(name, version);
    c.clean_start = false;
    c.keep_alive = 0;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// A SUBSCRIBE from `name` (next packet id) to `filter` at `qos`.
pub fn subscribe_packet(sim: &mut Sim, name: &str, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: sim.next_packet_id(name),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: topic_filter(filter),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
    })
}
