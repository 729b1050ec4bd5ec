//! MQTT bridges end to end, on the real `cicada` binary, with `mosquitto_pub`/`mosquitto_sub` as
//! the clients: between two cicada brokers and between cicada and Debian's `mosquitto` (5.0 and
//! 3.1.1), mapped both ways with prefixes; messages published while the remote is down are
//! delivered once after it restarts; a bridge mapped both ways on the same topics does not loop;
//! bridges are created, listed, measured and deleted through the admin API.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{attempt, free_port, http, Broker};

const TOKEN: &str = "test-admin-token-0123456789";

fn mosquitto_pub(port: u16, topic: &str, message: &str, qos: u8) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-m", message, "-q", &qos.to_string()]);
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(10));
    assert!(ok, "mosquitto_pub to {port} {topic} failed: {out}");
}

/// Registers a persistent QoS 1 session `id` subscribed to `filter` on `port`, then leaves.
fn persistent_subscriber(port: u16, id: &str, filter: &str) {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
        .args(["-q", "1", "-c", "-i", id, "-E"]);
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(10));
    assert!(ok, "mosquitto_sub -E on {port} failed: {out}");
}

/// Everything session `id` (persistent) or a clean subscriber (`id` empty) receives on `filter`
/// within `wait`, as `topic payload` lines.
fn collect(port: u16, id: &str, filter: &str, wait: Duration) -> Vec<String> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
        .args(["-q", "1", "-v", "-W", &wait.as_secs().to_string()]);
    if !id.is_empty() {
        cmd.args(["-c", "-i", id]);
    }
    let (_, out) = attempt(&mut cmd, wait + Duration::from_secs(5));
    out.lines()
        .filter(|l| !l.starts_with("Timed out"))
        .map(str::to_string)
        .collect()
}

/// A subscriber running in the background, for messages that arrive while the test publishes.
struct Subscriber(Child);

