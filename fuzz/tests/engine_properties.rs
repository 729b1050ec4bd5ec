//! Properties of the broker engine, checked with bolero through the simulation harness
//! (`cicada_engine::sim`, feature `sim`).
//!
//! Under `cargo test` each bolero property runs bolero's random engine for [`TEST_TIME`] (override with
//! `BOLERO_RANDOM_TEST_TIME_MS`); under `cargo bolero test` the same targets run with libFuzzer, AFL or
//! honggfuzz. The plain `#[test]` is deterministic.
//!
//! - robustness: arbitrary sequences of client actions (connects of every kind, subscriptions with
//!   wildcards, publishes at every QoS, acknowledgements right and wrong, disconnects, dropped
//!   connections, raw and generated packets, time, storage and flushing switches, authenticator answers
//!   of every kind including enhanced-authentication challenges, redirects switched on and off) under varied
//!   configurations never panic and keep [`cicada_engine::Engine::check_invariants`] after every step;
//! - exactly once: a QoS 2 subscriber with a persistent session never sees a message twice, whatever
//!   the publisher resends and whenever either side reconnects, and gets every message the broker
//!   acknowledged with PUBREC (unless its session expired);
//! - durability: a PUBACK or PUBREC that depends on a storage batch is not sent before the batch is
//!   reported durable, and is sent once it is; a QoS 2 PUBLISH reaches a persistent subscriber only
//!   once the batch recording its packet id is durable, and a PUBREL only once the batch recording
//!   the release is;
//! - storage coherence (in every property, checked by the harness's model store): no operation writes
//!   under a session the store does not hold, deletes what it does not hold, or releases a message
//!   never stored;
//! - determinism: the same seed and inputs give the same transcript byte for byte; another seed assigns
//!   other client identifiers.

use cicada_fuzz::props::{
    assert_invariants, persistent_connect, pid, qos_from, scripts, subscribe_packet, topic_filter,
    topic_name, transcript_tail, version_from, Cases,
};
use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use arbitrary::Unstructured;
use bolero::check;
use bytes::Bytes;
use bytestring::ByteString;
use cicada_engine::codec::{
    Ack, Connect, Delivery, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, RetainHandling, Subscribe, Subscription, SubscriptionId, SubscriptionOptions,
    Unsubscribe, Will,
};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, Event, Input, OutboundState, PersistSeq, StoreOp};
use cicada_fuzz::gen;

/// How long each bolero property runs under `cargo test`; `BOLERO_RANDOM_TEST_TIME_MS` overrides it.
const TEST_TIME: Duration = Duration::from_secs(2);

/// Whether the engine reported `client`'s session expired since event `from`; returns the new index.
fn session_expired_since(sim: &Sim, from: usize, client: &str) -> (bool, usize) {
    let expired = sim.events[from..]
        .iter()
        .any(|e| matches!(e, Event::SessionExpired { client_id } if &**client_id == client));
    (expired, sim.events.len())
}

// ---------------------------------------------------------------------------------------------------
// 1. Arbitrary client actions

const NAMES: [&str; 4] = ["c0", "c1", "c2", "c3"];

const FILTERS: [&str; 11] = [
    "a/+",
    "#",
    "a/#",
    "$SYS/#",
    "+/b",
    "a/b",
    "+",
    "t/#",
    "+/+/c",
    "$share/g/a/#",
    "$SYS/+",
];

const TOPICS: [&str; 8] = [
    "a", "a/b", "a/b/c", "b/b", "t/1", "x/y/c", "$SYS/x", "$SYS/a/b",
];

/// What the fuzzing client `NAMES[i]` knows about its connection.
#[derive(Default)]
struct Peer {
    /// The version of its last CONNECT; `None` until it first connects (the harness needs a connection
    /// before anything can be sent).
    version: Option<ProtocolVersion>,
    /// Packet ids seen in QoS packets from the broker, most recent last.
    seen: Vec<PacketId>,
    /// Correct replies owed to the broker on this connection, oldest first.
    owed: Vec<Packet>,
    /// Its own recent QoS 1/2 publishes, for DUP resends.
    own: Vec<Publish>,
}

impl Peer {
    fn remember(&mut self, id: PacketId) {
        if !self.seen.contains(&id) {
            self.seen.push(id);
            if self.seen.len() > 16 {
                self.seen.remove(0);
            }
        }
    }

    fn observe(&mut self, packet: &Packet) {
        let (id, reply) = match packet {
            Packet::Publish(p) => match p.delivery {
                Delivery::AtMostOnce => return,
                Delivery::AtLeastOnce(id) => (id, Packet::PubAck(Ack::new(id))),
                Delivery::ExactlyOnce(id) => (id, Packet::PubRec(Ack::new(id))),
            },
            Packet::PubRec(a) => (a.packet_id, Packet::PubRel(Ack::new(a.packet_id))),
            Packet::PubRel(a) => (a.packet_id, Packet::PubComp(Ack::new(a.packet_id))),
            Packet::PubAck(a) | Packet::PubComp(a) => {
                self.remember(a.packet_id);
                return;
            }
            _ => return,
        };
        self.remember(id);
        if self.owed.len() < 256 {
            self.owed.push(reply);
        }
    }
}

