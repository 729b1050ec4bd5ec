//! Broker scenarios through the simulation harness: no sockets, virtual time, every output checked.
//! Transcripts of the richer ones are insta snapshots (`cargo insta review` after a deliberate change).

use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{
    Ack, Connect, Delivery, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, RetainHandling, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName,
    Unsubscribe, Will,
};
use cicada_engine::sim::expect::{connack, payloads, publish_of};
use cicada_engine::sim::Sim;
use cicada_engine::{
    AuthDecision, Authentication, CloseReason, Config, DropReason, Event, Input, Message,
    PeerMessage,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn sim() -> Sim {
    Sim::new(Config::default())
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// A CONNECT resuming (or creating) a persistent session: v5 with the given expiry, v3 without clean.
fn persistent(name: &str, version: ProtocolVersion, expiry: u32) -> Connect {
    let mut c = Sim::connect_packet(name, version);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

fn with_will(mut c: Connect, topic: &str, delay: Option<u32>) -> Connect {
    let mut will = Will {
        topic: TopicName::new(topic.to_string()).expect("valid"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = delay;
    c.will = Some(will);
    c
}

fn disconnect_reason(packet: Option<Packet>) -> ReasonCode {
    match packet {
        Some(Packet::Disconnect(d)) => d.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

// ----- CONNECT -----

#[test]
fn connect_v3_and_v5_then_ping() {
    let mut sim = sim();
    let ack = connack(sim.connect("old", V3_1_1));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::Success, false)
    );
    let ack = connack(sim.connect("new", V5));
    assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(1024));
    // Shared subscriptions are offered, so CONNACK says nothing about them (absent means available).
    assert_eq!(ack.properties.shared_subscription_available, None);
    sim.send("old", Packet::PingReq);
    assert_eq!(sim.recv("old"), Some(Packet::PingResp));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn empty_client_ids() {
    let mut sim = sim();
    // v5: the broker assigns one (from its seeded generator) and says so.
    let ack = connack(sim.connect("", V5));
    let assigned = ack
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(assigned.starts_with("cicada-"), "{assigned}");
    // 3.1.1 with a clean session: accepted, id assigned silently.
    assert_eq!(connack(sim.connect("", V3_1_1)).reason, ReasonCode::Success);
    // 3.1.1 without a clean session: refused with return code 2 [MQTT-3.1.3-8].
    let mut c = Sim::connect_packet("", V3_1_1);
    c.clean_start = false;
    let ack = connack(sim.connect_with("", c));
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    assert!(sim.is_closed(""));
    // 3.1 requires an identifier.
    let ack = connack(sim.connect_with("", Sim::connect_packet("", V3_1)));
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn first_packet_must_be_connect_and_only_once() {
    let mut sim = sim();
    sim.open("a");
    sim.send("a", Packet::PingReq);
    assert!(sim.is_closed("a"));
    assert_eq!(sim.recv("a"), None, "no reply before CONNECT");

    sim.connect("b", V5);
    sim.send("b", Packet::Connect(Box::new(Sim::connect_packet("b", V5))));
    assert_eq!(disconnect_reason(sim.recv("b")), ReasonCode::ProtocolError);
    assert!(sim.is_closed("b"));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn connect_timeout_closes_silent_connections() {
    let mut sim = sim();
    sim.open("quiet");
    sim.advance(Duration::from_secs(9));
    assert!(!sim.is_closed("quiet"));
    sim.advance(Duration::from_secs(1));
    assert!(sim.is_closed("quiet"));
}

#[test]
fn session_takeover_disconnects_the_old_connection() {
    let mut sim = sim();
    sim.connect("dev", V5);
    sim.subscribe("dev", "cmd", QoS::AtLeastOnce);
    // A second connection with the same client id, as another "client" in the harness.
    let c = persistent("dev", V5, 60);
    let second = sim.connect_with("dev-2", c);
    // The first connection is told 0x8E and closed.
    let first = sim.recv_all("dev");
    assert!(
        matches!(first.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::SessionTakenOver),
        "{first:?}"
    );
    assert!(sim.is_closed("dev"));
    // The first had clean start and expiry 0: its session ended, so nothing is present.
    assert!(!connack(second).session_present);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn persistent_session_is_resumed_with_its_subscriptions() {
    let mut sim = sim();
    connack(sim.connect_with("s", persistent("s", V3_1_1, 0)));
    sim.subscribe("s", "news/#", QoS::AtLeastOnce);
    sim.send(
        "s",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert!(sim.is_closed("s"));

    let ack = connack(sim.connect_with("s", persistent("s", V3_1_1, 0)));
    assert!(ack.session_present);
    sim.connect("p", V5);
    sim.publish("p", "news/today", QoS::AtLeastOnce, "hello");
    assert_eq!(payloads(&sim.recv_all("s")), ["hello"]);

    // Clean start discards it.
    sim.drop_connection("s");
    let ack = connack(sim.connect("s", V3_1_1));
    assert!(!ack.session_present);
    sim.publish("p", "news/today", QoS::AtLeastOnce, "unseen");
    assert!(payloads(&sim.recv_all("s")).is_empty());
}

#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let mut sim = sim();
    let mut c = with_will(Sim::connect_packet("k", V5), "wills/k", None);
    c.keep_alive = 10;
    sim.connect_with("k", c);
    sim.connect("w", V5);
    sim.subscribe("w", "wills/#", QoS::AtLeastOnce);

    sim.advance(Duration::from_secs(14));
    assert!(!sim.is_closed("k"));
    // Any packet restarts the clock.
    sim.send("k", Packet::PingReq);
    sim.advance(Duration::from_millis(14_999));
    assert!(!sim.is_closed("k"));
    sim.advance(Duration::from_millis(1));
    assert!(sim.is_closed("k"));
    assert_eq!(
        disconnect_reason(sim.recv_all("k").pop()),
        ReasonCode::KeepAliveTimeout
    );
    // An ungraceful end publishes the will.
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);
}

#[test]
fn server_keep_alive_caps_v5_clients() {
    let mut sim = Sim::new(Config {
        max_keep_alive: Some(30),
        ..Config::default()
    });
    let mut c = Sim::connect_packet("k", V5);
    c.keep_alive = 0;
    let ack = connack(sim.connect_with("k", c));
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    sim.advance(Duration::from_secs(45));
    assert!(sim.is_closed("k"));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn external_authentication_waits_for_the_decision() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    let mut c = Sim::connect_packet("alice", V5);
    c.username = Some("alice".into());
    c.password = Some(Bytes::from_static(b"pw"));
    assert_eq!(
        sim.connect_with("alice", c),
        None,
        "no CONNACK before the decision"
    );
    // The client pipelines a SUBSCRIBE behind CONNECT; it waits too.
    let filter = TopicFilter::new("t").expect("valid");
    sim.send(
        "alice",
        Packet::Subscribe(cicada_engine::codec::Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: vec![cicada_engine::codec::Subscription {
                filter,
                options: SubscriptionOptions::default(),
            }],
        }),
    );
    assert!(sim.events.iter().any(|e| matches!(e,
        Event::Authenticate { username: Some(u), .. } if u == "alice")));
    let conn = sim.conn("alice");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Allow,
    });
    assert_eq!(connack(sim.recv("alice")).reason, ReasonCode::Success);
    assert!(matches!(sim.recv("alice"), Some(Packet::SubAck(_))));

    sim.connect_with("mallory", Sim::connect_packet("mallory", V3_1_1));
    let conn = sim.conn("mallory");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Deny {
            reason: ReasonCode::BadUserNameOrPassword,
        },
    });
    // 3.1.1 return code 4.
    let ack = connack(sim.recv("mallory"));
    assert_eq!(ack.reason, ReasonCode::BadUserNameOrPassword);
    assert!(sim.is_closed("mallory"));
    assert_eq!(sim.engine.stats().auth_failures, 1);
    insta::assert_snapshot!(sim.transcript());
}

// ----- routing -----

#[test]
fn wildcards_and_dollar_topics() {
    let mut sim = sim();
    sim.connect("s", V3_1_1);
    sim.subscribe("s", "#", QoS::AtMostOnce);
    sim.connect("sys", V3_1_1);
    sim.subscribe("sys", "$SYS/+", QoS::AtMostOnce);
    sim.connect("plus", V3_1_1);
    sim.subscribe("plus", "+/b", QoS::AtMostOnce);
    sim.connect("p", V3_1_1);
    sim.publish("p", "a/b", QoS::AtMostOnce, "1");
    sim.publish("p", "$SYS/load", QoS::AtMostOnce, "2");
    sim.publish("p", "/b", QoS::AtMostOnce, "3");
    assert_eq!(
        payloads(&sim.recv_all("s")),
        ["1", "3"],
        "# does not match $SYS"
    );
    assert_eq!(payloads(&sim.recv_all("sys")), ["2"]);
    assert_eq!(
        payloads(&sim.recv_all("plus")),
        ["1", "3"],
        "an empty level is a level"
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let mut sim = sim();
    sim.connect("v3", V3_1_1);
    sim.subscribe("v3", "a/+", QoS::AtMostOnce);
    sim.subscribe("v3", "a/#", QoS::AtLeastOnce);
    sim.connect("v5", V5);
    for (filter, id) in [("a/+", 1), ("a/#", 2)] {
        sim.send(
            "v5",
            Packet::Subscribe(cicada_engine::codec::Subscribe {
                packet_id: pid(10 + id),
                properties: cicada_engine::codec::SubscribeProperties {
                    subscription_identifier: SubscriptionId::new(u32::from(id)),
                    ..Default::default()
                },
                subscriptions: vec![cicada_engine::codec::Subscription {
                    filter: TopicFilter::new(filter).expect("valid"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..Default::default()
                    },
                }],
            }),
        );
    }
    sim.recv_all("v5");
    sim.connect("p", V5);
    sim.publish("p", "a/b", QoS::ExactlyOnce, "m");
    let got = sim.recv_all("v3");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        publish_of(got.into_iter().next()).delivery.qos(),
        QoS::AtLeastOnce
    );
    let p = publish_of(sim.recv("v5"));
    assert_eq!(p.delivery.qos(), QoS::ExactlyOnce);
    let ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(sim.recv("v5"), None);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn delivery_qos_is_downgraded_to_the_subscription() {
    let mut sim = sim();
    sim.connect("s", V5);
    let ack = sim.subscribe("s", "t", QoS::AtMostOnce);
    assert!(matches!(ack, Some(Packet::SubAck(a)) if a.reasons == [ReasonCode::Success]));
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "x");
    let p = publish_of(sim.recv("s"));
    assert_eq!(p.delivery, Delivery::AtMostOnce);
}

#[test]
fn no_local_and_retain_as_published() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.subscribe_with(
        "c",
        "t",
        SubscriptionOptions {
            qos: QoS::AtMostOnce,
            no_local: true,
            ..Default::default()
        },
    );
    sim.connect("rap", V5);
    sim.subscribe_with(
        "rap",
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..Default::default()
        },
    );
    let mut p = Publish::new(
        TopicName::new("t").expect("valid"),
        Bytes::from_static(b"r"),
    );
    p.retain = true;
    sim.send("c", Packet::Publish(p));
    assert_eq!(
        sim.recv("c"),
        None,
        "No Local: not sent back to its publisher"
    );
    assert!(publish_of(sim.recv("rap")).retain);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn unsubscribe_reports_per_filter() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "a", QoS::AtMostOnce);
    sim.send(
        "s",
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(9),
            properties: Default::default(),
            filters: vec![
                TopicFilter::new("a").expect("valid"),
                TopicFilter::new("b").expect("valid"),
            ],
        }),
    );
    match sim.recv("s") {
        Some(Packet::UnsubAck(u)) => {
            assert_eq!(
                u.reasons,
                [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.engine.subscription_count(), 0);
}

// ----- QoS flows -----

#[test]
fn qos1_and_qos2_flows_in_both_directions() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t/#", QoS::ExactlyOnce);
    sim.connect("p", V3_1_1);

    sim.publish("p", "t/1", QoS::AtLeastOnce, "one");
    assert_eq!(sim.recv("p"), Some(Packet::PubAck(Ack::new(pid(1)))));
    let p = publish_of(sim.recv("s"));
    let Delivery::AtLeastOnce(id) = p.delivery else {
        panic!("{p:?}")
    };
    sim.send("s", Packet::PubAck(Ack::new(id)));

    sim.publish("p", "t/2", QoS::ExactlyOnce, "two");
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(2)))));
    sim.send("p", Packet::PubRel(Ack::new(pid(2))));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(2)))));
    let p = publish_of(sim.recv("s"));
    let Delivery::ExactlyOnce(id) = p.delivery else {
        panic!("{p:?}")
    };
    sim.send("s", Packet::PubRec(Ack::new(id)));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(id))));
    sim.send("s", Packet::PubComp(Ack::new(id)));
    sim.engine.check_invariants().expect("invariants");
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn qos2_duplicate_publish_is_not_delivered_again() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    let mut first = sim.publish("p", "t", QoS::ExactlyOnce, "once");
    assert!(matches!(sim.recv("p"), Some(Packet::PubRec(_))));
    // The publisher did not see PUBREC and resends with DUP before PUBREL.
    first.dup = true;
    sim.send("p", Packet::Publish(first.clone()));
    assert!(matches!(sim.recv("p"), Some(Packet::PubRec(_))));
    assert_eq!(payloads(&sim.recv_all("s")), ["once"]);
    // After PUBREL the id is free again: the same id is a new message.
    let id = first.delivery.packet_id().expect("pid");
    sim.send("p", Packet::PubRel(Ack::new(id)));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(id))));
    // PUBREL for an unknown id: v5 answers 0x92.
    sim.send("p", Packet::PubRel(Ack::new(id)));
    match sim.recv("p") {
        Some(Packet::PubComp(c)) => assert_eq!(c.reason, ReasonCode::PacketIdentifierNotFound),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_resumption() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "q1");
    sim.publish("p", "t", QoS::ExactlyOnce, "q2");
    let got = sim.recv_all("s");
    assert_eq!(payloads(&got), ["q1", "q2"]);
    // Receive the QoS 2 message's PUBREC, so its PUBREL is what is outstanding.
    let q2 = publish_of(got.into_iter().nth(1));
    let q2_id = q2.delivery.packet_id().expect("pid");
    sim.send("s", Packet::PubRec(Ack::new(q2_id)));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(q2_id))));
    sim.drop_connection("s");

    let ack = connack(sim.connect_with("s", persistent("s", V5, 300)));
    assert!(ack.session_present);
    let resent = sim.recv_all("s");
    assert_eq!(resent.len(), 2, "{resent:?}");
    let p = publish_of(Some(resent[0].clone()));
    assert!(p.dup);
    assert_eq!(&p.payload[..], b"q1");
    assert_eq!(resent[1], Packet::PubRel(Ack::new(q2_id)));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn inflight_window_follows_the_clients_receive_maximum() {
    let mut sim = sim();
    let mut c = Sim::connect_packet("s", V5);
    c.properties.receive_maximum = std::num::NonZeroU16::new(2);
    sim.connect_with("s", c);
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    for i in 0..5 {
        sim.publish("p", "t", QoS::AtLeastOnce, &i.to_string());
    }
    let got = sim.recv_all("s");
    assert_eq!(payloads(&got), ["0", "1"]);
    // Each PUBACK opens the window for the next, in order.
    let first = publish_of(got.into_iter().next())
        .delivery
        .packet_id()
        .expect("pid");
    sim.send("s", Packet::PubAck(Ack::new(first)));
    assert_eq!(payloads(&sim.recv_all("s")), ["2"]);
    insta::assert_snapshot!(sim.transcript());
}

