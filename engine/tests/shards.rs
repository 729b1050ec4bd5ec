//! Several engines of one node (one per core) exchanging peer messages: interest, forwarded
//! publishes, shared groups across engines, retained messages, and who owns a client identifier.

use bytes::BytesMut;
use cicada_engine::codec::{
    peek_client_id, Connect, Packet, Peek, ProtocolVersion, QoS, ReasonCode, TopicFilter,
    TopicName, Unsubscribe,
};
use cicada_engine::sim::expect::{connack, payloads};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, Event, Input, PeerMessage, Shard};

use ProtocolVersion::{V3_1_1, V5};

/// `count` engines with different seeds, as a shell would start them.
fn node(count: u16) -> Vec<Sim> {
    (0..count)
        .map(|index| {
            let config = Config {
                shard: Shard { index, count },
                ..Config::default()
            };
            Sim::with_seed(config, 100 + u64::from(index))
        })
        .collect()
}

/// Carries every peer message to its engine until none is left, like the shell's channels; returns
/// how many publishes were forwarded.
fn exchange(node: &mut [Sim]) -> usize {
    let mut forwarded = 0;
    loop {
        let mut mail = Vec::new();
        for sim in node.iter_mut() {
            for event in std::mem::take(&mut sim.events) {
                if let Event::Peer { to, message } = event {
                    forwarded += usize::from(matches!(message, PeerMessage::Publish { .. }));
                    mail.push((to, message));
                }
            }
        }
        if mail.is_empty() {
            return forwarded;
        }
        for (to, message) in mail {
            node[usize::from(to)].input(Input::Peer { message });
        }
    }
}

#[test]
fn a_publish_reaches_subscribers_on_other_engines_once_per_engine() {
    let mut node = node(3);
    node[1].connect("s1", V5);
    node[1].subscribe("s1", "a/+", QoS::AtMostOnce);
    node[1].connect("s2", V3_1_1);
    node[1].subscribe("s2", "a/#", QoS::AtMostOnce);
    node[2].connect("quiet", V5);
    node[2].subscribe("quiet", "b/#", QoS::AtMostOnce);
    exchange(&mut node);
    node[0].connect("p", V5);
    node[0].publish("p", "a/b", QoS::AtMostOnce, "hello");
    // One forward to engine 1 (two subscribers there), none to engine 2.
    assert_eq!(exchange(&mut node), 1);
    assert_eq!(payloads(&node[1].recv_all("s1")), ["hello"]);
    assert_eq!(payloads(&node[1].recv_all("s2")), ["hello"]);
    assert!(payloads(&node[2].recv_all("quiet")).is_empty());

    // Once both unsubscribe, engine 1 is no longer sent anything.
    for (name, filter) in [("s1", "a/+"), ("s2", "a/#")] {
        let pid = node[1].next_packet_id(name);
        let unsubscribe = Unsubscribe {
            packet_id: pid,
            properties: Default::default(),
            filters: vec![TopicFilter::new(filter.to_string()).expect("valid filter")],
        };
        node[1].send(name, Packet::Unsubscribe(unsubscribe));
    }
    exchange(&mut node);
    node[0].publish("p", "a/b", QoS::AtMostOnce, "again");
    assert_eq!(exchange(&mut node), 0);
    assert!(payloads(&node[1].recv_all("s1")).is_empty());
}

/// The SUBACK leaves only once every other engine knows the filter, so a message published on any
/// engine after the client got it reaches the subscription (under CPU load, a publish on another
/// engine was handled before the interest, and the message missed it).
#[test]
fn a_suback_leaves_once_every_other_engine_knows_the_filter() {
    let mut node = node(3);
    node[0].connect("p", V5);
    node[1].connect("s", V5);
    assert_eq!(node[1].subscribe("s", "t/#", QoS::AtMostOnce), None);
    // Engine 0 heard of it, engine 2 not yet: still held.
    let mail: Vec<(u16, PeerMessage)> = std::mem::take(&mut node[1].events)
        .into_iter()
        .filter_map(|e| match e {
            Event::Peer { to, message } => Some((to, message)),
            _ => None,
        })
        .collect();
    assert_eq!(mail.len(), 2);
    let mut held = Vec::new();
    for (to, message) in mail {
        if to == 0 {
            node[0].input(Input::Peer { message });
        } else {
            held.push((to, message));
        }
    }
    exchange(&mut node);
    assert!(node[1].recv_all("s").is_empty());
    for (to, message) in held {
        node[usize::from(to)].input(Input::Peer { message });
    }
    exchange(&mut node);
    assert!(matches!(node[1].recv("s"), Some(Packet::SubAck(_))));
    node[0].publish("p", "t/a", QoS::AtMostOnce, "after");
    exchange(&mut node);
    assert_eq!(payloads(&node[1].recv_all("s")), ["after"]);
}

#[test]
fn a_subscriber_whose_session_ends_withdraws_its_interest() {
    let mut node = node(2);
    node[1].connect("s", V5);
    node[1].subscribe("s", "t", QoS::AtLeastOnce);
    exchange(&mut node);
    node[1].drop_connection("s");
    exchange(&mut node);
    node[0].connect("p", V5);
    node[0].publish("p", "t", QoS::AtMostOnce, "x");
    assert_eq!(exchange(&mut node), 0);
}