/// A configuration: the default half the time, otherwise tight or unusual limits.
fn config_from(u: &mut Unstructured) -> arbitrary::Result<Config> {
    if u.arbitrary()? {
        return Ok(Config::default());
    }
    Ok(Config {
        max_packet_size: *u.choose(&[128, 1024, 1024 * 1024])?,
        receive_maximum: *u.choose(&[1, 3, 1024])?,
        max_inflight: *u.choose(&[1, 2, 64])?,
        max_queued_messages: *u.choose(&[0, 1, 5, 1000])?,
        max_queued_bytes: *u.choose(&[0, 16, 200, 1 << 20])?,
        queue_qos0_offline: u.arbitrary()?,
        max_topic_length: *u.choose(&[5, 65_535])?,
        max_topic_levels: *u.choose(&[2, 128])?,
        max_qos: qos_from(u)?,
        retain_available: u.ratio(3, 4)?,
        topic_alias_maximum: *u.choose(&[0, 2, 64])?,
        max_session_expiry: *u.choose(&[0, 30, u32::MAX])?,
        max_keep_alive: *u.choose(&[None, Some(5), Some(100)])?,
        connect_timeout: Duration::from_secs(*u.choose(&[1, 10])?),
        send_window: *u.choose(&[1, 100, 1 << 20])?,
        durable: u.ratio(3, 4)?,
        max_outbound_topic_aliases: *u.choose(&[0, 1, 64])?,
        wildcard_subscriptions: u.ratio(7, 8)?,
        subscription_identifiers: u.ratio(7, 8)?,
        response_information_prefix: u.ratio(1, 2)?.then(|| "reply/".to_string()),
        redirect: None,
        acl: u.ratio(1, 3)?.then(|| {
            std::sync::Arc::new(
                cicada_engine::acl::Acl::parse(FUZZ_ACL).expect("the fuzzing ACL is valid"),
            )
        }),
        quotas: quotas_from(u)?,
        // Some runs put every client in a tenant with a mount point and shared limits.
        tenants: if u.ratio(1, 4)? {
            vec![cicada_engine::Tenant {
                name: "t".into(),
                mount_point: "m/".into(),
                listeners: vec!["sim".into()],
                max_connections: *u.choose(&[None, Some(2)])?,
                max_subscriptions: *u.choose(&[None, Some(2)])?,
                max_queued_messages: *u.choose(&[None, Some(0), Some(3)])?,
                max_queued_bytes: *u.choose(&[None, Some(10)])?,
                ..cicada_engine::Tenant::default()
            }]
        } else {
            Vec::new()
        },
        // Some runs put every CONNECT (and AUTH exchange) to an authenticator the actions answer.
        authentication: if u.ratio(1, 3)? {
            cicada_engine::Authentication::External
        } else {
            cicada_engine::Authentication::AllowAll
        },
        ..Config::default()
    })
    .map(|mut c| {
        if c.authentication == cicada_engine::Authentication::External {
            c.auth_methods = vec![AUTH_METHOD.to_string()];
        }
        c
    })
}

/// The ACL some robustness runs enforce: denials of every kind, caps and placeholders.
const FUZZ_ACL: &str = "deny all subscribe \"secret/#\"\n\
allow all publish,retain \"%c/#\"\n\
allow all publish \"+/+\" qos <= 1\n\
allow user \"u*\" publish,subscribe,retain \"#\"\n\
allow all subscribe \"#\" qos <= 1\n";

/// Rate limits and quotas, off half the time, tight otherwise.
fn quotas_from(u: &mut Unstructured) -> arbitrary::Result<cicada_engine::Quotas> {
    if u.arbitrary()? {
        return Ok(cicada_engine::Quotas::default());
    }
    let nz = |n: u64| std::num::NonZeroU64::new(n).unwrap_or(std::num::NonZeroU64::MIN);
    let policy = |u: &mut Unstructured| -> arbitrary::Result<cicada_engine::OverloadPolicy> {
        Ok(*u.choose(&[
            cicada_engine::OverloadPolicy::Throttle,
            cicada_engine::OverloadPolicy::Drop,
            cicada_engine::OverloadPolicy::Disconnect,
        ])?)
    };
    let rate = |u: &mut Unstructured| -> arbitrary::Result<cicada_engine::Rate> {
        Ok(cicada_engine::Rate {
            per_sec: nz(*u.choose(&[1, 10, 1000])?),
            burst: nz(*u.choose(&[1, 3, 100])?),
        })
    };
    Ok(cicada_engine::Quotas {
        publish_messages: if u.arbitrary()? {
            Some(cicada_engine::RateLimit {
                rate: rate(u)?,
                policy: policy(u)?,
            })
        } else {
            None
        },
        publish_bytes: if u.arbitrary()? {
            Some(cicada_engine::RateLimit {
                rate: rate(u)?,
                policy: policy(u)?,
            })
        } else {
            None
        },
        max_subscriptions: if u.arbitrary()? {
            let p = *u.choose(&[
                cicada_engine::OverloadPolicy::Drop,
                cicada_engine::OverloadPolicy::Disconnect,
            ])?;
            Some((*u.choose(&[0, 1, 3])?, p))
        } else {
            None
        },
        connect_rate_per_address: if u.arbitrary()? { Some(rate(u)?) } else { None },
        queue_full: *u.choose(&[
            cicada_engine::OverloadPolicy::Drop,
            cicada_engine::OverloadPolicy::Disconnect,
        ])?,
    })
}

/// The enhanced authentication method the robustness runs offer.
const AUTH_METHOD: &str = "TOY";

fn connect_from(
    u: &mut Unstructured,
    name: &str,
    version: ProtocolVersion,
) -> arbitrary::Result<Connect> {
    let mut c = Sim::connect_packet(if u.ratio(1, 8)? { "" } else { name }, version);
    c.clean_start = u.arbitrary()?;
    c.keep_alive = *u.choose(&[0, 1, 5, 30, 60, 300])?;
    if version.is_v5() {
        let p = &mut c.properties;
        p.session_expiry_interval =
            *u.choose(&[None, Some(0), Some(5), Some(3600), Some(u32::MAX)])?;
        p.receive_maximum = NonZeroU16::new(*u.choose(&[0, 1, 2, 100])?);
        p.maximum_packet_size = NonZeroU32::new(*u.choose(&[0, 20, 64, 100_000])?);
        p.topic_alias_maximum = *u.choose(&[None, Some(0), Some(4)])?;
        p.request_problem_information = *u.choose(&[None, Some(false), Some(true)])?;
        p.request_response_information = *u.choose(&[None, Some(false), Some(true)])?;
        if u.ratio(1, 4)? {
            p.authentication_method =
                Some(if u.ratio(7, 8)? { AUTH_METHOD } else { "OTHER" }.into());
            p.authentication_data = Some(Bytes::from_static(b"hello"));
        }
    }
    if u.ratio(1, 3)? {
        let mut will = Will {
            topic: topic_name(u.choose(&TOPICS)?),
            payload: if u.ratio(1, 4)? {
                Bytes::new()
            } else {
                Bytes::from(format!("will of {name}"))
            },
            qos: qos_from(u)?,
            retain: u.ratio(1, 3)?,
            properties: Default::default(),
        };
        if version.is_v5() {
            will.properties.will_delay_interval =
                *u.choose(&[None, Some(0), Some(5), Some(500)])?;
            will.properties.message_expiry_interval = *u.choose(&[None, Some(1), Some(100)])?;
        }
        c.will = Some(will);
    }
    Ok(c)
}

