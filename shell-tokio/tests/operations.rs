//! Operations end to end, on the real `cicada` binary with mosquitto clients and raw clients:
//! metrics move when clients act, the admin API kicks a client and deletes a retained message as
//! connected clients see it, errors name the field, a reload changes a limit live (and reports what
//! cannot change), a drain with clients connected loses no persisted message, and the dashboard
//! works in headless Chromium.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cicada_engine::codec::{
    Ack, Delivery, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use serde_json::Value;
use support::{attempt, connect_packet, http, Broker, Raw};

const TOKEN: &str = "test-admin-token-0123456789";

/// A broker (memory storage) with an HTTP listener and the admin token; `extra` is more TOML.
fn broker(dir: &Path, extra: &str) -> (Broker, u16) {
    let token = dir.join("admin-token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("write the token");
    let (broker, [port]) = Broker::with_listeners::<1>(dir, |[port]| {
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nadmin_token_file = {:?}\n{extra}",
            token.to_str().expect("utf-8 path")
        )
    });
    (broker, port)
}

fn api(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = http(port, method, path, Some(TOKEN), body);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
    (status, value)
}

/// The value of a sample line (`name{labels} value`) in a scrape.
fn sample(scrape: &str, line_start: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {line_start:?} in\n{scrape}"))
}

fn scrape(port: u16) -> String {
    let (status, text) = http(port, "GET", "/metrics", None, None);
    assert_eq!(status, 200, "{text}");
    text
}

fn mosquitto_pub(port: u16, topic: &str, message: &str, args: &[&str]) {
    let (ok, out) = support::mosquitto_pub(port, topic, message, args);
    assert!(ok, "mosquitto_pub failed: {out}");
}

/// A `mosquitto_sub` left running (v5), killed when dropped.
struct Sub(std::process::Child);

impl Sub {
    fn start(port: u16, id: &str, filter: &str) -> Sub {
        let child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-V",
                "5",
                "-i",
                id,
                "-t",
                filter,
                "-q",
                "1",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto_sub (the test command installs mosquitto-clients)");
        Sub(child)
    }

