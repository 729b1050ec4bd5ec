//! Properties of the MQTT codec, checked with bolero.
//!
//! Under `cargo test` each bolero property runs bolero's random engine for [`TEST_TIME`] (override with
//! `BOLERO_RANDOM_TEST_TIME_MS`); under `cargo bolero test` the same targets run with libFuzzer, AFL or
//! honggfuzz. The plain `#[test]`s are deterministic.
//!
//! - round trip: every generated packet decodes back to itself, and `encoded_len` is exact;
//! - robustness: arbitrary bytes, mutated packets and 1 MB of noise never make the decoder panic, and
//!   whatever it accepts re-encodes to something that decodes to the same packet;
//! - framing: a stream of packets decodes to the same packets however it is split into reads, and
//!   `Incomplete { needed }` never overshoots (and is exact once the fixed header is complete);
//! - size limit: an oversized packet is refused from its fixed header alone.

use cicada_fuzz::props::Cases;
use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Unstructured;
use bolero::check;
use bytes::BytesMut;
use cicada_engine::codec::{
    decode_one, render_bytes, DecodeError, Decoded, Decoder, Delivery, FrameHeader, Packet,
    PacketType, ProtocolVersion, MAX_PACKET_SIZE,
};
use cicada_fuzz::gen;

/// How long each bolero property runs under `cargo test`; `BOLERO_RANDOM_TEST_TIME_MS` overrides it.
const TEST_TIME: Duration = Duration::from_secs(2);

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .unwrap_or_else(|e| panic!("{packet:?} does not encode in {version}: {e}"));
    buf
}

/// `encoded_len` matches the encoding and decoding gives the packet back.
fn assert_round_trip(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let bytes = encode(packet, version);
    assert_eq!(
        packet.encoded_len(version),
        bytes.len(),
        "encoded_len of {packet:?} in {version}"
    );
    assert_eq!(
        decode_one(&bytes, version).as_ref(),
        Ok(packet),
        "round trip in {version} of {}",
        render_bytes(&bytes)
    );
    bytes
}

// ---------------------------------------------------------------------------------------------------
// a. Round trip

fn round_trip(input: &[u8], version: ProtocolVersion) -> bool {
    let mut u = Unstructured::new(input);
    let Ok(packet) = gen::packet(&mut u, version) else {
        return false;
    };
    assert_round_trip(&packet, version);
    true
}

#[test]
fn round_trip_v3_1() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(round_trip(input, ProtocolVersion::V3_1)));
    cases.assert_some("round_trip_v3_1");
}

#[test]
fn round_trip_v3_1_1() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(round_trip(input, ProtocolVersion::V3_1_1)));
    cases.assert_some("round_trip_v3_1_1");
}

#[test]
fn round_trip_v5() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(round_trip(input, ProtocolVersion::V5)));
    cases.assert_some("round_trip_v5");
}

/// The empty topic of an alias-only PUBLISH is obtainable (the generators rely on it) and round-trips.
#[test]
fn alias_only_publish_round_trips() {
    let empty = gen::alias_only_topic().expect("the codec decodes an alias-only PUBLISH");
    assert!(empty.is_empty());
    let mut u = Unstructured::new(&[0xA5; 64]);
    let mut publish = gen::publish(&mut u, ProtocolVersion::V5).expect("generated");
    publish.topic = empty;
    publish.properties.topic_alias = std::num::NonZeroU16::new(7);
    assert_round_trip(&Packet::Publish(publish), ProtocolVersion::V5);
}

// ---------------------------------------------------------------------------------------------------
// b. Robustness: arbitrary and mutated input

/// Re-encoding a decoded packet and decoding that again gives the same packet: whatever the decoder
/// accepts, the model can represent in that version.
fn assert_reencodes(packet: &Packet, version: ProtocolVersion, input: &[u8]) {
    let mut bytes = BytesMut::new();
    packet
        .encode(version, &mut bytes)
        .unwrap_or_else(|e| panic!("decoded {packet:?} does not encode in {version}: {e}"));
    assert_eq!(
        packet.encoded_len(version),
        bytes.len(),
        "encoded_len of decoded {packet:?}"
    );
    assert_eq!(
        decode_one(&bytes, version).as_ref(),
        Ok(packet),
        "decoded from {} in {version}, re-encoded as {}",
        render_bytes(input),
        render_bytes(&bytes)
    );
}