fn subscribe_from(
    u: &mut Unstructured,
    sim: &mut Sim,
    name: &str,
    version: ProtocolVersion,
) -> arbitrary::Result<Packet> {
    let count = u.int_in_range(1..=2)?;
    let mut subscriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let mut options = SubscriptionOptions {
            qos: qos_from(u)?,
            ..Default::default()
        };
        if version.is_v5() {
            options.no_local = u.ratio(1, 4)?;
            options.retain_as_published = u.ratio(1, 4)?;
            options.retain_handling = *u.choose(&[
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ])?;
        }
        subscriptions.push(Subscription {
            filter: topic_filter(u.choose(&FILTERS)?),
            options,
        });
    }
    let mut s = Subscribe {
        packet_id: sim.next_packet_id(name),
        properties: Default::default(),
        subscriptions,
    };
    if version.is_v5() && u.ratio(1, 3)? {
        s.properties.subscription_identifier = SubscriptionId::new(u.int_in_range(1..=3)?);
    }
    Ok(Packet::Subscribe(s))
}

fn publish_from(
    u: &mut Unstructured,
    sim: &mut Sim,
    name: &str,
    version: ProtocolVersion,
    counter: &mut u32,
) -> arbitrary::Result<Publish> {
    *counter += 1;
    let payload = if u.ratio(1, 5)? {
        Bytes::new()
    } else {
        Bytes::from(format!("{name}:{counter}"))
    };
    let mut p = Publish::new(topic_name(u.choose(&TOPICS)?), payload);
    p.retain = u.ratio(1, 4)?;
    p.delivery = match qos_from(u)? {
        QoS::AtMostOnce => Delivery::AtMostOnce,
        QoS::AtLeastOnce => Delivery::AtLeastOnce(sim.next_packet_id(name)),
        QoS::ExactlyOnce => Delivery::ExactlyOnce(sim.next_packet_id(name)),
    };
    if version.is_v5() {
        if u.ratio(1, 6)? {
            p.properties.message_expiry_interval = Some(*u.choose(&[0, 1, 100])?);
        }
        if u.ratio(1, 6)? {
            p.properties.topic_alias = NonZeroU16::new(u.int_in_range(1..=3)?);
            if u.arbitrary()? {
                if let Some(empty) = gen::alias_only_topic() {
                    p.topic = empty;
                }
            }
        }
        if u.ratio(1, 20)? {
            // Claims UTF-8; the payload may not be.
            p.properties.payload_format_indicator = Some(true);
            if u.arbitrary()? {
                p.payload = Bytes::from_static(b"\xff\xfe");
            }
        }
    }
    Ok(p)
}

/// One action by one client, or on the harness. `Err` only when the input ran out mid-action.
fn client_action(
    u: &mut Unstructured,
    sim: &mut Sim,
    peers: &mut [Peer; 4],
    counter: &mut u32,
) -> arbitrary::Result<()> {
    let i = u.choose_index(NAMES.len())?;
    let name = NAMES[i];
    let mut action = u.int_in_range(0u8..=23)?;
    let peer = &mut peers[i];
    // Harness-wide actions work without a connection; everything else needs one first.
    if peer.version.is_none() && action < 15 {
        action = 0;
    }
    let version = peer.version.unwrap_or(ProtocolVersion::V3_1_1);
    match action {
        0 | 1 => {
            let version = version_from(u)?;
            let connect = connect_from(u, name, version)?;
            peer.version = Some(version);
            peer.owed.clear();
            // A new connection: the harness forgets the old one, whose broker side stays open unless
            // the client id is the same (takeover).
            if let Some(ack) = sim.connect_with(name, connect) {
                peer.observe(&ack);
            }
        }
        2 => {
            let s = subscribe_from(u, sim, name, version)?;
            sim.send(name, s);
        }
        3 => {
            let count = u.int_in_range(1..=2)?;
            let mut filters = Vec::with_capacity(count);
            for _ in 0..count {
                filters.push(topic_filter(u.choose(&FILTERS)?));
            }
            let packet_id = sim.next_packet_id(name);
            sim.send(
                name,
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties: Default::default(),
                    filters,
                }),
            );
        }
        4..=6 => {
            let p = publish_from(u, sim, name, version, counter)?;
            if p.qos() != QoS::AtMostOnce {
                peer.own.push(p.clone());
                if peer.own.len() > 8 {
                    peer.own.remove(0);
                }
            }
            sim.send(name, Packet::Publish(p));
        }
        7 => {
            if !peer.own.is_empty() {
                let mut p = peer.own[u.choose_index(peer.own.len())?].clone();
                p.dup = true;
                sim.send(name, Packet::Publish(p));
            }
        }
        8 => {
            if !peer.owed.is_empty() {
                let reply = peer.owed.remove(0);
                sim.send(name, reply);
            }
        }
        9 => {
            // Any acknowledgement for a packet id seen (or made up): right, wrong or out of order.
            let id = if peer.seen.is_empty() || u.ratio(1, 5)? {
                pid(u.int_in_range(1..=5)?)
            } else {
                peer.seen[u.choose_index(peer.seen.len())?]
            };
            let mut ack = Ack::new(id);
            if version.is_v5() && u.ratio(1, 4)? {
                ack.reason = *u.choose(&[
                    ReasonCode::UnspecifiedError,
                    ReasonCode::PacketIdentifierNotFound,
                    ReasonCode::NoMatchingSubscribers,
                ])?;
            }
            let packet = match u.int_in_range(0..=3)? {
                0 => Packet::PubAck(ack),
                1 => Packet::PubRec(ack),
                2 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            };
            sim.send(name, packet);
        }
        10 => {
            let mut d = Disconnect::new(ReasonCode::Success);
            if version.is_v5() {
                d.reason = *u.choose(&[
                    ReasonCode::Success,
                    ReasonCode::DisconnectWithWill,
                    ReasonCode::UnspecifiedError,
                ])?;
                d.properties.session_expiry_interval = *u.choose(&[None, Some(0), Some(60)])?;
            }
            sim.send(name, Packet::Disconnect(d));
        }
        11 => sim.drop_connection(name),
        12 => {
            let len = u.int_in_range(0..=24)?;
            let bytes = u.bytes(len)?.to_vec();
            sim.send_bytes(name, &bytes);
        }
        13 => {
            let packet = gen::packet(u, version)?;
            sim.send(name, packet);
        }
        14 => {
            for reply in std::mem::take(&mut peer.owed) {
                sim.send(name, reply);
            }
        }
        15 | 16 => sim.advance(Duration::from_millis(u.int_in_range(0..=200_000)?)),
        17 => sim.auto_persist = !sim.auto_persist,
        18 => sim.persist_all(),
        19 => {
            let flushing = u.arbitrary()?;
            sim.set_flushing(name, flushing);
        }
        20 => {
            if peer.version.is_some() {
                sim.send(name, Packet::PingReq);
            }
        }
        21 => answer_authenticator(u, sim, name)?,
        22 => {
            let redirect = u.ratio(1, 2)?.then(|| cicada_engine::Redirect {
                server_reference: "elsewhere:1883".into(),
                permanent: false,
            });
            sim.input(Input::SetRedirect { redirect });
        }
        23 => {
            let bans = if u.arbitrary()? {
                Vec::new()
            } else {
                vec![cicada_engine::limits::Ban {
                    target: cicada_engine::limits::BanTarget::parse("client", name)
                        .expect("client names are valid ban targets"),
                    until: Some(sim.now() + Duration::from_secs(u.int_in_range(0..=100)?)),
                    reason: None,
                }]
            };
            sim.input(Input::SetBans { bans });
        }
        24 => {
            let acl = u.arbitrary::<bool>()?.then(|| {
                std::sync::Arc::new(
                    cicada_engine::acl::Acl::parse(FUZZ_ACL).expect("the fuzzing ACL is valid"),
                )
            });
            sim.input(Input::SetAcl { acl });
        }
        25 => {
            if !sim.is_closed(name) {
                let conn = sim.conn(name);
                sim.input(Input::Kick {
                    conn,
                    reason: ReasonCode::AdministrativeAction,
                    why: "fuzz".into(),
                });
            }
        }
        _ => sim.advance(Duration::from_millis(u.int_in_range(0..=2_000)?)),
    }
    Ok(())
}

