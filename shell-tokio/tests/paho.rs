//! End to end with the Eclipse Paho Python client (`paho-mqtt`, installed by the test command):
//! QoS 0/1/2 both ways across 3.1.1 and 5.0, retained messages, a will on a lost connection.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

#[test]
fn paho_clients_pubsub_retained_and_will() {
    let broker = Broker::start(&[]);
    let script = support::test_file("paho_e2e.py");
    let out = run(
        Command::new("python3")
            .arg(script)
            .arg(broker.port.to_string()),
        Duration::from_secs(60),
    );
    assert!(out.contains("paho e2e ok"), "{out}");
}