/// Decodes `input` with a fresh decoder until an error or `Incomplete`; returns the packets decoded, each
/// with the version it was decoded in.
fn decode_all(
    input: &[u8],
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Vec<(Packet, ProtocolVersion)> {
    let mut decoder = Decoder::new(max_packet_size);
    if let Some(v) = version {
        decoder.set_version(v);
    }
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        let in_force = decoder.version().unwrap_or(ProtocolVersion::V3_1_1);
        let before = buf.len();
        let header = FrameHeader::parse(&buf);
        match decoder.decode(&mut buf) {
            Ok(Decoded::Packet(packet)) => {
                let frame = match header {
                    Ok(Some(frame)) => frame,
                    other => panic!("decoded a packet whose fixed header parses as {other:?}"),
                };
                assert_eq!(
                    before - buf.len(),
                    frame.packet_len(),
                    "bytes consumed by a packet"
                );
                out.push((packet, in_force));
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed >= 1, "Incomplete needs at least one byte");
                assert_eq!(buf.len(), before, "Incomplete consumes nothing");
                return out;
            }
            Err(_) => return out,
        }
    }
}

fn decode_arbitrary(input: &[u8]) {
    for version in [
        None,
        Some(ProtocolVersion::V3_1),
        Some(ProtocolVersion::V3_1_1),
        Some(ProtocolVersion::V5),
    ] {
        decode_all(input, version, MAX_PACKET_SIZE);
        if let Some(v) = version {
            let _ = decode_one(input, v);
        }
    }
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| decode_arbitrary(input));
}

/// Whatever the decoder accepts from arbitrary bytes re-encodes faithfully.
#[test]
fn decoded_arbitrary_packets_reencode() {
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        for version in VERSIONS {
            for (packet, v) in decode_all(input, Some(version), MAX_PACKET_SIZE) {
                assert_reencodes(&packet, v, input);
            }
        }
    });
}

/// Applies one to four random edits (flip, overwrite with an interesting byte, insert, delete, truncate).
fn mutate(u: &mut Unstructured, bytes: &mut Vec<u8>) -> arbitrary::Result<()> {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xC0, 0xFE, 0xFF];
    for _ in 0..u.int_in_range(1..=4)? {
        if bytes.is_empty() {
            break;
        }
        let at = u.choose_index(bytes.len())?;
        match u.int_in_range(0..=4)? {
            0 => bytes[at] ^= 1 << u.int_in_range(0..=7)?,
            1 => bytes[at] = *u.choose(&INTERESTING)?,
            2 => bytes.insert(at, u.arbitrary()?),
            3 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    Ok(())
}

fn decode_mutated(input: &[u8], version: ProtocolVersion) -> bool {
    let mut u = Unstructured::new(input);
    let Ok(packets) = gen::packets(&mut u, version, 1, 3) else {
        return false;
    };
    let mut bytes = Vec::new();
    for packet in &packets {
        bytes.extend_from_slice(&encode(packet, version));
    }
    if mutate(&mut u, &mut bytes).is_err() {
        return false;
    }
    for (packet, v) in decode_all(&bytes, Some(version), MAX_PACKET_SIZE) {
        assert_reencodes(&packet, v, &bytes);
    }
    true
}

/// Valid packets with a few bytes changed reach deep into the decoder: it must not panic, and what it
/// still accepts must re-encode faithfully.
#[test]
fn decoding_mutated_packets_never_panics() {
    let cases = Cases::new();
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        for version in VERSIONS {
            cases.record(decode_mutated(input, version));
        }
    });
    cases.assert_some("decoding_mutated_packets_never_panics");
}

