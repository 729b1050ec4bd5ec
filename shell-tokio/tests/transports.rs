//! End to end over every transport: rumqttc over TLS and WebSocket, a certificate reload (SIGHUP
//! and file change) while a client stays connected, PROXY protocol v1/v2 headers whose address
//! reaches the logs, a malformed header, and a listener's connection limit.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use cicada_engine::codec::{Packet, ProtocolVersion};
use cicada_transports::testing::TestPki;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet as RPacket, QoS, Transport};
use support::{Broker, Raw};
use tokio::time::timeout;

fn tls_section(pki: &TestPki, extra: &str) -> String {
    format!("{}{extra}\n", pki.tls_section("none"))
}

/// Polls until a PUBLISH arrives; returns its payload.
async fn next_publish(eventloop: &mut EventLoop) -> String {
    loop {
        let event = timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("a message within 5 s")
            .expect("event loop");
        if let Event::Incoming(RPacket::Publish(p)) = event {
            return String::from_utf8_lossy(&p.payload).into_owned();
        }
    }
}

/// Polls until the SUBACK.
async fn until_suback(eventloop: &mut EventLoop) {
    loop {
        let event = timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("SUBACK within 5 s")
            .expect("event loop");
        if let Event::Incoming(RPacket::SubAck(_)) = event {
            return;
        }
    }
}

fn rumqttc_tls(id: &str, port: u16, pki: &TestPki) -> MqttOptions {
    let mut o = MqttOptions::new(id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls(
        std::fs::read(&pki.ca_cert).expect("ca"),
        None,
        None,
    ));
    o
}

/// A subscriber on one transport gets what a publisher on another sends.
async fn round_trip(sub: MqttOptions, publisher: MqttOptions, topic: &str) {
    let (sub_client, mut sub_loop) = AsyncClient::new(sub, 16);
    sub_client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    until_suback(&mut sub_loop).await;
    let (pub_client, mut pub_loop) = AsyncClient::new(publisher, 16);
    pub_client
        .publish(topic, QoS::AtLeastOnce, false, "over the wire")
        .await
        .expect("publish");
    let pub_task = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    assert_eq!(next_publish(&mut sub_loop).await, "over the wire");
    pub_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_over_tls_and_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let (broker, [tls, ws]) = Broker::with_listeners(dir.path(), |[tls, ws]| {
        format!(
            "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{tls}\"\n{}\
             [[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:{ws}\"\n",
            tls_section(&pki, "")
        )
    });
    let ws_options = |id: &str| {
        let mut o = MqttOptions::new(id, format!("ws://127.0.0.1:{ws}/mqtt"), ws);
        o.set_transport(Transport::Ws);
        o
    };
    // TLS to TLS, WebSocket to WebSocket, and across.
    round_trip(
        rumqttc_tls("t-sub", tls, &pki),
        rumqttc_tls("t-pub", tls, &pki),
        "tls/a",
    )
    .await;
    round_trip(ws_options("w-sub"), ws_options("w-pub"), "ws/a").await;
    round_trip(ws_options("x-sub"), rumqttc_tls("x-pub", tls, &pki), "x/a").await;
    broker.wait_log(&["client connected", "listener=ws://127.0.0.1"]);
    broker.wait_log(&["client connected", "listener=tls://127.0.0.1"]);
}