#[test]
fn a_shared_group_spread_over_engines_gets_each_message_exactly_once() {
    let mut node = node(3);
    node[0].connect("m0", V5);
    node[0].subscribe("m0", "$share/g/jobs/+", QoS::AtMostOnce);
    node[1].connect("m1", V5);
    node[1].subscribe("m1", "$share/g/jobs/+", QoS::AtMostOnce);
    node[1].connect("m1b", V5);
    node[1].subscribe("m1b", "$share/g/jobs/+", QoS::AtMostOnce);
    node[2].connect("plain", V5);
    node[2].subscribe("plain", "jobs/#", QoS::AtMostOnce);
    exchange(&mut node);
    node[2].connect("p", V5);
    for i in 0..200 {
        node[2].publish("p", "jobs/x", QoS::AtMostOnce, &i.to_string());
        exchange(&mut node);
    }
    let mut got: Vec<u32> = Vec::new();
    let mut per_member = Vec::new();
    for (engine, name) in [(0, "m0"), (1, "m1"), (1, "m1b")] {
        let mine = payloads(&node[engine].recv_all(name));
        per_member.push(mine.len());
        got.extend(mine.iter().map(|p| p.parse::<u32>().expect("number")));
    }
    got.sort_unstable();
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "each message once");
    // Round robin over all three members, wherever they are: 67, 67, 66 in some order.
    assert!(
        per_member.iter().all(|n| (66..=67).contains(n)),
        "{per_member:?}"
    );
    // The ordinary subscriber on the publishing engine sees every message.
    assert_eq!(payloads(&node[2].recv_all("plain")).len(), 200);
}

#[test]
fn retained_messages_reach_every_engine_and_clearing_them_too() {
    let mut node = node(2);
    node[0].connect("p", V5);
    let mut publish = cicada_engine::codec::Publish::new(
        TopicName::new("state/door").expect("topic"),
        bytes::Bytes::from_static(b"open"),
    );
    publish.retain = true;
    node[0].send("p", Packet::Publish(publish.clone()));
    // Retained goes everywhere even with no subscriber.
    assert_eq!(exchange(&mut node), 1);
    node[1].connect("late", V5);
    node[1].subscribe("late", "state/#", QoS::AtMostOnce);
    exchange(&mut node);
    assert_eq!(payloads(&node[1].recv_all("late")), ["open"]);
    assert_eq!(node[1].engine.retained_count(), 1);
    // Only the publishing engine stores it.
    assert!(node[1].store.state.retained.is_empty());
    assert_eq!(node[0].store.state.retained.len(), 1);

    publish.payload = bytes::Bytes::new();
    node[0].send("p", Packet::Publish(publish));
    exchange(&mut node);
    assert_eq!(node[1].engine.retained_count(), 0);
    node[1].connect("later", V5);
    node[1].subscribe("later", "state/#", QoS::AtMostOnce);
    exchange(&mut node);
    assert!(payloads(&node[1].recv_all("later")).is_empty());
}

#[test]
fn assigned_client_ids_lead_back_to_the_engine_that_made_them() {
    let mut node = node(4);
    let mut connect = Sim::connect_packet("", V5);
    connect.client_id = "".into();
    let ack = connack(node[3].connect_with("anon", connect));
    assert_eq!(ack.reason, ReasonCode::Success);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("an assigned identifier");
    assert!(id.starts_with("cicada-s3-"), "{id}");
    assert_eq!(Shard { index: 0, count: 4 }.owner(&id, "cicada-"), 3);
}

#[test]
fn the_client_id_is_read_from_a_connect_without_consuming_it() {
    let connect = Connect {
        client_id: "sensor-17".into(),
        ..Sim::connect_packet("x", V5)
    };
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(V5, &mut bytes)
        .expect("encodes");
    assert_eq!(peek_client_id(&bytes[..5], 1024), Peek::Incomplete);
    assert_eq!(
        peek_client_id(&bytes, 1024),
        Peek::ClientId("sensor-17".into())
    );
    assert_eq!(peek_client_id(&bytes, 8), Peek::Refused);
    assert_eq!(peek_client_id(&[0xC0, 0x00], 1024), Peek::Refused);
}

#[test]
fn a_publisher_is_acknowledged_only_once_the_engine_holding_the_subscriber_stored_it() {
    let mut node = node(2);
    // Engine 1 keeps a persistent session and writes slowly: its batches wait for `persist_all`.
    let mut connect = Sim::connect_packet("keeper", V5);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    node[1].connect_with("keeper", connect);
    node[1].subscribe("keeper", "orders/#", QoS::AtLeastOnce);
    node[1].drop_connection("keeper");
    exchange(&mut node);
    node[1].auto_persist = false;

    node[0].connect("p", V5);
    let publish = node[0].publish("p", "orders/1", QoS::AtLeastOnce, "42");
    exchange(&mut node);
    assert!(
        node[0].recv_all("p").is_empty(),
        "no PUBACK while the message is only in engine 1's unwritten batch"
    );
    assert!(node[1].store.state.sessions["keeper"].messages.len() == 1);
    assert!(node[1].durable.sessions["keeper"].messages.is_empty());

    node[1].persist_all();
    exchange(&mut node);
    match node[0].recv("p") {
        Some(Packet::PubAck(ack)) => assert_eq!(Some(ack.packet_id), publish.delivery.packet_id()),
        other => panic!("expected the PUBACK once engine 1 stored the message, got {other:?}"),
    }
    assert_eq!(node[1].durable.sessions["keeper"].messages.len(), 1);

    // QoS 0 waits for nobody.
    node[0].publish("p", "orders/2", QoS::AtMostOnce, "x");
    let forwarded = node[0].events.iter().any(|e| {
        matches!(
            e,
            Event::Peer {
                message: PeerMessage::Publish { receipt: None, .. },
                ..
            }
        )
    });
    assert!(forwarded);
}
