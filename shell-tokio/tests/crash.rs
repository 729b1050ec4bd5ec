//! Process-level crash test: the real `cicada` binary with RocksDB storage, killed with SIGKILL at
//! random moments while a publisher sends QoS 1 and QoS 2 messages and a persistent subscriber receives
//! them, then restarted on the same data directory, again and again. Afterwards, every message the
//! broker acknowledged (PUBACK for QoS 1, PUBREC for QoS 2) has reached the subscriber: QoS 1 at least
//! once, QoS 2 exactly once (counted as an MQTT receiver counts: a QoS 2 PUBLISH under a packet id it
//! has answered with PUBREC and not seen released is the same message again).
//!
//! The clients are the raw codec clients of `support`, so every acknowledgement is accounted for
//! exactly; the kill moments come from a seed printed at the start (set `CICADA_CRASH_SEED` to replay).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cicada_engine::codec::{
    Ack, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS, TopicFilter, TopicName,
};
use support::{connect_packet, free_port, Broker, Raw};

const ROUNDS: usize = 20;

/// What the publisher got acknowledged, by payload.
#[derive(Default)]
struct Acked {
    qos1: BTreeSet<String>,
    qos2: BTreeSet<String>,
}

/// What the subscriber received, as an MQTT receiver counts deliveries.
#[derive(Default)]
struct Received {
    deliveries: BTreeMap<String, usize>,
    /// QoS 2 packet ids answered with PUBREC whose PUBREL has not come: the client's own state,
    /// which survives the broker's crash.
    pending: BTreeSet<u16>,
}

/// A tiny deterministic generator for kill moments and QoS choices.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn subscriber_connect(version: ProtocolVersion) -> cicada_engine::codec::Connect {
    let mut c = connect_packet("crash-sub", version, 30);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

/// Receives until the connection ends or `stop` is set and nothing came for `quiet`.
fn receive(raw: &mut Raw, received: &Mutex<Received>, stop: &AtomicBool, quiet: Duration) {
    let _ = raw.stream.set_read_timeout(Some(quiet));
    loop {
        let Some(packet) = raw.recv() else {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // A read timeout while the round goes on: keep listening unless the socket is dead.
            if raw.try_send(&Packet::PingReq) {
                continue;
            }
            return;
        };
        let reply = {
            let mut r = received.lock().expect("lock");
            match packet {
                Packet::Publish(p) => {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    match p.delivery {
                        Delivery::AtMostOnce => None,
                        Delivery::AtLeastOnce(id) => {
                            *r.deliveries.entry(payload).or_default() += 1;
                            Some(Packet::PubAck(Ack::new(id)))
                        }
                        Delivery::ExactlyOnce(id) => {
                            if r.pending.insert(id.get()) {
                                *r.deliveries.entry(payload).or_default() += 1;
                            }
                            Some(Packet::PubRec(Ack::new(id)))
                        }
                    }
                }
                Packet::PubRel(a) => {
                    r.pending.remove(&a.packet_id.get());
                    Some(Packet::PubComp(Ack::new(a.packet_id)))
                }
                _ => None,
            }
        };
        if let Some(reply) = reply {
            if !raw.try_send(&reply) {
                return;
            }
        }
    }
}