// ----- offline queues and backpressure -----

#[test]
fn offline_persistent_session_gets_queued_messages_in_order() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V3_1_1, 0));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.send(
        "s",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "a");
    sim.publish(
        "p",
        "t",
        QoS::AtMostOnce,
        "dropped: QoS 0 is not queued offline",
    );
    sim.publish("p", "t", QoS::ExactlyOnce, "b");
    sim.connect_with("s", persistent("s", V3_1_1, 0));
    assert_eq!(payloads(&sim.recv_all("s")), ["a", "b"]);
    assert_eq!(sim.engine.stats().qos0_dropped, 1);
}

#[test]
fn offline_queue_is_bounded() {
    let mut sim = Sim::new(Config {
        max_queued_messages: 3,
        queue_qos0_offline: true,
        ..Config::default()
    });
    sim.connect_with("s", persistent("s", V5, 600));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtMostOnce, "0a");
    sim.publish("p", "t", QoS::AtLeastOnce, "1a");
    sim.publish("p", "t", QoS::AtLeastOnce, "1b");
    // Full: the QoS 0 message makes way for a QoS 1 one; then nothing more fits.
    sim.publish("p", "t", QoS::AtLeastOnce, "1c");
    sim.publish("p", "t", QoS::AtLeastOnce, "1d");
    let dropped: Vec<DropReason> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::MessageDropped { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [DropReason::QoS0Evicted, DropReason::QueueFull]);
    sim.connect_with("s", persistent("s", V5, 600));
    assert_eq!(payloads(&sim.recv_all("s")), ["1a", "1b", "1c"]);
}

