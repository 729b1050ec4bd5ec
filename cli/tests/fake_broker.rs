//! The client against a fake broker played by the test with the engine's codec: over an in-memory
//! duplex stream for the session logic, and over loopback TCP for the whole command line.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_cli::session::{Options, Session};
use cicada_cli::{parse, run_with_input, CliError};
use cicada_engine::codec::{
    Ack, ConnAck, Connect, Decoded, Decoder, Delivery, Disconnect, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, SubAck, Subscribe, TopicFilter, TopicName,
};
use cicada_transports::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The broker's end of a connection.
struct Fake {
    stream: BoxStream,
    decoder: Decoder,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Fake {
    fn new(stream: BoxStream) -> Fake {
        Fake {
            stream,
            decoder: Decoder::new(1 << 20),
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
        }
    }

    /// The next packet from the client; `None` once it closed the connection.
    async fn try_recv(&mut self) -> Option<Packet> {
        loop {
            match self.decoder.decode(&mut self.buf).expect("well-formed") {
                Decoded::Packet(p) => return Some(p),
                Decoded::Incomplete { .. } => {}
            }
            let read =
                tokio::time::timeout(Duration::from_secs(60), self.stream.read_buf(&mut self.buf));
            match read.await.expect("the client went silent") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn recv(&mut self) -> Packet {
        self.try_recv().await.expect("a packet")
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Takes CONNECT and answers CONNACK with `reason`.
    async fn accept(&mut self, reason: ReasonCode) -> Connect {
        let Packet::Connect(connect) = self.recv().await else {
            panic!("expected CONNECT")
        };
        self.version = connect.protocol;
        self.send(Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Default::default(),
        }))
        .await;
        *connect
    }

    /// Takes SUBSCRIBE and answers SUBACK with `reasons`; returns the SUBSCRIBE.
    async fn grant(&mut self, reasons: &[ReasonCode]) -> Subscribe {
        let Packet::Subscribe(sub) = self.recv().await else {
            panic!("expected SUBSCRIBE")
        };
        self.send(Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            properties: Default::default(),
            reasons: reasons.to_vec(),
        }))
        .await;
        sub
    }

    /// Expects DISCONNECT, then the end of the stream.
    async fn expect_disconnect(&mut self) {
        assert!(
            matches!(self.recv().await, Packet::Disconnect(d) if d.reason == ReasonCode::Success)
        );
        assert_eq!(
            self.try_recv().await,
            None,
            "the stream is closed after DISCONNECT"
        );
    }

