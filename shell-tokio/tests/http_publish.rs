//! The HTTP publish API end to end, on the real `cicada` binary: a message posted with a user's
//! password reaches a `mosquitto_sub` subscriber (payload as text and as base64, QoS, retain), the
//! batch answers each message, and the caller is checked like an MQTT client: wrong or missing
//! credentials get 401, a topic the ACL denies gets 403 with reason code 0x87, and nothing denied
//! is delivered.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::{attempt, http, http_as, Broker};

const TOKEN: &str = "test-admin-token-0123456789";

const ACL: &str = r##"
allow user "alice" publish,retain "sensors/#"
allow all subscribe "#"
"##;

fn passwd(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cicada"));
    cmd.args(["passwd", "-b", "-c"])
        .arg(file)
        .args([user, password]);
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(60));
    assert!(ok, "cicada passwd failed: {out}");
}

/// A broker with a password file (alice), the ACL above, and the HTTP listener; `extra` is more
/// `[http]` TOML. Returns the broker and the HTTP port.
fn broker(dir: &Path, extra: &str) -> (Broker, u16) {
    let file = dir.join("passwd");
    passwd(&file, "alice", "s3cret");
    let acl = dir.join("acl");
    std::fs::write(&acl, ACL).expect("write the ACL");
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).expect("write the token");
    let (broker, [port]) = Broker::with_listeners::<1>(dir, |[port]| {
        format!(
            "[auth.password]\nfile = {file:?}\n[acl]\nfile = {acl:?}\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\nadmin_token_file = {token:?}\n{extra}",
        )
    });
    (broker, port)
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn post(port: u16, path: &str, auth: Option<&str>, body: &Value) -> (u16, Value) {
    let text = body.to_string();
    let (status, answer) = http_as(port, "POST", path, auth, Some(&text));
    let value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {answer:?}"));
    (status, value)
}

/// `mosquitto_sub` on `filter` printing `topic payload` lines, until `count` messages or 10 s.
struct Sub(std::process::Child);

impl Sub {
    fn start(port: u16, id: &str, filter: &str, count: usize) -> Sub {
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "5"])
            .args(["-i", id, "-t", filter, "-q", "1", "-v"])
            .args(["-C", &count.to_string(), "-W", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (the test command installs mosquitto-clients)");
        Sub(child)
    }

    fn lines(self) -> Vec<String> {
        let out = self.0.wait_with_output().expect("mosquitto_sub output");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Waits until the admin API lists `client_id`'s subscription (its SUBSCRIBE follows the CONNACK).
fn subscribed(port: u16, client_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/api/v1/subscriptions?client_id={client_id}");
        let (status, body) = http(port, "GET", &path, Some(TOKEN), None);
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status == 200 && body["total"].as_u64() == Some(1) {
            return;
        }
        assert!(Instant::now() < deadline, "{client_id} never subscribed");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_posted_message_reaches_a_mosquitto_subscriber() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, port) = broker(dir.path(), "");
    let alice = basic("alice", "s3cret");
    let sub = Sub::start(b.port, "watcher", "sensors/#", 2);
    subscribed(port, "watcher");

    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&alice),
        &serde_json::json!({ "topic": "sensors/1", "payload": "21.5", "qos": 1 }),
    );
    assert_eq!(
        (status, &body["reason_code"]),
        (200, &Value::from(0)),
        "{body}"
    );
    let binary = base64::engine::general_purpose::STANDARD.encode("on");
    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&alice),
        &serde_json::json!({
            "topic": "sensors/2", "payload": binary, "payload_encoding": "base64",
            "retain": true,
            "properties": { "content_type": "text/plain", "user_properties": { "via": "http" } },
        }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(sub.lines(), vec!["sensors/1 21.5", "sensors/2 on"]);

    // Retained: a late subscriber gets it.
    let late = Sub::start(b.port, "late", "sensors/2", 1);
    assert_eq!(late.lines(), vec!["sensors/2 on"]);
}

#[test]
fn callers_are_checked_like_mqtt_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, port) = broker(dir.path(), "");
    let message = serde_json::json!({ "topic": "sensors/1", "payload": "x" });

    let (status, body) = post(port, "/api/v1/publish", None, &message);
    assert_eq!(status, 401, "no credentials: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("publish_anonymous")),
        "{body}"
    );
    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&basic("alice", "wrong")),
        &message,
    );
    assert_eq!(status, 401, "wrong password: {body}");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _) = post(port, "/api/v1/publish", Some(&bearer), &message);
    assert_eq!(status, 401, "the admin token does not publish");

    // The ACL: alice may publish under sensors/ only; the log names her and the rule.
    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&basic("alice", "s3cret")),
        &serde_json::json!({ "topic": "actuators/1", "payload": "x" }),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason_code"], 0x87, "{body}");
    b.wait_log(&["HTTP publish refused", "alice", "actuators/1"]);

    // Bad input names the field.
    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&basic("alice", "s3cret")),
        &serde_json::json!({ "topic": "sensors/#", "payload": "x" }),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "topic", "{body}");
    let (status, body) = post(
        port,
        "/api/v1/publish",
        Some(&basic("alice", "s3cret")),
        &serde_json::json!({ "topic": "sensors/1", "qos": 3 }),
    );
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &Value::from("qos"))
    );
}

#[test]
fn a_batch_answers_each_message_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b, port) = broker(dir.path(), "");
    let sub = Sub::start(b.port, "batch-watcher", "#", 2);
    subscribed(port, "batch-watcher");
    let (status, body) = post(
        port,
        "/api/v1/publish/batch",
        Some(&basic("alice", "s3cret")),
        &serde_json::json!({ "messages": [
            { "topic": "sensors/a", "payload": "1", "qos": 1 },
            { "topic": "elsewhere", "payload": "2" },
            { "topic": "sensors/b", "payload": "3", "qos": 2 },
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    let codes: Vec<u64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["reason_code"].as_u64().expect("a reason code"))
        .collect();
    assert_eq!(codes, vec![0, 0x87, 0]);
    assert_eq!(sub.lines(), vec!["sensors/a 1", "sensors/b 3"]);

    let (status, body) = post(
        port,
        "/api/v1/publish/batch",
        Some(&basic("alice", "s3cret")),
        &serde_json::json!({ "messages": [{ "topic": "sensors/a", "payload": "x", "colour": 1 }] }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("colour")),
        "{body}"
    );
}

#[test]
fn anonymous_publishing_is_opt_in_and_checked_against_rules_for_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_b, port) = broker(dir.path(), "publish_anonymous = true\n");
    let (status, body) = post(
        port,
        "/api/v1/publish",
        None,
        &serde_json::json!({ "topic": "sensors/1", "payload": "x" }),
    );
    // Anonymous is let in, but the ACL lets only alice publish there.
    assert_eq!(
        (status, &body["reason_code"]),
        (403, &Value::from(0x87)),
        "{body}"
    );
}
