//! Message events for the shell's webhooks ([`Config::message_events`]), driven without sockets:
//! a message on a watched topic raises one `MessagePublished`, and one `MessageDelivered` per
//! subscriber once it reached it (written at QoS 0, acknowledged at QoS 1); other topics, and a
//! configuration watching nothing, raise none.

use cicada_engine::codec::{Ack, Delivery, Packet, ProtocolVersion, QoS, TopicFilter};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, Event};

use ProtocolVersion::V5;

/// The message events so far, as `published <topic> by <origin>` / `delivered <topic> to <client>
/// qos <n>`.
fn message_events(sim: &mut Sim) -> Vec<String> {
    sim.events
        .drain(..)
        .filter_map(|event| match event {
            Event::MessagePublished { message } => Some(format!(
                "published {} by {}",
                message.topic.as_str(),
                message.origin.as_deref().unwrap_or("-")
            )),
            Event::MessageDelivered {
                client_id,
                qos,
                message,
            } => Some(format!(
                "delivered {} to {client_id} qos {}",
                message.topic.as_str(),
                qos.as_u8()
            )),
            _ => None,
        })
        .collect()
}

fn scenario(watch: &[&str]) -> (Sim, Vec<String>, Vec<String>) {
    let config = Config {
        message_events: watch
            .iter()
            .map(|f| TopicFilter::new(f.to_string()).expect("filter"))
            .collect(),
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    for name in ["fast", "sure", "pub"] {
        sim.connect(name, V5);
    }
    sim.subscribe("fast", "#", QoS::AtMostOnce);
    sim.subscribe("sure", "#", QoS::AtLeastOnce);
    sim.events.clear();
    sim.publish("pub", "watched/a", QoS::AtLeastOnce, "x");
    sim.publish("pub", "other/b", QoS::AtLeastOnce, "y");
    let before_ack = message_events(&mut sim);
    // `sure` acknowledges what it got.
    for packet in sim.recv_all("sure") {
        if let Packet::Publish(p) = packet {
            if let Delivery::AtLeastOnce(id) = p.delivery {
                sim.send("sure", Packet::PubAck(Ack::new(id)));
            }
        }
    }
    let after_ack = message_events(&mut sim);
    (sim, before_ack, after_ack)
}

#[test]
fn watched_messages_raise_published_then_delivered_once_acknowledged() {
    let (_, before, after) = scenario(&["watched/#"]);
    assert_eq!(
        before,
        [
            "published watched/a by pub",
            "delivered watched/a to fast qos 0"
        ]
    );
    assert_eq!(after, ["delivered watched/a to sure qos 1"]);
}

#[test]
fn watching_nothing_raises_no_message_events() {
    let (_, before, after) = scenario(&[]);
    assert!(
        before.is_empty() && after.is_empty(),
        "{before:?} {after:?}"
    );
}
