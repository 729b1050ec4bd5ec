//! `$SYS/broker/...` topics through the simulation harness.

use std::time::Duration;

use cicada_engine::codec::{Packet, ProtocolVersion, QoS};
use cicada_engine::sim::Sim;
use cicada_engine::Config;

fn sim() -> Sim {
    Sim::new(Config {
        sys_interval: Some(Duration::from_secs(10)),
        ..Config::default()
    })
}

/// (topic, payload) of every PUBLISH `name` received.
fn received(sim: &mut Sim, name: &str) -> Vec<(String, String)> {
    sim.recv_all(name)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.topic.as_str().to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn value<'a>(got: &'a [(String, String)], topic: &str) -> Option<&'a str> {
    got.iter()
        .find(|(t, _)| t == topic)
        .map(|(_, v)| v.as_str())
}

#[test]
fn counters_are_published_every_interval_and_only_when_changed() {
    let mut sim = sim();
    sim.connect("watch", ProtocolVersion::V5);
    sim.subscribe("watch", "$SYS/#", QoS::AtMostOnce);
    sim.connect("all", ProtocolVersion::V3_1_1);
    sim.subscribe("all", "#", QoS::AtMostOnce);
    sim.connect("p", ProtocolVersion::V5);
    sim.publish("p", "a", QoS::AtMostOnce, "x");
    let _ = received(&mut sim, "all");

    sim.advance(Duration::from_secs(10));
    let first = received(&mut sim, "watch");
    assert_eq!(value(&first, "$SYS/broker/uptime"), Some("10 seconds"));
    assert_eq!(value(&first, "$SYS/broker/clients/connected"), Some("3"));
    assert_eq!(value(&first, "$SYS/broker/clients/total"), Some("3"));
    assert_eq!(value(&first, "$SYS/broker/messages/received"), Some("1"));
    assert_eq!(value(&first, "$SYS/broker/subscriptions/count"), Some("2"));
    assert!(value(&first, "$SYS/broker/version").is_some_and(|v| v.starts_with("cicada ")));
    assert!(
        received(&mut sim, "all").is_empty(),
        "# does not match $SYS [MQTT-4.7.2-1]"
    );
    insta::assert_snapshot!(first
        .iter()
        .map(|(t, v)| format!("{t} = {v}"))
        .collect::<Vec<_>>()
        .join("\n"));

    // Nothing else happened: the next update carries uptime and the counters our own $SYS traffic moved.
    sim.advance(Duration::from_secs(10));
    let second = received(&mut sim, "watch");
    let topics: Vec<&str> = second.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$SYS/broker/uptime",
            "$SYS/broker/messages/sent",
            "$SYS/broker/bytes/sent"
        ]
    );

    // A client that leaves shows up at the next update.
    sim.drop_connection("all");
    sim.advance(Duration::from_secs(10));
    let third = received(&mut sim, "watch");
    assert_eq!(value(&third, "$SYS/broker/clients/connected"), Some("2"));
}

#[test]
fn a_later_subscriber_gets_the_current_values_at_once() {
    let mut sim = sim();
    sim.connect("early", ProtocolVersion::V5);
    sim.advance(Duration::from_secs(10));
    sim.connect("late", ProtocolVersion::V5);
    sim.subscribe("late", "$SYS/broker/clients/+", QoS::AtMostOnce);
    let got = received(&mut sim, "late");
    assert_eq!(value(&got, "$SYS/broker/clients/connected"), Some("1"));
}

#[test]
fn off_by_default() {
    let mut sim = Sim::new(Config::default());
    sim.connect("watch", ProtocolVersion::V5);
    sim.subscribe("watch", "$SYS/#", QoS::AtMostOnce);
    sim.advance(Duration::from_secs(60));
    assert!(received(&mut sim, "watch").is_empty());
}