/// MQTT 3.1 has no Session Present flag: the first CONNACK byte is reserved, and the encoder writes 0 for
/// 3.1 whatever `session_present` says. The decoder must agree with it, so that whatever it reports
/// survives re-encoding (it ignores the byte).
#[test]
fn v3_1_connack_session_present_is_reserved() {
    let bytes = [0x20, 0x02, 0x01, 0x00];
    let decoded = decode_one(&bytes, ProtocolVersion::V3_1);
    if let Ok(packet) = &decoded {
        let reencoded = encode(packet, ProtocolVersion::V3_1);
        assert_eq!(
            decode_one(&reencoded, ProtocolVersion::V3_1).as_ref(),
            Ok(packet),
            "3.1 CONNACK 20 02 01 00 decodes to {packet:?}, which re-encodes as {}",
            render_bytes(&reencoded)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// c. Framing: any split of a stream

/// One encoded packet of a stream: where it starts, how long it is, how long its fixed header is.
struct Frame {
    len: usize,
    header_len: usize,
}

/// Feeds `chunks` in order to one decoder, checking every `Incomplete` against the frames, and returns
/// the packets decoded. With `known` the decoder is told the version; without, it learns it from the
/// stream's first packet, a CONNECT.
fn feed<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    frames: &[Frame],
    known: Option<ProtocolVersion>,
    stream: &[u8],
) -> Vec<Packet> {
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    if let Some(version) = known {
        decoder.set_version(version);
    }
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let decoded = decoder.decode(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "valid stream refused after {} packets: {e}\nstream: {}",
                    out.len(),
                    render_bytes(stream)
                )
            });
            match decoded {
                Decoded::Packet(packet) => out.push(packet),
                Decoded::Incomplete { needed } => {
                    assert!(needed >= 1, "needed must be at least 1");
                    if let Some(frame) = frames.get(out.len()) {
                        let have = buf.len();
                        assert!(
                            have < frame.len,
                            "a whole packet is buffered but not decoded"
                        );
                        let missing = frame.len - have;
                        assert!(
                            needed <= missing,
                            "needed {needed} but only {missing} bytes are missing (have {have})"
                        );
                        if have >= frame.header_len {
                            assert_eq!(
                                needed, missing,
                                "needed must be exact once the fixed header is complete"
                            );
                        }
                    }
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty(), "bytes left over after the last packet");
    out
}

fn stream_splits(input: &[u8], version: ProtocolVersion) -> bool {
    let mut u = Unstructured::new(input);
    // Half of the streams open with a CONNECT the decoder learns the version from, as on a server.
    let Ok(learn) = u.arbitrary::<bool>() else {
        return false;
    };
    let Ok(mut packets) = gen::packets(&mut u, version, 1, 6) else {
        return false;
    };
    let known = if learn {
        let Ok(connect) = gen::connect(&mut u, version) else {
            return false;
        };
        packets.insert(0, Packet::Connect(Box::new(connect)));
        None
    } else {
        Some(version)
    };
    let mut stream = Vec::new();
    let mut frames = Vec::new();
    for packet in &packets {
        let bytes = encode(packet, version);
        let header = FrameHeader::parse(&bytes)
            .expect("valid header")
            .expect("complete header");
        assert_eq!(header.packet_len(), bytes.len());
        frames.push(Frame {
            len: bytes.len(),
            header_len: header.header_len,
        });
        stream.extend_from_slice(&bytes);
    }

    let whole = feed([&stream[..]], &frames, known, &stream);
    assert_eq!(whole, packets, "whole stream");
    for split in 1..stream.len() {
        let (a, b) = stream.split_at(split);
        let got = feed([a, b], &frames, known, &stream);
        assert!(
            got == packets,
            "stream split at {split} of {}",
            stream.len()
        );
    }
    let byte_by_byte = feed(stream.chunks(1), &frames, known, &stream);
    assert_eq!(byte_by_byte, packets, "byte by byte");
    true
}

#[test]
fn stream_splits_v3_1() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(stream_splits(input, ProtocolVersion::V3_1)));
    cases.assert_some("stream_splits_v3_1");
}

#[test]
fn stream_splits_v3_1_1() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(stream_splits(input, ProtocolVersion::V3_1_1)));
    cases.assert_some("stream_splits_v3_1_1");
}

