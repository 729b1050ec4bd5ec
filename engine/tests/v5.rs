//! MQTT 5.0 features through the simulation harness: outbound topic aliases, server redirection,
//! Response Information, the CONNACK capability switches, and enhanced authentication.
//! Transcripts are insta snapshots (`cargo insta review` after a deliberate change).

use std::num::NonZeroU16;

use bytes::Bytes;
use cicada_engine::codec::{
    Auth, Connect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, SubscriptionId,
    SubscriptionOptions, TopicFilter, UserProperty,
};
use cicada_engine::sim::expect::{auth_of, connack, disconnect_of, publish_of};
use cicada_engine::sim::Sim;
use cicada_engine::{
    AuthDecision, AuthStage, Authentication, CloseReason, Config, Event, Input, Redirect,
};

use ProtocolVersion::{V3_1_1, V5};

/// (topic as sent, alias) of every PUBLISH `name` received.
fn topics_and_aliases(sim: &mut Sim, name: &str) -> Vec<(String, Option<u16>)> {
    sim.recv_all(name)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.topic.as_str().to_string(),
                p.properties.topic_alias.map(NonZeroU16::get),
            )),
            _ => None,
        })
        .collect()
}

// ----- outbound topic aliases -----

fn alias_connect(name: &str, max: u16) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.properties.topic_alias_maximum = Some(max);
    c
}