/// The Common Name of the certificate a TLS listener serves now.
async fn served_common_name(port: u16, pki: &TestPki) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = tls_over(tcp, pki).await;
    let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    cicada_transports::identity::identity_of(&leaf)
        .and_then(|id| id.common_name)
        .expect("a CN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_and_file_change_without_dropping_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let (broker, [tls]) = Broker::with_listeners(dir.path(), |[tls]| {
        format!(
            "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{tls}\"\n{}",
            tls_section(&pki, "watch_interval_secs = 1")
        )
    });
    assert_eq!(served_common_name(tls, &pki).await, "localhost");
    // A client stays connected across both reloads.
    let (sub, mut sub_loop) = AsyncClient::new(rumqttc_tls("stays", tls, &pki), 16);
    sub.subscribe("reload/t", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    until_suback(&mut sub_loop).await;

    pki.renew_server("renewed-by-sighup");
    let pid = broker.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    broker.wait_log(&["certificates reloaded"]);
    // The file watcher may reload the same files too; either way the new certificate is served.
    assert_eq!(served_common_name(tls, &pki).await, "renewed-by-sighup");

    pki.renew_server("renewed-on-disk");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while served_common_name(tls, &pki).await != "renewed-on-disk" {
        assert!(
            std::time::Instant::now() < deadline,
            "the changed files were not reloaded:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The first client was never dropped: it still gets messages on its original connection.
    let (publisher, mut pub_loop) = AsyncClient::new(rumqttc_tls("later", tls, &pki), 16);
    publisher
        .publish("reload/t", QoS::AtLeastOnce, false, "still here")
        .await
        .expect("publish");
    let pub_task = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    assert_eq!(next_publish(&mut sub_loop).await, "still here");
    pub_task.abort();
    let log = broker.log();
    assert_eq!(log.matches("client connected").count(), 2, "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("client disconnected") && l.contains("client_id=stays")),
        "{log}"
    );
}

/// A CONNECT for `client_id` as bytes.
fn connect_bytes(client_id: &str) -> Vec<u8> {
    let mut connect = cicada_engine::sim::Sim::connect_packet(client_id, ProtocolVersion::V3_1_1);
    connect.keep_alive = 30;
    let mut out = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .expect("encode");
    out.to_vec()
}

/// Connects to `port`, sends `header` then CONNECT, and returns the first bytes answered.
fn connect_behind(port: u16, header: &[u8], client_id: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut bytes = header.to_vec();
    bytes.extend(connect_bytes(client_id));
    stream.write_all(&bytes).expect("write");
    let mut buf = [0u8; 4];
    let n = stream.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

fn proxy_v2_ipv4(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend(12u16.to_be_bytes());
    h.extend(src);
    h.extend(dst);
    h.extend(src_port.to_be_bytes());
    h.extend(dst_port.to_be_bytes());
    h
}

#[test]
fn proxy_protocol_v1_and_v2_addresses_reach_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let (broker, [tcp, tls]) = Broker::with_listeners(dir.path(), |[tcp, tls]| {
        format!(
            "[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:{tcp}\"\nproxy_protocol = true\nallow_anonymous = true\n\
             [[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{tls}\"\nproxy_protocol = true\nallow_anonymous = true\n{}",
            tls_section(&pki, "")
        )
    });
    let connack = [0x20, 0x02, 0x00, 0x00];
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 4242 1883\r\n";
    assert_eq!(connect_behind(tcp, v1, "behind-v1"), connack);
    broker.wait_log(&["client connected", "behind-v1", "peer=203.0.113.7:4242"]);

    let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 1883\r\n";
    assert_eq!(connect_behind(tcp, v6, "behind-v1-ipv6"), connack);
    broker.wait_log(&[
        "client connected",
        "behind-v1-ipv6",
        "peer=[2001:db8::7]:5555",
    ]);

    let v2 = proxy_v2_ipv4([198, 51, 100, 9], 6000, [192, 0, 2, 1], 1883);
    assert_eq!(connect_behind(tcp, &v2, "behind-v2"), connack);
    broker.wait_log(&["client connected", "behind-v2", "peer=198.51.100.9:6000"]);

    // Malformed or missing headers close the connection with a log line naming the peer.
    assert_eq!(connect_behind(tcp, b"PROXY TCP4 nonsense\r\n", "bad"), b"");
    broker.wait_log(&["closing connection", "PROXY header", "peer=127.0.0.1:"]);
    assert_eq!(connect_behind(tcp, b"", "no-header"), b"");
    assert!(!broker.log().contains("no-header"), "{}", broker.log());

    // On TLS the header comes before the handshake.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", tls))
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tcp.write_all(b"PROXY TCP4 203.0.113.50 192.0.2.1 7000 8883\r\n")
            .await
            .expect("header");
        let mut stream = tls_over(tcp, &pki).await;
        stream
            .write_all(&connect_bytes("behind-tls"))
            .await
            .expect("connect");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.expect("connack");
        assert_eq!(buf, connack);
    });
    broker.wait_log(&["client connected", "behind-tls", "peer=203.0.113.50:7000"]);
}