#[test]
fn slow_consumer_fills_only_its_own_queue() {
    let mut sim = Sim::new(Config {
        send_window: 200,
        max_queued_messages: 5,
        ..Config::default()
    });
    sim.connect("slow", V5);
    sim.subscribe("slow", "t", QoS::AtMostOnce);
    sim.connect("fast", V5);
    sim.subscribe("fast", "t", QoS::AtMostOnce);
    sim.set_flushing("slow", false);
    sim.connect("p", V5);
    let body = "x".repeat(50);
    for _ in 0..20 {
        sim.publish("p", "t", QoS::AtMostOnce, &body);
    }
    assert_eq!(
        sim.recv_all("fast").len(),
        20,
        "the fast reader gets everything"
    );
    let slow_now = sim.recv_all("slow").len();
    // About one send window went out, five more wait queued, the rest were dropped and counted.
    assert!(slow_now <= 4, "{slow_now}");
    assert_eq!(sim.engine.stats().qos0_dropped as usize, 20 - slow_now - 5);
    sim.set_flushing("slow", true);
    assert_eq!(
        sim.recv_all("slow").len(),
        5,
        "the queue drains once the socket does"
    );
}

// ----- retained -----

#[test]
fn retained_messages_set_replace_delete() {
    let mut sim = sim();
    sim.connect("p", V3_1_1);
    let retained = |sim: &mut Sim, payload: &'static [u8]| {
        let mut p = Publish::new(
            TopicName::new("cfg/a").expect("valid"),
            Bytes::from_static(payload),
        );
        p.retain = true;
        p.delivery = Delivery::AtLeastOnce(sim.next_packet_id("p"));
        sim.send("p", Packet::Publish(p));
        sim.recv_all("p");
    };
    retained(&mut sim, b"v1");
    retained(&mut sim, b"v2");
    assert_eq!(sim.engine.retained_count(), 1);

    sim.connect("s", V5);
    sim.subscribe("s", "cfg/#", QoS::AtLeastOnce);
    let p = publish_of(sim.recv("s"));
    assert!(p.retain, "retained messages are sent with RETAIN set");
    assert_eq!(&p.payload[..], b"v2");
    assert_eq!(p.delivery.qos(), QoS::AtLeastOnce);

    // An empty retained payload deletes it (and is still forwarded to current subscribers).
    retained(&mut sim, b"");
    assert_eq!(sim.engine.retained_count(), 0);
    sim.connect("late", V5);
    sim.subscribe("late", "cfg/#", QoS::AtLeastOnce);
    assert_eq!(sim.recv("late"), None);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn retain_handling_options() {
    let mut sim = sim();
    sim.connect("p", V5);
    let mut p = Publish::new(
        TopicName::new("r").expect("valid"),
        Bytes::from_static(b"kept"),
    );
    p.retain = true;
    sim.send("p", Packet::Publish(p));
    sim.connect("s", V5);
    let opts = |rh| SubscriptionOptions {
        retain_handling: rh,
        ..Default::default()
    };
    sim.subscribe_with("s", "r", opts(RetainHandling::DoNotSend));
    assert_eq!(sim.recv("s"), None);
    sim.subscribe_with("s", "+", opts(RetainHandling::SendIfNew));
    assert!(matches!(sim.recv("s"), Some(Packet::Publish(_))));
    sim.subscribe_with("s", "+", opts(RetainHandling::SendIfNew));
    assert_eq!(sim.recv("s"), None, "not new: not sent again");
    sim.subscribe_with("s", "+", opts(RetainHandling::SendAtSubscribe));
    assert!(matches!(sim.recv("s"), Some(Packet::Publish(_))));
    insta::assert_snapshot!(sim.transcript());
}