    async fn publish(&mut self, topic: &str, payload: &str, delivery: Delivery) {
        self.send(Packet::Publish(Publish {
            delivery,
            ..Publish::new(topic_name(topic), Bytes::from(payload.to_string()))
        }))
        .await;
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName::new(t).expect("topic")
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// A client and a fake broker joined by an in-memory stream.
fn pair() -> (BoxStream, Fake) {
    let (client, server) = tokio::io::duplex(1 << 16);
    (Box::new(client), Fake::new(Box::new(server)))
}

#[tokio::test]
async fn sub_acknowledges_qos1_and_qos2_deliveries_once() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        broker.accept(ReasonCode::Success).await;
        let sub = broker
            .grant(&[ReasonCode::GrantedQoS2, ReasonCode::GrantedQoS1])
            .await;
        let filters: Vec<&str> = sub
            .subscriptions
            .iter()
            .map(|s| s.filter.as_str())
            .collect();
        assert_eq!(filters, ["a/#", "b"]);
        assert!(sub
            .subscriptions
            .iter()
            .all(|s| s.options.qos == QoS::ExactlyOnce));
        broker
            .publish("a/1", "one", Delivery::AtLeastOnce(id(7)))
            .await;
        assert_eq!(broker.recv().await, Packet::PubAck(Ack::new(id(7))));
        broker
            .publish("a/2", "two", Delivery::ExactlyOnce(id(8)))
            .await;
        assert_eq!(broker.recv().await, Packet::PubRec(Ack::new(id(8))));
        // A redelivery before PUBREL is answered again but not handed out twice.
        broker
            .publish("a/2", "two", Delivery::ExactlyOnce(id(8)))
            .await;
        assert_eq!(broker.recv().await, Packet::PubRec(Ack::new(id(8))));
        broker.send(Packet::PubRel(Ack::new(id(8)))).await;
        assert_eq!(broker.recv().await, Packet::PubComp(Ack::new(id(8))));
        broker.expect_disconnect().await;
    });
    let mut session = Session::connect(client, &Options::new(ProtocolVersion::V5, "sub"))
        .await
        .expect("connected");
    let filters = [
        TopicFilter::new("a/#").expect("filter"),
        TopicFilter::new("b").expect("filter"),
    ];
    let granted = session
        .subscribe(&filters, QoS::ExactlyOnce)
        .await
        .expect("subscribed");
    assert_eq!(granted, [ReasonCode::GrantedQoS2, ReasonCode::GrantedQoS1]);
    let first = session.next_message(None).await.expect("first");
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("a/1", &b"one"[..])
    );
    let second = session.next_message(None).await.expect("second");
    assert_eq!(
        (second.topic.as_str(), &second.payload[..]),
        ("a/2", &b"two"[..])
    );
    session.settle().await.expect("released");
    let nothing = session.next_message(Some(Duration::from_millis(100))).await;
    assert!(
        matches!(
            nothing,
            Err(CliError::Timeout {
                what: "a message",
                ..
            })
        ),
        "{nothing:?}"
    );
    session.disconnect().await.expect("disconnect");
    broker.await.expect("broker");
}

#[tokio::test]
async fn pub_completes_qos2_and_qos1_flows() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        broker.accept(ReasonCode::Success).await;
        let Packet::Publish(p) = broker.recv().await else {
            panic!("expected PUBLISH")
        };
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.retain),
            ("t", &b"x"[..], true)
        );
        let Delivery::ExactlyOnce(pid) = p.delivery else {
            panic!("expected QoS 2, got {:?}", p.delivery)
        };
        broker.send(Packet::PubRec(Ack::new(pid))).await;
        assert_eq!(broker.recv().await, Packet::PubRel(Ack::new(pid)));
        broker.send(Packet::PubComp(Ack::new(pid))).await;
        let Packet::Publish(p) = broker.recv().await else {
            panic!("expected PUBLISH")
        };
        let Delivery::AtLeastOnce(next) = p.delivery else {
            panic!("expected QoS 1, got {:?}", p.delivery)
        };
        assert_ne!(next, pid, "a fresh packet identifier");
        broker.send(Packet::PubAck(Ack::new(next))).await;
        broker.expect_disconnect().await;
    });
    let mut session = Session::connect(client, &Options::new(ProtocolVersion::V5, "pub"))
        .await
        .expect("connected");
    let topic = topic_name("t");
    session
        .publish(&topic, Bytes::from_static(b"x"), QoS::ExactlyOnce, true)
        .await
        .expect("QoS 2 publish");
    session
        .publish(&topic, Bytes::from_static(b"y"), QoS::AtLeastOnce, false)
        .await
        .expect("QoS 1 publish");
    session.disconnect().await.expect("disconnect");
    broker.await.expect("broker");
}