/// A TLS client session over an already connected TCP stream.
async fn tls_over(
    tcp: tokio::net::TcpStream,
    pki: &TestPki,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(&pki.ca_cert).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake")
}

#[test]
fn a_listener_at_max_connections_refuses_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, [limited]) = Broker::with_listeners(dir.path(), |[limited]| {
        format!(
            "[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:{limited}\"\nmax_connections = 2\n"
        )
    });
    let connect = |id: &str| {
        Raw::session(
            limited,
            cicada_engine::sim::Sim::connect_packet(id, ProtocolVersion::V3_1_1),
        )
    };
    let (a, _) = connect("one");
    let (_b, _) = connect("two");
    // The third is closed at once.
    let mut third = TcpStream::connect(("127.0.0.1", limited)).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = third.write_all(&connect_bytes("three"));
    let mut buf = [0u8; 4];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0);
    broker.wait_log(&["connection refused: listener at max_connections"]);
    // A place frees when a client leaves.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if connect_behind(limited, b"", "four") == [0x20, 0x02, 0x00, 0x00] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no place freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cicada-cli` in-process with `args`; returns what it printed.
async fn cli(args: &[&str]) -> Result<String, cicada_cli::CliError> {
    let cli = cicada_cli::parse(std::iter::once("cicada-cli").chain(args.iter().copied()))
        .expect("arguments");
    let mut out = Vec::new();
    cicada_cli::run(cli, &mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cicada_cli_over_quic_and_every_other_transport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::generate(dir.path());
    let (broker, [quic, tls, ws, wss]) =
        Broker::with_listeners(dir.path(), |[quic, tls, ws, wss]| {
            format!(
                "[[listener]]\nkind = \"quic\"\nbind = \"127.0.0.1:{quic}\"\n{tls_section}\
             [[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{tls}\"\n{tls_section}\
             [[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:{ws}\"\n\
             [[listener]]\nkind = \"wss\"\nbind = \"127.0.0.1:{wss}\"\n{tls_section}",
                tls_section = tls_section(&pki, "")
            )
        });
    let ca = pki.ca_cert.to_str().expect("utf-8 path").to_string();
    let quic_url = format!("quic://localhost:{quic}");
    // A retained message published over QUIC...
    cli(&[
        "pub", "--url", &quic_url, "--cafile", &ca, "-t", "q/a", "-m", "first", "-q", "1", "-r",
    ])
    .await
    .expect("pub over QUIC");
    // ...reaches a QUIC subscriber, which then gets live messages from every other transport.
    let sub_args = [
        "sub", "--url", &quic_url, "--cafile", &ca, "-i", "quic-sub", "-t", "q/#", "-q", "1", "-v",
        "-C", "4", "-W", "20",
    ];
    let sub_args: Vec<String> = sub_args.iter().map(|s| s.to_string()).collect();
    let sub = tokio::spawn(async move {
        let args: Vec<&str> = sub_args.iter().map(String::as_str).collect();
        cli(&args).await
    });
    let senders = [
        ("tls", format!("mqtts://localhost:{tls}")),
        ("ws", format!("ws://127.0.0.1:{ws}/mqtt")),
        ("wss", format!("wss://localhost:{wss}/mqtt")),
    ];
    broker.wait_log(&["client connected", "quic-sub", "listener=quic://"]);
    // The SUBACK is not visible from here: publish each until the subscriber has it.
    let mut deadline = 0;
    while !sub.is_finished() {
        for (kind, url) in &senders {
            cli(&[
                "pub",
                "--url",
                url,
                "--cafile",
                &ca,
                "-t",
                &format!("q/{kind}"),
                "-m",
                kind,
                "-q",
                "1",
            ])
            .await
            .unwrap_or_else(|e| panic!("pub over {kind}: {e}"));
        }
        deadline += 1;
        assert!(deadline < 100, "the QUIC subscriber did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = sub.await.expect("join").expect("sub over QUIC");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "q/a first", "{out}");
    for (kind, _) in &senders {
        assert!(
            out.contains(&format!("q/{kind} {kind}")),
            "{kind} missing: {out}"
        );
    }
    broker.wait_log(&["client disconnected", "quic-sub", "reason=ClientDisconnect"]);
}