// ----- wills -----

#[test]
fn wills_on_every_end_but_a_normal_disconnect() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);

    sim.connect_with(
        "lost",
        with_will(Sim::connect_packet("lost", V3_1_1), "will/lost", None),
    );
    sim.drop_connection("lost");
    sim.connect_with(
        "polite",
        with_will(Sim::connect_packet("polite", V5), "will/polite", None),
    );
    sim.send(
        "polite",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.connect_with(
        "asks",
        with_will(Sim::connect_packet("asks", V5), "will/asks", None),
    );
    sim.send(
        "asks",
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill)),
    );
    sim.connect_with(
        "rude",
        with_will(Sim::connect_packet("rude", V5), "will/rude", None),
    );
    sim.send_bytes("rude", &[0x00, 0x00]);

    let topics: Vec<String> = sim
        .recv_all("w")
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["will/lost", "will/asks", "will/rude"]);
}

#[test]
fn will_delay_is_cancelled_by_a_reconnect() {
    let mut sim = sim();
    // The watcher must not time out itself while time jumps.
    let mut watcher = Sim::connect_packet("w", V5);
    watcher.keep_alive = 0;
    sim.connect_with("w", watcher);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);
    let c = with_will(persistent("d", V5, 100), "will/d", Some(30));
    sim.connect_with("d", c.clone());
    sim.drop_connection("d");
    sim.advance(Duration::from_secs(20));
    sim.connect_with("d", c.clone());
    sim.advance(Duration::from_secs(60));
    assert!(sim.recv_all("w").is_empty(), "reconnected within the delay");

    sim.drop_connection("d");
    sim.advance(Duration::from_secs(29));
    assert!(sim.recv_all("w").is_empty());
    sim.advance(Duration::from_secs(1));
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn session_expiry_removes_the_session_and_publishes_a_pending_will() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);
    // Will delay 60 s but the session ends after 10 s: the will goes at 10 s.
    sim.connect_with("e", with_will(persistent("e", V5, 10), "will/e", Some(60)));
    sim.subscribe("e", "t", QoS::AtLeastOnce);
    sim.drop_connection("e");
    sim.advance(Duration::from_secs(10));
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::SessionExpired { client_id } if client_id == "e")));
    assert_eq!(sim.engine.session_count(), 1);
    let ack = connack(sim.connect_with("e", persistent("e", V5, 10)));
    assert!(!ack.session_present);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn disconnect_cannot_revive_a_session_without_expiry() {
    let mut sim = sim();
    sim.connect("c", V5);
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(60);
    sim.send("c", Packet::Disconnect(d));
    assert_eq!(disconnect_reason(sim.recv("c")), ReasonCode::ProtocolError);
}

