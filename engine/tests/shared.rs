//! Shared subscriptions (`$share/{group}/{filter}`) through the simulation harness.

use cicada_engine::codec::{
    Ack, Connect, Delivery, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, SharedStrategy};

use ProtocolVersion::{V3_1_1, V5};

fn sim_with(strategy: SharedStrategy) -> Sim {
    Sim::new(Config {
        shared_strategy: strategy,
        ..Config::default()
    })
}

fn persistent(name: &str, expiry: u32) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// Payloads of the PUBLISHes `name` received, acknowledging QoS 1 and completing QoS 2.
fn drain(sim: &mut Sim, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(packet) = sim.recv(name) {
        let Packet::Publish(p) = packet else {
            continue;
        };
        out.push(String::from_utf8_lossy(&p.payload).into_owned());
        match p.delivery {
            Delivery::AtMostOnce => {}
            Delivery::AtLeastOnce(id) => sim.send(name, Packet::PubAck(Ack::new(id))),
            Delivery::ExactlyOnce(id) => {
                sim.send(name, Packet::PubRec(Ack::new(id)));
                while let Some(p) = sim.recv(name) {
                    if let Packet::PubRel(rel) = p {
                        sim.send(name, Packet::PubComp(Ack::new(rel.packet_id)));
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Publishes `payloads` from "p" at `qos` on `topic`.
fn publish_all(sim: &mut Sim, topic: &str, qos: QoS, payloads: &[&str]) {
    for payload in payloads {
        sim.publish("p", topic, qos, payload);
        while sim.recv("p").is_some() {}
    }
}

#[test]
fn each_message_goes_to_one_member_in_turn_and_plain_subscribers_get_all() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    for name in ["a", "b", "c"] {
        sim.connect(name, V5);
        sim.subscribe(name, "$share/g/t/+", QoS::AtLeastOnce);
    }
    sim.connect("plain", V3_1_1);
    sim.subscribe("plain", "t/#", QoS::AtMostOnce);
    sim.connect("p", V5);
    publish_all(
        &mut sim,
        "t/1",
        QoS::AtLeastOnce,
        &["1", "2", "3", "4", "5", "6"],
    );
    assert_eq!(drain(&mut sim, "a"), ["1", "4"]);
    assert_eq!(drain(&mut sim, "b"), ["2", "5"]);
    assert_eq!(drain(&mut sim, "c"), ["3", "6"]);
    assert_eq!(drain(&mut sim, "plain"), ["1", "2", "3", "4", "5", "6"]);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn two_groups_on_one_filter_each_get_every_message() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect("a", V5);
    sim.subscribe("a", "$share/one/t", QoS::AtMostOnce);
    sim.connect("b", V5);
    sim.subscribe("b", "$share/two/t", QoS::AtMostOnce);
    sim.connect("p", V5);
    publish_all(&mut sim, "t", QoS::AtMostOnce, &["x", "y"]);
    assert_eq!(drain(&mut sim, "a"), ["x", "y"]);
    assert_eq!(drain(&mut sim, "b"), ["x", "y"]);
}

#[test]
fn sticky_and_hash_strategies_keep_to_one_member() {
    for strategy in [
        SharedStrategy::Sticky,
        SharedStrategy::HashTopic,
        SharedStrategy::HashPublisher,
    ] {
        let mut sim = sim_with(strategy);
        for name in ["a", "b", "c"] {
            sim.connect(name, V5);
            sim.subscribe(name, "$share/g/t", QoS::AtMostOnce);
        }
        sim.connect("p", V5);
        publish_all(&mut sim, "t", QoS::AtMostOnce, &["1", "2", "3", "4"]);
        let got: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|n| drain(&mut sim, n).len())
            .collect();
        assert_eq!(got.iter().sum::<usize>(), 4, "{strategy:?}: {got:?}");
        assert!(
            got.contains(&4),
            "{strategy:?}: one member got them all: {got:?}"
        );
    }
}

#[test]
fn granted_qos_is_each_members_own() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect("q0", V5);
    sim.subscribe("q0", "$share/g/t", QoS::AtMostOnce);
    sim.connect("q2", V5);
    sim.subscribe("q2", "$share/g/t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "first");
    sim.publish("p", "t", QoS::ExactlyOnce, "second");
    let first = sim.recv_all("q0");
    assert!(matches!(&first[..], [Packet::Publish(p)] if p.delivery == Delivery::AtMostOnce));
    assert!(
        matches!(sim.recv("q2"), Some(Packet::Publish(p)) if p.delivery.qos() == QoS::ExactlyOnce)
    );
}

#[test]
fn a_member_going_offline_hands_its_queue_and_unacknowledged_qos1_to_an_online_member() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect_with("a", persistent("a", 600));
    sim.subscribe("a", "$share/g/t", QoS::AtLeastOnce);
    sim.connect_with("b", persistent("b", 600));
    sim.subscribe("b", "$share/g/t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    // "a" gets 1 and 3 and acknowledges neither; "b" acknowledges 2 and 4.
    publish_all(&mut sim, "t", QoS::AtLeastOnce, &["1", "2", "3", "4"]);
    let to_a: Vec<Packet> = sim.recv_all("a");
    assert_eq!(to_a.len(), 2);
    assert_eq!(drain(&mut sim, "b"), ["2", "4"]);
    sim.drop_connection("a");
    // The unacknowledged QoS 1 messages went to "b" (possibly a duplicate: at least once allows it).
    assert_eq!(drain(&mut sim, "b"), ["1", "3"]);
    // "a" comes back: nothing is resent, it was handed over.
    sim.connect_with("a", persistent("a", 600));
    assert!(drain(&mut sim, "a").is_empty());
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn qos2_in_progress_stays_with_its_member() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect_with("a", persistent("a", 600));
    sim.subscribe("a", "$share/g/t", QoS::ExactlyOnce);
    sim.connect_with("b", persistent("b", 600));
    sim.subscribe("b", "$share/g/t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    publish_all(&mut sim, "t", QoS::ExactlyOnce, &["only"]);
    assert_eq!(sim.recv_all("a").len(), 1, "sent to a, not yet PUBREC'd");
    sim.drop_connection("a");
    assert!(drain(&mut sim, "b").is_empty(), "[MQTT-4.8.2-4]");
    sim.connect_with("a", persistent("a", 600));
    let resent = sim.recv_all("a");
    assert!(
        matches!(&resent[..], [Packet::Publish(p)] if p.dup && p.payload == "only"),
        "{resent:?}"
    );
}

#[test]
fn an_all_offline_group_queues_and_the_first_member_back_gets_the_messages() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    for name in ["a", "b"] {
        sim.connect_with(name, persistent(name, 600));
        sim.subscribe(name, "$share/g/t", QoS::AtLeastOnce);
        sim.drop_connection(name);
    }
    sim.connect("p", V5);
    publish_all(&mut sim, "t", QoS::AtLeastOnce, &["1", "2", "3", "4"]);
    // Queued round robin on the offline members; "b" comes back first and takes the group's messages:
    // its own queue first, then what it took from "a" (a group does not keep one order across members).
    sim.connect_with("b", persistent("b", 600));
    assert_eq!(drain(&mut sim, "b"), ["2", "4", "1", "3"]);
    sim.connect_with("a", persistent("a", 600));
    assert!(drain(&mut sim, "a").is_empty());
}

#[test]
fn a_member_whose_session_ends_hands_its_queue_to_an_offline_member() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect_with("a", persistent("a", 10));
    sim.subscribe("a", "$share/g/t", QoS::AtLeastOnce);
    sim.connect_with("b", persistent("b", 600));
    sim.subscribe("b", "$share/g/t", QoS::AtLeastOnce);
    sim.drop_connection("a");
    sim.drop_connection("b");
    sim.connect("p", V5);
    publish_all(&mut sim, "t", QoS::AtLeastOnce, &["1", "2"]);
    // "a"'s session expires with "1" queued: it moves to "b" rather than being lost.
    sim.advance(std::time::Duration::from_secs(11));
    sim.connect_with("b", persistent("b", 600));
    assert_eq!(drain(&mut sim, "b"), ["2", "1"]);
}

#[test]
fn shared_subscriptions_get_no_retained_messages_and_refuse_no_local() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect("p", V5);
    let mut retained = Publish::new(
        cicada_engine::codec::TopicName::new("t").expect("valid"),
        bytes::Bytes::from_static(b"kept"),
    );
    retained.retain = true;
    sim.send("p", Packet::Publish(retained));
    sim.connect("s", V5);
    sim.subscribe("s", "$share/g/t", QoS::AtMostOnce);
    assert!(
        sim.recv("s").is_none(),
        "no retained message for a shared subscription"
    );

    let answer = sim.subscribe_with(
        "s",
        "$share/g/u",
        SubscriptionOptions {
            no_local: true,
            ..Default::default()
        },
    );
    assert!(matches!(answer, Some(Packet::Disconnect(d)) if d.reason == ReasonCode::ProtocolError));
    assert!(sim.is_closed("s"));
}

#[test]
fn shared_subscriptions_can_be_switched_off() {
    let mut sim = Sim::new(Config {
        shared_subscriptions: false,
        ..Config::default()
    });
    let ack = sim.connect("s", V5);
    assert!(
        matches!(&ack, Some(Packet::ConnAck(a)) if a.properties.shared_subscription_available == Some(false))
    );
    let ack = sim.subscribe("s", "$share/g/t", QoS::AtMostOnce);
    assert!(matches!(ack, Some(Packet::SubAck(a))
        if a.reasons == [ReasonCode::SharedSubscriptionsNotSupported]));
}

#[test]
fn shared_membership_survives_a_restart() {
    let mut sim = sim_with(SharedStrategy::RoundRobin);
    sim.connect_with("a", persistent("a", 600));
    sim.subscribe("a", "$share/g/t", QoS::AtLeastOnce);
    sim.connect_with("b", persistent("b", 600));
    sim.subscribe("b", "$share/g/t", QoS::AtLeastOnce);
    sim.crash(std::time::Duration::from_secs(1));
    sim.connect_with("a", persistent("a", 600));
    sim.connect_with("b", persistent("b", 600));
    sim.connect("p", V5);
    publish_all(&mut sim, "t", QoS::AtLeastOnce, &["1", "2"]);
    let a = drain(&mut sim, "a");
    let b = drain(&mut sim, "b");
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
}