/// Answers the last authentication step asked for `name`'s connection (late or repeated answers
/// included: the engine must ignore what nothing waits for).
fn answer_authenticator(u: &mut Unstructured, sim: &mut Sim, name: &str) -> arbitrary::Result<()> {
    if sim.is_closed(name) {
        return Ok(());
    }
    let conn = sim.conn(name);
    let asked = sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Authenticate { conn: c, .. } if *c == conn));
    if !asked {
        return Ok(());
    }
    let data = Bytes::from_static(b"step");
    let decision = match u.int_in_range(0u8..=5)? {
        0 => cicada_engine::AuthDecision::Allow,
        1 => cicada_engine::AuthDecision::Authenticated {
            principal: cicada_engine::Principal {
                username: u.arbitrary::<bool>()?.then(|| "u1".into()),
                claims: vec![("role".into(), "r".into())],
            },
            data: None,
        },
        5 => cicada_engine::AuthDecision::Authenticated {
            principal: cicada_engine::Principal::default(),
            data: Some(data.clone()),
        },
        2 => cicada_engine::AuthDecision::AllowWithData { data },
        3 => cicada_engine::AuthDecision::Continue { data },
        _ => cicada_engine::AuthDecision::Deny {
            reason: ReasonCode::NotAuthorized,
        },
    };
    sim.input(Input::AuthDecided { conn, decision });
    Ok(())
}

/// Hands every packet the broker sent to the clients' models.
fn observe_all(sim: &mut Sim, peers: &mut [Peer; 4]) {
    for (name, peer) in NAMES.iter().zip(peers.iter_mut()) {
        if peer.version.is_some() {
            for packet in sim.recv_all(name) {
                peer.observe(&packet);
            }
        }
    }
}

/// Runs the actions `input` encodes; returns how many ran.
fn client_actions(input: &[u8]) -> usize {
    let mut u = Unstructured::new(input);
    let Ok(config) = config_from(&mut u) else {
        return 0;
    };
    let mut sim = Sim::new(config);
    let mut peers: [Peer; 4] = Default::default();
    let mut counter = 0;
    let mut steps = 0;
    while !u.is_empty() {
        let done = client_action(&mut u, &mut sim, &mut peers, &mut counter);
        steps += 1;
        observe_all(&mut sim, &mut peers);
        assert_invariants(&sim, &format!("action {steps}"));
        if done.is_err() {
            break;
        }
    }
    // Wind down: everything durable, every reader fast, every timer due, then a shutdown.
    sim.auto_persist = true;
    sim.persist_all();
    for (name, peer) in NAMES.iter().zip(peers.iter()) {
        if peer.version.is_some() {
            sim.set_flushing(name, true);
        }
    }
    assert_invariants(&sim, "persisting and flushing everything");
    sim.advance(Duration::from_secs(4000));
    assert_invariants(&sim, "letting every timer fire");
    sim.input(Input::Shutdown);
    assert_invariants(&sim, "shutdown");
    steps
}

#[test]
fn arbitrary_client_actions_never_panic_and_keep_invariants() {
    let cases = Cases::new();
    check!()
        .with_generator(scripts())
        .with_test_time(TEST_TIME)
        .for_each(|input: &Vec<u8>| cases.record(client_actions(input) > 0));
    cases.assert_some("arbitrary_client_actions_never_panic_and_keep_invariants");
}

// ---------------------------------------------------------------------------------------------------
// 2. QoS 2: at most once per subscriber, and nothing acknowledged lost

const SUB: &str = "sub";
const PUB: &str = "pub";

/// The most messages one case publishes: far below the session queue limit, so none may be dropped.
const MAX_MESSAGES: u32 = 200;

/// Where one of the publisher's QoS 2 messages is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outgoing {
    /// PUBLISH sent, no PUBREC yet.
    Sent,
    /// PUBREC received, PUBREL not sent yet.
    Received,
    /// PUBREL sent, no PUBCOMP yet.
    Released,
}

/// A persistent QoS 2 subscriber on `t/#` and a persistent publisher, both modelled as clients that
/// follow the spec: the subscriber uses method B (it stores a packet id when it delivers a message,
/// and forgets it on PUBREL), the publisher resends PUBLISH only while it has not sent PUBREL.
struct ExactlyOnce {
    sim: Sim,
    sub_version: ProtocolVersion,
    /// The subscriber's v5 Receive Maximum.
    sub_receive_maximum: Option<NonZeroU16>,
    pub_version: ProtocolVersion,
    events_seen: usize,

    sub_connects: u32,
    /// Whether the current subscriber connection's CONNACK was processed.
    sub_connack_seen: bool,
    /// A connection ended before its CONNACK was seen: resubscribe on the next CONNACK to be sure.
    sub_resubscribe_next: bool,
    resubscribe: bool,
    sub_expired: bool,
    /// Packet ids whose message was delivered to the application and whose PUBREL has not arrived.
    awaiting_pubrel: BTreeSet<u16>,
    /// Replies owed on the current connection (lost with it: the broker resends on resumption).
    sub_owed: Vec<Packet>,
    delivered: BTreeSet<Bytes>,

    pub_connects: u32,
    /// Whether the current publisher connection's CONNACK was processed (it acts only then).
    pub_ready: bool,
    flows: BTreeMap<u16, (Publish, Outgoing)>,
    next_pid: u16,
    published: u32,
    /// Payloads the broker acknowledged with PUBREC: it has taken responsibility for them.
    acknowledged: BTreeSet<Bytes>,
}