// ----- durability -----

#[test]
fn acknowledgements_wait_for_storage() {
    let mut sim = sim();
    sim.auto_persist = false;
    sim.connect_with("s", persistent("s", V5, 600));
    sim.persist_all();
    sim.recv_all("s");
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    assert_eq!(
        sim.recv("s"),
        None,
        "SUBACK waits for the subscription to be stored"
    );
    sim.persist_all();
    assert!(matches!(sim.recv("s"), Some(Packet::SubAck(_))));
    sim.drop_connection("s");

    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    assert_eq!(
        sim.recv("p"),
        None,
        "PUBACK waits: the message is queued for a stored session"
    );
    sim.persist_all();
    assert!(matches!(sim.recv("p"), Some(Packet::PubAck(_))));
    // A message nobody stores is acknowledged at once.
    sim.publish("p", "nobody/listens", QoS::AtLeastOnce, "m");
    assert!(matches!(sim.recv("p"), Some(Packet::PubAck(_))));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn pubrel_waits_until_the_released_state_is_durable() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "m");
    let id = publish_of(sim.recv("s")).delivery.packet_id().expect("pid");
    sim.auto_persist = false;
    sim.send("s", Packet::PubRec(Ack::new(id)));
    assert_eq!(
        sim.recv("s"),
        None,
        "a crash now would resend the PUBLISH, so the client must not have completed the exchange"
    );
    sim.persist_all();
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(id))));
}

#[test]
fn disconnect_setting_session_expiry_to_zero_deletes_the_stored_session() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    assert!(sim.store.state.sessions.contains_key("s"));
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    sim.send("s", Packet::Disconnect(d));
    assert!(sim.is_closed("s"));
    assert!(
        !sim.store.state.sessions.contains_key("s"),
        "the session ended, so a restart must not bring it back: {:?}",
        sim.store.state.sessions
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn resuming_with_session_expiry_zero_deletes_the_stored_session_and_writes_nothing_under_it() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "inflight");
    let id = publish_of(sim.recv("s")).delivery.packet_id().expect("pid");
    sim.drop_connection("s");
    sim.publish("p", "t", QoS::AtLeastOnce, "queued");
    assert_eq!(sim.store.state.sessions["s"].messages.len(), 2);

    // Resumed, but now to end with the connection: the store must forget it at once.
    let ack = connack(sim.connect_with("s", persistent("s", V5, 0)));
    assert!(ack.session_present);
    assert!(!sim.store.state.sessions.contains_key("s"));
    let resent = sim.recv_all("s");
    assert_eq!(payloads(&resent), ["inflight", "queued"]);
    // The flows go on in memory; the harness panics if any of them writes under the deleted session.
    sim.send("s", Packet::PubRec(Ack::new(id)));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(id))));
    sim.send("s", Packet::PubComp(Ack::new(id)));
    let queued = publish_of(resent.into_iter().nth(1))
        .delivery
        .packet_id()
        .expect("pid");
    sim.send("s", Packet::PubAck(Ack::new(queued)));
    sim.publish("p", "t", QoS::ExactlyOnce, "later");
    assert_eq!(payloads(&sim.recv_all("s")), ["later"]);
    assert!(!sim.store.state.sessions.contains_key("s"));
}

#[test]
fn a_failed_batch_closes_the_connections_waiting_on_it() {
    let mut sim = sim();
    sim.connect("p", V5);
    sim.auto_persist = false;
    let mut p = Publish::new(
        TopicName::new("r").expect("valid"),
        Bytes::from_static(b"x"),
    );
    p.retain = true;
    p.delivery = Delivery::AtLeastOnce(pid(1));
    sim.send("p", Packet::Publish(p));
    let seq = *sim.pending_batches.last().expect("a batch");
    sim.fail_batch(seq);
    assert!(sim.is_closed("p"));
    // Told why (v5), and never acknowledged.
    assert_eq!(
        disconnect_reason(sim.recv("p")),
        ReasonCode::UnspecifiedError
    );
    assert_eq!(sim.recv("p"), None, "never acknowledged");
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::Close {
            reason: CloseReason::StorageFailed,
            ..
        }
    )));
}

