//! Three `cicada` processes as one cluster on loopback, linked over mTLS, with Eclipse Paho clients:
//! a node killed with SIGKILL mid-traffic (a bystander, then the publisher's), the publisher moving to a
//! survivor, every acknowledged message received, killed nodes restarting and rejoining, a shared
//! subscription group with members on two nodes getting each message once, and persistent
//! sessions handed over, drained and failed over when their node is killed, and a fourth node
//! joining through the admin API (its state by snapshot) and leaving again. The scenario is in
//! `cluster_e2e.py`; this starts it with the binary and a generated PKI.

mod support;

use std::process::Command;
use std::time::Duration;

use cicada_transports::testing::TestPki;
use support::{run, BINARY};

#[test]
fn three_nodes_survive_kill_9_and_rejoin() {
    let work = tempfile::tempdir().expect("work dir");
    let pki = TestPki::generate(&work.path().join("pki"));
    for node in ["1", "2", "3", "4"] {
        pki.node(node);
    }
    let out = run(
        Command::new("python3")
            .arg(support::test_file("cluster_e2e.py"))
            .arg(BINARY)
            .arg(work.path())
            .arg(&pki.dir),
        Duration::from_secs(200),
    );
    println!("{out}");
    assert!(out.contains("cluster e2e ok"), "{out}");
}
