//! Snapshots of how packets render in logs and traces, one line per packet with its wire bytes, for a
//! typical exchange in each protocol version. A change to the encoder or the renderer shows up as a diff to
//! review (`cargo insta review`).

use std::fmt::Write;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    decode_one, Ack, Auth, ConnAck, Connect, Delivery, Disconnect, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Unsubscribe,
    UserProperty, Will,
};

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("valid topic")
}

fn subscription(filter: &str, qos: QoS) -> Subscription {
    Subscription {
        filter: TopicFilter::new(filter).expect("valid filter"),
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
    }
}

/// A whole session's packets, in both directions, exercising every packet type the version has.
fn exchange(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let mut connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        properties: Default::default(),
        client_id: "sensor-7".into(),
        will: Some(Will {
            topic: topic("status/sensor-7"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some("alice".into()),
        password: Some(Bytes::from_static(b"secret")),
    };
    let mut connack = ConnAck {
        session_present: false,
        reason: ReasonCode::Success,
        properties: Default::default(),
    };
    let mut publish = Publish::new(topic("sensors/7/temp"), Bytes::from_static(b"21.5"));
    publish.delivery = Delivery::ExactlyOnce(pid(3));
    let mut subscribe = Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: vec![
            subscription("sensors/+/temp", QoS::AtLeastOnce),
            subscription("alerts/#", QoS::ExactlyOnce),
        ],
    };
    let mut disconnect = Disconnect::new(ReasonCode::Success);
    if v5 {
        connect.properties.session_expiry_interval = Some(3600);
        connect.properties.topic_alias_maximum = Some(8);
        if let Some(will) = connect.will.as_mut() {
            will.properties.will_delay_interval = Some(10);
        }
        connack.properties.receive_maximum = NonZeroU16::new(100);
        connack.properties.shared_subscription_available = Some(true);
        publish.properties.message_expiry_interval = Some(60);
        publish.properties.user_properties = vec![UserProperty::new("unit", "celsius")];
        publish.properties.topic_alias = NonZeroU16::new(1);
        subscribe.properties.subscription_identifier = SubscriptionId::new(42);
        subscribe.subscriptions[1].options.no_local = true;
        subscribe.subscriptions[1].options.retain_handling = RetainHandling::SendIfNew;
        disconnect = Disconnect::new(ReasonCode::DisconnectWithWill);
    }
    let granted = vec![ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS2];
    let mut packets = vec![
        Packet::Connect(Box::new(connect)),
        Packet::ConnAck(connack),
        Packet::Subscribe(subscribe),
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: Default::default(),
            reasons: granted,
        }),
        Packet::Publish(publish),
        Packet::PubRec(Ack::new(pid(3))),
        Packet::PubRel(Ack::new(pid(3))),
        Packet::PubComp(Ack::new(pid(3))),
        Packet::PubAck(Ack::new(pid(4))),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            properties: Default::default(),
            filters: vec![TopicFilter::new("alerts/#").expect("valid filter")],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(2),
            properties: Default::default(),
            reasons: if v5 {
                vec![ReasonCode::Success]
            } else {
                vec![]
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
    ];
    if v5 {
        let mut refused = Ack::new(pid(5));
        refused.reason = ReasonCode::NotAuthorized;
        refused.properties.reason_string = Some("no publish rights on secret/#".into());
        packets.push(Packet::PubAck(refused));
        let mut auth = Auth {
            reason: ReasonCode::ReAuthenticate,
            properties: Default::default(),
        };
        auth.properties.authentication_method = Some("SCRAM-SHA-256".into());
        auth.properties.authentication_data = Some(Bytes::from_static(b"n,,n=alice"));
        packets.push(Packet::Auth(auth));
    }
    packets.push(Packet::Disconnect(disconnect));
    packets
}

/// Each packet rendered, then its bytes in hex; every line is also checked to decode back.
fn transcript(version: ProtocolVersion) -> String {
    let mut out = String::new();
    for packet in exchange(version) {
        let mut bytes = BytesMut::new();
        packet.encode(version, &mut bytes).expect("encodes");
        assert_eq!(decode_one(&bytes, version).as_ref(), Ok(&packet));
        let _ = writeln!(out, "{packet}");
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let _ = writeln!(out, "    {}", hex.join(" "));
    }
    out
}

#[test]
fn mqtt_3_1_exchange() {
    insta::assert_snapshot!(transcript(ProtocolVersion::V3_1));
}

#[test]
fn mqtt_3_1_1_exchange() {
    insta::assert_snapshot!(transcript(ProtocolVersion::V3_1_1));
}

#[test]
fn mqtt_5_exchange() {
    insta::assert_snapshot!(transcript(ProtocolVersion::V5));
}