#[test]
fn outbound_topic_aliases_up_to_the_clients_maximum_fresh_per_connection() {
    let mut sim = Sim::new(Config::default());
    sim.connect_with("s", alias_connect("s", 2));
    sim.subscribe("s", "#", QoS::AtMostOnce);
    sim.connect("old", V3_1_1);
    sim.subscribe("old", "#", QoS::AtMostOnce);
    sim.connect("p", V5);
    for topic in ["a/1", "b/2", "c/3", "a/1", "b/2", "c/3"] {
        sim.publish("p", topic, QoS::AtMostOnce, topic);
    }
    let expected: Vec<(String, Option<u16>)> = vec![
        ("a/1".into(), Some(1)),
        ("b/2".into(), Some(2)),
        ("c/3".into(), None),
        ("".into(), Some(1)),
        ("".into(), Some(2)),
        ("c/3".into(), None),
    ];
    assert_eq!(topics_and_aliases(&mut sim, "s"), expected);
    assert!(
        topics_and_aliases(&mut sim, "old")
            .iter()
            .all(|(t, a)| !t.is_empty() && a.is_none()),
        "3.1.1 clients never see aliases"
    );

    // A new connection starts with no aliases [MQTT-3.3.2-7].
    sim.drop_connection("s");
    sim.connect_with("s", alias_connect("s", 2));
    sim.subscribe("s", "#", QoS::AtMostOnce);
    sim.publish("p", "b/2", QoS::AtMostOnce, "again");
    assert_eq!(
        topics_and_aliases(&mut sim, "s"),
        [("b/2".to_string(), Some(1))]
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn outbound_aliases_off_when_the_client_or_the_config_says_zero() {
    let mut sim = Sim::new(Config {
        max_outbound_topic_aliases: 0,
        ..Config::default()
    });
    sim.connect_with("s", alias_connect("s", 10));
    sim.subscribe("s", "t", QoS::AtMostOnce);
    sim.connect("none", V5);
    sim.subscribe("none", "t", QoS::AtMostOnce);
    sim.publish("none", "t", QoS::AtMostOnce, "x");
    sim.publish("none", "t", QoS::AtMostOnce, "y");
    for name in ["s", "none"] {
        assert_eq!(
            topics_and_aliases(&mut sim, name),
            [("t".to_string(), None), ("t".to_string(), None)]
        );
    }
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn resent_inflight_messages_use_the_new_connections_aliases() {
    let mut sim = Sim::new(Config::default());
    let mut c = alias_connect("s", 5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "one");
    sim.publish("p", "t", QoS::AtLeastOnce, "two");
    assert_eq!(
        topics_and_aliases(&mut sim, "s"),
        [("t".to_string(), Some(1)), ("".to_string(), Some(1))]
    );
    // Not acknowledged; on the next connection both come again, the first naming the topic anew.
    sim.drop_connection("s");
    sim.connect_with("s", c);
    let again = sim.recv_all("s");
    let shown: Vec<(bool, String, Option<u16>)> = again
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.dup,
                p.topic.as_str().to_string(),
                p.properties.topic_alias.map(NonZeroU16::get),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown,
        [
            (true, "t".to_string(), Some(1)),
            (true, "".to_string(), Some(1))
        ]
    );
    insta::assert_snapshot!(sim.transcript());
}

// ----- server redirection -----

fn redirect(permanent: bool) -> Redirect {
    Redirect {
        server_reference: "other.example:1883".into(),
        permanent,
    }
}

#[test]
fn a_configured_redirect_refuses_connects_with_the_server_reference() {
    let mut sim = Sim::new(Config {
        redirect: Some(redirect(false)),
        ..Config::default()
    });
    let ack = connack(sim.connect("five", V5));
    assert_eq!(ack.reason, ReasonCode::UseAnotherServer);
    assert_eq!(
        ack.properties.server_reference.as_deref(),
        Some("other.example:1883")
    );
    assert!(sim.is_closed("five"));
    // 3.1.1 has no redirection: "server unavailable".
    let ack = connack(sim.connect("three", V3_1_1));
    assert_eq!(ack.reason, ReasonCode::ServerUnavailable);
    assert_eq!(ack.properties.server_reference, None);
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn a_redirect_set_at_runtime_moves_new_clients_and_a_shutdown_sends_connected_ones() {
    let mut sim = Sim::new(Config::default());
    sim.connect("early", V5);
    sim.input(Input::SetRedirect {
        redirect: Some(redirect(true)),
    });
    let ack = connack(sim.connect("late", V5));
    assert_eq!(ack.reason, ReasonCode::ServerMoved);
    assert!(
        !sim.is_closed("early"),
        "connected clients stay until drained"
    );
    sim.input(Input::Shutdown);
    let d = disconnect_of(sim.recv("early"));
    assert_eq!(d.reason, ReasonCode::ServerMoved);
    assert_eq!(
        d.properties.server_reference.as_deref(),
        Some("other.example:1883")
    );
    // Lifting the redirect serves clients again, and a shutdown is a plain 0x8B.
    sim.input(Input::SetRedirect { redirect: None });
    assert_eq!(connack(sim.connect("back", V5)).reason, ReasonCode::Success);
    sim.input(Input::Shutdown);
    let d = disconnect_of(sim.recv("back"));
    assert_eq!(
        (d.reason, d.properties.server_reference),
        (ReasonCode::ServerShuttingDown, None)
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn an_empty_server_reference_is_a_config_error() {
    let config = Config {
        redirect: Some(Redirect {
            server_reference: " ".into(),
            permanent: false,
        }),
        ..Config::default()
    };
    let err = config.validate().expect_err("invalid");
    assert_eq!(err.key, "redirect.server_reference");
}

// ----- Response Information, request/response -----

#[test]
fn response_information_only_when_asked_and_configured() {
    let mut sim = Sim::new(Config {
        response_information_prefix: Some("reply/".into()),
        ..Config::default()
    });
    let mut asks = Sim::connect_packet("asker", V5);
    asks.properties.request_response_information = Some(true);
    let ack = connack(sim.connect_with("asker", asks));
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("reply/asker")
    );
    let ack = connack(sim.connect("quiet", V5));
    assert_eq!(ack.properties.response_information, None);

    let mut sim = Sim::new(Config::default());
    let mut asks = Sim::connect_packet("asker", V5);
    asks.properties.request_response_information = Some(true);
    let ack = connack(sim.connect_with("asker", asks));
    assert_eq!(
        ack.properties.response_information, None,
        "none configured: the client may not rely on one"
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn request_response_properties_pass_through_and_are_stripped_for_3_1_1() {
    let mut sim = Sim::new(Config::default());
    sim.connect("responder", V5);
    sim.subscribe("responder", "req", QoS::AtMostOnce);
    sim.connect("old", V3_1_1);
    sim.subscribe("old", "req", QoS::AtMostOnce);
    sim.connect("requester", V5);
    let mut p = Publish::new(
        cicada_engine::codec::TopicName::new("req").expect("valid"),
        Bytes::from_static(b"ping"),
    );
    p.properties.response_topic =
        Some(cicada_engine::codec::TopicName::new("reply/requester").expect("valid"));
    p.properties.correlation_data = Some(Bytes::from_static(&[0xca, 0xfe]));
    p.properties.content_type = Some("text/plain".into());
    p.properties.payload_format_indicator = Some(true);
    for (k, v) in [("b", "1"), ("a", "2"), ("b", "3")] {
        p.properties.user_properties.push(UserProperty {
            name: k.into(),
            value: v.into(),
        });
    }
    sim.send("requester", Packet::Publish(p));
    let got = publish_of(sim.recv("responder"));
    assert_eq!(
        got.properties.response_topic.as_ref().map(|t| t.as_str()),
        Some("reply/requester")
    );
    assert_eq!(
        got.properties.correlation_data.as_deref(),
        Some(&[0xca, 0xfe][..])
    );
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.properties.payload_format_indicator, Some(true));
    let order: Vec<(String, String)> = got
        .properties
        .user_properties
        .iter()
        .map(|u| (u.name.to_string(), u.value.to_string()))
        .collect();
    assert_eq!(
        order,
        [("b", "1"), ("a", "2"), ("b", "3")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let old = publish_of(sim.recv("old"));
    assert_eq!(old.payload, Bytes::from_static(b"ping"));
    insta::assert_snapshot!(sim.transcript());
}

// ----- what CONNACK advertises, enforced -----

#[test]
fn wildcards_off_is_advertised_and_refused_per_filter() {
    let mut sim = Sim::new(Config {
        wildcard_subscriptions: false,
        ..Config::default()
    });
    let ack = connack(sim.connect("c", V5));
    assert_eq!(ack.properties.wildcard_subscription_available, Some(false));
    let mut s = Subscribe {
        packet_id: sim.next_packet_id("c"),
        properties: Default::default(),
        subscriptions: Vec::new(),
    };
    for filter in ["a/+", "exact", "a/#"] {
        s.subscriptions.push(cicada_engine::codec::Subscription {
            filter: TopicFilter::new(filter).expect("valid"),
            options: SubscriptionOptions::default(),
        });
    }
    sim.send("c", Packet::Subscribe(s));
    match sim.recv("c") {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.reasons,
            [
                ReasonCode::WildcardSubscriptionsNotSupported,
                ReasonCode::Success,
                ReasonCode::WildcardSubscriptionsNotSupported
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn subscription_identifiers_off_is_advertised_and_enforced() {
    let mut sim = Sim::new(Config {
        subscription_identifiers: false,
        ..Config::default()
    });
    let ack = connack(sim.connect("c", V5));
    assert_eq!(
        ack.properties.subscription_identifiers_available,
        Some(false)
    );
    let mut s = Subscribe {
        packet_id: sim.next_packet_id("c"),
        properties: Default::default(),
        subscriptions: vec![cicada_engine::codec::Subscription {
            filter: TopicFilter::new("t").expect("valid"),
            options: SubscriptionOptions::default(),
        }],
    };
    s.properties.subscription_identifier = SubscriptionId::new(4);
    sim.send("c", Packet::Subscribe(s));
    let d = disconnect_of(sim.recv("c"));
    assert_eq!(d.reason, ReasonCode::SubscriptionIdentifiersNotSupported);
    insta::assert_snapshot!(sim.transcript());
}

// ----- enhanced authentication -----

const METHOD: &str = "TOY";

fn auth_sim() -> Sim {
    Sim::new(Config {
        authentication: Authentication::External,
        auth_methods: vec![METHOD.into()],
        ..Config::default()
    })
}

fn enhanced(name: &str, data: &'static [u8]) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.properties.authentication_method = Some(METHOD.into());
    c.properties.authentication_data = Some(Bytes::from_static(data));
    c
}

fn client_auth(reason: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    let mut a = Auth {
        reason,
        properties: Default::default(),
    };
    a.properties.authentication_method = Some(method.into());
    a.properties.authentication_data = Some(Bytes::from_static(data));
    Packet::Auth(a)
}

/// The last authentication step the engine put to the authenticator.
fn last_step(sim: &Sim) -> (AuthStage, Option<Bytes>) {
    sim.events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Authenticate { stage, data, .. } => Some((*stage, data.clone())),
            _ => None,
        })
        .expect("an authentication step")
}

fn decide(sim: &mut Sim, name: &str, decision: AuthDecision) {
    let conn = sim.conn(name);
    sim.input(Input::AuthDecided { conn, decision });
}

#[test]
fn enhanced_authentication_challenge_and_response_then_reauthentication() {
    let mut sim = auth_sim();
    assert_eq!(sim.connect_with("c", enhanced("c", b"hello")), None);
    assert_eq!(
        last_step(&sim),
        (AuthStage::Connect, Some(Bytes::from_static(b"hello")))
    );
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"prove it"),
        },
    );
    let challenge = auth_of(sim.recv("c"));
    assert_eq!(challenge.reason, ReasonCode::ContinueAuthentication);
    assert_eq!(
        challenge.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    sim.send(
        "c",
        client_auth(ReasonCode::ContinueAuthentication, METHOD, b"proof"),
    );
    assert_eq!(
        last_step(&sim),
        (AuthStage::Continue, Some(Bytes::from_static(b"proof")))
    );
    decide(
        &mut sim,
        "c",
        AuthDecision::AllowWithData {
            data: Bytes::from_static(b"welcome"),
        },
    );
    let ack = connack(sim.recv("c"));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );

    // Re-authentication: the client keeps working meanwhile.
    sim.send(
        "c",
        client_auth(ReasonCode::ReAuthenticate, METHOD, b"again"),
    );
    assert_eq!(
        last_step(&sim),
        (
            AuthStage::Reauthenticate,
            Some(Bytes::from_static(b"again"))
        )
    );
    sim.send("c", Packet::PingReq);
    assert_eq!(sim.recv("c"), Some(Packet::PingResp));
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"and?"),
        },
    );
    assert_eq!(
        auth_of(sim.recv("c")).reason,
        ReasonCode::ContinueAuthentication
    );
    sim.send(
        "c",
        client_auth(ReasonCode::ContinueAuthentication, METHOD, b"this"),
    );
    assert_eq!(last_step(&sim).0, AuthStage::Continue);
    decide(&mut sim, "c", AuthDecision::Allow);
    let done = auth_of(sim.recv("c"));
    assert_eq!(done.reason, ReasonCode::Success);
    assert!(!sim.is_closed("c"));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn a_failed_reauthentication_disconnects() {
    let mut sim = auth_sim();
    sim.connect_with("c", enhanced("c", b"hi"));
    decide(&mut sim, "c", AuthDecision::Allow);
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
    sim.send(
        "c",
        client_auth(ReasonCode::ReAuthenticate, METHOD, b"stale"),
    );
    decide(
        &mut sim,
        "c",
        AuthDecision::Deny {
            reason: ReasonCode::BadUserNameOrPassword,
        },
    );
    // 0x86 exists only in CONNACK; a DISCONNECT says 0x87.
    assert_eq!(
        disconnect_of(sim.recv("c")).reason,
        ReasonCode::NotAuthorized
    );
    assert!(sim.is_closed("c"));
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::Close {
            reason: CloseReason::ReauthenticationFailed { .. },
            ..
        }
    )));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn unknown_methods_and_out_of_turn_auth_packets_are_refused() {
    let mut sim = auth_sim();
    let mut other = Sim::connect_packet("x", V5);
    other.properties.authentication_method = Some("KERBEROS".into());
    assert_eq!(
        connack(sim.connect_with("x", other)).reason,
        ReasonCode::BadAuthenticationMethod
    );

    // While challenged, only AUTH (or DISCONNECT) may come [MQTT-3.1.2-30].
    sim.connect_with("eager", enhanced("eager", b"hi"));
    decide(
        &mut sim,
        "eager",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    let _ = sim.recv("eager");
    sim.send("eager", Packet::PingReq);
    assert_eq!(connack(sim.recv("eager")).reason, ReasonCode::ProtocolError);

    // The answer must use the CONNECT's method.
    sim.connect_with("switch", enhanced("switch", b"hi"));
    decide(
        &mut sim,
        "switch",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    let _ = sim.recv("switch");
    sim.send(
        "switch",
        client_auth(ReasonCode::ContinueAuthentication, "OTHER", b"!"),
    );
    assert_eq!(
        connack(sim.recv("switch")).reason,
        ReasonCode::ProtocolError
    );

    // Re-authentication needs a CONNECT that used a method.
    sim.connect_with("plain", Sim::connect_packet("plain", V5));
    decide(&mut sim, "plain", AuthDecision::Allow);
    let _ = sim.recv("plain");
    sim.send(
        "plain",
        client_auth(ReasonCode::ReAuthenticate, METHOD, b"hi"),
    );
    assert_eq!(
        disconnect_of(sim.recv("plain")).reason,
        ReasonCode::ProtocolError
    );

    // A continuation nobody asked for.
    sim.connect_with("early", enhanced("early", b"hi"));
    decide(&mut sim, "early", AuthDecision::Allow);
    let _ = sim.recv("early");
    sim.send(
        "early",
        client_auth(ReasonCode::ContinueAuthentication, METHOD, b"hi"),
    );
    assert_eq!(
        disconnect_of(sim.recv("early")).reason,
        ReasonCode::ProtocolError
    );
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn an_answer_pipelined_behind_connect_waits_for_the_challenge() {
    let mut sim = auth_sim();
    sim.open("c");
    sim.set_version("c", V5);
    // CONNECT and the client's AUTH arrive in one read, before the authenticator has answered.
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(enhanced("c", b"first")))
        .encode(V5, &mut bytes)
        .expect("encodes");
    client_auth(ReasonCode::ContinueAuthentication, METHOD, b"second")
        .encode(V5, &mut bytes)
        .expect("encodes");
    sim.send_bytes("c", &bytes);
    assert_eq!(last_step(&sim).0, AuthStage::Connect);
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"challenge"),
        },
    );
    assert_eq!(
        last_step(&sim),
        (AuthStage::Continue, Some(Bytes::from_static(b"second")))
    );
    decide(&mut sim, "c", AuthDecision::Allow);
    let got = sim.recv_all("c");
    assert!(matches!(got.last(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::Success));
    insta::assert_snapshot!(sim.transcript());
}

#[test]
fn enhanced_methods_need_an_external_authenticator() {
    let config = Config {
        auth_methods: vec![METHOD.into()],
        ..Config::default()
    };
    assert_eq!(config.validate().expect_err("invalid").key, "auth_methods");
}

// ----- message expiry of inflight messages -----

#[test]
fn inflight_messages_resent_on_resumption_carry_the_remaining_expiry() {
    let mut sim = Sim::new(Config::default());
    let mut c = Sim::connect_packet("s", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(600);
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    for (payload, expiry) in [("long", 100), ("short", 5)] {
        let mut p = Publish::new(
            cicada_engine::codec::TopicName::new("t").expect("valid"),
            Bytes::from(payload),
        );
        p.delivery = cicada_engine::codec::Delivery::AtLeastOnce(sim.next_packet_id("p"));
        p.properties.message_expiry_interval = Some(expiry);
        sim.send("p", Packet::Publish(p));
    }
    assert_eq!(
        sim.recv_all("s").len(),
        2,
        "both sent, neither acknowledged"
    );
    sim.drop_connection("s");
    sim.advance(std::time::Duration::from_secs(30));
    sim.connect_with("s", c);
    let resent: Vec<(bool, String, Option<u32>)> = sim
        .recv_all("s")
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.dup,
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.properties.message_expiry_interval,
            )),
            _ => None,
        })
        .collect();
    // Onward delivery had started, so even the lapsed one is completed [MQTT-3.3.2-5]; each carries
    // what is left of its interval.
    assert_eq!(
        resent,
        [
            (true, "long".to_string(), Some(70)),
            (true, "short".to_string(), Some(0))
        ]
    );
    insta::assert_snapshot!(sim.transcript());
}