#[test]
fn stream_splits_v5() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(stream_splits(input, ProtocolVersion::V5)));
    cases.assert_some("stream_splits_v5");
}

// ---------------------------------------------------------------------------------------------------
// d. A megabyte of noise, deterministically

/// xorshift64*: a small deterministic PRNG, enough to make noise and choices reproducible.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// A decoder with a random version (or none yet) and a random limit, small enough that noise announcing a
/// large body is mostly refused instead of swallowing the stream.
fn fresh_decoder(rng: &mut XorShift) -> Decoder {
    const LIMITS: [usize; 4] = [16, 128, 1024, 4096];
    let mut decoder = Decoder::new(LIMITS[rng.below(LIMITS.len())]);
    match rng.below(4) {
        0 => {}
        1 => decoder.set_version(ProtocolVersion::V3_1),
        2 => decoder.set_version(ProtocolVersion::V3_1_1),
        _ => decoder.set_version(ProtocolVersion::V5),
    }
    decoder
}

/// 1 MiB of noise arrives in chunks of 1 to 1024 bytes. After each error the buffer as it was before the
/// failing call loses its first byte and a fresh decoder takes over, so decoding is attempted at nearly
/// every offset of the noise.
#[test]
fn a_megabyte_of_noise_in_random_chunks_yields_errors_not_panics() {
    let mut rng = XorShift::new(0x00C1_CADA_5EED_2024);
    let mut noise = vec![0u8; 1 << 20];
    rng.fill(&mut noise);

    let mut decoder = fresh_decoder(&mut rng);
    let mut buf = BytesMut::new();
    // `buf` always holds `noise[start..fed]`.
    let (mut start, mut fed) = (0usize, 0usize);
    let (mut errors, mut packets) = (0usize, 0usize);
    let mut kinds = BTreeMap::new();
    while fed < noise.len() {
        let end = (fed + 1 + rng.below(1024)).min(noise.len());
        buf.extend_from_slice(&noise[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Decoded::Packet(packet)) => {
                    packets += 1;
                    start += before - buf.len();
                    *kinds.entry(packet.packet_type().name()).or_insert(0usize) += 1;
                }
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed >= 1);
                    assert_eq!(buf.len(), before, "Incomplete consumes nothing");
                    break;
                }
                Err(_) => {
                    errors += 1;
                    start += 1;
                    buf = BytesMut::from(&noise[start..fed]);
                    decoder = fresh_decoder(&mut rng);
                }
            }
            assert_eq!(start + buf.len(), fed);
        }
    }
    println!("1 MiB of noise: {errors} errors, {packets} packets {kinds:?}");
    assert!(errors > 0, "noise must produce decode errors");
    assert!(
        packets > 0,
        "some offsets of the noise must hold valid packets"
    );
}

// ---------------------------------------------------------------------------------------------------
// e. The size limit applies from the fixed header alone

fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn size_limit_from_header(input: &[u8]) -> bool {
    let mut u = Unstructured::new(input);
    let parts = (|| -> arbitrary::Result<(u8, usize, usize)> {
        let first: u8 = u.arbitrary()?;
        let body_len = if u.arbitrary()? {
            u.int_in_range(1..=gen::VARINT_MAX as usize)?
        } else {
            u.int_in_range(1..=20_000)?
        };
        let limit = if u.arbitrary()? {
            u.int_in_range(0..=MAX_PACKET_SIZE + 10)?
        } else {
            u.int_in_range(0..=20_010)?
        };
        Ok((first, body_len, limit))
    })();
    let Ok((first, body_len, limit)) = parts else {
        return false;
    };
    let mut header = vec![first];
    put_varint(&mut header, body_len);
    let size = header.len() + body_len;

    let mut decoder = Decoder::new(limit);
    let max = decoder.max_packet_size();
    assert_eq!(max, limit.min(MAX_PACKET_SIZE));
    let mut buf = BytesMut::from(&header[..]);
    let result = decoder.decode(&mut buf);
    if size > max {
        assert_eq!(
            result,
            Err(DecodeError::PacketTooLarge { size, max }),
            "header {}",
            render_bytes(&header)
        );
    } else {
        assert_eq!(result, Ok(Decoded::Incomplete { needed: body_len }));
    }
    true
}

