//! What the admin API and metrics ask of the engine, driven without sockets: session and
//! subscription listings, topic statistics, queue totals, counters by QoS and drop reason, deleting a
//! session or a retained message, and reconfiguring live.

use bytes::Bytes;
use cicada_engine::codec::{
    Connect, Delivery, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicName,
};
use cicada_engine::sim::{expect, Sim};
use cicada_engine::{Config, Event, Input, Reconfigured};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

fn topic(name: &str) -> TopicName {
    TopicName::new(name.to_string()).expect("valid topic")
}

fn persistent(name: &str, expiry: u32) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

fn retain(sim: &mut Sim, client: &str, topic_name: &str, payload: &'static str) {
    let mut p = Publish::new(topic(topic_name), Bytes::from_static(payload.as_bytes()));
    p.retain = true;
    p.delivery = Delivery::AtLeastOnce(sim.next_packet_id(client));
    sim.send(client, Packet::Publish(p));
    sim.recv_all(client);
}

fn reports(sim: &Sim) -> Vec<Reconfigured> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Reconfigured(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn sessions_and_subscriptions_are_listed_with_their_state() {
    let mut sim = Sim::new(Config::default());
    expect::connack(sim.connect_with("keeper", persistent("keeper", 600)));
    expect::suback_of(sim.subscribe("keeper", "a/+", QoS::AtLeastOnce));
    expect::suback_of(sim.subscribe("keeper", "$share/g/jobs", QoS::ExactlyOnce));
    sim.send(
        "keeper",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.connect("live", V3);
    expect::suback_of(sim.subscribe("live", "a/#", QoS::AtMostOnce));
    sim.publish("live", "a/b", QoS::AtLeastOnce, "queued for keeper");
    sim.recv_all("live");

    let all: Vec<_> = sim.engine.sessions().collect();
    assert_eq!(all.len(), 2);
    let keeper = sim.engine.session("keeper").expect("keeper's session");
    assert_eq!(keeper.conn, None, "keeper is offline");
    assert!(keeper.offline_since.is_some());
    assert_eq!(keeper.expiry_interval, 600);
    assert_eq!(keeper.subscriptions, 2);
    assert_eq!(keeper.queued, 1, "the QoS 1 message waits for keeper");
    assert!(keeper.queued_bytes >= "queued for keeper".len());
    let live = sim.engine.session("live").expect("live's session");
    assert_eq!(live.conn, Some(sim.conn("live")));
    assert_eq!(live.protocol, V3);
    assert!(live.peer.is_some());
    assert_eq!(sim.engine.session("nobody"), None);

    let subs = sim.engine.subscriptions_of("keeper").expect("keeper's");
    let filters: Vec<&str> = subs.iter().map(|s| &*s.filter).collect();
    assert_eq!(filters, ["$share/g/jobs", "a/+"]);
    assert_eq!(subs[0].qos, QoS::ExactlyOnce);
    assert_eq!(sim.engine.subscriptions().count(), 3);

    let stats = sim.engine.topic_stats(&topic("a/b"));
    assert_eq!(stats.subscribers, 2, "a/+ and a/# match");
    assert_eq!(stats.shared_groups, 0);
    assert_eq!(sim.engine.topic_stats(&topic("jobs")).shared_groups, 1);

    let totals = sim.engine.totals();
    assert_eq!((totals.connected, totals.queued), (1, 1));
}

#[test]
fn counters_split_by_qos_and_drop_reason() {
    let mut sim = Sim::new(Config {
        queue_qos0_offline: false,
        ..Config::default()
    });
    expect::connack(sim.connect_with("away", persistent("away", 600)));
    expect::suback_of(sim.subscribe("away", "t", QoS::ExactlyOnce));
    sim.send(
        "away",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.connect("sub", V5);
    expect::suback_of(sim.subscribe("sub", "t", QoS::ExactlyOnce));
    sim.connect("pub", V5);
    sim.publish("pub", "t", QoS::AtMostOnce, "zero");
    sim.publish("pub", "t", QoS::AtLeastOnce, "one");
    sim.publish("pub", "t", QoS::ExactlyOnce, "two");
    sim.recv_all("pub");
    sim.recv_all("sub");

    let stats = sim.engine.stats();
    assert_eq!(stats.publishes_received_by_qos, [1, 1, 1]);
    assert_eq!(
        stats.publishes_sent_by_qos,
        [1, 1, 1],
        "to the online subscriber"
    );
    assert_eq!(
        stats.dropped.offline, 1,
        "QoS 0 to the offline session is dropped"
    );
    assert_eq!(stats.messages_dropped, 1);
    assert_eq!(sim.engine.session("away").expect("away").queued, 2);
}

#[test]
fn deleting_a_session_disconnects_its_client_and_removes_it_from_storage() {
    let mut sim = Sim::new(Config::default());
    expect::connack(sim.connect_with("doomed", persistent("doomed", 600)));
    expect::suback_of(sim.subscribe("doomed", "t", QoS::AtLeastOnce));
    assert!(sim.store.state.sessions.contains_key("doomed"));

    sim.input(Input::DeleteSession {
        client_id: "doomed".into(),
    });
    let d = expect::disconnect_of(sim.recv("doomed"));
    assert_eq!(d.reason, ReasonCode::AdministrativeAction);
    assert!(sim.is_closed("doomed"));
    assert_eq!(sim.engine.session("doomed"), None);
    assert_eq!(sim.engine.subscription_count(), 0);
    assert!(
        !sim.store.state.sessions.contains_key("doomed"),
        "a restart must not bring it back"
    );

    let ack = expect::connack(sim.connect_with("doomed", persistent("doomed", 600)));
    assert!(!ack.session_present, "the client starts afresh");
}

#[test]
fn deleting_an_offline_session_and_an_unknown_one() {
    let mut sim = Sim::new(Config::default());
    expect::connack(sim.connect_with("off", persistent("off", 600)));
    sim.send(
        "off",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.input(Input::DeleteSession {
        client_id: "off".into(),
    });
    assert_eq!(sim.engine.session_count(), 0);
    assert!(!sim.store.state.sessions.contains_key("off"));
    sim.input(Input::DeleteSession {
        client_id: "never".into(),
    });
    assert_eq!(sim.engine.session_count(), 0);
}

#[test]
fn deleting_a_retained_message_clears_it_in_memory_and_storage() {
    let mut sim = Sim::new(Config::default());
    sim.connect("p", V5);
    retain(&mut sim, "p", "cfg/a", "v1");
    retain(&mut sim, "p", "cfg/b", "v2");
    assert_eq!(sim.engine.retained_matching("cfg/#", 10).len(), 2);
    assert_eq!(sim.engine.retained_matching("cfg/#", 1).len(), 1, "limited");
    assert!(sim.store.state.retained.contains_key("cfg/a"));

    sim.input(Input::DeleteRetained {
        topic: topic("cfg/a"),
    });
    assert_eq!(sim.engine.retained(&topic("cfg/a")), None);
    assert!(!sim.store.state.retained.contains_key("cfg/a"));
    sim.connect("late", V5);
    sim.subscribe("late", "cfg/#", QoS::AtLeastOnce);
    assert_eq!(expect::payloads(&sim.recv_all("late")), ["v2"]);
    let stats = sim.engine.topic_stats(&topic("cfg/b"));
    assert_eq!(
        stats.retained.map(|m| m.payload.clone()),
        Some(Bytes::from_static(b"v2"))
    );
}

#[test]
fn reconfigure_applies_live_limits_and_reports_the_rest() {
    let mut sim = Sim::new(Config::default());
    sim.connect("before", V5);
    let new = Config {
        max_packet_size: 64,
        receive_maximum: 10,
        max_queued_messages: 5,
        ..Config::default()
    };
    sim.input(Input::Reconfigure {
        config: Box::new(new),
    });
    assert_eq!(
        reports(&sim),
        [Reconfigured {
            applied: vec!["max_packet_size", "max_queued_messages"],
            needs_restart: vec!["receive_maximum"],
            rejected: None,
        }]
    );
    assert_eq!(sim.engine.config().max_packet_size, 64);
    assert_eq!(
        sim.engine.config().receive_maximum,
        Config::default().receive_maximum,
        "advertised to connected clients, kept until a restart"
    );

    // The new limit holds for a new connection.
    sim.connect("after", V5);
    sim.publish("after", "t", QoS::AtMostOnce, &"x".repeat(100));
    let d = expect::disconnect_of(sim.recv("after"));
    assert_eq!(d.reason, ReasonCode::PacketTooLarge);
}

#[test]
fn an_invalid_configuration_is_refused_whole() {
    let mut sim = Sim::new(Config::default());
    let bad = Config {
        max_packet_size: 0,
        max_queued_messages: 5,
        ..Config::default()
    };
    sim.input(Input::Reconfigure {
        config: Box::new(bad),
    });
    let report = reports(&sim).pop().expect("a report");
    assert!(report.rejected.is_some(), "{report:?}");
    assert!(report.applied.is_empty());
    assert_eq!(
        sim.engine.config().max_queued_messages,
        Config::default().max_queued_messages
    );
}

#[test]
fn a_drain_keeps_persistent_sessions_and_their_wills_for_the_next_start() {
    let mut sim = Sim::new(Config::default());
    let mut connect = persistent("leaver", 600);
    connect.will = Some(cicada_engine::codec::Will {
        topic: topic("wills/leaver"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: cicada_engine::codec::WillProperties {
            will_delay_interval: Some(30),
            ..Default::default()
        },
    });
    expect::connack(sim.connect_with("leaver", connect));
    expect::connack(sim.connect_with("watcher", persistent("watcher", 600)));
    expect::suback_of(sim.subscribe("watcher", "wills/#", QoS::AtLeastOnce));

    sim.input(Input::Shutdown);
    let d = expect::disconnect_of(sim.recv("leaver"));
    assert_eq!(d.reason, ReasonCode::ServerShuttingDown);
    assert!(
        expect::payloads(&sim.recv_all("watcher")).is_empty(),
        "no will at shutdown"
    );
    let stored = &sim.store.state.sessions["leaver"];
    assert!(stored.will.is_some(), "the will is stored: {stored:?}");
    sim.persist_all();

    // The broker comes back; the leaver does not: its will goes out once its delay is over.
    sim.crash(std::time::Duration::from_secs(1));
    sim.advance(std::time::Duration::from_secs(31));
    let ack = expect::connack(sim.connect_with("watcher", persistent("watcher", 600)));
    assert!(ack.session_present);
    assert_eq!(expect::payloads(&sim.recv_all("watcher")), ["gone"]);
}