    /// Waits for it to exit (the broker sent it away); whether it did within `limit`.
    fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.0.try_wait().expect("wait").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn connected(port: u16, client_id: &str) -> Option<bool> {
    let (_, body) = api(port, "GET", &format!("/api/v1/clients/{client_id}"), None);
    body["connected"].as_bool()
}

#[test]
fn metrics_move_when_clients_act() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, http_port) = broker(dir.path(), "");
    // The start-up probe's connection is counted once it is accepted; wait for it to be gone.
    eventually("the start-up probe is counted and closed", || {
        let s = scrape(http_port);
        sample(&s, "cicada_connections") == 0.0
            && sample(&s, "cicada_connections_accepted_total") >= 1.0
    });
    let before = scrape(http_port);
    assert!(before.ends_with("# EOF\n"), "OpenMetrics text");
    assert_eq!(sample(&before, "cicada_clients_connected"), 0.0);

    let _sub = Sub::start(b.port, "metrics-sub", "m/#");
    eventually("the subscriber is connected", || {
        sample(&scrape(http_port), "cicada_subscriptions") == 1.0
    });
    for i in 0..5 {
        mosquitto_pub(b.port, "m/x", &format!("one-{i}"), &["-q", "1"]);
    }
    mosquitto_pub(b.port, "m/x", "zero", &["-q", "0"]);
    eventually("six deliveries counted", || {
        let s = scrape(http_port);
        sample(&s, "cicada_messages_sent_total{qos=\"1\"}") == 5.0
            && sample(&s, "cicada_messages_sent_total{qos=\"0\"}") == 1.0
    });
    let after = scrape(http_port);
    assert_eq!(
        sample(&after, "cicada_messages_received_total{qos=\"1\"}"),
        5.0
    );
    assert_eq!(
        sample(&after, "cicada_messages_received_total{qos=\"0\"}"),
        1.0
    );
    assert_eq!(sample(&after, "cicada_clients_connected"), 1.0);
    assert_eq!(
        sample(&after, "cicada_connections_accepted_total")
            - sample(&before, "cicada_connections_accepted_total"),
        7.0,
        "one subscriber and six publishers"
    );
    assert!(
        sample(&after, "cicada_received_bytes_total")
            > sample(&before, "cicada_received_bytes_total")
    );
    assert!(sample(&after, "cicada_loop_turn_seconds_count") > 0.0);

    let (status, health) = http(http_port, "GET", "/health", None, None);
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, ready) = http(http_port, "GET", "/ready", None, None);
    assert_eq!((status, ready.as_str()), (200, r#"{"status":"ready"}"#));
}

#[test]
fn the_admin_api_kicks_a_client_and_deletes_a_retained_message_as_clients_see_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, http_port) = broker(dir.path(), "");

    // No token, a wrong token, a bad parameter: JSON errors naming the field.
    let (status, text) = http(http_port, "GET", "/api/v1/clients", None, None);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains(r#""field":"Authorization""#), "{text}");
    let (status, _) = http(
        http_port,
        "GET",
        "/api/v1/clients",
        Some("wrong-token-0000000000"),
        None,
    );
    assert_eq!(status, 401);
    let (status, body) = api(http_port, "GET", "/api/v1/clients?limit=many", None);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    let (status, body) = api(http_port, "GET", "/api/v1/retained?filter=a/%23/b", None);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("filter"))
    );
    let (status, body) = api(
        http_port,
        "POST",
        "/api/v1/bans",
        Some(r#"{"kind":"client","value":"x","until":"soon"}"#),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("until"))
    );
    let (status, body) = api(http_port, "POST", "/api/v1/clients/ghost/kick", None);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (404, Some("client_id"))
    );

    // Kick: the connected mosquitto_sub is sent away.
    let mut victim = Sub::start(b.port, "victim", "k/#");
    eventually("victim is connected", || {
        connected(http_port, "victim") == Some(true)
    });
    let (status, body) = api(http_port, "GET", "/api/v1/clients?search=vic", None);
    assert_eq!(status, 200);
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["items"][0]["protocol"], "5.0");
    // Its SUBSCRIBE follows the CONNACK: wait for it rather than race it.
    eventually("victim's subscription is listed", || {
        let (status, subs) = api(
            http_port,
            "GET",
            "/api/v1/subscriptions?client_id=victim",
            None,
        );
        (status, subs["items"][0]["filter"].as_str()) == (200, Some("k/#"))
    });
    let (status, _) = api(http_port, "POST", "/api/v1/clients/victim/kick", None);
    assert_eq!(status, 200);
    assert!(
        victim.exits_within(Duration::from_secs(5)),
        "mosquitto_sub was not disconnected"
    );
    b.wait_log(&["client disconnected", "victim", "Kicked"]);

    // Retained: a raw v5 client sees the message before the delete and nothing after it.
    mosquitto_pub(b.port, "cfg/device-1", "v1", &["-r", "-q", "1"]);
    let (status, found) = api(http_port, "GET", "/api/v1/retained?filter=cfg/%2B", None);
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["payload"], "v1", "{found}");
    let (status, stats) = api(
        http_port,
        "GET",
        "/api/v1/topics/stats?topic=cfg/device-1",
        None,
    );
    assert_eq!(
        (status, stats["retained"]["payload"].as_str()),
        (200, Some("v1"))
    );
    assert_eq!(retained_seen(b.port), Some("v1".to_string()));
    let (status, _) = api(
        http_port,
        "DELETE",
        "/api/v1/retained?topic=cfg/device-1",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        retained_seen(b.port),
        None,
        "the retained message is gone for new subscribers"
    );
    let (status, _) = api(
        http_port,
        "DELETE",
        "/api/v1/retained?topic=cfg/device-1",
        None,
    );
    assert_eq!(status, 404);

    // A ban through the API sends a connected client away and refuses it afterwards.
    let mut banned = Sub::start(b.port, "spammer", "s/#");
    eventually("spammer is connected", || {
        connected(http_port, "spammer") == Some(true)
    });
    let (status, _) = api(
        http_port,
        "POST",
        "/api/v1/bans",
        Some(r#"{"kind":"client","value":"spam*","reason":"test"}"#),
    );
    assert_eq!(status, 201);
    assert!(
        banned.exits_within(Duration::from_secs(5)),
        "a banned client stays connected"
    );
    let (_, bans) = api(http_port, "GET", "/api/v1/bans", None);
    assert_eq!(bans["items"][0]["line"], r#"client "spam*" reason "test""#);
    let (status, _) = api(
        http_port,
        "DELETE",
        "/api/v1/bans?kind=client&value=spam*",
        None,
    );
    assert_eq!(status, 200);

    // Deleting a session removes it; listeners are listed.
    let (status, _) = api(http_port, "DELETE", "/api/v1/sessions/victim", None);
    assert!(
        status == 200 || status == 404,
        "victim's session ended with its connection"
    );
    let (status, listeners) = api(http_port, "GET", "/api/v1/listeners", None);
    assert_eq!(status, 200);
    assert_eq!(listeners["items"][0]["kind"], "tcp");
    assert_eq!(listeners["items"][0]["accepting"], true);
}

/// What a new v5 subscriber to `cfg/#` gets as a retained message, if anything (within 1 s).
fn retained_seen(port: u16) -> Option<String> {
    let (mut raw, ack) = Raw::session(port, connect_packet("", ProtocolVersion::V5, 30));
    assert!(matches!(ack, Packet::ConnAck(ref a) if a.reason == ReasonCode::Success));
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("id"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::new("cfg/#".to_string()).expect("filter"),
            options: SubscriptionOptions::default(),
        }],
    }));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    match raw.recv() {
        Some(Packet::Publish(p)) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
        _ => None,
    }
}

