//! The engine's guards, driven without sockets: the ACL on PUBLISH, SUBSCRIBE and wills (and its
//! reload), principals from the authenticator, bans, the connect rate per address, publish rate
//! limits under each overload policy, and the subscription quota.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use cicada_engine::acl::Acl;
use cicada_engine::codec::{Packet, ProtocolVersion, QoS, ReasonCode, Will};
use cicada_engine::limits::{Ban, BanTarget};
use cicada_engine::sim::{expect, Sim};
use cicada_engine::{
    AuthDecision, Authentication, Config, ConnMeta, Event, Input, OverloadPolicy, Principal,
    Quotas, Rate, RateLimit, Refusal,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

fn acl(text: &str) -> Option<Arc<Acl>> {
    Some(Arc::new(Acl::parse(text).expect("valid ACL")))
}

fn with_acl(text: &str) -> Sim {
    Sim::new(Config {
        acl: acl(text),
        ..Config::default()
    })
}

/// Connects `name` with `username` (the engine trusts it: authentication is off in these tests).
fn connect_as(sim: &mut Sim, name: &str, username: Option<&str>, version: ProtocolVersion) {
    let mut connect = Sim::connect_packet(name, version);
    connect.username = username.map(Into::into);
    let ack = expect::connack(sim.connect_with(name, connect));
    assert_eq!(ack.reason, ReasonCode::Success, "{name} connects");
}

fn ack_reason(packet: Option<Packet>) -> ReasonCode {
    match packet {
        Some(Packet::PubAck(a) | Packet::PubRec(a)) => a.reason,
        other => panic!("expected PUBACK or PUBREC, got {other:?}"),
    }
}

fn refusals(sim: &Sim) -> Vec<Refusal> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Refused { what, .. } => Some(what.clone()),
            _ => None,
        })
        .collect()
}

const RULES: &str = r##"
allow user "alice" publish,retain "alice/#"
allow all publish "open/#" qos <= 1
allow client "dev-*" publish "devices/%c/#"
deny all subscribe "secret/#"
allow all subscribe "#" qos <= 1
"##;

#[test]
fn denied_publish_v5_gets_0x87_at_qos_1_and_2_and_silence_at_qos_0() {
    let mut sim = with_acl(RULES);
    connect_as(&mut sim, "watcher", None, V5);
    expect::suback_of(sim.subscribe("watcher", "alice/#", QoS::AtLeastOnce));
    expect::suback_of(sim.subscribe("watcher", "open/#", QoS::AtLeastOnce));
    connect_as(&mut sim, "bob", Some("bob"), V5);

    sim.publish("bob", "alice/x", QoS::AtMostOnce, "q0");
    assert_eq!(sim.recv("bob"), None, "QoS 0 is dropped silently");
    sim.publish("bob", "alice/x", QoS::AtLeastOnce, "q1");
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::NotAuthorized);
    sim.publish("bob", "alice/x", QoS::ExactlyOnce, "q2");
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::NotAuthorized);
    assert!(expect::payloads(&sim.recv_all("watcher")).is_empty());
    assert_eq!(sim.engine.stats().publishes_denied, 3);
    assert!(refusals(&sim)
        .iter()
        .any(|r| matches!(r, Refusal::PublishDenied { topic } if topic.as_str() == "alice/x")));

    // Allowed: alice on her tree, anyone on open/ up to QoS 1.
    connect_as(&mut sim, "alice", Some("alice"), V5);
    sim.publish("alice", "alice/x", QoS::AtLeastOnce, "hers");
    assert_eq!(ack_reason(sim.recv("alice")), ReasonCode::Success);
    sim.publish("bob", "open/x", QoS::AtLeastOnce, "open");
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::Success);
    // The QoS cap: QoS 2 on open/ matches no allow rule.
    sim.publish("bob", "open/x", QoS::ExactlyOnce, "too high");
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::NotAuthorized);
    assert_eq!(expect::payloads(&sim.recv_all("watcher")), ["hers", "open"]);
}