#[test]
fn while_storage_fails_new_persistent_sessions_are_refused_and_clean_ones_served() {
    let mut sim = sim();
    sim.auto_persist = false;
    sim.connect_with("s", persistent("s", V5, 600));
    sim.connect_with("old", persistent("old", V3_1_1, 0));
    for seq in sim.pending_batches.clone() {
        sim.fail_batch(seq);
    }
    // Their CONNACKs waited on the failed batch: they are refused instead, in each protocol's terms.
    assert!(sim.is_closed("s"));
    let refused = connack(sim.recv("s"));
    assert_eq!(refused.reason, ReasonCode::ServerUnavailable);
    assert!(!refused.session_present);
    assert!(sim.is_closed("old"));
    assert_eq!(
        connack(sim.recv("old")).reason,
        ReasonCode::ServerUnavailable
    );

    let refused = connack(sim.connect_with("s", persistent("s", V5, 600)));
    assert_eq!(refused.reason, ReasonCode::ServerUnavailable);
    let refused = connack(sim.connect_with("v3", persistent("v3", V3_1_1, 0)));
    assert_eq!(refused.reason, ReasonCode::ServerUnavailable);
    sim.auto_persist = true;
    let clean = connack(sim.connect("c", V5));
    assert_eq!(clean.reason, ReasonCode::Success);

    // A later batch reaching the disk ends the refusal.
    sim.subscribe("c", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    let mut p = Publish::new(
        TopicName::new("r").expect("valid"),
        Bytes::from_static(b"x"),
    );
    p.retain = true;
    sim.send("p", Packet::Publish(p));
    let ok = connack(sim.connect_with("s", persistent("s", V5, 600)));
    assert_eq!(ok.reason, ReasonCode::Success);
}

#[test]
fn in_memory_mode_emits_no_storage() {
    let mut sim = Sim::new(Config {
        durable: false,
        ..Config::default()
    });
    sim.connect_with("s", persistent("s", V5, 600));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Persist { .. })));
}

// ----- bad input and limits -----

#[test]
fn malformed_input_closes_only_that_connection() {
    let mut sim = sim();
    sim.connect("good", V5);
    sim.subscribe("good", "t", QoS::AtMostOnce);
    sim.connect("bad", V5);
    // PUBLISH with QoS 3.
    sim.send_bytes("bad", &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
    assert_eq!(
        disconnect_reason(sim.recv("bad")),
        ReasonCode::MalformedPacket
    );
    assert!(sim.is_closed("bad"));
    assert!(sim.events.iter().any(|e| matches!(e,
        Event::ClientDisconnected { client_id: Some(id), reason: CloseReason::ProtocolViolation { rule, .. }, .. }
            if id == "bad" && rule.contains("QoS 3"))));
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtMostOnce, "still fine");
    assert_eq!(payloads(&sim.recv_all("good")), ["still fine"]);
    assert_eq!(sim.engine.stats().protocol_violations, 1);
}

#[test]
fn oversized_packets_get_0x95() {
    let mut sim = Sim::new(Config {
        max_packet_size: 128,
        ..Config::default()
    });
    sim.connect("c", V5);
    sim.publish("c", "t", QoS::AtMostOnce, &"x".repeat(200));
    assert_eq!(disconnect_reason(sim.recv("c")), ReasonCode::PacketTooLarge);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn topic_limits_and_receive_maximum() {
    let mut sim = Sim::new(Config {
        max_topic_levels: 3,
        receive_maximum: 2,
        ..Config::default()
    });
    sim.connect("deep", V5);
    sim.publish("deep", "a/b/c/d", QoS::AtMostOnce, "x");
    assert_eq!(
        disconnect_reason(sim.recv("deep")),
        ReasonCode::TopicNameInvalid
    );

    sim.connect("greedy", V5);
    for _ in 0..3 {
        sim.publish("greedy", "t", QoS::ExactlyOnce, "x");
    }
    let got = sim.recv_all("greedy");
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::ReceiveMaximumExceeded),
        "{got:?}"
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn topic_aliases_from_clients() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "long/topic/name", QoS::AtMostOnce);
    sim.connect("p", V5);
    let mut set = Publish::new(
        TopicName::new("long/topic/name").expect("valid"),
        Bytes::from_static(b"1"),
    );
    set.properties.topic_alias = std::num::NonZeroU16::new(3);
    sim.send("p", Packet::Publish(set));
    // An alias-only PUBLISH: decode one from the wire, since its topic is empty.
    sim.send_bytes("p", &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x03, b'2']);
    assert_eq!(payloads(&sim.recv_all("s")), ["1", "2"]);
    // An alias never set is a protocol error.
    sim.send_bytes("p", &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x04, b'3']);
    assert_eq!(disconnect_reason(sim.recv("p")), ReasonCode::ProtocolError);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn message_expiry_counts_down_and_drops_stale_messages() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 600));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.connect("p", V5);
    for (payload, expiry) in [("short", 5), ("long", 100)] {
        let mut p = Publish::new(TopicName::new("t").expect("valid"), Bytes::from(payload));
        p.delivery = Delivery::AtLeastOnce(sim.next_packet_id("p"));
        p.properties.message_expiry_interval = Some(expiry);
        sim.send("p", Packet::Publish(p));
    }
    sim.advance(Duration::from_secs(10));
    sim.connect_with("s", persistent("s", V5, 600));
    let got = sim.recv_all("s");
    assert_eq!(payloads(&got), ["long"]);
    let p = publish_of(got.into_iter().next());
    assert_eq!(p.properties.message_expiry_interval, Some(90));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn messages_from_peer_engines_reach_local_subscribers() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::AtMostOnce);
    let message = Message {
        topic: TopicName::new("t").expect("valid"),
        payload: Bytes::from_static(b"from afar"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        origin: None,
        expires_at: None,
    };
    sim.input(Input::Peer {
        message: PeerMessage::Publish {
            message: std::sync::Arc::new(message),
            plain: true,
            groups: Vec::new(),
            receipt: None,
            from: 1,
            stamp: None,
            after: 0,
        },
    });
    assert_eq!(payloads(&sim.recv_all("s")), ["from afar"]);
}