impl Subscriber {
    fn start(port: u16, filter: &str) -> Subscriber {
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
            .args(["-q", "2", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (the test command installs mosquitto-clients)");
        // Subscribed once the broker has the connection; a moment is enough on loopback.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber(child)
    }

    /// Stops it and returns what it received.
    fn lines(mut self) -> Vec<String> {
        let _ = self.0.kill();
        let out = self.0.wait_with_output().expect("output");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Waits until `count` log lines contain every one of `parts`.
fn wait_count(broker: &Broker, parts: &[&str], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = broker.log();
        let n = log
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count();
        if n >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {count} log lines with {parts:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A broker with `[[bridge]]` entries (and an admin HTTP listener); memory storage.
fn bridged_broker(dir: &Path, bridges: &str) -> (Broker, u16) {
    let token = dir.join("admin-token");
    std::fs::write(&token, TOKEN).expect("write the token");
    let (broker, [http]) = Broker::with_listeners::<1>(dir, |[http]| {
        format!("[http]\nlisten = \"127.0.0.1:{http}\"\nadmin_token_file = {token:?}\n{bridges}")
    });
    (broker, http)
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bridge_between_two_cicadas_buffers_while_the_remote_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The remote keeps its sessions on disk, so its subscriber's session survives the restart.
    let remote = Broker::start(&[]);
    persistent_subscriber(remote.port, "far-sub", "site1/#");
    let (local, _) = bridged_broker(
        dir.path(),
        &format!(
            "[[bridge]]\nname = \"up\"\nremote = \"mqtt://127.0.0.1:{}\"\n\
             reconnect_initial_ms = 100\nreconnect_max_ms = 400\n\
             [[bridge.topic]]\nfilter = \"t/#\"\ndirection = \"out\"\nqos = 2\nremote_prefix = \"site1/\"\n\
             [[bridge.topic]]\nfilter = \"cmd/#\"\ndirection = \"in\"\nlocal_prefix = \"from-cloud/\"\n",
            remote.port
        ),
    );
    local.wait_log(&["bridge connected", "bridge=up"]);

    // Out: renamed with the remote prefix.
    mosquitto_pub(local.port, "t/a", "one", 1);
    mosquitto_pub(local.port, "t/b", "two", 2);
    mosquitto_pub(local.port, "other", "not bridged", 1);
    assert_eq!(
        collect(remote.port, "far-sub", "site1/#", Duration::from_secs(1)),
        lines(&["site1/t/a one", "site1/t/b two"])
    );

    // In: renamed with the local prefix.
    let here = Subscriber::start(local.port, "from-cloud/#");
    mosquitto_pub(remote.port, "cmd/reboot", "now", 2);
    mosquitto_pub(remote.port, "elsewhere", "no", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(here.lines(), lines(&["from-cloud/cmd/reboot now"]));

    // The remote goes away; messages wait in the bridge's buffer.
    let port = remote.port;
    let (_, data) = remote.terminate_keeping_data();
    local.wait_log(&["bridge down", "bridge=up"]);
    for i in 0..5 {
        mosquitto_pub(local.port, "t/buffered", &format!("m{i}"), 1);
    }
    let remote = Broker::start_at(port, data, &[]);
    wait_count(&local, &["bridge connected", "bridge=up"], 2);
    let got = collect(remote.port, "far-sub", "site1/#", Duration::from_secs(2));
    let want: Vec<String> = (0..5).map(|i| format!("site1/t/buffered m{i}")).collect();
    assert_eq!(got, want, "each buffered message once, in order");
    assert!(
        local.log().contains("buffer_resumed=true"),
        "{}",
        local.log()
    );
}

#[test]
fn a_bridge_both_ways_on_the_same_topics_does_not_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Broker::start(&[]);
    let (local, _) = bridged_broker(
        dir.path(),
        &format!(
            "[[bridge]]\nname = \"mirror\"\nremote = \"mqtt://127.0.0.1:{}\"\n\
             [[bridge.topic]]\nfilter = \"room/#\"\ndirection = \"both\"\nqos = 1\n",
            remote.port
        ),
    );
    local.wait_log(&["bridge connected", "bridge=mirror"]);
    let (near, far) = (
        Subscriber::start(local.port, "room/#"),
        Subscriber::start(remote.port, "room/#"),
    );
    mosquitto_pub(local.port, "room/1", "from here", 1);
    mosquitto_pub(remote.port, "room/2", "from there", 1);
    std::thread::sleep(Duration::from_secs(1));
    let want = lines(&["room/1 from here", "room/2 from there"]);
    let (mut near, mut far) = (near.lines(), far.lines());
    near.sort();
    far.sort();
    assert_eq!(near, want, "each message once here");
    assert_eq!(far, want, "each message once there");
}

/// A mosquitto broker on a free port with persistence in `dir`, killed when dropped.
struct Mosquitto {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Mosquitto {
    fn start(dir: &Path, port: u16) -> Mosquitto {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: run as root (as CI does), mosquitto would otherwise switch to its own
                // user, which cannot write into the test's directory.
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 1000\n",
                dir.display()
            ),
        )
        .expect("write mosquitto.conf");
        // Debian puts the broker in /usr/sbin, which a non-root PATH may lack.
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (the test command installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            port,
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// SIGTERM (mosquitto writes its persistence file) and wait.
    fn stop(mut self) -> PathBuf {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.dir.clone()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bridge_to_mosquitto(protocol: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mosquitto_dir = dir.path().join("mosquitto");
    std::fs::create_dir_all(&mosquitto_dir).expect("mkdir");
    let mosquitto = Mosquitto::start(&mosquitto_dir, free_port());
    persistent_subscriber(mosquitto.port, "far-sub", "edge/#");
    let cicada_dir = dir.path().join("cicada");
    std::fs::create_dir_all(&cicada_dir).expect("mkdir");
    let (local, _) = bridged_broker(
        &cicada_dir,
        &format!(
            "[[bridge]]\nname = \"mq\"\nremote = \"mqtt://127.0.0.1:{}\"\nprotocol = \"{protocol}\"\n\
             reconnect_initial_ms = 100\nreconnect_max_ms = 400\n\
             [[bridge.topic]]\nfilter = \"#\"\ndirection = \"out\"\nqos = 2\nlocal_prefix = \"up/\"\nremote_prefix = \"edge/\"\n\
             [[bridge.topic]]\nfilter = \"#\"\ndirection = \"in\"\nqos = 1\nlocal_prefix = \"down/\"\nremote_prefix = \"cloud/\"\n",
            mosquitto.port
        ),
    );
    local.wait_log(&["bridge connected", "bridge=mq"]);
    mosquitto_pub(local.port, "up/x", "hello", 2);
    assert_eq!(
        collect(mosquitto.port, "far-sub", "edge/#", Duration::from_secs(1)),
        lines(&["edge/x hello"])
    );
    let here = Subscriber::start(local.port, "down/#");
    mosquitto_pub(mosquitto.port, "cloud/y", "hi", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(here.lines(), lines(&["down/y hi"]));

    // mosquitto restarts; what was published meanwhile arrives once.
    let port = mosquitto.port;
    let mosquitto_dir = mosquitto.stop();
    local.wait_log(&["bridge down", "bridge=mq"]);
    for i in 0..5 {
        mosquitto_pub(local.port, "up/buffered", &format!("m{i}"), 1);
    }
    let mosquitto = Mosquitto::start(&mosquitto_dir, port);
    wait_count(&local, &["bridge connected", "bridge=mq"], 2);
    let got = collect(mosquitto.port, "far-sub", "edge/#", Duration::from_secs(2));
    let want: Vec<String> = (0..5).map(|i| format!("edge/buffered m{i}")).collect();
    assert_eq!(got, want, "each buffered message once, in order");
}

#[test]
fn bridge_to_mosquitto_over_mqtt_5() {
    bridge_to_mosquitto("5");
}

#[test]
fn bridge_to_mosquitto_over_mqtt_3_1_1() {
    bridge_to_mosquitto("3.1.1");
}

#[test]
fn bridges_are_created_listed_measured_and_deleted_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote = Broker::start(&[]);
    let (local, http_port) = bridged_broker(dir.path(), "");
    let body = serde_json::json!({
        "name": "rt",
        "remote": format!("mqtt://127.0.0.1:{}", remote.port),
        "topic": [{"filter": "metrics/#", "direction": "out", "qos": 1, "remote_prefix": "rt/"}],
    });
    let post = |body: &Value| {
        http(
            http_port,
            "POST",
            "/api/v1/bridges",
            Some(TOKEN),
            Some(&body.to_string()),
        )
    };
    let (status, text) = post(&body);
    assert_eq!(status, 201, "{text}");
    local.wait_log(&["bridge connected", "bridge=rt"]);
    let far = Subscriber::start(remote.port, "rt/#");
    mosquitto_pub(local.port, "metrics/cpu", "42", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(far.lines(), lines(&["rt/metrics/cpu 42"]));

    let (status, text) = http(http_port, "GET", "/api/v1/bridges", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    let list: Value = serde_json::from_str(&text).expect("JSON");
    let bridge = &list["bridges"][0];
    assert_eq!(bridge["name"], "rt");
    assert_eq!(bridge["origin"], "api");
    assert_eq!(bridge["connected"], true);
    assert_eq!(bridge["messages_out"], 1);
    assert!(bridge["config"].get("password").is_none());

    let (_, metrics) = http(http_port, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("cicada_bridge_messages_total{bridge=\"rt\",direction=\"out\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cicada_bridge_connected{bridge=\"rt\"} 1"),
        "{metrics}"
    );

    // A second bridge of that name, and a broken one, are refused with the field at fault.
    let (status, text) = post(&body);
    assert_eq!(status, 409, "{text}");
    let mut broken = body.clone();
    broken["name"] = "other".into();
    broken["topic"][0]["qos"] = 7.into();
    let (status, text) = post(&broken);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("body.topic[0].qos"), "{text}");

    let (status, text) = http(http_port, "DELETE", "/api/v1/bridges/rt", Some(TOKEN), None);
    assert_eq!(status, 204, "{text}");
    local.wait_log(&["bridge removed; its buffer deleted", "bridge=rt"]);
    let (status, _) = http(http_port, "DELETE", "/api/v1/bridges/rt", Some(TOKEN), None);
    assert_eq!(status, 404);
    let (_, text) = http(http_port, "GET", "/api/v1/bridges", Some(TOKEN), None);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON")["bridges"],
        serde_json::json!([])
    );
    // Nothing is bridged any more.
    let far = Subscriber::start(remote.port, "rt/#");
    mosquitto_pub(local.port, "metrics/cpu", "43", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(far.lines(), Vec::<String>::new());
}

#[test]
fn bridges_reach_the_remote_over_mtls_and_websocket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = cicada_transports::testing::TestPki::generate(dir.path());
    let client = pki.client("bridge-edge");
    let remote_dir = dir.path().join("remote");
    std::fs::create_dir_all(&remote_dir).expect("mkdir");
    let (remote, [mtls, ws]) = Broker::with_listeners(&remote_dir, |[mtls, ws]| {
        format!(
            "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{mtls}\"\n{}\
             [[listener]]\nkind = \"ws\"\nbind = \"127.0.0.1:{ws}\"\npath = \"/mqtt\"\n",
            pki.tls_section("required")
        )
    });
    let local_dir = dir.path().join("local");
    std::fs::create_dir_all(&local_dir).expect("mkdir");
    let (local, _) = bridged_broker(
        &local_dir,
        &format!(
            "[[bridge]]\nname = \"secure\"\nremote = \"mqtts://127.0.0.1:{mtls}\"\n\
             cafile = {:?}\ncertfile = {:?}\nkeyfile = {:?}\n\
             [[bridge.topic]]\nfilter = \"a/#\"\ndirection = \"out\"\nremote_prefix = \"tls/\"\n\
             [[bridge]]\nname = \"web\"\nremote = \"ws://127.0.0.1:{ws}/mqtt\"\nprotocol = \"3.1.1\"\n\
             [[bridge.topic]]\nfilter = \"a/#\"\ndirection = \"out\"\nremote_prefix = \"ws/\"\n",
            pki.ca_cert, client.cert, client.key
        ),
    );
    local.wait_log(&["bridge connected", "bridge=secure"]);
    local.wait_log(&["bridge connected", "bridge=web"]);
    let far = Subscriber::start(remote.port, "#");
    mosquitto_pub(local.port, "a/1", "x", 1);
    std::thread::sleep(Duration::from_millis(500));
    let mut got = far.lines();
    got.sort();
    assert_eq!(got, lines(&["tls/a/1 x", "ws/a/1 x"]));
    // The remote saw the bridge's certificate.
    remote.wait_log(&["client connected", "client_id=cicada-bridge-secure"]);
}