#[test]
fn denied_publish_v3_is_acknowledged_but_not_delivered() {
    let mut sim = with_acl(RULES);
    connect_as(&mut sim, "watcher", None, V3);
    expect::suback_of(sim.subscribe("watcher", "alice/#", QoS::AtLeastOnce));
    connect_as(&mut sim, "bob", Some("bob"), V3);
    sim.publish("bob", "alice/x", QoS::AtLeastOnce, "q1");
    // 3.1.1 has no way to say no: the PUBACK is a plain one, the message goes nowhere.
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::Success);
    sim.publish("bob", "alice/x", QoS::AtMostOnce, "q0");
    assert!(expect::payloads(&sim.recv_all("watcher")).is_empty());
    assert_eq!(sim.engine.stats().publishes_denied, 2);
    assert!(!sim.is_closed("bob"));
}

#[test]
fn client_id_placeholder_confines_each_device_to_its_tree() {
    let mut sim = with_acl(RULES);
    connect_as(&mut sim, "dev-1", None, V5);
    sim.publish("dev-1", "devices/dev-1/temp", QoS::AtLeastOnce, "mine");
    assert_eq!(ack_reason(sim.recv("dev-1")), ReasonCode::Success);
    sim.publish("dev-1", "devices/dev-2/temp", QoS::AtLeastOnce, "theirs");
    assert_eq!(ack_reason(sim.recv("dev-1")), ReasonCode::NotAuthorized);
}

/// Publishes a retained message from `name`.
fn publish_retained(sim: &mut Sim, name: &str, topic: &str, qos: QoS) {
    let mut p = cicada_engine::codec::Publish::new(
        cicada_engine::codec::TopicName::new(topic.to_string()).expect("topic"),
        bytes::Bytes::from_static(b"keep"),
    );
    p.retain = true;
    p.delivery = match qos {
        QoS::AtMostOnce => cicada_engine::codec::Delivery::AtMostOnce,
        _ => cicada_engine::codec::Delivery::AtLeastOnce(sim.next_packet_id(name)),
    };
    sim.send(name, Packet::Publish(p));
}

#[test]
fn retained_publish_needs_the_retain_permission_too() {
    let mut sim = with_acl(RULES);
    connect_as(&mut sim, "bob", Some("bob"), V5);
    publish_retained(&mut sim, "bob", "open/r", QoS::AtLeastOnce);
    assert_eq!(ack_reason(sim.recv("bob")), ReasonCode::NotAuthorized);
    assert_eq!(sim.engine.retained_count(), 0);

    connect_as(&mut sim, "alice", Some("alice"), V5);
    publish_retained(&mut sim, "alice", "alice/r", QoS::AtLeastOnce);
    assert_eq!(ack_reason(sim.recv("alice")), ReasonCode::Success);
    assert_eq!(sim.engine.retained_count(), 1);
}

#[test]
fn denied_subscription_gets_0x80_in_v5_and_v3_and_caps_lower_the_granted_qos() {
    for version in [V5, V3] {
        let mut sim = with_acl(RULES);
        connect_as(&mut sim, "c", None, version);
        let ack = expect::suback_of(sim.subscribe("c", "secret/plans", QoS::AtMostOnce));
        assert_eq!(ack.reasons, [ReasonCode::UnspecifiedError], "{version}");
        // `#` intersects secret/#, which is denied first.
        let ack = expect::suback_of(sim.subscribe("c", "#", QoS::AtMostOnce));
        assert_eq!(ack.reasons, [ReasonCode::UnspecifiedError], "{version}");
        let ack = expect::suback_of(sim.subscribe("c", "news/+", QoS::ExactlyOnce));
        assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1], "{version}");
        assert_eq!(sim.engine.stats().subscriptions_denied, 2);
        assert_eq!(sim.engine.subscription_count(), 1);
    }
}