// ----- payload format, reason strings, problem information -----

#[test]
fn invalid_utf8_with_payload_format_indicator_is_0x99_with_a_reason_string_unless_refused() {
    let mut sim = Sim::new(Config::default());
    let mut quiet = Sim::connect_packet("quiet", V5);
    quiet.properties.request_problem_information = Some(false);
    sim.connect("chatty", V5);
    sim.connect_with("quiet", quiet);
    sim.connect("watch", V5);
    sim.subscribe("watch", "pfi/#", QoS::AtMostOnce);
    for name in ["chatty", "quiet"] {
        let mut p = Publish::new(
            cicada_engine::codec::TopicName::new("pfi/t").expect("valid"),
            Bytes::from_static(&[0xff, 0xfe]),
        );
        p.properties.payload_format_indicator = Some(true);
        sim.send(name, Packet::Publish(p));
    }
    let chatty = disconnect_of(sim.recv("chatty"));
    assert_eq!(chatty.reason, ReasonCode::PayloadFormatInvalid);
    assert!(chatty.properties.reason_string.is_some());
    let quiet = disconnect_of(sim.recv("quiet"));
    assert_eq!(quiet.reason, ReasonCode::PayloadFormatInvalid);
    assert_eq!(
        quiet.properties.reason_string, None,
        "Request Problem Information = 0"
    );
    assert_eq!(sim.recv("watch"), None, "nothing was forwarded");
    // Valid UTF-8 with the indicator, and any bytes without it, pass.
    sim.connect("fine", V5);
    let mut p = Publish::new(
        cicada_engine::codec::TopicName::new("pfi/t").expect("valid"),
        Bytes::from("héllo"),
    );
    p.properties.payload_format_indicator = Some(true);
    sim.send("fine", Packet::Publish(p));
    sim.publish("fine", "pfi/raw", QoS::AtMostOnce, "\u{0}");
    assert_eq!(sim.recv_all("watch").len(), 2);
    insta::assert_snapshot!(sim.transcript());
}