#[test]
fn oversized_headers_are_refused_before_the_body_arrives() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(size_limit_from_header(input)));
    cases.assert_some("oversized_headers_are_refused_before_the_body_arrives");
}

fn size_limit_of_packet(input: &[u8]) -> bool {
    let mut u = Unstructured::new(input);
    let Ok(version) = u.choose(&VERSIONS).copied() else {
        return false;
    };
    let Ok(packet) = gen::packet(&mut u, version) else {
        return false;
    };
    let bytes = encode(&packet, version);
    let header = FrameHeader::parse(&bytes)
        .expect("valid header")
        .expect("complete header");
    let size = bytes.len();

    // One byte too small: refused with only the fixed header buffered.
    let mut decoder = Decoder::new(size - 1);
    decoder.set_version(version);
    let mut buf = BytesMut::from(&bytes[..header.header_len]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size,
            max: size - 1
        })
    );

    // Exactly the limit: accepted.
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    decoder.set_version(version);
    decoder.set_max_packet_size(size);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Decoded::Packet(packet)));
    assert!(buf.is_empty());
    true
}

#[test]
fn generated_packets_respect_the_size_limit_exactly() {
    let cases = Cases::new();
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|input: &[u8]| cases.record(size_limit_of_packet(input)));
    cases.assert_some("generated_packets_respect_the_size_limit_exactly");
}

#[test]
fn size_limit_edges() {
    // The largest header MQTT can express announces exactly MAX_PACKET_SIZE bytes.
    let largest = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    let mut decoder = Decoder::new(usize::MAX);
    assert_eq!(decoder.max_packet_size(), MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&largest[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Incomplete {
            needed: 268_435_455
        })
    );
    let mut decoder = Decoder::new(MAX_PACKET_SIZE - 1);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: MAX_PACKET_SIZE,
            max: MAX_PACKET_SIZE - 1
        })
    );
    // A limit of 0 refuses even PINGREQ; 2 accepts it.
    let mut decoder = Decoder::new(0);
    let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 2, max: 0 })
    );
    let mut decoder = Decoder::new(2);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Packet(Packet::PingReq))
    );
}

// ---------------------------------------------------------------------------------------------------
// The generators themselves: they cover what the properties claim to cover.

/// Whether an optional property is present / a repeated one occurs at least once.
trait IsSet {
    fn is_set(&self) -> bool;
}

impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl<T> IsSet for Vec<T> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

/// Records, for each listed field of a property struct, whether it was ever set.
macro_rules! record_fields {
    ($seen:expr, $name:literal, $props:expr, [$($field:ident),+ $(,)?]) => {{
        let props = &$props;
        $(
            *$seen.entry(concat!($name, ".", stringify!($field))).or_insert(false) |=
                IsSet::is_set(&props.$field);
        )+
        *$seen.entry(concat!($name, ".user_properties x2")).or_insert(false) |=
            props.user_properties.len() >= 2;
    }};
}

fn generated_sample(version: ProtocolVersion, seed: u64, count: usize) -> Vec<Packet> {
    let mut rng = XorShift::new(seed);
    let mut data = vec![0u8; 1024];
    (0..count)
        .map(|_| {
            rng.fill(&mut data);
            let mut u = Unstructured::new(&data);
            gen::packet(&mut u, version).expect("generation succeeds")
        })
        .collect()
}