#[test]
fn a_will_the_acl_denies_refuses_the_connect() {
    let mut sim = with_acl(RULES);
    let mut connect = Sim::connect_packet("bob", V5);
    connect.username = Some("bob".into());
    connect.will = Some(Will {
        topic: cicada_engine::codec::TopicName::new("alice/last".to_string()).expect("topic"),
        payload: bytes::Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let ack = expect::connack(sim.connect_with("bob", connect));
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    assert!(sim.is_closed("bob"));
    assert!(refusals(&sim)
        .iter()
        .any(|r| matches!(r, Refusal::WillDenied { .. })));
}

#[test]
fn an_acl_reload_revokes_subscriptions_it_denies_without_disconnecting() {
    let mut sim = with_acl("allow all subscribe \"#\"\nallow all publish \"#\"\n");
    connect_as(&mut sim, "sub", None, V5);
    expect::suback_of(sim.subscribe("sub", "news/#", QoS::AtLeastOnce));
    expect::suback_of(sim.subscribe("sub", "chat/#", QoS::AtLeastOnce));
    connect_as(&mut sim, "pub", None, V5);
    sim.input(Input::SetAcl {
        acl: acl(
            "deny all subscribe \"news/#\"\nallow all subscribe \"#\"\nallow all publish \"#\"\n",
        ),
    });
    assert!(!sim.is_closed("sub"), "nobody is disconnected by a reload");
    assert_eq!(sim.engine.subscription_count(), 1);
    sim.publish("pub", "news/1", QoS::AtMostOnce, "news");
    sim.publish("pub", "chat/1", QoS::AtMostOnce, "chat");
    assert_eq!(expect::payloads(&sim.recv_all("sub")), ["chat"]);
    assert!(refusals(&sim)
        .iter()
        .any(|r| matches!(r, Refusal::SubscriptionRevoked { filter } if &**filter == "news/#")));
}

#[test]
fn the_principal_from_the_authenticator_is_what_the_acl_sees() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        acl: acl("allow claim \"role\" \"admin\" publish \"admin/#\"\nallow user \"alice\" publish \"alice/#\"\n"),
        ..Config::default()
    });
    let mut connect = Sim::connect_packet("c", V5);
    // The client claims to be bob; the authenticator proved alice with an admin claim.
    connect.username = Some("bob".into());
    sim.open("c");
    sim.set_version("c", V5);
    sim.send("c", Packet::Connect(Box::new(connect)));
    let conn = sim.conn("c");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Authenticated {
            principal: Principal {
                username: Some("alice".into()),
                claims: vec![("role".into(), "admin".into())],
            },
            data: None,
        },
    });
    assert_eq!(expect::connack(sim.recv("c")).reason, ReasonCode::Success);
    sim.publish("c", "alice/x", QoS::AtLeastOnce, "a");
    assert_eq!(ack_reason(sim.recv("c")), ReasonCode::Success);
    sim.publish("c", "admin/x", QoS::AtLeastOnce, "b");
    assert_eq!(ack_reason(sim.recv("c")), ReasonCode::Success);
    sim.publish("c", "bob/x", QoS::AtLeastOnce, "c");
    assert_eq!(ack_reason(sim.recv("c")), ReasonCode::NotAuthorized);
}

fn peer(name: &str, address: &str) -> ConnMeta {
    ConnMeta {
        peer: address.to_string(),
        listener: format!("test:{name}"),
        ..ConnMeta::default()
    }
}

fn connect_from(sim: &mut Sim, name: &str, address: &str, version: ProtocolVersion) -> ReasonCode {
    sim.open_with(name, peer(name, address));
    sim.set_version(name, version);
    sim.send(
        name,
        Packet::Connect(Box::new(Sim::connect_packet(name, version))),
    );
    expect::connack(sim.recv(name)).reason
}

#[test]
fn bans_refuse_connects_with_0x8a_and_disconnect_connected_clients_with_0x98() {
    let mut sim = Sim::new(Config::default());
    connect_as(&mut sim, "bad-2", None, V5);
    connect_as(&mut sim, "good", None, V5);
    let until = sim.now() + Duration::from_secs(60);
    sim.input(Input::SetBans {
        bans: vec![
            Ban {
                target: BanTarget::parse("client", "bad-*").expect("ban"),
                until: Some(until),
                reason: None,
            },
            Ban {
                target: BanTarget::parse("address", "10.9.0.0/16").expect("ban"),
                until: None,
                reason: Some("abuse".into()),
            },
        ],
    });
    let d = expect::disconnect_of(sim.recv("bad-2"));
    assert_eq!(d.reason, ReasonCode::AdministrativeAction);
    assert!(sim.is_closed("bad-2"));
    assert!(!sim.is_closed("good"));

    assert_eq!(
        connect_from(&mut sim, "bad-3", "127.0.0.1:4000", V5),
        ReasonCode::Banned
    );
    assert_eq!(
        connect_from(&mut sim, "other", "10.9.3.4:4000", V5),
        ReasonCode::Banned
    );
    // 3.1.1 has no "banned": not authorized (0x05).
    assert_eq!(
        connect_from(&mut sim, "other3", "10.9.3.4:4001", V3),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        connect_from(&mut sim, "fine", "10.8.3.4:4000", V5),
        ReasonCode::Success
    );
    assert_eq!(sim.engine.stats().connects_banned, 3);
    // The client ban expires.
    sim.advance(Duration::from_secs(61));
    assert_eq!(
        connect_from(&mut sim, "bad-4", "127.0.0.1:4002", V5),
        ReasonCode::Success
    );
}