#[test]
fn an_authenticator_that_never_answers_hits_the_connect_timeout() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    sim.connect_with("c", Sim::connect_packet("c", V5));
    sim.advance(Duration::from_secs(10));
    assert!(sim.is_closed("c"));
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::Close {
            reason: CloseReason::ConnectTimeout,
            ..
        }
    )));
}

#[test]
fn shutdown_tells_v5_clients_and_keeps_wills() {
    let mut sim = sim();
    sim.connect("w", V3_1_1);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);
    sim.connect_with(
        "five",
        with_will(Sim::connect_packet("five", V5), "will/five", None),
    );
    sim.input(Input::Shutdown);
    assert_eq!(
        disconnect_reason(sim.recv("five")),
        ReasonCode::ServerShuttingDown
    );
    assert!(sim.is_closed("five") && sim.is_closed("w"));
    assert_eq!(
        sim.recv("w"),
        None,
        "3.x clients are just closed; no will was published"
    );
    assert_eq!(sim.engine.connection_count(), 0);
    insta::assert_snapshot!(sim.transcript());
}

// ----- restart from storage -----

const DOWN: Duration = Duration::from_secs(5);

#[test]
fn a_restart_keeps_persistent_sessions_subscriptions_and_queued_messages() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t/+", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.connect("p", V5);
    sim.publish("p", "t/1", QoS::AtLeastOnce, "before");
    assert!(matches!(sim.recv("p"), Some(Packet::PubAck(_))));
    sim.crash(DOWN);

    let ack = connack(sim.connect_with("s", persistent("s", V5, 300)));
    assert!(ack.session_present, "the session survived the restart");
    assert_eq!(payloads(&sim.recv_all("s")), ["before"]);
    sim.connect("p", V5);
    sim.publish("p", "t/2", QoS::AtMostOnce, "after");
    assert_eq!(
        payloads(&sim.recv_all("s")),
        ["after"],
        "the subscription survived"
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn what_was_never_durable_is_never_acknowledged_and_gone_after_a_crash() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.auto_persist = false;
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    assert_eq!(sim.recv("s"), None, "SUBACK waits for storage");
    sim.crash(DOWN);
    sim.auto_persist = true;
    let ack = connack(sim.connect_with("s", persistent("s", V5, 300)));
    assert!(ack.session_present, "the session itself was durable");
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    assert_eq!(
        sim.recv_all("s"),
        [],
        "the unacknowledged subscription is gone"
    );
}

#[test]
fn inflight_qos2_flows_resume_after_a_restart_with_their_packet_ids() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", V5, 300));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "sent");
    sim.publish("p", "t", QoS::ExactlyOnce, "released");
    let got = sim.recv_all("s");
    let sent = publish_of(Some(got[0].clone()));
    let released = publish_of(Some(got[1].clone()));
    let released_id = released.delivery.packet_id().expect("pid");
    sim.send("s", Packet::PubRec(Ack::new(released_id)));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(released_id))));
    sim.crash(DOWN);

    connack(sim.connect_with("s", persistent("s", V5, 300)));
    let resent = sim.recv_all("s");
    assert_eq!(resent.len(), 2, "{resent:?}");
    let again = publish_of(Some(resent[0].clone()));
    assert!(again.dup);
    assert_eq!(again.delivery, sent.delivery, "same QoS and packet id");
    assert_eq!(again.payload, sent.payload);
    assert_eq!(resent[1], Packet::PubRel(Ack::new(released_id)));
    sim.send("s", Packet::PubComp(Ack::new(released_id)));
    sim.send(
        "s",
        Packet::PubRec(Ack::new(sent.delivery.packet_id().expect("pid"))),
    );
    assert_eq!(
        sim.recv("s"),
        Some(Packet::PubRel(Ack::new(
            sent.delivery.packet_id().expect("pid")
        )))
    );
}

#[test]
fn a_qos2_publish_received_before_a_restart_is_released_once_after_it() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect_with("p", persistent("p", V5, 300));
    let p = sim.publish("p", "t", QoS::ExactlyOnce, "once");
    let id = p.delivery.packet_id().expect("pid");
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(id))));
    sim.crash(DOWN);

    // The publisher resends its PUBLISH (DUP), as it has no PUBCOMP: the broker still knows the id.
    let ack = connack(sim.connect_with("p", persistent("p", V5, 300)));
    assert!(ack.session_present);
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    let mut dup = p.clone();
    dup.dup = true;
    sim.send("p", Packet::Publish(dup));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(id))));
    assert_eq!(sim.recv_all("s"), [], "not delivered a second time");
    sim.send("p", Packet::PubRel(Ack::new(id)));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(id))));
}

