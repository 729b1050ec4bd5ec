//! Webhooks end to end, on the real `cicada` binary with `mosquitto_pub`/`mosquitto_sub` as the
//! clients and a small HTTP receiver in the test: the receiver gets every event (connections,
//! sessions created and expired, messages published and delivered on the watched topics) in
//! order, numbered without gaps; a receiver that never answers does not hold up a single message,
//! and its events are counted as dropped.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{attempt, http, Broker};

const TOKEN: &str = "test-admin-token-0123456789";

/// An HTTP receiver on a free port that answers 200 to every POST and keeps the bodies.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Waits until a body satisfies `done`; returns every body so far.
    fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let bodies = self.bodies.lock().expect("lock").clone();
            if bodies.iter().any(&done) {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook event {what}; got {bodies:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Answers requests on one keep-alive connection.
fn serve(stream: TcpStream, bodies: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let value: Value = serde_json::from_slice(&body).expect("JSON body");
        bodies.lock().expect("lock").push(value);
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn broker_with(dir: &std::path::Path, webhook: &str) -> (Broker, u16) {
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).expect("write the token");
    let (broker, [http]) = Broker::with_listeners::<1>(dir, |[http]| {
        format!("[http]\nlisten = \"127.0.0.1:{http}\"\nadmin_token_file = {token:?}\n{webhook}")
    });
    (broker, http)
}

fn mosquitto(program: &str, port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(30));
    assert!(ok, "{program} {args:?} failed: {out}");
    out
}

fn event_of(body: &Value) -> (String, String) {
    let event = body["event"].as_str().unwrap_or_default().to_string();
    let who = body["client_id"]
        .as_str()
        .or(body["from"].as_str())
        .unwrap_or_default()
        .to_string();
    (event, who)
}

#[test]
fn the_receiver_gets_every_event_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start();
    let (broker, _) = broker_with(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"audit\"\nurl = \"{}\"\ntopics = [\"watched/#\"]\n",
            receiver.url()
        ),
    );
    let mut watcher = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-i", "watcher", "-q", "1", "-t", "watched/#", "-C", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    receiver.wait_for("watcher connected", |b| {
        event_of(b) == ("client.connected".into(), "watcher".into())
    });
    std::thread::sleep(Duration::from_millis(200));
    mosquitto(
        "mosquitto_pub",
        broker.port,
        &["-i", "pub", "-q", "1", "-t", "watched/a", "-m", "hi"],
    );
    mosquitto(
        "mosquitto_pub",
        broker.port,
        &["-i", "pub2", "-t", "other", "-m", "x"],
    );
    assert!(watcher.wait().expect("wait").success());
    // A session that expires one second after its client leaves.
    mosquitto(
        "mosquitto_sub",
        broker.port,
        &[
            "-V", "mqttv5", "-i", "brief", "-c", "-x", "1", "-t", "t", "-E",
        ],
    );
    let bodies = receiver.wait_for("session expired", |b| {
        event_of(b) == ("session.expired".into(), "brief".into())
    });

    let seqs: Vec<u64> = bodies
        .iter()
        .map(|b| b["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "numbered in order, no gaps"
    );
    let events: Vec<(String, String)> = bodies.iter().map(event_of).collect();
    let of = |who: &str| -> Vec<String> {
        events
            .iter()
            .filter(|(_, w)| w == who)
            .map(|(e, _)| e.clone())
            .collect()
    };
    assert_eq!(
        of("watcher"),
        [
            "client.connected",
            "session.created",
            "message.delivered",
            "client.disconnected"
        ]
    );
    assert_eq!(
        of("pub"),
        [
            "client.connected",
            "session.created",
            "message.published",
            "client.disconnected"
        ]
    );
    // Not a watched topic: only its connection's events.
    assert_eq!(
        of("pub2"),
        ["client.connected", "session.created", "client.disconnected"]
    );
    assert_eq!(
        of("brief"),
        [
            "client.connected",
            "session.created",
            "client.disconnected",
            "session.expired"
        ]
    );
    let published = bodies
        .iter()
        .find(|b| b["event"] == "message.published")
        .expect("published");
    assert_eq!(published["topic"], "watched/a");
    assert_eq!(published["payload"], "hi");
    assert_eq!(published["qos"], 1);
    let position = |event: &str| events.iter().position(|(e, _)| e == event);
    assert!(position("message.published") < position("message.delivered"));
    let delivered = bodies
        .iter()
        .find(|b| b["event"] == "message.delivered")
        .expect("delivered");
    assert_eq!(delivered["qos"], 1);
    assert!(bodies[0]["timestamp_ms"].as_u64().expect("time") > 1_700_000_000_000);
}

#[test]
fn a_receiver_that_never_answers_does_not_slow_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepts connections and never answers; each POST waits for its timeout.
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blackhole.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in blackhole.incoming().flatten() {
            held.push(stream);
        }
    });
    let (broker, http_port) = broker_with(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"stuck\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             topics = [\"#\"]\nqueue_size = 10\ntimeout_ms = 60000\n"
        ),
    );
    let count = 500;
    let subscriber = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-q",
            "1",
            "-t",
            "load/#",
            "-C",
            &count.to_string(),
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-q", "1", "-t", "load/x", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        let mut stdin = publisher.stdin.take().expect("stdin");
        for i in 0..count {
            writeln!(stdin, "m{i}").expect("write");
        }
    }
    assert!(publisher.wait().expect("wait").success());
    let out = subscriber.wait_with_output().expect("output");
    let took = started.elapsed();
    let received = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(received, count, "every message delivered");
    // Were the broker waiting for the receiver, one message would take the 60 s timeout.
    assert!(
        took < Duration::from_secs(20),
        "{count} QoS 1 messages took {took:?} with a dead webhook receiver"
    );
    let (_, metrics) = http(http_port, "GET", "/metrics", None, None);
    let value = |outcome: &str| -> u64 {
        let prefix =
            format!("cicada_webhook_events_total{{webhook=\"stuck\",outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    assert_eq!(value("sent"), 0);
    assert!(value("dropped") > 0, "{metrics}");
    assert!(value("queued") <= 11, "{metrics}");
    broker.wait_log(&["webhook queue full; events dropped", "webhook=stuck"]);
}