impl ExactlyOnce {
    fn new(u: &mut Unstructured) -> arbitrary::Result<ExactlyOnce> {
        let sub_version = version_from(u)?;
        let pub_version = version_from(u)?;
        // Small windows make the broker queue, hold back and resend more.
        let config = Config {
            max_inflight: *u.choose(&[1, 2, 64])?,
            send_window: *u.choose(&[1, 64, 1 << 20])?,
            ..Config::default()
        };
        let mut run = ExactlyOnce {
            sim: Sim::new(config),
            sub_version,
            sub_receive_maximum: NonZeroU16::new(*u.choose(&[0, 1, 3])?),
            pub_version,
            events_seen: 0,
            sub_connects: 0,
            sub_connack_seen: false,
            sub_resubscribe_next: false,
            resubscribe: false,
            sub_expired: false,
            awaiting_pubrel: BTreeSet::new(),
            sub_owed: Vec::new(),
            delivered: BTreeSet::new(),
            pub_connects: 0,
            pub_ready: false,
            flows: BTreeMap::new(),
            next_pid: 1,
            published: 0,
            acknowledged: BTreeSet::new(),
        };
        run.connect_sub();
        run.connect_pub();
        Ok(run)
    }

    fn connect_sub(&mut self) {
        if self.sub_connects > 0 && !self.sub_connack_seen {
            self.sub_resubscribe_next = true;
        }
        self.sub_connects += 1;
        self.sub_owed.clear();
        self.sub_connack_seen = false;
        let mut connect = persistent_connect(SUB, self.sub_version, 3600);
        if self.sub_version.is_v5() {
            connect.properties.receive_maximum = self.sub_receive_maximum;
        }
        if let Some(p) = self.sim.connect_with(SUB, connect) {
            self.on_sub(p);
        }
        self.settle();
    }

    fn connect_pub(&mut self) {
        self.pub_connects += 1;
        self.pub_ready = false;
        // The publisher's session never expires, so its QoS 2 state on both sides lives on.
        let connect = persistent_connect(PUB, self.pub_version, u32::MAX);
        if let Some(p) = self.sim.connect_with(PUB, connect) {
            self.on_pub(p);
        }
        self.settle();
    }