fn publish(topic: &str, payload: Vec<u8>, delivery: Delivery) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        delivery,
        retain: false,
        topic: TopicName::new(topic.to_string()).expect("topic"),
        properties: Default::default(),
        payload: Bytes::from(payload),
    })
}

#[test]
fn a_reload_changes_a_limit_live_and_reports_what_needs_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, http_port) = broker(dir.path(), "[limits]\nmax_packet_size = 100000\n");
    let big = "x".repeat(5000);
    mosquitto_pub(b.port, "big", &big, &["-V", "5"]);

    // Lower the limit in the file, add a setting that needs a restart, and send SIGHUP.
    let config = dir.path().join("cicada.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "max_packet_size = 100000",
        "max_packet_size = 1000\nreceive_maximum = 10",
    );
    std::fs::write(
        &config,
        text.replace("[sys]", "[log]\nlevel = \"info\"\n[sys]"),
    )
    .expect("write config");
    let status = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let line = b.wait_log(&["reload done"]);
    assert!(line.contains("limits.max_packet_size"), "{line}");
    b.wait_log(&["take effect only after a restart", "limits.receive_maximum"]);

    // The new limit holds: the same publish is now refused with 0x95.
    let (mut raw, _) = Raw::session(b.port, connect_packet("big-pub", ProtocolVersion::V5, 30));
    raw.send(&publish("big", big.into_bytes(), Delivery::AtMostOnce));
    match raw.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PacketTooLarge),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }

    // The API reload reports the same way (nothing changed since).
    let (status, report) = api(http_port, "POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], serde_json::json!([]));
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["limits.receive_maximum"])
    );
    // A broken file is reported and changes nothing.
    std::fs::write(&config, "[limits]\nmax_packet_size = \"big\"\n").expect("write config");
    let (_, report) = api(http_port, "POST", "/api/v1/reload", None);
    assert!(
        report["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("max_packet_size")),
        "{report}"
    );
}