#[test]
fn sessions_that_expired_while_down_end_at_restart_with_their_wills() {
    let mut sim = sim();
    sim.connect_with("watcher", persistent("watcher", V5, 3600));
    sim.subscribe("watcher", "will/#", QoS::AtLeastOnce);
    sim.drop_connection("watcher");
    sim.connect_with(
        "short",
        with_will(persistent("short", V5, 10), "will/short", Some(60)),
    );
    sim.connect_with(
        "long",
        with_will(persistent("long", V5, 600), "will/long", Some(300)),
    );
    sim.drop_connection("short");
    sim.drop_connection("long");
    sim.crash(Duration::from_secs(20));
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::SessionExpired { client_id } if client_id == "short"
    )));
    assert!(!sim.durable.sessions.contains_key("short"));
    assert!(sim.durable.sessions.contains_key("long"));

    // "long" is still within its will delay: it comes back in time and its will is cancelled.
    let ack = connack(sim.connect_with("long", persistent("long", V5, 600)));
    assert!(ack.session_present);
    let ack = connack(sim.connect_with("short", persistent("short", V5, 600)));
    assert!(!ack.session_present);
    sim.advance(Duration::from_secs(600));
    connack(sim.connect_with("watcher", persistent("watcher", V5, 3600)));
    assert_eq!(payloads(&sim.recv_all("watcher")), ["gone"]);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn a_will_whose_delay_passed_while_down_is_published_at_restart() {
    let mut sim = sim();
    sim.connect_with("watcher", persistent("watcher", V5, 3600));
    sim.subscribe("watcher", "will/#", QoS::AtLeastOnce);
    sim.connect_with(
        "d",
        with_will(persistent("d", V5, 3600), "will/d", Some(30)),
    );
    sim.drop_connection("d");
    assert_eq!(sim.recv_all("watcher"), []);
    sim.crash(Duration::from_secs(60));
    assert!(
        sim.durable.sessions.contains_key("d"),
        "only its will is due"
    );
    assert_eq!(sim.durable.sessions["d"].will, None, "published once");
    connack(sim.connect_with("watcher", persistent("watcher", V5, 3600)));
    assert_eq!(payloads(&sim.recv_all("watcher")), ["gone"]);
}

#[test]
fn a_session_connected_at_the_crash_counts_as_disconnected_at_the_restart() {
    let mut sim = sim();
    sim.connect_with("c", persistent("c", V5, 30));
    // Down for longer than its expiry: still there, since its connection ended at the restart.
    sim.crash(Duration::from_secs(100));
    sim.advance(Duration::from_secs(20));
    let ack = connack(sim.connect_with("c", persistent("c", V5, 30)));
    assert!(ack.session_present);
}

#[test]
fn retained_messages_survive_a_restart_unless_they_expired_while_down() {
    let mut sim = sim();
    sim.connect("p", V5);
    for (topic, expiry) in [("r/keep", None), ("r/expire", Some(10))] {
        let mut p = Publish::new(
            TopicName::new(topic).expect("valid"),
            Bytes::from_static(b"v"),
        );
        p.retain = true;
        p.properties.message_expiry_interval = expiry;
        sim.send("p", Packet::Publish(p));
    }
    sim.crash(Duration::from_secs(20));
    assert_eq!(sim.durable.retained.len(), 1, "the expired one is deleted");
    sim.connect("s", V5);
    sim.subscribe("s", "r/#", QoS::AtMostOnce);
    let got = sim.recv_all("s");
    let topics: Vec<&str> = got
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["r/keep"]);
}

#[test]
fn one_message_to_mixed_subscribers_is_encoded_right_for_each() {
    // The PUBLISH is encoded once per variant and copied; each copy must carry its own packet id,
    // QoS, retain flag and version layout.
    let mut sim = sim();
    for (name, version, qos) in [
        ("a3", V3_1_1, QoS::AtLeastOnce),
        ("b5", V5, QoS::AtLeastOnce),
        ("c5", V5, QoS::AtMostOnce),
        ("d3", V3_1_1, QoS::ExactlyOnce),
        ("e5", V5, QoS::AtLeastOnce),
    ] {
        sim.connect(name, version);
        sim.subscribe(name, "m/#", qos);
    }
    sim.connect("p", V5);
    for round in 0..2 {
        sim.publish("p", "m/x", QoS::ExactlyOnce, &format!("r{round}"));
        for (name, qos) in [
            ("a3", QoS::AtLeastOnce),
            ("b5", QoS::AtLeastOnce),
            ("c5", QoS::AtMostOnce),
            ("d3", QoS::ExactlyOnce),
            ("e5", QoS::AtLeastOnce),
        ] {
            let got = publish_of(sim.recv(name));
            assert_eq!(got.delivery.qos(), qos, "{name}");
            assert_eq!(got.topic.as_str(), "m/x");
            assert_eq!(&got.payload[..], format!("r{round}").as_bytes());
            if let Some(pid) = got.delivery.packet_id() {
                // The shared encoding carries id 1: the second round shows the id written in.
                assert_eq!(pid.get(), round + 1, "{name}");
                let ack = Ack::new(pid);
                sim.send(
                    name,
                    match qos {
                        QoS::ExactlyOnce => Packet::PubRec(ack),
                        _ => Packet::PubAck(ack),
                    },
                );
                sim.recv_all(name);
                if qos == QoS::ExactlyOnce {
                    sim.send(name, Packet::PubComp(Ack::new(pid)));
                }
            }
        }
    }
}