/// Publishes `count` messages numbered from `first` on a fresh connection, recording what the broker
/// acknowledges, until the connection dies.
fn publish(port: u16, round: usize, first: usize, count: usize, acked: &Mutex<Acked>, seed: u64) {
    let (mut raw, ack) = Raw::session(
        port,
        connect_packet(&format!("crash-pub-{round}"), ProtocolVersion::V5, 30),
    );
    if !matches!(ack, Packet::ConnAck(_)) {
        return;
    }
    let _ = raw.stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut rng = Lcg(seed);
    let mut waiting: BTreeMap<u16, (QoS, String)> = BTreeMap::new();
    let topic = TopicName::new(format!("crash/{round}")).expect("valid");
    for n in first..first + count {
        let qos = if rng.below(2) == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let id = PacketId::new(u16::try_from(n % 60_000 + 1).expect("fits")).expect("non-zero");
        let payload = format!("m{n}");
        let mut p = Publish::new(topic.clone(), Bytes::from(payload.clone()));
        p.delivery = Delivery::new(qos, Some(id)).expect("QoS 1/2 with an id");
        if !raw.try_send(&Packet::Publish(p)) {
            return;
        }
        waiting.insert(id.get(), (qos, payload));
        // Keep a window of 20 unacknowledged, like a real client's inflight limit.
        while waiting.len() >= 20 || (n + 1 == first + count && !waiting.is_empty()) {
            let Some(packet) = raw.recv() else { return };
            match packet {
                Packet::PubAck(a) => {
                    if let Some((_, payload)) = waiting.remove(&a.packet_id.get()) {
                        acked.lock().expect("lock").qos1.insert(payload);
                    }
                }
                Packet::PubRec(a) => {
                    if let Some((_, payload)) = waiting.remove(&a.packet_id.get()) {
                        acked.lock().expect("lock").qos2.insert(payload);
                    }
                    if !raw.try_send(&Packet::PubRel(Ack::new(a.packet_id))) {
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn acknowledged_messages_survive_repeated_kill_9() {
    let seed = std::env::var("CICADA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash test seed: {seed} (replay with CICADA_CRASH_SEED={seed})");
    let mut rng = Lcg(seed);
    let port = free_port();
    let mut data_dir = std::env::temp_dir().join(format!("cicada-crash-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let received = Arc::new(Mutex::new(Received::default()));
    let started = Instant::now();

    // The subscriber's persistent session, QoS 2 so each message keeps its published QoS.
    {
        let broker = Broker::start_at(port, data_dir.clone(), &[]);
        let (mut sub, ack) = Raw::session(port, subscriber_connect(ProtocolVersion::V5));
        assert!(matches!(ack, Packet::ConnAck(_)));
        sub.send(&Packet::Subscribe(cicada_engine::codec::Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            properties: Default::default(),
            subscriptions: vec![cicada_engine::codec::Subscription {
                filter: TopicFilter::new("crash/#").expect("valid"),
                options: cicada_engine::codec::SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            }],
        }));
        assert!(matches!(sub.recv(), Some(Packet::SubAck(_))));
        data_dir = broker.kill();
    }

    let mut next = 0;
    for round in 0..ROUNDS {
        let broker = Broker::start_at(port, data_dir.clone(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        // The subscriber is online in odd rounds (deliveries race the kill) and offline in even ones
        // (messages queue in its stored session).
        let subscriber = (round % 2 == 1).then(|| {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut sub, _) = Raw::session(port, subscriber_connect(ProtocolVersion::V5));
                receive(&mut sub, &received, &stop, Duration::from_millis(200));
            })
        });
        let count = 300;
        let publisher = {
            let acked = acked.clone();
            let seed = rng.below(u64::MAX);
            let first = next;
            std::thread::spawn(move || publish(port, round, first, count, &acked, seed))
        };
        next += count;
        std::thread::sleep(Duration::from_millis(5 + rng.below(120)));
        data_dir = broker.kill();
        stop.store(true, Ordering::Relaxed);
        let _ = publisher.join();
        if let Some(s) = subscriber {
            let _ = s.join();
        }
    }

    // A last clean start: the subscriber drains everything still owed to it.
    let broker = Broker::start_at(port, data_dir, &[]);
    let stop = AtomicBool::new(true);
    let (mut sub, ack) = Raw::session(port, subscriber_connect(ProtocolVersion::V5));
    match ack {
        Packet::ConnAck(a) => assert!(a.session_present, "the subscriber's session survived"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    receive(&mut sub, &received, &stop, Duration::from_secs(2));
    drop(broker);

    let acked = acked.lock().expect("lock");
    let received = received.lock().expect("lock");
    eprintln!(
        "{ROUNDS} kills in {:.1} s: {} QoS 1 and {} QoS 2 messages acknowledged, {} distinct received",
        started.elapsed().as_secs_f64(),
        acked.qos1.len(),
        acked.qos2.len(),
        received.deliveries.len()
    );
    assert!(
        acked.qos1.len() + acked.qos2.len() > ROUNDS,
        "the rounds acknowledged too little to test anything"
    );
    let lost: Vec<&String> = acked
        .qos1
        .iter()
        .chain(&acked.qos2)
        .filter(|p| !received.deliveries.contains_key(*p))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never delivered (seed {seed}), e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<(&String, &usize)> = received
        .deliveries
        .iter()
        .filter(|(p, n)| **n > 1 && acked.qos2.contains(*p))
        .collect();
    assert!(
        twice.is_empty(),
        "QoS 2 messages delivered more than once (seed {seed}): {twice:?}"
    );
}