#[test]
fn generators_cover_every_packet_type_and_property() {
    for version in VERSIONS {
        let packets = generated_sample(version, 0x5EED ^ u64::from(version.level()), 4000);
        let mut types = BTreeMap::new();
        let mut seen: BTreeMap<&'static str, bool> = BTreeMap::new();
        for packet in &packets {
            *types.entry(packet.packet_type().name()).or_insert(0usize) += 1;
            let mut flag = |name: &'static str, value: bool| {
                *seen.entry(name).or_insert(false) |= value;
            };
            match packet {
                Packet::Connect(c) => {
                    assert_eq!(c.protocol, version);
                    flag("connect.will", c.will.is_some());
                    flag("connect.username", c.username.is_some());
                    flag("connect.password", c.password.is_some());
                    if !version.is_v5() {
                        assert!(c.password.is_none() || c.username.is_some());
                    }
                }
                Packet::Publish(p) => {
                    flag("publish.qos0", p.delivery == Delivery::AtMostOnce);
                    flag(
                        "publish.qos2",
                        matches!(p.delivery, Delivery::ExactlyOnce(_)),
                    );
                    flag("publish.dup", p.dup);
                    flag("publish.large", p.payload.len() > 16_383);
                    assert!(!(p.dup && p.delivery == Delivery::AtMostOnce));
                    if version.is_v5() {
                        flag("publish.alias_only", p.topic.is_empty());
                        flag(
                            "publish.subscription_identifiers x2",
                            p.properties.subscription_identifiers.len() >= 2,
                        );
                    }
                    assert!(!p.topic.is_empty() || p.properties.topic_alias.is_some());
                }
                Packet::Subscribe(s) => {
                    assert!(!s.subscriptions.is_empty());
                    for sub in &s.subscriptions {
                        let shared = sub.filter.shared().is_some();
                        flag("subscribe.shared", shared);
                        flag("subscribe.wildcard", sub.filter.has_wildcards());
                        assert!(!(shared && sub.options.no_local));
                        if version.is_v5() {
                            flag("subscribe.no_local", sub.options.no_local);
                        }
                    }
                }
                Packet::Unsubscribe(u) => assert!(!u.filters.is_empty()),
                _ => {}
            }
            if version.is_v5() {
                record_v5_properties(&mut seen, packet);
            } else {
                assert_v3_representable(packet, version);
            }
        }
        for packet_type in gen::packet_types(version) {
            assert!(
                types.contains_key(packet_type.name()),
                "{version}: no {packet_type} generated"
            );
        }
        assert_eq!(types.contains_key("AUTH"), version.is_v5());
        let missing: Vec<_> = seen
            .iter()
            .filter(|(_, set)| !**set)
            .map(|(k, _)| *k)
            .collect();
        assert!(
            missing.is_empty(),
            "{version}: never generated: {missing:?}"
        );
    }
}

fn record_v5_properties(seen: &mut BTreeMap<&'static str, bool>, packet: &Packet) {
    match packet {
        Packet::Connect(c) => {
            record_fields!(
                seen,
                "connect",
                c.properties,
                [
                    session_expiry_interval,
                    receive_maximum,
                    maximum_packet_size,
                    topic_alias_maximum,
                    request_response_information,
                    request_problem_information,
                    authentication_method,
                    authentication_data,
                    user_properties,
                ]
            );
            assert!(
                c.properties.authentication_data.is_none()
                    || c.properties.authentication_method.is_some()
            );
            if let Some(will) = &c.will {
                record_fields!(
                    seen,
                    "will",
                    will.properties,
                    [
                        will_delay_interval,
                        payload_format_indicator,
                        message_expiry_interval,
                        content_type,
                        response_topic,
                        correlation_data,
                        user_properties,
                    ]
                );
            }
        }
        Packet::ConnAck(c) => record_fields!(
            seen,
            "connack",
            c.properties,
            [
                session_expiry_interval,
                receive_maximum,
                maximum_qos,
                retain_available,
                maximum_packet_size,
                assigned_client_identifier,
                topic_alias_maximum,
                reason_string,
                wildcard_subscription_available,
                subscription_identifiers_available,
                shared_subscription_available,
                server_keep_alive,
                response_information,
                server_reference,
                authentication_method,
                authentication_data,
                user_properties,
            ]
        ),
        Packet::Publish(p) => record_fields!(
            seen,
            "publish",
            p.properties,
            [
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            ]
        ),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            record_fields!(seen, "ack", a.properties, [reason_string, user_properties]);
        }
        Packet::Subscribe(s) => record_fields!(
            seen,
            "subscribe",
            s.properties,
            [subscription_identifier, user_properties,]
        ),
        Packet::SubAck(s) => {
            record_fields!(
                seen,
                "suback",
                s.properties,
                [reason_string, user_properties]
            );
        }
        Packet::Unsubscribe(u) => {
            record_fields!(seen, "unsubscribe", u.properties, [user_properties]);
        }
        Packet::UnsubAck(u) => {
            record_fields!(
                seen,
                "unsuback",
                u.properties,
                [reason_string, user_properties]
            );
        }
        Packet::Disconnect(d) => record_fields!(
            seen,
            "disconnect",
            d.properties,
            [
                session_expiry_interval,
                reason_string,
                server_reference,
                user_properties,
            ]
        ),
        Packet::Auth(a) => record_fields!(
            seen,
            "auth",
            a.properties,
            [
                authentication_method,
                authentication_data,
                reason_string,
                user_properties,
            ]
        ),
        _ => {}
    }
    if let Some(reason) = reason_of(packet) {
        assert!(reason.allowed_in(packet.packet_type()), "{packet:?}");
    }
}