fn per_sec(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).expect("non-zero")
}

#[test]
fn the_connect_rate_per_address_refuses_a_storm_with_0x9f() {
    let mut sim = Sim::new(Config {
        quotas: Quotas {
            connect_rate_per_address: Some(Rate {
                per_sec: per_sec(1),
                burst: per_sec(2),
            }),
            ..Quotas::default()
        },
        ..Config::default()
    });
    let from = "192.0.2.7:1000";
    assert_eq!(connect_from(&mut sim, "a", from, V5), ReasonCode::Success);
    assert_eq!(connect_from(&mut sim, "b", from, V5), ReasonCode::Success);
    assert_eq!(
        connect_from(&mut sim, "c", from, V5),
        ReasonCode::ConnectionRateExceeded
    );
    assert_eq!(
        connect_from(&mut sim, "d", from, V3),
        ReasonCode::ServerUnavailable,
        "3.1.1 hears server unavailable"
    );
    // Another address is not affected; the first one recovers with time.
    assert_eq!(
        connect_from(&mut sim, "e", "192.0.2.8:1000", V5),
        ReasonCode::Success
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(connect_from(&mut sim, "f", from, V5), ReasonCode::Success);
    assert_eq!(sim.engine.stats().connects_rate_limited, 2);
}

fn rate_limited(policy: OverloadPolicy) -> Sim {
    Sim::new(Config {
        quotas: Quotas {
            publish_messages: Some(RateLimit {
                rate: Rate {
                    per_sec: per_sec(10),
                    burst: per_sec(5),
                },
                policy,
            }),
            ..Quotas::default()
        },
        ..Config::default()
    })
}

#[test]
fn throttling_holds_a_flood_back_and_loses_nothing() {
    let mut sim = rate_limited(OverloadPolicy::Throttle);
    connect_as(&mut sim, "sub", None, V5);
    expect::suback_of(sim.subscribe("sub", "t", QoS::AtLeastOnce));
    connect_as(&mut sim, "flood", None, V5);
    for i in 0..9 {
        sim.publish("flood", "t", QoS::AtLeastOnce, &i.to_string());
    }
    // The burst of 5 passes at once; the sixth waits, and so does everything behind it.
    let acks = sim.recv_all("flood").len();
    assert_eq!(acks, 5);
    let flow = |sim: &Sim| {
        sim.events
            .iter()
            .filter_map(|e| match e {
                Event::ReadPaused { .. } => Some("paused"),
                Event::ReadResumed { .. } => Some("resumed"),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(flow(&sim), ["paused"], "the shell is told to stop reading");
    assert_eq!(
        sim.engine.poll_timeout(),
        Some(sim.now() + Duration::from_millis(100))
    );
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.recv_all("flood").len(), 1, "one more per 100 ms");
    assert_eq!(
        flow(&sim),
        ["paused"],
        "still paused while a backlog remains"
    );
    sim.advance(Duration::from_millis(300));
    assert_eq!(sim.recv_all("flood").len(), 3);
    assert_eq!(
        flow(&sim),
        ["paused", "resumed"],
        "reading resumes once the backlog is handled"
    );
    assert!(!sim.is_closed("flood"));
    let got = expect::payloads(&sim.recv_all("sub"));
    assert_eq!(got, ["0", "1", "2", "3", "4", "5", "6", "7", "8"]);
}

#[test]
fn the_drop_policy_answers_0x97_and_counts() {
    let mut sim = rate_limited(OverloadPolicy::Drop);
    connect_as(&mut sim, "flood", None, V5);
    for i in 0..7 {
        sim.publish("flood", "t", QoS::AtLeastOnce, &i.to_string());
    }
    let reasons: Vec<ReasonCode> = (0..7).map(|_| ack_reason(sim.recv("flood"))).collect();
    assert_eq!(reasons[..5], [ReasonCode::Success; 5]);
    assert_eq!(reasons[5..], [ReasonCode::QuotaExceeded; 2]);
    assert_eq!(sim.engine.stats().publishes_dropped_by_quota, 2);
}

#[test]
fn the_disconnect_policy_closes_with_0x96() {
    let mut sim = rate_limited(OverloadPolicy::Disconnect);
    connect_as(&mut sim, "flood", None, V5);
    for i in 0..6 {
        sim.publish("flood", "t", QoS::AtMostOnce, &i.to_string());
    }
    let d = expect::disconnect_of(sim.recv("flood"));
    assert_eq!(d.reason, ReasonCode::MessageRateTooHigh);
    assert!(sim.is_closed("flood"));
}

#[test]
fn a_byte_rate_limits_payload_volume() {
    let mut sim = Sim::new(Config {
        quotas: Quotas {
            publish_bytes: Some(RateLimit {
                rate: Rate {
                    per_sec: per_sec(100),
                    burst: per_sec(100),
                },
                policy: OverloadPolicy::Drop,
            }),
            ..Quotas::default()
        },
        ..Config::default()
    });
    connect_as(&mut sim, "c", None, V5);
    let fifty = "x".repeat(50);
    sim.publish("c", "t", QoS::AtLeastOnce, &fifty);
    sim.publish("c", "t", QoS::AtLeastOnce, &fifty);
    sim.publish("c", "t", QoS::AtLeastOnce, &fifty);
    let reasons: Vec<ReasonCode> = (0..3).map(|_| ack_reason(sim.recv("c"))).collect();
    assert_eq!(
        reasons,
        [
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    sim.advance(Duration::from_millis(500));
    sim.publish("c", "t", QoS::AtLeastOnce, &fifty);
    assert_eq!(ack_reason(sim.recv("c")), ReasonCode::Success);
}

#[test]
fn the_subscription_quota_refuses_or_disconnects() {
    let quota = |policy| {
        Sim::new(Config {
            quotas: Quotas {
                max_subscriptions: Some((2, policy)),
                ..Quotas::default()
            },
            ..Config::default()
        })
    };
    for (version, refused) in [
        (V5, ReasonCode::QuotaExceeded),
        (V3, ReasonCode::UnspecifiedError),
    ] {
        let mut sim = quota(OverloadPolicy::Drop);
        connect_as(&mut sim, "c", None, version);
        expect::suback_of(sim.subscribe("c", "a", QoS::AtMostOnce));
        expect::suback_of(sim.subscribe("c", "b", QoS::AtMostOnce));
        let ack = expect::suback_of(sim.subscribe("c", "c", QoS::AtMostOnce));
        assert_eq!(ack.reasons, [refused], "{version}");
        // Replacing an existing subscription is not one more.
        let ack = expect::suback_of(sim.subscribe("c", "a", QoS::AtLeastOnce));
        assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1], "{version}");
        assert_eq!(sim.engine.stats().subscriptions_over_quota, 1);
    }
    let mut sim = quota(OverloadPolicy::Disconnect);
    connect_as(&mut sim, "c", None, V5);
    expect::suback_of(sim.subscribe("c", "a", QoS::AtMostOnce));
    expect::suback_of(sim.subscribe("c", "b", QoS::AtMostOnce));
    let d = expect::disconnect_of(sim.subscribe("c", "c", QoS::AtMostOnce));
    assert_eq!(d.reason, ReasonCode::QuotaExceeded);
    assert!(sim.is_closed("c"));
}

#[test]
fn a_kick_disconnects_with_the_reason_given() {
    let mut sim = Sim::new(Config::default());
    connect_as(&mut sim, "c", None, V5);
    let conn = sim.conn("c");
    sim.input(Input::Kick {
        conn,
        reason: ReasonCode::NotAuthorized,
        why: "password changed".into(),
    });
    let d = expect::disconnect_of(sim.recv("c"));
    assert_eq!(d.reason, ReasonCode::NotAuthorized);
    assert!(sim.is_closed("c"));
}

#[test]
fn throttling_holds_back_a_backlog_that_arrived_in_one_chunk() {
    let mut sim = rate_limited(OverloadPolicy::Throttle);
    connect_as(&mut sim, "sub", None, V5);
    expect::suback_of(sim.subscribe("sub", "t", QoS::AtMostOnce));
    connect_as(&mut sim, "flood", None, V5);
    let mut bytes = bytes::BytesMut::new();
    for i in 0..100 {
        let p = cicada_engine::codec::Publish::new(
            cicada_engine::codec::TopicName::new("t".to_string()).expect("topic"),
            bytes::Bytes::from(i.to_string()),
        );
        Packet::Publish(p).encode(V5, &mut bytes).expect("encode");
    }
    sim.send_bytes("flood", &bytes);
    assert_eq!(sim.recv_all("sub").len(), 5, "the burst");
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.recv_all("sub").len(), 10, "then the rate");
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.recv_all("sub").len(), 10);
}

fn tenants() -> Config {
    let tenant = |name: &str, listener: &str| cicada_engine::Tenant {
        name: name.into(),
        mount_point: format!("{name}/"),
        listeners: vec![listener.into()],
        ..cicada_engine::Tenant::default()
    };
    let mut b = tenant("b", "lb");
    b.max_connections = Some(2);
    b.publish_messages = Some(RateLimit {
        rate: Rate {
            per_sec: per_sec(1),
            burst: per_sec(2),
        },
        policy: OverloadPolicy::Drop,
    });
    let mut by_user = tenant("u", "none");
    by_user.listeners.clear();
    by_user.username_prefix = Some("u-".into());
    Config {
        tenants: vec![tenant("a", "la"), b, by_user],
        ..Config::default()
    }
}

fn connect_on(sim: &mut Sim, name: &str, listener: &str, username: Option<&str>) -> ReasonCode {
    sim.open_with(
        name,
        ConnMeta {
            peer: "127.0.0.1:1".into(),
            listener: listener.into(),
            ..ConnMeta::default()
        },
    );
    sim.set_version(name, V5);
    let mut connect = Sim::connect_packet(name, V5);
    connect.username = username.map(Into::into);
    sim.send(name, Packet::Connect(Box::new(connect)));
    expect::connack(sim.recv(name)).reason
}

/// The counters of tenant `name`.
fn tenant(sim: &Sim, name: &str) -> cicada_engine::TenantStats {
    sim.engine
        .tenant_stats()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("no tenant {name}"))
}