#[tokio::test]
async fn a_failed_puback_is_rejected_with_its_reason() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        broker.accept(ReasonCode::Success).await;
        let Packet::Publish(p) = broker.recv().await else {
            panic!("expected PUBLISH")
        };
        let mut ack = Ack::new(p.delivery.packet_id().expect("QoS 1"));
        ack.reason = ReasonCode::NotAuthorized;
        broker.send(Packet::PubAck(ack)).await;
    });
    let mut session = Session::connect(client, &Options::new(ProtocolVersion::V5, ""))
        .await
        .expect("connected");
    let err = session
        .publish(&topic_name("t"), Bytes::new(), QoS::AtLeastOnce, false)
        .await
        .expect_err("rejected");
    assert!(
        matches!(
            &err,
            CliError::Rejected {
                reason: ReasonCode::NotAuthorized,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the broker rejected PUBLISH to t: 0x87 Not authorized"
    );
    broker.await.expect("broker");
}

#[tokio::test]
async fn a_v311_refusal_is_reported_by_name() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        let connect = broker.accept(ReasonCode::BadUserNameOrPassword).await;
        assert_eq!(connect.protocol, ProtocolVersion::V3_1_1);
        assert_eq!(connect.username.as_deref(), Some("who"));
        assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
    });
    let mut options = Options::new(ProtocolVersion::V3_1_1, "c");
    options.username = Some("who".into());
    options.password = Some(Bytes::from_static(b"pw"));
    let err = Session::connect(client, &options)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            CliError::Refused {
                reason: ReasonCode::BadUserNameOrPassword
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Bad User Name or Password"),
        "{err}"
    );
    broker.await.expect("broker");
}

#[tokio::test(start_paused = true)]
async fn keep_alive_pings_and_a_missing_pingresp_ends_the_session() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        let connect = broker.accept(ReasonCode::Success).await;
        assert_eq!(connect.keep_alive, 2);
        let start = tokio::time::Instant::now();
        assert_eq!(broker.recv().await, Packet::PingReq);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "half the keep alive"
        );
        broker.send(Packet::PingResp).await;
        assert_eq!(broker.recv().await, Packet::PingReq);
        // No PINGRESP this time: the client gives up at the next ping.
        assert_eq!(broker.try_recv().await, None);
    });
    let mut options = Options::new(ProtocolVersion::V5, "ka");
    options.keep_alive = 2;
    let mut session = Session::connect(client, &options).await.expect("connected");
    let err = session.next_message(None).await.expect_err("no PINGRESP");
    assert!(
        matches!(
            err,
            CliError::Timeout {
                what: "PINGRESP",
                ..
            }
        ),
        "{err:?}"
    );
    drop(session);
    broker.await.expect("broker");
}

#[tokio::test]
async fn a_server_disconnect_ends_the_session_with_its_reason() {
    let (client, mut broker) = pair();
    let broker = tokio::spawn(async move {
        broker.accept(ReasonCode::Success).await;
        broker
            .send(Packet::Disconnect(Disconnect::new(
                ReasonCode::SessionTakenOver,
            )))
            .await;
    });
    let mut session = Session::connect(client, &Options::new(ProtocolVersion::V5, "d"))
        .await
        .expect("connected");
    let err = session.next_message(None).await.expect_err("disconnected");
    assert!(
        matches!(
            err,
            CliError::Disconnected {
                reason: Some(ReasonCode::SessionTakenOver)
            }
        ),
        "{err:?}"
    );
    broker.await.expect("broker");
}

/// Listens on loopback; the returned task plays broker on the first connection with `script`.
async fn tcp_broker<F, Fut>(script: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Fake) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        script(Fake::new(Box::new(socket))).await;
    });
    (format!("mqtt://127.0.0.1:{port}"), task)
}

async fn cli(args: &[&str], input: &str) -> (Result<(), CliError>, String) {
    let cli = parse(std::iter::once("cicada-cli").chain(args.iter().copied())).expect("arguments");
    let mut input = input.as_bytes();
    let mut out = Vec::new();
    let result = run_with_input(cli, &mut input, &mut out).await;
    (result, String::from_utf8(out).expect("UTF-8 output"))
}

#[tokio::test]
async fn cli_sub_prints_messages_then_exits_after_count() {
    let (url, broker) = tcp_broker(|mut broker| async move {
        let connect = broker.accept(ReasonCode::Success).await;
        assert!(!connect.clean_start, "-c keeps the session");
        assert_eq!(connect.client_id, "me");
        assert_eq!(connect.properties.session_expiry_interval, Some(u32::MAX));
        broker.grant(&[ReasonCode::GrantedQoS1]).await;
        broker.publish("a/b", "hello", Delivery::AtMostOnce).await;
        broker
            .publish("a/c", "w\u{f6}rld", Delivery::AtLeastOnce(id(1)))
            .await;
        assert_eq!(broker.recv().await, Packet::PubAck(Ack::new(id(1))));
        broker.expect_disconnect().await;
    })
    .await;
    let (result, out) = cli(
        &[
            "sub", "--url", &url, "-t", "a/#", "-q", "1", "-C", "2", "-v", "-c", "-i", "me",
        ],
        "",
    )
    .await;
    result.expect("sub");
    assert_eq!(out, "a/b hello\na/c w\u{f6}rld\n");
    broker.await.expect("broker");
}