fn reason_of(packet: &Packet) -> Option<cicada_engine::codec::ReasonCode> {
    match packet {
        Packet::ConnAck(c) => Some(c.reason),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            Some(a.reason)
        }
        Packet::Disconnect(d) => Some(d.reason),
        Packet::Auth(a) => Some(a.reason),
        _ => None,
    }
}

fn assert_v3_representable(packet: &Packet, version: ProtocolVersion) {
    use cicada_engine::codec::ReasonCode;
    let empty = match packet {
        Packet::Connect(c) => {
            c.properties.is_empty() && c.will.as_ref().is_none_or(|w| w.properties.is_empty())
        }
        Packet::ConnAck(c) => {
            let code = c.reason.to_v3_connack();
            assert_eq!(ReasonCode::from_v3_connack(code), Some(c.reason));
            if version == ProtocolVersion::V3_1 {
                assert!(!c.session_present);
            }
            c.properties.is_empty()
        }
        Packet::Publish(p) => p.properties.is_empty(),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            assert_eq!(a.reason, ReasonCode::Success);
            a.properties.is_empty()
        }
        Packet::Subscribe(s) => {
            for sub in &s.subscriptions {
                assert_eq!(
                    sub.options,
                    cicada_engine::codec::SubscriptionOptions {
                        qos: sub.options.qos,
                        ..Default::default()
                    }
                );
            }
            s.properties.is_empty()
        }
        Packet::SubAck(s) => {
            for reason in &s.reasons {
                assert_eq!(
                    ReasonCode::from_v3_suback(reason.to_v3_suback()),
                    Some(*reason)
                );
            }
            s.properties.is_empty()
        }
        Packet::Unsubscribe(u) => u.properties.is_empty(),
        Packet::UnsubAck(u) => u.reasons.is_empty() && u.properties.is_empty(),
        Packet::Disconnect(d) => d.reason == ReasonCode::Success && d.properties.is_empty(),
        Packet::Auth(_) => panic!("AUTH generated for {version}"),
        _ => true,
    };
    assert!(empty, "{version} packet with 5.0-only content: {packet:?}");
}

/// The generated sample also round-trips (deterministic complement of the bolero properties).
#[test]
fn generated_sample_round_trips() {
    for version in VERSIONS {
        for packet in generated_sample(version, 0xC1CA_DA00 + u64::from(version.level()), 2000) {
            assert_round_trip(&packet, version);
        }
    }
}

/// A PacketType the generators never produce must not exist: `packet_types` lists all fifteen.
#[test]
fn packet_type_list_is_complete() {
    let listed = gen::packet_types(ProtocolVersion::V5);
    for nibble in 1..=15u8 {
        let packet_type = PacketType::from_nibble(nibble).expect("defined");
        assert!(listed.contains(&packet_type), "{packet_type} missing");
    }
    assert_eq!(gen::packet_types(ProtocolVersion::V3_1_1).len(), 14);
}
