//! End to end with the `rumqttc` Rust client, MQTT 3.1.1 and 5.0.

mod support;

use std::time::Duration;

use support::Broker;
use tokio::time::timeout;

/// Polls a 3.1.1 event loop until `count` PUBLISHes arrived; returns their payloads.
async fn collect_v311(eventloop: &mut rumqttc::EventLoop, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        let event = timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("a message within 5 s")
            .expect("event loop");
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}

/// Polls a 3.1.1 event loop until `pred` says the event it wanted came.
async fn until_v311(eventloop: &mut rumqttc::EventLoop, pred: impl Fn(&rumqttc::Event) -> bool) {
    loop {
        let event = timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("event within 5 s")
            .expect("event loop");
        if pred(&event) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_qos_levels_and_persistent_session() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker = Broker::start(&[]);
    let options = |id: &str, clean: bool| {
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean);
        o
    };
    let (sub, mut sub_loop) = AsyncClient::new(options("r-sub", false), 16);
    sub.subscribe("r/#", QoS::ExactlyOnce)
        .await
        .expect("subscribe");
    until_v311(&mut sub_loop, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    })
    .await;

    let (publisher, mut pub_loop) = AsyncClient::new(options("r-pub", true), 16);
    let pub_task = tokio::spawn(async move {
        loop {
            if pub_loop.poll().await.is_err() {
                break;
            }
        }
    });
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher
            .publish(format!("r/{i}"), qos, false, format!("m{i}"))
            .await
            .expect("publish");
    }
    assert_eq!(collect_v311(&mut sub_loop, 3).await, ["m0", "m1", "m2"]);
    // Finish the QoS 2 exchange first: a fresh rumqttc client keeps no session state, so a PUBREL
    // resent on resumption (as the spec requires) would be "unsolicited" to it.
    until_v311(&mut sub_loop, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::PubComp(_)))
    })
    .await;

    // Leave, let two QoS 1 messages queue, come back to the same session.
    sub.disconnect().await.expect("disconnect");
    until_v311(&mut sub_loop, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect))
    })
    .await;
    drop(sub_loop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for m in ["later-1", "later-2"] {
        publisher
            .publish("r/q", QoS::AtLeastOnce, false, m)
            .await
            .expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_sub, mut sub_loop) = AsyncClient::new(options("r-sub", false), 16);
    assert_eq!(collect_v311(&mut sub_loop, 2).await, ["later-1", "later-2"]);
    pub_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_with_user_properties() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let broker = Broker::start(&[]);
    let (sub, mut sub_loop) =
        AsyncClient::new(MqttOptions::new("r5-sub", "127.0.0.1", broker.port), 16);
    sub.subscribe("v5/#", QoS::ExactlyOnce)
        .await
        .expect("subscribe");
    loop {
        let e = timeout(Duration::from_secs(5), sub_loop.poll())
            .await
            .expect("suback")
            .expect("loop");
        if matches!(e, Event::Incoming(Packet::SubAck(_))) {
            break;
        }
    }
    let (publisher, mut pub_loop) =
        AsyncClient::new(MqttOptions::new("r5-pub", "127.0.0.1", broker.port), 16);
    let pub_task = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let properties = PublishProperties {
        user_properties: vec![("unit".into(), "celsius".into())],
        ..Default::default()
    };
    publisher
        .publish_with_properties("v5/temp", QoS::ExactlyOnce, false, "21.5", properties)
        .await
        .expect("publish");
    loop {
        let e = timeout(Duration::from_secs(5), sub_loop.poll())
            .await
            .expect("publish")
            .expect("loop");
        if let Event::Incoming(Packet::Publish(p)) = e {
            assert_eq!(&p.payload[..], b"21.5");
            assert_eq!(p.qos, QoS::ExactlyOnce);
            let props = p.properties.expect("properties");
            assert_eq!(
                props.user_properties,
                [("unit".to_string(), "celsius".to_string())]
            );
            break;
        }
    }
    pub_task.abort();
}

/// rumqttc v5 both ways: topic aliases it sets (inbound for us) and ours it resolves, subscription
/// identifiers, and a session with an expiry interval resumed with what was queued meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_aliases_subscription_ids_and_session_resumption() {
    use rumqttc::v5::mqttbytes::v5::{
        ConnectProperties, Packet, PublishProperties, SubscribeProperties,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    /// Polls until `pred` picks something out of an event.
    async fn next<T>(lp: &mut EventLoop, pred: impl Fn(Event) -> Option<T>) -> T {
        loop {
            let e = timeout(Duration::from_secs(5), lp.poll())
                .await
                .expect("an event within 5 s")
                .expect("event loop");
            if let Some(t) = pred(e) {
                return t;
            }
        }
    }
    fn publish(e: Event) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
        match e {
            Event::Incoming(Packet::Publish(p)) => Some(p),
            _ => None,
        }
    }

    let broker = Broker::start(&[]);
    let sub_options = || {
        let mut o = MqttOptions::new("r5-resume", "127.0.0.1", broker.port);
        o.set_clean_start(false);
        o.set_connect_properties(ConnectProperties {
            session_expiry_interval: Some(60),
            topic_alias_max: Some(4),
            ..Default::default()
        });
        o
    };
    let (sub, mut sub_loop) = AsyncClient::new(sub_options(), 16);
    let present = next(&mut sub_loop, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.session_present),
        _ => None,
    })
    .await;
    assert!(!present);
    let with_id = SubscribeProperties {
        id: Some(9),
        user_properties: Vec::new(),
    };
    sub.subscribe_with_properties("ra/#", QoS::AtLeastOnce, with_id)
        .await
        .expect("subscribe");
    next(&mut sub_loop, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;

    let (publisher, mut pub_loop) = AsyncClient::new(
        MqttOptions::new("r5-alias-pub", "127.0.0.1", broker.port),
        16,
    );
    let pub_task = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let alias = |n| PublishProperties {
        topic_alias: Some(n),
        ..Default::default()
    };
    // rumqttc must see our CONNACK's Topic Alias Maximum before it may use an alias.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher
        .publish_with_properties("ra/long/topic", QoS::AtLeastOnce, false, "1", alias(2))
        .await
        .expect("publish");
    publisher
        .publish_with_properties("", QoS::AtLeastOnce, false, "2", alias(2))
        .await
        .expect("publish");
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = next(&mut sub_loop, publish).await;
        let props = p.properties.expect("properties");
        assert_eq!(props.subscription_identifiers, [9]);
        got.push((
            String::from_utf8_lossy(&p.topic).into_owned(),
            String::from_utf8_lossy(&p.payload).into_owned(),
            props.topic_alias,
        ));
    }
    // Our side: the first message names the topic and sets alias 1; the second uses the alias only,
    // which rumqttc resolves.
    assert_eq!(
        got,
        [
            ("ra/long/topic".to_string(), "1".to_string(), Some(1)),
            ("ra/long/topic".to_string(), "2".to_string(), Some(1)),
        ]
    );

    // Gone without DISCONNECT; the session stays for 60 s and queues what arrives.
    drop(sub);
    drop(sub_loop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher
        .publish("ra/away", QoS::AtLeastOnce, false, "queued")
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_sub, mut sub_loop) = AsyncClient::new(sub_options(), 16);
    let present = next(&mut sub_loop, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.session_present),
        _ => None,
    })
    .await;
    assert!(present, "the session was resumed");
    let p = next(&mut sub_loop, publish).await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"ra/away"[..], &b"queued"[..])
    );
    pub_task.abort();
}