#[tokio::test]
async fn cli_pub_sends_each_input_line_at_qos2() {
    let (url, broker) = tcp_broker(|mut broker| async move {
        let connect = broker.accept(ReasonCode::Success).await;
        assert_eq!(connect.protocol, ProtocolVersion::V3_1_1);
        assert!(connect.clean_start);
        for want in ["one", "two"] {
            let Packet::Publish(p) = broker.recv().await else {
                panic!("expected PUBLISH")
            };
            assert_eq!(&p.payload[..], want.as_bytes());
            let pid = p.delivery.packet_id().expect("QoS 2");
            broker.send(Packet::PubRec(Ack::new(pid))).await;
            assert_eq!(broker.recv().await, Packet::PubRel(Ack::new(pid)));
            broker.send(Packet::PubComp(Ack::new(pid))).await;
        }
        broker.expect_disconnect().await;
    })
    .await;
    let (result, _) = cli(
        &[
            "pub", "--url", &url, "-V", "3.1.1", "-t", "t", "-l", "-q", "2",
        ],
        "one\n\ntwo\r\n",
    )
    .await;
    result.expect("pub");
    broker.await.expect("broker");
}

#[tokio::test]
async fn cli_pub_repeats_the_message_count_times() {
    let (url, broker) = tcp_broker(|mut broker| async move {
        broker.accept(ReasonCode::Success).await;
        for _ in 0..3 {
            let Packet::Publish(p) = broker.recv().await else {
                panic!("expected PUBLISH")
            };
            assert_eq!((&p.payload[..], p.qos()), (&b"m"[..], QoS::AtMostOnce));
        }
        broker.expect_disconnect().await;
    })
    .await;
    let (result, _) = cli(
        &["pub", "--url", &url, "-t", "t", "-m", "m", "--count", "3"],
        "",
    )
    .await;
    result.expect("pub");
    broker.await.expect("broker");
}

#[tokio::test]
async fn cli_sub_fails_when_nothing_arrives_in_time() {
    let (url, broker) = tcp_broker(|mut broker| async move {
        broker.accept(ReasonCode::Success).await;
        broker.grant(&[ReasonCode::Success]).await;
        assert_eq!(broker.try_recv().await, None);
    })
    .await;
    let (result, out) = cli(&["sub", "--url", &url, "-t", "a", "-W", "0.2"], "").await;
    let err = result.expect_err("timed out");
    assert_eq!(
        err.to_string(),
        "timed out after 0.2s waiting for a message"
    );
    assert_eq!(out, "");
    broker.await.expect("broker");
}

#[tokio::test]
async fn cli_reports_a_refused_subscription_and_a_closed_port() {
    let (url, broker) = tcp_broker(|mut broker| async move {
        broker.accept(ReasonCode::Success).await;
        broker.grant(&[ReasonCode::NotAuthorized]).await;
    })
    .await;
    let (result, _) = cli(&["sub", "--url", &url, "-t", "secret/#"], "").await;
    let err = result.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the broker rejected the subscription to secret/#: 0x87 Not authorized"
    );
    broker.await.expect("broker");

    // The listener is gone: nothing accepts on that port any more.
    let (result, _) = cli(&["pub", "--url", &url, "-t", "t", "-m", "x"], "").await;
    let err = result.expect_err("no broker");
    assert!(matches!(err, CliError::Connect(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("cannot connect to 127.0.0.1:"),
        "{err}"
    );
}
