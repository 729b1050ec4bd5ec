//! Fan-out through the real `Engine`: one PUBLISH from one client delivered to N subscribers.
//!
//! N = 1, 100, 1000 clients (MQTT 5.0) are connected and subscribed to `bench/+/x` by feeding the engine
//! encoded CONNECT and SUBSCRIBE packets as `Input::Received` bytes. One iteration is one 64-byte PUBLISH
//! to `bench/7/x` fed as bytes, then every output drained as a shell would: each transmit is reported
//! `Input::Flushed` at once (the send window never closes), and with `durable` each `Event::Persist` is
//! reported `Input::Persisted` at once (an infinitely fast disk). At QoS 1 the publisher publishes at QoS 1
//! and every subscriber's PUBACK is fed back within the same iteration, so the inflight window never fills:
//! the QoS 1 figures include handling N PUBACKs.
//!
//! - `durable: false`: an in-memory broker, sessions are clean; routing and encoding only.
//! - `durable: true`: the subscribers have persistent sessions, so at QoS 1 each delivery stores the
//!   message (`PutMessage`) and each PUBACK deletes it, and the publisher's PUBACK waits for the batch.
//!   At QoS 0 nothing is stored for online sessions; that variant should match the in-memory one.
//!
//! Reported as deliveries per second (`Throughput::Elements(N)`).
//!
//! Run: `cargo bench -p cicada-engine --bench fanout`

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    Ack, Connect, ConnectProperties, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use cicada_engine::{Config, ConnId, ConnMeta, Engine, Event, Input, Instant};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The publisher's connection; subscribers are 1..=N.
const PUBLISHER: ConnId = ConnId(0);
/// The engine never sees time pass: no keep alive, no expiry, no timer fires.
const NOW: Instant = Instant::ZERO;

fn encode(packet: &Packet) -> Bytes {
    let mut buf = BytesMut::new();
    packet
        .encode(ProtocolVersion::V5, &mut buf)
        .expect("encodable packet");
    buf.freeze()
}

fn connect(client_id: &str, persistent: bool) -> Bytes {
    encode(&Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: !persistent,
        keep_alive: 0,
        properties: ConnectProperties {
            session_expiry_interval: persistent.then_some(u32::MAX),
            ..ConnectProperties::default()
        },
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    })))
}

fn subscribe(qos: QoS) -> Bytes {
    encode(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::new("bench/+/x").expect("valid filter"),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }],
    }))
}

fn publish(qos: QoS) -> Bytes {
    let topic = TopicName::new("bench/7/x").expect("valid topic");
    let mut p = Publish::new(topic, Bytes::from(vec![0xA5; 64]));
    p.delivery = Delivery::new(qos, PacketId::new(1)).expect("QoS 0 or 1 with a packet identifier");
    encode(&Packet::Publish(p))
}

/// The packet identifier of every QoS 1/2 PUBLISH in `data` (whole packets, as the engine writes them).
fn publish_ids(mut data: &[u8], mut each: impl FnMut(u16)) {
    while let Some((&first, rest)) = data.split_first() {
        let mut len = 0usize;
        let mut used = 0;
        for (i, byte) in rest.iter().enumerate().take(4) {
            len |= usize::from(byte & 0x7F) << (7 * i);
            used = i + 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let body = &rest[used..used + len];
        let qos = (first >> 1) & 0b11;
        if first >> 4 == 3 && qos > 0 {
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            each(u16::from_be_bytes([
                body[2 + topic_len],
                body[3 + topic_len],
            ]));
        }
        data = &rest[used + len..];
    }
}

/// A broker with its clients, driven as the driving contract says.
struct Bench {
    engine: Engine,
    /// Inputs waiting to be handled (the shell's reactions to the engine's outputs).
    pending: VecDeque<Input>,
    /// Encoded PUBACK for every packet identifier, so feeding one back costs a reference count.
    pubacks: Vec<Bytes>,
    publish: Bytes,
    /// Storage batches written (reported durable) so far.
    batches: u64,
}

impl Bench {
    fn new(n: u64, qos: QoS, durable: bool) -> Bench {
        let config = Config {
            durable,
            ..Config::default()
        };
        let pubacks = (0..=u16::MAX)
            .map(|id| match PacketId::new(id) {
                Some(pid) => encode(&Packet::PubAck(Ack::new(pid))),
                None => Bytes::new(),
            })
            .collect();
        let mut bench = Bench {
            engine: Engine::new(config, 1).expect("valid config"),
            pending: VecDeque::new(),
            pubacks,
            publish: publish(qos),
            batches: 0,
        };
        let sub = subscribe(qos);
        for i in 0..=n {
            let conn = ConnId(i);
            let meta = ConnMeta {
                peer: format!("10.0.0.{i}:1883"),
                listener: "bench".into(),
                ..ConnMeta::default()
            };
            bench.run(Input::Accepted { conn, meta });
            // Only the subscribers' sessions are persistent (and only when durable).
            let data = connect(&format!("client-{i}"), durable && i > 0);
            bench.run(Input::Received { conn, data });
            if i > 0 {
                bench.run(Input::Received {
                    conn,
                    data: sub.clone(),
                });
            }
        }
        assert_eq!(bench.engine.connection_count() as u64, n + 1);
        assert_eq!(bench.engine.subscription_count() as u64, n);
        bench
    }

    /// Handles `input` and everything the shell does in reply; returns the PUBLISHes delivered.
    fn run(&mut self, input: Input) -> u64 {
        let sent = self.engine.stats().publishes_sent;
        self.pending.push_back(input);
        while let Some(input) = self.pending.pop_front() {
            self.engine.handle(NOW, input);
            while let Some(t) = self.engine.poll_transmit() {
                self.pending.push_back(Input::Flushed {
                    conn: t.conn,
                    bytes: t.data.len(),
                });
                if t.conn != PUBLISHER {
                    publish_ids(&t.data, |id| {
                        self.pending.push_back(Input::Received {
                            conn: t.conn,
                            data: self.pubacks[usize::from(id)].clone(),
                        });
                    });
                }
            }
            while let Some(event) = self.engine.poll_event() {
                match event {
                    Event::Persist { seq, .. } => {
                        self.batches += 1;
                        self.pending.push_back(Input::Persisted { upto: seq });
                    }
                    Event::ClientConnected { .. } => {}
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
        self.engine.stats().publishes_sent - sent
    }

    fn publish_once(&mut self) -> u64 {
        let data = self.publish.clone();
        self.run(Input::Received {
            conn: PUBLISHER,
            data,
        })
    }
}

fn fanout(c: &mut Criterion) {
    for durable in [false, true] {
        let name = if durable { "durable" } else { "memory" };
        let mut group = c.benchmark_group(format!("fanout/{name}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for n in [1u64, 100, 1000] {
                let mut bench = Bench::new(n, qos, durable);
                let batches = bench.batches;
                assert_eq!(bench.publish_once(), n, "every subscriber gets the message");
                println!(
                    "fanout/{name}/qos{}/{n}: {} storage batches per publish",
                    qos.as_u8(),
                    bench.batches - batches
                );
                group.throughput(Throughput::Elements(n));
                let id = BenchmarkId::new(format!("qos{}", qos.as_u8()), n);
                group.bench_function(id, |b| {
                    b.iter(|| {
                        let delivered = bench.publish_once();
                        assert_eq!(delivered, n, "every subscriber gets the message");
                        delivered
                    })
                });
                let stats = bench.engine.stats();
                assert_eq!(stats.messages_dropped, 0, "nothing dropped");
                if let Err(broken) = bench.engine.check_invariants() {
                    panic!("engine invariant broken: {broken}");
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
