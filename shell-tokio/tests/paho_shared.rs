//! Shared subscriptions end to end with the Eclipse Paho Python client (v5 and 3.1.1 members of one
//! group): every message reaches exactly one member, spread round robin, and a member leaving hands
//! the flow to the others.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

#[test]
fn paho_members_of_a_shared_group_split_the_messages() {
    let broker = Broker::start(&[]);
    let script = support::test_file("paho_shared_e2e.py");
    let out = run(
        Command::new("python3")
            .arg(script)
            .arg(broker.port.to_string()),
        Duration::from_secs(60),
    );
    assert!(out.contains("paho shared e2e ok"), "{out}");
}