    fn on_sub(&mut self, packet: Packet) {
        match packet {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.reason, ReasonCode::Success, "subscriber refused");
                self.sub_connack_seen = true;
                if !ack.session_present {
                    // A new session: the client starts afresh [MQTT-4.1.0-1].
                    self.awaiting_pubrel.clear();
                    self.resubscribe = true;
                }
                if std::mem::take(&mut self.sub_resubscribe_next) {
                    self.resubscribe = true;
                }
            }
            Packet::Publish(p) => {
                let Delivery::ExactlyOnce(id) = p.delivery else {
                    panic!(
                        "a QoS 2 subscriber got {:?} for a QoS 2 publish\n{}",
                        p.delivery,
                        transcript_tail(&self.sim)
                    );
                };
                if self.awaiting_pubrel.insert(id.get()) {
                    assert!(
                        self.delivered.insert(p.payload.clone()),
                        "QoS 2 message {:?} delivered twice to the subscriber (packet id {id}, dup={})\n\
                         --- transcript (tail) ---\n{}",
                        p.payload,
                        p.dup,
                        transcript_tail(&self.sim)
                    );
                }
                self.sub_owed.push(Packet::PubRec(Ack::new(id)));
            }
            Packet::PubRel(ack) => {
                self.awaiting_pubrel.remove(&ack.packet_id.get());
                self.sub_owed.push(Packet::PubComp(Ack::new(ack.packet_id)));
            }
            Packet::SubAck(ack) => {
                assert_eq!(ack.reasons, [ReasonCode::GrantedQoS2], "SUBACK {ack:?}");
            }
            _ => {}
        }
    }

    fn on_pub(&mut self, packet: Packet) {
        match packet {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.reason, ReasonCode::Success, "publisher refused");
                if self.pub_connects > 1 {
                    assert!(
                        ack.session_present,
                        "the publisher's session never expires, yet it was not resumed\n{}",
                        transcript_tail(&self.sim)
                    );
                }
                self.pub_ready = true;
            }
            Packet::PubRec(ack) => {
                let id = ack.packet_id.get();
                let Some((p, state)) = self.flows.get_mut(&id) else {
                    return;
                };
                if ack.reason.is_error() {
                    // Refused: the exchange ends here and the message is not the broker's [MQTT-4.3.3].
                    assert_eq!(*state, Outgoing::Sent, "a refusal after PUBREC {ack:?}");
                    self.flows.remove(&id);
                    return;
                }
                if *state == Outgoing::Sent {
                    *state = Outgoing::Received;
                }
                if *state == Outgoing::Received {
                    self.acknowledged.insert(p.payload.clone());
                }
            }
            Packet::PubComp(ack) => {
                let id = ack.packet_id.get();
                if self
                    .flows
                    .get(&id)
                    .is_some_and(|(_, s)| *s == Outgoing::Released)
                {
                    self.flows.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Processes everything both clients received, resubscribing if the subscriber needs to.
    fn settle(&mut self) {
        loop {
            if std::mem::take(&mut self.resubscribe) && !self.sim.is_closed(SUB) {
                let s = subscribe_packet(&mut self.sim, SUB, "t/#", QoS::ExactlyOnce);
                self.sim.send(SUB, s);
            }
            let sub = self.sim.recv_all(SUB);
            let publ = self.sim.recv_all(PUB);
            if sub.is_empty() && publ.is_empty() {
                break;
            }
            for p in sub {
                self.on_sub(p);
            }
            for p in publ {
                self.on_pub(p);
            }
        }
        if self.sim.is_closed(PUB) {
            self.pub_ready = false;
        }
        let (expired, seen) = session_expired_since(&self.sim, self.events_seen, SUB);
        self.sub_expired |= expired;
        self.events_seen = seen;
        assert_invariants(&self.sim, "a QoS 2 step");
    }

    fn pick_flow(
        &self,
        u: &mut Unstructured,
        states: &[Outgoing],
    ) -> arbitrary::Result<Option<u16>> {
        let ids: Vec<u16> = self
            .flows
            .iter()
            .filter(|(_, (_, s))| states.contains(s))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        Ok(Some(ids[u.choose_index(ids.len())?]))
    }

    fn step(&mut self, u: &mut Unstructured) -> arbitrary::Result<()> {
        match u.int_in_range(0u8..=18)? {
            0..=3 => {
                if !self.pub_ready || self.published >= MAX_MESSAGES {
                    return Ok(());
                }
                // Packet ids cycle through 1..=8, so ids are reused once their flow completes.
                let Some(id) = (0..8u16)
                    .map(|k| (self.next_pid - 1 + k) % 8 + 1)
                    .find(|id| !self.flows.contains_key(id))
                else {
                    return Ok(());
                };
                self.next_pid = id % 8 + 1;
                self.published += 1;
                let topic = format!("t/{}", u.int_in_range(0..=2)?);
                let mut p = Publish::new(topic_name(&topic), format!("m{}", self.published));
                p.delivery = Delivery::ExactlyOnce(pid(id));
                self.flows.insert(id, (p.clone(), Outgoing::Sent));
                self.sim.send(PUB, Packet::Publish(p));
            }
            4 | 5 => {
                // Resend a PUBLISH (DUP) not yet released: before or after its PUBREC.
                if !self.pub_ready {
                    return Ok(());
                }
                if let Some(id) = self.pick_flow(u, &[Outgoing::Sent, Outgoing::Received])? {
                    let mut p = self.flows[&id].0.clone();
                    p.dup = true;
                    self.sim.send(PUB, Packet::Publish(p));
                }
            }
            6 | 7 => {
                // PUBREL after PUBREC, or again after an earlier PUBREL.
                if !self.pub_ready {
                    return Ok(());
                }
                if let Some(id) = self.pick_flow(u, &[Outgoing::Received, Outgoing::Released])? {
                    if let Some(flow) = self.flows.get_mut(&id) {
                        flow.1 = Outgoing::Released;
                    }
                    self.sim.send(PUB, Packet::PubRel(Ack::new(pid(id))));
                }
            }
            8 | 9 => {
                if !self.sim.is_closed(SUB) && !self.sub_owed.is_empty() {
                    let reply = self.sub_owed.remove(0);
                    self.sim.send(SUB, reply);
                }
            }
            10 => {
                if !self.sim.is_closed(SUB) {
                    for reply in std::mem::take(&mut self.sub_owed) {
                        self.sim.send(SUB, reply);
                    }
                }
            }
            11 => {
                self.sim.drop_connection(SUB);
                self.sub_owed.clear();
            }
            12 => self.connect_sub(),
            13 => {
                self.sim.drop_connection(PUB);
                self.pub_ready = false;
            }
            14 => self.connect_pub(),
            15 => self
                .sim
                .advance(Duration::from_millis(u.int_in_range(0..=200_000)?)),
            16 => {
                if u.arbitrary()? {
                    self.sim.auto_persist = !self.sim.auto_persist;
                } else {
                    self.sim.persist_all();
                }
            }
            17 => {
                // A slow reader, or a fast one again.
                let flushing = u.arbitrary()?;
                self.sim.set_flushing(SUB, flushing);
            }
            _ => {
                // A normal DISCONNECT: the session stays.
                if !self.sim.is_closed(SUB) {
                    self.sim.send(
                        SUB,
                        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
                    );
                    self.sub_owed.clear();
                }
            }
        }
        Ok(())
    }

    /// Lets every flow complete with the subscriber online and storage keeping up. Returns whether the
    /// liveness check applied (the subscriber's session never expired).
    fn finish(&mut self) -> bool {
        self.sim.auto_persist = true;
        self.sim.persist_all();
        self.settle();
        if self.sim.is_closed(SUB) {
            self.connect_sub();
        }
        self.sim.set_flushing(SUB, true);
        self.settle();
        for _ in 0..10_000 {
            if self.sub_owed.is_empty() {
                break;
            }
            for reply in std::mem::take(&mut self.sub_owed) {
                self.sim.send(SUB, reply);
            }
            self.settle();
        }
        assert!(self.sub_owed.is_empty(), "QoS 2 flows never finish");
        let dropped =
            self.sim.events.iter().any(
                |e| matches!(e, Event::MessageDropped { client_id, .. } if &**client_id == SUB),
            );
        assert!(
            self.sub_expired || !dropped,
            "a message for the subscriber was dropped below every limit\n{}",
            transcript_tail(&self.sim)
        );
        if self.sub_expired {
            return false;
        }
        let lost: Vec<&Bytes> = self.acknowledged.difference(&self.delivered).collect();
        assert!(
            lost.is_empty(),
            "messages acknowledged with PUBREC never reached the subscriber: {lost:?}\n\
             --- transcript (tail) ---\n{}",
            transcript_tail(&self.sim)
        );
        true
    }
}

/// Runs one QoS 2 case: the subscriber's version, whether the liveness check applied, and how many
/// messages were acknowledged. `None` when the input is too short to set the case up.
fn exactly_once(input: &[u8]) -> Option<(ProtocolVersion, bool, usize)> {
    let mut u = Unstructured::new(input);
    let mut run = ExactlyOnce::new(&mut u).ok()?;
    let sub_version = run.sub_version;
    while !u.is_empty() {
        let done = run.step(&mut u);
        run.settle();
        if done.is_err() {
            break;
        }
    }
    let checked = run.finish();
    Some((sub_version, checked, run.acknowledged.len()))
}

#[test]
fn qos2_is_delivered_at_most_once_per_subscriber() {
    let v5 = Cases::new();
    let v3 = Cases::new();
    let liveness = Cases::new();
    check!()
        .with_generator(scripts())
        .with_test_time(TEST_TIME)
        .for_each(|input: &Vec<u8>| {
            if let Some((version, checked, acknowledged)) = exactly_once(input) {
                if version.is_v5() {
                    v5.record(true);
                } else {
                    v3.record(true);
                }
                liveness.record(checked && acknowledged > 0);
            }
        });
    v5.assert_some("qos2_is_delivered_at_most_once_per_subscriber (v5 subscriber)");
    v3.assert_some("qos2_is_delivered_at_most_once_per_subscriber (3.1.1 subscriber)");
    liveness.assert_some("qos2_is_delivered_at_most_once_per_subscriber (acknowledged messages)");
}

// ---------------------------------------------------------------------------------------------------
// 3. No acknowledgement before the storage batch it depends on is durable

/// The most publishes per case: below the broker's Receive Maximum even if none is acknowledged.
const MAX_GATED_PUBLISHES: u32 = 300;

/// A persistent subscriber on `t/#` and a publisher, with storage reported durable only on
/// `persist_all`.
struct Durability {
    sim: Sim,
    sub_version: ProtocolVersion,
    events_seen: usize,
    /// Publishes waiting for their PUBACK (QoS 1) or PUBREC (QoS 2), by packet id.
    waiting: BTreeMap<u16, QoS>,
    /// The batch each waiting publish's acknowledgement depends on: the one its PUBLISH caused.
    gates: BTreeMap<u16, PersistSeq>,
    /// The batch recording, for each packet id, the subscriber's latest QoS 2 message sent under it.
    sub_qos2_ids: BTreeMap<u16, PersistSeq>,
    /// The batch recording, for each packet id, that the subscriber's message under it was released.
    sub_released: BTreeMap<u16, PersistSeq>,
    sub_owed: Vec<Packet>,
    published: u32,
    /// Acknowledgements received that had been gated on a batch.
    checked: usize,
}

impl Durability {
    fn new(u: &mut Unstructured) -> arbitrary::Result<Durability> {
        let sub_version = version_from(u)?;
        let pub_version = version_from(u)?;
        let sub_qos = *u.choose(&[QoS::AtLeastOnce, QoS::ExactlyOnce])?;
        let pub_persistent: bool = u.arbitrary()?;
        let mut sim = Sim::new(Config::default());
        sim.connect_with(SUB, persistent_connect(SUB, sub_version, 3600));
        let s = subscribe_packet(&mut sim, SUB, "t/#", sub_qos);
        sim.send(SUB, s);
        let connect = if pub_persistent {
            persistent_connect(PUB, pub_version, 3600)
        } else {
            let mut c = Sim::connect_packet(PUB, pub_version);
            c.keep_alive = 0;
            c
        };
        sim.connect_with(PUB, connect);
        sim.recv_all(SUB);
        sim.recv_all(PUB);
        sim.auto_persist = false;
        Ok(Durability {
            events_seen: sim.events.len(),
            sim,
            sub_version,
            waiting: BTreeMap::new(),
            gates: BTreeMap::new(),
            sub_qos2_ids: BTreeMap::new(),
            sub_released: BTreeMap::new(),
            sub_owed: Vec::new(),
            published: 0,
            checked: 0,
        })
    }

    fn is_pending(&self, seq: PersistSeq) -> bool {
        self.sim.pending_batches.contains(&seq)
    }

    /// Publishes at `qos` and records the batch the acknowledgement must wait for, if the publish
    /// caused one.
    fn publish(&mut self, qos: QoS) {
        if self.published >= MAX_GATED_PUBLISHES {
            return;
        }
        self.published += 1;
        let before = self.sim.pending_batches.len();
        let payload = format!("m{}", self.published);
        let p = self.sim.publish(PUB, "t/x", qos, &payload);
        let Some(id) = p.delivery.packet_id() else {
            return;
        };
        self.waiting.insert(id.get(), qos);
        if let Some(&seq) = self.sim.pending_batches.get(before) {
            self.gates.insert(id.get(), seq);
        }
    }

    /// Processes what both clients received; checks every acknowledgement against storage.
    fn drain(&mut self) {
        for event in &self.sim.events[self.events_seen..] {
            let Event::Persist { seq, ops } = event else {
                continue;
            };
            for op in ops {
                if let StoreOp::PutMessage {
                    client_id,
                    qos: QoS::ExactlyOnce,
                    state: OutboundState::Sent(id),
                    ..
                } = op
                {
                    if &**client_id == SUB {
                        self.sub_qos2_ids.insert(*id, *seq);
                    }
                }
                if let StoreOp::PutMessage {
                    client_id,
                    state: OutboundState::Released(id),
                    ..
                } = op
                {
                    if &**client_id == SUB {
                        self.sub_released.insert(*id, *seq);
                    }
                }
            }
        }
        self.events_seen = self.sim.events.len();
        for packet in self.sim.recv_all(SUB) {
            match packet {
                Packet::Publish(p) => match p.delivery {
                    Delivery::AtMostOnce => {}
                    Delivery::AtLeastOnce(id) => self.sub_owed.push(Packet::PubAck(Ack::new(id))),
                    Delivery::ExactlyOnce(id) => {
                        // The packet id of a QoS 2 message must be durable before the client sees it.
                        if let Some(&seq) = self.sub_qos2_ids.get(&id.get()) {
                            assert!(
                                !self.is_pending(seq),
                                "QoS 2 PUBLISH pid={id} reached the subscriber before batch {} \
                                 recording its packet id is durable\n{}",
                                seq.0,
                                transcript_tail(&self.sim)
                            );
                        }
                        self.sub_owed.push(Packet::PubRec(Ack::new(id)));
                    }
                },
                Packet::PubRel(a) => {
                    // Released must be durable first, or a restart resends a completed PUBLISH.
                    if let Some(&seq) = self.sub_released.get(&a.packet_id.get()) {
                        assert!(
                            !self.is_pending(seq),
                            "PUBREL pid={} reached the subscriber before batch {} recording the \
                             release is durable\n{}",
                            a.packet_id,
                            seq.0,
                            transcript_tail(&self.sim)
                        );
                    }
                    self.sub_owed.push(Packet::PubComp(Ack::new(a.packet_id)))
                }
                _ => {}
            }
        }
        for packet in self.sim.recv_all(PUB) {
            let (ack, qos) = match &packet {
                Packet::PubAck(a) => (a.packet_id, QoS::AtLeastOnce),
                Packet::PubRec(a) => (a.packet_id, QoS::ExactlyOnce),
                _ => continue,
            };
            assert_eq!(
                self.waiting.remove(&ack.get()),
                Some(qos),
                "{packet} answers no publish waiting for it\n{}",
                transcript_tail(&self.sim)
            );
            if let Some(seq) = self.gates.remove(&ack.get()) {
                assert!(
                    !self.is_pending(seq),
                    "{packet} sent before storage batch {} it depends on is durable (pending: \
                     {:?})\n--- transcript (tail) ---\n{}",
                    seq.0,
                    self.sim.pending_batches,
                    transcript_tail(&self.sim)
                );
                self.checked += 1;
            }
            if qos == QoS::ExactlyOnce {
                self.sim.send(PUB, Packet::PubRel(Ack::new(ack)));
            }
        }
        assert_invariants(&self.sim, "a durability step");
    }

    /// Reports every batch durable: every acknowledgement must now have arrived.
    fn persist_all(&mut self) {
        self.sim.persist_all();
        self.drain();
        assert!(
            self.waiting.is_empty(),
            "every batch is durable, yet publishes {:?} have no PUBACK/PUBREC\n{}",
            self.waiting.keys().collect::<Vec<_>>(),
            transcript_tail(&self.sim)
        );
        assert!(self.gates.is_empty(), "acknowledgements unaccounted for");
    }

    fn step(&mut self, u: &mut Unstructured) -> arbitrary::Result<()> {
        match u.int_in_range(0u8..=9)? {
            0..=1 => self.publish(QoS::AtLeastOnce),
            2..=4 => self.publish(QoS::ExactlyOnce),
            5 => self.persist_all(),
            6 => {
                for reply in std::mem::take(&mut self.sub_owed) {
                    self.sim.send(SUB, reply);
                }
            }
            7 => {
                self.sim.drop_connection(SUB);
                self.sub_owed.clear();
                let connect = persistent_connect(SUB, self.sub_version, 3600);
                self.sim.connect_with(SUB, connect);
            }
            8 => {
                self.sim.publish(PUB, "t/y", QoS::AtMostOnce, "zero");
            }
            _ => self
                .sim
                .advance(Duration::from_millis(u.int_in_range(0..=10_000)?)),
        }
        Ok(())
    }
}

/// Runs one durability case; returns how many acknowledgements were checked against a pending batch.
fn acks_wait_for_storage(input: &[u8]) -> usize {
    let mut u = Unstructured::new(input);
    let Ok(mut run) = Durability::new(&mut u) else {
        return 0;
    };
    while !u.is_empty() {
        let done = run.step(&mut u);
        run.drain();
        if done.is_err() {
            break;
        }
    }
    run.persist_all();
    run.checked
}

#[test]
fn no_ack_before_persisted() {
    let cases = Cases::new();
    check!()
        .with_generator(scripts())
        .with_test_time(TEST_TIME)
        .for_each(|input: &Vec<u8>| cases.record(acks_wait_for_storage(input) > 0));
    cases.assert_some("no_ack_before_persisted");
}

// ---------------------------------------------------------------------------------------------------
// 4. Determinism

/// A fixed scenario: several clients of both versions, wildcards, retained messages, QoS 0/1/2 both
/// ways, a will on a dropped connection, a keep-alive timeout and an assigned client id. Returns the
/// transcript, the events and the assigned id.
fn scenario(seed: u64) -> (String, Vec<Event>, ByteString) {
    use ProtocolVersion::{V3_1_1, V5};
    let mut sim = Sim::with_seed(Config::default(), seed);

    // An anonymous v5 client: the broker assigns its id from the seeded generator.
    let ack = sim.connect_with("anon", Sim::connect_packet("", V5));
    let assigned = match ack {
        Some(Packet::ConnAck(ack)) => ack
            .properties
            .assigned_client_identifier
            .expect("an empty v5 client id gets an assigned one"),
        other => panic!("expected CONNACK, got {other:?}"),
    };

    sim.connect("s1", V5);
    sim.subscribe("s1", "a/+", QoS::AtLeastOnce);
    sim.subscribe("s1", "$SYS/#", QoS::AtMostOnce);
    sim.connect_with("s2", persistent_connect("s2", V3_1_1, 0));
    sim.subscribe("s2", "#", QoS::ExactlyOnce);
    sim.connect("p", V3_1_1);

    let mut retained = Publish::new(topic_name("a/r"), "kept");
    retained.retain = true;
    retained.delivery = Delivery::AtLeastOnce(sim.next_packet_id("p"));
    sim.send("p", Packet::Publish(retained));
    sim.publish("p", "a/b", QoS::AtMostOnce, "zero");
    sim.publish("p", "a/b", QoS::AtLeastOnce, "one");
    let two = sim.publish("p", "a/b/c", QoS::ExactlyOnce, "two");
    let two_id = two.delivery.packet_id().expect("QoS 2 has a packet id");
    sim.send("p", Packet::PubRel(Ack::new(two_id)));

    // Everyone completes what they received.
    for name in ["s1", "s2", "p"] {
        for packet in sim.recv_all(name) {
            let reply = match packet {
                Packet::Publish(p) => match p.delivery {
                    Delivery::AtMostOnce => None,
                    Delivery::AtLeastOnce(id) => Some(Packet::PubAck(Ack::new(id))),
                    Delivery::ExactlyOnce(id) => Some(Packet::PubRec(Ack::new(id))),
                },
                Packet::PubRel(a) => Some(Packet::PubComp(Ack::new(a.packet_id))),
                _ => None,
            };
            if let Some(reply) = reply {
                sim.send(name, reply);
            }
        }
    }

    // The anonymous client gets the retained message on a wildcard subscription.
    sim.subscribe("anon", "a/#", QoS::ExactlyOnce);

    // A will on a dropped connection, and another on a keep-alive timeout.
    let mut w = Sim::connect_packet("w", V5);
    w.will = Some(Will {
        topic: topic_name("a/will"),
        payload: Bytes::from_static(b"w gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    sim.connect_with("w", w);
    sim.drop_connection("w");
    let mut k = Sim::connect_packet("k", V3_1_1);
    k.keep_alive = 2;
    k.will = Some(Will {
        topic: topic_name("a/k"),
        payload: Bytes::from_static(b"k silent"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Default::default(),
    });
    sim.connect_with("k", k);

    // The persistent subscriber goes away; messages queue for it; it comes back.
    sim.drop_connection("s2");
    sim.publish("p", "b/c", QoS::ExactlyOnce, "while away");
    sim.publish("p", "a/x", QoS::AtLeastOnce, "also while away");
    sim.advance(Duration::from_secs(5));
    sim.connect_with("s2", persistent_connect("s2", V3_1_1, 0));
    sim.advance(Duration::from_secs(120));

    let transcript = sim.transcript().to_string();
    assert!(
        transcript.contains("timeout (keep alive)"),
        "the scenario must hit a keep-alive timeout:\n{transcript}"
    );
    assert!(
        transcript.contains("k silent") && transcript.contains("w gone"),
        "the scenario must publish both wills:\n{transcript}"
    );
    assert!(
        transcript.contains(&*assigned),
        "the transcript must show the assigned id {assigned}:\n{transcript}"
    );
    (transcript, sim.events.clone(), assigned)
}

#[test]
fn same_seed_same_inputs_same_outputs() {
    let (first, first_events, first_id) = scenario(42);
    let (second, second_events, second_id) = scenario(42);
    assert_eq!(first_id, second_id, "same seed, same assigned id");
    assert!(
        first.as_bytes() == second.as_bytes(),
        "same seed, different transcripts:\n--- first ---\n{first}\n--- second ---\n{second}"
    );
    assert_eq!(first_events, second_events, "same seed, different events");

    let (other, _, other_id) = scenario(43);
    assert_ne!(first_id, other_id, "another seed must assign another id");
    assert_ne!(first, other, "the assigned id appears in the transcript");
    assert_eq!(
        first.replace(&*first_id, "<id>"),
        other.replace(&*other_id, "<id>"),
        "apart from the assigned id, the seed changes nothing"
    );
}