fn topics(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn tenants_are_isolated_under_their_mount_points() {
    let mut sim = Sim::new(tenants());
    assert_eq!(connect_on(&mut sim, "a1", "la", None), ReasonCode::Success);
    assert_eq!(connect_on(&mut sim, "a2", "la", None), ReasonCode::Success);
    assert_eq!(connect_on(&mut sim, "b1", "lb", None), ReasonCode::Success);
    assert_eq!(
        connect_on(&mut sim, "u1", "other", Some("u-1")),
        ReasonCode::Success
    );
    assert_eq!(
        connect_on(&mut sim, "admin", "other", None),
        ReasonCode::Success
    );
    for name in ["a1", "b1", "u1"] {
        expect::suback_of(sim.subscribe(name, "t/#", QoS::AtMostOnce));
    }
    expect::suback_of(sim.subscribe("admin", "#", QoS::AtMostOnce));
    sim.publish("a2", "t/x", QoS::AtMostOnce, "from a");
    sim.publish("u1", "t/y", QoS::AtMostOnce, "from u");
    // Each tenant's clients see their own topics, as they wrote them; nobody else's.
    assert_eq!(topics(&sim.recv_all("a1")), ["t/x"]);
    assert!(topics(&sim.recv_all("b1")).is_empty());
    assert_eq!(topics(&sim.recv_all("u1")), ["t/y"]);
    // A client outside every tenant sees the mount points.
    assert_eq!(topics(&sim.recv_all("admin")), ["a/t/x", "u/t/y"]);
    let stats: Vec<(String, u64)> = sim
        .engine
        .tenant_stats()
        .map(|(n, s)| (n.to_string(), s.publishes_received))
        .collect();
    assert_eq!(stats, [("a".into(), 1), ("b".into(), 0), ("u".into(), 1)]);
}

#[test]
fn retained_messages_and_wills_stay_in_their_tenant() {
    let mut sim = Sim::new(tenants());
    assert_eq!(connect_on(&mut sim, "a1", "la", None), ReasonCode::Success);
    publish_retained(&mut sim, "a1", "r", QoS::AtMostOnce);
    assert_eq!(connect_on(&mut sim, "a2", "la", None), ReasonCode::Success);
    expect::suback_of(sim.subscribe("a2", "r", QoS::AtMostOnce));
    assert_eq!(topics(&sim.recv_all("a2")), ["r"]);
    assert_eq!(connect_on(&mut sim, "b1", "lb", None), ReasonCode::Success);
    expect::suback_of(sim.subscribe("b1", "r", QoS::AtMostOnce));
    assert!(topics(&sim.recv_all("b1")).is_empty());
    // A will goes under the mount point too.
    sim.open_with(
        "w",
        ConnMeta {
            peer: "127.0.0.1:2".into(),
            listener: "la".into(),
            ..ConnMeta::default()
        },
    );
    sim.set_version("w", V5);
    let mut connect = Sim::connect_packet("w", V5);
    connect.will = Some(Will {
        topic: cicada_engine::codec::TopicName::new("gone".to_string()).expect("topic"),
        payload: bytes::Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    sim.send("w", Packet::Connect(Box::new(connect)));
    expect::connack(sim.recv("w"));
    expect::suback_of(sim.subscribe("a2", "gone", QoS::AtMostOnce));
    sim.drop_connection("w");
    assert_eq!(topics(&sim.recv_all("a2")), ["gone"]);
}

#[test]
fn tenant_limits_are_shared_by_its_clients() {
    let mut sim = Sim::new(tenants());
    assert_eq!(connect_on(&mut sim, "b1", "lb", None), ReasonCode::Success);
    assert_eq!(connect_on(&mut sim, "b2", "lb", None), ReasonCode::Success);
    assert_eq!(
        connect_on(&mut sim, "b3", "lb", None),
        ReasonCode::QuotaExceeded,
        "two connections at most"
    );
    // Taking over one's own session is not one more.
    assert_eq!(connect_on(&mut sim, "b2", "lb", None), ReasonCode::Success);
    sim.drop_connection("b1");
    assert_eq!(connect_on(&mut sim, "b3", "lb", None), ReasonCode::Success);
    // Two publishes a burst for the whole tenant, then one per second.
    sim.publish("b2", "t", QoS::AtLeastOnce, "1");
    sim.publish("b3", "t", QoS::AtLeastOnce, "2");
    sim.publish("b2", "t", QoS::AtLeastOnce, "3");
    assert_eq!(ack_reason(sim.recv("b2")), ReasonCode::Success);
    assert_eq!(ack_reason(sim.recv("b3")), ReasonCode::Success);
    assert_eq!(ack_reason(sim.recv("b2")), ReasonCode::QuotaExceeded);
    let b = tenant(&sim, "b");
    assert_eq!(
        (b.connections, b.connects_refused, b.publishes_over_rate),
        (2, 1, 1)
    );
}

#[test]
fn acl_rules_can_name_tenants() {
    let mut config = tenants();
    config.acl = acl("allow tenant \"a\" publish \"%t-only\"\nallow all subscribe \"#\"\n");
    let mut sim = Sim::new(config);
    assert_eq!(connect_on(&mut sim, "a1", "la", None), ReasonCode::Success);
    assert_eq!(connect_on(&mut sim, "b1", "lb", None), ReasonCode::Success);
    sim.publish("a1", "a-only", QoS::AtLeastOnce, "x");
    assert_eq!(ack_reason(sim.recv("a1")), ReasonCode::Success);
    sim.publish("b1", "a-only", QoS::AtLeastOnce, "x");
    assert_eq!(ack_reason(sim.recv("b1")), ReasonCode::NotAuthorized);
}

#[test]
fn a_slow_consumer_can_be_disconnected_when_its_queue_is_full() {
    for (policy, closed) in [
        (OverloadPolicy::Drop, false),
        (OverloadPolicy::Disconnect, true),
    ] {
        let mut sim = Sim::new(Config {
            max_queued_messages: 2,
            send_window: 1,
            quotas: Quotas {
                queue_full: policy,
                ..Quotas::default()
            },
            ..Config::default()
        });
        connect_as(&mut sim, "slow", None, V5);
        expect::suback_of(sim.subscribe("slow", "t", QoS::AtLeastOnce));
        sim.set_flushing("slow", false);
        connect_as(&mut sim, "pub", None, V5);
        for i in 0..5 {
            sim.publish("pub", "t", QoS::AtLeastOnce, &i.to_string());
        }
        assert_eq!(sim.is_closed("slow"), closed, "{policy:?}");
        assert!(!sim.is_closed("pub"), "the publisher is not affected");
        assert_eq!(
            sim.engine.stats().slow_consumers_disconnected,
            u64::from(closed)
        );
    }
}

#[test]
fn a_tenant_subscription_limit_and_byte_rate_cover_all_its_sessions() {
    let mut config = tenants();
    config.tenants[0].max_subscriptions = Some(2);
    config.tenants[0].publish_bytes = Some(RateLimit {
        rate: Rate {
            per_sec: per_sec(10),
            burst: per_sec(10),
        },
        policy: OverloadPolicy::Drop,
    });
    let mut sim = Sim::new(config);
    assert_eq!(connect_on(&mut sim, "a1", "la", None), ReasonCode::Success);
    assert_eq!(connect_on(&mut sim, "a2", "la", None), ReasonCode::Success);
    let reason = |p: Option<Packet>| expect::suback_of(p).reasons[0];
    assert_eq!(
        reason(sim.subscribe("a1", "x", QoS::AtMostOnce)),
        ReasonCode::Success
    );
    assert_eq!(
        reason(sim.subscribe("a2", "y", QoS::AtMostOnce)),
        ReasonCode::Success
    );
    assert_eq!(
        reason(sim.subscribe("a2", "z", QoS::AtMostOnce)),
        ReasonCode::QuotaExceeded,
        "the tenant's two are used"
    );
    assert_eq!(
        reason(sim.subscribe("a2", "y", QoS::AtLeastOnce)),
        ReasonCode::GrantedQoS1
    );
    // A session that ends gives its subscriptions back.
    sim.drop_connection("a1");
    assert_eq!(
        reason(sim.subscribe("a2", "z", QoS::AtMostOnce)),
        ReasonCode::Success
    );
    let a = tenant(&sim, "a");
    assert_eq!((a.subscriptions, a.subscriptions_refused), (2, 1));
    // Ten payload bytes a second for the whole tenant.
    sim.publish("a2", "t", QoS::AtLeastOnce, "12345678");
    sim.publish("a2", "t", QoS::AtLeastOnce, "123");
    assert_eq!(ack_reason(sim.recv("a2")), ReasonCode::Success);
    assert_eq!(ack_reason(sim.recv("a2")), ReasonCode::QuotaExceeded);
}

#[test]
fn a_tenant_queue_limit_covers_all_its_sessions() {
    let mut config = tenants();
    config.tenants[0].max_queued_messages = Some(3);
    config.send_window = 1;
    let mut sim = Sim::new(config);
    for name in ["s1", "s2"] {
        assert_eq!(connect_on(&mut sim, name, "la", None), ReasonCode::Success);
        expect::suback_of(sim.subscribe(name, "t", QoS::AtLeastOnce));
        sim.set_flushing(name, false);
    }
    assert_eq!(connect_on(&mut sim, "p", "la", None), ReasonCode::Success);
    for i in 0..6 {
        sim.publish("p", "t", QoS::AtLeastOnce, &i.to_string());
    }
    let a = tenant(&sim, "a");
    assert_eq!(a.queued_messages, 3, "never more than the tenant's three");
    assert!(sim.engine.stats().messages_dropped > 0);
    // Ending the sessions gives their room back.
    sim.drop_connection("s1");
    sim.drop_connection("s2");
    let a = tenant(&sim, "a");
    assert_eq!(
        (a.queued_messages, a.queued_bytes, a.subscriptions),
        (0, 0, 0)
    );
}
