//! PUBLISH decode and encode throughput, for 64 B and 4 KB payloads.
//!
//! Each iteration handles a batch of packets, as a connection's read or write does. Reported twice: as
//! packets per second (`codec/packets`) and as bytes per second (`codec/bytes`).
//!
//! Run: `cargo bench -p cicada-engine --bench codec`

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    Decoded, Decoder, Delivery, Packet, PacketId, ProtocolVersion, Publish, TopicName,
    MAX_PACKET_SIZE,
};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Packets per iteration.
const BATCH: usize = 1000;

fn publish(payload_len: usize, id: u16) -> Packet {
    let topic =
        TopicName::new("sensors/building-7/floor-3/room-12/temperature").expect("valid topic");
    let mut p = Publish::new(topic, Bytes::from(vec![0xA5; payload_len]));
    p.delivery = Delivery::AtLeastOnce(PacketId::new(id).expect("non-zero"));
    p.properties.message_expiry_interval = Some(3600);
    Packet::Publish(p)
}

fn encoded_batch(payload_len: usize, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..BATCH {
        publish(payload_len, (i % 65_535 + 1) as u16)
            .encode(version, &mut buf)
            .expect("encodable");
    }
    buf
}

fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Ok(Decoded::Packet(p)) = decoder.decode(buf) {
        black_box(p);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion, unit: &str) {
    let mut group = c.benchmark_group(format!("codec/{unit}"));
    for payload_len in [64usize, 4096] {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let wire = encoded_batch(payload_len, version);
            group.throughput(match unit {
                "bytes" => Throughput::Bytes(wire.len() as u64),
                _ => Throughput::Elements(BATCH as u64),
            });
            let name = format!("{payload_len}B/v{version}");
            group.bench_function(format!("decode/{name}"), |b| {
                b.iter_batched_ref(
                    || {
                        let mut d = Decoder::new(MAX_PACKET_SIZE);
                        d.set_version(version);
                        (d, wire.clone())
                    },
                    |(decoder, buf)| assert_eq!(decode_all(decoder, buf), BATCH),
                    BatchSize::SmallInput,
                )
            });
            let packet = publish(payload_len, 1);
            let mut out = BytesMut::with_capacity(wire.len());
            group.bench_function(format!("encode/{name}"), |b| {
                b.iter(|| {
                    out.clear();
                    for _ in 0..BATCH {
                        packet.encode(version, &mut out).expect("encodable");
                    }
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

fn packets(c: &mut Criterion) {
    bench(c, "packets");
}

fn bytes(c: &mut Criterion) {
    bench(c, "bytes");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = packets, bytes
}
criterion_main!(benches);
