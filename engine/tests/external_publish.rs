//! Publishes from outside MQTT ([`Input::Publish`], the HTTP publish API), driven without sockets:
//! routed like a client's PUBLISH, refused by the same rules with the same reason codes, and
//! answered only once what they changed is durable.

use std::sync::Arc;

use bytes::Bytes;
use cicada_engine::acl::Acl;
use cicada_engine::codec::{
    Connect, ProtocolVersion, PublishProperties, QoS, ReasonCode, SubscriptionOptions, TopicName,
    UserProperty,
};
use cicada_engine::sim::expect::{connack, payloads, publish_of};
use cicada_engine::sim::Sim;
use cicada_engine::{Config, Event, ExternalPublish, Input, Principal, PublishOutcome};

use ProtocolVersion::V5;

fn message(topic: &str, payload: &str, qos: QoS, retain: bool) -> ExternalPublish {
    ExternalPublish {
        topic: TopicName::new(topic.to_string()).expect("valid topic"),
        payload: Bytes::from(payload.to_string()),
        qos,
        retain,
        properties: PublishProperties::default(),
    }
}

fn user(name: Option<&str>) -> Principal {
    Principal {
        username: name.map(Into::into),
        claims: Vec::new(),
    }
}

fn send(sim: &mut Sim, request: u64, principal: Principal, publish: ExternalPublish) {
    sim.input(Input::Publish {
        request,
        principal,
        publish,
    });
}

/// The answers given so far, in order.
fn answers(sim: &Sim) -> Vec<(u64, PublishOutcome)> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Published { request, outcome } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn persistent(name: &str) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    c
}

#[test]
fn reaches_subscribers_with_its_qos_and_properties() {
    let mut sim = Sim::new(Config::default());
    connack(sim.connect("s", V5));
    sim.subscribe("s", "sensors/#", QoS::AtLeastOnce);
    let mut m = message("sensors/1", "21.5", QoS::AtLeastOnce, false);
    m.properties.content_type = Some("text/plain".into());
    m.properties.user_properties = vec![UserProperty {
        name: "source".into(),
        value: "http".into(),
    }];
    send(&mut sim, 7, user(None), m);
    let got = publish_of(sim.recv("s"));
    assert_eq!(got.topic.as_str(), "sensors/1");
    assert_eq!(&got.payload[..], b"21.5");
    assert_eq!(got.delivery.qos(), QoS::AtLeastOnce);
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.properties.user_properties.len(), 1);
    assert_eq!(answers(&sim), vec![(7, PublishOutcome::Accepted)]);
}

#[test]
fn a_retained_message_is_answered_once_durable_and_kept() {
    let mut sim = Sim::new(Config::default());
    sim.auto_persist = false;
    send(
        &mut sim,
        1,
        user(None),
        message("status", "up", QoS::AtMostOnce, true),
    );
    assert!(
        answers(&sim).is_empty(),
        "the retained write is not durable yet"
    );
    sim.persist_all();
    assert_eq!(answers(&sim), vec![(1, PublishOutcome::Accepted)]);
    connack(sim.connect("late", V5));
    sim.subscribe("late", "status", QoS::AtMostOnce);
    assert_eq!(payloads(&sim.recv_all("late")), vec!["up".to_string()]);
}

#[test]
fn a_message_for_a_persistent_session_waits_for_its_queue_write() {
    let mut sim = Sim::new(Config::default());
    connack(sim.connect_with("s", persistent("s")));
    sim.subscribe("s", "jobs", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.auto_persist = false;
    send(
        &mut sim,
        3,
        user(None),
        message("jobs", "j1", QoS::AtLeastOnce, false),
    );
    assert!(answers(&sim).is_empty());
    sim.persist_all();
    assert_eq!(answers(&sim), vec![(3, PublishOutcome::Accepted)]);
    sim.auto_persist = true;
    connack(sim.connect_with("s", persistent("s")));
    assert_eq!(payloads(&sim.recv_all("s")), vec!["j1".to_string()]);
}

#[test]
fn a_failed_batch_is_reported() {
    let mut sim = Sim::new(Config::default());
    sim.auto_persist = false;
    send(
        &mut sim,
        4,
        user(None),
        message("r", "x", QoS::AtLeastOnce, true),
    );
    let seq = *sim.pending_batches.last().expect("a batch");
    sim.fail_batch(seq);
    assert_eq!(answers(&sim), vec![(4, PublishOutcome::StorageFailed)]);
}

#[test]
fn the_acl_is_checked_for_the_principal() {
    let rules = "allow user \"alice\" publish \"alice/#\"\nallow all subscribe \"#\"\n";
    let acl = Acl::parse(rules).expect("valid ACL");
    let mut sim = Sim::new(Config {
        acl: Some(Arc::new(acl)),
        ..Config::default()
    });
    connack(sim.connect("s", V5));
    sim.subscribe("s", "#", QoS::AtMostOnce);
    send(
        &mut sim,
        1,
        user(Some("alice")),
        message("alice/a", "ok", QoS::AtMostOnce, false),
    );
    send(
        &mut sim,
        2,
        user(Some("bob")),
        message("alice/a", "no", QoS::AtMostOnce, false),
    );
    send(
        &mut sim,
        3,
        user(None),
        message("alice/a", "no", QoS::AtMostOnce, false),
    );
    assert_eq!(payloads(&sim.recv_all("s")), vec!["ok".to_string()]);
    let got = answers(&sim);
    assert_eq!(got[0], (1, PublishOutcome::Accepted));
    for (request, outcome) in &got[1..] {
        assert!(
            matches!(outcome, PublishOutcome::Refused { reason: ReasonCode::NotAuthorized, why } if why.contains("alice/a")),
            "request {request}: {outcome:?}"
        );
    }
    assert_eq!(sim.engine.stats().publishes_denied, 2);
}

#[test]
fn broken_rules_get_the_reason_codes_a_client_would() {
    let mut sim = Sim::new(Config {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        ..Config::default()
    });
    send(
        &mut sim,
        1,
        user(None),
        message("t", "x", QoS::ExactlyOnce, false),
    );
    send(
        &mut sim,
        2,
        user(None),
        message("t", "x", QoS::AtMostOnce, true),
    );
    let mut bad_utf8 = message("t", "", QoS::AtMostOnce, false);
    bad_utf8.payload = Bytes::from_static(&[0xff, 0xfe]);
    bad_utf8.properties.payload_format_indicator = Some(true);
    send(&mut sim, 3, user(None), bad_utf8);
    let reasons: Vec<ReasonCode> = answers(&sim)
        .into_iter()
        .map(|(_, outcome)| match outcome {
            PublishOutcome::Refused { reason, .. } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ReasonCode::QoSNotSupported,
            ReasonCode::RetainNotSupported,
            ReasonCode::PayloadFormatInvalid
        ]
    );
}

#[test]
fn no_local_does_not_apply_to_it() {
    let mut sim = Sim::new(Config::default());
    connack(sim.connect("s", V5));
    let sub = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    sim.subscribe_with("s", "t", sub);
    send(
        &mut sim,
        1,
        user(None),
        message("t", "x", QoS::AtMostOnce, false),
    );
    assert_eq!(payloads(&sim.recv_all("s")), vec!["x".to_string()]);
}
