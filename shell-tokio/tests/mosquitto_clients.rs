//! End to end with Eclipse Mosquitto's command-line clients (Debian `mosquitto-clients`).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{run, Broker};

/// Starts `mosquitto_sub` for `count` messages and gives it time to subscribe.
fn subscriber(broker: &Broker, args: &[&str], count: usize) -> Child {
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-C", &count.to_string(), "-W", "10"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (the test command installs mosquitto-clients)");
    std::thread::sleep(Duration::from_millis(500));
    child
}

fn publish(broker: &Broker, args: &[&str]) {
    run(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(args),
        Duration::from_secs(10),
    );
}

/// Runs `mosquitto_sub` until it is subscribed (`-E`), e.g. to create a persistent session and leave.
fn subscribe_and_leave(broker: &Broker, args: &[&str]) {
    run(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-E"])
            .args(args),
        Duration::from_secs(10),
    );
}

fn lines(child: Child) -> Vec<String> {
    let out = child.wait_with_output().expect("mosquitto_sub output");
    assert!(
        out.status.success(),
        "mosquitto_sub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn qos_0_1_2_between_v311_and_v5_clients() {
    let broker = Broker::start(&[]);
    for (sub_version, pub_version) in [("mqttv311", "mqttv5"), ("mqttv5", "mqttv311")] {
        let sub = subscriber(
            &broker,
            &["-V", sub_version, "-q", "2", "-t", "e2e/#", "-v"],
            3,
        );
        for qos in ["0", "1", "2"] {
            publish(
                &broker,
                &[
                    "-V",
                    pub_version,
                    "-q",
                    qos,
                    "-t",
                    &format!("e2e/q{qos}"),
                    "-m",
                    &format!("m{qos}"),
                ],
            );
        }
        assert_eq!(lines(sub), ["e2e/q0 m0", "e2e/q1 m1", "e2e/q2 m2"]);
    }
}

#[test]
fn retained_message_reaches_a_later_subscriber() {
    let broker = Broker::start(&[]);
    publish(&broker, &["-r", "-q", "1", "-t", "cfg/mode", "-m", "eco"]);
    let sub = subscriber(&broker, &["-t", "cfg/+", "-v"], 1);
    assert_eq!(lines(sub), ["cfg/mode eco"]);
    // An empty retained payload clears it.
    publish(&broker, &["-r", "-t", "cfg/mode", "-n"]);
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "cfg/+", "-W", "1", "--retained-only"])
        .output()
        .expect("mosquitto_sub");
    assert!(String::from_utf8_lossy(&sub.stdout).trim().is_empty());
}

#[test]
fn persistent_session_gets_messages_queued_while_offline() {
    let broker = Broker::start(&[]);
    let port = broker.port.to_string();
    subscribe_and_leave(&broker, &["-i", "keeper", "-c", "-q", "1", "-t", "inbox"]);
    for m in ["one", "two"] {
        publish(&broker, &["-q", "1", "-t", "inbox", "-m", m]);
    }
    let out = run(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-i",
            "keeper",
            "-c",
            "-q",
            "1",
            "-t",
            "inbox",
            "-C",
            "2",
            "-W",
            "5",
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["one", "two"]);
}

/// A 3.1.1 persistent session (clean session off) subscribed at QoS 1.
const DURABLE_SUB: [&str; 9] = [
    "-V",
    "mqttv311",
    "-i",
    "durable-sub",
    "-c",
    "-q",
    "1",
    "-t",
    "durable/t",
];

#[test]
fn persistent_sessions_and_retained_messages_survive_kill_9() {
    let broker = Broker::start(&[]);
    let port = broker.port;
    subscribe_and_leave(&broker, &DURABLE_SUB);
    publish(
        &broker,
        &["-q", "1", "-t", "durable/t", "-m", "queued while offline"],
    );
    publish(
        &broker,
        &["-q", "1", "-r", "-t", "durable/r", "-m", "retained"],
    );
    let data_dir = broker.kill();

    let broker = Broker::start_at(port, data_dir, &[]);
    let resumed = subscriber(&broker, &DURABLE_SUB, 1);
    assert_eq!(lines(resumed), ["queued while offline"]);
    let fresh = subscriber(&broker, &["-V", "mqttv5", "-t", "durable/#", "-v"], 1);
    assert_eq!(lines(fresh), ["durable/r retained"]);
}