#[test]
fn a_drain_with_clients_connected_loses_no_persisted_message() {
    const MESSAGES: usize = 300;
    let port = support::free_port();
    let data_dir = std::env::temp_dir().join(format!("cicada-e2e-drain-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let b = Broker::start_at(port, data_dir, &[]);

    let subscriber = || {
        let mut c = connect_packet("drain-sub", ProtocolVersion::V5, 60);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let (mut sub, _) = Raw::session(port, subscriber());
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("id"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::new("drain/#".to_string()).expect("filter"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
    }));
    assert!(matches!(sub.recv(), Some(Packet::SubAck(_))));

    // The publisher's messages are all acknowledged, so all persisted.
    let (mut publisher, _) =
        Raw::session(port, connect_packet("drain-pub", ProtocolVersion::V5, 60));
    for i in 0..MESSAGES {
        let id = PacketId::new(u16::try_from(i % 60_000 + 1).expect("id")).expect("id");
        publisher.send(&publish(
            "drain/x",
            format!("m{i}").into_bytes(),
            Delivery::AtLeastOnce(id),
        ));
        match publisher.recv() {
            Some(Packet::PubAck(a)) if a.reason == ReasonCode::Success => {}
            other => panic!("message {i} not acknowledged: {other:?}"),
        }
    }

    // The subscriber takes the first third and acknowledges them; the rest stay inflight or queued.
    let mut acked = std::collections::BTreeSet::new();
    while acked.len() < MESSAGES / 3 {
        match sub.recv() {
            Some(Packet::Publish(p)) => {
                if let Delivery::AtLeastOnce(id) = p.delivery {
                    sub.send(&Packet::PubAck(Ack::new(id)));
                }
                acked.insert(String::from_utf8_lossy(&p.payload).into_owned());
            }
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    // Let the broker read the last PUBACKs first: a socket closed with unread input sends RST,
    // and an RST makes the client's kernel drop what it had not read yet, DISCONNECT included.
    std::thread::sleep(Duration::from_millis(300));
    // SIGTERM with both connected: both are told 0x8B, and the broker exits in bounded time.
    let started = Instant::now();
    let (status, data_dir) = b.terminate_keeping_data();
    assert!(status.success(), "cicada exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "drain took {:?}",
        started.elapsed()
    );
    let told = |raw: &mut Raw| loop {
        match raw.recv() {
            Some(Packet::Disconnect(d)) => return d.reason,
            Some(_) => {}
            None => panic!("closed without DISCONNECT"),
        }
    };
    assert_eq!(told(&mut publisher), ReasonCode::ServerShuttingDown);
    assert_eq!(told(&mut sub), ReasonCode::ServerShuttingDown);

    // Restart on the same data: the subscriber resumes and gets every message it had not acknowledged.
    let b = Broker::start_at(port, data_dir, &[]);
    let (mut sub, ack) = Raw::session(port, subscriber());
    assert!(
        matches!(ack, Packet::ConnAck(ref a) if a.session_present),
        "{ack:?}"
    );
    let mut received = acked.clone();
    while received.len() < MESSAGES {
        match sub.recv() {
            Some(Packet::Publish(p)) => {
                if let Delivery::AtLeastOnce(id) = p.delivery {
                    sub.send(&Packet::PubAck(Ack::new(id)));
                }
                received.insert(String::from_utf8_lossy(&p.payload).into_owned());
            }
            other => panic!(
                "only {} of {MESSAGES} messages after the restart; then {other:?}\n{}",
                received.len(),
                b.log()
            ),
        }
    }
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, http_port) = broker(dir.path(), "");
    let _victim = Sub::start(b.port, "dash-victim", "d/#");
    eventually("dash-victim is connected", || {
        connected(http_port, "dash-victim") == Some(true)
    });
    mosquitto_pub(b.port, "dash/temp", "21.5", &["-r"]);

    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/setup (the test command does)"
    );
    let screenshot = dir.path().join("dashboard.png");
    let (ok, out) = attempt(
        Command::new("node")
            .arg(script_dir.join("dashboard.mjs"))
            .env("BASE_URL", format!("http://127.0.0.1:{http_port}"))
            .env("TOKEN", TOKEN)
            .env("KICK_CLIENT", "dash-victim")
            .env("RETAINED_TOPIC", "dash/temp")
            .env("RETAINED_PAYLOAD", "21.5")
            .env("SCREENSHOT", &screenshot),
        Duration::from_secs(90),
    );
    assert!(ok, "the dashboard check failed (Chromium: the test command installs Debian's chromium):\n{out}");
    assert!(out.contains("ok:"), "{out}");
    assert_eq!(
        connected(http_port, "dash-victim"),
        None,
        "kicked from the page: its clean session ended"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000),
        "a screenshot was taken"
    );
}

/// A fake OTLP/HTTP collector: records each request's first line and body, answers 200.
/// What the fake collector received: each request's first line and body.
type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

fn fake_collector() -> (u16, Requests) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            record
                .lock()
                .expect("lock")
                .push((first.trim().to_string(), body));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[test]
fn traces_are_exported_over_otlp_when_switched_on() {
    let (collector, seen) = fake_collector();
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, _) = Broker::with_listeners::<0>(dir.path(), |[]| {
        format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{collector}/v1/traces\"\nservice_name = \"cicada-test\"\n")
    });
    mosquitto_pub(b.port, "traced/t", "hello", &["-i", "traced-client"]);
    b.wait_log(&["client disconnected", "traced-client"]);
    // Stopping flushes the batch exporter.
    assert!(b.terminate().success());
    let requests = seen.lock().expect("lock").clone();
    let found = requests.iter().any(|(line, body)| {
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        line.starts_with("POST /v1/traces")
            && has(b"mqtt.connection")
            && has(b"traced-client")
            && has(b"cicada-test")
    });
    assert!(
        found,
        "no OTLP export with the connection span; requests: {:?}",
        requests
            .iter()
            .map(|(l, b)| (l, b.len()))
            .collect::<Vec<_>>()
    );
}
